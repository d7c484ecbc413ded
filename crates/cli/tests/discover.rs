//! End-to-end: `discover` and `tasks list|show` through the real binary, on BFCL calls.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use serde_json::Value;
use support::*;

fn bfcl_records() -> Vec<Value> {
    let path = repo_root().join("data/bfcl/bfcl.jsonl");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch.sh bfcl",
        path.display()
    );
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn model_dir() -> String {
    let dir = repo_root().join("models/all-minilm-l6-v2");
    assert!(
        dir.join("model.safetensors").exists(),
        "{} is missing: run scripts/fetch.sh minilm",
        dir.display()
    );
    dir.to_str().unwrap().to_owned()
}

fn write_jsonl(path: &std::path::Path, records: &[Value]) {
    let mut f = std::fs::File::create(path).unwrap();
    for r in records {
        writeln!(f, "{r}").unwrap();
    }
}

/// The multi-turn and live_multiple BFCL calls (1,787): the families with recurring tasks.
fn subset(records: &[Value]) -> Vec<Value> {
    records
        .iter()
        .filter(|r| {
            matches!(
                r["metadata"]["bfcl_category"].as_str(),
                Some("multi_turn_base" | "live_multiple")
            )
        })
        .cloned()
        .collect()
}

fn discover_json(d: &str, extra: &[&str]) -> Value {
    let mut args = vec!["discover", "--json", "--data-dir", d];
    args.extend_from_slice(extra);
    serde_json::from_str(&ok(&args)).unwrap()
}

#[test]
fn discover_finds_stores_and_shows_tasks_and_keeps_ids_when_data_grows() {
    let records = subset(&bfcl_records());
    let dir = tempdir();
    let d = dir.path().to_str().unwrap();
    let first = dir.path().join("first.jsonl");
    write_jsonl(&first, &records);
    ok(&["import", first.to_str().unwrap(), "--data-dir", d]);
    let models = model_dir();

    let out = discover_json(d, &["--model-dir", &models]);
    let tasks = out["tasks"].as_array().unwrap();
    let assignments = out["assignments"].as_array().unwrap();
    assert_eq!(assignments.len(), records.len());
    assert!(tasks.len() >= 20, "{} tasks", tasks.len());
    for t in tasks {
        for key in [
            "id",
            "label",
            "calls",
            "share_calls",
            "share_tokens",
            "share_cost",
            "suitability",
            "reasons",
            "prompt_tokens",
            "completion_tokens",
            "output_consistency",
        ] {
            assert!(!t[key].is_null(), "task without {key}: {t}");
        }
        assert!(t["id"].as_str().unwrap().starts_with("task_"));
        assert!(t["label"].as_str().unwrap().starts_with("tool:"), "{t}");
        let s = t["suitability"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&s));
    }
    // Tags are in the output for evaluation: the calls of one multi-turn API class mostly
    // share one task.
    let mut by_class: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for a in assignments {
        if let (Some(class), Some(task)) = (a["tags"]["api_class"].as_str(), a["task_id"].as_str())
        {
            *by_class
                .entry(class.to_owned())
                .or_default()
                .entry(task.to_owned())
                .or_default() += 1;
        }
    }
    let vehicle = &by_class["VehicleControlAPI"];
    let top = vehicle.values().max().unwrap();
    assert!(
        *top * 10 >= vehicle.values().sum::<usize>() * 9,
        "{vehicle:?}"
    );

    // Stored: `tasks list`, `tasks show`, and `curate --task` can select a task's calls.
    let listed: Vec<Value> = ok(&["tasks", "list", "--json", "--data-dir", d])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), tasks.len());
    let id = tasks[0]["id"].as_str().unwrap();
    assert_eq!(listed[0]["id"], tasks[0]["id"]);
    let human = ok(&["tasks", "list", "--data-dir", d]);
    assert!(human.contains(id) && human.contains("LABEL"), "{human}");
    let shown: Value = serde_json::from_str(&ok(&[
        "tasks",
        "show",
        id,
        "--json",
        "--samples",
        "2",
        "--data-dir",
        d,
    ]))
    .unwrap();
    assert_eq!(shown["samples"].as_array().unwrap().len(), 2);
    assert!(shown["samples"][0]["input"].as_str().unwrap().len() > 5);
    let (okay, _, err) = run(&["tasks", "show", "task_nope", "--data-dir", d], &[]);
    assert!(!okay && err.contains("no task 'task_nope'"), "{err}");
    let cur: Value = serde_json::from_str(&ok(&[
        "curate",
        "--name",
        "one-task",
        "--task",
        id,
        "--json",
        "--data-dir",
        d,
    ]))
    .unwrap();
    assert_eq!(
        cur["report"]["calls_in"].as_u64().unwrap(),
        tasks[0]["calls"].as_u64().unwrap()
    );

    // Stability: 20% more calls of the existing tasks (every fifth call again, its numbers
    // changed and a word added) keep every task id.
    let grown: Vec<Value> = records
        .iter()
        .step_by(5)
        .map(|r| {
            let mut r = r.clone();
            for m in r["request"]["messages"].as_array_mut().unwrap() {
                if m["role"] == "user"
                    && let Some(text) = m["content"].as_str()
                {
                    let varied: String = text
                        .chars()
                        .map(|c| match c.to_digit(10) {
                            Some(d) => char::from_digit((d + 3) % 10, 10).unwrap(),
                            None => c,
                        })
                        .collect();
                    m["content"] = Value::String(format!("Please, {varied}"));
                }
            }
            r
        })
        .collect();
    let second = dir.path().join("second.jsonl");
    write_jsonl(&second, &grown);
    ok(&["import", second.to_str().unwrap(), "--data-dir", d]);
    let again = discover_json(d, &["--model-dir", &models]);
    assert_eq!(
        again["assignments"].as_array().unwrap().len(),
        records.len() + grown.len()
    );
    let before: BTreeSet<&str> = tasks.iter().map(|t| t["id"].as_str().unwrap()).collect();
    let after: BTreeSet<&str> = again["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    let lost: Vec<&&str> = before.difference(&after).collect();
    assert!(lost.is_empty(), "task ids lost after +20% calls: {lost:?}");

    // The human table.
    let table = ok(&[
        "discover",
        "--dry-run",
        "--model-dir",
        &models,
        "--data-dir",
        d,
    ]);
    assert!(
        table.contains("SUIT") && table.contains("structural groups"),
        "{table}"
    );
}

#[test]
fn a_dataset_can_be_discovered_and_the_hashed_embedding_needs_no_model() {
    let records: Vec<Value> = bfcl_records().into_iter().take(300).collect();
    let dir = tempdir();
    let d = dir.path().to_str().unwrap();
    let file = dir.path().join("calls.jsonl");
    write_jsonl(&file, &records);
    ok(&["import", file.to_str().unwrap(), "--data-dir", d]);
    ok(&["curate", "--name", "ds", "--data-dir", d]);
    let out = discover_json(
        d,
        &[
            "--dataset",
            "ds",
            "--embedder",
            "hashed",
            "--model-dir",
            "/nonexistent",
        ],
    );
    assert_eq!(out["stats"]["embedder"], "hashed-384");
    assert!(!out["tasks"].as_array().unwrap().is_empty());
    // Dataset examples keep their call ids and tags.
    let a = &out["assignments"][0];
    assert!(a["call_id"].as_str().unwrap().len() > 10);
    assert_eq!(a["tags"]["source"], "bfcl");

    let (okay, _, err) = run(
        &[
            "discover",
            "--dataset",
            "nope",
            "--embedder",
            "hashed",
            "--data-dir",
            d,
        ],
        &[],
    );
    assert!(!okay && err.contains("no dataset 'nope'"), "{err}");
}

#[test]
fn a_missing_model_is_a_clear_error() {
    let dir = tempdir();
    let d = dir.path().to_str().unwrap();
    let missing = dir.path().join("no-model");
    let (okay, _, err) = run(
        &[
            "discover",
            "--model-dir",
            missing.to_str().unwrap(),
            "--data-dir",
            d,
        ],
        &[],
    );
    assert!(!okay);
    assert!(
        err.contains("no-model") && err.contains("scripts/fetch.sh minilm"),
        "{err}"
    );
    // An empty log is an error too, not an empty result.
    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    ok(&["import", empty.to_str().unwrap(), "--data-dir", d]);
    let (okay, _, err) = run(&["discover", "--embedder", "hashed", "--data-dir", d], &[]);
    assert!(!okay && err.contains("no calls"), "{err}");
}
