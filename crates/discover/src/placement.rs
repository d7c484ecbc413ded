//! Can the router tell the parts of a split apart before the answer exists?
//!
//! A structural group split into parts (by the tool its answers call, or by the instruction in
//! its user turns) is only useful when a request can be sent to the right part: the router sees
//! the request, not the answer. The check mimics the router's second layer — nearest centroid
//! of a hashed n-gram vector of the newest turns — on held-back calls: every fifth call (by a
//! hash of its id) is held back, the centroids are learnt from the others, and a part is placed
//! when at least [`MIN_PLACEMENT`] of its held-back calls land in it. While some part is not,
//! the two parts most confused with each other are merged (one task per agent step: its
//! specialist then learns the choice).

use crate::features::fnv64;
use crate::split::dot;

/// Share of a part's held-back calls the router must place in it for the split to stand.
pub const MIN_PLACEMENT: f64 = 0.98;

/// Whether a call is held back from training the check (about one in five), by a stable key of
/// it (its content in discovery, its id in `discover --placement`).
pub fn held_back(key: &str) -> bool {
    held_back_hash(fnv64(key.as_bytes()))
}

/// [`held_back`] for a key already hashed with [`fnv64`].
pub fn held_back_hash(hash: u64) -> bool {
    hash.is_multiple_of(5)
}

/// The outcome: the parts after merging, and the lowest placement among them (1.0 when one
/// part is left or no call was held back).
#[derive(Debug, Clone)]
pub struct Placement {
    /// The parts after merging, each a list of the caller's call indices.
    pub parts: Vec<Vec<usize>>,
    /// Which input parts each output part is made of.
    pub merged_from: Vec<Vec<usize>>,
    /// The lowest share of a part's held-back calls placed in that part.
    pub min_placement: f64,
    /// Held-back calls placed in their own part / held-back calls, over all parts.
    pub placed: usize,
    /// Held-back calls over all parts.
    pub held: usize,
}

/// Merges parts until every part's held-back calls are placed (see the module docs).
/// `vec_of(i)` is call `i`'s L2-normalised vector; `held(i)` says whether it is held back.
pub fn merge_until_placed(
    parts: Vec<Vec<usize>>,
    vec_of: &dyn Fn(usize) -> Vec<f32>,
    held: &dyn Fn(usize) -> bool,
) -> Placement {
    let vecs: Vec<Vec<(usize, Vec<f32>, bool)>> = parts
        .iter()
        .map(|p| p.iter().map(|&i| (i, vec_of(i), held(i))).collect())
        .collect();
    let mut groups: Vec<Vec<usize>> = (0..parts.len()).map(|p| vec![p]).collect();
    loop {
        let k = groups.len();
        let dim = vecs
            .iter()
            .find_map(|p| p.first())
            .map_or(0, |(_, v, _)| v.len());
        let mut centroids = vec![vec![0f32; dim]; k];
        for (g, members) in groups.iter().enumerate() {
            for &p in members {
                for (_, v, h) in &vecs[p] {
                    if !h {
                        centroids[g].iter_mut().zip(v).for_each(|(a, b)| *a += b);
                    }
                }
            }
            let n = centroids[g].iter().map(|x| x * x).sum::<f32>().sqrt();
            if n > 0.0 {
                centroids[g].iter_mut().for_each(|x| *x /= n);
            }
        }
        let mut confusion = vec![vec![0usize; k]; k];
        for (g, members) in groups.iter().enumerate() {
            for &p in members {
                for (_, v, h) in &vecs[p] {
                    if !h {
                        continue;
                    }
                    let best = centroids
                        .iter()
                        .enumerate()
                        .max_by(|a, b| dot(v, a.1).total_cmp(&dot(v, b.1)).then(b.0.cmp(&a.0)))
                        .map_or(g, |(c, _)| c);
                    confusion[g][best] += 1;
                }
            }
        }
        let placement = |g: usize| {
            let total: usize = confusion[g].iter().sum();
            if total == 0 {
                1.0
            } else {
                confusion[g][g] as f64 / total as f64
            }
        };
        let min_placement = (0..k).map(placement).fold(1.0, f64::min);
        if k <= 1 || min_placement >= MIN_PLACEMENT {
            let held: usize = confusion.iter().flatten().sum();
            let placed: usize = (0..k).map(|g| confusion[g][g]).sum();
            let merged_from = groups.clone();
            let out_parts = groups
                .iter()
                .map(|members| {
                    let mut m: Vec<usize> =
                        members.iter().flat_map(|&p| parts[p].clone()).collect();
                    m.sort_unstable();
                    m
                })
                .collect();
            return Placement {
                parts: out_parts,
                merged_from,
                min_placement: if k <= 1 { 1.0 } else { min_placement },
                placed,
                held,
            };
        }
        // The most confused pair (ties: the lowest indices) becomes one part.
        let best = (0..k)
            .flat_map(|a| (a + 1..k).map(move |b| (a, b)))
            .map(|(a, b)| (confusion[a][b] + confusion[b][a], a, b))
            .fold(None, |best: Option<(usize, usize, usize)>, c| {
                if best.is_none_or(|(bc, ..)| c.0 > bc) {
                    Some(c)
                } else {
                    best
                }
            });
        let Some((_, a, b)) = best else {
            continue;
        };
        let moved = groups.remove(b);
        groups[a].extend(moved);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(x: f32, y: f32) -> Vec<f32> {
        let n = (x * x + y * y).sqrt();
        vec![x / n, y / n]
    }

    #[test]
    fn separable_parts_stay_and_confused_parts_merge() {
        // Part 0 near (1,0), part 1 near (0,1), part 2 overlapping part 1.
        let mut vec_of = Vec::new();
        let mut parts = vec![Vec::new(); 3];
        for i in 0..30 {
            let p = i % 3;
            let v = match p {
                0 => unit(1.0, 0.05 * (i % 4) as f32),
                1 => unit(0.05 * (i % 4) as f32, 1.0),
                _ => unit(0.05 * ((i + 1) % 4) as f32, 1.0),
            };
            parts[p].push(i);
            vec_of.push(v);
        }
        let r = merge_until_placed(parts.clone(), &|i| vec_of[i].clone(), &|i| i % 2 == 0);
        assert_eq!(r.parts.len(), 2, "{r:?}");
        assert!(r.merged_from.contains(&vec![1, 2]), "{r:?}");
        assert_eq!(r.parts[0], parts[0]);
        assert!(r.min_placement >= MIN_PLACEMENT);
        assert_eq!(r.held, 15);

        // Two separable parts are kept as they are.
        let two = vec![parts[0].clone(), parts[1].clone()];
        let r = merge_until_placed(two, &|i| vec_of[i].clone(), &|i| i % 2 == 0);
        assert_eq!(r.parts.len(), 2);
        assert_eq!(r.placed, r.held);
    }
}
