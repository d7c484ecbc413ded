//! Finding the recurring tasks in the call log (step S3): the calls read and decrypted page by
//! page, discovery run over them, its tasks and assignments stored, and optionally the router's
//! placement of held-back calls measured.

use std::collections::{BTreeMap, HashMap};

use anyhow::{Context, Result, bail};
use downshift_discover::embed::Embedder;
use downshift_discover::{
    CallInput, DiscoverConfig, Discovery, EmbedderKind, ExtractedCall, HashedEmbedder, PriorTask,
    TextEmbedder, discover_extracted,
};
use downshift_store::{
    CallFilter, CallMeta, CallPayload, DataDir, Keyring, Store, TaskRecord, now_ms,
};
use rayon::prelude::*;
use serde_json::{Value, json};

/// What to discover over, and what to do with the result.
#[derive(Clone, Debug, Default)]
pub struct DiscoverRequest {
    /// A curated dataset (name or id) instead of the whole call log.
    pub dataset: Option<String>,
    /// Compute without storing tasks and assignments.
    pub dry_run: bool,
    /// Also measure the router's placement of held-back calls (call log only).
    pub placement: bool,
    /// Draw a spinner when stderr is a terminal.
    pub spinner: bool,
}

/// A discovery run's result.
pub struct Discovered {
    /// The calls discovered over, oldest first.
    pub calls: Vec<ExtractedCall>,
    /// Each call's tags.
    pub tags: Vec<BTreeMap<String, String>>,
    /// The tasks, and each call's task.
    pub result: Discovery,
    /// The router's placement of held-back calls, when asked for.
    pub placement: Option<Value>,
}

/// Calls to discover over, with their tags (for evaluation output only).
type Loaded = (Vec<ExtractedCall>, Vec<BTreeMap<String, String>>);

/// A logged payload as JSON (null when empty or unreadable).
pub fn payload_json(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes).unwrap_or(Value::Null)
    }
}

/// Pages through the log's chat completions (Responses-API calls restated as chat), oldest first, decrypting each page and handing it
/// to `on_page` (so a large log is never all in memory).
pub fn scan_chat_calls(
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
            let payload = match s.meta.endpoint.as_str() {
                "chat/completions" => keyring.open(&s)?,
                "responses" => responses_as_chat_payload(keyring.open(&s)?),
                _ => continue,
            };
            calls.push((s.meta, payload));
        }
        on_page(calls)?;
        if !full {
            break;
        }
    }
    Ok(())
}

/// A Responses-API call's payload restated as a chat completion (request and answer), so
/// discovery reads it like the chat calls of the same job. A request that is not JSON or has no
/// `input` is kept as it was (discovery then finds no messages in it).
fn responses_as_chat_payload(payload: CallPayload) -> CallPayload {
    let request = payload_json(&payload.request);
    let response = payload_json(&payload.response);
    match downshift_api::responses_as_chat(&request, Some(&response).filter(|r| !r.is_null())) {
        Some((request, response)) => CallPayload {
            request: serde_json::to_vec(&request).unwrap_or_default(),
            response: serde_json::to_vec(&response).unwrap_or_default(),
        },
        None => payload,
    }
}

/// Calls of the log (chat completions, and Responses-API calls restated as such), oldest first,
/// with their tags.
fn load_log(store: &dyn Store, keyring: &Keyring) -> Result<Loaded> {
    let mut out: Vec<ExtractedCall> = Vec::new();
    let mut tags = Vec::new();
    scan_chat_calls(store, keyring, |page| {
        let mut calls = Vec::with_capacity(page.len());
        for (m, payload) in page {
            calls.push(CallInput {
                id: m.id,
                model: m.model,
                request: payload_json(&payload.request),
                response: payload_json(&payload.response),
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

/// Runs discovery as `req` says with `cfg`, and stores its tasks unless `req.dry_run`.
pub fn discover(req: &DiscoverRequest, data: &DataDir, cfg: &DiscoverConfig) -> Result<Discovered> {
    // Load the model first: a missing model file is an error before any work is done.
    let embedder: Box<dyn TextEmbedder> = match cfg.embedder {
        EmbedderKind::Minilm => Box::new(
            Embedder::load(&crate::model::find_model_path(&cfg.model_dir).unwrap_or_else(|| cfg.model_dir.clone()))
                .with_context(|| {
            "cannot load the embedding model (or choose `--embedder hashed` / discover.embedder = \"hashed\")"
        })?),
        EmbedderKind::Hashed => Box::new(HashedEmbedder::new(cfg.hashed_dim)),
    };
    let (keyring, _) = data.keyring(false)?;
    let store = data.open_store()?;
    let spinner = crate::progress::spinner_if(req.spinner, "discover");
    spinner.set_message("reading the calls");
    let (calls, tags) = match &req.dataset {
        Some(name) => load_dataset(&*store, &keyring, name)?,
        None => load_log(&*store, &keyring)?,
    };
    if calls.is_empty() {
        bail!(
            "no calls to discover tasks in{}",
            req.dataset
                .as_deref()
                .map(|d| format!(" dataset '{d}'"))
                .unwrap_or_else(|| " the call log (import or capture some first)".into())
        );
    }
    if req.placement && req.dataset.is_some() {
        bail!("--placement measures the router on the call log; leave out --dataset");
    }
    let prior = prior_tasks(&*store)?;
    let now = now_ms();
    spinner.set_message(format!("finding the tasks in {} calls", calls.len()));
    let result = discover_extracted(&calls, &cfg.params(), embedder.as_ref(), &prior, now)?;
    spinner.finish_and_clear();

    if !req.dry_run {
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

    let placement = if req.placement {
        let by_call: HashMap<&str, &str> = calls
            .iter()
            .zip(&result.assignments)
            .filter_map(|(c, t)| t.map(|t| (c.id.as_str(), result.tasks[t].id.as_str())))
            .collect();
        Some(router_placement(&*store, &keyring, &by_call)?)
    } else {
        None
    };

    Ok(Discovered {
        calls,
        tags,
        result,
        placement,
    })
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
    // Held-back calls with their task; noise (no task) is held back too, to count the calls
    // the router would wrongly take into a task.
    let mut held: Vec<(Value, Option<String>)> = Vec::new();
    scan_chat_calls(store, keyring, |page| {
        for (m, payload) in page {
            let request = payload_json(&payload.request);
            let task = task_of.get(m.id.as_str()).copied();
            if held_back(&m.id) {
                held.push((request, task.map(str::to_owned)));
            } else {
                builder.add_value(&request, task)?;
            }
        }
        Ok(())
    })?;
    let router = builder.build();
    // Per task: (held back, placed in it, placed elsewhere, others placed in it).
    let mut per_task: BTreeMap<String, (usize, usize, usize, usize)> = BTreeMap::new();
    let (mut noise, mut noise_placed) = (0usize, 0usize);
    for (request, task) in &held {
        let placed_in = router.classify_value(request).map(|c| c.task.to_string());
        match task {
            Some(task) => {
                let e = per_task.entry(task.clone()).or_default();
                e.0 += 1;
                match &placed_in {
                    Some(t) if t == task => e.1 += 1,
                    Some(t) => {
                        e.2 += 1;
                        per_task.entry(t.clone()).or_default().3 += 1;
                    }
                    None => {}
                }
            }
            None => {
                noise += 1;
                if let Some(t) = placed_in {
                    noise_placed += 1;
                    per_task.entry(t).or_default().3 += 1;
                }
            }
        }
    }
    let total: usize = per_task.values().map(|v| v.0).sum();
    let placed: usize = per_task.values().map(|v| v.1).sum();
    let wrong: usize = per_task.values().map(|v| v.2).sum();
    let share = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    let min_task = per_task
        .values()
        .filter(|v| v.0 > 0)
        .map(|v| share(v.1, v.0))
        .fold(1.0, f64::min);
    Ok(json!({
        "held_back": total,
        "placed": placed,
        "placed_elsewhere": wrong,
        "not_placed": total - placed - wrong,
        "share": share(placed, total),
        "min_task_share": min_task,
        // of the held-back calls the router put into a task, the share that belong there
        // (noise and other tasks' calls count against it)
        "precision": share(placed, placed + wrong + noise_placed),
        "noise_held_back": noise,
        "noise_placed": noise_placed,
        "per_task": per_task.iter().map(|(t, v)| (t.clone(), json!({
            "held_back": v.0, "placed": v.1, "placed_elsewhere": v.2, "share": share(v.1, v.0),
            "taken_from_others": v.3, "precision": share(v.1, v.1 + v.3)})))
            .collect::<serde_json::Map<String, Value>>(),
    }))
}
