//! Streamed chat completions: re-assembling the chunks into the response object a non-streaming
//! call would have returned (for the call log), and the reverse (for servers that stream).

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::SseParser;

/// Rebuilds a `chat.completion` from `chat.completion.chunk` events, merging deltas the way the
/// official OpenAI client does: strings concatenate, numbers add, `index` and `type` are replaced,
/// objects merge recursively, and lists of objects merge element-wise by their `index`.
#[derive(Debug, Default)]
pub struct StreamAssembler {
    parser: SseParser,
    head: Map<String, Value>,
    choices: BTreeMap<u64, ChoiceAcc>,
    usage: Option<Value>,
    error: Option<Value>,
    done: bool,
    chunks: u64,
    malformed: u64,
}

#[derive(Debug, Default)]
struct ChoiceAcc {
    message: Map<String, Value>,
    finish_reason: Option<Value>,
    logprobs: Option<Value>,
}

impl StreamAssembler {
    /// An assembler that has seen no chunk.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds raw body bytes (any split).
    pub fn feed(&mut self, bytes: &[u8]) {
        for data in self.parser.feed(bytes) {
            self.push_event(&data);
        }
    }

    /// Feeds the data of one server-sent event.
    pub fn push_event(&mut self, data: &str) {
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            return;
        }
        let chunk: Value = match serde_json::from_str(data) {
            Ok(Value::Object(map)) => Value::Object(map),
            _ => {
                self.malformed += 1;
                return;
            }
        };
        self.chunks += 1;
        if let Some(err) = chunk.get("error") {
            self.error = Some(err.clone());
        }
        for key in [
            "id",
            "created",
            "model",
            "system_fingerprint",
            "service_tier",
        ] {
            if let Some(v) = chunk.get(key).filter(|v| !v.is_null()) {
                self.head.entry(key).or_insert_with(|| v.clone());
            }
        }
        if let Some(usage) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(usage.clone());
        }
        let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
            return;
        };
        for choice in choices {
            let index = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            let acc = self.choices.entry(index).or_default();
            if let Some(Value::Object(delta)) = choice.get("delta") {
                accumulate(&mut acc.message, delta);
            }
            if let Some(fr) = choice.get("finish_reason").filter(|v| !v.is_null()) {
                acc.finish_reason = Some(fr.clone());
            }
            if let Some(lp) = choice.get("logprobs").filter(|v| !v.is_null()) {
                match (&mut acc.logprobs, lp) {
                    (Some(Value::Object(have)), Value::Object(more)) => accumulate(have, more),
                    (slot, _) => *slot = Some(lp.clone()),
                }
            }
        }
    }

    /// Whether the stream ended properly (`data: [DONE]`, or a final `finish_reason` on every
    /// choice for servers that omit `[DONE]`).
    pub fn is_complete(&self) -> bool {
        self.done
            || (!self.choices.is_empty()
                && self.choices.values().all(|c| c.finish_reason.is_some())
                && !self.parser.has_partial())
    }

    /// Whether any choice has produced output yet: content, a refusal or a tool call (the
    /// moment that counts as the first token; a bare role delta does not).
    pub fn has_output(&self) -> bool {
        self.choices.values().any(|c| {
            ["content", "refusal"].iter().any(|k| {
                c.message
                    .get(*k)
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
            }) || c.message.get("tool_calls").is_some_and(|t| !t.is_null())
        })
    }

    /// An error object the stream carried, if any.
    pub fn error(&self) -> Option<&Value> {
        self.error.as_ref()
    }

    /// Number of chunks seen, and of events that were not JSON objects.
    pub fn counts(&self) -> (u64, u64) {
        (self.chunks, self.malformed)
    }

    /// The usage the stream reported, if it did.
    pub fn usage(&self) -> Option<&Value> {
        self.usage.as_ref()
    }

    /// The assembled `chat.completion` object.
    pub fn finish(&self) -> Value {
        let mut out = Map::new();
        out.insert(
            "id".into(),
            self.head.get("id").cloned().unwrap_or(Value::Null),
        );
        out.insert("object".into(), Value::String("chat.completion".into()));
        for key in ["created", "model", "system_fingerprint", "service_tier"] {
            if let Some(v) = self.head.get(key) {
                out.insert(key.into(), v.clone());
            }
        }
        let choices: Vec<Value> = self
            .choices
            .iter()
            .map(|(index, acc)| {
                let mut message = acc.message.clone();
                message
                    .entry("role")
                    .or_insert_with(|| Value::String("assistant".into()));
                message.entry("content").or_insert(Value::Null);
                // A non-streamed message carries no `index` on its tool calls.
                if let Some(Value::Array(calls)) = message.get_mut("tool_calls") {
                    for call in calls.iter_mut() {
                        if let Value::Object(c) = call {
                            c.remove("index");
                        }
                    }
                }
                json!({
                    "index": index,
                    "message": Value::Object(message),
                    "logprobs": acc.logprobs.clone().unwrap_or(Value::Null),
                    "finish_reason": acc.finish_reason.clone().unwrap_or(Value::Null),
                })
            })
            .collect();
        out.insert("choices".into(), Value::Array(choices));
        if let Some(u) = &self.usage {
            out.insert("usage".into(), u.clone());
        }
        Value::Object(out)
    }
}

/// Merges `delta` into `acc` with the OpenAI client's rules.
fn accumulate(acc: &mut Map<String, Value>, delta: &Map<String, Value>) {
    for (key, dv) in delta {
        let Some(av) = acc.get_mut(key) else {
            acc.insert(key.clone(), dv.clone());
            continue;
        };
        if av.is_null() || key == "index" || key == "type" {
            *av = dv.clone();
            continue;
        }
        match (av, dv) {
            (Value::String(a), Value::String(d)) => a.push_str(d),
            (Value::Number(a), Value::Number(d)) => {
                let sum = match (a.as_i64(), d.as_i64()) {
                    (Some(x), Some(y)) => Value::from(x.saturating_add(y)),
                    _ => Value::from(a.as_f64().unwrap_or(0.0) + d.as_f64().unwrap_or(0.0)),
                };
                if let Value::Number(n) = sum {
                    *a = n;
                }
            }
            (Value::Object(a), Value::Object(d)) => accumulate(a, d),
            (Value::Array(a), Value::Array(d)) => {
                if a.iter().all(|x| !x.is_object()) && d.iter().all(|x| !x.is_object()) {
                    a.extend(d.iter().cloned());
                    continue;
                }
                for entry in d {
                    let Some(i) = entry.get("index").and_then(Value::as_u64) else {
                        a.push(entry.clone());
                        continue;
                    };
                    let index_of = |x: &Value| x.get("index").and_then(Value::as_u64);
                    match a.iter().position(|x| index_of(x) == Some(i)) {
                        Some(p) => {
                            if let (Value::Object(have), Value::Object(e)) = (&mut a[p], entry) {
                                accumulate(have, e);
                            }
                        }
                        None => {
                            // Keep the list ordered by index, as the client's list positions are.
                            let at = a
                                .iter()
                                .position(|x| index_of(x).is_some_and(|j| j > i))
                                .unwrap_or(a.len());
                            a.insert(at, entry.clone());
                        }
                    }
                }
            }
            (av, dv) => *av = dv.clone(),
        }
    }
}

/// Splits a `chat.completion` into the `chat.completion.chunk` objects a server streams for it:
/// a role delta, content in small pieces, each tool call as a header delta followed by argument
/// fragments, a final delta with the finish reason, and (when asked) a usage-only chunk.
pub fn response_to_chunks(response: &Value, include_usage: bool) -> Vec<Value> {
    let id = response.get("id").cloned().unwrap_or(Value::Null);
    let created = response.get("created").cloned().unwrap_or(Value::from(0));
    let model = response.get("model").cloned().unwrap_or(Value::Null);
    let make = |choices: Value, usage: Option<Value>| {
        let mut chunk = json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": choices,
        });
        if include_usage && let Value::Object(m) = &mut chunk {
            m.insert("usage".into(), usage.unwrap_or(Value::Null));
        }
        chunk
    };
    let delta = |index: &Value, d: Value| json!([{"index": index, "delta": d, "logprobs": null, "finish_reason": null}]);
    let mut out = Vec::new();
    let empty = Vec::new();
    let choices = response
        .get("choices")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    for choice in choices {
        let index = choice.get("index").cloned().unwrap_or(Value::from(0));
        let message = choice.get("message").cloned().unwrap_or(json!({}));
        let first_content = match message.get("content") {
            Some(Value::String(_)) => json!(""),
            _ => Value::Null,
        };
        out.push(make(
            delta(
                &index,
                json!({"role": "assistant", "content": first_content}),
            ),
            None,
        ));
        if let Some(content) = message.get("content").and_then(Value::as_str) {
            for piece in pieces(content, 16) {
                out.push(make(delta(&index, json!({ "content": piece })), None));
            }
        }
        if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
            out.push(make(delta(&index, json!({ "refusal": refusal })), None));
        }
        if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
            for (i, call) in calls.iter().enumerate() {
                let f = call.get("function").cloned().unwrap_or(json!({}));
                out.push(make(
                    delta(
                        &index,
                        json!({"tool_calls": [{
                            "index": i, "id": call.get("id"), "type": "function",
                            "function": {"name": f.get("name"), "arguments": ""},
                        }]}),
                    ),
                    None,
                ));
                let args = f.get("arguments").and_then(Value::as_str).unwrap_or("");
                for piece in pieces(args, 12) {
                    out.push(make(
                        delta(
                            &index,
                            json!({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}),
                        ),
                        None,
                    ));
                }
            }
        }
        let finish = choice.get("finish_reason").cloned().unwrap_or(Value::Null);
        out.push(make(
            json!([{"index": index, "delta": {}, "logprobs": null, "finish_reason": finish}]),
            None,
        ));
    }
    if include_usage {
        out.push(make(json!([]), response.get("usage").cloned()));
    }
    out
}

/// Splits text into pieces of at most `max` characters, on character boundaries.
fn pieces(text: &str, max: usize) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut count = 0;
    for (i, _) in text.char_indices() {
        if count == max {
            out.push(&text[start..i]);
            start = i;
            count = 0;
        }
        count += 1;
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Value {
        json!({
            "id": "chatcmpl-1", "object": "chat.completion", "created": 7, "model": "m",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Héllo wörld, this is a longer answer 🌍.",
                "tool_calls": [
                    {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\",\"unit\":\"c\"}"}},
                    {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": "{\"tz\":\"Europe/Paris\"}"}}
                ]}, "logprobs": null, "finish_reason": "tool_calls"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30}
        })
    }

    #[test]
    fn chunks_reassemble_to_the_original() {
        let resp = sample();
        let chunks = response_to_chunks(&resp, true);
        let mut body = String::new();
        for c in &chunks {
            body.push_str(&format!("data: {c}\n\n"));
        }
        body.push_str("data: [DONE]\n\n");
        let bytes = body.as_bytes();
        // Whatever the network split, the assembled response is the original.
        for step in [1usize, 7, 64, bytes.len()] {
            let mut asm = StreamAssembler::new();
            for part in bytes.chunks(step) {
                asm.feed(part);
            }
            assert!(asm.is_complete());
            assert_eq!(asm.finish(), resp, "step {step}");
        }
    }

    #[test]
    fn merges_like_the_openai_client() {
        let mut asm = StreamAssembler::new();
        asm.push_event(r#"{"id":"x","model":"m","created":1,"choices":[{"index":0,"delta":{"role":"assistant","tool_calls":[{"index":1,"id":"c1","type":"function","function":{"name":"b","arguments":"{\"y\""}}]}}]}"#);
        asm.push_event(r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c0","type":"function","function":{"name":"a","arguments":"{}"}}]}}]}"#);
        asm.push_event(r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":":2}"}}]},"finish_reason":"tool_calls"}]}"#);
        assert!(asm.has_output());
        asm.push_event("not json");
        let out = asm.finish();
        let calls = out["choices"][0]["message"]["tool_calls"]
            .as_array()
            .unwrap();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0]["function"]["name"], "a");
        assert_eq!(calls[1]["function"]["arguments"], "{\"y\":2}");
        assert_eq!(calls[1]["id"], "c1");
        assert!(calls[1].get("index").is_none());
        assert_eq!(out["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(asm.counts(), (3, 1));
        assert!(!asm.is_complete() || asm.choices.values().all(|c| c.finish_reason.is_some()));
    }

    #[test]
    fn a_role_delta_is_not_output() {
        let mut asm = StreamAssembler::new();
        asm.push_event(r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#);
        assert!(!asm.has_output());
        asm.push_event(r#"{"choices":[{"index":0,"delta":{"content":"H"}}]}"#);
        assert!(asm.has_output());
    }

    #[test]
    fn an_interrupted_stream_is_incomplete() {
        let mut asm = StreamAssembler::new();
        asm.feed(
            b"data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\ndata: {\"cho",
        );
        assert!(!asm.is_complete());
        assert_eq!(asm.finish()["choices"][0]["message"]["content"], "Hi");
    }

    #[test]
    fn pieces_respect_char_boundaries() {
        assert_eq!(pieces("aé🌍b", 2), vec!["aé", "🌍b"]);
        assert!(pieces("", 3).is_empty());
    }
}
