//! The call journal: the durability half of the write path. Every sealed record is staged as
//! a binary frame, and the staged frames are appended to the current journal segment (mode
//! 0600) with one `write` before the gateway releases the responses of their calls, so a call
//! whose answer left the process is on disk even if the process is killed the next instant
//! (the page cache survives a crash of the process; an optional periodic `fsync` covers power
//! loss). Staging and writing are separate steps so that the records of all the calls answered
//! in one turn of the event loop go to the file together: one system call for all of them
//! (group append). The log writer folds records into the database as before; once every
//! record of a segment is committed the segment is deleted. Segments left behind by a crash
//! are replayed on the next start (idempotently, by call id) by [`crate::ingest_spill_files`].
//!
//! A segment (`journal-<uuid>.dsj`) is [`SEGMENT_MAGIC`] followed by frames:
//!
//! ```text
//! u32 LE  body length
//! u32 LE  CRC-32 of the body
//! body:   u32 LE meta length, the call's metadata as JSON,
//!         u8 key id length, key id, u8 nonce length, nonce,
//!         the ciphertext (the rest of the body)
//! ```
//!
//! A frame cut short by a crash (only the last one can be) fails its length or checksum test:
//! replay counts it as unreadable and keeps the file, renamed `*.bad`, as it does for a torn
//! line. Segments written by earlier versions (`journal-<uuid>.jsonl`, one JSON line per
//! record) are still replayed.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::{CallMeta, Result, SealedCall, StoreError};

/// The first bytes of a binary journal segment: the format's name and version.
pub(crate) const SEGMENT_MAGIC: &[u8; 8] = b"DSJRNL\x00\x01";
/// The file extension of binary journal segments.
pub(crate) const SEGMENT_EXT: &str = "dsj";
/// A staging buffer that grew past this is not kept for reuse.
const KEEP_BUFFER: usize = 4 << 20;

/// The segment being appended to.
struct Segment {
    seq: u64,
    path: PathBuf,
    file: Option<File>,
    appended: u64,
    /// Records of this segment that never reached the writer's queue (it was full): they are
    /// only in the segment, which therefore must be replayed, not just deleted.
    unqueued: u64,
    bytes: u64,
    opened: Instant,
}

/// Everything behind the journal's write lock.
struct Files {
    seg: Segment,
    /// Segments closed after a failed write, for the writer to settle.
    closed: Vec<Closed>,
    /// An empty buffer with capacity, swapped in for the staged frames at each write.
    spare: Vec<u8>,
}

/// Frames staged but not yet written, and their records.
#[derive(Default)]
struct Staged {
    frames: Vec<u8>,
    calls: Vec<SealedCall>,
    since: Option<Instant>,
}

/// A closed segment, waiting until the writer has accounted for each of its records.
#[derive(Debug)]
pub(crate) struct Closed {
    pub seq: u64,
    pub path: PathBuf,
    pub appended: u64,
    pub unqueued: u64,
}

/// The gateway's journal of answered calls in one directory: records are staged, appended to
/// the current segment in groups, and segments are closed by age or size (see the module
/// docs). Shared between the serving threads and the log writer.
pub struct Journal {
    dir: PathBuf,
    files: Mutex<Files>,
    staged: Mutex<Staged>,
    /// Tickets handed out: the number of records staged so far.
    issued: AtomicU64,
    /// Every record with a ticket up to this one has been written (or its write failed).
    written: AtomicU64,
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
            files: Mutex::new(Files {
                seg: Segment {
                    seq: 0,
                    path: PathBuf::new(),
                    file: None,
                    appended: 0,
                    unqueued: 0,
                    bytes: 0,
                    opened: Instant::now(),
                },
                closed: Vec::new(),
                spare: Vec::new(),
            }),
            staged: Mutex::new(Staged::default()),
            issued: AtomicU64::new(0),
            written: AtomicU64::new(0),
        }
    }

    /// The directory the segments are in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn files(&self) -> MutexGuard<'_, Files> {
        self.files.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn staged(&self) -> MutexGuard<'_, Staged> {
        self.staged.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stages one sealed record as a frame; returns its ticket. It reaches the file with the
    /// next [`Journal::write_staged`].
    pub(crate) fn stage(
        &self,
        call: SealedCall,
    ) -> std::result::Result<u64, Box<(SealedCall, StoreError)>> {
        let mut st = self.staged();
        let start = st.frames.len();
        if let Err(e) = encode_frame(&call, &mut st.frames) {
            st.frames.truncate(start);
            return Err(Box::new((call, e)));
        }
        st.calls.push(call);
        if st.since.is_none() {
            st.since = Some(Instant::now());
        }
        // Under the staging lock, so tickets follow the order of the frames.
        Ok(self.issued.fetch_add(1, Ordering::AcqRel) + 1)
    }

    /// The newest ticket handed out.
    pub(crate) fn last_ticket(&self) -> u64 {
        self.issued.load(Ordering::Acquire)
    }

    /// Whether the record with this ticket has been written.
    pub(crate) fn is_written(&self, ticket: u64) -> bool {
        self.written.load(Ordering::Acquire) >= ticket
    }

    /// When the oldest record still staged was staged.
    pub(crate) fn staged_since(&self) -> Option<Instant> {
        self.staged().since
    }

    /// Unless the record with ticket `upto` is already written, appends every staged frame to
    /// the current segment with one `write`, then hands their records to `deliver` with the
    /// segment's number (`None` when the write failed: they are not in the journal), still
    /// under the journal's lock so records reach the writer's queue in journal order.
    /// `deliver` returns whether the records were queued.
    pub(crate) fn write_staged<F>(&self, upto: u64, deliver: F) -> Result<()>
    where
        F: FnOnce(Vec<SealedCall>, Option<u64>) -> bool,
    {
        if self.is_written(upto) {
            return Ok(());
        }
        let mut files = self.files();
        if self.is_written(upto) {
            // Another caller wrote it while this one waited for the lock.
            return Ok(());
        }
        let spare = std::mem::take(&mut files.spare);
        let (frames, calls, last) = {
            let mut st = self.staged();
            let frames = std::mem::replace(&mut st.frames, spare);
            st.since = None;
            (
                frames,
                std::mem::take(&mut st.calls),
                self.issued.load(Ordering::Acquire),
            )
        };
        let result = if calls.is_empty() {
            Ok(())
        } else {
            match self.append(&mut files.seg, &frames, calls.len() as u64) {
                Ok(()) => {
                    let n = calls.len() as u64;
                    if !deliver(calls, Some(files.seg.seq)) {
                        files.seg.unqueued += n;
                    }
                    Ok(())
                }
                Err(e) => {
                    deliver(calls, None);
                    // The segment may end in a partial frame: later frames go to a new one.
                    if let Some(closed) = close(&mut files.seg) {
                        files.closed.push(closed);
                    }
                    Err(e)
                }
            }
        };
        let mut frames = frames;
        if frames.capacity() <= KEEP_BUFFER {
            frames.clear();
            files.spare = frames;
        }
        self.written.fetch_max(last, Ordering::AcqRel);
        result
    }

    /// Appends `frames` (`records` of them) to the current segment, opening one if needed.
    fn append(&self, seg: &mut Segment, frames: &[u8], records: u64) -> Result<()> {
        if seg.file.is_none() {
            create_private_dir(&self.dir)?;
            let seq = seg.seq + 1;
            let path = self
                .dir
                .join(format!("journal-{}.{SEGMENT_EXT}", uuid::Uuid::now_v7()));
            let mut file = open_private_append(&path)?;
            file.write_all(SEGMENT_MAGIC)
                .map_err(|e| StoreError::io(&path, e))?;
            *seg = Segment {
                seq,
                path,
                file: Some(file),
                appended: 0,
                unqueued: 0,
                bytes: SEGMENT_MAGIC.len() as u64,
                opened: Instant::now(),
            };
        }
        if let Some(file) = seg.file.as_mut() {
            // One write(2) for all the frames (a regular file takes it whole unless the disk
            // is full or the process is being killed).
            file.write_all(frames)
                .map_err(|e| StoreError::io(&seg.path, e))?;
            seg.appended += records;
            seg.bytes += frames.len() as u64;
        }
        Ok(())
    }

    /// Closes the current segment when it holds records and is older than `age` or larger than
    /// `bytes` (the next write opens a new one); returns it with any segment closed after a
    /// failed write.
    pub(crate) fn rotate_if(&self, age: Duration, bytes: u64) -> Vec<Closed> {
        let mut files = self.files();
        let mut out = std::mem::take(&mut files.closed);
        let seg = &mut files.seg;
        if seg.file.is_some()
            && seg.appended > 0
            && (seg.opened.elapsed() >= age || seg.bytes >= bytes)
            && let Some(c) = close(seg)
        {
            out.push(c);
        }
        out
    }

    /// Flushes the current segment to disk (power-loss durability). Holds the journal's lock
    /// only to duplicate the file handle, not during the flush.
    pub fn sync(&self) -> Result<()> {
        let (path, file) = {
            let files = self.files();
            match files.seg.file.as_ref() {
                Some(f) => (
                    files.seg.path.clone(),
                    f.try_clone()
                        .map_err(|e| StoreError::io(&files.seg.path, e))?,
                ),
                None => return Ok(()),
            }
        };
        file.sync_data().map_err(|e| StoreError::io(path, e))
    }
}

/// Closes `seg`; the closed segment when it had a file.
fn close(seg: &mut Segment) -> Option<Closed> {
    seg.file.take()?;
    Some(Closed {
        seq: seg.seq,
        path: seg.path.clone(),
        appended: seg.appended,
        unqueued: seg.unqueued,
    })
}

/// One sealed record as a JSON line (the spill file's format, and the journal's before the
/// binary frames).
pub(crate) fn line_of(call: &SealedCall) -> Result<Vec<u8>> {
    let mut line = serde_json::to_vec(call).map_err(|e| StoreError::Corrupt {
        id: call.meta.id.clone(),
        reason: e.to_string(),
    })?;
    line.push(b'\n');
    Ok(line)
}

/// Appends one sealed record to `out` as a frame.
pub(crate) fn encode_frame(call: &SealedCall, out: &mut Vec<u8>) -> Result<()> {
    let corrupt = |reason: String| StoreError::Corrupt {
        id: call.meta.id.clone(),
        reason,
    };
    let (key_id, nonce) = (call.key_id.as_bytes(), call.nonce.as_slice());
    let key_len = u8::try_from(key_id.len()).map_err(|_| corrupt("key id too long".into()))?;
    let nonce_len = u8::try_from(nonce.len()).map_err(|_| corrupt("nonce too long".into()))?;
    let start = out.len();
    out.extend_from_slice(&[0; 12]); // body length, checksum, meta length
    serde_json::to_writer(&mut *out, &call.meta).map_err(|e| corrupt(e.to_string()))?;
    let meta_len = out.len() - start - 12;
    out.push(key_len);
    out.extend_from_slice(key_id);
    out.push(nonce_len);
    out.extend_from_slice(nonce);
    out.extend_from_slice(&call.ciphertext);
    let body_len = out.len() - start - 8;
    let (Ok(meta_len), Ok(body_len)) = (u32::try_from(meta_len), u32::try_from(body_len)) else {
        out.truncate(start);
        return Err(corrupt("record too large for a journal frame".into()));
    };
    out[start + 8..start + 12].copy_from_slice(&meta_len.to_le_bytes());
    let crc = crc32fast::hash(&out[start + 8..]);
    out[start..start + 4].copy_from_slice(&body_len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// What a binary segment holds.
#[derive(Debug, Default)]
pub(crate) struct SegmentRead {
    pub calls: Vec<SealedCall>,
    /// Frames that could not be read: a torn last frame, or a file that is not a segment.
    pub bad: usize,
}

/// Reads the records of a binary segment. Reading stops at the first frame whose length or
/// checksum is wrong (a torn last frame, after a crash): the frames after it cannot be
/// located, and it counts as one unreadable frame.
pub(crate) fn decode_segment(bytes: &[u8]) -> SegmentRead {
    let mut out = SegmentRead::default();
    if bytes.is_empty() {
        // Created, but killed before its first write.
        return out;
    }
    let Some(mut rest) = bytes.strip_prefix(SEGMENT_MAGIC.as_slice()) else {
        out.bad = 1;
        return out;
    };
    while !rest.is_empty() {
        let Some(head) = rest.first_chunk::<8>() else {
            out.bad += 1;
            break;
        };
        let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
        let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        let Some(body) = rest.get(8..8 + len) else {
            out.bad += 1;
            break;
        };
        if crc32fast::hash(body) != crc {
            out.bad += 1;
            break;
        }
        match decode_body(body) {
            Some(c) => out.calls.push(c),
            // Intact but not understood (written by a newer version): skip this one only.
            None => out.bad += 1,
        }
        rest = &rest[8 + len..];
    }
    out
}

fn decode_body(body: &[u8]) -> Option<SealedCall> {
    let meta_len = u32::from_le_bytes(*body.first_chunk::<4>()?) as usize;
    let rest = body.get(4..)?;
    let meta: CallMeta = serde_json::from_slice(rest.get(..meta_len)?).ok()?;
    let rest = rest.get(meta_len..)?;
    let (key_id, rest) = take_short(rest)?;
    let (nonce, ciphertext) = take_short(rest)?;
    Some(SealedCall {
        meta,
        key_id: String::from_utf8(key_id.to_vec()).ok()?,
        nonce: nonce.to_vec(),
        ciphertext: ciphertext.to_vec(),
    })
}

/// Splits off a field prefixed with its one-byte length.
fn take_short(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let (&n, rest) = b.split_first()?;
    let n = usize::from(n);
    Some((rest.get(..n)?, rest.get(n..)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(id: &str) -> SealedCall {
        let dir = tempfile::tempdir().unwrap();
        let (ring, _) = crate::Keyring::load_or_create(&dir.path().join("k.json")).unwrap();
        ring.seal(&crate::keyring::tests::record(id, "a prompt"))
            .unwrap()
    }

    fn segment(calls: &[SealedCall]) -> Vec<u8> {
        let mut b = SEGMENT_MAGIC.to_vec();
        for c in calls {
            encode_frame(c, &mut b).unwrap();
        }
        b
    }

    #[test]
    fn frames_round_trip() {
        let calls: Vec<SealedCall> = (0..3).map(|i| sealed(&format!("r{i}"))).collect();
        let read = decode_segment(&segment(&calls));
        assert_eq!(read.bad, 0);
        assert_eq!(read.calls, calls);
        // Raw bytes, not hex: a frame is smaller than the JSON line of the same record.
        let mut one = Vec::new();
        encode_frame(&calls[0], &mut one).unwrap();
        assert!(one.len() < line_of(&calls[0]).unwrap().len());
    }

    #[test]
    fn a_torn_last_frame_is_counted_and_the_frames_before_it_are_kept() {
        let calls: Vec<SealedCall> = (0..3).map(|i| sealed(&format!("r{i}"))).collect();
        let whole = segment(&calls);
        let two = segment(&calls[..2]).len();
        // Cut anywhere inside the third frame: its head, its body, its last byte.
        for cut in [two + 3, two + 8, two + 40, whole.len() - 1] {
            let read = decode_segment(&whole[..cut]);
            assert_eq!(read.calls, calls[..2], "cut at {cut}");
            assert_eq!(read.bad, 1, "cut at {cut}");
        }
        // A flipped byte fails the checksum.
        let mut flipped = whole.clone();
        let at = two + 30;
        flipped[at] ^= 0x40;
        let read = decode_segment(&flipped);
        assert_eq!((read.calls.len(), read.bad), (2, 1));
    }

    #[test]
    fn empty_and_foreign_files() {
        let read = decode_segment(b"");
        assert_eq!((read.calls.len(), read.bad), (0, 0));
        let read = decode_segment(b"{\"id\":\"x\"}\n");
        assert_eq!((read.calls.len(), read.bad), (0, 1));
        let read = decode_segment(SEGMENT_MAGIC);
        assert_eq!((read.calls.len(), read.bad), (0, 0));
    }

    #[test]
    fn staged_records_are_written_together_in_ticket_order() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(&dir.path().join("journal"));
        let t1 = j.stage(sealed("a")).unwrap();
        let t2 = j.stage(sealed("b")).unwrap();
        assert_eq!((t1, t2, j.last_ticket()), (1, 2, 2));
        assert!(!j.is_written(t1));
        assert!(j.staged_since().is_some());
        let mut got = Vec::new();
        j.write_staged(t1, |calls, seg| {
            got.push((
                calls.iter().map(|c| c.meta.id.clone()).collect::<Vec<_>>(),
                seg,
            ));
            true
        })
        .unwrap();
        // Both went in the one write, to segment 1.
        assert_eq!(got, vec![(vec!["a".to_string(), "b".to_string()], Some(1))]);
        assert!(j.is_written(t2));
        assert!(j.staged_since().is_none());
        // Written already: nothing more to deliver.
        j.write_staged(t2, |_, _| panic!("delivered twice"))
            .unwrap();
        let files: Vec<_> = std::fs::read_dir(j.dir())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(files.len(), 1);
        let read = decode_segment(&std::fs::read(&files[0]).unwrap());
        assert_eq!(read.calls.len(), 2);
        let closed = j.rotate_if(Duration::ZERO, u64::MAX);
        assert_eq!(closed.len(), 1);
        assert_eq!((closed[0].appended, closed[0].unqueued), (2, 0));
    }

    #[test]
    fn a_failed_write_delivers_the_records_as_unjournaled() {
        let dir = tempfile::tempdir().unwrap();
        // The journal "directory" is a file: no segment can be created.
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, b"").unwrap();
        let j = Journal::new(&blocker.join("journal"));
        let t = j.stage(sealed("a")).unwrap();
        let mut got = None;
        let r = j.write_staged(t, |calls, seg| {
            got = Some((calls.len(), seg));
            false
        });
        assert!(r.is_err());
        assert_eq!(got, Some((1, None)));
        // The caller is not kept waiting on a record that cannot be written.
        assert!(j.is_written(t));
    }
}
