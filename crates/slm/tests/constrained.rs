//! Constrained decoding (feature `constrained`): tool calls sampled from SmolLM2-135M are
//! schema-valid every time with the grammar, and not without it.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]
#![cfg(feature = "constrained")]

mod common;

use downshift_slm::{Constraint, GenerateOptions, LocalModel, Message};
use serde_json::{Value, json};

/// A validator for the JSON Schema subset the test tools use.
fn valid(v: &Value, s: &Value) -> bool {
    if let Some(any) = s.get("anyOf").and_then(|a| a.as_array()) {
        return any.iter().any(|x| valid(v, x));
    }
    if let Some(c) = s.get("const") {
        return v == c;
    }
    if let Some(e) = s.get("enum").and_then(|e| e.as_array())
        && !e.contains(v)
    {
        return false;
    }
    match s.get("type").and_then(|t| t.as_str()) {
        Some("object") => {
            let Some(o) = v.as_object() else { return false };
            let props = s.get("properties").and_then(|p| p.as_object());
            for r in s
                .get("required")
                .and_then(|r| r.as_array())
                .into_iter()
                .flatten()
            {
                if !o.contains_key(r.as_str().unwrap_or_default()) {
                    return false;
                }
            }
            for (k, x) in o {
                match props.and_then(|p| p.get(k)) {
                    Some(ps) => {
                        if !valid(x, ps) {
                            return false;
                        }
                    }
                    None => {
                        if s.get("additionalProperties") == Some(&Value::Bool(false)) {
                            return false;
                        }
                    }
                }
            }
            true
        }
        Some("string") => v.as_str().is_some_and(|x| {
            s.get("maxLength")
                .and_then(|m| m.as_u64())
                .is_none_or(|m| x.chars().count() as u64 <= m)
        }),
        Some("integer") => v.as_i64().is_some_and(|x| {
            s.get("minimum")
                .and_then(|m| m.as_i64())
                .is_none_or(|m| x >= m)
                && s.get("maximum")
                    .and_then(|m| m.as_i64())
                    .is_none_or(|m| x <= m)
        }),
        Some("boolean") => v.is_boolean(),
        Some(_) => false,
        None => true,
    }
}

fn tools() -> Vec<Value> {
    vec![
        json!({"type": "function", "function": {"name": "get_weather", "description": "Current weather for a city",
            "parameters": {"type": "object", "properties": {
                "city": {"type": "string", "maxLength": 40},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
                "required": ["city", "unit"], "additionalProperties": false}}}),
        json!({"type": "function", "function": {"name": "search_web", "description": "Search the web",
            "parameters": {"type": "object", "properties": {
                "query": {"type": "string", "maxLength": 60},
                "max_results": {"type": "integer", "minimum": 1, "maximum": 10}},
                "required": ["query", "max_results"], "additionalProperties": false}}}),
    ]
}

#[test]
fn constrained_tool_calls_are_always_valid_and_unconstrained_are_not() {
    let m = LocalModel::load(common::smollm2_path()).expect("load");
    let tools = tools();
    let schema = Constraint::tool_call_schema(&tools).expect("schema");
    let sys = format!(
        "You can call these tools. Reply with one JSON object {{\"name\": ..., \"arguments\": {{...}}}}.\nTools: {}",
        serde_json::to_string(&tools).expect("json")
    );
    let msgs = [
        Message::new("system", &sys),
        Message::new("user", "What's the weather like in Paris today?"),
    ];
    let prompt = m.tokenize(&m.render_chat(&msgs, None).expect("render"));
    let opts = GenerateOptions {
        max_tokens: 96,
        temperature: 1.0,
        ..Default::default()
    };
    let prefix = m.prefill(&prompt, &opts).expect("prefill");
    let guidance = m.guidance().expect("guidance");
    let constraint = Constraint::ToolCall(tools.clone());
    let n = 200;
    let (mut ok_c, mut ok_u) = (0, 0);
    let mut names = std::collections::HashSet::new();
    for seed in 0..n {
        let o = GenerateOptions {
            seed,
            ..opts.clone()
        };
        let mut f = guidance.filter(&constraint).expect("filter");
        let g = m
            .generate_from(prefix.clone(), &o, Some(&mut f), None)
            .expect("constrained");
        match serde_json::from_str::<Value>(&g.text) {
            Ok(v) if valid(&v, &schema) => {
                ok_c += 1;
                names.insert(v["name"].as_str().unwrap_or_default().to_string());
            }
            _ => eprintln!("invalid constrained output (seed {seed}): {:?}", g.text),
        }
        if seed >= 50 {
            continue; // 50 unconstrained samples are plenty to show the difference
        }
        let u = m
            .generate_from(prefix.clone(), &o, None, None)
            .expect("unconstrained");
        let parsed = downshift_slm::parse_tool_calls(&u.text).1;
        if parsed.len() == 1
            && serde_json::from_str::<Value>(&parsed[0].arguments)
                .is_ok_and(|a| valid(&json!({"name": parsed[0].name, "arguments": a}), &schema))
        {
            ok_u += 1;
        }
    }
    eprintln!(
        "schema-valid: constrained {ok_c}/{n}, unconstrained {ok_u}/50; tools chosen {names:?}"
    );
    assert_eq!(ok_c, n, "every constrained generation must be valid");
    assert!(
        ok_u < 50,
        "unconstrained sampling was always valid: the test proves nothing"
    );
}

#[test]
fn json_and_regex_constraints() {
    let m = LocalModel::load(common::smollm2_path()).expect("load");
    let prompt = m.tokenize(
        &m.render_chat(
            &[Message::new(
                "user",
                "Give me a JSON object describing a cat.",
            )],
            None,
        )
        .expect("render"),
    );
    let o = GenerateOptions {
        max_tokens: 80,
        ..Default::default()
    };
    let g = m
        .generate_constrained(
            &prompt,
            &o,
            &Constraint::JsonSchema(json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}}, "required": ["name", "age"], "additionalProperties": false})),
            None,
        )
        .expect("json schema");
    let v: Value = serde_json::from_str(&g.text).expect("valid JSON");
    assert!(v["name"].is_string() && v["age"].is_i64(), "{v}");
    let g = m
        .generate_constrained(&prompt, &o, &Constraint::Regex("(yes|no)".into()), None)
        .expect("regex");
    assert!(g.text == "yes" || g.text == "no", "{:?}", g.text);
}

#[test]
fn invalid_schema_is_a_clear_error() {
    let m = LocalModel::load(common::smollm2_path()).expect("load");
    let e = m
        .generate_constrained(
            &[1, 2, 3],
            &GenerateOptions::default(),
            &Constraint::JsonSchema(json!({"type": "no-such-type"})),
            None,
        )
        .expect_err("invalid schema");
    assert!(e.to_string().contains("invalid constraint"), "{e}");
    let e = m
        .generate_constrained(
            &[1, 2, 3],
            &GenerateOptions::default(),
            &Constraint::JsonSchema(json!(42)),
            None,
        )
        .expect_err("not an object");
    assert!(e.to_string().contains("schema"), "{e}");
    let e = Constraint::tool_call_schema(&[]).expect_err("no tools");
    assert!(e.to_string().contains("without tools"), "{e}");
}
