//! A read-only view of the fields of a request the gateway routes on.

use serde::Deserialize;
use serde_json::Value;

/// What the gateway needs from a `/v1/chat/completions` (or `/v1/embeddings`) body. Everything
/// else stays in the raw bytes, which are forwarded untouched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestView {
    /// The `model` asked for.
    pub model: String,
    /// Whether the answer is streamed.
    pub stream: bool,
    /// Whether a streamed answer ends with a usage chunk (`stream_options.include_usage`).
    pub include_usage: bool,
}

#[derive(Deserialize)]
struct RawView {
    #[serde(default)]
    model: Option<Value>,
    #[serde(default)]
    stream: Option<Value>,
    #[serde(default)]
    stream_options: Option<Value>,
}

impl RequestView {
    /// Reads the view out of a request body. The error message is meant for the client.
    pub fn parse(body: &[u8]) -> Result<RequestView, String> {
        // Deserialising into a three-field struct skips everything else without building it.
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return match serde_json::from_slice::<Value>(body) {
                Ok(_) => Err("the request body must be a JSON object".into()),
                Err(e) => Err(format!("the request body is not valid JSON: {e}")),
            };
        }
        let raw: RawView = serde_json::from_slice(body)
            .map_err(|e| format!("the request body is not valid JSON: {e}"))?;
        let model = match raw.model {
            Some(Value::String(m)) if !m.is_empty() => m,
            Some(Value::String(_)) | None | Some(Value::Null) => {
                return Err("you must provide a model parameter".into());
            }
            Some(_) => return Err("'model' must be a string".into()),
        };
        let stream = match raw.stream {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => b,
            Some(_) => return Err("'stream' must be a boolean".into()),
        };
        let include_usage = raw
            .stream_options
            .as_ref()
            .and_then(|o| o.get("include_usage"))
            .and_then(Value::as_bool)
            .unwrap_or(false);
        Ok(RequestView {
            model,
            stream,
            include_usage,
        })
    }
}

/// Token usage as reported by the upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Tokens of the prompt.
    pub prompt_tokens: u64,
    /// Tokens of the completion.
    pub completion_tokens: u64,
}

/// The `usage` of a chat completion (or embeddings) response, when it reports one.
pub fn usage_of(response: &Value) -> Option<Usage> {
    let usage = response.get("usage")?;
    if usage.is_null() {
        return None;
    }
    Some(Usage {
        prompt_tokens: usage
            .get("prompt_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
        completion_tokens: usage
            .get("completion_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_model_and_stream_flags() {
        let v = RequestView::parse(
            br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"x":1}"#,
        )
        .unwrap();
        assert_eq!(v.model, "gpt-4o");
        assert!(v.stream && v.include_usage);
        let v = RequestView::parse(br#"{"model":"m","messages":[]}"#).unwrap();
        assert!(!v.stream && !v.include_usage);
    }

    #[test]
    fn rejects_bad_bodies_with_a_reason() {
        assert!(
            RequestView::parse(b"{not json")
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(
            RequestView::parse(b"[1]")
                .unwrap_err()
                .contains("JSON object")
        );
        assert!(RequestView::parse(b"{}").unwrap_err().contains("model"));
        assert!(
            RequestView::parse(br#"{"model":3}"#)
                .unwrap_err()
                .contains("string")
        );
        assert!(
            RequestView::parse(br#"{"model":"m","stream":"yes"}"#)
                .unwrap_err()
                .contains("boolean")
        );
    }

    #[test]
    fn usage_is_read_when_present() {
        let r: Value =
            serde_json::from_str(r#"{"usage":{"prompt_tokens":5,"completion_tokens":7}}"#).unwrap();
        assert_eq!(
            usage_of(&r),
            Some(Usage {
                prompt_tokens: 5,
                completion_tokens: 7
            })
        );
        assert_eq!(usage_of(&serde_json::json!({"usage": null})), None);
    }
}
