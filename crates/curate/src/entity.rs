//! Entity types and detected entities.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The kinds of personal, health and secret data the detector knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EntityType {
    /// A person's name.
    Person,
    /// An email address.
    Email,
    /// A phone number, international or in a national plan.
    Phone,
    /// A payment card number (Luhn check and issuer range).
    CreditCard,
    /// An IBAN (per-country length and mod-97 check).
    Iban,
    /// A US Social Security number.
    Ssn,
    /// An IPv4 or IPv6 address.
    IpAddress,
    /// A MAC (hardware) address.
    MacAddress,
    /// A URL that carries a user name and password.
    UrlWithCredentials,
    /// An API key or token: a known provider's key shape, or a high-entropy value after a cue.
    ApiKey,
    /// A date next to a birth cue ("born", "DOB", …).
    DateOfBirth,
    /// A street address (house number, street, optional unit, postcode and city).
    StreetAddress,
    /// A medical record number, found after its cue.
    MedicalRecordNumber,
    /// A health-plan (insurance member) id, found after its cue.
    HealthPlanId,
    /// A national id other than a US SSN (checksummed numbers such as the Dutch BSN or the
    /// Italian codice fiscale, or an id after a cue).
    NationalId,
    /// A PEM private-key block.
    PrivateKey,
    /// A JSON Web Token.
    Jwt,
    /// A password after a password cue.
    Password,
    /// Produced by custom recognisers that do not name a built-in type.
    Custom,
}

impl EntityType {
    /// Every type, in a stable order.
    pub const ALL: [EntityType; 19] = [
        EntityType::Person,
        EntityType::Email,
        EntityType::Phone,
        EntityType::CreditCard,
        EntityType::Iban,
        EntityType::Ssn,
        EntityType::IpAddress,
        EntityType::MacAddress,
        EntityType::UrlWithCredentials,
        EntityType::ApiKey,
        EntityType::DateOfBirth,
        EntityType::StreetAddress,
        EntityType::MedicalRecordNumber,
        EntityType::HealthPlanId,
        EntityType::NationalId,
        EntityType::PrivateKey,
        EntityType::Jwt,
        EntityType::Password,
        EntityType::Custom,
    ];

    /// The wire name, e.g. `CREDIT_CARD`.
    pub fn as_str(self) -> &'static str {
        match self {
            EntityType::Person => "PERSON",
            EntityType::Email => "EMAIL",
            EntityType::Phone => "PHONE",
            EntityType::CreditCard => "CREDIT_CARD",
            EntityType::Iban => "IBAN",
            EntityType::Ssn => "SSN",
            EntityType::IpAddress => "IP_ADDRESS",
            EntityType::MacAddress => "MAC_ADDRESS",
            EntityType::UrlWithCredentials => "URL_WITH_CREDENTIALS",
            EntityType::ApiKey => "API_KEY",
            EntityType::DateOfBirth => "DATE_OF_BIRTH",
            EntityType::StreetAddress => "STREET_ADDRESS",
            EntityType::MedicalRecordNumber => "MEDICAL_RECORD_NUMBER",
            EntityType::HealthPlanId => "HEALTH_PLAN_ID",
            EntityType::NationalId => "NATIONAL_ID",
            EntityType::PrivateKey => "PRIVATE_KEY",
            EntityType::Jwt => "JWT",
            EntityType::Password => "PASSWORD",
            EntityType::Custom => "CUSTOM",
        }
    }

    /// Position in [`EntityType::ALL`]; handy for dense per-type arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for EntityType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EntityType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EntityType::ALL
            .iter()
            .copied()
            .find(|t| t.as_str().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown entity type `{s}`"))
    }
}

/// One detected entity: a UTF-8 byte range of the input and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    /// What the entity is (serialised as `type`).
    #[serde(rename = "type")]
    pub kind: EntityType,
    /// UTF-8 byte offset of its first byte in the text searched.
    pub start: usize,
    /// UTF-8 byte offset just past its last byte (exclusive).
    pub end: usize,
    /// The entity's text: `text[start..end]` of the input.
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for t in EntityType::ALL {
            assert_eq!(t.as_str().parse::<EntityType>().unwrap(), t);
            let json = serde_json::to_string(&t).unwrap();
            assert_eq!(json, format!("\"{}\"", t.as_str()));
        }
        for (i, t) in EntityType::ALL.iter().enumerate() {
            assert_eq!(t.index(), i);
        }
    }
}
