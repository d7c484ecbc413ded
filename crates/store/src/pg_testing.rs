//! Throwaway PostgreSQL databases for tests: each test creates its own database on the server
//! named by `DOWNSHIFT_TEST_PG` (a `postgres://` URL whose user may create databases) and
//! drops it when done.
//!
//! Without `DOWNSHIFT_TEST_PG` the PostgreSQL half of a test is skipped with the reason printed,
//! except under CI (`CI` set), where a missing server is a failure: CI must run both backends.
// Test support used by other crates' tests (so not `cfg(test)`): a test database that cannot be
// made fails the test that asked for it, with the reason.
#![allow(clippy::panic)]

use std::sync::atomic::{AtomicU64, Ordering};

use postgres::NoTls;

/// The environment variable naming the test server.
pub const TEST_PG_ENV: &str = "DOWNSHIFT_TEST_PG";

/// A database created for one test, dropped (with its connections) when this is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    /// `postgres://` URL of the new database.
    pub url: String,
    server: String,
    name: String,
}

/// `url` with its database (the path) replaced by `database`.
pub fn with_database(url: &str, database: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let query = rest[authority_end..]
        .find('?')
        .map_or("", |q| &rest[authority_end + q..]);
    format!("{scheme}://{}/{database}{query}", &rest[..authority_end])
}

impl TestDatabase {
    /// A new empty database, or `None` (with the reason on stderr) when no test server is
    /// configured outside CI. Panics under CI without a server, or when the server refuses.
    pub fn create(test: &str) -> Option<TestDatabase> {
        let server = match std::env::var(TEST_PG_ENV) {
            Ok(url) if !url.is_empty() => url,
            _ => {
                let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
                assert!(
                    !ci,
                    "{TEST_PG_ENV} is unset under CI: the PostgreSQL tests must run (.ci/run starts a server)"
                );
                eprintln!(
                    "skipping the PostgreSQL run of {test}: {TEST_PG_ENV} is unset (set it to postgres://user:password@127.0.0.1/postgres; see docs/postgres.md)"
                );
                return None;
            }
        };
        static SEQ: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "downshift_test_{}_{}_{nanos}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = postgres::Client::connect(&server, NoTls)
            .unwrap_or_else(|e| panic!("cannot connect to {TEST_PG_ENV}: {e}"));
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
        Some(TestDatabase {
            url: with_database(&server, &name),
            server,
            name,
        })
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        // FORCE ends the connections pools still hold (PostgreSQL 13+).
        let dropped = postgres::Client::connect(&self.server, NoTls).and_then(|mut c| {
            c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
        });
        if let Err(e) = dropped {
            eprintln!("cannot drop the test database {}: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::with_database;

    #[test]
    fn the_database_of_a_url_is_replaced() {
        assert_eq!(
            with_database("postgres://u:p@127.0.0.1:5432/postgres", "t1"),
            "postgres://u:p@127.0.0.1:5432/t1"
        );
        assert_eq!(
            with_database("postgresql://h/db?sslmode=disable", "t2"),
            "postgresql://h/t2?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "t3"), "postgres://h/t3");
    }
}
