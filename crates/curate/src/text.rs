//! Small helpers over UTF-8 text positions.

/// The character just before byte `i`.
pub(crate) fn prev_char(text: &str, i: usize) -> Option<char> {
    text.get(..i).and_then(|s| s.chars().next_back())
}

/// The character at byte `i`.
pub(crate) fn next_char(text: &str, i: usize) -> Option<char> {
    text.get(i..).and_then(|s| s.chars().next())
}

/// True when the character before `i` is not a letter, digit or underscore.
pub(crate) fn word_start(text: &str, i: usize) -> bool {
    prev_char(text, i).is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
}

/// True when the character at `i` is not a letter, digit or underscore.
pub(crate) fn word_end(text: &str, i: usize) -> bool {
    next_char(text, i).is_none_or(|c| !(c.is_alphanumeric() || c == '_'))
}

/// Trim trailing characters matching `pred` from `text[start..end]`, returning the new end.
pub(crate) fn trim_end_by(
    text: &str,
    start: usize,
    mut end: usize,
    pred: impl Fn(char) -> bool,
) -> usize {
    while end > start {
        match prev_char(text, end) {
            Some(c) if pred(c) => end -= c.len_utf8(),
            _ => break,
        }
    }
    end
}

/// Start of the value that follows a cue like `api_key`, `"dob": "`, `MRN #`, `password is`.
/// Skips quotes, colons, equals signs, `#`, `no.`, `is` and spaces, at most `max` bytes.
pub(crate) fn skip_separator(text: &str, mut i: usize, max: usize) -> Option<usize> {
    let limit = (i + max).min(text.len());
    let bytes = text.as_bytes();
    let mut saw_any = false;
    while i < limit {
        let rest = &text[i..];
        let b = bytes[i];
        if matches!(
            b,
            b' ' | b'\t' | b':' | b'=' | b'"' | b'\'' | b'#' | b'\\' | b'>' | b'(' | b'['
        ) {
            i += 1;
            saw_any = true;
            continue;
        }
        // "MRN - 12345", "Tel. – 0612…": a dash between spaces separates a label from its value.
        if saw_any && (rest.starts_with("- ") || rest.starts_with("– ")) {
            i += if rest.starts_with('-') {
                1
            } else {
                '–'.len_utf8()
            };
            continue;
        }
        let lower_starts = |w: &str| {
            rest.len() >= w.len()
                && rest.as_bytes()[..w.len()].eq_ignore_ascii_case(w.as_bytes())
                && rest[w.len()..].starts_with([' ', ':', '#', '.'])
        };
        let mut skipped = false;
        for w in [
            "is", "no.", "no", "nr.", "nr", "number", "num", "n.º", "n°", "nº", "n.", "es", "est",
            "ist", "è", "era", "was", "=", "id",
        ] {
            if lower_starts(w) {
                i += w.len();
                skipped = true;
                break;
            }
        }
        if skipped {
            saw_any = true;
            continue;
        }
        break;
    }
    if saw_any && i < text.len() {
        Some(i)
    } else {
        None
    }
}

/// End of a token made of `ok` characters starting at `i`.
pub(crate) fn token_end(text: &str, i: usize, ok: impl Fn(char) -> bool) -> usize {
    let mut end = i;
    for (j, c) in text[i..].char_indices() {
        if ok(c) {
            end = i + j + c.len_utf8();
        } else {
            break;
        }
    }
    end
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separators() {
        let t = "MRN: 12345";
        assert_eq!(skip_separator(t, 3, 10), Some(5));
        let t = "\"dob\": \"1990-01-02\"";
        assert_eq!(skip_separator(t, 4, 10), Some(8));
        let t = "password is hunter22";
        assert_eq!(skip_separator(t, 8, 10), Some(12));
        assert_eq!(skip_separator("tokenX", 5, 10), None);
    }

    #[test]
    fn boundaries() {
        assert!(word_start("a b", 2));
        assert!(!word_start("ab", 1));
        assert!(word_end("é.", 2));
        assert_eq!(trim_end_by("abc...", 0, 6, |c| c == '.'), 3);
    }
}
