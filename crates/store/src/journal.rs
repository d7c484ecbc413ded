//! The call journal: the durability half of the write path. Every sealed record is appended to
//! the current journal segment (one `write` of one JSON line, mode 0600) before the gateway
//! releases the response, so a call whose answer left the process is on disk even if the
//! process is killed the next instant (the page cache survives a process crash; an optional
//! periodic `fsync` covers power loss). The log writer folds records into the database as
//! before; once every record of a segment is committed the segment is deleted. Segments left
//! behind by a crash are replayed on the next start (idempotently, by call id) by
//! [`crate::ingest_spill_files`], which reads the same line format.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{Result, SealedCall, StoreError};

/// The segment being appended to.
struct Segment {
    seq: u64,
    path: PathBuf,
    file: Option<Arc<File>>,
    appended: u64,
    /// Records of this segment that never reached the writer's queue (it was full): they are
    /// only in the segment, which therefore must be replayed, not just deleted.
    unqueued: u64,
    bytes: u64,
    opened: Instant,
}

/// A closed segment, waiting until the writer has accounted for each of its records.
#[derive(Debug)]
pub(crate) struct Closed {
    pub seq: u64,
    pub path: PathBuf,
    pub appended: u64,
    pub unqueued: u64,
}

pub struct Journal {
    dir: PathBuf,
    current: Mutex<Segment>,
}

/// Creates `dir` (mode 0700 on Unix) if it is missing.
pub(crate) fn create_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut b = std::fs::DirBuilder::new();
    b.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        b.mode(0o700);
    }
    b.create(dir).map_err(|e| StoreError::io(dir, e))
}

/// Opens `path` for appending, creating it with mode 0600 on Unix.
pub(crate) fn open_private_append(path: &Path) -> Result<File> {
    let mut o = OpenOptions::new();
    o.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path).map_err(|e| StoreError::io(path, e))
}

impl Journal {
    /// A journal in `dir`; segments are created on first use.
    pub fn new(dir: &Path) -> Journal {
        Journal {
            dir: dir.to_owned(),
            current: Mutex::new(Segment {
                seq: 0,
                path: PathBuf::new(),
                file: None,
                appended: 0,
                unqueued: 0,
                bytes: 0,
                opened: Instant::now(),
            }),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock(&self) -> MutexGuard<'_, Segment> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `line` (one sealed record as a JSON line) with a single `write`, then runs
    /// `then` with the segment's number while still holding the journal's lock, so records
    /// reach the writer's queue in journal order. `then` returns whether the record was queued.
    pub(crate) fn append_then<F>(&self, line: &[u8], then: F) -> Result<()>
    where
        F: FnOnce(Option<u64>) -> bool,
    {
        let mut seg = self.lock();
        let written = self.write_line(&mut seg, line);
        match written {
            Ok(()) => {
                if !then(Some(seg.seq)) {
                    seg.unqueued += 1;
                }
                Ok(())
            }
            Err(e) => {
                then(None);
                Err(e)
            }
        }
    }

    fn write_line(&self, seg: &mut Segment, line: &[u8]) -> Result<()> {
        if seg.file.is_none() {
            create_private_dir(&self.dir)?;
            let seq = seg.seq + 1;
            let path = self
                .dir
                .join(format!("journal-{}.jsonl", uuid::Uuid::now_v7()));
            let file = open_private_append(&path)?;
            *seg = Segment {
                seq,
                path,
                file: Some(Arc::new(file)),
                appended: 0,
                unqueued: 0,
                bytes: 0,
                opened: Instant::now(),
            };
        }
        if let Some(file) = seg.file.as_ref() {
            // `&File` implements `Write`: one write(2) of the whole line (a regular file
            // takes it whole unless the disk is full).
            (&**file)
                .write_all(line)
                .map_err(|e| StoreError::io(&seg.path, e))?;
            seg.appended += 1;
            seg.bytes += line.len() as u64;
        }
        Ok(())
    }

    /// Closes the current segment when it holds records and is older than `age` or larger than
    /// `bytes`; the next append opens a new one.
    pub(crate) fn rotate_if(&self, age: Duration, bytes: u64) -> Option<Closed> {
        let mut seg = self.lock();
        if seg.file.is_none()
            || seg.appended == 0
            || (seg.opened.elapsed() < age && seg.bytes < bytes)
        {
            return None;
        }
        seg.file = None;
        Some(Closed {
            seq: seg.seq,
            path: seg.path.clone(),
            appended: seg.appended,
            unqueued: seg.unqueued,
        })
    }

    /// Flushes the current segment to disk (power-loss durability), without holding the
    /// journal's lock during the flush.
    pub fn sync(&self) -> Result<()> {
        let (path, file) = {
            let seg = self.lock();
            match seg.file.as_ref() {
                Some(f) => (seg.path.clone(), f.clone()),
                None => return Ok(()),
            }
        };
        file.sync_data().map_err(|e| StoreError::io(path, e))
    }
}

/// One sealed record as a journal (or spill) line.
pub(crate) fn line_of(call: &SealedCall) -> Result<Vec<u8>> {
    let mut line = serde_json::to_vec(call).map_err(|e| StoreError::Corrupt {
        id: call.meta.id.clone(),
        reason: e.to_string(),
    })?;
    line.push(b'\n');
    Ok(line)
}
