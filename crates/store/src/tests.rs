//! The store test suite: every test runs on SQLite and on PostgreSQL (see [`crate::backends`]).
use crate::backends::each_backend;
use crate::{
    ApiKeyRecord, AuditEntry, CallFilter, CallMeta, CallPayload, CallRecord, DatasetMeta, Keyring,
    Role, SealedExample, Source, TaskRecord, hash_api_key,
};

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
    each_backend("calls_round_trip_and_filter", |b| {
        let store = b.open();
        let (ring, _) = Keyring::load_or_create(&b.dir.path().join("k.json")).unwrap();
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
    });
}

#[test]
fn tasks_replace_the_previous_run() {
    each_backend("tasks_replace_the_previous_run", |b| {
        let store = b.open();
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
    });
}

#[test]
fn api_keys_and_audit() {
    each_backend("api_keys_and_audit", |b| {
        let store = b.open();
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
    });
}

/// Two processes curating at once (two `train --task` runs) write datasets into one
/// database: every write transaction takes the write lock up front, so the other waits its
/// busy timeout instead of failing with "database is locked" when its read snapshot went
/// stale (a deferred transaction that read first cannot wait for the lock in WAL mode).
#[test]
fn concurrent_writers_wait_for_each_other_instead_of_failing() {
    each_backend(
        "concurrent_writers_wait_for_each_other_instead_of_failing",
        |b| {
            b.open();
            std::thread::scope(|scope| {
                for w in 0..4 {
                    scope.spawn(move || {
                        let store = b.open();
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
                    });
                }
            });
            let store = b.open();
            assert_eq!(store.list_datasets().unwrap().len(), 160);
            assert_eq!(store.task_size("t3").unwrap(), 40);
        },
    );
}

#[test]
fn datasets_are_written_whole_and_immutable() {
    each_backend("datasets_are_written_whole_and_immutable", |b| {
        let store = b.open();
        let (ring, _) = Keyring::load_or_create(&b.dir.path().join("k.json")).unwrap();
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
    });
}

#[test]
fn policies_agreement_and_route_events() {
    each_backend("policies_agreement_and_route_events", |b| {
        use crate::{AgreementRecord, AgreementSource, Mode, Policy, RouteEvent, RouteEventKind};
        let store = b.open();
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
    });
}
