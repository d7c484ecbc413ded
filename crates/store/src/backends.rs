//! The store test suite's backends: every generic test runs once on SQLite and once on
//! PostgreSQL (a database of its own on `DOWNSHIFT_TEST_PG`; see [`crate::pg_testing`]).

use std::path::PathBuf;

use crate::pg_testing::TestDatabase;
use crate::{PgStore, SqliteStore, Store};

enum Target {
    Sqlite(PathBuf),
    Postgres(TestDatabase),
}

/// One backend's empty database, with a private temporary directory (key files, spill files).
pub(crate) struct Backend {
    pub dir: tempfile::TempDir,
    target: Target,
}

impl Backend {
    /// A new handle on this backend's database (each call: another connection or pool, as
    /// another process would open).
    pub fn open(&self) -> Box<dyn Store> {
        match &self.target {
            Target::Sqlite(path) => Box::new(SqliteStore::open(path).unwrap()),
            Target::Postgres(db) => Box::new(PgStore::connect(&db.url).unwrap()),
        }
    }
}

/// Runs `test` on SQLite, then on PostgreSQL when a test server is configured.
pub(crate) fn each_backend(test: &str, run: impl Fn(&Backend)) {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Backend {
        target: Target::Sqlite(dir.path().join("db.sqlite")),
        dir,
    };
    eprintln!("{test}: sqlite");
    run(&sqlite);
    if let Some(db) = TestDatabase::create(test) {
        let pg = Backend {
            dir: tempfile::tempdir().unwrap(),
            target: Target::Postgres(db),
        };
        eprintln!("{test}: postgres");
        run(&pg);
    }
}
