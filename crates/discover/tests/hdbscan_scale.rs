//! Timing at scale (ignored by default; run optimised):
//! `cargo test --release -p downshift-discover --test hdbscan_scale -- --ignored --nocapture`
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

use downshift_discover::hdbscan::{HdbscanParams, Metric, hdbscan};
use std::time::Instant;

/// splitmix64.
fn next(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// `n` L2-normalised 384-d vectors around 40 random directions (embedding-like).
fn embeddings(n: usize) -> Vec<f32> {
    let dim = 384;
    let mut s = 7u64;
    let centres: Vec<f64> = (0..40 * dim).map(|_| next(&mut s)).collect();
    let mut out = Vec::with_capacity(n * dim);
    for i in 0..n {
        let c = &centres[(i % 40) * dim..(i % 40 + 1) * dim];
        let v: Vec<f64> = c.iter().map(|x| x + 0.6 * next(&mut s)).collect();
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        out.extend(v.iter().map(|x| (x / norm) as f32));
    }
    out
}

#[test]
#[ignore = "timing; run with --release"]
fn time_384d() {
    for n in [5_000, 20_000] {
        let data = embeddings(n);
        let params = HdbscanParams {
            min_cluster_size: 10,
            metric: Metric::Cosine,
            ..HdbscanParams::default()
        };
        let t = Instant::now();
        let c = hdbscan(&data, 384, None, &params).unwrap();
        let noise = c.labels.iter().filter(|l| l.is_none()).count();
        println!(
            "n = {n}: {:.2} s, {} clusters, {noise} noise",
            t.elapsed().as_secs_f64(),
            c.n_clusters()
        );
    }
}
