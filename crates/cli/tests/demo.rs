//! End-to-end: `downshift demo` drives the real commands (mock teacher, gateway, discover,
//! select, train, eval, promote) on the BFCL multi-turn traffic and on the demo's deployment
//! mix, and reports the held-out result as one JSON object. Kept short here (one task, two
//! updates): the numbers are checked for consistency, not for quality.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

mod support;

use serde_json::Value;
use support::*;

fn base_model() -> std::path::PathBuf {
    let base = repo_root().join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        base.exists(),
        "{} missing: run scripts/fetch.sh smollm2",
        base.display()
    );
    base
}

/// `demo --json` on the BFCL agent traffic, one task, two updates, plus `extra`.
fn short_demo(work: &std::path::Path, extra: &[&str]) -> Value {
    short_demo_on("data/bfcl/agent.jsonl", work, extra)
}

/// `demo --json` on `traffic` (relative to the repository), one task, two updates, plus `extra`.
fn short_demo_on(traffic: &str, work: &std::path::Path, extra: &[&str]) -> Value {
    let traffic = repo_root().join(traffic);
    assert!(
        traffic.exists(),
        "{} missing: run scripts/fetch.sh",
        traffic.display()
    );
    let base = base_model();
    let mut args = vec![
        "demo",
        "--json",
        "--traffic",
        traffic.to_str().unwrap(),
        "--base",
        base.to_str().unwrap(),
        "--tasks",
        "1",
        "--max-steps",
        "2",
        "--work",
        work.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    serde_json::from_str(ok(&args).trim()).unwrap()
}

#[test]
fn demo_runs_the_whole_conversion_and_reports_json() {
    let dir = tempdir();
    let work = dir.path().join("work");
    let v = short_demo(&work, &[]);
    let held = v["heldout_calls"].as_u64().unwrap();
    let replayed = v["replayed_calls"].as_u64().unwrap();
    assert_eq!(held + replayed, v["traffic_calls"].as_u64().unwrap());
    assert!(held > 100 && replayed > 400, "{v}");
    let served = v["served_by_specialists"].as_f64().unwrap();
    let quality = v["quality_vs_llm"].as_f64().unwrap();
    assert!(
        (0.0..=1.0).contains(&served) && (0.0..=1.0).contains(&quality),
        "{v}"
    );
    let tasks = v["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{v}");
    let t = &tasks[0];
    assert!(t["task"].as_str().unwrap().starts_with("task_"));
    assert!(matches!(t["mode"].as_str(), Some("on" | "shadow")), "{t}");
    assert!(t["heldout_calls"].as_u64().unwrap() > 0, "{t}");
    assert!(t["served"].as_u64().unwrap() >= t["served_exact"].as_u64().unwrap());
    assert!(t["eval_exact_match"].as_f64().is_some(), "{t}");
    // Calls served by the specialist count towards the share; the rest were answered by the
    // LLM with its own (reference) answers, so quality is at least the LLM-served share.
    assert!(quality + 1e-9 >= 1.0 - served, "{v}");
    // The working folder keeps the data, the adapter and the result.
    assert!(work.join("result.json").exists());
    let adapter = work.join("adapters").join(t["task"].as_str().unwrap());
    assert!(adapter.join("adapter_model.safetensors").exists());
    assert!(adapter.join("eval.json").exists());
    // Bad input: an unreadable traffic file.
    let base = base_model();
    let (okay, _, err) = run(
        &[
            "demo",
            "--traffic",
            "/nonexistent.jsonl",
            "--base",
            base.to_str().unwrap(),
            "--work",
            work.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!okay && err.contains("cannot read the traffic"), "{err}");
}

#[test]
fn a_shared_specialist_is_trained_once_and_gated_per_task() {
    let dir = tempdir();
    let work = dir.path().join("work");
    let v = short_demo(&work, &["--shared"]);
    let shared = &v["shared_specialist"];
    assert!(shared["train_seconds"].as_f64().unwrap() > 0.0, "{v}");
    let adapter = work.join("adapters").join("shared");
    assert_eq!(shared["adapter"].as_str(), adapter.to_str(), "{v}");
    // One adapter, trained on the whole replayed traffic (not one task's dataset).
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(adapter.join("downshift_specialist.json")).unwrap(),
    )
    .unwrap();
    assert!(meta["task"].is_null(), "{meta}");
    assert_eq!(meta["dataset"], "demo-traffic", "{meta}");
    assert!(
        !work
            .join("adapters")
            .join(v["tasks"][0]["task"].as_str().unwrap())
            .exists()
    );
    // Each task is still evaluated and gated on its own test split.
    let t = &v["tasks"][0];
    assert!(t["eval_exact_match"].as_f64().is_some(), "{t}");
    assert!(t["train_seconds"].is_null(), "{t}");
    assert!(matches!(t["mode"].as_str(), Some("on" | "shadow")), "{t}");
    assert!(adapter.join("eval.json").exists());
}

#[test]
fn quick_picks_the_most_learnable_task_of_the_mix_and_reports_per_agent() {
    let dir = tempdir();
    let work = dir.path().join("work");
    // The support agent's part of the demo's traffic (chosen by a metadata tag): intent
    // routing (labels), field extraction (JSON) and free chat (text).
    let v = short_demo_on(
        "data/demo/traffic.jsonl",
        &work,
        &["--quick", "--categories", "support"],
    );
    let held = v["heldout_calls"].as_u64().unwrap();
    assert_eq!(
        held + v["replayed_calls"].as_u64().unwrap(),
        v["traffic_calls"].as_u64().unwrap()
    );
    // Only the support agent's calls were kept, and the figures are given per agent.
    let agents = v["agents"].as_array().unwrap();
    assert_eq!(agents.len(), 1, "{v}");
    assert_eq!(agents[0]["agent"], "support");
    assert_eq!(agents[0]["heldout_calls"].as_u64(), Some(held));
    // --quick trains the most learnable task: the one with the shortest consistent answers,
    // the intent labels, scored by label exact match (read from the answers' shape).
    let tasks = v["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 1, "{v}");
    let t = &tasks[0];
    assert_eq!(t["metric"], "label exact", "{t}");
    assert!(t["heldout_calls"].as_u64().unwrap() > 0, "{t}");
    let q = v["quality_vs_llm"].as_f64().unwrap();
    let served = v["served_by_specialists"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&q) && q + 1e-9 >= 1.0 - served, "{v}");
    // Bad input: no traffic given and the default one not built: the error says how to build it.
    let (okay, _, err) = run(&["demo", "--work", work.to_str().unwrap()], &[]);
    assert!(!okay && err.contains("scripts/fetch.sh demo"), "{err}");
    // A tag no record carries.
    let (okay, _, err) = run(
        &[
            "demo",
            "--traffic",
            repo_root()
                .join("data/demo/traffic.jsonl")
                .to_str()
                .unwrap(),
            "--categories",
            "no-such-agent",
            "--work",
            work.to_str().unwrap(),
        ],
        &[],
    );
    assert!(
        !okay && err.contains("only 0 calls tagged no-such-agent"),
        "{err}"
    );
}
