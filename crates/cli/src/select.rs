//! `select`: which small model should become a task's specialist (step S4) — the catalog's
//! hard constraints and ranking, and with `--bakeoff` the locally available candidates run
//! zero-shot on the task's validation split.

use anyhow::{Context, Result, anyhow};
use downshift_curate::CurateConfig;
use downshift_evaluate::{OutputKind, kind_of_many};
use downshift_select::{Candidate, Catalog, Constraints, TaskKind, TaskProfile, select_located};
use downshift_slm::GenerateOptions;
use downshift_store::DataDir;
use downshift_train::{ChatRecord, Split, SplitConfig};
use serde_json::{Value, json};

use crate::evaluate::{run_model, zero_shot_prompt};
use crate::local::{ModelArgs, load_model, resolve_model};
use crate::output::table;
use crate::train::DataArgs;

/// The architectures the built-in engine runs (see `downshift_slm::llama`).
const RUNTIME_ARCHITECTURES: &[&str] = &["llama", "qwen2", "qwen3", "gemma3", "gemma3_text"];

#[derive(Debug, clap::Args)]
pub struct SelectArgs {
    /// The discovered task (see `downshift tasks list`).
    #[arg(long, value_name = "ID")]
    task: String,
    /// Memory the specialist may use, in GB (weights at 4-bit plus the KV cache of the task's
    /// longest calls).
    #[arg(long, value_name = "GB")]
    memory_gb: Option<f64>,
    /// Licences allowed (comma-separated, e.g. apache-2.0,mit).
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    license_allow: Option<Vec<String>>,
    /// Largest model, in billions of parameters.
    #[arg(long, value_name = "B")]
    max_params: Option<f64>,
    /// Also run the candidates found locally (./models, $DOWNSHIFT_MODELS_DIR, the Hugging
    /// Face cache) zero-shot on the task's validation split.
    #[arg(long)]
    bakeoff: bool,
    /// Validation calls per candidate in the bake-off.
    #[arg(long, default_value_t = 20, value_name = "N")]
    bakeoff_limit: usize,
    /// Compute threads for the bake-off.
    #[arg(long)]
    threads: Option<usize>,
    /// Print the ranking as JSON.
    #[arg(long)]
    json: bool,
}

fn task_kind(output_kind: &str) -> TaskKind {
    match output_kind {
        "tool" => TaskKind::ToolCall,
        "json" => TaskKind::Json,
        "label" => TaskKind::Label,
        _ => TaskKind::Text,
    }
}

fn eval_kind(k: TaskKind) -> OutputKind {
    match k {
        TaskKind::ToolCall => OutputKind::ToolCall,
        TaskKind::Json => OutputKind::Json,
        TaskKind::Label => OutputKind::Label,
        TaskKind::Text => OutputKind::Text,
    }
}

/// Zero-shot exact match of one local candidate on validation records.
fn bakeoff_one(
    id: &str,
    val: &[&ChatRecord],
    kind: OutputKind,
    threads: Option<usize>,
) -> Result<Value> {
    let lm = load_model(&ModelArgs {
        model: id.to_string(),
        threads,
    })?;
    let opts = GenerateOptions {
        max_tokens: 256,
        temperature: 0.0,
        ..Default::default()
    };
    let run = run_model(&lm, val, kind, &opts, &|r| zero_shot_prompt(&lm, r))?;
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

pub fn select_cmd(a: SelectArgs, data: &DataDir, curate: &CurateConfig) -> Result<()> {
    let store = data.open_store()?;
    let task = store.get_task(&a.task)?.ok_or_else(|| {
        anyhow!(
            "no task '{}' (see `downshift tasks list`; tasks come from `downshift discover`)",
            a.task
        )
    })?;
    let st = &task.stats;
    let p95 = st["prompt_tokens"]["p95"].as_u64().unwrap_or(0)
        + st["completion_tokens"]["p95"].as_u64().unwrap_or(0);
    let kind = task_kind(st["output_kind"].as_str().unwrap_or("text"));
    let profile = TaskProfile {
        kind,
        p95_tokens: p95.min(u32::MAX as u64) as u32,
        needs_tools: kind == TaskKind::ToolCall,
    };
    let constraints = Constraints {
        memory_gb: a.memory_gb,
        license_allow: a.license_allow.clone(),
        max_params_b: a.max_params,
        supported_architectures: RUNTIME_ARCHITECTURES
            .iter()
            .map(|s| s.to_string())
            .collect(),
        ..Default::default()
    };
    let catalog = Catalog::embedded().context("the embedded model catalog is invalid")?;
    let ranked: Vec<Candidate> = select_located(&catalog, &profile, &constraints, |m| {
        resolve_model(&m.id).ok().map(|p| p.display().to_string())
    });

    let mut bake: Vec<(String, Value)> = Vec::new();
    if a.bakeoff {
        let (dataset, recs) = DataArgs {
            task: Some(a.task.clone()),
            dataset: None,
        }
        .load(data, curate)?;
        let split = SplitConfig::default();
        let val: Vec<&ChatRecord> = recs
            .iter()
            .filter(|r| split.split_of_record(r) == Split::Validation)
            .take(a.bakeoff_limit)
            .collect();
        let kind = kind_of_many(recs.iter().map(|r| &r.answer)).unwrap_or(eval_kind(kind));
        for c in ranked.iter().filter(|c| c.rejected.is_empty()) {
            if resolve_model(&c.id).is_err() {
                continue;
            }
            if !a.json {
                eprintln!(
                    "bake-off: {} on {} validation calls of '{dataset}'",
                    c.id,
                    val.len()
                );
            }
            let r = bakeoff_one(&c.id, &val, kind, a.threads)
                .unwrap_or_else(|e| json!({"error": format!("{e:#}")}));
            bake.push((c.id.clone(), r));
        }
    }
    let bake_of = |id: &str| bake.iter().find(|(b, _)| b == id).map(|(_, v)| v.clone());

    if a.json {
        let cands: Vec<Value> = ranked
            .iter()
            .map(|c| {
                let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
                if let Some(b) = bake_of(&c.id) {
                    v["bakeoff"] = b;
                }
                v
            })
            .collect();
        let best = recommended(&ranked, &bake);
        println!(
            "{}",
            json!({"task": a.task, "kind": st["output_kind"], "p95_tokens": p95,
                   "recommended": best, "candidates": cands})
        );
        return Ok(());
    }
    println!(
        "task {} ({}, p95 {} tokens per call)",
        task.id,
        st["output_kind"].as_str().unwrap_or("text"),
        p95
    );
    let mut rows = Vec::new();
    for c in &ranked {
        let b = bake_of(&c.id);
        let em = b
            .as_ref()
            .and_then(|b| b["exact_match"].as_f64())
            .map(|v| format!("{:.0}%", v * 100.0))
            .unwrap_or_else(|| "-".into());
        let why = if c.rejected.is_empty() {
            c.reasons.join("; ")
        } else {
            format!("rejected: {}", c.rejected.join("; "))
        };
        rows.push(vec![
            c.id.clone(),
            format!("{:.2}B", c.params_b),
            if c.rejected.is_empty() {
                format!("{:.2}", c.score)
            } else {
                "-".into()
            },
            em,
            c.get.clone(),
            why,
        ]);
    }
    table(
        &["MODEL", "PARAMS", "SCORE", "BAKE-OFF", "GET", "WHY"],
        &rows,
    );
    if let Some(best) = recommended(&ranked, &bake) {
        println!("recommended: {best}");
    }
    Ok(())
}
