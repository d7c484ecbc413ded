//! The masked view of a text: entities replaced by their type, values normalised — what
//! discovery embeds, labels with and shows, and what the router's centroid layer reads, so
//! that both split and place requests by the job, not by the values in them.
//!
//! 1. entities found by the curate crate's PII detector (names, e-mails, phones, addresses,
//!    ids, …) become their type, e.g. `<PERSON>`, `<EMAIL>`;
//! 2. quoted spans (`"…"`, `“…”`, `«…»`, `` `…` ``) become `<QUOTE>`;
//! 3. any token holding a digit (numbers, order numbers, dates, times, amounts) becomes `<NUM>`
//!    (a run of them, e.g. a phone number split by spaces, one `<NUM>`).

use std::sync::OnceLock;

use downshift_curate::{Detector, PiiConfig};

/// The mask tokens this module writes.
pub const MASKS: &[&str] = &["<NUM>", "<QUOTE>"];

/// Masks entities and values in text (see the module docs). Cheap to clone, `Send + Sync`.
#[derive(Clone, Debug)]
pub struct Masker {
    detector: Detector,
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
        normalise_values(&mask_quotes(&self.entities(text)))
    }

    /// `text` with its entities masked only: what the router reads. Its n-grams take any word
    /// holding a digit as one number word already, and a tool result's JSON (quoted keys, no
    /// spaces) must keep its keys: they tell an agent's steps apart.
    pub fn mask_entities(&self, text: &str) -> String {
        self.entities(text)
    }

    /// Entities → `<TYPE>`.
    fn entities(&self, text: &str) -> String {
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
        out
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

/// The process-wide masker the classifier reads requests through (built once, on first use;
/// `None` when the detector cannot be built, and the router then reads the unmasked text).
pub(crate) fn shared() -> Option<&'static Masker> {
    static MASKER: OnceLock<Option<Masker>> = OnceLock::new();
    MASKER.get_or_init(|| Masker::new().ok()).as_ref()
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
        let v = m.mask_entities("{\"user_id\":\"u12\",\"email\":\"carla.rossi@example.com\"}");
        assert!(v.contains("\"user_id\"") && v.contains("<EMAIL>"), "{v}");
        assert_eq!(normalise_values("a  b\nc 12 34, d"), "a b\nc <NUM>, d");
        assert_eq!(normalise_values("ORD-1 (A-22)."), "<NUM> (<NUM>).");
    }

    #[test]
    fn strip_masks_removes_mask_tokens_only() {
        assert_eq!(strip_masks("call <PERSON> at <NUM> <b>"), "call   at   <b>");
    }
}
