//! OpenTelemetry traces, off by default: one span per proxied call, named and tagged by the
//! GenAI semantic conventions (`gen_ai.*`) plus downshift's own attributes (`downshift.*`),
//! exported over OTLP/HTTP with protobuf bodies.
//!
//! The gateway only emits `tracing` spans under the [`TARGET`] target; the binary adds the layer
//! [`layer`] returns, which turns them into OpenTelemetry spans. Export never waits on the
//! proxy path: a finished span goes into a bounded queue read by the SDK's batch processor on
//! its own thread, which posts each batch with hyper on a small runtime of its own (not the
//! gateway's); when the queue is full the span is dropped and counted
//! (`downshift_trace_spans_dropped_total` on `/metrics`). With no layer installed the span
//! macros cost one cached check per call.

use crate::SetupError;
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use downshift_store::{CallStatus, FALLBACK_TAG, ROUTE_TAG, TASK_TAG};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Sampler, SdkTracer, SdkTracerProvider, SpanData,
    SpanExporter, SpanProcessor,
};
use serde::{Deserialize, Serialize};
use tracing::field::Empty;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

use crate::call::{CallContext, Outcome};

/// The `tracing` target of the call spans and their events: only these reach the exporter, and
/// the log output leaves them out.
pub const TARGET: &str = "downshift::trace";

/// `[telemetry]`: trace export and the label bounds of the Prometheus metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Base URL of an OTLP/HTTP collector (e.g. `http://127.0.0.1:4318`); spans are posted to
    /// `<url>/v1/traces`. Unset: no traces are exported.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Share of calls traced (0–1); a call whose agent sent a sampled `traceparent` is traced.
    pub sample_ratio: f64,
    /// Headers sent with every export (e.g. a collector's API key).
    pub headers: BTreeMap<String, String>,
    /// Finished spans waiting for export at most; more are dropped and counted.
    pub max_queue: usize,
    /// How often the queue is exported, in milliseconds.
    pub export_delay_ms: u64,
    /// Longest one export may take, in milliseconds.
    pub export_timeout_ms: u64,
    /// Most distinct values each metric label (model, upstream, task) takes; further values are
    /// counted under `other`.
    pub max_label_values: usize,
    /// Most label combinations of the per-call series; further ones are counted under
    /// `other` in every label.
    pub max_series: usize,
}

impl Default for TelemetryConfig {
    fn default() -> TelemetryConfig {
        TelemetryConfig {
            otlp_endpoint: None,
            service_name: "downshift".into(),
            sample_ratio: 1.0,
            headers: BTreeMap::new(),
            max_queue: 2048,
            export_delay_ms: 1000,
            export_timeout_ms: 10_000,
            max_label_values: 100,
            max_series: 2000,
        }
    }
}

/// Counters of the trace export, shown on `/metrics`.
#[derive(Default)]
pub struct TraceStats {
    enabled: AtomicBool,
    /// The last export failed.
    failing: AtomicBool,
    /// Spans in the queue or being exported.
    pending: AtomicUsize,
    /// Spans the collector accepted.
    pub exported: AtomicU64,
    /// Spans dropped because the export queue was full.
    pub dropped: AtomicU64,
    /// Spans in exports that failed (collector down, refused, timed out).
    pub failed: AtomicU64,
}

impl TraceStats {
    /// Whether a trace exporter is installed in this process.
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }
}

/// One exporter per process (the `tracing` subscriber is global too).
pub static STATS: TraceStats = TraceStats {
    enabled: AtomicBool::new(false),
    failing: AtomicBool::new(false),
    pending: AtomicUsize::new(0),
    exported: AtomicU64::new(0),
    dropped: AtomicU64::new(0),
    failed: AtomicU64::new(0),
};

/// Flushes the queued spans and stops the export thread when dropped.
pub struct TraceExport {
    provider: SdkTracerProvider,
}

impl Drop for TraceExport {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "trace export did not shut down cleanly");
        }
    }
}

/// The layer that exports the call spans as `cfg` says, or `None` when no endpoint is set.
/// Keep the [`TraceExport`] until the process ends: dropping it flushes the queue.
pub fn layer<S>(cfg: &TelemetryConfig) -> Result<Option<(impl Layer<S>, TraceExport)>, SetupError>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(endpoint) = cfg.otlp_endpoint.as_deref().filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    let url = traces_url(endpoint)?;
    if !(0.0..=1.0).contains(&cfg.sample_ratio) {
        return Err(SetupError::Config(format!(
            "telemetry.sample_ratio must be between 0 and 1, not {}",
            cfg.sample_ratio
        )));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(Duration::from_millis(cfg.export_timeout_ms.max(1)))
        .with_headers(cfg.headers.clone().into_iter().collect::<HashMap<_, _>>())
        .with_http_client(ExportClient::new(Duration::from_millis(
            cfg.export_timeout_ms.max(1),
        ))?)
        .build()
        .map_err(|e| SetupError::Config(format!("cannot start the OTLP trace exporter: {e}")))?;
    let max_queue = cfg.max_queue.max(1);
    let batch = BatchSpanProcessor::builder(Counted(exporter))
        .with_batch_config(
            BatchConfigBuilder::default()
                .with_max_queue_size(max_queue)
                .with_max_export_batch_size(max_queue.min(512))
                .with_scheduled_delay(Duration::from_millis(cfg.export_delay_ms.max(1)))
                .build(),
        )
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Bounded {
            inner: batch,
            cap: max_queue,
        })
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            cfg.sample_ratio,
        ))))
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(cfg.service_name.clone())
                .build(),
        )
        .build();
    let tracer: SdkTracer = provider.tracer("downshift");
    STATS.enabled.store(true, Ordering::Relaxed);
    // Only the attributes set here: no source location, thread or busy/idle timings.
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false)
        .with_filter(Targets::new().with_target(TARGET, tracing::Level::INFO));
    Ok(Some((layer, TraceExport { provider })))
}

/// `<base>/v1/traces`; only plain `http://` (a collector or agent next to the gateway).
fn traces_url(endpoint: &str) -> Result<String, SetupError> {
    let uri: http::Uri = endpoint.parse().map_err(|e| {
        SetupError::Config(format!(
            "telemetry.otlp_endpoint '{endpoint}' is not a URL: {e}"
        ))
    })?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(SetupError::Config(format!(
            "telemetry.otlp_endpoint '{endpoint}' must be an http:// URL (an OTLP/HTTP collector; https is not built in)"
        )));
    }
    Ok(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
}

/// The HTTP client of the exporter. The batch processor drives an export to completion on its
/// own thread; each request runs there on a single-threaded runtime owned by this client, so
/// exporting takes nothing from the gateway's runtime. No connection is kept between exports
/// (one a second at most): a pooled connection would sit undriven meanwhile.
#[derive(Debug)]
struct ExportClient {
    runtime: tokio::runtime::Runtime,
    client: Client<HttpConnector, Full<Bytes>>,
    timeout: Duration,
}

impl ExportClient {
    fn new(timeout: Duration) -> Result<ExportClient, SetupError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| {
                SetupError::Runtime(format!("cannot start the trace export runtime: {e}"))
            })?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(0)
            .build(http);
        Ok(ExportClient {
            runtime,
            client,
            timeout,
        })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<Bytes>,
    ) -> Result<http::Response<Bytes>, opentelemetry_http::HttpError> {
        let send = async {
            let (parts, body) = request.into_parts();
            let resp = self
                .client
                .request(http::Request::from_parts(parts, Full::new(body)))
                .await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, opentelemetry_http::HttpError>(http::Response::from_parts(parts, body))
        };
        self.runtime
            .block_on(async { tokio::time::timeout(self.timeout, send).await })
            .map_err(|_| format!("no answer within {} ms", self.timeout.as_millis()))?
    }
}

/// Holds a place in the export queue for each span it lets through, and drops (and counts) a
/// span when the queue is full, so that the batch processor's own queue never overflows.
#[derive(Debug)]
struct Bounded<P> {
    inner: P,
    cap: usize,
}

impl<P: SpanProcessor> SpanProcessor for Bounded<P> {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &opentelemetry::Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if STATS.pending.fetch_add(1, Ordering::AcqRel) >= self.cap {
            STATS.pending.fetch_sub(1, Ordering::AcqRel);
            STATS.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, counting what it sent and what failed, and releasing the spans' places
/// in the queue however the export ends.
#[derive(Debug)]
struct Counted<E>(E);

/// Releases `n` places in the export queue when dropped.
struct Places(usize);

impl Drop for Places {
    fn drop(&mut self) {
        STATS.pending.fetch_sub(self.0, Ordering::AcqRel);
    }
}

impl<E: SpanExporter> SpanExporter for Counted<E> {
    fn export(
        &self,
        batch: Vec<SpanData>,
    ) -> impl std::future::Future<Output = OTelSdkResult> + Send {
        let places = Places(batch.len());
        let export = self.0.export(batch);
        async move {
            let result = export.await;
            let n = places.0 as u64;
            match &result {
                Ok(()) => {
                    STATS.exported.fetch_add(n, Ordering::Relaxed);
                    if STATS.failing.swap(false, Ordering::Relaxed) {
                        tracing::info!("trace export works again");
                    }
                }
                Err(e) => {
                    STATS.failed.fetch_add(n, Ordering::Relaxed);
                    // One warning per run of failures, not one per batch.
                    if !STATS.failing.swap(true, Ordering::Relaxed) {
                        tracing::warn!(error = %e, spans = n, "trace export failed");
                    }
                }
            }
            drop(places);
            result
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.0.set_resource(resource);
    }
}

/// `gen_ai.operation.name` of an endpoint.
fn operation(endpoint: &str) -> &'static str {
    match endpoint {
        "embeddings" => "embeddings",
        "completions" => "text_completion",
        _ => "chat",
    }
}

/// The span of one call, started now; disabled (and free) when no exporter is installed. Joins
/// the agent's trace when the request carries a W3C `traceparent`.
pub(crate) fn call_span(
    endpoint: &'static str,
    model: &str,
    id: &str,
    stream: bool,
    headers: &http::HeaderMap,
) -> tracing::Span {
    let op = operation(endpoint);
    let span = tracing::info_span!(
        target: TARGET,
        "gen_ai",
        otel.name = %format_args!("{op} {model}"),
        otel.kind = "client",
        otel.status_code = Empty,
        otel.status_description = Empty,
        gen_ai.operation.name = op,
        gen_ai.provider.name = Empty,
        gen_ai.system = Empty,
        gen_ai.request.model = %model,
        gen_ai.response.model = Empty,
        gen_ai.response.id = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        http.response.status_code = Empty,
        error.type = Empty,
        downshift.call_id = %id,
        downshift.endpoint = endpoint,
        downshift.stream = stream,
        downshift.route = Empty,
        downshift.task = Empty,
        downshift.upstream = Empty,
        downshift.outcome = Empty,
        downshift.fallback_reason = Empty,
        downshift.attempts = Empty,
        downshift.cost_usd = Empty,
    );
    if !span.is_disabled() && headers.contains_key("traceparent") {
        use opentelemetry::propagation::TextMapPropagator as _;
        use tracing_opentelemetry::OpenTelemetrySpanExt as _;
        let parent = opentelemetry_sdk::propagation::TraceContextPropagator::new()
            .extract(&opentelemetry_http::HeaderExtractor(headers));
        let _ = span.set_parent(parent);
    }
    span
}

/// Who answered a call, for the `route` label and `downshift.route`: `specialist`, `fallback`
/// (the specialist's answer was refused and the LLM answered), `local` (a `local/…` model) or
/// `llm`.
pub(crate) fn route_of(ctx: &CallContext) -> &'static str {
    if ctx.tags.get(ROUTE_TAG).is_some_and(|r| r == "specialist") {
        "specialist"
    } else if ctx.tags.contains_key(FALLBACK_TAG) {
        "fallback"
    } else if ctx
        .upstream
        .as_deref()
        .is_some_and(|u| u.starts_with("local:"))
    {
        "local"
    } else {
        "llm"
    }
}

/// Records how the call ended on its span (a no-op when the span is disabled).
pub(crate) fn finish_span(ctx: &CallContext, outcome: &Outcome, route: &'static str, cost: f64) {
    let span = &ctx.span;
    if span.is_disabled() {
        return;
    }
    let provider = if matches!(route, "specialist" | "local") {
        "downshift"
    } else {
        "openai"
    };
    span.record("gen_ai.provider.name", provider);
    span.record("gen_ai.system", provider);
    span.record("downshift.route", route);
    if let Some(task) = ctx.tags.get(TASK_TAG) {
        span.record("downshift.task", task.as_str());
    }
    if let Some(reason) = ctx.tags.get(FALLBACK_TAG) {
        span.record("downshift.fallback_reason", reason.as_str());
    }
    if let Some(up) = &ctx.upstream {
        span.record("downshift.upstream", up.as_str());
    }
    span.record("downshift.outcome", outcome.status.as_str());
    if let Some(code) = outcome.http_status {
        span.record("http.response.status_code", i64::from(code));
    }
    if let Some(u) = outcome.usage {
        span.record("gen_ai.usage.input_tokens", int(u.prompt_tokens));
        span.record("gen_ai.usage.output_tokens", int(u.completion_tokens));
    }
    if cost > 0.0 {
        span.record("downshift.cost_usd", cost);
    }
    if outcome.status == CallStatus::Ok {
        let (model, id) = response_model(&outcome.response);
        if let Some(m) = model {
            span.record("gen_ai.response.model", m.as_str());
        }
        if let Some(i) = id {
            span.record("gen_ai.response.id", i.as_str());
        }
        span.record("otel.status_code", "ok");
    } else {
        let error = match (outcome.status, outcome.http_status) {
            (CallStatus::UpstreamError, Some(code)) => code.to_string(),
            (status, _) => status.as_str().to_owned(),
        };
        span.record("error.type", error.as_str());
        span.record("otel.status_description", error.as_str());
    }
}

/// An OpenTelemetry integer (signed 64 bits: `tracing`'s unsigned values would arrive as
/// strings).
pub(crate) fn int(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

/// `model` and `id` of a response body (chat completion, assembled stream, embeddings).
fn response_model(body: &[u8]) -> (Option<String>, Option<String>) {
    #[derive(Deserialize)]
    struct Head {
        model: Option<String>,
        id: Option<String>,
    }
    serde_json::from_slice::<Head>(body).map_or((None, None), |h| (h.model, h.id))
}

/// One try of a call on one upstream, as an event on the call's span.
pub(crate) fn attempt_event(
    span: &tracing::Span,
    upstream: &str,
    model: Option<&str>,
    status: Option<u16>,
    latency_ms: f64,
    error: Option<&str>,
) {
    tracing::event!(
        target: TARGET,
        parent: span,
        tracing::Level::INFO,
        {
            downshift.upstream = upstream,
            gen_ai.request.model = model,
            http.response.status_code = status.map(i64::from),
            downshift.latency_ms = latency_ms,
            error.type = error,
        },
        "upstream attempt"
    );
}

/// The trace export's counters in the Prometheus text format (nothing when export is off).
pub(crate) fn render_stats(out: &mut String) {
    if !STATS.enabled() {
        return;
    }
    for (name, help, v) in [
        (
            "downshift_trace_spans_exported_total",
            "Call spans the OTLP collector accepted.",
            &STATS.exported,
        ),
        (
            "downshift_trace_spans_dropped_total",
            "Call spans dropped because the export queue (telemetry.max_queue) was full.",
            &STATS.dropped,
        ),
        (
            "downshift_trace_spans_failed_total",
            "Call spans whose export failed (collector unreachable or refusing).",
            &STATS.failed,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            v.load(Ordering::Relaxed)
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_is_a_plain_http_base_url() {
        assert_eq!(
            traces_url("http://127.0.0.1:4318").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(
            traces_url("http://collector:4318/").unwrap(),
            "http://collector:4318/v1/traces"
        );
        assert!(traces_url("https://collector:4318").is_err());
        assert!(traces_url("collector:4318").is_err());
        assert!(traces_url("not a url").is_err());
    }

    #[test]
    fn operations_follow_the_genai_names() {
        assert_eq!(operation("chat/completions"), "chat");
        assert_eq!(operation("responses"), "chat");
        assert_eq!(operation("embeddings"), "embeddings");
        assert_eq!(operation("completions"), "text_completion");
    }

    #[test]
    fn the_response_model_and_id_are_read_from_the_body() {
        let (m, i) = response_model(br#"{"id":"c1","model":"gpt-4o-2024","choices":[]}"#);
        assert_eq!(m.as_deref(), Some("gpt-4o-2024"));
        assert_eq!(i.as_deref(), Some("c1"));
        assert_eq!(response_model(b"not json"), (None, None));
    }
}
