//! The admin API: call metadata for analysts, raw payloads (audited) for admins.

use std::sync::Arc;

use axum::extract::{Path, Query, Request, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use downshift_store::{AuditEntry, CallFilter, CallStatus, Permission};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::GatewayError;
use crate::server::AppState;

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    model: Option<String>,
    status: Option<String>,
    /// `k=v`
    tag: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
}

/// Authenticates and checks one permission (the key lookup, on a cache miss, runs on a
/// blocking thread).
async fn authorize(
    s: &AppState,
    headers: &axum::http::HeaderMap,
    permission: Permission,
    action: &str,
) -> Result<crate::Principal, GatewayError> {
    let p = s.auth.authenticate(headers).await?;
    p.require(permission, action)?;
    Ok(p)
}

/// Runs `f` (database work) on a blocking thread, never on the event loop that proxies.
async fn blocking<F>(s: &Arc<AppState>, f: F) -> Response
where
    F: FnOnce(&AppState) -> Result<Response, GatewayError> + Send + 'static,
{
    let s = s.clone();
    match tokio::task::spawn_blocking(move || f(&s)).await {
        Ok(r) => r.unwrap_or_else(IntoResponse::into_response),
        Err(e) => GatewayError::Internal(format!("admin request failed: {e}")).into_response(),
    }
}

/// An audit entry that cannot be written refuses the read: 503 when another writer holds the
/// database past the busy timeout (retry later), 500 otherwise.
pub(crate) fn audit_failed(e: downshift_store::StoreError) -> GatewayError {
    if e.is_busy() {
        GatewayError::Unavailable(format!(
            "the audit trail is busy (database locked), refusing to read; retry: {e}"
        ))
    } else {
        GatewayError::Internal(format!("audit write failed, refusing to read: {e}"))
    }
}

fn json_response(v: &Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

#[derive(Debug, Deserialize)]
pub struct SpendQuery {
    /// `key`, `agent`, `model` or `task` (default `key`).
    by: Option<String>,
    /// Calls since this time, in milliseconds (default: the start of this UTC month).
    since_ms: Option<i64>,
}

/// `GET /admin/spend`: tokens and USD of the logged calls, grouped by key, agent, model or task.
pub async fn spend(
    State(s): State<Arc<AppState>>,
    Query(q): Query<SpendQuery>,
    req: Request,
) -> Response {
    if let Err(e) = authorize(&s, req.headers(), Permission::ReadMetadata, "read spend").await {
        return e.into_response();
    }
    let by = match q.by.as_deref().unwrap_or("key").parse::<crate::SpendBy>() {
        Ok(b) => b,
        Err(e) => return GatewayError::BadRequest(e).into_response(),
    };
    let since = q
        .since_ms
        .unwrap_or_else(|| crate::month_start_ms(downshift_store::now_ms()));
    blocking(&s, move |s| {
        let rows = crate::spend_report(s.store.as_ref(), since, by, s.limits.prices())?;
        Ok(json_response(
            &json!({"by": by, "since_ms": since, "data": rows}),
        ))
    })
    .await
}

pub async fn list_calls(
    State(s): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
    req: Request,
) -> Response {
    if let Err(e) = authorize(
        &s,
        req.headers(),
        Permission::ReadMetadata,
        "read call metadata",
    )
    .await
    {
        return e.into_response();
    }
    blocking(&s, move |s| {
        let status = match q.status.as_deref() {
            None => None,
            Some(t) => Some(
                CallStatus::parse(t)
                    .ok_or_else(|| GatewayError::BadRequest(format!("unknown status '{t}'")))?,
            ),
        };
        let tags = match q.tag.as_deref() {
            None => vec![],
            Some(t) => {
                let (k, v) = t
                    .split_once('=')
                    .ok_or_else(|| GatewayError::BadRequest("tag must be k=v".into()))?;
                vec![(k.to_owned(), v.to_owned())]
            }
        };
        let filter = CallFilter {
            since_ms: q.since_ms,
            until_ms: q.until_ms,
            model: q.model.clone(),
            status,
            agent: None,
            tags,
            limit: Some(q.limit.unwrap_or(100).min(10_000)),
            task: None,
            after: None,
        };
        let calls = s.store.list_calls(&filter)?;
        Ok::<_, GatewayError>(json_response(&json!({"object": "list", "data": calls})))
    })
    .await
}

/// The request/response bytes as JSON when they are JSON, else as a string.
pub fn payload_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

/// One call and its decrypted payload; the read is written to the audit trail first (as
/// `actor`, detail `via`), and refused when it cannot be. Blocking.
pub(crate) fn read_raw_call(
    s: &AppState,
    id: &str,
    actor: &str,
    via: &str,
) -> Result<(downshift_store::CallMeta, downshift_store::CallPayload), GatewayError> {
    let sealed = s
        .store
        .get_call(id)?
        .ok_or_else(|| GatewayError::NotFound(format!("no call '{id}'")))?;
    s.store
        .audit(&AuditEntry::new(actor, "read_raw", Some(id), Some(via)))
        .map_err(audit_failed)?;
    // Sealed by another replica with a data key rotated moments ago: re-read the key file.
    let payload = downshift_store::open_reloading(&s.keyring, &sealed)?;
    Ok((sealed.meta, payload))
}

pub async fn show_call(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let p = match authorize(
        &s,
        req.headers(),
        Permission::ReadRaw,
        "read raw call payloads",
    )
    .await
    {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    blocking(&s, move |s| {
        let (meta, payload) = read_raw_call(s, &id, &p.actor(), "admin api")?;
        Ok::<_, GatewayError>(json_response(&json!({
            "call": meta,
            "request": payload_value(&payload.request),
            "response": payload_value(&payload.response),
        })))
    })
    .await
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    limit: Option<usize>,
}

pub async fn audit(
    State(s): State<Arc<AppState>>,
    Query(q): Query<AuditQuery>,
    req: Request,
) -> Response {
    if let Err(e) = authorize(
        &s,
        req.headers(),
        Permission::ManageKeys,
        "read the audit trail",
    )
    .await
    {
        return e.into_response();
    }
    blocking(&s, move |s| {
        let entries = s.store.list_audit(q.limit.unwrap_or(100).min(10_000))?;
        Ok::<_, GatewayError>(json_response(&json!({"object": "list", "data": entries})))
    })
    .await
}

pub async fn list_datasets(State(s): State<Arc<AppState>>, req: Request) -> Response {
    if let Err(e) = authorize(&s, req.headers(), Permission::ReadMetadata, "list datasets").await {
        return e.into_response();
    }
    blocking(&s, move |s| {
        let all = s.store.list_datasets()?;
        Ok::<_, GatewayError>(json_response(&json!({"object": "list", "data": all})))
    })
    .await
}

/// A curated (scrubbed) dataset as chat-format JSON Lines: analysts may read these.
pub async fn export_dataset(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let p = match authorize(
        &s,
        req.headers(),
        Permission::ReadMetadata,
        "read curated datasets",
    )
    .await
    {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    blocking(&s, move |s| {
        let d = s
            .store
            .get_dataset(&name)?
            .ok_or_else(|| GatewayError::NotFound(format!("no dataset '{name}'")))?;
        s.store
            .audit(&AuditEntry::new(
                &p.actor(),
                "export_dataset",
                Some(&d.id),
                Some("admin api"),
            ))
            .map_err(audit_failed)?;
        let mut body = Vec::new();
        {
            let keyring = s.keyring.read().unwrap_or_else(|p| p.into_inner());
            downshift_store::export_dataset_jsonl(&d, &keyring, s.store.as_ref(), &mut body)?;
        }
        Ok::<_, GatewayError>(([(header::CONTENT_TYPE, "application/jsonl")], body).into_response())
    })
    .await
}

/// `GET /admin/policies`: every task's routing policy, with the newest route events.
pub async fn list_policies(State(s): State<Arc<AppState>>, req: Request) -> Response {
    if let Err(e) = authorize(
        &s,
        req.headers(),
        Permission::ReadMetadata,
        "read routing policies",
    )
    .await
    {
        return e.into_response();
    }
    blocking(&s, move |s| {
        let policies = s.store.list_policies()?;
        let events = s.store.list_route_events(None, 100)?;
        Ok::<_, GatewayError>(json_response(
            &json!({"object": "list", "data": policies, "events": events}),
        ))
    })
    .await
}

/// `GET /admin/policies/{task}`.
pub async fn get_policy(
    State(s): State<Arc<AppState>>,
    Path(task): Path<String>,
    req: Request,
) -> Response {
    if let Err(e) = authorize(
        &s,
        req.headers(),
        Permission::ReadMetadata,
        "read routing policies",
    )
    .await
    {
        return e.into_response();
    }
    blocking(&s, move |s| {
        let policy = s
            .store
            .get_policy(&task)?
            .ok_or_else(|| GatewayError::NotFound(format!("task '{task}' has no policy")))?;
        Ok::<_, GatewayError>(json_response(&json!(policy)))
    })
    .await
}

pub async fn set_policy(
    State(s): State<Arc<AppState>>,
    Path(task): Path<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let p = match authorize(
        &s,
        &parts.headers,
        Permission::ManageRoutes,
        "change routing policies",
    )
    .await
    {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let bytes = match crate::proxy::read_body(body, &parts.headers, 64 * 1024, s.body_timeout).await
    {
        Ok(b) => b,
        Err(e) => return e.into_response(),
    };
    blocking(&s, move |s| {
        let change: downshift_route::PolicyChange = serde_json::from_slice(&bytes)
            .map_err(|e| GatewayError::BadRequest(format!("invalid policy change: {e}")))?;
        let (policy, _) =
            downshift_route::change_policy(s.store.as_ref(), &task, &change, &p.actor())
                .map_err(policy_error)?;
        Ok::<_, GatewayError>(json_response(&json!(policy)))
    })
    .await
}

/// A refused policy change: 404 for an unknown task, 400 for an invalid change.
pub(crate) fn policy_error(e: downshift_route::RouteError) -> GatewayError {
    match e {
        downshift_route::RouteError::UnknownTask(_) => GatewayError::NotFound(e.to_string()),
        downshift_route::RouteError::InvalidPolicy(_) => GatewayError::BadRequest(e.to_string()),
        other => GatewayError::Internal(other.to_string()),
    }
}
