//! The binary's own surface: log output and help, whatever the command.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

mod support;

use support::{Proc, mock, post_json, run, tempdir};

/// `serve --no-auth` without an upstream logs a warning and then stops with an error: a quick way
/// to make the binary write one log line.
fn one_log_line(extra: &[&str], env: &[(&str, &str)]) -> String {
    let dir = tempdir();
    let d = dir.path().to_str().unwrap();
    let mut args = vec!["serve", "--no-auth", "--data-dir", d];
    args.extend_from_slice(extra);
    let (ok, _out, err) = run(&args, env);
    assert!(!ok, "serve without an upstream must fail: {err}");
    assert!(err.contains("no upstream configured"), "{err}");
    err
}

#[test]
fn logs_are_plain_text_when_stderr_is_not_a_terminal() {
    let err = one_log_line(&[], &[]);
    assert!(err.contains("WARN"), "{err}");
    assert!(err.contains("--no-auth"), "{err}");
    assert!(
        !err.contains('\u{1b}'),
        "ANSI escape in redirected logs: {err:?}"
    );
}

#[test]
fn json_logs_are_one_object_a_line() {
    for (extra, env) in [
        (&["--log-format", "json"][..], &[][..]),
        (&[][..], &[("DOWNSHIFT_LOG_FORMAT", "json")][..]),
    ] {
        let err = one_log_line(extra, env);
        let logs: Vec<serde_json::Value> = err
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        let warn = logs
            .iter()
            .find(|v| v["level"] == "WARN")
            .unwrap_or_else(|| panic!("no WARN object in {err}"));
        assert!(
            warn["fields"]["message"]
                .as_str()
                .unwrap()
                .contains("--no-auth"),
            "{warn}"
        );
        assert!(warn["timestamp"].is_string(), "{warn}");
    }
    let (ok, _, err) = run(&["calls", "list", "--log-format", "xml"], &[]);
    assert!(!ok);
    assert!(err.contains("possible values: text, json"), "{err}");
}

#[test]
fn shared_options_are_listed_apart_from_each_commands_own() {
    let (ok, out, err) = run(&["calls", "list", "--help"], &[]);
    assert!(ok, "{err}");
    let global = out
        .split("Global options:")
        .nth(1)
        .unwrap_or_else(|| panic!("no global section in {out}"));
    for flag in ["--config", "--data-dir", "--log ", "--log-format"] {
        assert!(
            global.contains(flag),
            "{flag} not under the global options: {out}"
        );
    }
}

/// Twelve calls of two agents (Data Flywheel records: `client_id` is the agent), two jobs.
fn two_agents(dir: &std::path::Path) -> std::path::PathBuf {
    let mut lines = Vec::new();
    for i in 0..12 {
        let (agent, system) = if i % 2 == 0 {
            (
                "billing-bot",
                "Classify the billing question into one of: refund, invoice, other.",
            )
        } else {
            (
                "travel-bot",
                "Extract the city the traveller asks about, as JSON {\"city\": …}.",
            )
        };
        let rec = serde_json::json!({
            "timestamp": 1_767_225_600 + i,
            "workload_id": "w",
            "client_id": agent,
            "request": {"model": "gpt-4o", "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": format!("question number {i}")}]},
            "response": {"object": "chat.completion", "choices": [{"index": 0,
                "message": {"role": "assistant", "content": format!("answer {i}")},
                "finish_reason": "stop"}]}
        });
        lines.push(rec.to_string());
    }
    let file = dir.join("calls.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    file
}

#[test]
fn calls_list_filters_by_agent_and_task() {
    let dir = tempdir();
    let d = dir.path().join("data");
    let file = two_agents(dir.path());
    let ds = d.to_str().unwrap();
    support::ok(&["import", file.to_str().unwrap(), "--data-dir", ds]);
    assert_eq!(support::calls(&d, &[]).len(), 12);

    let billing = support::calls(&d, &["--agent", "billing-bot"]);
    assert_eq!(billing.len(), 6, "{billing:?}");
    let pseudonym = billing[0]["agent"].as_str().unwrap().to_owned();
    assert!(pseudonym.starts_with("agt_"), "{pseudonym}");
    assert!(billing.iter().all(|c| c["agent"] == pseudonym.as_str()));
    // The stored pseudonym selects the same calls; an unknown agent none.
    assert_eq!(support::calls(&d, &["--agent", &pseudonym]).len(), 6);
    assert!(support::calls(&d, &["--agent", "nobody"]).is_empty());

    // --task: the calls discovery assigned to a task.
    let out: serde_json::Value = serde_json::from_str(&support::ok(&[
        "discover",
        "--embedder",
        "hashed",
        "--json",
        "--data-dir",
        ds,
    ]))
    .unwrap();
    let tasks = out["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 2, "{out}");
    for t in tasks {
        let id = t["id"].as_str().unwrap();
        let of_task = support::calls(&d, &["--task", id]);
        assert_eq!(of_task.len() as u64, t["calls"].as_u64().unwrap(), "{t}");
        let agents: std::collections::BTreeSet<&str> = of_task
            .iter()
            .map(|c| c["agent"].as_str().unwrap())
            .collect();
        assert_eq!(agents.len(), 1, "a task of one agent's job: {of_task:?}");
    }
    // Filters combine: one agent's calls in the other agent's task are none.
    let other = tasks
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .find(|id| support::calls(&d, &["--task", id])[0]["agent"] != pseudonym.as_str())
        .unwrap();
    assert!(support::calls(&d, &["--agent", "billing-bot", "--task", other]).is_empty());
}

#[test]
fn no_auth_accepts_any_key_or_none_and_a_known_key_still_names_its_agent() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let ds = data.to_str().unwrap();
    // A key bound to an agent, created before the gateway starts.
    let key_out: serde_json::Value = serde_json::from_str(&support::ok(&[
        "keys",
        "create",
        "--role",
        "agent",
        "--name",
        "bot",
        "--agent",
        "billing-bot",
        "--json",
        "--data-dir",
        ds,
    ]))
    .unwrap();
    let agent_key = key_out["key"].as_str().unwrap().to_owned();
    let mock = support::mock(&[]);
    let gw = support::serve(&data, &mock.addr, &["--no-auth"]);
    let body = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
    // What an OpenAI SDK sends (a key downshift never issued), no key at all, a downshift key.
    for key in [
        Some("sk-anything-the-sdk-sends"),
        None,
        Some(agent_key.as_str()),
    ] {
        let r = support::post_json(&gw.addr, "/v1/chat/completions", key, body, &[]);
        assert_eq!(r.status, 200, "{key:?}: {}", r.text());
    }
    // Admin reads work without a key too.
    assert_eq!(support::get(&gw.addr, "/admin/calls", None).status, 200);
    let calls = support::wait_calls(&data, 3);
    assert_eq!(calls.len(), 3);
    // Only the downshift key binds its agent.
    let agents: Vec<&serde_json::Value> = calls.iter().map(|c| &c["agent"]).collect();
    assert_eq!(
        agents.iter().filter(|a| a.is_string()).count(),
        1,
        "{calls:?}"
    );
    gw.stop();
    mock.stop();
}

/// Copying `downshift.example.toml` to `./downshift.toml` and running `serve` starts, with no
/// model files and no API key in the environment.
#[test]
fn the_example_config_starts_as_shipped() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempdir();
    std::fs::copy(
        support::repo_root().join("downshift.example.toml"),
        dir.path().join("downshift.toml"),
    )
    .unwrap();
    let home = tempdir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_downshift"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .current_dir(dir.path())
        .env("HOME", home.path())
        .env("XDG_DATA_HOME", home.path().join("data"))
        .env("DOWNSHIFT_LOG", "warn")
        .env_remove("OPENAI_API_KEY")
        .env_remove("DOWNSHIFT_DATA_DIR")
        .env_remove("DOWNSHIFT_KEY_FILE")
        .env_remove("DOWNSHIFT_ADMIN_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = BufReader::new(child.stdout.take().unwrap());
    let mut addr = None;
    for line in stdout.lines() {
        let line = line.unwrap();
        if let Some(a) = line.split("listening on http://").nth(1) {
            addr = Some(a.trim().to_owned());
            break;
        }
    }
    let Some(addr) = addr else {
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        panic!(
            "serve did not start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    assert_eq!(support::get(&addr, "/healthz", None).status, 200);
    // No data directory named anywhere and no ./.downshift: the platform's data directory
    // (here $XDG_DATA_HOME/downshift), not the working directory.
    assert!(home.path().join("data/downshift").is_dir());
    assert!(!dir.path().join(".downshift").exists());
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn read_only_commands_in_an_empty_directory_say_there_is_no_store() {
    let dir = tempdir();
    let d = dir.path().join("nothing-here");
    let ds = d.to_str().unwrap();
    for args in [
        &["calls", "list"][..],
        &["calls", "show", "0190"][..],
        &["export"][..],
        &["tasks", "list"][..],
        &["datasets", "list"][..],
        &["policies"][..],
        &["keys", "list"][..],
    ] {
        let mut a = args.to_vec();
        a.extend_from_slice(&["--data-dir", ds]);
        let (ok, _, err) = run(&a, &[]);
        assert!(!ok, "{args:?} succeeded on an empty directory");
        assert!(
            err.contains("no call log at") && err.contains("nothing-here"),
            "{args:?}: {err}"
        );
        assert!(!d.exists(), "{args:?} created {}", d.display());
    }
}

#[test]
fn a_second_gateway_on_the_same_data_directory_is_refused() {
    let dir = tempdir();
    let data = dir.path().join("d");
    let mock = support::mock(&[]);
    let first = support::serve(&data, &mock.addr, &["--no-auth"]);
    let url = format!("http://{}", mock.addr);
    let (ok, _, err) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-auth",
            "--upstream",
            &url,
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    assert!(!ok, "a second gateway started on the same data directory");
    assert!(
        err.contains("another `downshift serve` is running on the data directory"),
        "{err}"
    );
    // The first one still serves; once it stops, the directory can be served again.
    assert_eq!(support::get(&first.addr, "/healthz", None).status, 200);
    first.stop();
    let again = support::serve(&data, &mock.addr, &["--no-auth"]);
    assert_eq!(support::get(&again.addr, "/healthz", None).status, 200);
    again.stop();
    mock.stop();
}

/// Every request writes one `info` line (id, agent, model, route, status, latency) that a log
/// collector can follow; `downshift::access=off` silences those lines alone.
#[test]
fn each_request_writes_one_access_log_line() {
    let up = mock(&[]);
    let url = format!("http://{}", up.addr);
    for (filter, expect) in [("info", true), ("info,downshift::access=off", false)] {
        let dir = tempdir();
        let data = dir.path().join("data");
        let log = dir.path().join("serve.log");
        let args = [
            "serve",
            "--no-auth",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--upstream",
            &url,
            "--log",
            filter,
        ];
        let gw = Proc::start_logging(&args, &[], std::fs::File::create(&log).unwrap().into());
        let body = r#"{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}"#;
        let r = post_json(
            &gw.addr,
            "/v1/chat/completions",
            None,
            body,
            &[("x-downshift-agent", "support")],
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let id = r.header("x-downshift-call-id").unwrap().to_owned();
        drop(gw);
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(&id)).collect();
        if !expect {
            assert!(lines.is_empty(), "{text}");
            continue;
        }
        assert_eq!(lines.len(), 1, "{text}");
        let line = lines[0];
        for field in [
            "INFO",
            "request",
            "endpoint=chat/completions",
            "model=gpt-4o-mini",
            "route=default",
            "status=200",
            "outcome=ok",
            "agent=agt_",
            "ms=",
        ] {
            assert!(line.contains(field), "{field} missing: {line}");
        }
        // The agent is logged by its pseudonym, as stored.
        assert!(!line.contains("agent=support"), "{line}");
    }
}

/// `downshift ARGS` run from `cwd` with stdin `input`, the models folders it may use set by
/// `env` only: (exit ok, stdout, stderr).
fn run_in(
    cwd: &std::path::Path,
    args: &[&str],
    env: &[(&str, &std::path::Path)],
    input: &str,
) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(support::BIN);
    cmd.args(args)
        .current_dir(cwd)
        .env("DOWNSHIFT_LOG", "warn")
        .env_remove("DOWNSHIFT_MODELS_DIR")
        .env_remove("DOWNSHIFT_DATA_DIR")
        .env("XDG_DATA_HOME", cwd.join("xdg"));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = support::output_with_stdin(&mut cmd, input);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn models_are_found_from_any_working_directory() {
    let dir = tempdir();
    let cwd = dir.path();
    let models = support::repo_root().join("models");
    let spec = "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf";
    let tokenize = ["tokenize", "--model", spec];
    // Nowhere to be found: the error says every place it looked.
    let (ok, _, err) = run_in(cwd, &tokenize, &[], "hello\n");
    assert!(!ok);
    assert!(
        err.contains("not found") && err.contains("xdg/downshift/models/smollm2-135m-instruct"),
        "{err}"
    );
    // $DOWNSHIFT_MODELS_DIR, from a directory that has no models/ of its own.
    let (ok, out, err) = run_in(
        cwd,
        &tokenize,
        &[("DOWNSHIFT_MODELS_DIR", &models)],
        "hello\n",
    );
    assert!(ok, "{err}");
    assert!(out.trim_start().starts_with('['), "{out}");
    // The platform data directory's models folder (here $XDG_DATA_HOME/downshift/models).
    std::fs::create_dir_all(cwd.join("xdg/downshift")).unwrap();
    std::os::unix::fs::symlink(&models, cwd.join("xdg/downshift/models")).unwrap();
    let (ok, out2, err) = run_in(cwd, &tokenize, &[], "hello\n");
    assert!(ok, "{err}");
    assert_eq!(out, out2);
    // discover finds its embedding model there too.
    let calls = cwd.join("calls.jsonl");
    std::fs::write(
        &calls,
        r#"{"request":{"model":"m","messages":[{"role":"user","content":"hi"}]},"response":{"choices":[]}}"#,
    )
    .unwrap();
    let data = cwd.join("data");
    let d = data.to_str().unwrap();
    let (ok, _, err) = run_in(cwd, &["import", "calls.jsonl", "--data-dir", d], &[], "");
    assert!(ok, "{err}");
    let (ok, _, err) = run_in(cwd, &["discover", "--data-dir", d, "--json"], &[], "");
    assert!(ok, "{err}");
}
