//! HDBSCAN behaviour on synthetic data generated deterministically here.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

use downshift_discover::hdbscan::{
    ClusterSelection, HdbscanParams, Metric, adjusted_rand_index, hdbscan, hdbscan_rows,
};

/// splitmix64: tiny deterministic PRNG.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn normal(&mut self) -> f64 {
        let u = self.uniform().max(1e-300);
        let v = self.uniform();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// Gaussian blobs (centre, std, count) plus uniform background noise in `[-box, box]^dim`.
fn blobs(
    seed: u64,
    dim: usize,
    spec: &[(Vec<f64>, f64, usize)],
    noise: usize,
    bound: f64,
) -> (Vec<Vec<f32>>, Vec<Option<usize>>) {
    let mut rng = Rng(seed);
    let mut pts = Vec::new();
    let mut truth = Vec::new();
    for (k, (centre, std, count)) in spec.iter().enumerate() {
        for _ in 0..*count {
            pts.push(
                (0..dim)
                    .map(|d| (centre[d] + std * rng.normal()) as f32)
                    .collect(),
            );
            truth.push(Some(k));
        }
    }
    for _ in 0..noise {
        pts.push(
            (0..dim)
                .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
                .collect(),
        );
        truth.push(None);
    }
    (pts, truth)
}

fn params(min_cluster_size: usize) -> HdbscanParams {
    HdbscanParams {
        min_cluster_size,
        ..HdbscanParams::default()
    }
}

#[test]
fn separated_blobs_with_noise() {
    let spec = vec![
        (vec![0.0, 0.0, 0.0], 0.5, 150),
        (vec![10.0, 0.0, 0.0], 0.5, 150),
        (vec![0.0, 10.0, 5.0], 0.5, 150),
        (vec![-8.0, -8.0, 8.0], 0.5, 150),
    ];
    let (pts, truth) = blobs(1, 3, &spec, 60, 15.0);
    let c = hdbscan_rows(&pts, None, &params(15)).unwrap();
    assert_eq!(c.n_clusters(), 4);
    let blob_idx: Vec<usize> = (0..600).collect();
    let got: Vec<_> = blob_idx.iter().map(|&i| c.labels[i]).collect();
    let want: Vec<_> = blob_idx.iter().map(|&i| truth[i]).collect();
    let ari_all = adjusted_rand_index(&c.labels, &truth);
    let ari_blobs = adjusted_rand_index(&got, &want);
    let noise_as_noise = c.labels[600..].iter().filter(|l| l.is_none()).count();
    println!("ARI all {ari_all:.4}, blobs {ari_blobs:.4}, noise kept as noise {noise_as_noise}/60");
    assert!(ari_all >= 0.95, "ARI {ari_all}");
    assert!(
        noise_as_noise >= 45,
        "{noise_as_noise}/60 noise points left as noise"
    );
    // Probabilities: in [0, 1], 0 for noise, a core of certain members.
    for (l, p) in c.labels.iter().zip(&c.probabilities) {
        assert!((0.0..=1.0).contains(p));
        if l.is_none() {
            assert_eq!(*p, 0.0);
        }
    }
    assert!(c.probabilities.contains(&1.0));
    assert!(c.persistence.iter().all(|p| (0.0..=1.0).contains(p)));
}

#[test]
fn varying_densities() {
    let spec = vec![
        (vec![0.0, 0.0], 0.2, 120),
        (vec![8.0, 0.0], 1.0, 120),
        (vec![0.0, 9.0], 2.0, 200),
    ];
    let (pts, truth) = blobs(2, 2, &spec, 0, 0.0);
    let c = hdbscan_rows(&pts, None, &params(20)).unwrap();
    let ari = adjusted_rand_index(&c.labels, &truth);
    let noise = c.labels.iter().filter(|l| l.is_none()).count();
    println!("ARI {ari:.4}, {} clusters, {noise} noise", c.n_clusters());
    assert_eq!(c.n_clusters(), 3);
    assert!(ari >= 0.9, "ARI {ari}");
}

#[test]
fn weights_equal_expanded_duplicates() {
    let spec = vec![
        (vec![0.0, 0.0], 0.4, 40),
        (vec![6.0, 1.0], 0.6, 40),
        (vec![1.0, 7.0], 0.3, 40),
    ];
    let (pts, _) = blobs(3, 2, &spec, 15, 10.0);
    let mut rng = Rng(33);
    let weights: Vec<f32> = pts
        .iter()
        .map(|_| 1.0 + (rng.next_u64() % 4) as f32)
        .collect();
    let mut expanded = Vec::new();
    let mut origin = Vec::new();
    for (i, p) in pts.iter().enumerate() {
        for _ in 0..weights[i] as usize {
            expanded.push(p.clone());
            origin.push(i);
        }
    }
    for selection in [ClusterSelection::Eom, ClusterSelection::Leaf] {
        let p = HdbscanParams {
            min_cluster_size: 12,
            min_samples: Some(6),
            cluster_selection: selection,
            ..HdbscanParams::default()
        };
        let w = hdbscan_rows(&pts, Some(&weights), &p).unwrap();
        let e = hdbscan_rows(&expanded, None, &p).unwrap();
        let w_labels: Vec<_> = origin.iter().map(|&i| w.labels[i]).collect();
        let ari = adjusted_rand_index(&w_labels, &e.labels);
        println!(
            "{selection:?}: weighted {} clusters, expanded {}, ARI {ari:.4}",
            w.n_clusters(),
            e.n_clusters()
        );
        assert_eq!(w.n_clusters(), e.n_clusters());
        assert!(ari >= 0.99, "ARI {ari}");
        let noise_w = w_labels.iter().filter(|l| l.is_none()).count();
        let noise_e = e.labels.iter().filter(|l| l.is_none()).count();
        assert_eq!(noise_w, noise_e);
    }
}

#[test]
fn single_blob_is_noise_unless_single_cluster_allowed() {
    let (pts, _) = blobs(4, 2, &[(vec![0.0, 0.0], 1.0, 200)], 0, 0.0);
    // Without allow_single_cluster the root is never selected: a lone blob may still split
    // into sub-clusters, but it never comes back as one cluster holding everything.
    let c = hdbscan_rows(&pts, None, &params(100)).unwrap();
    assert_eq!(c.n_clusters(), 0, "{:?}", c.persistence);
    assert!(c.labels.iter().all(Option::is_none));
    let single = HdbscanParams {
        min_cluster_size: 100,
        allow_single_cluster: true,
        ..HdbscanParams::default()
    };
    let c = hdbscan_rows(&pts, None, &single).unwrap();
    assert_eq!(c.n_clusters(), 1);
    assert!(c.labels.iter().all(|l| *l == Some(0)));
}

#[test]
fn deterministic_and_order_independent() {
    let spec = vec![(vec![0.0; 4], 0.5, 100), (vec![5.0; 4], 0.5, 100)];
    let (pts, _) = blobs(5, 4, &spec, 30, 8.0);
    let a = hdbscan_rows(&pts, None, &params(10)).unwrap();
    let b = hdbscan_rows(&pts, None, &params(10)).unwrap();
    assert_eq!(a, b);
    let rev: Vec<_> = pts.iter().rev().cloned().collect();
    let r = hdbscan_rows(&rev, None, &params(10)).unwrap();
    let r_back: Vec<_> = r.labels.iter().rev().cloned().collect();
    assert!(adjusted_rand_index(&a.labels, &r_back) >= 0.99);
}

#[test]
fn cosine_on_directions() {
    // Two bundles of directions in 8-D; scaling a vector must not change its cluster.
    let mut rng = Rng(6);
    let mut data = Vec::new();
    let mut truth = Vec::new();
    for k in 0..2 {
        for _ in 0..60 {
            let scale = 0.5 + 3.0 * rng.uniform();
            for d in 0..8 {
                let base = if d / 4 == k { 1.0 } else { 0.0 };
                data.push(((base + 0.05 * rng.normal()) * scale) as f32);
            }
            truth.push(Some(k));
        }
    }
    let p = HdbscanParams {
        metric: Metric::Cosine,
        ..params(10)
    };
    let c = hdbscan(&data, 8, None, &p).unwrap();
    let ari = adjusted_rand_index(&c.labels, &truth);
    assert!(ari >= 0.95, "ARI {ari}");
}
