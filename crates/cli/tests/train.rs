//! End-to-end: `downshift train` on a curated dataset of real BFCL calls, with the packaged
//! SmolLM2-135M-Instruct (QLoRA through its Q4_1 weights); the adapter it writes is served.

mod support;

use serde_json::Value;
use support::*;

const MODEL: &str = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";

/// A data dir holding `n` BFCL live_simple calls curated into the dataset `ds`.
fn curated(n: usize) -> tempfile::TempDir {
    let dir = tempdir();
    let d = dir.path().to_str().unwrap();
    let bfcl = repo_root().join("data/bfcl/bfcl.jsonl");
    let lines: Vec<String> = std::fs::read_to_string(&bfcl)
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/fetch.sh bfcl)", bfcl.display()))
        .lines()
        .filter(|l| l.contains("\"live_simple\""))
        .take(n)
        .map(String::from)
        .collect();
    assert_eq!(lines.len(), n);
    let file = dir.path().join("calls.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    ok(&["import", file.to_str().unwrap(), "--data-dir", d]);
    ok(&["curate", "--name", "ds", "--data-dir", d]);
    dir
}

#[test]
fn train_writes_a_peft_adapter_that_generate_serves() {
    let dir = curated(40);
    let d = dir.path().to_str().unwrap();
    let model = repo_root().join(MODEL);
    let model = model.to_str().unwrap();
    let out = dir.path().join("adapter");
    let report = ok(&[
        "train",
        "--dataset",
        "ds",
        "--base",
        model,
        "--max-steps",
        "2",
        "--max-len",
        "256",
        "--out",
        out.to_str().unwrap(),
        "--json",
        "--data-dir",
        d,
    ]);
    let v: Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(v["summary"]["steps"], 2, "{v}");
    let train = v["train_examples"].as_u64().unwrap();
    let held = v["validation_examples"].as_u64().unwrap() + v["test_examples"].as_u64().unwrap();
    assert!(
        train >= 20 && train + held + v["skipped"].as_u64().unwrap() <= 40,
        "{v}"
    );
    assert!(v["summary"]["first_loss"].as_f64().unwrap() > 0.0);
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "downshift_specialist.json",
        "train_log.jsonl",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 16);
    let log = std::fs::read_to_string(out.join("train_log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2, "{log}");
    // The adapter loads over its base.
    let g = ok(&[
        "generate",
        "--model",
        model,
        "--adapter",
        out.to_str().unwrap(),
        "--prompt",
        "hi",
        "--max-tokens",
        "2",
        "--json",
    ]);
    assert!(g.contains("\"completion_tokens\":2"), "{g}");
}

#[test]
fn train_refuses_small_or_missing_datasets_clearly() {
    let dir = curated(6);
    let d = dir.path().to_str().unwrap();
    let model = repo_root().join(MODEL);
    let model = model.to_str().unwrap();
    let (success, _, err) = run(
        &["train", "--dataset", "ds", "--base", model, "--data-dir", d],
        &[],
    );
    assert!(!success, "a 6-call dataset must be refused");
    assert!(
        err.contains("too few examples") && err.contains("needed"),
        "{err}"
    );
    let (success, _, err) = run(
        &[
            "train",
            "--dataset",
            "nope",
            "--base",
            model,
            "--data-dir",
            d,
        ],
        &[],
    );
    assert!(!success && err.contains("no dataset named 'nope'"), "{err}");
    let (success, _, err) = run(
        &[
            "train",
            "--dataset",
            "ds",
            "--base",
            "no/such-model",
            "--data-dir",
            d,
        ],
        &[],
    );
    assert!(!success && err.contains("not found"), "{err}");
}
