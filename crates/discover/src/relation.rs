//! How an answer relates to the material it works on — features of a job that do not depend on
//! the language the instruction is phrased in.
//!
//! Under a generic system prompt the job is the instruction in the user turn, and the same job
//! is asked for in many languages ("Translate into French:", "Traduis en anglais :",
//! "Übersetze ins Englische:"). A sentence embedder trained on one language groups those heads
//! by their language, not by the job. What the answer *does* with the material is the same in
//! every language, and cheap to measure:
//!
//! * **language kept**: is the answer in the material's language (character-trigram language id,
//!   [`whatlang`])? A translation changes it; a summary or a grammar fix keeps it;
//! * **length**: the answer's words over the material's (log scale): a summary is shorter, a
//!   translation or a fix about as long, a label a word or two;
//! * **words kept**: the share of the answer's words found in the material (a fix or a summary
//!   reuses them; a translation keeps only names and numbers);
//! * **material covered**: the share of the material's distinct words found in the answer (a fix
//!   keeps nearly all of them, a summary few);
//! * **repeated answer**: the share of the group's calls that gave exactly this answer — a
//!   classifier repeats a small label set, a writer never repeats itself ([`Repetition`]).
//!
//! Each feature lies in `[0, 1]` (language kept in `[0, 1/2]`: its weight is half), so the
//! vector is clustered with the Euclidean distance.

use std::collections::{HashMap, HashSet};

use whatlang::Detector;

use crate::hdbscan::{HdbscanError, Metric};
use crate::split::split_or_whole;

/// Number of features in a [`Relation`] vector.
pub const DIM: usize = 5;

/// Fewest words a text needs for its language to be read (shorter: unknown).
const MIN_WORDS_FOR_LANGUAGE: usize = 4;

/// Least confidence of the language detector for a language to count as read.
const MIN_LANGUAGE_CONFIDENCE: f64 = 0.5;

/// The weight of the language feature: unsure detections make it the noisiest one, and the
/// words kept tell a translation apart too.
const LANGUAGE_WEIGHT: f32 = 0.5;

/// An answer's relation to its material (see the module docs), each feature in `[0, 1]`.
pub type Relation = [f32; DIM];

/// The material of a user turn: what follows its instruction head (`head` is a prefix of the
/// trimmed turn, as [`crate::mask::instruction_part`] returns it).
pub fn material<'a>(turn: &'a str, head: &str) -> &'a str {
    let t = turn.trim_start();
    t.get(head.len()..).unwrap_or_default().trim()
}

/// Lower-cased words (letters and digits) of a text.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Reads the language of texts (a [`whatlang`] detector; cheap to share across threads).
#[derive(Debug, Default)]
pub struct LanguageId {
    detector: Detector,
}

impl LanguageId {
    /// A detector over every language whatlang knows.
    pub fn new() -> Self {
        LanguageId {
            detector: Detector::new(),
        }
    }

    /// The language of a text, `None` when it is too short to tell or the detector is unsure
    /// (names and places in a short sentence can make English read as Italian).
    fn language(&self, text: &str, n_words: usize) -> Option<whatlang::Lang> {
        if n_words < MIN_WORDS_FOR_LANGUAGE {
            return None;
        }
        self.detector
            .detect(text)
            .filter(|i| i.confidence() >= MIN_LANGUAGE_CONFIDENCE)
            .map(|i| i.lang())
    }

    /// The relation of `answer` to `material`; `None` when either has no word (nothing to
    /// relate). `repeated`: the share of the group's answers equal to this one ([`Repetition`]).
    pub fn relation(&self, material: &str, answer: &str, repeated: f32) -> Option<Relation> {
        let m = words(material);
        let a = words(answer);
        if m.is_empty() || a.is_empty() {
            return None;
        }
        let same_language = match (
            self.language(material, m.len()),
            self.language(answer, a.len()),
        ) {
            (Some(x), Some(y)) => f32::from(u8::from(x == y)),
            _ => 0.5,
        } * LANGUAGE_WEIGHT;
        // log2 of the ratio, −4 (a sixteenth) … +2 (four times), mapped to [0, 1].
        let ratio = (a.len() as f32 / m.len() as f32).log2();
        let length = ((ratio + 4.0) / 6.0).clamp(0.0, 1.0);
        let in_material: HashSet<&str> = m.iter().map(String::as_str).collect();
        let in_answer: HashSet<&str> = a.iter().map(String::as_str).collect();
        let kept = a
            .iter()
            .filter(|w| in_material.contains(w.as_str()))
            .count() as f32
            / a.len() as f32;
        let covered = in_material
            .iter()
            .filter(|w| in_answer.contains(*w))
            .count() as f32
            / in_material.len() as f32;
        Some([same_language, length, kept, covered, repeated])
    }
}

/// How often each answer occurs in a group (answers compared trimmed and lower-cased).
#[derive(Debug, Default)]
pub struct Repetition {
    counts: HashMap<String, usize>,
    n: usize,
}

impl Repetition {
    /// Counts the answers of a group.
    pub fn new<'a>(answers: impl IntoIterator<Item = &'a str>) -> Self {
        let mut r = Repetition::default();
        for a in answers {
            *r.counts.entry(a.trim().to_lowercase()).or_default() += 1;
            r.n += 1;
        }
        r
    }

    /// The share of the group's answers equal to `answer`.
    pub fn share(&self, answer: &str) -> f32 {
        self.counts
            .get(&answer.trim().to_lowercase())
            .copied()
            .unwrap_or(0) as f32
            / self.n.max(1) as f32
    }
}

/// The mean of the relations present (`None` when there is none).
pub fn mean<'a>(relations: impl IntoIterator<Item = &'a Relation>) -> Option<Relation> {
    let mut sum = [0f32; DIM];
    let mut n = 0usize;
    for r in relations {
        sum.iter_mut().zip(r).for_each(|(s, x)| *s += x);
        n += 1;
    }
    (n > 0).then(|| sum.map(|s| s / n as f32))
}

/// Two parts whose mean relations are closer than this (Euclidean, features in `[0, 1]`) do
/// the same thing with their material: they are one job.
pub const MIN_GAP: f32 = 0.4;

/// Weighted silhouette a forced split must reach (HDBSCAN would rather keep the group whole).
const MIN_FORCED_SILHOUETTE: f64 = 0.5;

fn distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y) * (x - y))
        .sum::<f32>()
        .sqrt()
}

/// A split into jobs: the number of parts and each text's part.
pub type Split = (usize, Vec<Option<usize>>);

/// Splits texts (a generic prompt's distinct instruction heads) into jobs by what their answers
/// do with the material: `relations[k]` is text `k`'s mean relation (`None`: nothing to relate),
/// `weights[k]` its number of calls; the texts in `candidates` are clustered (HDBSCAN,
/// Euclidean, weighted, parts of at least `min_part` calls; a forced split only when clearly
/// separated), parts closer than [`MIN_GAP`] are joined, and every text with a relation takes
/// the nearest part. `None` when the texts are one job by this measure; else the number of parts
/// and each text's part (`None` for a text without a relation).
pub fn split(
    relations: &[Option<Relation>],
    weights: &[f32],
    candidates: &[usize],
    min_part: usize,
) -> Result<Option<Split>, HdbscanError> {
    let points: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&k| relations[k].is_some())
        .collect();
    if points.len() < 2 {
        return Ok(None);
    }
    let rel = |k: usize| relations[k].unwrap_or_default();
    // Weights scaled so that the candidates stand for every text's calls.
    let all: f32 = (0..relations.len())
        .filter(|&k| relations[k].is_some())
        .map(|k| weights[k])
        .sum();
    let sampled: f32 = points.iter().map(|&k| weights[k]).sum();
    let scale = all / sampled.max(1.0);
    let w: Vec<f32> = points.iter().map(|&k| weights[k] * scale).collect();
    let vecs: Vec<Relation> = points.iter().map(|&k| rel(k)).collect();
    let split = split_or_whole(
        &vecs,
        &w,
        min_part,
        (Metric::Euclidean, distance),
        MIN_FORCED_SILHOUETTE,
    )?;
    let Some(result) = split else {
        return Ok(None);
    };
    // Weighted mean relation of each cluster, then clusters closer than MIN_GAP joined.
    let centroid_of = |labels: &[Option<usize>], k: usize| -> Vec<Relation> {
        let mut sum = vec![[0f32; DIM]; k];
        let mut mass = vec![0f32; k];
        for ((l, &p), &wt) in labels.iter().zip(&points).zip(&w) {
            if let Some(c) = l {
                sum[*c]
                    .iter_mut()
                    .zip(rel(p))
                    .for_each(|(s, x)| *s += wt * x);
                mass[*c] += wt;
            }
        }
        sum.iter()
            .zip(&mass)
            .map(|(s, m)| s.map(|x| x / m.max(f32::MIN_POSITIVE)))
            .collect()
    };
    let mut labels = result.labels.clone();
    let mut k = result.n_clusters();
    loop {
        let c = centroid_of(&labels, k);
        let closest = (0..k)
            .flat_map(|a| (a + 1..k).map(move |b| (a, b)))
            .map(|(a, b)| (distance(&c[a], &c[b]), a, b))
            .min_by(|x, y| x.0.total_cmp(&y.0));
        match closest {
            Some((d, a, b)) if d < MIN_GAP => {
                for l in labels.iter_mut().flatten() {
                    if *l == b {
                        *l = a;
                    } else if *l > b {
                        *l -= 1;
                    }
                }
                k -= 1;
            }
            _ => break,
        }
    }
    if k <= 1 {
        return Ok(None);
    }
    let centroids = centroid_of(&labels, k);
    let nearest = |r: &Relation| {
        (0..k).min_by(|&a, &b| distance(r, &centroids[a]).total_cmp(&distance(r, &centroids[b])))
    };
    Ok(Some((
        k,
        relations
            .iter()
            .map(|r| r.as_ref().and_then(nearest))
            .collect(),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MATERIAL: &str = "The train strike in Lyon continues for a third day. Commuters like \
        Carla Rossi are working from home, and the roads into the centre are jammed every \
        morning. Unions and the rail company will meet again on Friday, but neither side \
        expects a quick deal.";

    #[test]
    fn translation_summary_and_fix_relate_differently_to_their_material() {
        let id = LanguageId::new();
        let translation = id
            .relation(
                MATERIAL,
                "La grève des trains à Lyon continue pour le troisième jour. Les navetteurs \
                 comme Carla Rossi travaillent depuis chez eux, et les routes vers le centre \
                 sont bloquées chaque matin. Les syndicats et la compagnie se retrouveront \
                 vendredi, mais personne n'attend un accord rapide.",
                0.0,
            )
            .unwrap();
        let summary = id
            .relation(
                MATERIAL,
                "The rail strike in Lyon goes on; talks resume on Friday.",
                0.0,
            )
            .unwrap();
        let bad = "me and Carla goes to Lyon yesterday and we buyed a lamp";
        let fix = id
            .relation(
                bad,
                "Carla and I went to Lyon yesterday and we bought a lamp.",
                0.0,
            )
            .unwrap();
        // Language: the translation changes it, the summary and the fix keep it.
        assert_eq!(translation[0], 0.0);
        assert_eq!(summary[0], LANGUAGE_WEIGHT);
        assert_eq!(fix[0], LANGUAGE_WEIGHT);
        // Length: the summary is much shorter; the others about as long.
        assert!(summary[1] < 0.5 && translation[1] > 0.6 && fix[1] > 0.6);
        // Words kept: the fix and the summary reuse the material's words, the translation not.
        assert!(translation[2] < 0.3, "{translation:?}");
        assert!(summary[2] > 0.6 && fix[2] > 0.6, "{summary:?} {fix:?}");
        // Material covered: only the fix keeps most of it.
        assert!(fix[3] > 0.6 && summary[3] < 0.4, "{fix:?} {summary:?}");
        // Nothing to relate.
        assert!(id.relation("", "text", 0.0).is_none());
        assert!(id.relation("some material", " ... ", 0.0).is_none());
    }

    #[test]
    fn the_language_of_a_short_text_is_unknown() {
        let id = LanguageId::new();
        let r = id.relation(MATERIAL, "positive", 0.4).unwrap();
        assert_eq!(r[DIM - 1], 0.4);
        assert_eq!(r[0], 0.5 * LANGUAGE_WEIGHT);
        assert!(r[1] < 0.1, "{r:?}");
    }

    #[test]
    fn material_follows_the_head_and_repetition_counts_equal_answers() {
        assert_eq!(
            material(
                "  Translate into French: Bonjour tout le monde",
                "Translate into French:"
            ),
            "Bonjour tout le monde"
        );
        assert_eq!(material("Fix this", "Fix this"), "");
        let r = Repetition::new(["positive", "Positive ", "negative", "neutral"]);
        assert_eq!(r.share("positive"), 0.5);
        assert_eq!(r.share("neutral"), 0.25);
        assert_eq!(r.share("mixed"), 0.0);
        assert_eq!(
            mean([&[1.0, 0.0, 0.0, 0.0, 0.0], &[0.0, 1.0, 0.0, 0.0, 0.0]]),
            Some([0.5, 0.5, 0.0, 0.0, 0.0])
        );
        assert_eq!(mean(std::iter::empty::<&Relation>()), None);
    }
}
