//! The Responses API (`/v1/responses`) read as a chat completion.
//!
//! The gateway logs a Responses-API call as it was sent and answered (the request's `input`
//! items and `instructions`, the final `response` object). Curation, discovery and training
//! work on chat messages, so [`responses_as_chat`] restates such a call in chat-completions
//! form: `instructions` become the system message, `input` items become messages (function
//! calls and their outputs become assistant `tool_calls` and `tool` messages), function tools
//! move under `function`, `text.format` becomes `response_format`, and the `output` items become
//! the assistant message of `choices[0]`. What has no chat equivalent (reasoning items, built-in
//! tools such as web search, images) is left out; a call whose answer has neither text nor a
//! function call gives an answer with empty content, which curation's filters then drop.

use serde_json::{Map, Value, json};

/// A Responses-API request and its logged answer as a chat-completions request and answer.
/// `None` when the request is not a Responses-API request (no `input`).
pub fn responses_as_chat(request: &Value, response: Option<&Value>) -> Option<(Value, Value)> {
    let input = request.get("input")?;
    let mut messages = Vec::new();
    if let Some(s) = request.get("instructions").and_then(Value::as_str)
        && !s.is_empty()
    {
        messages.push(json!({"role": "system", "content": s}));
    }
    match input {
        Value::String(s) => messages.push(json!({"role": "user", "content": s})),
        Value::Array(items) => {
            for item in items {
                push_item(&mut messages, item);
            }
        }
        _ => return None,
    }
    let mut chat = Map::new();
    if let Some(m) = request.get("model") {
        chat.insert("model".into(), m.clone());
    }
    chat.insert("messages".into(), Value::Array(messages));
    let tools: Vec<Value> = request
        .get("tools")
        .and_then(Value::as_array)
        .map(|ts| ts.iter().filter_map(function_tool).collect())
        .unwrap_or_default();
    if !tools.is_empty() {
        chat.insert("tools".into(), Value::Array(tools));
    }
    if let Some(f) = request.pointer("/text/format").and_then(response_format) {
        chat.insert("response_format".into(), f);
    }
    for (from, to) in [
        ("temperature", "temperature"),
        ("top_p", "top_p"),
        ("max_output_tokens", "max_tokens"),
        ("tool_choice", "tool_choice"),
        ("stream", "stream"),
    ] {
        if let Some(v) = request.get(from) {
            chat.insert(to.into(), v.clone());
        }
    }
    let answer = response.map(chat_answer).unwrap_or(Value::Null);
    Some((Value::Object(chat), answer))
}

/// The text of a content field: a string, or the text parts of a list joined.
fn content_text(content: Option<&Value>) -> String {
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// One `input` item as chat messages; consecutive function calls join one assistant message.
fn push_item(messages: &mut Vec<Value>, item: &Value) {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("message");
    match kind {
        "message" => {
            let Some(role) = item.get("role").and_then(Value::as_str) else {
                return;
            };
            let role = if role == "developer" { "system" } else { role };
            messages.push(json!({"role": role, "content": content_text(item.get("content"))}));
        }
        "function_call" => {
            let call = tool_call(item);
            if let Some(last) = messages.last_mut()
                && last.get("role").and_then(Value::as_str) == Some("assistant")
                && let Some(calls) = last.get_mut("tool_calls").and_then(Value::as_array_mut)
            {
                calls.push(call);
                return;
            }
            messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
        }
        "function_call_output" => {
            let output = match item.get("output") {
                Some(Value::String(s)) => s.clone(),
                Some(v @ Value::Array(_)) => content_text(Some(v)),
                Some(v) => v.to_string(),
                None => String::new(),
            };
            messages.push(json!({
                "role": "tool",
                "tool_call_id": item.get("call_id").cloned().unwrap_or(Value::Null),
                "content": output,
            }));
        }
        // Reasoning items, built-in tool calls, item references: no chat equivalent.
        _ => {}
    }
}

/// A `function_call` item as a chat `tool_calls` entry.
fn tool_call(item: &Value) -> Value {
    let id = item
        .get("call_id")
        .or_else(|| item.get("id"))
        .cloned()
        .unwrap_or(Value::Null);
    json!({
        "id": id,
        "type": "function",
        "function": {
            "name": item.get("name").cloned().unwrap_or(Value::Null),
            "arguments": item.get("arguments").cloned().unwrap_or_else(|| json!("{}")),
        },
    })
}

/// A Responses-API function tool (`{"type": "function", "name", "parameters", …}`) in chat form;
/// built-in tools (`web_search`, `file_search`, …) have none.
fn function_tool(tool: &Value) -> Option<Value> {
    if tool.get("type").and_then(Value::as_str) != Some("function") {
        return None;
    }
    if tool.get("function").is_some() {
        return Some(tool.clone());
    }
    let mut function = Map::new();
    for key in ["name", "description", "parameters", "strict"] {
        if let Some(v) = tool.get(key) {
            function.insert(key.into(), v.clone());
        }
    }
    Some(json!({"type": "function", "function": function}))
}

/// `text.format` as a chat `response_format`.
fn response_format(format: &Value) -> Option<Value> {
    match format.get("type").and_then(Value::as_str)? {
        "json_schema" => {
            let mut schema = Map::new();
            for key in ["name", "schema", "strict", "description"] {
                if let Some(v) = format.get(key) {
                    schema.insert(key.into(), v.clone());
                }
            }
            Some(json!({"type": "json_schema", "json_schema": schema}))
        }
        "json_object" => Some(json!({"type": "json_object"})),
        _ => None,
    }
}

/// A logged Responses-API `response` object as a chat completion.
fn chat_answer(response: &Value) -> Value {
    let mut out = Map::new();
    for key in ["id", "model"] {
        if let Some(v) = response.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    out.insert("object".into(), json!("chat.completion"));
    if let Some(e) = response.get("error").filter(|e| !e.is_null()) {
        out.insert("error".into(), e.clone());
    }
    if let Some(u) = response.get("usage").filter(|u| u.is_object()) {
        let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
        let (p, c) = (n("input_tokens"), n("output_tokens"));
        out.insert(
            "usage".into(),
            json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}),
        );
    }
    let mut text = String::new();
    let mut calls = Vec::new();
    for item in response
        .get("output")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        match item.get("type").and_then(Value::as_str) {
            Some("message") => {
                let t = content_text(item.get("content"));
                if !t.is_empty() && !text.is_empty() {
                    text.push('\n');
                }
                text.push_str(&t);
            }
            Some("function_call") => calls.push(tool_call(item)),
            _ => {}
        }
    }
    let finish = if !calls.is_empty() {
        "tool_calls"
    } else if response.get("status").and_then(Value::as_str) == Some("incomplete")
        && response
            .pointer("/incomplete_details/reason")
            .and_then(Value::as_str)
            == Some("max_output_tokens")
    {
        "length"
    } else {
        "stop"
    };
    let mut message = json!({"role": "assistant", "content": text});
    if !calls.is_empty() {
        message["content"] = if text.is_empty() {
            Value::Null
        } else {
            json!(text)
        };
        message["tool_calls"] = Value::Array(calls);
    }
    if response.get("output").is_some() {
        out.insert(
            "choices".into(),
            json!([{"index": 0, "message": message, "finish_reason": finish}]),
        );
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_text_call_becomes_system_user_and_assistant_messages() {
        let req = json!({"model": "gpt-4.1", "instructions": "Classify the intent.",
            "input": "where is my parcel?", "temperature": 0, "max_output_tokens": 20});
        let resp = json!({"id": "resp_1", "object": "response", "status": "completed",
            "model": "gpt-4.1", "output": [{"type": "message", "role": "assistant",
            "content": [{"type": "output_text", "text": "track_order", "annotations": []}]}],
            "usage": {"input_tokens": 12, "output_tokens": 2, "total_tokens": 14}});
        let (chat, answer) = responses_as_chat(&req, Some(&resp)).unwrap();
        assert_eq!(
            chat,
            json!({"model": "gpt-4.1", "messages": [
                {"role": "system", "content": "Classify the intent."},
                {"role": "user", "content": "where is my parcel?"}],
                "temperature": 0, "max_tokens": 20})
        );
        assert_eq!(answer["choices"][0]["message"]["content"], "track_order");
        assert_eq!(answer["choices"][0]["finish_reason"], "stop");
        assert_eq!(answer["usage"]["prompt_tokens"], 12);
        assert_eq!(answer["usage"]["total_tokens"], 14);
    }

    #[test]
    fn function_tools_calls_and_outputs_map_to_their_chat_forms() {
        let req = json!({"model": "m", "input": [
            {"role": "developer", "content": "Use the tools."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "weather in Oslo and Rome"}]},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"},
            {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": "{\"city\":\"Rome\"}"},
            {"type": "function_call_output", "call_id": "c1", "output": "3C"},
            {"type": "reasoning", "summary": []},
            {"type": "function_call_output", "call_id": "c2", "output": "19C"}],
            "tools": [{"type": "function", "name": "get_weather", "description": "d",
                "parameters": {"type": "object"}, "strict": true}, {"type": "web_search"}],
            "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}}});
        let resp = json!({"status": "completed", "output": [
            {"type": "reasoning", "summary": []},
            {"type": "function_call", "call_id": "c3", "name": "get_weather", "arguments": "{\"city\":\"Lima\"}"}]});
        let (chat, answer) = responses_as_chat(&req, Some(&resp)).unwrap();
        let m = chat["messages"].as_array().unwrap();
        assert_eq!(m.len(), 5, "{m:?}");
        assert_eq!(m[0]["role"], "system");
        assert_eq!(m[1]["content"], "weather in Oslo and Rome");
        assert_eq!(m[2]["tool_calls"].as_array().unwrap().len(), 2);
        assert_eq!(
            m[2]["tool_calls"][1]["function"]["arguments"],
            "{\"city\":\"Rome\"}"
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "c1", "content": "3C"})
        );
        assert_eq!(m[4]["tool_call_id"], "c2");
        assert_eq!(
            chat["tools"],
            json!([{"type": "function", "function": {"name": "get_weather", "description": "d",
                "parameters": {"type": "object"}, "strict": true}}])
        );
        assert_eq!(chat["response_format"]["json_schema"]["name"], "w");
        let msg = &answer["choices"][0]["message"];
        assert_eq!(msg["content"], Value::Null);
        assert_eq!(msg["tool_calls"][0]["id"], "c3");
        assert_eq!(msg["tool_calls"][0]["function"]["name"], "get_weather");
        assert_eq!(answer["choices"][0]["finish_reason"], "tool_calls");
    }

    #[test]
    fn truncated_failed_and_foreign_calls_say_so() {
        let req = json!({"input": "long story"});
        let cut = json!({"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"},
            "output": [{"type": "message", "content": [{"type": "output_text", "text": "Once"}]}]});
        let (_, a) = responses_as_chat(&req, Some(&cut)).unwrap();
        assert_eq!(a["choices"][0]["finish_reason"], "length");
        let failed = json!({"status": "failed", "error": {"code": "server_error", "message": "x"}});
        let (_, a) = responses_as_chat(&req, Some(&failed)).unwrap();
        assert_eq!(a["error"]["code"], "server_error");
        assert!(a.get("choices").is_none());
        let (_, a) = responses_as_chat(&req, None).unwrap();
        assert!(a.is_null());
        assert!(responses_as_chat(&json!({"messages": []}), None).is_none());
        assert!(responses_as_chat(&json!({"input": 3}), None).is_none());
    }
}
