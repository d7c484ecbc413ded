//! End-to-end routing (S6): the real gateway classifies BFCL trading calls into their
//! discovered task and serves them by the task's policy. Specialists here are remote
//! OpenAI-compatible endpoints played by the real mock upstream: one replaying the LLM's own
//! answers (a good specialist), one calling a tool the request never offered, one answering
//! with text where the LLM called tools (a bad specialist that must be demoted).
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::*;

/// The BFCL multi-turn trading calls, imported and discovered: (data dir, task id, records).
fn trading(dir: &Path) -> (String, Vec<Value>) {
    let task = trading_task_in(dir);
    let records = trading_lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (task, records)
}

/// Calls whose recorded answer is a tool call.
fn tool_call_records(records: &[Value]) -> Vec<&Value> {
    records
        .iter()
        .filter(|r| {
            r["response"]["choices"][0]["message"]["tool_calls"]
                .as_array()
                .is_some_and(|c| !c.is_empty())
        })
        .collect()
}

fn write_config(dir: &Path, specialists: &[(&str, &str)]) -> String {
    let mut text = String::from("[route]\nreload_ms = 100\n\n[loop]\nmax_trainings = 0\n");
    for (name, addr) in specialists {
        text.push_str(&format!(
            "\n[[specialists]]\nname = \"{name}\"\nbase_url = \"http://{addr}\"\nmodel = \"{name}-model\"\n"
        ));
    }
    let p = dir.join("downshift.toml");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_owned()
}

fn gateway(d: &str, cfg: &str, teacher: &str) -> Proc {
    let url = format!("http://{teacher}");
    Proc::start(
        &[
            "serve",
            "--config",
            cfg,
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            d,
            "--upstream",
            &url,
            "--no-auth",
        ],
        &[],
    )
}

fn chat(addr: &str, request: &Value) -> Resp {
    post_json(
        addr,
        "/v1/chat/completions",
        None,
        &request.to_string(),
        &[],
    )
}

fn promote(d: &str, cfg: &str, task: &str, args: &[&str]) {
    let mut a = vec!["promote", task, "--data-dir", d, "--config", cfg];
    a.extend_from_slice(args);
    ok(&a);
}

fn policies(d: &str) -> Value {
    serde_json::from_str(&ok(&[
        "policies",
        "--json",
        "--events",
        "50",
        "--data-dir",
        d,
    ]))
    .unwrap()
}

/// Polls until `f` holds (the gateway reloads policies every 100 ms; measurements are
/// written in the background).
fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn metric(addr: &str, line_prefix: &str) -> Option<f64> {
    get(addr, "/metrics", None)
        .text()
        .lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Tool calls as comparable (name, arguments JSON) pairs.
fn calls_of(message: &Value) -> Vec<(String, Value)> {
    message["tool_calls"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| {
                    (
                        c["function"]["name"].as_str().unwrap().to_owned(),
                        serde_json::from_str(c["function"]["arguments"].as_str().unwrap()).unwrap(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn shadow_measures_agreement_and_on_serves_the_task_by_its_specialist() {
    let dir = tempdir();
    let d = dir.path().to_str().unwrap();
    let (task, records) = trading(dir.path());
    let replay = dir.path().join("calls.jsonl");
    let replay = replay.to_str().unwrap();
    let teacher = mock(&["--replay", replay]);
    let good = mock(&["--replay", replay]);
    let cfg = write_config(dir.path(), &[("good", &good.addr)]);
    let gw = gateway(d, &cfg, &teacher.addr);
    let reqs = tool_call_records(&records);
    assert!(reqs.len() >= 8);

    // No policy yet: the LLM answers, as a plain proxy.
    let r = chat(&gw.addr, &reqs[0]["request"]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-downshift-route"), Some("llm:default"));

    // A promotion needs a specialist; an unknown task is refused.
    let (okay, _, err) = run(
        &[
            "promote",
            &task,
            "--mode",
            "on",
            "--data-dir",
            d,
            "--config",
            &cfg,
        ],
        &[],
    );
    assert!(!okay && err.contains("has no specialist"), "{err}");
    let (okay, _, err) = run(
        &[
            "promote",
            "task_nope",
            "--mode",
            "shadow",
            "--specialist",
            "good",
            "--data-dir",
            d,
            "--config",
            &cfg,
        ],
        &[],
    );
    assert!(!okay && err.contains("no discovered task"), "{err}");

    // Shadow: the LLM answers; the specialist runs alongside and agrees every time.
    promote(
        d,
        &cfg,
        &task,
        &["--mode", "shadow", "--specialist", "good", "--window", "5"],
    );
    // The tool-call requests the router places in the task, once the gateway has the policy
    // (discovery may put some of the trading calls into other tasks).
    let all = reqs;
    let mut reqs: Vec<&Value> = Vec::new();
    eventually("the shadow policy", || {
        reqs = all
            .iter()
            .copied()
            .filter(|r| {
                chat(&gw.addr, &r["request"]).header("x-downshift-task") == Some(task.as_str())
            })
            .collect();
        reqs.len() >= 8
    });
    for r in &reqs[2..6] {
        let resp = chat(&gw.addr, &r["request"]);
        assert_eq!(resp.header("x-downshift-route"), Some("llm:default"));
    }
    // A comparison is skipped (and counted) when several are already running; on a busy
    // machine keep the traffic coming until five are stored.
    let mut k = 0;
    eventually("shadow agreement measurements", || {
        let p = policies(d);
        if p["agreement"][&task]["measurements"].as_u64() >= Some(5) {
            return true;
        }
        chat(&gw.addr, &reqs[2 + k % 4]["request"]);
        k += 1;
        false
    });
    let p = policies(d);
    assert_eq!(p["agreement"][&task]["mean"], 1.0, "{p}");
    // The live counters agree: every measurement so far was 1 (one snapshot of /metrics).
    let text = get(&gw.addr, "/metrics", None).text();
    let read = |name: String| {
        text.lines()
            .find(|l| l.starts_with(&name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let count = read(format!("downshift_agreement_count{{task=\"{task}\"}}")).unwrap();
    assert!(count >= 5.0);
    assert_eq!(
        Some(count),
        read(format!("downshift_agreement_sum{{task=\"{task}\"}}"))
    );

    // `loop` sees a full window of agreement at the threshold and promotes shadow → on; the
    // other tasks are too small, or wait for a training budget (none in this config).
    let cycle: Value =
        serde_json::from_str(&ok(&["loop", "--json", "--data-dir", d, "--config", &cfg])).unwrap();
    let actions = cycle["actions"].as_array().unwrap();
    let mine = actions.iter().find(|x| x["task"] == task.as_str()).unwrap();
    assert_eq!(mine["action"], "promote", "{cycle}");
    assert!(
        mine["why"].as_str().unwrap().contains("shadow → on"),
        "{cycle}"
    );
    assert!(
        actions.iter().all(|x| x["task"] == task.as_str()
            || matches!(x["action"].as_str(), Some("llm" | "train-later"))),
        "{cycle}"
    );
    assert_eq!(policies(d)["policies"][0]["mode"], "on");

    // On: the specialist answers, in OpenAI's format, tool calls included.
    let want = &reqs[6];
    let mut served = None;
    eventually("the specialist to serve", || {
        let r = chat(&gw.addr, &want["request"]);
        let yes = r.header("x-downshift-route") == Some(&format!("specialist:{task}"));
        if yes {
            served = Some(r);
        }
        yes
    });
    let served = served.unwrap();
    assert_eq!(served.status, 200);
    let body = served.json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        calls_of(&body["choices"][0]["message"]),
        calls_of(&want["response"]["choices"][0]["message"])
    );

    // Streamed: the same answer as server-sent events.
    let mut streamed = want["request"].clone();
    streamed["stream"] = json!(true);
    let r = chat(&gw.addr, &streamed);
    assert_eq!(
        r.header("x-downshift-route"),
        Some(format!("specialist:{task}").as_str())
    );
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = r.text();
    assert!(text.trim_end().ends_with("data: [DONE]"), "{text}");
    let name = &calls_of(&want["response"]["choices"][0]["message"])[0].0;
    assert!(text.contains(name.as_str()), "{text}");

    // A request of no discovered task still goes to the LLM.
    let other =
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hello there"}]});
    let r = chat(&gw.addr, &other);
    assert_eq!(r.header("x-downshift-route"), Some("llm:default"));
    assert!(r.header("x-downshift-task").is_none());

    // The log says who answered; the specialist's answers are kept out of training data.
    let logged = wait_calls(dir.path(), records.len() + 12);
    let by_spec: Vec<&Value> = logged
        .iter()
        .filter(|c| c["upstream"] == "specialist:good")
        .collect();
    assert!(by_spec.len() >= 2, "{logged:?}");
    for c in &by_spec {
        assert_eq!(c["tags"]["downshift_route"], "specialist");
        assert_eq!(c["tags"]["downshift_task"], task.as_str());
    }
    let metrics = get(&gw.addr, "/metrics", None).text();
    assert!(
        metrics.contains(&format!(
            "downshift_routes_total{{task=\"{task}\",route=\"specialist\"}}"
        )),
        "{metrics}"
    );
    assert!(metrics.contains("downshift_route_decision_seconds_count"));
    gw.stop();
}

#[test]
fn invalid_answers_fall_back_and_a_disagreeing_specialist_is_demoted() {
    let dir = tempdir();
    let d = dir.path().to_str().unwrap();
    let (task, records) = trading(dir.path());
    let replay = dir.path().join("calls.jsonl");
    let teacher = mock(&["--replay", replay.to_str().unwrap()]);
    // A specialist that calls a tool the request never offered.
    let lies = unoffered_tool_answers(&records);
    let lies_file = dir.path().join("lies.jsonl");
    write_lines(&lies_file, &lies);
    let liar = mock(&["--replay", lies_file.to_str().unwrap()]);
    // A specialist that answers in text where the LLM calls tools: valid, but wrong.
    let echo = mock(&[]);
    let cfg = write_config(dir.path(), &[("liar", &liar.addr), ("echo", &echo.addr)]);
    let gw = gateway(d, &cfg, &teacher.addr);

    promote(
        d,
        &cfg,
        &task,
        &[
            "--mode",
            "on",
            "--specialist",
            "liar",
            "--shadow-sample",
            "0",
        ],
    );
    // The tool-call requests the router places in the task, once the gateway has the policy
    // (discovery may put some of the trading calls into other tasks).
    let mut reqs: Vec<&Value> = Vec::new();
    eventually("six requests placed in the task", || {
        reqs = tool_call_records(&records)
            .into_iter()
            .filter(|r| {
                chat(&gw.addr, &r["request"]).header("x-downshift-task") == Some(task.as_str())
            })
            .collect();
        reqs.len() >= 6
    });
    let want = &reqs[0];
    let mut fell_back = None;
    eventually("a fallback", || {
        let r = chat(&gw.addr, &want["request"]);
        let yes = r.header("x-downshift-fallback").is_some();
        if yes {
            fell_back = Some(r);
        }
        yes
    });
    let r = fell_back.unwrap();
    assert_eq!(r.header("x-downshift-fallback"), Some("unoffered_tool"));
    assert_eq!(r.header("x-downshift-route"), Some("llm:default"));
    assert_eq!(
        calls_of(&r.json()["choices"][0]["message"]),
        calls_of(&want["response"]["choices"][0]["message"]),
        "the agent gets the LLM's answer"
    );
    eventually("the fallback event", || {
        policies(d)["events"].as_array().unwrap().iter().any(|e| {
            e["kind"] == "fallback"
                && e["detail"]["reason"] == "unoffered_tool"
                && e["detail"]["tool"] == "wire_all_funds"
        })
    });
    let fallbacks =
        format!("downshift_fallbacks_total{{task=\"{task}\",reason=\"unoffered_tool\"}}");
    assert!(metric(&gw.addr, &fallbacks).unwrap() >= 1.0);
    // The fallback's LLM answer is logged as training data, tagged with the reason.
    eventually("the fallback call in the log", || {
        calls(dir.path(), &[])
            .iter()
            .any(|c| c["tags"]["downshift_fallback"] == "unoffered_tool" && c["status"] == "ok")
    });

    // The echo specialist's text answers pass validation and are served, but the LLM answers
    // the sampled requests with tool calls: agreement 0, and the task is demoted to shadow.
    promote(
        d,
        &cfg,
        &task,
        &[
            "--specialist",
            "echo",
            "--shadow-sample",
            "1",
            "--window",
            "3",
            "--threshold",
            "0.9",
        ],
    );
    let route = format!("specialist:{task}");
    eventually("the echo specialist to serve", || {
        chat(&gw.addr, &reqs[1]["request"]).header("x-downshift-route") == Some(route.as_str())
    });
    let mut k = 0;
    eventually("the demotion", || {
        if policies(d)["policies"][0]["mode"] == "shadow" {
            return true;
        }
        chat(&gw.addr, &reqs[2 + k % 3]["request"]);
        k += 1;
        false
    });
    let p = policies(d);
    let demote = p["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "demote")
        .unwrap_or_else(|| panic!("no demote event: {p}"));
    assert_eq!(demote["detail"]["from"], "on");
    assert_eq!(demote["detail"]["to"], "shadow");
    assert!(demote["detail"]["mean"].as_f64().unwrap() < 0.9);
    assert_eq!(p["policies"][0]["updated_by"], "tracker");
    // Demoted: the LLM answers again.
    eventually("the LLM to answer again", || {
        chat(&gw.addr, &reqs[5]["request"]).header("x-downshift-route") == Some("llm:default")
    });
    gw.stop();
}

#[test]
fn policies_change_over_http_for_admins_only() {
    let dir = tempdir();
    let d = dir.path().to_str().unwrap();
    let (task, _) = trading(dir.path());
    let teacher = mock(&[]);
    let gw = serve(dir.path(), &teacher.addr, &[]);
    let admin = gw.admin_key();
    let out = ok(&[
        "keys",
        "create",
        "--role",
        "agent",
        "--name",
        "bot",
        "--json",
        "--data-dir",
        d,
    ]);
    let agent = serde_json::from_str::<Value>(&out).unwrap()["key"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = json!({"mode": "shadow", "specialist": "remote-x"}).to_string();
    let put = |key: &str, path: &str, body: &str| {
        let auth = format!("Bearer {key}");
        http(
            &gw.addr,
            "PUT",
            path,
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/json"),
            ],
            body.as_bytes(),
        )
    };
    let path = format!("/admin/policies/{task}");
    let r = put(&agent, &path, &body);
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "insufficient_permissions");
    let r = put(&admin, &path, &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["mode"], "shadow");
    let r = put(&admin, "/admin/policies/task_nope", &body);
    assert_eq!(r.status, 404);
    let r = put(&admin, &path, r#"{"mode": "sometimes"}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = put(&admin, &path, r#"{"window": 0}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    let r = get(&gw.addr, "/admin/policies", Some(&admin));
    assert_eq!(r.json()["data"][0]["task"], task.as_str());
    gw.stop();
}
