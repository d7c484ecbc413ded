//! Local models served through the same `/v1/chat/completions` as the upstreams: a request for
//! `model: "local/<name>"` (or `"local/<name>:<adapter>"`) runs on the native small-model runtime
//! and is answered — streamed or not — in OpenAI's format, tool calls included. Every such
//! call is logged exactly like a proxied one.

use crate::SetupError;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use downshift_api::Usage;
use downshift_slm::constrain::GrammarFilter;
use downshift_slm::{
    AdapterSel, Constraint, FinishReason, GenerateOptions, Generation, LocalModel, ToolCall,
    parse_tool_calls,
};
use downshift_store::CallStatus;
use http::{HeaderValue, StatusCode, header};
use http_body::Frame;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};

use crate::GatewayError;
use crate::call::{CallGuard, Outcome};
use crate::config::LocalModelConfig;

/// The prefix that sends a request to a local model.
pub const LOCAL_PREFIX: &str = "local/";

/// One loaded model with its adapters and its concurrency limit.
pub struct LocalSlot {
    pub name: String,
    model: Arc<LocalModel>,
    adapters: HashMap<String, usize>,
    permits: Arc<Semaphore>,
    default_max_tokens: usize,
}

impl LocalSlot {
    /// Waits for a free generation slot.
    async fn acquire(&self) -> Result<tokio::sync::OwnedSemaphorePermit, GatewayError> {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| GatewayError::Internal("local model is shutting down".into()))
    }

    /// A built-in specialist: its own copy of the base with the adapter attached (the model
    /// already renders with the template the adapter was trained on).
    pub fn specialist(
        name: String,
        model: LocalModel,
        adapter: usize,
        max_concurrent: usize,
        default_max_tokens: usize,
    ) -> (Arc<LocalSlot>, AdapterSel) {
        let mut adapters = HashMap::new();
        adapters.insert("specialist".to_string(), adapter);
        (
            Arc::new(LocalSlot {
                name,
                model: Arc::new(model),
                adapters,
                permits: Arc::new(Semaphore::new(max_concurrent.max(1))),
                default_max_tokens,
            }),
            AdapterSel::One(adapter),
        )
    }
}

/// The local models, by name.
#[derive(Default)]
pub struct LocalModels {
    slots: HashMap<String, Arc<LocalSlot>>,
}

impl std::fmt::Debug for LocalModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.slots.keys()).finish()
    }
}

impl LocalModels {
    /// Loads every configured model (and its adapters); any failure names the model.
    pub fn load(configs: &[LocalModelConfig]) -> Result<LocalModels, SetupError> {
        let mut slots = HashMap::new();
        for c in configs {
            if c.name.is_empty()
                || c.name.contains([':', '/'])
                || c.name.contains(char::is_whitespace)
            {
                return Err(SetupError::Config(format!(
                    "local model name '{}' must be non-empty, without '/', ':' or spaces",
                    c.name
                )));
            }
            if slots.contains_key(&c.name) {
                return Err(SetupError::Config(format!(
                    "local model '{}' is defined twice",
                    c.name
                )));
            }
            if c.max_concurrent == 0 {
                return Err(SetupError::Config(format!(
                    "local model '{}': max_concurrent must be at least 1",
                    c.name
                )));
            }
            let mut model = LocalModel::load(&c.path).map_err(|e| {
                SetupError::Load(format!(
                    "local model '{}': cannot load {}: {e}",
                    c.name,
                    c.path.display()
                ))
            })?;
            let mut adapters = HashMap::new();
            for (aname, dir) in &c.adapters {
                let id = model.load_adapter(dir).map_err(|e| {
                    SetupError::Load(format!(
                        "local model '{}': cannot load adapter '{aname}' from {}: {e}",
                        c.name,
                        dir.display()
                    ))
                })?;
                adapters.insert(aname.clone(), id);
            }
            tracing::info!(model = %c.name, path = %c.path.display(), adapters = adapters.len(), "loaded local model");
            slots.insert(
                c.name.clone(),
                Arc::new(LocalSlot {
                    name: c.name.clone(),
                    model: Arc::new(model),
                    adapters,
                    permits: Arc::new(Semaphore::new(c.max_concurrent)),
                    default_max_tokens: c.default_max_tokens,
                }),
            );
        }
        Ok(LocalModels { slots })
    }

    /// Whether no local model is configured.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// The client-facing model ids (`local/<name>` and `local/<name>:<adapter>`), sorted.
    pub fn model_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for s in self.slots.values() {
            ids.push(format!("{LOCAL_PREFIX}{}", s.name));
            for a in s.adapters.keys() {
                ids.push(format!("{LOCAL_PREFIX}{}:{a}", s.name));
            }
        }
        ids.sort();
        ids
    }

    /// The slot and adapter for `local/<name>[:<adapter>]`.
    pub fn resolve(&self, model: &str) -> Result<(Arc<LocalSlot>, AdapterSel), GatewayError> {
        let rest = model.strip_prefix(LOCAL_PREFIX).unwrap_or(model);
        let (name, adapter) = match rest.split_once(':') {
            Some((n, a)) => (n, Some(a)),
            None => (rest, None),
        };
        let unknown = || {
            let known = self.model_ids();
            GatewayError::UnknownLocalModel {
                model: model.to_string(),
                known: if known.is_empty() {
                    "none configured".to_string()
                } else {
                    known.join(", ")
                },
            }
        };
        let slot = self.slots.get(name).ok_or_else(unknown)?;
        let sel = match adapter {
            None => AdapterSel::None,
            Some(a) => AdapterSel::One(*slot.adapters.get(a).ok_or_else(unknown)?),
        };
        Ok((slot.clone(), sel))
    }
}

/// `stop` is a string or a list of strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// The fields of an OpenAI chat request a local model honours; others are ignored, as
/// OpenAI-compatible servers do.
#[derive(Deserialize)]
struct ChatRequest<'a> {
    #[serde(borrow)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tools: Option<&'a RawValue>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    max_completion_tokens: Option<usize>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    /// Not OpenAI's, but vLLM's and llama.cpp's.
    #[serde(default)]
    top_k: Option<usize>,
    #[serde(default)]
    repetition_penalty: Option<f32>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(default)]
    logprobs: bool,
    #[serde(default)]
    top_logprobs: Option<usize>,
    #[serde(default, rename = "model")]
    _model: IgnoredAny,
}

/// What to run: the prompt, the options and the constraint, decided before any compute.
pub struct Plan {
    prompt: Vec<u32>,
    opts: GenerateOptions,
    /// The grammar the output must follow (JSON, a schema, a tool call).
    filter: Option<GrammarFilter>,
    /// Tool calls are parsed out of the answer (tools offered and not refused).
    parse_tools: bool,
    logprobs: bool,
    pub stream: bool,
    include_usage: bool,
}

fn bad(msg: impl Into<String>) -> GatewayError {
    GatewayError::BadRequest(msg.into())
}

impl LocalSlot {
    /// Reads the request and renders the prompt; every client mistake is a 400 here.
    pub fn plan(&self, body: &[u8], adapter: AdapterSel) -> Result<Plan, GatewayError> {
        let r: ChatRequest =
            serde_json::from_slice(body).map_err(|e| bad(format!("invalid request: {e}")))?;
        let messages = r
            .messages
            .ok_or_else(|| bad("'messages' is required for a chat completion"))?;
        if r.n.is_some_and(|n| n != 1) {
            return Err(bad(
                "local models generate one choice per request ('n' must be 1)",
            ));
        }
        let tools: Option<Vec<Value>> = match r.tools {
            None => None,
            Some(raw) if raw.get() == "null" => None,
            Some(raw) => Some(
                serde_json::from_str(raw.get())
                    .map_err(|_| bad("'tools' must be an array of tool definitions"))?,
            ),
        };
        let tools = tools.filter(|t| !t.is_empty());
        // tool_choice: none | auto | required | {"type":"function","function":{"name":…}}
        let mut forced_tools: Option<Vec<Value>> = None;
        let mut offer_tools = tools.is_some();
        match (&r.tool_choice, &tools) {
            (None, _) => {}
            (Some(Value::String(s)), _) if s == "auto" => {}
            (Some(Value::String(s)), _) if s == "none" => offer_tools = false,
            (Some(Value::String(s)), Some(t)) if s == "required" => forced_tools = Some(t.clone()),
            (Some(Value::Object(o)), Some(t)) => {
                let name = o
                    .get("function")
                    .and_then(|f| f.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad("'tool_choice' object needs function.name"))?;
                let pick: Vec<Value> = t
                    .iter()
                    .filter(|d| {
                        d.get("function")
                            .unwrap_or(d)
                            .get("name")
                            .and_then(Value::as_str)
                            == Some(name)
                    })
                    .cloned()
                    .collect();
                if pick.is_empty() {
                    return Err(bad(format!(
                        "'tool_choice' names '{name}', which is not in 'tools'"
                    )));
                }
                forced_tools = Some(pick);
            }
            (Some(Value::String(s)), None) if s == "required" => {
                return Err(bad("'tool_choice' is 'required' but no 'tools' were given"));
            }
            (Some(other), None) if other.is_object() => {
                return Err(bad(
                    "'tool_choice' names a function but no 'tools' were given",
                ));
            }
            (Some(other), _) => {
                return Err(bad(format!(
                    "'tool_choice' must be 'none', 'auto', 'required' or a function, got {other}"
                )));
            }
        }
        let format_constraint = match &r.response_format {
            None | Some(Value::Null) => None,
            Some(f) => match f.get("type").and_then(Value::as_str) {
                Some("text") => None,
                Some("json_object") => Some(Constraint::Json),
                Some("json_schema") => {
                    let schema = f
                        .get("json_schema")
                        .and_then(|j| j.get("schema"))
                        .cloned()
                        .ok_or_else(|| {
                            bad("'response_format' json_schema needs json_schema.schema")
                        })?;
                    Some(Constraint::JsonSchema(schema))
                }
                _ => {
                    return Err(bad(
                        "'response_format.type' must be 'text', 'json_object' or 'json_schema'",
                    ));
                }
            },
        };
        let constraint = match (forced_tools, format_constraint) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "a forced tool call and 'response_format' cannot be combined",
                ));
            }
            (Some(t), None) => Some(Constraint::ToolCall(t)),
            (None, c) => c,
        };
        let tools_json = if offer_tools {
            r.tools.map(|t| t.get().to_string())
        } else {
            None
        };
        let text = self
            .model
            .render_prompt_for(adapter, messages.get(), tools_json.as_deref())
            .map_err(|e| bad(format!("cannot build the prompt: {e}")))?;
        let prompt = self.model.tokenize(&text);
        let max_tokens = r
            .max_completion_tokens
            .or(r.max_tokens)
            .unwrap_or(self.default_max_tokens);
        if max_tokens == 0 {
            return Err(bad("'max_tokens' must be at least 1"));
        }
        let context = self.model.model.config.context_length;
        if prompt.len() >= context {
            return Err(GatewayError::ContextLength(format!(
                "the prompt has {} tokens but local/{} holds {} in its context",
                prompt.len(),
                self.name,
                context
            )));
        }
        let temperature = r.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(bad("'temperature' must be between 0 and 2"));
        }
        let top_p = r.top_p.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(bad("'top_p' must be in (0, 1]"));
        }
        let top_logprobs = r.top_logprobs.unwrap_or(0);
        if top_logprobs > 20 {
            return Err(bad("'top_logprobs' must be at most 20"));
        }
        let stop = match r.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s],
            Some(Stop::Many(v)) => v,
        };
        let opts = GenerateOptions {
            // The context bounds the answer, as in vLLM: what does not fit ends with "length".
            max_tokens: max_tokens.min(context - prompt.len()),
            temperature,
            top_k: r.top_k.unwrap_or(0),
            top_p,
            repetition_penalty: r.repetition_penalty.unwrap_or(1.0),
            seed: r.seed.unwrap_or_else(rand::random),
            stop,
            top_logprobs: if r.logprobs { top_logprobs } else { 0 },
            adapter,
            ..Default::default()
        };
        // The grammar is compiled now, so an invalid schema is the client's 400.
        let filter = match &constraint {
            None => None,
            Some(c) => Some(self.model.guidance().and_then(|g| g.filter(c)).map_err(
                |e| match e {
                    downshift_slm::Error::Request(m) => bad(m),
                    other => bad(format!("invalid constraint: {other}")),
                },
            )?),
        };
        Ok(Plan {
            prompt,
            opts,
            parse_tools: offer_tools || matches!(constraint, Some(Constraint::ToolCall(_))),
            filter,
            logprobs: r.logprobs,
            stream: r.stream,
            include_usage: r.stream_options.unwrap_or_default().include_usage,
        })
    }
}

impl Plan {
    /// The prompt's token ids.
    #[cfg(test)]
    pub(crate) fn prompt_ids(&self) -> &[u32] {
        &self.prompt
    }

    /// Parses tool calls out of the answer even though no tools reach the prompt (a
    /// specialist that internalised the tool schemas still answers with tool calls).
    pub fn parse_tool_calls(&mut self) {
        self.parse_tools = true;
    }
}

/// A finished non-streaming answer of a local model.
pub struct Completed {
    /// The whole `chat.completion` object.
    pub body: Value,
    /// Mean log-probability of the generated tokens (`None` for an empty answer).
    pub mean_logprob: Option<f64>,
    pub usage: Usage,
}

/// Runs a plan to the end without streaming, waiting for a free slot first. Generation stops
/// early (finish reason `length`) once `deadline` passes, and the result is then an error.
pub async fn complete(
    slot: Arc<LocalSlot>,
    mut plan: Plan,
    call_id: &str,
    model_id: &str,
    deadline: Instant,
) -> Result<Completed, GatewayError> {
    let permit = slot.acquire().await?;
    let s2 = slot.clone();
    let (g, plan) = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let in_time = || Instant::now() < deadline;
        let mut on_text = |_: &str| in_time();
        let r = run(&s2.model, &mut plan, Some(&mut on_text));
        (r, plan)
    })
    .await
    .map_err(|e| GatewayError::Internal(format!("local model task failed: {e}")))?;
    let g = g.map_err(|e| gen_error(&slot.name, e))?;
    if Instant::now() >= deadline {
        return Err(GatewayError::Timeout {
            upstream: slot.name.clone(),
            ms: 0,
        });
    }
    let view = plan.view();
    let a = answer(&view, &g);
    let created = chrono::Utc::now().timestamp();
    let body = completion(call_id, model_id, created, &slot, &view, &g, &a);
    let mean_logprob = (!g.logprobs.is_empty())
        .then(|| g.logprobs.iter().map(|&l| f64::from(l)).sum::<f64>() / g.logprobs.len() as f64);
    Ok(Completed {
        body,
        mean_logprob,
        usage: usage_of(&g),
    })
}

/// What shaping the answer needs to know of a plan.
#[derive(Clone, Copy)]
struct PlanView {
    parse_tools: bool,
    logprobs: bool,
    include_usage: bool,
}

impl Plan {
    fn view(&self) -> PlanView {
        PlanView {
            parse_tools: self.parse_tools,
            logprobs: self.logprobs,
            include_usage: self.include_usage,
        }
    }
}

/// Runs a plan on the calling (blocking) thread.
fn run(
    model: &LocalModel,
    plan: &mut Plan,
    on_text: Option<&mut dyn FnMut(&str) -> bool>,
) -> downshift_slm::Result<Generation> {
    match plan.filter.as_mut() {
        Some(f) => {
            let prefix = model.prefill(&plan.prompt, &plan.opts)?;
            model.generate_from(prefix, &plan.opts, Some(f), on_text)
        }
        None => model.generate_ids(&plan.prompt, &plan.opts, on_text),
    }
}

fn gen_error(name: &str, e: downshift_slm::Error) -> GatewayError {
    match e {
        downshift_slm::Error::ContextOverflow { .. } => GatewayError::ContextLength(e.to_string()),
        downshift_slm::Error::Request(m) => GatewayError::BadRequest(m),
        other => GatewayError::Internal(format!("local/{name}: {other}")),
    }
}

/// The answer's pieces in OpenAI terms.
struct Answer {
    content: Option<String>,
    tool_calls: Vec<ToolCall>,
    finish_reason: &'static str,
}

fn answer(plan: &PlanView, g: &Generation) -> Answer {
    let (content, tool_calls) = if plan.parse_tools {
        parse_tool_calls(&g.text)
    } else {
        (g.text.clone(), Vec::new())
    };
    let finish_reason = if !tool_calls.is_empty() {
        "tool_calls"
    } else {
        match g.finish_reason {
            FinishReason::Length => "length",
            _ => "stop",
        }
    };
    Answer {
        content: if tool_calls.is_empty() || !content.is_empty() {
            Some(content)
        } else {
            None
        },
        tool_calls,
        finish_reason,
    }
}

fn tool_calls_json(id: &str, calls: &[ToolCall], with_index: bool) -> Value {
    Value::Array(
        calls
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let mut v = json!({
                    "id": format!("call_{}_{i}", &id[id.len().saturating_sub(12)..]),
                    "type": "function",
                    "function": {"name": c.name, "arguments": c.arguments},
                });
                if with_index {
                    v["index"] = json!(i);
                }
                v
            })
            .collect(),
    )
}

fn logprobs_json(model: &LocalModel, g: &Generation) -> Value {
    let entry = |id: u32, lp: f32| {
        let bytes = model.tokenizer.token_bytes(id, false);
        json!({
            "token": String::from_utf8_lossy(&bytes),
            "logprob": lp,
            "bytes": bytes,
        })
    };
    let content: Vec<Value> = g
        .token_ids
        .iter()
        .zip(&g.logprobs)
        .enumerate()
        .map(|(i, (&id, &lp))| {
            let mut e = entry(id, lp);
            let top: Vec<Value> = g
                .top_logprobs
                .get(i)
                .map(|alts| alts.iter().map(|&(t, l)| entry(t, l)).collect())
                .unwrap_or_default();
            e["top_logprobs"] = Value::Array(top);
            e
        })
        .collect();
    json!({ "content": content })
}

fn usage_json(g: &Generation) -> Value {
    json!({
        "prompt_tokens": g.prompt_tokens,
        "completion_tokens": g.completion_tokens,
        "total_tokens": g.prompt_tokens + g.completion_tokens,
    })
}

fn usage_of(g: &Generation) -> Usage {
    Usage {
        prompt_tokens: g.prompt_tokens as u64,
        completion_tokens: g.completion_tokens as u64,
    }
}

/// The whole `chat.completion` object.
fn completion(
    id: &str,
    model_id: &str,
    created: i64,
    slot: &LocalSlot,
    plan: &PlanView,
    g: &Generation,
    a: &Answer,
) -> Value {
    let mut message = json!({"role": "assistant", "content": a.content});
    if !a.tool_calls.is_empty() {
        message["tool_calls"] = tool_calls_json(id, &a.tool_calls, false);
    }
    json!({
        "id": format!("chatcmpl-{id}"),
        "object": "chat.completion",
        "created": created,
        "model": model_id,
        "choices": [{
            "index": 0,
            "message": message,
            "logprobs": if plan.logprobs { logprobs_json(&slot.model, g) } else { Value::Null },
            "finish_reason": a.finish_reason,
        }],
        "usage": usage_json(g),
    })
}

fn route_header(name: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("local:{name}")).unwrap_or(HeaderValue::from_static("local"))
}

/// Serves one request on a local model. The guard logs the call however it ends.
pub async fn serve(
    slot: Arc<LocalSlot>,
    plan: Plan,
    mut guard: CallGuard,
    call_id: String,
    model_id: String,
) -> Result<Response, GatewayError> {
    let created = chrono::Utc::now().timestamp();
    // Waiting for a free slot; a client that leaves meanwhile drops this future (logged as
    // interrupted by the guard).
    let permit = slot.acquire().await?;
    let t_start = Instant::now();
    if let Some(ctx) = guard.ctx_mut() {
        ctx.t_sent = Some(t_start);
    }
    let pre = ctx_overhead(&guard, t_start);
    if !plan.stream {
        let s2 = slot.clone();
        let mut plan = plan;
        let (g, plan) = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let r = run(&s2.model, &mut plan, None);
            (r, plan)
        })
        .await
        .map_err(|e| GatewayError::Internal(format!("local model task failed: {e}")))?;
        let g = match g {
            Ok(g) => g,
            Err(e) => {
                let err = gen_error(&slot.name, e);
                guard.finish(Outcome::failed(
                    CallStatus::UpstreamError,
                    err.status().as_u16(),
                    err.body().to_json().into_bytes(),
                ));
                return Err(err);
            }
        };
        let view = plan.view();
        let a = answer(&view, &g);
        let body = completion(&call_id, &model_id, created, &slot, &view, &g, &a).to_string();
        guard.finish(Outcome {
            status: CallStatus::Ok,
            http_status: Some(200),
            response: body.clone().into_bytes(),
            usage: Some(usage_of(&g)),
            ttft: Some(Duration::from_secs_f64(g.time_to_first_token_s)),
            overhead: Some(pre),
        });
        return response(
            StatusCode::OK,
            "application/json",
            &call_id,
            &slot.name,
            Body::from(body),
        );
    }

    // Streaming: the generation thread sends text pieces; the body turns them into SSE chunks.
    let (tx, rx) = mpsc::channel::<Event>(64);
    let s2 = slot.clone();
    // Text is streamed as it comes, except where it may turn out to be a tool call: that is
    // only known at the end (as with vLLM's tool parsers), so it is sent whole.
    let stream_text = !plan.parse_tools;
    let view = plan.view();
    let mut plan = plan;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let txc = tx.clone();
        let mut on_text = |piece: &str| -> bool {
            if !stream_text {
                return !txc.is_closed();
            }
            txc.blocking_send(Event::Text(piece.to_string())).is_ok()
        };
        let r = run(&s2.model, &mut plan, Some(&mut on_text));
        let _ = tx.blocking_send(Event::Done(Box::new(r)));
    });
    let body = LocalStream {
        rx,
        guard,
        slot: slot.clone(),
        plan: view,
        id: call_id.clone(),
        model_id,
        created,
        started: false,
        ended: false,
        t_start,
        ttft: None,
        overhead: pre,
    };
    response(
        StatusCode::OK,
        "text/event-stream",
        &call_id,
        &slot.name,
        Body::new(body),
    )
}

fn ctx_overhead(guard: &CallGuard, t_start: Instant) -> Duration {
    guard
        .ctx()
        .map(|c| t_start.duration_since(c.t0))
        .unwrap_or_default()
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    call_id: &str,
    name: &str,
    body: Body,
) -> Result<Response, GatewayError> {
    let mut b = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header("x-downshift-route", route_header(name));
    if let Ok(v) = HeaderValue::from_str(call_id) {
        b = b.header("x-downshift-call-id", v);
    }
    if content_type == "text/event-stream" {
        b = b.header(header::CACHE_CONTROL, "no-cache");
    }
    b.body(body)
        .map_err(|e| GatewayError::Internal(e.to_string()))
}

enum Event {
    Text(String),
    Done(Box<downshift_slm::Result<Generation>>),
}

/// The SSE body of a streamed local answer.
struct LocalStream {
    rx: mpsc::Receiver<Event>,
    guard: CallGuard,
    slot: Arc<LocalSlot>,
    plan: PlanView,
    id: String,
    model_id: String,
    created: i64,
    started: bool,
    ended: bool,
    t_start: Instant,
    ttft: Option<Duration>,
    overhead: Duration,
}

impl LocalStream {
    fn chunk(&self, delta: Value, finish_reason: Option<&str>) -> Value {
        json!({
            "id": format!("chatcmpl-{}", self.id),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model_id,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}],
        })
    }

    fn sse(out: &mut String, v: &Value) {
        out.push_str("data: ");
        out.push_str(&v.to_string());
        out.push_str("\n\n");
    }

    /// The first chunk carries the role, as OpenAI's does.
    fn open(&mut self, out: &mut String) {
        if !self.started {
            self.started = true;
            let c = self.chunk(json!({"role": "assistant", "content": ""}), None);
            Self::sse(out, &c);
        }
    }

    fn finish(&mut self, r: downshift_slm::Result<Generation>) -> String {
        let mut out = String::new();
        self.ended = true;
        let g = match r {
            Ok(g) => g,
            Err(e) => {
                // Headers are sent: the error goes into the stream, as OpenAI does.
                let err = gen_error(&self.slot.name, e);
                let body = err.body().to_json();
                out.push_str("data: ");
                out.push_str(&body);
                out.push_str("\n\n");
                self.guard.finish(Outcome::failed(
                    CallStatus::UpstreamError,
                    err.status().as_u16(),
                    body.into_bytes(),
                ));
                return out;
            }
        };
        self.open(&mut out);
        let a = answer(&self.plan, &g);
        if !self.plan.parse_tools {
            // Text went out piece by piece already.
        } else {
            if let Some(c) = a.content.as_ref().filter(|c| !c.is_empty()) {
                let chunk = self.chunk(json!({"content": c}), None);
                Self::sse(&mut out, &chunk);
            }
            if !a.tool_calls.is_empty() {
                let calls = tool_calls_json(&self.id, &a.tool_calls, true);
                let chunk = self.chunk(json!({"tool_calls": calls}), None);
                Self::sse(&mut out, &chunk);
            }
        }
        let last = self.chunk(json!({}), Some(a.finish_reason));
        Self::sse(&mut out, &last);
        if self.plan.include_usage {
            let u = json!({
                "id": format!("chatcmpl-{}", self.id),
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model_id,
                "choices": [],
                "usage": usage_json(&g),
            });
            Self::sse(&mut out, &u);
        }
        out.push_str("data: [DONE]\n\n");
        let logged = completion(
            &self.id,
            &self.model_id,
            self.created,
            &self.slot,
            &self.plan,
            &g,
            &a,
        );
        self.guard.finish(Outcome {
            status: CallStatus::Ok,
            http_status: Some(200),
            response: logged.to_string().into_bytes(),
            usage: Some(usage_of(&g)),
            ttft: self
                .ttft
                .or(Some(Duration::from_secs_f64(g.time_to_first_token_s))),
            overhead: Some(self.overhead),
        });
        out
    }
}

impl http_body::Body for LocalStream {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        let mut out = String::new();
        // Drain what is ready into one frame.
        loop {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(Event::Text(t))) => {
                    this.open(&mut out);
                    if this.ttft.is_none() {
                        this.ttft = Some(this.t_start.elapsed());
                    }
                    let c = this.chunk(json!({"content": t}), None);
                    Self::sse(&mut out, &c);
                }
                Poll::Ready(Some(Event::Done(r))) => {
                    let tail = this.finish(*r);
                    out.push_str(&tail);
                    break;
                }
                Poll::Ready(None) => {
                    // The generation thread vanished without a result (it panicked).
                    this.ended = true;
                    let err = GatewayError::Internal("local generation stopped".into());
                    this.guard.finish(Outcome::failed(
                        CallStatus::UpstreamError,
                        500,
                        err.body().to_json().into_bytes(),
                    ));
                    break;
                }
                Poll::Pending => break,
            }
        }
        if out.is_empty() {
            if this.ended {
                return Poll::Ready(None);
            }
            return Poll::Pending;
        }
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(out)))))
    }
}

// A client that leaves mid-stream drops the body: the receiver closes, the generation thread's
// next send fails and it stops; the guard (dropped unfinished) logs the call as interrupted.
