//! Products with bf16 operands and f32 accumulation: AVX-512 BF16 (`vdpbf16ps`), AMX tiles.
//!
//! Training multiplies the same frozen base weights every step, forward (`x Wᵀ`) and backward
//! (`g W`). A [`Bf16Matrix`] keeps such a weight once, as bf16 (2 bytes a value, half of f32),
//! in 16-row blocks of bf16 pairs: the order `vdpbf16ps` reads, and the tile order of AMX's
//! `tdpbf16ps`. Each product rounds the activations (or output gradients) to bf16, to nearest
//! even, and accumulates in f32: the compute type of PyTorch's bf16 autocast and of QLoRA. One
//! 512-bit `vdpbf16ps` does 32 multiply-adds where an f32 FMA does 16.
//!
//! Dispatch, per product: AMX tiles where the CPU has them ([`crate::amx::available`]), else
//! the AVX-512 BF16 kernel ([`available`]), else a portable f32 product of the same
//! bf16-rounded operands (correct everywhere, but no faster than f32: callers choose bf16 only
//! where [`supported`]).

use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::amx::{bf16, f32_of};
use crate::quant::PackedMatrix;
use crate::threads::{SyncPtr, par_chunks, par_for};

static OFF: AtomicBool = AtomicBool::new(false);
static DETECTED: OnceLock<bool> = OnceLock::new();

/// bf16 values per block of columns: a block of 16 rows holds 16 pairs per 32 columns.
const KALIGN: usize = 32;
/// Rows of the weight per block (lanes of a 512-bit vector of f32).
const LANES: usize = 16;
/// Columns of the output a kernel call covers (two blocks of rows of the weight).
const PANEL: usize = 2 * LANES;
/// Activation rows per kernel call (2 × `MR` accumulators stay in registers).
const MR: usize = 8;
/// Pairs of the reduction per pass over a panel (a 32-column panel of 128 pairs is 16 KiB, so
/// it stays in L1 while every row block of the activations passes over it).
const KC: usize = 128;

/// Turns the AVX-512 BF16 kernel on or off for this process (on where the CPU has it). With it
/// off, [`Bf16Matrix`] products take the portable path (or AMX).
pub fn set_enabled(on: bool) {
    OFF.store(!on, Ordering::SeqCst);
}

/// Whether the AVX-512 BF16 kernel runs here: the CPU has AVX-512 F and BF16, it is not
/// switched off by [`set_enabled`], and `DOWNSHIFT_BF16` is not `0`/`off`.
pub fn available() -> bool {
    !OFF.load(Ordering::Relaxed) && *DETECTED.get_or_init(detect)
}

/// Whether bf16 products run faster than f32 here: AVX-512 BF16 or AMX.
pub fn supported() -> bool {
    available() || crate::amx::available()
}

#[cfg(target_arch = "x86_64")]
fn detect() -> bool {
    if matches!(
        std::env::var("DOWNSHIFT_BF16").as_deref(),
        Ok("0" | "off" | "false" | "no")
    ) {
        return false;
    }
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512bf16")
}

#[cfg(not(target_arch = "x86_64"))]
fn detect() -> bool {
    false
}

fn round_up(x: usize, to: usize) -> usize {
    x.div_ceil(to) * to
}

/// The pair `(lo, hi)` of bf16 values as one `u32` (`lo` in the low half, as memory holds it).
#[inline(always)]
fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(bf16(lo)) | (u32::from(bf16(hi)) << 16)
}

/// A right operand `B: [n, k]` (used transposed: `out = A Bᵀ`) in blocks of 16 rows: for block
/// `b` and pair `p` of columns, 16 `u32`s, lane `j` holding `(B[16b + j][2p], B[16b + j][2p + 1])`.
/// `n` is padded with zero rows to a multiple of 32 and `k` with zero columns to a multiple of
/// 32 (the AMX tile layout).
#[derive(Clone, Copy)]
struct Blocks<'a> {
    data: &'a [u32],
    n: usize,
    k: usize,
}

impl Blocks<'_> {
    fn pairs(&self) -> usize {
        round_up(self.k.max(1), KALIGN) / 2
    }

    fn len_for(n: usize, k: usize) -> usize {
        round_up(n.max(1), PANEL) * round_up(k.max(1), KALIGN) / 2
    }
}

/// A frozen weight `W: [rows, cols]` stored as bf16 for the products `x Wᵀ` and `g W` (see the
/// module docs).
pub struct Bf16Matrix {
    rows: usize,
    cols: usize,
    /// `W` in [`Blocks`] order (`n = rows`, `k = cols`).
    data: Vec<u32>,
}

impl std::fmt::Debug for Bf16Matrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bf16Matrix({}x{})", self.rows, self.cols)
    }
}

impl Bf16Matrix {
    /// Rounds `w: [rows, cols]` (row-major f32) to bf16.
    pub fn from_f32(w: &[f32], rows: usize, cols: usize) -> Option<Self> {
        (w.len() == rows * cols).then(|| {
            Self::build(rows, cols, |r, out| {
                out.copy_from_slice(&w[r * cols..(r + 1) * cols])
            })
        })
    }

    /// A packed quantized weight, dequantized and rounded to bf16.
    pub fn from_packed(p: &PackedMatrix) -> Self {
        Self::build(p.rows(), p.cols(), |r, out| p.dequantize_row(r, out))
    }

    /// Builds the blocks from `row(r, out)`, which writes row `r` of `W` (f32) into `out`.
    fn build(rows: usize, cols: usize, row: impl Fn(usize, &mut [f32]) + Sync) -> Self {
        let mut data = vec![0u32; Blocks::len_for(rows, cols)];
        let pairs = round_up(cols.max(1), KALIGN) / 2;
        let kp = 2 * pairs;
        par_chunks(&mut data, LANES * pairs, |b, dst| {
            let mut block = vec![0f32; LANES * kp];
            for j in 0..LANES.min(rows.saturating_sub(b * LANES)) {
                row(b * LANES + j, &mut block[j * kp..j * kp + cols]);
            }
            for (p, lanes) in dst.chunks_exact_mut(LANES).enumerate() {
                for (j, d) in lanes.iter_mut().enumerate() {
                    *d = pair(block[j * kp + 2 * p], block[j * kp + 2 * p + 1]);
                }
            }
        });
        Bf16Matrix { rows, cols, data }
    }

    /// Rows (output features).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (input features).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes the bf16 values take (padding included).
    pub fn size_in_bytes(&self) -> usize {
        self.data.len() * 4
    }

    fn blocks(&self) -> Blocks<'_> {
        Blocks {
            data: &self.data,
            n: self.rows,
            k: self.cols,
        }
    }

    /// The bf16 pair at row `r`, pair `p` of columns.
    #[inline(always)]
    fn word(&self, r: usize, p: usize) -> u32 {
        let pairs = round_up(self.cols.max(1), KALIGN) / 2;
        self.data[((r / LANES) * pairs + p) * LANES + r % LANES]
    }

    /// Row `r` as f32 (the bf16 values exactly).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) {
        for (c, o) in out.iter_mut().enumerate().take(self.cols) {
            let w = self.word(r, c / 2);
            *o = f32_of((w >> (16 * (c % 2))) as u16);
        }
    }

    /// The whole weight as row-major f32.
    pub fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols];
        for (r, row) in out.chunks_mut(self.cols.max(1)).enumerate() {
            self.dequantize_row(r, row);
        }
        out
    }

    /// `out[m, rows] = x[m, cols] · Wᵀ` (the forward product).
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        product(x, m, self.blocks(), out);
    }

    /// `dx[m, cols] = g[m, rows] · W` (the backward product). `Wᵀ` is laid out in blocks for
    /// this product (in a buffer kept per thread) rather than stored: a pass over the weight,
    /// small beside the product.
    pub fn matmul_grad(&self, g: &[f32], m: usize, dx: &mut [f32]) {
        let mut t = SPARE_T.with(Cell::take);
        self.transpose_into(&mut t);
        let blocks = Blocks {
            data: &t,
            n: self.cols,
            k: self.rows,
        };
        product(g, m, blocks, dx);
        SPARE_T.with(|c| c.set(t));
    }

    /// `Wᵀ` in [`Blocks`] order (`n = cols`, `k = rows`): lane `j` of block `b`, pair `q` holds
    /// `(W[2q][16b + j], W[2q + 1][16b + j])`.
    fn transpose_into(&self, t: &mut Vec<u32>) {
        let len = Blocks::len_for(self.cols, self.rows);
        if t.len() < len {
            t.resize(len, 0);
        }
        let pairs_t = round_up(self.rows.max(1), KALIGN) / 2;
        let (rows, cols) = (self.rows, self.cols);
        par_chunks(&mut t[..len], LANES * pairs_t, |b, dst| {
            for (q, lanes) in dst.chunks_exact_mut(LANES).enumerate() {
                let (r0, r1) = (2 * q, 2 * q + 1);
                // columns 16b .. 16b + 16 are the pairs 8b .. 8b + 8 of rows r0 and r1
                for (t2, two) in lanes.chunks_exact_mut(2).enumerate() {
                    let c = b * LANES + 2 * t2;
                    if c >= cols {
                        two.fill(0);
                        continue;
                    }
                    let w0 = if r0 < rows { self.word(r0, c / 2) } else { 0 };
                    let w1 = if r1 < rows { self.word(r1, c / 2) } else { 0 };
                    two[0] = (w0 & 0xFFFF) | (w1 << 16);
                    two[1] = (w0 >> 16) | (w1 & 0xFFFF_0000);
                }
            }
        });
    }
}

thread_local! {
    /// Buffers kept per thread between products (rewritten whole each time), so that the
    /// large ones are not faulted in afresh on every product.
    static SPARE_A: Cell<Vec<u32>> = const { Cell::new(Vec::new()) };
    static SPARE_T: Cell<Vec<u32>> = const { Cell::new(Vec::new()) };
}

/// `out[m, n] = x[m, k] · Bᵀ` with `x` rounded to bf16 and f32 accumulation.
fn product(x: &[f32], m: usize, b: Blocks<'_>, out: &mut [f32]) {
    if m == 0 || b.n == 0 {
        return;
    }
    if crate::amx::available() {
        let pairs = b.pairs();
        if crate::amx::blocks_matmul(b.data, b.n, pairs * 2, x, m, b.k, out) {
            return;
        }
    }
    #[cfg(target_arch = "x86_64")]
    if available() {
        avx512::product(x, m, b, out);
        return;
    }
    portable(x, m, b, out);
}

/// The activations `x: [m, k]` as bf16 pairs, `m` padded to a multiple of [`MR`] rows and `k`
/// to the pairs of `B` (zeros), in this thread's spare buffer.
fn lhs(x: &[f32], m: usize, k: usize, pairs: usize) -> Vec<u32> {
    let mp = round_up(m, MR);
    let mut a = SPARE_A.with(Cell::take);
    if a.len() < mp * pairs {
        a.resize(mp * pairs, 0);
    }
    par_chunks(&mut a[..mp * pairs], MR * pairs, |blk, dst| {
        for (i, row) in dst.chunks_exact_mut(pairs).enumerate() {
            let r = blk * MR + i;
            if r >= m {
                row.fill(0);
                continue;
            }
            let src = &x[r * k..(r + 1) * k];
            let (full, rest) = row.split_at_mut(k / 2);
            for (d, s) in full.iter_mut().zip(src.chunks_exact(2)) {
                *d = pair(s[0], s[1]);
            }
            if let Some((first, tail)) = rest.split_first_mut() {
                *first = if k % 2 == 1 { pair(src[k - 1], 0.0) } else { 0 };
                tail.fill(0);
            }
        }
    });
    a
}

/// Any CPU: the bf16-rounded operands multiplied in f32 by `gemm`.
fn portable(x: &[f32], m: usize, b: Blocks<'_>, out: &mut [f32]) {
    let (n, k) = (b.n, b.k);
    let pairs = b.pairs();
    let xr: Vec<f32> = x[..m * k].iter().map(|&v| f32_of(bf16(v))).collect();
    let mut w = vec![0f32; n * k];
    for (r, row) in w.chunks_mut(k.max(1)).enumerate() {
        for (c, o) in row.iter_mut().enumerate() {
            let word = b.data[((r / LANES) * pairs + c / 2) * LANES + r % LANES];
            *o = f32_of((word >> (16 * (c % 2))) as u16);
        }
    }
    // SAFETY: xr is [m, k], w is [n, k] read as its transpose, out is [m, n].
    crate::threads::run(|| unsafe {
        crate::linear_op::mm(
            (m, n, k),
            out.as_mut_ptr(),
            n,
            false,
            (xr.as_ptr(), k, 1),
            (w.as_ptr(), 1, k),
            1.0,
        )
    });
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::*;
    use std::arch::x86_64::*;

    /// `out[m, n] = x Bᵀ`: the 32-column panels of `out` split over the compute threads; each
    /// panel is walked in [`KC`] pairs at a time, every block of [`MR`] rows passing over it.
    pub(super) fn product(x: &[f32], m: usize, b: Blocks<'_>, out: &mut [f32]) {
        let pairs = b.pairs();
        let a = lhs(x, m, b.k, pairs);
        let n = b.n;
        let panels = n.div_ceil(PANEL);
        let optr = SyncPtr(out.as_mut_ptr());
        let (aref, data) = (&a, b.data);
        par_for(panels, |pi| {
            let c0 = pi * PANEL;
            let cols = PANEL.min(n - c0);
            let b0 = &data[2 * pi * pairs * LANES..];
            for k0 in (0..pairs).step_by(KC) {
                let kc = KC.min(pairs - k0);
                for r0 in (0..m).step_by(MR) {
                    // SAFETY: the CPU has AVX-512 F and BF16 (`available`, checked by the
                    // caller); rows r0 .. r0 + MR of `a` exist (padded to MR), pairs
                    // k0 .. k0 + kc lie inside each row and inside both blocks of the panel;
                    // the kernel writes rows < m, columns c0 .. c0 + cols of `out` (this
                    // task's panel alone).
                    unsafe {
                        kernel(
                            aref.as_ptr().add(r0 * pairs + k0),
                            pairs,
                            b0.as_ptr().add(k0 * LANES),
                            pairs * LANES,
                            kc,
                            optr.get().add(r0 * n + c0),
                            n,
                            MR.min(m - r0),
                            cols,
                            k0 > 0,
                        )
                    };
                }
            }
        });
        SPARE_A.with(|c| c.set(a));
    }

    /// One block: `out[r, c] (+)= Σ_p a[r][p] · b[c][p]` for `MR` rows and 32 columns, where
    /// `a` and `b` hold bf16 pairs; only `rows` × `cols` of `out` are read and written.
    ///
    /// # Safety
    /// AVX-512 F and BF16 present; `a` readable for `MR` rows of stride `lda` and `kc` pairs,
    /// `b` and `b + bstride` readable for `kc` × 16 `u32`s; `out` valid for `rows` rows of
    /// stride `ldo` and `cols` ≤ 32 columns.
    #[target_feature(enable = "avx512f,avx512bf16")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel(
        a: *const u32,
        lda: usize,
        b: *const u32,
        bstride: usize,
        kc: usize,
        out: *mut f32,
        ldo: usize,
        rows: usize,
        cols: usize,
        accumulate: bool,
    ) {
        let mask = |h: usize| -> __mmask16 {
            let valid = cols.saturating_sub(h * LANES).min(LANES);
            ((1u32 << valid) - 1) as __mmask16
        };
        let (m0, m1) = (mask(0), mask(1));
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        // SAFETY (all pointer reads and writes): within the bounds the caller guarantees.
        unsafe {
            if accumulate {
                for (r, acc) in acc.iter_mut().enumerate().take(rows) {
                    let o = out.add(r * ldo);
                    acc[0] = _mm512_maskz_loadu_ps(m0, o);
                    acc[1] = _mm512_maskz_loadu_ps(m1, o.add(LANES));
                }
            }
            for p in 0..kc {
                let w0: __m512bh =
                    std::mem::transmute(_mm512_loadu_epi32(b.add(p * LANES) as *const i32));
                let w1: __m512bh = std::mem::transmute(_mm512_loadu_epi32(
                    b.add(bstride + p * LANES) as *const i32,
                ));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av: __m512bh =
                        std::mem::transmute(_mm512_set1_epi32(*a.add(r * lda + p) as i32));
                    acc[0] = _mm512_dpbf16_ps(acc[0], av, w0);
                    acc[1] = _mm512_dpbf16_ps(acc[1], av, w1);
                }
            }
            for (r, acc) in acc.iter().enumerate().take(rows) {
                let o = out.add(r * ldo);
                _mm512_mask_storeu_ps(o, m0, acc[0]);
                _mm512_mask_storeu_ps(o.add(LANES), m1, acc[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rand(n: usize, seed: &str) -> Vec<f32> {
        crate::testing::portable_values(seed, n, 0.5, 0.0)
    }

    /// `x · wᵀ` in f64 over the bf16-rounded operands.
    fn reference(x: &[f32], w: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
        let r = |v: f32| f64::from(f32_of(bf16(v)));
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|t| r(x[i * k + t]) * r(w[j * k + t])).sum();
            }
        }
        out
    }

    /// The largest `|got − want| / Σ_t |x_t w_t|` (the bound f32 accumulation of `k` products
    /// of bf16 values obeys: `k · 2⁻²⁴` relative to the sum of magnitudes, plus the rounding of
    /// each product, exact here).
    fn rel_err(got: &[f32], want: &[f64], x: &[f32], w: &[f32], n: usize, k: usize) -> f64 {
        let r = |v: f32| f64::from(f32_of(bf16(v))).abs();
        got.iter()
            .zip(want)
            .enumerate()
            .map(|(idx, (&g, &w_))| {
                let (i, j) = (idx / n, idx % n);
                let mag: f64 = (0..k).map(|t| r(x[i * k + t]) * r(w[j * k + t])).sum();
                (f64::from(g) - w_).abs() / mag.max(1e-30)
            })
            .fold(0.0, f64::max)
    }

    const SHAPES: [(usize, usize, usize); 7] = [
        (1, 1, 1),
        (3, 17, 5),
        (8, 32, 32),
        (17, 33, 40),
        (70, 50, 576),
        (33, 96, 300),
        (9, 200, 1536),
    ];

    fn check_both_products(label: &str) {
        for &(m, n, k) in &SHAPES {
            let w = rand(n * k, &format!("bf16-w-{n}-{k}"));
            let bw = Bf16Matrix::from_f32(&w, n, k).unwrap();
            // forward: out = x Wᵀ
            let x = rand(m * k, &format!("bf16-x-{m}-{k}"));
            let mut out = vec![f32::NAN; m * n];
            bw.matmul(&x, m, &mut out);
            let want = reference(&x, &w, m, n, k);
            let err = rel_err(&out, &want, &x, &w, n, k);
            // f32 accumulation: each partial sum rounds once (≤ 2⁻²⁴ of it), k of them
            let bound = 1e-6 + k as f64 * 2f64.powi(-24);
            assert!(err <= bound, "{label} forward {m}x{n}x{k}: {err} > {bound}");
            // backward: dx = g W = g (Wᵀ)ᵀ
            let g = rand(m * n, &format!("bf16-g-{m}-{n}"));
            let mut dx = vec![f32::NAN; m * k];
            bw.matmul_grad(&g, m, &mut dx);
            let mut wt = vec![0f32; n * k];
            for r in 0..n {
                for c in 0..k {
                    wt[c * n + r] = w[r * k + c];
                }
            }
            let want = reference(&g, &wt, m, k, n);
            let err = rel_err(&dx, &want, &g, &wt, k, n);
            let bound = 1e-6 + n as f64 * 2f64.powi(-24);
            assert!(
                err <= bound,
                "{label} backward {m}x{n}x{k}: {err} > {bound}"
            );
        }
    }

    #[test]
    fn the_kernel_matches_the_bf16_reference() {
        if !available() {
            eprintln!("AVX-512 BF16 not available here: kernel test skipped");
            return;
        }
        check_both_products("avx512-bf16");
    }

    #[test]
    fn the_portable_path_matches_the_bf16_reference() {
        let was = available();
        set_enabled(false);
        if crate::amx::available() {
            eprintln!("AMX takes bf16 products here: portable path not reachable, skipped");
        } else {
            check_both_products("portable");
        }
        set_enabled(was || *DETECTED.get_or_init(detect));
    }

    #[test]
    fn the_product_is_within_bf16_rounding_of_f32() {
        // against the exact f32 operands: each operand rounds by ≤ 2⁻⁹ relative, so a product
        // by ≤ 2⁻⁸, bounded by the sum of magnitudes
        let (m, n, k) = (12, 40, 576);
        let w = rand(n * k, "f32-w");
        let x = rand(m * k, "f32-x");
        let bw = Bf16Matrix::from_f32(&w, n, k).unwrap();
        let mut out = vec![0f32; m * n];
        bw.matmul(&x, m, &mut out);
        for i in 0..m {
            for j in 0..n {
                let exact: f64 = (0..k)
                    .map(|t| f64::from(x[i * k + t]) * f64::from(w[j * k + t]))
                    .sum();
                let mag: f64 = (0..k)
                    .map(|t| (f64::from(x[i * k + t]) * f64::from(w[j * k + t])).abs())
                    .sum();
                let err = (f64::from(out[i * n + j]) - exact).abs();
                assert!(err <= mag * 2f64.powi(-8), "{i},{j}: {err} vs {mag}");
            }
        }
    }

    #[test]
    fn rows_dequantize_to_the_rounded_values() {
        let (n, k) = (19, 45);
        let w = rand(n * k, "deq");
        let bw = Bf16Matrix::from_f32(&w, n, k).unwrap();
        let back = bw.dequantize();
        for (a, b) in back.iter().zip(&w) {
            assert_eq!(*a, f32_of(bf16(*b)));
        }
        assert!(Bf16Matrix::from_f32(&w, n, k + 1).is_none());
    }
}
