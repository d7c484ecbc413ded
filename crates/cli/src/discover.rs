//! `discover` and `tasks list|show` (step S3).

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use downshift_discover::CallInput;
use downshift_discover::mask::Masker;
use downshift_discover::{DiscoverConfig, EmbedderKind};
use downshift_lifecycle::discover::{DiscoverRequest, Discovered, discover, payload_json};
use downshift_store::{AuditEntry, CallFilter, DataDir, TaskRecord};
use serde_json::{Value, json};

use crate::calls::cli_actor;
use crate::output::table;

#[derive(Debug, clap::Args)]
pub struct DiscoverArgs {
    /// Discover over this curated dataset (name or id) instead of the whole call log.
    #[arg(long, value_name = "NAME")]
    dataset: Option<String>,
    /// Print `{"tasks": […], "assignments": […], "stats": {…}}`.
    #[arg(long)]
    json: bool,
    /// Smallest number of calls that makes a task (default: discover.min_cluster_size).
    #[arg(long, value_name = "N")]
    min_cluster_size: Option<usize>,
    /// Embedding for the semantic split (default: discover.embedder).
    #[arg(long, value_enum)]
    embedder: Option<EmbedderArg>,
    /// all-MiniLM-L6-v2 folder (default: discover.model_dir).
    #[arg(long, value_name = "DIR")]
    model_dir: Option<PathBuf>,
    /// Print the result without storing tasks and assignments.
    #[arg(long)]
    dry_run: bool,
    /// Also measure the router's placement: train the request → task classifier on the calls
    /// not held back (four in five, by id) and report how many held-back calls of each task
    /// it places in that task (reads the call log a second time).
    #[arg(long)]
    placement: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum EmbedderArg {
    Minilm,
    Hashed,
}

#[derive(Debug, clap::Subcommand)]
pub enum TasksCommand {
    /// List the tasks of the last discovery run, largest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one task with sample calls (decrypted; audited).
    Show {
        id: String,
        /// How many sample calls to show.
        #[arg(long, default_value_t = 3)]
        samples: usize,
        #[arg(long)]
        json: bool,
    },
}

pub fn discover_cmd(a: DiscoverArgs, data: &DataDir, cfg: &DiscoverConfig) -> Result<()> {
    let mut cfg = cfg.clone();
    if let Some(n) = a.min_cluster_size {
        cfg.min_cluster_size = n;
    }
    if let Some(e) = a.embedder {
        cfg.embedder = match e {
            EmbedderArg::Minilm => EmbedderKind::Minilm,
            EmbedderArg::Hashed => EmbedderKind::Hashed,
        };
    }
    if let Some(d) = a.model_dir {
        cfg.model_dir = d;
    }
    let Discovered {
        calls,
        tags,
        result,
        placement,
    } = discover(
        &DiscoverRequest {
            dataset: a.dataset.clone(),
            dry_run: a.dry_run,
            placement: a.placement,
            spinner: true,
        },
        data,
        &cfg,
    )?;

    if a.json {
        let assignments: Vec<Value> = calls
            .iter()
            .zip(&result.assignments)
            .zip(&tags)
            .map(|((c, t), tags)| {
                json!({"call_id": c.id, "task_id": t.map(|t| result.tasks[t].id.as_str()),
                       "tags": tags})
            })
            .collect();
        let mut out =
            json!({"tasks": result.tasks, "assignments": assignments, "stats": result.stats});
        if let Some(p) = &placement {
            out["placement"] = p.clone();
        }
        println!("{out}");
        return Ok(());
    }
    if let Some(p) = &placement {
        println!(
            "router placement on held-back calls: {:.1}% ({} of {}), lowest task {:.1}%",
            100.0 * p["share"].as_f64().unwrap_or(0.0),
            p["placed"],
            p["held_back"],
            100.0 * p["min_task_share"].as_f64().unwrap_or(0.0)
        );
    }
    let rows: Vec<Vec<String>> = result.tasks.iter().map(task_row).collect();
    table(
        &[
            "ID", "CALLS", "%CALLS", "%TOKENS", "%COST", "SUIT", "CONSIST", "LABEL",
        ],
        &rows,
    );
    let s = &result.stats;
    println!(
        "\n{} calls → {} tasks, {} noise ({:.1}%); {} structural groups ({} split semantically), {} texts embedded ({}); {:.1}s{}",
        s.calls,
        result.tasks.len(),
        s.noise,
        100.0 * s.noise as f64 / s.calls.max(1) as f64,
        s.structural_groups,
        s.groups_split,
        s.texts_embedded,
        s.embedder,
        s.seconds_total,
        if a.dry_run {
            " (dry run: nothing stored)"
        } else {
            ""
        }
    );
    Ok(())
}

fn pct(v: &Value) -> String {
    format!("{:.1}", v.as_f64().unwrap_or(0.0) * 100.0)
}

fn task_row(t: &downshift_discover::Task) -> Vec<String> {
    let v = serde_json::to_value(t).unwrap_or(Value::Null);
    stats_row(&t.id, &t.label, &v)
}

fn stats_row(id: &str, label: &str, v: &Value) -> Vec<String> {
    vec![
        id.to_owned(),
        v["calls"].as_u64().unwrap_or(0).to_string(),
        pct(&v["share_calls"]),
        pct(&v["share_tokens"]),
        pct(&v["share_cost"]),
        format!("{:.2}", v["suitability"].as_f64().unwrap_or(0.0)),
        format!("{:.2}", v["output_consistency"].as_f64().unwrap_or(0.0)),
        label.to_owned(),
    ]
}

/// The task a person meant by `id`: the exact id, or the one task whose id starts with it
/// (with or without the `task_` of every id).
fn resolve_task_id(tasks: &[downshift_store::TaskRecord], id: &str) -> Result<String> {
    let id = id.trim();
    if tasks.iter().any(|t| t.id == id) {
        return Ok(id.to_owned());
    }
    let matching: Vec<&str> = tasks
        .iter()
        .map(|t| t.id.as_str())
        .filter(|t| {
            !id.is_empty()
                && (t.starts_with(id) || t.strip_prefix("task_").is_some_and(|h| h.starts_with(id)))
        })
        .collect();
    match matching.as_slice() {
        [] => bail!(
            "no task '{id}' (see `downshift tasks list`; tasks come from `downshift discover`)"
        ),
        [one] => Ok((*one).to_owned()),
        many => bail!(
            "the id prefix '{id}' matches several tasks ({}); give more of the id",
            many.join(", ")
        ),
    }
}

pub fn tasks(c: TasksCommand, data: &DataDir) -> Result<()> {
    let store = data.open_existing_store()?;
    match c {
        TasksCommand::List { json } => {
            let tasks = store.list_tasks()?;
            if json {
                for t in &tasks {
                    println!("{}", task_json(t));
                }
                return Ok(());
            }
            if tasks.is_empty() {
                println!("no tasks yet: run `downshift discover`");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = tasks
                .iter()
                .map(|t| stats_row(&t.id, &t.label, &t.stats))
                .collect();
            table(
                &[
                    "ID", "CALLS", "%CALLS", "%TOKENS", "%COST", "SUIT", "CONSIST", "LABEL",
                ],
                &rows,
            );
            Ok(())
        }
        TasksCommand::Show { id, samples, json } => {
            let id = resolve_task_id(&store.list_tasks()?, &id)?;
            let task = store.get_task(&id)?.with_context(|| {
                format!("no task '{id}' (see `downshift tasks list`; tasks come from `downshift discover`)")
            })?;
            let (keyring, _) = data.keyring(false)?;
            let masker = Masker::new().context("cannot build the PII detector")?;
            let metas = store.list_calls(&CallFilter {
                task: Some(id.clone()),
                limit: Some(samples),
                ..CallFilter::default()
            })?;
            let mut sample_calls = Vec::new();
            for m in metas {
                let Some(sealed) = store.get_call(&m.id)? else {
                    continue;
                };
                store.audit(&AuditEntry::new(
                    &cli_actor(),
                    "read_raw",
                    Some(&m.id),
                    Some("tasks show"),
                ))?;
                let payload = keyring.open(&sealed)?;
                let request = payload_json(&payload.request);
                let response = payload_json(&payload.response);
                // Samples are shown masked, like every other text of a task: names, e-mails,
                // numbers and quoted material become their type.
                sample_calls.push(downshift_discover::mask::masked_sample(
                    &masker,
                    &CallInput {
                        id: m.id.clone(),
                        model: m.model.clone(),
                        request,
                        response,
                        prompt_tokens: m.prompt_tokens,
                        completion_tokens: m.completion_tokens,
                    },
                ));
            }
            let mut out = task_json(&task);
            out["samples"] = Value::Array(sample_calls);
            if json {
                println!("{out}");
            } else {
                println!("{}", serde_json::to_string_pretty(&out)?);
            }
            Ok(())
        }
    }
}

fn task_json(t: &TaskRecord) -> Value {
    let mut v = t.stats.clone();
    if !v.is_object() {
        v = json!({});
    }
    v["id"] = json!(t.id);
    v["label"] = json!(t.label);
    v["calls"] = json!(t.calls);
    v["updated"] = json!(crate::output::rfc3339(t.updated_ms));
    v
}
