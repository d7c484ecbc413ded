//! End-to-end: upstream resilience (deployments, fallbacks, retries, attempts on the call) and
//! the rest of the OpenAI surface (Responses API, legacy completions, model lookup, the OpenAI
//! Python SDK), with the real `downshift serve` in front of real `downshift mock-llm`s on
//! loopback.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

const CHAT: &str = "/v1/chat/completions";
const HELLO: &str = r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hello there"}]}"#;

/// `serve --config FILE --no-auth` with `config` written to the data directory.
fn serve_config(data: &Path, config: &str) -> Proc {
    serve_with(data, config, &["--no-auth"])
}

/// `serve --config FILE EXTRA…` with `config` written to the data directory.
fn serve_with(data: &Path, config: &str, extra: &[&str]) -> Proc {
    let file = data.join("downshift.toml");
    std::fs::create_dir_all(data).unwrap();
    std::fs::write(&file, config).unwrap();
    let (file, d) = (file.to_str().unwrap(), data.to_str().unwrap());
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--config",
        file,
        "--data-dir",
        d,
    ];
    args.extend_from_slice(extra);
    Proc::start(&args, &[])
}

fn upstreams(list: &[(&str, &str)]) -> String {
    list.iter()
        .map(|(name, addr)| {
            format!("[[upstreams]]\nname = \"{name}\"\nbase_url = \"http://{addr}\"\n")
        })
        .collect()
}

/// An address nothing listens on (bound, then released).
fn closed_port() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let a = l.local_addr().unwrap().to_string();
    drop(l);
    a
}

/// The call `id` once the log has it.
fn logged(data: &Path, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if calls(data, &[]).iter().any(|c| c["id"] == id) {
            return show(data, id);
        }
        assert!(Instant::now() < deadline, "call {id} was never logged");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mock_requests(mock: &Proc) -> u64 {
    get(&mock.addr, "/mock/stats", None).json()["requests"]
        .as_u64()
        .unwrap()
}

#[test]
fn a_failing_first_upstream_falls_back_to_the_second_and_the_call_records_both_attempts() {
    let dir = tempdir();
    let bad = mock(&["--fail-rate", "1"]);
    let good = mock(&[]);
    let down = closed_port();
    let gw = serve_config(
        dir.path(),
        &format!(
            "{}[routing]\nbalance = \"ordered\"\n[routing.models]\n\"gpt-4o\" = [\"bad\", \"good\"]\n\"gpt-4o-mini\" = [\"down\", \"good\"]\n",
            upstreams(&[("bad", &bad.addr), ("good", &good.addr), ("down", &down)])
        ),
    );
    // A 500 from the first deployment: the second answers, byte for byte.
    let resp = post_json(&gw.addr, CHAT, Some("sk-anything"), HELLO, &[]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.header("x-downshift-route"), Some("llm:good"));
    assert_eq!(resp.header("x-downshift-attempts"), Some("2"));
    assert_eq!(
        resp.body,
        post_json(&good.addr, CHAT, None, HELLO, &[]).body
    );
    assert_eq!(
        get(&good.addr, "/mock/last-request", None).body,
        HELLO.as_bytes()
    );
    let id = resp.header("x-downshift-call-id").unwrap().to_owned();
    let call = logged(dir.path(), &id);
    assert_eq!(call["call"]["status"], "ok");
    assert_eq!(call["call"]["upstream"], "good");
    let attempts = call["attempts"].as_array().expect("attempts on the call");
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0]["upstream"], "bad");
    assert_eq!(attempts[0]["status"], 500);
    assert!(
        attempts[0]["error"]
            .as_str()
            .unwrap()
            .contains("mock upstream failure"),
        "{attempts:?}"
    );
    assert!(attempts[0]["latency_ms"].as_f64().is_some());
    assert_eq!(attempts[1]["upstream"], "good");
    assert_eq!(attempts[1]["status"], 200);
    assert!(attempts[1].get("error").is_none());

    // Nothing listening on the first deployment: a connection error, then the second.
    let body = HELLO.replace("gpt-4o", "gpt-4o-mini");
    let resp = post_json(&gw.addr, CHAT, None, &body, &[]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    let call = logged(dir.path(), resp.header("x-downshift-call-id").unwrap());
    let attempts = call["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["upstream"], "down");
    assert!(attempts[0].get("status").is_none());
    assert!(!attempts[0]["error"].as_str().unwrap().is_empty());
    assert_eq!(attempts[1]["upstream"], "good");

    // Streaming: the failure came before any byte, so the stream comes whole from the second.
    let stream = HELLO.replace("\"messages\"", "\"stream\":true,\"messages\"");
    let resp = post_json(&gw.addr, CHAT, None, &stream, &[]);
    assert_eq!(resp.status, 200);
    assert!(resp.text().ends_with("data: [DONE]\n\n"), "{}", resp.text());
    let call = logged(dir.path(), resp.header("x-downshift-call-id").unwrap());
    assert_eq!(call["call"]["status"], "ok");
    assert_eq!(call["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(
        call["response"]["choices"][0]["message"]["content"],
        "echo: hello there"
    );
    gw.stop();
}

#[test]
fn when_every_deployment_fails_the_last_answer_reaches_the_client_unchanged() {
    let dir = tempdir();
    let a = mock(&["--fail-rate", "1", "--fail-status", "503"]);
    let b = mock(&["--fail-rate", "1"]);
    let gw = serve_config(
        dir.path(),
        &format!(
            "{}[routing]\nbalance = \"ordered\"\n[routing.models]\n\"gpt-4o\" = [\"a\", \"b\"]\n",
            upstreams(&[("a", &a.addr), ("b", &b.addr)])
        ),
    );
    let resp = post_json(&gw.addr, CHAT, None, HELLO, &[]);
    assert_eq!(resp.status, 500);
    assert_eq!(resp.body, post_json(&b.addr, CHAT, None, HELLO, &[]).body);
    let call = logged(dir.path(), resp.header("x-downshift-call-id").unwrap());
    assert_eq!(call["call"]["status"], "upstream_error");
    let statuses: Vec<&Value> = call["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status"])
        .collect();
    assert_eq!(statuses, [&json!(503), &json!(500)]);
    gw.stop();
}

#[test]
fn a_fallback_model_gets_the_request_with_only_its_model_changed() {
    let dir = tempdir();
    let bad = mock(&["--fail-rate", "1", "--fail-status", "429"]);
    let good = mock(&[]);
    let gw = serve_config(
        dir.path(),
        &format!(
            "{}[routing.models]\n\"gpt-4o\" = \"bad\"\n\"small-*\" = \"good\"\n[routing.fallbacks]\n\"gpt-4o\" = [\"small-model\"]\n",
            upstreams(&[("bad", &bad.addr), ("good", &good.addr)])
        ),
    );
    let body = r#"{"model":"gpt-4o",  "messages":[{"role":"user","content":"hi"}],"zz_vendor":{"k":[1, 2.50]}}"#;
    let resp = post_json(&gw.addr, CHAT, None, body, &[]);
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(resp.json()["model"], "small-model");
    let seen = get(&good.addr, "/mock/last-request", None).text();
    assert_eq!(
        seen,
        r#"{"model":"small-model","messages":[{"role":"user","content":"hi"}],"zz_vendor":{"k":[1, 2.50]}}"#
    );
    let call = logged(dir.path(), resp.header("x-downshift-call-id").unwrap());
    let attempts = call["attempts"].as_array().unwrap();
    assert_eq!(attempts[0]["status"], 429);
    assert!(attempts[0].get("model").is_none());
    assert_eq!(attempts[1]["model"], "small-model");
    assert_eq!(attempts[1]["upstream"], "good");
    // The call stays the agent's request for the model it asked for.
    assert_eq!(call["call"]["model"], "gpt-4o");
    assert_eq!(call["request"]["model"], "gpt-4o");
    gw.stop();
}

#[test]
fn retries_wait_and_try_again_and_without_retries_a_429_passes_through() {
    let dir = tempdir();
    let flaky = mock(&["--fail-first", "2", "--fail-status", "429"]);
    let gw = serve_config(
        dir.path(),
        &format!(
            "{}[routing]\nretries = 2\nretry_backoff_ms = 40\n",
            upstreams(&[("flaky", &flaky.addr)])
        ),
    );
    let t = Instant::now();
    let resp = post_json(&gw.addr, CHAT, None, HELLO, &[]);
    let took = t.elapsed();
    assert_eq!(resp.status, 200, "{}", resp.text());
    // Two waits: 20–40 ms, then 40–80 ms.
    assert!(took >= Duration::from_millis(60), "{took:?}");
    let call = logged(dir.path(), resp.header("x-downshift-call-id").unwrap());
    let statuses: Vec<u64> = call["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [429, 429, 200]);
    gw.stop();

    let dir = tempdir();
    let flaky = mock(&["--fail-first", "1", "--fail-status", "429"]);
    let gw = serve_config(dir.path(), &upstreams(&[("flaky", &flaky.addr)]));
    let resp = post_json(&gw.addr, CHAT, None, HELLO, &[]);
    assert_eq!(resp.status, 429);
    assert_eq!(resp.json()["error"]["type"], "rate_limit_exceeded");
    assert_eq!(resp.header("x-downshift-attempts"), None);
    let call = logged(dir.path(), resp.header("x-downshift-call-id").unwrap());
    assert!(call.get("attempts").is_none(), "{call}");
    assert_eq!(mock_requests(&flaky), 1);
    gw.stop();
}

#[test]
fn deployments_share_requests_in_turn() {
    let dir = tempdir();
    let a = mock(&[]);
    let b = mock(&[]);
    let gw = serve_config(
        dir.path(),
        &format!(
            "{}[routing.models]\n\"gpt-4o\" = [\"a\", \"b\"]\n",
            upstreams(&[("a", &a.addr), ("b", &b.addr)])
        ),
    );
    let mut routes = Vec::new();
    for _ in 0..4 {
        let resp = post_json(&gw.addr, CHAT, None, HELLO, &[]);
        assert_eq!(resp.status, 200);
        routes.push(resp.header("x-downshift-route").unwrap().to_owned());
    }
    assert_eq!(routes, ["llm:a", "llm:b", "llm:a", "llm:b"]);
    assert_eq!((mock_requests(&a), mock_requests(&b)), (2, 2));
    gw.stop();
}

#[test]
fn a_fallback_naming_no_upstream_is_refused_at_start() {
    let dir = tempdir();
    let file = dir.path().join("downshift.toml");
    std::fs::write(
        &file,
        "[[upstreams]]\nname = \"a\"\nbase_url = \"http://127.0.0.1:9\"\n[routing.models]\n\"gpt-4o\" = \"a\"\n[routing.fallbacks]\n\"gpt-4o\" = [\"nowhere\"]\n",
    )
    .unwrap();
    let (success, _, err) = run(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--config",
            file.to_str().unwrap(),
            "--data-dir",
            dir.path().join("d").to_str().unwrap(),
        ],
        &[],
    );
    assert!(!success);
    assert!(err.contains("'nowhere'"), "{err}");
}

#[test]
fn responses_and_completions_are_proxied_byte_faithfully_and_logged() {
    let dir = tempdir();
    let up = mock(&[]);
    let gw = serve(dir.path(), &up.addr, &["--no-auth"]);
    for (path, body, endpoint) in [
        (
            "/v1/responses",
            r#"{"model":"gpt-4.1", "input":"Say hi","instructions":"Be brief.","zz":{"x":[1,2.50]}}"#,
            "responses",
        ),
        (
            "/v1/completions",
            r#"{"model":"gpt-3.5-turbo-instruct","prompt":"Once upon", "max_tokens":5}"#,
            "completions",
        ),
    ] {
        let resp = post_json(&gw.addr, path, None, body, &[]);
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
        assert_eq!(
            get(&up.addr, "/mock/last-request", None).body,
            body.as_bytes()
        );
        assert_eq!(resp.body, post_json(&up.addr, path, None, body, &[]).body);
        let call = logged(dir.path(), resp.header("x-downshift-call-id").unwrap());
        assert_eq!(call["call"]["endpoint"], endpoint);
        assert_eq!(call["call"]["status"], "ok");
        assert!(
            call["call"]["prompt_tokens"].as_u64().unwrap() > 0,
            "{call}"
        );
        assert_eq!(
            call["request"],
            serde_json::from_str::<Value>(body).unwrap()
        );
        assert_eq!(call["response"], resp.json());

        // Streamed: the client gets the upstream's event bytes; the log keeps the answer whole.
        let streamed = if endpoint == "completions" {
            body.replacen(
                '{',
                "{\"stream\":true,\"stream_options\":{\"include_usage\":true},",
                1,
            )
        } else {
            body.replacen('{', "{\"stream\":true,", 1)
        };
        let resp = post_json(&gw.addr, path, None, &streamed, &[]);
        assert_eq!(resp.status, 200);
        assert_eq!(
            resp.body,
            post_json(&up.addr, path, None, &streamed, &[]).body
        );
        let call = logged(dir.path(), resp.header("x-downshift-call-id").unwrap());
        assert_eq!(call["call"]["status"], "ok", "{call}");
        assert!(call["call"]["stream"].as_bool().unwrap());
        assert!(
            call["call"]["completion_tokens"]
                .as_u64()
                .is_some_and(|t| t > 0),
            "{call}"
        );
        if endpoint == "responses" {
            assert_eq!(call["response"]["status"], "completed");
            assert_eq!(
                call["response"]["output"][0]["content"][0]["text"],
                "echo: Say hi"
            );
        } else {
            assert_eq!(call["response"]["choices"][0]["text"], " echo: Once upon");
            assert_eq!(call["response"]["choices"][0]["finish_reason"], "stop");
        }
    }
    // Local models answer chat completions only.
    let resp = post_json(
        &gw.addr,
        "/v1/responses",
        None,
        r#"{"model":"local/x","input":"hi"}"#,
        &[],
    );
    assert_eq!(resp.status, 400);
    gw.stop();
}

#[test]
fn models_are_listed_and_looked_up() {
    let dir = tempdir();
    let up = mock(&[]);
    let gw = serve_config(
        dir.path(),
        &format!(
            "{}[routing.models]\n\"gpt-4o\" = \"a\"\n\"mo*\" = \"a\"\n",
            upstreams(&[("a", &up.addr)])
        ),
    );
    let list = get(&gw.addr, "/v1/models", None).json();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    // The declared model, and the upstream's models the pattern routes there.
    assert_eq!(ids, ["gpt-4o", "mock"]);
    let m = get(&gw.addr, "/v1/models/gpt-4o", None);
    assert_eq!(m.status, 200);
    assert_eq!(m.json()["owned_by"], "a");
    // Reached through a pattern: the upstream describes it.
    let m = get(&gw.addr, "/v1/models/mock", None);
    assert_eq!(m.status, 200);
    assert_eq!(m.json()["owned_by"], "downshift-mock");
    assert_eq!(get(&gw.addr, "/v1/models/motor", None).status, 404);
    let none = get(&gw.addr, "/v1/models/claude-3", None);
    assert_eq!(none.status, 404);
    assert_eq!(none.json()["error"]["code"], "model_not_found");
    gw.stop();
}

/// The Python interpreter with the OpenAI SDK: `DOWNSHIFT_OPENAI_PYTHON`, else the venv
/// `.ci/run` makes (`target/openai-venv`).
fn openai_python() -> Option<std::path::PathBuf> {
    let candidate = std::env::var_os("DOWNSHIFT_OPENAI_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/openai-venv/bin/python"));
    let works = std::process::Command::new(&candidate)
        .args(["-c", "import openai"])
        .output()
        .is_ok_and(|o| o.status.success());
    works.then_some(candidate)
}

#[test]
fn the_openai_python_sdk_works_against_serve_no_auth() {
    let Some(python) = openai_python() else {
        eprintln!(
            "SKIPPED: the OpenAI Python SDK is not installed (python3 -m venv target/openai-venv && target/openai-venv/bin/pip install openai==3.51.0, as .ci/run does)"
        );
        return;
    };
    let dir = tempdir();
    let up = mock(&[]);
    let gw = serve(dir.path(), &up.addr, &["--no-auth"]);
    let script = r#"
import json, sys
from openai import OpenAI
client = OpenAI(base_url=sys.argv[1], api_key="sk-whatever", max_retries=0)
out = {}
chat = client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hello sdk"}])
out["chat"] = chat.choices[0].message.content
r = client.responses.create(model="gpt-4.1", input="plain sdk")
out["responses"] = r.output_text
text = ""
kinds = []
with client.responses.create(model="gpt-4.1", input="streamed sdk", stream=True) as stream:
    for event in stream:
        kinds.append(event.type)
        if event.type == "response.output_text.delta":
            text += event.delta
out["stream_text"] = text
out["stream_last"] = kinds[-1]
out["model"] = client.models.retrieve("mock").id
out["models"] = [m.id for m in client.models.list()]
print(json.dumps(out))
"#;
    let output = std::process::Command::new(python)
        .args(["-c", script, &format!("http://{}/v1", gw.addr)])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the SDK script failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(out["chat"], "echo: hello sdk");
    assert_eq!(out["responses"], "echo: plain sdk");
    assert_eq!(out["stream_text"], "echo: streamed sdk");
    assert_eq!(out["stream_last"], "response.completed");
    assert_eq!(out["model"], "mock");
    assert_eq!(out["models"], json!(["mock"]));
    // Every SDK call that reached an upstream endpoint is in the log.
    let logged = wait_calls(dir.path(), 3);
    let mut endpoints: Vec<&str> = logged
        .iter()
        .map(|c| c["endpoint"].as_str().unwrap())
        .collect();
    endpoints.sort();
    assert_eq!(endpoints, ["chat/completions", "responses", "responses"]);
    gw.stop();
}

#[test]
fn a_key_over_its_budget_gets_429_and_spend_is_reported() {
    let dir = tempdir();
    let data = dir.path();
    let up = mock(&[]);
    let ci = create_key(data, "agent", "ci");
    // One echo call costs about 1e-4 USD at the gpt-4o price (2.5 / 10 USD per million
    // tokens): the first call is admitted, and spends the day's budget.
    let config = format!(
        "{}[limits.keys.ci]\nusd_per_day = 0.00005\n[limits.agents.capped]\nrequests_per_minute = 2\n",
        upstreams(&[("a", &up.addr)])
    );
    let gw = serve_with(data, &config, &[]);
    let admin = gw.admin_key();
    let r = post_json(&gw.addr, CHAT, Some(&ci), HELLO, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = post_json(&gw.addr, CHAT, Some(&ci), HELLO, &[]);
    assert_eq!(r.status, 429, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["type"], "insufficient_quota");
    assert_eq!(e["error"]["code"], "insufficient_quota");
    assert!(e["error"]["message"].as_str().unwrap().contains("budget"));
    // An agent's own limit holds whichever key it uses; other callers are not held back.
    let agent = [("x-downshift-agent", "capped")];
    for _ in 0..2 {
        let r = post_json(&gw.addr, CHAT, Some(&admin), HELLO, &agent);
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = post_json(&gw.addr, CHAT, Some(&admin), HELLO, &agent);
    assert_eq!(r.status, 429);
    assert_eq!(r.json()["error"]["type"], "rate_limit_exceeded");
    assert_eq!(
        post_json(&gw.addr, CHAT, Some(&admin), HELLO, &[]).status,
        200
    );

    // The admin API reports spend (analysts and admins only), once the log has the calls.
    assert_eq!(wait_calls(data, 4).len(), 4);
    let spend = get(&gw.addr, "/admin/spend?by=key", Some(&admin));
    assert_eq!(spend.status, 200, "{}", spend.text());
    let rows = spend.json()["data"].as_array().unwrap().clone();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r["usd"].as_f64().unwrap() > 0.0));
    assert_eq!(get(&gw.addr, "/admin/spend", Some(&ci)).status, 403);
    assert_eq!(
        get(&gw.addr, "/admin/spend?by=colour", Some(&admin)).status,
        400
    );
    gw.stop();

    // After a restart the day's spend is read back from the log: still over budget.
    let gw = serve_with(data, &config, &[]);
    let r = post_json(&gw.addr, CHAT, Some(&ci), HELLO, &[]);
    assert_eq!(r.status, 429, "{}", r.text());
    gw.stop();

    // `downshift spend`: per key, per model.
    let d = data.to_str().unwrap();
    let by_model: Vec<Value> = ok(&["spend", "--by", "model", "--json", "--data-dir", d])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(by_model.len(), 1);
    assert_eq!(by_model[0]["group"], "gpt-4o");
    assert_eq!(by_model[0]["calls"], 4);
    let by_key: Vec<Value> = ok(&["spend", "--json", "--data-dir", d])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(by_key.len(), 2);
    let total: f64 = by_key.iter().map(|r| r["usd"].as_f64().unwrap()).sum();
    assert!((by_model[0]["usd"].as_f64().unwrap() - total).abs() < 1e-12);
    let table = ok(&["spend", "--data-dir", d]);
    assert!(table.contains("KEY") && table.contains("USD"), "{table}");
    let (success, _, err) = run(&["spend", "--by", "colour", "--data-dir", d], &[]);
    assert!(!success && err.contains("colour"), "{err}");
}
