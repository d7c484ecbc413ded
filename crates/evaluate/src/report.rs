//! Aggregating scores over a data set.

use crate::score::Score;
use serde::{Deserialize, Serialize};

/// Scores (and latencies) accumulated over many examples; [`Report::summary`] turns them into the
/// numbers a table or `--json` prints. Serialisable, so partial reports can be stored and
/// [merged](Report::merge).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    examples: usize,
    exact: usize,
    schema_valid: Mean,
    field_accuracy: Mean,
    rouge_l: Mean,
    chrf: Mean,
    latencies_ms: Vec<f64>,
}

/// A sum and a count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
struct Mean {
    sum: f64,
    count: usize,
}

impl Mean {
    fn add(&mut self, value: Option<f64>) {
        if let Some(value) = value {
            self.sum += value;
            self.count += 1;
        }
    }

    fn merge(&mut self, other: Mean) {
        self.sum += other.sum;
        self.count += other.count;
    }

    fn value(self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// What a [`Report`] adds up to. Fractions and means are `None` when nothing contributed to them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Examples scored.
    pub examples: usize,
    /// Fraction of examples whose `exact` is true.
    pub exact_match: Option<f64>,
    /// Fraction valid among the examples where `schema_valid` was defined...
    pub schema_valid: Option<f64>,
    /// ...and how many those were.
    pub schema_checked: usize,
    /// Mean of the defined `field_accuracy` values.
    pub field_accuracy: Option<f64>,
    /// Mean of the defined `rouge_l` values.
    pub rouge_l: Option<f64>,
    /// Mean of the defined `chrf` values (0–1).
    pub chrf: Option<f64>,
    /// Latency samples recorded.
    pub latency_samples: usize,
    /// Median latency, nearest-rank: the smallest sample with at least 50% of samples at or
    /// below it (for n samples sorted ascending, the ⌈0.50·n⌉-th).
    pub latency_p50_ms: Option<f64>,
    /// 95th percentile latency, nearest-rank: the ⌈0.95·n⌉-th smallest sample.
    pub latency_p95_ms: Option<f64>,
}

impl Report {
    /// An empty report.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one example's score and, when known, the latency of producing the prediction.
    /// A latency that is not a finite number ≥ 0 is not recorded.
    pub fn add(&mut self, score: &Score, latency_ms: Option<f64>) {
        self.examples += 1;
        self.exact += usize::from(score.exact);
        self.schema_valid
            .add(score.schema_valid.map(|v| if v { 1.0 } else { 0.0 }));
        self.field_accuracy.add(score.field_accuracy);
        self.rouge_l.add(score.rouge_l);
        self.chrf.add(score.chrf);
        if let Some(ms) = latency_ms.filter(|ms| ms.is_finite() && *ms >= 0.0) {
            self.latencies_ms.push(ms);
        }
    }

    /// Adds everything another report holds (e.g. one per worker).
    pub fn merge(&mut self, other: &Report) {
        self.examples += other.examples;
        self.exact += other.exact;
        self.schema_valid.merge(other.schema_valid);
        self.field_accuracy.merge(other.field_accuracy);
        self.rouge_l.merge(other.rouge_l);
        self.chrf.merge(other.chrf);
        self.latencies_ms.extend_from_slice(&other.latencies_ms);
    }

    /// Examples added so far.
    pub fn len(&self) -> usize {
        self.examples
    }

    /// Whether no example was added.
    pub fn is_empty(&self) -> bool {
        self.examples == 0
    }

    /// The aggregates over the examples added so far.
    pub fn summary(&self) -> Summary {
        let mut latencies = self.latencies_ms.clone();
        latencies.sort_by(f64::total_cmp);
        Summary {
            examples: self.examples,
            exact_match: (self.examples > 0).then(|| self.exact as f64 / self.examples as f64),
            schema_valid: self.schema_valid.value(),
            schema_checked: self.schema_valid.count,
            field_accuracy: self.field_accuracy.value(),
            rouge_l: self.rouge_l.value(),
            chrf: self.chrf.value(),
            latency_samples: latencies.len(),
            latency_p50_ms: nearest_rank(&latencies, 50),
            latency_p95_ms: nearest_rank(&latencies, 95),
        }
    }
}

/// The nearest-rank `percent`-th percentile of ascending `sorted` samples: the ⌈percent·n/100⌉-th
/// smallest (at least the first). Integer arithmetic, so 95% of 20 is exactly rank 19.
fn nearest_rank(sorted: &[f64], percent: usize) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (percent * sorted.len())
        .div_ceil(100)
        .clamp(1, sorted.len());
    sorted.get(rank - 1).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(nearest_rank(&samples, 50), Some(10.0));
        assert_eq!(nearest_rank(&samples, 95), Some(19.0));
        assert_eq!(nearest_rank(&samples, 100), Some(20.0));
        assert_eq!(nearest_rank(&samples, 0), Some(1.0));
        assert_eq!(nearest_rank(&[7.0], 95), Some(7.0));
        // n = 4: p50 is rank 2, p95 rank ⌈3.8⌉ = 4.
        assert_eq!(nearest_rank(&[1.0, 2.0, 3.0, 4.0], 50), Some(2.0));
        assert_eq!(nearest_rank(&[1.0, 2.0, 3.0, 4.0], 95), Some(4.0));
        assert_eq!(nearest_rank(&[], 50), None);
    }

    #[test]
    fn summary_averages_what_is_defined() {
        let mut report = Report::new();
        report.add(
            &Score {
                exact: true,
                schema_valid: Some(true),
                ..Score::default()
            },
            Some(30.0),
        );
        report.add(
            &Score {
                exact: false,
                schema_valid: Some(false),
                ..Score::default()
            },
            Some(10.0),
        );
        report.add(
            &Score {
                exact: false,
                rouge_l: Some(0.5),
                chrf: Some(0.25),
                ..Score::default()
            },
            Some(f64::NAN),
        );
        report.add(
            &Score {
                exact: true,
                field_accuracy: Some(0.75),
                rouge_l: Some(1.0),
                ..Score::default()
            },
            None,
        );
        let s = report.summary();
        assert_eq!(
            s,
            Summary {
                examples: 4,
                exact_match: Some(0.5),
                schema_valid: Some(0.5),
                schema_checked: 2,
                field_accuracy: Some(0.75),
                rouge_l: Some(0.75),
                chrf: Some(0.25),
                latency_samples: 2,
                latency_p50_ms: Some(10.0),
                latency_p95_ms: Some(30.0),
            }
        );
    }

    #[test]
    fn empty_and_merged_reports() {
        let empty = Report::new().summary();
        assert_eq!(empty.examples, 0);
        assert_eq!(empty.exact_match, None);
        assert_eq!(empty.latency_p50_ms, None);

        let mut a = Report::new();
        a.add(
            &Score {
                exact: true,
                ..Score::default()
            },
            Some(1.0),
        );
        let mut b = Report::new();
        b.add(&Score::default(), Some(3.0));
        b.add(&Score::default(), Some(2.0));
        a.merge(&b);
        let s = a.summary();
        assert_eq!(
            (s.examples, s.exact_match, s.latency_p50_ms),
            (3, Some(1.0 / 3.0), Some(2.0))
        );
    }

    #[test]
    fn serialises_round_trip() {
        let mut report = Report::new();
        report.add(
            &Score {
                exact: true,
                chrf: Some(0.5),
                ..Score::default()
            },
            Some(12.5),
        );
        let text = serde_json::to_string(&report).unwrap();
        let back: Report = serde_json::from_str(&text).unwrap();
        assert_eq!(back, report);
        let summary = serde_json::to_value(report.summary()).unwrap();
        assert_eq!(summary["exact_match"], 1.0);
        assert_eq!(summary["latency_p95_ms"], 12.5);
        assert_eq!(summary["rouge_l"], serde_json::Value::Null);
    }
}
