//! Dataset snapshots: curate the calls a filter selects from the store and write the result as
//! one named, immutable, encrypted dataset — all of it in one transaction, or nothing.

use downshift_store::{CallFilter, DatasetMeta, Keyring, SealedExample, Store, StoreError, now_ms};
use serde_json::{Value, json};

use crate::{CallInput, CurateConfig, CurationReport, Curator};

/// Calls read from the store per page.
const PAGE: usize = 2000;

/// Why a snapshot could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The request cannot be carried out: the dataset name is malformed or already taken.
    #[error("{0}")]
    Invalid(String),
    /// Reading or opening the calls, or writing the dataset, failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The curator could not be built (a custom pattern does not compile) or an example could
    /// not be serialised.
    #[error(transparent)]
    Curate(#[from] crate::CurateError),
}

/// What to snapshot.
#[derive(Debug, Clone)]
pub struct SnapshotRequest {
    /// The dataset's name: 1–100 letters, digits, `-`, `_` or `.`, not yet in use.
    pub name: String,
    /// The calls to curate; its `limit` is ignored (the log is read in pages).
    pub filter: CallFilter,
    /// Scrubbing threads.
    pub threads: usize,
}

/// Version of the pipeline, stored with every dataset so a later reader knows how it was made.
pub const PIPELINE_VERSION: u32 = 1;

/// The purpose string under which the pseudonym key is derived from the key file.
pub const PSEUDONYM_PURPOSE: &str = "curate-pii-pseudonyms";

fn check_name(name: &str) -> Result<(), SnapshotError> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(SnapshotError::Invalid(format!(
            "dataset name '{name}' must be 1–100 characters of letters, digits, '-', '_' or '.'"
        )))
    }
}

/// Reads, curates and stores. The snapshot is written in a single transaction after all the
/// work is done, so an interrupted run leaves no partial dataset behind.
pub fn create_snapshot(
    store: &dyn Store,
    keyring: &Keyring,
    request: &SnapshotRequest,
    config: &CurateConfig,
) -> Result<(DatasetMeta, CurationReport), SnapshotError> {
    check_name(&request.name)?;
    if store.get_dataset(&request.name)?.is_some() {
        return Err(SnapshotError::Invalid(format!(
            "dataset '{}' already exists; snapshots are immutable, choose another name",
            request.name
        )));
    }
    // Page through the log so only one page of raw payloads is in memory at a time.
    let secret = keyring.derive_secret(PSEUDONYM_PURPOSE);
    let mut curator = Curator::new(config, &secret)?;
    let mut page = CallFilter {
        limit: Some(PAGE),
        ..request.filter.clone()
    };
    loop {
        let sealed = store.scan_calls(&page)?;
        let Some(last) = sealed.last() else { break };
        page.after = Some((last.meta.ts_ms, last.meta.id.clone()));
        let full = sealed.len() == PAGE;
        for s in sealed {
            let payload = keyring.open(&s)?;
            let parse = |b: &[u8]| -> Option<Value> {
                if b.is_empty() {
                    None
                } else {
                    serde_json::from_slice(b).ok()
                }
            };
            let m = s.meta;
            curator.add(CallInput {
                call_id: m.id,
                ts_ms: m.ts_ms,
                endpoint: m.endpoint,
                status: m.status.as_str().to_owned(),
                model: m.model,
                episode: m.episode,
                tags: m.tags,
                request: parse(&payload.request),
                response: parse(&payload.response),
            });
        }
        if !full {
            break;
        }
    }
    let (examples, report) = curator.finish(request.threads);

    let id = uuid::Uuid::now_v7().to_string();
    let mut sealed_examples = Vec::with_capacity(examples.len());
    for (seq, e) in examples.iter().enumerate() {
        let seq = seq as u64;
        let plain = serde_json::to_vec(&e.record).map_err(crate::CurateError::Json)?;
        let (key_id, nonce, ciphertext) =
            keyring.seal_blob(&SealedExample::aad(&id, seq), &plain)?;
        sealed_examples.push(SealedExample {
            seq,
            call_id: e.call_id.clone(),
            key_id,
            nonce,
            ciphertext,
        });
    }
    let f = &request.filter;
    let meta = DatasetMeta {
        id,
        name: request.name.clone(),
        created_ms: now_ms(),
        examples: sealed_examples.len() as u64,
        params: json!({
            "pipeline_version": PIPELINE_VERSION,
            "filter": {
                "since_ms": f.since_ms, "until_ms": f.until_ms, "model": f.model,
                "agent": f.agent, "tags": f.tags,
            },
            "config": config,
        }),
        report: serde_json::to_value(&report).unwrap_or(Value::Null),
    };
    store.create_dataset(&meta, &sealed_examples)?;
    Ok((meta, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use downshift_store::{
        CallMeta, CallPayload, CallRecord, Source, SqliteStore, export_dataset_jsonl,
    };

    fn record(id: &str, ts: i64, user: &str) -> CallRecord {
        CallRecord {
            meta: CallMeta::new(id, ts, "m", Source::Import),
            payload: CallPayload {
                request: serde_json::to_vec(&json!({"model": "m", "messages": [{"role": "user", "content": user}]})).unwrap(),
                response: serde_json::to_vec(&json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}]})).unwrap(),
            },
        }
    }

    #[test]
    fn a_snapshot_is_scrubbed_encrypted_and_immutable() {
        let dir = tempfile::tempdir().unwrap();
        let (ring, _) = Keyring::load_or_create(&dir.path().join("k.json")).unwrap();
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        let calls: Vec<_> = [
            record("a", 1, "Mail me at bob.stone@example.org"),
            record("b", 2, "What's 2+2?"),
        ]
        .iter()
        .map(|r| ring.seal(r).unwrap())
        .collect();
        store.insert_calls(&calls).unwrap();
        let req = SnapshotRequest {
            name: "v1".into(),
            filter: CallFilter::default(),
            threads: 2,
        };
        let (meta, report) =
            create_snapshot(&store, &ring, &req, &CurateConfig::default()).unwrap();
        assert_eq!((meta.examples, report.examples_out), (2, 2));
        let mut out = Vec::new();
        export_dataset_jsonl(&meta, &ring, &store, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(!text.contains("bob.stone@example.org"));
        assert!(text.contains("<EMAIL_1>"));
        let err = create_snapshot(&store, &ring, &req, &CurateConfig::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("already exists"), "{err}");
        let bad = SnapshotRequest {
            name: "no spaces".into(),
            ..req
        };
        assert!(create_snapshot(&store, &ring, &bad, &CurateConfig::default()).is_err());
    }
}
