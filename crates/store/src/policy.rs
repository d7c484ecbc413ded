//! What the router (S6) persists: the per-task policy, live agreement measurements and the
//! route events (promotions, demotions, fallbacks).
//!
//! The types live here, below `downshift-route`, because the [`Store`](crate::Store) trait reads
//! and writes them; the routing logic over them is in `downshift-route`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::StoreError;

/// The call tag naming the discovered task the gateway classified a call into.
pub const TASK_TAG: &str = "downshift_task";
/// The call tag saying who answered a routed call (`specialist`). Curation leaves calls the
/// specialist answered out: a specialist's own answers are not teacher data.
pub const ROUTE_TAG: &str = "downshift_route";
/// The call tag on a call whose specialist answer was refused: the fallback reason. The LLM
/// answered it, so it is training data like any other.
pub const FALLBACK_TAG: &str = "downshift_fallback";

/// How a task's traffic is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    /// The LLM serves everything; the specialist is not called.
    #[default]
    Off,
    /// The LLM serves; the specialist runs on the same requests in the background and its
    /// agreement with the LLM is recorded.
    Shadow,
    /// This percentage (0–100) of the task's requests is served by the specialist.
    Canary(u8),
    /// The specialist serves; the LLM is called on fallback and for a small shadow sample.
    On,
}

impl Mode {
    /// `off`, `shadow`, `canary`, `on`: the mode without its percentage (a metrics label).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Shadow => "shadow",
            Mode::Canary(_) => "canary",
            Mode::On => "on",
        }
    }
}

impl fmt::Display for Mode {
    /// `off`, `shadow`, `canary:P`, `on`: the form [`Mode::from_str`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mode::Canary(p) => write!(f, "canary:{p}"),
            other => f.write_str(other.name()),
        }
    }
}

impl FromStr for Mode {
    type Err = StoreError;

    /// `off | shadow | canary:P | on` (case-insensitive; `P` an integer 0–100, a trailing `%`
    /// allowed).
    fn from_str(s: &str) -> Result<Mode, StoreError> {
        let t = s.trim().to_ascii_lowercase();
        let bad = || {
            StoreError::Invalid(format!(
                "mode must be off, shadow, canary:P (P = 0-100) or on, got '{s}'"
            ))
        };
        Ok(match t.as_str() {
            "off" => Mode::Off,
            "shadow" => Mode::Shadow,
            "on" => Mode::On,
            _ => {
                let p = t.strip_prefix("canary:").ok_or_else(bad)?;
                let p = p.trim().strip_suffix('%').unwrap_or(p).trim();
                let p: u8 = p.parse().map_err(|_| bad())?;
                if p > 100 {
                    return Err(bad());
                }
                Mode::Canary(p)
            }
        })
    }
}

impl Serialize for Mode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Mode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Mode, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The routing policy of one discovered task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    /// The discovered task's id.
    pub task: String,
    /// How the task's traffic is served.
    pub mode: Mode,
    /// The specialist serving the task: an adapter directory (built-in engine) or the name of a
    /// configured specialist endpoint. Without one, every mode routes to the LLM.
    pub specialist: Option<String>,
    /// Least mean token log-probability a specialist answer must have (`None`: not checked).
    pub min_confidence: Option<f64>,
    /// Rolling agreement below this demotes, at or above it promotes (0–1).
    pub agreement_threshold: f64,
    /// How many recent agreement measurements the rolling mean is taken over.
    pub window: u32,
    /// In `on` mode, the fraction of requests also sent to the LLM to keep measuring (0–1).
    pub shadow_sample: f64,
    /// When it was last changed, ms since the Unix epoch.
    pub updated_ms: i64,
    /// Who changed it last: an API key id, `cli`, `loop`, `tracker`, …
    pub updated_by: String,
}

impl Policy {
    /// The agreement a specialist must keep to stay promoted: 0.9.
    pub const DEFAULT_AGREEMENT_THRESHOLD: f64 = 0.9;
    /// The rolling window of agreement measurements: 50.
    pub const DEFAULT_WINDOW: u32 = 50;
    /// The share of `on` traffic still sent to the LLM: 5%.
    pub const DEFAULT_SHADOW_SAMPLE: f64 = 0.05;

    /// The defaults: `off`, no specialist, no confidence threshold, agreement threshold 0.9 over
    /// a window of 50, a 5% shadow sample in `on` mode.
    pub fn new(task: impl Into<String>, updated_by: impl Into<String>) -> Policy {
        Policy {
            task: task.into(),
            mode: Mode::Off,
            specialist: None,
            min_confidence: None,
            agreement_threshold: Self::DEFAULT_AGREEMENT_THRESHOLD,
            window: Self::DEFAULT_WINDOW,
            shadow_sample: Self::DEFAULT_SHADOW_SAMPLE,
            updated_ms: crate::now_ms(),
            updated_by: updated_by.into(),
        }
    }

    /// Checks the numbers are in range.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] naming the first field out of range.
    pub fn validate(&self) -> Result<(), StoreError> {
        let bad = |what: String| Err(StoreError::Invalid(format!("policy {}: {what}", self.task)));
        if self.task.is_empty() {
            return bad("empty task id".into());
        }
        if let Mode::Canary(p) = self.mode
            && p > 100
        {
            return bad(format!("canary percentage {p} > 100"));
        }
        if !(0.0..=1.0).contains(&self.agreement_threshold) {
            return bad(format!(
                "agreement_threshold {} is not in [0, 1]",
                self.agreement_threshold
            ));
        }
        if self.window == 0 {
            return bad("window must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.shadow_sample) {
            return bad(format!(
                "shadow_sample {} is not in [0, 1]",
                self.shadow_sample
            ));
        }
        if let Some(c) = self.min_confidence
            && !c.is_finite()
        {
            return bad(format!("min_confidence {c} is not a number"));
        }
        Ok(())
    }
}

/// Where an agreement measurement came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgreementSource {
    /// Shadow mode: the LLM served, the specialist ran alongside.
    Shadow,
    /// A canary request: the specialist served, the LLM ran alongside.
    Canary,
    /// The shadow sample of `on` mode.
    OnSample,
}

impl AgreementSource {
    /// The stored name: `shadow`, `canary` or `on_sample`.
    pub fn as_str(self) -> &'static str {
        match self {
            AgreementSource::Shadow => "shadow",
            AgreementSource::Canary => "canary",
            AgreementSource::OnSample => "on_sample",
        }
    }

    /// The source a name from [`AgreementSource::as_str`] stands for; `None` for any other.
    pub fn parse(s: &str) -> Option<AgreementSource> {
        Some(match s {
            "shadow" => AgreementSource::Shadow,
            "canary" => AgreementSource::Canary,
            "on_sample" => AgreementSource::OnSample,
            _ => return None,
        })
    }
}

/// One live comparison of a specialist's answer with the LLM's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgreementRecord {
    /// The discovered task's id.
    pub task: String,
    /// When it was measured, ms since the Unix epoch.
    pub ts_ms: i64,
    /// The task kind's agreement metric, 0–1.
    pub value: f64,
    /// Which routing mode produced the pair of answers.
    pub source: AgreementSource,
    /// The call whose two answers were compared.
    pub call_id: String,
    /// The specialist that was measured, so a retrained one starts a fresh window.
    pub specialist: Option<String>,
}

impl AgreementRecord {
    /// A measurement is a share: `value` must be in [0, 1].
    pub fn validate(&self) -> crate::Result<()> {
        if (0.0..=1.0).contains(&self.value) {
            Ok(())
        } else {
            Err(crate::StoreError::Invalid(format!(
                "agreement {} of task {} is not in [0, 1]",
                self.value, self.task
            )))
        }
    }
}

/// What a route event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteEventKind {
    /// The policy was changed by hand (any change, recorded with its `from` and `to` mode), or
    /// the tracker moved the task from `shadow` to `on` on its rolling agreement.
    Promote,
    /// The tracker moved the task from `on` or `canary` back to `shadow`: its rolling agreement
    /// fell below the threshold.
    Demote,
    /// A specialist answer failed validation (or the specialist failed) and the LLM answered.
    Fallback,
}

impl RouteEventKind {
    /// The stored name: `promote`, `demote` or `fallback`.
    pub fn as_str(self) -> &'static str {
        match self {
            RouteEventKind::Promote => "promote",
            RouteEventKind::Demote => "demote",
            RouteEventKind::Fallback => "fallback",
        }
    }

    /// The kind a name from [`RouteEventKind::as_str`] stands for; `None` for any other.
    pub fn parse(s: &str) -> Option<RouteEventKind> {
        Some(match s {
            "promote" => RouteEventKind::Promote,
            "demote" => RouteEventKind::Demote,
            "fallback" => RouteEventKind::Fallback,
            _ => return None,
        })
    }
}

/// A promotion, demotion or fallback of one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteEvent {
    /// UUIDv7.
    pub id: String,
    /// The discovered task's id.
    pub task: String,
    /// When it happened, ms since the Unix epoch.
    pub ts_ms: i64,
    /// What happened.
    pub kind: RouteEventKind,
    /// What happened, e.g. `{"from": "on", "to": "shadow", "mean": 0.81}` or
    /// `{"reason": "unoffered_tool", "call_id": …}`.
    pub detail: serde_json::Value,
}

impl RouteEvent {
    /// An event stamped now with a fresh id.
    pub fn new(task: impl Into<String>, kind: RouteEventKind, detail: serde_json::Value) -> Self {
        RouteEvent {
            id: uuid::Uuid::now_v7().to_string(),
            task: task.into(),
            ts_ms: crate::now_ms(),
            kind,
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_display() {
        for (text, mode) in [
            ("off", Mode::Off),
            ("shadow", Mode::Shadow),
            ("canary:5", Mode::Canary(5)),
            ("canary:100", Mode::Canary(100)),
            ("on", Mode::On),
        ] {
            assert_eq!(text.parse::<Mode>().unwrap(), mode);
            assert_eq!(mode.to_string(), text);
        }
        assert_eq!(" Canary: 7% ".parse::<Mode>().unwrap(), Mode::Canary(7));
        assert_eq!("ON".parse::<Mode>().unwrap(), Mode::On);
        for bad in [
            "",
            "canary",
            "canary:",
            "canary:101",
            "canary:-1",
            "canary:x",
            "half",
        ] {
            assert!(bad.parse::<Mode>().is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::to_string(&Mode::Canary(10)).unwrap(),
            "\"canary:10\""
        );
        assert_eq!(
            serde_json::from_str::<Mode>("\"shadow\"").unwrap(),
            Mode::Shadow
        );
    }

    #[test]
    fn policy_defaults_and_validation() {
        let p = Policy::new("task_a", "cli");
        assert_eq!(p.mode, Mode::Off);
        assert_eq!(p.window, 50);
        assert!(p.validate().is_ok());
        let mut bad = p.clone();
        bad.agreement_threshold = 1.5;
        assert!(bad.validate().is_err());
        let mut bad = p.clone();
        bad.window = 0;
        assert!(bad.validate().is_err());
        let mut bad = p.clone();
        bad.shadow_sample = f64::NAN;
        assert!(bad.validate().is_err());
        let mut bad = p;
        bad.min_confidence = Some(f64::NEG_INFINITY);
        assert!(bad.validate().is_err());
    }
}
