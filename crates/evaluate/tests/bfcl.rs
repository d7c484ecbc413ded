//! The metrics on real tool-calling data: the Berkeley Function Calling Leaderboard v4.
//!
//! The data is not in git: `scripts/fetch.sh bfcl` writes `data/bfcl/bfcl.jsonl` (OpenAI chat
//! completions whose answers are BFCL's gold calls) and `data/bfcl/raw/` (BFCL's own files, with
//! its bare function docs using the `dict`/`float`/`tuple`/`any` type names). Without it the test
//! fails and says how to fetch it.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

use downshift_evaluate::{
    Report, TaskKind, ToolCall, kind_of, kind_of_many, score, tool_calls_match, validate_tool_call,
};
use serde_json::{Value, json};
use std::path::PathBuf;

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/bfcl")
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} — run scripts/fetch.sh bfcl (CI does)",
            path.display()
        )
    })
}

/// The same message with its calls in reverse order, and with the first argument of the first
/// call changed (`None` when that call has no arguments).
fn variants(message: &Value) -> (Value, Option<Value>) {
    let mut reversed = message.clone();
    if let Some(calls) = reversed["tool_calls"].as_array_mut() {
        calls.reverse();
    }
    let mut changed = message.clone();
    let arguments = changed["tool_calls"][0]["function"]["arguments"]
        .as_str()
        .unwrap_or("{}");
    let mut arguments: Value = serde_json::from_str(arguments).unwrap();
    let key = arguments.as_object().and_then(|a| a.keys().next().cloned());
    let changed = key.map(|key| {
        arguments[&key] = json!({"not": "the gold value"});
        changed["tool_calls"][0]["function"]["arguments"] = json!(arguments.to_string());
        changed
    });
    (reversed, changed)
}

#[test]
fn gold_calls_match_themselves_and_mostly_satisfy_their_schemas() {
    let data = read(data_dir().join("bfcl.jsonl"));
    let mut references = Vec::new();
    let mut report = Report::new();
    let (mut with_calls, mut perturbed) = (0usize, 0usize);
    for line in data.lines().filter(|l| !l.trim().is_empty()) {
        let record: Value = serde_json::from_str(line).unwrap();
        let reference = record["response"]["choices"][0]["message"].clone();
        let tools = record["request"]["tools"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if kind_of(&reference) != TaskKind::ToolCall {
            references.push(reference);
            continue;
        }
        with_calls += 1;
        let s = score(&reference, &reference, Some(&tools), TaskKind::ToolCall);
        assert!(s.exact, "{reference}");
        report.add(&s, None);

        let (reversed, changed) = variants(&reference);
        assert!(tool_calls_match(&reversed, &reference), "{reference}");
        if let Some(changed) = changed {
            perturbed += 1;
            let s = score(&changed, &reference, Some(&tools), TaskKind::ToolCall);
            assert!(!s.exact, "{changed}");
        }
        references.push(reference);
    }
    assert!(with_calls > 2000, "only {with_calls} answers with calls");
    assert!(perturbed > 2000);
    assert_eq!(kind_of_many(&references), Some(TaskKind::ToolCall));
    let summary = report.summary();
    assert_eq!(summary.exact_match, Some(1.0));
    assert_eq!(summary.schema_checked, with_calls);
    // BFCL's gold calls break their own schemas now and then (an enum value the schema lacks, a
    // boolean for a "True"/"False" string, null for a required string): 16 of 2442 in v4.
    let valid = summary.schema_valid.unwrap();
    assert!(
        (0.99..1.0).contains(&valid),
        "schema-valid fraction {valid}"
    );
}

#[test]
fn bfcl_function_docs_with_its_own_type_names() {
    let (mut calls, mut valid) = (0usize, 0usize);
    for category in ["simple_python", "multiple", "parallel", "parallel_multiple"] {
        let questions = read(data_dir().join(format!("raw/BFCL_v4_{category}.json")));
        let answers = read(data_dir().join(format!("raw/possible_answer/BFCL_v4_{category}.json")));
        for (q, a) in questions.lines().zip(answers.lines()) {
            let q: Value = serde_json::from_str(q).unwrap();
            let a: Value = serde_json::from_str(a).unwrap();
            assert_eq!(q["id"], a["id"]);
            let tools = q["function"].as_array().unwrap();
            for gold in a["ground_truth"].as_array().unwrap() {
                let (name, params) = gold.as_object().unwrap().iter().next().unwrap();
                // Each parameter lists its acceptable values; "" means "may be omitted". Nested
                // dicts list options per field, which is not a value: skip those calls.
                let mut arguments = serde_json::Map::new();
                let mut nested = false;
                for (param, options) in params.as_object().unwrap() {
                    let first = &options[0];
                    nested |= first.is_object();
                    if first != "" {
                        arguments.insert(param.clone(), first.clone());
                    }
                }
                if nested {
                    continue;
                }
                calls += 1;
                let call = ToolCall {
                    name: name.clone(),
                    arguments: Value::Object(arguments),
                };
                valid += usize::from(validate_tool_call(&call, tools).is_ok());
            }
        }
    }
    assert!(calls > 1500, "only {calls} gold calls");
    // A couple of gold answers contradict their docs (strings in an integer array, code where an
    // array is expected); everything else validates, floats given as integers included.
    assert!(
        calls - valid <= calls / 100,
        "{valid} of {calls} gold calls valid"
    );
}
