//! The asynchronous write path: a bounded queue in front of the store, drained in batches by
//! one thread. Serving only ever does a non-blocking `try_send`; when the queue is full the
//! record is sealed and appended to the spill file instead. Nothing is dropped silently: a
//! record that can be neither stored nor spilled is counted in `lost` and logged as an error.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{CallRecord, Keyring, SealedCall, SpillFile, Store};

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
}

/// Counters exported as metrics.
#[derive(Debug, Default)]
pub struct WriterStats {
    /// Records waiting in the queue.
    pub depth: AtomicU64,
    /// Records committed to the store.
    pub written: AtomicU64,
    /// Records appended to the spill file.
    pub spilled: AtomicU64,
    /// Records neither stored nor spilled (disk full, …). Each is also logged as an error.
    pub lost: AtomicU64,
    /// Failed store transactions (their records went to the spill file).
    pub write_errors: AtomicU64,
}

enum Msg {
    Record(Box<CallRecord>),
    Shutdown,
}

pub struct LogWriter {
    tx: SyncSender<Msg>,
    stats: Arc<WriterStats>,
    keyring: Arc<RwLock<Keyring>>,
    spill: Arc<SpillFile>,
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
        let worker = Worker {
            store,
            keyring: keyring.clone(),
            spill: spill.clone(),
            stats: stats.clone(),
            config,
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
            handle: Mutex::new(handle),
        }
    }

    /// Queues a record without blocking; spills it when the queue is full.
    pub fn log(&self, record: CallRecord) {
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
    }

    fn spill_one(&self, record: &CallRecord) {
        let keyring = self.keyring.read().unwrap_or_else(|p| p.into_inner());
        let result = keyring.seal(record).and_then(|s| self.spill.append(&s));
        count_spill(&self.stats, &record.meta.id, result);
    }

    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// Writes everything queued, stops the thread and syncs the spill file.
    pub fn shutdown(&self) {
        let handle = self.handle.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle {
            let _ = self.tx.send(Msg::Shutdown);
            let _ = h.join();
        }
        if let Err(e) = self.spill.sync() {
            tracing::error!(error = %e, "could not sync the spill file");
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.shutdown();
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

struct Worker {
    store: Box<dyn Store>,
    keyring: Arc<RwLock<Keyring>>,
    spill: Arc<SpillFile>,
    stats: Arc<WriterStats>,
    config: WriterConfig,
}

impl Worker {
    fn run(self, rx: Receiver<Msg>) {
        let mut key_mtime = self.key_mtime();
        let mut last_key_check = Instant::now();
        let mut batch: Vec<CallRecord> = Vec::with_capacity(self.config.batch_max);
        let mut stop = false;
        while !stop {
            if last_key_check.elapsed() > Duration::from_secs(2) {
                self.reload_keys_if_changed(&mut key_mtime);
                last_key_check = Instant::now();
            }
            match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(Msg::Record(r)) => batch.push(*r),
                Ok(Msg::Shutdown) => stop = true,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => stop = true,
            }
            // Group commit: let more records arrive, then take them without blocking. Sleeping
            // instead of waiting on the channel means senders never have to wake this thread
            // while it is busy, which keeps a futex wake-up off every request under load.
            if !stop && !self.config.batch_delay.is_zero() {
                std::thread::sleep(self.config.batch_delay);
            }
            while !stop && batch.len() < self.config.batch_max {
                match rx.try_recv() {
                    Ok(Msg::Record(r)) => batch.push(*r),
                    Ok(Msg::Shutdown) | Err(TryRecvError::Disconnected) => stop = true,
                    Err(TryRecvError::Empty) => break,
                }
            }
            if stop {
                // Take whatever is still queued.
                while let Ok(Msg::Record(r)) = rx.try_recv() {
                    batch.push(*r);
                }
            }
            self.flush(&mut batch);
        }
    }

    fn flush(&self, batch: &mut Vec<CallRecord>) {
        if batch.is_empty() {
            return;
        }
        let n = batch.len() as u64;
        let sealed: Vec<(String, crate::Result<SealedCall>)> = {
            let keyring = self.keyring.read().unwrap_or_else(|p| p.into_inner());
            batch
                .drain(..)
                .map(|r| (r.meta.id.clone(), keyring.seal(&r)))
                .collect()
        };
        let mut ok = Vec::with_capacity(sealed.len());
        for (id, s) in sealed {
            match s {
                Ok(s) => ok.push(s),
                Err(e) => count_spill(&self.stats, &id, Err(e)),
            }
        }
        for chunk in ok.chunks(self.config.batch_max.max(1)) {
            match self.store.insert_calls(chunk) {
                Ok(_) => {
                    self.stats
                        .written
                        .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                }
                Err(e) => {
                    self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(error = %e, records = chunk.len(), "call log write failed; spilling");
                    for s in chunk {
                        count_spill(&self.stats, &s.meta.id, self.spill.append(s));
                    }
                }
            }
        }
        self.stats.depth.fetch_sub(n, Ordering::Relaxed);
    }

    fn key_mtime(&self) -> Option<std::time::SystemTime> {
        let k = self.keyring.read().unwrap_or_else(|p| p.into_inner());
        Keyring::modified(k.path())
    }

    /// Picks up `keys rotate-data-key` run by another process while serving.
    fn reload_keys_if_changed(&self, last: &mut Option<std::time::SystemTime>) {
        let now = self.key_mtime();
        if now == *last {
            return;
        }
        *last = now;
        let path = {
            let k = self.keyring.read().unwrap_or_else(|p| p.into_inner());
            k.path().to_owned()
        };
        match Keyring::load(&path) {
            Ok(fresh) => {
                tracing::info!(active = %fresh.info().active_data_key, "key file changed; reloaded");
                *self.keyring.write().unwrap_or_else(|p| p.into_inner()) = fresh;
            }
            Err(e) => {
                tracing::error!(error = %e, "key file changed but cannot be loaded; keeping the old keys")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CallFilter, SqliteStore, ingest_spill_files};

    fn setup(
        capacity: usize,
        delay_ms: u64,
    ) -> (tempfile::TempDir, LogWriter, Arc<RwLock<Keyring>>) {
        let dir = tempfile::tempdir().unwrap();
        let (ring, _) = Keyring::load_or_create(&dir.path().join("k.json")).unwrap();
        let ring = Arc::new(RwLock::new(ring));
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        let w = LogWriter::start(
            Box::new(store),
            ring.clone(),
            WriterConfig {
                queue_capacity: capacity,
                batch_max: 64,
                batch_delay: Duration::from_millis(delay_ms),
                spill_dir: dir.path().join("spill"),
            },
        );
        (dir, w, ring)
    }

    #[test]
    fn everything_logged_is_stored() {
        let (dir, w, _) = setup(1024, 2);
        for i in 0..500 {
            w.log(crate::keyring::tests::record(&format!("r{i:04}"), "hello"));
        }
        w.shutdown();
        let s = w.stats();
        assert_eq!(s.written.load(Ordering::Relaxed), 500);
        assert_eq!(s.depth.load(Ordering::Relaxed), 0);
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        assert_eq!(store.count_calls().unwrap(), 500);
    }

    #[test]
    fn a_full_queue_spills_and_nothing_is_lost() {
        // A tiny queue and a slow group commit force most records into the spill file.
        let (dir, w, _) = setup(2, 300);
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
        let store = SqliteStore::open(&dir.path().join("db")).unwrap();
        let report = ingest_spill_files(&dir.path().join("spill"), &store).unwrap();
        assert_eq!(report.inserted as u64, spilled);
        assert_eq!(store.list_calls(&CallFilter::default()).unwrap().len(), 50);
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
                spill_dir,
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
