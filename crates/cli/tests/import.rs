//! End-to-end: `import`, `export` and the mock's replay on the BFCL development data.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

mod support;

use std::collections::BTreeMap;

use serde_json::Value;
use support::*;

fn bfcl() -> std::path::PathBuf {
    let path = repo_root().join("data/bfcl/bfcl.jsonl");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch.sh bfcl (the CI script does)",
        path.display()
    );
    path
}

#[test]
fn bfcl_import_stores_every_record_with_its_tags() {
    let path = bfcl();
    let text = std::fs::read_to_string(&path).unwrap();
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for line in text.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        *expected
            .entry(v["metadata"]["bfcl_category"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    let total: usize = expected.values().sum();
    assert!(total > 2000);

    let dir = tempdir();
    let d = dir.path().to_str().unwrap();
    let report: Value = serde_json::from_str(&ok(&[
        "import",
        path.to_str().unwrap(),
        "--json",
        "--data-dir",
        d,
    ]))
    .unwrap();
    assert_eq!(report["imported"], total);
    assert_eq!(report["errors"].as_array().unwrap().len(), 0);

    let calls = calls(dir.path(), &[]);
    assert_eq!(calls.len(), total);
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    for c in &calls {
        assert_eq!(c["tags"]["source"], "bfcl");
        assert!(c["tags"]["bfcl_id"].is_string());
        *seen
            .entry(c["tags"]["bfcl_category"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(seen, expected);
    // Tag filters select by category; multi-turn calls carry their API class.
    let mt = calls_filtered(dir.path(), "bfcl_category=multi_turn_base");
    assert_eq!(mt.len(), expected["multi_turn_base"]);
    assert!(mt.iter().all(|c| c["tags"]["api_class"].is_string()));

    // Export gives back the same requests and responses.
    let exported = ok(&[
        "export",
        "--data-dir",
        d,
        "--tag",
        "bfcl_category=simple_python",
    ]);
    assert_eq!(exported.lines().count(), expected["simple_python"]);
    let originals: BTreeMap<String, Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| (v["metadata"]["bfcl_id"].as_str().unwrap().to_owned(), v))
        .collect();
    for line in exported.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let orig = &originals[v["metadata"]["bfcl_id"].as_str().unwrap()];
        assert_eq!(v["request"], orig["request"]);
        assert_eq!(v["response"], orig["response"]);
    }
}

fn calls_filtered(data: &std::path::Path, tag: &str) -> Vec<Value> {
    calls(data, &["--tag", tag])
}

#[test]
fn bad_lines_are_reported_by_number_and_the_rest_is_stored() {
    let dir = tempdir();
    let file = dir.path().join("mixed.jsonl");
    std::fs::write(
        &file,
        concat!(
            r#"{"request":{"model":"m","messages":[{"role":"user","content":"a"}]},"response":{"choices":[]}}"#, "\n",
            "{not json\n",
            r#"{"request":{"model":"m"}}"#, "\n",
            r#"{"timestamp":"2025-06-01T12:00:00Z","workload_id":"w1","client_id":"c1","request":{"messages":[{"role":"user","content":"b"}]},"response":{"model":"m","choices":[]}}"#, "\n",
            r#"{"request":{"model":"m","messages":[]},"response":{"choices":[]}}"#, "\n",
            r#"{"request":{"messages":[{"role":"user","content":"c"}]},"response":{"choices":[]}}"#, "\n",
        ),
    )
    .unwrap();
    let d = dir.path().join("d");
    let (success, out, err) = run(
        &[
            "import",
            file.to_str().unwrap(),
            "--data-dir",
            d.to_str().unwrap(),
        ],
        &[],
    );
    assert!(success, "{err}");
    assert!(err.contains("mixed.jsonl:2: not valid JSON"), "{err}");
    assert!(err.contains("mixed.jsonl:3:"), "{err}");
    // A call with no messages, or with no model named anywhere, is a bad line too.
    assert!(
        err.contains("mixed.jsonl:5: \"request.messages\" is empty"),
        "{err}"
    );
    assert!(err.contains("mixed.jsonl:6: no \"request.model\""), "{err}");
    assert!(out.contains("imported 2 calls"), "{out}");
    assert_eq!(calls(&d, &[]).len(), 2);
    // --strict fails, but keeps what was good; the same lines imported again are not stored
    // twice, with or without a timestamp (their ids come from their content).
    let (success, _, err) = run(
        &[
            "import",
            file.to_str().unwrap(),
            "--strict",
            "--data-dir",
            d.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!success);
    assert!(err.contains("4 bad lines"), "{err}");
    assert_eq!(calls(&d, &[]).len(), 2);
    // A missing file is a clear error.
    let (success, _, err) = run(
        &[
            "import",
            "/nonexistent.jsonl",
            "--data-dir",
            d.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        !success && err.contains("cannot open /nonexistent.jsonl"),
        "{err}"
    );
}

#[test]
fn an_invalid_utf8_line_and_wrongly_shaped_lines_are_skipped_and_the_rest_stored() {
    let dir = tempdir();
    let file = dir.path().join("bytes.jsonl");
    let mut bytes = Vec::new();
    for i in 0..400 {
        match i {
            100 => bytes.extend_from_slice(b"{\"request\":{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"caf\xe9\"}]}}\n"),
            200 => bytes.extend_from_slice(br#"{"request":{"model":"m","messages":[1,"x",null]}}"#),
            300 => bytes.extend_from_slice(br#"{"request":{"model":"m","messages":[{"role":"user","content":"x"}]},"response":{"choices":"nope"}}"#),
            _ => {}
        }
        if i == 200 || i == 300 {
            bytes.push(b'\n');
        }
        bytes.extend_from_slice(
            format!(r#"{{"request":{{"model":"m","messages":[{{"role":"user","content":"q{i}"}}]}},"response":{{"choices":[]}}}}"#)
                .as_bytes(),
        );
        bytes.push(b'\n');
    }
    std::fs::write(&file, &bytes).unwrap();
    let d = dir.path().join("d");
    let args = [
        "import",
        file.to_str().unwrap(),
        "--data-dir",
        d.to_str().unwrap(),
    ];
    let (success, out, err) = run(&args, &[]);
    assert!(success, "{err}");
    assert!(err.contains("bytes.jsonl:101: not valid UTF-8"), "{err}");
    assert!(
        err.contains("bytes.jsonl:202: \"request.messages[0]\""),
        "{err}"
    );
    assert!(
        err.contains("bytes.jsonl:303: \"response.choices\""),
        "{err}"
    );
    assert!(out.contains("imported 400 calls"), "{out}");
    assert!(out.contains("skipped 3 bad lines"), "{out}");
    assert_eq!(calls(&d, &[]).len(), 400);
    // --strict still fails the run on the same file.
    let strict = [
        "import",
        file.to_str().unwrap(),
        "--strict",
        "--data-dir",
        d.to_str().unwrap(),
    ];
    let (success, _, err) = run(&strict, &[]);
    assert!(!success && err.contains("3 bad lines"), "{err}");
}

#[test]
fn the_mock_replays_bfcl_through_the_gateway() {
    let path = bfcl();
    let dir = tempdir();
    let mock = mock(&["--replay", path.to_str().unwrap()]);
    let gw = serve(dir.path(), &mock.addr, &["--no-auth"]);
    let text = std::fs::read_to_string(&path).unwrap();
    for line in text.lines().step_by(97).take(25) {
        let rec: Value = serde_json::from_str(line).unwrap();
        let resp = post_json(
            &gw.addr,
            "/v1/chat/completions",
            None,
            &rec["request"].to_string(),
            &[],
        );
        assert_eq!(resp.status, 200);
        let got = resp.json();
        assert_eq!(
            got["choices"], rec["response"]["choices"],
            "{}",
            rec["metadata"]["bfcl_id"]
        );
    }
    let stats = get(&mock.addr, "/mock/stats", None).json();
    assert_eq!(stats["replayed"], 25);
}

/// `calls show` takes an id prefix when it names one call, and says when it names several.
#[test]
fn calls_show_takes_an_unambiguous_id_prefix() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let file = dir.path().join("calls.jsonl");
    let lines: Vec<String> = (0..3)
        .map(|i| {
            format!(
                r#"{{"timestamp":"2026-01-01T00:00:0{i}Z","request":{{"model":"m","messages":[{{"role":"user","content":"q{i}"}}]}},"response":{{"choices":[]}}}}"#
            )
        })
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    ok(&[
        "import",
        file.to_str().unwrap(),
        "--data-dir",
        data.to_str().unwrap(),
    ]);
    let ids: Vec<String> = calls(&data, &[])
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3);
    // The ids start with the same time, so a short prefix is ambiguous ...
    let (okay, _, err) = run(
        &[
            "calls",
            "show",
            &ids[0][..6],
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!okay);
    assert!(err.contains("matches several calls"), "{err}");
    // ... and enough of one id names it.
    for id in &ids {
        let shown = show(&data, &id[..24]);
        assert_eq!(shown["call"]["id"].as_str(), Some(id.as_str()));
    }
    let (okay, _, err) = run(
        &[
            "calls",
            "show",
            "ffffffff",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!okay);
    assert!(
        err.contains("no call with id or id prefix 'ffffffff'"),
        "{err}"
    );
}
