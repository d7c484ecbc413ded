//! The record of one call in flight. Whatever happens to the request — answered, failed, or
//! abandoned by a client that went away — exactly one record reaches the log: dropping an
//! unfinished [`CallGuard`] logs the call as interrupted.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use bytes::Bytes;
use downshift_store::{CallMeta, CallPayload, CallRecord, CallStatus, Source, TASK_TAG};

use crate::server::AppState;

/// The `tracing` target of the one log line each request writes at `info`.
pub const ACCESS_LOG: &str = "downshift::access";

/// What is known about a call before the upstream answers.
pub struct CallContext {
    pub id: String,
    pub ts_ms: i64,
    pub endpoint: &'static str,
    pub model: String,
    pub upstream: Option<String>,
    pub stream: bool,
    pub agent: Option<String>,
    pub episode: Option<String>,
    pub api_key_id: Option<String>,
    pub tags: BTreeMap<String, String>,
    pub request: Bytes,
    /// When the gateway received the request.
    pub t0: Instant,
    /// When the request left for the upstream.
    pub t_sent: Option<Instant>,
    /// The call's trace span (disabled when no trace export is set up).
    pub span: tracing::Span,
}

/// How the call ended.
pub struct Outcome {
    pub status: CallStatus,
    pub http_status: Option<u16>,
    pub response: Vec<u8>,
    pub usage: Option<downshift_api::Usage>,
    pub ttft: Option<Duration>,
    pub overhead: Option<Duration>,
}

impl Outcome {
    pub fn failed(status: CallStatus, http_status: u16, response: Vec<u8>) -> Outcome {
        Outcome {
            status,
            http_status: Some(http_status),
            response,
            usage: None,
            ttft: None,
            overhead: None,
        }
    }
}

tokio::task_local! {
    /// Set while a handler runs under [`release_after_journal`].
    static HELD: ();
}

/// Middleware that holds each response until every call record logged so far is in the
/// journal (the durability contract: an answered call survives `kill -9`). The records of all
/// the calls answered in one turn of the event loop go to the journal with one `write`: the
/// first held response yields once, so the other calls ready in this turn stage theirs, then
/// it writes them all; the others find theirs written.
pub async fn release_after_journal(
    State(s): State<Arc<AppState>>,
    req: Request,
    next: Next,
) -> Response {
    let response = HELD.scope((), next.run(req)).await;
    let w = &s.writer;
    let last = w.last_ticket();
    if !w.is_journaled(last) {
        tokio::task::yield_now().await;
        w.journal_through(last);
    }
    response
}

pub struct CallGuard {
    ctx: Option<CallContext>,
    state: Arc<AppState>,
    /// Receives the response body of a successful call (a shadow comparison waits on it).
    answer_to: Option<tokio::sync::oneshot::Sender<Vec<u8>>>,
}

impl CallGuard {
    pub fn new(ctx: CallContext, state: Arc<AppState>) -> CallGuard {
        CallGuard {
            ctx: Some(ctx),
            state,
            answer_to: None,
        }
    }

    /// Hands the response body of a successful call to `tx` when the call finishes (a failed
    /// call drops it, which the receiver sees as no answer).
    pub fn send_answer_to(&mut self, tx: tokio::sync::oneshot::Sender<Vec<u8>>) {
        self.answer_to = Some(tx);
    }

    pub fn ctx(&self) -> Option<&CallContext> {
        self.ctx.as_ref()
    }

    pub fn ctx_mut(&mut self) -> Option<&mut CallContext> {
        self.ctx.as_mut()
    }

    /// Logs the call once; later calls do nothing.
    pub fn finish(&mut self, outcome: Outcome) {
        let Some(ctx) = self.ctx.take() else { return };
        if let Some(tx) = self.answer_to.take()
            && outcome.status == CallStatus::Ok
        {
            let _ = tx.send(outcome.response.clone());
        }
        let now = Instant::now();
        let latency = ctx.t_sent.map(|t| now.duration_since(t));
        let m = &self.state.metrics;
        let total = now.duration_since(ctx.t0);
        m.duration.observe(total);
        let route = crate::telemetry::route_of(&ctx);
        // Only an upstream LLM's tokens are priced; a specialist or local model costs nothing.
        let cost = match (route, outcome.usage) {
            ("llm" | "fallback", Some(u)) => {
                self.state
                    .limits
                    .prices()
                    .cost(&ctx.model, u.prompt_tokens, u.completion_tokens)
            }
            _ => 0.0,
        };
        m.call(
            crate::metrics::CallLabels {
                model: &ctx.model,
                upstream: ctx.upstream.as_deref().unwrap_or("none"),
                task: ctx.tags.get(TASK_TAG).map_or("none", String::as_str),
                route,
            },
            crate::metrics::CallSample {
                status: outcome.status,
                usage: outcome.usage,
                cost_usd: cost,
                duration: total,
            },
        );
        crate::telemetry::finish_span(&ctx, &outcome, route, cost);
        if let Some(o) = outcome.overhead {
            m.overhead.observe(o);
        }
        if let Some(t) = outcome.ttft {
            m.ttft.observe(t);
        }
        if outcome.status == CallStatus::Interrupted {
            m.interrupted.fetch_add(1, Ordering::Relaxed);
        }
        let micros = |d: Duration| d.as_micros().min(u128::from(u64::MAX)) as u64;
        // One access line per request (target `downshift::access`, so that
        // `DOWNSHIFT_LOG=info,downshift::access=off` silences it alone).
        tracing::info!(
            target: ACCESS_LOG,
            id = %ctx.id,
            endpoint = %ctx.endpoint,
            model = %ctx.model,
            agent = %ctx.agent.as_deref().unwrap_or("-"),
            route = %ctx.upstream.as_deref().unwrap_or("-"),
            status = outcome.http_status.unwrap_or(0),
            outcome = %outcome.status.as_str(),
            ms = total.as_secs_f64() * 1000.0,
            "request"
        );
        let record = CallRecord {
            meta: CallMeta {
                id: ctx.id,
                ts_ms: ctx.ts_ms,
                endpoint: ctx.endpoint.to_owned(),
                model: ctx.model,
                upstream: ctx.upstream,
                status: outcome.status,
                http_status: outcome.http_status,
                stream: ctx.stream,
                latency_us: latency.map(micros),
                ttft_us: outcome.ttft.map(micros),
                overhead_us: outcome.overhead.map(micros),
                prompt_tokens: outcome.usage.map(|u| u.prompt_tokens),
                completion_tokens: outcome.usage.map(|u| u.completion_tokens),
                agent: ctx.agent,
                episode: ctx.episode,
                api_key_id: ctx.api_key_id,
                tags: ctx.tags,
                source: Source::Gateway,
            },
            payload: CallPayload {
                request: ctx.request.to_vec(),
                response: outcome.response,
            },
        };
        let w = &self.state.writer;
        let ticket = w.log(record);
        // Inside a handler run by `release_after_journal`, the record is written before the
        // response leaves, together with the others of this turn of the event loop. Anywhere
        // else (the end of a stream, a client that went away) it is written now, before the
        // stream's end is released.
        if HELD.try_with(|_| ()).is_err() {
            w.journal_through(ticket);
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        if self.ctx.is_some() {
            self.finish(Outcome::failed(CallStatus::Interrupted, 499, Vec::new()));
            // Written now even inside a handler: when the client went away the handler is
            // dropped with it, and no response is left to hold until the record is written.
            let w = &self.state.writer;
            w.journal_through(w.last_ticket());
        }
    }
}
