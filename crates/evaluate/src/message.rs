//! Reading an assistant message: its text, a JSON answer inside it, and what kind of output it is.

use serde_json::Value;

/// At most this many whitespace-separated words make a [`TaskKind::Label`].
pub const LABEL_MAX_WORDS: usize = 4;
/// At most this many characters (after trimming) make a [`TaskKind::Label`].
pub const LABEL_MAX_CHARS: usize = 40;

/// The shape of an answer, which decides how a prediction is compared with it: the task kind
/// every stage shares.
pub use downshift_api::TaskKind;

/// Classifies one reference answer (an OpenAI assistant message):
///
/// 1. a non-empty `tool_calls` array (or the legacy `function_call`) → [`TaskKind::ToolCall`];
/// 2. content that parses as a JSON object or array ([`parse_json_text`], so a Markdown
///    ```` ```json ```` fence is allowed) → [`TaskKind::Json`];
/// 3. non-empty, single-line content of at most [`LABEL_MAX_WORDS`] words and
///    [`LABEL_MAX_CHARS`] characters after trimming, not starting like JSON (`{`, `[`) →
///    [`TaskKind::Label`] (so `positive`, `billing`, `Paris, France` and `42` are labels; a
///    scalar JSON like `true` is too; a broken `{"a": ` is not);
/// 4. everything else, including empty content → [`TaskKind::Text`].
pub fn kind_of(reference: &Value) -> TaskKind {
    if has_tool_calls(reference) {
        return TaskKind::ToolCall;
    }
    let text = message_text(reference);
    if matches!(
        parse_json_text(&text),
        Some(Value::Object(_) | Value::Array(_))
    ) {
        return TaskKind::Json;
    }
    let trimmed = text.trim();
    if !trimmed.is_empty()
        && !trimmed.starts_with(['{', '['])
        && !trimmed.contains('\n')
        && trimmed.chars().count() <= LABEL_MAX_CHARS
        && trimmed.split_whitespace().count() <= LABEL_MAX_WORDS
    {
        return TaskKind::Label;
    }
    TaskKind::Text
}

/// The kind of a task: the majority of [`kind_of`] over its reference answers. Ties go to the
/// more structured kind (ToolCall, then Json, Label, Text). `None` when there are no answers.
pub fn kind_of_many<'a, I>(references: I) -> Option<TaskKind>
where
    I: IntoIterator<Item = &'a Value>,
{
    let mut counts = [0usize; 4];
    for reference in references {
        let kind = kind_of(reference);
        if let Some(i) = TaskKind::ALL.iter().position(|k| *k == kind) {
            counts[i] += 1;
        }
    }
    let best = counts.iter().copied().max().filter(|n| *n > 0)?;
    // `position` finds the first, i.e. the most structured, of the tied kinds.
    let i = counts.iter().position(|n| *n == best)?;
    Some(TaskKind::ALL[i])
}

/// Whether the message calls at least one tool (`tool_calls` non-empty, or `function_call`).
pub(crate) fn has_tool_calls(message: &Value) -> bool {
    match message.get("tool_calls") {
        Some(Value::Array(calls)) if !calls.is_empty() => true,
        _ => message.get("function_call").is_some_and(Value::is_object),
    }
}

/// The text of a message: its `content` when that is a string; the `text` of its parts, joined by
/// newlines, when it is an array of content parts; empty when absent or null. A bare JSON string
/// is taken as the text itself, so callers holding only text need not wrap it in a message.
pub fn message_text(message: &Value) -> String {
    let content = match message {
        Value::String(s) => return s.clone(),
        Value::Object(map) => map.get("content"),
        _ => None,
    };
    match content {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(|part| match part {
                Value::String(s) => Some(s.as_str()),
                other => other.get("text").and_then(Value::as_str),
            })
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Parses a model's text answer as JSON: the trimmed text itself, or else the body of a single
/// Markdown code fence (```` ```json … ``` ```` or ```` ``` … ``` ````) around it. `None` when
/// neither is JSON.
pub fn parse_json_text(text: &str) -> Option<Value> {
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return None;
    }
    if let Ok(value) = serde_json::from_str(trimmed) {
        return Some(value);
    }
    let body = trimmed.strip_prefix("```")?.strip_suffix("```")?;
    // Drop the info string (`json`, `JSON`, …) on the opening line.
    let body = match body.split_once('\n') {
        Some((info, rest)) if !info.trim_start().starts_with(['{', '[']) => rest,
        _ => body,
    };
    serde_json::from_str(body.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn msg(content: &str) -> Value {
        json!({"role": "assistant", "content": content})
    }

    #[test]
    fn tool_calls_win() {
        let m = json!({"role": "assistant", "content": "{\"a\":1}", "tool_calls": [
            {"type": "function", "function": {"name": "f", "arguments": "{}"}}
        ]});
        assert_eq!(kind_of(&m), TaskKind::ToolCall);
        let legacy = json!({"role": "assistant", "content": null,
            "function_call": {"name": "f", "arguments": "{}"}});
        assert_eq!(kind_of(&legacy), TaskKind::ToolCall);
        // An empty tool_calls array is no call.
        let empty = json!({"role": "assistant", "content": "yes", "tool_calls": []});
        assert_eq!(kind_of(&empty), TaskKind::Label);
    }

    #[test]
    fn json_objects_and_arrays() {
        assert_eq!(kind_of(&msg(r#"{"city": "Paris"}"#)), TaskKind::Json);
        assert_eq!(kind_of(&msg("  [1, 2, 3]\n")), TaskKind::Json);
        assert_eq!(
            kind_of(&msg("```json\n{\"city\": \"Paris\"}\n```")),
            TaskKind::Json
        );
        // Scalars are not JSON outputs; short ones are labels.
        assert_eq!(kind_of(&msg("true")), TaskKind::Label);
        assert_eq!(kind_of(&msg("42")), TaskKind::Label);
        // Broken JSON is text, even when short.
        assert_eq!(kind_of(&msg(r#"{"city": "Paris", "#)), TaskKind::Text);
        assert_eq!(kind_of(&msg("[1, 2")), TaskKind::Text);
    }

    #[test]
    fn labels_versus_text() {
        assert_eq!(kind_of(&msg("positive")), TaskKind::Label);
        assert_eq!(kind_of(&msg(" Paris, France. ")), TaskKind::Label);
        assert_eq!(kind_of(&msg("one two three four")), TaskKind::Label);
        assert_eq!(kind_of(&msg("one two three four five")), TaskKind::Text);
        assert_eq!(kind_of(&msg("yes\nno")), TaskKind::Text);
        assert_eq!(
            kind_of(&msg("Supercalifragilisticexpialidocious-and-then-some")),
            TaskKind::Text
        );
        assert_eq!(kind_of(&msg("")), TaskKind::Text);
        assert_eq!(
            kind_of(&json!({"role": "assistant", "content": null})),
            TaskKind::Text
        );
    }

    #[test]
    fn majority_kind_with_structured_ties() {
        let refs = [
            msg("yes"),
            msg("no"),
            msg("a much longer answer in prose here"),
        ];
        assert_eq!(kind_of_many(&refs), Some(TaskKind::Label));
        let tie = [msg("yes"), msg("a much longer answer in prose here")];
        assert_eq!(kind_of_many(&tie), Some(TaskKind::Label));
        assert_eq!(kind_of_many(&[]), None);
    }

    #[test]
    fn text_of_content_parts_and_bare_strings() {
        let m = json!({"role": "assistant", "content": [
            {"type": "text", "text": "hello"}, {"type": "text", "text": "world"}
        ]});
        assert_eq!(message_text(&m), "hello\nworld");
        assert_eq!(message_text(&json!("plain")), "plain");
        assert_eq!(message_text(&json!({"role": "assistant"})), "");
    }

    #[test]
    fn json_in_fences() {
        assert_eq!(parse_json_text("```\n[1]\n```"), Some(json!([1])));
        assert_eq!(
            parse_json_text("```JSON\n{\"a\": 1}```"),
            Some(json!({"a": 1}))
        );
        assert_eq!(parse_json_text("```{\"a\": 1}```"), Some(json!({"a": 1})));
        assert_eq!(parse_json_text("not json"), None);
        assert_eq!(parse_json_text("   "), None);
    }
}
