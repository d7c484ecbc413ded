//! The masked view of a request: what discovery embeds, labels with and shows.
//!
//! A job is its instruction, not the values it works on, so every text discovery reads for
//! meaning or writes into task metadata goes through [`Masker::mask`] first:
//!
//! 1. entities found by the curate crate's PII detector (names, e-mails, phones, addresses,
//!    ids, …) become their type, e.g. `<PERSON>`, `<EMAIL>`;
//! 2. quoted spans (`"…"`, `“…”`, `«…»`, `` `…` ``) become `<QUOTE>`;
//! 3. any token holding a digit (numbers, order numbers, dates, times, amounts) becomes `<NUM>`
//!    (a run of them, e.g. a phone number split by spaces, one `<NUM>`).
//!
//! [`instruction_part`] cuts the imperative head off a user turn ("Translate into French:",
//! "Summarise this in one sentence:") so the instruction outweighs the material it works on.

use downshift_curate::{Detector, PiiConfig};

/// The mask tokens this module writes.
pub const MASKS: &[&str] = &["<NUM>", "<QUOTE>"];

/// Masks entities and values in text (see the module docs). Cheap to clone, `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Masker {
    detector: Detector,
}

/// One call as `tasks show` and the web UI show it: the masked variable input, the output's
/// shape, and the masked output (text, and each tool call by its tool and argument names — the
/// values are material). `{"call_id", "input", "output_shape", "output"}`.
pub fn masked_sample(masker: &Masker, call: &crate::CallInput) -> serde_json::Value {
    use serde_json::Value;
    let f = crate::features::extract(call);
    let message = call
        .response
        .pointer("/choices/0/message")
        .unwrap_or(&Value::Null);
    let mut output = crate::features::content_text(message.get("content").unwrap_or(&Value::Null));
    if let Some(calls) = message.get("tool_calls").and_then(Value::as_array) {
        for c in calls {
            let f = c.get("function").unwrap_or(&Value::Null);
            let args: Vec<String> = f
                .get("arguments")
                .and_then(Value::as_str)
                .and_then(|a| serde_json::from_str::<Value>(a).ok())
                .and_then(|a| a.as_object().map(|o| o.keys().cloned().collect()))
                .unwrap_or_default();
            output.push_str(&format!(
                "{}({}) ",
                f.get("name").and_then(Value::as_str).unwrap_or(""),
                args.join(", ")
            ));
        }
    }
    serde_json::json!({"call_id": call.id, "input": masker.mask(&f.variable),
        "output_shape": f.output_shape(), "output": masker.mask(&output)})
}

/// Quote pairs whose content is material, not instruction.
const QUOTES: &[(char, char)] = &[('"', '"'), ('“', '”'), ('«', '»'), ('`', '`'), ('„', '“')];

impl Masker {
    /// A masker with the detector's default policy (every entity type).
    pub fn new() -> Result<Masker, downshift_curate::CurateError> {
        Ok(Masker {
            detector: Detector::new(&PiiConfig::default())?,
        })
    }

    /// The masked view of `text`.
    pub fn mask(&self, text: &str) -> String {
        let entities = self.detector.detect(text);
        let mut out = String::with_capacity(text.len());
        let mut last = 0;
        for e in &entities {
            if e.start < last || e.end > text.len() {
                continue;
            }
            out.push_str(&text[last..e.start]);
            out.push('<');
            out.push_str(e.kind.as_str());
            out.push('>');
            last = e.end;
        }
        out.push_str(&text[last..]);
        normalise_values(&mask_quotes(&out))
    }
}

/// Quoted spans → `<QUOTE>`. An unclosed quote is left alone.
fn mask_quotes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    'outer: while let Some((i, open)) = rest
        .char_indices()
        .find(|(_, c)| QUOTES.iter().any(|(o, _)| o == c))
    {
        let close = QUOTES
            .iter()
            .find(|(o, _)| *o == open)
            .map_or(open, |(_, c)| *c);
        let after = &rest[i + open.len_utf8()..];
        if let Some(j) = after.find(close)
            && j > 0
        {
            out.push_str(&rest[..i]);
            out.push_str("<QUOTE>");
            rest = &after[j + close.len_utf8()..];
            continue 'outer;
        }
        out.push_str(&rest[..i + open.len_utf8()]);
        rest = after;
    }
    out.push_str(rest);
    out
}

fn is_edge_punct(c: char) -> bool {
    matches!(
        c,
        ',' | '.' | ';' | ':' | '!' | '?' | '(' | ')' | '[' | ']' | '{' | '}' | '\'' | '¿' | '¡'
    )
}

/// Tokens holding a digit → `<NUM>`; consecutive ones collapse. Whitespace becomes one space
/// (newlines are kept: they delimit instructions).
fn normalise_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (n, line) in text.split('\n').enumerate() {
        if n > 0 {
            out.push('\n');
        }
        let mut prev_num = false;
        let mut first = true;
        for tok in line.split_whitespace() {
            let core_start = tok.find(|c: char| !is_edge_punct(c)).unwrap_or(tok.len());
            let core_end = tok
                .rfind(|c: char| !is_edge_punct(c))
                .map_or(core_start, |i| {
                    i + tok[i..].chars().next().map_or(1, char::len_utf8)
                });
            let core = &tok[core_start..core_end.max(core_start)];
            let numeric = core.chars().any(|c| c.is_ascii_digit()) && !core.starts_with('<');
            if numeric && prev_num && core_start == 0 {
                // `+33 612 345` → one value; keep trailing punctuation.
                out.push_str(&tok[core_end..]);
                continue;
            }
            if !first {
                out.push(' ');
            }
            first = false;
            if numeric {
                out.push_str(&tok[..core_start]);
                out.push_str("<NUM>");
                out.push_str(&tok[core_end..]);
                prev_num = core_end == tok.len();
            } else {
                out.push_str(tok);
                prev_num = false;
            }
        }
    }
    out
}

/// The imperative head of a user turn — the router's own rule, so that discovery splits by what
/// the router reads (see [`downshift_route::instruction_head`]).
pub use downshift_route::instruction_head as instruction_part;

/// Text with the mask tokens (`<…>` in capitals) removed, for term extraction.
pub fn strip_masks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('<') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find('>') {
            Some(j)
                if j > 0
                    && after[..j]
                        .chars()
                        .all(|c| c.is_ascii_uppercase() || c == '_' || c == '*') =>
            {
                out.push(' ');
                rest = &after[j + 1..];
            }
            _ => {
                out.push('<');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entities_numbers_and_quotes_are_masked() {
        let m = Masker::new().unwrap();
        let s = m.mask(
            "Hi, I'm Carla Rossi (carla.rossi@example.com). Order #48213 of 2026-03-04, call +33 612 345 678.",
        );
        assert!(!s.contains("carla.rossi@example.com"), "{s}");
        assert!(s.contains("<EMAIL>"), "{s}");
        assert!(
            !s.contains("48213") && !s.contains("2026") && !s.contains("612"),
            "{s}"
        );
        assert!(s.contains("Order <NUM>"), "{s}");
        let q = m.mask("Translate to Italian please: \"Good morning, Bob\" and 'this'");
        assert!(q.starts_with("Translate to Italian please: <QUOTE>"), "{q}");
        assert_eq!(normalise_values("a  b\nc 12 34, d"), "a b\nc <NUM>, d");
        assert_eq!(normalise_values("ORD-1 (A-22)."), "<NUM> (<NUM>).");
    }

    #[test]
    fn strip_masks_removes_mask_tokens_only() {
        assert_eq!(strip_masks("call <PERSON> at <NUM> <b>"), "call   at   <b>");
    }
}
