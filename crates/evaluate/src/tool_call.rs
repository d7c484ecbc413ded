//! Tool calls: reading them from a message, comparing them, and checking them against the
//! offered tool definitions.

use crate::canonical::normalized_json;
use crate::error::EvalError;
use crate::schema::validate_json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One function call, its arguments parsed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The function called.
    pub name: String,
    /// Its arguments, parsed from the JSON text the model wrote.
    pub arguments: Value,
}

/// Reads the tool calls of an OpenAI assistant message:
/// `tool_calls: [{"type": "function", "function": {"name", "arguments"}}]`, or the legacy single
/// `function_call: {"name", "arguments"}`. `arguments` may be a JSON string (as OpenAI sends it)
/// or an object; an empty or missing one reads as `{}`. A message without calls gives an empty
/// list.
///
/// # Errors
/// [`EvalError::InvalidArguments`] when an `arguments` string is not JSON;
/// [`EvalError::MalformedToolCall`] when a call has no name or its arguments are neither string
/// nor object; [`EvalError::ToolCallsNotArray`].
pub fn parse_tool_calls(message: &Value) -> Result<Vec<ToolCall>, EvalError> {
    match message.get("tool_calls") {
        None | Some(Value::Null) => {}
        Some(Value::Array(calls)) if !calls.is_empty() => {
            return calls
                .iter()
                .enumerate()
                .map(|(index, call)| {
                    // Some servers put name/arguments at the top level of the call.
                    let function = call.get("function").unwrap_or(call);
                    parse_function(index, function)
                })
                .collect();
        }
        Some(Value::Array(_)) => {}
        Some(_) => return Err(EvalError::ToolCallsNotArray),
    }
    match message.get("function_call") {
        Some(function @ Value::Object(_)) => Ok(vec![parse_function(0, function)?]),
        _ => Ok(Vec::new()),
    }
}

fn parse_function(index: usize, function: &Value) -> Result<ToolCall, EvalError> {
    let Some(name) = function.get("name").and_then(Value::as_str) else {
        return Err(EvalError::MalformedToolCall {
            index,
            reason: "no function name".to_owned(),
        });
    };
    let arguments = match function.get("arguments") {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(Value::String(text)) if text.trim().is_empty() => Value::Object(Default::default()),
        Some(Value::String(text)) => {
            serde_json::from_str(text).map_err(|source| EvalError::InvalidArguments {
                index,
                name: name.to_owned(),
                source,
            })?
        }
        Some(object @ Value::Object(_)) => object.clone(),
        Some(other) => {
            return Err(EvalError::MalformedToolCall {
                index,
                reason: format!("arguments must be a JSON string or an object, got {other}"),
            });
        }
    };
    Ok(ToolCall {
        name: name.to_owned(),
        arguments,
    })
}

/// Whether two lists hold the same multiset of calls: equal names and canonically equal
/// arguments ([`normalized_json`]), in any order (parallel calls have no meaningful order).
pub fn same_tool_calls(pred: &[ToolCall], reference: &[ToolCall]) -> bool {
    if pred.len() != reference.len() {
        return false;
    }
    let keys = |calls: &[ToolCall]| {
        let mut keys: Vec<(String, String)> = calls
            .iter()
            .map(|c| (c.name.clone(), normalized_json(&c.arguments)))
            .collect();
        keys.sort();
        keys
    };
    keys(pred) == keys(reference)
}

/// Whether two assistant messages make the same tool calls ([`same_tool_calls`]). A message whose
/// calls cannot be read ([`parse_tool_calls`] fails) matches nothing. Two messages without any
/// calls match.
pub fn tool_calls_match(pred: &Value, reference: &Value) -> bool {
    match (parse_tool_calls(pred), parse_tool_calls(reference)) {
        (Ok(p), Ok(r)) => same_tool_calls(&p, &r),
        _ => false,
    }
}

/// Checks a call against the offered tools: its name must be one of theirs, and its arguments
/// must satisfy that tool's `parameters` schema ([`validate_json`]). Tools may be in the OpenAI
/// shape `{"type": "function", "function": {"name", "parameters"}}` or bare
/// `{"name", "parameters"}` (as BFCL lists them). A tool without `parameters` takes any object.
///
/// # Errors
/// One readable message per problem, e.g. `unknown tool "get_wether" (offered: get_weather)` or
/// `$.unit: "kelvin" is not one of ["celsius","fahrenheit"]`.
pub fn validate_tool_call(call: &ToolCall, tools: &[Value]) -> Result<(), Vec<String>> {
    let functions: Vec<&Value> = tools.iter().filter_map(tool_function).collect();
    let Some(function) = functions
        .iter()
        .find(|f| f.get("name").and_then(Value::as_str) == Some(call.name.as_str()))
    else {
        let offered: Vec<&str> = functions
            .iter()
            .filter_map(|f| f.get("name").and_then(Value::as_str))
            .collect();
        return Err(vec![format!(
            "unknown tool {} (offered: {})",
            Value::String(call.name.clone()),
            if offered.is_empty() {
                "none".to_owned()
            } else {
                offered.join(", ")
            }
        )]);
    };
    match function.get("parameters") {
        None | Some(Value::Null) => {
            validate_json(&call.arguments, &serde_json::json!({"type": "object"}))
        }
        Some(parameters) => validate_json(&call.arguments, parameters),
    }
}

/// Checks every call of an assistant message ([`validate_tool_call`]); messages are prefixed with
/// the call, e.g. `tool_calls[1] get_weather: $.city: missing required property`. A message that
/// cannot be read fails with the reason; a message without calls passes.
pub fn validate_tool_calls(message: &Value, tools: &[Value]) -> Result<(), Vec<String>> {
    let calls = parse_tool_calls(message).map_err(|e| vec![e.to_string()])?;
    let mut errors = Vec::new();
    for (i, call) in calls.iter().enumerate() {
        if let Err(problems) = validate_tool_call(call, tools) {
            errors.extend(
                problems
                    .into_iter()
                    .map(|p| format!("tool_calls[{i}] {}: {p}", call.name)),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// The object holding `name` and `parameters` in a tool definition, in either shape.
fn tool_function(tool: &Value) -> Option<&Value> {
    match tool.get("function") {
        Some(function @ Value::Object(_)) => Some(function),
        _ if tool.get("name").is_some_and(Value::is_string) => Some(tool),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(name: &str, arguments: &str) -> Value {
        json!({"type": "function", "id": "call_x", "function": {"name": name, "arguments": arguments}})
    }

    fn message(calls: Vec<Value>) -> Value {
        json!({"role": "assistant", "content": null, "tool_calls": calls})
    }

    fn weather_tools() -> Vec<Value> {
        vec![
            json!({"type": "function", "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}
                    },
                    "required": ["city"],
                    "additionalProperties": false
                }
            }}),
            json!({"type": "function", "function": {"name": "now"}}),
        ]
    }

    #[test]
    fn parses_strings_and_objects() {
        let m = json!({"role": "assistant", "tool_calls": [
            call("a", r#"{"x": 1}"#),
            {"type": "function", "function": {"name": "b", "arguments": {"y": [2]}}},
            call("c", ""),
        ]});
        let calls = parse_tool_calls(&m).unwrap();
        assert_eq!(
            calls,
            [
                ToolCall {
                    name: "a".into(),
                    arguments: json!({"x": 1})
                },
                ToolCall {
                    name: "b".into(),
                    arguments: json!({"y": [2]})
                },
                ToolCall {
                    name: "c".into(),
                    arguments: json!({})
                },
            ]
        );
        let legacy = json!({"function_call": {"name": "f", "arguments": "{\"q\": true}"}});
        assert_eq!(
            parse_tool_calls(&legacy).unwrap()[0].arguments,
            json!({"q": true})
        );
        assert!(
            parse_tool_calls(&json!({"content": "hi"}))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn invalid_arguments_are_an_error_not_a_panic() {
        let m = message(vec![
            call("a", "{}"),
            call("get_weather", r#"{"city": "Oslo""#),
        ]);
        match parse_tool_calls(&m) {
            Err(EvalError::InvalidArguments { index, name, .. }) => {
                assert_eq!((index, name.as_str()), (1, "get_weather"));
            }
            other => panic!("expected InvalidArguments, got {other:?}"),
        }
        // ... and it counts as a miss, even against itself.
        assert!(!tool_calls_match(&m, &m));
        assert!(matches!(
            parse_tool_calls(&message(vec![json!({"function": {"arguments": "{}"}})])),
            Err(EvalError::MalformedToolCall { index: 0, .. })
        ));
        assert!(matches!(
            parse_tool_calls(&json!({"tool_calls": {"name": "a"}})),
            Err(EvalError::ToolCallsNotArray)
        ));
        assert!(matches!(
            parse_tool_calls(&message(vec![
                json!({"function": {"name": "a", "arguments": 3}})
            ])),
            Err(EvalError::MalformedToolCall { .. })
        ));
    }

    #[test]
    fn arguments_compare_canonically() {
        let reference = message(vec![call(
            "f",
            r#"{"n": 1, "s": "x", "o": {"b": 2, "a": 1}}"#,
        )]);
        let same = message(vec![call(
            "f",
            r#"{"o": {"a": 1.0, "b": 2e0}, "s": "x", "n": 1.0}"#,
        )]);
        assert!(tool_calls_match(&same, &reference));
        let string_one = message(vec![call(
            "f",
            r#"{"n": "1", "s": "x", "o": {"b": 2, "a": 1}}"#,
        )]);
        assert!(!tool_calls_match(&string_one, &reference));
        let other_value = message(vec![call(
            "f",
            r#"{"n": 2, "s": "x", "o": {"b": 2, "a": 1}}"#,
        )]);
        assert!(!tool_calls_match(&other_value, &reference));
        let other_name = message(vec![call(
            "g",
            r#"{"n": 1, "s": "x", "o": {"b": 2, "a": 1}}"#,
        )]);
        assert!(!tool_calls_match(&other_name, &reference));
        let extra_arg = message(vec![call(
            "f",
            r#"{"n": 1, "s": "x", "o": {"b": 2, "a": 1}, "z": 0}"#,
        )]);
        assert!(!tool_calls_match(&extra_arg, &reference));
    }

    #[test]
    fn parallel_calls_are_an_unordered_multiset() {
        let a = call("get_weather", r#"{"city": "Oslo"}"#);
        let b = call("get_weather", r#"{"city": "Lima"}"#);
        let reference = message(vec![a.clone(), b.clone()]);
        assert!(tool_calls_match(
            &message(vec![b.clone(), a.clone()]),
            &reference
        ));
        // Multiset, not set: duplicates count.
        assert!(!tool_calls_match(
            &message(vec![a.clone(), a.clone()]),
            &reference
        ));
        assert!(!tool_calls_match(&message(vec![a.clone()]), &reference));
        assert!(!tool_calls_match(
            &message(vec![a.clone(), b.clone(), a]),
            &reference
        ));
        // No calls on either side match; calls versus none do not.
        assert!(tool_calls_match(
            &json!({"content": "x"}),
            &json!({"content": "y"})
        ));
        assert!(!tool_calls_match(&json!({"content": "x"}), &reference));
    }

    #[test]
    fn schema_validity() {
        let tools = weather_tools();
        let ok = ToolCall {
            name: "get_weather".into(),
            arguments: json!({"city": "Oslo", "unit": "celsius"}),
        };
        assert!(validate_tool_call(&ok, &tools).is_ok());
        let wrong_name = ToolCall {
            name: "get_wether".into(),
            arguments: json!({"city": "Oslo"}),
        };
        assert_eq!(
            validate_tool_call(&wrong_name, &tools).unwrap_err(),
            [r#"unknown tool "get_wether" (offered: get_weather, now)"#]
        );
        let missing = ToolCall {
            name: "get_weather".into(),
            arguments: json!({"unit": "celsius"}),
        };
        assert_eq!(
            validate_tool_call(&missing, &tools).unwrap_err(),
            ["$.city: missing required property"]
        );
        let bad_enum = ToolCall {
            name: "get_weather".into(),
            arguments: json!({"city": "Oslo", "unit": "kelvin"}),
        };
        assert_eq!(
            validate_tool_call(&bad_enum, &tools).unwrap_err(),
            [r#"$.unit: "kelvin" is not one of ["celsius","fahrenheit"]"#]
        );
        let no_params = ToolCall {
            name: "now".into(),
            arguments: json!({}),
        };
        assert!(validate_tool_call(&no_params, &tools).is_ok());
        let not_object = ToolCall {
            name: "now".into(),
            arguments: json!([1]),
        };
        assert!(validate_tool_call(&not_object, &tools).is_err());
        assert_eq!(
            validate_tool_call(&ok, &[]).unwrap_err(),
            [r#"unknown tool "get_weather" (offered: none)"#]
        );
    }

    #[test]
    fn bfcl_bare_function_docs() {
        // The shape of a BFCL `simple` entry's function list.
        let tools = [json!({
            "name": "calculate_triangle_area",
            "description": "Calculate the area of a triangle given its base and height.",
            "parameters": {
                "type": "dict",
                "properties": {
                    "base": {"type": "float", "description": "The base of the triangle."},
                    "height": {"type": "integer", "description": "The height of the triangle."},
                    "unit": {"type": "string", "description": "The unit of measure.", "default": "units"}
                },
                "required": ["base", "height"]
            }
        })];
        let ok = ToolCall {
            name: "calculate_triangle_area".into(),
            arguments: json!({"base": 10, "height": 5}),
        };
        assert!(validate_tool_call(&ok, &tools).is_ok());
        let bad = ToolCall {
            name: "calculate_triangle_area".into(),
            arguments: json!({"base": "10", "height": 5.5}),
        };
        assert_eq!(
            validate_tool_call(&bad, &tools).unwrap_err(),
            [
                r#"$.base: expected float, got "10""#,
                "$.height: expected integer, got 5.5"
            ]
        );
    }

    #[test]
    fn validating_a_whole_message() {
        let tools = weather_tools();
        let m = message(vec![
            call("get_weather", r#"{"city": "Oslo"}"#),
            call("get_weather", r#"{"city": 7}"#),
        ]);
        assert_eq!(
            validate_tool_calls(&m, &tools).unwrap_err(),
            ["tool_calls[1] get_weather: $.city: expected string, got 7"]
        );
        let broken = message(vec![call("get_weather", "{city: Oslo}")]);
        let errors = validate_tool_calls(&broken, &tools).unwrap_err();
        assert!(
            errors[0].starts_with("tool call 0 (`get_weather`): arguments are not valid JSON"),
            "{errors:?}"
        );
        assert!(validate_tool_calls(&json!({"content": "hi"}), &tools).is_ok());
    }
}
