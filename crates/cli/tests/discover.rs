//! End-to-end: `discover` and `tasks list|show` through the real binary, on BFCL calls.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

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

/// `records` imported into a fresh data directory and discovered (MiniLM) with the router's
/// placement check.
fn discover_with_placement(records: &[Value]) -> Value {
    let dir = tempdir();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let file = dir.path().join("calls.jsonl");
    write_jsonl(&file, records);
    ok(&["import", file.to_str().unwrap(), "--data-dir", d]);
    discover_json(d, &["--model-dir", &model_dir(), "--placement"])
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

/// Names and e-mails of the customers in [`job_traffic`]: none may appear in task metadata.
const PEOPLE: &[(&str, &str)] = &[
    ("Carla Rossi", "carla.rossi@example.com"),
    ("Bob Schneider", "bob.schneider@mail.test"),
    ("Amina Dubois", "amina.dubois@example.org"),
    ("Hiroshi Tanaka", "h.tanaka@inbox.example"),
    ("Lucia Garcia", "lucia.garcia@example.com"),
    ("Pierre Moreau", "pierre.moreau@corp.test"),
    ("Ingrid Johansson", "ingrid.j@example.net"),
    ("Mateo Silva", "mateo.silva@post.example"),
];

/// Four jobs, every user turn carrying a customer's name, e-mail, city and order number:
/// a weather tool job and a JSON extractor (each with its own system prompt, the user turns
/// phrased three ways), and a generic assistant asked to translate or to summarise. `salt`
/// varies the values.
fn job_traffic(n_per_job: usize, salt: usize) -> Vec<Value> {
    let cities = ["Cairo", "Tokyo", "Lima", "Perth", "Austin", "Lyon", "Oslo"];
    let weather_tool = serde_json::json!([{"type": "function", "function": {"name": "get_weather",
        "description": "Weather for a city", "parameters": {"type": "object",
        "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]);
    let weather_sys = "You are SkyCast, the weather assistant of a travel app. When the user asks \
        about the weather in a place, call get_weather with the city; never guess the weather.";
    let extract_sys = "You are a data-entry assistant for ACME orders. Extract the customer's \
        name, email, order number and city and reply with a JSON object with keys name, email, \
        order_id and city. Reply with JSON only.";
    let mut out = Vec::new();
    for k in 0..n_per_job {
        let i = k + salt;
        let (name, email) = PEOPLE[i % PEOPLE.len()];
        let city = cities[(i * 3) % cities.len()];
        let order = 40_000 + 37 * i;
        let rec = |system: &str, user: String, tools: Option<&Value>, answer: Value, job: &str| {
            let mut request = serde_json::json!({"model": "gpt-4o",
                "messages": [{"role": "system", "content": system},
                             {"role": "user", "content": user}]});
            if let Some(t) = tools {
                request["tools"] = t.clone();
            }
            serde_json::json!({"request": request,
                "response": {"choices": [{"index": 0, "message": answer}]},
                "metadata": {"job": job}})
        };
        let weather_q = [
            format!("What's the weather in {city} today? I'm {name}."),
            format!("Hi, {name} here ({email}), will it rain in {city} tomorrow?"),
            format!("Forecast for {city} please, order #{order} ships there."),
        ];
        out.push(rec(
            weather_sys,
            weather_q[i % 3].clone(),
            Some(&weather_tool),
            serde_json::json!({"role": "assistant", "content": null, "tool_calls": [{"id": format!("c{i}"),
                "type": "function", "function": {"name": "get_weather",
                "arguments": format!("{{\"city\": \"{city}\"}}")}}]}),
            "weather",
        ));
        let extract_q = [
            format!("Hello, this is {name} from {city}, email {email}. Where is order #{order}?"),
            format!("From: {email}\nName: {name}\nPlease cancel order {order}, I moved to {city}."),
            format!("{name} ({email}) wants order {order} delivered to {city} instead."),
        ];
        out.push(rec(
            extract_sys,
            extract_q[i % 3].clone(),
            None,
            serde_json::json!({"role": "assistant", "content": format!(
                "{{\"name\": \"{name}\", \"email\": \"{email}\", \"order_id\": \"{order}\", \"city\": \"{city}\"}}")}),
            "extract",
        ));
        let material = format!(
            "Dear {name}, thank you for your order {order}. Your parcel leaves our {city} \
             warehouse today; questions to {email}."
        );
        // One phrasing per instruction: differently worded instructions of one job are a
        // known limit (bench/discover/README.md), values are what this test varies.
        out.push(rec(
            "You are a helpful assistant.",
            format!("Translate into French: {material}"),
            None,
            serde_json::json!({"role": "assistant", "content": "Cher client, merci pour votre commande."}),
            "translate",
        ));
        out.push(rec(
            "You are a helpful assistant.",
            format!("Summarise this in one sentence:\n{material}"),
            None,
            serde_json::json!({"role": "assistant", "content": "The parcel ships today."}),
            "summarise",
        ));
    }
    out
}

/// Every file under `dir`, recursively.
fn files_under(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn jobs_not_values_no_pii_in_task_metadata_stable_ids_and_router_placement() {
    let dir = tempdir();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    let first = dir.path().join("first.jsonl");
    let records = job_traffic(30, 0);
    write_jsonl(&first, &records);
    ok(&["import", first.to_str().unwrap(), "--data-dir", d]);
    let models = model_dir();

    let out = discover_json(d, &["--model-dir", &models, "--placement"]);
    let tasks = out["tasks"].as_array().unwrap();
    // One task per job, whatever the names, cities and numbers in the calls.
    let mut job_tasks: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in out["assignments"].as_array().unwrap() {
        let task = a["task_id"].as_str().unwrap_or("noise").to_owned();
        job_tasks
            .entry(a["tags"]["job"].as_str().unwrap().to_owned())
            .or_default()
            .insert(task);
    }
    assert_eq!(tasks.len(), 4, "{job_tasks:?}\n{tasks:#?}");
    let distinct: BTreeSet<&String> = job_tasks.values().flatten().collect();
    assert_eq!(distinct.len(), 4, "{job_tasks:?}");
    assert!(job_tasks.values().all(|t| t.len() == 1), "{job_tasks:?}");
    assert!(!distinct.iter().any(|t| t.as_str() == "noise"));
    // The router places every held-back call in its task.
    let p = &out["placement"];
    assert!(p["held_back"].as_u64().unwrap() >= 10, "{p}");
    assert!(p["min_task_share"].as_f64().unwrap() >= 0.98, "{p}");
    // Precision counts every held-back call the router took into a task, noise included.
    let taken: u64 = p["per_task"]
        .as_object()
        .unwrap()
        .values()
        .map(|t| t["taken_from_others"].as_u64().unwrap())
        .sum();
    assert_eq!(
        taken,
        p["placed_elsewhere"].as_u64().unwrap() + p["noise_placed"].as_u64().unwrap(),
        "{p}"
    );
    let placed = p["placed"].as_f64().unwrap();
    assert_eq!(
        p["precision"].as_f64().unwrap(),
        placed / (placed + taken as f64),
        "{p}"
    );
    assert!(p["noise_placed"].as_u64().unwrap() <= p["noise_held_back"].as_u64().unwrap());

    // No name or e-mail in `discover --json`, `tasks list`, `tasks show`, or any file of the
    // data directory.
    let mut texts = vec![out.to_string()];
    texts.push(ok(&["tasks", "list", "--json", "--data-dir", d]));
    texts.push(ok(&["tasks", "list", "--data-dir", d]));
    for t in tasks {
        let id = t["id"].as_str().unwrap();
        let shown = ok(&["tasks", "show", id, "--samples", "10", "--data-dir", d]);
        assert!(shown.contains("samples"), "{shown}");
        texts.push(shown);
    }
    let mut files = Vec::new();
    files_under(std::path::Path::new(d), &mut files);
    assert!(!files.is_empty());
    for f in &files {
        texts.push(String::from_utf8_lossy(&std::fs::read(f).unwrap()).into_owned());
    }
    for (name, email) in PEOPLE {
        let (first, last) = name.split_once(' ').unwrap();
        for (t, text) in texts.iter().enumerate() {
            for needle in [*email, *name, last] {
                assert!(
                    !text.contains(needle),
                    "{needle} ({first}) found in output/file {t}: {}",
                    files
                        .get(t.saturating_sub(texts.len() - files.len()))
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                );
            }
        }
    }

    // Stability: the same log again keeps every id; more calls of the same jobs too.
    let ids = |v: &Value| -> BTreeSet<String> {
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let again = discover_json(d, &["--model-dir", &models]);
    assert_eq!(ids(&out), ids(&again));
    let more = dir.path().join("more.jsonl");
    write_jsonl(&more, &job_traffic(10, 1000));
    ok(&["import", more.to_str().unwrap(), "--data-dir", d]);
    let grown = discover_json(d, &["--model-dir", &models]);
    assert_eq!(ids(&out), ids(&grown));
    assert_eq!(grown["assignments"].as_array().unwrap().len(), 160);
}

/// The partition discovery makes of `lines` in a fresh data directory: for each task, its label
/// and the set of its calls' requests (the ids differ per import; the requests do not).
/// Imports `lines` into a fresh data directory, each stamped with a time that depends on `run`
/// (so every run logs the same requests under other call ids), discovers, and returns the tasks
/// as (id, label, the requests in it).
fn partition_in_fresh_dir(
    lines: &[String],
    run: i64,
) -> BTreeSet<(String, String, BTreeSet<String>)> {
    let dir = tempdir();
    let d = dir.path().to_str().unwrap();
    let file = dir.path().join("calls.jsonl");
    let stamped: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            v["timestamp"] = Value::from(1_767_225_600 + run * 86_400 + i as i64);
            v.to_string()
        })
        .collect();
    std::fs::write(&file, stamped.join("\n") + "\n").unwrap();
    ok(&["import", file.to_str().unwrap(), "--data-dir", d]);
    let out = discover_json(d, &["--embedder", "hashed"]);
    let request_of: BTreeMap<String, String> = ok(&["export", "--data-dir", d])
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (
                v["call"]["id"].as_str().unwrap().to_owned(),
                v["request"].to_string(),
            )
        })
        .collect();
    let label: BTreeMap<&str, &str> = out["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["id"].as_str().unwrap(), t["label"].as_str().unwrap()))
        .collect();
    let mut parts: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for a in out["assignments"].as_array().unwrap() {
        let task = a["task_id"].as_str().unwrap_or("noise");
        parts
            .entry((
                task.to_owned(),
                label.get(task).copied().unwrap_or("").to_owned(),
            ))
            .or_default()
            .insert(request_of[a["call_id"].as_str().unwrap()].clone());
    }
    parts.into_iter().map(|((id, l), r)| (id, l, r)).collect()
}

#[test]
fn the_same_traffic_gives_the_same_tasks_whatever_ids_it_was_logged_under() {
    // Each import mints new call ids; nothing discovery decides may depend on them (the
    // placement check once held calls back by id, and the 78 trading calls came out as one,
    // two or three tasks from run to run).
    // The task ids too: a new task's id comes from its content, so a replay of the same traffic
    // (the demo's, say) names its tasks as the first run did.
    let lines = trading_lines();
    let first = partition_in_fresh_dir(&lines, 0);
    for run in 1..3 {
        assert_eq!(partition_in_fresh_dir(&lines, run), first);
    }
    assert!(
        first.iter().any(|(id, ..)| id.starts_with("task_")),
        "{first:?}"
    );
}

/// τ²-bench airline and telecom agent steps (`scripts/fetch.sh tau2`): every step of a
/// conversation repeats the customer's opening message, so the router must read what the tools
/// answered since the agent's last step — as discovery does — to place a step in its task.
#[test]
fn the_router_places_agent_steps_by_the_newest_turns() {
    let path = repo_root().join("data/tau2/tau2.jsonl");
    assert!(
        path.exists(),
        "{} is missing: run scripts/fetch.sh tau2",
        path.display()
    );
    let dir = tempdir();
    let d = dir.path().join("data");
    let d = d.to_str().unwrap();
    ok(&["import", path.to_str().unwrap(), "--data-dir", d]);
    let out = discover_json(d, &["--model-dir", &model_dir(), "--placement"]);
    let tasks = out["tasks"].as_array().unwrap();
    assert!(tasks.len() >= 2, "{out:#}");
    let p = &out["placement"];
    assert!(p["held_back"].as_u64().unwrap() >= 20, "{p}");
    assert_eq!(p["placed_elsewhere"].as_u64(), Some(0), "{p}");
    assert!(p["min_task_share"].as_f64().unwrap() >= 0.98, "{p}");

    // `tasks show` takes the id, or enough of its hash to name one task.
    let id = tasks[0]["id"].as_str().unwrap();
    let hash = id.strip_prefix("task_").unwrap();
    for given in [id, hash, &hash[..8]] {
        let shown = ok(&["tasks", "show", given, "--data-dir", d]);
        assert!(shown.contains(id), "{given}: {shown}");
    }
    let (okay, _, err) = run(&["tasks", "show", "zz", "--data-dir", d], &[]);
    assert!(!okay);
    assert!(err.contains("no task 'zz'"), "{err}");
}

/// Calls made through the Responses API are discovered and curated with the chat calls of the
/// same job: one instruction sent as a chat system prompt or as Responses `instructions` is one
/// task, and the curated dataset holds both, scrubbed.
#[test]
fn responses_api_calls_are_discovered_and_curated_with_the_chat_calls_of_their_job() {
    let dir = tempdir();
    let d = dir.path().join("data");
    let up = mock(&[]);
    let gw = serve(&d, &up.addr, &["--no-auth"]);
    let translate = "You are the translation engine of ACME's support desk. Translate the \
        customer's message into French, keeping order numbers unchanged.";
    let triage = "You triage ACME support tickets. Answer with one word: billing, shipping, \
        returns or other.";
    let mut sent = BTreeMap::new();
    for i in 0..24 {
        let (name, email) = PEOPLE[i % PEOPLE.len()];
        let text = format!(
            "Hello, {name} here ({email}). Where is my order {}?",
            5000 + 7 * i
        );
        let (path, body, job) = match i % 3 {
            0 => (
                "/v1/chat/completions",
                serde_json::json!({"model": "gpt-4.1", "messages": [
                    {"role": "system", "content": translate}, {"role": "user", "content": text}]}),
                "translate",
            ),
            1 => (
                "/v1/responses",
                serde_json::json!({"model": "gpt-4.1", "instructions": translate,
                    "input": [{"role": "user", "content": [{"type": "input_text", "text": text}]}]}),
                "translate",
            ),
            _ => (
                "/v1/responses",
                serde_json::json!({"model": "gpt-4.1", "instructions": triage, "input": text}),
                "triage",
            ),
        };
        let resp = post_json(&gw.addr, path, None, &body.to_string(), &[]);
        assert_eq!(resp.status, 200, "{}", resp.text());
        sent.insert(
            resp.header("x-downshift-call-id").unwrap().to_owned(),
            (job, path),
        );
    }
    gw.stop();
    let d = d.to_str().unwrap();
    let out = discover_json(d, &["--model-dir", &model_dir()]);
    let mut job_tasks: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for a in out["assignments"].as_array().unwrap() {
        let (job, _) = sent[a["call_id"].as_str().unwrap()];
        let task = a["task_id"].as_str().unwrap_or("noise").to_owned();
        job_tasks.entry(job).or_default().insert(task);
    }
    assert_eq!(
        job_tasks.values().map(BTreeSet::len).sum::<usize>(),
        2,
        "one task per job, chat and Responses calls together: {job_tasks:?}\n{out:#}"
    );
    assert!(
        !job_tasks.values().flatten().any(|t| t == "noise"),
        "{job_tasks:?}"
    );

    let cur: Value = serde_json::from_str(&ok(&[
        "curate",
        "--name",
        "both",
        "--json",
        "--data-dir",
        d,
    ]))
    .unwrap();
    // Scrubbed, the messages of a job differ only in their order numbers, so near-duplicates
    // go (the newest survives); every call is either an example or a counted duplicate.
    let report = &cur["report"];
    let out = report["examples_out"].as_u64().unwrap();
    assert_eq!(
        out + report["near_duplicates"].as_u64().unwrap()
            + report["exact_duplicates"].as_u64().unwrap(),
        24,
        "{cur}"
    );
    assert!(report["filtered"].as_object().unwrap().is_empty(), "{cur}");
    let examples = ok(&["datasets", "export", "both", "--data-dir", d]);
    let records: Vec<Value> = examples
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(records.len() as u64, out);
    let systems: Vec<&str> = records
        .iter()
        .filter_map(|r| r["messages"][0]["content"].as_str())
        .collect();
    // Triage went through the Responses API only.
    assert!(systems.contains(&triage), "{systems:?}");
    assert!(systems.contains(&translate), "{systems:?}");
    assert_eq!(systems.len(), records.len());
    for r in &records {
        let answer = r["messages"].as_array().unwrap().last().unwrap();
        assert_eq!(answer["role"], "assistant", "{r}");
        assert!(
            answer["content"].as_str().unwrap().starts_with("echo"),
            "{r}"
        );
    }
    for (name, email) in PEOPLE {
        assert!(
            !examples.contains(email) && !examples.contains(name),
            "{name} / {email} in the curated data"
        );
    }
}

/// A message in four languages (English, French, German, Spanish) and its summary in each.
struct Material {
    text: [&'static str; 4],
    summary: [&'static str; 4],
}

const MATERIALS: &[Material] = &[
    Material {
        text: [
            "Hello {name}, the community garden in {city} opens again on Saturday. Volunteers \
             meet at nine at the north gate, bring gloves and water. The council pays for new \
             seeds this year. Write to {email} if you can help.",
            "Bonjour {name}, le jardin partagé de {city} rouvre samedi. Les bénévoles se \
             retrouvent à neuf heures à la porte nord, apportez des gants et de l'eau. La mairie \
             paie les nouvelles graines cette année. Écrivez à {email} si vous pouvez aider.",
            "Hallo {name}, der Gemeinschaftsgarten in {city} öffnet am Samstag wieder. Die \
             Freiwilligen treffen sich um neun am Nordtor, bringt Handschuhe und Wasser mit. Die \
             Stadt bezahlt dieses Jahr das neue Saatgut. Schreibt an {email}, wenn ihr helfen \
             könnt.",
            "Hola {name}, el huerto comunitario de {city} vuelve a abrir el sábado. Los \
             voluntarios se reúnen a las nueve en la puerta norte, traed guantes y agua. El \
             ayuntamiento paga las semillas nuevas este año. Escribid a {email} si podéis \
             ayudar.",
        ],
        summary: [
            "The {city} garden reopens on Saturday and needs volunteers.",
            "Le jardin de {city} rouvre samedi et cherche des bénévoles.",
            "Der Garten in {city} öffnet am Samstag und sucht Freiwillige.",
            "El huerto de {city} abre el sábado y busca voluntarios.",
        ],
    },
    Material {
        text: [
            "Dear {name}, your flight to {city} was moved to the evening because of a storm. \
             The new departure is at eight, from the same terminal. Your seat and your luggage \
             allowance do not change. We are sorry for the trouble; reply to {email} with any \
             question.",
            "Cher {name}, votre vol pour {city} a été déplacé au soir à cause d'une tempête. \
             Le nouveau départ est à vingt heures, du même terminal. Votre siège et vos bagages \
             ne changent pas. Nous sommes désolés du dérangement ; répondez à {email} pour toute \
             question.",
            "Liebe/r {name}, Ihr Flug nach {city} wurde wegen eines Sturms auf den Abend \
             verlegt. Der neue Abflug ist um acht Uhr, vom selben Terminal. Ihr Sitzplatz und \
             Ihr Gepäck bleiben gleich. Wir entschuldigen uns; antworten Sie an {email} bei \
             Fragen.",
            "Estimado {name}, su vuelo a {city} se ha movido a la tarde por una tormenta. La \
             nueva salida es a las ocho, desde la misma terminal. Su asiento y su equipaje no \
             cambian. Sentimos las molestias; responda a {email} con cualquier pregunta.",
        ],
        summary: [
            "Because of a storm, the flight to {city} now leaves at eight.",
            "À cause d'une tempête, le vol pour {city} part à vingt heures.",
            "Wegen eines Sturms fliegt der Flug nach {city} erst um acht.",
            "Por una tormenta, el vuelo a {city} sale a las ocho.",
        ],
    },
];

/// A sentence with mistakes and its correction, per language.
const MISTAKES: &[[(&str, &str); 2]] = &[
    [
        (
            "{name} and me was at {city} last week and we seen the new museum",
            "{name} and I were in {city} last week and we saw the new museum.",
        ),
        (
            "the parcel for {name} have arrived to {city} but nobody were home",
            "The parcel for {name} has arrived in {city}, but nobody was home.",
        ),
    ],
    [
        (
            "{name} et moi on a été a {city} la semaine dernière et on a vu le nouveau musée",
            "{name} et moi sommes allés à {city} la semaine dernière et nous avons vu le nouveau \
             musée.",
        ),
        (
            "le colis pour {name} est arriver a {city} mais personne était la",
            "Le colis pour {name} est arrivé à {city}, mais personne n'était là.",
        ),
    ],
    [
        (
            "{name} und ich waren letzte woche in {city} und wir haben das neue museum gesieht",
            "{name} und ich waren letzte Woche in {city} und wir haben das neue Museum gesehen.",
        ),
        (
            "das paket für {name} ist in {city} angekommt aber keiner war zu hause",
            "Das Paket für {name} ist in {city} angekommen, aber keiner war zu Hause.",
        ),
    ],
    [
        (
            "{name} y yo estuvimos en {city} la semana pasada y vimos el museo nuevo que abrio",
            "{name} y yo estuvimos en {city} la semana pasada y vimos el museo nuevo que abrió.",
        ),
        (
            "el paquete para {name} a llegado a {city} pero no avia nadie en casa",
            "El paquete para {name} ha llegado a {city}, pero no había nadie en casa.",
        ),
    ],
];

/// A generic-prompt assistant asked to translate, summarise or correct text, each instruction
/// phrased in several languages (English, French, German, Spanish), the answers what an LLM
/// writes: the material in another language, a shorter text in its language, the sentence
/// corrected. `n_per_job` calls per job; `salt` varies the names and cities.
fn multilingual_assistant(n_per_job: usize, salt: usize) -> Vec<Value> {
    // (instruction, its language, the target language of a translation)
    let translate = [
        ("Translate this into German:", 0, 2),
        ("Traduis ce texte en espagnol :", 1, 3),
        ("Übersetze bitte ins Französische:", 2, 1),
        ("Traduce esto al inglés:", 3, 0),
        ("Could you translate the text below to French?", 0, 1),
    ];
    let summarise = [
        ("Summarise the following:", 0),
        ("Fais un résumé de ce texte :", 1),
        ("Bitte kurz zusammenfassen:", 2),
        ("Resume este texto:", 3),
        ("What is the gist of this message?", 0),
    ];
    let correct = [
        ("Please correct this sentence:", 0),
        ("Corrige cette phrase :", 1),
        ("Bitte korrigieren:", 2),
        ("Corrige esta frase:", 3),
        ("Can you fix the mistakes here?", 0),
    ];
    let cities = ["Cairo", "Tokyo", "Lima", "Perth", "Austin", "Lyon", "Oslo"];
    let rec = |user: String, answer: String, job: &str| {
        serde_json::json!({"request": {"model": "gpt-4o", "messages": [
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": user}]},
            "response": {"choices": [{"index": 0,
                "message": {"role": "assistant", "content": answer}}]},
            "metadata": {"job": job}})
    };
    let mut out = Vec::new();
    for k in 0..n_per_job {
        let i = k + salt;
        let (name, email) = PEOPLE[i % PEOPLE.len()];
        let city = cities[(i * 3) % cities.len()];
        let fill = |t: &str| {
            t.replace("{name}", name)
                .replace("{city}", city)
                .replace("{email}", email)
        };
        let m = &MATERIALS[i % MATERIALS.len()];
        let (head, lang, target) = translate[k % translate.len()];
        // The text to translate is in the instruction's language, or another one (not the target).
        let source = if k % 3 == 0 && (lang + 1) % 4 != target {
            (lang + 1) % 4
        } else {
            lang
        };
        out.push(rec(
            format!("{head}\n\n{}", fill(m.text[source])),
            fill(m.text[target]),
            "translate",
        ));
        let (head, lang) = summarise[(k + 1) % summarise.len()];
        out.push(rec(
            format!("{head} {}", fill(m.text[lang])),
            fill(m.summary[lang]),
            "summarise",
        ));
        let (head, lang) = correct[(k + 2) % correct.len()];
        let (wrong, right) = MISTAKES[lang][i % 2];
        out.push(rec(
            format!("{head} {}", fill(wrong)),
            fill(right),
            "correct",
        ));
    }
    out
}

/// Under a generic system prompt the job is the instruction in the user turn, asked for in
/// several languages: translate, summarise and correct are three tasks whatever the language of
/// the instruction (the answers' relation to the material tells the jobs apart where an
/// English-only embedder would group the instructions by language), and the router places
/// held-back calls by their instruction.
#[test]
fn a_generic_assistants_jobs_in_several_languages_are_three_tasks() {
    let out = discover_with_placement(&multilingual_assistant(60, 0));
    let mut job_tasks: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for a in out["assignments"].as_array().unwrap() {
        *job_tasks
            .entry(a["tags"]["job"].as_str().unwrap().to_owned())
            .or_default()
            .entry(a["task_id"].as_str().unwrap_or("noise").to_owned())
            .or_default() += 1;
    }
    let tasks = out["tasks"].as_array().unwrap();
    assert_eq!(tasks.len(), 3, "{job_tasks:?}\n{tasks:#?}");
    assert!(
        job_tasks.values().all(|t| t.len() == 1),
        "one task per job: {job_tasks:?}"
    );
    let distinct: BTreeSet<&String> = job_tasks.values().flat_map(BTreeMap::keys).collect();
    assert_eq!(distinct.len(), 3, "{job_tasks:?}");
    assert!(!distinct.iter().any(|t| t.as_str() == "noise"));
    let p = &out["placement"];
    assert!(p["held_back"].as_u64().unwrap() >= 20, "{p}");
    assert_eq!(p["placed_elsewhere"].as_u64(), Some(0), "{p}");
    assert!(p["min_task_share"].as_f64().unwrap() >= 0.98, "{p}");
    // Labels come from the masked instructions: no name or e-mail.
    for t in tasks {
        let label = t["label"].as_str().unwrap();
        assert!(label.starts_with("text"), "{label}");
        for (name, email) in PEOPLE {
            assert!(!label.contains(name) && !label.contains(email), "{label}");
        }
    }
}

/// Two shared APIs (a weather tool, an e-mail tool), each offered by many agents beside a tool
/// of the agent's own: every call comes with a tool list no other call has, as in BFCL's
/// live_multiple. `n_per_api` agents (one call each) per API.
fn shared_apis_in_private_tool_lists(n_per_api: usize) -> Vec<Value> {
    let tool = |name: String, description: &str| {
        serde_json::json!({"type": "function", "function": {"name": name, "description": description,
            "parameters": {"type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}})
    };
    let cities = ["Cairo", "Tokyo", "Lima", "Perth", "Austin", "Lyon", "Oslo"];
    let mut out = Vec::new();
    for i in 0..2 * n_per_api {
        let (name, email) = PEOPLE[i % PEOPLE.len()];
        let city = cities[i % cities.len()];
        let own = tool(
            format!("agent{i}_lookup"),
            &format!("Looks up records in the catalogue of shop number {i}."),
        );
        let (api, user, job) = if i % 2 == 0 {
            let q = [
                format!("What's the weather in {city} today?"),
                format!("Will it rain in {city} tomorrow?"),
                format!("Weather forecast for {city} this weekend, please."),
            ];
            (
                tool(
                    "get_weather".into(),
                    "Current weather or forecast for a city.",
                ),
                q[(i / 2) % 3].clone(),
                "weather",
            )
        } else {
            let q = [
                format!("Send an email to {email} saying the invoice is ready."),
                format!("Email {name} that the meeting moved to Friday."),
                format!("Please write to {email} and confirm the booking."),
            ];
            (
                tool("send_email".into(), "Sends an e-mail to one address."),
                q[(i / 2) % 3].clone(),
                "email",
            )
        };
        let called = api["function"]["name"].clone();
        out.push(serde_json::json!({
            "request": {"model": "gpt-4o", "messages": [{"role": "user", "content": user}],
                        "tools": [own, api]},
            "response": {"choices": [{"index": 0, "message": {"role": "assistant", "content": null,
                "tool_calls": [{"id": format!("c{i}"), "type": "function",
                    "function": {"name": called, "arguments": "{\"q\": \"x\"}"}}]}}]},
            "metadata": {"job": job}}));
    }
    out
}

#[test]
fn a_shared_api_is_placed_in_tool_lists_the_router_never_saw() {
    let out = discover_with_placement(&shared_apis_in_private_tool_lists(60));
    let mut job_tasks: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in out["assignments"].as_array().unwrap() {
        job_tasks
            .entry(a["tags"]["job"].as_str().unwrap().to_owned())
            .or_default()
            .insert(a["task_id"].as_str().unwrap_or("noise").to_owned());
    }
    assert_eq!(out["tasks"].as_array().unwrap().len(), 2, "{job_tasks:?}");
    assert!(job_tasks.values().all(|t| t.len() == 1), "{job_tasks:?}");
    // Every held-back call offers a tool list never seen in training: the router places it by
    // the API it offers (the tools all of a task's calls offered) and its words.
    let p = &out["placement"];
    assert!(p["held_back"].as_u64().unwrap() >= 15, "{p}");
    assert_eq!(p["placed_elsewhere"].as_u64(), Some(0), "{p}");
    assert!(p["min_task_share"].as_f64().unwrap() >= 0.98, "{p}");
}
