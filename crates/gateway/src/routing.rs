//! The router on the request path (S6): which task a request belongs to, who answers it under
//! the task's policy, and the background comparisons that measure a specialist against the LLM.
//!
//! Per request the gateway does one classification of the body bytes it already holds and one
//! lookup in an in-memory policy table (both swapped atomically by a reload task, never read
//! from the store on the request path). Agreement measurements and fallbacks go to the store
//! off the request path.

use crate::SetupError;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use downshift_evaluate::{TaskKind, agreement, kind_of, score};
use downshift_route::{
    AgreementRecord, AgreementSource, Classifier, ClassifierConfig, Decision, FallbackReason,
    Policy, PolicyTable, RouteEvent, RouteEventKind, Tracker, stable_hash, train_from_store,
    validate_answer,
};
use downshift_store::{Keyring, Store};
use serde_json::{Value, json};

use crate::config::{RouteConfig, SpecialistEndpointConfig};
use crate::metrics::Metrics;
use crate::specialist::{Specialist, SpecialistAnswer, Specialists};

/// What the router decided for one request.
#[derive(Clone)]
pub struct Routed {
    pub task: Arc<str>,
    pub confidence: f64,
    pub decision: Decision,
    /// The task's policy at decision time (its specialist, thresholds).
    pub policy: Arc<Policy>,
}

/// The tasks' state that decides when the classifier must be rebuilt.
type TasksFingerprint = (usize, i64, u64);

pub struct TaskRouter {
    cfg: RouteConfig,
    classifier: RwLock<Arc<Classifier>>,
    policies: RwLock<Arc<PolicyTable>>,
    tasks_seen: Mutex<Option<TasksFingerprint>>,
    /// The classifier reflects the discovered tasks (false until its first build at start).
    classifier_ready: AtomicBool,
    pub specialists: Specialists,
    shadow_in_flight: AtomicUsize,
}

impl TaskRouter {
    /// Loads the policies and a saved classifier (`cfg.classifier`). A classifier trained from
    /// the store's task assignments is built by [`spawn_reloader`] in the background: reading a
    /// large log takes seconds to minutes, and the gateway serves meanwhile — every request goes
    /// to the LLM until it is built ([`TaskRouter::classifier_ready`]).
    pub fn new(
        cfg: RouteConfig,
        endpoints: &[SpecialistEndpointConfig],
        store: &dyn Store,
    ) -> Result<TaskRouter, SetupError> {
        let specialists = Specialists::new(endpoints, cfg.clone())?;
        let r = TaskRouter {
            classifier: RwLock::new(Arc::new(Classifier::empty(ClassifierConfig::default()))),
            policies: RwLock::new(Arc::new(PolicyTable::default())),
            tasks_seen: Mutex::new(None),
            classifier_ready: AtomicBool::new(false),
            specialists,
            shadow_in_flight: AtomicUsize::new(0),
            cfg,
        };
        if !r.cfg.enabled {
            r.classifier_ready.store(true, Ordering::Release);
            return Ok(r);
        }
        if let Some(path) = &r.cfg.classifier {
            let c = Classifier::load(path).map_err(|e| {
                SetupError::Config(format!(
                    "cannot load the classifier {}: {e}",
                    path.display()
                ))
            })?;
            *r.classifier.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
            r.classifier_ready.store(true, Ordering::Release);
        }
        r.reload_policies(store)?;
        Ok(r)
    }

    /// Whether the classifier has been built from the discovered tasks (or loaded): until then
    /// no request is placed in a task, and every one goes to the LLM.
    pub fn classifier_ready(&self) -> bool {
        self.classifier_ready.load(Ordering::Acquire)
    }

    pub fn enabled(&self) -> bool {
        self.cfg.enabled
    }

    pub fn reload_every(&self) -> Duration {
        Duration::from_millis(self.cfg.reload_ms.max(50))
    }

    /// Re-reads the policies (one small query: cheap enough to run every `reload_ms`).
    pub fn reload_policies(&self, store: &dyn Store) -> Result<(), SetupError> {
        let policies = store
            .list_policies()
            .map_err(|e| SetupError::Store(format!("cannot read the task policies: {e}")))?;
        self.set_policies(policies);
        Ok(())
    }

    /// Rebuilds the classifier when discovery has written new tasks since the last build
    /// (unless a saved classifier was configured). Slow on a large log: it reads every call.
    pub fn rebuild_classifier(
        &self,
        store: &dyn Store,
        keyring: &Keyring,
    ) -> Result<(), SetupError> {
        if self.cfg.classifier.is_some() {
            return Ok(());
        }
        let tasks = store
            .list_tasks()
            .map_err(|e| SetupError::Store(format!("cannot read the tasks: {e}")))?;
        let fp = (
            tasks.len(),
            tasks.iter().map(|t| t.updated_ms).max().unwrap_or(0),
            tasks.iter().map(|t| t.calls).sum(),
        );
        let mut seen = self.tasks_seen.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == Some(fp) {
            return Ok(());
        }
        if tasks.is_empty() {
            // Nothing discovered yet: no request can be placed, and reading the log is wasted.
            *self.classifier.write().unwrap_or_else(|p| p.into_inner()) =
                Arc::new(Classifier::empty(ClassifierConfig::default()));
            *seen = Some(fp);
            self.classifier_ready.store(true, Ordering::Release);
            return Ok(());
        }
        let t0 = Instant::now();
        let (c, report) = train_from_store(store, keyring, ClassifierConfig::default())
            .map_err(|e| SetupError::Store(format!("cannot build the task classifier: {e}")))?;
        tracing::info!(
            tasks = fp.0,
            calls = report.calls,
            assigned = report.assigned,
            undiscovered = report.undiscovered,
            ms = t0.elapsed().as_millis() as u64,
            "task classifier built"
        );
        *self.classifier.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
        *seen = Some(fp);
        self.classifier_ready.store(true, Ordering::Release);
        Ok(())
    }

    fn set_policies(&self, policies: Vec<Policy>) {
        let table = PolicyTable::from_policies(policies);
        let keep = table.active_specialists();
        *self.policies.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
        self.specialists.retain(&keep);
    }

    /// The specialists that active policies name, so they are loaded before traffic needs
    /// them.
    pub fn active_specialists(&self) -> Vec<String> {
        self.policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .active_specialists()
    }

    /// Classifies a chat completion body and applies its task's policy. `None`: routing is
    /// off, the request is not placed in a task, or the task has no policy — the LLM answers.
    pub fn route(&self, body: &[u8]) -> Option<Routed> {
        if !self.cfg.enabled {
            return None;
        }
        let table = self
            .policies
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if table.is_empty() {
            return None;
        }
        let classifier = self
            .classifier
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let c = classifier.classify(body)?;
        let policy = table.shared(&c.task)?;
        // The same request body always routes the same way, so a retry does not flip sides.
        let decision = downshift_route::decide(&policy, body_hash(body));
        Some(Routed {
            task: c.task,
            confidence: c.confidence,
            decision,
            policy,
        })
    }

    /// Claims a background comparison slot; `false` when `max_shadow_in_flight` are running.
    pub fn try_shadow(&self) -> bool {
        let max = self.cfg.max_shadow_in_flight;
        self.shadow_in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    pub fn shadow_done(&self) {
        self.shadow_in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    /// The specialist of a routed request, run and validated against the request.
    pub async fn run_specialist(
        &self,
        routed: &Routed,
        request: &Value,
        call_id: &str,
        model_id: &str,
    ) -> Result<SpecialistAnswer, FallbackReason> {
        let id = routed
            .policy
            .specialist
            .as_deref()
            .ok_or_else(|| FallbackReason::Error("the policy names no specialist".into()))?;
        let spec: Arc<Specialist> = self
            .specialists
            .get(id)
            .await
            .map_err(|e| FallbackReason::Error(e.to_string()))?;
        let min = routed.policy.min_confidence;
        let a = spec
            .answer(
                request,
                call_id,
                model_id,
                self.specialists.timeout(),
                min.is_some(),
            )
            .await?;
        validate_answer(&a.message, request, min, a.mean_logprob)?;
        Ok(a)
    }
}

/// A stable hash of the request body (its decision draw).
fn body_hash(body: &[u8]) -> u64 {
    match std::str::from_utf8(body) {
        Ok(s) => stable_hash(s),
        Err(_) => stable_hash(&String::from_utf8_lossy(body)),
    }
}

/// `choices[0].message` of a chat completion body (or of an assembled stream).
pub fn answer_message(body: &Value) -> Option<&Value> {
    body.get("choices")?
        .get(0)?
        .get("message")
        .filter(|m| m.is_object())
}

/// How far the specialist's answer agrees with the LLM's, by the LLM answer's kind's metric
/// A specialist that failed, or whose answer would have been refused (`None`), scores 0.
pub fn measure(request: &Value, llm_message: &Value, specialist: Option<&Value>) -> f64 {
    let Some(answer) = specialist else {
        return 0.0;
    };
    let kind: TaskKind = kind_of(llm_message);
    let tools = request.get("tools").and_then(Value::as_array);
    let s = score(answer, llm_message, tools.map(Vec::as_slice), kind);
    agreement(&s, kind)
}

/// Stores one agreement measurement off the request path and applies a demotion it triggers
/// (the policy table is reloaded at once, not at the next tick).
pub fn record_agreement(
    router: Arc<TaskRouter>,
    store: Arc<dyn Store>,
    metrics: &Metrics,
    routed: &Routed,
    source: AgreementSource,
    call_id: String,
    value: f64,
) {
    metrics.agreement(
        &routed.task,
        value,
        routed.policy.window as usize,
        routed.policy.agreement_threshold,
    );
    let record = AgreementRecord {
        task: routed.task.to_string(),
        ts_ms: downshift_store::now_ms(),
        value,
        source,
        call_id,
        specialist: routed.policy.specialist.clone(),
    };
    tokio::task::spawn_blocking(move || match Tracker::new(store.as_ref()).record(&record) {
        Ok(Some(t)) if t.applied => {
            tracing::warn!(task = %t.task, from = %t.from, to = %t.to, reason = %t.reason, "task demoted");
            if let Ok(p) = store.list_policies() {
                router.set_policies(p);
            }
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "cannot record an agreement measurement"),
    });
}

/// Logs a fallback as a route event (off the request path).
pub fn record_fallback(
    store: Arc<dyn Store>,
    metrics: &Metrics,
    routed: &Routed,
    reason: &FallbackReason,
    call_id: &str,
) {
    metrics.fallback(&routed.task, reason.code());
    tracing::info!(task = %routed.task, reason = %reason, "specialist answer refused; the LLM answers");
    let mut detail = reason.detail();
    detail["call_id"] = json!(call_id);
    detail["specialist"] = json!(routed.policy.specialist);
    let event = RouteEvent::new(routed.task.to_string(), RouteEventKind::Fallback, detail);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = store.record_route_event(&event) {
            tracing::error!(error = %e, "cannot record a fallback event");
        }
    });
}

/// Keeps the policies and the classifier fresh until the process ends, on two tasks: the
/// policies every `reload_ms` (a promotion or demotion takes effect within that), and the
/// classifier — built at start and rebuilt when discovery changes the tasks — on its own, so
/// a rebuild over a large log never holds a policy change back.
pub fn spawn_reloader(
    router: Arc<TaskRouter>,
    store: Arc<dyn Store>,
    keyring: Arc<RwLock<Keyring>>,
) {
    if !router.enabled() {
        return;
    }
    let (r, s) = (router.clone(), store.clone());
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(r.reload_every());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (r2, s2) = (r.clone(), s.clone());
            let t0 = Instant::now();
            match tokio::task::spawn_blocking(move || r2.reload_policies(s2.as_ref())).await {
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "policy reload failed; keeping the last policies")
                }
                Err(e) => tracing::warn!(error = %e, "policy reload task failed"),
                Ok(Ok(())) => {
                    tracing::trace!(ms = t0.elapsed().as_millis() as u64, "policies reloaded")
                }
            }
            // Load what the active policies name before traffic needs it.
            for id in r.active_specialists() {
                let _ = r.specialists.get(&id).await;
            }
        }
    });
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(router.reload_every());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (r, s, k) = (router.clone(), store.clone(), keyring.clone());
            let res = tokio::task::spawn_blocking(move || {
                let keyring = k.read().unwrap_or_else(|p| p.into_inner());
                r.rebuild_classifier(s.as_ref(), &keyring)
            })
            .await;
            match res {
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, "task classifier rebuild failed; keeping the last one")
                }
                Err(e) => tracing::warn!(error = %e, "task classifier rebuild task failed"),
                Ok(Ok(())) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use downshift_store::{
        CallMeta, CallPayload, CallRecord, Policy, Source, SqliteStore, TaskRecord,
    };

    fn body(tool: &str, i: usize) -> Vec<u8> {
        serde_json::to_vec(&json!({"model": "m", "messages": [
            {"role": "system", "content": "You call tools."},
            {"role": "user", "content": format!("question {i}")}],
            "tools": [{"type": "function", "function": {"name": tool, "parameters": {"type": "object"}}}]}))
        .unwrap()
    }

    /// The router starts at once and places nothing until its classifier is built; policy
    /// changes reload without rebuilding it; a rebuild makes the router place requests.
    #[test]
    fn the_classifier_is_built_apart_from_the_policies_and_nothing_is_placed_before() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
        let (ring, _) = Keyring::load_or_create(&dir.path().join("keys.json")).unwrap();
        let mut sealed = Vec::new();
        let mut assignments = Vec::new();
        for i in 0..40 {
            let (tool, task) = if i % 2 == 0 {
                ("weather", "t_w")
            } else {
                ("search", "t_s")
            };
            let id = format!("c{i:03}");
            let meta = CallMeta::new(id.clone(), i as i64, "m", Source::Gateway);
            sealed.push(
                ring.seal(&CallRecord {
                    meta,
                    payload: CallPayload {
                        request: body(tool, i),
                        response: b"{}".to_vec(),
                    },
                })
                .unwrap(),
            );
            assignments.push((id, Some(task.to_owned())));
        }
        store.insert_calls(&sealed).unwrap();
        let task = |id: &str| TaskRecord {
            id: id.into(),
            label: id.into(),
            created_ms: 1,
            updated_ms: 1,
            calls: 20,
            signature: id.into(),
            stats: json!({}),
            centroid: Vec::new(),
        };
        store
            .replace_tasks(&[task("t_w"), task("t_s")], &assignments)
            .unwrap();
        store.set_policy(&Policy::new("t_w", "test")).unwrap();

        let router = TaskRouter::new(RouteConfig::default(), &[], &store).unwrap();
        // Policies are loaded, the classifier is not: every request goes to the LLM.
        assert!(!router.classifier_ready());
        assert!(router.route(&body("weather", 99)).is_none());
        // A policy change reloads without building the classifier.
        store.set_policy(&Policy::new("t_s", "test")).unwrap();
        router.reload_policies(&store).unwrap();
        assert!(!router.classifier_ready());
        assert!(router.route(&body("search", 99)).is_none());
        // Built: both tasks are placed under their policies.
        router.rebuild_classifier(&store, &ring).unwrap();
        assert!(router.classifier_ready());
        assert_eq!(&*router.route(&body("weather", 99)).unwrap().task, "t_w");
        assert_eq!(&*router.route(&body("search", 99)).unwrap().task, "t_s");
    }
}
