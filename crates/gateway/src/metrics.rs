//! Prometheus metrics, rendered in the text exposition format. Lock-free histograms; labelled
//! counters behind one short mutex.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use downshift_store::WriterStats;

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

#[derive(Default)]
pub struct Metrics {
    /// (endpoint, HTTP status) → count.
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    /// (upstream, kind) → count, for failures talking to an upstream.
    upstream_errors: Mutex<BTreeMap<(String, &'static str), u64>>,
    pub duration: Histogram,
    pub overhead: Histogram,
    pub ttft: Histogram,
    pub interrupted: AtomicU64,
    /// (task, who answered: `specialist`, `llm`, `fallback`) → count.
    routes: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// (task, fallback reason code) → count.
    fallbacks: Mutex<BTreeMap<(String, &'static str), u64>>,
    /// task → (sum, count) of agreement measurements.
    agreement: Mutex<BTreeMap<String, (f64, u64)>>,
    /// Background comparisons skipped because too many were running.
    pub shadow_skipped: AtomicU64,
    /// Time spent classifying a request and looking up its policy.
    pub route_decision: Histogram,
}

impl Metrics {
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

    pub fn route(&self, task: &str, route: &'static str) {
        let mut m = self.routes.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((task.to_owned(), route)).or_default() += 1;
    }

    pub fn fallback(&self, task: &str, reason: &'static str) {
        let mut m = self.fallbacks.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((task.to_owned(), reason)).or_default() += 1;
    }

    pub fn agreement(&self, task: &str, value: f64) {
        let mut m = self.agreement.lock().unwrap_or_else(|p| p.into_inner());
        let e = m.entry(task.to_owned()).or_default();
        e.0 += value;
        e.1 += 1;
    }

    fn render_routes(&self, out: &mut String) {
        out.push_str("# HELP downshift_routes_total Chat completions of discovered tasks, by task and by who answered (specialist, llm, fallback: the specialist's answer was refused and the LLM answered).\n# TYPE downshift_routes_total counter\n");
        for ((task, route), n) in self.routes.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(
                out,
                "downshift_routes_total{{task=\"{task}\",route=\"{route}\"}} {n}"
            );
        }
        out.push_str("# HELP downshift_fallbacks_total Specialist answers refused, by task and reason.\n# TYPE downshift_fallbacks_total counter\n");
        for ((task, reason), n) in self
            .fallbacks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "downshift_fallbacks_total{{task=\"{task}\",reason=\"{reason}\"}} {n}"
            );
        }
        out.push_str("# HELP downshift_agreement Agreement of specialist and LLM answers measured live (shadow, canary, on-mode sample), by task: sum and count.\n# TYPE downshift_agreement summary\n");
        for (task, (sum, n)) in self
            .agreement
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "downshift_agreement_sum{{task=\"{task}\"}} {sum}\ndownshift_agreement_count{{task=\"{task}\"}} {n}"
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
                "downshift_upstream_errors_total{{upstream=\"{up}\",kind=\"{kind}\"}} {n}"
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
        self.render_routes(&mut out);
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
}
