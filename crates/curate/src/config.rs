//! The PII policy (`[curate.pii]` in `downshift.toml`). Every field has a default.

use crate::EntityType;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What happens to an entity of a given type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Replace with a consistent placeholder (`<EMAIL_1>`) or surrogate.
    #[default]
    Pseudonymize,
    /// Replace every character with `*` (length kept, no consistency).
    Mask,
    /// Flag the whole call to be dropped from the dataset.
    DropCall,
}

/// How pseudonymised values are rendered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SurrogateMode {
    /// `<PERSON_1>`, `<EMAIL_2>` …
    #[default]
    Placeholder,
    /// A fake value of the same format (valid Luhn, mod-97 …), deterministic per entity.
    Surrogate,
}

/// A user-supplied named regex recogniser.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomRecognizer {
    /// The recogniser's name; an error about its pattern names it.
    pub name: String,
    /// The type its matches get; `CUSTOM` when omitted.
    #[serde(rename = "type", default = "custom_type")]
    pub kind: EntityType,
    /// The regular expression (`regex` crate syntax); every match is an entity.
    pub pattern: String,
}

fn custom_type() -> EntityType {
    EntityType::Custom
}

/// The PII/PHI policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct PiiConfig {
    /// Per-type switch; a type that is not listed is enabled.
    pub enabled: BTreeMap<EntityType, bool>,
    /// Per-type action; a type that is not listed is pseudonymised.
    pub actions: BTreeMap<EntityType, Action>,
    /// Literal values never treated as PII (compared case-insensitively), e.g. the support address.
    pub allow: Vec<String>,
    /// Extra named regex recognisers.
    pub custom: Vec<CustomRecognizer>,
    /// Placeholder or realistic surrogate.
    pub surrogate: SurrogateMode,
}

impl PiiConfig {
    /// Whether a type is switched on.
    pub fn is_enabled(&self, kind: EntityType) -> bool {
        self.enabled.get(&kind).copied().unwrap_or(true)
    }

    /// The action for a type.
    pub fn action(&self, kind: EntityType) -> Action {
        self.actions.get(&kind).copied().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_default() {
        let c: PiiConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c, PiiConfig::default());
        assert!(c.is_enabled(EntityType::Email));
        assert_eq!(c.action(EntityType::ApiKey), Action::Pseudonymize);
    }

    #[test]
    fn parses_full_policy() {
        let c: PiiConfig = serde_json::from_str(
            r#"{"enabled": {"IP_ADDRESS": false},
                "actions": {"PRIVATE_KEY": "drop_call", "EMAIL": "mask"},
                "allow": ["support@acme.com"],
                "custom": [{"name": "employee", "type": "NATIONAL_ID", "pattern": "EMP-\\d{6}"},
                           {"name": "ticket", "pattern": "TCK\\d+"}],
                "surrogate": "surrogate"}"#,
        )
        .unwrap();
        assert!(!c.is_enabled(EntityType::IpAddress));
        assert_eq!(c.action(EntityType::PrivateKey), Action::DropCall);
        assert_eq!(c.action(EntityType::Email), Action::Mask);
        assert_eq!(c.custom[1].kind, EntityType::Custom);
        assert_eq!(c.surrogate, SurrogateMode::Surrogate);
    }
}
