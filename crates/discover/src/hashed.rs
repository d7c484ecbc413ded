//! A hashed n-gram embedding for tiny deployments (no model file): lower-cased word unigrams
//! and bigrams plus character trigrams of each word, signed feature hashing into `dim`
//! buckets, sublinear term frequency, L2-normalised. Lexical, not semantic — the explicit
//! fallback when all-MiniLM-L6-v2 cannot be shipped.

use crate::features::fnv64;

/// Hashed n-gram embedder.
#[derive(Debug, Clone)]
pub struct HashedEmbedder {
    dim: usize,
}

impl HashedEmbedder {
    /// An embedder into `dim` buckets (at least 8).
    pub fn new(dim: usize) -> Self {
        HashedEmbedder { dim: dim.max(8) }
    }

    /// The length of its vectors.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The embedding of one text.
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dim];
        let lower = text.to_lowercase();
        let words: Vec<&str> = lower
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
            .collect();
        let mut add = |feature: &str, weight: f32| {
            let h = fnv64(feature.as_bytes());
            let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
            v[(h % self.dim as u64) as usize] += sign * weight;
        };
        for (i, w) in words.iter().enumerate() {
            add(&format!("w:{w}"), 1.0);
            if let Some(next) = words.get(i + 1) {
                add(&format!("b:{w} {next}"), 0.7);
            }
            let padded: Vec<char> = format!("<{w}>").chars().collect();
            for tri in padded.windows(3) {
                add(&format!("c:{}", tri.iter().collect::<String>()), 0.3);
            }
        }
        for x in v.iter_mut() {
            *x = x.signum() * (1.0 + x.abs()).ln();
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        } else {
            v[0] = 1.0;
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn similar_texts_are_closer_than_different_ones() {
        let e = HashedEmbedder::new(384);
        let a = e.embed_one("What is the weather in Paris tomorrow?");
        let b = e.embed_one("What is the weather in Berlin tomorrow?");
        let c = e.embed_one("Extract the order number and items as JSON");
        assert!((cos(&a, &a) - 1.0).abs() < 1e-5);
        assert!(
            cos(&a, &b) > cos(&a, &c) + 0.3,
            "{} {}",
            cos(&a, &b),
            cos(&a, &c)
        );
        // Empty text still gives a unit vector.
        assert!((cos(&e.embed_one(""), &e.embed_one("")) - 1.0).abs() < 1e-5);
    }
}
