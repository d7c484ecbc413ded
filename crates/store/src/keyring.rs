//! The key file: AES-256-GCM data keys (one active for new writes, older ones kept to read old
//! records) and the HMAC key that turns agent and episode identifiers into pseudonyms.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use aes_gcm::aead::{Aead, AeadInPlace, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hmac::{Hmac, Mac};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{CallMeta, CallPayload, CallRecord, Result, SealedCall, SealedExample, StoreError};

const PAYLOAD_VERSION: u8 = 1;
/// Bytes the AES-GCM tag adds to a ciphertext.
pub(crate) const TAG_LEN: usize = 16;

#[derive(Serialize, Deserialize)]
struct KeyFile {
    version: u32,
    hmac_key: String,
    active_data_key: String,
    data_keys: Vec<DataKeyEntry>,
}

#[derive(Serialize, Deserialize)]
struct DataKeyEntry {
    id: String,
    key: String,
    created: String,
}

/// What `keys` commands show about the key file (never the keys themselves).
#[derive(Debug, Clone, Serialize)]
pub struct KeyringInfo {
    /// The key file.
    pub path: PathBuf,
    /// The id of the data key new records are sealed with.
    pub active_data_key: String,
    /// The ids of every data key the file holds, oldest first (the active one included).
    pub data_keys: Vec<String>,
}

/// The keys of one key file, loaded: seals and opens payloads and dataset examples, and makes
/// pseudonyms. Its `Debug` output never shows key material.
pub struct Keyring {
    path: PathBuf,
    hmac: Hmac<Sha256>,
    active: String,
    ciphers: BTreeMap<String, Aes256Gcm>,
    file: KeyFile,
    /// The version of the file on disk these keys were read from (or written as).
    stamp: Option<KeyFileStamp>,
}

/// What tells one version of the key file on disk from another: a rotation replaces the file
/// (a new inode, a new modification time), and so does copying a new file over it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyFileStamp {
    modified: Option<SystemTime>,
    inode: u64,
    len: u64,
}

impl KeyFileStamp {
    /// The stamp of the file at `path` now; `None` when it cannot be read.
    pub fn of(path: &Path) -> Option<KeyFileStamp> {
        let m = fs::metadata(path).ok()?;
        Some(KeyFileStamp {
            modified: m.modified().ok(),
            inode: m.ino(),
            len: m.len(),
        })
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Keyring")
            .field("path", &self.path)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut b = [0u8; N];
    rand::rngs::OsRng.fill_bytes(&mut b);
    b
}

fn new_data_key() -> DataKeyEntry {
    DataKeyEntry {
        id: format!("dk-{}", hex::encode(random_bytes::<4>())),
        key: hex::encode(random_bytes::<32>()),
        created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }
}

impl Keyring {
    /// Loads the key file, or creates one (mode 0600) when there is none. The flag says whether
    /// it was created.
    pub fn load_or_create(path: &Path) -> Result<(Keyring, bool)> {
        if path.exists() {
            return Ok((Keyring::load(path)?, false));
        }
        let file = KeyFile {
            version: 1,
            hmac_key: hex::encode(random_bytes::<32>()),
            active_data_key: String::new(),
            data_keys: vec![new_data_key()],
        };
        let mut file = file;
        file.active_data_key = file.data_keys[0].id.clone();
        write_key_file(path, &file)?;
        let mut ring = Keyring::from_file(path, file)?;
        ring.stamp = KeyFileStamp::of(path);
        Ok((ring, true))
    }

    /// Loads an existing key file.
    pub fn load(path: &Path) -> Result<Keyring> {
        let bad = |reason: String| StoreError::KeyFile {
            path: path.to_owned(),
            reason,
        };
        // Stamped before it is read: a file replaced in between is read again on the next check.
        let stamp = KeyFileStamp::of(path);
        let text = fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                bad("not found (the first `downshift serve` or `import` creates it)".into())
            } else {
                bad(e.to_string())
            }
        })?;
        if let Ok(meta) = fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "key file is readable by group or others; chmod 600 it");
        }
        let file: KeyFile = serde_json::from_str(&text)
            .map_err(|e| bad(format!("not a downshift key file: {e}")))?;
        let mut ring = Keyring::from_file(path, file)?;
        ring.stamp = stamp;
        Ok(ring)
    }

    fn from_file(path: &Path, file: KeyFile) -> Result<Keyring> {
        let bad = |reason: String| StoreError::KeyFile {
            path: path.to_owned(),
            reason,
        };
        if file.version != 1 {
            return Err(bad(format!(
                "unsupported key file version {}",
                file.version
            )));
        }
        let hmac_key =
            hex::decode(&file.hmac_key).map_err(|_| bad("hmac_key is not hex".into()))?;
        if hmac_key.len() < 32 {
            return Err(bad("hmac_key must be at least 32 bytes".into()));
        }
        let mut ciphers = BTreeMap::new();
        for entry in &file.data_keys {
            let key = hex::decode(&entry.key)
                .ok()
                .filter(|k| k.len() == 32)
                .ok_or_else(|| bad(format!("data key {} is not 32 hex-encoded bytes", entry.id)))?;
            let cipher = Aes256Gcm::new_from_slice(&key)
                .map_err(|_| bad(format!("data key {} is unusable", entry.id)))?;
            ciphers.insert(entry.id.clone(), cipher);
        }
        if !ciphers.contains_key(&file.active_data_key) {
            return Err(bad(format!(
                "active data key {} is not among the data keys",
                file.active_data_key
            )));
        }
        let hmac = <Hmac<Sha256> as Mac>::new_from_slice(&hmac_key)
            .map_err(|_| bad("hmac_key is unusable".into()))?;
        Ok(Keyring {
            path: path.to_owned(),
            hmac,
            active: file.active_data_key.clone(),
            ciphers,
            file,
            stamp: None,
        })
    }

    /// Adds a new data key and makes it the active one for new writes; older keys stay so old
    /// records remain readable. The file is replaced atomically.
    pub fn rotate(&mut self) -> Result<String> {
        let entry = new_data_key();
        let id = entry.id.clone();
        let mut file = KeyFile {
            version: 1,
            hmac_key: self.file.hmac_key.clone(),
            active_data_key: id.clone(),
            data_keys: std::mem::take(&mut self.file.data_keys),
        };
        file.data_keys.push(entry);
        write_key_file(&self.path, &file)?;
        *self = Keyring::from_file(&self.path, file)?;
        self.stamp = KeyFileStamp::of(&self.path);
        Ok(id)
    }

    /// What the key file holds, without the keys.
    pub fn info(&self) -> KeyringInfo {
        KeyringInfo {
            path: self.path.clone(),
            active_data_key: self.active.clone(),
            data_keys: self.file.data_keys.iter().map(|k| k.id.clone()).collect(),
        }
    }

    /// The key file these keys came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The version of the key file these keys were read from.
    pub fn stamp(&self) -> Option<KeyFileStamp> {
        self.stamp
    }

    /// The pseudonym of an identifier of the given kind (`agent`, `episode`, …): stable for one
    /// key file, unlinkable to the raw value without it.
    pub fn pseudonym(&self, kind: &str, raw: &str) -> String {
        let mut mac = self.hmac.clone();
        mac.update(kind.as_bytes());
        mac.update(&[0]);
        mac.update(raw.as_bytes());
        let tag = mac.finalize().into_bytes();
        let prefix = match kind {
            "agent" => "agt",
            "episode" => "eps",
            _ => "pse",
        };
        format!("{prefix}_{}", hex::encode(&tag[..12]))
    }

    /// Encrypts `plain` under the active data key with `aad` bound in as associated data.
    /// Returns (key id, nonce, ciphertext).
    pub fn seal_blob(&self, aad: &str, plain: &[u8]) -> Result<(String, Vec<u8>, Vec<u8>)> {
        let mut buf = Vec::with_capacity(plain.len() + TAG_LEN);
        buf.extend_from_slice(plain);
        let (key_id, nonce) = self.seal_in_place(aad, &mut buf)?;
        Ok((key_id, nonce, buf))
    }

    /// Encrypts `buf` in place (the tag is appended: leave [`TAG_LEN`] bytes of spare
    /// capacity to avoid a reallocation). Returns (key id, nonce).
    fn seal_in_place(&self, aad: &str, buf: &mut Vec<u8>) -> Result<(String, Vec<u8>)> {
        let cipher = self
            .ciphers
            .get(&self.active)
            .ok_or_else(|| StoreError::UnknownDataKey(self.active.clone()))?;
        // A fresh random nonce per record from the thread-local CSPRNG (seeded from the OS),
        // which avoids a system call per record on the write path.
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        cipher
            .encrypt_in_place(Nonce::from_slice(&nonce), aad.as_bytes(), buf)
            .map_err(|_| StoreError::Corrupt {
                id: aad.to_owned(),
                reason: "encryption failed".into(),
            })?;
        Ok((self.active.clone(), nonce.to_vec()))
    }

    /// Decrypts one example of the dataset `dataset_id` (its JSON record).
    pub fn open_example(&self, dataset_id: &str, e: &SealedExample) -> Result<Vec<u8>> {
        let aad = SealedExample::aad(dataset_id, e.seq);
        self.open_blob(&aad, &e.key_id, &e.nonce, &e.ciphertext)
    }

    /// Decrypts what [`Keyring::seal_blob`] sealed with the same `aad`.
    pub fn open_blob(
        &self,
        aad: &str,
        key_id: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<Vec<u8>> {
        let cipher = self
            .ciphers
            .get(key_id)
            .ok_or_else(|| StoreError::UnknownDataKey(key_id.to_owned()))?;
        if nonce.len() != 12 {
            return Err(StoreError::Corrupt {
                id: aad.to_owned(),
                reason: "bad nonce length".into(),
            });
        }
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| StoreError::Decrypt(aad.to_owned()))
    }

    /// Encrypts a call's payload under the active data key. The call id is bound in as
    /// associated data, so a payload moved to another row does not decrypt.
    pub fn seal(&self, record: &CallRecord) -> Result<SealedCall> {
        self.seal_payload(record.meta.clone(), &record.payload)
            .map_err(|(_, e)| e)
    }

    /// [`Keyring::seal`], taking the record: its metadata moves into the sealed call. The
    /// error comes with the call's id.
    pub fn seal_owned(
        &self,
        record: CallRecord,
    ) -> std::result::Result<SealedCall, (String, StoreError)> {
        self.seal_payload(record.meta, &record.payload)
    }

    fn seal_payload(
        &self,
        meta: CallMeta,
        p: &CallPayload,
    ) -> std::result::Result<SealedCall, (String, StoreError)> {
        // One buffer: the plain payload, then encrypted in place with room for the tag.
        let mut buf = Vec::with_capacity(9 + p.request.len() + p.response.len() + TAG_LEN);
        buf.push(PAYLOAD_VERSION);
        buf.extend_from_slice(&(p.request.len() as u32).to_le_bytes());
        buf.extend_from_slice(&p.request);
        buf.extend_from_slice(&(p.response.len() as u32).to_le_bytes());
        buf.extend_from_slice(&p.response);
        match self.seal_in_place(&meta.id, &mut buf) {
            Ok((key_id, nonce)) => Ok(SealedCall {
                meta,
                key_id,
                nonce,
                ciphertext: buf,
            }),
            Err(e) => Err((meta.id, e)),
        }
    }

    /// Decrypts a sealed call's payload.
    pub fn open(&self, sealed: &SealedCall) -> Result<CallPayload> {
        let id = &sealed.meta.id;
        let plain = self.open_blob(id, &sealed.key_id, &sealed.nonce, &sealed.ciphertext)?;
        let corrupt = |reason: &str| StoreError::Corrupt {
            id: id.clone(),
            reason: reason.into(),
        };
        if plain.first() != Some(&PAYLOAD_VERSION) {
            return Err(corrupt("unknown payload version"));
        }
        let mut rest = &plain[1..];
        let mut take = || -> Result<Vec<u8>> {
            if rest.len() < 4 {
                return Err(corrupt("truncated payload"));
            }
            let n = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            if rest.len() < 4 + n {
                return Err(corrupt("truncated payload"));
            }
            let out = rest[4..4 + n].to_vec();
            rest = &rest[4 + n..];
            Ok(out)
        };
        let request = take()?;
        let response = take()?;
        Ok(CallPayload { request, response })
    }

    /// A secret derived from the key file for one purpose (e.g. keying the PII pseudonyms), so
    /// no second secret has to be managed and none is ever stored in clear.
    pub fn derive_secret(&self, purpose: &str) -> Vec<u8> {
        let mut mac = self.hmac.clone();
        mac.update(b"downshift-derive\0");
        mac.update(purpose.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
}

/// Re-reads the key file of `ring` when it changed on disk since it was loaded (a
/// `keys rotate-data-key` run by another process, or a new file copied over it), so that new
/// records are sealed with the newest data key and records sealed with it elsewhere can be
/// opened, without a restart. Returns the active data key id when it reloaded; on an error
/// (a file that no longer loads) the keys in use stay.
pub fn reload_keyring(ring: &RwLock<Keyring>) -> Result<Option<String>> {
    let (path, loaded) = {
        let k = ring.read().unwrap_or_else(|p| p.into_inner());
        (k.path.clone(), k.stamp)
    };
    if KeyFileStamp::of(&path) == loaded {
        return Ok(None);
    }
    let fresh = Keyring::load(&path)?;
    let active = fresh.active.clone();
    *ring.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    Ok(Some(active))
}

/// [`Keyring::open`] through a shared keyring; a payload sealed with a data key this keyring
/// does not hold yet (rotated elsewhere moments ago) is opened after re-reading the key file.
pub fn open_reloading(ring: &RwLock<Keyring>, sealed: &SealedCall) -> Result<CallPayload> {
    let first = ring.read().unwrap_or_else(|p| p.into_inner()).open(sealed);
    match first {
        Err(StoreError::UnknownDataKey(_)) if reload_keyring(ring)?.is_some() => {
            ring.read().unwrap_or_else(|p| p.into_inner()).open(sealed)
        }
        other => other,
    }
}

/// Writes the key file with mode 0600 via a temporary file and an atomic rename.
fn write_key_file(path: &Path, file: &KeyFile) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        fs::create_dir_all(dir).map_err(|e| StoreError::io(dir, e))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let text = serde_json::to_string_pretty(file).map_err(|e| StoreError::KeyFile {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let write = || -> std::io::Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        StoreError::io(path, e)
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::{CallMeta, Source};

    pub(crate) fn record(id: &str, prompt: &str) -> CallRecord {
        CallRecord {
            meta: CallMeta::new(id, 1, "m", Source::Gateway),
            payload: CallPayload {
                request: prompt.as_bytes().to_vec(),
                response: b"{}".to_vec(),
            },
        }
    }

    #[test]
    fn created_with_mode_0600_and_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let (ring, created) = Keyring::load_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let rec = record("id1", "secret prompt");
        let sealed = ring.seal(&rec).unwrap();
        assert!(!sealed.ciphertext.windows(6).any(|w| w == b"secret"));
        assert_eq!(ring.open(&sealed).unwrap(), rec.payload);
        let (again, created) = Keyring::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(again.open(&sealed).unwrap(), rec.payload);
    }

    #[test]
    fn rotation_keeps_old_records_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let (mut ring, _) = Keyring::load_or_create(&path).unwrap();
        let old = ring.seal(&record("a", "x")).unwrap();
        let new_id = ring.rotate().unwrap();
        let new = ring.seal(&record("b", "y")).unwrap();
        assert_eq!(new.key_id, new_id);
        assert_ne!(old.key_id, new.key_id);
        let reloaded = Keyring::load(&path).unwrap();
        assert_eq!(reloaded.open(&old).unwrap().request, b"x");
        assert_eq!(reloaded.open(&new).unwrap().request, b"y");
        assert_eq!(reloaded.info().data_keys.len(), 2);
    }

    #[test]
    fn a_rotation_by_another_process_is_picked_up_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.json");
        let (ring, _) = Keyring::load_or_create(&path).unwrap();
        let serving = RwLock::new(ring);
        let old = serving.read().unwrap().seal(&record("a", "x")).unwrap();
        assert_eq!(reload_keyring(&serving).unwrap(), None, "nothing changed");
        // Another process (the CLI, another replica) rotates the shared file.
        let mut cli = Keyring::load(&path).unwrap();
        let new_id = cli.rotate().unwrap();
        let by_cli = cli.seal(&record("b", "y")).unwrap();
        // Sealed elsewhere with the new key: opened here after re-reading the file.
        assert_eq!(open_reloading(&serving, &by_cli).unwrap().request, b"y");
        assert_eq!(serving.read().unwrap().info().active_data_key, new_id);
        let here = serving.read().unwrap().seal(&record("c", "z")).unwrap();
        assert_eq!(here.key_id, new_id);
        assert_eq!(open_reloading(&serving, &old).unwrap().request, b"x");
        assert_eq!(reload_keyring(&serving).unwrap(), None);
        // A second rotation, seen by the periodic check.
        let newer = cli.rotate().unwrap();
        assert_eq!(reload_keyring(&serving).unwrap(), Some(newer));
        // A key the file does not hold, and no change on disk: the error names the key.
        let (stranger, _) = Keyring::load_or_create(&dir.path().join("other.json")).unwrap();
        let foreign = stranger.seal(&record("d", "w")).unwrap();
        assert!(matches!(
            open_reloading(&serving, &foreign),
            Err(StoreError::UnknownDataKey(k)) if k == foreign.key_id
        ));
        // A key file that no longer loads: an error, and the keys in use stay.
        fs::write(&path, "not json").unwrap();
        assert!(matches!(
            reload_keyring(&serving),
            Err(StoreError::KeyFile { .. })
        ));
        assert_eq!(serving.read().unwrap().open(&here).unwrap().request, b"z");
    }

    #[test]
    fn wrong_key_or_moved_payload_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let (ring, _) = Keyring::load_or_create(&dir.path().join("a.json")).unwrap();
        let (other, _) = Keyring::load_or_create(&dir.path().join("b.json")).unwrap();
        let sealed = ring.seal(&record("id1", "p")).unwrap();
        let err = other.open(&sealed).unwrap_err().to_string();
        assert!(err.contains("not in the key file"), "{err}");
        let mut moved = sealed.clone();
        moved.meta.id = "id2".into();
        assert!(matches!(ring.open(&moved), Err(StoreError::Decrypt(_))));
        let mut flipped = sealed;
        flipped.ciphertext[0] ^= 1;
        assert!(
            ring.open(&flipped)
                .unwrap_err()
                .to_string()
                .contains("authentication failed")
        );
    }

    #[test]
    fn pseudonyms_are_stable_and_keyed() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _) = Keyring::load_or_create(&dir.path().join("a.json")).unwrap();
        let (b, _) = Keyring::load_or_create(&dir.path().join("b.json")).unwrap();
        assert_eq!(a.pseudonym("agent", "bob"), a.pseudonym("agent", "bob"));
        assert_ne!(a.pseudonym("agent", "bob"), b.pseudonym("agent", "bob"));
        assert_ne!(a.pseudonym("agent", "bob"), a.pseudonym("episode", "bob"));
        assert!(!a.pseudonym("agent", "bob").contains("bob"));
    }

    #[test]
    fn broken_key_files_are_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.json");
        fs::write(&p, "not json").unwrap();
        assert!(
            Keyring::load(&p)
                .unwrap_err()
                .to_string()
                .contains("not a downshift key file")
        );
        let missing = Keyring::load(&dir.path().join("none.json"))
            .unwrap_err()
            .to_string();
        assert!(missing.contains("not found"), "{missing}");
    }
}
