//! The web UI (`/ui`): server-rendered pages over the same data the CLI's `--json` commands
//! print, on the gateway's own port, with the admin API's keys and roles.
//!
//! A browser cannot send a bearer header, so `/ui/login` takes an API key in a form and keeps it
//! in an `HttpOnly`, `SameSite=Strict` cookie scoped to `/ui`; every page authenticates that key
//! exactly as the admin API authenticates a bearer key (revocation included). Analysts see
//! metadata and masked examples; admins also see raw payloads (audited) and change a task's
//! policy (confirmed, CSRF-checked, audited). Every database read runs on a blocking thread.
//! See `docs/ui.md`.

mod calls;
mod chart;
mod layout;
mod login;
mod overview;
mod stats;
mod tasks;
mod training;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use downshift_store::{Permission, Role};
use maud::Markup;

use crate::server::AppState;
use crate::{GatewayError, Principal};

/// What the UI needs beyond the gateway's own state.
#[derive(Debug, Clone)]
pub struct UiOptions {
    /// Where `train` and `loop` write adapter folders (`[loop] adapters_dir`): the training runs
    /// page lists the folders under it (two levels deep) holding a `train_log.jsonl`.
    pub adapters_dir: PathBuf,
    /// What serving a specialist costs per million tokens (`[prices]`), for the cost estimate.
    pub specialist_usd_per_mtok: f64,
}

impl Default for UiOptions {
    fn default() -> Self {
        UiOptions {
            adapters_dir: PathBuf::from("adapters"),
            specialist_usd_per_mtok: 0.05,
        }
    }
}

/// The UI's part of the gateway state.
pub struct UiState {
    pub(crate) options: UiOptions,
    /// The call metadata the overview aggregates, kept between requests.
    pub(crate) calls: Arc<stats::CallCache>,
    /// Set by the first `/ui` request: the warm-up ([`warm`]) runs once, and only in a gateway
    /// someone opens the UI of.
    warmed: std::sync::atomic::AtomicBool,
}

impl UiState {
    pub fn new(options: UiOptions) -> UiState {
        UiState {
            options,
            calls: Arc::new(stats::CallCache::default()),
            warmed: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// Loads what the first page views would otherwise wait for — the overview's reduced call log
/// and the PII detector of the task examples — on a blocking thread, in the background. Runs
/// once, on the first request under `/ui` (the login form, typically), so a gateway whose UI
/// nobody opens spends nothing on it.
pub(crate) fn warm(state: &Arc<AppState>) {
    if state
        .ui
        .warmed
        .swap(true, std::sync::atomic::Ordering::AcqRel)
    {
        return;
    }
    let s = state.clone();
    tokio::task::spawn_blocking(move || {
        let t0 = std::time::Instant::now();
        match s.ui.calls.refresh(&s.store, s.limits.prices()) {
            Ok(_) => tracing::debug!(
                ms = t0.elapsed().as_millis() as u64,
                "web UI call summary loaded"
            ),
            Err(e) => tracing::warn!(error = %e, "web UI call summary not loaded"),
        }
        let _ = tasks::masker();
    });
}

/// The `/ui` routes; the first request under them starts the warm-up.
pub fn routes(state: &Arc<AppState>) -> Router<Arc<AppState>> {
    Router::new()
        .route("/ui", get(overview::page))
        .route("/ui/", get(|| async { Redirect::to("/ui") }))
        .route("/ui/login", get(login::form).post(login::submit))
        .route("/ui/logout", post(login::logout))
        .route("/ui/tasks", get(tasks::list))
        .route("/ui/tasks/{id}", get(tasks::detail))
        .route("/ui/tasks/{id}/policy", post(tasks::change_policy))
        .route("/ui/calls", get(calls::list))
        .route("/ui/calls/{id}", get(calls::show))
        .route("/ui/training", get(training::page))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            |axum::extract::State(s): axum::extract::State<Arc<AppState>>,
             req: axum::extract::Request,
             next: axum::middleware::Next| async move {
                warm(&s);
                next.run(req).await
            },
        ))
}

/// The cookie holding the key.
const COOKIE: &str = "downshift_ui";

/// Who is looking, and the key they logged in with (for the CSRF token).
pub(crate) struct Viewer {
    pub principal: Principal,
    key: String,
}

impl Viewer {
    pub fn is_admin(&self) -> bool {
        self.principal.role.allows(Permission::ReadRaw)
    }

    pub fn role(&self) -> Role {
        self.principal.role
    }

    /// The token a form must echo: only a page of this UI, read with this key, knows it (the
    /// cookie is `HttpOnly` and `SameSite=Strict`; the token is a second, independent check).
    pub fn csrf(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"downshift-ui-csrf\0");
        h.update(self.key.as_bytes());
        h.finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The key in the request's cookie, if any.
fn cookie_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// Authenticates the cookie's key as the admin API authenticates a bearer key; a browser
/// without one (or with one no longer valid) is sent to the login form.
async fn viewer(s: &AppState, headers: &HeaderMap) -> Result<Viewer, Response> {
    let key = cookie_key(headers).unwrap_or_default();
    let mut h = HeaderMap::new();
    if !key.is_empty() {
        let v = format!("Bearer {key}")
            .parse()
            .map_err(|_| login_redirect())?;
        h.insert(axum::http::header::AUTHORIZATION, v);
    }
    let principal = match s.auth.authenticate(&h).await {
        Ok(p) => p,
        Err(GatewayError::MissingKey | GatewayError::InvalidKey) => return Err(login_redirect()),
        Err(e) => return Err(error_page(e)),
    };
    if let Err(e) = principal.require(Permission::ReadMetadata, "use the web UI") {
        return Err(error_page(e));
    }
    Ok(Viewer { principal, key })
}

/// Pages take the viewer as an extractor: no valid key, no handler.
impl axum::extract::FromRequestParts<Arc<AppState>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        s: &Arc<AppState>,
    ) -> Result<Viewer, Response> {
        viewer(s, &parts.headers).await
    }
}

fn login_redirect() -> Response {
    Redirect::to("/ui/login").into_response()
}

/// An error as a page with the error's status.
pub(crate) fn error_page(e: GatewayError) -> Response {
    let status = e.status();
    (status, layout::bare("Error", &e.to_string())).into_response()
}

/// Runs `f` (database and file work) on a blocking thread, never on the event loop.
pub(crate) async fn blocking<F>(s: &Arc<AppState>, f: F) -> Response
where
    F: FnOnce(&AppState) -> Result<Markup, GatewayError> + Send + 'static,
{
    let s = s.clone();
    match tokio::task::spawn_blocking(move || f(&s)).await {
        Ok(Ok(page)) => page.into_response(),
        Ok(Err(e)) => error_page(e),
        Err(e) => error_page(GatewayError::Internal(format!("page failed: {e}"))),
    }
}
