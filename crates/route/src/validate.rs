//! Checks a specialist's answer before the agent sees it; a failure sends the request to the
//! LLM and is logged (the LLM's answer becomes training data).

use std::fmt;

use downshift_evaluate::{
    message_text, parse_json_text, parse_tool_calls, validate_json, validate_tool_call,
};
use serde_json::{Value, json};

/// Why a specialist's answer was not returned.
#[derive(Debug, Clone, PartialEq)]
pub enum FallbackReason {
    /// Neither text nor tool calls.
    Empty,
    /// A call of a tool the request did not offer.
    UnofferedTool(String),
    /// Tool call arguments that do not satisfy the offered tool's parameters, unreadable tool
    /// calls, a tool call against `tool_choice`, or a JSON answer against the requested
    /// `json_schema`; one message per problem.
    Schema(Vec<String>),
    /// The request asked for JSON (`response_format`) and the answer is not.
    NotJson,
    /// The answer's mean token log-probability is below the task's threshold.
    LowConfidence {
        /// The answer's mean token log-probability.
        got: f64,
        /// The task's threshold.
        threshold: f64,
    },
    /// The specialist did not answer in time.
    Timeout,
    /// The specialist failed (engine error, endpoint error, …).
    Error(String),
}

impl FallbackReason {
    /// A stable short code for metrics labels and logs: `empty`, `unoffered_tool`, `schema`,
    /// `not_json`, `low_confidence`, `timeout`, `error`.
    pub fn code(&self) -> &'static str {
        match self {
            FallbackReason::Empty => "empty",
            FallbackReason::UnofferedTool(_) => "unoffered_tool",
            FallbackReason::Schema(_) => "schema",
            FallbackReason::NotJson => "not_json",
            FallbackReason::LowConfidence { .. } => "low_confidence",
            FallbackReason::Timeout => "timeout",
            FallbackReason::Error(_) => "error",
        }
    }

    /// Every code, for pre-registering metrics.
    pub const CODES: [&'static str; 7] = [
        "empty",
        "unoffered_tool",
        "schema",
        "not_json",
        "low_confidence",
        "timeout",
        "error",
    ];

    /// The reason as JSON, for a route event's detail: `{"reason": code, …}`.
    pub fn detail(&self) -> Value {
        match self {
            FallbackReason::UnofferedTool(name) => json!({"reason": self.code(), "tool": name}),
            FallbackReason::Schema(errors) => json!({"reason": self.code(), "errors": errors}),
            FallbackReason::LowConfidence { got, threshold } => {
                json!({"reason": self.code(), "got": got, "threshold": threshold})
            }
            FallbackReason::Error(e) => json!({"reason": self.code(), "error": e}),
            _ => json!({"reason": self.code()}),
        }
    }
}

impl fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FallbackReason::Empty => f.write_str("empty answer"),
            FallbackReason::UnofferedTool(name) => {
                write!(f, "called tool {name:?}, which the request did not offer")
            }
            FallbackReason::Schema(errors) => write!(f, "schema: {}", errors.join("; ")),
            FallbackReason::NotJson => f.write_str("the request asked for JSON; the answer is not"),
            FallbackReason::LowConfidence { got, threshold } => write!(
                f,
                "mean log-probability {got:.3} below the threshold {threshold:.3}"
            ),
            FallbackReason::Timeout => f.write_str("the specialist timed out"),
            FallbackReason::Error(e) => write!(f, "specialist error: {e}"),
        }
    }
}

/// The name in a tool definition of either shape (`{"type": "function", "function": {...}}`
/// or bare `{"name", "parameters"}`).
fn tool_name(tool: &Value) -> Option<&str> {
    tool.get("function")
        .filter(|f| f.is_object())
        .unwrap_or(tool)
        .get("name")
        .and_then(Value::as_str)
}

/// Checks a specialist's answer (an OpenAI assistant message) against the request it answers,
/// in this order:
///
/// 1. readable tool calls (else [`FallbackReason::Schema`]), and some text or a tool call (else
///    [`FallbackReason::Empty`]);
/// 2. tool calls: each names an offered tool (`tools`, or legacy `functions`; else
///    [`FallbackReason::UnofferedTool`]), its arguments satisfy that tool's parameters (via
///    `downshift-evaluate`), and `tool_choice` allows it (`none` forbids calls, a named function
///    allows only that one; else [`FallbackReason::Schema`]);
/// 3. no tool call where `tool_choice` is `required` or names a function →
///    [`FallbackReason::Schema`];
/// 4. text where `response_format` is `json_object` or `json_schema`: it must parse as JSON (a
///    Markdown fence is allowed; else [`FallbackReason::NotJson`]), an object for
///    `json_object`, and satisfy the schema for `json_schema` (else
///    [`FallbackReason::Schema`]);
/// 5. with both a threshold `min_logprob` and a measured `mean_logprob`: `mean_logprob ≥
///    min_logprob` (else [`FallbackReason::LowConfidence`]; a NaN measurement fails). Without a
///    measurement (an endpoint that returns no log-probabilities) confidence is not checked.
///
/// # Errors
/// The first reason found.
pub fn validate_answer(
    answer: &Value,
    request: &Value,
    min_logprob: Option<f64>,
    mean_logprob: Option<f64>,
) -> Result<(), FallbackReason> {
    let calls =
        parse_tool_calls(answer).map_err(|e| FallbackReason::Schema(vec![e.to_string()]))?;
    let text = message_text(answer);
    if calls.is_empty() && text.trim().is_empty() {
        return Err(FallbackReason::Empty);
    }
    let list = |field: &str| request.get(field).and_then(Value::as_array);
    let tools: &[Value] = list("tools")
        .filter(|t| !t.is_empty())
        .or_else(|| list("functions"))
        .map_or(&[], Vec::as_slice);
    let tool_choice = request
        .get("tool_choice")
        .or_else(|| request.get("function_call"));
    let forced: Option<&str> = tool_choice.and_then(|c| {
        c.get("function")
            .and_then(|f| f.get("name"))
            .or_else(|| c.get("name"))
            .and_then(Value::as_str)
    });
    let choice = tool_choice.and_then(Value::as_str);
    if calls.is_empty() {
        if choice == Some("required") || forced.is_some() {
            return Err(FallbackReason::Schema(vec![format!(
                "tool_choice requires a tool call ({}); the answer makes none",
                forced.unwrap_or("required")
            )]));
        }
        check_json(&text, request)?;
    } else {
        for call in &calls {
            if !tools
                .iter()
                .any(|t| tool_name(t) == Some(call.name.as_str()))
            {
                return Err(FallbackReason::UnofferedTool(call.name.clone()));
            }
        }
        let mut errors = Vec::new();
        if choice == Some("none") {
            errors.push("tool_choice is \"none\"; the answer calls a tool".to_owned());
        }
        for (i, call) in calls.iter().enumerate() {
            if let Some(name) = forced
                && call.name != name
            {
                errors.push(format!(
                    "tool_calls[{i}] {}: tool_choice allows only {name}",
                    call.name
                ));
            }
            if let Err(problems) = validate_tool_call(call, tools) {
                errors.extend(
                    problems
                        .into_iter()
                        .map(|p| format!("tool_calls[{i}] {}: {p}", call.name)),
                );
            }
        }
        if !errors.is_empty() {
            return Err(FallbackReason::Schema(errors));
        }
    }
    if let (Some(threshold), Some(got)) = (min_logprob, mean_logprob)
        && (got.is_nan() || got < threshold)
    {
        return Err(FallbackReason::LowConfidence { got, threshold });
    }
    Ok(())
}

/// Step 4 of [`validate_answer`].
fn check_json(text: &str, request: &Value) -> Result<(), FallbackReason> {
    let Some(format) = request.get("response_format") else {
        return Ok(());
    };
    let kind = format.get("type").and_then(Value::as_str);
    if !matches!(kind, Some("json_object" | "json_schema")) {
        return Ok(());
    }
    let Some(json) = parse_json_text(text) else {
        return Err(FallbackReason::NotJson);
    };
    if kind == Some("json_object") && !json.is_object() {
        return Err(FallbackReason::NotJson);
    }
    if kind == Some("json_schema")
        && let Some(schema) = format.get("json_schema").and_then(|s| s.get("schema"))
    {
        validate_json(&json, schema).map_err(FallbackReason::Schema)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(name: &str, args: &str) -> Value {
        json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "c0", "type": "function", "function": {"name": name, "arguments": args}}
        ]})
    }

    fn text(t: &str) -> Value {
        json!({"role": "assistant", "content": t})
    }

    fn weather_request() -> Value {
        json!({"model": "m", "messages": [{"role": "user", "content": "weather in Oslo?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
            "required": ["city"]
        }}}]})
    }

    #[test]
    fn tool_calls_are_checked_against_the_offered_tools() {
        let r = weather_request();
        assert_eq!(
            validate_answer(&call("get_weather", r#"{"city": "Oslo"}"#), &r, None, None),
            Ok(())
        );
        assert_eq!(
            validate_answer(&call("get_time", "{}"), &r, None, None),
            Err(FallbackReason::UnofferedTool("get_time".into()))
        );
        let err =
            validate_answer(&call("get_weather", r#"{"unit": "k"}"#), &r, None, None).unwrap_err();
        assert_eq!(err.code(), "schema");
        let FallbackReason::Schema(errors) = &err else {
            panic!("{err:?}");
        };
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors[0].starts_with("tool_calls[0] get_weather: $.city"),
            "{errors:?}"
        );
        // Unreadable arguments.
        assert_eq!(
            validate_answer(&call("get_weather", "{\"city\": "), &r, None, None)
                .unwrap_err()
                .code(),
            "schema"
        );
        // A request without tools offers none.
        let no_tools = json!({"messages": []});
        assert_eq!(
            validate_answer(&call("get_weather", "{}"), &no_tools, None, None),
            Err(FallbackReason::UnofferedTool("get_weather".into()))
        );
        // Legacy functions and bare (BFCL) definitions.
        let legacy = json!({"messages": [], "functions": [{"name": "f", "parameters": {"type": "dict", "properties": {"n": {"type": "integer"}}}}]});
        assert_eq!(
            validate_answer(&call("f", r#"{"n": 3}"#), &legacy, None, None),
            Ok(())
        );
        assert_eq!(
            validate_answer(&call("f", r#"{"n": "x"}"#), &legacy, None, None)
                .unwrap_err()
                .code(),
            "schema"
        );
    }

    #[test]
    fn tool_choice_is_respected() {
        let mut r = weather_request();
        r["tool_choice"] = json!("required");
        assert_eq!(
            validate_answer(&text("It is sunny."), &r, None, None)
                .unwrap_err()
                .code(),
            "schema"
        );
        r["tool_choice"] = json!("none");
        assert_eq!(
            validate_answer(&call("get_weather", r#"{"city": "Oslo"}"#), &r, None, None)
                .unwrap_err()
                .code(),
            "schema"
        );
        assert_eq!(
            validate_answer(&text("It is sunny."), &r, None, None),
            Ok(())
        );
        r["tool_choice"] = json!({"type": "function", "function": {"name": "get_weather"}});
        assert_eq!(
            validate_answer(&call("get_weather", r#"{"city": "Oslo"}"#), &r, None, None),
            Ok(())
        );
        assert!(validate_answer(&text("sunny"), &r, None, None).is_err());
        r["tool_choice"] = json!("auto");
        assert_eq!(validate_answer(&text("sunny"), &r, None, None), Ok(()));
    }

    #[test]
    fn empty_json_and_confidence() {
        let r = json!({"messages": []});
        assert_eq!(
            validate_answer(&text("  \n"), &r, None, None),
            Err(FallbackReason::Empty)
        );
        assert_eq!(
            validate_answer(
                &json!({"role": "assistant", "content": null, "tool_calls": []}),
                &r,
                None,
                None
            ),
            Err(FallbackReason::Empty)
        );
        let json_req = json!({"messages": [], "response_format": {"type": "json_object"}});
        assert_eq!(
            validate_answer(&text("sure! here"), &json_req, None, None),
            Err(FallbackReason::NotJson)
        );
        assert_eq!(
            validate_answer(&text("[1, 2]"), &json_req, None, None),
            Err(FallbackReason::NotJson)
        );
        assert_eq!(
            validate_answer(&text("```json\n{\"a\": 1}\n```"), &json_req, None, None),
            Ok(())
        );
        let schema_req = json!({"messages": [], "response_format": {"type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}}}});
        assert_eq!(
            validate_answer(&text("{\"a\": 1}"), &schema_req, None, None),
            Ok(())
        );
        assert_eq!(
            validate_answer(&text("{\"b\": 1}"), &schema_req, None, None)
                .unwrap_err()
                .code(),
            "schema"
        );
        // Text is fine when JSON was not asked for.
        assert_eq!(validate_answer(&text("hello"), &r, None, None), Ok(()));

        assert_eq!(
            validate_answer(&text("hi"), &r, Some(-1.0), Some(-0.5)),
            Ok(())
        );
        assert_eq!(
            validate_answer(&text("hi"), &r, Some(-1.0), Some(-1.5)),
            Err(FallbackReason::LowConfidence {
                got: -1.5,
                threshold: -1.0
            })
        );
        assert_eq!(
            validate_answer(&text("hi"), &r, Some(-1.0), Some(f64::NAN))
                .unwrap_err()
                .code(),
            "low_confidence"
        );
        // No measurement: not checked. No threshold: not checked.
        assert_eq!(validate_answer(&text("hi"), &r, Some(-1.0), None), Ok(()));
        assert_eq!(validate_answer(&text("hi"), &r, None, Some(-9.0)), Ok(()));
    }

    #[test]
    fn codes_are_stable() {
        let all = [
            FallbackReason::Empty,
            FallbackReason::UnofferedTool("x".into()),
            FallbackReason::Schema(vec!["e".into()]),
            FallbackReason::NotJson,
            FallbackReason::LowConfidence {
                got: -2.0,
                threshold: -1.0,
            },
            FallbackReason::Timeout,
            FallbackReason::Error("boom".into()),
        ];
        let codes: Vec<&str> = all.iter().map(FallbackReason::code).collect();
        assert_eq!(codes, FallbackReason::CODES);
        for r in &all {
            assert_eq!(r.detail()["reason"], r.code());
            assert!(!r.to_string().is_empty());
        }
        assert_eq!(
            FallbackReason::UnofferedTool("x".into()).detail(),
            json!({"reason": "unoffered_tool", "tool": "x"})
        );
    }
}
