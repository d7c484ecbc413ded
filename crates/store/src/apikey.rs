//! API keys and roles.

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// May call the OpenAI-compatible `/v1` endpoints, nothing else.
    Agent,
    /// May read call metadata, scrubbed data and reports; never raw payloads.
    Analyst,
    /// Everything, including raw payloads and key management.
    Admin,
}

/// The capabilities the gateway and the CLI check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Call the OpenAI-compatible `/v1` endpoints.
    CallModels,
    /// Read call metadata, scrubbed data, tasks and reports.
    ReadMetadata,
    /// Read raw (decrypted) request and response payloads; each read is audited.
    ReadRaw,
    /// Create, list and revoke API keys.
    ManageKeys,
    /// Change task routing policies (promote, demote): admins only.
    ManageRoutes,
}

impl Role {
    /// Whether a key with this role has permission `p`.
    pub fn allows(self, p: Permission) -> bool {
        matches!(
            (self, p),
            (Role::Admin, _)
                | (Role::Agent, Permission::CallModels)
                | (Role::Analyst, Permission::ReadMetadata)
        )
    }

    /// The stored and displayed name: `agent`, `analyst` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Agent => "agent",
            Role::Analyst => "analyst",
            Role::Admin => "admin",
        }
    }

    /// The role a name from [`Role::as_str`] stands for; `None` for any other string.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "agent" => Some(Role::Agent),
            "analyst" => Some(Role::Analyst),
            "admin" => Some(Role::Admin),
            _ => None,
        }
    }
}

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A new secret key: `dsk_` and 40 base62 characters (238 bits) from the OS generator.
pub fn generate_api_key() -> String {
    let mut rng = rand::rngs::OsRng;
    let mut key = String::from("dsk_");
    for _ in 0..40 {
        key.push(ALPHABET[rng.gen_range(0..ALPHABET.len())] as char);
    }
    key
}

/// Keys are long random secrets, so a plain SHA-256 is a sufficient one-way hash.
pub fn hash_api_key(key: &str) -> Vec<u8> {
    Sha256::digest(key.as_bytes()).to_vec()
}

/// The one key that `id_or_prefix` (an id, display prefix or name) matched, for revocation:
/// none or several is an error.
pub(crate) fn single_key_match(
    id_or_prefix: &str,
    matches: Vec<crate::ApiKeyRecord>,
) -> crate::Result<crate::ApiKeyRecord> {
    let n = matches.len();
    match <[crate::ApiKeyRecord; 1]>::try_from(matches) {
        Ok([key]) => Ok(key),
        Err(_) if n == 0 => Err(crate::StoreError::NotFound(format!(
            "no API key with id, prefix or name '{id_or_prefix}'"
        ))),
        Err(_) => Err(crate::StoreError::Invalid(format!(
            "'{id_or_prefix}' matches {n} API keys; give the key id"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_grant_what_they_say() {
        assert!(Role::Agent.allows(Permission::CallModels));
        assert!(!Role::Agent.allows(Permission::ReadMetadata));
        assert!(!Role::Analyst.allows(Permission::CallModels));
        assert!(Role::Analyst.allows(Permission::ReadMetadata));
        assert!(!Role::Analyst.allows(Permission::ReadRaw));
        for p in [
            Permission::CallModels,
            Permission::ReadMetadata,
            Permission::ReadRaw,
            Permission::ManageKeys,
        ] {
            assert!(Role::Admin.allows(p));
        }
    }

    #[test]
    fn keys_are_random_and_hash_stably() {
        let (a, b) = (generate_api_key(), generate_api_key());
        assert_ne!(a, b);
        assert_eq!(a.len(), 44);
        assert_eq!(hash_api_key(&a), hash_api_key(&a));
        assert_ne!(hash_api_key(&a), hash_api_key(&b));
    }
}
