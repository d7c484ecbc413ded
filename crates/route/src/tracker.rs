//! Live agreement → promotion and demotion.
//!
//! [`should_demote`] and [`should_promote`] are pure functions of a policy and its recent
//! agreement values; [`Tracker`] applies them to the store (records the measurement, changes
//! the policy, writes the route event).

use downshift_store::{AgreementRecord, Mode, Policy, RouteEvent, RouteEventKind, Store};
use serde::Serialize;
use serde_json::json;

use crate::RouteError;

/// The mean of the newest `window` values (`recent` is newest first), or `None` while fewer
/// than `window` values exist.
pub fn rolling_mean(recent: &[f64], window: u32) -> Option<f64> {
    let window = window.max(1) as usize;
    let values = recent.get(..window)?;
    Some(values.iter().sum::<f64>() / window as f64)
}

/// The agreement of a task's current specialist over its policy's window: how many of the
/// newest `window` measurements are that specialist's (or unattributed), and their mean — what
/// `downshift policies` and the web UI report.
///
/// # Errors
/// [`RouteError::Store`] when the measurements cannot be read.
pub fn window_agreement(store: &dyn Store, p: &Policy) -> Result<(usize, Option<f64>), RouteError> {
    let recent = store.recent_agreement(&p.task, p.window.max(1) as usize)?;
    let values: Vec<f64> = recent
        .iter()
        .filter(|r| r.specialist.is_none() || r.specialist == p.specialist)
        .map(|r| r.value)
        .collect();
    let mean = (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64);
    Ok((values.len(), mean))
}

/// Whether a task serving with its specialist (`on` or `canary`) must go back to `shadow`:
/// the window is full and the rolling agreement is below the threshold. `recent` is newest
/// first. The reason says by how much.
pub fn should_demote(policy: &Policy, recent: &[f64]) -> Option<String> {
    if !matches!(policy.mode, Mode::On | Mode::Canary(_)) {
        return None;
    }
    let mean = rolling_mean(recent, policy.window)?;
    (mean < policy.agreement_threshold).then(|| {
        format!(
            "rolling agreement {mean:.3} over the last {} calls is below {:.3}",
            policy.window, policy.agreement_threshold
        )
    })
}

/// Whether a task in `shadow` with a specialist may serve with it (`on`): the window is full and
/// the rolling agreement is at least the threshold. `recent` is newest first.
pub fn should_promote(policy: &Policy, recent: &[f64]) -> Option<String> {
    if policy.mode != Mode::Shadow || policy.specialist.is_none() {
        return None;
    }
    let mean = rolling_mean(recent, policy.window)?;
    (mean >= policy.agreement_threshold).then(|| {
        format!(
            "rolling agreement {mean:.3} over the last {} calls reaches {:.3}",
            policy.window, policy.agreement_threshold
        )
    })
}

/// A policy change the tracker made (or, for a promotion without `auto_promote`, proposes).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Transition {
    /// The task.
    pub task: String,
    /// Its mode before.
    pub from: Mode,
    /// Its mode after.
    pub to: Mode,
    /// Why, in words.
    pub reason: String,
    /// Whether the policy was changed in the store.
    pub applied: bool,
}

/// Applies agreement measurements to the stored policies.
pub struct Tracker<'a> {
    store: &'a dyn Store,
}

impl<'a> Tracker<'a> {
    /// Who the tracker's policy changes are attributed to.
    pub const ACTOR: &'static str = "tracker";

    /// A tracker over the policies in `store`.
    pub fn new(store: &'a dyn Store) -> Self {
        Tracker { store }
    }

    /// The newest agreement values of the policy's current specialist, newest first (at most
    /// one window). Measurements of another specialist (before a retrain) do not count.
    ///
    /// # Errors
    /// [`RouteError::Store`].
    pub fn window_values(&self, policy: &Policy) -> Result<Vec<f64>, RouteError> {
        let recent = self
            .store
            .recent_agreement(&policy.task, policy.window.max(1) as usize)?;
        Ok(recent
            .into_iter()
            .filter(|a| a.specialist.is_none() || a.specialist == policy.specialist)
            .map(|a| a.value)
            .collect())
    }

    /// Records one measurement, then [`Tracker::check`]s the task (demotions only).
    ///
    /// # Errors
    /// [`RouteError::Store`].
    pub fn record(&self, record: &AgreementRecord) -> Result<Option<Transition>, RouteError> {
        self.store.record_agreement(record)?;
        self.check(&record.task, false)
    }

    /// Re-reads the task's policy and its window: demotes `on`/`canary` → `shadow` when
    /// [`should_demote`] says so (always applied, with a `demote` route event), and, when
    /// [`should_promote`] says so, promotes `shadow` → `on` if `auto_promote` (a `promote`
    /// event) or only reports it. `None` when nothing changes or the task has no policy.
    ///
    /// # Errors
    /// [`RouteError::Store`].
    pub fn check(&self, task: &str, auto_promote: bool) -> Result<Option<Transition>, RouteError> {
        let Some(policy) = self.store.get_policy(task)? else {
            return Ok(None);
        };
        let values = self.window_values(&policy)?;
        let mean = rolling_mean(&values, policy.window);
        let (to, reason, apply, kind) = if let Some(reason) = should_demote(&policy, &values) {
            (Mode::Shadow, reason, true, RouteEventKind::Demote)
        } else if let Some(reason) = should_promote(&policy, &values) {
            (Mode::On, reason, auto_promote, RouteEventKind::Promote)
        } else {
            return Ok(None);
        };
        let from = policy.mode;
        if apply {
            let changed = Policy {
                mode: to,
                updated_ms: downshift_store::now_ms(),
                updated_by: Self::ACTOR.to_owned(),
                ..policy.clone()
            };
            self.store.set_policy(&changed)?;
            self.store.record_route_event(&RouteEvent::new(
                task,
                kind,
                json!({
                    "from": from.to_string(),
                    "to": to.to_string(),
                    "mean": mean,
                    "window": policy.window,
                    "threshold": policy.agreement_threshold,
                    "specialist": policy.specialist,
                    "reason": reason,
                    "by": Self::ACTOR,
                }),
            ))?;
        }
        Ok(Some(Transition {
            task: task.to_owned(),
            from,
            to,
            reason,
            applied: apply,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use downshift_store::{AgreementSource, SqliteStore};

    fn policy(mode: Mode, window: u32) -> Policy {
        Policy {
            mode,
            window,
            specialist: Some("s1".into()),
            ..Policy::new("t", "test")
        }
    }

    #[test]
    fn pure_rules() {
        let good = vec![1.0; 5];
        let bad = vec![0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0];
        assert_eq!(rolling_mean(&good, 5), Some(1.0));
        assert_eq!(rolling_mean(&good[..4], 5), None);
        assert_eq!(rolling_mean(&bad, 5), Some(0.8));

        // Demotion: on or canary, a full window, a mean below the threshold.
        assert!(should_demote(&policy(Mode::On, 5), &bad).is_some());
        assert!(should_demote(&policy(Mode::Canary(10), 5), &bad).is_some());
        assert!(should_demote(&policy(Mode::Shadow, 5), &bad).is_none());
        assert!(should_demote(&policy(Mode::Off, 5), &bad).is_none());
        assert!(should_demote(&policy(Mode::On, 5), &good).is_none());
        assert!(
            should_demote(&policy(Mode::On, 8), &bad).is_none(),
            "window not full"
        );
        let reason = should_demote(&policy(Mode::On, 5), &bad).unwrap();
        assert!(
            reason.contains("0.800") && reason.contains("0.900"),
            "{reason}"
        );
        // Only the newest window counts: old bad values beyond it do not.
        let mut recovered = vec![1.0; 5];
        recovered.extend([0.0; 20]);
        assert!(should_demote(&policy(Mode::On, 5), &recovered).is_none());

        // Promotion: shadow with a specialist, a full window, a mean at the threshold or above.
        let at = vec![0.9; 5];
        assert!(should_promote(&policy(Mode::Shadow, 5), &at).is_some());
        assert!(should_promote(&policy(Mode::Shadow, 5), &bad).is_none());
        assert!(should_promote(&policy(Mode::Shadow, 6), &at).is_none());
        assert!(should_promote(&policy(Mode::On, 5), &good).is_none());
        let mut no_specialist = policy(Mode::Shadow, 5);
        no_specialist.specialist = None;
        assert!(should_promote(&no_specialist, &good).is_none());
    }

    fn measure(store: &SqliteStore, value: f64, specialist: &str, i: usize) -> Option<Transition> {
        Tracker::new(store)
            .record(&AgreementRecord {
                task: "t".into(),
                ts_ms: i as i64,
                value,
                source: AgreementSource::OnSample,
                call_id: format!("c{i}"),
                specialist: Some(specialist.into()),
            })
            .unwrap()
    }

    #[test]
    fn demotes_on_drift_and_promotes_on_request() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        store.set_policy(&policy(Mode::On, 10)).unwrap();
        let tracker = Tracker::new(&store);
        // Good measurements: nothing happens.
        for i in 0..10 {
            assert_eq!(measure(&store, 1.0, "s1", i), None);
        }
        // Drift: the mean of the last 10 drops below 0.9 at the second miss.
        assert_eq!(measure(&store, 0.0, "s1", 10), None);
        let t = measure(&store, 0.0, "s1", 11).unwrap();
        assert_eq!((t.from, t.to, t.applied), (Mode::On, Mode::Shadow, true));
        let p = store.get_policy("t").unwrap().unwrap();
        assert_eq!((p.mode, p.updated_by.as_str()), (Mode::Shadow, "tracker"));
        let events = store.list_route_events(Some("t"), 10).unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, RouteEventKind::Demote);
        assert_eq!(events[0].detail["from"], "on");
        assert_eq!(events[0].detail["to"], "shadow");
        // Demoted once: further misses change nothing.
        assert_eq!(measure(&store, 0.0, "s1", 12), None);

        // A retrained specialist starts a fresh window: the old misses do not count.
        store
            .set_policy(&Policy {
                specialist: Some("s2".into()),
                ..store.get_policy("t").unwrap().unwrap()
            })
            .unwrap();
        for i in 0..9 {
            measure(&store, 1.0, "s2", 100 + i);
        }
        assert_eq!(tracker.check("t", true).unwrap(), None, "window not full");
        measure(&store, 1.0, "s2", 109);
        let proposed = tracker.check("t", false).unwrap().unwrap();
        assert_eq!((proposed.to, proposed.applied), (Mode::On, false));
        assert_eq!(store.get_policy("t").unwrap().unwrap().mode, Mode::Shadow);
        let done = tracker.check("t", true).unwrap().unwrap();
        assert_eq!(
            (done.from, done.to, done.applied),
            (Mode::Shadow, Mode::On, true)
        );
        assert_eq!(store.get_policy("t").unwrap().unwrap().mode, Mode::On);
        assert_eq!(
            store.list_route_events(Some("t"), 10).unwrap()[0].kind,
            RouteEventKind::Promote
        );
        assert_eq!(tracker.check("unknown", true).unwrap(), None);
    }
}
