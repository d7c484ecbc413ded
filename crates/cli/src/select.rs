//! `select`: which small model should become a task's specialist (step S4) — the catalog's
//! hard constraints and ranking, and with `--bakeoff` the locally available candidates run
//! zero-shot on the task's validation split.

use anyhow::Result;
use downshift_curate::CurateConfig;
use downshift_lifecycle::select::{SelectRequest, select};
use downshift_store::DataDir;
use serde_json::{Value, json};

use crate::output::table;

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

pub fn select_cmd(a: SelectArgs, data: &DataDir, curate: &CurateConfig) -> Result<()> {
    let sel = select(
        &SelectRequest {
            task: a.task.clone(),
            memory_gb: a.memory_gb,
            license_allow: a.license_allow.clone(),
            max_params: a.max_params,
            bakeoff: a.bakeoff,
            bakeoff_limit: a.bakeoff_limit,
            threads: a.threads,
            quiet: a.json,
        },
        data,
        curate,
    )?;
    let (task, p95, ranked) = (&sel.task, sel.p95_tokens, &sel.ranked);
    let bake_of = |id: &str| sel.bakeoff_of(id).cloned();
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
        let best = &sel.recommended;
        println!(
            "{}",
            json!({"task": a.task, "kind": sel.kind, "p95_tokens": p95,
                   "recommended": best, "candidates": cands})
        );
        return Ok(());
    }
    println!(
        "task {} ({}, p95 {} tokens per call)",
        task.id, sel.kind, p95
    );
    let mut rows = Vec::new();
    for c in ranked {
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
            match c.runs {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            }
            .into(),
            c.get.clone(),
            why,
        ]);
    }
    table(
        &["MODEL", "PARAMS", "SCORE", "BAKE-OFF", "RUNS", "GET", "WHY"],
        &rows,
    );
    if let Some(best) = &sel.recommended {
        println!("recommended: {best}");
    }
    Ok(())
}
