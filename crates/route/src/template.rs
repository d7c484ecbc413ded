//! A system prompt reduced to its template: the constant words kept, the variable ones masked.
//!
//! Unlike discovery's Drain-style miner, which learns the variable positions from the whole
//! dataset, this works on one prompt alone (the router sees one request at a time), so it masks
//! what *looks* variable:
//!
//! - a token with a digit (numbers, dates, times, versions, most ids: `2026-01-02`, `#4411`,
//!   `v2`, `a1b2c3`);
//! - a token with `@` (emails, handles);
//! - month and weekday names and `am`/`pm`, so `Monday, March 3` and `Fri 7 Apr` mask alike;
//! - a quoted span (`"…"`, `'…'`, `“…”`, `‘…’`, `` `…` ``, `«…»`) of up to [`MAX_QUOTE`] bytes.
//!
//! Consecutive masked tokens collapse into one `<*>`, so `Today is Monday, March 3, 2026.`
//! and `Today is 2026-03-03.` give the same template. Tokens are split on whitespace only; the
//! work is one pass over the text, nothing allocated.

use crate::hash::{combine, hash_bytes};

/// The longest quoted span that is masked as one value.
pub const MAX_QUOTE: usize = 256;

const WORD_SEED: u64 = 0x7E11;
const MASK: u64 = 0x3A5C;
/// Separates the system messages of one request.
const MESSAGE_BREAK: u64 = 0x0B4E;

/// One unit of a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit<'a> {
    Word(&'a str),
    Mask,
}

const DATE_WORDS: &[&str] = &[
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
    "mon",
    "tue",
    "tues",
    "wed",
    "thu",
    "thur",
    "thurs",
    "fri",
    "sat",
    "sun",
    "am",
    "pm",
    "a.m",
    "p.m",
];

fn is_variable(token: &str) -> bool {
    if token.bytes().any(|b| b.is_ascii_digit() || b == b'@') {
        return true;
    }
    let word = token.trim_matches(|c: char| !c.is_alphanumeric());
    word.len() <= 9
        && DATE_WORDS
            .iter()
            .any(|d| d.len() == word.len() && d.eq_ignore_ascii_case(word))
}

fn closing_quote(c: char) -> Option<char> {
    Some(match c {
        '"' => '"',
        '\'' => '\'',
        '`' => '`',
        '\u{201C}' => '\u{201D}',
        '\u{2018}' => '\u{2019}',
        '\u{00AB}' => '\u{00BB}',
        _ => return None,
    })
}

/// The byte length of a quoted span starting at the beginning of `s` (opening quote `open`),
/// closing quote included, when it closes within [`MAX_QUOTE`] bytes. A closing `'` must not be
/// followed by a letter or digit, so `don't` inside the span does not end it.
fn quoted_len(s: &str, open: char) -> Option<usize> {
    let close = closing_quote(open)?;
    let body_start = open.len_utf8();
    let window = &s[body_start..];
    let mut from = 0;
    while let Some(i) = window[from..].find(close) {
        let at = from + i;
        if at + body_start > MAX_QUOTE {
            return None;
        }
        let after = &window[at + close.len_utf8()..];
        let ok = close != '\'' || !after.chars().next().is_some_and(|c| c.is_alphanumeric());
        if ok && at > 0 {
            return Some(body_start + at + close.len_utf8());
        }
        from = at + close.len_utf8();
    }
    None
}

/// Walks a prompt's template units in order, consecutive masks collapsed.
pub(crate) fn for_each_unit<'a>(text: &'a str, mut f: impl FnMut(Unit<'a>)) {
    let mut rest = text;
    let mut last_mask = false;
    let mut emit = |u: Unit<'a>, f: &mut dyn FnMut(Unit<'a>)| {
        let mask = u == Unit::Mask;
        if !(mask && last_mask) {
            f(u);
        }
        last_mask = mask;
    };
    loop {
        rest = rest.trim_start();
        let Some(first) = rest.chars().next() else {
            break;
        };
        if let Some(len) = quoted_len(rest, first) {
            emit(Unit::Mask, &mut f);
            rest = &rest[len..];
            continue;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let token = &rest[..end];
        rest = &rest[end..];
        if is_variable(token) {
            emit(Unit::Mask, &mut f);
        } else {
            emit(Unit::Word(token), &mut f);
        }
    }
}

/// Folds a prompt's template into a running hash.
pub(crate) struct TemplateHasher {
    h: u64,
    messages: u32,
}

impl TemplateHasher {
    pub(crate) fn new() -> Self {
        TemplateHasher { h: 0, messages: 0 }
    }

    /// Adds one system message's text.
    pub(crate) fn add(&mut self, text: &str) {
        if self.messages > 0 {
            self.h = combine(self.h, MESSAGE_BREAK);
        }
        self.messages += 1;
        let mut h = self.h;
        for_each_unit(text, |u| {
            h = combine(
                h,
                match u {
                    Unit::Word(w) => hash_bytes(WORD_SEED, w.as_bytes()),
                    Unit::Mask => MASK,
                },
            );
        });
        self.h = h;
    }

    /// The hash; 0 when no system message was added.
    pub(crate) fn finish(&self) -> u64 {
        if self.messages == 0 { 0 } else { self.h | 1 }
    }
}

/// A prompt's template as text, variable parts shown as `<*>` (for logs, labels and tests).
pub fn template_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for_each_unit(text, |u| {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(match u {
            Unit::Word(w) => w,
            Unit::Mask => "<*>",
        });
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(text: &str) -> u64 {
        let mut t = TemplateHasher::new();
        t.add(text);
        t.finish()
    }

    #[test]
    fn variables_are_masked() {
        assert_eq!(
            template_text("You are the assistant of ACME. Today is 2026-01-02, order #4411."),
            "You are the assistant of ACME. Today is <*> order <*>"
        );
        assert_eq!(
            template_text("Today is Monday, March 3, 2026 at 10:30 AM. Reply to jo@x.org now."),
            "Today is <*> at <*> Reply to <*> now."
        );
        assert_eq!(
            template_text("Customer \"Ada Lovelace\" asked about 'the blue plan' — don't guess."),
            "Customer <*> asked about <*> — don't guess."
        );
        assert_eq!(
            template_text("Name: “Zoë Ü” and ‘x y’ and `cmd --x`."),
            "Name: <*> and <*> and <*> ."
        );
        assert_eq!(
            template_text("Now: (Monday). Due [Tue], at 9 a.m. or 5 P.M.!"),
            "Now: <*> Due <*> at <*> or <*>"
        );
        // An unclosed quote is an ordinary token.
        assert_eq!(template_text("say \"hi to all"), "say \"hi to all");
        assert_eq!(template_text(""), "");
    }

    #[test]
    fn same_template_same_hash() {
        let a = hash("You help ACME customers. Today is Monday, March 3, 2026. Ticket 991.");
        let b = hash("You help ACME customers.  Today is 2026-04-07.\nTicket A-17.");
        let c = hash("You help Initech customers. Today is 2026-04-07. Ticket A-17.");
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(TemplateHasher::new().finish(), 0);
        assert_ne!(
            hash(""),
            0,
            "an empty system message is not no system message"
        );
        let mut two = TemplateHasher::new();
        two.add("a b");
        two.add("c");
        assert_ne!(two.finish(), hash("a b c"));
    }
}
