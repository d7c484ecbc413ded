use std::path::PathBuf;

/// Every way persisting or reading the call log can fail.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
    #[error("PostgreSQL: {}", pg_detail(.0))]
    Postgres(#[from] postgres::Error),
    /// No connection to the PostgreSQL server (refused, timed out, pool exhausted).
    #[error("{0}")]
    Pg(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("key file {path}: {reason}")]
    KeyFile { path: PathBuf, reason: String },
    #[error(
        "data key '{0}' is not in the key file (was the record written with another key file?)"
    )]
    UnknownDataKey(String),
    #[error(
        "cannot decrypt call {0}: authentication failed — the key file does not hold the key this record was written with"
    )]
    Decrypt(String),
    #[error(
        "database schema v{found} is newer than this downshift understands (v{known}); upgrade downshift"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("corrupt record {id}: {reason}")]
    Corrupt { id: String, reason: String },
    #[error(
        "no call log at {0}: nothing has been logged or imported into this data directory (pass --data-dir or set DOWNSHIFT_DATA_DIR; `downshift serve` or `downshift import` creates one)"
    )]
    NoStore(PathBuf),
    #[error("{0}")]
    NotFound(String),
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
