//! `/ui/tasks` (the discovered jobs, sortable) and `/ui/tasks/{id}` (examples, the specialist's
//! evaluation and calibration curve, live agreement against the demotion threshold, fallbacks
//! by reason, and the admin's promote/demote control).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use downshift_discover::CallInput;
use downshift_discover::mask::{Masker, masked_sample};
use downshift_store::{
    AuditEntry, CallFilter, Mode, Permission, Policy, RouteEventKind, TaskRecord,
};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::chart::{self, Series};
use super::layout::{self, pct};
use super::training::{Run, find_runs, policy_dirs};
use super::{Viewer, blocking};
use crate::GatewayError;
use crate::server::AppState;

/// Example calls shown on a task page.
const SAMPLES: usize = 5;
/// Agreement measurements drawn.
const AGREEMENT_POINTS: usize = 2000;

/// A JSON number as its JSON text (what `--json` prints), for `data-value` attributes.
fn json_text(v: &Value) -> String {
    v.to_string()
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    sort: Option<String>,
    dir: Option<String>,
}

/// The sortable columns: key, header, and whether the value is a number.
const COLUMNS: &[(&str, &str, bool)] = &[
    ("label", "Task", false),
    ("calls", "Calls", true),
    ("share_calls", "% calls", true),
    ("share_tokens", "% tokens", true),
    ("share_cost", "% cost", true),
    ("suitability", "Suitability", true),
    ("policy", "Policy", false),
];

fn stat(t: &TaskRecord, key: &str) -> f64 {
    match key {
        "calls" => t.calls as f64,
        k => t.stats[k].as_f64().unwrap_or(0.0),
    }
}

fn mode_badge(p: Option<&Policy>) -> Markup {
    let mode = p.map_or(Mode::Off, |p| p.mode);
    html! { span.badge.(mode.name()) data-mode=(mode.to_string()) { (mode.to_string()) } }
}

fn render_list(
    tasks: &mut [TaskRecord],
    policies: &BTreeMap<String, Policy>,
    q: &ListQuery,
) -> Markup {
    let sort = q
        .sort
        .as_deref()
        .filter(|s| COLUMNS.iter().any(|c| c.0 == *s))
        .unwrap_or("calls");
    let desc = q.dir.as_deref() != Some("asc");
    let mode_of = |t: &TaskRecord| {
        policies
            .get(&t.id)
            .map_or(Mode::Off, |p| p.mode)
            .to_string()
    };
    tasks.sort_by(|a, b| {
        let o = match sort {
            "label" => a.label.cmp(&b.label),
            "policy" => mode_of(a).cmp(&mode_of(b)),
            k => stat(a, k).total_cmp(&stat(b, k)),
        };
        let o = if desc { o.reverse() } else { o };
        o.then_with(|| a.id.cmp(&b.id))
    });
    let share = |t: &TaskRecord, k: &str| {
        html! { td.n data-key=(k) data-value=(json_text(&t.stats[k])) { (pct(t.stats[k].as_f64().unwrap_or(0.0))) } }
    };
    html! {
        @if tasks.is_empty() {
            p #no-tasks { "No tasks yet: run " code { "downshift discover" } "." }
        } @else {
            table #tasks {
                thead { tr {
                    @for (key, head, num) in COLUMNS {
                        @let next = if *key == sort && desc { "asc" } else { "desc" };
                        th.n[*num] { a href=(format!("/ui/tasks?sort={key}&dir={next}")) data-sort=(key) {
                            (head) @if *key == sort { (if desc { " ▼" } else { " ▲" }) }
                        } }
                    }
                    th { "Reasons" } th { "Specialist" }
                } }
                tbody {
                    @for t in tasks.iter() {
                        @let p = policies.get(&t.id);
                        tr data-task=(t.id) {
                            td { a href=(format!("/ui/tasks/{}", t.id)) { (t.label) } div.small.mut { code { (t.id) } } }
                            td.n data-key="calls" data-value=(t.calls) { (t.calls) }
                            (share(t, "share_calls")) (share(t, "share_tokens")) (share(t, "share_cost"))
                            td.n data-key="suitability" data-value=(json_text(&t.stats["suitability"])) { (format!("{:.2}", t.stats["suitability"].as_f64().unwrap_or(0.0))) }
                            td { (mode_badge(p)) }
                            td.small { @if let Some(r) = t.stats["reasons"].as_array() {
                                (r.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; "))
                            } }
                            td.small { (p.and_then(|p| p.specialist.as_deref()).unwrap_or("-")) }
                        }
                    }
                }
            }
        }
    }
}

pub async fn list(
    State(s): State<Arc<AppState>>,
    Query(q): Query<ListQuery>,
    viewer: Viewer,
) -> Response {
    blocking(&s, move |s| {
        let mut tasks = s.store.list_tasks()?;
        let policies: BTreeMap<String, Policy> = s
            .store
            .list_policies()?
            .into_iter()
            .map(|p| (p.task.clone(), p))
            .collect();
        Ok(layout::page(
            "Tasks",
            "tasks",
            &viewer,
            render_list(&mut tasks, &policies, &q),
        ))
    })
    .await
}

/// The PII detector that masks examples, built once.
pub(super) fn masker() -> Result<&'static Masker, GatewayError> {
    static MASKER: std::sync::OnceLock<Result<Masker, String>> = std::sync::OnceLock::new();
    MASKER
        .get_or_init(|| Masker::new().map_err(|e| e.to_string()))
        .as_ref()
        .map_err(|e| GatewayError::Internal(format!("cannot build the PII detector: {e}")))
}

/// The masked examples of a task (decrypted here, never shown raw).
fn samples(s: &AppState, task: &str) -> Result<Vec<Value>, GatewayError> {
    let masker = masker()?;
    let metas = s.store.list_calls(&CallFilter {
        task: Some(task.to_owned()),
        limit: Some(SAMPLES),
        ..CallFilter::default()
    })?;
    let mut out = Vec::new();
    for m in metas {
        let Some(sealed) = s.store.get_call(&m.id)? else {
            continue;
        };
        // Sealed by another replica with a data key rotated moments ago: re-read the key file.
        let payload = downshift_store::open_reloading(&s.keyring, &sealed)?;
        let parse = |b: &[u8]| serde_json::from_slice(b).unwrap_or(Value::Null);
        out.push(masked_sample(
            masker,
            &CallInput {
                id: m.id.clone(),
                model: m.model.clone(),
                request: parse(&payload.request),
                response: parse(&payload.response),
                prompt_tokens: m.prompt_tokens,
                completion_tokens: m.completion_tokens,
            },
        ));
    }
    Ok(out)
}

fn summary(t: &TaskRecord, p: Option<&Policy>) -> Markup {
    let st = &t.stats;
    html! {
        div.kpis {
            div.kpi { div.v #task-calls { (t.calls) } div.l { "calls" } }
            div.kpi { div.v #task-share-calls data-value=(json_text(&st["share_calls"])) { (pct(st["share_calls"].as_f64().unwrap_or(0.0))) } div.l { "of all calls" } }
            div.kpi { div.v #task-share-cost data-value=(json_text(&st["share_cost"])) { (pct(st["share_cost"].as_f64().unwrap_or(0.0))) } div.l { "of the LLM cost" } }
            div.kpi { div.v #task-suitability data-value=(json_text(&st["suitability"])) { (format!("{:.2}", st["suitability"].as_f64().unwrap_or(0.0))) } div.l { "suitability" } }
            div.kpi { div.v #task-mode { (mode_badge(p)) } div.l { "policy" } }
        }
        div.card {
            table.small {
                tr { th { "id" } td { code #task-id { (t.id) } } }
                tr { th { "output" } td { (st["output_kind"].as_str().unwrap_or("-")) @if let Some(tool) = st["dominant_tool"].as_str() { " · " code { (tool) } } } }
                tr { th { "reasons" } td #task-reasons { (st["reasons"].as_array().map(|r| r.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("; ")).unwrap_or_default()) } }
                tr { th { "specialist" } td #task-specialist { (p.and_then(|p| p.specialist.as_deref()).unwrap_or("-")) } }
                @if let Some(p) = p {
                    tr { th { "demotion threshold" } td { (format!("{:.2}", p.agreement_threshold)) " over " (p.window) " measurements" } }
                    tr { th { "policy changed" } td { (layout::time(p.updated_ms)) " by " code { (p.updated_by) } } }
                }
            }
        }
    }
}

/// The admin's promote/demote form (its first step: the change is confirmed on the next page).
fn policy_form(viewer: &Viewer, t: &TaskRecord, p: Option<&Policy>) -> Markup {
    let current = p.map_or(Mode::Off, |p| p.mode);
    let spec = p.and_then(|p| p.specialist.clone()).unwrap_or_default();
    html! {
        form.filters #policy-form method="post" action=(format!("/ui/tasks/{}/policy", t.id)) {
            input type="hidden" name="csrf" value=(viewer.csrf());
            label { "mode"
                select name="mode" {
                    @for m in ["off", "shadow", "canary:10", "canary:50", "on"] {
                        option value=(m) selected[m == current.to_string()] { (m) }
                    }
                }
            }
            label { "specialist (adapter folder or endpoint name)"
                input type="text" name="specialist" value=(spec) size="48";
            }
            button.primary type="submit" { "Change policy…" }
        }
    }
}

/// The specialists' evaluations and calibration curves.
fn evals(runs: &[Run]) -> Markup {
    let with_eval: Vec<&Run> = runs.iter().filter(|r| r.eval.is_some()).collect();
    html! {
        @if with_eval.is_empty() {
            p.mut #no-eval { "No evaluated specialist for this task: " code { "downshift eval --adapter DIR" } " writes one." }
        }
        @for (i, r) in with_eval.iter().enumerate() {
            @let e = r.eval.as_ref().unwrap_or(&Value::Null);
            div.eval data-dir=(r.name()) {
                p.small { code { (r.name()) } }
                div {
                    table.small {
                        tr { th { "examples (test split)" } td.examples { (e["examples"]) } }
                        tr { th { "answer kind" } td { (e["kind"].as_str().unwrap_or("-")) } }
                        tr { th { "exact match" } td.exact data-value=(json_text(&e["exact_match"])) { (e["exact_match"].as_f64().map_or("-".into(), pct)) } }
                        tr { th { "base model, zero-shot" } td.base-exact data-value=(json_text(&e["base_exact_match"])) { (e["base_exact_match"].as_f64().map_or("-".into(), pct)) } }
                        tr { th { "schema valid" } td data-value=(json_text(&e["schema_valid"])) { (e["schema_valid"].as_f64().map_or("-".into(), pct)) } }
                        @if let Some(c) = e["calibration"].as_object() {
                            tr { th { "confidence threshold" } td { (c.get("min_confidence").and_then(Value::as_f64).map_or("none reaches the target".into(), |m| format!("{m:.4}")))
                                " (target precision " (c.get("target_precision").and_then(Value::as_f64).map_or("-".into(), pct)) ")" } }
                        }
                    }
                    div {
                        @let curve: Vec<(f64, f64)> = e["calibration_curve"].as_array().map(|a| a.iter()
                            .filter_map(|p| Some((p["coverage"].as_f64()?, p["precision"].as_f64()?))).collect()).unwrap_or_default();
                        @if curve.is_empty() {
                            p.mut { "No calibration curve in this eval.json (written by an older " code { "downshift eval" } "; run it again)." }
                        } @else {
                            (chart::line(&chart::Line {
                                id: &format!("calibration-{i}"),
                                title: "Calibration: precision by share served (one point per confidence threshold)",
                                x_label: "share of the test split served",
                                y_label: "precision",
                                series: vec![Series { name: "specialist".into(), color: "#59a14f", points: curve }],
                                y_range: Some((0.0, 1.0)),
                                threshold: None,
                                x_fmt: |x| format!("{:.0}%", x * 100.0),
                                y_fmt: |y| format!("{:.0}%", y * 100.0),
                                x_min_step: 0.0,
                            }))
                        }
                    }
                }
            }
        }
    }
}

/// Live agreement (points and the rolling mean over the policy's window) with the threshold.
fn agreement(s: &AppState, task: &str, p: Option<&Policy>) -> Result<Markup, GatewayError> {
    let mut recs = s.store.recent_agreement(task, AGREEMENT_POINTS)?;
    recs.reverse();
    let window = p.map_or(Policy::DEFAULT_WINDOW, |p| p.window).max(1) as usize;
    let threshold = p.map_or(Policy::DEFAULT_AGREEMENT_THRESHOLD, |p| {
        p.agreement_threshold
    });
    let t0 = recs.first().map_or(0, |r| r.ts_ms);
    let secs = |ts: i64| (ts - t0) as f64 / 1000.0;
    // The x axis in seconds, labelled in the unit that suits the span.
    let span = recs.last().map_or(0.0, |r| secs(r.ts_ms));
    let x_fmt: fn(f64) -> String = if span < 10.0 {
        |x| format!("{x:.1}s")
    } else if span < 120.0 {
        |x| format!("{x:.0}s")
    } else if span < 7200.0 {
        |x| format!("{:.0}m", x / 60.0)
    } else {
        |x| format!("{:.1}h", x / 3600.0)
    };
    let mut rolling = Vec::new();
    for i in 0..recs.len() {
        let from = (i + 1).saturating_sub(window);
        let mean = recs[from..=i].iter().map(|r| r.value).sum::<f64>() / (i + 1 - from) as f64;
        rolling.push((secs(recs[i].ts_ms), mean));
    }
    // The current specialist's window, as `downshift policies` reports it.
    let (in_window, mean) = match p {
        Some(p) => downshift_route::window_agreement(s.store.as_ref(), p)
            .map_err(|e| GatewayError::Internal(e.to_string()))?,
        None => (0, None),
    };
    Ok(html! {
        p.small #agreement-summary data-count=(recs.len()) {
            (recs.len()) " measurements drawn; the current specialist's window holds "
            b #agreement-window data-value=(in_window) { (in_window) } " of " (window)
            @if let Some(m) = mean { ", mean " b #agreement-mean data-value=(m) { (format!("{m:.3}")) } }
            "; demoted below " b { (format!("{threshold:.2}")) }
            @if let Some(r) = recs.first() { " (first measurement " (layout::time(r.ts_ms)) ")" }
        }
        (chart::line(&chart::Line {
            id: "chart-agreement",
            title: "Live agreement with the LLM (shadow, canary and the on-mode sample)",
            x_label: "time since the first measurement",
            y_label: "agreement",
            series: vec![
                Series { name: "measurement".into(), color: "#bab0ac", points: recs.iter().map(|r| (secs(r.ts_ms), r.value)).collect() },
                Series { name: format!("rolling mean ({window})"), color: "#4e79a7", points: rolling },
            ],
            y_range: Some((0.0, 1.0)),
            threshold: Some((threshold, format!("demotion threshold {threshold:.2}"))),
            x_fmt,
            y_fmt: |y| format!("{y:.1}"),
            x_min_step: 0.0,
        }))
    })
}

/// Fallbacks by reason and the promotions/demotions, from the route events.
fn events(s: &AppState, task: &str) -> Result<Markup, GatewayError> {
    let evs = s.store.list_route_events(Some(task), 100_000)?;
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for e in evs.iter().filter(|e| e.kind == RouteEventKind::Fallback) {
        *reasons
            .entry(e.detail["reason"].as_str().unwrap_or("unknown").to_owned())
            .or_default() += 1;
    }
    let changes: Vec<_> = evs
        .iter()
        .filter(|e| e.kind != RouteEventKind::Fallback)
        .take(20)
        .collect();
    Ok(html! {
        div.grid {
            div {
                table #fallbacks {
                    tr { th { "fallback reason" } th.n { "calls" } }
                    @for (r, n) in &reasons { tr data-reason=(r) { td { code { (r) } } td.n { (n) } } }
                    @if reasons.is_empty() { tr { td.mut colspan="2" { "no fallbacks" } } }
                }
            }
            div {
                (chart::bars(&chart::Bars {
                    id: "chart-fallbacks",
                    title: "Fallbacks to the LLM by reason",
                    x_label: "reason",
                    y_label: "calls",
                    labels: reasons.keys().cloned().collect(),
                    series: vec![Series { name: "fallbacks".into(), color: "#e15759",
                        points: reasons.values().enumerate().map(|(i, n)| (i as f64, *n as f64)).collect() }],
                    y_fmt: |y| format!("{y:.0}"),
                }))
            }
        }
        h2 style="margin-top:12px" { "Policy changes" }
        table #policy-changes {
            tr { th { "time" } th { "event" } th { "detail" } }
            @for e in &changes {
                tr { td { (layout::time(e.ts_ms)) } td { (e.kind.as_str()) } td.small { code { (e.detail.to_string()) } } }
            }
            @if changes.is_empty() { tr { td.mut colspan="3" { "none" } } }
        }
    })
}

fn render_detail(
    s: &AppState,
    viewer: &Viewer,
    t: &TaskRecord,
    p: Option<&Policy>,
) -> Result<Markup, GatewayError> {
    let samples = samples(s, &t.id)?;
    let runs: Vec<Run> = find_runs(&s.ui.options.adapters_dir, &policy_dirs(s))
        .into_iter()
        .filter(|r| {
            r.task() == Some(t.id.as_str())
                || p.and_then(|p| p.specialist.as_deref()) == Some(r.name().as_str())
        })
        .collect();
    Ok(html! {
        (summary(t, p))
        div.grid {
            div.card #agreement { h2 { "Live agreement" } (agreement(s, &t.id, p)?) }
            div.card #evals { h2 { "Specialist evaluation" } (evals(&runs)) }
        }
        div.card #routing { h2 { "Fallbacks" } (events(s, &t.id)?) }
        @if viewer.is_admin() {
            div.card #promote {
                h2 { "Promote or demote" }
                p.small.mut { "Sets the task's routing policy as " code { "downshift promote" } " does; you confirm on the next page, and the change is audited." }
                (policy_form(viewer, t, p))
            }
        }
        div.card {
            h2 { "Example calls (masked)" }
            p.small.mut { "Names, e-mails, numbers and quoted material are replaced by their type, as in " code { "downshift tasks show" } "."
                @if viewer.is_admin() { " The raw payload of a call (audited) is one click away." } }
            table #samples {
                tr { th { "call" } th { "input" } th { "output" } }
                @for x in &samples {
                    @let id = x["call_id"].as_str().unwrap_or("");
                    tr.sample data-call=(id) {
                        td.small { @if viewer.is_admin() { a.raw href=(format!("/ui/calls/{id}")) { code { (id) } } } @else { code { (id) } } }
                        td { pre { (x["input"].as_str().unwrap_or("")) } }
                        td { pre { (x["output"].as_str().unwrap_or("")) } div.small.mut { (x["output_shape"].as_str().unwrap_or("")) } }
                    }
                }
            }
        }
    })
}

pub async fn detail(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    viewer: Viewer,
) -> Response {
    blocking(&s, move |s| {
        let t = s
            .store
            .get_task(&id)?
            .ok_or_else(|| GatewayError::NotFound(format!("no task '{id}'")))?;
        let p = s.store.get_policy(&id)?;
        let body = render_detail(s, &viewer, &t, p.as_ref())?;
        Ok(layout::page(&t.label, "tasks", &viewer, body))
    })
    .await
}

#[derive(Debug, Deserialize)]
pub struct PolicyForm {
    csrf: String,
    mode: String,
    #[serde(default)]
    specialist: String,
    /// `yes` on the confirmation page's form.
    #[serde(default)]
    confirm: String,
}

/// A POST from another site: its `Origin` (or `Referer`) names another host.
fn cross_site(headers: &HeaderMap) -> bool {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok());
    let from = headers
        .get(axum::http::header::ORIGIN)
        .or_else(|| headers.get(axum::http::header::REFERER))
        .and_then(|v| v.to_str().ok());
    match (host, from) {
        (Some(host), Some(from)) => {
            let rest = from.split_once("://").map_or(from, |(_, r)| r);
            rest.split('/').next() != Some(host)
        }
        // A browser always sends Host; no Origin/Referer (privacy settings) leaves the token.
        _ => false,
    }
}

/// `POST /ui/tasks/{id}/policy`: first a confirmation page, then (with `confirm=yes`) the change,
/// made as `downshift promote` makes it, audited.
pub async fn change_policy(
    State(s): State<Arc<AppState>>,
    Path(id): Path<String>,
    viewer: Viewer,
    headers: HeaderMap,
    Form(f): Form<PolicyForm>,
) -> Response {
    if let Err(e) = viewer
        .principal
        .require(Permission::ManageRoutes, "change routing policies")
    {
        return super::error_page(e);
    }
    if cross_site(&headers) || f.csrf != viewer.csrf() {
        return super::error_page(GatewayError::Forbidden {
            role: viewer.role().as_str().into(),
            action: "change a policy from a form this UI did not serve (CSRF check failed)".into(),
        });
    }
    let mode: Mode = match f.mode.parse() {
        Ok(m) => m,
        Err(e) => return super::error_page(GatewayError::BadRequest(e.to_string())),
    };
    // An adapter folder is stored as an absolute path, as `downshift promote` stores it.
    let specialist = f.specialist.trim().to_owned();
    let specialist = if specialist.is_empty() {
        None
    } else {
        Some(
            std::fs::canonicalize(&specialist)
                .ok()
                .filter(|p| p.is_dir())
                .map_or(specialist, |p| p.display().to_string()),
        )
    };
    if f.confirm != "yes" {
        return blocking(&s, move |s| {
            let t = s
                .store
                .get_task(&id)?
                .ok_or_else(|| GatewayError::NotFound(format!("no task '{id}'")))?;
            let from = s.store.get_policy(&id)?.map_or(Mode::Off, |p| p.mode);
            let body = html! {
                div.card.warn #confirm {
                    p { "Change the policy of " b { (t.label) } " (" code { (t.id) } ") from "
                        b #from { (from.to_string()) } " to " b #to { (mode.to_string()) } "?" }
                    p.small { "Specialist: " code { (specialist.as_deref().unwrap_or("(unchanged)")) } }
                    form method="post" action=(format!("/ui/tasks/{}/policy", t.id)) {
                        input type="hidden" name="csrf" value=(viewer.csrf());
                        input type="hidden" name="mode" value=(mode.to_string());
                        input type="hidden" name="specialist" value=(specialist.clone().unwrap_or_default());
                        input type="hidden" name="confirm" value="yes";
                        button.primary #confirm-button type="submit" { "Confirm" }
                        " " a href=(format!("/ui/tasks/{}", t.id)) { "Cancel" }
                    }
                }
            };
            Ok(layout::page("Confirm the policy change", "tasks", &viewer, body))
        })
        .await;
    }
    let actor = viewer.principal.actor();
    let s2 = s.clone();
    let task = id.clone();
    let done = tokio::task::spawn_blocking(move || -> Result<(), GatewayError> {
        let change = downshift_route::PolicyChange {
            mode: Some(mode),
            specialist,
            ..Default::default()
        };
        let (p, from) = downshift_route::change_policy(s2.store.as_ref(), &task, &change, &actor)
            .map_err(crate::admin::policy_error)?;
        let detail = format!(
            "web ui: {} -> {}",
            from.map_or("none".into(), |m| m.to_string()),
            p.mode
        );
        s2.store
            .audit(&AuditEntry::new(
                &actor,
                "set_policy",
                Some(&task),
                Some(&detail),
            ))
            .map_err(crate::admin::audit_failed)?;
        Ok(())
    })
    .await;
    match done {
        Ok(Ok(())) => Redirect::to(&format!("/ui/tasks/{id}")).into_response(),
        Ok(Err(e)) => super::error_page(e),
        Err(e) => super::error_page(GatewayError::Internal(format!("policy change failed: {e}"))),
    }
}
