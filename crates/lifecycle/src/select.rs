//! Choosing a task's specialist model (step S4): the catalog's hard constraints and ranking,
//! and optionally the locally available candidates run zero-shot on the task's validation
//! split (a bake-off).

use anyhow::{Context, Result, anyhow};
use downshift_curate::CurateConfig;
use downshift_evaluate::kind_of_many;
use downshift_select::{Candidate, Catalog, Constraints, TaskKind, TaskProfile, select_located};
use downshift_slm::GenerateOptions;
use downshift_store::{DataDir, TaskRecord};
use downshift_train::{ChatRecord, Split, SplitConfig};
use serde_json::{Value, json};

use crate::dataset::DataSource;
use crate::evaluate::{run_model, zero_shot_prompt};
use crate::model::{engine, load_model, resolve_model};

/// What to rank models for, under which constraints.
#[derive(Clone, Debug, Default)]
pub struct SelectRequest {
    /// The discovered task.
    pub task: String,
    /// Memory the specialist may use, in GB.
    pub memory_gb: Option<f64>,
    /// Licences allowed.
    pub license_allow: Option<Vec<String>>,
    /// Largest model, in billions of parameters.
    pub max_params: Option<f64>,
    /// Also run the locally found candidates zero-shot on the validation split.
    pub bakeoff: bool,
    /// Validation calls per candidate in the bake-off.
    pub bakeoff_limit: usize,
    /// Compute threads for the bake-off.
    pub threads: Option<usize>,
    /// No notes on stderr.
    pub quiet: bool,
}

/// The ranking of the catalog for one task.
#[derive(Clone, Debug)]
pub struct Selection {
    /// The task.
    pub task: TaskRecord,
    /// Its output kind, as the catalog ranks it.
    pub kind: TaskKind,
    /// p95 prompt plus completion tokens of its calls.
    pub p95_tokens: u64,
    /// Every catalog model, best first, with why it was ranked or rejected.
    pub ranked: Vec<Candidate>,
    /// Bake-off results by model id (`exact_match`, `schema_valid`, `latency_p50_ms`,
    /// `examples`, or `error`).
    pub bakeoff: Vec<(String, Value)>,
    /// The model to train.
    pub recommended: Option<String>,
}

impl Selection {
    /// The bake-off result of model `id`, if it ran.
    pub fn bakeoff_of(&self, id: &str) -> Option<&Value> {
        self.bakeoff.iter().find(|(b, _)| b == id).map(|(_, v)| v)
    }
}

/// Zero-shot exact match of one local candidate on validation records.
fn bakeoff_one(
    id: &str,
    val: &[&ChatRecord],
    kind: TaskKind,
    threads: Option<usize>,
) -> Result<Value> {
    let lm = load_model(id, threads)?;
    let opts = GenerateOptions {
        max_tokens: 256,
        temperature: 0.0,
        ..Default::default()
    };
    let run = run_model(&lm, val, kind, &opts, &|r| zero_shot_prompt(&lm, r), false)?;
    let s = run.report.summary();
    Ok(
        json!({"exact_match": s.exact_match, "schema_valid": s.schema_valid,
              "latency_p50_ms": s.latency_p50_ms, "examples": val.len()}),
    )
}

/// The accepted candidate with the best bake-off exact match (ties and no bake-off: the
/// catalog ranking's order, which puts what can be had without a hub download first); never a
/// model that must first be downloaded from the hub while another can run.
fn recommended(ranked: &[Candidate], bake: &[(String, Value)]) -> Option<String> {
    let em = |id: &str| {
        bake.iter()
            .find(|(b, _)| b == id)
            .and_then(|(_, v)| v["exact_match"].as_f64())
            .unwrap_or(-1.0)
    };
    let mut best: Option<&Candidate> = None;
    let obtainable = ranked
        .iter()
        .any(|c| c.accepted() && c.availability.obtainable());
    for c in ranked
        .iter()
        .filter(|c| c.accepted() && (c.availability.obtainable() || !obtainable))
    {
        if best.is_none_or(|b| em(&c.id) > em(&b.id)) {
            best = Some(c);
        }
    }
    best.map(|c| c.id.clone())
}

/// Ranks the catalog's models for `req.task` (and runs the bake-off when asked).
pub fn select(req: &SelectRequest, data: &DataDir, curate: &CurateConfig) -> Result<Selection> {
    let store = data.open_store()?;
    let task = store.get_task(&req.task)?.ok_or_else(|| {
        anyhow!(
            "no task '{}' (see `downshift tasks list`; tasks come from `downshift discover`)",
            req.task
        )
    })?;
    let st = task.task_stats();
    let p95 = st.prompt_tokens.p95 + st.completion_tokens.p95;
    // A task without usable answers is ranked as free text.
    let kind = st.output_kind.unwrap_or(TaskKind::Text);
    let profile = TaskProfile {
        kind,
        p95_tokens: p95.min(u32::MAX as u64) as u32,
        needs_tools: kind == TaskKind::ToolCall,
    };
    let constraints = Constraints {
        memory_gb: req.memory_gb,
        license_allow: req.license_allow.clone(),
        max_params_b: req.max_params,
        engine: Some(engine()),
        ..Default::default()
    };
    let catalog = Catalog::embedded().context("the embedded model catalog is invalid")?;
    let ranked: Vec<Candidate> = select_located(&catalog, &profile, &constraints, |m| {
        resolve_model(&m.id).ok().map(|p| p.display().to_string())
    });

    let mut bake: Vec<(String, Value)> = Vec::new();
    if req.bakeoff {
        let (dataset, recs) = DataSource::Task(req.task.clone()).load(data, curate, req.quiet)?;
        let split = SplitConfig::default();
        let val: Vec<&ChatRecord> = recs
            .iter()
            .filter(|r| split.split_of_record(r) == Split::Validation)
            .take(req.bakeoff_limit)
            .collect();
        let kind = kind_of_many(recs.iter().map(|r| &r.answer)).unwrap_or(kind);
        for c in ranked.iter().filter(|c| c.rejected.is_empty()) {
            if resolve_model(&c.id).is_err() {
                continue;
            }
            if !req.quiet {
                eprintln!(
                    "bake-off: {} on {} validation calls of '{dataset}'",
                    c.id,
                    val.len()
                );
            }
            let r = bakeoff_one(&c.id, &val, kind, req.threads)
                .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
            bake.push((c.id.clone(), r));
        }
    }
    let best = recommended(&ranked, &bake);
    Ok(Selection {
        task,
        kind,
        p95_tokens: p95,
        ranked,
        bakeoff: bake,
        recommended: best,
    })
}
