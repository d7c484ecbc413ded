//! Free-text similarity: ROUGE-L F1 and chrF.

use std::collections::HashMap;

/// sacrebleu's chrF defaults: character n-grams up to this order...
const CHRF_ORDER: usize = 6;
/// ...and recall weighted β = 2 times as much as precision.
const CHRF_BETA: f64 = 2.0;

/// Whitespace-normalised text: trimmed, every run of whitespace one space. Text answers count as
/// an exact match when these are equal.
pub fn normalise_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Word tokens for ROUGE: the text lowercased, split at every character that is not alphanumeric.
/// On ASCII text this is rouge-score's default tokenizer (no stemming); unlike rouge-score, it
/// keeps non-ASCII letters and digits (rouge-score drops them, so it scores other scripts as 0).
pub fn word_tokens(text: &str) -> Vec<String> {
    text.to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// ROUGE-L F1 between a prediction and a reference, in [0, 1]: with `l` the length of the longest
/// common subsequence of their [`word_tokens`], precision `l / |pred|`, recall `l / |ref|`, and F1
/// their harmonic mean. As in rouge-score, 0 when either side has no tokens.
pub fn rouge_l_f1(pred: &str, reference: &str) -> f64 {
    let pred = word_tokens(pred);
    let reference = word_tokens(reference);
    if pred.is_empty() || reference.is_empty() {
        return 0.0;
    }
    let lcs = lcs_len(&pred, &reference) as f64;
    let precision = lcs / pred.len() as f64;
    let recall = lcs / reference.len() as f64;
    if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    }
}

fn lcs_len<T: PartialEq>(a: &[T], b: &[T]) -> usize {
    // Two rows of the classic table, over the shorter sequence.
    let (long, short) = if a.len() >= b.len() { (a, b) } else { (b, a) };
    let mut prev = vec![0usize; short.len() + 1];
    let mut row = vec![0usize; short.len() + 1];
    for x in long {
        for (j, y) in short.iter().enumerate() {
            row[j + 1] = if x == y {
                prev[j] + 1
            } else {
                row[j].max(prev[j + 1])
            };
        }
        std::mem::swap(&mut prev, &mut row);
    }
    prev[short.len()]
}

/// chrF between a prediction and a reference with sacrebleu's defaults (`CHRF(char_order=6,
/// word_order=0, beta=2)`, case-sensitive, whitespace removed before n-grams are taken), on a
/// 0–1 scale (sacrebleu prints it ×100).
///
/// For each order n = 1..6, precision and recall of the prediction's character n-grams (clipped
/// counts) against the reference's; they are averaged over the orders where both sides have
/// n-grams (sacrebleu's "effective order"), and the score is F-β of the two averages. 0 when
/// there is no such order (e.g. either side empty).
pub fn chrf(pred: &str, reference: &str) -> f64 {
    let pred: Vec<char> = pred.chars().filter(|c| !c.is_whitespace()).collect();
    let reference: Vec<char> = reference.chars().filter(|c| !c.is_whitespace()).collect();
    let (mut sum_precision, mut sum_recall, mut orders) = (0.0, 0.0, 0usize);
    for n in 1..=CHRF_ORDER {
        if pred.len() < n || reference.len() < n {
            continue;
        }
        let mut ref_counts: HashMap<&[char], usize> = HashMap::new();
        for gram in reference.windows(n) {
            *ref_counts.entry(gram).or_default() += 1;
        }
        let mut matches = 0usize;
        for gram in pred.windows(n) {
            if let Some(left) = ref_counts.get_mut(gram)
                && *left > 0
            {
                *left -= 1;
                matches += 1;
            }
        }
        let pred_total = pred.len() + 1 - n;
        let ref_total = reference.len() + 1 - n;
        sum_precision += matches as f64 / pred_total as f64;
        sum_recall += matches as f64 / ref_total as f64;
        orders += 1;
    }
    if orders == 0 {
        return 0.0;
    }
    let precision = sum_precision / orders as f64;
    let recall = sum_recall / orders as f64;
    let factor = CHRF_BETA * CHRF_BETA;
    if precision + recall == 0.0 {
        0.0
    } else {
        (1.0 + factor) * precision * recall / (factor * precision + recall)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn tokens_are_lowercase_alphanumeric_runs() {
        assert_eq!(
            word_tokens("The cat's hat, (2024)!"),
            ["the", "cat", "s", "hat", "2024"]
        );
        assert_eq!(word_tokens("Café über"), ["café", "über"]);
        assert!(word_tokens(" ... ").is_empty());
    }

    #[test]
    fn rouge_l_by_hand() {
        // pred: the cat sat on the mat (6); ref: the cat is on the mat (6); LCS "the cat on the
        // mat" = 5. P = R = 5/6, F1 = 5/6.
        assert!(close(
            rouge_l_f1("The cat sat on the mat.", "the cat is on the mat"),
            5.0 / 6.0
        ));
        // pred: a b c d (4); ref: b d e (3); LCS "b d" = 2. P = 1/2, R = 2/3,
        // F1 = 2 * (1/2)(2/3) / (1/2 + 2/3) = (2/3) / (7/6) = 4/7.
        assert!(close(rouge_l_f1("a b c d", "b d e"), 4.0 / 7.0));
        // Subsequence, not substring: order matters.
        // pred: c b a; ref: a b c; LCS 1, F1 = 1/3.
        assert!(close(rouge_l_f1("c b a", "a b c"), 1.0 / 3.0));
        assert!(close(rouge_l_f1("Same, text!", "same text"), 1.0));
        assert_eq!(rouge_l_f1("x y", "z"), 0.0);
        assert_eq!(rouge_l_f1("", "z"), 0.0);
        assert_eq!(rouge_l_f1("...", "..."), 0.0);
    }

    #[test]
    fn chrf_by_hand() {
        // "abc" vs "abd": 1-grams P = R = 2/3; 2-grams {ab,bc} vs {ab,bd}: P = R = 1/2;
        // 3-grams: 0; orders 4-6 absent. Averages P = R = 7/18, and F-β of equal P and R is P.
        // (sacrebleu: sentence_chrf("abc", ["abd"]).score == 38.888…)
        assert!(close(chrf("abc", "abd"), 7.0 / 18.0));
        // "ab" vs "abcd": 1-grams P = 1, R = 2/4; 2-grams P = 1, R = 1/3; no 3-grams in the
        // prediction. P = 1, R = 5/12, F2 = 5 P R / (4 P + R) = (25/12) / (53/12) = 25/53.
        assert!(close(chrf("ab", "abcd"), 25.0 / 53.0));
        // β = 2 weighs recall: swapping the sides gives P = 5/12, R = 1,
        // F2 = (25/12) / (5/3 + 1) = 25/32.
        assert!(close(chrf("abcd", "ab"), 25.0 / 32.0));
        // Clipped counts: "aaa" vs "a": 1-grams P = 1/3, R = 1; F2 = (5/3) / (4/3 + 1) = 5/7.
        assert!(close(chrf("aaa", "a"), 5.0 / 7.0));
    }

    #[test]
    fn chrf_ignores_whitespace_but_not_case() {
        assert!(close(chrf("a b c", "abc"), 1.0));
        assert!(close(chrf("abc", "abc"), 1.0));
        assert!(chrf("ABC", "abc") < 1e-12);
        assert_eq!(chrf("", "abc"), 0.0);
        assert_eq!(chrf("", ""), 0.0);
    }

    #[test]
    fn whitespace_normalisation() {
        assert_eq!(normalise_whitespace("  a \n b\t c "), "a b c");
    }
}
