//! Tests of what only the PostgreSQL store has (the generic suite is in `crate::tests`).
use super::*;
use crate::pg_testing::TestDatabase;
use crate::{CallPayload, CallRecord, Keyring, Source};

#[test]
fn passwords_stay_out_of_messages() {
    assert_eq!(
        redacted("postgres://app:s3cret@db:5432/log"),
        "postgres://app:***@db:5432/log"
    );
    assert_eq!(redacted("postgres://app@db/log"), "postgres://app@db/log");
    assert_eq!(redacted("postgres://db/log"), "postgres://db/log");
    let err = PgStore::connect("mysql://app:s3cret@db/log")
        .unwrap_err()
        .to_string();
    assert!(err.contains("unsupported store URL"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
    // Nothing listens on port 1: a clear error, without the password, within the timeout.
    let opts = PgOptions {
        connect_timeout: Duration::from_secs(2),
        ..PgOptions::default()
    };
    let err = PgStore::connect_with("postgres://app:s3cret@127.0.0.1:1/log", &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot connect to PostgreSQL"), "{err}");
    assert!(!err.contains("s3cret"), "{err}");
}

#[test]
fn migrations_run_once_and_a_newer_schema_is_refused() {
    let Some(db) = TestDatabase::create("migrations_run_once_and_a_newer_schema_is_refused") else {
        return;
    };
    // Replicas starting together: the advisory lock lets one migrate, the others see it done.
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| PgStore::connect(&db.url).unwrap());
        }
    });
    let store = PgStore::connect(&db.url).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    let applied: i64 = store
        .query_opt("SELECT COUNT(*) FROM downshift_schema", &[])
        .unwrap()
        .unwrap()
        .get(0);
    assert_eq!(applied, MIGRATIONS.len() as i64);
    store.probe_write().unwrap();
    store
        .execute(
            "INSERT INTO downshift_schema (version, applied_ms) VALUES (99, 0)",
            &[],
        )
        .unwrap();
    let err = PgStore::connect(&db.url).unwrap_err().to_string();
    assert!(err.contains("newer"), "{err}");
}

/// The server stores ciphertext only: the prompt is nowhere in the row, and the row decrypts
/// with the key file.
#[test]
fn the_database_never_sees_plaintext() {
    let Some(db) = TestDatabase::create("the_database_never_sees_plaintext") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (ring, _) = Keyring::load_or_create(&dir.path().join("k.json")).unwrap();
    let secret = "the launch code is 0000-PLAINTEXT";
    let call = ring
        .seal(&CallRecord {
            meta: CallMeta::new("c1", 1, "m", Source::Gateway),
            payload: CallPayload {
                request: format!("{{\"messages\":[{{\"content\":\"{secret}\"}}]}}").into_bytes(),
                response: b"{}".to_vec(),
            },
        })
        .unwrap();
    let store = PgStore::connect(&db.url).unwrap();
    assert_eq!(store.insert_calls(std::slice::from_ref(&call)).unwrap(), 1);
    let rows = store
        .query("SELECT row_to_json(calls)::text FROM calls", &[])
        .unwrap();
    let raw: String = rows[0].get(0);
    assert!(!raw.contains("PLAINTEXT"), "{raw}");
    let payload: Vec<u8> = store
        .query_opt("SELECT payload FROM calls", &[])
        .unwrap()
        .unwrap()
        .get(0);
    assert!(!payload.windows(9).any(|w| w == b"PLAINTEXT"));
    let back = ring.open(&store.get_call("c1").unwrap().unwrap()).unwrap();
    assert!(String::from_utf8(back.request).unwrap().contains(secret));
}

/// A statement that waits for a lock longer than `lock_timeout` fails as busy (the gateway
/// answers 503), instead of hanging the request.
#[test]
fn a_held_lock_times_out_as_busy() {
    let Some(db) = TestDatabase::create("a_held_lock_times_out_as_busy") else {
        return;
    };
    let store = PgStore::connect(&db.url).unwrap();
    let quick = PgStore::connect_with(
        &db.url,
        &PgOptions {
            lock_timeout: Duration::from_millis(200),
            ..PgOptions::default()
        },
    )
    .unwrap();
    let mut holder = postgres::Client::connect(&db.url, NoTls).unwrap();
    let mut tx = holder.transaction().unwrap();
    tx.batch_execute("LOCK TABLE task_policies IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    let t0 = std::time::Instant::now();
    let err = quick.set_policy(&Policy::new("t1", "cli")).unwrap_err();
    assert!(err.is_busy(), "{err}");
    assert!(t0.elapsed() < Duration::from_secs(5));
    tx.rollback().unwrap();
    store.set_policy(&Policy::new("t1", "cli")).unwrap();
}
