//! `/ui/calls`: the call log's metadata, filtered as `downshift calls list` filters it (agent,
//! task, model, status, route, time); `/ui/calls/{id}`: one call's raw payloads, for admins
//! only and audited like `GET /admin/calls/{id}`.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use downshift_store::{
    CallFilter, CallMeta, CallStatus, FALLBACK_TAG, Permission, ROUTE_TAG, TASK_TAG,
};
use maud::{Markup, html};
use serde::Deserialize;

use super::layout::{self, opt};
use super::stats::Route;
use super::{Viewer, blocking};
use crate::GatewayError;
use crate::server::AppState;

#[derive(Debug, Default, Deserialize)]
pub struct CallsQuery {
    agent: Option<String>,
    task: Option<String>,
    model: Option<String>,
    status: Option<String>,
    /// `specialist`, or `fallback:REASON`.
    route: Option<String>,
    /// RFC 3339 or `YYYY-MM-DD` (UTC).
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
}

/// `2026-12-07T10:00:00Z` or `2026-12-07` (midnight UTC) in milliseconds.
fn parse_time(s: &str) -> Result<i64, GatewayError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| {
            GatewayError::BadRequest(format!(
                "invalid time '{s}': use RFC 3339 (2026-12-07T10:00:00Z) or a date (2026-12-07)"
            ))
        })
}

fn nonempty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl CallsQuery {
    /// The store filter; `pseudonym` turns an agent id as the agent sent it into its stored
    /// pseudonym (an `agt_…` value is taken as one already), as `calls list --agent` does.
    fn filter(&self, pseudonym: impl Fn(&str) -> String) -> Result<CallFilter, GatewayError> {
        let status = match nonempty(&self.status) {
            None => None,
            Some(t) => Some(
                CallStatus::parse(&t)
                    .ok_or_else(|| GatewayError::BadRequest(format!("unknown status '{t}'")))?,
            ),
        };
        let tags = match nonempty(&self.route).as_deref() {
            None => vec![],
            Some("specialist") => vec![(ROUTE_TAG.to_owned(), "specialist".to_owned())],
            Some(r) => match r.strip_prefix("fallback:") {
                Some(reason) => vec![(FALLBACK_TAG.to_owned(), reason.to_owned())],
                None => {
                    return Err(GatewayError::BadRequest(format!(
                        "unknown route filter '{r}' (specialist, or fallback:REASON)"
                    )));
                }
            },
        };
        Ok(CallFilter {
            since_ms: nonempty(&self.since).map(|t| parse_time(&t)).transpose()?,
            until_ms: nonempty(&self.until).map(|t| parse_time(&t)).transpose()?,
            model: nonempty(&self.model),
            status,
            agent: nonempty(&self.agent).map(|a| {
                if a.starts_with("agt_") {
                    a
                } else {
                    pseudonym(&a)
                }
            }),
            tags,
            limit: Some(self.limit.unwrap_or(50).clamp(1, 10_000)),
            task: nonempty(&self.task),
            after: None,
        })
    }
}

fn filters(q: &CallsQuery) -> Markup {
    let v = |x: &Option<String>| x.clone().unwrap_or_default();
    html! {
        form.filters #call-filters method="get" action="/ui/calls" {
            label { "agent (id or agt_ pseudonym)" input name="agent" value=(v(&q.agent)) size="28"; }
            label { "task" input name="task" value=(v(&q.task)) size="24"; }
            label { "model" input name="model" value=(v(&q.model)) size="14"; }
            label { "status"
                select name="status" {
                    option value="" { "any" }
                    @for st in ["ok", "upstream_error", "unreachable", "timeout", "interrupted"] {
                        option value=(st) selected[q.status.as_deref() == Some(st)] { (st) }
                    }
                }
            }
            label { "route (specialist, fallback:REASON)" input name="route" value=(v(&q.route)) size="18"; }
            label { "since" input name="since" value=(v(&q.since)) placeholder="2026-12-07" size="20"; }
            label { "until" input name="until" value=(v(&q.until)) size="20"; }
            label { "limit" input name="limit" value=(q.limit.unwrap_or(50)) size="5"; }
            button.primary type="submit" { "Filter" }
        }
    }
}

fn table(viewer: &Viewer, calls: &[CallMeta]) -> Markup {
    let ms = |us: Option<u64>| us.map_or("-".into(), |u| format!("{:.1}", u as f64 / 1000.0));
    html! {
        p.small.mut #call-count data-count=(calls.len()) { (calls.len()) " calls, newest first" }
        table #calls {
            tr { th { "id" } th { "time" } th { "model" } th { "status" } th { "route" } th { "task" } th.n { "latency ms" } th.n { "tokens in/out" } th { "agent" } th { "stream" } }
            @for m in calls {
                tr.call data-call=(m.id) {
                    td.small { @if viewer.is_admin() { a href=(format!("/ui/calls/{}", m.id)) { code { (m.id) } } } @else { code { (m.id) } } }
                    td.small { (layout::time(m.ts_ms)) }
                    td { (m.model) }
                    td data-key="status" { (m.status.as_str()) }
                    td data-key="route" { (Route::of(m).as_str()) @if let Some(r) = m.tags.get(FALLBACK_TAG) { " (" (r) ")" } }
                    td.small { @if let Some(t) = m.tags.get(TASK_TAG) { a href=(format!("/ui/tasks/{t}")) { code { (t) } } } @else { "-" } }
                    td.n data-key="latency" { (ms(m.latency_us)) }
                    td.n { (opt(m.prompt_tokens)) "/" (opt(m.completion_tokens)) }
                    td.small { code { (m.agent.as_deref().unwrap_or("-")) } }
                    td { (if m.stream { "yes" } else { "no" }) }
                }
            }
        }
    }
}

pub async fn list(
    State(s): State<Arc<AppState>>,
    Query(q): Query<CallsQuery>,
    viewer: Viewer,
) -> Response {
    blocking(&s, move |s| {
        let filter = q.filter(|a| {
            let keyring = s.keyring.read().unwrap_or_else(|p| p.into_inner());
            keyring.pseudonym("agent", a)
        })?;
        let calls = s.store.list_calls(&filter)?;
        let body = html! {
            p.mut { "Metadata only, as " code { "downshift calls list" } " prints it; payloads stay encrypted"
                @if viewer.is_admin() { " (an admin opens one by its id, audited)" } "." }
            (filters(&q))
            (table(&viewer, &calls))
        };
        Ok(layout::page("Calls", "calls", &viewer, body))
    })
    .await
}

/// One call's raw request and response: admins only, audited before it is read.
pub async fn show(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    viewer: Viewer,
) -> Response {
    if let Err(e) = viewer
        .principal
        .require(Permission::ReadRaw, "read raw call payloads")
    {
        return super::error_page(e);
    }
    blocking(&s, move |s| {
        let (m, payload) =
            crate::admin::read_raw_call(s, &id, &viewer.principal.actor(), "web ui")?;
        let pretty = |b: &[u8]| {
            let v = crate::payload_value(b);
            serde_json::to_string_pretty(&v).unwrap_or_default()
        };
        let m = &m;
        let body = html! {
            p.warn { "Raw payloads: this read is recorded in the audit trail as " code { (viewer.principal.actor()) } "." }
            div.card {
                table.small {
                    tr { th { "time" } td { (layout::time(m.ts_ms)) } }
                    tr { th { "model" } td { (m.model) } }
                    tr { th { "status" } td { (m.status.as_str()) } }
                    tr { th { "route" } td { (Route::of(m).as_str()) } }
                    tr { th { "task" } td { (m.tags.get(TASK_TAG).map_or("-", String::as_str)) } }
                }
            }
            div.grid {
                div.card { h2 { "Request" } pre #raw-request { (pretty(&payload.request)) } }
                div.card { h2 { "Response" } pre #raw-response { (pretty(&payload.response)) } }
            }
        };
        Ok(layout::page(&format!("Call {id}"), "calls", &viewer, body))
    })
    .await
}
