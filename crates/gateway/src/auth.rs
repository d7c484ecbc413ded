//! API-key authentication with a short-lived cache, so the hot path never touches the database
//! and a revoked key stops working within [`CACHE_TTL`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use downshift_store::{Permission, Role, Store, hash_api_key};
use http::HeaderMap;

use crate::GatewayError;

pub const CACHE_TTL: Duration = Duration::from_secs(2);

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The id of the API key presented (`None`: authentication is off and no key was sent).
    pub key_id: Option<String>,
    /// What the key may do (admin for the anonymous caller when authentication is off).
    pub role: Role,
    /// Pseudonym of the agent bound to the key.
    pub agent: Option<String>,
}

impl Principal {
    /// Refuses with [`GatewayError::Forbidden`] (naming `action`) unless the role allows `p`.
    pub fn require(&self, p: Permission, action: &str) -> Result<(), GatewayError> {
        if self.role.allows(p) {
            Ok(())
        } else {
            Err(GatewayError::Forbidden {
                role: self.role.as_str().into(),
                action: action.into(),
            })
        }
    }

    /// Who this is in the audit trail: `key:<id>`, or `anonymous`.
    pub fn actor(&self) -> String {
        match &self.key_id {
            Some(id) => format!("key:{id}"),
            None => "anonymous".into(),
        }
    }
}

struct Cached {
    principal: Option<Principal>,
    at: Instant,
}

pub struct Auth {
    store: Arc<dyn Store>,
    required: bool,
    cache: RwLock<HashMap<Vec<u8>, Cached>>,
}

/// The key a client sent: `Authorization: Bearer …`, or `api-key` / `x-api-key` as some SDKs do.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    if let Some(v) = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        let key = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
            .unwrap_or(v);
        return Some(key.trim());
    }
    headers
        .get("api-key")
        .or_else(|| headers.get("x-api-key"))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

impl Auth {
    pub fn new(store: Arc<dyn Store>, required: bool) -> Auth {
        Auth {
            store,
            required,
            cache: RwLock::new(HashMap::new()),
        }
    }

    /// Who sent `headers`. A cache miss looks the key up on a blocking thread (the store has
    /// its own connection), so the event loop never waits on the database.
    ///
    /// Without required authentication (`serve --no-auth`) every request is accepted: a known
    /// key still counts as itself (its role and bound agent), while no key, or one downshift does
    /// not know — OpenAI SDKs always send one — is the anonymous administrator.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Principal, GatewayError> {
        let anonymous = || Principal {
            key_id: None,
            role: Role::Admin,
            agent: None,
        };
        let key = match presented_key(headers) {
            Some(k) if !k.is_empty() => k,
            _ if !self.required => return Ok(anonymous()),
            _ => return Err(GatewayError::MissingKey),
        };
        match self.lookup(key).await {
            Err(GatewayError::InvalidKey) if !self.required => Ok(anonymous()),
            other => other,
        }
    }

    /// The principal of a presented key (cached for a short while, revocation included).
    async fn lookup(&self, key: &str) -> Result<Principal, GatewayError> {
        let hash = hash_api_key(key);
        if let Some(hit) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&hash)
            .filter(|c| c.at.elapsed() < CACHE_TTL)
        {
            return hit.principal.clone().ok_or(GatewayError::InvalidKey);
        }
        let store = self.store.clone();
        let lookup = hash.clone();
        let principal = tokio::task::spawn_blocking(move || store.find_api_key(&lookup))
            .await
            .map_err(|e| GatewayError::Internal(format!("key lookup failed: {e}")))?
            .map_err(|e| GatewayError::Internal(format!("key lookup failed: {e}")))?
            .filter(|k| k.revoked_ms.is_none())
            .map(|k| Principal {
                key_id: Some(k.id),
                role: k.role,
                agent: k.agent,
            });
        let mut cache = self.cache.write().unwrap_or_else(|p| p.into_inner());
        if cache.len() > 100_000 {
            // Someone is trying many keys; forget the old answers rather than grow forever.
            cache.clear();
        }
        cache.insert(
            hash,
            Cached {
                principal: principal.clone(),
                at: Instant::now(),
            },
        );
        principal.ok_or(GatewayError::InvalidKey)
    }
}
