//! Name lexicons shipped as data files in the crate: given names and surnames from many
//! languages, names that are also common words (they need a surname or a cue), and
//! capitalised words that are never names.

use std::collections::HashSet;

const GIVEN: &str = include_str!("../data/given_names.txt");
const SURNAMES: &str = include_str!("../data/surnames.txt");
const AMBIGUOUS: &str = include_str!("../data/ambiguous_names.txt");
const STOPWORDS: &str = include_str!("../data/stopwords.txt");
const PLACES: &str = include_str!("../data/places.txt");

pub(crate) struct Lexicon {
    given: HashSet<String>,
    surnames: HashSet<String>,
    ambiguous: HashSet<String>,
    stop: HashSet<String>,
    places: HashSet<String>,
    given_list: Vec<&'static str>,
    surname_list: Vec<&'static str>,
}

fn words(src: &'static str) -> Vec<&'static str> {
    src.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .collect()
}

fn load(src: &str) -> HashSet<String> {
    src.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .map(str::to_lowercase)
        .collect()
}

impl Lexicon {
    pub(crate) fn new() -> Self {
        Lexicon {
            given: load(GIVEN),
            surnames: load(SURNAMES),
            ambiguous: load(AMBIGUOUS),
            stop: load(STOPWORDS),
            places: PLACES
                .lines()
                .filter(|l| !l.trim_start().starts_with('#') && !l.trim().is_empty())
                .map(|l| l.trim().to_lowercase())
                .collect(),
            given_list: words(GIVEN),
            surname_list: words(SURNAMES),
        }
    }

    pub(crate) fn is_given(&self, lower: &str) -> bool {
        self.given.contains(lower)
            || lower
                .split_once('-')
                .is_some_and(|(a, b)| self.given.contains(a) && self.given.contains(b))
    }

    pub(crate) fn is_surname(&self, lower: &str) -> bool {
        self.surnames.contains(lower)
            || lower
                .split_once('-')
                .is_some_and(|(a, b)| self.surnames.contains(a) || self.surnames.contains(b))
    }

    pub(crate) fn is_ambiguous(&self, lower: &str) -> bool {
        self.ambiguous.contains(lower)
    }

    pub(crate) fn is_stop(&self, lower: &str) -> bool {
        self.stop.contains(lower)
    }

    /// Is `text` (any case) a known place name such as "Sri Lanka"?
    pub(crate) fn is_place(&self, text: &str) -> bool {
        text.len() < 64 && self.places.contains(&text.to_lowercase())
    }

    /// A deterministic given name / surname for surrogates.
    pub(crate) fn pick_given(&self, n: u64) -> &'static str {
        pick(&self.given_list, n)
    }

    pub(crate) fn pick_surname(&self, n: u64) -> &'static str {
        pick(&self.surname_list, n)
    }
}

fn pick(list: &[&'static str], n: u64) -> &'static str {
    if list.is_empty() {
        return "Alex";
    }
    list[(n % list.len() as u64) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lexicons_are_loaded() {
        let l = Lexicon::new();
        assert!(l.given.len() > 2000, "{}", l.given.len());
        assert!(l.surnames.len() > 2000, "{}", l.surnames.len());
        assert!(l.is_given("björn") && l.is_given("jean-luc") && l.is_surname("o'brien"));
        assert!(l.is_ambiguous("may") && l.is_stop("monday") && l.is_place("San Francisco"));
    }
}
