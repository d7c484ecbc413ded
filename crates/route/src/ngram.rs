//! A cheap text vector for the classifier's fallback: word unigrams and bigrams (lower-cased,
//! any word with a digit read as one "number" word, any token with an `@` as one "e-mail" word) hashed into [`DIM`] buckets, L2-normalised.
//! No model and no vocabulary: one pass over at most [`MAX_WORDS`] words.

use crate::hash::{combine, fmix};

/// Buckets of the hashed vector.
pub const DIM: usize = 4096;
/// Words read from the text; the rest is ignored (the start of a message says what it is about).
pub const MAX_WORDS: usize = 256;

const NUMBER: u64 = 0x4E55_4D42;
const EMAIL: u64 = 0x454D_4149;

/// A sparse unit vector: bucket indices ascending, each once.
pub(crate) type Sparse = Vec<(u32, f32)>;

fn bucket(h: u64) -> u32 {
    (fmix(h) % DIM as u64) as u32
}

/// The hashed n-gram vector of `text`; empty when the text has no word.
pub(crate) fn vectorize(text: &str) -> Sparse {
    let mut buckets: Vec<u32> = Vec::with_capacity(64);
    let mut prev: Option<u64> = None;
    let mut words = 0usize;
    let mut push = |h: u64, prev: &mut Option<u64>| {
        buckets.push(bucket(h));
        if let Some(p) = *prev {
            buckets.push(bucket(combine(p, h)));
        }
        *prev = Some(h);
    };
    'tokens: for token in text.split_ascii_whitespace() {
        if token.contains('@') {
            // An e-mail address (or a handle): one word, whatever the address.
            push(EMAIL, &mut prev);
            words += 1;
            if words >= MAX_WORDS {
                break;
            }
            continue;
        }
        let mut word: Option<(u64, bool)> = None;
        for &b in token.as_bytes().iter().chain(std::iter::once(&b' ')) {
            if b.is_ascii_alphanumeric() || b >= 0x80 {
                let (h, digit) = word.get_or_insert((0xCBF2_9CE4_8422_2325, false));
                *h = (*h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(0x0100_0000_01B3);
                *digit |= b.is_ascii_digit();
            } else if let Some((h, digit)) = word.take() {
                push(if digit { NUMBER } else { h }, &mut prev);
                words += 1;
                if words >= MAX_WORDS {
                    break 'tokens;
                }
            }
        }
    }
    buckets.sort_unstable();
    let mut out: Sparse = Vec::with_capacity(buckets.len());
    for b in buckets {
        match out.last_mut() {
            Some((last, w)) if *last == b => *w += 1.0,
            _ => out.push((b, 1.0)),
        }
    }
    let norm = out.iter().map(|(_, w)| w * w).sum::<f32>().sqrt();
    if norm > 0.0 {
        for (_, w) in &mut out {
            *w /= norm;
        }
    }
    out
}

/// The dot product of two sparse vectors (`b` ascending).
pub(crate) fn dot(a: &[(u32, f32)], b: &[(u32, f32)]) -> f32 {
    a.iter()
        .map(|&(i, w)| match b.binary_search_by_key(&i, |e| e.0) {
            Ok(j) => w * b[j].1,
            Err(_) => 0.0,
        })
        .sum()
}

/// Up to this many candidates are scored one by one; more go through the inverted index.
const DIRECT_MAX: usize = 16;

/// Sparse vectors inverted (bucket → (vector, weight)), so that scoring hundreds of them
/// touches only the query's buckets.
fn invert<'a>(vectors: impl Iterator<Item = &'a Sparse>) -> Vec<Vec<(u32, f32)>> {
    let mut postings = vec![Vec::new(); DIM];
    for (t, v) in vectors.enumerate() {
        for &(b, w) in v {
            if let Some(p) = postings.get_mut(b as usize) {
                p.push((t as u32, w));
            }
        }
    }
    postings
}

/// The dot product of `q` with every inverted vector (`n` of them).
fn scores(q: &[(u32, f32)], postings: &[Vec<(u32, f32)>], n: usize) -> Vec<f32> {
    let mut scores = vec![0.0f32; n];
    for &(b, w) in q {
        for &(t, cw) in postings.get(b as usize).map_or(&[][..], Vec::as_slice) {
            if let Some(s) = scores.get_mut(t as usize) {
                *s += w * cw;
            }
        }
    }
    scores
}

/// The task centroids (sparse unit vectors), and a few *exemplars* per task: the vectors of its
/// most frequent distinct texts. A task whose requests come in several phrasings (or
/// languages) has a centroid that is the mean of nearly orthogonal vectors, close to none of
/// them; a request phrased as one of its exemplars is still near that exemplar. A task's score
/// is the best of its centroid and its exemplars.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Centroids {
    /// Per task, ascending buckets; empty when the task's calls had no text.
    vectors: Vec<Sparse>,
    /// Per bucket: (task, weight).
    postings: Vec<Vec<(u32, f32)>>,
    /// (task, unit vector) of each exemplar.
    exemplars: Vec<(u32, Sparse)>,
    /// Per bucket: (exemplar, weight).
    exemplar_postings: Vec<Vec<(u32, f32)>>,
}

impl Centroids {
    /// From per-task vectors and the exemplars (each sorted ascending by bucket, buckets below
    /// [`DIM`]).
    pub(crate) fn new(vectors: Vec<Sparse>, exemplars: Vec<(u32, Sparse)>) -> Centroids {
        let postings = invert(vectors.iter());
        let exemplar_postings = invert(exemplars.iter().map(|e| &e.1));
        Centroids {
            vectors,
            postings,
            exemplars,
            exemplar_postings,
        }
    }

    pub(crate) fn vectors(&self) -> &[Sparse] {
        &self.vectors
    }

    pub(crate) fn exemplars(&self) -> &[(u32, Sparse)] {
        &self.exemplars
    }

    /// The candidate nearest to `q` by cosine (the best of its centroid's and its exemplars'),
    /// that cosine, and the second-best candidate's (−∞ when there is no other candidate).
    /// Candidates without a centroid are skipped.
    pub(crate) fn nearest(&self, q: &[(u32, f32)], candidates: &[u32]) -> Option<(u32, f32, f32)> {
        let mut best: Option<(u32, f32)> = None;
        let mut second = f32::NEG_INFINITY;
        let mut consider = |t: u32, cos: f32| match best {
            Some((_, b)) if cos <= b => second = second.max(cos),
            _ => {
                if let Some((_, b)) = best {
                    second = second.max(b);
                }
                best = Some((t, cos));
            }
        };
        // Each task's best exemplar (none: −∞).
        let mut by_exemplar = vec![f32::NEG_INFINITY; self.vectors.len()];
        if !self.exemplars.is_empty() {
            let ex = scores(q, &self.exemplar_postings, self.exemplars.len());
            for ((t, _), s) in self.exemplars.iter().zip(ex) {
                if let Some(b) = by_exemplar.get_mut(*t as usize) {
                    *b = b.max(s);
                }
            }
        }
        let has_text = |t: u32| self.vectors.get(t as usize).is_some_and(|v| !v.is_empty());
        let exemplar = |t: u32| {
            by_exemplar
                .get(t as usize)
                .copied()
                .unwrap_or(f32::NEG_INFINITY)
        };
        if candidates.len() <= DIRECT_MAX {
            for &t in candidates {
                if let Some(v) = self.vectors.get(t as usize).filter(|v| !v.is_empty()) {
                    consider(t, dot(q, v).max(exemplar(t)));
                }
            }
        } else {
            let scores = scores(q, &self.postings, self.vectors.len());
            for &t in candidates {
                if has_text(t) {
                    let s = scores.get(t as usize).copied().unwrap_or(0.0);
                    consider(t, s.max(exemplar(t)));
                }
            }
        }
        best.map(|(t, b)| (t, b, second))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &str, b: &str) -> f32 {
        dot(&vectorize(a), &vectorize(b))
    }

    #[test]
    fn direct_and_inverted_scoring_agree() {
        let texts: Vec<String> = (0..40)
            .map(|i| format!("topic{} words about item {} and topic{}", i % 7, i, i % 5))
            .collect();
        let c = Centroids::new(texts.iter().map(|t| vectorize(t)).collect(), Vec::new());
        let q = vectorize("words about topic3");
        let all: Vec<u32> = (0..40).collect();
        let (t_all, best_all, second_all) = c.nearest(&q, &all).unwrap();
        // The same scores one by one.
        let scores: Vec<f32> = (0..40).map(|t| dot(&q, &c.vectors()[t])).collect();
        let best_direct = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        // (Several texts are equal, so ties are possible: compare scores, not indices.)
        assert!((best_all - best_direct).abs() < 1e-5);
        assert!((scores[t_all as usize] - best_direct).abs() < 1e-5);
        assert!(second_all <= best_all);
        let few = [3, 10, 17];
        let (t_few, best_few, _) = c.nearest(&q, &few).unwrap();
        let want = few
            .iter()
            .map(|t| scores[*t as usize])
            .fold(f32::NEG_INFINITY, f32::max);
        assert!(few.contains(&t_few));
        assert!((best_few - want).abs() < 1e-5);
        assert_eq!(c.nearest(&q, &[]), None);
        let (_, _, second) = c.nearest(&q, &[5]).unwrap();
        assert_eq!(second, f32::NEG_INFINITY);
    }

    #[test]
    fn similar_texts_are_close() {
        let v = vectorize("Book a table for 2 at 7pm");
        let norm: f32 = v.iter().map(|(_, w)| w * w).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        assert!(v.windows(2).all(|w| w[0].0 < w[1].0));
        assert!((cosine("Hello World", "hello, world!") - 1.0).abs() < 1e-5);
        // Numbers are one word whatever their value.
        assert!((cosine("order 1234 late", "order 98 late") - 1.0).abs() < 1e-5);
        assert!(
            cosine(
                "what is the weather in Paris",
                "what is the weather in Oslo"
            ) > 0.6
        );
        assert!(cosine("what is the weather in Paris", "translate this into German") < 0.2);
        assert!(vectorize("  ,;  ").is_empty());
        // An e-mail address is one word whatever the address (and its parts are not words).
        assert!(
            (cosine(
                "please write to carla.rossi@example.com today",
                "please write to b_o@mail.test today"
            ) - 1.0)
                .abs()
                < 1e-5
        );
        assert!(cosine("mail carla@example.com", "mail carla example com") < 0.5);
    }
}
