//! The asynchronous write path: a bounded queue in front of the store, drained in batches by
//! one thread. Serving only ever does a non-blocking `try_send`.
//!
//! With the journal on (the default), [`LogWriter::log`] first seals the record and appends it
//! to the journal (one `write`), so that by the time the caller releases the response the call
//! survives a crash of the process; the writer then commits it to the store and deletes each
//! journal segment once all its records are committed. When the queue is full the record
//! simply stays in the journal, which the writer replays into the store when it closes the
//! segment (and the next start replays whatever a crash left behind).
//!
//! With the journal off, a full queue spills the sealed record to the spill file instead.
//! Nothing is dropped silently: a record that can be neither stored nor put on disk is counted
//! in `lost` and logged as an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::journal::{Closed, Journal};
use crate::keyring::reload_keyring;
use crate::{CallRecord, KeyFileStamp, Keyring, SealedCall, SpillFile, Store};

/// How often the writer looks at the key file for a rotation made elsewhere (a `stat`); with the
/// writer's longest wait (500 ms) a rotation is in use within 1.5 s.
const KEY_FILE_CHECK: Duration = Duration::from_secs(1);

/// Tuning of the write path.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Records the queue holds before new ones spill to disk.
    pub queue_capacity: usize,
    /// Most records written in one transaction.
    pub batch_max: usize,
    /// How long the writer waits to fill a batch once it has one record (group commit).
    pub batch_delay: Duration,
    /// Directory of the spill files.
    pub spill_dir: PathBuf,
    /// Directory of the journal; `None` turns the journal off (records are only queued, and a
    /// crash loses those not yet committed).
    pub journal_dir: Option<PathBuf>,
    /// How often the writer flushes the journal to disk (`fsync`); zero: never (the journal
    /// then survives a crash of the process but not a power loss).
    pub journal_sync: Duration,
    /// Age after which the journal moves on to a new segment (the old one is deleted once all
    /// its records are committed).
    pub journal_rotate: Duration,
}

impl WriterConfig {
    /// Defaults for everything but the directories.
    pub fn new(spill_dir: &Path, journal_dir: Option<&Path>) -> WriterConfig {
        WriterConfig {
            queue_capacity: 8192,
            batch_max: 512,
            batch_delay: Duration::from_millis(2),
            spill_dir: spill_dir.to_owned(),
            journal_dir: journal_dir.map(Path::to_owned),
            journal_sync: Duration::ZERO,
            journal_rotate: Duration::from_secs(1),
        }
    }
}

/// Counters exported as metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Records waiting in the queue.
    pub depth: AtomicU64,
    /// Records committed to the store.
    pub written: AtomicU64,
    /// Records that went to disk (spill file, or only the journal) instead of the queue or the
    /// store; they are stored when the file is replayed.
    pub spilled: AtomicU64,
    /// Records neither stored nor put on disk (disk full, …). Each is also logged as an error.
    pub lost: AtomicU64,
    /// Failed store transactions (their records went to disk).
    pub write_errors: AtomicU64,
    /// Records that could not be appended to the journal (each is logged as an error).
    pub journal_errors: AtomicU64,
    /// Journal segments replayed into the store because some of their records were not queued
    /// or not committed.
    pub journal_replays: AtomicU64,
    /// Writes to the journal; each appends every record staged since the previous one.
    pub journal_writes: AtomicU64,
    /// Records appended to the journal (divided by `journal_writes`: records per write).
    pub journal_records: AtomicU64,
}

enum Msg {
    Record(Box<CallRecord>),
    /// Sealed on the serving side, in journal segment `seg` when `Some`.
    Sealed(Vec<SealedCall>, Option<u64>),
    Shutdown,
}

/// A logged record's place in the journal. The response of its call may leave once
/// [`LogWriter::is_journaled`] says the record is written; [`LogWriter::journal_through`]
/// writes it (with every record staged before it) if it is not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(u64);

/// The asynchronous write path of the call log: a bounded queue drained by one writer thread
/// into the store, with the journal and the spill file behind it (see the module docs).
/// Dropping it shuts it down.
pub struct LogWriter {
    tx: SyncSender<Msg>,
    stats: Arc<WriterStats>,
    keyring: Arc<RwLock<Keyring>>,
    spill: Arc<SpillFile>,
    journal: Option<Arc<Journal>>,
    queue_capacity: u64,
    handle: Mutex<Option<JoinHandle<()>>>,
}

impl LogWriter {
    /// Starts the writer thread over `store`.
    pub fn start(
        store: Box<dyn Store>,
        keyring: Arc<RwLock<Keyring>>,
        config: WriterConfig,
    ) -> LogWriter {
        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue_capacity.max(1));
        let stats = Arc::new(WriterStats::default());
        let spill = Arc::new(SpillFile::new(&config.spill_dir));
        let journal = config
            .journal_dir
            .as_deref()
            .map(|d| Arc::new(Journal::new(d)));
        let queue_capacity = config.queue_capacity.max(1) as u64;
        let worker = Worker {
            store,
            keyring: keyring.clone(),
            spill: spill.clone(),
            journal: journal.clone(),
            stats: stats.clone(),
            config,
            committed: HashMap::new(),
            pending: Vec::new(),
        };
        let handle = std::thread::Builder::new()
            .name("downshift-log-writer".into())
            .spawn(move || worker.run(rx))
            .ok();
        LogWriter {
            tx,
            stats,
            keyring,
            spill,
            journal,
            queue_capacity,
            handle: Mutex::new(handle),
        }
    }

    /// Logs a record without waiting for the database. With the journal on, the record is
    /// sealed and staged for the journal, and the returned ticket says when it is on disk (in
    /// the page cache): the caller releases the call's response only after
    /// [`LogWriter::journal_through`] (or once [`LogWriter::is_journaled`]). With the journal
    /// off, the record is queued, or spilled when the queue is full, and the ticket is
    /// already satisfied.
    pub fn log(&self, record: CallRecord) -> Ticket {
        let Some(journal) = &self.journal else {
            self.stats.depth.fetch_add(1, Ordering::Relaxed);
            match self.tx.try_send(Msg::Record(Box::new(record))) {
                Ok(()) => {}
                Err(
                    TrySendError::Full(Msg::Record(r)) | TrySendError::Disconnected(Msg::Record(r)),
                ) => {
                    self.stats.depth.fetch_sub(1, Ordering::Relaxed);
                    self.spill_one(&r);
                }
                Err(_) => {
                    self.stats.depth.fetch_sub(1, Ordering::Relaxed);
                }
            }
            return Ticket::default();
        };
        let sealed = {
            let keyring = self.keyring.read().unwrap_or_else(|p| p.into_inner());
            keyring.seal_owned(record)
        };
        let sealed = match sealed {
            Ok(s) => s,
            Err((id, e)) => {
                count_spill(&self.stats, &id, Err(e));
                return Ticket::default();
            }
        };
        match journal.stage(sealed) {
            Ok(t) => Ticket(t),
            Err(failed) => {
                let (s, e) = *failed;
                self.stats.journal_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(call = %s.meta.id, error = %e, "could not frame a call record for the journal");
                self.deliver(vec![s], None);
                Ticket::default()
            }
        }
    }

    /// The ticket of the newest record logged: once it is journaled, so is every record
    /// logged before it.
    pub fn last_ticket(&self) -> Ticket {
        Ticket(self.journal.as_ref().map_or(0, |j| j.last_ticket()))
    }

    /// Whether the record with ticket `t` is in the journal (always, with the journal off).
    pub fn is_journaled(&self, t: Ticket) -> bool {
        self.journal.as_ref().is_none_or(|j| j.is_written(t.0))
    }

    /// Makes sure the record with ticket `t` is in the journal: unless it already is, writes
    /// every staged record with one `write`. A record that cannot be written to the journal is
    /// queued or spilled instead, counted in `journal_errors` and logged as an error.
    pub fn journal_through(&self, t: Ticket) {
        let Some(journal) = &self.journal else { return };
        let written = journal.write_staged(t.0, |calls, seg| {
            count_journaled(&self.stats, calls.len(), seg);
            self.deliver(calls, seg)
        });
        if let Err(e) = written {
            self.stats.journal_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "could not append call records to the journal");
        }
    }

    /// Hands sealed records to the writer thread; says whether they were queued. Records the
    /// full queue refuses stay in their journal segment (replayed when it closes), or, when
    /// they are in none, go to the spill file.
    fn deliver(&self, calls: Vec<SealedCall>, seg: Option<u64>) -> bool {
        let n = calls.len() as u64;
        let depth = self.stats.depth.fetch_add(n, Ordering::Relaxed);
        let refused = if depth + n > self.queue_capacity {
            Some(calls)
        } else {
            match self.tx.try_send(Msg::Sealed(calls, seg)) {
                Ok(()) => None,
                Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => match m {
                    Msg::Sealed(calls, _) => Some(calls),
                    _ => Some(Vec::new()),
                },
            }
        };
        let Some(calls) = refused else { return true };
        self.stats.depth.fetch_sub(n, Ordering::Relaxed);
        if seg.is_some() {
            // Already on disk: replayed when the segment closes.
            self.stats.spilled.fetch_add(n, Ordering::Relaxed);
        } else {
            // Neither journaled nor queued: the spill file is the last resort.
            for s in &calls {
                count_spill(&self.stats, &s.meta.id, self.spill.append(s));
            }
        }
        false
    }

    fn spill_one(&self, record: &CallRecord) {
        let keyring = self.keyring.read().unwrap_or_else(|p| p.into_inner());
        let result = keyring.seal(record).and_then(|s| self.spill.append(&s));
        count_spill(&self.stats, &record.meta.id, result);
    }

    /// The writer's counters, shared with whoever exports them.
    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// Writes everything staged and queued, stops the thread and syncs the spill file.
    pub fn shutdown(&self) {
        self.journal_through(self.last_ticket());
        let handle = self.handle.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = self.tx.send(Msg::Shutdown);
            let _ = h.join();
        }
        if let Err(e) = self.spill.sync() {
            tracing::error!(error = %e, "could not sync the spill file");
        }
        if let Some(j) = &self.journal
            && let Err(e) = j.sync()
        {
            tracing::error!(error = %e, "could not sync the journal");
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Counts one write of `n` records to the journal (`seg` is `None` when it failed).
fn count_journaled(stats: &WriterStats, n: usize, seg: Option<u64>) {
    if seg.is_some() {
        stats.journal_writes.fetch_add(1, Ordering::Relaxed);
        stats.journal_records.fetch_add(n as u64, Ordering::Relaxed);
    }
}

fn count_spill(stats: &WriterStats, id: &str, result: crate::Result<()>) {
    match result {
        Ok(()) => {
            stats.spilled.fetch_add(1, Ordering::Relaxed);
        }
        Err(e) => {
            stats.lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!(call = id, error = %e, "call record could be neither stored nor spilled");
        }
    }
}

/// How long a staged record may wait for a caller to write it before the writer does.
const STAGED_MAX_AGE: Duration = Duration::from_millis(50);

enum Item {
    Plain(CallRecord),
    Sealed(SealedCall, Option<u64>),
}

/// What became of the records of one journal segment.
#[derive(Default)]
struct SegmentCount {
    /// Committed to the store by the writer.
    committed: u64,
    /// Failed to commit (still in the segment, which must be replayed).
    failed: u64,
}

struct Worker {
    store: Box<dyn Store>,
    keyring: Arc<RwLock<Keyring>>,
    spill: Arc<SpillFile>,
    journal: Option<Arc<Journal>>,
    stats: Arc<WriterStats>,
    config: WriterConfig,
    committed: HashMap<u64, SegmentCount>,
    pending: Vec<Closed>,
}

impl Worker {
    fn run(mut self, rx: Receiver<Msg>) {
        let mut key_seen = self
            .keyring
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .stamp();
        let mut last_key_check = Instant::now();
        let mut last_sync = Instant::now();
        let mut batch: Vec<Item> = Vec::with_capacity(self.config.batch_max);
        let mut stop = false;
        let wait = if self.config.journal_sync.is_zero() {
            Duration::from_millis(500)
        } else {
            self.config.journal_sync.min(Duration::from_millis(500))
        };
        while !stop {
            if last_key_check.elapsed() >= KEY_FILE_CHECK {
                self.reload_keys_if_changed(&mut key_seen);
                last_key_check = Instant::now();
            }
            match rx.recv_timeout(wait) {
                Ok(m) => stop = push(&mut batch, m),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            // Group commit: let more records arrive, then take them without blocking. Sleeping
            // instead of waiting on the channel means senders never have to wake this thread
            // while it is busy, which keeps a futex wake-up off every request under load.
            if !stop && !batch.is_empty() && !self.config.batch_delay.is_zero() {
                std::thread::sleep(self.config.batch_delay);
            }
            while !stop && batch.len() < self.config.batch_max {
                match rx.try_recv() {
                    Ok(m) => stop = push(&mut batch, m),
                    Err(TryRecvError::Disconnected) => stop = true,
                    Err(TryRecvError::Empty) => break,
                }
            }
            if stop {
                // Take whatever is still queued.
                while let Ok(m) = rx.try_recv() {
                    push(&mut batch, m);
                }
            }
            if let Some(j) = &self.journal {
                self.write_stale_staged(j, &mut batch, stop);
            }
            self.flush(&mut batch);
            if let Some(j) = self.journal.clone() {
                if !self.config.journal_sync.is_zero()
                    && last_sync.elapsed() >= self.config.journal_sync
                {
                    if let Err(e) = j.sync() {
                        tracing::error!(error = %e, "could not sync the journal");
                    }
                    last_sync = Instant::now();
                }
                let age = if stop {
                    Duration::ZERO
                } else {
                    self.config.journal_rotate
                };
                self.pending.extend(j.rotate_if(age, 64 << 20));
                self.settle_segments();
            }
        }
    }

    /// Writes records staged for the journal that no caller has written for a while (a
    /// backstop: serving writes them before it releases a response), adding them to `batch`.
    fn write_stale_staged(&self, j: &Journal, batch: &mut Vec<Item>, stop: bool) {
        let stale = j
            .staged_since()
            .is_some_and(|t| stop || t.elapsed() >= STAGED_MAX_AGE);
        if !stale {
            return;
        }
        let written = j.write_staged(j.last_ticket(), |calls, seg| {
            count_journaled(&self.stats, calls.len(), seg);
            self.stats
                .depth
                .fetch_add(calls.len() as u64, Ordering::Relaxed);
            batch.extend(calls.into_iter().map(|s| Item::Sealed(s, seg)));
            true
        });
        if let Err(e) = written {
            self.stats.journal_errors.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %e, "could not append call records to the journal");
        }
    }

    /// Deletes each closed segment whose records are all committed; replays into the store
    /// (idempotently) one that holds records the writer never committed, then deletes it.
    fn settle_segments(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        for closed in pending {
            let count = self.committed.get(&closed.seq);
            let (committed, failed) = count.map(|c| (c.committed, c.failed)).unwrap_or((0, 0));
            if committed + failed + closed.unqueued < closed.appended {
                // Some of its records are still queued.
                self.pending.push(closed);
                continue;
            }
            self.committed.remove(&closed.seq);
            if failed + closed.unqueued > 0 {
                self.stats.journal_replays.fetch_add(1, Ordering::Relaxed);
                match crate::spill::ingest_file(&closed.path, self.store.as_ref()) {
                    Ok(r) => {
                        self.stats
                            .written
                            .fetch_add(r.inserted as u64, Ordering::Relaxed);
                    }
                    Err(e) => {
                        // Left on disk: the next start replays it.
                        tracing::error!(file = %closed.path.display(), error = %e,
                            "could not replay a journal segment; it is kept for the next start");
                    }
                }
            } else if let Err(e) = std::fs::remove_file(&closed.path)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                tracing::warn!(file = %closed.path.display(), error = %e, "could not delete a committed journal segment");
            }
        }
    }

    fn flush(&mut self, batch: &mut Vec<Item>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let mut calls: Vec<SealedCall> = Vec::with_capacity(batch.len());
        let mut segs: Vec<Option<u64>> = Vec::with_capacity(batch.len());
        {
            let keyring = self.keyring.read().unwrap_or_else(|p| p.into_inner());
            for item in batch.drain(..) {
                match item {
                    Item::Sealed(s, seg) => {
                        calls.push(s);
                        segs.push(seg);
                    }
                    Item::Plain(r) => match keyring.seal(&r) {
                        Ok(s) => {
                            calls.push(s);
                            segs.push(None);
                        }
                        Err(e) => count_spill(&self.stats, &r.meta.id, Err(e)),
                    },
                }
            }
        }
        let size = self.config.batch_max.max(1);
        for (chunk, chunk_segs) in calls.chunks(size).zip(segs.chunks(size)) {
            match self.store.insert_calls(chunk) {
                Ok(_) => {
                    self.stats
                        .written
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                    for seg in chunk_segs.iter().flatten() {
                        self.committed.entry(*seg).or_default().committed += 1;
                    }
                }
                Err(e) => {
                    self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, records = chunk.len(), "call log write failed; records stay on disk");
                    for (s, seg) in chunk.iter().zip(chunk_segs) {
                        match seg {
                            Some(seg) => {
                                // Still in its journal segment, replayed when it closes.
                                self.committed.entry(*seg).or_default().failed += 1;
                                self.stats.spilled.fetch_add(1, Ordering::Relaxed);
                            }
                            None => count_spill(&self.stats, &s.meta.id, self.spill.append(s)),
                        }
                    }
                }
            }
        }
        self.stats.depth.fetch_sub(n, Ordering::Relaxed);
    }

    /// Picks up `keys rotate-data-key` run by another process (or a new key file copied over
    /// this one) while serving: new records are sealed with the newest data key from then on.
    fn reload_keys_if_changed(&self, seen: &mut Option<KeyFileStamp>) {
        let path = {
            let k = self.keyring.read().unwrap_or_else(|p| p.into_inner());
            k.path().to_owned()
        };
        let now = KeyFileStamp::of(&path);
        if now == *seen {
            return;
        }
        // Once per change: a file that does not load is reported once, not every check.
        *seen = now;
        match reload_keyring(&self.keyring) {
            Ok(Some(active)) => tracing::info!(active = %active, "key file changed; reloaded"),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "key file changed but cannot be loaded; keeping the old keys")
            }
        }
    }
}

/// Adds a message to the batch; says whether it asks the writer to stop.
fn push(batch: &mut Vec<Item>, m: Msg) -> bool {
    match m {
        Msg::Record(r) => batch.push(Item::Plain(*r)),
        Msg::Sealed(calls, seg) => batch.extend(calls.into_iter().map(|s| Item::Sealed(s, seg))),
        Msg::Shutdown => return true,
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::{Backend, each_backend};
    use crate::{CallFilter, ingest_spill_files};

    fn setup(b: &Backend, capacity: usize, delay_ms: u64) -> LogWriter {
        let dir = b.dir.path();
        let (ring, _) = Keyring::load_or_create(&dir.join("k.json")).unwrap();
        let ring = Arc::new(RwLock::new(ring));
        LogWriter::start(
            b.open(),
            ring.clone(),
            WriterConfig {
                queue_capacity: capacity,
                batch_max: 64,
                batch_delay: Duration::from_millis(delay_ms),
                ..WriterConfig::new(&dir.join("spill"), None)
            },
        )
    }

    #[test]
    fn everything_logged_is_stored() {
        each_backend("everything_logged_is_stored", |b| {
            let w = setup(b, 1024, 2);
            for i in 0..500 {
                w.log(crate::keyring::tests::record(&format!("r{i:04}"), "hello"));
            }
            w.shutdown();
            let s = w.stats();
            assert_eq!(s.written.load(Ordering::Relaxed), 500);
            assert_eq!(s.depth.load(Ordering::Relaxed), 0);
            assert_eq!(b.open().count_calls().unwrap(), 500);
        });
    }

    #[test]
    fn a_full_queue_spills_and_nothing_is_lost() {
        each_backend("a_full_queue_spills_and_nothing_is_lost", |b| {
            // A tiny queue and a slow group commit force most records into the spill file.
            let w = setup(b, 2, 300);
            for i in 0..50 {
                w.log(crate::keyring::tests::record(&format!("r{i:04}"), "hello"));
            }
            w.shutdown();
            let s = w.stats();
            let (written, spilled) = (
                s.written.load(Ordering::Relaxed),
                s.spilled.load(Ordering::Relaxed),
            );
            assert!(spilled > 0, "nothing spilled");
            assert_eq!(written + spilled, 50);
            assert_eq!(s.lost.load(Ordering::Relaxed), 0);
            let store = b.open();
            let report = ingest_spill_files(&b.dir.path().join("spill"), store.as_ref()).unwrap();
            assert_eq!(report.inserted as u64, spilled);
            assert_eq!(store.list_calls(&CallFilter::default()).unwrap().len(), 50);
        });
    }
}

#[cfg(test)]
mod journal_tests {
    use super::*;
    use crate::backends::each_backend;
    use crate::{SqliteStore, ingest_spill_files};

    /// A journaling writer on `store` whose key file, spill and journal are in `dir`.
    fn journal_writer(
        dir: &std::path::Path,
        store: Box<dyn Store>,
        capacity: usize,
        delay_ms: u64,
    ) -> (LogWriter, Arc<RwLock<Keyring>>) {
        let (ring, _) = Keyring::load_or_create(&dir.join("k.json")).unwrap();
        let ring = Arc::new(RwLock::new(ring));
        let w = LogWriter::start(
            store,
            ring.clone(),
            WriterConfig {
                queue_capacity: capacity,
                batch_max: 64,
                batch_delay: Duration::from_millis(delay_ms),
                journal_rotate: Duration::from_millis(50),
                ..WriterConfig::new(&dir.join("spill"), Some(&dir.join("journal")))
            },
        );
        (w, ring)
    }

    fn journal_ids(dir: &std::path::Path) -> Vec<String> {
        let mut ids = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            return ids;
        };
        for e in entries {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            let read = crate::journal::decode_segment(&bytes);
            assert_eq!(read.bad, 0);
            ids.extend(read.calls.into_iter().map(|c| c.meta.id));
        }
        ids
    }

    /// Logs a record the way the gateway does: its response would leave after this returns.
    fn log_journaled(w: &LogWriter, id: &str) {
        let t = w.log(crate::keyring::tests::record(id, "hello"));
        w.journal_through(t);
        assert!(w.is_journaled(t));
    }

    /// Copies the journal as a crash would leave it, and recovers it into a fresh store.
    fn recover_copy(dir: &std::path::Path) -> SqliteStore {
        let fresh = SqliteStore::open(&dir.join("recovered")).unwrap();
        let copy = dir.join("copy");
        std::fs::create_dir_all(&copy).unwrap();
        for e in std::fs::read_dir(dir.join("journal")).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, copy.join(p.file_name().unwrap())).unwrap();
        }
        ingest_spill_files(&copy, &fresh).unwrap();
        fresh
    }

    #[test]
    fn a_record_is_in_the_journal_once_journal_through_returns() {
        each_backend(
            "a_record_is_in_the_journal_once_journal_through_returns",
            |b| {
                // A slow group commit: nothing reaches the database during the checks.
                let (w, _) = journal_writer(b.dir.path(), b.open(), 1024, 400);
                for i in 0..20 {
                    let id = format!("r{i:04}");
                    log_journaled(&w, &id);
                    assert!(
                        journal_ids(&b.dir.path().join("journal")).contains(&id),
                        "{id} not journaled"
                    );
                }
                // What a crash would leave is enough to recover every record.
                assert_eq!(recover_copy(b.dir.path()).count_calls().unwrap(), 20);
                w.shutdown();
                assert_eq!(w.stats().written.load(Ordering::Relaxed), 20);
            },
        );
    }

    #[test]
    fn records_staged_together_go_to_the_journal_in_one_write_and_all_survive_a_crash() {
        each_backend(
            "records_staged_together_go_to_the_journal_in_one_write_and_all_survive_a_crash",
            |b| {
                let (w, _) = journal_writer(b.dir.path(), b.open(), 1024, 400);
                // As in one turn of the event loop: 50 calls answered, then their responses released.
                let tickets: Vec<Ticket> = (0..50)
                    .map(|i| w.log(crate::keyring::tests::record(&format!("r{i:04}"), "hello")))
                    .collect();
                assert_eq!(w.last_ticket(), tickets[49]);
                w.journal_through(tickets[0]);
                assert!(tickets.iter().all(|t| w.is_journaled(*t)));
                let s = w.stats();
                assert_eq!(s.journal_writes.load(Ordering::Relaxed), 1);
                assert_eq!(s.journal_records.load(Ordering::Relaxed), 50);
                let segments = std::fs::read_dir(b.dir.path().join("journal"))
                    .unwrap()
                    .count();
                assert_eq!(segments, 1);
                assert_eq!(journal_ids(&b.dir.path().join("journal")).len(), 50);
                assert_eq!(recover_copy(b.dir.path()).count_calls().unwrap(), 50);
                w.shutdown();
                assert_eq!(w.stats().written.load(Ordering::Relaxed), 50);
            },
        );
    }

    #[test]
    fn records_no_caller_writes_reach_the_journal_and_the_store() {
        each_backend(
            "records_no_caller_writes_reach_the_journal_and_the_store",
            |b| {
                let (w, _) = journal_writer(b.dir.path(), b.open(), 1024, 1);
                let t = w.log(crate::keyring::tests::record("r1", "hello"));
                // Nobody calls journal_through: the writer's backstop writes it.
                let deadline = Instant::now() + Duration::from_secs(5);
                while !w.is_journaled(t) && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(10));
                }
                assert!(w.is_journaled(t));
                w.shutdown();
                let store = b.open();
                assert_eq!(store.count_calls().unwrap(), 1);
            },
        );
    }

    #[test]
    fn committed_segments_are_deleted() {
        each_backend("committed_segments_are_deleted", |b| {
            let (w, _) = journal_writer(b.dir.path(), b.open(), 1024, 1);
            for i in 0..300 {
                log_journaled(&w, &format!("r{i:04}"));
                if i % 100 == 99 {
                    std::thread::sleep(Duration::from_millis(120));
                }
            }
            w.shutdown();
            let s = w.stats();
            assert_eq!(s.written.load(Ordering::Relaxed), 300);
            assert_eq!(s.lost.load(Ordering::Relaxed), 0);
            assert_eq!(s.journal_replays.load(Ordering::Relaxed), 0);
            assert!(journal_ids(&b.dir.path().join("journal")).is_empty());
            let store = b.open();
            assert_eq!(store.count_calls().unwrap(), 300);
        });
    }

    #[test]
    fn records_the_full_queue_refused_are_replayed_from_the_journal() {
        each_backend(
            "records_the_full_queue_refused_are_replayed_from_the_journal",
            |b| {
                let (w, _) = journal_writer(b.dir.path(), b.open(), 2, 300);
                for i in 0..50 {
                    log_journaled(&w, &format!("r{i:04}"));
                }
                w.shutdown();
                let s = w.stats();
                assert!(s.spilled.load(Ordering::Relaxed) > 0, "nothing overflowed");
                assert!(s.journal_replays.load(Ordering::Relaxed) > 0);
                assert_eq!(s.lost.load(Ordering::Relaxed), 0);
                let store = b.open();
                assert_eq!(store.count_calls().unwrap(), 50);
                assert!(journal_ids(&b.dir.path().join("journal")).is_empty());
            },
        );
    }

    #[cfg(unix)]
    #[test]
    fn journal_spill_and_database_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let db = SqliteStore::open(&dir.path().join("db")).unwrap();
        let (w, _) = journal_writer(dir.path(), Box::new(db), 1024, 400);
        log_journaled(&w, "r1");
        let spill = SpillFile::new(&dir.path().join("spill"));
        let ring = Keyring::load(&dir.path().join("k.json")).unwrap();
        spill
            .append(
                &ring
                    .seal(&crate::keyring::tests::record("r2", "x"))
                    .unwrap(),
            )
            .unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for sub in ["journal", "spill"] {
            let d = dir.path().join(sub);
            assert_eq!(mode(&d), 0o700, "{sub}");
            for e in std::fs::read_dir(&d).unwrap() {
                let p = e.unwrap().path();
                assert_eq!(mode(&p), 0o600, "{}", p.display());
            }
        }
        w.shutdown();
        for name in ["db", "db-wal", "db-shm"] {
            let p = dir.path().join(name);
            if p.exists() {
                assert_eq!(mode(&p), 0o600, "{name}");
            }
        }
        assert!(dir.path().join("db").exists());
    }
}

#[cfg(test)]
mod failure_tests {
    use super::*;
    use crate::{ApiKeyRecord, AuditEntry, CallFilter, CallMeta, StoreError};

    /// A store whose disk is full: every write fails.
    struct FullDisk;

    impl Store for FullDisk {
        fn insert_calls(&self, _: &[SealedCall]) -> crate::Result<usize> {
            Err(StoreError::io(
                "db",
                std::io::Error::other("No space left on device"),
            ))
        }
        fn list_calls(&self, _: &CallFilter) -> crate::Result<Vec<CallMeta>> {
            Ok(vec![])
        }
        fn get_call(&self, _: &str) -> crate::Result<Option<SealedCall>> {
            Ok(None)
        }
        fn scan_calls(&self, _: &CallFilter) -> crate::Result<Vec<SealedCall>> {
            Ok(vec![])
        }
        fn count_calls(&self) -> crate::Result<u64> {
            Ok(0)
        }
        fn create_api_key(&self, _: &ApiKeyRecord) -> crate::Result<()> {
            Ok(())
        }
        fn list_api_keys(&self) -> crate::Result<Vec<ApiKeyRecord>> {
            Ok(vec![])
        }
        fn find_api_key(&self, _: &[u8]) -> crate::Result<Option<ApiKeyRecord>> {
            Ok(None)
        }
        fn revoke_api_key(&self, k: &str) -> crate::Result<ApiKeyRecord> {
            Err(StoreError::NotFound(k.into()))
        }
        fn audit(&self, _: &AuditEntry) -> crate::Result<()> {
            Ok(())
        }
        fn list_audit(&self, _: usize) -> crate::Result<Vec<AuditEntry>> {
            Ok(vec![])
        }
        fn create_dataset(
            &self,
            _: &crate::DatasetMeta,
            _: &[crate::SealedExample],
        ) -> crate::Result<()> {
            Err(StoreError::io(
                "db",
                std::io::Error::other("No space left on device"),
            ))
        }
        fn list_datasets(&self) -> crate::Result<Vec<crate::DatasetMeta>> {
            Ok(vec![])
        }
        fn get_dataset(&self, _: &str) -> crate::Result<Option<crate::DatasetMeta>> {
            Ok(None)
        }
        fn dataset_examples(&self, _: &str) -> crate::Result<Vec<crate::SealedExample>> {
            Ok(vec![])
        }
        fn assign_tasks(&self, _: &[(String, Option<String>)]) -> crate::Result<()> {
            Err(StoreError::io(
                "db",
                std::io::Error::other("No space left on device"),
            ))
        }
        fn task_size(&self, _: &str) -> crate::Result<u64> {
            Ok(0)
        }
        fn replace_tasks(
            &self,
            _: &[crate::TaskRecord],
            _: &[(String, Option<String>)],
        ) -> crate::Result<()> {
            Ok(())
        }
        fn list_tasks(&self) -> crate::Result<Vec<crate::TaskRecord>> {
            Ok(Vec::new())
        }
        fn get_task(&self, _: &str) -> crate::Result<Option<crate::TaskRecord>> {
            Ok(None)
        }
        fn task_assignments(&self) -> crate::Result<Vec<(String, Option<String>)>> {
            Ok(Vec::new())
        }
        fn set_policy(&self, _: &crate::Policy) -> crate::Result<()> {
            Ok(())
        }
        fn get_policy(&self, _: &str) -> crate::Result<Option<crate::Policy>> {
            Ok(None)
        }
        fn list_policies(&self) -> crate::Result<Vec<crate::Policy>> {
            Ok(Vec::new())
        }
        fn record_agreement(&self, _: &crate::AgreementRecord) -> crate::Result<()> {
            Ok(())
        }
        fn recent_agreement(
            &self,
            _: &str,
            _: usize,
        ) -> crate::Result<Vec<crate::AgreementRecord>> {
            Ok(Vec::new())
        }
        fn record_route_event(&self, _: &crate::RouteEvent) -> crate::Result<()> {
            Ok(())
        }
        fn list_route_events(
            &self,
            _: Option<&str>,
            _: usize,
        ) -> crate::Result<Vec<crate::RouteEvent>> {
            Ok(Vec::new())
        }
    }

    fn writer(dir: &std::path::Path, spill_dir: std::path::PathBuf) -> LogWriter {
        let (ring, _) = Keyring::load_or_create(&dir.join("k.json")).unwrap();
        LogWriter::start(
            Box::new(FullDisk),
            Arc::new(RwLock::new(ring)),
            WriterConfig {
                queue_capacity: 64,
                batch_max: 8,
                batch_delay: Duration::ZERO,
                ..WriterConfig::new(&spill_dir, None)
            },
        )
    }

    #[test]
    fn a_failing_database_spills_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let w = writer(dir.path(), dir.path().join("spill"));
        for i in 0..20 {
            w.log(crate::keyring::tests::record(&format!("r{i}"), "p"));
        }
        w.shutdown();
        let s = w.stats();
        assert_eq!(s.spilled.load(Ordering::Relaxed), 20);
        assert_eq!(s.lost.load(Ordering::Relaxed), 0);
        assert!(s.write_errors.load(Ordering::Relaxed) > 0);
        let store = crate::SqliteStore::open(&dir.path().join("db")).unwrap();
        let report = crate::ingest_spill_files(&dir.path().join("spill"), &store).unwrap();
        assert_eq!(report.inserted, 20);
    }

    #[test]
    fn with_a_failing_database_records_stay_in_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let (ring, _) = Keyring::load_or_create(&dir.path().join("k.json")).unwrap();
        let w = LogWriter::start(
            Box::new(FullDisk),
            Arc::new(RwLock::new(ring)),
            WriterConfig {
                queue_capacity: 64,
                batch_max: 8,
                batch_delay: Duration::ZERO,
                journal_rotate: Duration::from_millis(10),
                ..WriterConfig::new(&dir.path().join("spill"), Some(&dir.path().join("journal")))
            },
        );
        for i in 0..20 {
            let t = w.log(crate::keyring::tests::record(&format!("r{i}"), "p"));
            w.journal_through(t);
        }
        w.shutdown();
        let s = w.stats();
        assert_eq!(s.lost.load(Ordering::Relaxed), 0);
        assert!(s.write_errors.load(Ordering::Relaxed) > 0);
        // The replay at the segment's close failed too; the next start recovers everything.
        let store = crate::SqliteStore::open(&dir.path().join("db")).unwrap();
        let report = crate::ingest_spill_files(&dir.path().join("journal"), &store).unwrap();
        assert_eq!(report.inserted, 20);
        assert_eq!(store.count_calls().unwrap(), 20);
    }

    #[test]
    fn records_that_cannot_be_stored_or_spilled_are_counted_as_lost() {
        let dir = tempfile::tempdir().unwrap();
        // The spill "directory" is a file: nothing can be created under it.
        let blocker = dir.path().join("blocker");
        std::fs::write(&blocker, b"").unwrap();
        let w = writer(dir.path(), blocker.join("spill"));
        for i in 0..5 {
            w.log(crate::keyring::tests::record(&format!("r{i}"), "p"));
        }
        w.shutdown();
        let s = w.stats();
        assert_eq!(s.lost.load(Ordering::Relaxed), 5);
        assert_eq!(s.spilled.load(Ordering::Relaxed), 0);
    }
}
