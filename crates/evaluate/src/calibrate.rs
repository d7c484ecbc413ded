//! Choosing a specialist's confidence threshold: the router answers with the specialist only
//! when its answer's mean token log-probability reaches the threshold, and falls back to the
//! LLM below it. The threshold is picked on held-out examples so that the answers it lets
//! through are right often enough.

use serde::{Deserialize, Serialize};

/// The threshold chosen on a set of (confidence, correct) examples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    /// Answers with a mean log-probability at or above this are served.
    pub min_confidence: f64,
    /// The share of the examples at or above the threshold.
    pub coverage: f64,
    /// The share of those that were right.
    pub precision: f64,
    /// Examples it was chosen on.
    pub examples: usize,
}

/// The lowest threshold (the largest share served) whose served examples are right at least
/// `target_precision` of the time, counting at least `min_served` examples; `None` when no
/// threshold qualifies. Ties in confidence are served or refused together. NaN confidences
/// never qualify.
pub fn calibrate(
    points: &[(f64, bool)],
    target_precision: f64,
    min_served: usize,
) -> Option<Calibration> {
    let mut pts: Vec<(f64, bool)> = points.iter().copied().filter(|p| !p.0.is_nan()).collect();
    pts.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut best = None;
    let mut right = 0usize;
    for (i, &(conf, ok)) in pts.iter().enumerate() {
        right += usize::from(ok);
        let served = i + 1;
        // Only cut between different confidences.
        if pts.get(i + 1).is_some_and(|next| next.0 == conf) {
            continue;
        }
        let precision = right as f64 / served as f64;
        if served >= min_served && precision >= target_precision {
            best = Some(Calibration {
                min_confidence: conf,
                coverage: served as f64 / points.len().max(1) as f64,
                precision,
                examples: points.len(),
            });
        }
    }
    best
}

/// One threshold of a calibration curve: serving the answers at or above `min_confidence`
/// serves `coverage` of the examples, `precision` of them right.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    /// The threshold: answers at least this confident are served.
    pub min_confidence: f64,
    /// Share of the answers served at this threshold.
    pub coverage: f64,
    /// Share of the served answers that match the LLM's exactly.
    pub precision: f64,
}

/// Precision against the share served at every threshold, most confident first: one point per
/// distinct confidence (ties are served together, as [`calibrate`] cuts). NaN confidences are
/// never served but count in the share.
pub fn calibration_curve(points: &[(f64, bool)]) -> Vec<CurvePoint> {
    let mut pts: Vec<(f64, bool)> = points.iter().copied().filter(|p| !p.0.is_nan()).collect();
    pts.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut curve = Vec::new();
    let mut right = 0usize;
    for (i, &(conf, ok)) in pts.iter().enumerate() {
        right += usize::from(ok);
        if pts.get(i + 1).is_some_and(|next| next.0 == conf) {
            continue;
        }
        curve.push(CurvePoint {
            min_confidence: conf,
            coverage: (i + 1) as f64 / points.len() as f64,
            precision: right as f64 / (i + 1) as f64,
        });
    }
    curve
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curve_has_a_point_per_distinct_confidence() {
        let pts = [
            (-0.1, true),
            (-0.5, false),
            (-0.1, false),
            (f64::NAN, true),
            (-0.2, true),
        ];
        let c = calibration_curve(&pts);
        assert_eq!(c.len(), 3);
        // -0.1 twice (one right), then -0.2, then -0.5; the NaN counts in the share only.
        assert_eq!(
            (c[0].min_confidence, c[0].coverage, c[0].precision),
            (-0.1, 0.4, 0.5)
        );
        assert_eq!((c[1].coverage, c[1].precision), (0.6, 2.0 / 3.0));
        assert_eq!(
            (c[2].min_confidence, c[2].coverage, c[2].precision),
            (-0.5, 0.8, 0.5)
        );
        // The threshold calibrate picks is a point of the curve.
        let pick = calibrate(&pts, 0.6, 1).unwrap();
        assert!(c.iter().any(|p| p.min_confidence == pick.min_confidence
            && p.coverage == pick.coverage
            && p.precision == pick.precision));
        assert!(calibration_curve(&[]).is_empty());
    }

    #[test]
    fn picks_the_lowest_threshold_that_keeps_precision() {
        // Confident answers are right, unsure ones mostly wrong.
        let pts = [
            (-0.01, true),
            (-0.02, true),
            (-0.05, true),
            (-0.08, true),
            (-0.10, false),
            (-0.30, true),
            (-0.50, false),
            (-0.90, false),
        ];
        let c = calibrate(&pts, 0.8, 2).unwrap();
        // Serving down to -0.30 gives 5 of 6 right (0.83); one further gives 5 of 7.
        assert_eq!(c.min_confidence, -0.30);
        assert!((c.coverage - 6.0 / 8.0).abs() < 1e-12);
        assert!((c.precision - 5.0 / 6.0).abs() < 1e-12);
        let strict = calibrate(&pts, 1.0, 2).unwrap();
        assert_eq!(strict.min_confidence, -0.08);
        assert!((strict.coverage - 0.5).abs() < 1e-12);
        // Nothing qualifies: too few served, or never precise enough.
        assert!(calibrate(&pts, 1.0, 5).is_none());
        assert!(calibrate(&[(-0.1, false), (-0.2, false)], 0.5, 1).is_none());
        assert!(calibrate(&[], 0.5, 1).is_none());
    }

    #[test]
    fn ties_are_cut_together_and_nan_is_never_served() {
        let pts = [(-0.1, true), (-0.2, true), (-0.2, false), (f64::NAN, true)];
        // Cutting inside the tie at -0.2 would claim 2/2; the tie must be taken whole (2/3).
        let c = calibrate(&pts, 0.9, 1).unwrap();
        assert_eq!(c.min_confidence, -0.1);
        assert_eq!(c.examples, 4);
        let c = calibrate(&pts, 0.6, 1).unwrap();
        assert_eq!(c.min_confidence, -0.2);
        assert!((c.coverage - 0.75).abs() < 1e-12);
    }
}
