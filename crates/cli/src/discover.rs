//! `discover` and `tasks list|show` (step S3).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use downshift_discover::embed::Embedder;
use downshift_discover::features::content_text;
use downshift_discover::mask::Masker;
use downshift_discover::{
    CallInput, DiscoverConfig, EmbedderKind, ExtractedCall, HashedEmbedder, PriorTask,
    TextEmbedder, discover_extracted,
};
use downshift_store::{
    AuditEntry, CallFilter, CallMeta, CallPayload, DataDir, Keyring, Store, TaskRecord, now_ms,
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

/// Calls to discover over, with their tags (for evaluation output only).
type Loaded = (Vec<ExtractedCall>, Vec<BTreeMap<String, String>>);

fn parse(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes).unwrap_or(Value::Null)
    }
}

/// Pages through the log's chat completions, oldest first, decrypting each page and handing it
/// to `on_page` (so a large log is never all in memory).
fn scan_chat_calls(
    store: &dyn Store,
    keyring: &Keyring,
    mut on_page: impl FnMut(Vec<(CallMeta, CallPayload)>) -> Result<()>,
) -> Result<()> {
    const PAGE: usize = 5000;
    let mut page = CallFilter {
        limit: Some(PAGE),
        ..CallFilter::default()
    };
    loop {
        let sealed = store.scan_calls(&page)?;
        let Some(last) = sealed.last() else { break };
        page.after = Some((last.meta.ts_ms, last.meta.id.clone()));
        let full = sealed.len() == PAGE;
        let mut calls = Vec::with_capacity(sealed.len());
        for s in sealed {
            if s.meta.endpoint != "chat/completions" {
                continue;
            }
            let payload = keyring.open(&s)?;
            calls.push((s.meta, payload));
        }
        on_page(calls)?;
        if !full {
            break;
        }
    }
    Ok(())
}

/// Calls of the log (chat completions only), oldest first, with their tags.
fn load_log(store: &dyn Store, keyring: &Keyring) -> Result<Loaded> {
    let mut out: Vec<ExtractedCall> = Vec::new();
    let mut tags = Vec::new();
    scan_chat_calls(store, keyring, |page| {
        let mut calls = Vec::with_capacity(page.len());
        for (m, payload) in page {
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
        Ok(())
    })?;
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
    let spinner = crate::progress::spinner("discover");
    spinner.set_message("reading the calls");
    let (calls, tags) = match &a.dataset {
        Some(name) => load_dataset(&*store, &keyring, name)?,
        None => load_log(&*store, &keyring)?,
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
    if a.placement && a.dataset.is_some() {
        bail!("--placement measures the router on the call log; leave out --dataset");
    }
    let prior = prior_tasks(&*store)?;
    let now = now_ms();
    spinner.set_message(format!("finding the tasks in {} calls", calls.len()));
    let result = discover_extracted(&calls, &cfg.params(), embedder.as_ref(), &prior, now)?;
    spinner.finish_and_clear();

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

    let placement = if a.placement {
        let by_call: HashMap<&str, &str> = calls
            .iter()
            .zip(&result.assignments)
            .filter_map(|(c, t)| t.map(|t| (c.id.as_str(), result.tasks[t].id.as_str())))
            .collect();
        Some(router_placement(&*store, &keyring, &by_call)?)
    } else {
        None
    };

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

/// The router (route crate classifier, default settings) trained on the calls not held back,
/// asked to place the held-back calls of every task (see `downshift_discover::placement`).
fn router_placement(
    store: &dyn Store,
    keyring: &Keyring,
    task_of: &HashMap<&str, &str>,
) -> Result<Value> {
    use downshift_discover::placement::held_back;
    use downshift_route::{ClassifierBuilder, ClassifierConfig};
    let mut builder = ClassifierBuilder::new(ClassifierConfig::default());
    let mut held: Vec<(Value, String)> = Vec::new();
    scan_chat_calls(store, keyring, |page| {
        for (m, payload) in page {
            let request = parse(&payload.request);
            let task = task_of.get(m.id.as_str()).copied();
            if held_back(&m.id) {
                if let Some(t) = task {
                    held.push((request, t.to_owned()));
                }
            } else {
                builder.add_value(&request, task)?;
            }
        }
        Ok(())
    })?;
    let router = builder.build();
    // Per task: (held back, placed in it, placed elsewhere).
    let mut per_task: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    for (request, task) in &held {
        let e = per_task.entry(task.clone()).or_default();
        e.0 += 1;
        match router.classify_value(request) {
            Some(c) if &*c.task == task.as_str() => e.1 += 1,
            Some(_) => e.2 += 1,
            None => {}
        }
    }
    let total: usize = per_task.values().map(|v| v.0).sum();
    let placed: usize = per_task.values().map(|v| v.1).sum();
    let wrong: usize = per_task.values().map(|v| v.2).sum();
    let share = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let min_task = per_task
        .values()
        .map(|v| share(v.1, v.0))
        .fold(1.0, f64::min);
    Ok(json!({
        "held_back": total,
        "placed": placed,
        "placed_elsewhere": wrong,
        "not_placed": total - placed - wrong,
        "share": share(placed, total),
        "min_task_share": min_task,
        "per_task": per_task.iter().map(|(t, v)| (t.clone(), json!({
            "held_back": v.0, "placed": v.1, "placed_elsewhere": v.2, "share": share(v.1, v.0)})))
            .collect::<serde_json::Map<String, Value>>(),
    }))
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
                // Samples are shown masked, like every other text of a task: names, e-mails,
                // numbers and quoted material become their type.
                let message = response
                    .pointer("/choices/0/message")
                    .cloned()
                    .unwrap_or(Value::Null);
                let mut output = content_text(message.get("content").unwrap_or(&Value::Null));
                if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
                    for c in calls {
                        // A call by its tool and argument names: the values are material.
                        let f = c.get("function").unwrap_or(&Value::Null);
                        let args: Vec<String> = f
                            .get("arguments")
                            .and_then(Value::as_str)
                            .and_then(|a| serde_json::from_str::<Value>(a).ok())
                            .and_then(|a| a.as_object().map(|o| o.keys().cloned().collect()))
                            .unwrap_or_default();
                        output.push_str(&format!(
                            "{}({}) ",
                            f.get("name").and_then(Value::as_str).unwrap_or(""),
                            args.join(", ")
                        ));
                    }
                }
                sample_calls.push(json!({"call_id": m.id, "input": masker.mask(&f.variable),
                    "output_shape": f.output_shape(), "output": masker.mask(&output)}));
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
