//! Inline SVG charts with axes, ticks and labels: lines (with an optional threshold) and
//! stacked bars. Generated here so the pages need no script and no network.

use maud::{Markup, html};

const W: f64 = 560.0;
const H: f64 = 220.0;
const LEFT: f64 = 52.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 22.0;
const BOTTOM: f64 = 40.0;

/// One named line or bar series.
pub struct Series {
    pub name: String,
    pub color: &'static str,
    pub points: Vec<(f64, f64)>,
}

/// A line chart.
pub struct Line<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: Vec<Series>,
    /// The y range; `None`: from 0 (or the lowest value) to the highest.
    pub y_range: Option<(f64, f64)>,
    /// A dashed horizontal line and its label (e.g. the demotion threshold).
    pub threshold: Option<(f64, String)>,
    pub x_fmt: fn(f64) -> String,
    pub y_fmt: fn(f64) -> String,
    /// The least distance between x ticks (1 for counts such as updates).
    pub x_min_step: f64,
}

/// About five round tick values covering `[lo, hi]`, at least `min_step` apart.
fn ticks(lo: f64, hi: f64, min_step: f64) -> Vec<f64> {
    let span = (hi - lo).abs();
    if !span.is_finite() || span == 0.0 {
        return vec![lo];
    }
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * mag)
        .max(min_step);
    let mut t = (lo / step).ceil() * step;
    let mut out = Vec::new();
    while t <= hi + step * 1e-9 {
        out.push(if t.abs() < step * 1e-9 { 0.0 } else { t });
        t += step;
    }
    out
}

/// Maps data to the plot area.
struct Frame {
    x0: f64,
    x1: f64,
    y0: f64,
    y1: f64,
}

impl Frame {
    fn x(&self, v: f64) -> f64 {
        let span = (self.x1 - self.x0).max(f64::MIN_POSITIVE);
        LEFT + (v - self.x0) / span * (W - LEFT - RIGHT)
    }
    fn y(&self, v: f64) -> f64 {
        let span = (self.y1 - self.y0).max(f64::MIN_POSITIVE);
        H - BOTTOM - (v - self.y0) / span * (H - TOP - BOTTOM)
    }
}

fn legend(series: &[Series]) -> Markup {
    html! {
        div.legend {
            @for s in series {
                span { i style=(format!("background:{}", s.color)) {} (s.name) }
            }
        }
    }
}

/// Axes, grid and tick labels.
fn axes(
    f: &Frame,
    xt: &[f64],
    yt: &[f64],
    x_fmt: fn(f64) -> String,
    y_fmt: fn(f64) -> String,
) -> Markup {
    html! {
        @for t in yt {
            line x1=(LEFT) x2=(W - RIGHT) y1=(f.y(*t)) y2=(f.y(*t)) stroke="#e6e9ef" {}
            text x=(LEFT - 6.0) y=(f.y(*t) + 4.0) text-anchor="end" { (y_fmt(*t)) }
        }
        @for t in xt {
            text x=(f.x(*t)) y=(H - BOTTOM + 14.0) text-anchor="middle" { (x_fmt(*t)) }
        }
        line x1=(LEFT) x2=(LEFT) y1=(TOP) y2=(H - BOTTOM) stroke="#9aa3b2" {}
        line x1=(LEFT) x2=(W - RIGHT) y1=(H - BOTTOM) y2=(H - BOTTOM) stroke="#9aa3b2" {}
    }
}

fn labels(title: &str, x_label: &str, y_label: &str) -> Markup {
    html! {
        text.title x=(LEFT) y="14" { (title) }
        text x=((LEFT + W - RIGHT) / 2.0) y=(H - 6.0) text-anchor="middle" { (x_label) }
        text transform=(format!("translate(12,{}) rotate(-90)", (TOP + H - BOTTOM) / 2.0)) text-anchor="middle" { (y_label) }
    }
}

/// A line chart; an empty chart says there is nothing to draw.
pub fn line(c: &Line<'_>) -> Markup {
    let all: Vec<(f64, f64)> = c.series.iter().flat_map(|s| s.points.clone()).collect();
    if all.is_empty() {
        return html! { p.mut id=(c.id) { (c.title) ": nothing to draw yet." } };
    }
    let (mut x0, mut x1) = (f64::INFINITY, f64::NEG_INFINITY);
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for (x, y) in &all {
        x0 = x0.min(*x);
        x1 = x1.max(*x);
        lo = lo.min(*y);
        hi = hi.max(*y);
    }
    if let Some((t, _)) = &c.threshold {
        lo = lo.min(*t);
        hi = hi.max(*t);
    }
    let (y0, y1) = c.y_range.unwrap_or((lo.min(0.0), hi));
    let (y0, y1) = if y1 > y0 { (y0, y1) } else { (y0, y0 + 1.0) };
    let (x0, x1) = if x1 > x0 {
        (x0, x1)
    } else {
        (x0 - 0.5, x0 + 0.5)
    };
    let f = Frame { x0, x1, y0, y1 };
    let xt = ticks(x0, x1, c.x_min_step);
    let yt = ticks(y0, y1, 0.0);
    html! {
        figure.chart id=(c.id) style="margin:0" {
            svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {W} {H}")) width="100%" role="img" aria-label=(c.title) {
                (labels(c.title, c.x_label, c.y_label))
                (axes(&f, &xt, &yt, c.x_fmt, c.y_fmt))
                @if let Some((t, label)) = &c.threshold {
                    line.threshold x1=(LEFT) x2=(W - RIGHT) y1=(f.y(*t)) y2=(f.y(*t)) stroke="#e15759" stroke-dasharray="5 4" {}
                    text x=(W - RIGHT - 4.0) y=(f.y(*t) - 4.0) text-anchor="end" style="fill:#e15759" { (label) }
                }
                @for s in &c.series {
                    @let pts: Vec<String> = s.points.iter().map(|(x, y)| format!("{:.1},{:.1}", f.x(*x), f.y(*y))).collect();
                    polyline points=(pts.join(" ")) fill="none" stroke=(s.color) stroke-width="1.8" {}
                    @if s.points.len() <= 60 {
                        @for (x, y) in &s.points {
                            circle cx=(format!("{:.1}", f.x(*x))) cy=(format!("{:.1}", f.y(*y))) r="2.4" fill=(s.color) {
                                title { (s.name) ": " ((c.x_fmt)(*x)) " → " ((c.y_fmt)(*y)) }
                            }
                        }
                    }
                }
            }
            (legend(&c.series))
        }
    }
}

/// Stacked bars of counts: one bar per label, one segment per series (`points[i].1` is label
/// `i`'s value); the y ticks are whole numbers.
pub struct Bars<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub labels: Vec<String>,
    pub series: Vec<Series>,
    pub y_fmt: fn(f64) -> String,
}

/// The non-empty segments of bar `i`: each series with where its segment starts and its value.
fn stack(series: &[Series], i: usize) -> Vec<(&Series, f64, f64)> {
    let mut base = 0.0;
    let mut out = Vec::new();
    for s in series {
        let v = s.points.get(i).map_or(0.0, |p| p.1);
        if v > 0.0 {
            out.push((s, base, v));
            base += v;
        }
    }
    out
}

pub fn bars(c: &Bars<'_>) -> Markup {
    let n = c.labels.len();
    if n == 0 {
        return html! { p.mut id=(c.id) { (c.title) ": nothing to draw yet." } };
    }
    let value = |s: &Series, i: usize| s.points.get(i).map_or(0.0, |p| p.1);
    let top = (0..n)
        .map(|i| c.series.iter().map(|s| value(s, i)).sum::<f64>())
        .fold(0.0, f64::max);
    let f = Frame {
        x0: 0.0,
        x1: n as f64,
        y0: 0.0,
        y1: if top > 0.0 { top } else { 1.0 },
    };
    let yt = ticks(0.0, f.y1, 1.0);
    // At most about twelve x labels.
    let every = n.div_ceil(12).max(1);
    let slot = (W - LEFT - RIGHT) / n as f64;
    let bar_w = (slot * 0.8).max(1.0);
    html! {
        figure.chart id=(c.id) style="margin:0" {
            svg xmlns="http://www.w3.org/2000/svg" viewBox=(format!("0 0 {W} {H}")) width="100%" role="img" aria-label=(c.title) {
                (labels(c.title, c.x_label, c.y_label))
                (axes(&f, &[], &yt, |_| String::new(), c.y_fmt))
                @for (i, label) in c.labels.iter().enumerate() {
                    @for (s, base, v) in stack(&c.series, i) {
                        rect x=(format!("{:.1}", f.x(i as f64) + (slot - bar_w) / 2.0)) y=(format!("{:.1}", f.y(base + v)))
                            width=(format!("{bar_w:.1}")) height=(format!("{:.1}", f.y(base) - f.y(base + v))) fill=(s.color) {
                            title { (label) " · " (s.name) ": " ((c.y_fmt)(v)) }
                        }
                    }
                    @if i % every == 0 {
                        text x=(format!("{:.1}", f.x(i as f64 + 0.5))) y=(H - BOTTOM + 14.0) text-anchor="middle" { (label) }
                    }
                }
            }
            (legend(&c.series))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(
            ticks(0.0, 1.0, 0.0),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        let t = ticks(0.0, 37.0, 0.0);
        assert_eq!(t.first(), Some(&0.0));
        assert!(t.len() >= 4 && t.len() <= 8, "{t:?}");
        assert!(*t.last().unwrap() <= 37.0);
        assert_eq!(ticks(3.0, 3.0, 0.0), vec![3.0]);
        // Counts: whole steps only.
        assert_eq!(ticks(0.0, 3.0, 1.0), vec![0.0, 1.0, 2.0, 3.0]);
    }

    #[test]
    fn a_line_chart_draws_every_series_and_the_threshold() {
        let svg = line(&Line {
            id: "c",
            title: "agreement",
            x_label: "t",
            y_label: "v",
            series: vec![Series {
                name: "live".into(),
                color: "#000",
                points: vec![(0.0, 0.5), (1.0, 1.0)],
            }],
            y_range: Some((0.0, 1.0)),
            threshold: Some((0.9, "demote below 0.9".into())),
            x_fmt: |x| format!("{x}"),
            y_fmt: |y| format!("{y}"),
            x_min_step: 0.0,
        })
        .into_string();
        assert!(svg.contains("<polyline"), "{svg}");
        assert!(svg.contains("class=\"threshold\""), "{svg}");
        assert!(svg.contains("demote below 0.9"), "{svg}");
        let empty = line(&Line {
            series: vec![],
            threshold: None,
            ..Line {
                id: "e",
                title: "nothing",
                x_label: "",
                y_label: "",
                series: vec![],
                y_range: None,
                threshold: None,
                x_fmt: |x| format!("{x}"),
                y_fmt: |y| format!("{y}"),
                x_min_step: 0.0,
            }
        })
        .into_string();
        assert!(empty.contains("nothing to draw"), "{empty}");
    }

    #[test]
    fn stacked_bars_stack() {
        let svg = bars(&Bars {
            id: "b",
            title: "calls",
            x_label: "hour",
            y_label: "calls",
            labels: vec!["a".into(), "b".into()],
            series: vec![
                Series {
                    name: "llm".into(),
                    color: "#111",
                    points: vec![(0.0, 2.0), (1.0, 1.0)],
                },
                Series {
                    name: "spec".into(),
                    color: "#222",
                    points: vec![(0.0, 2.0), (1.0, 0.0)],
                },
            ],
            y_fmt: |y| format!("{y}"),
        })
        .into_string();
        // three non-empty segments
        assert_eq!(svg.matches("<rect").count(), 3, "{svg}");
    }
}
