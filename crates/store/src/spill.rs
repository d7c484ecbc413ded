//! The spill file: where sealed records go when the write queue is full or the database
//! refuses a write. Append-only JSON Lines; ingested (idempotently) on the next start.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{Result, SealedCall, Store, StoreError};

/// A spill file in a directory (`spill-<uuid>.jsonl`, mode 0600), shared by the threads that
/// spill: each `SpillFile` appends to a file of its own, created on first use.
pub struct SpillFile {
    dir: PathBuf,
    file: Mutex<Option<(PathBuf, File)>>,
}

impl SpillFile {
    /// A spill file in `dir`, created on first use.
    pub fn new(dir: &Path) -> SpillFile {
        SpillFile {
            dir: dir.to_owned(),
            file: Mutex::new(None),
        }
    }

    /// Appends one sealed record (a single write of one line).
    pub fn append(&self, call: &SealedCall) -> Result<()> {
        let line = crate::journal::line_of(call)?;
        let mut guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            crate::journal::create_private_dir(&self.dir)?;
            let path = self
                .dir
                .join(format!("spill-{}.jsonl", uuid::Uuid::now_v7()));
            let file = crate::journal::open_private_append(&path)?;
            *guard = Some((path, file));
        }
        if let Some((path, file)) = guard.as_mut() {
            file.write_all(&line)
                .map_err(|e| StoreError::io(&*path, e))?;
        }
        Ok(())
    }

    /// Flushes the spill file to disk.
    pub fn sync(&self) -> Result<()> {
        let guard = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((path, file)) = guard.as_ref() {
            file.sync_all().map_err(|e| StoreError::io(path, e))?;
        }
        Ok(())
    }
}

/// What ingesting spill files found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct IngestReport {
    /// Files read (and removed, or renamed to `*.bad`).
    pub files: usize,
    /// Records read from them.
    pub records: usize,
    /// Records newly stored (the rest were already in the store).
    pub inserted: usize,
    /// Lines or journal frames that could not be read (a torn last record after a crash);
    /// their file is kept, renamed to `*.bad`, for inspection.
    pub bad_lines: usize,
}

/// Moves one spill file or journal segment (JSON lines, or binary frames for `.dsj`) into the
/// store, then removes it (or, when some records could not be read, keeps it renamed to
/// `*.bad`). Safe to repeat: records already in the store are skipped. Invalid UTF-8 counts as
/// an unreadable line, not as a failure of the whole file.
pub(crate) fn ingest_file(path: &Path, store: &dyn Store) -> Result<IngestReport> {
    let mut report = IngestReport::default();
    let (batch, bad) = if path
        .extension()
        .is_some_and(|x| x == crate::journal::SEGMENT_EXT)
    {
        let bytes = fs::read(path).map_err(|e| StoreError::io(path, e))?;
        let read = crate::journal::decode_segment(&bytes);
        (read.calls, read.bad)
    } else {
        read_lines(path)?
    };
    for chunk in batch.chunks(1000) {
        report.inserted += store.insert_calls(chunk)?;
    }
    report.records = batch.len();
    report.bad_lines = bad;
    report.files = 1;
    if bad > 0 {
        let kept = path.with_extension("bad");
        fs::rename(path, &kept).map_err(|e| StoreError::io(path, e))?;
        tracing::warn!(file = %kept.display(), bad, "spill or journal file had unreadable records; kept for inspection");
    } else {
        fs::remove_file(path).map_err(|e| StoreError::io(path, e))?;
    }
    Ok(report)
}

/// The records of a JSON Lines file, and how many of its lines could not be read.
fn read_lines(path: &Path) -> Result<(Vec<SealedCall>, usize)> {
    let file = File::open(path).map_err(|e| StoreError::io(path, e))?;
    let mut batch = Vec::new();
    let mut bad = 0;
    for line in BufReader::new(file).split(b'\n') {
        let line = line.map_err(|e| StoreError::io(path, e))?;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match serde_json::from_slice::<SealedCall>(&line) {
            Ok(c) => batch.push(c),
            Err(_) => bad += 1,
        }
    }
    Ok((batch, bad))
}

/// Moves every spill file or journal segment in `dir` into the store (in name order, which is
/// time order), then removes it. Safe to repeat: records already in the store are skipped.
pub fn ingest_spill_files(dir: &Path, store: &dyn Store) -> Result<IngestReport> {
    let mut report = IngestReport::default();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(StoreError::io(dir, e)),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.extension()
                .is_some_and(|x| x == "jsonl" || x == crate::journal::SEGMENT_EXT)
        })
        .collect();
    paths.sort();
    for path in paths {
        let r = ingest_file(&path, store)?;
        report.files += 1;
        report.records += r.records;
        report.inserted += r.inserted;
        report.bad_lines += r.bad_lines;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Keyring;
    use std::fs::OpenOptions;

    #[test]
    fn spilled_records_are_ingested_once() {
        crate::backends::each_backend("spilled_records_are_ingested_once", |b| {
            let (ring, _) = Keyring::load_or_create(&b.dir.path().join("k.json")).unwrap();
            let store = b.open();
            let spill = SpillFile::new(&b.dir.path().join("spill"));
            for i in 0..5 {
                let rec = crate::keyring::tests::record(&format!("r{i}"), "p");
                spill.append(&ring.seal(&rec).unwrap()).unwrap();
            }
            spill.sync().unwrap();
            // A torn line from a crash.
            let path = fs::read_dir(b.dir.path().join("spill"))
                .unwrap()
                .next()
                .unwrap()
                .unwrap()
                .path();
            OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap()
                .write_all(b"{\"id\":\"torn")
                .unwrap();
            let report = ingest_spill_files(&b.dir.path().join("spill"), store.as_ref()).unwrap();
            assert_eq!(
                (report.records, report.inserted, report.bad_lines),
                (5, 5, 1)
            );
            assert_eq!(store.count_calls().unwrap(), 5);
            assert!(path.with_extension("bad").exists());
            let again = ingest_spill_files(&b.dir.path().join("spill"), store.as_ref()).unwrap();
            assert_eq!(again.records, 0);
        });
    }

    /// A journal directory as a crash leaves it: one segment in the line format of earlier
    /// versions, one in binary frames whose last frame was cut short.
    fn mixed_journal(dir: &Path, ring: &Keyring) -> PathBuf {
        let journal = dir.join("journal");
        fs::create_dir_all(&journal).unwrap();
        let seal = |id: String| ring.seal(&crate::keyring::tests::record(&id, "p")).unwrap();
        let mut old = Vec::new();
        for i in 0..4 {
            old.extend(crate::journal::line_of(&seal(format!("old{i}"))).unwrap());
        }
        fs::write(journal.join("journal-0001.jsonl"), old).unwrap();
        let mut new = crate::journal::SEGMENT_MAGIC.to_vec();
        for i in 0..6 {
            crate::journal::encode_frame(&seal(format!("new{i}")), &mut new).unwrap();
        }
        let mut torn = Vec::new();
        crate::journal::encode_frame(&seal("torn".into()), &mut torn).unwrap();
        new.extend_from_slice(&torn[..torn.len() / 2]);
        fs::write(journal.join("journal-0002.dsj"), new).unwrap();
        journal
    }

    #[test]
    fn old_line_segments_and_binary_segments_replay_together_and_a_torn_frame_is_reported() {
        crate::backends::each_backend(
            "old_line_segments_and_binary_segments_replay_together_and_a_torn_frame_is_reported",
            |b| {
                let (ring, _) = Keyring::load_or_create(&b.dir.path().join("k.json")).unwrap();
                let store = b.open();
                let journal = mixed_journal(b.dir.path(), &ring);
                let report = ingest_spill_files(&journal, store.as_ref()).unwrap();
                assert_eq!(
                    (
                        report.files,
                        report.records,
                        report.inserted,
                        report.bad_lines
                    ),
                    (2, 10, 10, 1)
                );
                assert_eq!(store.count_calls().unwrap(), 10);
                // Every record decrypts: frames carry the ciphertext byte for byte.
                for c in store.scan_calls(&crate::CallFilter::default()).unwrap() {
                    assert_eq!(ring.open(&c).unwrap().request, b"p");
                }
                // The old segment is gone; the one with the torn frame is kept for inspection.
                assert!(!journal.join("journal-0001.jsonl").exists());
                assert!(journal.join("journal-0002.bad").exists());
                let again = ingest_spill_files(&journal, store.as_ref()).unwrap();
                assert_eq!(again, IngestReport::default());
            },
        );
    }
}
