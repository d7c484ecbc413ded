//! Tests of what only the SQLite store has (the generic suite is in `crate::tests`).
use super::*;
use crate::keyring::tests::record;
use crate::{Keyring, TaskStats};
use downshift_api::TaskKind;

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

#[test]
fn new_databases_use_16k_pages_and_old_ones_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let page_size = |p: &Path| -> i64 {
        Connection::open(p)
            .unwrap()
            .pragma_query_value(None, "page_size", |r| r.get(0))
            .unwrap()
    };
    let (ring, _) = Keyring::load_or_create(&dir.path().join("k.json")).unwrap();
    let fresh = dir.path().join("new.sqlite");
    let store = SqliteStore::open(&fresh).unwrap();
    store
        .insert_calls(&[ring.seal(&record("a", "hello")).unwrap()])
        .unwrap();
    drop(store);
    assert_eq!(page_size(&fresh), 16384);
    // A database made with SQLite's default 4 KiB pages opens, works and keeps them.
    let old = dir.path().join("old.sqlite");
    let conn = Connection::open(&old).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.execute_batch("CREATE TABLE t (x INTEGER); DROP TABLE t;")
        .unwrap();
    drop(conn);
    assert_eq!(page_size(&old), 4096);
    let store = SqliteStore::open(&old).unwrap();
    store
        .insert_calls(&[ring.seal(&record("b", "hello")).unwrap()])
        .unwrap();
    assert_eq!(store.count_calls().unwrap(), 1);
    drop(store);
    assert_eq!(page_size(&old), 4096);
}

#[test]
fn task_kinds_stored_by_older_versions_read_as_the_shared_kind() {
    // A database discovery wrote before the kinds were shared: `tool` and `none` as it stored
    // them, with the other statistics around them.
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
    let task = |id: &str, kind: &str| TaskRecord {
        id: id.into(),
        label: format!("{kind} task"),
        created_ms: 1,
        updated_ms: 2,
        calls: 50,
        signature: format!("sys:0|{kind}|no-tools"),
        stats: serde_json::json!({"output_kind": kind, "suitability": 0.75,
            "output_consistency": 0.9, "completion_tokens": {"p50": 12, "p95": 30},
            "prompt_tokens": {"p50": 100, "p95": 200}, "reasons": ["+ structured output"]}),
        centroid: vec![],
    };
    let kinds = [
        ("tool", Some(TaskKind::ToolCall)),
        ("json", Some(TaskKind::Json)),
        ("text", Some(TaskKind::Text)),
        ("none", None),
        ("tool_call", Some(TaskKind::ToolCall)),
        ("label", Some(TaskKind::Label)),
    ];
    let records: Vec<TaskRecord> = kinds
        .iter()
        .enumerate()
        .map(|(i, (k, _))| task(&format!("t{i}"), k))
        .collect();
    store.replace_tasks(&records, &[]).unwrap();
    for (i, (k, want)) in kinds.iter().enumerate() {
        let stats = store
            .get_task(&format!("t{i}"))
            .unwrap()
            .unwrap()
            .task_stats();
        assert_eq!(stats.output_kind, *want, "{k}");
        assert_eq!(stats.suitability, 0.75);
        assert_eq!(stats.completion_tokens.p95, 30);
        assert_eq!(stats.prompt_tokens.p95, 200);
    }
    // Statistics without a kind (or unreadable) give the defaults, not an error.
    let mut bare = task("bare", "json");
    bare.stats = serde_json::json!({"p50": 3});
    assert_eq!(bare.task_stats(), TaskStats::default());
}
