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
    /// The text with every entity replaced.
    pub text: String,
    /// What was found and what the policy asked for.
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
        f.debug_struct("Scrubber")
            .field("detector", &self.detector)
            .finish_non_exhaustive()
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
        Ok(Scrubber {
            detector,
            mac: Arc::new(mac),
        })
    }

    /// The detector (and with it the policy) entities are found with.
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
        Scrubbed {
            text,
            report: ep.into_report(),
        }
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
        EntityType::CreditCard
        | EntityType::Iban
        | EntityType::Ssn
        | EntityType::NationalId
        | EntityType::MedicalRecordNumber
        | EntityType::HealthPlanId
        | EntityType::MacAddress => v
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

    /// The counts of the whole episode, ending it.
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
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|x| self.scrub_value(key, x, depth + 1))
                    .collect(),
            ),
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
            // JSON encoded inside a string (tool-call `arguments`): scrub it as JSON.
            if let Ok(inner @ (Value::Object(_) | Value::Array(_))) =
                serde_json::from_str::<Value>(s)
            {
                let out = self.scrub_value(None, &inner, depth + 1);
                return serde_json::to_string(&out).unwrap_or_default();
            }
        }
        let ents = match key {
            Some(k) => self.scrubber.detector.detect_with_key(k, s),
            None => self.scrubber.detector.detect(s),
        };
        self.apply(s, &ents)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::PiiConfig;
    use serde_json::json;

    fn scrubber(cfg: &str) -> Scrubber {
        let cfg: PiiConfig = serde_json::from_str(cfg).unwrap();
        Scrubber::new(Detector::new(&cfg).unwrap(), b"test-key").unwrap()
    }

    fn keys(v: &Value) -> Vec<String> {
        match v {
            Value::Object(m) => m
                .iter()
                .flat_map(|(k, x)| std::iter::once(k.clone()).chain(keys(x)))
                .collect(),
            Value::Array(a) => a.iter().flat_map(keys).collect(),
            _ => vec![],
        }
    }

    #[test]
    fn empty_key_is_rejected() {
        let d = Detector::new(&PiiConfig::default()).unwrap();
        assert!(matches!(Scrubber::new(d, b""), Err(CurateError::EmptyKey)));
    }

    #[test]
    fn placeholders_are_consistent_within_an_episode() {
        let s = scrubber("{}");
        let mut ep = s.episode();
        let a = ep.scrub_text("Hi Sarah, mail John.Smith@Example.com or jane@example.com.");
        let b = ep.scrub_text("Sarah said john.smith@example.com is right.");
        assert_eq!(a, "Hi <PERSON_1>, mail <EMAIL_1> or <EMAIL_2>.");
        assert_eq!(b, "<PERSON_1> said <EMAIL_1> is right.");
        assert_eq!(ep.report().entities[&EntityType::Email], 3);
        assert_eq!(ep.report().entities[&EntityType::Person], 2);
        // A new episode numbers from 1 again.
        let mut ep2 = s.episode();
        assert_eq!(ep2.scrub_text("jane@example.com"), "<EMAIL_1>");
    }

    #[test]
    fn phone_spellings_share_a_placeholder() {
        let s = scrubber("{}");
        let mut ep = s.episode();
        let t = ep.scrub_text("call +49 30 12345678 or 0049 30 12345678");
        assert_eq!(t, "call <PHONE_1> or <PHONE_1>");
    }

    #[test]
    fn surrogates_are_deterministic_and_valid() {
        let s = scrubber(r#"{"surrogate": "surrogate"}"#);
        let text =
            "card 4111 1111 1111 1111, IBAN DE89 3704 0044 0532 0130 00, mail jane@example.com";
        let a = s.scrub_text(text).text;
        let b = s.scrub_text(text).text;
        assert_eq!(a, b);
        assert!(!a.contains("4111 1111 1111 1111") && !a.contains("jane@example.com"));
        let d = Detector::new(&PiiConfig::default()).unwrap();
        let kinds: Vec<_> = d.detect(&a).into_iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![EntityType::CreditCard, EntityType::Iban, EntityType::Email],
            "{a}"
        );
        let other = Scrubber::new(d, b"another key").unwrap();
        let cfg_other = other.scrub_text(text).text;
        assert_eq!(
            cfg_other,
            "card <CREDIT_CARD_1>, IBAN <IBAN_1>, mail <EMAIL_1>"
        );
    }

    #[test]
    fn mask_and_drop_actions() {
        let s = scrubber(r#"{"actions": {"EMAIL": "mask", "API_KEY": "drop_call"}}"#);
        let out = s.scrub_text("mail jane@example.com key AKIAIOSFODNN7EXAMPLE");
        assert_eq!(out.text, "mail **************** key <API_KEY_1>");
        assert!(out.report.drop_call);
        assert!(out.report.drop_reasons.contains(&EntityType::ApiKey));
        let clean = s.scrub_text("nothing here");
        assert!(!clean.report.drop_call);
        assert_eq!(clean.report.total(), 0);
    }

    #[test]
    fn tool_call_arguments_stay_valid_json_with_the_same_keys() {
        let s = scrubber("{}");
        let args = r#"{"customer_name": "Ruprecht Kesselring", "email": "r.kesselring@example.de", "phone": "+49 30 12345678", "address": {"street": "Hauptstraße 5", "city": "Berlin"}, "tags": ["vip", "ssn 536-22-1234"], "quantity": 3, "dob": "1985-03-12", "note": "quote \"x\" and \\ backslash"}"#;
        let call = json!({
            "role": "assistant",
            "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "create_customer", "arguments": args}}]
        });
        let mut ep = s.episode();
        let out = ep.scrub_json(&call);
        assert_eq!(keys(&out), keys(&call));
        let new_args = out["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap();
        let parsed: Value = serde_json::from_str(new_args).unwrap();
        let orig: Value = serde_json::from_str(args).unwrap();
        assert_eq!(keys(&parsed), keys(&orig));
        assert_eq!(parsed["customer_name"], "<PERSON_1>");
        assert_eq!(parsed["email"], "<EMAIL_1>");
        assert_eq!(parsed["phone"], "<PHONE_1>");
        assert_eq!(parsed["address"]["street"], "<STREET_ADDRESS_1>");
        assert_eq!(parsed["tags"][1], "ssn <SSN_1>");
        assert_eq!(parsed["dob"], "<DATE_OF_BIRTH_1>");
        assert_eq!(parsed["quantity"], 3);
        assert_eq!(parsed["note"], "quote \"x\" and \\ backslash");
        assert_eq!(out["tool_calls"][0]["function"]["name"], "create_customer");
    }

    #[test]
    fn pii_numbers_under_telling_keys_become_placeholders() {
        let s = scrubber("{}");
        let mut ep = s.episode();
        let out = ep.scrub_json(&json!({"card_number": 4111111111111111u64, "count": 4111111111111112u64, "ssn": 536221234, "id": 536221234}));
        assert_eq!(out["card_number"], "<CREDIT_CARD_1>");
        assert_eq!(out["count"], 4111111111111112u64);
        assert_eq!(out["id"], 536221234);
        assert_eq!(out["ssn"], "<SSN_1>");
    }

    #[test]
    fn reports_merge() {
        let s = scrubber("{}");
        let mut a = s.scrub_text("jane@example.com").report;
        let b = s.scrub_text("bob@example.com and 10.0.0.1").report;
        a.merge(&b);
        assert_eq!(a.entities[&EntityType::Email], 2);
        assert_eq!(a.total(), 3);
    }
}
