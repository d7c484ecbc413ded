//! Gateway replicas on one PostgreSQL database (issue 27): two real `downshift serve` processes,
//! each with its own data directory (journal, spill files) and the same key file, share API keys,
//! policies and the call log; the CLI's `import`, `discover`, `calls list`, `curate` and
//! `promote` work against the same database.
//!
//! Each test creates its own database on the server named by `DOWNSHIFT_TEST_PG` and drops it
//! after; without one the test is skipped with the reason (a failure under CI).
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use downshift_store::Store;
use downshift_store::pg_testing::TestDatabase;
use serde_json::Value;
use support::*;

/// One shared store: the database, the key file every process is given, and a data
/// directory per process.
struct Shared {
    db: TestDatabase,
    dir: tempfile::TempDir,
    key_file: String,
}

impl Shared {
    fn new(test: &str) -> Option<Shared> {
        let db = TestDatabase::create(test)?;
        let dir = tempdir();
        let key_file = dir.path().join("keys.json").to_str().unwrap().to_owned();
        Some(Shared { db, dir, key_file })
    }

    fn data(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn env(&self) -> [(&str, &str); 1] {
        [("DOWNSHIFT_KEY_FILE", self.key_file.as_str())]
    }

    /// `downshift ARGS --store-url URL --data-dir <cli>` with the shared key file.
    fn run(&self, args: &[&str]) -> (bool, String, String) {
        let data = self.data("cli");
        let mut a = args.to_vec();
        a.extend_from_slice(&["--store-url", &self.db.url, "--data-dir"]);
        a.push(data.to_str().unwrap());
        run(&a, &self.env())
    }

    fn ok(&self, args: &[&str]) -> String {
        let (success, out, err) = self.run(args);
        assert!(success, "downshift {args:?} failed: {err}");
        out
    }

    fn json_lines(&self, args: &[&str]) -> Vec<Value> {
        self.ok(args)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The ids `calls list` shows.
    fn call_ids(&self) -> std::collections::HashSet<String> {
        self.json_lines(&["calls", "list", "--json", "--limit", "1000000"])
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// A gateway replica with its own data directory `name`.
    fn replica(&self, name: &str, upstream: &str, extra: &[&str]) -> Proc {
        let data = self.data(name);
        let url = format!("http://{upstream}");
        let mut args = vec![
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--store-url",
            &self.db.url,
            "--data-dir",
            data.to_str().unwrap(),
            "--upstream",
            &url,
        ];
        args.extend_from_slice(extra);
        Proc::start(&args, &self.env())
    }
}

fn chat(addr: &str, key: Option<&str>, body: &str) -> Resp {
    post_json(addr, "/v1/chat/completions", key, body, &[])
}

fn eventually(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    t0.elapsed()
}

fn write_config(dir: &Path, good: &str) -> String {
    let text = format!(
        "[route]\nreload_ms = 100\n\n[[specialists]]\nname = \"good\"\nbase_url = \"http://{good}\"\nmodel = \"good-model\"\n"
    );
    let p = dir.join("downshift.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

/// Acceptance 2 (keys and policies) and the CLI on PostgreSQL: calls imported and discovered
/// through the CLI, a key created and revoked through the CLI, a policy promoted through the
/// CLI: both replicas see each within the reload interval.
#[test]
fn replicas_share_keys_policies_and_the_call_log() {
    let Some(s) = Shared::new("replicas_share_keys_policies_and_the_call_log") else {
        return;
    };
    // The CLI against PostgreSQL: import, discover, calls list, curate.
    let lines = trading_lines();
    let file = s.dir.path().join("calls.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    s.ok(&["import", file.to_str().unwrap()]);
    assert_eq!(s.call_ids().len(), lines.len());
    s.ok(&["discover", "--embedder", "hashed"]);
    let tasks = s.json_lines(&["tasks", "list", "--json"]);
    let task = tasks
        .iter()
        .max_by_key(|t| t["calls"].as_u64().unwrap_or(0))
        .unwrap_or_else(|| panic!("no tasks: {tasks:?}"))["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let in_task = s.json_lines(&[
        "calls", "list", "--json", "--limit", "100000", "--task", &task,
    ]);
    assert!(in_task.len() >= 8, "{} calls in {task}", in_task.len());
    let curated: Value =
        serde_json::from_str(&s.ok(&["curate", "--name", "trading", "--task", &task, "--json"]))
            .unwrap();
    assert_eq!(curated["report"]["calls_in"], in_task.len(), "{curated}");
    let exported = s.ok(&["datasets", "export", "trading"]);
    assert_eq!(
        exported.lines().count() as u64,
        curated["examples"].as_u64().unwrap()
    );

    let replay = file.to_str().unwrap();
    let teacher = mock(&["--replay", replay]);
    let good = mock(&["--replay", replay]);
    let cfg = write_config(s.dir.path(), &good.addr);
    let a = s.replica("a", &teacher.addr, &["--config", &cfg]);
    let b = s.replica("b", &teacher.addr, &["--config", &cfg]);
    // The first replica bootstraps the admin key in the shared database; the second finds it.
    a.admin_key();
    assert!(
        !b.first_lines.iter().any(|l| l.contains("store it now")),
        "{:?}",
        b.first_lines
    );

    // A key created through the CLI works on both replicas.
    let key = s.ok(&[
        "keys", "create", "--role", "agent", "--name", "bot", "--json",
    ]);
    let key: Value = serde_json::from_str(&key).unwrap();
    let key = key["key"].as_str().unwrap().to_owned();
    let hello = r#"{"model":"m","messages":[{"role":"user","content":"hello"}]}"#;
    for r in [&a, &b] {
        let resp = chat(&r.addr, Some(&key), hello);
        assert_eq!(resp.status, 200, "{}", resp.text());
    }
    // Revoked through the CLI: both replicas refuse it within 2 s (their key caches expire).
    s.ok(&["keys", "revoke", "bot"]);
    let revoked = Instant::now();
    let mut refused = [None, None];
    while refused.iter().any(Option::is_none) {
        assert!(revoked.elapsed() < Duration::from_secs(10), "{refused:?}");
        for (i, r) in [&a, &b].into_iter().enumerate() {
            if refused[i].is_none() && chat(&r.addr, Some(&key), hello).status == 401 {
                refused[i] = Some(revoked.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!("revoked key refused after {refused:?} (replicas a, b)");
    for t in refused.into_iter().flatten() {
        assert!(t <= Duration::from_millis(2_200), "refused after {t:?}");
    }

    // A policy promoted through the CLI routes on both replicas: the task's calls go to the
    // specialist on each.
    let admin = a.admin_key();
    let records: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    s.ok(&[
        "promote",
        &task,
        "--mode",
        "on",
        "--specialist",
        "good",
        "--config",
        &cfg,
    ]);
    let want = format!("specialist:{task}");
    for r in [&a, &b] {
        let took = eventually("the promoted policy", Duration::from_secs(30), || {
            records.iter().any(|rec| {
                let resp = chat(&r.addr, Some(&admin), &rec["request"].to_string());
                resp.status == 200 && resp.header("x-downshift-route") == Some(want.as_str())
            })
        });
        eprintln!("replica {} routes to the specialist after {took:?}", r.addr);
        let p = get(&r.addr, &format!("/admin/policies/{task}"), Some(&admin));
        assert_eq!(p.status, 200, "{}", p.text());
        assert_eq!(p.json()["mode"], "on", "{}", p.text());
    }
    a.stop();
    b.stop();
}

/// Data-key rotation reaches running replicas: `keys rotate-data-key` through the CLI (on the
/// shared key file), and within 2 s each replica seals its new calls with the new key, without a
/// restart; both replicas and `calls show` read every call, sealed with either key by either
/// replica.
#[test]
fn a_data_key_rotated_through_the_cli_reaches_both_replicas() {
    let Some(s) = Shared::new("a_data_key_rotated_through_the_cli_reaches_both_replicas") else {
        return;
    };
    let upstream = mock(&[]);
    let a = s.replica("a", &upstream.addr, &[]);
    let b = s.replica("b", &upstream.addr, &[]);
    let admin = a.admin_key();
    let replicas = [&a, &b];
    // What the database holds: which data key sealed a call (the CLI never shows key ids).
    let store = downshift_store::PgStore::connect(&s.db.url).unwrap();
    let key_of = |id: &str| -> String {
        let mut sealed = None;
        eventually("the call in the database", Duration::from_secs(10), || {
            sealed = store.get_call(id).unwrap();
            sealed.is_some()
        });
        sealed.unwrap().key_id
    };
    // (replica, the call's prompt, when it was sent after the rotation, its id)
    let mut calls: Vec<(usize, String, Option<Duration>, String)> = Vec::new();
    let send = |calls: &mut Vec<_>, r: usize, when: Option<Duration>| {
        let prompt = format!("replica {r} call {}", calls.len());
        let body =
            serde_json::json!({"model": "m", "messages": [{"role": "user", "content": prompt}]});
        let resp = chat(&replicas[r].addr, Some(&admin), &body.to_string());
        assert_eq!(resp.status, 200, "{}", resp.text());
        let id = resp.header("x-downshift-call-id").unwrap().to_owned();
        calls.push((r, prompt, when, id));
    };
    send(&mut calls, 0, None);
    send(&mut calls, 1, None);
    let old_key = key_of(&calls[0].3);
    assert_eq!(key_of(&calls[1].3), old_key);

    let rotated: Value =
        serde_json::from_str(&s.ok(&["keys", "rotate-data-key", "--json"])).unwrap();
    let rotated_at = Instant::now();
    let new_key = rotated["active_data_key"].as_str().unwrap().to_owned();
    assert_ne!(new_key, old_key);
    // A call to each replica every 50 ms for 3 s.
    while rotated_at.elapsed() < Duration::from_secs(3) {
        for r in 0..2 {
            send(&mut calls, r, Some(rotated_at.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let keys: Vec<String> = calls.iter().map(|c| key_of(&c.3)).collect();
    for r in 0..2 {
        let after: Vec<(Duration, &String)> = calls
            .iter()
            .zip(&keys)
            .filter_map(|(c, k)| (c.0 == r).then_some((c.2?, k)))
            .collect();
        let first_new = after
            .iter()
            .position(|(_, k)| **k == new_key)
            .unwrap_or_else(|| panic!("replica {r} never sealed with the new key"));
        let took = after[first_new].0;
        eprintln!("replica {r} seals with the rotated key {took:?} after the rotation");
        assert!(took <= Duration::from_secs(2), "replica {r}: {took:?}");
        // Once on the new key, never back; before it, only the old key.
        assert!(after[first_new..].iter().all(|(_, k)| **k == new_key));
        assert!(after[..first_new].iter().all(|(_, k)| **k == old_key));
    }

    // Every call, sealed with either key by either replica, reads on both replicas and
    // through `calls show`.
    for (_, prompt, _, id) in &calls {
        for r in &replicas {
            let shown = get(&r.addr, &format!("/admin/calls/{id}"), Some(&admin));
            assert_eq!(shown.status, 200, "{id} on {}: {}", r.addr, shown.text());
            assert_eq!(
                shown.json()["request"]["messages"][0]["content"],
                prompt.as_str(),
                "{}",
                shown.text()
            );
        }
        let shown: Value = serde_json::from_str(&s.ok(&["calls", "show", id, "--json"])).unwrap();
        assert_eq!(shown["request"]["messages"][0]["content"], prompt.as_str());
    }
    a.stop();
    b.stop();
}

/// Acceptance 2 (durability): two replicas under load, one killed with SIGKILL mid-burst:
/// every call either answered with a 200 is in the shared database once the killed replica
/// restarts on its data directory (and replays its journal).
#[test]
fn a_replica_killed_under_load_loses_no_answered_call() {
    let Some(s) = Shared::new("a_replica_killed_under_load_loses_no_answered_call") else {
        return;
    };
    let upstream = mock(&[]);
    let a = s.replica("a", &upstream.addr, &["--no-auth"]);
    let b = s.replica("b", &upstream.addr, &["--no-auth"]);
    let answered = Arc::new(Mutex::new(Vec::<String>::new()));
    let on_a = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..8)
        .map(|c| {
            // Half the clients on each replica.
            let addr = if c % 2 == 0 { a.addr.clone() } else { b.addr.clone() };
            let (answered, on_a, stop) = (answered.clone(), on_a.clone(), stop.clone());
            std::thread::spawn(move || {
                for i in 0..400 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let body = format!(
                        r#"{{"model":"m","messages":[{{"role":"user","content":"client {c} call {i}"}}]}}"#
                    );
                    match try_post(&addr, &body) {
                        Some((200, Some(id))) => answered.lock().unwrap().push(id),
                        Some((status, _)) => panic!("status {status} from {addr}"),
                        None => {
                            // The killed replica: its connections fail from now on.
                            assert_eq!(c % 2, 0, "replica b failed a request");
                            break;
                        }
                    }
                    if c % 2 == 0 {
                        on_a.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while on_a.load(Ordering::Relaxed) < 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut a = a;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    // Replica b keeps serving a little longer, then the load stops.
    std::thread::sleep(Duration::from_millis(200));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().unwrap();
    }
    let answered = answered.lock().unwrap().clone();
    assert!(
        on_a.load(Ordering::Relaxed) >= 200,
        "{on_a:?} answered by a"
    );
    // Restarting a on its own data directory replays its journal into the shared database;
    // clean stops let both writers finish.
    let again = s.replica("a", &upstream.addr, &["--no-auth"]);
    again.stop();
    b.stop();
    let stored = s.call_ids();
    let missing: Vec<&String> = answered.iter().filter(|id| !stored.contains(*id)).collect();
    eprintln!(
        "{} answered calls ({} by the killed replica), {} stored, {} missing",
        answered.len(),
        on_a.load(Ordering::Relaxed),
        stored.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "{} of {} answered calls missing after kill -9: {:?}",
        missing.len(),
        answered.len(),
        &missing[..missing.len().min(5)]
    );
}
