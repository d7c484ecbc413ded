//! End-to-end: `downshift generate`, `downshift tokenize` and the gateway's `local/<name>`
//! models, on the packaged SmolLM2-135M-Instruct (Q4_1 GGUF from `scripts/fetch.sh`).
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

mod support;

use std::io::Read;
use std::path::PathBuf;

use downshift_api::StreamAssembler;
use serde_json::{Value, json};
use support::*;

const CHAT: &str = "/v1/chat/completions";

fn model() -> PathBuf {
    let p = repo_root().join("models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "{} is missing: run scripts/fetch.sh smollm2",
        p.display()
    );
    p
}

fn model_arg() -> String {
    model().to_str().unwrap().to_owned()
}

fn weather_tools() -> Value {
    json!([{"type": "function", "function": {
        "name": "get_weather", "description": "Current weather in a city",
        "parameters": {"type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"]}}}])
}

fn run_json(args: &[&str]) -> Value {
    let out = ok(args);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

#[test]
fn generate_answers_a_chat_prompt_and_reports_its_numbers() {
    let dir = tempdir();
    let msgs = dir.path().join("messages.json");
    std::fs::write(
        &msgs,
        json!([{"role": "user", "content": "Give me three tips for staying healthy."}]).to_string(),
    )
    .unwrap();
    let m = model_arg();
    let v = run_json(&[
        "generate",
        "--model",
        &m,
        "--messages",
        msgs.to_str().unwrap(),
        "--max-tokens",
        "48",
        "--json",
    ]);
    let text = v["text"].as_str().unwrap();
    assert!(
        text.contains("1.") && (text.contains("water") || text.contains("hydrat")),
        "not a coherent answer: {text:?}"
    );
    let ids = v["token_ids"].as_array().unwrap();
    assert_eq!(v["completion_tokens"].as_u64().unwrap() as usize, ids.len());
    assert!(ids.len() <= 48 && !ids.is_empty());
    assert!(
        v["prompt_tokens"].as_u64().unwrap() > 10,
        "chat template applied: {v}"
    );
    assert!(v["prefill_tokens_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["decode_tokens_per_s"].as_f64().unwrap() > 0.0);

    // Raw prompt: no template, and the streamed text is what --json reports.
    let j = run_json(&[
        "generate",
        "--model",
        &m,
        "--prompt",
        "The capital of France is",
        "--max-tokens",
        "6",
        "--json",
    ]);
    assert_eq!(j["prompt_tokens"], 5, "{j}");
    let streamed = ok(&[
        "generate",
        "--model",
        &m,
        "--prompt",
        "The capital of France is",
        "--max-tokens",
        "6",
    ]);
    assert_eq!(streamed.trim_end_matches('\n'), j["text"].as_str().unwrap());
    assert!(j["text"].as_str().unwrap().contains("Paris"), "{j}");
}

#[test]
fn tokenize_matches_llama_cpp_on_the_fixture() {
    let fixture = repo_root().join("crates/slm/tests/fixtures/tokenizer_smollm2.jsonl");
    let rows: Vec<Value> = std::fs::read_to_string(&fixture)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(rows.len() >= 200);
    // Every text as a JSON-string line, so newlines and the like survive.
    let input: String = rows
        .iter()
        .map(|r| {
            format!(
                "{}\n",
                serde_json::to_string(r["text"].as_str().unwrap()).unwrap()
            )
        })
        .collect();
    let mut child = std::process::Command::new(BIN)
        .args(["tokenize", "--model", &model_arg()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(input.as_bytes()).unwrap();
    });
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    writer.join().unwrap();
    assert!(child.wait().unwrap().success());
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), rows.len());
    for (r, line) in rows.iter().zip(lines) {
        let got: Value = serde_json::from_str(line).unwrap();
        assert_eq!(got, r["ids"], "text {:?}", r["text"]);
    }
}

#[test]
fn generate_tool_calls_and_schemas_are_forced_valid() {
    let dir = tempdir();
    let msgs = dir.path().join("m.json");
    std::fs::write(
        &msgs,
        json!({"messages": [{"role": "user", "content": "What's the weather like in Lisbon?"}], "tools": weather_tools()}).to_string(),
    )
    .unwrap();
    let m = model_arg();
    for seed in ["1", "2", "3"] {
        let v = run_json(&[
            "generate",
            "--model",
            &m,
            "--messages",
            msgs.to_str().unwrap(),
            "--tool-choice",
            "required",
            "--temperature",
            "1.0",
            "--seed",
            seed,
            "--max-tokens",
            "80",
            "--json",
        ]);
        let calls = v["tool_calls"].as_array().unwrap_or_else(|| panic!("{v}"));
        assert_eq!(calls.len(), 1, "{v}");
        assert_eq!(calls[0]["name"], "get_weather");
        let args: Value = serde_json::from_str(calls[0]["arguments"].as_str().unwrap()).unwrap();
        assert!(args["city"].is_string(), "{args}");
        assert!(
            ["celsius", "fahrenheit"].contains(&args["unit"].as_str().unwrap()),
            "{args}"
        );
    }

    // SmolLM2's template has no place for tools: they are described in a system message
    // instead of being dropped.
    let with = run_json(&[
        "generate",
        "--model",
        &m,
        "--messages",
        msgs.to_str().unwrap(),
        "--max-tokens",
        "1",
        "--json",
    ]);
    let plain = dir.path().join("plain.json");
    std::fs::write(
        &plain,
        json!([{"role": "user", "content": "What's the weather like in Lisbon?"}]).to_string(),
    )
    .unwrap();
    let without = run_json(&[
        "generate",
        "--model",
        &m,
        "--messages",
        plain.to_str().unwrap(),
        "--max-tokens",
        "1",
        "--json",
    ]);
    assert!(
        with["prompt_tokens"].as_u64().unwrap() > without["prompt_tokens"].as_u64().unwrap() + 40,
        "tools missing from the prompt: {with} vs {without}"
    );

    let schema = dir.path().join("schema.json");
    std::fs::write(
        &schema,
        json!({"type": "object", "properties": {"answer": {"type": "integer"}}, "required": ["answer"], "additionalProperties": false}).to_string(),
    )
    .unwrap();
    let v = run_json(&[
        "generate",
        "--model",
        &m,
        "--prompt",
        "Two plus two, as JSON:",
        "--schema",
        schema.to_str().unwrap(),
        "--max-tokens",
        "30",
        "--json",
    ]);
    let out: Value =
        serde_json::from_str(v["text"].as_str().unwrap()).unwrap_or_else(|e| panic!("{e}: {v}"));
    assert!(out["answer"].is_i64(), "{out}");
    assert_eq!(out.as_object().unwrap().len(), 1);
}

#[test]
fn generate_refuses_bad_input_clearly() {
    let dir = tempdir();
    let m = model_arg();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    // `downshift generate --model MODEL ARGS…` must fail with `needle` in its message.
    let expect_err = |model: &str, args: &[&str], needle: &str| {
        let mut all = vec!["generate", "--model", model];
        all.extend_from_slice(args);
        let (success, _out, err) = run(&all, &[]);
        assert!(!success, "{all:?} should fail");
        assert!(
            err.contains(needle),
            "{all:?}: expected {needle:?} in {err:?}"
        );
        assert!(!err.contains("panicked"), "{err}");
    };
    expect_err("no/such-model", &["--prompt", "x"], "not found");
    std::fs::write(path("bad.gguf"), b"this is not a model").unwrap();
    expect_err(&path("bad.gguf"), &["--prompt", "x"], "not a GGUF file");
    let bytes = std::fs::read(model()).unwrap();
    std::fs::write(path("cut.gguf"), &bytes[..bytes.len() / 3]).unwrap();
    expect_err(&path("cut.gguf"), &["--prompt", "x"], "truncated");
    std::fs::write(path("s.json"), r#"{"type": "no-such-type"}"#).unwrap();
    expect_err(
        &m,
        &["--prompt", "x", "--schema", &path("s.json")],
        "constraint",
    );
    std::fs::write(path("m.json"), "[{not json").unwrap();
    expect_err(&m, &["--messages", &path("m.json")], "not valid JSON");
    std::fs::write(path("m.json"), r#"[{"role":"user","content":"hi"}]"#).unwrap();
    let required = ["--messages", &path("m.json"), "--tool-choice", "required"];
    expect_err(&m, &required, "needs tools");
    let long = "word ".repeat(9000);
    expect_err(&m, &["--prompt", &long, "--max-tokens", "4"], "context");
    std::fs::create_dir(path("adapter")).unwrap();
    expect_err(
        &m,
        &["--prompt", "x", "--adapter", &path("adapter")],
        "adapter",
    );
}

fn serve_local(data: &std::path::Path, upstream: Option<&str>) -> Proc {
    let d = data.to_str().unwrap().to_owned();
    let local = format!("smol={}", model_arg());
    let url = upstream.map(|u| format!("http://{u}"));
    let mut args = vec![
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--data-dir",
        &d,
        "--no-auth",
        "--local",
        &local,
    ];
    if let Some(u) = &url {
        args.extend(["--upstream", u.as_str()]);
    }
    Proc::start(&args, &[])
}

#[test]
fn gateway_serves_local_models_in_openai_format() {
    let mock = mock(&[]);
    let dir = tempdir();
    let gw = serve_local(dir.path(), Some(&mock.addr));
    let ask = json!({"model": "local/smol", "temperature": 0, "max_tokens": 24,
        "messages": [{"role": "user", "content": "Give me three tips for staying healthy."}]});

    let r = post_json(&gw.addr, CHAT, None, &ask.to_string(), &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-downshift-route"), Some("local:smol"));
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "local/smol");
    let text = v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(text.contains("1."), "{text}");
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 24);

    // Streaming gives the same text, assembled the way OpenAI clients do.
    let mut s = ask.clone();
    s["stream"] = json!(true);
    s["stream_options"] = json!({"include_usage": true});
    let r = post_json(&gw.addr, CHAT, None, &s.to_string(), &[]);
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut asm = StreamAssembler::new();
    asm.feed(&r.body);
    assert!(asm.is_complete(), "stream ended with [DONE]");
    let done = asm.finish();
    assert_eq!(
        done["choices"][0]["message"]["content"].as_str().unwrap(),
        text
    );
    assert_eq!(done["usage"]["completion_tokens"], 24);

    // Logprobs for the router's confidence.
    let mut l = ask.clone();
    l["max_tokens"] = json!(5);
    l["logprobs"] = json!(true);
    l["top_logprobs"] = json!(3);
    let v = post_json(&gw.addr, CHAT, None, &l.to_string(), &[]).json();
    let lp = v["choices"][0]["logprobs"]["content"].as_array().unwrap();
    assert_eq!(lp.len(), 5);
    for e in lp {
        assert!(e["logprob"].as_f64().unwrap() <= 0.0);
        assert_eq!(e["top_logprobs"].as_array().unwrap().len(), 3);
    }

    // A forced tool call comes back as OpenAI tool_calls, streamed too.
    let t = json!({"model": "local/smol", "tools": weather_tools(), "tool_choice": "required", "max_tokens": 80, "temperature": 0,
        "messages": [{"role": "user", "content": "Weather in Oslo, please."}]});
    let v = post_json(&gw.addr, CHAT, None, &t.to_string(), &[]).json();
    let msg = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    assert!(msg["content"].is_null());
    assert_eq!(msg["tool_calls"][0]["type"], "function");
    assert_eq!(msg["tool_calls"][0]["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(
        msg["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    assert!(args["city"].is_string());
    let mut ts = t.clone();
    ts["stream"] = json!(true);
    let r = post_json(&gw.addr, CHAT, None, &ts.to_string(), &[]);
    let mut asm = StreamAssembler::new();
    asm.feed(&r.body);
    let done = asm.finish();
    assert_eq!(
        done["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "get_weather",
        "{done}"
    );
    assert_eq!(done["choices"][0]["finish_reason"], "tool_calls");

    // response_format json_schema.
    // (greedy: a sampled string may spend its tokens on escapes and end at max_tokens)
    let j = json!({"model": "local/smol", "max_tokens": 40, "temperature": 0,
        "messages": [{"role": "user", "content": "Name a colour."}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema":
            {"type": "object", "properties": {"colour": {"type": "string", "maxLength": 12}}, "required": ["colour"]}}}});
    let v = post_json(&gw.addr, CHAT, None, &j.to_string(), &[]).json();
    let out: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(out["colour"].is_string(), "{out}");

    // Other models still go to the upstream; /v1/models lists the local one too.
    let up = post_json(
        &gw.addr,
        CHAT,
        None,
        r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
        &[],
    );
    assert_eq!(up.status, 200);
    assert_eq!(up.header("x-downshift-route"), Some("llm:default"));
    let models = get(&gw.addr, "/v1/models", None).json();
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "local/smol"),
        "{models}"
    );

    // Every call is logged, with its token counts.
    let logged = wait_calls(dir.path(), 7);
    let local: Vec<&Value> = logged
        .iter()
        .filter(|c| c["model"] == "local/smol")
        .collect();
    assert_eq!(local.len(), 6, "{logged:?}");
    assert!(
        local
            .iter()
            .all(|c| c["status"] == "ok" && c["upstream"] == "local:smol"),
        "{local:?}"
    );
    gw.stop();
}

#[test]
fn gateway_local_errors_are_openai_shaped() {
    let dir = tempdir();
    let gw = serve_local(dir.path(), None);
    let check = |body: Value, status: u16, code: &str| {
        let r = post_json(&gw.addr, CHAT, None, &body.to_string(), &[]);
        assert_eq!(r.status, status, "{body}: {}", r.text());
        let v = r.json();
        assert_eq!(v["error"]["code"], code, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().len() > 10);
    };
    let user = json!([{"role": "user", "content": "hi"}]);
    check(
        json!({"model": "local/nope", "messages": user}),
        404,
        "model_not_found",
    );
    check(
        json!({"model": "local/smol:no-adapter", "messages": user}),
        404,
        "model_not_found",
    );
    check(json!({"model": "local/smol"}), 400, "invalid_request");
    check(
        json!({"model": "local/smol", "messages": user, "n": 2}),
        400,
        "invalid_request",
    );
    check(
        json!({"model": "local/smol", "messages": user, "tool_choice": "required"}),
        400,
        "invalid_request",
    );
    check(
        json!({"model": "local/smol", "messages": user, "temperature": 7}),
        400,
        "invalid_request",
    );
    check(
        json!({"model": "local/smol", "messages": user,
        "response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "nonsense"}}}}),
        400,
        "invalid_request",
    );
    check(
        json!({"model": "local/smol", "messages": [{"role": "user", "content": "word ".repeat(9000)}]}),
        400,
        "context_length_exceeded",
    );
    // Only local models are configured: anything else has no upstream.
    check(
        json!({"model": "gpt-4o", "messages": user}),
        404,
        "model_not_found",
    );

    // A client that leaves mid-stream stops the generation; the call is logged as interrupted.
    let body = json!({"model": "local/smol", "stream": true, "max_tokens": 400, "temperature": 0,
        "messages": [{"role": "user", "content": "Write a long story about a ship."}]})
    .to_string();
    let mut s = send(
        &gw.addr,
        "POST",
        CHAT,
        &[("Content-Type", "application/json")],
        body.as_bytes(),
    );
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    assert!(n > 0);
    drop(s);
    let logged = wait_calls(dir.path(), 1);
    let mut statuses: Vec<String> = Vec::new();
    for _ in 0..100 {
        statuses = calls(dir.path(), &[])
            .iter()
            .map(|c| c["status"].as_str().unwrap().to_owned())
            .collect();
        if statuses.iter().any(|s| s == "interrupted") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        statuses.iter().any(|s| s == "interrupted"),
        "{statuses:?} {logged:?}"
    );
    // And the model is free again right away.
    let r = post_json(
        &gw.addr,
        CHAT,
        None,
        &json!({"model": "local/smol", "max_tokens": 2, "messages": user}).to_string(),
        &[],
    );
    assert_eq!(r.status, 200);
    gw.stop();
}
