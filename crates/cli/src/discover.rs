//! `discover` and `tasks list|show` (step S3).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use downshift_discover::embed::Embedder;
use downshift_discover::{
    CallInput, DiscoverConfig, EmbedderKind, ExtractedCall, HashedEmbedder, PriorTask,
    TextEmbedder, discover_extracted,
};
use downshift_store::{
    AuditEntry, CallFilter, CallMeta, DataDir, Keyring, Store, TaskRecord, now_ms,
};
use rayon::prelude::*;
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

/// Calls to discover over, with their tags (for evaluation output only).
type Loaded = (Vec<ExtractedCall>, Vec<BTreeMap<String, String>>);

fn parse(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes).unwrap_or(Value::Null)
    }
}

/// Calls of the log (chat completions only), oldest first, with their tags.
fn load_log(store: &dyn Store, keyring: &Keyring) -> Result<Loaded> {
    const PAGE: usize = 5000;
    let mut out: Vec<ExtractedCall> = Vec::new();
    let mut calls = Vec::new();
    let mut tags = Vec::new();
    let mut page = CallFilter {
        limit: Some(PAGE),
        ..CallFilter::default()
    };
    loop {
        let sealed = store.scan_calls(&page)?;
        let Some(last) = sealed.last() else { break };
        page.after = Some((last.meta.ts_ms, last.meta.id.clone()));
        let full = sealed.len() == PAGE;
        for s in sealed {
            if s.meta.endpoint != "chat/completions" {
                continue;
            }
            let payload = keyring.open(&s)?;
            let m = s.meta;
            calls.push(CallInput {
                id: m.id,
                model: m.model,
                request: parse(&payload.request),
                response: parse(&payload.response),
                prompt_tokens: m.prompt_tokens,
                completion_tokens: m.completion_tokens,
            });
            tags.push(m.tags);
        }
        // Keep only the features: the raw payloads of a large log need not all be in memory.
        out.par_extend(calls.par_drain(..).map(|c| ExtractedCall::new(&c)));
        if !full {
            break;
        }
    }
    Ok((out, tags))
}

/// Examples of a curated dataset, turned back into request/response pairs; model, usage and
/// tags come from the calls they were made from.
fn load_dataset(store: &dyn Store, keyring: &Keyring, name: &str) -> Result<Loaded> {
    let meta = store.get_dataset(name)?.with_context(|| {
        format!("no dataset '{name}' (see `downshift datasets list`; `downshift curate` makes one)")
    })?;
    let metas: HashMap<String, CallMeta> = store
        .list_calls(&CallFilter::default())?
        .into_iter()
        .map(|m| (m.id.clone(), m))
        .collect();
    let mut calls = Vec::new();
    let mut tags = Vec::new();
    for e in store.dataset_examples(&meta.id)? {
        let plain = keyring.open_example(&meta.id, &e)?;
        let record: Value = serde_json::from_slice(&plain)
            .with_context(|| format!("dataset '{name}' example {} is not JSON", e.seq))?;
        let mut messages = record["messages"].as_array().cloned().unwrap_or_default();
        let answer = match messages.last() {
            Some(m) if m["role"] == "assistant" => messages.pop(),
            _ => None,
        };
        let mut request = json!({ "messages": messages });
        if let Some(t) = record.get("tools") {
            request["tools"] = t.clone();
        }
        let response = answer.map_or(Value::Null, |m| json!({"choices": [{"message": m}]}));
        let m = metas.get(&e.call_id);
        calls.push(CallInput {
            id: e.call_id.clone(),
            model: m.map(|m| m.model.clone()).unwrap_or_default(),
            request,
            response,
            prompt_tokens: m.and_then(|m| m.prompt_tokens),
            completion_tokens: m.and_then(|m| m.completion_tokens),
        });
        tags.push(m.map(|m| m.tags.clone()).unwrap_or_default());
    }
    Ok((calls.par_iter().map(ExtractedCall::new).collect(), tags))
}

fn prior_tasks(store: &dyn Store) -> Result<Vec<PriorTask>> {
    let mut by_task: HashMap<String, Vec<String>> = HashMap::new();
    for (call, task) in store.task_assignments()? {
        let Some(task) = task else { continue };
        by_task.entry(task).or_default().push(call);
    }
    Ok(store
        .list_tasks()?
        .into_iter()
        .map(|t| PriorTask {
            calls: by_task.remove(&t.id).unwrap_or_default(),
            id: t.id,
            created_ms: t.created_ms,
            signature: t.signature,
            centroid: t.centroid,
        })
        .collect())
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
    // Load the model first: a missing model file is an error before any work is done.
    let embedder: Box<dyn TextEmbedder> = match cfg.embedder {
        EmbedderKind::Minilm => Box::new(Embedder::load(&cfg.model_dir).with_context(|| {
            "cannot load the embedding model (or choose `--embedder hashed` / discover.embedder = \"hashed\")"
        })?),
        EmbedderKind::Hashed => Box::new(HashedEmbedder::new(cfg.hashed_dim)),
    };
    let (keyring, _) = data.keyring(false)?;
    let store = data.open_store()?;
    let (calls, tags) = match &a.dataset {
        Some(name) => load_dataset(&store, &keyring, name)?,
        None => load_log(&store, &keyring)?,
    };
    if calls.is_empty() {
        bail!(
            "no calls to discover tasks in{}",
            a.dataset
                .as_deref()
                .map(|d| format!(" dataset '{d}'"))
                .unwrap_or_else(|| " the call log (import or capture some first)".into())
        );
    }
    let prior = prior_tasks(&store)?;
    let now = now_ms();
    let result = discover_extracted(&calls, &cfg.params(), embedder.as_ref(), &prior, now)?;

    if !a.dry_run {
        let records: Vec<TaskRecord> = result
            .tasks
            .iter()
            .map(|t| TaskRecord {
                id: t.id.clone(),
                label: t.label.clone(),
                created_ms: t.created_ms,
                updated_ms: now,
                calls: t.calls as u64,
                signature: t.signature.clone(),
                stats: serde_json::to_value(t).unwrap_or(Value::Null),
                centroid: t.centroid.clone(),
            })
            .collect();
        let assignments: Vec<(String, Option<String>)> = calls
            .iter()
            .zip(&result.assignments)
            .map(|(c, t)| (c.id.clone(), t.map(|t| result.tasks[t].id.clone())))
            .collect();
        store.replace_tasks(&records, &assignments)?;
    }

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
        println!(
            "{}",
            json!({"tasks": result.tasks, "assignments": assignments, "stats": result.stats})
        );
        return Ok(());
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

pub fn tasks(c: TasksCommand, data: &DataDir) -> Result<()> {
    let store = data.open_store()?;
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
            let task = store.get_task(&id)?.with_context(|| {
                format!("no task '{id}' (see `downshift tasks list`; tasks come from `downshift discover`)")
            })?;
            let (keyring, _) = data.keyring(false)?;
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
                let request = parse(&payload.request);
                let response = parse(&payload.response);
                let f = downshift_discover::features::extract(&CallInput {
                    id: m.id.clone(),
                    model: m.model.clone(),
                    request,
                    response: response.clone(),
                    prompt_tokens: m.prompt_tokens,
                    completion_tokens: m.completion_tokens,
                });
                let message = response
                    .pointer("/choices/0/message")
                    .cloned()
                    .unwrap_or(Value::Null);
                sample_calls.push(json!({"call_id": m.id, "input": f.variable,
                    "output_shape": f.output_shape(), "output": message}));
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
