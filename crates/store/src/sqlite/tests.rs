//! Tests of the SQLite store.
use super::*;
use crate::{CallPayload, CallRecord, Keyring, TaskStats, hash_api_key};
use downshift_api::TaskKind;

fn rec(id: &str, ts: i64, model: &str, tag: (&str, &str)) -> CallRecord {
    let mut tags = std::collections::BTreeMap::new();
    tags.insert(tag.0.to_owned(), tag.1.to_owned());
    CallRecord {
        meta: CallMeta {
            upstream: Some("default".into()),
            stream: true,
            latency_us: Some(1200),
            ttft_us: Some(300),
            overhead_us: Some(40),
            prompt_tokens: Some(12),
            completion_tokens: Some(3),
            agent: Some("agt_x".into()),
            tags,
            ..CallMeta::new(id, ts, model, Source::Gateway)
        },
        payload: CallPayload {
            request: b"{\"messages\":[]}".to_vec(),
            response: b"{}".to_vec(),
        },
    }
}

#[test]
fn calls_round_trip_and_filter() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
    let (ring, _) = Keyring::load_or_create(&dir.path().join("k.json")).unwrap();
    let a = ring.seal(&rec("a", 10, "m1", ("cat", "x.y"))).unwrap();
    let b = ring.seal(&rec("b", 20, "m2", ("cat", "z"))).unwrap();
    assert_eq!(store.insert_calls(&[a.clone(), b.clone()]).unwrap(), 2);
    // Re-inserting is idempotent.
    assert_eq!(store.insert_calls(std::slice::from_ref(&a)).unwrap(), 0);
    assert_eq!(store.count_calls().unwrap(), 2);
    let all = store.list_calls(&CallFilter::default()).unwrap();
    assert_eq!(
        all.iter().map(|c| c.id.as_str()).collect::<Vec<_>>(),
        ["b", "a"]
    );
    assert_eq!(all[1], a.meta);
    let f = CallFilter {
        tags: vec![("cat".into(), "x.y".into())],
        ..Default::default()
    };
    assert_eq!(store.list_calls(&f).unwrap().len(), 1);
    let f = CallFilter {
        since_ms: Some(15),
        ..Default::default()
    };
    assert_eq!(store.list_calls(&f).unwrap()[0].id, "b");
    let got = store.get_call("a").unwrap().unwrap();
    assert_eq!(got, a);
    assert_eq!(ring.open(&got).unwrap().request, b"{\"messages\":[]}");
    assert!(store.get_call("zzz").unwrap().is_none());
    assert_eq!(
        store.scan_calls(&CallFilter::default()).unwrap()[0].meta.id,
        "a"
    );
    // Keyset pagination continues after the last row seen.
    let page = CallFilter {
        after: Some((10, "a".into())),
        ..Default::default()
    };
    let rest = store.scan_calls(&page).unwrap();
    assert_eq!(
        rest.iter().map(|c| c.meta.id.as_str()).collect::<Vec<_>>(),
        ["b"]
    );
    // Task assignments (written by discovery) select calls.
    store
        .assign_tasks(&[
            ("a".into(), Some("t1".into())),
            ("b".into(), Some("t2".into())),
        ])
        .unwrap();
    store
        .assign_tasks(&[("b".into(), Some("t1".into()))])
        .unwrap();
    assert_eq!(store.task_size("t1").unwrap(), 2);
    store.assign_tasks(&[("b".into(), None)]).unwrap();
    // Noise belongs to no task, not even to the empty id it is stored under.
    let noise = CallFilter {
        task: Some(String::new()),
        ..Default::default()
    };
    assert!(store.list_calls(&noise).unwrap().is_empty());
    assert_eq!(
        store.task_assignments().unwrap(),
        [
            ("a".to_owned(), Some("t1".to_owned())),
            ("b".to_owned(), None)
        ]
    );
    let t1 = CallFilter {
        task: Some("t1".into()),
        ..Default::default()
    };
    let ids: Vec<String> = store
        .list_calls(&t1)
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, ["a"]);
    assert_eq!(store.task_size("t2").unwrap(), 0);
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

#[test]
fn tasks_replace_the_previous_run() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
    assert_eq!(store.schema_version().unwrap(), MIGRATIONS.len() as i64);
    let task = |id: &str, calls| TaskRecord {
        id: id.into(),
        label: format!("label {id}"),
        created_ms: 1,
        updated_ms: 2,
        calls,
        signature: "tool:x".into(),
        stats: serde_json::json!({"p50": 3}),
        centroid: vec![0.5, -1.0],
    };
    store
        .replace_tasks(
            &[task("t1", 1), task("t2", 2)],
            &[
                ("a".into(), Some("t1".into())),
                ("b".into(), Some("t2".into())),
                ("c".into(), None),
            ],
        )
        .unwrap();
    let tasks = store.list_tasks().unwrap();
    assert_eq!(tasks[0], task("t2", 2));
    assert_eq!(store.get_task("t1").unwrap().unwrap().centroid, [0.5, -1.0]);
    // Noise is recorded as seen: a call missing from the list was never discovered.
    assert_eq!(
        store.task_assignments().unwrap(),
        [
            ("a".to_owned(), Some("t1".to_owned())),
            ("b".to_owned(), Some("t2".to_owned())),
            ("c".to_owned(), None)
        ]
    );
    assert_eq!(store.task_size("t1").unwrap(), 1);
    store
        .replace_tasks(&[task("t3", 1)], &[("a".into(), Some("t3".into()))])
        .unwrap();
    assert!(store.get_task("t1").unwrap().is_none());
    assert_eq!(
        store.task_assignments().unwrap(),
        [("a".to_owned(), Some("t3".to_owned()))]
    );
}

#[test]
fn api_keys_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
    let key = ApiKeyRecord {
        id: "k1".into(),
        name: "bot".into(),
        role: Role::Agent,
        key_hash: hash_api_key("dsk_secret"),
        prefix: "dsk_secr".into(),
        agent: None,
        created_ms: 1,
        revoked_ms: None,
    };
    store.create_api_key(&key).unwrap();
    assert_eq!(
        store
            .find_api_key(&hash_api_key("dsk_secret"))
            .unwrap()
            .unwrap()
            .name,
        "bot"
    );
    assert!(store.find_api_key(&hash_api_key("nope")).unwrap().is_none());
    assert!(store.revoke_api_key("missing").is_err());
    let revoked = store.revoke_api_key("dsk_secr").unwrap();
    assert!(revoked.revoked_ms.is_some());
    assert!(store.list_api_keys().unwrap()[0].revoked_ms.is_some());
    store
        .audit(&AuditEntry::new("cli", "read_raw", Some("a"), None))
        .unwrap();
    assert_eq!(store.list_audit(10).unwrap()[0].action, "read_raw");
}

/// Two processes curating at once (two `train --task` runs) write datasets into one
/// database: every write transaction takes the write lock up front, so the other waits its
/// busy timeout instead of failing with "database is locked" when its read snapshot went
/// stale (a deferred transaction that read first cannot wait for the lock in WAL mode).
#[test]
fn concurrent_writers_wait_for_each_other_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    SqliteStore::open(&path).unwrap();
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let path = path.clone();
            std::thread::spawn(move || {
                let store = SqliteStore::open(&path).unwrap();
                for i in 0..40 {
                    let id = format!("ds{w}-{i}");
                    let meta = DatasetMeta {
                        id: id.clone(),
                        name: id.clone(),
                        created_ms: i,
                        examples: 0,
                        params: serde_json::Value::Null,
                        report: serde_json::Value::Null,
                    };
                    store.create_dataset(&meta, &[]).unwrap();
                    store
                        .assign_tasks(&[(format!("c{w}-{i}"), Some(format!("t{w}")))])
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.list_datasets().unwrap().len(), 160);
}

#[test]
fn datasets_are_written_whole_and_immutable() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
    let (ring, _) = Keyring::load_or_create(&dir.path().join("k.json")).unwrap();
    let meta = DatasetMeta {
        id: "ds1".into(),
        name: "first".into(),
        created_ms: 5,
        examples: 2,
        params: serde_json::json!({"since": null}),
        report: serde_json::json!({"kept": 2}),
    };
    let examples: Vec<SealedExample> = (0..2)
        .map(|seq| {
            let (key_id, nonce, ciphertext) = ring
                .seal_blob(
                    &SealedExample::aad("ds1", seq),
                    format!("ex{seq}").as_bytes(),
                )
                .unwrap();
            SealedExample {
                seq,
                call_id: format!("c{seq}"),
                key_id,
                nonce,
                ciphertext,
            }
        })
        .collect();
    store.create_dataset(&meta, &examples).unwrap();
    assert_eq!(store.get_dataset("first").unwrap().unwrap(), meta);
    assert_eq!(store.get_dataset("ds1").unwrap().unwrap().name, "first");
    let got = store.dataset_examples("ds1").unwrap();
    assert_eq!(got, examples);
    let plain = ring
        .open_blob(
            &SealedExample::aad("ds1", 1),
            &got[1].key_id,
            &got[1].nonce,
            &got[1].ciphertext,
        )
        .unwrap();
    assert_eq!(plain, b"ex1");
    // An example moved to another position does not decrypt.
    assert!(
        ring.open_blob(
            &SealedExample::aad("ds1", 0),
            &got[1].key_id,
            &got[1].nonce,
            &got[1].ciphertext
        )
        .is_err()
    );
    // Same name again: refused, and the first snapshot is untouched.
    let mut again = meta.clone();
    again.id = "ds2".into();
    let err = store
        .create_dataset(&again, &examples)
        .unwrap_err()
        .to_string();
    assert!(err.contains("already exists"), "{err}");
    // A failing write in the middle leaves nothing behind.
    let mut broken = meta.clone();
    broken.id = "ds3".into();
    broken.name = "broken".into();
    let dup = vec![examples[0].clone(), examples[0].clone()];
    assert!(store.create_dataset(&broken, &dup).is_err());
    assert!(store.get_dataset("broken").unwrap().is_none());
    assert!(store.dataset_examples("ds3").unwrap().is_empty());
    assert_eq!(store.list_datasets().unwrap().len(), 1);
}

#[test]
fn policies_agreement_and_route_events() {
    use crate::{AgreementRecord, AgreementSource, Mode, Policy, RouteEvent, RouteEventKind};
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db.sqlite")).unwrap();
    assert!(store.get_policy("t1").unwrap().is_none());
    let mut p = Policy::new("t1", "cli");
    p.mode = Mode::Canary(10);
    p.specialist = Some("adapters/t1".into());
    p.min_confidence = Some(-0.7);
    store.set_policy(&p).unwrap();
    assert_eq!(store.get_policy("t1").unwrap().unwrap(), p);
    // Setting again replaces.
    p.mode = Mode::On;
    p.updated_by = "tracker".into();
    store.set_policy(&p).unwrap();
    store.set_policy(&Policy::new("t0", "cli")).unwrap();
    let all = store.list_policies().unwrap();
    assert_eq!(
        all.iter().map(|p| p.task.as_str()).collect::<Vec<_>>(),
        ["t0", "t1"]
    );
    assert_eq!(all[1], p);
    // Out-of-range policies are refused.
    let mut bad = p.clone();
    bad.agreement_threshold = 2.0;
    assert!(store.set_policy(&bad).is_err());
    assert_eq!(store.get_policy("t1").unwrap().unwrap().mode, Mode::On);

    for (i, v) in [1.0, 0.5, 0.0, 0.25].into_iter().enumerate() {
        store
            .record_agreement(&AgreementRecord {
                task: if i == 2 { "t2".into() } else { "t1".into() },
                ts_ms: 100 - i as i64,
                value: v,
                source: AgreementSource::OnSample,
                call_id: format!("c{i}"),
                specialist: Some("adapters/t1".into()),
            })
            .unwrap();
    }
    let recent = store.recent_agreement("t1", 2).unwrap();
    // Newest recorded first, whatever the timestamps say.
    assert_eq!(
        recent.iter().map(|a| a.value).collect::<Vec<_>>(),
        [0.25, 0.5]
    );
    assert_eq!(recent[0].call_id, "c3");
    assert_eq!(recent[0].source, AgreementSource::OnSample);
    assert_eq!(store.recent_agreement("t1", 10).unwrap().len(), 3);
    assert!(
        store
            .record_agreement(&AgreementRecord {
                value: 1.5,
                ..recent[0].clone()
            })
            .is_err()
    );

    let mut e1 = RouteEvent::new(
        "t1",
        RouteEventKind::Demote,
        serde_json::json!({"from": "on", "to": "shadow"}),
    );
    e1.ts_ms = 1;
    let mut e2 = RouteEvent::new(
        "t2",
        RouteEventKind::Fallback,
        serde_json::json!({"reason": "schema"}),
    );
    e2.ts_ms = 2;
    store.record_route_event(&e1).unwrap();
    store.record_route_event(&e2).unwrap();
    assert_eq!(
        store.list_route_events(None, 10).unwrap(),
        [e2.clone(), e1.clone()]
    );
    assert_eq!(store.list_route_events(Some("t1"), 10).unwrap(), [e1]);
    assert_eq!(store.list_route_events(None, 1).unwrap(), [e2]);
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
        .insert_calls(&[ring.seal(&rec("a", 1, "m", ("k", "v"))).unwrap()])
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
        .insert_calls(&[ring.seal(&rec("b", 2, "m", ("k", "v"))).unwrap()])
        .unwrap();
    assert_eq!(store.count_calls().unwrap(), 1);
    drop(store);
    assert_eq!(page_size(&old), 4096);
}
