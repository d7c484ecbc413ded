//! End-to-end: `downshift train` on a curated dataset of real BFCL calls, with the packaged
//! SmolLM2-135M-Instruct (QLoRA through its Q4_1 weights); the adapter it writes is served.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

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

/// `generate --model MODEL --adapter DIR ARGS.. --json`, parsed.
fn generate_with(model: &str, adapter: &std::path::Path, args: &[&str]) -> Value {
    let mut all = vec!["generate", "--model", model, "--adapter"];
    all.push(adapter.to_str().unwrap());
    all.extend_from_slice(args);
    all.push("--json");
    serde_json::from_str(ok(&all).trim()).unwrap()
}

/// The adapter loads over its base and generates.
fn generates_two_tokens(model: &str, adapter: &std::path::Path) {
    let g = generate_with(model, adapter, &["--prompt", "hi", "--max-tokens", "2"]);
    assert_eq!(g["completion_tokens"], 2, "{g}");
}

/// `generate --adapter --messages` for a request (its messages and tools), one greedy token:
/// the output holds the prompt as rendered and its length.
fn generate_with_adapter(model: &str, adapter: &std::path::Path, request: &Value) -> Value {
    let file = adapter.with_extension("request.json");
    std::fs::write(&file, request.to_string()).unwrap();
    let file = file.to_str().unwrap();
    let args = [
        "--messages",
        file,
        "--max-tokens",
        "1",
        "--temperature",
        "0",
    ];
    generate_with(model, adapter, &args)
}

/// The safetensors header of an adapter folder (its tensor names and shapes).
fn tensor_names(adapter: &std::path::Path) -> String {
    let tensors = std::fs::read(adapter.join("adapter_model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(tensors[..8].try_into().unwrap()) as usize;
    String::from_utf8_lossy(&tensors[8..8 + header_len]).to_string()
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
        "--targets",
        "q_proj,v_proj,down_proj",
        "--dropout",
        "0.1",
        "--out",
        out.to_str().unwrap(),
        "--json",
        "--data-dir",
        d,
    ]);
    let v: Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(v["steps"], 2, "{v}");
    let train = v["train_examples"].as_u64().unwrap();
    let held = v["validation_examples"].as_u64().unwrap() + v["test_examples"].as_u64().unwrap();
    assert!(
        train >= 20 && train + held + v["skipped"].as_u64().unwrap() <= 40,
        "{v}"
    );
    assert!(v["first_loss"].as_f64().unwrap() > 0.0);
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "downshift_specialist.json",
        "train_log.jsonl",
    ] {
        assert!(out.join(f).exists(), "{f} missing");
    }
    // Settings that cannot be trained are refused with what is wrong.
    for (flag, value, says) in [
        ("--targets", "q_proj,wq", "unknown target projection wq"),
        ("--dropout", "1.5", "dropout must be in [0, 1)"),
        (
            "--frozen-layers",
            "30",
            "leaves none of the model's 30 layers",
        ),
        ("--frozen-layers", "7 layers", "layer count"),
    ] {
        let (success, _, err) = run(
            &[
                "train",
                "--dataset",
                "ds",
                "--base",
                model,
                flag,
                value,
                "--out",
                dir.path().join("bad").to_str().unwrap(),
                "--data-dir",
                d,
            ],
            &[],
        );
        assert!(!success && err.contains(says), "{flag} {value}: {err}");
    }
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["r"], 16);
    assert_eq!(cfg["lora_dropout"], 0.1);
    assert_eq!(
        cfg["target_modules"],
        serde_json::json!(["q_proj", "v_proj", "down_proj"])
    );
    let names = tensor_names(&out);
    assert!(
        names.contains("v_proj.lora_A") && !names.contains("k_proj"),
        "only the chosen projections are adapted"
    );
    let log = std::fs::read_to_string(out.join("train_log.jsonl")).unwrap();
    assert_eq!(log.lines().count(), 2, "{log}");
    // The adapter loads over its base.
    generates_two_tokens(model, &out);
    // With the lower two thirds frozen, only layers 20..29 carry an adapter, which serves.
    let upper = dir.path().join("upper");
    ok(&[
        "train",
        "--dataset",
        "ds",
        "--base",
        model,
        "--max-steps",
        "1",
        "--max-len",
        "256",
        "--frozen-layers",
        "67%",
        "--out",
        upper.to_str().unwrap(),
        "--json",
        "--data-dir",
        d,
    ]);
    let cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(upper.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(
        cfg["layers_to_transform"],
        serde_json::json!((20..30).collect::<Vec<_>>())
    );
    let names = tensor_names(&upper);
    assert!(names.contains("layers.20.") && !names.contains("layers.19."));
    generates_two_tokens(model, &upper);
    // A specialist of the older id-keyed split is not scored on a test split it may have
    // trained on.
    let meta_path = out.join("downshift_specialist.json");
    let mut meta: Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    assert_eq!(meta["format_version"], 2);
    meta["format_version"] = 1.into();
    std::fs::write(&meta_path, meta.to_string()).unwrap();
    let (success, _, err) = run(
        &["eval", "--adapter", out.to_str().unwrap(), "--data-dir", d],
        &[],
    );
    assert!(!success && err.contains("older downshift"), "{err}");
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
    // A model folder of an architecture the engine does not run.
    let phi = dir.path().join("phi");
    std::fs::create_dir(&phi).unwrap();
    std::fs::write(
        phi.join("config.json"),
        r#"{"model_type": "phi3", "architectures": ["Phi3ForCausalLM"], "hidden_size": 64}"#,
    )
    .unwrap();
    let (success, _, err) = run(
        &[
            "train",
            "--dataset",
            "ds",
            "--base",
            phi.to_str().unwrap(),
            "--data-dir",
            d,
        ],
        &[],
    );
    assert!(!success && err.contains("phi3"), "{err}");
}

/// `downshift train` under a file-size limit: writes past it fail the way they fail on a full
/// disk (the write returns an error part-way through a file).
fn train_with_file_limit(args: &[&str], limit_bytes: u64) -> (bool, String) {
    use std::os::unix::process::CommandExt;
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_downshift"));
    cmd.args(args).current_dir(repo_root());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let lim = libc::rlimit {
                rlim_cur: limit_bytes,
                rlim_max: limit_bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn dir_bytes(p: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(p)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn a_disk_that_fills_during_a_checkpoint_leaves_the_previous_one_intact() {
    let dir = curated(40);
    let d = dir.path().to_str().unwrap();
    let model = repo_root().join(MODEL);
    let model = model.to_str().unwrap();
    let out = dir.path().join("adapter");
    let outs = out.to_str().unwrap();
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "train",
            "--dataset",
            "ds",
            "--base",
            model,
            "--max-steps",
            "4",
            "--max-len",
            "256",
            "--batch-size",
            "2",
            "--checkpoint-every",
            "1",
            "--out",
            outs,
            "--data-dir",
            d,
        ];
        a.extend_from_slice(extra);
        a
    };
    // A first run stops after 2 of 4 updates: checkpoints step-1 and step-2.
    ok(&args(&["--stop-after", "2"]));
    let ck = out.join("checkpoints");
    assert_eq!(
        std::fs::read_to_string(ck.join("latest")).unwrap(),
        "step-00000002"
    );
    let before = dir_bytes(&ck.join("step-00000002"));
    assert!(
        before
            .iter()
            .any(|(n, b)| n == "trainer.safetensors" && b.len() > 100_000)
    );

    // The disk "fills": no file may grow past 64 KiB, so the next checkpoint cannot be written.
    let (success, err) = train_with_file_limit(&args(&["--resume"]), 64 * 1024);
    assert!(
        !success,
        "the run must fail when its checkpoint cannot be written"
    );
    assert!(err.contains("checkpoint"), "{err}");
    assert!(
        err.contains("File too large") || err.contains("No space"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(ck.join("latest")).unwrap(),
        "step-00000002"
    );
    assert_eq!(
        dir_bytes(&ck.join("step-00000002")),
        before,
        "previous checkpoint changed"
    );
    let leftovers: Vec<String> = std::fs::read_dir(&ck)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");

    // With space again, the run resumes from that checkpoint and finishes.
    let report = ok(&args(&["--resume", "--json"]));
    let v: Value = serde_json::from_str(report.trim()).unwrap();
    assert_eq!(v["steps"], 4, "{v}");
    assert_eq!(v["resumed_from"], 2, "{v}");
    assert!(out.join("adapter_model.safetensors").exists());
}

/// A data dir holding the BFCL multi-turn calls whose only tools are the trading API, with
/// tasks discovered; returns it and the largest task's id.
fn trading_task() -> (tempfile::TempDir, String) {
    let dir = tempdir();
    let id = trading_task_in(dir.path());
    (dir, id)
}

#[test]
fn select_train_and_eval_a_discovered_task() {
    let (dir, task) = trading_task();
    let d = dir.path().to_str().unwrap();
    let model = repo_root().join(MODEL);
    let model = model.to_str().unwrap();

    // select: the whole catalog is ranked; constraints reject with reasons.
    let v: Value = serde_json::from_str(&ok(&[
        "select",
        "--task",
        &task,
        "--max-params",
        "2",
        "--json",
        "--data-dir",
        d,
    ]))
    .unwrap();
    let cands = v["candidates"].as_array().unwrap();
    assert!(cands.len() >= 15, "{v}");
    let big = cands
        .iter()
        .find(|c| c["params_b"].as_f64().unwrap() > 6.0)
        .unwrap();
    assert!(
        big["rejected"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("param")),
        "{big}"
    );
    // The recommendation is one the engine can start on here (found locally or packaged),
    // never a hub-only model; every candidate says how to get it.
    let rec = v["recommended"].as_str().unwrap();
    let rec_c = cands.iter().find(|c| c["id"] == rec).unwrap();
    assert!(
        ["local", "packaged"].contains(&rec_c["availability"]["kind"].as_str().unwrap()),
        "{rec_c}"
    );
    assert!(
        cands.iter().all(|c| !c["get"].as_str().unwrap().is_empty()),
        "{v}"
    );
    assert!(
        cands
            .iter()
            .any(|c| c["availability"]["kind"] == "hub"
                && c["get"].as_str().unwrap().contains("hub")),
        "{v}"
    );

    // train --task curates the task's calls into task-<id> and trains on them; with no --out
    // the adapter goes to `adapters/<task>` in the data directory, whatever the working
    // directory (this test runs from the crate's folder).
    let out = dir.path().join("adapters").join(&task);
    let r: Value = serde_json::from_str(
        ok(&[
            "train",
            "--task",
            &task,
            "--base",
            model,
            "--max-steps",
            "2",
            "--max-len",
            "512",
            "--tool-names",
            "--json",
            "--data-dir",
            d,
        ])
        .trim(),
    )
    .unwrap();
    assert_eq!(r["dataset"], format!("task-{task}"), "{r}");
    assert_eq!(
        std::fs::canonicalize(r["adapter"].as_str().unwrap()).unwrap(),
        std::fs::canonicalize(&out).unwrap(),
        "{r}"
    );
    assert_eq!(r["steps"], 2, "{r}");
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("downshift_specialist.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(meta["task"], task.as_str());
    assert_eq!(meta["transform"]["drop_tools"], true);
    // --tool-names: the schemas' names stay in the prompt (transform version 3), and eval
    // (below) applies the same transform to the test calls.
    assert_eq!(meta["transform"]["tool_names"], true, "{meta}");
    assert_eq!(meta["transform"]["version"], 3, "{meta}");

    // eval on the held-out split, base beside it; the task comes from the adapter, named by
    // the task id alone (found in the data directory's adapters folder).
    let preds = dir.path().join("predictions.jsonl");
    let e: Value = serde_json::from_str(
        ok(&[
            "eval",
            "--adapter",
            &task,
            "--limit",
            "2",
            "--base-calls",
            "1",
            "--max-tokens",
            "48",
            "--predictions",
            preds.to_str().unwrap(),
            "--json",
            "--data-dir",
            d,
        ])
        .trim(),
    )
    .unwrap();
    assert_eq!(e["task"], task.as_str(), "{e}");
    // The base model answered one of the two calls, never longer than the cap.
    assert_eq!(e["examples"], 2, "{e}");
    assert_eq!(e["base_examples"], 1, "{e}");
    assert!(e["base_exact_match"].is_number(), "{e}");
    let cap = e["base_max_tokens"].as_u64().unwrap();
    assert!((33..=48).contains(&cap), "{e}");
    // --predictions: one line per test call, agreeing with the summary.
    let lines: Vec<Value> = std::fs::read_to_string(&preds)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let exact = lines.iter().filter(|l| l["exact"] == true).count() as f64 / 2.0;
    assert_eq!(e["exact_match"].as_f64(), Some(exact), "{e}");
    for l in &lines {
        assert!(
            l["id"].is_string() && l["expected"].is_object() && l["got"].is_object(),
            "{l}"
        );
    }
    // One adapter folder, one prompt: the exact text `eval` gave the specialist (its transform
    // applied: schemas dropped, their names kept) is what `generate --adapter` renders for the
    // same request; the gateway's `local/<name>:<adapter>` and the router (below) run on as
    // many tokens (and the gateway's unit test checks the router's tokens one by one).
    let first = &lines[0];
    let prompt = first["prompt"].as_str().unwrap().to_owned();
    let prompt_tokens = first["prompt_tokens"].as_u64().unwrap();
    assert!(prompt.contains("Tools: "), "{prompt}");
    assert!(!prompt.contains("\"parameters\""), "{prompt}");
    let request = serde_json::json!({"messages": first["messages"], "tools": first["tools"]});
    let g = generate_with_adapter(model, &out, &request);
    assert_eq!(g["prompt"].as_str(), Some(prompt.as_str()));
    assert_eq!(g["prompt_tokens"].as_u64(), Some(prompt_tokens), "{g}");
    // The validation split can be scored too, but a threshold picked on it cannot be tested
    // on it.
    let adapter = out.to_str().unwrap();
    let v: Value = serde_json::from_str(
        ok(&[
            "eval",
            "--adapter",
            adapter,
            "--split",
            "validation",
            "--limit",
            "1",
            "--no-base",
            "--max-tokens",
            "16",
            "--json",
            "--data-dir",
            d,
        ])
        .trim(),
    )
    .unwrap();
    assert_eq!(v["examples"], 1, "{v}");
    assert!(v["base_examples"].is_null(), "{v}");
    let (success, _, err) = run(
        &[
            "eval",
            "--adapter",
            adapter,
            "--base-calls",
            "0",
            "--data-dir",
            d,
        ],
        &[],
    );
    assert!(!success && err.contains("--no-base"), "{err}");
    let (success, _, err) = run(
        &[
            "eval",
            "--adapter",
            adapter,
            "--split",
            "validation",
            "--calibrate",
            "0.9",
            "--data-dir",
            d,
        ],
        &[],
    );
    assert!(!success && err.contains("--calibrate"), "{err}");
    assert_eq!(e["examples"], 2, "{e}");
    assert_eq!(e["kind"], "tool_call", "{e}");
    for k in ["exact_match", "base_exact_match", "schema_valid"] {
        let x = e[k].as_f64().unwrap_or_else(|| panic!("{k} missing: {e}"));
        assert!((0.0..=1.0).contains(&x), "{k} = {x}");
    }
    assert!(out.join("eval.json").exists());

    // route: promoted to `on`, the task's requests reach the adapter on the built-in engine.
    // Two updates do not make a good specialist, so its answer may be refused — but only on
    // its merits (empty, schema, an unoffered tool, confidence), never because the engine
    // failed to load or run it.
    ok(&[
        "promote",
        &task,
        "--mode",
        "on",
        "--specialist",
        out.to_str().unwrap(),
        "--min-confidence",
        "-1000",
        "--shadow-sample",
        "0",
        "--data-dir",
        d,
    ]);
    let teacher = mock(&["--replay", dir.path().join("calls.jsonl").to_str().unwrap()]);
    // The same folder is also served as `local/smol:spec`.
    let cfg = dir.path().join("downshift.toml");
    std::fs::write(
        &cfg,
        format!(
            "[[local_models]]\nname = \"smol\"\npath = {model:?}\n\n[local_models.adapters]\nspec = {:?}\n",
            out.to_str().unwrap()
        ),
    )
    .unwrap();
    let gw = serve(
        dir.path(),
        &teacher.addr,
        &["--no-auth", "--config", cfg.to_str().unwrap()],
    );
    let mut local = request.clone();
    local["model"] = serde_json::json!("local/smol:spec");
    local["max_tokens"] = serde_json::json!(1);
    local["temperature"] = serde_json::json!(0);
    let r = post_json(
        &gw.addr,
        "/v1/chat/completions",
        None,
        &local.to_string(),
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.json()["usage"]["prompt_tokens"].as_u64(),
        Some(prompt_tokens),
        "{}",
        r.text()
    );
    // Routed: a logged call of the task, as the agent sent it (discovery may have put the
    // first calls into other tasks); served by the specialist, it runs on the prompt
    // `generate --adapter` renders for it.
    let calls = std::fs::read_to_string(dir.path().join("calls.jsonl")).unwrap();
    let (request, r) = calls
        .lines()
        .take(30)
        .find_map(|line| {
            let mut request = serde_json::from_str::<Value>(line).unwrap()["request"].clone();
            request["max_tokens"] = serde_json::json!(48);
            let r = post_json(
                &gw.addr,
                "/v1/chat/completions",
                None,
                &request.to_string(),
                &[],
            );
            assert_eq!(r.status, 200, "{}", r.text());
            (r.header("x-downshift-task") == Some(task.as_str())).then_some((request, r))
        })
        .unwrap_or_else(|| panic!("none of the first 30 logged calls is routed to {task}"));
    let routed_tokens = generate_with_adapter(model, &out, &request)["prompt_tokens"].as_u64();
    let route = r.header("x-downshift-route").unwrap().to_owned();
    let fallback = r.header("x-downshift-fallback").map(str::to_owned);
    match &fallback {
        None => {
            assert_eq!(route, format!("specialist:{task}"));
            assert_eq!(
                r.json()["usage"]["prompt_tokens"].as_u64(),
                routed_tokens,
                "{}",
                r.text()
            );
        }
        Some(reason) => {
            assert_eq!(route, "llm:default");
            assert!(
                ["empty", "schema", "unoffered_tool", "not_json"].contains(&reason.as_str()),
                "the built-in specialist failed to run: {reason}"
            );
        }
    }
    let p: Value = serde_json::from_str(&ok(&["policies", "--json", "--data-dir", d])).unwrap();
    assert_eq!(p["policies"][0]["mode"], "on", "{p}");
    gw.stop();

    // bad input: not an adapter folder, an unknown task
    let (success, _, err) = run(
        &["eval", "--adapter", d, "--task", &task, "--data-dir", d],
        &[],
    );
    assert!(
        !success && err.contains("not an adapter written by `downshift train`"),
        "{err}"
    );
    let (success, _, err) = run(&["select", "--task", "task_nope", "--data-dir", d], &[]);
    assert!(!success && err.contains("no task 'task_nope'"), "{err}");
    let (success, _, err) = run(
        &[
            "train",
            "--task",
            "task_nope",
            "--base",
            model,
            "--data-dir",
            d,
        ],
        &[],
    );
    assert!(!success && err.contains("no task 'task_nope'"), "{err}");
}
