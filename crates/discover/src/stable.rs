//! Stable task ids: a new run's clusters are matched to the tasks of the previous run, so a
//! task that persists keeps its id while the data grows.
//!
//! 1. **Overlap of calls**: pairs (new cluster, old task) are taken greedily by the number of
//!    calls they share; a pair matches when the shared calls are more than half of the old
//!    task's calls still present, or more than half of the new cluster.
//! 2. **Signature and centroid**: a cluster left over (e.g. a run over another data set) takes
//!    the id of a left-over old task with the same structural signature when their centroids
//!    agree (cosine ≥ [`CENTROID_MATCH`]) or either has none and the signature is unique.
//! 3. Otherwise a new id is minted: `task_` + 10 hex digits of a hash of the signature and the
//!    cluster's [`NewCluster::anchor`] (its content, not its call ids: the same traffic logged
//!    again under other ids gets the same ids).

use std::collections::{HashMap, HashSet};

use crate::features::fnv64;

/// Cosine of centroids above which two tasks with the same signature are the same task.
pub const CENTROID_MATCH: f32 = 0.9;

/// A task of an earlier run, as stored.
#[derive(Debug, Clone, Default)]
pub struct PriorTask {
    /// Its id (`task_…`).
    pub id: String,
    /// When it was first discovered, ms since the Unix epoch.
    pub created_ms: i64,
    /// Its structural signature.
    pub signature: String,
    /// Mean embedding of its sampled texts (empty when its group was not embedded).
    pub centroid: Vec<f32>,
    /// Its calls (from the stored assignments).
    pub calls: Vec<String>,
}

/// A cluster of this run, to be given an id.
#[derive(Debug, Clone)]
pub struct NewCluster<'a> {
    /// Its structural signature.
    pub signature: &'a str,
    /// Ids of its calls.
    pub calls: Vec<&'a str>,
    /// Mean embedding of its sampled texts (empty when its group was not embedded).
    pub centroid: &'a [f32],
    /// A key of the cluster's content that does not depend on the ids its calls were logged
    /// under (the pipeline takes the smallest hash of a member's request text): a new task's id
    /// comes from it, so the same traffic imported or replayed again gets the same ids.
    pub anchor: u64,
}

fn cosine(a: &[f32], b: &[f32]) -> Option<f32> {
    if a.is_empty() || a.len() != b.len() {
        return None;
    }
    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
    (na > 0.0 && nb > 0.0).then(|| dot / (na * nb))
}

/// For each new cluster: its id and, when it continues an old task, that task's index.
pub fn assign_ids(new: &[NewCluster<'_>], prior: &[PriorTask]) -> Vec<(String, Option<usize>)> {
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (k, p) in prior.iter().enumerate() {
        for c in &p.calls {
            owner.insert(c.as_str(), k);
        }
    }
    let present: HashSet<&str> = new.iter().flat_map(|n| n.calls.iter().copied()).collect();
    let mut prior_present = vec![0usize; prior.len()];
    for c in &present {
        if let Some(&k) = owner.get(c) {
            prior_present[k] += 1;
        }
    }
    let mut overlap: HashMap<(usize, usize), usize> = HashMap::new();
    for (j, n) in new.iter().enumerate() {
        for c in &n.calls {
            if let Some(&k) = owner.get(c) {
                *overlap.entry((j, k)).or_insert(0) += 1;
            }
        }
    }
    let mut pairs: Vec<((usize, usize), usize)> = overlap.into_iter().collect();
    pairs.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut matched: Vec<Option<usize>> = vec![None; new.len()];
    let mut taken = vec![false; prior.len()];
    for ((j, k), shared) in pairs {
        if matched[j].is_some() || taken[k] {
            continue;
        }
        if 2 * shared > prior_present[k] || 2 * shared > new[j].calls.len() {
            matched[j] = Some(k);
            taken[k] = true;
        }
    }
    // Left-overs: same signature and agreeing centroids.
    for (j, n) in new.iter().enumerate() {
        if matched[j].is_some() {
            continue;
        }
        let candidates: Vec<usize> = (0..prior.len())
            .filter(|&k| !taken[k] && prior[k].signature == n.signature)
            .collect();
        let best = candidates
            .iter()
            .filter_map(|&k| cosine(n.centroid, &prior[k].centroid).map(|c| (k, c)))
            .filter(|&(_, c)| c >= CENTROID_MATCH)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(k, _)| k);
        let pick = best.or_else(|| {
            let same_sig = new.iter().filter(|m| m.signature == n.signature).count();
            (candidates.len() == 1
                && same_sig == 1
                && cosine(n.centroid, &prior[candidates[0]].centroid).is_none())
            .then(|| candidates[0])
        });
        if let Some(k) = pick {
            matched[j] = Some(k);
            taken[k] = true;
        }
    }
    let mut used: HashSet<String> = prior.iter().map(|p| p.id.clone()).collect();
    new.iter()
        .zip(matched)
        .map(|(n, m)| match m {
            Some(k) => (prior[k].id.clone(), Some(k)),
            None => {
                let mut salt = 0u32;
                loop {
                    let h = fnv64(
                        format!("{}\u{1f}{:016x}\u{1f}{salt}", n.signature, n.anchor).as_bytes(),
                    );
                    let id = format!("task_{:010x}", h & 0xff_ffff_ffff);
                    if used.insert(id.clone()) {
                        break (id, None);
                    }
                    salt += 1;
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prior(id: &str, sig: &str, calls: &[&str]) -> PriorTask {
        PriorTask {
            id: id.into(),
            created_ms: 1,
            signature: sig.into(),
            centroid: Vec::new(),
            calls: calls.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    #[test]
    fn persisting_tasks_keep_their_ids_and_new_ones_get_fresh_ids() {
        let old = [
            prior("task_a", "s1", &["1", "2", "3", "4"]),
            prior("task_b", "s2", &["5", "6", "7"]),
            prior("task_gone", "s3", &["8", "9"]),
        ];
        let new = [
            // Grown: old calls plus new ones.
            NewCluster {
                signature: "s2",
                calls: vec!["5", "6", "7", "10", "11"],
                centroid: &[],
                anchor: 1,
            },
            NewCluster {
                signature: "s1",
                calls: vec!["1", "2", "3", "12"],
                centroid: &[],
                anchor: 2,
            },
            // Brand new.
            NewCluster {
                signature: "s4",
                calls: vec!["13", "14"],
                centroid: &[],
                anchor: 3,
            },
        ];
        let ids = assign_ids(&new, &old);
        assert_eq!(ids[0], ("task_b".to_owned(), Some(1)));
        assert_eq!(ids[1], ("task_a".to_owned(), Some(0)));
        assert!(ids[2].0.starts_with("task_") && ids[2].1.is_none());
        // Deterministic.
        assert_eq!(assign_ids(&new, &old), ids);
    }

    #[test]
    fn a_split_keeps_the_id_for_the_larger_part_and_signature_matching_works() {
        let old = [prior("task_a", "s1", &["1", "2", "3", "4", "5"])];
        let new = [
            NewCluster {
                signature: "s1",
                calls: vec!["1", "2"],
                centroid: &[],
                anchor: 4,
            },
            NewCluster {
                signature: "s1",
                calls: vec!["3", "4", "5"],
                centroid: &[],
                anchor: 5,
            },
        ];
        let ids = assign_ids(&new, &old);
        assert_eq!(ids[1].0, "task_a");
        assert_ne!(ids[0].0, "task_a");
        // Disjoint calls (e.g. another data set): the signature and centroid decide.
        let mut o = prior("task_x", "s9", &["a"]);
        o.centroid = vec![1.0, 0.0];
        let n = [NewCluster {
            signature: "s9",
            calls: vec!["b"],
            centroid: &[0.99, 0.05],
            anchor: 6,
        }];
        assert_eq!(assign_ids(&n, &[o.clone()])[0].0, "task_x");
        let far = [NewCluster {
            signature: "s9",
            calls: vec!["b"],
            centroid: &[0.0, 1.0],
            anchor: 7,
        }];
        assert_ne!(assign_ids(&far, &[o])[0].0, "task_x");
    }

    #[test]
    fn a_new_task_id_comes_from_content_not_from_call_ids() {
        let cluster = |calls: Vec<&'static str>| NewCluster {
            signature: "s1",
            calls,
            centroid: &[],
            anchor: 42,
        };
        // The same traffic logged under other ids (a fresh import, a replay through the
        // gateway) gets the same new id; other content, another one.
        let a = assign_ids(&[cluster(vec!["1", "2"])], &[]);
        let b = assign_ids(&[cluster(vec!["x", "y"])], &[]);
        assert_eq!(a, b);
        let mut other = cluster(vec!["1", "2"]);
        other.anchor = 43;
        assert_ne!(assign_ids(&[other], &[])[0].0, a[0].0);
    }
}
