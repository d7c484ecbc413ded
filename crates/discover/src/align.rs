//! Tasks the router can serve whole: clusters reshaped to hold whole request keys.

use std::collections::{BTreeMap, HashMap};

use crate::features::{CallFeatures, ToolRef, fnv64};

/// The clusters, reshaped so that each holds whole *request keys* — what the router can see
/// of a request before it is answered: the offered tools (by definition) and the system-prompt
/// template. Every call of a key goes to the cluster that holds most of the key's calls (its
/// noise calls too: the router will send them there); a cluster left with fewer than `mcs`
/// calls dissolves into noise.
///
/// Discovery's groups also look at the answer (which tool family was called), which the
/// router cannot: an agent offering two APIs sends requests that look alike whichever API
/// its next step calls, so the router either abstains on them or sends them to a specialist
/// that never saw the other API's steps. Aligned, a task is exactly the traffic its
/// specialist will serve, and its specialist learns from all of it.
pub(crate) fn align_to_requests(
    clusters: Vec<(Vec<usize>, String, bool, Vec<f32>)>,
    feats: &[&CallFeatures],
    sigs: &[String],
    mcs: usize,
) -> Vec<(Vec<usize>, String, bool, Vec<f32>)> {
    let key_of = |i: usize| -> (&str, u64) {
        // The signature starts with the system template's hash (`sys:<16 hex>|`).
        let template = sigs[i].split('|').next().unwrap_or_default();
        (template, tool_list_hash(&feats[i].tools))
    };
    let mut owner: Vec<Option<usize>> = vec![None; feats.len()];
    for (c, (members, ..)) in clusters.iter().enumerate() {
        for &i in members {
            owner[i] = Some(c);
        }
    }
    // Per key: its calls and how many of them each cluster holds.
    let mut keys: HashMap<_, (Vec<usize>, BTreeMap<usize, usize>)> = HashMap::new();
    for (i, cluster) in owner.iter().enumerate() {
        let e = keys.entry(key_of(i)).or_default();
        e.0.push(i);
        if let Some(c) = *cluster {
            *e.1.entry(c).or_default() += 1;
        }
    }
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); clusters.len()];
    for (calls, counts) in keys.into_values() {
        // Most calls; on a tie the earlier cluster (deterministic).
        if let Some((&c, _)) = counts.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))) {
            members[c].extend(calls);
        }
    }
    clusters
        .into_iter()
        .zip(members)
        .filter(|(_, m)| m.len() >= mcs)
        .map(|((_, sig, split, centroid), mut m)| {
            m.sort_unstable();
            (m, sig, split, centroid)
        })
        .collect()
}

/// A tool list by its tools' names and whole definitions.
pub(crate) fn tool_list_hash(tools: &[ToolRef]) -> u64 {
    let mut h = String::new();
    for t in tools {
        h.push_str(&format!("{}#{:x};", t.name, t.def_hash));
    }
    fnv64(h.as_bytes())
}
