//! Creating API keys, and the first admin key of a fresh data directory.

use crate::{
    ApiKeyRecord, Keyring, Result, Role, Store, StoreError, generate_api_key, hash_api_key, now_ms,
};

/// Creates a key with `role`; returns the secret (shown once, never stored) and its record.
/// `agent`, when given, is pseudonymised before it is stored.
pub fn create_api_key(
    store: &dyn Store,
    keyring: &Keyring,
    role: Role,
    name: &str,
    agent: Option<&str>,
) -> Result<(String, ApiKeyRecord)> {
    let secret = generate_api_key();
    let record = register_api_key(store, keyring, &secret, role, name, agent)?;
    Ok((secret, record))
}

fn register_api_key(
    store: &dyn Store,
    keyring: &Keyring,
    secret: &str,
    role: Role,
    name: &str,
    agent: Option<&str>,
) -> Result<ApiKeyRecord> {
    if name.trim().is_empty() {
        return Err(StoreError::Invalid("an API key needs a name".into()));
    }
    let record = ApiKeyRecord {
        id: uuid::Uuid::now_v7().to_string(),
        name: name.to_owned(),
        role,
        key_hash: hash_api_key(secret),
        prefix: secret.chars().take(12).collect(),
        agent: agent.map(|a| keyring.pseudonym("agent", a)),
        created_ms: now_ms(),
        revoked_ms: None,
    };
    store.create_api_key(&record)?;
    Ok(record)
}

/// Makes sure an admin can get in. With `preset` (from `DOWNSHIFT_ADMIN_KEY`), that key is
/// registered as admin if it is not known yet. Otherwise, when no usable admin key exists, one
/// is created and returned so the caller can show it once.
pub fn bootstrap_admin_key(
    store: &dyn Store,
    keyring: &Keyring,
    preset: Option<&str>,
) -> Result<Option<String>> {
    if let Some(secret) = preset {
        if secret.len() < 16 {
            return Err(StoreError::Invalid(
                "DOWNSHIFT_ADMIN_KEY must be at least 16 characters".into(),
            ));
        }
        return match store.find_api_key(&hash_api_key(secret))? {
            Some(k) if k.revoked_ms.is_some() => Err(StoreError::Invalid(
                "DOWNSHIFT_ADMIN_KEY names a revoked key".into(),
            )),
            Some(k) if k.role != Role::Admin => Err(StoreError::Invalid(format!(
                "DOWNSHIFT_ADMIN_KEY is registered with role '{}', not admin",
                k.role.as_str()
            ))),
            Some(_) => Ok(None),
            None => {
                register_api_key(store, keyring, secret, Role::Admin, "bootstrap-admin", None)?;
                Ok(None)
            }
        };
    }
    let has_admin = store
        .list_api_keys()?
        .iter()
        .any(|k| k.role == Role::Admin && k.revoked_ms.is_none());
    if has_admin {
        return Ok(None);
    }
    let (secret, _) = create_api_key(store, keyring, Role::Admin, "bootstrap-admin", None)?;
    Ok(Some(secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_creates_one_admin_key_once() {
        crate::backends::each_backend("bootstrap_creates_one_admin_key_once", |b| {
            let (ring, _) = Keyring::load_or_create(&b.dir.path().join("k.json")).unwrap();
            let store = b.open();
            let key = bootstrap_admin_key(store.as_ref(), &ring, None)
                .unwrap()
                .unwrap();
            assert!(key.starts_with("dsk_"));
            assert!(
                bootstrap_admin_key(store.as_ref(), &ring, None)
                    .unwrap()
                    .is_none()
            );
            let found = store.find_api_key(&hash_api_key(&key)).unwrap().unwrap();
            assert_eq!(found.role, Role::Admin);
        });
    }

    #[test]
    fn a_preset_admin_key_is_registered() {
        crate::backends::each_backend("a_preset_admin_key_is_registered", |b| {
            let (ring, _) = Keyring::load_or_create(&b.dir.path().join("k.json")).unwrap();
            let store = b.open();
            assert!(bootstrap_admin_key(store.as_ref(), &ring, Some("short")).is_err());
            let preset = "dsk_preset_admin_key_for_tests";
            assert!(
                bootstrap_admin_key(store.as_ref(), &ring, Some(preset))
                    .unwrap()
                    .is_none()
            );
            assert!(
                bootstrap_admin_key(store.as_ref(), &ring, Some(preset))
                    .unwrap()
                    .is_none()
            );
            assert_eq!(store.list_api_keys().unwrap().len(), 1);
            store.revoke_api_key("bootstrap-admin").unwrap();
            assert!(
                bootstrap_admin_key(store.as_ref(), &ring, Some(preset))
                    .unwrap_err()
                    .to_string()
                    .contains("revoked")
            );
        });
    }
}
