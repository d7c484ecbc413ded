//! Consistent pseudonymisation of text and JSON.

use crate::surrogate::surrogate;
use crate::{Action, CurateError, Detector, Entity, EntityType, SurrogateMode};
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::Value;
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

type HmacSha256 = Hmac<Sha256>;

/// Counts of what a scrub found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ScrubReport {
    /// Entities replaced (or flagged), per type.
    pub entities: BTreeMap<EntityType, u64>,
    /// Some entity's action was `drop_call`: the call must not enter the dataset.
    pub drop_call: bool,
    /// The types that asked for the drop.
    pub drop_reasons: BTreeSet<EntityType>,
}

impl ScrubReport {
    /// Add another report's counts to this one.
    pub fn merge(&mut self, other: &ScrubReport) {
        for (k, v) in &other.entities {
            *self.entities.entry(*k).or_default() += v;
        }
        self.drop_call |= other.drop_call;
        self.drop_reasons.extend(other.drop_reasons.iter().copied());
    }

    /// Entities over all types.
    pub fn total(&self) -> u64 {
        self.entities.values().sum()
    }
}

/// A scrubbed text and its report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrubbed {
    pub text: String,
    pub report: ScrubReport,
}

/// Replaces detected entities. Holds the detector and the secret pseudonymisation key.
/// Cheap to clone.
#[derive(Clone)]
pub struct Scrubber {
    detector: Detector,
    mac: Arc<HmacSha256>,
}

impl std::fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scrubber").field("detector", &self.detector).finish_non_exhaustive()
    }
}

impl Scrubber {
    /// `key` is the secret that keys the HMAC of each entity value; it is never stored with the
    /// output, so a placeholder cannot be mapped back to its value without it.
    pub fn new(detector: Detector, key: &[u8]) -> Result<Self, CurateError> {
        if key.is_empty() {
            return Err(CurateError::EmptyKey);
        }
        let mac = HmacSha256::new_from_slice(key).map_err(|_| CurateError::EmptyKey)?;
        Ok(Scrubber { detector, mac: Arc::new(mac) })
    }

    pub fn detector(&self) -> &Detector {
        &self.detector
    }

    /// Start an episode: placeholders are consistent for every text and JSON scrubbed in it.
    pub fn episode(&self) -> Episode {
        Episode {
            scrubber: self.clone(),
            ids: HashMap::new(),
            next: [0; EntityType::ALL.len()],
            report: ScrubReport::default(),
        }
    }

    /// Scrub one text in its own episode.
    pub fn scrub_text(&self, text: &str) -> Scrubbed {
        let mut ep = self.episode();
        let text = ep.scrub_text(text);
        Scrubbed { text, report: ep.into_report() }
    }

    fn digest(&self, kind: EntityType, value: &str) -> [u8; 32] {
        let mut mac = (*self.mac).clone();
        mac.update(kind.as_str().as_bytes());
        mac.update(&[0]);
        mac.update(normalise(kind, value).as_bytes());
        mac.finalize().into_bytes().into()
    }
}

/// The normal form two spellings of the same value share.
fn normalise(kind: EntityType, v: &str) -> String {
    let v = v.trim();
    match kind {
        EntityType::Phone => {
            let d: String = v.chars().filter(char::is_ascii_digit).collect();
            d.strip_prefix("00").map(str::to_string).unwrap_or(d)
        }
        EntityType::CreditCard | EntityType::Iban | EntityType::Ssn | EntityType::NationalId
        | EntityType::MedicalRecordNumber | EntityType::HealthPlanId | EntityType::MacAddress => v
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .collect(),
        EntityType::Person | EntityType::StreetAddress => v
            .split_whitespace()
            .map(|w| w.trim_matches(['.', ',']).to_lowercase())
            .collect::<Vec<_>>()
            .join(" "),
        EntityType::Email | EntityType::IpAddress => v.to_lowercase(),
        _ => v.to_string(),
    }
}

/// One episode (a call, or a multi-call agent episode): the pseudonym mapping lives here, in
/// memory only, keyed by HMAC digests — never the values in clear.
#[derive(Debug)]
pub struct Episode {
    scrubber: Scrubber,
    ids: HashMap<[u8; 16], u32>,
    next: [u32; EntityType::ALL.len()],
    report: ScrubReport,
}

impl Episode {
    /// Scrub a text; entities become `<TYPE_n>` placeholders (or surrogates, or masks).
    pub fn scrub_text(&mut self, text: &str) -> String {
        let ents = self.scrubber.detector.detect(text);
        self.apply(text, &ents)
    }

    /// Scrub every string value of a JSON document (recursively, also JSON encoded inside
    /// strings such as tool-call `arguments`); keys and structure are kept.
    pub fn scrub_json(&mut self, value: &Value) -> Value {
        self.scrub_value(None, value, 0)
    }

    /// The counts so far.
    pub fn report(&self) -> &ScrubReport {
        &self.report
    }

    pub fn into_report(self) -> ScrubReport {
        self.report
    }

    /// The replacement for one entity (and bookkeeping).
    pub fn replacement(&mut self, e: &Entity) -> String {
        let det = &self.scrubber.detector;
        *self.report.entities.entry(e.kind).or_default() += 1;
        let action = det.config().action(e.kind);
        match action {
            Action::Mask => return "*".repeat(e.text.chars().count()),
            Action::DropCall => {
                self.report.drop_call = true;
                self.report.drop_reasons.insert(e.kind);
            }
            Action::Pseudonymize => {}
        }
        let digest = self.scrubber.digest(e.kind, &e.text);
        match det.config().surrogate {
            SurrogateMode::Surrogate => surrogate(e.kind, &e.text, &digest, det.lexicon()),
            SurrogateMode::Placeholder => {
                let mut id = [0u8; 16];
                id.copy_from_slice(&digest[..16]);
                let n = match self.ids.get(&id) {
                    Some(n) => *n,
                    None => {
                        let slot = &mut self.next[e.kind.index()];
                        *slot += 1;
                        self.ids.insert(id, *slot);
                        *slot
                    }
                };
                format!("<{}_{}>", e.kind.as_str(), n)
            }
        }
    }

    fn apply(&mut self, text: &str, ents: &[Entity]) -> String {
        if ents.is_empty() {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len() + 16 * ents.len());
        let mut last = 0;
        for e in ents {
            out.push_str(&text[last..e.start]);
            let r = self.replacement(e);
            out.push_str(&r);
            last = e.end;
        }
        out.push_str(&text[last..]);
        out
    }

    fn scrub_value(&mut self, key: Option<&str>, v: &Value, depth: usize) -> Value {
        match v {
            Value::String(s) => Value::String(self.scrub_string(key, s, depth)),
            Value::Array(a) => Value::Array(a.iter().map(|x| self.scrub_value(key, x, depth + 1)).collect()),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| (k.clone(), self.scrub_value(Some(k), x, depth + 1)))
                    .collect(),
            ),
            Value::Number(n) => {
                let Some(k) = key else { return v.clone() };
                let s = n.to_string();
                let ents = self.scrubber.detector.detect_with_key(k, &s);
                match ents.as_slice() {
                    [e] if e.start == 0 && e.end == s.len() => Value::String(self.replacement(e)),
                    _ => v.clone(),
                }
            }
            _ => v.clone(),
        }
    }

    fn scrub_string(&mut self, key: Option<&str>, s: &str, depth: usize) -> String {
        let t = s.trim_start();
        if depth < 16 && (t.starts_with('{') || t.starts_with('[')) {
            if let Ok(inner) = serde_json::from_str::<Value>(s) {
                if inner.is_object() || inner.is_array() {
                    let out = self.scrub_value(None, &inner, depth + 1);
                    return serde_json::to_string(&out).unwrap_or_default();
                }
            }
        }
        let ents = match key {
            Some(k) => self.scrubber.detector.detect_with_key(k, s),
            None => self.scrubber.detector.detect(s),
        };
        self.apply(s, &ents)
    }
}
