//! The data directory (`--data-dir`, default `./.downshift`): database, key file, spill files.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Keyring, Result, SqliteStore, WriterConfig};

/// The `[store]` section of `downshift.toml`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
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
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            database: None,
            key_file: None,
            queue_capacity: 8192,
            batch_max: 512,
            batch_delay_ms: 2,
        }
    }
}

/// Paths inside the data directory, resolved once.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
    pub database: PathBuf,
    pub key_file: PathBuf,
    pub spill_dir: PathBuf,
}

impl DataDir {
    pub fn new(root: &Path, cfg: &StoreConfig) -> DataDir {
        DataDir {
            root: root.to_owned(),
            database: cfg
                .database
                .clone()
                .unwrap_or_else(|| root.join("downshift.sqlite")),
            key_file: cfg
                .key_file
                .clone()
                .unwrap_or_else(|| root.join("keys.json")),
            spill_dir: root.join("spill"),
        }
    }

    pub fn open_store(&self) -> Result<SqliteStore> {
        SqliteStore::open(&self.database)
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

    pub fn writer_config(&self, cfg: &StoreConfig) -> WriterConfig {
        WriterConfig {
            queue_capacity: cfg.queue_capacity,
            batch_max: cfg.batch_max.max(1),
            batch_delay: Duration::from_millis(cfg.batch_delay_ms),
            spill_dir: self.spill_dir.clone(),
        }
    }
}
