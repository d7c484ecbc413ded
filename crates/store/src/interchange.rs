//! `import` and `export`: the call log as JSON Lines (see `downshift_api::ImportRecord`).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};

use downshift_api::{ImportFormat, parse_import_line};
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{
    CallFilter, CallMeta, CallPayload, CallRecord, CallStatus, Keyring, Result, Source, Store,
    StoreError,
};

/// What an import did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ImportReport {
    /// Lines that held a record.
    pub records: usize,
    /// Records newly stored.
    pub imported: usize,
    /// Records already in the store (same id), left as they were.
    pub duplicates: usize,
    /// Lines skipped, with their 1-based line number and the reason.
    pub errors: Vec<LineError>,
}

/// A line of an import that was skipped.
#[derive(Debug, Clone, Serialize)]
pub struct LineError {
    /// Its 1-based line number.
    pub line: usize,
    /// Why it was skipped.
    pub error: String,
}

/// Reads JSON Lines and stores every good record (sealed); bad lines are reported and skipped.
/// `extra_tags` are added to every record. Records are committed in batches, so a failure part
/// way leaves the earlier batches stored and reports the error.
pub fn import_jsonl(
    input: impl BufRead,
    format: ImportFormat,
    extra_tags: &BTreeMap<String, String>,
    keyring: &Keyring,
    store: &dyn Store,
) -> Result<ImportReport> {
    let mut report = ImportReport::default();
    let mut batch = Vec::with_capacity(500);
    let now = crate::now_ms();
    for (i, raw) in input.split(b'\n').enumerate() {
        let raw = raw.map_err(|e| StoreError::Invalid(format!("line {}: {e}", i + 1)))?;
        // A bad byte spoils its line only: it is reported and skipped like any bad line.
        let line = match String::from_utf8(raw) {
            Ok(l) => l,
            Err(e) => {
                report.errors.push(LineError {
                    line: i + 1,
                    error: format!(
                        "not valid UTF-8 (byte {})",
                        e.utf8_error().valid_up_to() + 1
                    ),
                });
                continue;
            }
        };
        let line = line.strip_suffix('\r').unwrap_or(&line);
        if line.trim().is_empty() {
            continue;
        }
        let rec = match parse_import_line(line, format) {
            Ok(r) => r,
            Err(error) => {
                report.errors.push(LineError { line: i + 1, error });
                continue;
            }
        };
        report.records += 1;
        let ts_ms = rec.timestamp.map(|t| t.timestamp_millis()).unwrap_or(now);
        let mut tags = rec.tags;
        tags.extend(extra_tags.iter().map(|(k, v)| (k.clone(), v.clone())));
        let model = rec
            .request
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let usage = rec.response.as_ref().and_then(downshift_api::usage_of);
        let stream = rec
            .request
            .get("stream")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        // A UUIDv7 from the record's own time keeps imported calls in time order. The rest of
        // the id comes from the line's content, so importing the same file twice stores each
        // call once; a record without a timestamp (stored at the import's time) gets an id from
        // its content alone (UUIDv8), for the same reason.
        let digest = Sha256::digest(line.trim().as_bytes());
        let id = match rec.timestamp {
            Some(_) => uuid::Builder::from_unix_timestamp_millis(
                ts_ms.max(0) as u64,
                &digest[..10].try_into().unwrap_or([0; 10]),
            )
            .into_uuid(),
            None => uuid::Builder::from_custom_bytes(digest[..16].try_into().unwrap_or([0; 16]))
                .into_uuid(),
        }
        .to_string();
        let record = CallRecord {
            meta: CallMeta {
                status: if rec.response.is_some() {
                    CallStatus::Ok
                } else {
                    CallStatus::UpstreamError
                },
                http_status: rec.response.as_ref().map(|_| 200),
                stream,
                prompt_tokens: usage.map(|u| u.prompt_tokens),
                completion_tokens: usage.map(|u| u.completion_tokens),
                agent: rec.agent.as_deref().map(|a| keyring.pseudonym("agent", a)),
                tags,
                ..CallMeta::new(id, ts_ms, model, Source::Import)
            },
            payload: CallPayload {
                request: serde_json::to_vec(&rec.request).unwrap_or_default(),
                response: rec
                    .response
                    .as_ref()
                    .map(|r| serde_json::to_vec(r).unwrap_or_default())
                    .unwrap_or_default(),
            },
        };
        batch.push(keyring.seal(&record)?);
        if batch.len() >= 500 {
            let n = store.insert_calls(&batch)?;
            report.imported += n;
            report.duplicates += batch.len() - n;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        let n = store.insert_calls(&batch)?;
        report.imported += n;
        report.duplicates += batch.len() - n;
    }
    Ok(report)
}

/// Writes the calls matching `filter` as import-format JSON Lines (decrypted), oldest first.
/// Each line also carries a `call` object with the call's metadata. Returns the count.
pub fn export_jsonl(
    filter: &CallFilter,
    keyring: &Keyring,
    store: &dyn Store,
    mut out: impl Write,
) -> Result<usize> {
    let calls = store.scan_calls(filter)?;
    for sealed in &calls {
        let payload = keyring.open(sealed)?;
        let as_json = |b: &[u8]| -> Value {
            if b.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(b)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(b).into_owned()))
            }
        };
        let m = &sealed.meta;
        let ts = chrono::DateTime::from_timestamp_millis(m.ts_ms)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        let line = json!({
            "timestamp": ts,
            "request": as_json(&payload.request),
            "response": as_json(&payload.response),
            "metadata": m.tags,
            "call": m,
        });
        serde_json::to_writer(&mut out, &line).map_err(|e| StoreError::Invalid(e.to_string()))?;
        out.write_all(b"\n")
            .map_err(|e| StoreError::Invalid(format!("write failed: {e}")))?;
    }
    out.flush()
        .map_err(|e| StoreError::Invalid(format!("write failed: {e}")))?;
    Ok(calls.len())
}

/// Writes a dataset's examples (decrypted) as JSON Lines, one chat-format record per line, in
/// order. Returns the count.
pub fn export_dataset_jsonl(
    dataset: &crate::DatasetMeta,
    keyring: &Keyring,
    store: &dyn Store,
    mut out: impl Write,
) -> Result<usize> {
    let examples = store.dataset_examples(&dataset.id)?;
    for e in &examples {
        let plain = keyring.open_example(&dataset.id, e)?;
        out.write_all(&plain)
            .and_then(|()| out.write_all(b"\n"))
            .map_err(|e| StoreError::Invalid(format!("write failed: {e}")))?;
    }
    out.flush()
        .map_err(|e| StoreError::Invalid(format!("write failed: {e}")))?;
    Ok(examples.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_then_export_round_trips_and_reports_bad_lines() {
        crate::backends::each_backend(
            "import_then_export_round_trips_and_reports_bad_lines",
            |b| {
                let (ring, _) = Keyring::load_or_create(&b.dir.path().join("k.json")).unwrap();
                let store = b.open();
                let input = concat!(
                    r#"{"request":{"model":"m","messages":[{"role":"user","content":"hi"}]},"response":{"choices":[],"usage":{"prompt_tokens":2,"completion_tokens":1}},"metadata":{"cat":"a"}}"#,
                    "\n\n{broken\n",
                    r#"{"timestamp":"2025-01-01T00:00:00Z","workload_id":"w","client_id":"bob","request":{"messages":[{"role":"user","content":"yo"}]},"response":{"model":"m","choices":[]}}"#,
                    "\n"
                );
                let mut extra = BTreeMap::new();
                extra.insert("batch".to_owned(), "1".to_owned());
                let r = import_jsonl(
                    input.as_bytes(),
                    ImportFormat::Auto,
                    &extra,
                    &ring,
                    store.as_ref(),
                )
                .unwrap();
                assert_eq!((r.records, r.imported), (2, 2));
                assert_eq!(r.errors.len(), 1);
                assert_eq!(r.errors[0].line, 3);
                let listed = store.list_calls(&CallFilter::default()).unwrap();
                assert_eq!(listed.len(), 2);
                let fly = listed
                    .iter()
                    .find(|c| c.tags.contains_key("workload_id"))
                    .unwrap();
                assert!(fly.agent.as_deref().unwrap().starts_with("agt_"));
                assert_eq!(fly.ts_ms, 1735689600000);
                let mut out = Vec::new();
                assert_eq!(
                    export_jsonl(&CallFilter::default(), &ring, store.as_ref(), &mut out).unwrap(),
                    2
                );
                let text = String::from_utf8(out).unwrap();
                let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
                // Oldest first: the 2025 Flywheel record.
                assert_eq!(first["metadata"]["workload_id"], "w");
                assert!(!text.contains("bob"));
                let second: Value = serde_json::from_str(text.lines().nth(1).unwrap()).unwrap();
                assert_eq!(second["request"]["messages"][0]["content"], "hi");
                assert_eq!(second["metadata"]["cat"], "a");
                assert_eq!(second["metadata"]["batch"], "1");
                assert_eq!(second["call"]["prompt_tokens"], 2);
                // The exported lines import again.
                let again = crate::SqliteStore::open(&b.dir.path().join("db2")).unwrap();
                let r2 = import_jsonl(
                    text.as_bytes(),
                    ImportFormat::Auto,
                    &BTreeMap::new(),
                    &ring,
                    &again,
                )
                .unwrap();
                assert_eq!((r2.imported, r2.errors.len()), (2, 0));
            },
        );
    }

    #[test]
    fn importing_the_same_file_twice_stores_each_call_once_with_or_without_timestamps() {
        crate::backends::each_backend(
            "importing_the_same_file_twice_stores_each_call_once_with_or_without_timestamps",
            |b| {
                let (ring, _) = Keyring::load_or_create(&b.dir.path().join("k.json")).unwrap();
                let store = b.open();
                let input = concat!(
                    r#"{"request":{"model":"m","messages":[{"role":"user","content":"no time a"}]}}"#,
                    "\n",
                    r#"{"request":{"model":"m","messages":[{"role":"user","content":"no time b"}]}}"#,
                    "\n",
                    r#"{"timestamp":"2025-01-01T00:00:00Z","request":{"model":"m","messages":[{"role":"user","content":"timed"}]}}"#,
                    "\n"
                );
                let import = || {
                    import_jsonl(
                        input.as_bytes(),
                        ImportFormat::Auto,
                        &BTreeMap::new(),
                        &ring,
                        store.as_ref(),
                    )
                    .unwrap()
                };
                let first = import();
                assert_eq!((first.imported, first.duplicates), (3, 0));
                // Later (another import time), the same lines: nothing new.
                std::thread::sleep(std::time::Duration::from_millis(5));
                let second = import();
                assert_eq!((second.imported, second.duplicates), (0, 3));
                assert_eq!(store.list_calls(&CallFilter::default()).unwrap().len(), 3);
            },
        );
    }

    #[test]
    fn an_invalid_utf8_line_is_skipped_and_every_good_line_stored() {
        crate::backends::each_backend(
            "an_invalid_utf8_line_is_skipped_and_every_good_line_stored",
            |b| {
                let (ring, _) = Keyring::load_or_create(&b.dir.path().join("k.json")).unwrap();
                let store = b.open();
                let mut input = Vec::new();
                for i in 0..400 {
                    if i == 200 {
                        input.extend_from_slice(b"{\"request\":{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"\xff\xfe\"}]}}\n");
                    }
                    input.extend_from_slice(
                    format!(r#"{{"request":{{"model":"m","messages":[{{"role":"user","content":"q{i}"}}]}},"response":{{"choices":[]}}}}"#)
                        .as_bytes(),
                );
                    input.extend_from_slice(if i % 2 == 0 { b"\n" } else { b"\r\n" });
                }
                let r = import_jsonl(
                    &input[..],
                    ImportFormat::Auto,
                    &BTreeMap::new(),
                    &ring,
                    store.as_ref(),
                )
                .unwrap();
                assert_eq!((r.records, r.imported), (400, 400));
                assert_eq!(r.errors.len(), 1);
                assert_eq!(r.errors[0].line, 201);
                assert!(r.errors[0].error.contains("UTF-8"), "{}", r.errors[0].error);
                assert_eq!(store.count_calls().unwrap(), 400);
            },
        );
    }
}
