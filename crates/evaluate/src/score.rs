//! One prediction against one reference: every metric that applies to the kind of output.

use crate::canonical::json_equal;
use crate::fields::field_accuracy;
use crate::label::label_match;
use crate::message::{TaskKind, has_tool_calls, message_text, parse_json_text};
use crate::text::{chrf, normalise_whitespace, rouge_l_f1};
use crate::tool_call::{parse_tool_calls, same_tool_calls, validate_tool_call};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The metrics of one prediction. `None` means "does not apply" (and is skipped when a
/// [`Report`](crate::Report) averages), never "failed".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// The kind's primary metric: see [`score`].
    pub exact: bool,
    /// ToolCall, when tools are given: every predicted call names an offered tool and its
    /// arguments satisfy the tool's schema.
    pub schema_valid: Option<bool>,
    /// Json: [`json_field_accuracy`](crate::json_field_accuracy) (0 when the prediction is not
    /// JSON).
    pub field_accuracy: Option<f64>,
    /// Text: [`rouge_l_f1`].
    pub rouge_l: Option<f64>,
    /// Text: [`chrf`] (0–1).
    pub chrf: Option<f64>,
}

/// Scores a prediction (an OpenAI assistant message, or a bare string) against the LLM's
/// reference answer, for a task whose outputs are of `kind` ([`kind_of`](crate::kind_of) /
/// [`kind_of_many`](crate::kind_of_many)).
///
/// `exact`, by kind:
/// - ToolCall: the same multiset of calls ([`same_tool_calls`]); unreadable calls never match.
///   When this reference makes no call, the prediction must make none either and say the same
///   text (whitespace-normalised).
/// - Json: both parse ([`parse_json_text`]) and are canonically equal. If this reference is not
///   JSON, whitespace-normalised text equality.
/// - Label: [`label_match`].
/// - Text: whitespace-normalised equality.
///
/// For every kind but ToolCall, `exact` also needs both sides to agree on tool calls, so a
/// prediction that calls a tool where the reference answered in text (or calls a different one)
/// never counts as exact.
///
/// `schema_valid` (ToolCall with `tools` given): `false` when the prediction's calls cannot be
/// read, or any fails [`validate_tool_call`], or it makes no call where the reference made one;
/// `None` when neither side calls a tool.
pub fn score(pred: &Value, reference: &Value, tools: Option<&[Value]>, kind: TaskKind) -> Score {
    let pred_calls = parse_tool_calls(pred);
    let ref_calls = parse_tool_calls(reference);
    let calls_agree = match (&pred_calls, &ref_calls) {
        (Ok(p), Ok(r)) => same_tool_calls(p, r),
        _ => false,
    };
    let pred_text = message_text(pred);
    let ref_text = message_text(reference);
    let text_equal = || normalise_whitespace(&pred_text) == normalise_whitespace(&ref_text);
    let mut out = Score::default();
    match kind {
        TaskKind::ToolCall => {
            let reference_calls = has_tool_calls(reference);
            out.exact = calls_agree && (reference_calls || text_equal());
            out.schema_valid = tools.and_then(|tools| match &pred_calls {
                Ok(calls) if calls.is_empty() => reference_calls.then_some(false),
                Ok(calls) => Some(calls.iter().all(|c| validate_tool_call(c, tools).is_ok())),
                Err(_) => Some(false),
            });
        }
        TaskKind::Json => match parse_json_text(&ref_text) {
            Some(ref_json) => {
                let pred_json = parse_json_text(&pred_text);
                out.exact =
                    calls_agree && pred_json.as_ref().is_some_and(|p| json_equal(p, &ref_json));
                out.field_accuracy = Some(
                    pred_json
                        .as_ref()
                        .map_or(0.0, |p| field_accuracy(p, &ref_json)),
                );
            }
            None => out.exact = calls_agree && text_equal(),
        },
        TaskKind::Label => out.exact = calls_agree && label_match(&pred_text, &ref_text),
        TaskKind::Text => {
            out.exact = calls_agree && text_equal();
            out.rouge_l = Some(rouge_l_f1(&pred_text, &ref_text));
            out.chrf = Some(chrf(&pred_text, &ref_text));
        }
    }
    out
}

/// How far a prediction agrees with the reference, in [0, 1], for a router to track: `exact` as
/// 1 or 0 for ToolCall, Json and Label; for Text, 1 when exact and ROUGE-L F1 otherwise.
pub fn agreement(score: &Score, kind: TaskKind) -> f64 {
    let exact = if score.exact { 1.0 } else { 0.0 };
    match kind {
        TaskKind::ToolCall | TaskKind::Json | TaskKind::Label => exact,
        TaskKind::Text if score.exact => 1.0,
        TaskKind::Text => score.rouge_l.unwrap_or(0.0),
    }
}

/// The task's own quality metric for one answer, in [0, 1]: exact match for tool calls and
/// labels, [`json_field_accuracy`](crate::json_field_accuracy) for JSON (partial credit per
/// field; 1 when exact), and for free text 1 when exact, else ROUGE-L F1. Averaged over a
/// task's answers it is the quality a person compares with the LLM's.
pub fn quality(score: &Score, kind: TaskKind) -> f64 {
    match kind {
        TaskKind::Json if score.exact => 1.0,
        TaskKind::Json => score.field_accuracy.unwrap_or(0.0),
        _ => agreement(score, kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(content: &str) -> Value {
        json!({"role": "assistant", "content": content})
    }

    fn calls(calls: &[(&str, &str)]) -> Value {
        let calls: Vec<Value> = calls
            .iter()
            .map(|(name, args)| json!({"type": "function", "function": {"name": name, "arguments": args}}))
            .collect();
        json!({"role": "assistant", "content": null, "tool_calls": calls})
    }

    fn tools() -> Vec<Value> {
        vec![
            json!({"type": "function", "function": {"name": "lookup", "parameters": {
                "type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]
            }}}),
        ]
    }

    #[test]
    fn tool_call_kind() {
        let reference = calls(&[("lookup", r#"{"id": 1}"#), ("lookup", r#"{"id": 2}"#)]);
        let tools = tools();
        let good = score(
            &calls(&[("lookup", r#"{"id": 2.0}"#), ("lookup", r#"{"id": 1}"#)]),
            &reference,
            Some(&tools),
            TaskKind::ToolCall,
        );
        assert_eq!(
            good,
            Score {
                exact: true,
                schema_valid: Some(true),
                ..Score::default()
            }
        );
        assert_eq!(agreement(&good, TaskKind::ToolCall), 1.0);

        let wrong = score(
            &calls(&[("lookup", r#"{"id": "1"}"#), ("lookup", r#"{"id": 2}"#)]),
            &reference,
            Some(&tools),
            TaskKind::ToolCall,
        );
        assert_eq!(
            wrong,
            Score {
                exact: false,
                schema_valid: Some(false),
                ..Score::default()
            }
        );
        assert_eq!(agreement(&wrong, TaskKind::ToolCall), 0.0);

        let broken = score(
            &calls(&[("lookup", "{")]),
            &reference,
            Some(&tools),
            TaskKind::ToolCall,
        );
        assert_eq!(
            broken,
            Score {
                exact: false,
                schema_valid: Some(false),
                ..Score::default()
            }
        );

        let silent = score(
            &text("I'll look it up."),
            &reference,
            Some(&tools),
            TaskKind::ToolCall,
        );
        assert_eq!(
            silent,
            Score {
                exact: false,
                schema_valid: Some(false),
                ..Score::default()
            }
        );

        let unchecked = score(&reference, &reference, None, TaskKind::ToolCall);
        assert_eq!(
            unchecked,
            Score {
                exact: true,
                ..Score::default()
            }
        );
    }

    #[test]
    fn tool_call_task_where_the_reference_answered_in_text() {
        let reference = text("Which order do you mean?");
        let tools = tools();
        let same = score(
            &text("Which order  do you mean?"),
            &reference,
            Some(&tools),
            TaskKind::ToolCall,
        );
        assert_eq!(
            same,
            Score {
                exact: true,
                schema_valid: None,
                ..Score::default()
            }
        );
        let other = score(&text("Sure."), &reference, Some(&tools), TaskKind::ToolCall);
        assert!(!other.exact);
        let called = score(
            &calls(&[("lookup", r#"{"id": 1}"#)]),
            &reference,
            Some(&tools),
            TaskKind::ToolCall,
        );
        assert_eq!(
            called,
            Score {
                exact: false,
                schema_valid: Some(true),
                ..Score::default()
            }
        );
    }

    #[test]
    fn json_kind() {
        let reference = text(r#"{"city": "Paris", "temp": 21, "tags": ["a", "b"]}"#);
        let same = score(
            &text("```json\n{\"tags\": [\"a\", \"b\"], \"temp\": 21.0, \"city\": \"Paris\"}\n```"),
            &reference,
            None,
            TaskKind::Json,
        );
        assert_eq!(
            same,
            Score {
                exact: true,
                field_accuracy: Some(1.0),
                ..Score::default()
            }
        );
        let partial = score(
            &text(r#"{"city": "Paris", "temp": "21", "tags": ["a"]}"#),
            &reference,
            None,
            TaskKind::Json,
        );
        assert_eq!(
            partial,
            Score {
                exact: false,
                field_accuracy: Some(0.5),
                ..Score::default()
            }
        );
        let prose = score(
            &text("It is 21 degrees in Paris."),
            &reference,
            None,
            TaskKind::Json,
        );
        assert_eq!(
            prose,
            Score {
                exact: false,
                field_accuracy: Some(0.0),
                ..Score::default()
            }
        );
        assert_eq!(agreement(&partial, TaskKind::Json), 0.0);
        // A reference that is not JSON falls back to text equality, with no field accuracy.
        let odd = score(&text("n/a"), &text("n/a"), None, TaskKind::Json);
        assert_eq!(
            odd,
            Score {
                exact: true,
                ..Score::default()
            }
        );
    }

    #[test]
    fn quality_is_the_kinds_own_metric() {
        let reference = text(r#"{"name": "Ada", "city": "Oslo", "order": 7, "email": null}"#);
        let two_of_four = score(
            &text(r#"{"name": "Ada", "city": "Bergen", "order": 7, "email": "a@b"}"#),
            &reference,
            None,
            TaskKind::Json,
        );
        assert!(!two_of_four.exact);
        assert_eq!(quality(&two_of_four, TaskKind::Json), 0.5);
        // the exact-match agreement gives no partial credit
        assert_eq!(agreement(&two_of_four, TaskKind::Json), 0.0);
        let same = score(&reference, &reference, None, TaskKind::Json);
        assert_eq!(quality(&same, TaskKind::Json), 1.0);
        let prose = score(&text("sorry"), &reference, None, TaskKind::Json);
        assert_eq!(quality(&prose, TaskKind::Json), 0.0);
        // a reference that is not JSON after all: text equality, no partial credit
        let odd = score(&text("n/a"), &text("n/a"), None, TaskKind::Json);
        assert_eq!(quality(&odd, TaskKind::Json), 1.0);
        for (pred, want) in [("Billing.", 1.0), ("shipping", 0.0)] {
            let s = score(&text(pred), &text("billing"), None, TaskKind::Label);
            assert_eq!(quality(&s, TaskKind::Label), want, "{pred}");
        }
        let call = calls(&[("lookup", r#"{"id": 1}"#)]);
        let other = calls(&[("lookup", r#"{"id": 2}"#)]);
        assert_eq!(
            quality(
                &score(&other, &call, None, TaskKind::ToolCall),
                TaskKind::ToolCall
            ),
            0.0
        );
        let near = score(
            &text("the cat sat"),
            &text("the cat sat down"),
            None,
            TaskKind::Text,
        );
        assert_eq!(quality(&near, TaskKind::Text), near.rouge_l.unwrap());
    }

    #[test]
    fn label_kind() {
        let s = score(&text("Positive."), &text("positive"), None, TaskKind::Label);
        assert_eq!(
            s,
            Score {
                exact: true,
                ..Score::default()
            }
        );
        let bare = score(&json!("negative"), &text("positive"), None, TaskKind::Label);
        assert!(!bare.exact);
        // A prediction that calls a tool is never a label match, even with the same content.
        let mut calling = calls(&[("lookup", "{}")]);
        calling["content"] = json!("positive");
        assert!(!score(&calling, &text("positive"), None, TaskKind::Label).exact);
    }

    #[test]
    fn text_kind() {
        let reference = text("the cat is on the mat");
        let same = score(
            &text("  the cat is\non the mat "),
            &reference,
            None,
            TaskKind::Text,
        );
        assert!(same.exact);
        assert_eq!(agreement(&same, TaskKind::Text), 1.0);
        let near = score(
            &text("the cat sat on the mat"),
            &reference,
            None,
            TaskKind::Text,
        );
        assert!(!near.exact);
        let rouge = near.rouge_l.unwrap();
        assert!((rouge - 5.0 / 6.0).abs() < 1e-12);
        assert_eq!(agreement(&near, TaskKind::Text), rouge);
        assert!(near.chrf.unwrap() > 0.0 && near.chrf.unwrap() < 1.0);
        assert_eq!(near.schema_valid, None);
        assert_eq!(near.field_accuracy, None);
        // Empty against empty is exact even though both similarity scores are 0.
        let empty = score(&text(""), &text(" "), None, TaskKind::Text);
        assert_eq!(agreement(&empty, TaskKind::Text), 1.0);
        assert_eq!(empty.rouge_l, Some(0.0));
    }
}
