//! Parity with scikit-learn's HDBSCAN on the fixture written by
//! `bench/discover/hdbscan_reference.py`.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

use downshift_discover::hdbscan::{ClusterSelection, HdbscanParams, adjusted_rand_index, hdbscan};
use serde_json::Value;

fn fixture() -> Value {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/hdbscan_reference.json"
    );
    let text = std::fs::read_to_string(path).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn labels_match_scikit_learn() {
    let fx = fixture();
    let cases = fx["cases"].as_array().unwrap();
    assert!(cases.len() >= 4);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let dim = case["dim"].as_u64().unwrap() as usize;
        let data: Vec<f32> = case["points"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|p| {
                p.as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap() as f32)
            })
            .collect();
        let p = &case["params"];
        let params = HdbscanParams {
            min_cluster_size: p["min_cluster_size"].as_u64().unwrap() as usize,
            min_samples: p["min_samples"].as_u64().map(|v| v as usize),
            cluster_selection: match p["cluster_selection_method"].as_str().unwrap() {
                "leaf" => ClusterSelection::Leaf,
                _ => ClusterSelection::Eom,
            },
            cluster_selection_epsilon: p["cluster_selection_epsilon"].as_f64().unwrap() as f32,
            allow_single_cluster: p["allow_single_cluster"].as_bool().unwrap(),
            ..HdbscanParams::default()
        };
        let want: Vec<Option<usize>> = case["labels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| usize::try_from(v.as_i64().unwrap()).ok())
            .collect();
        let want_prob: Vec<f64> = case["probabilities"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let got = hdbscan(&data, dim, None, &params).unwrap();
        let ari = adjusted_rand_index(&got.labels, &want);
        let n_want = want.iter().flatten().max().map_or(0, |m| m + 1);
        let prob_err = got
            .probabilities
            .iter()
            .zip(&want_prob)
            .map(|(a, b)| (f64::from(*a) - b).abs())
            .fold(0.0, f64::max);
        let prob_mean = got
            .probabilities
            .iter()
            .zip(&want_prob)
            .map(|(a, b)| (f64::from(*a) - b).abs())
            .sum::<f64>()
            / want_prob.len() as f64;
        println!(
            "{name}: ARI {ari:.4}, clusters {} (reference {n_want}), |Δprobability| max {prob_err:.4} mean {prob_mean:.4}",
            got.n_clusters()
        );
        assert!(ari >= 0.99, "{name}: ARI {ari}");
        assert_eq!(got.n_clusters(), n_want, "{name}");
        assert!(
            prob_mean < 0.05,
            "{name}: probabilities differ by {prob_mean} on average"
        );
    }
}
