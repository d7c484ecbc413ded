//! Deduplication: exact (hash of the canonical example) and near-duplicate (MinHash signatures
//! of character shingles, bucketed by locality-sensitive hashing, confirmed by the estimated
//! Jaccard similarity). The most recent of a group of duplicates is kept.
//!
//! Two examples are near duplicates only when their prompts *and* their answers are nearly
//! identical. An agent's consecutive steps share almost their whole conversation and differ
//! in what the model is asked to do next; judged on the whole text they would look like
//! copies of each other and every step but the last would be thrown away.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

/// The `[curate.dedup]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DedupConfig {
    /// Drop examples identical to a newer one (messages, tools and output).
    pub exact: bool,
    /// Drop examples nearly identical to a newer one (prompt and answer both).
    pub near: bool,
    /// Estimated Jaccard similarity of the shingle sets at or above which two examples are
    /// near duplicates.
    pub near_threshold: f64,
    /// Shingle length in characters.
    pub shingle_chars: usize,
}

impl Default for DedupConfig {
    fn default() -> Self {
        DedupConfig {
            exact: true,
            near: true,
            near_threshold: 0.9,
            shingle_chars: 5,
        }
    }
}

/// Number of hash functions in a signature.
pub const PERMUTATIONS: usize = 64;
/// LSH bands × rows = PERMUTATIONS; 16 × 4 puts the candidate threshold near 0.5, well below
/// any useful `near_threshold`, and every candidate is then checked on the full signature.
const BANDS: usize = 16;
const ROWS: usize = PERMUTATIONS / BANDS;

pub type Signature = [u32; PERMUTATIONS];

/// MinHash over character shingles with multiply-shift hash functions.
#[derive(Debug, Clone)]
pub struct MinHasher {
    a: [u64; PERMUTATIONS],
    b: [u64; PERMUTATIONS],
    shingle: usize,
}

/// splitmix64: a fixed, well-mixed sequence for the hash-function parameters.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl MinHasher {
    /// A hasher over shingles of `shingle_chars` characters (at least 1). The hash functions come
    /// from a fixed seed, so signatures from different runs and hashers compare.
    pub fn new(shingle_chars: usize) -> MinHasher {
        let mut state = 0x5eed_d0d0_u64;
        let mut a = [0u64; PERMUTATIONS];
        let mut b = [0u64; PERMUTATIONS];
        for (ai, bi) in a.iter_mut().zip(b.iter_mut()) {
            *ai = splitmix(&mut state) | 1;
            *bi = splitmix(&mut state);
        }
        MinHasher {
            a,
            b,
            shingle: shingle_chars.max(1),
        }
    }

    /// The signature of `text` (lower-cased, whitespace collapsed).
    pub fn signature(&self, text: &str) -> Signature {
        let norm: Vec<char> = {
            let mut out = Vec::with_capacity(text.len());
            let mut space = false;
            for c in text.chars().flat_map(char::to_lowercase) {
                if c.is_whitespace() {
                    space = true;
                } else {
                    if space && !out.is_empty() {
                        out.push(' ');
                    }
                    space = false;
                    out.push(c);
                }
            }
            out
        };
        let mut shingles: Vec<u64> = if norm.len() <= self.shingle {
            vec![hash_chars(&norm)]
        } else {
            norm.windows(self.shingle).map(hash_chars).collect()
        };
        shingles.sort_unstable();
        shingles.dedup();
        let mut sig = [u32::MAX; PERMUTATIONS];
        for x in shingles {
            for ((slot, a), b) in sig.iter_mut().zip(&self.a).zip(&self.b) {
                let h = (a.wrapping_mul(x).wrapping_add(*b) >> 32) as u32;
                if h < *slot {
                    *slot = h;
                }
            }
        }
        sig
    }
}

fn hash_chars(chars: &[char]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for c in chars {
        h ^= u64::from(*c);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The share of signature positions two signatures agree on: an estimate of the Jaccard
/// similarity of their shingle sets.
pub fn similarity(a: &Signature, b: &Signature) -> f64 {
    a.iter().zip(b).filter(|(x, y)| x == y).count() as f64 / PERMUTATIONS as f64
}

/// One example as the deduplicator sees it.
pub struct DedupItem {
    /// Hash of the canonical example (messages + tools + output).
    pub exact: [u8; 32],
    /// The prompt's variable text (what LSH buckets on).
    pub signature: Signature,
    /// The answer's text.
    pub answer: Signature,
    pub ts_ms: i64,
}

/// What dedup decided: which items to keep and how many were dropped by each rule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DedupOutcome {
    pub keep: Vec<bool>,
    pub exact_duplicates: u64,
    pub near_duplicates: u64,
}

/// Decides, newest first, which items survive.
pub fn dedup(items: &[DedupItem], cfg: &DedupConfig) -> DedupOutcome {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse((items[i].ts_ms, i)));
    let mut out = DedupOutcome {
        keep: vec![false; items.len()],
        ..Default::default()
    };
    let mut seen: HashSet<[u8; 32]> = HashSet::with_capacity(items.len());
    let mut buckets: HashMap<(usize, u64), Vec<usize>> = HashMap::new();
    for i in order {
        let item = &items[i];
        if cfg.exact && !seen.insert(item.exact) {
            out.exact_duplicates += 1;
            continue;
        }
        if cfg.near {
            let keys: Vec<(usize, u64)> = (0..BANDS)
                .map(|band| {
                    let rows = &item.signature[band * ROWS..(band + 1) * ROWS];
                    let mut h: u64 = band as u64;
                    for r in rows {
                        h = (h ^ u64::from(*r)).wrapping_mul(0x0100_0000_01b3);
                    }
                    (band, h)
                })
                .collect();
            let near = keys.iter().any(|k| {
                buckets.get(k).is_some_and(|kept| {
                    kept.iter().any(|&j| {
                        similarity(&items[j].signature, &item.signature) >= cfg.near_threshold
                            && similarity(&items[j].answer, &item.answer) >= cfg.near_threshold
                    })
                })
            });
            if near {
                out.near_duplicates += 1;
                continue;
            }
            for k in keys {
                buckets.entry(k).or_default().push(i);
            }
        }
        out.keep[i] = true;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(h: &MinHasher, text: &str, ts: i64) -> DedupItem {
        answered(h, text, "ok", ts)
    }

    fn answered(h: &MinHasher, text: &str, answer: &str, ts: i64) -> DedupItem {
        let mut exact = [0u8; 32];
        let whole: Vec<char> = text.chars().chain(answer.chars()).collect();
        exact[..8].copy_from_slice(&hash_chars(&whole).to_le_bytes());
        DedupItem {
            exact,
            signature: h.signature(text),
            answer: h.signature(answer),
            ts_ms: ts,
        }
    }

    #[test]
    fn similar_texts_have_similar_signatures() {
        let h = MinHasher::new(5);
        let base =
            "Please book a table for four people at the Italian place on Friday evening at eight.";
        let near =
            "Please book a table for four people at the Italian place on Friday evening at 8.";
        let other =
            "What is the current exchange rate between the euro and the Japanese yen today?";
        assert!(similarity(&h.signature(base), &h.signature(near)) > 0.75);
        assert!(similarity(&h.signature(base), &h.signature(other)) < 0.2);
        assert_eq!(h.signature("A  b\tC"), h.signature("a b c"));
    }

    #[test]
    fn keeps_the_most_recent_of_each_group() {
        let h = MinHasher::new(5);
        let long = "Summarise the quarterly revenue report for the northern region and list the top three risks mentioned by the auditors in their notes.";
        let items = vec![
            item(&h, long, 1),
            item(&h, long, 3),                      // exact duplicate, newer
            item(&h, &format!("{long} Thanks"), 2), // near duplicate
            item(&h, "Convert 12 inches to centimetres.", 4), // different
        ];
        let cfg = DedupConfig {
            near_threshold: 0.8,
            ..Default::default()
        };
        let out = dedup(&items, &cfg);
        assert_eq!(out.keep, vec![false, true, false, true]);
        assert_eq!((out.exact_duplicates, out.near_duplicates), (1, 1));
        let exact_only = dedup(
            &items,
            &DedupConfig {
                near: false,
                ..cfg.clone()
            },
        );
        assert_eq!(exact_only.keep, vec![false, true, true, true]);
        let none = dedup(
            &items,
            &DedupConfig {
                exact: false,
                near: false,
                ..cfg
            },
        );
        assert!(none.keep.iter().all(|k| *k));
    }

    #[test]
    fn short_texts_that_differ_in_their_values_are_not_near_duplicates() {
        let h = MinHasher::new(5);
        let items = vec![
            item(&h, "weather in Paris tomorrow", 1),
            item(&h, "weather in Tokyo tomorrow", 2),
        ];
        let out = dedup(&items, &DedupConfig::default());
        assert_eq!(out.keep, vec![true, true]);
    }

    #[test]
    fn consecutive_agent_steps_are_not_near_duplicates() {
        // Step 2 repeats step 1's conversation plus one call and its result; the answers
        // differ. Only a resent step (same conversation, same answer) is a duplicate.
        let h = MinHasher::new(5);
        let turn = "user: Move final_report.pdf within the document directory to the temp \
            directory in document, and make sure to create the directory first. assistant: \
            ls() tool: {\"current_directory_content\": [\"document\", \"archive\", \
            \"notes.txt\", \"budget_2024.xlsx\", \"photos\"]} user: Then search the report \
            for every section about the budget analysis and sort the lines of the file \
            alphabetically, and tell me how many lines mention the northern region's \
            quarterly revenue figures compared with last year's audited totals."
            .to_string();
        let step1 = turn.clone();
        let step2 = format!("{turn}assistant: cd(folder=document) tool: ok");
        let items = vec![
            answered(
                &h,
                &step1,
                r#"{"name":"cd","arguments":{"folder":"document"}}"#,
                1,
            ),
            answered(
                &h,
                &step2,
                r#"{"name":"mkdir","arguments":{"dir_name":"temp"}}"#,
                2,
            ),
            answered(
                &h,
                &format!("{step2} "),
                r#"{"name":"mkdir","arguments":{"dir_name":"temp"}}"#,
                3,
            ),
        ];
        assert!(similarity(&items[0].signature, &items[1].signature) >= 0.9);
        let out = dedup(&items, &DedupConfig::default());
        assert_eq!(out.keep, vec![true, false, true]);
        assert_eq!(out.near_duplicates, 1);
    }
}
