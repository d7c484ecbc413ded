//! Prometheus metrics, rendered in the text exposition format. Lock-free histograms; labelled
//! counters behind short mutexes. Labels that take values from traffic (model, upstream, task)
//! are bounded: each takes at most `telemetry.max_label_values` values and the per-call series
//! number at most `telemetry.max_series`; anything beyond is counted under `other`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use downshift_store::{CallStatus, WriterStats};

/// Bucket upper bounds, in seconds.
const BUCKETS: [f64; 24] = [
    0.00001, 0.000025, 0.00005, 0.000075, 0.0001, 0.00015, 0.0002, 0.00025, 0.0005, 0.001, 0.0025,
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

#[derive(Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(
            d.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }

    fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Upper bounds, in seconds, of the per-call latency histogram (by model, upstream, task and
/// route): coarser than [`BUCKETS`], since there is one histogram per label combination.
const CALL_BUCKETS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// The label value that counts every value beyond the cap.
pub const OTHER: &str = "other";

/// Every outcome of a call, in the order of [`CallSeries::outcomes`].
const OUTCOMES: [CallStatus; 5] = [
    CallStatus::Ok,
    CallStatus::UpstreamError,
    CallStatus::Unreachable,
    CallStatus::Timeout,
    CallStatus::Interrupted,
];

/// The labels of one finished call.
pub struct CallLabels<'a> {
    pub model: &'a str,
    pub upstream: &'a str,
    pub task: &'a str,
    /// `llm`, `specialist`, `fallback` or `local`.
    pub route: &'static str,
}

/// What one finished call adds to its series.
pub struct CallSample {
    pub status: CallStatus,
    pub usage: Option<downshift_api::Usage>,
    pub cost_usd: f64,
    pub duration: Duration,
}

/// The distinct values one label has taken, each with a small id; id 0 is [`OTHER`], which
/// every value beyond the cap gets.
struct LabelValues {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl LabelValues {
    fn new() -> LabelValues {
        LabelValues {
            ids: HashMap::from([(OTHER.to_owned(), 0)]),
            names: vec![OTHER.to_owned()],
        }
    }

    /// The id of `value`, admitting it while fewer than `cap` values are known.
    fn id(&mut self, value: &str, cap: usize) -> u32 {
        if let Some(&id) = self.ids.get(value) {
            return id;
        }
        if self.names.len() > cap {
            return 0;
        }
        let id = self.names.len() as u32;
        self.ids.insert(value.to_owned(), id);
        self.names.push(value.to_owned());
        id
    }

    fn name(&self, id: u32) -> &str {
        self.names.get(id as usize).map_or(OTHER, String::as_str)
    }
}

/// Counters of one (model, upstream, task, route) combination.
#[derive(Default)]
struct CallSeries {
    outcomes: [u64; OUTCOMES.len()],
    input_tokens: u64,
    output_tokens: u64,
    cost_usd: f64,
    buckets: [u64; CALL_BUCKETS.len()],
    duration_sum: f64,
}

/// (model, upstream, task, route) as label ids.
type SeriesKey = (u32, u32, u32, &'static str);

/// (model, upstream, task, route) as label values.
type SeriesNames<'a> = (&'a str, &'a str, &'a str, &'a str);

/// A counter family of the per-call series: name, help, and its value in a series.
type Family = (&'static str, &'static str, fn(&CallSeries) -> f64);

/// Agreement measurements of one task.
#[derive(Default)]
struct Agreement {
    sum: f64,
    count: u64,
    /// The newest measurements, at most `window`, newest last.
    recent: VecDeque<f64>,
    window: usize,
    threshold: f64,
}

/// Everything labelled by model, upstream or task, behind one short mutex, with the label
/// values capped.
struct Labelled {
    max_values: usize,
    max_series: usize,
    models: LabelValues,
    upstreams: LabelValues,
    tasks: LabelValues,
    calls: HashMap<SeriesKey, CallSeries>,
    /// (task, who answered: `specialist`, `llm`, `fallback`) → count.
    routes: HashMap<(u32, &'static str), u64>,
    /// (task, fallback reason code) → count.
    fallbacks: HashMap<(u32, &'static str), u64>,
    agreement: HashMap<u32, Agreement>,
}

impl Labelled {
    fn task(&mut self, task: &str) -> u32 {
        self.tasks.id(task, self.max_values)
    }
}

pub struct Metrics {
    /// (endpoint, HTTP status) → count.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// (upstream, kind) → count, for failures talking to an upstream.
    upstream_errors: Mutex<BTreeMap<(String, &'static str), u64>>,
    pub duration: Histogram,
    pub overhead: Histogram,
    pub ttft: Histogram,
    pub interrupted: AtomicU64,
    labelled: Mutex<Labelled>,
    /// Background comparisons skipped because too many were running.
    pub shadow_skipped: AtomicU64,
    /// Time spent classifying a request and looking up its policy.
    pub route_decision: Histogram,
}

impl Default for Metrics {
    fn default() -> Metrics {
        let t = crate::telemetry::TelemetryConfig::default();
        Metrics::new(t.max_label_values, t.max_series)
    }
}

/// `value` escaped for a label value of the text format.
fn escape(value: &str) -> Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return Cow::Borrowed(value);
    }
    Cow::Owned(
        value
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n"),
    )
}

impl Metrics {
    /// Metrics whose model, upstream and task labels take at most `max_label_values` values
    /// each, and whose per-call series number at most `max_series` (beyond: `other`).
    pub fn new(max_label_values: usize, max_series: usize) -> Metrics {
        Metrics {
            requests: Mutex::default(),
            upstream_errors: Mutex::default(),
            duration: Histogram::default(),
            overhead: Histogram::default(),
            ttft: Histogram::default(),
            interrupted: AtomicU64::new(0),
            labelled: Mutex::new(Labelled {
                max_values: max_label_values.max(1),
                max_series: max_series.max(1),
                models: LabelValues::new(),
                upstreams: LabelValues::new(),
                tasks: LabelValues::new(),
                calls: HashMap::new(),
                routes: HashMap::new(),
                fallbacks: HashMap::new(),
                agreement: HashMap::new(),
            }),
            shadow_skipped: AtomicU64::new(0),
            route_decision: Histogram::default(),
        }
    }

    fn labelled(&self) -> std::sync::MutexGuard<'_, Labelled> {
        self.labelled.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn request(&self, endpoint: &'static str, status: u16) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((endpoint, status)).or_default() += 1;
    }

    pub fn upstream_error(&self, upstream: &str, kind: &'static str) {
        let mut m = self
            .upstream_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        *m.entry((upstream.to_owned(), kind)).or_default() += 1;
    }

    /// Counts one finished call in its (model, upstream, task, route) series.
    pub fn call(&self, l: CallLabels<'_>, s: CallSample) {
        let mut m = self.labelled();
        let cap = m.max_values;
        let mut key = (
            m.models.id(l.model, cap),
            m.upstreams.id(l.upstream, cap),
            m.task(l.task),
            l.route,
        );
        if !m.calls.contains_key(&key) && m.calls.len() >= m.max_series {
            key = (0, 0, 0, l.route);
        }
        let series = m.calls.entry(key).or_default();
        if let Some(i) = OUTCOMES.iter().position(|o| *o == s.status) {
            series.outcomes[i] += 1;
        }
        if let Some(u) = s.usage {
            series.input_tokens += u.prompt_tokens;
            series.output_tokens += u.completion_tokens;
        }
        series.cost_usd += s.cost_usd;
        let secs = s.duration.as_secs_f64();
        if let Some(i) = CALL_BUCKETS.iter().position(|b| secs <= *b) {
            series.buckets[i] += 1;
        }
        series.duration_sum += secs;
    }

    pub fn route(&self, task: &str, route: &'static str) {
        let mut m = self.labelled();
        let task = m.task(task);
        *m.routes.entry((task, route)).or_default() += 1;
    }

    pub fn fallback(&self, task: &str, reason: &'static str) {
        let mut m = self.labelled();
        let task = m.task(task);
        *m.fallbacks.entry((task, reason)).or_default() += 1;
    }

    /// One agreement measurement of `task`, whose policy judges the mean of its newest
    /// `window` measurements against `threshold`.
    pub fn agreement(&self, task: &str, value: f64, window: usize, threshold: f64) {
        let mut m = self.labelled();
        let task = m.task(task);
        let a = m.agreement.entry(task).or_default();
        a.sum += value;
        a.count += 1;
        a.window = window.max(1);
        a.threshold = threshold;
        a.recent.push_back(value);
        while a.recent.len() > a.window {
            a.recent.pop_front();
        }
    }

    fn render_calls(&self, m: &Labelled, out: &mut String) {
        let mut rows: Vec<(SeriesNames, &CallSeries)> = m
            .calls
            .iter()
            .map(|(&(model, up, task, route), s)| {
                let labels = (
                    m.models.name(model),
                    m.upstreams.name(up),
                    m.tasks.name(task),
                    route,
                );
                (labels, s)
            })
            .collect();
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let labels = |(model, up, task, route): SeriesNames| {
            format!(
                "model=\"{}\",upstream=\"{}\",task=\"{}\",route=\"{route}\"",
                escape(model),
                escape(up),
                escape(task)
            )
        };
        let rows: Vec<(String, &CallSeries)> =
            rows.into_iter().map(|(k, s)| (labels(k), s)).collect();
        out.push_str("# HELP downshift_calls_total Calls finished, by model asked for, upstream, task, route (llm, specialist, fallback, local) and outcome.\n# TYPE downshift_calls_total counter\n");
        for (l, s) in &rows {
            for (o, n) in OUTCOMES.iter().zip(s.outcomes) {
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "downshift_calls_total{{{l},outcome=\"{}\"}} {n}",
                        o.as_str()
                    );
                }
            }
        }
        let families: [Family; 3] = [
            (
                "downshift_input_tokens_total",
                "Prompt tokens of answered calls (the usage the upstream or specialist reported).",
                |s| s.input_tokens as f64,
            ),
            (
                "downshift_output_tokens_total",
                "Completion tokens of answered calls.",
                |s| s.output_tokens as f64,
            ),
            (
                "downshift_cost_usd_total",
                "Estimated cost in USD of the calls an upstream LLM answered, from the price table (specialists and local models cost 0).",
                |s| s.cost_usd,
            ),
        ];
        for (name, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (l, s) in &rows {
                let _ = writeln!(out, "{name}{{{l}}} {}", value(s));
            }
        }
        let name = "downshift_call_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time from request received to response complete, by model, upstream, task and route.\n# TYPE {name} histogram"
        );
        for (l, s) in &rows {
            let mut cumulative = 0;
            for (b, n) in CALL_BUCKETS.iter().zip(s.buckets) {
                cumulative += n;
                let _ = writeln!(out, "{name}_bucket{{{l},le=\"{b}\"}} {cumulative}");
            }
            let count: u64 = s.outcomes.iter().sum();
            let _ = writeln!(
                out,
                "{name}_bucket{{{l},le=\"+Inf\"}} {count}\n{name}_sum{{{l}}} {}\n{name}_count{{{l}}} {count}",
                s.duration_sum
            );
        }
    }

    fn render_routes(&self, m: &Labelled, out: &mut String) {
        let task = |id: u32| escape(m.tasks.name(id)).into_owned();
        out.push_str("# HELP downshift_routes_total Chat completions of discovered tasks, by task and by who answered (specialist, llm, fallback: the specialist's answer was refused and the LLM answered).\n# TYPE downshift_routes_total counter\n");
        let mut routes: Vec<_> = m
            .routes
            .iter()
            .map(|(&(t, r), n)| (task(t), r, *n))
            .collect();
        routes.sort();
        for (task, route, n) in routes {
            let _ = writeln!(
                out,
                "downshift_routes_total{{task=\"{task}\",route=\"{route}\"}} {n}"
            );
        }
        out.push_str("# HELP downshift_fallbacks_total Specialist answers refused, by task and reason.\n# TYPE downshift_fallbacks_total counter\n");
        let mut fallbacks: Vec<_> = m
            .fallbacks
            .iter()
            .map(|(&(t, r), n)| (task(t), r, *n))
            .collect();
        fallbacks.sort();
        for (task, reason, n) in fallbacks {
            let _ = writeln!(
                out,
                "downshift_fallbacks_total{{task=\"{task}\",reason=\"{reason}\"}} {n}"
            );
        }
        let mut agreement: Vec<_> = m.agreement.iter().map(|(&t, a)| (task(t), a)).collect();
        agreement.sort_by(|a, b| a.0.cmp(&b.0));
        out.push_str("# HELP downshift_agreement Agreement of specialist and LLM answers measured live (shadow, canary, on-mode sample), by task: sum and count.\n# TYPE downshift_agreement summary\n");
        for (task, a) in &agreement {
            let _ = writeln!(
                out,
                "downshift_agreement_sum{{task=\"{task}\"}} {}\ndownshift_agreement_count{{task=\"{task}\"}} {}",
                a.sum, a.count
            );
        }
        out.push_str("# HELP downshift_agreement_rolling Mean agreement of the task's newest measurements, at most its policy's window (the figure demotion is judged on).\n# TYPE downshift_agreement_rolling gauge\n");
        for (task, a) in &agreement {
            let mean = a.recent.iter().sum::<f64>() / a.recent.len().max(1) as f64;
            let _ = writeln!(out, "downshift_agreement_rolling{{task=\"{task}\"}} {mean}");
        }
        out.push_str("# HELP downshift_agreement_threshold The agreement below which the task's policy demotes its specialist.\n# TYPE downshift_agreement_threshold gauge\n");
        for (task, a) in &agreement {
            let _ = writeln!(
                out,
                "downshift_agreement_threshold{{task=\"{task}\"}} {}",
                a.threshold
            );
        }
        let _ = writeln!(
            out,
            "# HELP downshift_shadow_skipped_total Background comparisons skipped because route.max_shadow_in_flight were running.\n# TYPE downshift_shadow_skipped_total counter\ndownshift_shadow_skipped_total {}",
            self.shadow_skipped.load(Ordering::Relaxed)
        );
        self.route_decision.render(
            "downshift_route_decision_seconds",
            "Time to classify a request and look up its task's policy.",
            out,
        );
    }

    pub fn render(&self, writer: &WriterStats) -> String {
        let mut out = String::with_capacity(4096);
        out.push_str("# HELP downshift_requests_total Requests answered, by endpoint and HTTP status.\n# TYPE downshift_requests_total counter\n");
        for ((endpoint, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "downshift_requests_total{{endpoint=\"{endpoint}\",status=\"{status}\"}} {n}"
            );
        }
        out.push_str("# HELP downshift_upstream_errors_total Upstream failures, by upstream and kind.\n# TYPE downshift_upstream_errors_total counter\n");
        for ((up, kind), n) in self
            .upstream_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "downshift_upstream_errors_total{{upstream=\"{}\",kind=\"{kind}\"}} {n}",
                escape(up)
            );
        }
        let _ = writeln!(
            out,
            "# HELP downshift_interrupted_total Calls whose response did not complete (client gone or stream broken).\n# TYPE downshift_interrupted_total counter\ndownshift_interrupted_total {}",
            self.interrupted.load(Ordering::Relaxed)
        );
        self.duration.render(
            "downshift_request_duration_seconds",
            "Time from request received to response complete.",
            &mut out,
        );
        self.overhead.render(
            "downshift_gateway_overhead_seconds",
            "Latency the gateway itself added to a call.",
            &mut out,
        );
        self.ttft.render(
            "downshift_time_to_first_token_seconds",
            "Time from upstream request sent to the first streamed content or tool-call delta.",
            &mut out,
        );
        {
            let m = self.labelled();
            self.render_calls(&m, &mut out);
            self.render_routes(&m, &mut out);
        }
        crate::telemetry::render_stats(&mut out);
        let gauges = [
            (
                "downshift_log_queue_depth",
                "gauge",
                "Call records waiting to be written.",
                &writer.depth,
            ),
            (
                "downshift_log_records_written_total",
                "counter",
                "Call records committed to the store.",
                &writer.written,
            ),
            (
                "downshift_log_records_spilled_total",
                "counter",
                "Call records spilled to disk because the queue was full or the store failed.",
                &writer.spilled,
            ),
            (
                "downshift_log_records_lost_total",
                "counter",
                "Call records that could be neither stored nor spilled.",
                &writer.lost,
            ),
            (
                "downshift_log_write_errors_total",
                "counter",
                "Failed call-log transactions.",
                &writer.write_errors,
            ),
            (
                "downshift_log_journal_errors_total",
                "counter",
                "Call records that could not be appended to the journal.",
                &writer.journal_errors,
            ),
            (
                "downshift_log_journal_replays_total",
                "counter",
                "Journal segments replayed into the store because some records were not queued or not committed.",
                &writer.journal_replays,
            ),
            (
                "downshift_log_journal_writes_total",
                "counter",
                "Writes to the journal (each appends the records of all the calls answered since the last one).",
                &writer.journal_writes,
            ),
            (
                "downshift_log_journal_records_total",
                "counter",
                "Call records appended to the journal.",
                &writer.journal_records,
            ),
        ];
        for (name, kind, help, v) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                v.load(Ordering::Relaxed)
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_buckets() {
        let m = Metrics::default();
        m.request("chat/completions", 200);
        m.request("chat/completions", 200);
        m.upstream_error("default", "timeout");
        m.overhead.observe(Duration::from_micros(80));
        m.overhead.observe(Duration::from_millis(3));
        let text = m.render(&WriterStats::default());
        assert!(
            text.contains(
                "downshift_requests_total{endpoint=\"chat/completions\",status=\"200\"} 2"
            )
        );
        assert!(
            text.contains(
                "downshift_upstream_errors_total{upstream=\"default\",kind=\"timeout\"} 1"
            )
        );
        assert!(text.contains("downshift_gateway_overhead_seconds_bucket{le=\"0.0001\"} 1"));
        assert!(text.contains("downshift_gateway_overhead_seconds_bucket{le=\"0.005\"} 2"));
        assert!(text.contains("downshift_gateway_overhead_seconds_count 2"));
        assert!(text.contains("downshift_log_records_spilled_total 0"));
    }

    fn call(m: &Metrics, model: &str, task: &str, route: &'static str, status: CallStatus) {
        m.call(
            CallLabels {
                model,
                upstream: "up",
                task,
                route,
            },
            CallSample {
                status,
                usage: Some(downshift_api::Usage {
                    prompt_tokens: 10,
                    completion_tokens: 5,
                }),
                cost_usd: 0.25,
                duration: Duration::from_millis(300),
            },
        );
    }

    fn lines_of<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
        text.lines().filter(|l| l.starts_with(prefix)).collect()
    }

    #[test]
    fn per_call_series_count_outcomes_tokens_cost_and_latency() {
        let m = Metrics::default();
        call(&m, "gpt-4o", "none", "llm", CallStatus::Ok);
        call(&m, "gpt-4o", "none", "llm", CallStatus::Ok);
        call(&m, "gpt-4o", "none", "llm", CallStatus::Timeout);
        let text = m.render(&WriterStats::default());
        let l = r#"model="gpt-4o",upstream="up",task="none",route="llm""#;
        assert!(text.contains(&format!("downshift_calls_total{{{l},outcome=\"ok\"}} 2\n")));
        assert!(text.contains(&format!(
            "downshift_calls_total{{{l},outcome=\"timeout\"}} 1\n"
        )));
        assert!(text.contains(&format!("downshift_input_tokens_total{{{l}}} 30\n")));
        assert!(text.contains(&format!("downshift_output_tokens_total{{{l}}} 15\n")));
        assert!(text.contains(&format!("downshift_cost_usd_total{{{l}}} 0.75\n")));
        assert!(text.contains(&format!(
            "downshift_call_duration_seconds_bucket{{{l},le=\"0.25\"}} 0\n"
        )));
        assert!(text.contains(&format!(
            "downshift_call_duration_seconds_bucket{{{l},le=\"0.5\"}} 3\n"
        )));
        assert!(text.contains(&format!("downshift_call_duration_seconds_count{{{l}}} 3\n")));
    }

    #[test]
    fn label_values_beyond_the_cap_are_counted_as_other() {
        let m = Metrics::new(2, 100);
        for model in ["a", "b", "c", "d", "a"] {
            call(&m, model, "none", "llm", CallStatus::Ok);
        }
        for task in ["t1", "t2", "t3"] {
            m.route(task, "specialist");
        }
        m.fallback("t9", "invalid_json");
        let text = m.render(&WriterStats::default());
        let calls = lines_of(&text, "downshift_calls_total{");
        assert_eq!(calls.len(), 3, "{calls:?}");
        assert!(text.contains(r#"downshift_calls_total{model="a",upstream="up",task="none",route="llm",outcome="ok"} 2"#));
        assert!(text.contains(r#"downshift_calls_total{model="other",upstream="up",task="none",route="llm",outcome="ok"} 2"#));
        // `none` took one of the two task values: t1 is the second, t2 and t3 are other.
        let routes = lines_of(&text, "downshift_routes_total{");
        assert_eq!(
            routes,
            [
                r#"downshift_routes_total{task="other",route="specialist"} 2"#,
                r#"downshift_routes_total{task="t1",route="specialist"} 1"#,
            ]
        );
        assert!(
            text.contains(r#"downshift_fallbacks_total{task="other",reason="invalid_json"} 1"#)
        );
    }

    #[test]
    fn label_combinations_beyond_the_cap_are_counted_under_other() {
        let m = Metrics::new(100, 2);
        call(&m, "a", "t1", "llm", CallStatus::Ok);
        call(&m, "b", "t1", "llm", CallStatus::Ok);
        call(&m, "c", "t2", "specialist", CallStatus::Ok);
        call(&m, "a", "t1", "llm", CallStatus::Ok);
        let text = m.render(&WriterStats::default());
        let calls = lines_of(&text, "downshift_calls_total{");
        assert_eq!(
            calls,
            [
                r#"downshift_calls_total{model="a",upstream="up",task="t1",route="llm",outcome="ok"} 2"#,
                r#"downshift_calls_total{model="b",upstream="up",task="t1",route="llm",outcome="ok"} 1"#,
                r#"downshift_calls_total{model="other",upstream="other",task="other",route="specialist",outcome="ok"} 1"#,
            ]
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::default();
        call(&m, "we\"ird\\model\n", "none", "llm", CallStatus::Ok);
        m.upstream_error("up\"stream", "timeout");
        let text = m.render(&WriterStats::default());
        assert!(text.contains(r#"downshift_calls_total{model="we\"ird\\model\n",upstream="up","#));
        assert!(text.contains(
            r#"downshift_upstream_errors_total{upstream="up\"stream",kind="timeout"} 1"#
        ));
        // Every sample is one line: no raw newline inside a label value.
        for line in text.lines() {
            assert!(
                line.starts_with('#') || line.starts_with("downshift_"),
                "{line:?}"
            );
        }
    }

    #[test]
    fn agreement_is_a_rolling_gauge_over_the_policy_window_beside_its_threshold() {
        let m = Metrics::default();
        for v in [1.0, 0.0, 0.5] {
            m.agreement("t1", v, 2, 0.9);
        }
        let text = m.render(&WriterStats::default());
        assert!(text.contains("downshift_agreement_sum{task=\"t1\"} 1.5\n"));
        assert!(text.contains("downshift_agreement_count{task=\"t1\"} 3\n"));
        assert!(text.contains("downshift_agreement_rolling{task=\"t1\"} 0.25\n"));
        assert!(text.contains("downshift_agreement_threshold{task=\"t1\"} 0.9\n"));
    }

    /// What the per-call series cost a call: `cargo test --release -p downshift-gateway
    /// per_call_cost -- --ignored --nocapture` (one thread, then two threads sharing the mutex).
    #[test]
    #[ignore]
    fn per_call_cost() {
        let m = std::sync::Arc::new(Metrics::default());
        let models = ["gpt-4o", "gpt-4o-mini", "claude-sonnet-4", "o1"];
        let run = |m: &Metrics, n: usize| {
            for i in 0..n {
                call(m, models[i % 4], "t_4f2a9c", "llm", CallStatus::Ok);
            }
        };
        let n = 2_000_000;
        run(&m, 1000);
        let t = std::time::Instant::now();
        run(&m, n);
        let one = t.elapsed().as_nanos() as f64 / n as f64;
        let t = std::time::Instant::now();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| run(&m, n / 2));
            }
        });
        let two = t.elapsed().as_nanos() as f64 / n as f64;
        println!(
            "per call: {one:.0} ns on one thread; {two:.0} ns of wall time per call with two threads"
        );
    }
}
