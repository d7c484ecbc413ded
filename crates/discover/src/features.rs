//! Per-call features: the structural signature (system prompt, tools offered, tools called,
//! output kind) and the variable text (the newest user/tool turns) that gets embedded.
//!
//! Tags are never read here: they exist only to evaluate the clustering.

use downshift_api::TaskKind;
use serde_json::Value;

/// One call as discovery sees it: the decrypted request and response of a chat completion.
#[derive(Debug, Clone)]
pub struct CallInput {
    /// The call's id in the store.
    pub id: String,
    /// The model the request named; its price is looked up by it.
    pub model: String,
    /// The chat-completion request as logged.
    pub request: Value,
    /// `Value::Null` when the call has no (parsable) response.
    pub response: Value,
    /// Usage as logged; estimated from the text when absent.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens as logged; estimated from the answer when absent.
    pub completion_tokens: Option<u64>,
}

/// The name discovery gives an answer's kind in signatures, shapes and labels: `tool`,
/// `json`, `label`, `text`, or `none` for no usable answer (kept as first written, so the
/// signatures, and with them the task ids, of a database stay what they were).
pub fn kind_tag(kind: Option<TaskKind>) -> &'static str {
    match kind {
        Some(TaskKind::ToolCall) => "tool",
        Some(k) => k.as_str(),
        None => "none",
    }
}

/// The order ties between kinds are broken in (free text first, no answer last), as before
/// the kinds were shared.
pub(crate) fn kind_rank(kind: Option<TaskKind>) -> u8 {
    match kind {
        Some(TaskKind::Text) => 0,
        Some(TaskKind::Label) => 1,
        Some(TaskKind::Json) => 2,
        Some(TaskKind::ToolCall) => 3,
        None => 4,
    }
}

/// A tool offered in the request: its name and a hash of its whole definition.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ToolRef {
    /// The function name.
    pub name: String,
    /// Hash of the tool's whole canonical definition: the same name with another schema is
    /// another tool.
    pub def_hash: u64,
}

/// The features of one call.
#[derive(Debug, Clone)]
pub struct CallFeatures {
    /// The system (and developer) messages, joined.
    pub system: String,
    /// Tools offered, sorted by name.
    pub tools: Vec<ToolRef>,
    /// Names of the tools called in the answer, sorted, deduplicated.
    pub called: Vec<String>,
    /// What the model answered with (none: no usable answer).
    pub kind: Option<TaskKind>,
    /// Top-level keys of a JSON answer, sorted.
    pub json_keys: Vec<String>,
    /// The newest user/tool turns: the part of the prompt that varies from call to call.
    pub variable: String,
    /// The text of the answer (its first [`MAX_ANSWER_CHARS`] bytes): how it relates to the
    /// material of the request is a feature of the job ([`crate::relation`]).
    pub answer: String,
    /// Prompt tokens: the logged usage, else about one per 4 characters of the messages.
    pub prompt_tokens: u64,
    /// Completion tokens: the logged usage, else about one per 4 characters of the answer and
    /// its tool calls.
    pub completion_tokens: u64,
}

impl CallFeatures {
    /// The shape of the answer, for output-format consistency: tool names, JSON keys, or kind.
    pub fn output_shape(&self) -> String {
        match self.kind {
            Some(TaskKind::ToolCall) => format!("tool:{}", self.called.join("+")),
            Some(TaskKind::Json) => format!("json:{{{}}}", self.json_keys.join(",")),
            k => kind_tag(k).to_owned(),
        }
    }
}

/// FNV-1a, 64 bit: a hash that is the same on every machine and run (ids derive from it).
pub fn fnv64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Hash of a JSON value that does not depend on key order or whitespace.
pub fn canonical_hash(v: &Value) -> u64 {
    let mut s = String::new();
    canonical(v, &mut s);
    fnv64(s.as_bytes())
}

fn canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            out.push('{');
            for k in keys {
                out.push_str(&Value::String(k.clone()).to_string());
                out.push(':');
                canonical(&m[k], out);
                out.push(',');
            }
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for x in a {
                canonical(x, out);
                out.push(',');
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// The text of a message's `content`: a string, or the text parts of a list.
pub fn content_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str).or_else(|| p.as_str()))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// Most bytes of an answer's text kept in [`CallFeatures::answer`].
pub const MAX_ANSWER_CHARS: usize = 2048;

/// Rough token count of a text (≈ 4 characters per token) when usage was not logged.
fn estimate_tokens(chars: usize) -> u64 {
    (chars as u64).div_ceil(4).max(1)
}

/// A JSON answer: the content parses as an object or array (a ```json fence is allowed).
fn parse_json_content(text: &str) -> Option<Value> {
    let mut t = text.trim();
    if let Some(rest) = t.strip_prefix("```") {
        let rest = rest.strip_prefix("json").unwrap_or(rest);
        t = rest.trim().strip_suffix("```")?.trim();
    }
    if !(t.starts_with('{') || t.starts_with('[')) {
        return None;
    }
    serde_json::from_str::<Value>(t)
        .ok()
        .filter(|v| v.is_object() || v.is_array())
}

/// Extracts the features of one call.
pub fn extract(call: &CallInput) -> CallFeatures {
    let messages = call
        .request
        .get("messages")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let role = |m: &Value| {
        m.get("role")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };

    let system = messages
        .iter()
        .filter(|m| matches!(role(m).as_str(), "system" | "developer"))
        .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
        .collect::<Vec<_>>()
        .join("\n");

    // The newest turns: user and tool messages after the last assistant message.
    let last_assistant = messages.iter().rposition(|m| role(m) == "assistant");
    let start = last_assistant.map_or(0, |i| i + 1);
    let mut turns: Vec<String> = messages[start..]
        .iter()
        .filter(|m| matches!(role(m).as_str(), "user" | "tool" | "function"))
        .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)))
        .filter(|t| !t.trim().is_empty())
        .collect();
    if turns.is_empty()
        && let Some(u) = messages.iter().rev().find(|m| role(m) == "user")
    {
        turns.push(content_text(u.get("content").unwrap_or(&Value::Null)));
    }
    let variable = turns.join("\n");

    let mut tools: Vec<ToolRef> = call
        .request
        .get("tools")
        .and_then(Value::as_array)
        .map(|ts| {
            ts.iter()
                .filter_map(|t| {
                    let f = t.get("function").unwrap_or(t);
                    let name = f.get("name")?.as_str()?.to_owned();
                    Some(ToolRef {
                        name,
                        def_hash: canonical_hash(t),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    tools.sort();
    tools.dedup_by(|a, b| a.name == b.name);

    let message = call
        .response
        .get("choices")
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("message"));
    let mut called: Vec<String> = message
        .and_then(|m| m.get("tool_calls"))
        .and_then(Value::as_array)
        .map(|tcs| {
            tcs.iter()
                .filter_map(|tc| {
                    tc.get("function")
                        .and_then(|f| f.get("name"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .collect()
        })
        .unwrap_or_default();
    called.sort();
    called.dedup();
    let content = message
        .and_then(|m| m.get("content"))
        .map(content_text)
        .unwrap_or_default();
    let mut json_keys = Vec::new();
    let kind = if !called.is_empty() {
        Some(TaskKind::ToolCall)
    } else if let Some(v) = parse_json_content(&content) {
        if let Value::Object(m) = &v {
            json_keys = m.keys().cloned().collect();
            json_keys.sort();
        }
        Some(TaskKind::Json)
    } else if !content.trim().is_empty() {
        Some(TaskKind::Text)
    } else {
        None
    };

    let prompt_tokens = call.prompt_tokens.unwrap_or_else(|| {
        let chars: usize = messages
            .iter()
            .map(|m| content_text(m.get("content").unwrap_or(&Value::Null)).len())
            .sum();
        estimate_tokens(chars)
    });
    let completion_tokens = call.completion_tokens.unwrap_or_else(|| {
        let calls_len = message
            .and_then(|m| m.get("tool_calls"))
            .map_or(0, |t| t.to_string().len());
        estimate_tokens(content.len() + calls_len)
    });

    let mut answer_end = content.len().min(MAX_ANSWER_CHARS);
    while !content.is_char_boundary(answer_end) {
        answer_end -= 1;
    }
    CallFeatures {
        system,
        tools,
        called,
        kind,
        json_keys,
        variable,
        answer: content[..answer_end].to_owned(),
        prompt_tokens,
        completion_tokens,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn call(request: Value, response: Value) -> CallInput {
        CallInput {
            id: "c".into(),
            model: "m".into(),
            request,
            response,
            prompt_tokens: None,
            completion_tokens: None,
        }
    }

    #[test]
    fn tool_calls_json_and_text_answers() {
        let req = json!({"messages": [
            {"role": "system", "content": "You route requests."},
            {"role": "user", "content": "old"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "weather in Paris"}]}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]});
        let tool = json!({"choices": [{"message": {"role": "assistant", "content": null,
            "tool_calls": [{"function": {"name": "get_weather", "arguments": "{}"}}]}}]});
        let f = extract(&call(req.clone(), tool));
        assert_eq!(f.system, "You route requests.");
        assert_eq!(f.variable, "weather in Paris");
        assert_eq!(f.kind, Some(TaskKind::ToolCall));
        assert_eq!(f.called, ["get_weather"]);
        assert_eq!(f.tools.len(), 1);
        assert_eq!(f.output_shape(), "tool:get_weather");

        let js =
            json!({"choices": [{"message": {"content": "```json\n{\"b\": 1, \"a\": 2}\n```"}}]});
        let f = extract(&call(req.clone(), js));
        assert_eq!(f.kind, Some(TaskKind::Json));
        assert_eq!(f.json_keys, ["a", "b"]);

        let text = json!({"choices": [{"message": {"content": "It is sunny."}}]});
        assert_eq!(extract(&call(req.clone(), text)).kind, Some(TaskKind::Text));
        assert_eq!(extract(&call(req, Value::Null)).kind, None);
    }

    #[test]
    fn canonical_hash_ignores_key_order() {
        let a: Value = serde_json::from_str(r#"{"a": 1, "b": [1, {"x": 2, "y": 3}]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"b": [1, {"y": 3, "x": 2}], "a": 1}"#).unwrap();
        assert_eq!(canonical_hash(&a), canonical_hash(&b));
        assert_ne!(canonical_hash(&a), canonical_hash(&json!({"a": 2})));
    }
}
