//! Hard constraints and the ranking formula (see the crate documentation for the formula).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::catalog::{Benchmark, Catalog, Model};
use crate::precision::Precision;

/// Points a model loses per doubling of its parameter count above 1B.
pub const SIZE_PENALTY_PER_DOUBLING: f64 = 5.0;

/// Points for a chat template with native tool calling, when the task involves tools.
pub const NATIVE_TOOLS_BONUS: f64 = 10.0;

pub use downshift_api::TaskKind;

/// How much each capability counts for a task of `kind`; the weights sum to 1.
pub fn kind_weights(kind: TaskKind) -> &'static [(Capability, f64)] {
    match kind {
        TaskKind::ToolCall => &[
            (Capability::ToolUse, 0.7),
            (Capability::InstructionFollowing, 0.3),
        ],
        TaskKind::Json => &[
            (Capability::InstructionFollowing, 0.7),
            (Capability::Knowledge, 0.3),
        ],
        TaskKind::Label => &[
            (Capability::InstructionFollowing, 0.6),
            (Capability::Knowledge, 0.4),
        ],
        TaskKind::Text => &[
            (Capability::Knowledge, 0.7),
            (Capability::InstructionFollowing, 0.3),
        ],
    }
}

/// What a discovered task asks of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskProfile {
    /// The output kind.
    pub kind: TaskKind,
    /// 95th percentile of prompt + completion tokens over the task's calls.
    pub p95_tokens: u32,
    /// Whether the calls offer tools (the request carries tool definitions).
    pub needs_tools: bool,
}

/// Hard limits a candidate must meet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Constraints {
    /// Memory available to serve one sequence, in GB (10⁹ bytes); `None`: no limit.
    pub memory_gb: Option<f64>,
    /// Licences allowed (case-insensitive ids); `None`: any.
    pub license_allow: Option<Vec<String>>,
    /// Largest parameter count allowed, in billions; `None`: no limit.
    pub max_params_b: Option<f64>,
    /// What the serving engine runs; `None`: not judged (every candidate's `runs` is `None`).
    /// A model the engine does not run is rejected.
    pub engine: Option<Engine>,
    /// Precision the memory check assumes.
    pub precision: Precision,
}

impl Default for Constraints {
    /// No limit, q4_k_m for the memory estimate.
    fn default() -> Self {
        Constraints {
            memory_gb: None,
            license_allow: None,
            max_params_b: None,
            engine: None,
            precision: Precision::Q4KM,
        }
    }
}

/// What a serving engine runs, so selection can say whether a catalog model runs here: the
/// architectures it loads from GGUF (llama.cpp's `general.architecture` names) and the
/// `config.json` `model_type`s it loads from a Hugging Face folder. downshift's engine exports
/// both (`downshift_slm::ARCHITECTURES`); nothing here keeps its own copy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Engine {
    /// GGUF architectures (`llama`, `qwen2`, `gemma3`, …).
    pub gguf: Vec<String>,
    /// Hugging Face `model_type`s (`llama`, `mistral`, `gemma3_text`, …).
    pub model_types: Vec<String>,
}

impl Engine {
    /// True when the engine runs `model` in a format it is published in: its Hugging Face
    /// folder (the `model_type`), or a GGUF — packaged, or in the catalog's GGUF repository —
    /// whose llama.cpp architecture the engine runs.
    pub fn runs(&self, model: &Model) -> bool {
        let model_type = model.architecture.trim().to_ascii_lowercase();
        let has_gguf = model.gguf.is_some() || model.package.is_some();
        self.model_types.contains(&model_type)
            || (has_gguf && self.gguf.contains(&model.runtime_architecture()))
    }

    /// Why the engine does not run `model`, in one sentence.
    fn refusal(&self, model: &Model) -> String {
        format!(
            "the built-in engine does not run architecture {} (it runs {} from a Hugging Face \
             folder{})",
            model.architecture,
            self.model_types.join(", "),
            if model.gguf.is_some() || model.package.is_some() {
                format!("; {} from GGUF", self.gguf.join(", "))
            } else {
                "; no GGUF is listed for this model".to_string()
            }
        )
    }
}

/// Where a candidate's weights can come from on this machine.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Availability {
    /// Found on this machine, at `path`.
    Local {
        /// Where the weights are.
        path: String,
    },
    /// Not here, but a packaged model ships the weights (`downshift models pull NAME`).
    Packaged {
        /// The packaged model's name (`packages.toml`).
        package: String,
    },
    /// Only on the model hub: someone has to download it first.
    Hub,
    /// Not looked up ([`select`] without a locator).
    #[default]
    Unknown,
}

impl Availability {
    /// Ranking order: what is here, then what a package fetch brings, then the rest.
    fn rank(&self) -> u8 {
        match self {
            Availability::Local { .. } => 0,
            Availability::Packaged { .. } | Availability::Unknown => 1,
            Availability::Hub => 2,
        }
    }

    /// True when the engine can start on the model without a download from the hub.
    pub fn obtainable(&self) -> bool {
        self.rank() < 2
    }

    /// How a person gets the weights, in one sentence; `runs`: whether the engine runs the
    /// model (`Some(false)` says so instead of how to fetch what could not run).
    pub fn how_to_get(&self, model: &Model, runs: Option<bool>) -> String {
        if runs == Some(false) {
            return format!(
                "not runnable here: the built-in engine can neither train nor serve model_type {}",
                model.architecture
            );
        }
        match self {
            Availability::Local { path } => format!("found at {path}"),
            Availability::Packaged { package } => format!("downshift models pull {package}"),
            Availability::Hub | Availability::Unknown => format!(
                "download {} from the Hugging Face hub, then `downshift models pull PATH`",
                model.gguf.as_deref().unwrap_or(&model.id),
            ),
        }
    }
}

/// One catalog model, judged for one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    /// Hub id.
    pub id: String,
    /// Parameters, in billions.
    pub params_b: f64,
    /// Ranking score (higher is better); computed for rejected models too.
    pub score: f64,
    /// How the score was made, one sentence per term.
    pub reasons: Vec<String>,
    /// Hard constraints the model fails; empty when it is eligible.
    pub rejected: Vec<String>,
    /// Where the weights come from ([`select_located`]; `unknown` from [`select`]).
    #[serde(default)]
    pub availability: Availability,
    /// How to get the weights, in one sentence.
    #[serde(default)]
    pub get: String,
    /// Whether the built-in engine runs the model ([`Constraints::engine`]; `None`: not judged).
    #[serde(default)]
    pub runs: Option<bool>,
}

impl Candidate {
    /// True when no hard constraint failed.
    pub fn accepted(&self) -> bool {
        self.rejected.is_empty()
    }
}

/// A capability the published benchmarks measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// Calling tools with the right names and arguments (BFCL).
    ToolUse,
    /// Following format and content instructions (IFEval).
    InstructionFollowing,
    /// General knowledge and understanding (MMLU family).
    Knowledge,
}

impl Capability {
    /// Every capability.
    pub const ALL: [Capability; 3] = [
        Capability::ToolUse,
        Capability::InstructionFollowing,
        Capability::Knowledge,
    ];

    /// Benchmarks that measure this capability, in tiers: the first tier with a published score
    /// is used, its scores averaged. MMLU-Pro runs on a lower scale than MMLU, so it only counts
    /// when no MMLU, MMLU-Redux or MMLU-cloze score exists.
    pub fn tiers(self) -> &'static [&'static [Benchmark]] {
        match self {
            Capability::ToolUse => &[&[Benchmark::Bfcl, Benchmark::BfclV2, Benchmark::BfclV3]],
            Capability::InstructionFollowing => &[&[Benchmark::Ifeval]],
            Capability::Knowledge => &[
                &[Benchmark::Mmlu, Benchmark::MmluRedux, Benchmark::MmluCloze],
                &[Benchmark::MmluPro],
            ],
        }
    }

    /// Name in reasons.
    pub fn label(self) -> &'static str {
        match self {
            Capability::ToolUse => "tool use",
            Capability::InstructionFollowing => "instruction following",
            Capability::Knowledge => "knowledge",
        }
    }

    /// What counts as evidence, in words.
    fn evidence_words(self) -> &'static str {
        match self {
            Capability::ToolUse => "BFCL",
            Capability::InstructionFollowing => "IFEval",
            Capability::Knowledge => "MMLU-type",
        }
    }

    /// The model's published value for this capability, or `None` without any.
    pub fn evidence(self, model: &Model) -> Option<Evidence> {
        self.tiers().iter().enumerate().find_map(|(tier, benches)| {
            let scores: Vec<(Benchmark, f64)> = model
                .scores
                .iter()
                .filter(|s| benches.contains(&s.benchmark))
                .map(|s| (s.benchmark, s.value))
                .collect();
            (!scores.is_empty()).then(|| Evidence {
                value: scores.iter().map(|(_, v)| v).sum::<f64>() / scores.len() as f64,
                scores,
                fallback: tier > 0,
            })
        })
    }
}

/// A model's value for one capability and the scores behind it.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// Mean of `scores`, percent.
    pub value: f64,
    /// The published scores used.
    pub scores: Vec<(Benchmark, f64)>,
    /// True when only a fallback tier (MMLU-Pro for knowledge) had scores.
    pub fallback: bool,
}

/// Judges every catalog model for `task` under `constraints`.
///
/// Returns one [`Candidate`] per model: the eligible ones first, by score descending (ties: fewer
/// parameters first, then id), then the rejected ones in the same order. Availability is not
/// looked up (see [`select_located`]).
pub fn select(catalog: &Catalog, task: &TaskProfile, constraints: &Constraints) -> Vec<Candidate> {
    judge(catalog, task, constraints, |_| Availability::Unknown)
}

/// [`select`], with each model's availability: `locate` returns where a model's weights are on
/// this machine, if anywhere; a model that is not there may ship in a package
/// ([`Model::package`]) or come only from the hub.
///
/// Among the eligible models those the engine can start on without a hub download (here, then
/// packaged) rank first, so a recommendation is never a model nothing here can fetch; within
/// each availability the order is [`select`]'s.
pub fn select_located(
    catalog: &Catalog,
    task: &TaskProfile,
    constraints: &Constraints,
    locate: impl Fn(&Model) -> Option<String>,
) -> Vec<Candidate> {
    judge(catalog, task, constraints, |m| {
        if let Some(path) = locate(m) {
            Availability::Local { path }
        } else if let Some(package) = &m.package {
            Availability::Packaged {
                package: package.clone(),
            }
        } else {
            Availability::Hub
        }
    })
}

fn judge(
    catalog: &Catalog,
    task: &TaskProfile,
    constraints: &Constraints,
    available: impl Fn(&Model) -> Availability,
) -> Vec<Candidate> {
    let floors = floors(catalog);
    let mut out: Vec<Candidate> = catalog
        .iter()
        .map(|m| {
            let (score, reasons) = rank(m, task, constraints, &floors);
            let availability = available(m);
            let runs = constraints.engine.as_ref().map(|e| e.runs(m));
            Candidate {
                id: m.id.clone(),
                params_b: m.params_b,
                score,
                reasons,
                rejected: hard_constraints(m, task, constraints),
                get: availability.how_to_get(m, runs),
                availability,
                runs,
            }
        })
        .collect();
    out.sort_by(ranking_order);
    out
}

/// Accepted before rejected (a model the engine does not run is rejected, and also sorts after
/// the rest among the rejected), then what can be had without a hub download, then higher
/// score, then fewer parameters, then id.
fn ranking_order(a: &Candidate, b: &Candidate) -> Ordering {
    b.accepted()
        .cmp(&a.accepted())
        .then_with(|| (b.runs != Some(false)).cmp(&(a.runs != Some(false))))
        .then_with(|| a.availability.rank().cmp(&b.availability.rank()))
        .then_with(|| b.score.total_cmp(&a.score))
        .then_with(|| a.params_b.total_cmp(&b.params_b))
        .then_with(|| a.id.cmp(&b.id))
}

/// The lowest published value per capability across the catalog: what a model without any
/// evidence for a capability is credited with (never more than a model that published).
fn floors(catalog: &Catalog) -> [f64; 3] {
    Capability::ALL.map(|cap| {
        catalog
            .iter()
            .filter_map(|m| cap.evidence(m).map(|e| e.value))
            .min_by(f64::total_cmp)
            .unwrap_or(0.0)
    })
}

fn floor_of(floors: &[f64; 3], cap: Capability) -> f64 {
    floors[Capability::ALL
        .iter()
        .position(|c| *c == cap)
        .unwrap_or_default()]
}

fn rank(
    model: &Model,
    task: &TaskProfile,
    constraints: &Constraints,
    floors: &[f64; 3],
) -> (f64, Vec<String>) {
    let mut reasons = Vec::new();
    let mut score = 0.0;
    let mut formula = Vec::new();

    for &(cap, weight) in kind_weights(task.kind) {
        let value = match cap.evidence(model) {
            Some(ev) => {
                reasons.push(describe(cap, &ev));
                ev.value
            }
            None => {
                let floor = floor_of(floors, cap);
                reasons.push(format!(
                    "{}: no {} score published, counted as the catalog's lowest, {floor:.1}",
                    cap.label(),
                    cap.evidence_words()
                ));
                floor
            }
        };
        score += weight * value;
        formula.push(format!("{weight} × {value:.1}"));
    }

    if task.kind == TaskKind::ToolCall || task.needs_tools {
        if model.native_tool_calling {
            score += NATIVE_TOOLS_BONUS;
            reasons.push(format!(
                "chat template supports tool calls: +{NATIVE_TOOLS_BONUS}"
            ));
            formula.push(format!("{NATIVE_TOOLS_BONUS}"));
        } else {
            reasons.push(
                "chat template has no tool calls: +0 (fine-tuning must teach a call format)"
                    .to_string(),
            );
        }
    }

    let penalty = size_penalty(model.params_b);
    score -= penalty;
    if penalty > 0.0 {
        reasons.push(format!(
            "size {}B: −{penalty:.1} ({SIZE_PENALTY_PER_DOUBLING} per doubling above 1B; \
             smaller is cheaper to fine-tune and serve)",
            model.params_b
        ));
    } else {
        reasons.push(format!(
            "size {}B: no size penalty (1B or less)",
            model.params_b
        ));
    }
    reasons.push(format!(
        "score {score:.1} = {} − {penalty:.1}",
        formula.join(" + ")
    ));

    let need = model.footprint_gb(constraints.precision, task.p95_tokens);
    reasons.push(format!(
        "memory: {need:.2} GB at {} for {} tokens (weights {:.2} + KV cache {:.2})",
        constraints.precision,
        task.p95_tokens,
        model.weights_gb(constraints.precision),
        model.kv_cache_gb(task.p95_tokens)
    ));
    (score, reasons)
}

/// `SIZE_PENALTY_PER_DOUBLING × log2(params_b)` above 1B, 0 at or below 1B.
fn size_penalty(params_b: f64) -> f64 {
    SIZE_PENALTY_PER_DOUBLING * params_b.max(1.0).log2()
}

fn describe(cap: Capability, ev: &Evidence) -> String {
    let listed: Vec<String> = ev.scores.iter().map(|(b, v)| format!("{b} {v}")).collect();
    let mut s = if ev.scores.len() == 1 {
        format!("{}: {}", cap.label(), listed[0])
    } else {
        format!(
            "{}: {:.1}, mean of {}",
            cap.label(),
            ev.value,
            listed.join(", ")
        )
    };
    if ev.fallback {
        s.push_str(" (no MMLU, MMLU-Redux or MMLU-cloze score published)");
    }
    s
}

fn hard_constraints(model: &Model, task: &TaskProfile, c: &Constraints) -> Vec<String> {
    let mut rejected = Vec::new();
    if model.context_length < task.p95_tokens {
        rejected.push(format!(
            "context {} < task p95 {} tokens",
            model.context_length, task.p95_tokens
        ));
    }
    if let Some(limit) = c.memory_gb {
        let need = model.footprint_gb(c.precision, task.p95_tokens);
        if need > limit {
            rejected.push(format!(
                "needs {need:.2} GB at {} > {limit:.2} GB (weights {:.2} + KV cache {:.2} for {} tokens)",
                c.precision,
                model.weights_gb(c.precision),
                model.kv_cache_gb(task.p95_tokens),
                task.p95_tokens
            ));
        }
    }
    if let Some(allow) = &c.license_allow
        && !allow
            .iter()
            .any(|l| l.trim().eq_ignore_ascii_case(&model.license))
    {
        rejected.push(format!(
            "licence {} not in allow list ({})",
            model.license,
            allow.join(", ")
        ));
    }
    if let Some(max) = c.max_params_b
        && model.params_b > max
    {
        rejected.push(format!("{}B parameters > max {max}B", model.params_b));
    }
    if let Some(engine) = &c.engine
        && !engine.runs(model)
    {
        rejected.push(engine.refusal(model));
    }
    rejected
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedded() -> Catalog {
        Catalog::embedded().unwrap()
    }

    fn task(kind: TaskKind, p95_tokens: u32) -> TaskProfile {
        TaskProfile {
            kind,
            p95_tokens,
            needs_tools: false,
        }
    }

    fn find<'a>(cands: &'a [Candidate], id: &str) -> &'a Candidate {
        cands.iter().find(|c| c.id == id).unwrap()
    }

    fn position(cands: &[Candidate], id: &str) -> usize {
        cands.iter().position(|c| c.id == id).unwrap()
    }

    #[test]
    fn returns_every_model_accepted_first_and_sorted() {
        let catalog = embedded();
        let c = Constraints {
            license_allow: Some(vec!["apache-2.0".into(), "mit".into()]),
            ..Constraints::default()
        };
        let out = select(&catalog, &task(TaskKind::Json, 2000), &c);
        assert_eq!(out.len(), catalog.len());
        let first_rejected = out.iter().position(|c| !c.accepted()).unwrap();
        assert!(first_rejected > 0);
        assert!(out[first_rejected..].iter().all(|c| !c.accepted()));
        for group in [&out[..first_rejected], &out[first_rejected..]] {
            for pair in group.windows(2) {
                assert!(pair[0].score >= pair[1].score, "{pair:?}");
                assert_ne!(ranking_order(&pair[0], &pair[1]), Ordering::Greater);
            }
        }
        // Every candidate explains itself, rejected ones included.
        for cand in &out {
            assert!(
                cand.reasons.iter().any(|r| r.starts_with("score ")),
                "{cand:?}"
            );
            assert!(
                cand.reasons.iter().any(|r| r.starts_with("memory: ")),
                "{cand:?}"
            );
        }
    }

    #[test]
    fn context_constraint_rejects_short_models() {
        let out = select(
            &embedded(),
            &task(TaskKind::Text, 10_000),
            &Constraints::default(),
        );
        let smol = find(&out, "HuggingFaceTB/SmolLM2-1.7B-Instruct");
        assert_eq!(smol.rejected, vec!["context 8192 < task p95 10000 tokens"]);
        assert!(find(&out, "Qwen/Qwen3-1.7B").accepted());
    }

    #[test]
    fn memory_constraint_rejects_with_the_estimate() {
        let catalog = embedded();
        let c = Constraints {
            memory_gb: Some(4.0),
            ..Constraints::default()
        };
        let out = select(&catalog, &task(TaskKind::Text, 4096), &c);
        let qwen7b = find(&out, "Qwen/Qwen2.5-7B-Instruct");
        let need = catalog
            .get("Qwen/Qwen2.5-7B-Instruct")
            .unwrap()
            .footprint_gb(Precision::Q4KM, 4096);
        assert_eq!(qwen7b.rejected.len(), 1);
        assert!(
            qwen7b.rejected[0].starts_with(&format!("needs {need:.2} GB at q4_k_m > 4.00 GB")),
            "{:?}",
            qwen7b.rejected
        );
        assert!(qwen7b.rejected[0].contains("for 4096 tokens"));
        // The same model fits in 4 GB at q4_0? No: 7.62 × 0.5625 = 4.29 GB of weights alone.
        let q40 = Constraints {
            precision: Precision::Q4_0,
            ..c.clone()
        };
        let out = select(&catalog, &task(TaskKind::Text, 4096), &q40);
        assert!(find(&out, "Qwen/Qwen2.5-7B-Instruct").rejected[0].contains("at q4_0"));
        // Small models fit.
        assert!(find(&out, "Qwen/Qwen3-1.7B").accepted());
        // And a model that fits at q4_k_m is refused at f16 when the budget is tight.
        let f16 = Constraints {
            memory_gb: Some(3.0),
            precision: Precision::F16,
            ..Constraints::default()
        };
        let out = select(&catalog, &task(TaskKind::Text, 4096), &f16);
        assert!(!find(&out, "Qwen/Qwen3-1.7B").accepted());
        assert!(find(&out, "Qwen/Qwen2.5-0.5B-Instruct").accepted());
    }

    #[test]
    fn licence_constraint_rejects_outside_the_allow_list() {
        let c = Constraints {
            license_allow: Some(vec!["Apache-2.0".into(), "mit".into()]),
            ..Constraints::default()
        };
        let out = select(&embedded(), &task(TaskKind::Label, 1000), &c);
        assert_eq!(
            find(&out, "meta-llama/Llama-3.2-1B-Instruct").rejected,
            vec!["licence llama3.2 not in allow list (Apache-2.0, mit)"]
        );
        assert_eq!(
            find(&out, "Qwen/Qwen2.5-3B-Instruct").rejected,
            vec!["licence qwen-research not in allow list (Apache-2.0, mit)"]
        );
        assert_eq!(
            find(&out, "Salesforce/xLAM-2-3b-fc-r").rejected,
            vec!["licence cc-by-nc-4.0 not in allow list (Apache-2.0, mit)"]
        );
        // Case-insensitive match.
        assert!(find(&out, "Qwen/Qwen3-4B").accepted());
        assert!(find(&out, "microsoft/Phi-4-mini-instruct").accepted());
    }

    #[test]
    fn size_constraint_rejects_large_models() {
        let c = Constraints {
            max_params_b: Some(2.0),
            ..Constraints::default()
        };
        let out = select(&embedded(), &task(TaskKind::Json, 1000), &c);
        assert_eq!(
            find(&out, "Qwen/Qwen3-4B").rejected,
            vec!["4B parameters > max 2B"]
        );
        assert_eq!(
            find(&out, "Qwen/Qwen2.5-7B-Instruct").rejected,
            vec!["7.62B parameters > max 2B"]
        );
        assert!(find(&out, "Qwen/Qwen3-1.7B").accepted());
    }

    /// An engine shaped like downshift's (the real list is `downshift_slm::ARCHITECTURES`,
    /// which the CLI passes in; `crates/cli/tests/models.rs` checks the real one end to end).
    fn engine() -> Engine {
        let v = |xs: &[&str]| xs.iter().map(|x| x.to_string()).collect();
        Engine {
            gguf: v(&["llama", "qwen2", "qwen3", "gemma3"]),
            model_types: v(&["llama", "mistral", "qwen2", "qwen3", "gemma3_text"]),
        }
    }

    #[test]
    fn engine_constraint_rejects_what_the_engine_does_not_run() {
        let c = Constraints {
            engine: Some(engine()),
            ..Constraints::default()
        };
        let out = select(&embedded(), &task(TaskKind::Json, 1000), &c);
        let phi = find(&out, "microsoft/Phi-4-mini-instruct");
        assert_eq!(phi.runs, Some(false));
        assert_eq!(
            phi.rejected,
            vec![
                "the built-in engine does not run architecture phi3 (it runs llama, mistral, \
                 qwen2, qwen3, gemma3_text from a Hugging Face folder; no GGUF is listed for \
                 this model)"
            ]
        );
        assert!(phi.get.starts_with("not runnable here"), "{}", phi.get);
        // gemma3_text (1B, 270M) loads from its folder; the multimodal 4B (model_type gemma3,
        // no GGUF listed) does not.
        assert_eq!(find(&out, "google/gemma-3-1b-it").runs, Some(true));
        assert!(find(&out, "google/gemma-3-1b-it").accepted());
        assert_eq!(find(&out, "google/gemma-3-4b-it").runs, Some(false));
        assert!(find(&out, "Qwen/Qwen3-0.6B").accepted());
        // Without an engine nothing is judged.
        let plain = select(
            &embedded(),
            &task(TaskKind::Json, 1000),
            &Constraints::default(),
        );
        assert!(plain.iter().all(|c| c.runs.is_none()));
        // A model type the engine lacks still runs from a GGUF whose architecture it has.
        let mut qwen = embedded()
            .get("Qwen/Qwen2.5-0.5B-Instruct")
            .unwrap()
            .clone();
        let gguf_only = Engine {
            model_types: vec![],
            ..engine()
        };
        assert!(gguf_only.runs(&qwen));
        qwen.gguf = None;
        assert!(!gguf_only.runs(&qwen));
    }

    #[test]
    fn a_model_the_engine_cannot_run_is_never_first() {
        // t/big (phi3) has the best published scores for a text task and wins without an
        // engine; with the engine it is rejected, sorted last, and the best runnable one leads.
        let text = format!(
            "{}{}",
            synthetic_model("big", 0.5, "phi3", &[("ifeval", 90.0), ("mmlu", 80.0)]),
            synthetic_model("small", 0.5, "llama", &[("ifeval", 40.0), ("mmlu", 30.0)]),
        );
        let catalog = Catalog::from_toml(&text).unwrap();
        let t = task(TaskKind::Text, 100);
        let plain = select(&catalog, &t, &Constraints::default());
        assert_eq!(plain[0].id, "t/big");
        let c = Constraints {
            engine: Some(engine()),
            ..Constraints::default()
        };
        let out = select_located(&catalog, &t, &c, |_| None);
        assert_eq!(out[0].id, "t/small");
        assert_eq!(out[0].runs, Some(true));
        assert_eq!(out[1].runs, Some(false));
        assert!(!out[1].accepted());
        // Even found on disk, a model the engine cannot run stays behind one it runs.
        let here = select_located(&catalog, &t, &c, |m| {
            (m.id == "t/big").then(|| "/models/big".to_string())
        });
        assert_eq!(here[0].id, "t/small");
        assert!(
            here[1].get.starts_with("not runnable here"),
            "{}",
            here[1].get
        );
        // And the whole embedded catalog, for every kind of task: the first one runs.
        for kind in TaskKind::ALL {
            let out = select_located(&embedded(), &task(kind, 2000), &c, |_| None);
            assert_eq!(out[0].runs, Some(true), "{kind}: {}", out[0].id);
            assert!(out[0].accepted(), "{kind}");
        }
    }

    #[test]
    fn several_failures_are_all_listed() {
        let c = Constraints {
            memory_gb: Some(1.0),
            license_allow: Some(vec!["apache-2.0".into()]),
            max_params_b: Some(1.0),
            engine: Some(Engine {
                gguf: vec!["llama".into()],
                model_types: vec!["llama".into()],
            }),
            precision: Precision::Q8_0,
        };
        let out = select(&embedded(), &task(TaskKind::Text, 40_000), &c);
        let phi = find(&out, "microsoft/Phi-3.5-mini-instruct");
        assert_eq!(phi.rejected.len(), 4, "{:?}", phi.rejected); // context is 128K: passes
        assert!(phi.rejected.iter().all(|r| !r.starts_with("context")));
        // SmolLM2-135M: Apache-2.0, llama, 0.135B, but 8K context, and 40K tokens of KV cache
        // (30 × 3 × 64 × 4 bytes a token = 0.92 GB) do not fit in 1 GB next to the weights.
        let smol = find(&out, "HuggingFaceTB/SmolLM2-135M-Instruct");
        assert_eq!(smol.rejected.len(), 2, "{:?}", smol.rejected);
        assert_eq!(smol.rejected[0], "context 8192 < task p95 40000 tokens");
        assert!(smol.rejected[1].starts_with("needs 1.07 GB at q8_0 > 1.00 GB"));
    }

    #[test]
    fn tool_call_and_text_tasks_rank_differently() {
        let catalog = embedded();
        let c = Constraints::default();
        let tools = select(&catalog, &task(TaskKind::ToolCall, 2000), &c);
        let text = select(&catalog, &task(TaskKind::Text, 2000), &c);

        let ids = |v: &[Candidate]| v.iter().map(|c| c.id.clone()).collect::<Vec<_>>();
        assert_ne!(ids(&tools), ids(&text));

        // The best tool-call candidate has native tool calling and a published BFCL score.
        let best_tool = catalog.get(&tools[0].id).unwrap();
        assert!(best_tool.native_tool_calling, "{}", best_tool.id);
        assert!(
            Capability::ToolUse.evidence(best_tool).is_some(),
            "{}",
            best_tool.id
        );
        // The best text candidate has a proper MMLU-type score.
        let best_text = catalog.get(&text[0].id).unwrap();
        let ev = Capability::Knowledge.evidence(best_text).unwrap();
        assert!(!ev.fallback && ev.value > 60.0, "{}: {ev:?}", best_text.id);

        // The function-calling specialist climbs for tool calls; the template without tool
        // support and the model without a tool benchmark sink.
        let xlam = "Salesforce/xLAM-2-3b-fc-r";
        assert!(position(&tools, xlam) < position(&text, xlam));
        assert!(position(&tools, xlam) < tools.len() / 2);
        let phi35 = "microsoft/Phi-3.5-mini-instruct";
        assert!(position(&tools, phi35) > position(&text, phi35));
        let gemma4b = "google/gemma-3-4b-it";
        assert!(position(&tools, gemma4b) > position(&text, gemma4b));
        // Tool calls explain the template bonus; text tasks don't mention it.
        assert!(
            tools[0]
                .reasons
                .iter()
                .any(|r| r.contains("supports tool calls: +10"))
        );
        assert!(!text[0].reasons.iter().any(|r| r.contains("tool calls")));
    }

    #[test]
    fn a_recommendation_is_never_a_model_nothing_here_can_fetch() {
        let catalog = embedded();
        let c = Constraints::default();
        let t = task(TaskKind::ToolCall, 2000);
        let plain = select(&catalog, &t, &c);
        let smol = "HuggingFaceTB/SmolLM2-135M-Instruct";
        // By published scores alone the 135M model is not first.
        assert_ne!(plain[0].id, smol);
        assert!(
            plain
                .iter()
                .all(|c| c.availability == Availability::Unknown)
        );

        // Nothing on disk: the packaged models come first (SmolLM2, then Gemma 3 270M, whose
        // card publishes no score the ranking uses), the hub-only ones after them, each saying
        // how to get it.
        let none = select_located(&catalog, &t, &c, |_| None);
        assert_eq!(none[0].id, smol);
        assert_eq!(
            none[0].availability,
            Availability::Packaged {
                package: "smollm2".into()
            }
        );
        assert_eq!(none[0].get, "downshift models pull smollm2");
        assert_eq!(none[1].id, "google/gemma-3-270m");
        assert_eq!(none[1].get, "downshift models pull gemma3");
        let gemma4b = find(&none, "google/gemma-3-4b-it");
        assert_eq!(gemma4b.availability, Availability::Hub);
        assert_eq!(
            gemma4b.get,
            "download google/gemma-3-4b-it from the Hugging Face hub, then `downshift models pull PATH`"
        );
        // Among the hub-only models the order is the plain ranking's.
        let packaged = [smol, "google/gemma-3-270m"];
        let hub_plain: Vec<&str> = plain
            .iter()
            .filter(|c| !packaged.contains(&c.id.as_str()))
            .map(|c| c.id.as_str())
            .collect();
        let hub_located: Vec<&str> = none[2..].iter().map(|c| c.id.as_str()).collect();
        assert_eq!(hub_plain, hub_located);

        // A model found locally outranks the packaged one.
        let qwen = "Qwen/Qwen2.5-0.5B-Instruct";
        let here = select_located(&catalog, &t, &c, |m| {
            (m.id == qwen).then(|| "/models/qwen2.5-0.5b-instruct".to_string())
        });
        assert_eq!(here[0].id, qwen);
        assert_eq!(here[1].id, smol);
        assert_eq!(here[0].get, "found at /models/qwen2.5-0.5b-instruct");

        // A hard constraint still wins over availability.
        let tight = Constraints {
            max_params_b: Some(0.1),
            ..Constraints::default()
        };
        let out = select_located(&catalog, &t, &tight, |_| None);
        assert!(out.iter().all(|c| !c.accepted()));
        // JSON keeps the availability with its kind.
        let v = serde_json::to_value(&none[0]).unwrap();
        assert_eq!(v["availability"]["kind"], "packaged");
    }

    #[test]
    fn needs_tools_adds_the_template_bonus_to_other_kinds() {
        let catalog = embedded();
        let plain = task(TaskKind::Json, 2000);
        let with_tools = TaskProfile {
            needs_tools: true,
            ..plain
        };
        let c = Constraints::default();
        let a = select(&catalog, &plain, &c);
        let b = select(&catalog, &with_tools, &c);
        let qwen = "Qwen/Qwen3-1.7B";
        let delta = find(&b, qwen).score - find(&a, qwen).score;
        assert!((delta - NATIVE_TOOLS_BONUS).abs() < 1e-9, "{delta}");
        let gemma = "google/gemma-3-1b-it";
        assert_eq!(find(&a, gemma).score, find(&b, gemma).score);
    }

    /// One synthetic catalog entry (`t/{id}`) of architecture `arch`, without tool calling.
    fn synthetic_model(id: &str, params: f64, arch: &str, scores: &[(&str, f64)]) -> String {
        let mut s = format!(
            "[[model]]\nid = \"t/{id}\"\nfamily = \"T\"\nparams_b = {params}\n\
             architecture = \"{arch}\"\ncontext_length = 8192\nlicense = \"mit\"\n\
             native_tool_calling = false\nweights_dtype = \"bf16\"\nlayers = 4\n\
             kv_heads = 1\nhead_dim = 64\nsource = \"https://example.org/{id}\"\n"
        );
        for (b, v) in scores {
            s.push_str(&format!(
                "[[model.score]]\nbenchmark = \"{b}\"\nvalue = {v}\nsource = \"https://example.org\"\n"
            ));
        }
        s
    }

    /// A catalog of small synthetic models for exact arithmetic.
    fn synthetic() -> Catalog {
        let model = |id: &str, params: f64, tools: bool, scores: &[(&str, f64)]| {
            synthetic_model(id, params, "llama", scores).replace(
                "native_tool_calling = false",
                &format!("native_tool_calling = {tools}"),
            )
        };
        let text = [
            model("a", 0.5, false, &[("ifeval", 60.0), ("mmlu", 50.0)]),
            model("b", 0.3, false, &[("ifeval", 60.0), ("mmlu", 50.0)]),
            model(
                "c",
                4.0,
                true,
                &[("ifeval", 80.0), ("mmlu_redux", 70.0), ("bfcl_v3", 40.0)],
            ),
            model(
                "d",
                1.0,
                true,
                &[("ifeval", 40.0), ("mmlu_pro", 20.0), ("mmlu_pro", 30.0)],
            ),
            model("e", 2.0, true, &[("bfcl", 70.0)]),
        ]
        .concat();
        Catalog::from_toml(&text).unwrap()
    }

    #[test]
    fn score_arithmetic_is_as_documented() {
        let out = select(
            &synthetic(),
            &task(TaskKind::Json, 100),
            &Constraints::default(),
        );
        // c: 0.7 × 80 + 0.3 × 70 − 5 × log2(4) = 56 + 21 − 10.
        assert!((find(&out, "t/c").score - 67.0).abs() < 1e-9);
        // d: knowledge falls back to MMLU-Pro, mean of 20 and 30; 1B pays no size penalty.
        let d = find(&out, "t/d");
        assert!((d.score - (0.7 * 40.0 + 0.3 * 25.0)).abs() < 1e-9);
        assert!(
            d.reasons
                .iter()
                .any(|r| r.contains("no MMLU, MMLU-Redux or MMLU-cloze"))
        );
        // e: no IFEval and no knowledge score: each counts as the catalog's lowest (40, 25).
        let e = find(&out, "t/e");
        let expected = 0.7 * 40.0 + 0.3 * 25.0 - 5.0;
        assert!((e.score - expected).abs() < 1e-9, "{}", e.score);
        assert!(
            e.reasons
                .iter()
                .any(|r| r == "instruction following: no IFEval score published, counted as the catalog's lowest, 40.0"),
            "{:?}",
            e.reasons
        );
    }

    #[test]
    fn ties_go_to_the_smaller_model() {
        let out = select(
            &synthetic(),
            &task(TaskKind::Label, 100),
            &Constraints::default(),
        );
        let a = position(&out, "t/a");
        let b = position(&out, "t/b");
        assert_eq!(find(&out, "t/a").score, find(&out, "t/b").score);
        assert_eq!(b + 1, a, "0.3B before 0.5B at equal score");
    }

    #[test]
    fn tool_call_weights_favour_bfcl_and_templates() {
        let out = select(
            &synthetic(),
            &task(TaskKind::ToolCall, 100),
            &Constraints::default(),
        );
        // e: 0.7 × 70 + 0.3 × 40 (IFEval floor) + 10 − 5 = 66; c: 0.7 × 40 + 0.3 × 80 + 10 − 10 = 52.
        assert!((find(&out, "t/e").score - 66.0).abs() < 1e-9);
        assert!((find(&out, "t/c").score - 52.0).abs() < 1e-9);
        assert_eq!(out[0].id, "t/e");
        assert!(
            find(&out, "t/a")
                .reasons
                .iter()
                .any(|r| r.contains("no tool calls: +0"))
        );
    }

    #[test]
    fn task_kinds_parse_and_weights_sum_to_one() {
        for kind in TaskKind::ALL {
            assert_eq!(kind.as_str().parse::<TaskKind>().unwrap(), kind);
            let sum: f64 = kind_weights(kind).iter().map(|(_, w)| w).sum();
            assert!((sum - 1.0).abs() < 1e-12, "{kind}");
        }
        assert_eq!("Tool-Call".parse::<TaskKind>().unwrap(), TaskKind::ToolCall);
        let err = "chat".parse::<TaskKind>().unwrap_err().to_string();
        assert!(
            err.contains("\"chat\"") && err.contains("tool_call"),
            "{err}"
        );
    }

    #[test]
    fn size_penalty_is_zero_up_to_1b_then_five_per_doubling() {
        assert_eq!(size_penalty(0.135), 0.0);
        assert_eq!(size_penalty(1.0), 0.0);
        assert!((size_penalty(2.0) - 5.0).abs() < 1e-12);
        assert!((size_penalty(8.0) - 15.0).abs() < 1e-12);
    }

    #[test]
    fn candidates_serialize_for_json_output() {
        let out = select(
            &synthetic(),
            &task(TaskKind::Text, 100),
            &Constraints::default(),
        );
        let json = serde_json::to_value(&out[0]).unwrap();
        assert!(json["id"].is_string() && json["score"].is_number());
        assert!(json["reasons"].is_array() && json["rejected"].is_array());
        let back: Candidate = serde_json::from_value(json).unwrap();
        assert_eq!(back, out[0]);
        let c = serde_json::to_value(Constraints::default()).unwrap();
        assert_eq!(c["precision"], "q4_k_m");
        let t = serde_json::to_value(task(TaskKind::ToolCall, 5)).unwrap();
        assert_eq!(t["kind"], "tool_call");
    }
}
