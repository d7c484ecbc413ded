//! The data directory (`--data-dir`; the CLI's default is `./.downshift` when it exists, else the
//! platform data directory): database, key file, spill files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Keyring, PgOptions, PgStore, Result, SqliteStore, Store, StoreError, WriterConfig};

/// The `[store]` section of `downshift.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// A PostgreSQL database shared by every gateway replica and the CLI
    /// (`postgres://user:password@host:port/database`; `--store-url`, env `DOWNSHIFT_STORE_URL`).
    /// Unset: the SQLite file below.
    pub url: Option<String>,
    /// SQLite database file (default: `<data-dir>/downshift.sqlite`).
    pub database: Option<PathBuf>,
    /// Key file (default: `<data-dir>/keys.json`; env `DOWNSHIFT_KEY_FILE`).
    pub key_file: Option<PathBuf>,
    /// Call records the write queue holds before new ones spill to disk.
    pub queue_capacity: usize,
    /// Most records committed in one transaction.
    pub batch_max: usize,
    /// How long the writer waits to fill a batch, in milliseconds (group commit).
    pub batch_delay_ms: u64,
    /// How long a gateway request that writes (an audit entry, a policy change) waits for
    /// another process's write lock, in milliseconds, before failing with 503.
    pub request_busy_timeout_ms: u64,
    /// Append every call record to a journal file (`<data-dir>/journal`, mode 0600) before its
    /// response is released, so an answered call survives a crash (`kill -9`) of the gateway.
    /// Off: records are only queued, and a crash loses those not yet committed.
    pub journal: bool,
    /// Flush the journal to disk (`fsync`) this often, in milliseconds, so answered calls also
    /// survive a power loss (within this window); 0: never (a crash of the process is covered
    /// either way).
    pub journal_sync_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: None,
            database: None,
            key_file: None,
            queue_capacity: 8192,
            batch_max: 512,
            batch_delay_ms: 2,
            request_busy_timeout_ms: 1_000,
            journal: true,
            journal_sync_ms: 0,
        }
    }
}

/// Paths inside the data directory, resolved once.
#[derive(Debug, Clone)]
pub struct DataDir {
    /// The data directory itself.
    pub root: PathBuf,
    /// The PostgreSQL database, when one is configured; else the SQLite file `database`.
    pub url: Option<String>,
    /// The SQLite database file (configured, else `<root>/downshift.sqlite`).
    pub database: PathBuf,
    /// The key file (configured, else `<root>/keys.json`).
    pub key_file: PathBuf,
    /// Where the log writer puts records that are in no journal segment and that it can
    /// neither queue nor store: `<root>/spill`.
    pub spill_dir: PathBuf,
    /// The gateway's journal of answered calls: `<root>/journal`.
    pub journal_dir: PathBuf,
}

impl DataDir {
    /// The paths of the data directory `root` under `cfg` (an empty URL counts as none);
    /// touches nothing on disk.
    pub fn new(root: &Path, cfg: &StoreConfig) -> DataDir {
        DataDir {
            root: root.to_owned(),
            url: cfg.url.clone().filter(|u| !u.is_empty()),
            database: cfg
                .database
                .clone()
                .unwrap_or_else(|| root.join("downshift.sqlite")),
            key_file: cfg
                .key_file
                .clone()
                .unwrap_or_else(|| root.join("keys.json")),
            spill_dir: root.join("spill"),
            journal_dir: root.join("journal"),
        }
    }

    /// Creates the data directory if missing and makes it private (mode 0700 on Unix): it
    /// holds the call log's metadata, tags, audit trail and key prefixes.
    pub fn make_private(&self) -> Result<()> {
        crate::journal::create_private_dir(&self.root)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| crate::StoreError::io(&self.root, e))?;
        }
        Ok(())
    }

    /// Claims the data directory for one gateway: an exclusive lock on `<data-dir>/serve.lock`,
    /// held while the returned file is open (the kernel drops it when the process ends, `kill -9`
    /// included). The journal is the gateway's own: a second gateway on the same directory would
    /// replay and delete the first one's live segments, so it is refused with the reason.
    pub fn lock_for_serving(&self) -> Result<std::fs::File> {
        let path = self.root.join("serve.lock");
        let mut open = std::fs::OpenOptions::new();
        open.create(true).truncate(false).write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            open.mode(0o600);
        }
        let file = open
            .open(&path)
            .map_err(|e| crate::StoreError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(file),
            Err(std::fs::TryLockError::WouldBlock) => Err(crate::StoreError::Invalid(format!(
                "another `downshift serve` is running on the data directory {} (it holds {}): one gateway per data directory, since each journals its answered calls there",
                self.root.display(),
                path.display()
            ))),
            Err(std::fs::TryLockError::Error(e)) => Err(crate::StoreError::io(&path, e)),
        }
    }

    /// Moves the records a previous run left on disk (journal segments, spill files) into the
    /// store; idempotent by call id.
    pub fn replay_unstored(&self, store: &dyn crate::Store) -> Result<crate::IngestReport> {
        let mut report = crate::ingest_spill_files(&self.journal_dir, store)?;
        let spill = crate::ingest_spill_files(&self.spill_dir, store)?;
        report.files += spill.files;
        report.records += spill.records;
        report.inserted += spill.inserted;
        report.bad_lines += spill.bad_lines;
        Ok(report)
    }

    /// Where the call log is, for messages: the PostgreSQL server (without its password) or the
    /// SQLite file.
    pub fn store_location(&self) -> String {
        match &self.url {
            Some(url) => crate::postgres::redacted(url),
            None => self.database.display().to_string(),
        }
    }

    /// A handle for the gateway's requests (admin API, key lookups): bounded waits for another
    /// writer's lock.
    pub fn open_admin_store(&self, cfg: &StoreConfig) -> Result<Box<dyn Store>> {
        let busy = Duration::from_millis(cfg.request_busy_timeout_ms);
        match &self.url {
            Some(url) => Ok(Box::new(PgStore::connect_with(
                url,
                &PgOptions {
                    lock_timeout: busy,
                    ..PgOptions::default()
                },
            )?)),
            None => Ok(Box::new(SqliteStore::open_with_busy_timeout(
                &self.database,
                busy,
            )?)),
        }
    }

    /// The store (created if missing): the PostgreSQL database when a URL is configured, else
    /// the SQLite file.
    pub fn open_store(&self) -> Result<Box<dyn Store>> {
        match &self.url {
            Some(url) => Ok(Box::new(PgStore::connect(url)?)),
            None => Ok(Box::new(SqliteStore::open(&self.database)?)),
        }
    }

    /// The store, for a command that only reads: a data directory without a SQLite database is
    /// an error that says where it looked ([`crate::StoreError::NoStore`]), not a new empty
    /// store. A PostgreSQL database is connected to as configured.
    pub fn open_existing_store(&self) -> Result<Box<dyn Store>> {
        if self.url.is_none() && !self.database.exists() {
            return Err(StoreError::NoStore(self.database.clone()));
        }
        self.open_store()
    }

    /// The keyring; with `create`, a missing key file is created (mode 0600). The flag says
    /// whether it was.
    pub fn keyring(&self, create: bool) -> Result<(Keyring, bool)> {
        if create {
            Keyring::load_or_create(&self.key_file)
        } else {
            Ok((Keyring::load(&self.key_file)?, false))
        }
    }

    /// The log writer's settings from `cfg`, with this directory's spill and journal paths (no
    /// journal when `cfg.journal` is off; a batch of at least one record).
    pub fn writer_config(&self, cfg: &StoreConfig) -> WriterConfig {
        WriterConfig {
            queue_capacity: cfg.queue_capacity,
            batch_max: cfg.batch_max.max(1),
            batch_delay: Duration::from_millis(cfg.batch_delay_ms),
            spill_dir: self.spill_dir.clone(),
            journal_dir: cfg.journal.then(|| self.journal_dir.clone()),
            journal_sync: Duration::from_millis(cfg.journal_sync_ms),
            journal_rotate: Duration::from_secs(1),
        }
    }
}
