//! The discovery pipeline: features → structural groups → semantic split (embeddings +
//! HDBSCAN) → tasks with labels, statistics, suitability and stable ids.
//!
//! **Structural groups.** Calls share a group when they have the same system-prompt template
//! ([`crate::template`]), the same output kind, and — for tool calls — the same *tool
//! components* called. Tools are identified by their whole definition; tools that are always
//! offered together form a family, and a family offered in several different tool lists is a
//! *shared component* (an API reused by several agents or prompts: calls to it are one job
//! whatever else is offered). The other tools of a tool list form its *private component*,
//! identified by the list's tool names. Text and JSON answers are grouped by the tool names
//! offered. A group smaller than `min_cluster_size` is not a recurring job: its calls are noise.
//!
//! **A job is its instruction, not its values.** A *specific* system prompt (more than
//! [`GENERIC_PROMPT_WORDS`] words) is the job's instruction: the user turns under it are the
//! material it works on, and never split it. Under a *generic* prompt ("You are a helpful
//! assistant.") the instruction is the imperative head of the user turn
//! ([`crate::mask::instruction_part`]); its masked view ([`crate::mask::Masker`]: entities →
//! their type, quoted spans and any token with a digit normalised) is what gets embedded.
//!
//! **Semantic split.** In a generic-prompt group large enough to hold two clusters
//! (≥ 2 · `min_cluster_size` calls) the distinct masked instruction heads — at most
//! `sample_per_group` of them, a deterministic hash sample weighted up to the group's size —
//! are embedded and clustered with HDBSCAN (cosine, excess of mass, the whole group allowed as
//! one cluster, `min_cluster_size` raised to `min_split_share` of the group). When HDBSCAN keeps
//! the group whole, its best forced split is still taken if it is clearly separated (weighted
//! silhouette ≥ 0.15). Every call of a split group takes the nearest cluster centroid, as
//! `approximate_predict` would. A tool-call group of one tool list's own tools (no shared API)
//! splits by the tool called.
//!
//! **Placement.** A split stands only where the router can place requests before the answer
//! exists ([`crate::placement`]): parts the router's view cannot tell apart on held-back calls
//! (≥ 98% each) are merged — one task per agent step.
//!
//! **Embedding budget.** Embedding dominates the run time (all-MiniLM-L6-v2 on two CPU cores
//! embeds roughly 50–100 short texts a second), so a run embeds at most `embed_budget` texts,
//! the largest groups first; groups left without budget are kept whole and counted as
//! `groups_unchecked`. In a group that splits, texts beyond the budget take the cluster of
//! their nearest sampled text under the hashed n-gram embedding.
//!
//! **Labels** come from masked text only: the masked system-prompt template, or under a
//! generic prompt the masked instruction heads ([`crate::labels`]).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use rayon::prelude::*;

use crate::align::{align_to_requests, tool_list_hash};
use crate::embed::Embedder;
use crate::features::{
    CallFeatures, CallInput, MAX_ANSWER_CHARS, ToolRef, extract, fnv64, kind_rank, kind_tag,
};
use crate::hashed::HashedEmbedder;
use crate::hdbscan::Metric;
use crate::labels::ctfidf_terms;
use crate::mask::{Masker, instruction_part, strip_masks};
use crate::placement::{held_back_hash, merge_until_placed};
use crate::relation::{self, LanguageId, Relation, Repetition};
use crate::split::{
    MIN_SPLIT_SILHOUETTE, cosine_distance, dot, nearest, normalise, split_or_whole,
};
use crate::stable::{NewCluster, PriorTask, assign_ids};
use crate::task::{Price, RunStats, Task, percentiles, price_of, suitability};
use crate::template::TemplateMiner;
use downshift_api::TaskKind;

/// What can go wrong in discovery.
#[derive(Debug, thiserror::Error)]
pub enum DiscoverError {
    /// The sentence embedder failed (its model files, or a forward pass).
    #[error(transparent)]
    Embed(#[from] crate::embed::EmbedError),
    /// Clustering rejected its input.
    #[error(transparent)]
    Hdbscan(#[from] crate::hdbscan::HdbscanError),
    /// The parameters do not fit together: `min_cluster_size` below 2, or `sample_per_group`
    /// below twice `min_cluster_size`.
    #[error("invalid discovery parameters: {0}")]
    Params(String),
    /// The PII detector behind the masked view could not be built.
    #[error("cannot build the PII detector that masks task metadata: {0}")]
    Mask(String),
}

/// Something that turns texts into L2-normalised vectors.
pub trait TextEmbedder: Sync {
    /// One vector per text, in order, all of the same length.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, DiscoverError>;
    /// A short name for reports.
    fn name(&self) -> String;
}

impl TextEmbedder for Embedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, DiscoverError> {
        Ok(Embedder::embed(self, texts)?)
    }
    fn name(&self) -> String {
        "minilm".into()
    }
}

impl TextEmbedder for HashedEmbedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, DiscoverError> {
        Ok(texts.par_iter().map(|t| self.embed_one(t)).collect())
    }
    fn name(&self) -> String {
        format!("hashed-{}", self.dim())
    }
}

/// Parameters of a discovery run.
#[derive(Debug, Clone)]
pub struct DiscoverParams {
    /// Smallest number of calls that makes a task (HDBSCAN's `min_cluster_size`).
    pub min_cluster_size: usize,
    /// Most distinct texts embedded and clustered per structural group.
    pub sample_per_group: usize,
    /// Variable texts are cut to this many characters before embedding (≈ 4 per token).
    pub max_text_chars: usize,
    /// Most texts embedded in one run (see the module docs).
    pub embed_budget: usize,
    /// A part split off a structural group must hold at least this share of the group (and
    /// `min_cluster_size` calls): a second job, not a handful of paraphrases.
    pub min_split_share: f64,
    /// Model name (a trailing `*` matches a prefix; `*` alone is the fallback) → price.
    pub prices: BTreeMap<String, Price>,
    /// Make every task a set of whole request keys (see [`align_to_requests`]).
    pub align_to_requests: bool,
}

impl Default for DiscoverParams {
    fn default() -> Self {
        DiscoverParams {
            min_cluster_size: 5,
            sample_per_group: 32,
            max_text_chars: 512,
            embed_budget: 2000,
            min_split_share: 0.1,
            prices: BTreeMap::new(),
            align_to_requests: false,
        }
    }
}

/// The result: tasks (largest first) and each input call's task index (`None`: noise).
#[derive(Debug, Clone)]
pub struct Discovery {
    /// The tasks, most calls first.
    pub tasks: Vec<Task>,
    /// Per input call, in input order: the index into `tasks` of its task, or `None` for noise.
    pub assignments: Vec<Option<usize>>,
    /// Counts and timings of the run.
    pub stats: RunStats,
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Structural signature of every call (see the module docs) and the number of templates.
pub fn signatures(feats: &[&CallFeatures]) -> (Vec<String>, usize) {
    let s = structure(feats);
    let n = s.templates.len();
    (s.sigs, n)
}

/// The structure of a log: every call's signature and system-prompt template.
#[derive(Debug, Clone)]
pub struct Structure {
    /// Per call: its structural signature, `sys:<template hash>|<answer kind>|<tool components
    /// called, tools offered, or no-tools>`.
    pub sigs: Vec<String>,
    /// Per call: index into `templates`.
    pub template_of: Vec<usize>,
    /// The mined templates (`<*>` where the prompts differ).
    pub templates: Vec<String>,
}

/// Signatures and templates of every call (see the module docs).
pub fn structure(feats: &[&CallFeatures]) -> Structure {
    // System-prompt templates over the distinct prompts, in order of first appearance.
    let mut miner = TemplateMiner::new();
    let mut system_tid: HashMap<&str, usize> = HashMap::new();
    for f in feats {
        if !system_tid.contains_key(f.system.as_str()) {
            let id = miner.add(&f.system);
            system_tid.insert(f.system.as_str(), id);
        }
    }
    let template_hash: Vec<u64> = (0..miner.len())
        .map(|id| fnv64(miner.template(id).as_bytes()))
        .collect();

    // Tool lists by definition; each tool's membership decides its family.
    let mut lists: HashMap<&[ToolRef], u64> = HashMap::new();
    for f in feats {
        lists
            .entry(f.tools.as_slice())
            .or_insert_with(|| tool_list_hash(&f.tools));
    }
    let mut membership: HashMap<&ToolRef, Vec<u64>> = HashMap::new();
    for (list, h) in &lists {
        for t in list.iter() {
            membership.entry(t).or_default().push(*h);
        }
    }
    let family: HashMap<&ToolRef, (u64, bool)> = membership
        .into_iter()
        .map(|(t, mut m)| {
            m.sort_unstable();
            let key: String = m.iter().map(|h| format!("{h:x},")).collect();
            (t, (fnv64(key.as_bytes()), m.len() >= 2))
        })
        .collect();

    let sigs = feats
        .iter()
        .map(|f| {
            let names: String = f.tools.iter().map(|t| format!("{};", t.name)).collect();
            let names_hash = fnv64(names.as_bytes());
            let mut parts: Vec<String> = Vec::new();
            if f.kind == Some(TaskKind::ToolCall) {
                for c in &f.called {
                    let part = match f.tools.iter().find(|t| &t.name == c) {
                        Some(t) => match family[t] {
                            (fam, true) => format!("shared:{fam:016x}"),
                            (_, false) => format!("private:{names_hash:016x}"),
                        },
                        None => format!("unoffered:{c}"),
                    };
                    parts.push(part);
                }
            } else if f.tools.is_empty() {
                parts.push("no-tools".into());
            } else {
                parts.push(format!("offered:{names_hash:016x}"));
            }
            parts.sort();
            parts.dedup();
            format!(
                "sys:{:016x}|{}|{}",
                template_hash[system_tid[f.system.as_str()]],
                kind_tag(f.kind),
                parts.join("+")
            )
        })
        .collect();
    Structure {
        sigs,
        template_of: feats
            .iter()
            .map(|f| system_tid[f.system.as_str()])
            .collect(),
        templates: (0..miner.len()).map(|id| miner.template(id)).collect(),
    }
}

/// A system prompt of at most this many words is generic ("You are a helpful assistant."):
/// the job's instruction is in the user turn.
pub use downshift_route::GENERIC_PROMPT_WORDS;

/// Whether a system-prompt template is generic (see [`GENERIC_PROMPT_WORDS`]); words are runs
/// of letters without digits, slots and masks left out.
pub fn is_generic(template: &str) -> bool {
    downshift_route::is_generic_prompt(downshift_route::prompt_words(&strip_masks(template)))
}

/// Smallest part a structural group of `n` calls may be split into.
fn part_min(mcs: usize, tool: bool, n: usize, share: f64) -> usize {
    let floor = if tool { 2 * mcs } else { mcs };
    floor.max((n as f64 * share).ceil() as usize)
}

/// Most calls of one instruction head whose answers are read for its mean relation.
const RELATION_CALLS_PER_TEXT: usize = 32;

/// Each text's (distinct masked instruction head's) mean relation of answer to material over
/// (up to [`RELATION_CALLS_PER_TEXT`] of) its calls; the repetition feature counts equal
/// answers over the whole group.
fn head_relations(
    g: &Group,
    feats: &[&CallFeatures],
    language: &LanguageId,
    max_text_chars: usize,
) -> Vec<Option<Relation>> {
    let repetition = Repetition::new(g.members.iter().map(|&i| feats[i].answer.as_str()));
    g.texts
        .par_iter()
        .map(|(_, calls)| {
            let rels: Vec<Relation> = calls
                .iter()
                .take(RELATION_CALLS_PER_TEXT)
                .filter_map(|&i| {
                    let f = feats[i];
                    let turn = truncate(&f.variable, MAX_ANSWER_CHARS);
                    let head = instruction_part(truncate(turn, max_text_chars));
                    language.relation(
                        relation::material(turn, head),
                        &f.answer,
                        repetition.share(&f.answer),
                    )
                })
                .collect();
            relation::mean(&rels)
        })
        .collect()
}

/// A structural group being clustered.
struct Group {
    signature: String,
    members: Vec<usize>,
    /// Distinct truncated texts → calls with that text.
    texts: Vec<(String, Vec<usize>)>,
    /// Indices into `texts` that were sampled and embedded.
    sample: Vec<usize>,
    /// The sample before the embedding budget cut it: the texts split by their answers'
    /// relation to the material ([`crate::relation`]), which needs no embedding.
    candidates: Vec<usize>,
}

/// A call reduced to what discovery needs (the raw request and response can be dropped).
#[derive(Debug, Clone)]
pub struct ExtractedCall {
    /// The call's id in the store.
    pub id: String,
    /// The model the request named (for prices).
    pub model: String,
    /// Everything discovery reads of the call.
    pub features: CallFeatures,
}

impl ExtractedCall {
    /// Extracts a call's features.
    pub fn new(call: &CallInput) -> Self {
        ExtractedCall {
            id: call.id.clone(),
            model: call.model.clone(),
            features: extract(call),
        }
    }
}

/// Runs discovery over `calls`. `prior` are the tasks of the previous run (for stable ids).
pub fn discover(
    calls: &[CallInput],
    params: &DiscoverParams,
    embedder: &dyn TextEmbedder,
    prior: &[PriorTask],
    now_ms: i64,
) -> Result<Discovery, DiscoverError> {
    let t0 = Instant::now();
    let extracted: Vec<ExtractedCall> = calls.par_iter().map(ExtractedCall::new).collect();
    let mut d = discover_extracted(&extracted, params, embedder, prior, now_ms)?;
    d.stats.seconds_features += t0.elapsed().as_secs_f64() - d.stats.seconds_total;
    d.stats.seconds_total = t0.elapsed().as_secs_f64();
    Ok(d)
}

/// [`discover`] over calls whose features were extracted already (e.g. while paging through
/// a large log, so the raw payloads need not all be in memory at once).
pub fn discover_extracted(
    calls: &[ExtractedCall],
    params: &DiscoverParams,
    embedder: &dyn TextEmbedder,
    prior: &[PriorTask],
    now_ms: i64,
) -> Result<Discovery, DiscoverError> {
    let mcs = params.min_cluster_size;
    if mcs < 2 {
        return Err(DiscoverError::Params(format!(
            "min_cluster_size must be at least 2 (got {mcs})"
        )));
    }
    if params.sample_per_group < 2 * mcs {
        return Err(DiscoverError::Params(format!(
            "sample_per_group ({}) must be at least 2 × min_cluster_size ({mcs})",
            params.sample_per_group
        )));
    }
    let t0 = Instant::now();
    let mut stats = RunStats {
        calls: calls.len(),
        embedder: embedder.name(),
        ..RunStats::default()
    };
    let feats: Vec<&CallFeatures> = calls.iter().map(|c| &c.features).collect();
    let Structure {
        sigs,
        template_of,
        templates,
    } = structure(&feats);
    stats.templates = templates.len();
    let masker = Masker::new().map_err(|e| DiscoverError::Mask(e.to_string()))?;
    let generic_template: Vec<bool> = templates.iter().map(|t| is_generic(t)).collect();
    let generic = |i: usize| generic_template[template_of[i]];
    // What the router should see of a request: hashed n-grams of the masked view of its
    // newest turns (of their instruction head under a generic prompt).
    let router_hash = HashedEmbedder::new(256);
    let router_text = |i: usize| {
        let t = truncate(&feats[i].variable, params.max_text_chars);
        if generic(i) {
            masker.mask(instruction_part(t))
        } else {
            masker.mask(t)
        }
    };
    let router_vecs = |members: &[usize]| -> HashMap<usize, Vec<f32>> {
        members
            .par_iter()
            .map(|&i| (i, router_hash.embed_one(&router_text(i))))
            .collect()
    };
    // Each call's content key (its system and newest turns, hashed): calls are held back by it,
    // not by call id, and new task ids come from it — an import mints new ids, and the same
    // traffic must give the same tasks whatever ids it was logged under.
    let content_key: Vec<u64> = feats
        .iter()
        .map(|f| fnv64(format!("{}\u{1f}{}", f.system, f.variable).as_bytes()))
        .collect();
    let held = |i: usize| held_back_hash(content_key[i]);

    let mut by_sig: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in sigs.iter().enumerate() {
        by_sig.entry(s.as_str()).or_default().push(i);
    }
    stats.structural_groups = by_sig.len();
    stats.seconds_features = t0.elapsed().as_secs_f64();

    // Groups that may split: generic-prompt text/JSON groups (their distinct masked
    // instructions and a deterministic sample of them) and tool-call groups of one tool list
    // (by the tool called).
    let mut groups: Vec<Group> = Vec::new();
    // (members, signature, split?, centroid) of the final clusters.
    let mut clusters: Vec<(Vec<usize>, String, bool, Vec<f32>)> = Vec::new();
    for (sig, members) in by_sig {
        if members.len() < mcs {
            continue;
        }
        if feats[members[0]].kind == Some(TaskKind::ToolCall) {
            // One tool list's own tools (not an API shared by several lists): its calls may be
            // several jobs, one per tool called, if the router can tell their requests apart.
            let own = sig.contains("|private:") && !sig.contains("shared:");
            let mut by_called: BTreeMap<&[String], Vec<usize>> = BTreeMap::new();
            if own {
                for &i in &members {
                    by_called
                        .entry(feats[i].called.as_slice())
                        .or_default()
                        .push(i);
                }
            }
            let (parts, small): (Vec<Vec<usize>>, Vec<Vec<usize>>) =
                by_called.into_values().partition(|p| p.len() >= mcs);
            if parts.len() < 2 {
                clusters.push((members, sig.to_owned(), false, Vec::new()));
                continue;
            }
            let vecs = router_vecs(&members);
            let router_vec = |i: usize| vecs.get(&i).cloned().unwrap_or_default();
            let placed = merge_until_placed(parts, &router_vec, &held);
            stats.placement_held += placed.held;
            stats.placement_placed += placed.placed;
            let mut parts = placed.parts;
            // Calls of a tool too rare to be a job go where the router would send them.
            if parts.len() > 1 {
                let centroids: Vec<Vec<f32>> = parts
                    .iter()
                    .map(|p| {
                        let mut c = vec![0f32; router_hash.dim()];
                        for &i in p {
                            c.iter_mut().zip(router_vec(i)).for_each(|(a, b)| *a += b);
                        }
                        normalise(&mut c);
                        c
                    })
                    .collect();
                for i in small.into_iter().flatten() {
                    if let Some(c) = nearest(&router_vec(i), &centroids) {
                        parts[c].push(i);
                    }
                }
            } else if let Some(p) = parts.first_mut() {
                p.extend(small.into_iter().flatten());
            }
            let split = parts.len() > 1;
            if split {
                stats.groups_split += 1;
            }
            for mut p in parts {
                p.sort_unstable();
                clusters.push((p, sig.to_owned(), split, Vec::new()));
            }
            continue;
        }
        // A specific system prompt is the job's instruction: the user turns are its material
        // and never split it. A generic prompt may carry several jobs.
        if !generic(members[0])
            || members.len() < 2 * part_min(mcs, false, members.len(), params.min_split_share)
        {
            clusters.push((members, sig.to_owned(), false, Vec::new()));
            continue;
        }
        let masked: Vec<String> = members
            .par_iter()
            .map(|&i| {
                masker.mask(instruction_part(truncate(
                    &feats[i].variable,
                    params.max_text_chars,
                )))
            })
            .collect();
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut texts: Vec<(String, Vec<usize>)> = Vec::new();
        for (&i, t) in members.iter().zip(&masked) {
            match index.get(t.as_str()) {
                Some(&k) => texts[k].1.push(i),
                None => {
                    index.insert(t, texts.len());
                    texts.push((t.clone(), vec![i]));
                }
            }
        }
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&k| (fnv64(texts[k].0.as_bytes()), k));
        order.truncate(params.sample_per_group);
        order.sort_unstable();
        groups.push(Group {
            signature: sig.to_owned(),
            members,
            texts,
            candidates: order.clone(),
            sample: order,
        });
    }

    // The embedding budget: the largest groups first.
    let mut priority: Vec<usize> = (0..groups.len()).collect();
    priority.sort_by_key(|&g| (std::cmp::Reverse(groups[g].members.len()), g));
    let mut budget = params.embed_budget;
    for g in priority {
        let want = groups[g].sample.len();
        if want <= budget {
            budget -= want;
        } else if budget >= 2 * mcs {
            groups[g].sample.truncate(budget);
            budget = 0;
        } else {
            groups[g].sample.clear();
            stats.groups_unchecked += 1;
        }
    }

    // Embed every sample in one batch (better batching by length).
    let t_embed = Instant::now();
    let sample_texts: Vec<&str> = groups
        .iter()
        .flat_map(|g| g.sample.iter().map(|&k| g.texts[k].0.as_str()))
        .collect();
    let mut vectors = embedder.embed(&sample_texts)?.into_iter();
    stats.texts_embedded = sample_texts.len();
    let mut embedded: Vec<Vec<Vec<f32>>> = groups
        .iter()
        .map(|g| vectors.by_ref().take(g.sample.len()).collect())
        .collect();
    stats.seconds_embed = t_embed.elapsed().as_secs_f64();

    let t_cluster = Instant::now();
    let language = LanguageId::new();
    for (g, vecs) in groups.iter().zip(embedded.iter_mut()) {
        let dim = vecs.first().map_or(0, Vec::len);
        let sampled_weight: usize = g.sample.iter().map(|&k| g.texts[k].1.len()).sum();
        let scale = g.members.len() as f32 / sampled_weight.max(1) as f32;
        let one_cluster = |vecs: &[Vec<f32>]| -> Vec<f32> {
            let mut c = vec![0f32; dim];
            for (v, &k) in vecs.iter().zip(&g.sample) {
                let w = g.texts[k].1.len() as f32;
                c.iter_mut().zip(v).for_each(|(a, b)| *a += w * b);
            }
            normalise(&mut c);
            c
        };
        let split_min = part_min(mcs, false, g.members.len(), params.min_split_share);
        // The cluster of each text outside `known` (texts with a label): that of the lexically
        // nearest one (hashed n-grams of the masked heads).
        let lexical_guess = |known: &[usize], labels: &[Option<usize>], k: usize| {
            let hashed = HashedEmbedder::new(256);
            let known: Vec<(Vec<f32>, usize)> = known
                .iter()
                .filter_map(|&t| labels[t].map(|l| (hashed.embed_one(&g.texts[t].0), l)))
                .collect();
            let v = hashed.embed_one(&g.texts[k].0);
            known
                .iter()
                .max_by(|a, b| dot(&v, &a.0).total_cmp(&dot(&v, &b.0)))
                .map(|(_, l)| *l)
        };

        // What the answers do with their material first: it is the same job in every language.
        let relations = head_relations(g, &feats, &language, params.max_text_chars);
        let calls_per_text: Vec<f32> = g.texts.iter().map(|t| t.1.len() as f32).collect();
        let by_relation = relation::split(&relations, &calls_per_text, &g.candidates, split_min)?;
        let (k, centroids, text_label) = if let Some((k, mut text_label)) = by_relation {
            // Texts without a relation (no answer, no material) go where their words are.
            let known: Vec<usize> = (0..g.texts.len())
                .filter(|&t| text_label[t].is_some())
                .collect();
            for t in 0..g.texts.len() {
                if text_label[t].is_none() {
                    text_label[t] = lexical_guess(&known, &text_label, t);
                }
            }
            // Each part's centroid in the embedding (for stable ids) from its sampled texts.
            let mut centroids = vec![vec![0f32; dim]; k];
            for (v, &t) in vecs.iter().zip(&g.sample) {
                if let Some(c) = text_label[t] {
                    let w = g.texts[t].1.len() as f32;
                    centroids[c]
                        .iter_mut()
                        .zip(v)
                        .for_each(|(a, b)| *a += w * b);
                }
            }
            centroids.iter_mut().for_each(|c| normalise(c));
            (k, centroids, text_label)
        } else {
            let weights: Vec<f32> = g
                .sample
                .iter()
                .map(|&k| g.texts[k].1.len() as f32 * scale)
                .collect();
            let split = if g.sample.len() < 2 || dim == 0 {
                None
            } else {
                split_or_whole(
                    vecs,
                    &weights,
                    split_min,
                    (Metric::Cosine, cosine_distance),
                    MIN_SPLIT_SILHOUETTE,
                )?
            };
            let Some(result) = split else {
                clusters.push((
                    g.members.clone(),
                    g.signature.clone(),
                    false,
                    one_cluster(vecs),
                ));
                continue;
            };
            let k = result.n_clusters();
            let mut centroids = vec![vec![0f32; dim]; k];
            for (s, label) in result.labels.iter().enumerate() {
                if let Some(c) = label {
                    let w = g.texts[g.sample[s]].1.len() as f32;
                    centroids[*c]
                        .iter_mut()
                        .zip(&vecs[s])
                        .for_each(|(a, b)| *a += w * b);
                }
            }
            centroids.iter_mut().for_each(|c| normalise(c));
            let mut text_label: Vec<Option<usize>> = vec![None; g.texts.len()];
            for (s, label) in result.labels.iter().enumerate() {
                // The group is a recurring job, now known to be several: HDBSCAN's noise
                // inside it joins the nearest part.
                text_label[g.sample[s]] = label.or_else(|| nearest(&vecs[s], &centroids));
            }
            // Texts outside the sample: embedded now (within the budget) and given the nearest
            // centroid; beyond the budget, the cluster of the lexically nearest sampled text.
            let sampled: std::collections::HashSet<usize> = g.sample.iter().copied().collect();
            let mut rest: Vec<usize> = (0..g.texts.len())
                .filter(|k| !sampled.contains(k))
                .collect();
            let lexical = rest.split_off(rest.len().min(budget));
            budget -= rest.len();
            let guesses: Vec<Option<usize>> = lexical
                .par_iter()
                .map(|&t| lexical_guess(&g.sample, &text_label, t))
                .collect();
            for (&t, guess) in lexical.iter().zip(guesses) {
                text_label[t] = guess;
            }
            if !rest.is_empty() {
                let rest_texts: Vec<&str> = rest.iter().map(|&k| g.texts[k].0.as_str()).collect();
                let t = Instant::now();
                let rest_vecs = embedder.embed(&rest_texts)?;
                stats.texts_embedded += rest_texts.len();
                stats.seconds_embed += t.elapsed().as_secs_f64();
                for (&k, v) in rest.iter().zip(&rest_vecs) {
                    text_label[k] = nearest(v, &centroids);
                }
            }
            (k, centroids, text_label)
        };
        let mut parts: Vec<Vec<usize>> = vec![Vec::new(); k];
        for (t, label) in text_label.iter().enumerate() {
            if let Some(c) = label {
                parts[*c].extend(&g.texts[t].1);
            }
        }
        // Parts too small to be a job are noise; the rest must be placeable by the router.
        let (kept, kept_centroids): (Vec<Vec<usize>>, Vec<Vec<f32>>) = parts
            .into_iter()
            .zip(centroids)
            .filter(|(m, _)| m.len() >= mcs)
            .unzip();
        let vecs = router_vecs(&g.members);
        let router_vec = |i: usize| vecs.get(&i).cloned().unwrap_or_default();
        let placed = merge_until_placed(kept, &router_vec, &held);
        stats.placement_held += placed.held;
        stats.placement_placed += placed.placed;
        let split = placed.parts.len() > 1;
        if split {
            stats.groups_split += 1;
        }
        for (members, from) in placed.parts.into_iter().zip(placed.merged_from) {
            let mut c = vec![0f32; dim];
            for &p in &from {
                let w = from.len() as f32;
                c.iter_mut()
                    .zip(&kept_centroids[p])
                    .for_each(|(a, b)| *a += b / w);
            }
            normalise(&mut c);
            clusters.push((members, g.signature.clone(), split, c));
        }
    }

    if params.align_to_requests {
        clusters = align_to_requests(clusters, &feats, &sigs, mcs);
        stats.aligned = true;
    }

    // Stable ids.
    let new: Vec<NewCluster<'_>> = clusters
        .iter()
        .map(|(members, sig, _, centroid)| NewCluster {
            signature: sig,
            calls: members.iter().map(|&i| calls[i].id.as_str()).collect(),
            centroid,
            anchor: members.iter().map(|&i| content_key[i]).min().unwrap_or(0),
        })
        .collect();
    let ids = assign_ids(&new, prior);

    // Statistics.
    let total_tokens: u64 = feats
        .iter()
        .map(|f| f.prompt_tokens + f.completion_tokens)
        .sum();
    let cost_of = |i: usize| -> f64 {
        price_of(&params.prices, &calls[i].model).map_or(0.0, |p| {
            (feats[i].prompt_tokens as f64 * p.prompt
                + feats[i].completion_tokens as f64 * p.completion)
                / 1e6
        })
    };
    let total_cost: f64 = (0..calls.len()).map(cost_of).sum();
    let hashed = HashedEmbedder::new(256);
    // Labels from masked text only: a generic prompt's calls by the instruction in their user
    // turn, the others by their system-prompt template.
    let masked_templates: Vec<String> = templates
        .iter()
        .map(|t| strip_masks(&masker.mask(t)))
        .collect();
    let label_owned: Vec<Vec<String>> = clusters
        .par_iter()
        .map(|(m, ..)| {
            m.iter()
                .take(400)
                .map(|&i| {
                    if generic(i) {
                        strip_masks(&masker.mask(instruction_part(truncate(
                            &feats[i].variable,
                            params.max_text_chars,
                        ))))
                    } else {
                        masked_templates[template_of[i]].clone()
                    }
                })
                .collect()
        })
        .collect();
    let label_texts: Vec<Vec<&str>> = label_owned
        .iter()
        .map(|v| v.iter().map(String::as_str).collect())
        .collect();
    let terms = ctfidf_terms(&label_texts, 3);

    let mut tasks: Vec<Task> = clusters
        .into_iter()
        .zip(ids)
        .zip(terms)
        .map(
            |(((members, signature, split, centroid), (id, matched)), terms)| {
                let n = members.len();
                let tokens: u64 = members
                    .iter()
                    .map(|&i| feats[i].prompt_tokens + feats[i].completion_tokens)
                    .sum();
                let cost: f64 = members.iter().map(|&i| cost_of(i)).sum();
                let mut kinds: HashMap<Option<TaskKind>, usize> = HashMap::new();
                let mut shapes: HashMap<String, usize> = HashMap::new();
                let mut tools: HashMap<&str, usize> = HashMap::new();
                for &i in &members {
                    *kinds.entry(feats[i].kind).or_default() += 1;
                    *shapes.entry(feats[i].output_shape()).or_default() += 1;
                    for t in &feats[i].called {
                        *tools.entry(t.as_str()).or_default() += 1;
                    }
                }
                let kind = kinds
                    .iter()
                    .max_by_key(|(k, c)| (**c, std::cmp::Reverse(kind_rank(**k))))
                    .and_then(|(k, _)| *k);
                let consistency = shapes.values().max().copied().unwrap_or(0) as f64 / n as f64;
                let dominant_tool = tools
                    .iter()
                    .max_by_key(|(t, c)| (**c, std::cmp::Reverse(**t)))
                    .map(|(t, _)| (*t).to_owned());
                // Repetitiveness: mean cosine of (up to 64) distinct texts to their centroid.
                let mut distinct: Vec<&str> = members
                    .iter()
                    .map(|&i| truncate(&feats[i].variable, params.max_text_chars))
                    .collect();
                distinct.sort_unstable();
                distinct.dedup();
                distinct.truncate(64);
                let hv: Vec<Vec<f32>> = distinct.iter().map(|t| hashed.embed_one(t)).collect();
                let mut hc = vec![0f32; hashed.dim()];
                for v in &hv {
                    hc.iter_mut().zip(v).for_each(|(a, b)| *a += b);
                }
                normalise(&mut hc);
                let similarity = if hv.len() <= 1 {
                    1.0
                } else {
                    hv.iter().map(|v| f64::from(dot(v, &hc))).sum::<f64>() / hv.len() as f64
                };
                let prompt = percentiles(members.iter().map(|&i| feats[i].prompt_tokens).collect());
                let completion = percentiles(
                    members
                        .iter()
                        .map(|&i| feats[i].completion_tokens)
                        .collect(),
                );
                let (suitability, reasons) = suitability(
                    kind,
                    consistency,
                    completion.p95,
                    similarity,
                    n,
                    n as f64 / calls.len().max(1) as f64,
                );
                let head = match (kind, &dominant_tool) {
                    (Some(TaskKind::ToolCall), Some(t)) => format!("tool:{t}"),
                    (k, _) => kind_tag(k).to_owned(),
                };
                let label = if terms.is_empty() {
                    head
                } else {
                    format!("{head} · \"{}\"", terms.join(" "))
                };
                let created_ms = matched.map_or(now_ms, |k| prior[k].created_ms);
                Task {
                    id,
                    label,
                    calls: n,
                    share_calls: n as f64 / calls.len().max(1) as f64,
                    share_tokens: if total_tokens == 0 {
                        0.0
                    } else {
                        tokens as f64 / total_tokens as f64
                    },
                    share_cost: if total_cost > 0.0 {
                        cost / total_cost
                    } else {
                        0.0
                    },
                    cost_usd: cost,
                    prompt_tokens: prompt,
                    completion_tokens: completion,
                    output_kind: kind,
                    dominant_tool,
                    output_consistency: consistency,
                    similarity,
                    suitability,
                    reasons,
                    terms,
                    signature,
                    split,
                    created_ms,
                    members,
                    centroid,
                }
            },
        )
        .collect();
    tasks.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.id.cmp(&b.id)));
    let mut assignments = vec![None; calls.len()];
    for (t, task) in tasks.iter().enumerate() {
        for &i in &task.members {
            assignments[i] = Some(t);
        }
    }
    stats.noise = assignments.iter().filter(|a| a.is_none()).count();
    stats.seconds_cluster = t_cluster.elapsed().as_secs_f64();
    stats.seconds_total = t0.elapsed().as_secs_f64();
    Ok(Discovery {
        tasks,
        assignments,
        stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::task::Percentiles;
    use serde_json::{Value, json};

    fn call(id: usize, system: &str, user: &str, response: Value, tools: Value) -> CallInput {
        CallInput {
            id: format!("c{id:03}"),
            model: "gpt-4o-2024-08-06".into(),
            request: json!({"messages": [{"role": "system", "content": system},
                                         {"role": "user", "content": user}], "tools": tools}),
            response: json!({"choices": [{"message": response}]}),
            prompt_tokens: Some(100),
            completion_tokens: Some(10),
        }
    }

    fn text(s: &str) -> Value {
        json!({"role": "assistant", "content": s})
    }

    fn weather_tool() -> Value {
        json!([{"type": "function", "function": {"name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}])
    }

    /// One generic system prompt used for two jobs (translation and sentiment), a tool-calling
    /// job, and three stray calls.
    fn calls() -> Vec<CallInput> {
        let cities = [
            "Paris", "Berlin", "Rome", "Madrid", "Vienna", "Oslo", "Lisbon", "Prague",
        ];
        let mut out = Vec::new();
        let sys = |d: usize| format!("You are a helpful assistant. Today is 2026-01-{d:02}.");
        for (i, c) in cities.iter().enumerate() {
            out.push(call(
                out.len(),
                &sys(i + 1),
                &format!("Translate into French: the museum in {c} opens at nine tomorrow"),
                text("Le musée ouvre à neuf heures demain."),
                json!([]),
            ));
            out.push(call(
                out.len(),
                &sys(i + 2),
                &format!(
                    "Classify the sentiment of this review: I loved my stay in {c}, great staff"
                ),
                text("positive"),
                json!([]),
            ));
            out.push(call(
                out.len(),
                "You answer weather questions with the tool.",
                &format!("What is the forecast for {c} tomorrow?"),
                json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": "x", "type": "function",
                     "function": {"name": "get_weather", "arguments": format!("{{\"city\":\"{c}\"}}")}}]}),
                weather_tool(),
            ));
        }
        for i in 0..3 {
            out.push(call(
                out.len(),
                "You write poems.",
                &format!("A poem about the number {i}"),
                text("Roses are red"),
                json!([]),
            ));
        }
        out
    }

    fn params() -> DiscoverParams {
        DiscoverParams {
            min_cluster_size: 4,
            sample_per_group: 16,
            prices: BTreeMap::from([(
                "gpt-4o*".to_owned(),
                Price {
                    prompt: 2.5,
                    completion: 10.0,
                },
            )]),
            ..DiscoverParams::default()
        }
    }

    #[test]
    fn structure_and_content_find_the_three_jobs_and_leave_strays_as_noise() {
        let calls = calls();
        let e = HashedEmbedder::new(384);
        let d = discover(&calls, &params(), &e, &[], 7).unwrap();
        assert_eq!(d.tasks.len(), 3, "{:#?}", d.tasks);
        assert_eq!(d.stats.groups_split, 1);
        assert_eq!(d.stats.noise, 3);
        // Every job is one task: calls i, i+3, i+6, … share a task.
        for job in 0..3 {
            let t = d.assignments[job];
            assert!(t.is_some());
            for k in (job..24).step_by(3) {
                assert_eq!(d.assignments[k], t, "call {k}");
            }
        }
        assert!(d.assignments[24..].iter().all(Option::is_none));
        let weather = &d.tasks[d.assignments[2].unwrap()];
        assert!(
            weather.label.starts_with("tool:get_weather · \""),
            "{}",
            weather.label
        );
        assert_eq!(weather.output_consistency, 1.0);
        assert!(!weather.split);
        let sentiment = &d.tasks[d.assignments[1].unwrap()];
        assert!(sentiment.split);
        assert!(
            sentiment.label.starts_with("text · "),
            "{}",
            sentiment.label
        );
        assert!(
            sentiment
                .terms
                .iter()
                .any(|t| t == "classify" || t == "sentiment"),
            "{:?}",
            sentiment.terms
        );
        // Shares: 8 of 27 calls each, equal tokens and prices.
        assert!((weather.share_calls - 8.0 / 27.0).abs() < 1e-9);
        assert!((weather.share_cost - 8.0 / 27.0).abs() < 1e-9);
        assert_eq!(weather.prompt_tokens.p95, 100);
        assert!(weather.suitability > sentiment.suitability);
        assert!(weather.reasons.iter().any(|r| r.contains("tool calls")));
    }

    #[test]
    fn aligned_tasks_hold_whole_request_keys() {
        let tool = |name: &str| {
            json!({"type": "function", "function": {"name": name,
                   "parameters": {"type": "object", "properties": {"x": {"type": "string"}}}}})
        };
        let called = |name: &str, i: usize| {
            json!({"role": "assistant", "content": null, "tool_calls": [
                {"id": "x", "type": "function",
                 "function": {"name": name, "arguments": format!("{{\"x\":\"{i}\"}}")}}]})
        };
        // Two agents with the same prompt: A offers the car and the feed and mostly drives; B
        // only posts.
        let mut calls = Vec::new();
        let a = json!([tool("drive"), tool("post")]);
        let b = json!([tool("post")]);
        for (n, tools, tool_called, user) in [
            (12, &a, "drive", "drive to stop {i} and maybe post"),
            (5, &a, "post", "drive to stop {i} and maybe post"),
            (10, &b, "post", "post update number {i}"),
        ] {
            for i in 0..n {
                let user = user.replace("{i}", &i.to_string());
                let answer = called(tool_called, i);
                calls.push(call(
                    calls.len(),
                    "You are an agent.",
                    &user,
                    answer,
                    tools.clone(),
                ));
            }
        }
        let e = HashedEmbedder::new(384);
        let by_family = discover(&calls, &params(), &e, &[], 7).unwrap();
        assert_eq!(by_family.tasks.len(), 2, "{:#?}", by_family.tasks);
        // By the answer: A's five posts join B's posts — a request the router cannot tell apart
        // from A's driving requests.
        assert_eq!(by_family.assignments[12], by_family.assignments[20]);
        assert_ne!(by_family.assignments[0], by_family.assignments[12]);
        assert!(!by_family.stats.aligned);

        let aligned = DiscoverParams {
            align_to_requests: true,
            ..params()
        };
        let d = discover(&calls, &aligned, &e, &[], 7).unwrap();
        assert!(d.stats.aligned);
        assert_eq!(d.tasks.len(), 2, "{:#?}", d.tasks);
        let a = d.assignments[0];
        assert!(a.is_some());
        assert!(
            d.assignments[..17].iter().all(|t| *t == a),
            "{:?}",
            d.assignments
        );
        let b = d.assignments[17];
        assert!(b.is_some() && b != a);
        assert!(d.assignments[17..].iter().all(|t| *t == b));
        assert_eq!(d.tasks[a.unwrap()].calls, 17);
        assert_eq!(d.tasks[b.unwrap()].calls, 10);

        // The fixture's two text jobs share one request key (same template, no tools): aligned,
        // they are one task; the strays' key holds no task and stays noise.
        let d = discover(&super::tests::calls(), &aligned, &e, &[], 7).unwrap();
        assert_eq!(d.tasks.len(), 2, "{:#?}", d.tasks);
        assert_eq!(d.assignments[0], d.assignments[1]);
        assert_ne!(d.assignments[0], d.assignments[2]);
        assert!(d.assignments[24..].iter().all(Option::is_none));
        assert_eq!(d.stats.noise, 3);
    }

    #[test]
    fn ids_persist_when_the_same_jobs_get_more_calls() {
        let mut calls = calls();
        let e = HashedEmbedder::new(384);
        let first = discover(&calls, &params(), &e, &[], 7).unwrap();
        let prior: Vec<PriorTask> = first
            .tasks
            .iter()
            .map(|t| PriorTask {
                id: t.id.clone(),
                created_ms: t.created_ms,
                signature: t.signature.clone(),
                centroid: t.centroid.clone(),
                calls: t.members.iter().map(|&i| calls[i].id.clone()).collect(),
            })
            .collect();
        // +20%: more calls of the existing jobs.
        let extra: Vec<CallInput> = calls[..6]
            .iter()
            .enumerate()
            .map(|(k, c)| {
                let mut c = c.clone();
                c.id = format!("new{k}");
                c
            })
            .collect();
        calls.extend(extra);
        let second = discover(&calls, &params(), &e, &prior, 9).unwrap();
        let ids = |d: &Discovery| {
            let mut v: Vec<String> = d.tasks.iter().map(|t| t.id.clone()).collect();
            v.sort();
            v
        };
        assert_eq!(ids(&first), ids(&second));
        assert!(second.tasks.iter().all(|t| t.created_ms == 7));
    }

    #[test]
    fn bad_parameters_and_prices() {
        let e = HashedEmbedder::new(64);
        let p = DiscoverParams {
            min_cluster_size: 1,
            ..DiscoverParams::default()
        };
        assert!(discover(&calls(), &p, &e, &[], 0).is_err());
        let prices = params().prices;
        assert_eq!(price_of(&prices, "gpt-4o-mini").unwrap().prompt, 2.5);
        assert!(price_of(&prices, "llama").is_none());
        assert_eq!(
            percentiles(vec![5, 1, 3, 2, 4]),
            Percentiles { p50: 3, p95: 5 }
        );
    }
}
