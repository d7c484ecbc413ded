//! The OpenAI-compatible proxy: forwards the agent's bytes untouched, hands the upstream's bytes
//! back untouched, and logs the call on the side.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use downshift_api::{RequestView, StreamAssembler, Usage};

use crate::events::Collector;
use downshift_store::{CallStatus, FALLBACK_TAG, Permission, ROUTE_TAG, TASK_TAG};
use http::{HeaderMap, HeaderName, HeaderValue, Method, header};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use serde::Deserialize;

use crate::GatewayError;
use crate::call::{CallContext, CallGuard, Outcome};
use crate::routing::Routed;
use crate::server::AppState;
use crate::tee::TeeBody;
use crate::upstream::Upstream;
use downshift_route::{AgreementSource, Decision};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    ChatCompletions,
    Embeddings,
    /// The Responses API (`/v1/responses`).
    Responses,
    /// Legacy text completions (`/v1/completions`).
    Completions,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat/completions",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Responses => "responses",
            Endpoint::Completions => "completions",
        }
    }
}

pub async fn chat_completions(State(s): State<Arc<AppState>>, req: Request) -> Response {
    respond(
        &s,
        Endpoint::ChatCompletions.path(),
        proxy(s.clone(), req, Endpoint::ChatCompletions).await,
    )
}

pub async fn embeddings(State(s): State<Arc<AppState>>, req: Request) -> Response {
    respond(
        &s,
        Endpoint::Embeddings.path(),
        proxy(s.clone(), req, Endpoint::Embeddings).await,
    )
}

pub async fn responses(State(s): State<Arc<AppState>>, req: Request) -> Response {
    respond(
        &s,
        Endpoint::Responses.path(),
        proxy(s.clone(), req, Endpoint::Responses).await,
    )
}

pub async fn completions(State(s): State<Arc<AppState>>, req: Request) -> Response {
    respond(
        &s,
        Endpoint::Completions.path(),
        proxy(s.clone(), req, Endpoint::Completions).await,
    )
}

/// Counts the answer in the metrics and turns an error into its OpenAI-style body.
pub fn respond(
    s: &AppState,
    endpoint: &'static str,
    r: Result<Response, GatewayError>,
) -> Response {
    let resp = r.unwrap_or_else(IntoResponse::into_response);
    s.metrics.request(endpoint, resp.status().as_u16());
    resp
}

/// Headers that describe one hop, or that downshift replaces, and so are never forwarded.
pub(crate) fn hop_header(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "host"
            | "content-length"
    )
}

fn forward_request_header(name: &HeaderName) -> bool {
    !hop_header(name)
        && !matches!(
            name.as_str(),
            "authorization" | "api-key" | "x-api-key" | "accept-encoding"
        )
        && !name.as_str().starts_with("x-downshift-")
}

/// Reads the body within `timeout`, refusing more than `limit` bytes.
pub async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<Bytes, GatewayError> {
    match tokio::time::timeout(timeout, read_body_unbounded(body, headers, limit)).await {
        Ok(r) => r,
        Err(_) => Err(GatewayError::BodyTimeout(
            timeout.as_millis().min(u128::from(u64::MAX)) as u64,
        )),
    }
}

async fn read_body_unbounded(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
) -> Result<Bytes, GatewayError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(GatewayError::TooLarge(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(GatewayError::TooLarge(limit))
        }
        Err(e) => Err(GatewayError::BadRequest(format!(
            "could not read the request body: {e}"
        ))),
    }
}

/// `k=v,k2=v2` from `x-downshift-tags`.
fn parse_tags(
    headers: &HeaderMap,
    tags: &mut BTreeMap<String, String>,
) -> Result<(), GatewayError> {
    for value in headers.get_all("x-downshift-tags") {
        let text = value
            .to_str()
            .map_err(|_| GatewayError::BadRequest("x-downshift-tags must be ASCII".into()))?;
        for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').ok_or_else(|| {
                GatewayError::BadRequest(format!("x-downshift-tags: '{pair}' is not k=v"))
            })?;
            tags.insert(k.trim().to_owned(), v.trim().to_owned());
        }
    }
    Ok(())
}

/// An `x-downshift-*` header's trimmed text; a value that is not ASCII is refused (as for
/// `x-downshift-tags`) rather than silently dropped.
fn downshift_header<'a>(
    headers: &'a HeaderMap,
    name: &str,
) -> Result<Option<&'a str>, GatewayError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => {
            let text = v
                .to_str()
                .map_err(|_| GatewayError::BadRequest(format!("{name} must be ASCII")))?;
            Ok(Some(text.trim()).filter(|t| !t.is_empty()))
        }
    }
}

/// Where a request goes.
enum Target {
    Upstream(Arc<Upstream>),
    Local(Arc<crate::local::LocalSlot>, Box<crate::local::Plan>),
}

async fn proxy(
    s: Arc<AppState>,
    req: Request,
    endpoint: Endpoint,
) -> Result<Response, GatewayError> {
    let t0 = Instant::now();
    let (parts, body) = req.into_parts();
    let principal = s.auth.authenticate(&parts.headers).await?;
    principal.require(Permission::CallModels, "call the /v1 API")?;
    let bytes = read_body(body, &parts.headers, s.max_body, s.body_timeout).await?;
    let view = RequestView::parse(&bytes).map_err(GatewayError::BadRequest)?;
    if endpoint == Endpoint::Embeddings && view.stream {
        return Err(GatewayError::BadRequest(
            "embeddings cannot be streamed".into(),
        ));
    }
    // `local/<name>` runs on a native small model instead of an upstream.
    let target = if view.model.starts_with(crate::local::LOCAL_PREFIX) {
        if endpoint != Endpoint::ChatCompletions {
            return Err(GatewayError::BadRequest(format!(
                "local models serve chat completions only, not {}",
                endpoint.path()
            )));
        }
        let (slot, adapter) = s.local.resolve(&view.model)?;
        let plan = slot.plan(&bytes, adapter)?;
        Target::Local(slot, Box::new(plan))
    } else {
        Target::Upstream(
            s.upstreams
                .resolve(&view.model)
                .cloned()
                .ok_or_else(|| GatewayError::UnknownModel(view.model.clone()))?,
        )
    };
    let mut tags = BTreeMap::new();
    parse_tags(&parts.headers, &mut tags)?;
    // Which discovered task this is, and who answers it under the task's policy.
    let routed = match (&target, endpoint) {
        (Target::Upstream(_), Endpoint::ChatCompletions) if s.router.enabled() => {
            let t_route = Instant::now();
            let r = s.router.route(&bytes);
            s.metrics.route_decision.observe(t_route.elapsed());
            r
        }
        _ => None,
    };
    if let Some(r) = &routed {
        tags.insert(TASK_TAG.into(), r.task.to_string());
    }
    let (agent, episode) = {
        let keyring = s.keyring.read().unwrap_or_else(|p| p.into_inner());
        (
            downshift_header(&parts.headers, "x-downshift-agent")?
                .map(|a| keyring.pseudonym("agent", a))
                .or(principal.agent.clone()),
            downshift_header(&parts.headers, "x-downshift-episode")?
                .map(|e| keyring.pseudonym("episode", e)),
        )
    };
    if s.limits.enabled() {
        s.limits.admit(
            principal.key_id.as_deref(),
            agent.as_deref(),
            downshift_store::now_ms(),
        )?;
    }
    let id = uuid::Uuid::now_v7().to_string();
    let mut guard = CallGuard::new(
        CallContext {
            id: id.clone(),
            ts_ms: downshift_store::now_ms(),
            endpoint: endpoint.path(),
            model: view.model.clone(),
            upstream: Some(match &target {
                Target::Upstream(u) => u.name.clone(),
                Target::Local(slot, _) => format!("local:{}", slot.name),
            }),
            stream: view.stream,
            agent,
            episode,
            api_key_id: principal.key_id.clone(),
            tags,
            request: bytes.clone(),
            t0,
            t_sent: None,
            span: crate::telemetry::call_span(
                endpoint.path(),
                &view.model,
                &id,
                view.stream,
                &parts.headers,
            ),
        },
        s.clone(),
    );
    let upstream = match target {
        Target::Upstream(u) => u,
        Target::Local(slot, plan) => {
            return crate::local::serve(slot, *plan, guard, id, view.model.clone()).await;
        }
    };
    let mut fallback: Option<&'static str> = None;
    if let Some(r) = &routed {
        match r.decision {
            Decision::Llm => s.metrics.route(&r.task, "llm"),
            Decision::LlmWithShadow => {
                s.metrics.route(&r.task, "llm");
                start_shadow(&s, r, &bytes, &mut guard, &id, &view.model);
            }
            Decision::Specialist { shadow } => {
                let request: serde_json::Value = serde_json::from_slice(&bytes)
                    .map_err(|e| GatewayError::BadRequest(format!("invalid request: {e}")))?;
                match s.router.run_specialist(r, &request, &id, &view.model).await {
                    Ok(answer) => {
                        s.metrics.route(&r.task, "specialist");
                        if shadow {
                            start_llm_comparison(
                                &s,
                                r,
                                &upstream,
                                &parts.headers,
                                &bytes,
                                &request,
                                &answer.message,
                                &id,
                            );
                        }
                        return serve_specialist_answer(guard, r, answer, &request, &id, t0);
                    }
                    Err(reason) => {
                        s.metrics.route(&r.task, "fallback");
                        crate::routing::record_fallback(
                            s.store.clone(),
                            &s.metrics,
                            r,
                            &reason,
                            &id,
                        );
                        fallback = Some(reason.code());
                        if let Some(ctx) = guard.ctx_mut() {
                            ctx.tags.insert(FALLBACK_TAG.into(), reason.code().into());
                        }
                    }
                }
            }
        }
    }

    let t_sent = Instant::now();
    if let Some(ctx) = guard.ctx_mut() {
        ctx.t_sent = Some(t_sent);
    }
    let pre = t_sent.duration_since(t0);
    // Attempts: a call answered first time only passes the `failure` branch; a failed attempt
    // (connection error, 429, 5xx: before any byte reached the client) moves to the next
    // deployment or fallback model, and every attempt is recorded on the call.
    let mut upstream = upstream;
    let mut body = bytes.clone();
    let mut retrying: Option<Retrying> = None;
    let mut attempts: Vec<Attempt> = Vec::new();
    let (answer, busy, t_try) = loop {
        let busy = s.upstreams.busy(&upstream);
        let up_req = upstream_request(&upstream, endpoint, &parts.headers, body.clone())?;
        let t_try = Instant::now();
        let answer = tokio::time::timeout(upstream.timeout, upstream.client.request(up_req)).await;
        let failure = match &answer {
            Ok(Err(_)) => Some(None),
            Ok(Ok(r)) if retryable(r.status()) => Some(retry_after(r.headers())),
            _ => None,
        };
        let Some(retry_after) = failure else {
            break (answer, busy, t_try);
        };
        if retrying.is_none() {
            if !s.upstreams.can_retry(&view.model) {
                break (answer, busy, t_try);
            }
            retrying = Some(Retrying::new(s.upstreams.plan(&view.model, &upstream), &s));
        }
        let Some((next, wait)) = retrying.as_mut().and_then(|r| r.next(retry_after)) else {
            break (answer, busy, t_try);
        };
        let attempt_model = retrying.as_ref().and_then(|r| r.model.clone());
        let attempt = failed_attempt(&s, &upstream, attempt_model, t_try, answer).await;
        attempt.trace(&guard);
        attempts.push(attempt);
        drop(busy);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        body = match &next.model {
            Some(m) => with_model(&bytes, m)?,
            None => bytes.clone(),
        };
        if let Some(r) = retrying.as_mut() {
            r.model = next.model;
        }
        upstream = next.upstream;
    };
    if let Some(r) = &retrying {
        let last = Attempt::of(&upstream, r.model.clone(), t_try, &answer);
        last.trace(&guard);
        attempts.push(last);
        if let Some(ctx) = guard.ctx_mut() {
            ctx.span
                .record("downshift.attempts", crate::telemetry::int(attempts.len()));
            ctx.upstream = Some(upstream.name.clone());
            ctx.tags.insert(
                ATTEMPTS_TAG.into(),
                serde_json::to_string(&attempts).unwrap_or_default(),
            );
        }
    }
    let resp = match answer {
        Err(_) => return Ok(with_call_id(fail_timeout(&s, &mut guard, &upstream), &id)),
        Ok(Err(e)) => {
            return Ok(with_call_id(
                fail_unreachable(&s, &mut guard, &upstream, &e),
                &id,
            ));
        }
        Ok(Ok(r)) => r,
    };
    let t_headers = Instant::now();
    let (up_parts, up_body) = resp.into_parts();
    let is_sse = up_parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));

    let mut builder = Response::builder().status(up_parts.status);
    if let Some(h) = builder.headers_mut() {
        for (name, value) in up_parts.headers.iter() {
            if !hop_header(name) {
                h.append(name, value.clone());
            }
        }
        if let Ok(v) = HeaderValue::from_str(&id) {
            h.insert("x-downshift-call-id", v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("llm:{}", upstream.name)) {
            h.insert("x-downshift-route", v);
        }
        if let Some(code) = fallback {
            h.insert("x-downshift-fallback", HeaderValue::from_static(code));
        }
        if !attempts.is_empty() {
            h.insert("x-downshift-attempts", HeaderValue::from(attempts.len()));
        }
        if let Some(r) = &routed
            && let Ok(v) = HeaderValue::from_str(&r.task)
        {
            h.insert("x-downshift-task", v);
        }
    }

    if view.stream && up_parts.status.is_success() && is_sse {
        let overhead = pre + t_headers.elapsed();
        let body = TeeBody {
            inner: up_body,
            asm: Collector::for_endpoint(endpoint),
            idle: Box::pin(tokio::time::sleep(upstream.stream_idle_timeout)),
            idle_for: upstream.stream_idle_timeout,
            guard,
            http_status: up_parts.status.as_u16(),
            t_sent,
            ttft: None,
            overhead,
            _busy: busy,
            limits: s.limits.enabled().then(|| s.limits.clone()),
        };
        return builder
            .body(Body::new(body))
            .map_err(|e| GatewayError::Internal(e.to_string()));
    }

    // Non-streaming: take the whole answer within what is left of the time limit.
    let left = upstream.timeout.saturating_sub(t_sent.elapsed());
    let collected = match tokio::time::timeout(left, up_body.collect()).await {
        Err(_) => return Ok(with_call_id(fail_timeout(&s, &mut guard, &upstream), &id)),
        Ok(Err(e)) => {
            return Ok(with_call_id(
                fail_unreachable(&s, &mut guard, &upstream, &e),
                &id,
            ));
        }
        Ok(Ok(c)) => c.to_bytes(),
    };
    let t_done = Instant::now();
    let ok = up_parts.status.is_success();
    if !ok {
        s.metrics.upstream_error(&upstream.name, "status");
    }
    let usage = if ok {
        usage_from_body(&collected)
    } else {
        None
    };
    let response = builder
        .body(Body::from(collected.clone()))
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    if s.limits.enabled() {
        account(&s.limits, &guard, usage);
    }
    guard.finish(Outcome {
        status: if ok {
            CallStatus::Ok
        } else {
            CallStatus::UpstreamError
        },
        http_status: Some(up_parts.status.as_u16()),
        response: collected.to_vec(),
        usage,
        ttft: None,
        overhead: Some(pre + t_done.elapsed()),
    });
    Ok(response)
}

/// Answers with the specialist's completion (streamed as SSE when the client asked for a
/// stream) and logs the call as the specialist's.
fn serve_specialist_answer(
    mut guard: CallGuard,
    r: &Routed,
    a: crate::specialist::SpecialistAnswer,
    request: &serde_json::Value,
    id: &str,
    t0: Instant,
) -> Result<Response, GatewayError> {
    let stream = request
        .get("stream")
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let include_usage = request["stream_options"]["include_usage"]
        .as_bool()
        .unwrap_or(false);
    let logged = a.body.to_string();
    let (content_type, body) = if stream {
        (
            "text/event-stream",
            crate::specialist::completion_sse(&a.body, include_usage),
        )
    } else {
        ("application/json", logged.clone())
    };
    let spec = r.policy.specialist.clone().unwrap_or_default();
    if let Some(ctx) = guard.ctx_mut() {
        ctx.upstream = Some(format!("specialist:{spec}"));
        ctx.tags.insert(ROUTE_TAG.into(), "specialist".into());
        if ctx.t_sent.is_none() {
            ctx.t_sent = Some(t0);
        }
    }
    guard.finish(Outcome {
        status: CallStatus::Ok,
        http_status: Some(200),
        response: logged.into_bytes(),
        usage: a.usage,
        ttft: None,
        overhead: None,
    });
    let mut b = Response::builder()
        .status(200)
        .header(header::CONTENT_TYPE, content_type)
        .header("x-downshift-call-id", id);
    if let Ok(v) = HeaderValue::from_str(&format!("specialist:{}", r.task)) {
        b = b.header("x-downshift-route", v);
    }
    if let Ok(v) = HeaderValue::from_str(&r.task) {
        b = b.header("x-downshift-task", v);
    }
    if stream {
        b = b.header(header::CACHE_CONTROL, "no-cache");
    }
    b.body(Body::from(body))
        .map_err(|e| GatewayError::Internal(e.to_string()))
}

/// Releases a background comparison slot however the comparison ends.
struct ShadowSlot(Arc<AppState>);

impl ShadowSlot {
    /// A slot for one background comparison, or `None` (counted) when all are busy.
    fn claim(s: &Arc<AppState>) -> Option<ShadowSlot> {
        if s.router.try_shadow() {
            return Some(ShadowSlot(s.clone()));
        }
        s.metrics
            .shadow_skipped
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        None
    }
}

impl Drop for ShadowSlot {
    fn drop(&mut self) {
        self.0.router.shadow_done();
    }
}

/// Shadow mode: the LLM answers this request; the specialist runs on it in the background and
/// its agreement with the LLM's answer (once the call finishes) is recorded.
fn start_shadow(
    s: &Arc<AppState>,
    r: &Routed,
    bytes: &Bytes,
    guard: &mut CallGuard,
    id: &str,
    model: &str,
) {
    let Some(slot) = ShadowSlot::claim(s) else {
        return;
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    guard.send_answer_to(tx);
    let (s, r, bytes, id, model) = (
        s.clone(),
        r.clone(),
        bytes.clone(),
        id.to_owned(),
        model.to_owned(),
    );
    tokio::spawn(async move {
        let _slot = slot;
        let Ok(request) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return;
        };
        let spec = s.router.run_specialist(&r, &request, &id, &model).await;
        // No answer from the LLM (it failed, or the client left): nothing to compare.
        let Ok(llm) = rx.await else { return };
        let Ok(llm) = serde_json::from_slice::<serde_json::Value>(&llm) else {
            return;
        };
        let Some(reference) = crate::routing::answer_message(&llm) else {
            return;
        };
        let value =
            crate::routing::measure(&request, reference, spec.as_ref().ok().map(|a| &a.message));
        crate::routing::record_agreement(
            s.router.clone(),
            s.store.clone(),
            &s.metrics,
            &r,
            AgreementSource::Shadow,
            id,
            value,
        );
    });
}

/// Canary and `on` mode's sample: the specialist answered; the LLM answers the same request in
/// the background and the two are compared.
#[allow(clippy::too_many_arguments)]
fn start_llm_comparison(
    s: &Arc<AppState>,
    r: &Routed,
    upstream: &Arc<Upstream>,
    headers: &HeaderMap,
    bytes: &Bytes,
    request: &serde_json::Value,
    answer: &serde_json::Value,
    id: &str,
) {
    let Some(slot) = ShadowSlot::claim(s) else {
        return;
    };
    let source = if matches!(r.policy.mode, downshift_route::Mode::Canary(_)) {
        AgreementSource::Canary
    } else {
        AgreementSource::OnSample
    };
    let Ok(up_req) = upstream_request(upstream, Endpoint::ChatCompletions, headers, bytes.clone())
    else {
        return;
    };
    let (s, r, upstream, request, answer, id) = (
        s.clone(),
        r.clone(),
        upstream.clone(),
        request.clone(),
        answer.clone(),
        id.to_owned(),
    );
    tokio::spawn(async move {
        let _slot = slot;
        let call = async {
            let resp = upstream.client.request(up_req).await.ok()?;
            if !resp.status().is_success() {
                return None;
            }
            let sse = resp
                .headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("text/event-stream"));
            let body = resp.into_body().collect().await.ok()?.to_bytes();
            if sse {
                let mut asm = StreamAssembler::new();
                asm.feed(&body);
                Some(asm.finish())
            } else {
                serde_json::from_slice::<serde_json::Value>(&body).ok()
            }
        };
        let Ok(Some(llm)) = tokio::time::timeout(upstream.timeout, call).await else {
            return;
        };
        let Some(reference) = crate::routing::answer_message(&llm) else {
            return;
        };
        let value = crate::routing::measure(&request, reference, Some(&answer));
        crate::routing::record_agreement(
            s.router.clone(),
            s.store.clone(),
            &s.metrics,
            &r,
            source,
            id,
            value,
        );
    });
}

/// Counts an answered call's tokens and cost against its key's and agent's limits.
pub(crate) fn account(limits: &crate::limits::Limiter, guard: &CallGuard, usage: Option<Usage>) {
    if let (Some(u), Some(ctx)) = (usage, guard.ctx()) {
        limits.record(
            ctx.api_key_id.as_deref(),
            ctx.agent.as_deref(),
            &ctx.model,
            u,
            ctx.ts_ms,
            downshift_store::now_ms(),
        );
    }
}

/// The call tag holding every attempt of a call that was tried more than once (a JSON list of
/// `{upstream, model?, status?, latency_ms, error?}`); a call answered first time has none.
pub const ATTEMPTS_TAG: &str = "downshift_attempts";

/// One try of a call on one upstream.
#[derive(Debug, serde::Serialize)]
struct Attempt {
    upstream: String,
    /// The fallback model sent instead of the requested one.
    #[serde(skip_serializing_if = "Option::is_none")]
    model: Option<String>,
    /// The upstream's HTTP status; none when no response came.
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    /// Time to the response head (or the failure).
    latency_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

type Answer = Result<
    Result<http::Response<Incoming>, hyper_util::client::legacy::Error>,
    tokio::time::error::Elapsed,
>;

impl Attempt {
    /// The attempt as an event on the call's span.
    fn trace(&self, guard: &CallGuard) {
        if let Some(ctx) = guard.ctx() {
            crate::telemetry::attempt_event(
                &ctx.span,
                &self.upstream,
                self.model.as_deref(),
                self.status,
                self.latency_ms,
                self.error.as_deref(),
            );
        }
    }

    /// The last attempt, whose answer goes on to the client.
    fn of(upstream: &Upstream, model: Option<String>, since: Instant, answer: &Answer) -> Attempt {
        let (status, error) = match answer {
            Ok(Ok(r)) => (Some(r.status().as_u16()), None),
            Ok(Err(e)) => (None, Some(error_chain(e))),
            Err(_) => (None, Some("timeout".to_owned())),
        };
        Attempt {
            upstream: upstream.name.clone(),
            model,
            status,
            latency_ms: since.elapsed().as_secs_f64() * 1000.0,
            error,
        }
    }
}

/// Records an attempt that failed and will be tried elsewhere; reads (and drops) an error
/// answer's body for its message.
async fn failed_attempt(
    s: &AppState,
    upstream: &Upstream,
    model: Option<String>,
    t_try: Instant,
    answer: Answer,
) -> Attempt {
    let latency_ms = t_try.elapsed().as_secs_f64() * 1000.0;
    let (status, error) = match answer {
        Ok(Ok(r)) => {
            s.metrics.upstream_error(&upstream.name, "status");
            let status = r.status().as_u16();
            let body = tokio::time::timeout(ERROR_BODY_WAIT, r.into_body().collect()).await;
            let message = match body {
                Ok(Ok(b)) => error_message(&b.to_bytes()),
                _ => String::new(),
            };
            (Some(status), Some(message).filter(|m| !m.is_empty()))
        }
        Ok(Err(e)) => {
            s.metrics.upstream_error(&upstream.name, "unreachable");
            (None, Some(error_chain(&e)))
        }
        Err(_) => (None, Some("timeout".to_owned())),
    };
    Attempt {
        upstream: upstream.name.clone(),
        model,
        status,
        latency_ms,
        error,
    }
}

/// How long a failed attempt's error body is waited for before the next attempt.
const ERROR_BODY_WAIT: Duration = Duration::from_secs(2);

/// The message of an OpenAI-style error body, else the start of the body's text.
fn error_message(body: &[u8]) -> String {
    let parsed = serde_json::from_slice::<serde_json::Value>(body).ok();
    let message = parsed
        .as_ref()
        .and_then(|v| v.pointer("/error/message"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    message.chars().take(300).collect()
}

/// Statuses worth trying again elsewhere: rate limited, or the upstream's own failure.
fn retryable(status: http::StatusCode) -> bool {
    status == http::StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// A `Retry-After` given in seconds.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: f64 = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(3600.0)))
}

/// Where a failed call goes next: the plan of deployments and fallbacks, walked round by round
/// with a growing wait between rounds.
struct Retrying {
    plan: Vec<crate::upstream::Candidate>,
    at: usize,
    round: u32,
    policy: crate::upstream::RetryPolicy,
    /// The fallback model the current attempt sends (`None`: the requested one).
    model: Option<String>,
}

impl Retrying {
    fn new(plan: Vec<crate::upstream::Candidate>, s: &AppState) -> Retrying {
        Retrying {
            plan,
            at: 0,
            round: 0,
            policy: s.upstreams.retry_policy(),
            model: None,
        }
    }

    /// The next place to try and how long to wait first; `None` when everything was tried.
    fn next(
        &mut self,
        retry_after: Option<Duration>,
    ) -> Option<(crate::upstream::Candidate, Duration)> {
        self.at += 1;
        let mut wait = Duration::ZERO;
        if self.at >= self.plan.len() {
            if self.round >= self.policy.retries {
                return None;
            }
            self.round += 1;
            self.at = 0;
            wait = self.policy.wait(self.round, retry_after);
        }
        self.plan.get(self.at).cloned().map(|c| (c, wait))
    }
}

/// The request with its top-level `model` replaced (a fallback model); every other member keeps
/// its bytes and its place.
fn with_model(body: &[u8], model: &str) -> Result<Bytes, GatewayError> {
    struct Members<'a>(Vec<(String, &'a serde_json::value::RawValue)>);
    impl<'de> Deserialize<'de> for Members<'de> {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> serde::de::Visitor<'de> for V {
                type Value = Members<'de>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("a JSON object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(
                    self,
                    mut map: A,
                ) -> Result<Members<'de>, A::Error> {
                    let mut v = Vec::new();
                    while let Some(entry) = map.next_entry()? {
                        v.push(entry);
                    }
                    Ok(Members(v))
                }
            }
            d.deserialize_map(V)
        }
    }
    let members: Members = serde_json::from_slice(body).map_err(|e| {
        GatewayError::BadRequest(format!("the request body is not valid JSON: {e}"))
    })?;
    let model = serde_json::to_string(model).map_err(|e| GatewayError::Internal(e.to_string()))?;
    let mut out = Vec::with_capacity(body.len() + model.len());
    out.push(b'{');
    for (i, (k, v)) in members.0.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let key = serde_json::to_string(k).map_err(|e| GatewayError::Internal(e.to_string()))?;
        out.extend_from_slice(key.as_bytes());
        out.push(b':');
        if k == "model" {
            out.extend_from_slice(model.as_bytes());
        } else {
            out.extend_from_slice(v.get().as_bytes());
        }
    }
    out.push(b'}');
    Ok(Bytes::from(out))
}

/// An error and its sources, joined.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut reason = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        reason.push_str(": ");
        reason.push_str(&inner.to_string());
        source = inner.source();
    }
    reason
}

/// The POST of the agent's bytes to `upstream`, with the headers that are forwarded.
fn upstream_request(
    upstream: &Upstream,
    endpoint: Endpoint,
    headers: &HeaderMap,
    bytes: Bytes,
) -> Result<http::Request<Full<Bytes>>, GatewayError> {
    let uri = upstream
        .url(endpoint.path())
        .map_err(|e| GatewayError::Internal(format!("bad upstream URL: {e}")))?;
    let mut up_req = http::Request::new(Full::new(bytes));
    *up_req.method_mut() = Method::POST;
    *up_req.uri_mut() = uri;
    copy_request_headers(headers, up_req.headers_mut(), upstream);
    Ok(up_req)
}

pub(crate) fn copy_request_headers(from: &HeaderMap, to: &mut HeaderMap, upstream: &Upstream) {
    for (name, value) in from.iter() {
        if forward_request_header(name) {
            to.append(name, value.clone());
        }
    }
    if !to.contains_key(header::CONTENT_TYPE) {
        to.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    if let Some(auth) = &upstream.authorization {
        to.insert(header::AUTHORIZATION, auth.clone());
    }
    for (name, value) in &upstream.headers {
        to.insert(name, value.clone());
    }
}

/// A gateway-made error answer for a logged call, carrying the call's id.
fn with_call_id(e: GatewayError, id: &str) -> Response {
    let mut resp = e.into_response();
    if let Ok(v) = HeaderValue::from_str(id) {
        resp.headers_mut().insert("x-downshift-call-id", v);
    }
    resp
}

fn fail_timeout(s: &AppState, guard: &mut CallGuard, upstream: &Upstream) -> GatewayError {
    s.metrics.upstream_error(&upstream.name, "timeout");
    let err = GatewayError::Timeout {
        upstream: upstream.name.clone(),
        ms: upstream.timeout.as_millis() as u64,
    };
    guard.finish(Outcome::failed(
        CallStatus::Timeout,
        err.status().as_u16(),
        err.body().to_json().into_bytes(),
    ));
    err
}

fn fail_unreachable(
    s: &AppState,
    guard: &mut CallGuard,
    upstream: &Upstream,
    e: &(dyn std::error::Error + 'static),
) -> GatewayError {
    s.metrics.upstream_error(&upstream.name, "unreachable");
    let err = GatewayError::Unreachable {
        upstream: upstream.name.clone(),
        reason: error_chain(e),
    };
    guard.finish(Outcome::failed(
        CallStatus::Unreachable,
        err.status().as_u16(),
        err.body().to_json().into_bytes(),
    ));
    err
}

/// Reads only `usage` out of a response body, skipping everything else.
fn usage_from_body(body: &[u8]) -> Option<Usage> {
    #[derive(Deserialize)]
    struct OnlyUsage {
        usage: Option<RawUsage>,
    }
    #[derive(Deserialize)]
    struct RawUsage {
        #[serde(default, alias = "input_tokens")]
        prompt_tokens: u64,
        #[serde(default, alias = "output_tokens")]
        completion_tokens: u64,
    }
    let u = serde_json::from_slice::<OnlyUsage>(body).ok()?.usage?;
    Some(Usage {
        prompt_tokens: u.prompt_tokens,
        completion_tokens: u.completion_tokens,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_header_is_parsed_or_refused() {
        let mut h = HeaderMap::new();
        h.append("x-downshift-tags", HeaderValue::from_static("a=1, b = two"));
        h.append("x-downshift-tags", HeaderValue::from_static("c=3"));
        let mut tags = BTreeMap::new();
        parse_tags(&h, &mut tags).unwrap();
        assert_eq!(tags.len(), 3);
        assert_eq!(tags["b"], "two");
        let mut bad = HeaderMap::new();
        bad.insert("x-downshift-tags", HeaderValue::from_static("novalue"));
        assert!(parse_tags(&bad, &mut BTreeMap::new()).is_err());
    }

    #[test]
    fn only_end_to_end_headers_are_forwarded() {
        for h in [
            "authorization",
            "host",
            "content-length",
            "x-downshift-agent",
            "connection",
            "accept-encoding",
        ] {
            assert!(!forward_request_header(&HeaderName::from_static(h)), "{h}");
        }
        for h in [
            "content-type",
            "openai-organization",
            "user-agent",
            "x-stainless-lang",
        ] {
            assert!(forward_request_header(&HeaderName::from_static(h)), "{h}");
        }
    }

    #[test]
    fn a_fallback_model_replaces_only_the_model() {
        let body = br#"{"z":1, "model" : "gpt-4o","messages":[{"model":"keep"}],"x":"\u00e9"}"#;
        let out = with_model(body, "mini \"2\"").unwrap();
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            r#"{"z":1,"model":"mini \"2\"","messages":[{"model":"keep"}],"x":"\u00e9"}"#
        );
        assert!(with_model(b"[1]", "m").is_err());
    }

    #[test]
    fn retryable_statuses_and_retry_after() {
        assert!(retryable(http::StatusCode::TOO_MANY_REQUESTS));
        assert!(retryable(http::StatusCode::BAD_GATEWAY));
        assert!(!retryable(http::StatusCode::BAD_REQUEST));
        assert!(!retryable(http::StatusCode::OK));
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1.5"));
        assert_eq!(retry_after(&h), Some(Duration::from_millis(1500)));
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015"),
        );
        assert_eq!(retry_after(&h), None);
        assert_eq!(
            error_message(br#"{"error":{"message":"slow down"}}"#),
            "slow down"
        );
        assert_eq!(error_message(b"plain"), "plain");
    }

    #[test]
    fn usage_is_read_without_the_rest() {
        let u = usage_from_body(br#"{"choices":[{"x":1}],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#)
            .unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (3, 4));
        assert!(usage_from_body(b"{}").is_none());
        assert!(usage_from_body(b"garbage").is_none());
    }
}
