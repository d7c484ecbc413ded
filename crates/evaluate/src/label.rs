//! Exact match for short labels, forgiving of the noise models add around them.

/// Characters dropped from the end of a label: sentence punctuation only, so `C++` or `(a)` keep
/// their meaning.
const TRAILING: &[char] = &[
    '.', ',', ';', ':', '!', '?', '…', '。', '，', '；', '：', '！', '？',
];
/// Quotes dropped when they wrap the whole label.
const QUOTES: &[char] = &['"', '\'', '`', '“', '”', '‘', '’', '«', '»'];

/// Whether two labels are the same: compared after trimming, lowercasing, collapsing inner
/// whitespace, dropping trailing sentence punctuation (`.`, `!`, `?`, `,`, `;`, `:`, `…` and their
/// CJK forms) and quotes around the whole label. So `Positive.` matches `positive` and
/// `"billing"` matches `Billing`, but `C++` does not match `C`.
pub fn label_match(pred: &str, reference: &str) -> bool {
    normalise_label(pred) == normalise_label(reference)
}

/// The form [`label_match`] compares.
pub fn normalise_label(label: &str) -> String {
    let mut s = label.trim();
    loop {
        let before = s;
        s = s.trim_end_matches(TRAILING).trim();
        let mut chars = s.chars();
        if let (Some(first), Some(last)) = (chars.next(), chars.next_back())
            && QUOTES.contains(&first)
            && QUOTES.contains(&last)
        {
            s = chars.as_str().trim();
        }
        if s == before {
            break;
        }
    }
    s.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgiving_of_case_space_punctuation_quotes() {
        assert!(label_match("Positive.", "positive"));
        assert!(label_match("  POSITIVE!\n", "positive"));
        assert!(label_match("\"billing\"", "Billing"));
        assert!(label_match("\"billing.\"", "billing"));
        assert!(label_match("New   York", "new york"));
        assert!(label_match("是。", "是"));
    }

    #[test]
    fn but_not_of_different_labels() {
        assert!(!label_match("negative", "positive"));
        assert!(!label_match("C++", "C"));
        assert!(!label_match("not spam", "spam"));
        assert!(!label_match("", "spam"));
        assert!(!label_match("1", "l"));
    }
}
