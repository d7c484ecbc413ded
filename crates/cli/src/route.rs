//! `downshift promote` and `downshift policies`: the per-task routing policies (S6).

use std::path::Path;

use anyhow::{Context, Result};
use downshift_route::{Mode, PolicyChange, change_policy};
use downshift_store::DataDir;
use downshift_train::SpecialistMeta;
use serde_json::{Value, json};

use crate::calls::cli_actor;
use crate::config::Config;
use crate::output::{rfc3339, table};

#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// The discovered task (see `downshift tasks list`).
    task: String,
    /// off | shadow | canary:P | on.
    #[arg(long, value_parser = parse_mode)]
    mode: Option<Mode>,
    /// The specialist: an adapter folder written by `downshift train` (built-in engine) — a
    /// path, or a name in the adapters folder (`adapters` in the data directory) — or the name
    /// of a configured [[specialists]] endpoint.
    #[arg(long, value_name = "DIR|NAME")]
    specialist: Option<String>,
    /// Least mean token log-probability a specialist answer must have, else the LLM answers.
    #[arg(long, value_name = "LOGPROB", allow_hyphen_values = true)]
    min_confidence: Option<f64>,
    /// Rolling agreement below this demotes on → shadow (0–1).
    #[arg(long, value_name = "X")]
    threshold: Option<f64>,
    /// Agreement measurements the rolling mean is taken over.
    #[arg(long, value_name = "N")]
    window: Option<u32>,
    /// In `on` mode, the share of requests also sent to the LLM to keep measuring (0–1).
    #[arg(long, value_name = "X")]
    shadow_sample: Option<f64>,
    /// Print the new policy as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_mode(s: &str) -> Result<Mode, String> {
    s.parse()
        .map_err(|e: downshift_store::StoreError| e.to_string())
}

/// A warning about a specialist that will not serve: neither an endpoint nor an adapter of
/// this task. The gateway would fall back on every request; say so now.
fn check_specialist(cfg: &Config, task: &str, spec: &str) -> Result<Option<String>> {
    if cfg.specialists.iter().any(|e| e.name == spec) {
        return Ok(None);
    }
    let dir = Path::new(spec);
    let meta = SpecialistMeta::read(dir)
        .with_context(|| format!("cannot read the specialist in {spec}"))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "specialist '{spec}' is neither a configured [[specialists]] endpoint nor an adapter folder written by `downshift train`"
            )
        })?;
    let mut notes = Vec::new();
    if let Some(t) = &meta.task
        && t != task
    {
        notes.push(format!("it was trained for task {t}, not {task}"));
    }
    match std::fs::read_to_string(dir.join("eval.json")) {
        Err(_) => notes.push("it has not been evaluated (run `downshift eval`)".into()),
        Ok(text) => {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            if let Some(x) = v["exact_match"].as_f64() {
                notes.push(format!("held-out exact match {:.1}%", x * 100.0));
            }
        }
    }
    Ok((!notes.is_empty()).then(|| notes.join("; ")))
}

pub fn promote(a: PromoteArgs, cfg: &Config, data: &DataDir) -> Result<()> {
    let store = data.open_store()?;
    // An adapter folder is stored as an absolute path: the gateway may run from elsewhere.
    let specialist = match &a.specialist {
        Some(s) if !s.is_empty() && !cfg.specialists.iter().any(|e| &e.name == s) => Some(
            std::fs::canonicalize(cfg.adapter_path(data, Path::new(s)))
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| s.clone()),
        ),
        other => other.clone(),
    };
    let note = match &specialist {
        Some(s) if !s.is_empty() => check_specialist(cfg, &a.task, s)?,
        _ => None,
    };
    let change = PolicyChange {
        mode: a.mode,
        specialist,
        min_confidence: a.min_confidence,
        agreement_threshold: a.threshold,
        window: a.window,
        shadow_sample: a.shadow_sample,
    };
    let (p, from) = change_policy(&*store, &a.task, &change, &cli_actor())?;
    report(&a, &p, from, note)
}

fn report(
    a: &PromoteArgs,
    p: &downshift_route::Policy,
    from: Option<Mode>,
    note: Option<String>,
) -> Result<()> {
    if a.json {
        println!("{}", json!(p));
        return Ok(());
    }
    let from = from.map_or("none".to_string(), |m| m.to_string());
    println!(
        "{}: {from} → {} (specialist {})",
        p.task,
        p.mode,
        p.specialist.as_deref().unwrap_or("none")
    );
    if let Some(n) = note {
        eprintln!("note: {n}");
    }
    eprintln!("a running gateway applies it within route.reload_ms");
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct PoliciesArgs {
    /// Also show this many of the newest route events (promotions, demotions, fallbacks).
    #[arg(long, default_value_t = 10, value_name = "N")]
    events: usize,
    /// One JSON object: `{"policies": [...], "events": [...], "agreement": {task: {...}}}`.
    #[arg(long)]
    json: bool,
}

pub fn policies(a: PoliciesArgs, data: &DataDir) -> Result<()> {
    let store = data.open_existing_store()?;
    let policies = store.list_policies()?;
    let events = store.list_route_events(None, a.events)?;
    let mut agreement = serde_json::Map::new();
    let mut rows = Vec::new();
    for p in &policies {
        let (measurements, mean) = downshift_route::window_agreement(&*store, p)?;
        agreement.insert(
            p.task.clone(),
            json!({"measurements": measurements, "mean": mean}),
        );
        rows.push(vec![
            p.task.clone(),
            p.mode.to_string(),
            p.specialist.clone().unwrap_or_else(|| "-".into()),
            mean.map_or("-".into(), |m| {
                format!("{:.1}% of {measurements}", m * 100.0)
            }),
            format!("{:.0}% / {}", p.agreement_threshold * 100.0, p.window),
            p.updated_by.clone(),
        ]);
    }
    if a.json {
        println!(
            "{}",
            json!({"policies": policies, "events": events, "agreement": agreement})
        );
        return Ok(());
    }
    if policies.is_empty() {
        eprintln!(
            "no task has a routing policy yet: `downshift promote TASK --mode shadow --specialist DIR`"
        );
    } else {
        table(
            &["TASK", "MODE", "SPECIALIST", "AGREEMENT", "GATE", "BY"],
            &rows,
        );
    }
    if !events.is_empty() {
        println!();
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|e| {
                vec![
                    rfc3339(e.ts_ms),
                    e.task.clone(),
                    e.kind.as_str().to_string(),
                    e.detail.to_string(),
                ]
            })
            .collect();
        table(&["TIME", "TASK", "EVENT", "DETAIL"], &rows);
    }
    Ok(())
}
