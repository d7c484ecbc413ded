//! The routing decision for one request of a task, from the task's [`Policy`].

use std::collections::HashMap;
use std::sync::Arc;

use downshift_store::{Mode, Policy, Store};
use serde::Serialize;

use crate::RouteError;
use crate::hash::{combine, fmix};

/// Who answers a request, and whether the other side runs alongside to measure agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// The LLM answers; nothing else runs.
    Llm,
    /// The LLM answers; the specialist runs on the same request in the background and its
    /// agreement with the LLM's answer is recorded (source `shadow`).
    LlmWithShadow,
    /// The specialist answers (the LLM is called only on fallback). With `shadow`, the LLM also
    /// runs in the background and the agreement is recorded (source `canary` in canary mode,
    /// `on_sample` in on mode).
    Specialist {
        /// Whether the LLM also runs, to measure agreement.
        shadow: bool,
    },
}

impl Decision {
    /// `llm`, `llm+shadow`, `specialist`, `specialist+shadow`: a metrics label.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Llm => "llm",
            Decision::LlmWithShadow => "llm+shadow",
            Decision::Specialist { shadow: false } => "specialist",
            Decision::Specialist { shadow: true } => "specialist+shadow",
        }
    }
}

/// Salts so the canary draw and the shadow-sample draw of a request are independent.
const CANARY_SALT: u64 = 0xCA4A_2121;
const SAMPLE_SALT: u64 = 0x5A3B_1E00;

/// A uniform draw in [0, 1) from the request's hash and a salt.
fn draw(request_key_hash: u64, salt: u64) -> f64 {
    // The top 53 bits as a fraction.
    (fmix(combine(salt, request_key_hash)) >> 11) as f64 / (1u64 << 53) as f64
}

/// Routes one request of a task. `request_key_hash` identifies the request — use
/// [`stable_hash`](crate::stable_hash) of its request id — so the same request always routes
/// the same way (a retried request does not flip between the LLM and the specialist):
///
/// - `off` → [`Decision::Llm`];
/// - `shadow` → [`Decision::LlmWithShadow`] for every request;
/// - `canary:P` → P% of requests (by hash) [`Decision::Specialist`] with the LLM alongside
///   (every canary answer is measured), the rest [`Decision::Llm`];
/// - `on` → [`Decision::Specialist`], the LLM alongside for a `shadow_sample` fraction (by an
///   independent hash draw).
///
/// Without a specialist every mode is [`Decision::Llm`].
pub fn decide(policy: &Policy, request_key_hash: u64) -> Decision {
    if policy.specialist.is_none() {
        return Decision::Llm;
    }
    match policy.mode {
        Mode::Off => Decision::Llm,
        Mode::Shadow => Decision::LlmWithShadow,
        Mode::Canary(p) => {
            if draw(request_key_hash, CANARY_SALT) * 100.0 < f64::from(p.min(100)) {
                Decision::Specialist { shadow: true }
            } else {
                Decision::Llm
            }
        }
        Mode::On => Decision::Specialist {
            shadow: draw(request_key_hash, SAMPLE_SALT) < policy.shadow_sample,
        },
    }
}

/// Every task's policy in memory, for the request path (the store is not read per request).
/// Reload it with [`PolicyTable::load`] after a policy changes. Policies are shared
/// ([`PolicyTable::shared`]), so a routed request holds its policy without copying it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyTable {
    policies: HashMap<String, Arc<Policy>>,
}

impl PolicyTable {
    /// Reads every policy from the store.
    ///
    /// # Errors
    /// [`RouteError::Store`].
    pub fn load(store: &dyn Store) -> Result<PolicyTable, RouteError> {
        Ok(PolicyTable::from_policies(store.list_policies()?))
    }

    /// A table of these policies.
    pub fn from_policies(policies: impl IntoIterator<Item = Policy>) -> PolicyTable {
        PolicyTable {
            policies: policies
                .into_iter()
                .map(|p| (p.task.clone(), Arc::new(p)))
                .collect(),
        }
    }

    /// The task's policy.
    pub fn get(&self, task: &str) -> Option<&Policy> {
        self.policies.get(task).map(Arc::as_ref)
    }

    /// The task's policy, shared.
    pub fn shared(&self, task: &str) -> Option<Arc<Policy>> {
        self.policies.get(task).cloned()
    }

    /// Replaces one task's policy.
    pub fn insert(&mut self, policy: Policy) {
        self.policies.insert(policy.task.clone(), Arc::new(policy));
    }

    /// How many tasks have a policy.
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether no task has a policy.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The specialists the policies route to in a mode other than `off`, sorted, each once.
    pub fn active_specialists(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .policies
            .values()
            .filter(|p| p.mode != Mode::Off)
            .filter_map(|p| p.specialist.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// [`decide`] for a classified request; an unplaced request, or a task without a policy,
    /// goes to the LLM.
    pub fn decide(&self, task: Option<&str>, request_key_hash: u64) -> Decision {
        task.and_then(|t| self.get(t))
            .map_or(Decision::Llm, |p| decide(p, request_key_hash))
    }
}

/// A change to a task's policy, as `downshift promote` and `PUT /admin/policies/{task}` take
/// it; absent fields keep their value (or the default, for a task without a policy).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyChange {
    /// off | shadow | canary:P | on.
    pub mode: Option<Mode>,
    /// The specialist: an adapter folder or a configured endpoint's name.
    pub specialist: Option<String>,
    /// Least mean token log-probability a specialist answer must have.
    pub min_confidence: Option<f64>,
    /// Rolling agreement below which `on` is demoted to `shadow`.
    pub agreement_threshold: Option<f64>,
    /// Measurements the rolling agreement is taken over.
    pub window: Option<u32>,
    /// In `on` mode, the share of requests also sent to the LLM.
    pub shadow_sample: Option<f64>,
}

/// Applies a change to a discovered task's policy in the store and records it as a `promote`
/// route event (`{"from", "to", "specialist", "by"}`). Returns the new policy and the mode it
/// replaced.
///
/// # Errors
/// [`RouteError::UnknownTask`] for a task discovery never found (and no policy names);
/// [`RouteError::InvalidPolicy`] for numbers out of range or a mode other than `off` without a
/// specialist; [`RouteError::Store`].
pub fn change_policy(
    store: &dyn Store,
    task: &str,
    change: &PolicyChange,
    actor: &str,
) -> Result<(Policy, Option<Mode>), RouteError> {
    let old = store.get_policy(task)?;
    if old.is_none() && store.get_task(task)?.is_none() {
        return Err(RouteError::UnknownTask(task.to_owned()));
    }
    let mut p = old.clone().unwrap_or_else(|| Policy::new(task, actor));
    if let Some(m) = change.mode {
        p.mode = m;
    }
    if let Some(s) = &change.specialist {
        p.specialist = Some(s.clone()).filter(|s| !s.is_empty());
    }
    if change.min_confidence.is_some() {
        p.min_confidence = change.min_confidence;
    }
    if let Some(v) = change.agreement_threshold {
        p.agreement_threshold = v;
    }
    if let Some(v) = change.window {
        p.window = v;
    }
    if let Some(v) = change.shadow_sample {
        p.shadow_sample = v;
    }
    if p.mode != Mode::Off && p.specialist.is_none() {
        return Err(RouteError::InvalidPolicy(format!(
            "task '{task}' has no specialist: name one (--specialist) to route it in mode {}",
            p.mode
        )));
    }
    p.updated_ms = downshift_store::now_ms();
    p.updated_by = actor.to_owned();
    p.validate()
        .map_err(|e| RouteError::InvalidPolicy(e.to_string()))?;
    store.set_policy(&p)?;
    let from = old.as_ref().map(|o| o.mode);
    store.record_route_event(&downshift_store::RouteEvent::new(
        task,
        downshift_store::RouteEventKind::Promote,
        serde_json::json!({
            "from": from.map(|m| m.to_string()),
            "to": p.mode.to_string(),
            "specialist": p.specialist,
            "by": actor,
        }),
    ))?;
    Ok((p, from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stable_hash;

    fn policy(mode: Mode) -> Policy {
        Policy {
            mode,
            specialist: Some("adapters/t".into()),
            ..Policy::new("t", "test")
        }
    }

    fn shares(p: &Policy) -> (f64, f64, f64) {
        let n = 20_000;
        let (mut llm, mut spec, mut shadowed) = (0, 0, 0);
        for i in 0..n {
            match decide(p, stable_hash(&format!("req-{i}"))) {
                Decision::Llm => llm += 1,
                Decision::LlmWithShadow => shadowed += 1,
                Decision::Specialist { shadow } => {
                    spec += 1;
                    shadowed += usize::from(shadow);
                }
            }
        }
        let f = |x: usize| x as f64 / n as f64;
        (f(llm), f(spec), f(shadowed))
    }

    #[test]
    fn modes_route_as_documented() {
        assert_eq!(shares(&policy(Mode::Off)), (1.0, 0.0, 0.0));
        assert_eq!(shares(&policy(Mode::Shadow)), (0.0, 0.0, 1.0));
        let (llm, spec, shadowed) = shares(&policy(Mode::Canary(10)));
        assert!((spec - 0.10).abs() < 0.01, "{spec}");
        assert!((llm + spec - 1.0).abs() < 1e-12);
        assert_eq!(shadowed, spec, "every canary answer is measured");
        assert_eq!(shares(&policy(Mode::Canary(0))).1, 0.0);
        assert_eq!(shares(&policy(Mode::Canary(100))).1, 1.0);
        let (llm, spec, shadowed) = shares(&policy(Mode::On));
        assert_eq!((llm, spec), (0.0, 1.0));
        assert!((shadowed - 0.05).abs() < 0.01, "{shadowed}");
        let mut none = policy(Mode::On);
        none.shadow_sample = 0.0;
        assert_eq!(shares(&none).2, 0.0);
        // No specialist: always the LLM.
        let mut p = policy(Mode::On);
        p.specialist = None;
        assert_eq!(shares(&p), (1.0, 0.0, 0.0));
    }

    #[test]
    fn the_same_request_routes_the_same() {
        let p = policy(Mode::Canary(50));
        for i in 0..100 {
            let h = stable_hash(&format!("id-{i}"));
            assert_eq!(decide(&p, h), decide(&p, h));
        }
        // Raising the percentage only moves requests towards the specialist.
        let lo = policy(Mode::Canary(20));
        let hi = policy(Mode::Canary(40));
        for i in 0..2000 {
            let h = stable_hash(&format!("id-{i}"));
            if decide(&lo, h) != Decision::Llm {
                assert_ne!(decide(&hi, h), Decision::Llm);
            }
        }
    }

    #[test]
    fn table_lookup() {
        let t = PolicyTable::from_policies([policy(Mode::On)]);
        assert_eq!(t.len(), 1);
        assert_eq!(t.decide(Some("t"), 1), decide(&policy(Mode::On), 1));
        assert_eq!(t.decide(Some("other"), 1), Decision::Llm);
        assert_eq!(t.decide(None, 1), Decision::Llm);
        assert_eq!(t.shared("t").as_deref(), t.get("t"));
        assert_eq!(t.active_specialists(), vec!["adapters/t".to_string()]);
        let off = PolicyTable::from_policies([policy(Mode::Off)]);
        assert!(off.active_specialists().is_empty());
    }
}
