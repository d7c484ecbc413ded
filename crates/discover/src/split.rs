//! Whether a group of calls is one job or several: HDBSCAN allowed to keep the group whole
//! decides, and a forced split is still taken when its weighted silhouette clears a bar. The
//! embedding split ([`crate::pipeline`], cosine) and the answers' relation split
//! ([`crate::relation`], Euclidean) share it, with the small vector helpers they use.

use crate::hdbscan::{ClusterSelection, Clustering, HdbscanError, HdbscanParams, Metric, hdbscan};

/// Mean silhouette (cosine distance, weighted) a split must reach to be taken when HDBSCAN
/// would rather keep the group whole.
pub(crate) const MIN_SPLIT_SILHOUETTE: f64 = 0.15;

/// Weighted mean silhouette of the labelled points (noise left out) under `distance`.
pub(crate) fn silhouette<V: AsRef<[f32]>>(
    vecs: &[V],
    labels: &[Option<usize>],
    weights: &[f32],
    distance: impl Fn(&[f32], &[f32]) -> f32,
) -> f64 {
    let k = labels.iter().flatten().max().map_or(0, |m| m + 1);
    if k < 2 {
        return 0.0;
    }
    let (mut sum, mut total) = (0.0, 0.0);
    for (i, li) in labels.iter().enumerate() {
        let Some(li) = li else { continue };
        let mut dist = vec![0.0f64; k];
        let mut mass = vec![0.0f64; k];
        for (j, lj) in labels.iter().enumerate() {
            let Some(lj) = lj else { continue };
            if i == j {
                continue;
            }
            let w = f64::from(weights[j]);
            dist[*lj] += w * f64::from(distance(vecs[i].as_ref(), vecs[j].as_ref()));
            mass[*lj] += w;
        }
        if mass[*li] == 0.0 {
            continue;
        }
        let a = dist[*li] / mass[*li];
        let b = (0..k)
            .filter(|&c| c != *li && mass[c] > 0.0)
            .map(|c| dist[c] / mass[c])
            .fold(f64::INFINITY, f64::min);
        if !b.is_finite() {
            continue;
        }
        let s = if a.max(b) > 0.0 {
            (b - a) / a.max(b)
        } else {
            0.0
        };
        sum += f64::from(weights[i]) * s;
        total += f64::from(weights[i]);
    }
    if total > 0.0 { sum / total } else { 0.0 }
}

/// The metric HDBSCAN clusters with, and the same distance as a function (for the silhouette).
pub(crate) type Distance = (Metric, fn(&[f32], &[f32]) -> f32);

/// Splits weighted points into clusters, or keeps them whole: HDBSCAN (excess of mass, parts
/// of at least `min_cluster_size` weight) allowed to keep them as one cluster decides first;
/// when it does, the best split it finds when forced is still taken if it is clearly separated
/// (weighted [`silhouette`] under `distance` at least `min_silhouette`). `None`: one cluster.
pub(crate) fn split_or_whole<V: AsRef<[f32]>>(
    vecs: &[V],
    weights: &[f32],
    min_cluster_size: usize,
    (metric, distance): Distance,
    min_silhouette: f64,
) -> Result<Option<Clustering>, HdbscanError> {
    let dim = vecs.first().map_or(0, |v| v.as_ref().len());
    let data: Vec<f32> = vecs.iter().flat_map(|v| v.as_ref()).copied().collect();
    let run = |allow_single_cluster| {
        hdbscan(
            &data,
            dim,
            Some(weights),
            &HdbscanParams {
                min_cluster_size,
                min_samples: None,
                metric,
                cluster_selection: ClusterSelection::Eom,
                cluster_selection_epsilon: 0.0,
                allow_single_cluster,
            },
        )
    };
    let mut result = run(true)?;
    if result.n_clusters() <= 1 {
        let forced = run(false)?;
        if forced.n_clusters() >= 2
            && silhouette(vecs, &forced.labels, weights, distance) >= min_silhouette
        {
            result = forced;
        }
    }
    Ok((result.n_clusters() >= 2).then_some(result))
}

/// The centroid most similar to `v`.
pub(crate) fn nearest(v: &[f32], centroids: &[Vec<f32>]) -> Option<usize> {
    centroids
        .iter()
        .enumerate()
        .max_by(|a, b| dot(v, a.1).total_cmp(&dot(v, b.1)))
        .map(|(c, _)| c)
}

/// Scales `v` to unit length (a zero vector stays zero).
pub(crate) fn normalise(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// Dot product (cosine similarity of unit vectors).
pub(crate) fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// `1 − cos` of two unit vectors.
pub(crate) fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    1.0 - dot(a, b)
}
