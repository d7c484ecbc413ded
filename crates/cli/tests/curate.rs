//! End-to-end: `curate`, `datasets` and `pii detect` through the real binary.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use support::*;

fn bfcl() -> std::path::PathBuf {
    let path = repo_root().join("data/bfcl/bfcl.jsonl");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch.sh bfcl",
        path.display()
    );
    path
}

/// (tool name, argument keys) of every tool call in chat-format or import-format records.
fn call_shapes(records: &[Value], pointer: &str) -> BTreeMap<(String, Vec<String>), usize> {
    let mut out = BTreeMap::new();
    for r in records {
        let Some(calls) = r.pointer(pointer).and_then(Value::as_array) else {
            continue;
        };
        for c in calls {
            let name = c["function"]["name"].as_str().unwrap().to_owned();
            let args: Value = serde_json::from_str(c["function"]["arguments"].as_str().unwrap())
                .unwrap_or_else(|e| {
                    panic!("arguments of {name} are not JSON after scrubbing: {e}")
                });
            let keys: Vec<String> = args
                .as_object()
                .expect("arguments are an object")
                .keys()
                .cloned()
                .collect();
            *out.entry((name, keys)).or_default() += 1;
        }
    }
    out
}

#[test]
fn curating_bfcl_keeps_every_tool_call_valid_json_with_its_keys() {
    let path = bfcl();
    let dir = tempdir();
    let d = dir.path().to_str().unwrap();
    ok(&["import", path.to_str().unwrap(), "--data-dir", d]);
    let out: Value = serde_json::from_str(&ok(&[
        "curate",
        "--name",
        "bfcl-v1",
        "--json",
        "--data-dir",
        d,
    ]))
    .unwrap();
    let report = &out["report"];
    assert_eq!(report["calls_in"], 2445);
    assert!(out["examples"].as_u64().unwrap() > 2300, "{out}");

    let exported = ok(&["datasets", "export", "bfcl-v1", "--data-dir", d]);
    let examples: Vec<Value> = exported
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(examples.len() as u64, out["examples"].as_u64().unwrap());
    let originals: Vec<Value> = std::fs::read_to_string(&path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // Every scrubbed example's last message is the assistant answer; its tool calls parse,
    // and each (tool, argument keys) shape is one the original data has.
    let scrubbed: Vec<Value> = examples
        .iter()
        .map(|e| e["messages"].as_array().unwrap().last().unwrap().clone())
        .collect();
    let after = call_shapes(&scrubbed, "/tool_calls");
    let before = call_shapes(&originals, "/response/choices/0/message/tool_calls");
    for shape in after.keys() {
        assert!(
            before.contains_key(shape),
            "shape {shape:?} not in the original data"
        );
    }
    let calls_after: usize = after.values().sum();
    assert!(calls_after > 2700, "{calls_after} tool calls survived");
    for e in &examples {
        assert_eq!(
            e["messages"].as_array().unwrap().last().unwrap()["role"],
            "assistant"
        );
        assert!(e["tools"].is_array());
    }
    // `datasets show` and `list` describe it; the name cannot be reused.
    let shown: Value = serde_json::from_str(&ok(&[
        "datasets",
        "show",
        "bfcl-v1",
        "--json",
        "--data-dir",
        d,
    ]))
    .unwrap();
    assert_eq!(shown["report"]["calls_in"], 2445);
    assert_eq!(shown["params"]["pipeline_version"], 1);
    let (success, _, err) = run(&["curate", "--name", "bfcl-v1", "--data-dir", d], &[]);
    assert!(!success && err.contains("already exists"), "{err}");
    let (success, _, err) = run(&["datasets", "show", "nope", "--data-dir", d], &[]);
    assert!(!success && err.contains("no dataset named 'nope'"), "{err}");
    let (success, _, err) = run(&["curate", "--name", "bad name", "--data-dir", d], &[]);
    assert!(
        !success && err.contains("must be 1–100 characters"),
        "{err}"
    );
}

#[test]
fn an_interrupted_curate_leaves_no_partial_snapshot() {
    let path = bfcl();
    let dir = tempdir();
    let d = dir.path().to_str().unwrap();
    ok(&["import", path.to_str().unwrap(), "--data-dir", d]);
    // Kill curate at several points of its run; whatever is left is all or nothing.
    for delay_ms in [50u64, 400, 1500] {
        let mut child = Command::new(BIN)
            .args(["curate", "--name", "interrupted", "--data-dir", d])
            .env("DOWNSHIFT_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let list = ok(&["datasets", "list", "--json", "--data-dir", d]);
        if let Some(line) = list.lines().next() {
            let meta: Value = serde_json::from_str(line).unwrap();
            let n = ok(&["datasets", "export", "interrupted", "--data-dir", d])
                .lines()
                .count();
            assert_eq!(
                n as u64,
                meta["examples"].as_u64().unwrap(),
                "a snapshot must be whole"
            );
            return;
        }
    }
    // Never completed before the kill: nothing was left behind, and the name is still free.
    ok(&["curate", "--name", "interrupted", "--data-dir", d]);
}

/// `downshift pii detect` fed `input`, set up by `setup`: (stdout, stderr); it must succeed.
fn pii_detect(input: &str, setup: impl FnOnce(&mut Command)) -> (String, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(["pii", "detect"]).env("DOWNSHIFT_LOG", "warn");
    setup(&mut cmd);
    let out = support::output_with_stdin(&mut cmd, input);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    (String::from_utf8(out.stdout).unwrap(), err)
}

#[test]
fn pii_detect_speaks_the_benchmark_contract() {
    let (out, _) = pii_detect(
        "{\"text\": \"Écrivez à marie.curie@example.fr, merci\"}\nnot json\n{\"text\": \"order #A-1234, version 2.3.1\"}\n",
        |_| {},
    );
    let lines: Vec<Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    let text = "Écrivez à marie.curie@example.fr, merci";
    let e = &lines[0]["entities"][0];
    assert_eq!(e["type"], "EMAIL");
    let (start, end) = (
        e["start"].as_u64().unwrap() as usize,
        e["end"].as_u64().unwrap() as usize,
    );
    assert_eq!(
        &text.as_bytes()[start..end],
        b"marie.curie@example.fr",
        "offsets are UTF-8 bytes"
    );
    assert!(lines[0]["redacted"].as_str().unwrap().contains("<EMAIL_1>"));
    assert!(lines[1]["error"].is_string());
    assert_eq!(
        lines[2]["entities"].as_array().unwrap().len(),
        0,
        "look-alikes are not PII"
    );
}

#[test]
fn analysts_read_datasets_but_not_raw_calls() {
    let dir = tempdir();
    let d = dir.path().to_str().unwrap();
    let file = dir.path().join("calls.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"request":{"model":"m","messages":[{"role":"user","content":"I am Walter White, call 505-555-0172"}]},"response":{"choices":[{"index":0,"message":{"role":"assistant","content":"Noted."},"finish_reason":"stop"}]}}"#,
            "\n"
        ),
    )
    .unwrap();
    ok(&["import", file.to_str().unwrap(), "--data-dir", d]);
    ok(&["curate", "--name", "small", "--data-dir", d]);
    let mock = mock(&[]);
    let gw = serve(dir.path(), &mock.addr, &[]);
    let analyst: Value = serde_json::from_str(&ok(&[
        "keys",
        "create",
        "--role",
        "analyst",
        "--name",
        "a",
        "--json",
        "--data-dir",
        d,
    ]))
    .unwrap();
    let key = analyst["key"].as_str().unwrap();
    let list = get(&gw.addr, "/admin/datasets", Some(key));
    assert_eq!(list.status, 200);
    assert_eq!(list.json()["data"][0]["name"], "small");
    let body = get(&gw.addr, "/admin/datasets/small/export", Some(key));
    assert_eq!(body.status, 200);
    let text = body.text();
    assert!(
        !text.contains("Walter White") && !text.contains("505-555-0172"),
        "{text}"
    );
    let call_id = calls(dir.path(), &[])[0]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        get(&gw.addr, &format!("/admin/calls/{call_id}"), Some(key)).status,
        403
    );
    assert_eq!(
        get(&gw.addr, "/admin/datasets/none/export", Some(key)).status,
        404
    );
}

#[test]
fn curate_selects_a_discovered_task() {
    let dir = tempdir();
    let d = dir.path().to_str().unwrap();
    let file = dir.path().join("calls.jsonl");
    let line = |q: &str| {
        format!(
            "{{\"request\":{{\"model\":\"m\",\"messages\":[{{\"role\":\"user\",\"content\":\"{q}\"}}]}},\"response\":{{\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"ok\"}},\"finish_reason\":\"stop\"}}]}}}}\n"
        )
    };
    std::fs::write(
        &file,
        line("capital of Peru?") + &line("convert 3 miles to km"),
    )
    .unwrap();
    ok(&["import", file.to_str().unwrap(), "--data-dir", d]);
    let (success, _, err) = run(
        &["curate", "--name", "t", "--task", "task-1", "--data-dir", d],
        &[],
    );
    assert!(
        !success && err.contains("no calls are assigned to task 'task-1'"),
        "{err}"
    );
    // Discovery records assignments in the store; curate selects by them.
    let ids: Vec<String> = calls(dir.path(), &[])
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    let db = rusqlite::Connection::open(dir.path().join("downshift.sqlite")).unwrap();
    db.execute(
        "INSERT INTO task_assignments (call_id, task_id) VALUES (?1, 'task-1')",
        [&ids[0]],
    )
    .unwrap();
    drop(db);
    let out: Value = serde_json::from_str(&ok(&[
        "curate",
        "--name",
        "t",
        "--task",
        "task-1",
        "--json",
        "--data-dir",
        d,
    ]))
    .unwrap();
    assert_eq!(out["report"]["calls_in"], 1);
    assert_eq!(out["examples"], 1);
}

/// `pii detect` on `input` with `models` as the only models folder: (entities per line, stderr).
fn pii_detect_with_models(
    models: &std::path::Path,
    input: &str,
) -> (Vec<Vec<(String, String)>>, String) {
    let (out, err) = pii_detect(input, |cmd| {
        // No models folder of the user's or of a checkout is looked in.
        cmd.env("DOWNSHIFT_MODELS_DIR", models)
            .env("HOME", models)
            .env("XDG_DATA_HOME", models)
            .current_dir(models);
    });
    let lines = out
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["entities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| {
                    let field = |k: &str| e[k].as_str().unwrap().to_owned();
                    (field("type"), field("text"))
                })
                .collect()
        })
        .collect();
    (lines, err)
}

#[test]
fn the_pii_tagger_is_loaded_from_the_models_folder_and_its_absence_is_said_once() {
    let input = "{\"text\": \"Kristin lives at 45 Kirkeveien. Her e-mail is k.b@example.no\"}\n{\"text\": \"Call 45 Kirkeveien.\"}\n";
    let address = ("STREET_ADDRESS".to_owned(), "45 Kirkeveien".to_owned());
    let email = ("EMAIL".to_owned(), "k.b@example.no".to_owned());

    // No weights: the rules alone still find the e-mail, after one warning naming where the
    // weights were looked for and the command that makes them.
    let empty = tempdir();
    let (lines, err) = pii_detect_with_models(empty.path(), input);
    let expected = empty.path().join("pii-tagger/tagger.bin");
    assert_eq!(
        err.matches("PII tagger weights not found").count(),
        1,
        "{err}"
    );
    assert!(
        err.contains(&expected.display().to_string()) && err.contains("scripts/fetch.sh tagger"),
        "{err}"
    );
    assert!(
        lines[0].contains(&email) && !lines[0].contains(&address),
        "{lines:?}"
    );

    // The weights where `scripts/fetch.sh tagger` puts them (below $DOWNSHIFT_MODELS_DIR): no
    // warning, and the tagger finds the street address with no street type the rules know.
    let weights = downshift_curate::weights::checkout_search()
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("no PII tagger weights: run scripts/fetch.sh tagger"));
    let models = tempdir();
    std::fs::create_dir_all(models.path().join("pii-tagger")).unwrap();
    std::fs::copy(&weights, models.path().join("pii-tagger/tagger.bin")).unwrap();
    let (lines, err) = pii_detect_with_models(models.path(), input);
    assert!(!err.contains("PII tagger"), "{err}");
    assert!(
        lines[0].contains(&email) && lines[0].contains(&address),
        "{lines:?}"
    );
}
