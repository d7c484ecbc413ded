//! `/v1/models` and `/v1/models/{id}`: the models this gateway serves — declared ones, what
//! the model map's patterns route to an upstream (asked of the upstream), and local models.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use downshift_store::Permission;
use http::{HeaderMap, header};
use http_body_util::{BodyExt, Full};

use crate::GatewayError;
use crate::proxy::{copy_request_headers, error_chain, hop_header, respond};
use crate::server::AppState;
use crate::upstream::Upstream;

/// `GET /v1/models`: without a model map, the default upstream's own list; with one, the models
/// it names, the upstream models its patterns (and a catch-all default) match, and the local
/// models.
pub async fn models(State(s): State<Arc<AppState>>, req: Request) -> Response {
    respond(&s, "models", list_models(&s, req).await)
}

/// `GET /v1/models/{id}`: a model the map names or a local model is described by downshift; one
/// that only a pattern or the default route reaches is looked up at its upstream.
pub async fn model(
    State(s): State<Arc<AppState>>,
    axum::extract::Path(id): axum::extract::Path<String>,
    req: Request,
) -> Response {
    respond(&s, "models", retrieve_model(&s, &id, req).await)
}

fn model_object(id: &str, owner: &str) -> serde_json::Value {
    serde_json::json!({"id": id, "object": "model", "created": 0, "owned_by": owner})
}

fn json_response(v: &serde_json::Value) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response()
}

async fn retrieve_model(
    s: &Arc<AppState>,
    id: &str,
    req: Request,
) -> Result<Response, GatewayError> {
    let principal = s.auth.authenticate(req.headers()).await?;
    principal.require(Permission::CallModels, "call the /v1 API")?;
    if s.local.model_ids().iter().any(|m| m == id) {
        return Ok(json_response(&model_object(id, "downshift")));
    }
    if let Some((_, owners)) = s
        .upstreams
        .declared_models()
        .into_iter()
        .find(|(m, _)| *m == id)
    {
        return Ok(json_response(&model_object(id, &owners)));
    }
    let upstream = s
        .upstreams
        .resolve(id)
        .cloned()
        .ok_or_else(|| GatewayError::UnknownModel(id.to_owned()))?;
    let path = format!("models/{}", percent_encode_segment(id));
    let (parts, bytes) = upstream_get(&upstream, &path, req.headers()).await?;
    passthrough(parts, bytes)
}

/// A path segment with everything but unreserved characters percent-encoded.
fn percent_encode_segment(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A GET to the upstream (the client's forwardable headers, the upstream's key), its whole
/// answer within the upstream's time limit.
async fn upstream_get(
    upstream: &Upstream,
    path: &str,
    headers: &HeaderMap,
) -> Result<(http::response::Parts, Bytes), GatewayError> {
    let uri = upstream
        .url(path)
        .map_err(|e| GatewayError::Internal(e.to_string()))?;
    let mut up_req = http::Request::new(Full::new(Bytes::new()));
    *up_req.uri_mut() = uri;
    copy_request_headers(headers, up_req.headers_mut(), upstream);
    up_req.headers_mut().remove(header::CONTENT_TYPE);
    let unreachable = |e: String| GatewayError::Unreachable {
        upstream: upstream.name.clone(),
        reason: e,
    };
    let timeout = || GatewayError::Timeout {
        upstream: upstream.name.clone(),
        ms: upstream.timeout.as_millis() as u64,
    };
    let t = Instant::now();
    let resp = tokio::time::timeout(upstream.timeout, upstream.client.request(up_req))
        .await
        .map_err(|_| timeout())?
        .map_err(|e| unreachable(error_chain(&e)))?;
    let (parts, body) = resp.into_parts();
    let left = upstream.timeout.saturating_sub(t.elapsed());
    let bytes = tokio::time::timeout(left, body.collect())
        .await
        .map_err(|_| timeout())?
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    Ok((parts, bytes))
}

/// The upstream's answer as it came (less hop-by-hop headers).
fn passthrough(parts: http::response::Parts, bytes: Bytes) -> Result<Response, GatewayError> {
    let mut out = Response::builder().status(parts.status);
    if let Some(h) = out.headers_mut() {
        for (name, value) in parts.headers.iter() {
            if !hop_header(name) {
                h.append(name, value.clone());
            }
        }
    }
    out.body(Body::from(bytes))
        .map_err(|e| GatewayError::Internal(e.to_string()))
}

/// The model ids in an upstream's `/models` answer.
async fn upstream_model_ids(upstream: &Upstream, headers: &HeaderMap) -> Vec<String> {
    let Ok((parts, bytes)) = upstream_get(upstream, "models", headers).await else {
        return Vec::new();
    };
    if !parts.status.is_success() {
        return Vec::new();
    }
    serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| {
            v.get("data")?.as_array().map(|d| {
                d.iter()
                    .filter_map(|m| m.get("id")?.as_str().map(str::to_owned))
                    .collect()
            })
        })
        .unwrap_or_default()
}

async fn list_models(s: &Arc<AppState>, req: Request) -> Result<Response, GatewayError> {
    let principal = s.auth.authenticate(req.headers()).await?;
    principal.require(Permission::CallModels, "call the /v1 API")?;
    let declared = s.upstreams.declared_models();
    let patterns = s.upstreams.patterns();
    let local = s.local.model_ids();
    let mapless = declared.is_empty() && patterns.is_empty();
    if mapless && let Some(upstream) = s.upstreams.default_upstream() {
        // No map: the default upstream's own list as it sent it, plus the local models.
        let (parts, mut bytes) = upstream_get(upstream, "models", req.headers()).await?;
        if parts.status.is_success()
            && !local.is_empty()
            && let Ok(mut list) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && let Some(data) = list.get_mut("data").and_then(|d| d.as_array_mut())
        {
            data.extend(local.iter().map(|m| model_object(m, "downshift")));
            bytes = Bytes::from(list.to_string());
        }
        return passthrough(parts, bytes);
    }
    let mut seen = std::collections::HashSet::new();
    let mut data = Vec::new();
    for (m, owners) in &declared {
        seen.insert(m.to_string());
        data.push(model_object(m, owners));
    }
    // What the patterns and a catch-all default reach: the upstream's models that route back to
    // that same upstream through the map (asked once per upstream, all at once).
    let mut reach: Vec<Arc<Upstream>> = Vec::new();
    for u in patterns
        .iter()
        .flat_map(|(_, ups)| ups.iter())
        .chain(s.upstreams.default_upstream())
    {
        if !reach.iter().any(|r| Arc::ptr_eq(r, u)) {
            reach.push(u.clone());
        }
    }
    let lists =
        futures_util::future::join_all(reach.iter().map(|u| upstream_model_ids(u, req.headers())))
            .await;
    for (u, ids) in reach.iter().zip(lists) {
        for id in ids {
            let routed_here = s.upstreams.is_mapped(&id)
                && patterns
                    .iter()
                    .any(|(p, ups)| id.starts_with(p) && ups.iter().any(|x| Arc::ptr_eq(x, u)));
            let by_default = !s.upstreams.is_mapped(&id)
                && s.upstreams
                    .default_upstream()
                    .is_some_and(|d| Arc::ptr_eq(d, u));
            if (routed_here || by_default) && seen.insert(id.clone()) {
                data.push(model_object(&id, &u.name));
            }
        }
    }
    data.extend(local.iter().map(|m| model_object(m, "downshift")));
    Ok(json_response(
        &serde_json::json!({"object": "list", "data": data}),
    ))
}
