//! Distinctive terms per task by class-based TF-IDF (c-TF-IDF, as BERTopic names topics): all
//! variable texts of a task form one document; a term scores `tf(t, c) · log(1 + A / f(t))`
//! with `tf` normalised per class, `f(t)` its frequency over all classes and `A` the average
//! number of words per class. A term must recur: it occurs in at least [`MIN_DOC_SHARE`] of
//! its class's texts (and in two of them), so a value that comes with one call — a name, a
//! place — never names a task.

use std::collections::HashMap;

const STOPWORDS: &[&str] = &[
    "the", "and", "for", "with", "that", "this", "from", "what", "which", "you", "your", "are",
    "was", "were", "can", "could", "would", "should", "will", "have", "has", "had", "not", "but",
    "all", "any", "its", "into", "about", "then", "than", "there", "their", "them", "they",
    "please", "also", "how", "who", "when", "where", "why", "our", "out", "get", "give", "tell",
    "let", "know", "like", "want", "need", "some", "one", "two", "just", "make", "sure", "use",
    "using", "each", "been", "being", "did", "does", "doing", "these", "those", "there", "here",
    "over", "under", "more", "most", "other", "such", "only", "own", "same", "very", "via", "per",
    "may", "might", "must", "shall", "him", "her", "his", "she", "its", "our", "ours", "yours",
    "i'm", "it's", "don't", "now", "new", "after", "before", "again", "once", "both", "few",
];

/// Words a label may use: lower-cased, at least 3 letters, not a stop word, not a number.
pub fn terms(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() || c == '_'))
        .filter(|w| w.chars().count() >= 3 && w.chars().any(char::is_alphabetic))
        .filter(|w| !w.chars().any(|c| c.is_ascii_digit()))
        .map(str::to_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
}

/// Share of a class's texts a term must occur in.
pub const MIN_DOC_SHARE: f64 = 0.2;

/// For each class (a list of its texts), its `top` most distinctive terms, best first.
pub fn ctfidf_terms(classes: &[Vec<&str>], top: usize) -> Vec<Vec<String>> {
    let counts: Vec<HashMap<String, f64>> = classes
        .iter()
        .map(|texts| {
            let mut m = HashMap::new();
            let mut docs: HashMap<String, usize> = HashMap::new();
            for t in texts {
                let mut seen: Vec<String> = Vec::new();
                for w in terms(t) {
                    if !seen.contains(&w) {
                        seen.push(w.clone());
                    }
                    *m.entry(w).or_insert(0.0) += 1.0;
                }
                for w in seen {
                    *docs.entry(w).or_default() += 1;
                }
            }
            let need =
                ((texts.len() as f64 * MIN_DOC_SHARE).ceil() as usize).max(2.min(texts.len()));
            m.retain(|w, _| docs.get(w).copied().unwrap_or(0) >= need);
            m
        })
        .collect();
    let mut total: HashMap<&str, f64> = HashMap::new();
    let mut words = 0.0;
    for m in &counts {
        for (w, c) in m {
            *total.entry(w.as_str()).or_insert(0.0) += c;
            words += c;
        }
    }
    let avg = if counts.is_empty() {
        1.0
    } else {
        (words / counts.len() as f64).max(1.0)
    };
    counts
        .iter()
        .map(|m| {
            let sum: f64 = m.values().sum::<f64>().max(1.0);
            let mut scored: Vec<(&String, f64)> = m
                .iter()
                .map(|(w, c)| (w, c / sum * (1.0 + avg / total[w.as_str()]).ln()))
                .collect();
            scored.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
            scored
                .into_iter()
                .take(top)
                .map(|(w, _)| w.clone())
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinctive_terms_win_over_shared_ones() {
        let weather = vec![
            "what is the weather forecast in Paris tomorrow",
            "weather forecast for Berlin tomorrow please",
            "is it going to rain in Rome tomorrow, forecast",
        ];
        let orders = vec![
            "extract the order from this email tomorrow",
            "extract order 123 items and total",
        ];
        let t = ctfidf_terms(&[weather, orders], 2);
        assert_eq!(t[0][0], "forecast");
        assert_eq!(t[1], ["extract", "order"]);
        // A name in one text of five is not a term.
        let names = vec![
            "cancel order for Rossi",
            "cancel order",
            "cancel the order",
            "cancel my order",
            "cancel order now",
            "cancel order today",
        ];
        let t = ctfidf_terms(&[names], 5);
        assert!(!t[0].contains(&"rossi".to_owned()), "{t:?}");
        assert_eq!(
            terms("I'm 42 the GET_weather x1").collect::<Vec<_>>(),
            ["get_weather"]
        );
    }
}
