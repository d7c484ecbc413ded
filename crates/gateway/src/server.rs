//! The gateway's HTTP server: state, routes, graceful shutdown.

use crate::SetupError;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use downshift_store::{Keyring, LogWriter, Permission, Store, WriterConfig};
use tokio::net::TcpListener;

use crate::auth::Auth;
use crate::config::{
    RouteConfig, RoutingConfig, ServerConfig, SpecialistEndpointConfig, UpstreamConfig,
};
use crate::limits::{Limiter, LimitsConfig, PriceTable};
use crate::local::LocalModels;
use crate::metrics::Metrics;
use crate::routing::TaskRouter;
use crate::upstream::Upstreams;
use crate::{GatewayError, admin, proxy};

/// Everything a running gateway shares between its requests: upstreams, local models, the log
/// writer, the store, authentication, metrics, the task router and the limits. Built by
/// [`AppState::new`].
pub struct AppState {
    /// The configured upstreams and the model map over them.
    pub upstreams: Upstreams,
    /// Models served natively (`local/<name>`).
    pub local: LocalModels,
    /// The asynchronous call-log writer.
    pub writer: Arc<LogWriter>,
    /// The key file, re-read when it is rotated elsewhere.
    pub keyring: Arc<RwLock<Keyring>>,
    /// The store for admin requests, audit writes and policy reads.
    pub store: Arc<dyn Store>,
    /// API-key authentication with its cache.
    pub auth: Auth,
    /// The Prometheus metrics.
    pub metrics: Metrics,
    /// Largest request body accepted, in bytes.
    pub max_body: usize,
    /// Longest a client may take to send a request body.
    pub body_timeout: Duration,
    /// Whether `/metrics` is served without a key.
    pub metrics_public: bool,
    /// Routing of each task's requests between the LLM and its specialist.
    pub router: Arc<TaskRouter>,
    /// Per-key and per-agent limits and budgets, counted in memory.
    pub limits: Arc<Limiter>,
    /// The web UI's options and cached call summary.
    pub ui: crate::ui::UiState,
    /// The last readiness probe and when it ran.
    ready: tokio::sync::Mutex<Option<(std::time::Instant, Result<(), String>)>>,
}

/// Everything the gateway needs to start.
pub struct ServeOptions {
    /// `[server]`: listener, authentication, body limit and timeouts.
    pub server: ServerConfig,
    /// The upstream LLM APIs (`[[upstreams]]`).
    pub upstreams: Vec<UpstreamConfig>,
    /// `[routing]`: the model map, balancing, fallbacks and retries.
    pub routing: RoutingConfig,
    /// Models served natively (`local/<name>`), already loaded.
    pub local: LocalModels,
    /// Store for the admin API, audit writes and policy reads (its own connection, with a
    /// short busy timeout: a locked database fails that request, not the proxy).
    pub store: Arc<dyn Store>,
    /// Store for API-key lookups on a cache miss (its own connection, so a slow admin request
    /// never delays authentication); `None`: use `store`.
    pub auth_store: Option<Arc<dyn Store>>,
    /// A second handle on the same store, owned by the log writer thread.
    pub writer_store: Box<dyn Store>,
    /// The key file's keys, shared with the caller (a rotation elsewhere is picked up).
    pub keyring: Arc<RwLock<Keyring>>,
    /// The log writer's queue, batching, journal and spill settings.
    pub writer: WriterConfig,
    /// Routing between the LLM and the specialists (S6).
    pub route: RouteConfig,
    /// Specialists served by remote OpenAI-compatible endpoints.
    pub specialists: Vec<SpecialistEndpointConfig>,
    /// Per-key and per-agent limits and budgets.
    pub limits: LimitsConfig,
    /// Prices the budgets and spend are counted in.
    pub prices: PriceTable,
    /// `[telemetry]`: the metrics' label bounds (trace export is set up by the binary).
    pub telemetry: crate::telemetry::TelemetryConfig,
    /// The web UI (`/ui`).
    pub ui: crate::ui::UiOptions,
}

/// The connection limits of `[server]`; `max_connections` must already be resolved (not 0).
pub fn conn_limits(server: &ServerConfig) -> crate::conn::ConnLimits {
    crate::conn::ConnLimits {
        header_read_timeout: Duration::from_millis(server.header_read_timeout_ms.max(1)),
        idle_timeout: Duration::from_millis(server.idle_timeout_ms.max(1)),
        max_connections: server.max_connections.max(1),
    }
}

impl AppState {
    /// Builds the gateway's state and starts its log writer: upstreams and routing checked,
    /// the task router loaded from the store, limits resolved (key names to ids, agents to
    /// pseudonyms) and filled with this month's spend.
    ///
    /// # Errors
    /// [`SetupError::Config`] for no upstream and no local model, a bad model map or limit,
    /// and whatever loading the task router or the month's spend fails with.
    pub fn new(o: ServeOptions) -> Result<Arc<AppState>, SetupError> {
        if o.upstreams.is_empty() && o.local.is_empty() {
            return Err(SetupError::Config(
                "no upstream configured: pass --upstream URL or add an [[upstreams]] section (or serve local models: --local NAME=PATH or [[local_models]])"
                    .into(),
            ));
        }
        let upstreams = Upstreams::from_config(&o.upstreams, &o.routing)?;
        let router = TaskRouter::new(o.route, &o.specialists, o.store.as_ref())?;
        // Limits: key names resolved to ids, agents to their pseudonyms, and this month's spend
        // read from the log once, before serving.
        let limits = if o.limits.keys.is_empty()
            && o.limits.agents.is_empty()
            && o.limits.per_key == crate::limits::Limit::default()
        {
            Limiter::none().with_prices(o.prices)
        } else {
            let keys: Vec<(String, String)> = o
                .store
                .list_api_keys()
                .map_err(|e| {
                    SetupError::Config(format!("cannot read the API keys for [limits]: {e}"))
                })?
                .into_iter()
                .map(|k| (k.name, k.id))
                .collect();
            let keyring = o.keyring.read().unwrap_or_else(|p| p.into_inner());
            let l = Limiter::new(&o.limits, o.prices, &keys, |a| {
                keyring.pseudonym("agent", a)
            })?;
            l.load(o.store.as_ref(), downshift_store::now_ms())?;
            l
        };
        let writer = Arc::new(LogWriter::start(
            o.writer_store,
            o.keyring.clone(),
            o.writer,
        ));
        Ok(Arc::new(AppState {
            upstreams,
            local: o.local,
            writer,
            keyring: o.keyring,
            auth: Auth::new(
                o.auth_store.unwrap_or_else(|| o.store.clone()),
                o.server.require_auth,
            ),
            store: o.store,
            metrics: Metrics::new(o.telemetry.max_label_values, o.telemetry.max_series),
            max_body: o.server.max_body_bytes,
            body_timeout: Duration::from_millis(o.server.body_read_timeout_ms.max(1)),
            metrics_public: o.server.metrics_public,
            router: Arc::new(router),
            limits: Arc::new(limits),
            ui: crate::ui::UiState::new(o.ui),
            ready: tokio::sync::Mutex::new(None),
        }))
    }
}

/// The gateway's HTTP routes over `state`: the OpenAI-compatible `/v1` endpoints, `/admin`,
/// the web UI, `/metrics`, `/healthz` and `/readyz`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(proxy::chat_completions))
        .route("/v1/embeddings", post(proxy::embeddings))
        .route("/v1/responses", post(proxy::responses))
        .route("/v1/completions", post(proxy::completions))
        .route("/v1/models", get(crate::models::models))
        .route("/v1/models/{*id}", get(crate::models::model))
        .route("/admin/calls", get(admin::list_calls))
        .route("/admin/calls/{id}", get(admin::show_call))
        .route("/admin/audit", get(admin::audit))
        .route("/admin/spend", get(admin::spend))
        .route("/admin/datasets", get(admin::list_datasets))
        .route("/admin/datasets/{name}/export", get(admin::export_dataset))
        .route("/admin/policies", get(admin::list_policies))
        .route(
            "/admin/policies/{task}",
            get(admin::get_policy).put(admin::set_policy),
        )
        .merge(crate::ui::routes(&state))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Responses leave only once their calls' records are in the journal.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::call::release_after_journal,
        ))
        .with_state(state)
}

/// The task router's state: `building` while its classifier is built at start (requests are
/// served meanwhile, all by the LLM), then `ready`; `off` when routing is disabled.
fn router_state(s: &AppState) -> &'static str {
    if !s.router.enabled() {
        "off"
    } else if s.router.classifier_ready() {
        "ready"
    } else {
        "building"
    }
}

/// `/healthz`: the process is up, and the task router's state ([`router_state`]).
async fn healthz(State(s): State<Arc<AppState>>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        format!("{{\"status\":\"ok\",\"router\":\"{}\"}}", router_state(&s)),
    )
        .into_response()
}

/// How long a readiness answer is reused: probes stay cheap under frequent polling.
const READY_TTL: Duration = Duration::from_secs(1);
/// Longest each readiness check may take.
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// `/readyz`: 200 when the store takes writes and every upstream answers HTTP (any status),
/// with the task router's state (`building` while its classifier is built at start: requests
/// are served meanwhile, all by the LLM; then `ready`; `off` when routing is disabled); 503
/// with the reasons otherwise. `/healthz` only says the process is up.
async fn readyz(State(s): State<Arc<AppState>>) -> Response {
    let result = {
        let mut cached = s.ready.lock().await;
        match cached.as_ref() {
            Some((at, r)) if at.elapsed() < READY_TTL => r.clone(),
            _ => {
                let r = probe(&s).await;
                *cached = Some((std::time::Instant::now(), r.clone()));
                r
            }
        }
    };
    // The task router serves (everything to the LLM) while its classifier is being built;
    // the answer says which, so a deployment script can wait for routing.
    let router = router_state(&s);
    match result {
        Ok(()) => (
            [(header::CONTENT_TYPE, "application/json")],
            format!("{{\"status\":\"ready\",\"router\":\"{router}\"}}"),
        )
            .into_response(),
        Err(reason) => {
            let body = downshift_api::ErrorBody::new("server_error", "not_ready", reason);
            crate::error::error_response(StatusCode::SERVICE_UNAVAILABLE, &body)
        }
    }
}

async fn probe(s: &Arc<AppState>) -> Result<(), String> {
    let mut problems = Vec::new();
    let store = s.store.clone();
    let write = tokio::time::timeout(
        PROBE_TIMEOUT,
        tokio::task::spawn_blocking(move || store.probe_write()),
    )
    .await;
    match write {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => problems.push(format!("store not writable: {e}")),
        Ok(Err(e)) => problems.push(format!("store probe failed: {e}")),
        Err(_) => problems.push("store not writable: probe timed out".into()),
    }
    for u in s.upstreams.all() {
        let Ok(uri) = u.url("models") else { continue };
        let mut req = http::Request::new(http_body_util::Full::new(bytes::Bytes::new()));
        *req.uri_mut() = uri;
        if let Some(a) = &u.authorization {
            req.headers_mut().insert(header::AUTHORIZATION, a.clone());
        }
        match tokio::time::timeout(PROBE_TIMEOUT, u.client.request(req)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => problems.push(format!("upstream '{}' unreachable: {e}", u.name)),
            Err(_) => problems.push(format!(
                "upstream '{}' did not answer within {} ms",
                u.name,
                PROBE_TIMEOUT.as_millis()
            )),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

async fn metrics(State(s): State<Arc<AppState>>, req: Request) -> Response {
    if !s.metrics_public {
        let allowed = s
            .auth
            .authenticate(req.headers())
            .await
            .and_then(|p| p.require(Permission::ReadMetadata, "read metrics"));
        if let Err(e) = allowed {
            return e.into_response();
        }
    }
    let body = s.metrics.render(s.writer.stats());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}

async fn not_found(req: Request) -> Response {
    GatewayError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
    .into_response()
}

async fn method_not_allowed(req: Request) -> Response {
    let body = downshift_api::ErrorBody::new(
        "invalid_request_error",
        "method_not_allowed",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    );
    crate::error::error_response(StatusCode::METHOD_NOT_ALLOWED, &body)
}

/// Serves until `shutdown` resolves, lets in-flight requests finish (up to `grace`), then
/// writes every queued call record.
pub async fn run(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: crate::conn::ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    crate::routing::spawn_reloader(
        state.router.clone(),
        state.store.clone(),
        state.keyring.clone(),
    );
    let app = router(state.clone());
    let result = crate::conn::serve(listener, app, limits, shutdown, grace).await;
    let writer = state.writer.clone();
    let _ = tokio::task::spawn_blocking(move || writer.shutdown()).await;
    result
}
