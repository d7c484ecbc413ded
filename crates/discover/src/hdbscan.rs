//! HDBSCAN density clustering — no `k`, noise stays unassigned.
//!
//! Written from the papers (Campello, Moulavi & Sander, *Density-Based Clustering Based on
//! Hierarchical Density Estimates*, 2013; Campello et al., *Hierarchical Density Estimates for
//! Data Clustering, Visualization, and Outlier Detection*, 2015) and the documentation of
//! McInnes' `hdbscan` library, whose conventions it follows so that results can be compared:
//!
//! 1. **core distance** of a point: distance to its `min_samples`-th nearest neighbour, the point
//!    itself counting as the first (as in `hdbscan` and scikit-learn);
//! 2. **mutual reachability** `mr(a, b) = max(core(a), core(b), d(a, b))`;
//! 3. **minimum spanning tree** of the mutual-reachability graph (Prim, `O(n²)` distance
//!    evaluations, no `n²` memory; rows are processed in parallel with rayon);
//! 4. **single-linkage tree** from the sorted MST edges (union–find);
//! 5. **condensed tree**: walking down from the root at `λ = 1/distance`, a split in which both
//!    sides hold at least `min_cluster_size` points creates two new clusters, otherwise the
//!    smaller side's points "fall out" of the cluster at that `λ`;
//! 6. **stability** `Σ (λ_p − λ_birth) · size` per cluster, then **excess of mass** (or leaf)
//!    selection, optional `cluster_selection_epsilon` merging;
//! 7. **labels**, **membership probabilities** (`λ_p / λ_max` of the point's cluster, as
//!    `probabilities_`) and **persistence** per cluster (`cluster_persistence_`).
//!
//! **Weights** are multiplicities: a point with weight 10 behaves like 10 identical points, both
//! in core distances (its own copies are its nearest neighbours, at distance 0) and in cluster
//! sizes and stabilities. Deduplicated inputs therefore cluster like the expanded input.
//!
//! **Metric.** [`Metric::Cosine`] L2-normalises a copy of the input and uses
//! `1 − cos(a, b) = ‖â − b̂‖² / 2`, computed as the squared Euclidean distance of the normalised
//! vectors halved (no cancellation for near-duplicates). [`Metric::Euclidean`] is plain `‖a − b‖`.
//! Everything up to the MST works on squared distances (all steps are monotone), converted once.
//!
//! **Scale.** The exact MST costs `n²/2` distance evaluations, the core distances another `n²/2`
//! (blocked so each point is read once per block of rows). This is meant for up to a few tens of
//! thousands of *distinct* points; callers deduplicate identical texts and pass weights.

use rayon::prelude::*;

/// Errors from [`hdbscan`].
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HdbscanError {
    /// There are no points.
    #[error("hdbscan: no points to cluster")]
    Empty,
    /// The points have no coordinates (`dim` is 0).
    #[error("hdbscan: dimension must be at least 1")]
    ZeroDim,
    /// A point does not have `dim` values (rows of unequal length, or a flat matrix whose length
    /// is not a multiple of `dim`).
    #[error("hdbscan: point {index} has {got} values, expected {expected}")]
    Ragged {
        /// The point.
        index: usize,
        /// The number of values it has.
        got: usize,
        /// The dimension (the first row's length, or `dim`).
        expected: usize,
    },
    /// A coordinate is NaN or infinite.
    #[error("hdbscan: point {index} has a non-finite value (NaN or infinity)")]
    NonFinite {
        /// The point.
        index: usize,
    },
    /// Under the cosine metric a point is all zeros.
    #[error("hdbscan: point {index} is the zero vector, which has no cosine direction")]
    ZeroVector {
        /// The point.
        index: usize,
    },
    /// `min_cluster_size` is below 2.
    #[error("hdbscan: min_cluster_size must be at least 2 (got {0})")]
    MinClusterSize(usize),
    /// `min_samples` is `Some(0)`.
    #[error("hdbscan: min_samples must be at least 1 (got {0})")]
    MinSamples(usize),
    /// `cluster_selection_epsilon` is negative or not finite.
    #[error("hdbscan: cluster_selection_epsilon must be finite and >= 0 (got {0})")]
    Epsilon(f32),
    /// There is not exactly one weight per point.
    #[error("hdbscan: {got} weights for {expected} points")]
    WeightsLength {
        /// Weights given.
        got: usize,
        /// Points given.
        expected: usize,
    },
    /// A weight is zero, negative or not finite.
    #[error("hdbscan: weight {index} is {value}; weights must be finite and > 0")]
    Weight {
        /// The point it belongs to.
        index: usize,
        /// The weight given.
        value: f32,
    },
}

/// Distance between feature vectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Metric {
    /// `‖a − b‖`.
    #[default]
    Euclidean,
    /// `1 − cos(a, b)`, i.e. half the squared Euclidean distance of the L2-normalised vectors.
    Cosine,
}

/// How flat clusters are read off the condensed tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClusterSelection {
    /// Excess of mass: the most stable non-overlapping clusters (the usual choice).
    #[default]
    Eom,
    /// The leaves of the cluster tree: many small homogeneous clusters.
    Leaf,
}

/// Parameters of [`hdbscan`]; `Default` gives `min_cluster_size = 5`, `min_samples = None`
/// (= `min_cluster_size`), Euclidean, excess of mass, epsilon 0, no single cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct HdbscanParams {
    /// Smallest (weighted) size a group must have to count as a cluster; at least 2.
    pub min_cluster_size: usize,
    /// Neighbour count for core distances, the point itself included; `None` = `min_cluster_size`.
    /// Larger values make the clustering more conservative (more noise). Clamped to the total
    /// weight of the input.
    pub min_samples: Option<usize>,
    /// Distance between points (Euclidean by default).
    pub metric: Metric,
    /// Excess of mass (the default) or leaf selection.
    pub cluster_selection: ClusterSelection,
    /// Clusters born below this distance are merged into their ancestor (0 = off).
    pub cluster_selection_epsilon: f32,
    /// Let the root (everything) be selected as one cluster when it is the most stable choice.
    /// When it is, every point is labelled with it (the reference libraries label only the
    /// points that stay until the root's last `λ`). Without it a lone blob comes out as noise
    /// (or as its sub-clusters, if it has any).
    pub allow_single_cluster: bool,
}

impl Default for HdbscanParams {
    fn default() -> Self {
        Self {
            min_cluster_size: 5,
            min_samples: None,
            metric: Metric::Euclidean,
            cluster_selection: ClusterSelection::Eom,
            cluster_selection_epsilon: 0.0,
            allow_single_cluster: false,
        }
    }
}

/// The result of [`hdbscan`].
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    /// Cluster of each input point, `None` for noise. Clusters are numbered `0..n_clusters`.
    pub labels: Vec<Option<usize>>,
    /// Strength of each point's membership in its cluster, in `[0, 1]`; 0 for noise.
    pub probabilities: Vec<f32>,
    /// Per cluster: its stability normalised by size and `λ_max`, in `[0, 1]` (higher = more
    /// persistent), as `hdbscan`'s `cluster_persistence_`.
    pub persistence: Vec<f32>,
}

impl Clustering {
    /// Number of clusters found.
    pub fn n_clusters(&self) -> usize {
        self.persistence.len()
    }
}

/// Cap on `λ = 1/distance` so that zero distances (exact duplicates) give finite stabilities.
const LAMBDA_MAX: f64 = 1e12;

fn lambda_of(distance: f64) -> f64 {
    if distance > 1.0 / LAMBDA_MAX {
        1.0 / distance
    } else {
        LAMBDA_MAX
    }
}

/// HDBSCAN over points given as rows. See [`hdbscan`].
pub fn hdbscan_rows(
    points: &[Vec<f32>],
    weights: Option<&[f32]>,
    params: &HdbscanParams,
) -> Result<Clustering, HdbscanError> {
    let first = points.first().ok_or(HdbscanError::Empty)?;
    let dim = first.len();
    let mut flat = Vec::with_capacity(points.len() * dim);
    for (index, p) in points.iter().enumerate() {
        if p.len() != dim {
            return Err(HdbscanError::Ragged {
                index,
                got: p.len(),
                expected: dim,
            });
        }
        flat.extend_from_slice(p);
    }
    hdbscan(&flat, dim, weights, params)
}

/// HDBSCAN over `data`, a row-major `n × dim` matrix. `weights[i]` is the multiplicity of point
/// `i` (for deduplicated inputs); `None` means 1 each.
pub fn hdbscan(
    data: &[f32],
    dim: usize,
    weights: Option<&[f32]>,
    params: &HdbscanParams,
) -> Result<Clustering, HdbscanError> {
    if dim == 0 {
        return Err(HdbscanError::ZeroDim);
    }
    if data.is_empty() {
        return Err(HdbscanError::Empty);
    }
    if !data.len().is_multiple_of(dim) {
        let n = data.len() / dim;
        return Err(HdbscanError::Ragged {
            index: n,
            got: data.len() - n * dim,
            expected: dim,
        });
    }
    let n = data.len() / dim;
    if params.min_cluster_size < 2 {
        return Err(HdbscanError::MinClusterSize(params.min_cluster_size));
    }
    let min_samples = params.min_samples.unwrap_or(params.min_cluster_size);
    if min_samples < 1 {
        return Err(HdbscanError::MinSamples(min_samples));
    }
    let eps = params.cluster_selection_epsilon;
    if !eps.is_finite() || eps < 0.0 {
        return Err(HdbscanError::Epsilon(eps));
    }
    if let Some(index) = data
        .chunks_exact(dim)
        .position(|r| r.iter().any(|v| !v.is_finite()))
    {
        return Err(HdbscanError::NonFinite { index });
    }
    let w: Vec<f64> = match weights {
        None => vec![1.0; n],
        Some(ws) => {
            if ws.len() != n {
                return Err(HdbscanError::WeightsLength {
                    got: ws.len(),
                    expected: n,
                });
            }
            if let Some(index) = ws.iter().position(|v| !(v.is_finite() && *v > 0.0)) {
                return Err(HdbscanError::Weight {
                    index,
                    value: ws[index],
                });
            }
            ws.iter().map(|&v| f64::from(v)).collect()
        }
    };

    let normalised;
    let pts: &[f32] = match params.metric {
        Metric::Euclidean => data,
        Metric::Cosine => {
            let mut v = data.to_vec();
            for (index, row) in v.chunks_exact_mut(dim).enumerate() {
                let norm = row
                    .iter()
                    .map(|x| f64::from(*x) * f64::from(*x))
                    .sum::<f64>();
                if norm <= 0.0 || !norm.is_finite() {
                    return Err(HdbscanError::ZeroVector { index });
                }
                let inv = (1.0 / norm.sqrt()) as f32;
                row.iter_mut().for_each(|x| *x *= inv);
            }
            normalised = v;
            &normalised
        }
    };

    // Squared distances up to the MST, then the metric's own distance.
    let core_sq = core_distances_sq(pts, dim, &w, min_samples as f64);
    let mst_sq = prim_mst(pts, dim, &core_sq);
    let to_metric = |sq: f32| -> f64 {
        let sq = f64::from(sq.max(0.0));
        match params.metric {
            Metric::Euclidean => sq.sqrt(),
            Metric::Cosine => sq / 2.0,
        }
    };
    let mut edges: Vec<(u32, u32, f64)> = mst_sq
        .into_iter()
        .map(|(a, b, d)| (a, b, to_metric(d)))
        .collect();
    edges.sort_by(|x, y| x.2.total_cmp(&y.2).then(x.0.cmp(&y.0)).then(x.1.cmp(&y.1)));
    let core: Vec<f64> = core_sq.iter().map(|&c| to_metric(c)).collect();

    let tree = single_linkage(n, &edges, &w);
    let condensed = condense(&tree, &w, &core, params.min_cluster_size as f64);
    let selected = select_clusters(&condensed, params);
    Ok(label(&condensed, &selected, n, params.allow_single_cluster))
}

// ---------------------------------------------------------------------------------------------
// Distances

/// Squared Euclidean distance with independent accumulators so the loop vectorises.
#[inline]
fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    const L: usize = 16;
    let mut acc = [0.0f32; L];
    let mut ca = a.chunks_exact(L);
    let mut cb = b.chunks_exact(L);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for i in 0..L {
            let d = x[i] - y[i];
            acc[i] += d * d;
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        let d = x - y;
        s += d * d;
    }
    s
}

/// Rows handled together in the core-distance pass: each column point is read once per block.
const ROW_BLOCK: usize = 32;

/// Squared core distances: the distance to the `k`-th nearest neighbour counting multiplicity,
/// the point's own copies (its weight) first at distance 0.
fn core_distances_sq(pts: &[f32], dim: usize, w: &[f64], k: f64) -> Vec<f32> {
    let n = w.len();
    let total: f64 = w.iter().sum();
    let k = k.min(total);
    let mut core = vec![0.0f32; n];
    core.par_chunks_mut(ROW_BLOCK)
        .enumerate()
        .for_each(|(block, out)| {
            let start = block * ROW_BLOCK;
            let rows = out.len();
            let mut dists = vec![0.0f32; rows * n];
            for j in 0..n {
                let b = &pts[j * dim..(j + 1) * dim];
                for r in 0..rows {
                    let i = start + r;
                    dists[r * n + j] = sq_dist(&pts[i * dim..(i + 1) * dim], b);
                }
            }
            let mut cand: Vec<(f32, u32)> = Vec::with_capacity(n);
            for (r, slot) in out.iter_mut().enumerate() {
                let i = start + r;
                *slot = kth_weighted(&dists[r * n..(r + 1) * n], i, w, k, &mut cand);
            }
        });
    core
}

/// Distance at which the cumulative weight (own weight first) reaches `k`.
fn kth_weighted(row: &[f32], me: usize, w: &[f64], k: f64, cand: &mut Vec<(f32, u32)>) -> f32 {
    if w[me] >= k {
        return 0.0;
    }
    cand.clear();
    cand.extend(
        row.iter()
            .enumerate()
            .filter(|&(j, _)| j != me)
            .map(|(j, &d)| (d, j as u32)),
    );
    let need = k - w[me];
    let mut m = (need.ceil() as usize).clamp(1, cand.len().max(1));
    loop {
        if cand.is_empty() {
            return 0.0;
        }
        let m_eff = m.min(cand.len());
        if m_eff < cand.len() {
            cand.select_nth_unstable_by(m_eff - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        }
        let all = cand.len();
        let head = &mut cand[..m_eff];
        head.sort_unstable_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        let mut acc = 0.0;
        for &(d, j) in head.iter() {
            acc += w[j as usize];
            if acc >= need - 1e-9 {
                return d;
            }
        }
        if m_eff == all {
            return head[m_eff - 1].0;
        }
        m = (m * 2).min(cand.len());
    }
}

/// Prim's algorithm on the mutual-reachability graph (squared distances). Returns `n − 1` edges.
fn prim_mst(pts: &[f32], dim: usize, core: &[f32]) -> Vec<(u32, u32, f32)> {
    let n = core.len();
    let mut edges = Vec::with_capacity(n.saturating_sub(1));
    if n < 2 {
        return edges;
    }
    // Points not yet in the tree, with their best known edge into it.
    let mut rest: Vec<u32> = (1..n as u32).collect();
    let mut best = vec![f32::INFINITY; n - 1];
    let mut from = vec![0u32; n - 1];
    let mut current = 0usize;
    const CHUNK: usize = 1024;
    while !rest.is_empty() {
        let a = &pts[current * dim..(current + 1) * dim];
        let core_a = core[current];
        let cur = current as u32;
        let (pos, _) = rest
            .par_chunks(CHUNK)
            .zip(best.par_chunks_mut(CHUNK))
            .zip(from.par_chunks_mut(CHUNK))
            .enumerate()
            .map(|(c, ((idx, bst), frm))| {
                let mut arg = usize::MAX;
                let mut min = f32::INFINITY;
                for t in 0..idx.len() {
                    let j = idx[t] as usize;
                    let floor = core_a.max(core[j]);
                    if floor < bst[t] {
                        let d = sq_dist(a, &pts[j * dim..(j + 1) * dim]).max(floor);
                        if d < bst[t] {
                            bst[t] = d;
                            frm[t] = cur;
                        }
                    }
                    if bst[t] < min || (bst[t] == min && arg == usize::MAX) {
                        min = bst[t];
                        arg = c * CHUNK + t;
                    }
                }
                (arg, min)
            })
            .reduce(
                || (usize::MAX, f32::INFINITY),
                |x, y| {
                    // Ties go to the lower position, whatever the split: deterministic.
                    if y.1 < x.1 || (y.1 == x.1 && y.0 < x.0) {
                        y
                    } else {
                        x
                    }
                },
            );
        let pos = if pos == usize::MAX { 0 } else { pos };
        let next = rest[pos];
        edges.push((from[pos], next, best[pos]));
        rest.swap_remove(pos);
        best.swap_remove(pos);
        from.swap_remove(pos);
        current = next as usize;
    }
    edges
}

// ---------------------------------------------------------------------------------------------
// Trees

/// Single-linkage dendrogram: leaves `0..n` are points, node `n + i` is the `i`-th merge.
struct Dendrogram {
    n: usize,
    /// Children, distance and (weighted) size of each merge.
    merges: Vec<(usize, usize, f64, f64)>,
}

impl Dendrogram {
    fn size(&self, node: usize, w: &[f64]) -> f64 {
        if node < self.n {
            w[node]
        } else {
            self.merges[node - self.n].3
        }
    }

    fn leaves(&self, node: usize, out: &mut Vec<usize>) {
        let mut stack = vec![node];
        while let Some(x) = stack.pop() {
            if x < self.n {
                out.push(x);
            } else {
                let (l, r, _, _) = self.merges[x - self.n];
                stack.push(r);
                stack.push(l);
            }
        }
    }
}

fn find(parent: &mut [usize], mut x: usize) -> usize {
    while parent[x] != x {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    x
}

fn single_linkage(n: usize, edges: &[(u32, u32, f64)], w: &[f64]) -> Dendrogram {
    let mut parent: Vec<usize> = (0..2 * n).collect();
    let mut node_of: Vec<usize> = (0..n).collect(); // union-find root → dendrogram node
    let mut merges = Vec::with_capacity(n.saturating_sub(1));
    let mut size: Vec<f64> = w.to_vec();
    for &(a, b, d) in edges {
        let ra = find(&mut parent, a as usize);
        let rb = find(&mut parent, b as usize);
        if ra == rb {
            continue;
        }
        let (na, nb) = (node_of[ra], node_of[rb]);
        let s = size[ra] + size[rb];
        merges.push((na, nb, d, s));
        parent[rb] = ra;
        size[ra] = s;
        node_of[ra] = n + merges.len() - 1;
    }
    Dendrogram { n, merges }
}

/// The condensed cluster tree. Cluster 0 is the root; children have larger ids than parents.
struct Condensed {
    /// Parent cluster of each cluster (`usize::MAX` for the root).
    parent: Vec<usize>,
    /// `λ` at which each cluster was born (0 for the root).
    birth: Vec<f64>,
    /// Weighted size at birth.
    size: Vec<f64>,
    /// Stability `Σ (λ − λ_birth) · size` over the cluster's rows.
    stability: Vec<f64>,
    /// Largest `λ` among the cluster's direct rows (points and child clusters).
    max_lambda: Vec<f64>,
    /// The cluster each point fell out of, and at which `λ`.
    point_cluster: Vec<usize>,
    point_lambda: Vec<f64>,
    /// Child clusters of each cluster.
    children: Vec<Vec<usize>>,
}

impl Condensed {
    fn new_cluster(&mut self, parent: usize, lambda: f64, size: f64) -> usize {
        let id = self.parent.len();
        self.parent.push(parent);
        self.birth.push(lambda);
        self.size.push(size);
        self.stability.push(0.0);
        self.max_lambda.push(0.0);
        self.children.push(Vec::new());
        if parent != usize::MAX {
            self.children[parent].push(id);
            self.add_row(parent, lambda, size);
        }
        id
    }

    fn add_row(&mut self, cluster: usize, lambda: f64, size: f64) {
        self.stability[cluster] += (lambda - self.birth[cluster]) * size;
        if lambda > self.max_lambda[cluster] {
            self.max_lambda[cluster] = lambda;
        }
    }

    fn fall_out(&mut self, point: usize, cluster: usize, lambda: f64, w: f64) {
        self.point_cluster[point] = cluster;
        self.point_lambda[point] = lambda;
        self.add_row(cluster, lambda, w);
    }
}

fn condense(tree: &Dendrogram, w: &[f64], core: &[f64], min_size: f64) -> Condensed {
    let n = tree.n;
    let mut c = Condensed {
        parent: Vec::new(),
        birth: Vec::new(),
        size: Vec::new(),
        stability: Vec::new(),
        max_lambda: Vec::new(),
        point_cluster: vec![0; n],
        point_lambda: vec![0.0; n],
        children: Vec::new(),
    };
    let root_node = if n == 1 { 0 } else { n + tree.merges.len() - 1 };
    let root = c.new_cluster(usize::MAX, 0.0, tree.size(root_node, w));
    let mut stack = vec![(root_node, root)];
    let mut buf = Vec::new();
    while let Some((node, cluster)) = stack.pop() {
        if node < n {
            // A single (heavy) point carrying a cluster: its copies part at its core distance.
            c.fall_out(node, cluster, lambda_of(core[node]), w[node]);
            continue;
        }
        let (l, r, d, _) = tree.merges[node - n];
        let lambda = lambda_of(d);
        let (sl, sr) = (tree.size(l, w), tree.size(r, w));
        match (sl >= min_size, sr >= min_size) {
            (true, true) => {
                let cl = c.new_cluster(cluster, lambda, sl);
                let cr = c.new_cluster(cluster, lambda, sr);
                stack.push((r, cr));
                stack.push((l, cl));
            }
            (big_l, big_r) => {
                for (child, big) in [(l, big_l), (r, big_r)] {
                    if big {
                        stack.push((child, cluster));
                    } else {
                        buf.clear();
                        tree.leaves(child, &mut buf);
                        for &p in &buf {
                            c.fall_out(p, cluster, lambda, w[p]);
                        }
                    }
                }
            }
        }
    }
    c
}

/// Selected clusters, as a flag per condensed cluster.
fn select_clusters(c: &Condensed, params: &HdbscanParams) -> Vec<bool> {
    let m = c.parent.len();
    let mut selected = vec![false; m];
    let has_children = !c.children[0].is_empty();
    match params.cluster_selection {
        ClusterSelection::Leaf => {
            if has_children {
                for (k, s) in selected.iter_mut().enumerate().skip(1) {
                    *s = c.children[k].is_empty();
                }
            } else {
                selected[0] = params.allow_single_cluster;
            }
        }
        ClusterSelection::Eom => {
            let mut total = c.stability.clone();
            // Children have larger ids than their parent: a reverse sweep is bottom-up.
            for k in (0..m).rev() {
                if c.children[k].is_empty() {
                    selected[k] = true;
                    continue;
                }
                let sub: f64 = c.children[k].iter().map(|&ch| total[ch]).sum();
                if k == 0 && !params.allow_single_cluster {
                    break;
                }
                if sub > c.stability[k] {
                    total[k] = sub;
                } else {
                    selected[k] = true;
                    deselect_below(c, k, &mut selected);
                }
            }
            if !params.allow_single_cluster {
                selected[0] = false;
            }
        }
    }
    let eps = f64::from(params.cluster_selection_epsilon);
    if eps > 0.0 {
        epsilon_merge(c, eps, params.allow_single_cluster, &mut selected);
    }
    selected
}

fn deselect_below(c: &Condensed, k: usize, selected: &mut [bool]) {
    let mut stack: Vec<usize> = c.children[k].clone();
    while let Some(x) = stack.pop() {
        selected[x] = false;
        stack.extend_from_slice(&c.children[x]);
    }
}

/// Replace each selected cluster born at a distance below `eps` by its closest ancestor born at a
/// distance above `eps` (never the root unless single clusters are allowed).
fn epsilon_merge(c: &Condensed, eps: f64, allow_single: bool, selected: &mut [bool]) {
    let chosen: Vec<usize> = (0..selected.len()).filter(|&k| selected[k]).collect();
    let mut done = vec![false; selected.len()];
    let mut out = vec![false; selected.len()];
    for k in chosen {
        if done[k] {
            continue;
        }
        let birth_eps = if c.birth[k] > 0.0 {
            1.0 / c.birth[k]
        } else {
            f64::INFINITY
        };
        let mut target = k;
        if birth_eps < eps && k != 0 {
            let mut x = k;
            loop {
                let p = c.parent[x];
                if p == 0 {
                    target = if allow_single { 0 } else { x };
                    break;
                }
                if 1.0 / c.birth[p] > eps {
                    target = p;
                    break;
                }
                x = p;
            }
        }
        out[target] = true;
        done[target] = true;
        let mut stack = c.children[target].clone();
        while let Some(x) = stack.pop() {
            done[x] = true;
            out[x] = false;
            stack.extend_from_slice(&c.children[x]);
        }
    }
    selected.copy_from_slice(&out);
}

fn label(c: &Condensed, selected: &[bool], n: usize, allow_single: bool) -> Clustering {
    let m = c.parent.len();
    // Cluster numbers in condensed-id order (deterministic).
    let mut number = vec![usize::MAX; m];
    let mut order = Vec::new();
    for k in 0..m {
        if selected[k] && (k != 0 || allow_single) {
            number[k] = order.len();
            order.push(k);
        }
    }
    // Each condensed cluster's selected ancestor (itself included), top-down.
    let mut owner = vec![usize::MAX; m];
    for k in 0..m {
        owner[k] = if number[k] != usize::MAX {
            k
        } else if k == 0 {
            usize::MAX
        } else {
            owner[c.parent[k]]
        };
    }
    let mut labels = vec![None; n];
    let mut probabilities = vec![0.0f32; n];
    let mut mass = vec![0.0f64; order.len()];
    for p in 0..n {
        let sel = owner[c.point_cluster[p]];
        if sel == usize::MAX {
            continue;
        }
        let id = number[sel];
        labels[p] = Some(id);
        let max_l = c.max_lambda[sel];
        let lp = c.point_lambda[p];
        probabilities[p] = if max_l <= 0.0 {
            1.0
        } else {
            (lp.min(max_l) / max_l) as f32
        };
        mass[id] += 1.0;
    }
    let persistence = order
        .iter()
        .enumerate()
        .map(|(id, &k)| {
            let max_l = c.max_lambda[k];
            if max_l <= 0.0 || max_l >= LAMBDA_MAX || mass[id] == 0.0 {
                1.0
            } else {
                ((c.stability[k] / (c.size[k] * max_l)).clamp(0.0, 1.0)) as f32
            }
        })
        .collect();
    Clustering {
        labels,
        probabilities,
        persistence,
    }
}

/// Adjusted Rand index (Hubert & Arabie) between two labellings of the same items; `None`
/// (noise) is treated as one more label. 1 = identical partitions, ~0 = chance.
pub fn adjusted_rand_index<A, B>(a: &[A], b: &[B]) -> f64
where
    A: Eq + std::hash::Hash,
    B: Eq + std::hash::Hash,
{
    use std::collections::HashMap;
    let n = a.len().min(b.len());
    if n < 2 {
        return 1.0;
    }
    let mut table: HashMap<(&A, &B), u64> = HashMap::new();
    let mut ra: HashMap<&A, u64> = HashMap::new();
    let mut rb: HashMap<&B, u64> = HashMap::new();
    for i in 0..n {
        *table.entry((&a[i], &b[i])).or_default() += 1;
        *ra.entry(&a[i]).or_default() += 1;
        *rb.entry(&b[i]).or_default() += 1;
    }
    let c2 = |x: u64| (x as f64) * (x as f64 - 1.0) / 2.0;
    let index: f64 = table.values().map(|&x| c2(x)).sum();
    let sa: f64 = ra.values().map(|&x| c2(x)).sum();
    let sb: f64 = rb.values().map(|&x| c2(x)).sum();
    let expected = sa * sb / c2(n as u64);
    let max = (sa + sb) / 2.0;
    if (max - expected).abs() < f64::EPSILON {
        return 1.0;
    }
    (index - expected) / (max - expected)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(n: usize, offset: f32) -> Vec<Vec<f32>> {
        (0..n)
            .map(|i| vec![offset + (i % 4) as f32 * 0.1, offset + (i / 4) as f32 * 0.1])
            .collect()
    }

    #[test]
    fn two_groups_are_found() {
        let mut pts = grid(12, 0.0);
        pts.extend(grid(12, 10.0));
        let c = hdbscan_rows(&pts, None, &HdbscanParams::default()).unwrap();
        assert_eq!(c.n_clusters(), 2);
        assert!(c.labels[..12].iter().all(|l| *l == c.labels[0]));
        assert!(c.labels[12..].iter().all(|l| *l == c.labels[12]));
        assert_ne!(c.labels[0], c.labels[12]);
        assert!(c.labels[0].is_some());
    }

    #[test]
    fn core_distance_counts_multiplicity() {
        // Point 0 has weight 3: with k = 3 its core distance is 0.
        let pts = [0.0f32, 1.0, 3.0];
        let w = [3.0, 1.0, 1.0];
        let core = core_distances_sq(&pts, 1, &w, 3.0);
        assert_eq!(core[0], 0.0);
        // Point 1: itself (1) + point 0 (3) reaches 3 at distance 1.
        assert_eq!(core[1], 1.0);
        // Point 2: itself (1) + point 1 (1) + point 0 (3) → at distance 3 (squared 9).
        assert_eq!(core[2], 9.0);
    }

    #[test]
    fn errors_are_reported() {
        let p = HdbscanParams::default();
        assert_eq!(hdbscan(&[], 2, None, &p), Err(HdbscanError::Empty));
        assert_eq!(
            hdbscan_rows(&[vec![0.0, 1.0], vec![1.0]], None, &p),
            Err(HdbscanError::Ragged {
                index: 1,
                got: 1,
                expected: 2
            })
        );
        assert_eq!(
            hdbscan(&[0.0, f32::NAN], 1, None, &p),
            Err(HdbscanError::NonFinite { index: 1 })
        );
        let small = HdbscanParams {
            min_cluster_size: 1,
            ..HdbscanParams::default()
        };
        assert_eq!(
            hdbscan(&[0.0, 1.0], 1, None, &small),
            Err(HdbscanError::MinClusterSize(1))
        );
        assert_eq!(
            hdbscan(&[0.0, 1.0], 1, Some(&[1.0]), &p),
            Err(HdbscanError::WeightsLength {
                got: 1,
                expected: 2
            })
        );
        assert_eq!(
            hdbscan(&[0.0, 1.0], 1, Some(&[1.0, 0.0]), &p),
            Err(HdbscanError::Weight {
                index: 1,
                value: 0.0
            })
        );
        let cos = HdbscanParams {
            metric: Metric::Cosine,
            ..HdbscanParams::default()
        };
        assert_eq!(
            hdbscan(&[0.0, 0.0, 1.0, 0.0], 2, None, &cos),
            Err(HdbscanError::ZeroVector { index: 0 })
        );
    }

    #[test]
    fn one_point_is_noise() {
        let c = hdbscan(&[1.0, 2.0], 2, None, &HdbscanParams::default()).unwrap();
        assert_eq!(c.labels, vec![None]);
        assert_eq!(c.n_clusters(), 0);
    }

    #[test]
    fn ari_basics() {
        assert!((adjusted_rand_index(&[0, 0, 1, 1], &[5, 5, 7, 7]) - 1.0).abs() < 1e-12);
        assert!(adjusted_rand_index(&[0, 0, 1, 1], &[0, 1, 0, 1]) < 0.0);
    }
}
