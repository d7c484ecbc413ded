//! The gateway's HTTP server: state, routes, graceful shutdown.

use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use downshift_store::{Keyring, LogWriter, Permission, Store, WriterConfig};
use tokio::net::TcpListener;

use crate::auth::Auth;
use crate::config::{
    RouteConfig, RoutingConfig, ServerConfig, SpecialistEndpointConfig, UpstreamConfig,
};
use crate::local::LocalModels;
use crate::metrics::Metrics;
use crate::routing::TaskRouter;
use crate::upstream::Upstreams;
use crate::{GatewayError, admin, proxy};

pub struct AppState {
    pub upstreams: Upstreams,
    pub local: LocalModels,
    pub writer: Arc<LogWriter>,
    pub keyring: Arc<RwLock<Keyring>>,
    pub store: Arc<dyn Store>,
    pub auth: Auth,
    pub metrics: Metrics,
    pub max_body: usize,
    pub metrics_public: bool,
    pub router: Arc<TaskRouter>,
}

/// Everything the gateway needs to start.
pub struct ServeOptions {
    pub server: ServerConfig,
    pub upstreams: Vec<UpstreamConfig>,
    pub routing: RoutingConfig,
    /// Models served natively (`local/<name>`), already loaded.
    pub local: LocalModels,
    /// Store for reads (auth, admin API).
    pub store: Arc<dyn Store>,
    /// A second handle on the same store, owned by the log writer thread.
    pub writer_store: Box<dyn Store>,
    pub keyring: Arc<RwLock<Keyring>>,
    pub writer: WriterConfig,
    /// Routing between the LLM and the specialists (S6).
    pub route: RouteConfig,
    /// Specialists served by remote OpenAI-compatible endpoints.
    pub specialists: Vec<SpecialistEndpointConfig>,
}

impl AppState {
    pub fn new(o: ServeOptions) -> Result<Arc<AppState>, String> {
        if o.upstreams.is_empty() && o.local.is_empty() {
            return Err(
                "no upstream configured: pass --upstream URL or add an [[upstreams]] section (or serve local models: --local NAME=PATH or [[local_models]])"
                    .into(),
            );
        }
        let upstreams = Upstreams::from_config(&o.upstreams, &o.routing)?;
        let router = {
            let keyring = o.keyring.read().unwrap_or_else(|p| p.into_inner());
            TaskRouter::new(o.route, &o.specialists, o.store.as_ref(), &keyring)?
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
            auth: Auth::new(o.store.clone(), o.server.require_auth),
            store: o.store,
            metrics: Metrics::default(),
            max_body: o.server.max_body_bytes,
            metrics_public: o.server.metrics_public,
            router: Arc::new(router),
        }))
    }
}

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(proxy::chat_completions))
        .route("/v1/embeddings", post(proxy::embeddings))
        .route("/v1/models", get(proxy::models))
        .route("/admin/calls", get(admin::list_calls))
        .route("/admin/calls/{id}", get(admin::show_call))
        .route("/admin/audit", get(admin::audit))
        .route("/admin/datasets", get(admin::list_datasets))
        .route("/admin/datasets/{name}/export", get(admin::export_dataset))
        .route("/admin/policies", get(admin::list_policies))
        .route(
            "/admin/policies/{task}",
            get(admin::get_policy).put(admin::set_policy),
        )
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn healthz() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        "{\"status\":\"ok\"}",
    )
        .into_response()
}

async fn metrics(State(s): State<Arc<AppState>>, req: Request) -> Response {
    if !s.metrics_public {
        let allowed = s
            .auth
            .authenticate(req.headers())
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
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    crate::routing::spawn_reloader(
        state.router.clone(),
        state.store.clone(),
        state.keyring.clone(),
    );
    let app = router(state.clone());
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown.await;
        let _ = tx.send(());
    });
    let result = tokio::select! {
        r = server => r,
        _ = async {
            let _ = rx.await;
            tokio::time::sleep(grace).await;
        } => {
            tracing::warn!("in-flight requests did not finish within the grace period");
            Ok(())
        }
    };
    let writer = state.writer.clone();
    let _ = tokio::task::spawn_blocking(move || writer.shutdown()).await;
    result
}
