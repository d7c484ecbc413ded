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

fn json_response(v: &Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

pub async fn list_calls(
    State(s): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
    req: Request,
) -> Response {
    let r = (|| {
        let p = s.auth.authenticate(req.headers())?;
        p.require(Permission::ReadMetadata, "read call metadata")?;
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
        let calls = s
            .store
            .list_calls(&filter)
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        Ok::<_, GatewayError>(json_response(&json!({"object": "list", "data": calls})))
    })();
    r.unwrap_or_else(IntoResponse::into_response)
}

/// The request/response bytes as JSON when they are JSON, else as a string.
pub fn payload_value(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
}

pub async fn show_call(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let r = (|| {
        let p = s.auth.authenticate(req.headers())?;
        p.require(Permission::ReadRaw, "read raw call payloads")?;
        let sealed = s
            .store
            .get_call(&id)
            .map_err(|e| GatewayError::Internal(e.to_string()))?
            .ok_or_else(|| GatewayError::NotFound(format!("no call '{id}'")))?;
        s.store
            .audit(&AuditEntry::new(
                &p.actor(),
                "read_raw",
                Some(&id),
                Some("admin api"),
            ))
            .map_err(|e| {
                GatewayError::Internal(format!("audit write failed, refusing to read: {e}"))
            })?;
        let payload = {
            let keyring = s.keyring.read().unwrap_or_else(|p| p.into_inner());
            keyring
                .open(&sealed)
                .map_err(|e| GatewayError::Internal(e.to_string()))?
        };
        Ok::<_, GatewayError>(json_response(&json!({
            "call": sealed.meta,
            "request": payload_value(&payload.request),
            "response": payload_value(&payload.response),
        })))
    })();
    r.unwrap_or_else(IntoResponse::into_response)
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
    let r = (|| {
        let p = s.auth.authenticate(req.headers())?;
        p.require(Permission::ManageKeys, "read the audit trail")?;
        let entries = s
            .store
            .list_audit(q.limit.unwrap_or(100).min(10_000))
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        Ok::<_, GatewayError>(json_response(&json!({"object": "list", "data": entries})))
    })();
    r.unwrap_or_else(IntoResponse::into_response)
}

pub async fn list_datasets(State(s): State<Arc<AppState>>, req: Request) -> Response {
    let r = (|| {
        let p = s.auth.authenticate(req.headers())?;
        p.require(Permission::ReadMetadata, "list datasets")?;
        let all = s
            .store
            .list_datasets()
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        Ok::<_, GatewayError>(json_response(&json!({"object": "list", "data": all})))
    })();
    r.unwrap_or_else(IntoResponse::into_response)
}

/// A curated (scrubbed) dataset as chat-format JSON Lines: analysts may read these.
pub async fn export_dataset(
    State(s): State<Arc<AppState>>,
    Path(name): Path<String>,
    req: Request,
) -> Response {
    let r = (|| {
        let p = s.auth.authenticate(req.headers())?;
        p.require(Permission::ReadMetadata, "read curated datasets")?;
        let d = s
            .store
            .get_dataset(&name)
            .map_err(|e| GatewayError::Internal(e.to_string()))?
            .ok_or_else(|| GatewayError::NotFound(format!("no dataset '{name}'")))?;
        s.store
            .audit(&AuditEntry::new(
                &p.actor(),
                "export_dataset",
                Some(&d.id),
                Some("admin api"),
            ))
            .map_err(|e| {
                GatewayError::Internal(format!("audit write failed, refusing to read: {e}"))
            })?;
        let mut body = Vec::new();
        {
            let keyring = s.keyring.read().unwrap_or_else(|p| p.into_inner());
            downshift_store::export_dataset_jsonl(&d, &keyring, s.store.as_ref(), &mut body)
                .map_err(|e| GatewayError::Internal(e.to_string()))?;
        }
        Ok::<_, GatewayError>(([(header::CONTENT_TYPE, "application/jsonl")], body).into_response())
    })();
    r.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /admin/policies`: every task's routing policy, with the newest route events.
pub async fn list_policies(State(s): State<Arc<AppState>>, req: Request) -> Response {
    let r = (|| {
        let p = s.auth.authenticate(req.headers())?;
        p.require(Permission::ReadMetadata, "read routing policies")?;
        let policies = s
            .store
            .list_policies()
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        let events = s
            .store
            .list_route_events(None, 100)
            .map_err(|e| GatewayError::Internal(e.to_string()))?;
        Ok::<_, GatewayError>(json_response(
            &json!({"object": "list", "data": policies, "events": events}),
        ))
    })();
    r.unwrap_or_else(IntoResponse::into_response)
}

/// `GET /admin/policies/{task}`.
pub async fn get_policy(
    State(s): State<Arc<AppState>>,
    Path(task): Path<String>,
    req: Request,
) -> Response {
    let r = (|| {
        let p = s.auth.authenticate(req.headers())?;
        p.require(Permission::ReadMetadata, "read routing policies")?;
        let policy = s
            .store
            .get_policy(&task)
            .map_err(|e| GatewayError::Internal(e.to_string()))?
            .ok_or_else(|| GatewayError::NotFound(format!("task '{task}' has no policy")))?;
        Ok::<_, GatewayError>(json_response(&json!(policy)))
    })();
    r.unwrap_or_else(IntoResponse::into_response)
}

pub async fn set_policy(
    State(s): State<Arc<AppState>>,
    Path(task): Path<String>,
    req: Request,
) -> Response {
    let (parts, body) = req.into_parts();
    let r = async {
        let p = s.auth.authenticate(&parts.headers)?;
        p.require(Permission::ManageRoutes, "change routing policies")?;
        let bytes = crate::proxy::read_body(body, &parts.headers, 64 * 1024).await?;
        let change: downshift_route::PolicyChange = serde_json::from_slice(&bytes)
            .map_err(|e| GatewayError::BadRequest(format!("invalid policy change: {e}")))?;
        let (policy, _) =
            downshift_route::change_policy(s.store.as_ref(), &task, &change, &p.actor()).map_err(
                |e| match e {
                    downshift_route::RouteError::UnknownTask(_) => {
                        GatewayError::NotFound(e.to_string())
                    }
                    downshift_route::RouteError::InvalidPolicy(_) => {
                        GatewayError::BadRequest(e.to_string())
                    }
                    other => GatewayError::Internal(other.to_string()),
                },
            )?;
        Ok::<_, GatewayError>(json_response(&json!(policy)))
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}
