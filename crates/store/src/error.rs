use std::path::PathBuf;

/// Every way persisting or reading the call log can fail.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite refused or failed a statement (a busy lock included: see
    /// [`StoreError::is_busy`]).
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    /// The PostgreSQL server or client failed a statement (constraint, lock timeout, lost
    /// connection, …).
    #[error("PostgreSQL: {}", pg_detail(.0))]
    Postgres(#[from] postgres::Error),
    /// No connection to the PostgreSQL server (refused, timed out, pool exhausted).
    #[error("{0}")]
    Pg(String),
    /// A file or directory of the data directory (spill file, journal, key file, lock) could
    /// not be created, read, written or renamed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory the operation was on.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// The key file cannot be used: missing or unreadable, not a downshift key file (bad JSON,
    /// unsupported version), a key that is not hex of the right length, or an active data key
    /// it does not hold.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A record names a data key (by id) that the loaded key file does not hold.
    #[error(
        "data key '{0}' is not in the key file (was the record written with another key file?)"
    )]
    UnknownDataKey(String),
    #[error(
        "cannot decrypt call {0}: authentication failed — the key file does not hold the key this record was written with"
    )]
    /// AES-GCM authentication failed for the record with this id (or associated data): the
    /// wrong key, or a tampered or misplaced ciphertext.
    Decrypt(String),
    #[error(
        "database schema v{found} is newer than this downshift understands (v{known}); upgrade downshift"
    )]
    /// The database was migrated by a newer downshift; this build refuses to touch it.
    SchemaTooNew {
        /// The database's schema version.
        found: i64,
        /// The newest schema version this build knows.
        known: i64,
    },
    /// A record could not be encoded, or its decrypted payload or journal frame is malformed.
    #[error("corrupt record {id}: {reason}")]
    Corrupt {
        /// The call id (or associated data) of the record.
        id: String,
        /// What is wrong with it.
        reason: String,
    },
    #[error(
        "no call log at {0}: nothing has been logged or imported into this data directory (pass --data-dir or set DOWNSHIFT_DATA_DIR; `downshift serve` or `downshift import` creates one)"
    )]
    /// A read-only command found no SQLite database at this path
    /// ([`crate::DataDir::open_existing_store`]).
    NoStore(PathBuf),
    /// The named record (API key, dataset, …) does not exist; the message says which.
    #[error("{0}")]
    NotFound(String),
    /// The caller's input was refused (a bad name, policy, URL, mode, an ambiguous key
    /// prefix, …); the message says why.
    #[error("{0}")]
    Invalid(String),
}

impl StoreError {
    /// The database was locked by another writer for longer than the busy timeout.
    /// With PostgreSQL: a lock wait over `lock_timeout`, a serialization failure or deadlock,
    /// or no connection to be had (server down, pool exhausted) — all worth a retry (503).
    pub fn is_busy(&self) -> bool {
        if matches!(self, StoreError::Pg(_)) {
            return true;
        }
        if let StoreError::Postgres(e) = self {
            use postgres::error::SqlState;
            return e.code().is_some_and(|c| {
                *c == SqlState::LOCK_NOT_AVAILABLE
                    || *c == SqlState::T_R_SERIALIZATION_FAILURE
                    || *c == SqlState::T_R_DEADLOCK_DETECTED
            });
        }
        matches!(
            self,
            StoreError::Db(rusqlite::Error::SqliteFailure(f, _))
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                )
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        StoreError::Io {
            path: path.into(),
            source,
        }
    }
}

/// A server error's own message (with its detail), else the client's description.
fn pg_detail(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_owned(),
        },
        None => e.to_string(),
    }
}
