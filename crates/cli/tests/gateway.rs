//! End-to-end: the real `downshift serve` in front of the real `downshift mock-llm`, on
//! loopback ports chosen by the OS.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

mod support;

use std::io::Read;
use std::time::{Duration, Instant};

use downshift_api::StreamAssembler;
use serde_json::{Value, json};
use support::*;

const CHAT: &str = "/v1/chat/completions";

/// A replay file with a parallel tool call, for the streaming tests.
fn replay_file(dir: &std::path::Path) -> (std::path::PathBuf, Value, Value) {
    let request = json!({
        "model": "gpt-4o",
        "messages": [{"role": "system", "content": "You are a travel agent."},
                     {"role": "user", "content": "Weather and time in Paris and Tokyo?"}],
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}
        ]
    });
    let response = json!({
        "id": "chatcmpl-rec-1", "object": "chat.completion", "created": 1735689600, "model": "gpt-4o",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": null, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_2", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Tokyo\"}"}},
            {"id": "call_3", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\":\"Asia/Tokyo\"}"}}
        ]}, "logprobs": null, "finish_reason": "tool_calls"}],
        "usage": {"prompt_tokens": 42, "completion_tokens": 30, "total_tokens": 72}
    });
    let path = dir.join("replay.jsonl");
    std::fs::write(
        &path,
        format!(
            "{}\n",
            json!({"request": request, "response": response, "metadata": {"k": "v"}})
        ),
    )
    .unwrap();
    (path, request, response)
}

fn sse_events(body: &[u8]) -> StreamAssembler {
    let mut asm = StreamAssembler::new();
    asm.feed(body);
    asm
}

#[test]
fn non_streaming_is_byte_faithful_both_ways_and_logged_encrypted() {
    let dir = tempdir();
    let mock = mock(&[]);
    let gw = serve(dir.path(), &mock.addr, &[]);
    let key = gw.admin_key();
    // Unknown fields, provider extensions, odd spacing and key order: all must arrive as sent.
    let body = "{\"model\":\"gpt-4o\",  \"messages\":[{\"role\":\"user\",\"content\":\"MARKER-7f3a9 héllo\"}],\n \"zz_vendor\":{\"x\":[1,2.50,null]},\"temperature\":0.2}";
    let resp = post_json(
        &gw.addr,
        CHAT,
        Some(&key),
        body,
        &[
            ("x-downshift-agent", "billing-bot"),
            ("x-downshift-tags", "team=payments,env=test"),
        ],
    );
    assert_eq!(resp.status, 200, "{}", resp.text());
    let seen = get(&mock.addr, "/mock/last-request", None);
    assert_eq!(
        seen.body,
        body.as_bytes(),
        "the upstream must receive the exact request bytes"
    );
    // The same request sent directly gets byte-identical bytes back.
    let direct = post_json(&mock.addr, CHAT, None, body, &[]);
    assert_eq!(
        resp.body, direct.body,
        "the client must receive the upstream's exact bytes"
    );
    assert_eq!(
        resp.header("content-length").unwrap(),
        direct.body.len().to_string()
    );
    assert_eq!(resp.header("x-downshift-route"), Some("llm:default"));
    let id = resp.header("x-downshift-call-id").unwrap().to_owned();

    let calls = wait_calls(dir.path(), 1);
    assert_eq!(calls.len(), 1);
    let c = &calls[0];
    assert_eq!(c["id"], id.as_str());
    assert_eq!(c["model"], "gpt-4o");
    assert_eq!(c["status"], "ok");
    assert_eq!(c["tags"]["team"], "payments");
    assert!(
        c["agent"].as_str().unwrap().starts_with("agt_"),
        "agent must be pseudonymised"
    );
    assert!(c["prompt_tokens"].as_u64().unwrap() > 0);
    assert!(c["overhead_us"].as_u64().is_some());
    gw.stop();

    // Encryption at rest: no plaintext of the prompt, nor the raw agent id, in any file.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            let bytes = std::fs::read(&p).unwrap();
            for needle in [&b"MARKER-7f3a9"[..], b"billing-bot"] {
                assert!(
                    !bytes.windows(needle.len()).any(|w| w == needle),
                    "{} holds plaintext",
                    p.display()
                );
            }
        }
    }
    let shown = show(dir.path(), &id);
    assert_eq!(shown["request"]["zz_vendor"]["x"][1], 2.5);
    assert!(
        shown["response"]["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("MARKER-7f3a9")
    );

    // Under another key file the payload cannot be read, and the error says why.
    let other = tempdir();
    let other_keys = other.path().join("keys.json");
    ok(&[
        "import",
        "/dev/null",
        "--data-dir",
        other.path().to_str().unwrap(),
    ]);
    let show_with = |keys: &std::path::Path| {
        run(
            &[
                "calls",
                "show",
                &id,
                "--data-dir",
                dir.path().to_str().unwrap(),
            ],
            &[("DOWNSHIFT_KEY_FILE", keys.to_str().unwrap())],
        )
    };
    let (success, _, err) = show_with(&other_keys);
    assert!(!success);
    assert!(err.contains("not in the key file"), "{err}");
    // Same key id, different key bytes: authentication fails.
    let mut forged: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("keys.json")).unwrap())
            .unwrap();
    forged["data_keys"][0]["key"] = json!("00".repeat(32));
    let forged_path = other.path().join("forged.json");
    std::fs::write(&forged_path, forged.to_string()).unwrap();
    let (success, _, err) = show_with(&forged_path);
    assert!(!success);
    assert!(err.contains("authentication failed"), "{err}");
}

#[test]
fn streaming_with_parallel_tool_calls_is_passed_through_and_assembled() {
    let dir = tempdir();
    let (replay, request, recorded) = replay_file(dir.path());
    let mock = mock(&["--replay", replay.to_str().unwrap()]);
    let gw = serve(&dir.path().join("d"), &mock.addr, &["--no-auth"]);
    let mut req = request.clone();
    req["stream"] = json!(true);
    req["stream_options"] = json!({"include_usage": true});
    let body = req.to_string();
    let resp = post_json(&gw.addr, CHAT, None, &body, &[]);
    assert_eq!(resp.status, 200);
    assert!(
        resp.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let direct = post_json(&mock.addr, CHAT, None, &body, &[]);
    assert_eq!(
        resp.body, direct.body,
        "streamed bytes must pass through unchanged"
    );
    // The client assembles exactly the recorded answer (three parallel calls, usage last).
    let asm = sse_events(&resp.body);
    assert!(asm.is_complete());
    assert!(asm.counts().0 > 8, "expected many chunks");
    assert_eq!(asm.finish(), recorded);

    let calls = wait_calls(&dir.path().join("d"), 1);
    assert_eq!(calls[0]["status"], "ok");
    assert_eq!(calls[0]["stream"], true);
    assert_eq!(calls[0]["prompt_tokens"], 42);
    assert_eq!(calls[0]["completion_tokens"], 30);
    assert!(calls[0]["ttft_us"].as_u64().is_some());
    let shown = show(&dir.path().join("d"), calls[0]["id"].as_str().unwrap());
    assert_eq!(
        shown["response"], recorded,
        "the log holds the assembled response"
    );

    // Without include_usage the stream carries no usage chunk, and the log no usage.
    req["stream_options"] = json!({"include_usage": false});
    let resp = post_json(&gw.addr, CHAT, None, &req.to_string(), &[]);
    let asm = sse_events(&resp.body);
    assert!(asm.usage().is_none());
    assert_eq!(asm.finish()["choices"], recorded["choices"]);
}

#[test]
fn upstream_errors_pass_through_and_failures_get_openai_errors() {
    let dir = tempdir();
    let mock = mock(&[]);
    let gw = serve(
        dir.path(),
        &mock.addr,
        &["--no-auth", "--upstream-timeout-ms", "400"],
    );
    let body = r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;

    // An upstream error reaches the client unchanged.
    let resp = post_json(&gw.addr, CHAT, None, body, &[("x-mock-status", "429")]);
    let direct = post_json(&mock.addr, CHAT, None, body, &[("x-mock-status", "429")]);
    assert_eq!(resp.status, 429);
    assert_eq!(resp.body, direct.body);

    // A slow upstream: 504 with an OpenAI-style body.
    let resp = post_json(&gw.addr, CHAT, None, body, &[("x-mock-delay-ms", "3000")]);
    assert_eq!(resp.status, 504);
    assert_eq!(resp.json()["error"]["code"], "upstream_timeout");

    // A streaming request to a slow upstream times out the same way.
    let sbody = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"x"}]}"#;
    let resp = post_json(&gw.addr, CHAT, None, sbody, &[("x-mock-delay-ms", "3000")]);
    assert_eq!(resp.status, 504);

    let calls = wait_calls(dir.path(), 3);
    let statuses: Vec<&str> = calls
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == "timeout").count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == "upstream_error").count(),
        1,
        "{statuses:?}"
    );
    let err_call = calls
        .iter()
        .find(|c| c["status"] == "upstream_error")
        .unwrap();
    assert_eq!(err_call["http_status"], 429);

    // Metrics count them.
    let m = get(&gw.addr, "/metrics", None).text();
    assert!(
        m.contains("downshift_upstream_errors_total{upstream=\"default\",kind=\"timeout\"} 2"),
        "{m}"
    );
    assert!(m.contains("downshift_requests_total{endpoint=\"chat/completions\",status=\"429\"} 1"));
}

#[test]
fn upstream_down_is_a_502_and_logged() {
    let dir = tempdir();
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gw = serve(dir.path(), &format!("127.0.0.1:{port}"), &["--no-auth"]);
    let resp = post_json(&gw.addr, CHAT, None, r#"{"model":"m","messages":[]}"#, &[]);
    assert_eq!(resp.status, 502);
    let e = resp.json();
    assert_eq!(e["error"]["code"], "upstream_unreachable");
    assert!(e["error"]["message"].as_str().unwrap().contains("default"));
    // The gateway-made answer names the logged call.
    let id = resp
        .header("x-downshift-call-id")
        .expect("a 502 carries the call id")
        .to_owned();
    let calls = wait_calls(dir.path(), 1);
    assert_eq!(calls[0]["id"], id.as_str());
    assert_eq!(calls[0]["status"], "unreachable");
    assert_eq!(calls[0]["http_status"], 502);
}

#[test]
fn client_disconnect_mid_stream_is_logged_as_interrupted() {
    let dir = tempdir();
    let mock = mock(&[]);
    let gw = serve(dir.path(), &mock.addr, &["--no-auth"]);
    let long = "word ".repeat(200);
    let body =
        json!({"model": "m", "stream": true, "messages": [{"role": "user", "content": long}]})
            .to_string();
    let mut s = send(
        &gw.addr,
        "POST",
        CHAT,
        &[
            ("Content-Type", "application/json"),
            ("x-mock-chunk-delay-ms", "50"),
        ],
        body.as_bytes(),
    );
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(20);
    let calls = loop {
        let c = calls(dir.path(), &[]);
        if !c.is_empty() || Instant::now() > deadline {
            break c;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0]["status"], "interrupted");
    let shown = show(dir.path(), calls[0]["id"].as_str().unwrap());
    let partial = shown["response"]["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or("");
    assert!(
        partial.len() < long.len(),
        "only part of the answer was streamed"
    );
    let m = get(&gw.addr, "/metrics", None).text();
    assert!(m.contains("downshift_interrupted_total 1"), "{m}");
}

#[test]
fn bad_requests_get_openai_errors() {
    let dir = tempdir();
    let mock = mock(&[]);
    let cfg = dir.path().join("downshift.toml");
    std::fs::write(
        &cfg,
        "[server]\nmax_body_bytes = 2000\nrequire_auth = false\n",
    )
    .unwrap();
    let data = dir.path().join("d");
    let url = format!("http://{}", mock.addr);
    let gw = Proc::start(
        &[
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--upstream",
            &url,
        ],
        &[],
    );
    let cases: Vec<(String, u16, &str)> = vec![
        (
            "{\"model\": \"m\", \"messages\": [".into(),
            400,
            "invalid_request",
        ),
        ("[1,2]".into(), 400, "invalid_request"),
        ("{\"messages\": []}".into(), 400, "invalid_request"),
        (
            format!(
                "{{\"model\":\"m\",\"messages\":[{{\"role\":\"user\",\"content\":\"{}\"}}]}}",
                "x".repeat(5000)
            ),
            413,
            "request_too_large",
        ),
    ];
    for (body, status, code) in cases {
        let resp = post_json(&gw.addr, CHAT, None, &body, &[]);
        assert_eq!(resp.status, status, "{}", resp.text());
        let e = resp.json();
        assert_eq!(e["error"]["code"], code);
        assert!(e["error"]["message"].as_str().unwrap().len() > 5);
    }
    // Chunked upload over the limit (no Content-Length) is refused too.
    let mut s = std::net::TcpStream::connect(&gw.addr).unwrap();
    use std::io::Write;
    let chunk = "a".repeat(3000);
    write!(s, "POST {CHAT} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n", chunk.len()).unwrap();
    let mut raw = String::new();
    let _ = s.read_to_string(&mut raw);
    assert!(raw.starts_with("HTTP/1.1 413"), "{raw}");
    // Unknown routes and methods.
    assert_eq!(get(&gw.addr, "/v1/nope", None).status, 404);
    assert_eq!(get(&gw.addr, CHAT, None).status, 405);
    // Nothing was forwarded or logged for rejected requests.
    let stats = get(&mock.addr, "/mock/stats", None).json();
    assert_eq!(stats["requests"], 0);
    gw.stop();
    assert!(calls(&data, &[]).is_empty());
}

#[test]
fn api_keys_and_roles_are_enforced() {
    let dir = tempdir();
    let mock = mock(&[]);
    let gw = serve(dir.path(), &mock.addr, &[]);
    let admin = gw.admin_key();
    let d = dir.path().to_str().unwrap();
    let mk = |role: &str, name: &str| create_key(dir.path(), role, name);
    let agent = mk("agent", "bot");
    let analyst = mk("analyst", "ana");
    let body = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

    let r = post_json(&gw.addr, CHAT, None, body, &[]);
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (401, Some("missing_api_key"))
    );
    let r = post_json(&gw.addr, CHAT, Some("dsk_wrong"), body, &[]);
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    let r = post_json(&gw.addr, CHAT, Some(&analyst), body, &[]);
    assert_eq!(
        (r.status, r.json()["error"]["code"].as_str()),
        (403, Some("insufficient_permissions"))
    );
    assert_eq!(
        post_json(&gw.addr, CHAT, Some(&agent), body, &[]).status,
        200
    );
    assert_eq!(
        post_json(&gw.addr, CHAT, Some(&admin), body, &[]).status,
        200
    );

    // Admin API: agents get nothing, analysts metadata only, admins raw payloads (audited).
    assert_eq!(get(&gw.addr, "/admin/calls", Some(&agent)).status, 403);
    let listed = wait_calls(dir.path(), 2);
    assert_eq!(listed.len(), 2);
    let r = get(&gw.addr, "/admin/calls", Some(&analyst));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 2);
    let id = listed[0]["id"].as_str().unwrap();
    assert_eq!(
        get(&gw.addr, &format!("/admin/calls/{id}"), Some(&analyst)).status,
        403
    );
    let raw = get(&gw.addr, &format!("/admin/calls/{id}"), Some(&admin));
    assert_eq!(raw.status, 200);
    assert_eq!(raw.json()["request"]["messages"][0]["content"], "hi");
    let audit = get(&gw.addr, "/admin/audit", Some(&admin)).json();
    assert_eq!(audit["data"][0]["action"], "read_raw");
    assert_eq!(audit["data"][0]["target"], id);

    // A revoked key stops working within the cache lifetime.
    ok(&["keys", "revoke", "bot", "--data-dir", d]);
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(
        post_json(&gw.addr, CHAT, Some(&agent), body, &[]).status,
        401
    );
    let keys = ok(&["keys", "list", "--json", "--data-dir", d]);
    assert!(
        !keys.contains(&agent) && !keys.contains(&admin),
        "secrets must never be listed"
    );
    assert_eq!(keys.lines().count(), 3);
}

#[test]
fn spilled_records_survive_a_restart() {
    let dir = tempdir();
    let mock = mock(&[]);
    let cfg = dir.path().join("downshift.toml");
    // The journal off: the spill file is then what keeps records the queue cannot take.
    std::fs::write(
        &cfg,
        "[store]\nqueue_capacity = 1\nbatch_max = 1\njournal = false\n",
    )
    .unwrap();
    let data = dir.path().join("d");
    let url = format!("http://{}", mock.addr);
    let args = [
        "serve",
        "--config",
        cfg.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        data.to_str().unwrap(),
        "--upstream",
        &url,
        "--no-auth",
    ];
    let gw = Proc::start(&args, &[]);
    // Another process holds the database's write lock: the writer blocks, the queue fills up,
    // and the gateway must keep serving and spill instead.
    let db = rusqlite::Connection::open(data.join("downshift.sqlite")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    for i in 0..20 {
        let body =
            format!(r#"{{"model":"m","messages":[{{"role":"user","content":"spill {i}"}}]}}"#);
        assert_eq!(post_json(&gw.addr, CHAT, None, &body, &[]).status, 200);
    }
    let m = get(&gw.addr, "/metrics", None).text();
    let spilled: u64 = m
        .lines()
        .find_map(|l| l.strip_prefix("downshift_log_records_spilled_total "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        spilled >= 15,
        "expected most records to spill, got {spilled}"
    );
    assert!(std::fs::read_dir(data.join("spill")).unwrap().count() > 0);
    db.execute_batch("COMMIT").unwrap();
    drop(db);
    gw.stop();
    // The next start ingests the spill file: all 20 calls are there, none twice.
    let gw = Proc::start(&args, &[]);
    let calls = wait_calls(&data, 20);
    assert_eq!(calls.len(), 20);
    let mut contents: Vec<String> = calls
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    contents.sort();
    contents.dedup();
    assert_eq!(contents.len(), 20);
    assert_eq!(std::fs::read_dir(data.join("spill")).unwrap().count(), 0);
    let m = get(&gw.addr, "/metrics", None).text();
    assert!(m.contains("downshift_log_records_lost_total 0"));
}

#[test]
fn embeddings_models_health_and_key_rotation() {
    let dir = tempdir();
    let mock = mock(&[]);
    let gw = serve(dir.path(), &mock.addr, &["--no-auth"]);
    let body = r#"{"model":"text-embedding-3-small","input":["a","b"]}"#;
    let r = post_json(&gw.addr, "/v1/embeddings", None, body, &[]);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body,
        post_json(&mock.addr, "/v1/embeddings", None, body, &[]).body
    );
    assert_eq!(r.json()["data"].as_array().unwrap().len(), 2);
    let models = get(&gw.addr, "/v1/models", None);
    assert_eq!(models.status, 200);
    assert_eq!(models.json()["data"][0]["id"], "mock");
    assert_eq!(get(&gw.addr, "/healthz", None).json()["status"], "ok");

    let d = dir.path().to_str().unwrap();
    let before = post_json(
        &gw.addr,
        CHAT,
        None,
        r#"{"model":"m","messages":[{"role":"user","content":"old key"}]}"#,
        &[],
    );
    assert_eq!(before.status, 200);
    wait_calls(dir.path(), 2);
    let info: Value =
        serde_json::from_str(&ok(&["keys", "rotate-data-key", "--json", "--data-dir", d])).unwrap();
    assert_eq!(info["data_keys"].as_array().unwrap().len(), 2);
    // The running gateway picks the new key up within a few seconds.
    std::thread::sleep(Duration::from_millis(3000));
    let after = post_json(
        &gw.addr,
        CHAT,
        None,
        r#"{"model":"m","messages":[{"role":"user","content":"new key"}]}"#,
        &[],
    );
    assert_eq!(after.status, 200);
    gw.stop();
    let db = rusqlite::Connection::open(dir.path().join("downshift.sqlite")).unwrap();
    let key_ids: Vec<String> = db
        .prepare("SELECT DISTINCT key_id FROM calls")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(key_ids.len(), 2, "new records use the new key");
    // Every record is still readable.
    let export = ok(&["export", "--data-dir", d]);
    assert!(export.contains("old key") && export.contains("new key"));
}

#[test]
fn model_map_routes_to_named_upstreams_and_refuses_unknown_models() {
    let dir = tempdir();
    let a = mock(&[]);
    let b = mock(&[]);
    let cfg = dir.path().join("downshift.toml");
    std::fs::write(
        &cfg,
        format!(
            "[server]\nrequire_auth = false\n[[upstreams]]\nname = \"a\"\nbase_url = \"http://{}\"\n[[upstreams]]\nname = \"b\"\nbase_url = \"http://{}/v1\"\n[routing.models]\n\"gpt-4o\" = \"a\"\n\"llama-*\" = \"b\"\n",
            a.addr, b.addr
        ),
    )
    .unwrap();
    let data = dir.path().join("d");
    let gw = Proc::start(
        &[
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    let ask = |model: &str| {
        post_json(
            &gw.addr,
            CHAT,
            None,
            &format!(r#"{{"model":"{model}","messages":[]}}"#),
            &[],
        )
    };
    assert_eq!(ask("gpt-4o").header("x-downshift-route"), Some("llm:a"));
    assert_eq!(
        ask("llama-3.1-8b").header("x-downshift-route"),
        Some("llm:b")
    );
    let r = ask("mystery-model");
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["error"]["code"], "model_not_found");
    assert_eq!(get(&a.addr, "/mock/stats", None).json()["requests"], 1);
    assert_eq!(get(&b.addr, "/mock/stats", None).json()["requests"], 1);
    let models = get(&gw.addr, "/v1/models", None).json();
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gpt-4o"]);
}

#[test]
fn bad_configs_and_arguments_are_clear_errors() {
    let dir = tempdir();
    let cfg = dir.path().join("bad.toml");
    std::fs::write(&cfg, "[server]\nlisten_address = 3\n").unwrap();
    let (success, _, err) = run(&["serve", "--config", cfg.to_str().unwrap()], &[]);
    assert!(!success);
    assert!(
        err.contains("invalid config file") && err.contains("listen_address"),
        "{err}"
    );
    let (success, _, err) = run(&["serve", "--config", "/nonexistent.toml"], &[]);
    assert!(!success && err.contains("cannot read config file"), "{err}");
    let d = dir.path().join("d");
    let (success, _, err) = run(
        &[
            "serve",
            "--data-dir",
            d.to_str().unwrap(),
            "--upstream",
            "ftp://x",
        ],
        &[],
    );
    assert!(!success && err.contains("http:// or https://"), "{err}");
    let (success, _, err) = run(
        &[
            "serve",
            "--data-dir",
            d.to_str().unwrap(),
            "--upstream",
            "http://127.0.0.1:9",
            "--upstream-key-env",
            "DOWNSHIFT_SURELY_UNSET",
        ],
        &[],
    );
    assert!(!success && err.contains("DOWNSHIFT_SURELY_UNSET"), "{err}");
    let (success, _, err) = run(&["mock-llm", "--fail-rate", "2"], &[]);
    assert!(!success && err.contains("between 0 and 1"), "{err}");
    let (success, _, err) = run(
        &["calls", "show", "nope", "--data-dir", d.to_str().unwrap()],
        &[],
    );
    assert!(
        !success && err.contains("no call with id or id prefix 'nope'"),
        "{err}"
    );
}

#[test]
fn mock_fault_injection_is_seeded() {
    let body = r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#;
    let statuses = |seed: &str| -> Vec<u16> {
        let m = mock(&["--fail-rate", "0.5", "--seed", seed]);
        (0..30)
            .map(|_| post_json(&m.addr, CHAT, None, body, &[]).status)
            .collect()
    };
    let first = statuses("7");
    assert_eq!(first, statuses("7"), "the same seed gives the same faults");
    let fails = first.iter().filter(|s| **s == 500).count();
    assert!((5..=25).contains(&fails), "{fails} of 30 failed");
    assert!(first.iter().all(|s| *s == 200 || *s == 500));
}

/// The durability contract: a call whose response left the gateway is in the log even when
/// the gateway is killed with SIGKILL right after. Several clients send a bounded burst; the
/// gateway is killed part way; after a restart every call id answered with a 200 is stored.
#[test]
fn answered_calls_survive_kill_9_mid_burst() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    let mock = mock(&[]);
    for trial in 0..2 {
        let dir = tempdir();
        let data = dir.path().join("d");
        let gw = serve(&data, &mock.addr, &["--no-auth"]);
        let addr = gw.addr.clone();
        let answered = Arc::new(Mutex::new(Vec::<String>::new()));
        let ok = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let clients: Vec<_> = (0..8)
            .map(|c| {
                let (addr, answered, ok, stop) =
                    (addr.clone(), answered.clone(), ok.clone(), stop.clone());
                std::thread::spawn(move || {
                    for i in 0..400 {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let body = format!(
                            r#"{{"model":"m","messages":[{{"role":"user","content":"trial {trial} client {c} call {i}"}}]}}"#
                        );
                        match try_post(&addr, &body) {
                            Some((200, Some(id))) => {
                                answered.lock().unwrap().push(id);
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Some((status, _)) => panic!("status {status} before the kill"),
                            None => break,
                        }
                    }
                })
            })
            .collect();
        // Kill once a few hundred calls are answered, while requests are in flight.
        let deadline = Instant::now() + Duration::from_secs(20);
        while ok.load(Ordering::Relaxed) < 300 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        let mut gw = gw;
        gw.child.kill().unwrap();
        gw.child.wait().unwrap();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.join().unwrap();
        }
        let answered = answered.lock().unwrap().clone();
        assert!(answered.len() >= 300, "only {} answered", answered.len());
        // The restart replays the journal; a clean stop lets the writer finish.
        let again = serve(&data, &mock.addr, &["--no-auth"]);
        again.stop();
        let stored: std::collections::HashSet<String> = calls(&data, &[])
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_owned())
            .collect();
        let missing: Vec<&String> = answered.iter().filter(|id| !stored.contains(*id)).collect();
        assert!(
            missing.is_empty(),
            "trial {trial}: {} of {} answered calls missing after kill -9: {:?}",
            missing.len(),
            answered.len(),
            &missing[..missing.len().min(5)]
        );
        let journal = std::fs::read_dir(data.join("journal"))
            .map(|d| {
                d.filter(|e| {
                    e.as_ref()
                        .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
                })
                .count()
            })
            .unwrap_or(0);
        assert_eq!(journal, 0, "journal segments left after a clean stop");
    }
}

/// Starts `serve --no-auth` with `toml` as its config file.
fn serve_with(dir: &std::path::Path, upstream: &str, toml: &str) -> (Proc, std::path::PathBuf) {
    let cfg = dir.join("downshift.toml");
    std::fs::write(&cfg, toml).unwrap();
    let data = dir.join("d");
    let url = format!("http://{upstream}");
    let gw = Proc::start(
        &[
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--upstream",
            &url,
            "--no-auth",
        ],
        &[],
    );
    (gw, data)
}

/// Waits until the server closes `s` (EOF or reset); how long that took.
fn closed_after(s: &mut std::net::TcpStream, limit: Duration) -> Option<Duration> {
    let t = Instant::now();
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return Some(t.elapsed()),
            Ok(_) => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None;
            }
            Err(_) => return Some(t.elapsed()),
        }
    }
}

const SMALL: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

#[test]
fn idle_and_half_sent_connections_are_closed_and_the_cap_makes_room() {
    use std::io::Write;
    let dir = tempdir();
    let mock = mock(&[]);
    let (gw, _) = serve_with(
        dir.path(),
        &mock.addr,
        "[server]\nheader_read_timeout_ms = 400\nidle_timeout_ms = 700\nbody_read_timeout_ms = 500\nmax_connections = 60\n",
    );
    let t0 = Instant::now();
    // 30 connections that send nothing, 20 that stop in the middle of the head.
    let mut idle: Vec<std::net::TcpStream> = (0..30)
        .map(|_| std::net::TcpStream::connect(&gw.addr).unwrap())
        .collect();
    let mut half: Vec<std::net::TcpStream> = (0..20)
        .map(|_| {
            let mut s = std::net::TcpStream::connect(&gw.addr).unwrap();
            s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .unwrap();
            s
        })
        .collect();
    for s in half.iter_mut() {
        let took = closed_after(s, Duration::from_secs(5)).expect("half-sent head left open");
        assert!(
            t0.elapsed() < Duration::from_millis(2500),
            "closed after {took:?}"
        );
    }
    for s in idle.iter_mut() {
        closed_after(s, Duration::from_secs(5)).expect("idle connection left open");
    }
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    // A kept-alive connection is closed once idle past the limit, not before.
    let mut ka = std::net::TcpStream::connect(&gw.addr).unwrap();
    write!(
        ka,
        "POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{SMALL}",
        SMALL.len()
    )
    .unwrap();
    let mut buf = [0u8; 4096];
    ka.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let n = ka.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let took = closed_after(&mut ka, Duration::from_secs(5)).expect("kept-alive left open");
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // A body that stops arriving gets a 408 with an OpenAI-style body.
    let mut slow = std::net::TcpStream::connect(&gw.addr).unwrap();
    write!(
        slow,
        "POST {CHAT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"model\""
    )
    .unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut raw = Vec::new();
    let _ = slow.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("request_timeout"), "{text}");
    // The cap is full of idle connections: a real request is still answered at once.
    let _fill: Vec<std::net::TcpStream> = (0..60)
        .map(|_| std::net::TcpStream::connect(&gw.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    let resp = post_json(&gw.addr, CHAT, None, SMALL, &[]);
    assert_eq!(resp.status, 200);
    assert!(
        t.elapsed() < Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    gw.stop();
}

#[test]
fn a_held_write_lock_does_not_stall_the_proxy_and_fails_only_the_audited_read() {
    let dir = tempdir();
    let mock = mock(&[]);
    let (gw, data) = serve_with(
        dir.path(),
        &mock.addr,
        "[store]\nrequest_busy_timeout_ms = 300\n",
    );
    let first = post_json(&gw.addr, CHAT, None, SMALL, &[]);
    assert_eq!(first.status, 200);
    let id = first.header("x-downshift-call-id").unwrap().to_owned();
    wait_calls(&data, 1);
    // Another process takes the database's write lock and keeps it for 3 s.
    let db = rusqlite::Connection::open(data.join("downshift.sqlite")).unwrap();
    db.execute_batch("BEGIN IMMEDIATE").unwrap();
    let held = Instant::now();
    let admin = {
        let addr = gw.addr.clone();
        let id = id.clone();
        std::thread::spawn(move || {
            let mut statuses = Vec::new();
            while held.elapsed() < Duration::from_millis(2500) {
                let r = get(&addr, &format!("/admin/calls/{id}"), None);
                if r.status != 200 {
                    assert_eq!(
                        r.json()["error"]["code"],
                        "store_unavailable",
                        "{}",
                        r.text()
                    );
                }
                statuses.push(r.status);
            }
            statuses
        })
    };
    let mut worst = Duration::ZERO;
    let mut n = 0;
    while held.elapsed() < Duration::from_secs(3) {
        let t = Instant::now();
        let r = post_json(&gw.addr, CHAT, None, SMALL, &[]);
        assert_eq!(r.status, 200);
        worst = worst.max(t.elapsed());
        n += 1;
    }
    let statuses = admin.join().unwrap();
    db.execute_batch("COMMIT").unwrap();
    drop(db);
    assert!(n > 20, "only {n} requests in 3 s");
    assert!(
        worst < Duration::from_millis(500),
        "max /v1 latency {worst:?}"
    );
    assert!(statuses.contains(&503), "{statuses:?}");
    // Everything answered during the lock is stored once it is released.
    gw.stop();
    assert_eq!(calls(&data, &[]).len(), n + 1);
}

#[test]
fn readiness_follows_the_upstream_and_files_are_private() {
    let dir = tempdir();
    let mut mock = mock(&[]);
    let (gw, data) = serve_with(dir.path(), &mock.addr, "");
    assert_eq!(post_json(&gw.addr, CHAT, None, SMALL, &[]).status, 200);
    let r = get(&gw.addr, "/readyz", None);
    assert_eq!(r.status, 200, "{}", r.text());
    // A non-ASCII agent header is refused clearly, like non-ASCII tags.
    {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(&gw.addr).unwrap();
        let mut req = format!(
            "POST {CHAT} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\nx-downshift-agent: caf",
            SMALL.len()
        )
        .into_bytes();
        req.extend_from_slice(b"\xe9\r\n\r\n");
        req.extend_from_slice(SMALL.as_bytes());
        s.write_all(&req).unwrap();
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with("HTTP/1.1 400"), "{text}");
        assert!(text.contains("x-downshift-agent must be ASCII"), "{text}");
    }
    // Heads hyper refuses by itself get OpenAI-style bodies too.
    for (head, status, code) in [
        ("GARBAGE\r\n\r\n".to_owned(), "400", "invalid_request"),
        (
            format!(
                "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
                (0..150)
                    .map(|i| format!("x-h{i}: v\r\n"))
                    .collect::<String>()
            ),
            "431",
            "request_header_fields_too_large",
        ),
    ] {
        use std::io::Write;
        let mut s = std::net::TcpStream::connect(&gw.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw);
        assert!(text.starts_with(&format!("HTTP/1.1 {status}")), "{text}");
        let body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap_or(""))
            .unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(body["error"]["code"], code);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        for f in [
            "downshift.sqlite",
            "downshift.sqlite-wal",
            "downshift.sqlite-shm",
            "keys.json",
        ] {
            let p = data.join(f);
            if p.exists() {
                assert_eq!(mode(&p), 0o600, "{f}");
            }
        }
        assert!(data.join("downshift.sqlite-wal").exists());
        let journal = data.join("journal");
        if journal.exists() {
            assert_eq!(mode(&journal), 0o700);
        }
    }
    // The upstream goes away: not ready (within the probe's cache), yet still alive.
    mock.child.kill().unwrap();
    mock.child.wait().unwrap();
    let t = Instant::now();
    let mut r = get(&gw.addr, "/readyz", None);
    while r.status == 200 && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(100));
        r = get(&gw.addr, "/readyz", None);
    }
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "not_ready");
    assert!(r.text().contains("default"), "{}", r.text());
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(get(&gw.addr, "/healthz", None).status, 200);
    gw.stop();
}
