//! The call-log interchange formats read by `downshift import` and written by `export`.
//!
//! * OpenAI JSONL: `{"request": <chat completion request>, "response": <chat completion response>,
//!   "metadata": {<string tags>}}`, optionally with `"timestamp"`.
//! * NVIDIA Data Flywheel log records: `{"timestamp", "workload_id", "client_id", "request",
//!   "response"}`; `workload_id` becomes a tag and `client_id` the (pseudonymised) agent.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// The format of an import file's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    /// Decide per line: a line with `workload_id` or `client_id` is a Flywheel record.
    Auto,
    /// `{"request", "response", "timestamp"?, "metadata"?}`: an OpenAI request/response pair.
    OpenAi,
    /// A NVIDIA Data Flywheel log record.
    Flywheel,
}

/// One call read from an import file.
#[derive(Debug, Clone, PartialEq)]
pub struct ImportRecord {
    /// When the call was made, if the record says.
    pub timestamp: Option<DateTime<Utc>>,
    /// The request body.
    pub request: Value,
    /// The response body, if the record has one.
    pub response: Option<Value>,
    /// The record's string metadata, as tags.
    pub tags: BTreeMap<String, String>,
    /// The raw agent identifier; the store pseudonymises it before writing.
    pub agent: Option<String>,
}

/// Parses one line; the error says what is wrong with it.
pub fn parse_import_line(line: &str, format: ImportFormat) -> Result<ImportRecord, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("not valid JSON: {e}"))?;
    let Value::Object(mut obj) = value else {
        return Err("a record must be a JSON object".into());
    };
    let flywheel = match format {
        ImportFormat::Auto => obj.contains_key("workload_id") || obj.contains_key("client_id"),
        ImportFormat::OpenAi => false,
        ImportFormat::Flywheel => true,
    };
    let mut request = obj.remove("request").ok_or("missing \"request\"")?;
    check_request(&request)?;
    let response = match obj.remove("response") {
        None | Some(Value::Null) => None,
        Some(r @ Value::Object(_)) => Some(r),
        Some(_) => return Err("\"response\" must be a JSON object".into()),
    };
    if let Some(r) = &response {
        check_response(r)?;
    }
    // The model that was asked: the request's, else the one the response names (Flywheel
    // records often leave it out of the request). A call with neither is not usable: its
    // answers cannot be priced, routed or attributed.
    if request.get("model").is_none() {
        let answered = response
            .as_ref()
            .and_then(|r| r.get("model"))
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .ok_or("no \"request.model\" and no \"response.model\": the record does not say which model was called")?
            .to_owned();
        if let Value::Object(req) = &mut request {
            req.insert("model".into(), Value::String(answered));
        }
    }
    let timestamp = match obj.remove("timestamp") {
        None | Some(Value::Null) => None,
        Some(t) => Some(parse_timestamp(&t)?),
    };
    let mut tags = BTreeMap::new();
    let mut agent = None;
    if flywheel {
        if let Some(w) = obj.remove("workload_id") {
            tags.insert("workload_id".to_owned(), tag_value("workload_id", &w)?);
        }
        if let Some(c) = obj.remove("client_id") {
            agent = Some(tag_value("client_id", &c)?);
        }
    }
    match obj.remove("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let v = tag_value(&k, &v)?;
                tags.insert(k, v);
            }
        }
        Some(_) => return Err("\"metadata\" must be an object of string tags".into()),
    }
    Ok(ImportRecord {
        timestamp,
        request,
        response,
        tags,
        agent,
    })
}

/// A chat request's shape: `messages` a non-empty array of message objects with a string
/// `role`, and `model`, when present, a non-empty string (when absent, the response must name
/// the model).
fn check_request(request: &Value) -> Result<(), String> {
    let Value::Object(req) = request else {
        return Err("\"request\" must be a JSON object".into());
    };
    match req.get("model") {
        Some(Value::String(m)) if !m.is_empty() => {}
        Some(Value::String(_)) => return Err("\"request.model\" is empty".into()),
        Some(_) => return Err("\"request.model\" must be a string".into()),
        None => {}
    }
    let messages = match req.get("messages") {
        Some(Value::Array(m)) if m.is_empty() => {
            return Err("\"request.messages\" is empty: there is no call to store".into());
        }
        Some(Value::Array(m)) => m,
        Some(_) => return Err("\"request.messages\" must be an array".into()),
        None => return Err("\"request\" has no \"messages\"".into()),
    };
    for (i, m) in messages.iter().enumerate() {
        let Value::Object(m) = m else {
            return Err(format!(
                "\"request.messages[{i}]\" must be a message object"
            ));
        };
        match m.get("role") {
            Some(Value::String(_)) => {}
            Some(_) => return Err(format!("\"request.messages[{i}].role\" must be a string")),
            None => return Err(format!("\"request.messages[{i}]\" has no \"role\"")),
        }
    }
    Ok(())
}

/// A chat response's shape: `choices`, when present, an array of objects.
fn check_response(response: &Value) -> Result<(), String> {
    match response.get("choices") {
        None | Some(Value::Null) => Ok(()),
        Some(Value::Array(c)) => match c.iter().position(|x| !x.is_object()) {
            Some(i) => Err(format!("\"response.choices[{i}]\" must be an object")),
            None => Ok(()),
        },
        Some(_) => Err("\"response.choices\" must be an array".into()),
    }
}

fn tag_value(key: &str, v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        _ => Err(format!("tag \"{key}\" must be a string")),
    }
}

/// RFC 3339 text, or Unix time in seconds (integer or fractional) or milliseconds.
fn parse_timestamp(v: &Value) -> Result<DateTime<Utc>, String> {
    let bad = || format!("\"timestamp\" is not a date: {v}");
    match v {
        Value::String(s) => DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .map_err(|_| bad()),
        Value::Number(n) => {
            let secs = n.as_f64().ok_or_else(bad)?;
            // Values this large are milliseconds (year 33658 in seconds).
            let millis = if secs > 1e12 { secs } else { secs * 1000.0 };
            DateTime::from_timestamp_millis(millis as i64).ok_or_else(bad)
        }
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_openai_records() {
        let r = parse_import_line(
            r#"{"request":{"model":"m","messages":[{"role":"user","content":"x"}]},"response":{"choices":[]},"metadata":{"a":"b","n":3}}"#,
            ImportFormat::Auto,
        )
        .unwrap();
        assert_eq!(r.tags["a"], "b");
        assert_eq!(r.tags["n"], "3");
        assert!(r.response.is_some() && r.agent.is_none() && r.timestamp.is_none());
    }

    #[test]
    fn reads_flywheel_records() {
        let r = parse_import_line(
            r#"{"timestamp":1735689600,"workload_id":"w1","client_id":"agent-7","request":{"messages":[{"role":"user","content":"x"}]},"response":{"model":"llm-1","choices":[]}}"#,
            ImportFormat::Auto,
        )
        .unwrap();
        assert_eq!(r.tags["workload_id"], "w1");
        // The request leaves the model out; the response names it.
        assert_eq!(r.request["model"], "llm-1");
        assert_eq!(r.agent.as_deref(), Some("agent-7"));
        assert_eq!(
            r.timestamp.unwrap().to_rfc3339(),
            "2025-01-01T00:00:00+00:00"
        );
    }

    #[test]
    fn says_what_is_wrong() {
        let cases = [
            ("{", "not valid JSON"),
            ("[]", "JSON object"),
            (r#"{"response":{}}"#, "missing \"request\""),
            (r#"{"request":{"model":"m"}}"#, "no \"messages\""),
            (r#"{"request":{"messages":{}}}"#, "must be an array"),
            (
                r#"{"request":{"messages":[{"role":"user","content":"x"}]},"response":3}"#,
                "\"response\"",
            ),
            (
                r#"{"request":{"model":"m","messages":[{"role":"user","content":"x"}]},"metadata":{"k":[1]}}"#,
                "tag \"k\"",
            ),
            (
                r#"{"request":{"model":"m","messages":[{"role":"user","content":"x"}]},"timestamp":"yesterday"}"#,
                "not a date",
            ),
        ];
        for (line, want) in cases {
            let err = parse_import_line(line, ImportFormat::Auto).unwrap_err();
            assert!(err.contains(want), "{line}: {err}");
        }
    }

    #[test]
    fn wrongly_shaped_records_are_refused_with_a_reason() {
        let cases = [
            (
                r#"{"request":{"model":"m","messages":[1,"x",null]}}"#,
                "messages[0]",
            ),
            (
                r#"{"request":{"model":"m","messages":[{"content":"x"}]}}"#,
                "role",
            ),
            (
                r#"{"request":{"model":"m","messages":[{"role":"user"}]},"response":{"choices":"nope"}}"#,
                "choices",
            ),
            (
                r#"{"request":{"model":"m","messages":[{"role":"user","content":"x"}]},"response":{"choices":[3]}}"#,
                "choices[0]",
            ),
            (
                r#"{"request":{"model":"","messages":[{"role":"user","content":"x"}]}}"#,
                "model",
            ),
            (
                r#"{"request":{"model":7,"messages":[{"role":"user","content":"x"}]}}"#,
                "model",
            ),
            (r#"{"request":{"model":"m"}}"#, "messages"),
            (r#"{"request":[1]}"#, "JSON object"),
        ];
        for (line, want) in cases {
            let err = parse_import_line(line, ImportFormat::Auto).unwrap_err();
            assert!(err.contains(want), "{line}: {err}");
        }
        // No messages, or no model anywhere: a bad line, not a stored call.
        for (line, want) in [
            (r#"{"request":{"model":"m","messages":[]}}"#, "is empty"),
            (
                r#"{"client_id":"c","request":{"messages":[{"role":"user","content":"x"}]}}"#,
                "which model",
            ),
            (
                r#"{"request":{"messages":[{"role":"user","content":"x"}]},"response":{"model":"","choices":[]}}"#,
                "which model",
            ),
        ] {
            let err = parse_import_line(line, ImportFormat::Auto).unwrap_err();
            assert!(err.contains(want), "{line}: {err}");
        }
    }
}
