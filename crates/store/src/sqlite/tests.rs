//! Tests of what only the SQLite store has (the generic suite is in `crate::tests`).
use super::*;

#[test]
fn a_fresh_database_is_at_the_latest_schema() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
}

/// A database written by the previous release (schema v4) is brought to v5 in place, its
/// calls, keys, datasets and tasks kept.
#[test]
fn a_v4_database_upgrades_without_losing_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    {
        let mut conn = Connection::open(&path).unwrap();
        for (i, sql) in MIGRATIONS[..4].iter().enumerate() {
            let tx = conn.transaction().unwrap();
            tx.execute_batch(sql).unwrap();
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .unwrap();
            tx.commit().unwrap();
        }
        conn.execute_batch(
            "INSERT INTO calls (id, ts_ms, endpoint, model, status, stream, source, key_id, \
                 nonce, payload) \
             VALUES ('c1', 5, 'chat/completions', 'm', 'ok', 0, 'gateway', 'k', x'00', x'01');
             INSERT INTO api_keys (id, name, role, key_hash, prefix, created_ms) \
             VALUES ('k1', 'admin', 'admin', x'aa', 'dsk_', 1);
             INSERT INTO datasets (id, name, created_ms, examples, params, report) \
             VALUES ('d1', 'first', 2, 0, '{}', '{}');
             INSERT INTO tasks (id, label, created_ms, updated_ms, calls, signature, stats, \
                 centroid) VALUES ('t1', 'label', 1, 2, 1, 'sig', '{\"n\":1}', x'');
             INSERT INTO task_assignments (call_id, task_id) VALUES ('c1', 't1');",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), 5);
    assert_eq!(store.count_calls().unwrap(), 1);
    assert_eq!(store.list_api_keys().unwrap()[0].name, "admin");
    assert_eq!(store.get_dataset("first").unwrap().unwrap().id, "d1");
    assert_eq!(store.get_task("t1").unwrap().unwrap().stats["n"], 1);
    assert_eq!(
        store.task_assignments().unwrap(),
        [("c1".to_owned(), Some("t1".to_owned()))]
    );
    // The new tables work on the upgraded file, and a second open is a no-op.
    store.set_policy(&crate::Policy::new("t1", "cli")).unwrap();
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.schema_version().unwrap(), 5);
    assert_eq!(store.list_policies().unwrap().len(), 1);
    assert_eq!(store.count_calls().unwrap(), 1);
}

#[test]
fn newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    drop(SqliteStore::open(&path).unwrap());
    Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let err = SqliteStore::open(&path).err().unwrap().to_string();
    assert!(err.contains("newer"), "{err}");
}
