//! Request → discovered task.
//!
//! Learnt from the calls discovery assigned (`(request, task)` pairs, noise calls included as
//! `None`), in two layers:
//!
//! 1. **structural**: the request's [`RequestKey`] (tool set + system-prompt template +
//!    response format). A key seen in training maps to a task when that task holds at least
//!    [`ClassifierConfig::min_share`] of the key's training calls (noise counts against it);
//!    the confidence is that share. One light parse and one hash-map lookup.
//! 2. **centroid**: otherwise, the nearest task centroid of a hashed n-gram vector of the newest
//!    turns (user and tool messages after the last assistant message; under a generic system
//!    prompt, their instruction head — see [`crate::instruction_head`]), by cosine, at least
//!    [`ClassifierConfig::min_cosine`] — or of one of the task's exemplars (its most frequent
//!    distinct texts, [`MAX_EXEMPLARS`] at most: a job asked in several phrasings or
//!    languages has a centroid close to none of them). The candidates are the tasks seen with
//!    the same key (when it was ambiguous), else with the same tool set, else — a tool list
//!    never seen in training — the tasks on a *shared API*: seen with several tool lists, whose
//!    training calls all offered tools that this request offers too (a job offered beside
//!    other tools in each agent's list). A task seen with one tool list only is not a candidate
//!    for another list (an edited or an added tool is another agent: its specialist never
//!    learnt to choose among those tools), nor is a task whose calls share no offered tool.
//!
//! Anything else is `None`: the LLM answers.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use downshift_store::{CallFilter, Keyring, Store};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::RouteError;
use crate::hash::{IdMap, hash_bytes};
use crate::ngram::{Centroids, DIM, Sparse, vectorize};
use crate::request::{Parsed, ToolAliases, parse_bytes, parse_value};

/// The saved format; bump when the features or hashes change (an old file is then refused and
/// the classifier rebuilt from the store).
pub const CLASSIFIER_FORMAT: u32 = 4;

/// Most exemplars a task keeps: its most frequent distinct routing texts (ties: the first
/// seen).
pub const MAX_EXEMPLARS: usize = 64;

const EXEMPLAR_SEED: u64 = 0xE7E4_9A12;

/// Distinct routing texts a task counts while training (the exemplars are chosen among the
/// first this many; a text first seen after that is not counted).
const EXEMPLAR_POOL: usize = 4 * MAX_EXEMPLARS;

/// Thresholds of the [`Classifier`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassifierConfig {
    /// A structural key maps to a task when that task holds at least this share of the key's
    /// training calls.
    pub min_share: f64,
    /// ... and the key was seen in at least this many training calls.
    pub min_support: u32,
    /// Least cosine similarity for the centroid fallback.
    pub min_cosine: f64,
    /// ... and by how much the nearest centroid must beat the second nearest candidate.
    pub min_margin: f64,
}

impl Default for ClassifierConfig {
    fn default() -> Self {
        ClassifierConfig {
            min_share: 0.9,
            min_support: 1,
            min_cosine: 0.25,
            min_margin: 0.05,
        }
    }
}

/// Which layer placed a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// The structural key (confidence: the task's share of the key's training calls).
    Structural,
    /// The nearest n-gram centroid (confidence: cosine similarity).
    Centroid,
}

impl Method {
    /// The method's name in logs and headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Structural => "structural",
            Method::Centroid => "centroid",
        }
    }
}

/// A request placed in a task.
#[derive(Debug, Clone, PartialEq)]
pub struct Classification {
    /// The task.
    pub task: Arc<str>,
    /// In [0, 1]; see [`Method`].
    pub confidence: f64,
    /// How it was placed.
    pub method: Method,
}

#[derive(Debug, Clone, PartialEq)]
struct KeyEntry {
    calls: u32,
    best: u32,
    best_calls: u32,
    /// Every task seen with the key, ascending.
    tasks: Box<[u32]>,
}

/// The request → task classifier. Build it with [`ClassifierBuilder`] (or
/// [`train_from_store`]); it serialises with serde ([`Classifier::save`] / [`Classifier::load`])
/// so a gateway can load it at start and swap in a rebuilt one after `discover`.
#[derive(Debug, Clone, PartialEq)]
pub struct Classifier {
    config: ClassifierConfig,
    tasks: Vec<Arc<str>>,
    keys: IdMap<KeyEntry>,
    tool_sets: IdMap<Box<[u32]>>,
    /// Per task: the canonical hashes of the tools every one of its training calls offered,
    /// ascending (empty: none in common, or the task was seen with one tool list only).
    common_tools: Vec<Box<[u64]>>,
    /// Per task: unit-length centroid, or empty when its calls had no user text.
    centroids: Centroids,
    /// Raw tool-list bytes seen in training → canonical tool-set hash (a parsing short cut).
    aliases: ToolAliases,
}

/// Sizes of a classifier, for logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ClassifierStats {
    /// Tasks it knows.
    pub tasks: usize,
    /// Structural keys seen in training.
    pub keys: usize,
    /// Keys that map to one task by themselves.
    pub confident_keys: usize,
    /// Distinct sets of offered tools seen in training.
    pub tool_sets: usize,
}

impl Default for Classifier {
    fn default() -> Self {
        Classifier::empty(ClassifierConfig::default())
    }
}

impl Classifier {
    /// A classifier that places nothing (before the first discovery run).
    pub fn empty(config: ClassifierConfig) -> Classifier {
        Classifier {
            config,
            tasks: Vec::new(),
            keys: IdMap::default(),
            tool_sets: IdMap::default(),
            common_tools: Vec::new(),
            centroids: Centroids::default(),
            aliases: ToolAliases::default(),
        }
    }

    /// Its thresholds.
    pub fn config(&self) -> &ClassifierConfig {
        &self.config
    }

    /// Changes the thresholds (no retraining needed: they apply at lookup).
    pub fn set_config(&mut self, config: ClassifierConfig) {
        self.config = config;
    }

    /// The tasks it knows.
    pub fn tasks(&self) -> impl Iterator<Item = &str> {
        self.tasks.iter().map(|t| &**t)
    }

    /// Its sizes.
    pub fn stats(&self) -> ClassifierStats {
        ClassifierStats {
            tasks: self.tasks.len(),
            keys: self.keys.len(),
            confident_keys: self
                .keys
                .values()
                .filter(|e| self.structural(e).is_some())
                .count(),
            tool_sets: self.tool_sets.len(),
        }
    }

    /// Places a raw request body (the bytes the agent sent). `None`: not a chat completion
    /// body, or no task with enough confidence.
    pub fn classify(&self, body: &[u8]) -> Option<Classification> {
        self.place(parse_bytes(body, &self.aliases).ok()?)
    }

    /// Places an already parsed request; the same answer as [`Classifier::classify`] over its
    /// text.
    pub fn classify_value(&self, request: &Value) -> Option<Classification> {
        self.place(parse_value(request).ok()?)
    }

    fn structural(&self, e: &KeyEntry) -> Option<f64> {
        let share = f64::from(e.best_calls) / f64::from(e.calls.max(1));
        (e.calls >= self.config.min_support && share >= self.config.min_share).then_some(share)
    }

    /// The tasks whose training calls all offered tools that are among `offered` (ascending).
    fn offering(&self, offered: &[u64]) -> Vec<u32> {
        (0u32..)
            .zip(&self.common_tools)
            .filter(|(_, c)| !c.is_empty() && c.iter().all(|h| offered.binary_search(h).is_ok()))
            .map(|(t, _)| t)
            .collect()
    }

    fn place(&self, p: Parsed<'_>) -> Option<Classification> {
        let offering;
        let candidates: &[u32] = match self.keys.get(&p.key.hash()) {
            Some(e) => {
                if let Some(share) = self.structural(e) {
                    return Some(Classification {
                        task: self.tasks.get(e.best as usize)?.clone(),
                        confidence: share,
                        method: Method::Structural,
                    });
                }
                &e.tasks
            }
            None => match self.tool_sets.get(&p.key.tools) {
                Some(tasks) => tasks,
                None => {
                    offering = self.offering(p.tool_hashes.as_deref()?);
                    &offering
                }
            },
        };
        if candidates.is_empty() {
            return None;
        }
        let q = vectorize(&p.routing_text());
        if q.is_empty() {
            return None;
        }
        let (task, cosine, second) = self.centroids.nearest(&q, candidates)?;
        let cosine = f64::from(cosine).min(1.0);
        let margin = cosine - f64::from(second);
        if cosine < self.config.min_cosine || margin < self.config.min_margin {
            return None;
        }
        Some(Classification {
            task: self.tasks.get(task as usize)?.clone(),
            confidence: cosine,
            method: Method::Centroid,
        })
    }

    /// Writes the classifier as JSON (via a temporary file and a rename).
    ///
    /// # Errors
    /// [`RouteError::ClassifierFile`] when the file cannot be written.
    pub fn save(&self, path: &Path) -> Result<(), RouteError> {
        let err = |reason: String| RouteError::ClassifierFile {
            path: path.to_owned(),
            reason,
        };
        let text = serde_json::to_vec(self).map_err(|e| err(e.to_string()))?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).map_err(|e| err(e.to_string()))?;
        std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
    }

    /// Reads a classifier written by [`Classifier::save`].
    ///
    /// # Errors
    /// [`RouteError::ClassifierFile`] when the file cannot be read or is not a classifier of
    /// this format version (rebuild it).
    pub fn load(path: &Path) -> Result<Classifier, RouteError> {
        let err = |reason: String| RouteError::ClassifierFile {
            path: path.to_owned(),
            reason,
        };
        let text = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        serde_json::from_slice(&text).map_err(|e| err(e.to_string()))
    }

    fn to_file(&self) -> ClassifierFile {
        let mut keys: Vec<KeyFile> = self
            .keys
            .iter()
            .map(|(k, e)| KeyFile {
                key: *k,
                calls: e.calls,
                best: e.best,
                best_calls: e.best_calls,
                tasks: e.tasks.to_vec(),
            })
            .collect();
        keys.sort_by_key(|k| k.key);
        let mut tool_sets: Vec<ToolSetFile> = self
            .tool_sets
            .iter()
            .map(|(k, t)| ToolSetFile {
                tools: *k,
                tasks: t.to_vec(),
            })
            .collect();
        tool_sets.sort_by_key(|t| t.tools);
        let mut aliases: Vec<(u64, u64)> = self.aliases.iter().map(|(r, c)| (*r, *c)).collect();
        aliases.sort_unstable();
        ClassifierFile {
            format: CLASSIFIER_FORMAT,
            aliases,
            config: self.config.clone(),
            tasks: self.tasks.iter().map(|t| t.to_string()).collect(),
            keys,
            tool_sets,
            common_tools: self.common_tools.iter().map(|c| c.to_vec()).collect(),
            centroids: self.centroids.vectors().to_vec(),
            exemplars: self.centroids.exemplars().to_vec(),
        }
    }

    fn from_file(f: ClassifierFile) -> Result<Classifier, RouteError> {
        let bad = |what: &str| Err(RouteError::Classifier(what.to_owned()));
        if f.format != CLASSIFIER_FORMAT {
            return Err(RouteError::Classifier(format!(
                "format {} (this downshift reads {CLASSIFIER_FORMAT}); rebuild the classifier",
                f.format
            )));
        }
        let n = f.tasks.len();
        if f.centroids.len() != n || f.common_tools.len() != n {
            return bad("one centroid and one list of common tools per task expected");
        }
        let task_ok = |t: u32| (t as usize) < n;
        let mut keys = IdMap::default();
        for k in f.keys {
            if !task_ok(k.best) && !k.tasks.is_empty() || !k.tasks.iter().all(|t| task_ok(*t)) {
                return bad("a key names a task that is not in the list");
            }
            keys.insert(
                k.key,
                KeyEntry {
                    calls: k.calls,
                    best: k.best,
                    best_calls: k.best_calls.min(k.calls),
                    tasks: k.tasks.into(),
                },
            );
        }
        let mut tool_sets = IdMap::default();
        for t in f.tool_sets {
            if !t.tasks.iter().all(|x| task_ok(*x)) {
                return bad("a tool set names a task that is not in the list");
            }
            tool_sets.insert(t.tools, t.tasks.into());
        }
        let sparse = |mut c: Sparse| {
            if c.iter().any(|(i, w)| *i as usize >= DIM || !w.is_finite()) {
                return Err(RouteError::Classifier(
                    "a centroid entry is out of range".to_owned(),
                ));
            }
            c.sort_unstable_by_key(|e| e.0);
            c.dedup_by_key(|e| e.0);
            Ok(c)
        };
        let centroids = f
            .centroids
            .into_iter()
            .map(sparse)
            .collect::<Result<Vec<_>, _>>()?;
        let mut exemplars = Vec::with_capacity(f.exemplars.len());
        for (t, c) in f.exemplars {
            if !task_ok(t) {
                return bad("an exemplar names a task that is not in the list");
            }
            exemplars.push((t, sparse(c)?));
        }
        Ok(Classifier {
            config: f.config,
            tasks: f.tasks.into_iter().map(Arc::from).collect(),
            keys,
            tool_sets,
            common_tools: f
                .common_tools
                .into_iter()
                .map(|mut c| {
                    c.sort_unstable();
                    c.dedup();
                    c.into()
                })
                .collect(),
            centroids: Centroids::new(centroids, exemplars),
            aliases: f.aliases.into_iter().collect(),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct ClassifierFile {
    format: u32,
    config: ClassifierConfig,
    tasks: Vec<String>,
    keys: Vec<KeyFile>,
    tool_sets: Vec<ToolSetFile>,
    /// Per task: the tools all its training calls offered (canonical hashes).
    common_tools: Vec<Vec<u64>>,
    /// Sparse: (bucket, weight) pairs, ascending.
    centroids: Vec<Sparse>,
    /// (task, sparse unit vector) of each exemplar.
    exemplars: Vec<(u32, Sparse)>,
    /// (raw tool-list hash, canonical tool-set hash).
    aliases: Vec<(u64, u64)>,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    key: u64,
    calls: u32,
    best: u32,
    best_calls: u32,
    tasks: Vec<u32>,
}

#[derive(Serialize, Deserialize)]
struct ToolSetFile {
    tools: u64,
    tasks: Vec<u32>,
}

impl Serialize for Classifier {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_file().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Classifier {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Classifier::from_file(ClassifierFile::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Learns a [`Classifier`] from `(request, task)` pairs.
#[derive(Debug, Default)]
pub struct ClassifierBuilder {
    config: ClassifierConfig,
    task_ids: HashMap<String, u32>,
    tasks: Vec<Arc<str>>,
    /// key → (calls, task → calls).
    keys: HashMap<u64, (u32, BTreeMap<u32, u32>)>,
    tool_sets: HashMap<u64, BTreeSet<u32>>,
    /// Tool-set hash → its tools' canonical hashes (ascending), from the first call that
    /// offered it.
    set_tools: HashMap<u64, Vec<u64>>,
    /// Per task: the tools all its calls so far offered (`None` before its first call).
    common_tools: Vec<Option<Vec<u64>>>,
    /// Per task: routing-text hash → (calls, first seen, vector), [`EXEMPLAR_POOL`] at most.
    texts: Vec<HashMap<u64, (u32, usize, Sparse)>>,
    sums: Vec<Vec<f32>>,
    aliases: ToolAliases,
}

impl ClassifierBuilder {
    /// A builder with no examples yet.
    pub fn new(config: ClassifierConfig) -> Self {
        ClassifierBuilder {
            config,
            ..Default::default()
        }
    }

    /// Adds one training call: its raw request body and the task discovery assigned it to
    /// (`None`: noise, which counts against a key's share but adds no task).
    ///
    /// # Errors
    /// [`RouteError::Request`] when the body is not a chat completion request (nothing added).
    pub fn add(&mut self, body: &[u8], task: Option<&str>) -> Result<(), RouteError> {
        let parsed = parse_bytes(body, &self.aliases)?;
        if let Some((raw, canonical)) = parsed.raw_tools {
            self.aliases.insert(raw, canonical);
        }
        self.learn(parsed, task);
        Ok(())
    }

    /// [`ClassifierBuilder::add`] for a parsed request.
    ///
    /// # Errors
    /// As [`ClassifierBuilder::add`].
    pub fn add_value(&mut self, request: &Value, task: Option<&str>) -> Result<(), RouteError> {
        let parsed = parse_value(request)?;
        self.learn(parsed, task);
        Ok(())
    }

    fn task_index(&mut self, task: &str) -> u32 {
        if let Some(i) = self.task_ids.get(task) {
            return *i;
        }
        let i = self.tasks.len() as u32;
        self.task_ids.insert(task.to_owned(), i);
        self.tasks.push(Arc::from(task));
        self.sums.push(Vec::new());
        self.common_tools.push(None);
        self.texts.push(HashMap::new());
        i
    }

    fn learn(&mut self, p: Parsed<'_>, task: Option<&str>) {
        if let Some(each) = &p.tool_hashes {
            self.set_tools
                .entry(p.key.tools)
                .or_insert_with(|| each.clone());
        }
        let task = task.map(|t| self.task_index(t));
        let entry = self.keys.entry(p.key.hash()).or_default();
        entry.0 = entry.0.saturating_add(1);
        let Some(t) = task else {
            return;
        };
        *entry.1.entry(t).or_default() += 1;
        self.tool_sets.entry(p.key.tools).or_default().insert(t);
        // A list read through an alias was walked when first seen: its tools are known.
        let offered = self
            .set_tools
            .get(&p.key.tools)
            .map_or(&[][..], Vec::as_slice);
        match &mut self.common_tools[t as usize] {
            Some(common) => common.retain(|h| offered.binary_search(h).is_ok()),
            none => *none = Some(offered.to_vec()),
        }
        let text = p.routing_text();
        let v = vectorize(&text);
        if v.is_empty() {
            return;
        }
        let texts = &mut self.texts[t as usize];
        let seen = texts.len();
        match texts.entry(hash_bytes(EXEMPLAR_SEED, text.as_bytes())) {
            Entry::Occupied(mut e) => e.get_mut().0 += 1,
            Entry::Vacant(e) if seen < EXEMPLAR_POOL => {
                e.insert((1, seen, v.clone()));
            }
            Entry::Vacant(_) => {}
        }
        let sum = &mut self.sums[t as usize];
        if sum.is_empty() {
            *sum = vec![0.0; DIM];
        }
        for (i, w) in v {
            sum[i as usize] += w;
        }
    }

    /// The classifier.
    pub fn build(self) -> Classifier {
        let keys = self
            .keys
            .into_iter()
            .map(|(key, (calls, per_task))| {
                // Most calls first, then the lowest task index: deterministic.
                let (best, best_calls) = per_task
                    .iter()
                    .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                    .map_or((0, 0), |(t, n)| (*t, *n));
                let entry = KeyEntry {
                    calls,
                    best,
                    best_calls,
                    tasks: per_task.keys().copied().collect(),
                };
                (key, entry)
            })
            .collect();
        let mut lists_per_task = vec![0usize; self.tasks.len()];
        for t in self.tool_sets.values().flatten() {
            lists_per_task[*t as usize] += 1;
        }
        let tool_sets: IdMap<Box<[u32]>> = self
            .tool_sets
            .into_iter()
            .map(|(k, t)| (k, t.into_iter().collect()))
            .collect();
        // A tool list known by its bytes is not walked, and only a walked list can be matched
        // tool by tool: aliases are kept for the lists a task was seen with (the others are
        // then walked when met again).
        let mut aliases = self.aliases;
        aliases.retain(|_, canonical| tool_sets.contains_key(canonical));
        let centroids = self
            .sums
            .into_iter()
            .map(|sum| {
                let norm = sum.iter().map(|w| w * w).sum::<f32>().sqrt();
                if norm == 0.0 {
                    return Sparse::new();
                }
                sum.iter()
                    .enumerate()
                    .filter(|(_, w)| **w != 0.0)
                    .map(|(i, w)| (i as u32, w / norm))
                    .collect()
            })
            .collect();
        // Per task: its most frequent texts (ties: the first seen); a task with one text has
        // its centroid for an exemplar already.
        let mut exemplars = Vec::new();
        for (t, texts) in (0u32..).zip(self.texts) {
            if texts.len() < 2 {
                continue;
            }
            let mut texts: Vec<(u32, usize, Sparse)> = texts.into_values().collect();
            texts.sort_by_key(|(calls, first, _)| (std::cmp::Reverse(*calls), *first));
            exemplars.extend(
                texts
                    .into_iter()
                    .take(MAX_EXEMPLARS)
                    .map(|(_, _, v)| (t, v)),
            );
        }
        Classifier {
            config: self.config,
            tasks: self.tasks,
            keys,
            tool_sets,
            // Only a task seen with several tool lists is a job on a shared API.
            common_tools: self
                .common_tools
                .into_iter()
                .zip(lists_per_task)
                .map(|(c, lists)| match c {
                    Some(c) if lists >= 2 => c.into(),
                    _ => Box::default(),
                })
                .collect(),
            centroids: Centroids::new(centroids, exemplars),
            aliases,
        }
    }
}

/// What [`train_from_store`] read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct TrainReport {
    /// Chat completion calls learnt from: those the last discovery run saw.
    pub calls: u64,
    /// Of them, assigned to a task by discovery (the rest count as noise).
    pub assigned: u64,
    /// Calls logged after that run (or left out of it): neither a task's nor noise, so not
    /// learnt from — counted as noise they would make every key look ambiguous as traffic grows.
    pub undiscovered: u64,
    /// Calls whose request is not a chat completion body (left out).
    pub skipped: u64,
}

/// Builds the classifier from the call log: every chat completion the last discovery run saw,
/// labelled with the task it was assigned to (or as noise). Run it after each `discover`.
///
/// # Errors
/// [`RouteError::Store`] when the store cannot be read or a payload cannot be decrypted.
pub fn train_from_store(
    store: &dyn Store,
    keyring: &Keyring,
    config: ClassifierConfig,
) -> Result<(Classifier, TrainReport), RouteError> {
    const PAGE: usize = 1000;
    let assignments: HashMap<String, Option<String>> =
        store.task_assignments()?.into_iter().collect();
    let mut builder = ClassifierBuilder::new(config);
    let mut report = TrainReport::default();
    let mut after = None;
    loop {
        let page = store.scan_calls(&CallFilter {
            limit: Some(PAGE),
            after: after.clone(),
            ..Default::default()
        })?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some((last.meta.ts_ms, last.meta.id.clone()));
        for sealed in &page {
            if sealed.meta.endpoint != "chat/completions" {
                continue;
            }
            let Some(task) = assignments.get(&sealed.meta.id) else {
                report.undiscovered += 1;
                continue;
            };
            let task = task.as_deref();
            let payload = keyring.open(sealed)?;
            report.calls += 1;
            match builder.add(&payload.request, task) {
                Ok(()) => report.assigned += u64::from(task.is_some()),
                Err(_) => report.skipped += 1,
            }
        }
        if page.len() < PAGE {
            break;
        }
    }
    Ok((builder.build(), report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ngram::dot;
    use serde_json::json;

    fn request(system: Option<&str>, user: &str, tools: &[&str]) -> Value {
        let mut messages = Vec::new();
        if let Some(s) = system {
            messages.push(json!({"role": "system", "content": s}));
        }
        messages.push(json!({"role": "user", "content": user}));
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t, "parameters": {"type": "object"}}}))
            .collect();
        let mut r = json!({"model": "m", "messages": messages});
        if !tools.is_empty() {
            r["tools"] = json!(tools);
        }
        r
    }

    fn bytes(v: &Value) -> Vec<u8> {
        serde_json::to_vec(v).unwrap()
    }

    #[test]
    fn agent_steps_are_placed_by_what_the_tools_answered() {
        // One agent prompt and tool set, two jobs: the step after a user lookup and the step
        // after a reservation lookup. The opening message is the same kind for both; what the
        // last tool answered tells the steps apart.
        let step = |who: &str, result: Value| {
            let mut r = request(
                Some(
                    "You are the airline agent. Use the tools to help the customer with their reservations and follow the policy.",
                ),
                &format!("Hi, I am {who} and I want to change my flight."),
                &["get_user_details", "get_reservation_details"],
            );
            let m = r["messages"].as_array_mut().unwrap();
            m.push(json!({"role": "assistant", "content": null, "tool_calls": [{"id": "1", "type": "function", "function": {"name": "x", "arguments": "{}"}}]}));
            m.push(json!({"role": "tool", "tool_call_id": "1", "content": result.to_string()}));
            r
        };
        let user = |i: u32| json!({"user_id": format!("u{i}"), "name": {"first": "Mia", "last": "Li"}, "reservations": [format!("R{i}")], "payment_methods": {"card": i}});
        let reservation = |i: u32| json!({"reservation_id": format!("R{i}"), "origin": "JFK", "destination": "SFO", "flights": [{"flight_number": format!("HAT{i}"), "date": "2024-05-01"}], "cabin": "economy"});
        let mut b = ClassifierBuilder::new(ClassifierConfig::default());
        for i in 0..20 {
            b.add_value(&step(&format!("user u{i}"), user(i)), Some("after-user"))
                .unwrap();
            b.add_value(
                &step(&format!("user u{i}"), reservation(i)),
                Some("after-reservation"),
            )
            .unwrap();
        }
        let c = b.build();
        for i in 100..105 {
            let got = c.classify_value(&step("someone else", user(i))).unwrap();
            assert_eq!((&*got.task, got.method), ("after-user", Method::Centroid));
            let got = c
                .classify_value(&step("someone else", reservation(i)))
                .unwrap();
            assert_eq!(&*got.task, "after-reservation");
        }
    }

    #[test]
    fn structural_keys_with_masked_variables() {
        let mut b = ClassifierBuilder::new(ClassifierConfig::default());
        for day in 1..=9 {
            let sys = format!("You book tables at Chez Nous. Today is 2026-03-0{day}.");
            b.add(
                &bytes(&request(Some(&sys), "table for two", &["book"])),
                Some("booking"),
            )
            .unwrap();
            let sys = format!("You are support for ACME. Ticket #{day}{day}.");
            b.add(
                &bytes(&request(Some(&sys), "my order is late", &["lookup"])),
                Some("support"),
            )
            .unwrap();
        }
        let c = b.build();
        // Another date, weekday names, another ticket number: same templates.
        let got = c
            .classify(&bytes(&request(
                Some("You book tables at Chez Nous. Today is Friday, April 17."),
                "anything at all",
                &["book"],
            )))
            .unwrap();
        assert_eq!(
            (&*got.task, got.method, got.confidence),
            ("booking", Method::Structural, 1.0)
        );
        let got = c
            .classify_value(&request(
                Some("You are support for ACME. Ticket #A-7731."),
                "x",
                &["lookup"],
            ))
            .unwrap();
        assert_eq!(&*got.task, "support");
        // An unknown tool set is not placed, whatever the text says.
        assert_eq!(
            c.classify(&bytes(&request(None, "table for two", &["other"]))),
            None
        );
        // Not a request.
        assert_eq!(c.classify(b"[]"), None);
        assert_eq!(Classifier::default().classify(b"{}"), None);
    }

    #[test]
    fn a_shared_api_is_placed_in_a_tool_list_never_seen() {
        // Two jobs on two shared APIs, each offered by several agents beside their own tools.
        let mut b = ClassifierBuilder::new(ClassifierConfig::default());
        for agent in ["crm", "shop", "travel"] {
            let own = format!("{agent}_search");
            for i in 0..5 {
                let weather = format!("What is the weather in city {i} tomorrow?");
                let tools = ["get_weather", "get_forecast", own.as_str()];
                b.add_value(&request(None, &weather, &tools), Some("weather"))
                    .unwrap();
                let mail = format!("Send an email to contact {i} about the meeting");
                let tools = ["send_email", "list_inbox", own.as_str()];
                b.add_value(&request(None, &mail, &tools), Some("email"))
                    .unwrap();
            }
        }
        // A tool list offered only by noise calls.
        b.add_value(&request(None, "hello", &["ping"]), None)
            .unwrap();
        // A job seen with one tool list only.
        for i in 0..5 {
            let ask = format!("Book a table for {i} tonight");
            b.add_value(&request(None, &ask, &["book_table"]), Some("booking"))
                .unwrap();
        }
        let c = b.build();
        // A new agent offers the weather API with its own tool, in another order.
        let new_list = ["billing_search", "get_forecast", "get_weather"];
        let asks = request(None, "What is the weather in Oslo on Friday?", &new_list);
        for got in [c.classify_value(&asks), c.classify(&bytes(&asks))] {
            let got = got.unwrap();
            assert_eq!((&*got.task, got.method), ("weather", Method::Centroid));
        }
        // Both APIs offered: the text decides.
        let both = ["get_weather", "get_forecast", "send_email", "list_inbox"];
        let got = c
            .classify_value(&request(
                None,
                "Send an email to Ana about the offer",
                &both,
            ))
            .unwrap();
        assert_eq!(&*got.task, "email");
        // Only part of an API offered, or only tools no task's calls all had: not placed.
        for tools in [
            &["get_weather", "billing_search"][..],
            &["ping", "other"][..],
        ] {
            let r = request(None, "What is the weather in Lima?", tools);
            assert_eq!(c.classify(&bytes(&r)), None, "{tools:?}");
        }
        // A tool added to a list that a job was only ever seen with: another agent.
        let r = request(
            None,
            "Book a table for 2 tonight",
            &["book_table", "brand_new"],
        );
        assert_eq!(c.classify(&bytes(&r)), None);
        let r = request(None, "Book a table for 2 tonight", &["book_table"]);
        assert_eq!(&*c.classify(&bytes(&r)).unwrap().task, "booking");
        // The classifier keeps the tools in common through a save and a load.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("router.json");
        c.save(&path).unwrap();
        let loaded = Classifier::load(&path).unwrap();
        assert_eq!(loaded, c);
        assert_eq!(&*loaded.classify(&bytes(&asks)).unwrap().task, "weather");
    }

    #[test]
    fn a_job_asked_in_many_phrasings_is_placed_by_its_exemplars() {
        // One generic prompt, two jobs, each asked in eight phrasings and four languages that
        // share (nearly) no word: each task's centroid is close to none of its phrasings.
        let summarise = [
            "Summarise this text in two sentences:",
            "Give me a short summary of the following:",
            "TL;DR please:",
            "Résume ce texte en deux phrases :",
            "Fais un résumé court de ce qui suit :",
            "Fasse diesen Text in zwei Sätzen zusammen:",
            "Kurze Zusammenfassung bitte:",
            "Resume este texto en dos frases:",
        ];
        let translate = [
            "Translate into French:",
            "Please put this in German:",
            "Traduis en anglais :",
            "Traduce al inglés por favor:",
            "Übersetze ins Englische:",
            "Can you render this in Spanish?",
            "Traduis ce message en allemand :",
            "Translate the following text into Italian:",
        ];
        let sys = Some("You are a helpful assistant.");
        let material = [
            "the strike goes on",
            "rain is expected",
            "the match was won",
        ];
        let mut b = ClassifierBuilder::new(ClassifierConfig::default());
        for (heads, task) in [(&summarise, "summarise"), (&translate, "translate")] {
            for head in heads {
                for m in material {
                    b.add_value(&request(sys, &format!("{head} {m}"), &[]), Some(task))
                        .unwrap();
                }
            }
        }
        let c = b.build();
        let t = |name: &str| c.tasks().position(|t| t == name).unwrap();
        for (heads, task) in [(&summarise, "summarise"), (&translate, "translate")] {
            for head in heads {
                let r = request(sys, &format!("{head} a new text to work on"), &[]);
                let got = c.classify(&bytes(&r)).unwrap();
                assert_eq!((&*got.task, got.method), (task, Method::Centroid), "{head}");
                // Its own exemplar, not the centroid (a mean of eight phrasings), placed it.
                assert!(got.confidence > 0.99, "{head}: {got:?}");
                let q = vectorize(&parse_value(&r).unwrap().routing_text());
                let centroid = dot(&q, &c.centroids.vectors()[t(task)]);
                assert!(centroid < 0.7, "{head}: {centroid}");
            }
        }
        assert!(c.centroids.exemplars().len() <= 2 * MAX_EXEMPLARS);
    }

    #[test]
    fn ambiguous_keys_fall_back_to_the_text() {
        // No tools, no system prompt: one structural key for three tasks.
        let mut b = ClassifierBuilder::new(ClassifierConfig::default());
        let data = [
            (
                "translate",
                "Translate into French: the cat sleeps on the mat",
            ),
            ("translate", "Translate into French: where is the station"),
            ("translate", "Translate into German: good morning my friend"),
            (
                "sentiment",
                "Classify the sentiment of this review: great food, rude staff",
            ),
            (
                "sentiment",
                "Classify the sentiment of this review: loved every minute",
            ),
            (
                "sentiment",
                "Classify the sentiment of this review: never again",
            ),
            (
                "summary",
                "Summarise this article in one sentence: stocks rose today as",
            ),
            (
                "summary",
                "Summarise this article in one sentence: the council voted to",
            ),
        ];
        for (task, text) in data {
            b.add(&bytes(&request(None, text, &[])), Some(task))
                .unwrap();
        }
        // Noise shares the key too.
        b.add(&bytes(&request(None, "hello?", &[])), None).unwrap();
        let c = b.build();
        assert_eq!(c.stats().confident_keys, 0);
        let cases = [
            ("Translate into French: I like apples", "translate"),
            (
                "Classify the sentiment of this review: the soup was cold",
                "sentiment",
            ),
            (
                "Summarise this article in one sentence: rain is expected",
                "summary",
            ),
        ];
        for (text, want) in cases {
            let got = c.classify(&bytes(&request(None, text, &[]))).unwrap();
            assert_eq!((&*got.task, got.method), (want, Method::Centroid), "{text}");
            assert!(got.confidence >= 0.4 && got.confidence <= 1.0, "{got:?}");
        }
        assert_eq!(
            c.classify(&bytes(&request(None, "zebra quantum violin", &[]))),
            None
        );
    }

    #[test]
    fn shares_and_support_thresholds() {
        let mut b = ClassifierBuilder::new(ClassifierConfig::default());
        let r = bytes(&request(Some("sys"), "u", &["t"]));
        for _ in 0..17 {
            b.add(&r, Some("a")).unwrap();
        }
        let other_text = bytes(&request(Some("sys"), "something else entirely", &["t"]));
        b.add(&other_text, Some("b")).unwrap();
        b.add(&r, None).unwrap();
        let mut c = b.build();
        // 17 of 19 = 0.895 < 0.9: not structural; the text decides between a and b.
        assert_eq!(
            &*c.classify(&other_text).unwrap().task,
            "b",
            "same key, b's text"
        );
        let got = c.classify(&r).unwrap();
        assert_eq!(got.method, Method::Centroid);
        c.set_config(ClassifierConfig {
            min_share: 0.85,
            ..Default::default()
        });
        let got = c.classify(&r).unwrap();
        assert_eq!((&*got.task, got.method), ("a", Method::Structural));
        assert!((got.confidence - 17.0 / 19.0).abs() < 1e-9);
        c.set_config(ClassifierConfig {
            min_share: 0.85,
            min_support: 20,
            ..Default::default()
        });
        assert_eq!(c.classify(&r).unwrap().method, Method::Centroid);
    }

    #[test]
    fn trains_from_the_call_log() {
        use downshift_store::{CallMeta, CallPayload, CallRecord, Source, SqliteStore};
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        let (ring, _) = Keyring::load_or_create(&dir.path().join("keys.json")).unwrap();
        let mut sealed = Vec::new();
        let mut assignments = Vec::new();
        // 2500 calls: more than one page of the scan; the last 500 (weather calls) were logged
        // after the discovery run, which saw only the first 2000.
        for i in 0..2500 {
            let (tools, task): (&[&str], Option<&str>) = match i % 5 {
                _ if i >= 2000 => (&["weather"], None),
                0 | 1 => (&["weather"], Some("t_weather")),
                2 | 3 => (&["search"], Some("t_search")),
                _ => (&["other"], None),
            };
            let body = bytes(&request(Some("You help."), &format!("question {i}"), tools));
            let mut meta = CallMeta::new(format!("c{i:05}"), i64::from(i), "m", Source::Gateway);
            if i == 7 {
                meta.endpoint = "embeddings".into();
            }
            let request = if i == 9 { b"not json".to_vec() } else { body };
            sealed.push(
                ring.seal(&CallRecord {
                    meta,
                    payload: CallPayload {
                        request,
                        response: b"{}".to_vec(),
                    },
                })
                .unwrap(),
            );
            if i < 2000 {
                assignments.push((format!("c{i:05}"), task.map(str::to_owned)));
            }
        }
        store.insert_calls(&sealed).unwrap();
        store.assign_tasks(&assignments).unwrap();
        let (c, report) = train_from_store(&store, &ring, ClassifierConfig::default()).unwrap();
        assert_eq!(
            report,
            TrainReport {
                calls: 1999,
                assigned: 1600 - 1,
                undiscovered: 500,
                skipped: 1
            }
        );
        let ask = |tool: &str| {
            c.classify(&bytes(&request(Some("You help."), "new question", &[tool])))
                .map(|g| g.task.to_string())
        };
        assert_eq!(ask("weather").as_deref(), Some("t_weather"));
        // The 500 weather calls discovery never saw do not dilute the key (as noise they would
        // leave it 800 of 1300 and send it to the centroid fallback).
        let g = c
            .classify(&bytes(&request(
                Some("You help."),
                "new question",
                &["weather"],
            )))
            .unwrap();
        assert_eq!((g.method, g.confidence), (Method::Structural, 1.0));
        assert_eq!(ask("search").as_deref(), Some("t_search"));
        // Noise-only key and tool set: not placed.
        assert_eq!(ask("other"), None);
    }

    #[test]
    fn saves_and_loads() {
        let mut b = ClassifierBuilder::new(ClassifierConfig::default());
        b.add_value(&request(Some("A 1"), "alpha beta", &["x"]), Some("t1"))
            .unwrap();
        b.add_value(&request(None, "gamma delta", &[]), Some("t2"))
            .unwrap();
        b.add_value(&request(None, "", &["y"]), Some("t3")).unwrap();
        let c = b.build();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("classifier.json");
        c.save(&path).unwrap();
        let back = Classifier::load(&path).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.tasks().collect::<Vec<_>>(), ["t1", "t2", "t3"]);
        let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        v["format"] = json!(99);
        let err = serde_json::from_value::<Classifier>(v.clone())
            .unwrap_err()
            .to_string();
        assert!(err.contains("rebuild"), "{err}");
        v["format"] = json!(CLASSIFIER_FORMAT);
        v["keys"][0]["tasks"] = json!([7]);
        assert!(serde_json::from_value::<Classifier>(v).is_err());
        assert!(Classifier::load(&dir.path().join("missing.json")).is_err());
    }
}
