//! What the log keeps of a streamed answer: the chat completion re-assembled from its chunks, the
//! Responses API's final `response` object, or a legacy text completion put back together.

use std::collections::BTreeMap;

use downshift_api::{SseParser, StreamAssembler, Usage};
use serde_json::{Map, Value, json};

use crate::proxy::Endpoint;

/// Collects a streamed answer, chunk by chunk, for the log.
pub enum Collector {
    Chat(StreamAssembler),
    Events(EventLog),
}

impl Collector {
    pub fn for_endpoint(endpoint: Endpoint) -> Collector {
        match endpoint {
            Endpoint::Responses => Collector::Events(EventLog::new(true)),
            Endpoint::Completions => Collector::Events(EventLog::new(false)),
            Endpoint::ChatCompletions | Endpoint::Embeddings => {
                Collector::Chat(StreamAssembler::new())
            }
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        match self {
            Collector::Chat(a) => a.feed(bytes),
            Collector::Events(e) => e.feed(bytes),
        }
    }

    /// Whether output (text, a tool call, any delta) has arrived: the first token.
    pub fn has_output(&self) -> bool {
        match self {
            Collector::Chat(a) => a.has_output(),
            Collector::Events(e) => e.output,
        }
    }

    /// Whether the stream ended properly.
    pub fn is_complete(&self) -> bool {
        match self {
            Collector::Chat(a) => a.is_complete(),
            Collector::Events(e) => e.done,
        }
    }

    /// The answer as one object, as far as it arrived.
    pub fn finish(&self) -> Value {
        match self {
            Collector::Chat(a) => a.finish(),
            Collector::Events(e) => e.finish(),
        }
    }
}

/// Token usage from an answer object, in either naming: `prompt_tokens`/`completion_tokens`
/// (chat, completions) or `input_tokens`/`output_tokens` (the Responses API).
pub fn usage_of(answer: &Value) -> Option<Usage> {
    let u = answer.get("usage").filter(|u| u.is_object())?;
    let n = |a: &str, b: &str| {
        u.get(a)
            .or_else(|| u.get(b))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Some(Usage {
        prompt_tokens: n("prompt_tokens", "input_tokens"),
        completion_tokens: n("completion_tokens", "output_tokens"),
    })
}

/// The events of a Responses API stream (`responses`) or the chunks of a legacy completions
/// stream.
pub struct EventLog {
    responses: bool,
    parser: SseParser,
    done: bool,
    output: bool,
    /// The Responses API's terminal `response` (completed, incomplete or failed).
    last: Option<Value>,
    /// Completions: `id`, `created`, `model` of the first chunk; the usage chunk.
    head: Map<String, Value>,
    usage: Option<Value>,
    /// Text so far per choice (completions) or per output item (responses), and finish reasons.
    text: BTreeMap<u64, String>,
    finish: BTreeMap<u64, Value>,
}

impl EventLog {
    fn new(responses: bool) -> EventLog {
        EventLog {
            responses,
            parser: SseParser::new(),
            done: false,
            output: false,
            last: None,
            head: Map::new(),
            usage: None,
            text: BTreeMap::new(),
            finish: BTreeMap::new(),
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        for data in self.parser.feed(bytes) {
            let data = data.trim();
            if data == "[DONE]" {
                self.done = true;
                continue;
            }
            let Ok(Value::Object(event)) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            if self.responses {
                self.response_event(event);
            } else {
                self.completion_chunk(event);
            }
        }
    }

    fn response_event(&mut self, mut event: Map<String, Value>) {
        let kind = event.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "response.completed" | "response.incomplete" | "response.failed" => {
                self.done = true;
                self.last = event.remove("response");
            }
            "response.created" | "response.in_progress" => {
                self.last = event.remove("response");
            }
            "error" => {
                self.done = true;
                self.last = Some(json!({"object": "response", "status": "failed",
                    "error": Value::Object(event)}));
            }
            "response.output_text.delta" => {
                self.output = true;
                let i = event
                    .get("output_index")
                    .and_then(Value::as_u64)
                    .unwrap_or(0);
                if let Some(d) = event.get("delta").and_then(Value::as_str) {
                    self.text.entry(i).or_default().push_str(d);
                }
            }
            k if k.ends_with(".delta") => self.output = true,
            _ => {}
        }
    }

    fn completion_chunk(&mut self, chunk: Map<String, Value>) {
        for key in ["id", "created", "model", "system_fingerprint"] {
            if let Some(v) = chunk.get(key).filter(|v| !v.is_null()) {
                self.head.entry(key).or_insert_with(|| v.clone());
            }
        }
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = Some(u.clone());
        }
        for choice in chunk
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let i = choice.get("index").and_then(Value::as_u64).unwrap_or(0);
            if let Some(t) = choice.get("text").and_then(Value::as_str) {
                self.output |= !t.is_empty();
                self.text.entry(i).or_default().push_str(t);
            }
            if let Some(f) = choice.get("finish_reason").filter(|f| !f.is_null()) {
                self.finish.insert(i, f.clone());
            }
        }
    }

    fn finish(&self) -> Value {
        if self.responses {
            // The final object when it came; otherwise what was known, marked unfinished, with
            // the text streamed so far.
            let mut out = match &self.last {
                Some(Value::Object(m)) => m.clone(),
                _ => Map::new(),
            };
            out.entry("object").or_insert_with(|| json!("response"));
            if !self.done {
                out.insert("status".into(), json!("interrupted"));
                let text: String = self.text.values().map(String::as_str).collect();
                out.insert("output_text".into(), json!(text));
            }
            return Value::Object(out);
        }
        let mut out = self.head.clone();
        out.insert("object".into(), json!("text_completion"));
        let choices: Vec<Value> = self
            .text
            .iter()
            .map(|(i, t)| {
                json!({"index": i, "text": t, "logprobs": null,
                    "finish_reason": self.finish.get(i).cloned().unwrap_or(Value::Null)})
            })
            .collect();
        out.insert("choices".into(), Value::Array(choices));
        if let Some(u) = &self.usage {
            out.insert("usage".into(), u.clone());
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_split(c: &mut Collector, body: &str) {
        // Split at odd places: the collector must not care where network chunks end.
        for piece in body.as_bytes().chunks(7) {
            c.feed(piece);
        }
    }

    #[test]
    fn a_responses_stream_keeps_its_final_response() {
        let mut c = Collector::for_endpoint(Endpoint::Responses);
        feed_split(
            &mut c,
            "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"id\":\"r1\",\"status\":\"in_progress\"}}\n\n\
             event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"output_index\":0,\"delta\":\"Hel\"}\n\n",
        );
        assert!(c.has_output() && !c.is_complete());
        let partial = c.finish();
        assert_eq!(partial["status"], "interrupted");
        assert_eq!(partial["output_text"], "Hel");
        assert_eq!(partial["id"], "r1");
        feed_split(
            &mut c,
            "event: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"id\":\"r1\",\"status\":\"completed\",\"output\":[],\"usage\":{\"input_tokens\":5,\"output_tokens\":2}}}\n\n",
        );
        assert!(c.is_complete());
        let done = c.finish();
        assert_eq!(done["status"], "completed");
        let u = usage_of(&done).unwrap();
        assert_eq!((u.prompt_tokens, u.completion_tokens), (5, 2));
    }

    #[test]
    fn a_completions_stream_is_put_back_together() {
        let mut c = Collector::for_endpoint(Endpoint::Completions);
        feed_split(
            &mut c,
            "data: {\"id\":\"c1\",\"model\":\"m\",\"choices\":[{\"index\":0,\"text\":\"Hello\",\"finish_reason\":null}]}\n\n\
             data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"text\":\" world\",\"finish_reason\":\"stop\"}]}\n\n",
        );
        assert!(c.has_output() && !c.is_complete());
        feed_split(
            &mut c,
            "data: {\"id\":\"c1\",\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\ndata: [DONE]\n\n",
        );
        assert!(c.is_complete());
        let v = c.finish();
        assert_eq!(v["choices"][0]["text"], "Hello world");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["model"], "m");
        assert_eq!(usage_of(&v).unwrap().completion_tokens, 2);
    }
}
