//! `downshift mock-llm`: an OpenAI-compatible upstream for tests, demos and benchmarks. It
//! answers from recorded request → response pairs (the `import` format), matched on the
//! canonicalised messages + tools, and otherwise with a deterministic echo. It streams, returns
//! tool calls, and injects faults on demand (`--delay-ms`, `--fail-rate`, `--fail-first`,
//! `--fail-status`, and per request the headers `x-mock-status`, `x-mock-delay-ms`,
//! `x-mock-chunk-delay-ms`). Besides chat completions it answers the Responses API
//! (`/v1/responses`), legacy completions (`/v1/completions`), embeddings and the model list.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use downshift_api::{
    ErrorBody, ImportFormat, canonical_json, fnv1a64, parse_import_line, response_to_chunks,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::error::error_response;

/// How the mock behaves.
#[derive(Debug, Clone, Default)]
pub struct MockOptions {
    /// Wait before answering each request.
    pub delay: Duration,
    /// Wait between two chunks of a stream.
    pub chunk_delay: Duration,
    /// Share of requests (0–1) answered with an error (`fail_status`).
    pub fail_rate: f64,
    /// The first this many requests are answered with an error (`fail_status`).
    pub fail_first: u64,
    /// The status of injected failures (0: 500).
    pub fail_status: u16,
    /// Seed of the fault-injection generator.
    pub seed: u64,
}

/// Recorded answers, keyed by the canonical form of `messages` + `tools`.
#[derive(Debug, Default)]
pub struct Replay {
    answers: HashMap<String, Value>,
    models: Vec<String>,
}

/// What loading a replay file found.
#[derive(Debug, Default)]
pub struct ReplayReport {
    /// Records with a response.
    pub records: usize,
    /// Distinct requests among them (the first record of each is kept).
    pub distinct: usize,
    /// (line number, reason) of lines that were skipped.
    pub skipped: Vec<(usize, String)>,
}

fn replay_key(request: &Value) -> String {
    let messages = request.get("messages").cloned().unwrap_or(Value::Null);
    let tools = request.get("tools").cloned().unwrap_or(Value::Null);
    canonical_json(&json!({"messages": messages, "tools": tools}))
}

impl Replay {
    /// Reads a JSONL file in the import format; lines without a response, or unreadable, are
    /// reported and skipped. The first record of a request wins.
    pub fn load(path: &Path) -> std::io::Result<(Replay, ReplayReport)> {
        let file = std::fs::File::open(path)?;
        let mut replay = Replay::default();
        let mut report = ReplayReport::default();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            match parse_import_line(&line, ImportFormat::Auto) {
                Ok(rec) => match rec.response {
                    Some(resp) => {
                        report.records += 1;
                        if let Some(m) = rec.request.get("model").and_then(Value::as_str)
                            && !replay.models.iter().any(|x| x == m)
                        {
                            replay.models.push(m.to_owned());
                        }
                        replay
                            .answers
                            .entry(replay_key(&rec.request))
                            .or_insert(resp);
                    }
                    None => report.skipped.push((i + 1, "no response".into())),
                },
                Err(e) => report.skipped.push((i + 1, e)),
            }
        }
        report.distinct = replay.answers.len();
        Ok((replay, report))
    }
}

/// The mock's recorded answers, options and counters, shared by its requests.
pub struct MockState {
    replay: Replay,
    options: MockOptions,
    rng: Mutex<StdRng>,
    last_request: Mutex<Bytes>,
    /// Requests received.
    pub requests: AtomicU64,
    /// Requests answered from the replay file (the rest were echoed or failed).
    pub replayed: AtomicU64,
    /// Requests counted against `fail_first`.
    failed_first: AtomicU64,
}

impl MockState {
    /// A mock answering from `replay`, behaving as `options` say.
    pub fn new(replay: Replay, options: MockOptions) -> Arc<MockState> {
        Arc::new(MockState {
            rng: Mutex::new(StdRng::seed_from_u64(options.seed)),
            replay,
            options,
            last_request: Mutex::new(Bytes::new()),
            requests: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            failed_first: AtomicU64::new(0),
        })
    }
}

/// The mock's routes: the OpenAI-compatible `/v1` endpoints, `/mock/last-request` (the last
/// request body received), `/mock/stats` and `/healthz`.
pub fn mock_router(state: Arc<MockState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/embeddings", post(embeddings))
        .route("/v1/responses", post(responses))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/v1/models/{id}", get(model))
        .route("/mock/last-request", get(last_request))
        .route("/mock/stats", get(stats))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// Serves the mock until `shutdown` resolves.
pub async fn run_mock(
    listener: TcpListener,
    state: Arc<MockState>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, mock_router(state))
        .with_graceful_shutdown(shutdown)
        .await
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn bad_request(msg: String) -> Response {
    error_response(
        StatusCode::BAD_REQUEST,
        &ErrorBody::new("invalid_request_error", "invalid_request", msg),
    )
}

/// Faults asked for by options or headers; `Some` is the response to send instead.
async fn inject_faults(s: &MockState, headers: &HeaderMap) -> Option<Response> {
    let delay = header_u64(headers, "x-mock-delay-ms")
        .map(Duration::from_millis)
        .unwrap_or(s.options.delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    if let Some(code) = header_u64(headers, "x-mock-status")
        && let Ok(status) = StatusCode::from_u16(code as u16)
    {
        let body = ErrorBody::new(
            "mock_error",
            &format!("mock_{code}"),
            format!("mock upstream answered {code} as asked by x-mock-status"),
        );
        return Some(error_response(status, &body));
    }
    let first = s.options.fail_first > 0
        && s.failed_first.fetch_add(1, Ordering::Relaxed) < s.options.fail_first;
    let rolled = !first
        && s.options.fail_rate > 0.0
        && s.rng
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .r#gen::<f64>()
            < s.options.fail_rate;
    if first || rolled {
        let status = StatusCode::from_u16(s.options.fail_status)
            .ok()
            .filter(|c| c.is_client_error() || c.is_server_error())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let why = if first { "--fail-first" } else { "--fail-rate" };
        let body = ErrorBody::new(
            if status == StatusCode::TOO_MANY_REQUESTS {
                "rate_limit_exceeded"
            } else {
                "server_error"
            },
            "mock_failure",
            format!("mock upstream failure {} ({why})", status.as_u16()),
        );
        return Some(error_response(status, &body));
    }
    None
}

/// The common prologue of every mock endpoint: count the request, read and remember its body,
/// apply the faults asked for, and parse the body as a JSON object. `Err` is the answer to send.
async fn accept(s: &MockState, req: Request) -> Result<(HeaderMap, Value), Response> {
    s.requests.fetch_add(1, Ordering::Relaxed);
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .map_err(|e| bad_request(format!("could not read body: {e}")))?;
    *s.last_request.lock().unwrap_or_else(|p| p.into_inner()) = bytes.clone();
    if let Some(r) = inject_faults(s, &parts.headers).await {
        return Err(r);
    }
    match serde_json::from_slice(&bytes) {
        Ok(v @ Value::Object(_)) => Ok((parts.headers, v)),
        Ok(_) => Err(bad_request("the request body must be a JSON object".into())),
        Err(e) => Err(bad_request(format!(
            "the request body is not valid JSON: {e}"
        ))),
    }
}

async fn chat(State(s): State<Arc<MockState>>, req: Request) -> Response {
    let (headers, request) = match accept(&s, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(messages) = request.get("messages").and_then(Value::as_array) else {
        return bad_request("'messages' is required".into());
    };
    let key = replay_key(&request);
    let mut response = match s.replay.answers.get(&key) {
        Some(r) => {
            s.replayed.fetch_add(1, Ordering::Relaxed);
            r.clone()
        }
        None => echo(&request, messages, &key),
    };
    if response.get("usage").is_none_or(Value::is_null)
        && let Value::Object(m) = &mut response
    {
        m.insert("usage".into(), estimate_usage(&key, m.get("choices")));
    }
    if !wants_stream(&request) {
        return (
            [(header::CONTENT_TYPE, "application/json")],
            response.to_string(),
        )
            .into_response();
    }
    let include_usage = request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut events: Vec<Bytes> = response_to_chunks(&response, include_usage)
        .into_iter()
        .map(|c| Bytes::from(format!("data: {c}\n\n")))
        .collect();
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    sse(events, chunk_gap(&s, &headers))
}

/// A deterministic answer: the same request always gets the same bytes.
fn echo(request: &Value, messages: &[Value], key: &str) -> Value {
    let model = request.get("model").cloned().unwrap_or(json!("mock"));
    let id = format!("chatcmpl-echo-{:016x}", fnv1a64(key.as_bytes()));
    let forced_tool = match request.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => request
            .pointer("/tools/0/function/name")
            .and_then(Value::as_str)
            .map(str::to_owned),
        Some(Value::Object(o)) => o
            .get("function")
            .and_then(|f| f.get("name"))
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    };
    let message = match forced_tool {
        Some(name) => json!({"role": "assistant", "content": null, "tool_calls": [{
            "id": format!("call_{:08x}", fnv1a64(name.as_bytes()) as u32),
            "type": "function", "function": {"name": name, "arguments": "{}"}}]}),
        None => {
            let last_user = messages
                .iter()
                .rev()
                .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
                .map(content_text)
                .unwrap_or_default();
            json!({"role": "assistant", "content": format!("echo: {last_user}")})
        }
    };
    let finish = if message.get("tool_calls").is_some() {
        "tool_calls"
    } else {
        "stop"
    };
    json!({
        "id": id, "object": "chat.completion", "created": 1735689600, "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
    })
}

/// The text of a message whose content is a string or a list of text parts.
fn content_text(message: &Value) -> String {
    match message.get("content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Roughly four bytes per token, for recorded answers that carry no usage.
fn estimate_usage(prompt_key: &str, choices: Option<&Value>) -> Value {
    let out_bytes = choices.map(|c| c.to_string().len()).unwrap_or(0);
    let p = (prompt_key.len() / 4).max(1) as u64;
    let c = (out_bytes / 4).max(1) as u64;
    json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c})
}

async fn embeddings(State(s): State<Arc<MockState>>, req: Request) -> Response {
    let request = match accept(&s, req).await {
        Ok((_, v)) => v,
        Err(r) => return r,
    };
    let inputs: Vec<String> = match request.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| v.to_string())
            })
            .collect(),
        _ => return bad_request("'input' is required".into()),
    };
    let data: Vec<Value> = inputs
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let h = fnv1a64(text.as_bytes());
            let v: Vec<f64> = (0..8)
                .map(|k| (((h >> (k * 8)) & 0xff) as f64 / 127.5) - 1.0)
                .collect();
            json!({"object": "embedding", "index": i, "embedding": v})
        })
        .collect();
    let tokens: usize = inputs.iter().map(|t| t.len() / 4 + 1).sum();
    let body = json!({"object": "list", "data": data, "model": request.get("model"),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens}});
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn models(State(s): State<Arc<MockState>>) -> Response {
    let mut names = vec!["mock".to_owned()];
    names.extend(s.replay.models.iter().cloned());
    let data: Vec<Value> = names
        .iter()
        .map(|m| json!({"id": m, "object": "model", "created": 0, "owned_by": "downshift-mock"}))
        .collect();
    let body = json!({"object": "list", "data": data});
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn model(State(s): State<Arc<MockState>>, UrlPath(id): UrlPath<String>) -> Response {
    if id != "mock" && !s.replay.models.contains(&id) {
        let body = ErrorBody::new(
            "invalid_request_error",
            "model_not_found",
            format!("The model '{id}' does not exist"),
        );
        return error_response(StatusCode::NOT_FOUND, &body);
    }
    let body = json!({"id": id, "object": "model", "created": 0, "owned_by": "downshift-mock"});
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// A stream of server-sent events, `gap` apart (the first at once).
fn sse(events: Vec<Bytes>, gap: Duration) -> Response {
    let stream = futures_util::stream::unfold(
        (events.into_iter(), true),
        move |(mut it, first)| async move {
            let next = it.next()?;
            if !first && !gap.is_zero() {
                tokio::time::sleep(gap).await;
            }
            Some((Ok::<Bytes, std::io::Error>(next), (it, false)))
        },
    );
    (
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        Body::from_stream(stream),
    )
        .into_response()
}

fn chunk_gap(s: &MockState, headers: &HeaderMap) -> Duration {
    header_u64(headers, "x-mock-chunk-delay-ms")
        .map(Duration::from_millis)
        .unwrap_or(s.options.chunk_delay)
}

fn wants_stream(request: &Value) -> bool {
    request
        .get("stream")
        .and_then(Value::as_bool)
        .unwrap_or(false)
}

/// The text of a Responses API `input`: a string, or the last user item's text.
fn responses_input_text(input: &Value) -> String {
    match input {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .rev()
            .find(|m| m.get("role").and_then(Value::as_str) == Some("user"))
            .map(|m| match m.get("content") {
                Some(Value::Array(parts)) => parts
                    .iter()
                    .filter_map(|p| p.get("text").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join(" "),
                _ => content_text(m),
            })
            .unwrap_or_default(),
        _ => String::new(),
    }
}

/// `POST /v1/responses`: a deterministic echo as a Responses API object, or its event stream
/// (`response.created`, text deltas word by word, `response.completed`).
async fn responses(State(s): State<Arc<MockState>>, req: Request) -> Response {
    let (headers, request) = match accept(&s, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some(input) = request.get("input") else {
        return bad_request("'input' is required".into());
    };
    let key = canonical_json(&json!({"input": input, "instructions": request.get("instructions")}));
    let h = fnv1a64(key.as_bytes());
    let text = format!("echo: {}", responses_input_text(input));
    let model = request.get("model").cloned().unwrap_or(json!("mock"));
    let (p, c) = ((key.len() / 4).max(1), (text.len() / 4).max(1));
    let message = |status: &str, text: &str| {
        json!({"type": "message", "id": format!("msg_echo_{h:016x}"), "status": status,
            "role": "assistant", "content": [{"type": "output_text", "text": text, "annotations": []}]})
    };
    let object = |status: &str, output: Value, usage: Value| {
        json!({"id": format!("resp_echo_{h:016x}"), "object": "response", "created_at": 1735689600,
            "status": status, "model": model, "output": output, "usage": usage})
    };
    let done = object(
        "completed",
        json!([message("completed", &text)]),
        json!({"input_tokens": p, "output_tokens": c, "total_tokens": p + c}),
    );
    if !wants_stream(&request) {
        return (
            [(header::CONTENT_TYPE, "application/json")],
            done.to_string(),
        )
            .into_response();
    }
    let mut seq = 0u64;
    let mut events = Vec::new();
    let mut event = |kind: &str, mut v: Value| {
        v["type"] = json!(kind);
        v["sequence_number"] = json!(seq);
        seq += 1;
        events.push(Bytes::from(format!("event: {kind}\ndata: {v}\n\n")));
    };
    event(
        "response.created",
        json!({"response": object("in_progress", json!([]), Value::Null)}),
    );
    event(
        "response.output_item.added",
        json!({"output_index": 0, "item": message("in_progress", "")}),
    );
    for word in text.split_inclusive(' ') {
        event(
            "response.output_text.delta",
            json!({"item_id": format!("msg_echo_{h:016x}"), "output_index": 0, "content_index": 0, "delta": word}),
        );
    }
    event(
        "response.output_text.done",
        json!({"item_id": format!("msg_echo_{h:016x}"), "output_index": 0, "content_index": 0, "text": text}),
    );
    event(
        "response.output_item.done",
        json!({"output_index": 0, "item": message("completed", &text)}),
    );
    event("response.completed", json!({"response": done}));
    sse(events, chunk_gap(&s, &headers))
}

/// `POST /v1/completions`: the legacy text completion, an echo of the prompt, plain or streamed.
async fn completions(State(s): State<Arc<MockState>>, req: Request) -> Response {
    let (headers, request) = match accept(&s, req).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let prompt = match request.get("prompt") {
        Some(Value::String(p)) => p.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        _ => return bad_request("'prompt' is required".into()),
    };
    let h = fnv1a64(prompt.as_bytes());
    let text = format!(" echo: {prompt}");
    let model = request.get("model").cloned().unwrap_or(json!("mock"));
    let (p, c) = ((prompt.len() / 4).max(1), (text.len() / 4).max(1));
    let id = format!("cmpl-echo-{h:016x}");
    let usage = json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c});
    if !wants_stream(&request) {
        let body = json!({"id": id, "object": "text_completion", "created": 1735689600, "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "stop"}],
            "usage": usage});
        return (
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response();
    }
    let chunk = |text: &str, finish: Value| {
        let v = json!({"id": id, "object": "text_completion", "created": 1735689600, "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish}]});
        Bytes::from(format!("data: {v}\n\n"))
    };
    let mut events: Vec<Bytes> = text
        .split_inclusive(' ')
        .map(|w| chunk(w, Value::Null))
        .collect();
    events.push(chunk("", json!("stop")));
    if request
        .pointer("/stream_options/include_usage")
        .and_then(Value::as_bool)
        .unwrap_or(false)
    {
        let v = json!({"id": id, "object": "text_completion", "created": 1735689600, "model": model,
            "choices": [], "usage": usage});
        events.push(Bytes::from(format!("data: {v}\n\n")));
    }
    events.push(Bytes::from_static(b"data: [DONE]\n\n"));
    sse(events, chunk_gap(&s, &headers))
}

/// The exact bytes of the last request body (for byte-faithfulness tests).
async fn last_request(State(s): State<Arc<MockState>>) -> Response {
    let bytes = s
        .last_request
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response()
}

async fn stats(State(s): State<Arc<MockState>>) -> Response {
    let body = json!({
        "requests": s.requests.load(Ordering::Relaxed),
        "replayed": s.replayed.load(Ordering::Relaxed),
        "recorded": s.replay.answers.len(),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_is_deterministic_and_forces_tools() {
        let req = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let key = replay_key(&req);
        let a = echo(&req, req["messages"].as_array().unwrap(), &key);
        assert_eq!(a, echo(&req, req["messages"].as_array().unwrap(), &key));
        assert_eq!(a["choices"][0]["message"]["content"], "echo: hi");
        let req = json!({"model": "m", "messages": [], "tool_choice": "required",
            "tools": [{"type": "function", "function": {"name": "get_weather"}}]});
        let b = echo(&req, &[], &replay_key(&req));
        assert_eq!(
            b["choices"][0]["message"]["tool_calls"][0]["function"]["name"],
            "get_weather"
        );
        assert_eq!(b["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn replay_matches_regardless_of_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.jsonl");
        std::fs::write(
            &path,
            "{\"request\":{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"q\"}]},\"response\":{\"id\":\"r1\"}}\nnot json\n{\"request\":{\"messages\":[]}}\n",
        )
        .unwrap();
        let (replay, report) = Replay::load(&path).unwrap();
        assert_eq!(report.records, 1);
        assert_eq!(report.skipped.len(), 2);
        assert_eq!(report.skipped[0].0, 2);
        let probe: Value =
            serde_json::from_str(r#"{"messages":[{"content":"q","role":"user"}],"model":"other"}"#)
                .unwrap();
        assert_eq!(replay.answers[&replay_key(&probe)]["id"], "r1");
    }
}
