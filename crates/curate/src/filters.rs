//! Quality filters: calls that must not become training examples.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a call was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FilterReason {
    /// Not a chat completion (e.g. an embeddings call).
    NotChat,
    /// The request or response could not be read as JSON.
    Unparseable,
    /// No response was logged.
    NoResponse,
    /// The upstream answered with an error, was unreachable or timed out.
    UpstreamError,
    /// The client went away or the stream broke before the answer was complete.
    Interrupted,
    /// The answer was cut off by the token limit (`finish_reason = length`).
    FinishLength,
    /// No text and no tool call.
    EmptyOutput,
    /// The model refused.
    Refusal,
    /// A tool call whose arguments are not a JSON object.
    InvalidToolArguments,
    /// A tool call naming a tool that was not offered.
    UnknownTool,
    /// Traffic the gateway generated itself (shadow evaluation of a specialist).
    Shadow,
}

impl FilterReason {
    /// The snake_case name, the key under which [`crate::CurationReport::filtered`] counts it.
    pub fn as_str(self) -> &'static str {
        match self {
            FilterReason::NotChat => "not_chat",
            FilterReason::Unparseable => "unparseable",
            FilterReason::NoResponse => "no_response",
            FilterReason::UpstreamError => "upstream_error",
            FilterReason::Interrupted => "interrupted",
            FilterReason::FinishLength => "finish_length",
            FilterReason::EmptyOutput => "empty_output",
            FilterReason::Refusal => "refusal",
            FilterReason::InvalidToolArguments => "invalid_tool_arguments",
            FilterReason::UnknownTool => "unknown_tool",
            FilterReason::Shadow => "shadow",
        }
    }
}

/// The `[curate.filters]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterConfig {
    /// Leave out answers cut off by the token limit.
    pub drop_truncated: bool,
    /// Leave out refusals.
    pub drop_refusals: bool,
    /// Extra refusal openings (matched case-insensitively at the start of the answer).
    pub refusal_phrases: Vec<String>,
}

impl Default for FilterConfig {
    fn default() -> Self {
        FilterConfig {
            drop_truncated: true,
            drop_refusals: true,
            refusal_phrases: Vec::new(),
        }
    }
}

/// Openings of a refusal, lower-case, apostrophes normalised to `'`.
const REFUSALS: &[&str] = &[
    "i'm sorry, but i can't",
    "i'm sorry, but i cannot",
    "i am sorry, but i cannot",
    "i'm sorry, i can't",
    "i'm sorry, i cannot",
    "sorry, but i can't",
    "sorry, i can't help",
    "i can't help with",
    "i cannot help with",
    "i can't assist with",
    "i cannot assist with",
    "i'm unable to help",
    "i am unable to help",
    "i'm not able to help",
    "i won't be able to help",
    "as an ai language model, i cannot",
    "as an ai, i cannot",
];

/// The tag the router puts on the shadow traffic it generates.
pub const SHADOW_TAG: &str = "downshift_shadow";

/// What the filters look at in a call.
pub struct FilterInput<'a> {
    pub endpoint: &'a str,
    /// `ok`, `upstream_error`, `unreachable`, `timeout`, `interrupted`.
    pub status: &'a str,
    pub shadow: bool,
    pub request: &'a Value,
    pub response: Option<&'a Value>,
}

impl FilterConfig {
    /// `Err(reason)` when the call must be left out.
    pub fn check(&self, c: &FilterInput<'_>) -> Result<(), FilterReason> {
        if c.shadow {
            return Err(FilterReason::Shadow);
        }
        if c.endpoint != "chat/completions" {
            return Err(FilterReason::NotChat);
        }
        match c.status {
            "ok" => {}
            "interrupted" => return Err(FilterReason::Interrupted),
            _ => return Err(FilterReason::UpstreamError),
        }
        let response = c.response.ok_or(FilterReason::NoResponse)?;
        if response.get("error").is_some_and(|e| !e.is_null()) {
            return Err(FilterReason::UpstreamError);
        }
        let choice = response
            .get("choices")
            .and_then(|c| c.get(0))
            .ok_or(FilterReason::EmptyOutput)?;
        if self.drop_truncated
            && choice.get("finish_reason").and_then(Value::as_str) == Some("length")
        {
            return Err(FilterReason::FinishLength);
        }
        let message = choice.get("message").ok_or(FilterReason::EmptyOutput)?;
        let content = message.get("content").and_then(Value::as_str).unwrap_or("");
        let calls = message
            .get("tool_calls")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or(&[]);
        if content.trim().is_empty() && calls.is_empty() {
            if message.get("refusal").is_some_and(|r| !r.is_null()) && self.drop_refusals {
                return Err(FilterReason::Refusal);
            }
            return Err(FilterReason::EmptyOutput);
        }
        if self.drop_refusals && calls.is_empty() && self.is_refusal(content) {
            return Err(FilterReason::Refusal);
        }
        let offered: Vec<&str> = c
            .request
            .get("tools")
            .and_then(Value::as_array)
            .map(|tools| {
                tools
                    .iter()
                    .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default();
        for call in calls {
            let name = call
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !offered.contains(&name) {
                return Err(FilterReason::UnknownTool);
            }
            let args = call
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !matches!(serde_json::from_str::<Value>(args), Ok(Value::Object(_))) {
                return Err(FilterReason::InvalidToolArguments);
            }
        }
        Ok(())
    }

    fn is_refusal(&self, content: &str) -> bool {
        let head: String = content
            .trim_start()
            .chars()
            .take(80)
            .map(|c| if c == '\u{2019}' { '\'' } else { c })
            .collect::<String>()
            .to_lowercase();
        REFUSALS.iter().any(|p| head.starts_with(p))
            || self
                .refusal_phrases
                .iter()
                .any(|p| head.starts_with(&p.to_lowercase()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(status: &str, request: Value, response: Option<Value>) -> Result<(), FilterReason> {
        FilterConfig::default().check(&FilterInput {
            endpoint: "chat/completions",
            status,
            shadow: false,
            request: &request,
            response: response.as_ref(),
        })
    }

    fn answer(message: Value, finish: &str) -> Value {
        json!({"choices": [{"index": 0, "message": message, "finish_reason": finish}]})
    }

    fn tools() -> Value {
        json!({"messages": [], "tools": [{"type": "function", "function": {"name": "get_weather"}}]})
    }

    #[test]
    fn good_calls_pass() {
        assert_eq!(
            check(
                "ok",
                json!({}),
                Some(answer(json!({"content": "Paris."}), "stop")),
            ),
            Ok(())
        );
        let call = json!({"tool_calls": [{"function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]});
        assert_eq!(
            check("ok", tools(), Some(answer(call, "tool_calls"))),
            Ok(())
        );
    }

    #[test]
    fn every_reason_is_detected() {
        let ok = Some(answer(json!({"content": "fine"}), "stop"));
        assert_eq!(
            check("timeout", json!({}), ok.clone()),
            Err(FilterReason::UpstreamError)
        );
        assert_eq!(
            check("interrupted", json!({}), ok.clone()),
            Err(FilterReason::Interrupted)
        );
        assert_eq!(check("ok", json!({}), None), Err(FilterReason::NoResponse));
        assert_eq!(
            check(
                "ok",
                json!({}),
                Some(answer(json!({"content": "half an ans"}), "length"))
            ),
            Err(FilterReason::FinishLength)
        );
        assert_eq!(
            check(
                "ok",
                json!({}),
                Some(answer(json!({"content": "  "}), "stop"))
            ),
            Err(FilterReason::EmptyOutput)
        );
        assert_eq!(
            check(
                "ok",
                json!({}),
                Some(answer(
                    json!({"content": "I’m sorry, but I can’t help with that."}),
                    "stop"
                ))
            ),
            Err(FilterReason::Refusal)
        );
        assert_eq!(
            check(
                "ok",
                json!({}),
                Some(answer(json!({"content": null, "refusal": "No."}), "stop"))
            ),
            Err(FilterReason::Refusal)
        );
        let bad_args = json!({"tool_calls": [{"function": {"name": "get_weather", "arguments": "{\"city\": "}}]});
        assert_eq!(
            check("ok", tools(), Some(answer(bad_args, "tool_calls"))),
            Err(FilterReason::InvalidToolArguments)
        );
        let not_object =
            json!({"tool_calls": [{"function": {"name": "get_weather", "arguments": "[1]"}}]});
        assert_eq!(
            check("ok", tools(), Some(answer(not_object, "tool_calls"))),
            Err(FilterReason::InvalidToolArguments)
        );
        let unknown = json!({"tool_calls": [{"function": {"name": "rm_rf", "arguments": "{}"}}]});
        assert_eq!(
            check("ok", tools(), Some(answer(unknown, "tool_calls"))),
            Err(FilterReason::UnknownTool)
        );
        let cfg = FilterConfig::default();
        let shadow = cfg.check(&FilterInput {
            endpoint: "chat/completions",
            status: "ok",
            shadow: true,
            request: &json!({}),
            response: ok.as_ref(),
        });
        assert_eq!(shadow, Err(FilterReason::Shadow));
        let emb = cfg.check(&FilterInput {
            endpoint: "embeddings",
            status: "ok",
            shadow: false,
            request: &json!({}),
            response: ok.as_ref(),
        });
        assert_eq!(emb, Err(FilterReason::NotChat));
    }

    #[test]
    fn look_alike_answers_are_not_refusals() {
        for text in [
            "Sorry for the wait — here is the forecast.",
            "I can't believe it's Friday! Booked.",
        ] {
            assert_eq!(
                check(
                    "ok",
                    json!({}),
                    Some(answer(json!({"content": text}), "stop"))
                ),
                Ok(())
            );
        }
        let cfg = FilterConfig {
            refusal_phrases: vec!["Nope,".into()],
            ..Default::default()
        };
        assert!(cfg.is_refusal("nope, not doing that"));
    }
}
