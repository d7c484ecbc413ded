//! `downshift loop`: the conversion kept running (S3–S6). Each cycle re-discovers the tasks in
//! the call log, gives each suitable task without a specialist one (select → train → eval →
//! `shadow` when it passes the gate), promotes a shadowed specialist to `on` once its live
//! agreement passes, and retrains a task whose specialist's agreement has drifted below the
//! threshold. It says what it did and why. Gates and thresholds come from `[loop]` and each
//! task's policy.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use downshift_api::TaskKind;
use downshift_route::{Mode, Tracker, rolling_mean};
use downshift_store::DataDir;
use serde::{Deserialize, Serialize};

use crate::stages::{Stages, TrainPlan, Trained};
use crate::train::FrozenLayers;

/// `[loop]` in the config.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoopConfig {
    /// The small base model specialists are trained from.
    pub base: String,
    /// Where adapters are written (`<adapters_dir>/<task>/<unix time>`); unset: `adapters`
    /// in the data directory ([`adapters_root`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapters_dir: Option<PathBuf>,
    /// A task needs at least this many calls to get a specialist.
    pub min_calls: u64,
    /// …and at least this suitability score from discovery (0–1).
    pub min_suitability: f64,
    /// Most specialists trained per cycle (training is the slow part).
    pub max_trainings: usize,
    /// A new specialist goes to `shadow` when its held-out exact match reaches this, or when a
    /// confidence threshold serves at least `min_coverage` of the validation split at
    /// `precision` (the threshold then guards it: less confident answers go to the LLM).
    pub gate: f64,
    /// Precision a specialist's served answers must reach on the validation split.
    pub precision: f64,
    /// Least share of the task a thresholded specialist must serve to be worth routing to.
    pub min_coverage: f64,
    /// Shadow → on when the live agreement passes the policy's threshold.
    pub auto_promote: bool,
    /// Passes over each task's training split.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Compute threads for training and evaluation (0: every core).
    pub threads: usize,
    /// Specialists read only the last N user turns of a conversation (`train --keep-turns`;
    /// none: the whole conversation).
    pub keep_turns: Option<usize>,
    /// Layers left without adapters (`train --frozen-layers`: a count or a share, "67%").
    pub frozen_layers: FrozenLayers,
    /// Name the offered tools in the specialist's prompt (`train --tool-names`).
    pub tool_names: bool,
}

impl Default for LoopConfig {
    fn default() -> Self {
        LoopConfig {
            base: "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf".into(),
            adapters_dir: None,
            min_calls: 40,
            min_suitability: 0.5,
            max_trainings: 2,
            gate: 0.8,
            precision: 0.95,
            min_coverage: 0.2,
            auto_promote: true,
            epochs: 6,
            lr: 1e-3,
            threads: 0,
            keep_turns: None,
            frozen_layers: FrozenLayers::default(),
            tool_names: false,
        }
    }
}

/// One thing a cycle did (or, with `dry_run`, would do) to a task.
#[derive(Clone, Debug, Serialize)]
pub struct Action {
    /// The task (`-`: none).
    pub task: String,
    /// `wait`, `keep`, `retrain-later`, `promote`, `measure`, `skip`, `llm`, `train-later`,
    /// `shadow` or `below-gate`.
    pub action: &'static str,
    /// Why, in words.
    pub why: String,
}

/// Where adapter folders go: `configured` (`[loop] adapters_dir`), else `adapters` in the data
/// directory — the same place whatever directory a command runs from.
pub fn adapters_root(configured: Option<&Path>, data: &DataDir) -> PathBuf {
    configured.map_or_else(|| data.root.join("adapters"), Path::to_path_buf)
}

/// One cycle of the loop: what it did (or, with `dry_run`, would do) to each task.
pub fn cycle(stages: &Stages, lc: &LoopConfig, dry_run: bool) -> Result<Vec<Action>> {
    let mut actions = Vec::new();
    let store = stages.data.open_store()?;
    if store.count_calls()? == 0 {
        actions.push(Action {
            task: "-".into(),
            action: "wait",
            why: "the call log is empty: point the agent at `downshift serve` first".into(),
        });
        return Ok(actions);
    }
    if !dry_run {
        stages.say("discovering tasks");
        stages.discover()?;
    }
    let mut tasks = store.list_tasks()?;
    let weight = |t: &downshift_store::TaskRecord| t.calls as f64 * t.task_stats().suitability;
    tasks.sort_by(|x, y| weight(y).total_cmp(&weight(x)));
    let tracker = Tracker::new(&*store);
    let mut trainings = 0;
    // The base is looked up only when something is trained.
    let base = || -> Result<String> {
        let p = crate::model::resolve_model(&lc.base)
            .with_context(|| format!("loop.base {} is missing", lc.base))?;
        Ok(std::fs::canonicalize(&p)?.display().to_string())
    };
    for t in &tasks {
        let policy = store.get_policy(&t.id)?;
        let mut say = |action: &'static str, why: String| {
            actions.push(Action {
                task: t.id.clone(),
                action,
                why,
            })
        };
        // The policy of a task that has a specialist.
        let served = policy.as_ref().filter(|p| p.specialist.is_some());
        match served.map(|p| (p.mode, p)) {
            Some((Mode::On | Mode::Canary(_), p)) => {
                let values = tracker.window_values(p)?;
                say(
                    "keep",
                    format!(
                        "{} serves; live agreement {} over {} of {} calls",
                        p.mode,
                        fmt_mean(rolling_mean(&values, values.len().max(1) as u32)),
                        values.len(),
                        p.window
                    ),
                );
                continue;
            }
            Some((Mode::Shadow, p)) => {
                let values = tracker.window_values(p)?;
                let full = values.len() >= p.window as usize;
                let mean = rolling_mean(&values, p.window);
                if full && mean.is_some_and(|m| m < p.agreement_threshold) {
                    // Drifted (or never good enough): retrain on the calls logged since.
                    if trainings >= lc.max_trainings || dry_run {
                        say(
                            "retrain-later",
                            format!(
                                "agreement {} < {:.3}; training budget of this cycle used",
                                fmt_mean(mean),
                                p.agreement_threshold
                            ),
                        );
                        continue;
                    }
                    trainings += 1;
                    let ds = format!("task-{}-{}", t.id, downshift_store::now_ms() / 1000);
                    stages.curate_task(&t.id, &ds)?;
                    let why = format!(
                        "live agreement {} over {} calls < {:.3}",
                        fmt_mean(mean),
                        p.window,
                        p.agreement_threshold
                    );
                    let r = train_and_gate(stages, lc, &base()?, &t.id, Some(&ds))?;
                    say(r.0, format!("{why}; {}", r.1));
                    continue;
                }
                if lc.auto_promote && !dry_run {
                    match tracker.check(&t.id, true)? {
                        Some(tr) if tr.applied => {
                            say("promote", format!("{} → {}: {}", tr.from, tr.to, tr.reason));
                            continue;
                        }
                        _ => {}
                    }
                }
                say(
                    "measure",
                    format!(
                        "shadow: agreement {} over {} of {} calls",
                        fmt_mean(rolling_mean(&values, values.len().max(1) as u32)),
                        values.len(),
                        p.window
                    ),
                );
                continue;
            }
            Some((Mode::Off, _)) => {
                say("skip", "has a specialist that did not pass the gate, or was switched off; `promote` it to try again".into());
                continue;
            }
            _ => {}
        }
        let stats = t.task_stats();
        let suit = stats.suitability;
        let kind = stats.output_kind.map_or("no usable", TaskKind::as_str);
        if t.calls < lc.min_calls
            || suit < lc.min_suitability
            || !stats.output_kind.is_some_and(TaskKind::is_structured)
        {
            say(
                "llm",
                format!(
                    "{} calls, suitability {suit:.2}, {kind} output (needs ≥ {} calls, ≥ {:.2}, structured output)",
                    t.calls, lc.min_calls, lc.min_suitability
                ),
            );
            continue;
        }
        if trainings >= lc.max_trainings || dry_run {
            say(
                "train-later",
                format!(
                    "{} calls, suitability {suit:.2}: a candidate; training budget of this cycle used",
                    t.calls
                ),
            );
            continue;
        }
        trainings += 1;
        let r = train_and_gate(stages, lc, &base()?, &t.id, None)?;
        say(r.0, r.1);
    }
    Ok(actions)
}

fn fmt_mean(m: Option<f64>) -> String {
    m.map_or("-".into(), |m| format!("{:.1}%", m * 100.0))
}

/// Selects (for the record), trains, evaluates and, past the gate, shadows a new specialist.
fn train_and_gate(
    stages: &Stages,
    lc: &LoopConfig,
    base: &str,
    task: &str,
    dataset: Option<&str>,
) -> Result<(&'static str, String)> {
    let sel = stages.select(task)?;
    let out = adapters_root(lc.adapters_dir.as_deref(), stages.data)
        .join(task)
        .join((downshift_store::now_ms() / 1000).to_string());
    std::fs::create_dir_all(out.parent().unwrap_or(Path::new(".")))?;
    let out = std::path::absolute(&out)?;
    let trained = stages.specialize(
        task,
        &TrainPlan {
            base,
            out: &out,
            epochs: lc.epochs,
            lr: lc.lr,
            max_steps: None,
            threads: (lc.threads > 0).then_some(lc.threads),
            dataset,
            precision: lc.precision,
            keep_turns: lc.keep_turns,
            widen_turns: true,
            frozen_layers: lc.frozen_layers,
            tool_names: lc.tool_names,
        },
    )?;
    let em = trained.exact_match.unwrap_or(0.0);
    let rec = sel.recommended.as_deref().unwrap_or("-");
    let out_s = out.display().to_string();
    if let Some((threshold, why)) = gate(&trained, lc.gate, lc.min_coverage, lc.precision) {
        stages.promote(task, Mode::Shadow, &out, threshold)?;
        Ok((
            "shadow",
            format!(
                "trained {out_s} in {:.0} s (select recommends {rec}); {why}",
                trained.train_seconds
            ),
        ))
    } else {
        stages.promote(task, Mode::Off, &out, None)?;
        Ok((
            "below-gate",
            format!(
                "trained {out_s} in {:.0} s; held-out exact match {:.1}% < gate {:.1}% and no confidence threshold serves {:.0}% at {:.0}% precision: the LLM keeps the task",
                trained.train_seconds,
                em * 100.0,
                lc.gate * 100.0,
                lc.min_coverage * 100.0,
                lc.precision * 100.0
            ),
        ))
    }
}

/// Whether a trained specialist may route, and with which confidence threshold: exact match on
/// the test split at or above `gate` (no threshold needed), else a calibrated threshold that
/// serves at least `min_coverage` of the validation split and whose answers on the test split
/// (when it serves any) are right at least `precision` of the time — the validation splits are
/// small, and a threshold they suggest must hold on calls it was not picked on. `None`: the
/// LLM keeps the task.
pub fn gate(
    t: &Trained,
    gate: f64,
    min_coverage: f64,
    precision: f64,
) -> Option<(Option<f64>, String)> {
    let em = t.exact_match.unwrap_or(0.0);
    // A calibrated threshold comes first: even a specialist right on most of its test split
    // serves more safely above it (test splits are small, and the router also sends it calls
    // its task's split never held).
    if let Some((threshold, coverage)) = t.min_confidence.filter(|(_, c)| *c >= min_coverage) {
        // The test split must not contradict it: the upper end of the 95% interval of its
        // precision there must reach the target (10 of 11 does; 0 of 1 does not).
        if t.test_precision
            .is_some_and(|(p, n)| wilson_upper(p, n) < precision)
        {
            return None;
        }
        return Some((
            Some(threshold),
            format!(
                "held-out exact match {:.1}%; answers with mean log-probability ≥ {threshold:.4} ({:.0}% of the validation split) are right {:.0}% of the time: served above that, the LLM below",
                em * 100.0,
                coverage * 100.0,
                precision * 100.0
            ),
        ));
    }
    (em >= gate).then(|| {
        (
            None,
            format!(
                "held-out exact match {:.1}% ≥ gate {:.1}%",
                em * 100.0,
                gate * 100.0
            ),
        )
    })
}

/// Upper end of the Wilson score interval (95%) of a proportion `p` observed on `n` trials.
fn wilson_upper(p: f64, n: usize) -> f64 {
    if n == 0 {
        return 1.0;
    }
    let (n, z) = (n as f64, 1.96f64);
    let z2 = z * z;
    let center = p + z2 / (2.0 * n);
    let half = z * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((center + half) / (1.0 + z2 / n)).min(1.0)
}

#[cfg(test)]
mod gate_tests {
    use super::*;

    fn trained(em: f64, cal: Option<(f64, f64)>, test: Option<(f64, usize)>) -> Trained {
        Trained {
            train_seconds: 1.0,
            exact_match: Some(em),
            min_confidence: cal,
            test_precision: test,
        }
    }

    #[test]
    fn the_gate_needs_exact_match_or_a_threshold_that_holds_on_the_test_split() {
        // exact match alone, when no threshold was found
        assert_eq!(
            gate(&trained(0.9, None, None), 0.8, 0.2, 0.95).unwrap().0,
            None
        );
        // a threshold serving enough of the validation split, confirmed (or not contradicted)
        let ok = trained(0.5, Some((-0.01, 0.6)), Some((1.0, 5)));
        assert_eq!(gate(&ok, 0.8, 0.2, 0.95).unwrap().0, Some(-0.01));
        assert!(gate(&trained(0.5, Some((-0.01, 0.6)), None), 0.8, 0.2, 0.95).is_some());
        // a threshold is kept even above the gate
        let good = trained(0.9, Some((-0.02, 0.5)), Some((10.0 / 11.0, 11)));
        assert_eq!(gate(&good, 0.8, 0.2, 0.95).unwrap().0, Some(-0.02));
        // too little coverage, or contradicted by the test split: the LLM keeps the task
        assert!(
            gate(
                &trained(0.5, Some((-0.01, 0.1)), Some((1.0, 3))),
                0.8,
                0.2,
                0.95
            )
            .is_none()
        );
        for (p, n) in [(0.0, 1), (0.6, 10), (0.85, 40)] {
            let bad = trained(0.9, Some((-0.03, 0.75)), Some((p, n)));
            assert!(gate(&bad, 0.8, 0.2, 0.95).is_none(), "{p} of {n}");
        }
        assert!(gate(&trained(0.5, None, None), 0.8, 0.2, 0.95).is_none());
    }
}
