//! `/ui`: calls per hour and per day by route, the share specialists serve, the estimated cost
//! with and without them, latency percentiles.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::Response;
use maud::{Markup, html};
use serde::Deserialize;

use super::Viewer;
use super::chart::{self, Series};
use super::layout::{self, ms, pct, usd};
use super::stats::{self, Overview, Route};
use crate::GatewayError;
use crate::server::AppState;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

#[derive(Debug, Deserialize)]
pub struct OverviewQuery {
    /// Days the totals and the daily chart cover (default 30).
    days: Option<u32>,
}

const COLORS: [&str; 3] = ["#4e79a7", "#59a14f", "#e15759"];

fn route_series(o: &Overview) -> Vec<Series> {
    [Route::Llm, Route::Specialist, Route::Fallback]
        .iter()
        .map(|r| Series {
            name: r.as_str().into(),
            color: COLORS[*r as usize],
            points: o
                .buckets
                .iter()
                .enumerate()
                .map(|(i, (_, c))| (i as f64, c[*r as usize] as f64))
                .collect(),
        })
        .collect()
}

fn label(ms: i64, fmt: &str) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format(fmt).to_string())
        .unwrap_or_default()
}

fn count(v: f64) -> String {
    format!("{v:.0}")
}

fn kpi(id: &str, value: String, what: &str) -> Markup {
    html! { div.kpi { div.v id=(id) { (value) } div.l { (what) } } }
}

fn render(days: u32, hourly: &Overview, daily: &Overview, spec_price: f64, missing: u64) -> Markup {
    let routes = |o: &Overview, r: Route| o.by_route.get(&r).copied().unwrap_or(0);
    let saving = if daily.usd_without > 0.0 {
        1.0 - daily.usd_with / daily.usd_without
    } else {
        0.0
    };
    let latency = daily.latency_ms;
    // x: days from today (0), so the newest day is on the right.
    let lat_series = |o: &Overview, i: usize, name: &str, color: &'static str| Series {
        name: name.into(),
        color,
        points: o
            .bucket_latency
            .iter()
            .enumerate()
            .filter_map(|(b, l)| {
                l.map(|l| (b as f64 - (o.bucket_latency.len() as f64 - 1.0), l[i]))
            })
            .collect(),
    };
    html! {
        @if missing > 0 {
            p.warn #reloading { "Calls older than the newest were added (an import): the summary is being read again; "
                (missing) " calls are not counted yet. Reload the page in a few seconds." }
        }
        p.mut { "The last " (days) " days, every call the gateway logged or imported. Cost is estimated at the configured "
            code { "[prices]" } ": every call at the LLM's price, against specialist-served calls at "
            (usd(spec_price)) " per million tokens." }
        div.kpis {
            (kpi("kpi-calls", daily.calls.to_string(), "calls"))
            (kpi("kpi-specialist-share", pct(daily.specialist_share), "served by specialists"))
            (kpi("kpi-specialist", routes(daily, Route::Specialist).to_string(), "specialist answers"))
            (kpi("kpi-fallback", routes(daily, Route::Fallback).to_string(), "fallbacks to the LLM"))
            (kpi("kpi-cost-without", usd(daily.usd_without), "cost with the LLM only"))
            (kpi("kpi-cost-with", usd(daily.usd_with), "cost with specialists"))
            (kpi("kpi-saving", pct(saving), "saved"))
            (kpi("kpi-p50", latency.map_or("-".into(), |l| ms(l[0])), "latency p50"))
            (kpi("kpi-p95", latency.map_or("-".into(), |l| ms(l[1])), "latency p95"))
            (kpi("kpi-p99", latency.map_or("-".into(), |l| ms(l[2])), "latency p99"))
        }
        div.grid {
            div.card {
                (chart::bars(&chart::Bars {
                    id: "chart-hourly",
                    title: "Calls per hour, last 48 hours, by route",
                    x_label: "hour (UTC)",
                    y_label: "calls",
                    labels: hourly.buckets.iter().map(|(t, _)| label(*t, "%H:00")).collect(),
                    series: route_series(hourly),
                    y_fmt: count,
                }))
            }
            div.card {
                (chart::bars(&chart::Bars {
                    id: "chart-daily",
                    title: &format!("Calls per day, last {days} days, by route"),
                    x_label: "day (UTC)",
                    y_label: "calls",
                    labels: daily.buckets.iter().map(|(t, _)| label(*t, "%m-%d")).collect(),
                    series: route_series(daily),
                    y_fmt: count,
                }))
            }
            div.card {
                (chart::line(&chart::Line {
                    id: "chart-latency",
                    title: "Latency per day (p50, p95)",
                    x_label: "days from today",
                    y_label: "ms",
                    series: vec![lat_series(daily, 0, "p50", "#4e79a7"), lat_series(daily, 1, "p95", "#f28e2b")],
                    y_range: None,
                    threshold: None,
                    x_fmt: count,
                    y_fmt: |y| format!("{}", (y * 100.0).round() / 100.0),
                    x_min_step: 1.0,
                }))
            }
            div.card {
                h2 { "Cost, last " (days) " days" }
                table {
                    tr { th { "" } th.n { "USD" } }
                    tr { td { "LLM only" } td.n #cost-without { (usd(daily.usd_without)) } }
                    tr { td { "with specialists" } td.n #cost-with { (usd(daily.usd_with)) } }
                    tr { td { "saved" } td.n { (usd(daily.usd_without - daily.usd_with)) " (" (pct(saving)) ")" } }
                }
                h2 style="margin-top:14px" { "Calls by route" }
                table #routes {
                    @for r in [Route::Llm, Route::Specialist, Route::Fallback] {
                        tr { td { (r.as_str()) } td.n data-route=(r.as_str()) { (routes(daily, r)) } }
                    }
                }
            }
        }
    }
}

pub async fn page(
    State(s): State<Arc<AppState>>,
    Query(q): Query<OverviewQuery>,
    viewer: Viewer,
) -> Response {
    let days = q.days.unwrap_or(30).clamp(1, 366);
    super::blocking(&s, move |s| {
        let now = downshift_store::now_ms();
        let until = (now.div_euclid(HOUR) + 1) * HOUR;
        let price = s.ui.options.specialist_usd_per_mtok;
        let (loaded, missing) =
            s.ui.calls
                .refresh(&s.store, s.limits.prices())
                .map_err(GatewayError::from)?;
        let hourly = stats::overview(&loaded, price, until - 48 * HOUR, until, HOUR);
        let day_end = (now.div_euclid(DAY) + 1) * DAY;
        let daily = stats::overview(
            &loaded,
            price,
            day_end - i64::from(days) * DAY,
            day_end,
            DAY,
        );
        Ok(layout::page(
            "Overview",
            "overview",
            &viewer,
            render(days, &hourly, &daily, price, missing),
        ))
    })
    .await
}
