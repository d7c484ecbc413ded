//! The CPU kernels the inference path shares across architectures: rotary tables, and the
//! fused op that applies the rotary embedding (and Qwen3/Gemma 3 head norms), appends to the
//! key/value cache and runs causal (optionally sliding-window) attention, with AVX-512 kernels
//! for f16 caches.

use std::cell::RefCell;

use candle_core::{CpuStorage, CustomOp1, Layout, Shape};
use half::f16;

use crate::config::{LlamaConfig, RopeStyle};
use crate::kv_cache::{KvData, LayerKv};
use crate::nn::contiguous_slice;
use crate::threads::{SyncPtr, par_for};

/// cos/sin of the rotary angles for a run of positions: `[n_pos, rope_dim / 2]`.
pub struct RopeTable {
    /// `rope_dim / 2`: angles per position.
    pub half: usize,
    /// Cosines, position-major.
    pub cos: Vec<f32>,
    /// Sines, position-major.
    pub sin: Vec<f32>,
}

impl RopeTable {
    /// Angles as llama.cpp computes them: `theta_i = pos · base^(-2i/d) / factor_i`.
    pub fn new(cfg: &LlamaConfig, factors: &[f32], start: usize, n: usize) -> Self {
        Self::with_base(cfg.rope_theta, cfg.rope_dim, factors, start, n)
    }

    /// [`RopeTable::new`] with another base frequency (Gemma 3's local layers).
    pub fn with_base(base: f32, rope_dim: usize, factors: &[f32], start: usize, n: usize) -> Self {
        let half = rope_dim / 2;
        let theta_scale = base.powf(-2.0 / rope_dim as f32);
        let mut cos = Vec::with_capacity(n * half);
        let mut sin = Vec::with_capacity(n * half);
        for p in start..start + n {
            let mut theta = p as f32;
            for f in factors.iter().take(half) {
                let t = theta / f;
                cos.push(t.cos());
                sin.push(t.sin());
                theta *= theta_scale;
            }
        }
        Self { half, cos, sin }
    }

    #[inline]
    fn apply(&self, x: &mut [f32], t: usize, style: RopeStyle) {
        self.rotate(x, t, style, 1.0);
    }

    /// Rotates the first `2 · half` dimensions of `x` by position `t`'s angles; `sign = -1`
    /// rotates back (the transpose, which is the rotation's backward pass).
    #[inline]
    pub(crate) fn rotate(&self, x: &mut [f32], t: usize, style: RopeStyle, sign: f32) {
        let cs = &self.cos[t * self.half..(t + 1) * self.half];
        let sn = &self.sin[t * self.half..(t + 1) * self.half];
        match style {
            RopeStyle::Interleaved => {
                for i in 0..self.half {
                    let (a, b) = (x[2 * i], x[2 * i + 1]);
                    let s = sign * sn[i];
                    x[2 * i] = a * cs[i] - b * s;
                    x[2 * i + 1] = a * s + b * cs[i];
                }
            }
            RopeStyle::Neox => {
                for i in 0..self.half {
                    let (a, b) = (x[i], x[i + self.half]);
                    let s = sign * sn[i];
                    x[i] = a * cs[i] - b * s;
                    x[i + self.half] = a * s + b * cs[i];
                }
            }
        }
    }
}

/// The rotary tables of one forward pass: the model's, and that of the sliding-window layers.
pub(crate) struct Ropes {
    pub(crate) global: RopeTable,
    pub(crate) local: Option<RopeTable>,
}

impl Ropes {
    pub(crate) fn for_window(&self, window: Option<usize>) -> &RopeTable {
        match (&self.local, window) {
            (Some(l), Some(_)) => l,
            _ => &self.global,
        }
    }
}

/// Rotary embedding + cache append + causal attention for the positions of one forward pass.
pub(crate) struct CachedAttention<'a> {
    pub(crate) kv: RefCell<&'a mut LayerKv>,
    pub(crate) rope: &'a RopeTable,
    /// Factor of the attention logits.
    pub(crate) scale: f32,
    /// Each query attends to the last `window` positions only (itself included).
    pub(crate) window: Option<usize>,
    pub(crate) start: usize,
    pub(crate) nh: usize,
    pub(crate) nkv: usize,
    pub(crate) hd: usize,
    pub(crate) n_rot: usize,
    pub(crate) style: RopeStyle,
    /// Per-head RMS-norm weights of queries and keys, applied before the rotary embedding.
    pub(crate) head_norms: Option<(&'a [f32], &'a [f32])>,
    pub(crate) eps: f32,
    /// Round q and the attention weights to f16 like llama.cpp does with an f16 cache.
    pub(crate) round_f16: bool,
}

impl CustomOp1 for CachedAttention<'_> {
    fn name(&self) -> &'static str {
        "cached-attention"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_slice::<f32>(s, l, "attention: input")?;
        let (nh, nkv, hd) = (self.nh, self.nkv, self.hd);
        let (qw, kw) = (nh * hd, nkv * hd);
        let row = qw + 2 * kw;
        let dims = l.dims();
        if dims.len() != 2 || dims[1] != row {
            candle_core::bail!("attention: expected [n, {row}], got {dims:?}");
        }
        let n = dims[0];
        let mut kv = self.kv.borrow_mut();
        if let Some(w) = self.window {
            // the first query of this pass sees positions from start + 1 - w on
            kv.drop_before((self.start + 1).saturating_sub(w), w, kw);
        }
        let mut q = vec![0f32; n * qw];
        let mut k = vec![0f32; kw];
        for t in 0..n {
            let r = &x[t * row..(t + 1) * row];
            let qt = &mut q[t * qw..(t + 1) * qw];
            qt.copy_from_slice(&r[..qw]);
            if let Some((wq, _)) = self.head_norms {
                qt.chunks_exact_mut(hd)
                    .for_each(|x| rms_norm_head(x, wq, self.eps));
            }
            for h in 0..nh {
                self.rope
                    .apply(&mut qt[h * hd..h * hd + self.n_rot], t, self.style);
            }
            if self.round_f16 {
                for v in qt.iter_mut() {
                    *v = f16::from_f32(*v).to_f32();
                }
            }
            k.copy_from_slice(&r[qw..qw + kw]);
            if let Some((_, wk)) = self.head_norms {
                k.chunks_exact_mut(hd)
                    .for_each(|x| rms_norm_head(x, wk, self.eps));
            }
            for h in 0..nkv {
                self.rope
                    .apply(&mut k[h * hd..h * hd + self.n_rot], t, self.style);
            }
            kv.k.push(&k);
            kv.v.push(&r[qw + kw..]);
        }
        let kv: &LayerKv = &kv;
        let mut out = vec![0f32; n * qw];
        let optr = SyncPtr(out.as_mut_ptr());
        let scale = self.scale;
        let window = self.window;
        let rep = nh / nkv;
        let total = self.start + n;
        // split queries into chunks so prefill spreads over threads
        let t_chunk = if n == 1 { 1 } else { n.div_ceil(8).max(1) };
        let n_tchunks = n.div_ceil(t_chunk);
        let start = self.start;
        let dropped = kv.dropped;
        let round = self.round_f16;
        let work = |task: usize| {
            let h = task % nh;
            let tc = task / nh;
            let g = h / rep;
            let mut scores = vec![0f32; total];
            for t in tc * t_chunk..((tc + 1) * t_chunk).min(n) {
                let len = start + t + 1;
                // keys `lo..len`: all previous positions, or the last `window`
                let lo = window.map_or(0, |w| len.saturating_sub(w));
                let qh = &q[t * qw + h * hd..t * qw + (h + 1) * hd];
                let sc = &mut scores[..len - lo];
                let off = t * qw + h * hd;
                match (&kv.k, &kv.v) {
                    (KvData::F16(kc), KvData::F16(vc)) => {
                        let (kc, vc) = (&kc[(lo - dropped) * kw..], &vc[(lo - dropped) * kw..]);
                        #[cfg(all(
                            target_arch = "x86_64",
                            target_feature = "avx512f",
                            target_feature = "f16c"
                        ))]
                        {
                            if hd == 64 {
                                attend_f16_simd::<4>(
                                    qh, kc, vc, sc, g, nkv, hd, scale, round, optr, off,
                                );
                                continue;
                            }
                            if hd == 128 {
                                attend_f16_simd::<8>(
                                    qh, kc, vc, sc, g, nkv, hd, scale, round, optr, off,
                                );
                                continue;
                            }
                        }
                        attend(qh, kc, vc, sc, g, nkv, hd, scale, round, optr, off)
                    }
                    (KvData::F32(kc), KvData::F32(vc)) => {
                        let (kc, vc) = (&kc[(lo - dropped) * kw..], &vc[(lo - dropped) * kw..]);
                        attend(qh, kc, vc, sc, g, nkv, hd, scale, false, optr, off)
                    }
                    _ => {}
                }
            }
        };
        let tasks = nh * n_tchunks;
        if total * n < 512 {
            (0..tasks).for_each(work);
        } else {
            par_for(tasks, work);
        }
        Ok((CpuStorage::F32(out), Shape::from((n, qw))))
    }
}

/// RMS norm of one head in place (sum of squares in f64, like the fused hidden-state norm).
#[inline]
fn rms_norm_head(x: &mut [f32], w: &[f32], eps: f32) {
    let sum: f64 = x.iter().map(|&v| (v as f64) * (v as f64)).sum();
    let scale = 1.0 / ((sum / x.len() as f64) as f32 + eps).sqrt();
    for (v, w) in x.iter_mut().zip(w) {
        *v = (*v * scale) * w;
    }
}

/// Element types the cache can hold.
trait KvElem: Copy + Send + Sync {
    fn to_f32(self) -> f32;
}

impl KvElem for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

impl KvElem for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

#[inline(always)]
fn dot_kv<T: KvElem>(q: &[f32], k: &[T]) -> f32 {
    let mut acc = [0f32; 16];
    let qc = q.chunks_exact(16);
    let kc = k.chunks_exact(16);
    let (qr, kr) = (qc.remainder(), kc.remainder());
    for (a, b) in qc.zip(kc) {
        for i in 0..16 {
            acc[i] = a[i].mul_add(b[i].to_f32(), acc[i]);
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (a, b) in qr.iter().zip(kr) {
        s += a * b.to_f32();
    }
    s
}

/// `exp(x - max)` in place, returning the sum.
#[cfg(all(target_arch = "x86_64", target_feature = "avx512f"))]
#[inline(always)]
fn exp_sub_sum(xs: &mut [f32], max: f32) -> f64 {
    use std::arch::x86_64::*;
    // SAFETY: full 16-lane chunks are loaded/stored inside `xs`; the tail is done in scalar code.
    unsafe {
        let mx = _mm512_set1_ps(max);
        let log2e = _mm512_set1_ps(std::f32::consts::LOG2_E);
        let ln2_hi = _mm512_set1_ps(0.693_359_4);
        let ln2_lo = _mm512_set1_ps(-2.121_944_4e-4);
        let lo = _mm512_set1_ps(-87.0);
        let c = [
            1.0 / 720.0,
            1.0 / 120.0,
            1.0 / 24.0,
            1.0 / 6.0,
            0.5,
            1.0,
            1.0,
        ]
        .map(|v: f32| _mm512_set1_ps(v));
        let mut sum = _mm512_setzero_ps();
        let mut chunks = xs.chunks_exact_mut(16);
        for ch in &mut chunks {
            let x = _mm512_max_ps(_mm512_sub_ps(_mm512_loadu_ps(ch.as_ptr()), mx), lo);
            let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
                _mm512_mul_ps(x, log2e),
            );
            let r = _mm512_fnmadd_ps(n, ln2_hi, x);
            let r = _mm512_fnmadd_ps(n, ln2_lo, r);
            let mut p = c[0];
            for ci in &c[1..] {
                p = _mm512_fmadd_ps(p, r, *ci);
            }
            let e = _mm512_scalef_ps(p, n);
            _mm512_storeu_ps(ch.as_mut_ptr(), e);
            sum = _mm512_add_ps(sum, e);
        }
        let mut total = _mm512_reduce_add_ps(sum) as f64;
        for v in chunks.into_remainder() {
            *v = (*v - max).exp();
            total += *v as f64;
        }
        total
    }
}

#[cfg(not(all(target_arch = "x86_64", target_feature = "avx512f")))]
#[inline(always)]
fn exp_sub_sum(xs: &mut [f32], max: f32) -> f64 {
    let mut sum = 0f64;
    for s in xs.iter_mut() {
        *s = (*s - max).exp();
        sum += *s as f64;
    }
    sum
}

/// Softmax in place over `scores`; probabilities are normalised (and rounded to f16 when the
/// cache is f16, as llama.cpp multiplies them with V in f16).
#[inline(always)]
fn softmax_in_place(scores: &mut [f32], round_f16: bool) {
    let max = scores.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let sum = exp_sub_sum(scores, max);
    let inv = (1.0 / sum) as f32;
    normalize(scores, inv, round_f16);
}

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx512f",
    target_feature = "f16c"
))]
#[inline(always)]
fn normalize(scores: &mut [f32], inv: f32, round_f16: bool) {
    use std::arch::x86_64::*;
    // SAFETY: full 16-lane chunks inside `scores`; the tail is scalar.
    unsafe {
        let iv = _mm512_set1_ps(inv);
        let mut chunks = scores.chunks_exact_mut(16);
        for ch in &mut chunks {
            let mut v = _mm512_mul_ps(_mm512_loadu_ps(ch.as_ptr()), iv);
            if round_f16 {
                v = _mm512_cvtph_ps(_mm512_cvtps_ph::<
                    { _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC },
                >(v));
            }
            _mm512_storeu_ps(ch.as_mut_ptr(), v);
        }
        for s in chunks.into_remainder() {
            *s *= inv;
            if round_f16 {
                *s = f16::from_f32(*s).to_f32();
            }
        }
    }
}

#[cfg(not(all(
    target_arch = "x86_64",
    target_feature = "avx512f",
    target_feature = "f16c"
)))]
#[inline(always)]
fn normalize(scores: &mut [f32], inv: f32, round_f16: bool) {
    for s in scores.iter_mut() {
        *s *= inv;
        if round_f16 {
            *s = f16::from_f32(*s).to_f32();
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn attend<T: KvElem>(
    q: &[f32],
    kc: &[T],
    vc: &[T],
    scores: &mut [f32],
    g: usize,
    nkv: usize,
    hd: usize,
    scale: f32,
    round_f16: bool,
    out: SyncPtr<f32>,
    out_off: usize,
) {
    let stride = nkv * hd;
    for (j, s) in scores.iter_mut().enumerate() {
        let kr = &kc[j * stride + g * hd..j * stride + (g + 1) * hd];
        *s = dot_kv(q, kr) * scale;
    }
    softmax_in_place(scores, round_f16);
    let mut acc = vec![0f32; hd];
    for (j, &p) in scores.iter().enumerate() {
        let vr = &vc[j * stride + g * hd..j * stride + (g + 1) * hd];
        for (a, v) in acc.iter_mut().zip(vr) {
            *a = p.mul_add(v.to_f32(), *a);
        }
    }
    for (i, a) in acc.iter().enumerate() {
        // SAFETY: each (query, head) output slice is written by exactly one task.
        unsafe { out.write(out_off + i, *a) };
    }
}

/// f16-cache attention with AVX-512 for head size `16 * NV`.
#[cfg(all(
    target_arch = "x86_64",
    target_feature = "avx512f",
    target_feature = "f16c"
))]
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn attend_f16_simd<const NV: usize>(
    q: &[f32],
    kc: &[f16],
    vc: &[f16],
    scores: &mut [f32],
    g: usize,
    nkv: usize,
    hd: usize,
    scale: f32,
    round_f16: bool,
    out: SyncPtr<f32>,
    out_off: usize,
) {
    use std::arch::x86_64::*;
    let stride = nkv * hd;
    let len = scores.len();
    debug_assert!(hd == 16 * NV);
    debug_assert!(kc.len() >= len * stride && vc.len() >= len * stride && q.len() >= hd);
    // SAFETY: `kc`/`vc` hold at least `len` rows of `stride` halves (checked by the caller's
    // layout), `q` holds `hd` floats, and all loads are unaligned loads inside those bounds.
    unsafe {
        let mut qv = [_mm512_setzero_ps(); NV];
        for (i, v) in qv.iter_mut().enumerate() {
            *v = _mm512_loadu_ps(q.as_ptr().add(16 * i));
        }
        let kp = kc.as_ptr().add(g * hd);
        let dot = |j: usize| -> __m512 {
            let row = kp.add(j * stride) as *const __m256i;
            let mut acc = _mm512_mul_ps(qv[0], _mm512_cvtph_ps(_mm256_loadu_si256(row)));
            for (i, qvi) in qv.iter().enumerate().skip(1) {
                acc = _mm512_fmadd_ps(*qvi, _mm512_cvtph_ps(_mm256_loadu_si256(row.add(i))), acc);
            }
            acc
        };
        let sc = _mm512_set1_ps(scale);
        let mut j = 0;
        // 16 keys at a time: the 16 partial-sum vectors are reduced together by a transpose
        while j + 16 <= len {
            let v: [__m512; 16] = std::array::from_fn(|t| dot(j + t));
            let w: [__m512; 8] = std::array::from_fn(|i| {
                _mm512_add_ps(
                    _mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]),
                    _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]),
                )
            });
            let x: [__m512; 4] = std::array::from_fn(|i| {
                _mm512_add_ps(
                    _mm512_shuffle_ps::<0x44>(w[2 * i], w[2 * i + 1]),
                    _mm512_shuffle_ps::<0xEE>(w[2 * i], w[2 * i + 1]),
                )
            });
            let y: [__m512; 2] = std::array::from_fn(|i| {
                _mm512_add_ps(
                    _mm512_shuffle_f32x4::<0b10_00_10_00>(x[2 * i], x[2 * i + 1]),
                    _mm512_shuffle_f32x4::<0b11_01_11_01>(x[2 * i], x[2 * i + 1]),
                )
            });
            let r = _mm512_add_ps(
                _mm512_shuffle_f32x4::<0b10_00_10_00>(y[0], y[1]),
                _mm512_shuffle_f32x4::<0b11_01_11_01>(y[0], y[1]),
            );
            _mm512_storeu_ps(scores.as_mut_ptr().add(j), _mm512_mul_ps(r, sc));
            j += 16;
        }
        while j < len {
            scores[j] = _mm512_reduce_add_ps(dot(j)) * scale;
            j += 1;
        }
        softmax_in_place(scores, round_f16);
        // two keys per step keep two independent FMA chains per output vector
        let mut acc = [_mm512_setzero_ps(); NV];
        let mut acc2 = [_mm512_setzero_ps(); NV];
        let vp = vc.as_ptr().add(g * hd);
        let mut j = 0;
        while j + 2 <= len {
            let p0 = _mm512_set1_ps(scores[j]);
            let p1 = _mm512_set1_ps(scores[j + 1]);
            let r0 = vp.add(j * stride) as *const __m256i;
            let r1 = vp.add((j + 1) * stride) as *const __m256i;
            for i in 0..NV {
                acc[i] =
                    _mm512_fmadd_ps(p0, _mm512_cvtph_ps(_mm256_loadu_si256(r0.add(i))), acc[i]);
                acc2[i] =
                    _mm512_fmadd_ps(p1, _mm512_cvtph_ps(_mm256_loadu_si256(r1.add(i))), acc2[i]);
            }
            j += 2;
        }
        if j < len {
            let p0 = _mm512_set1_ps(scores[j]);
            let r0 = vp.add(j * stride) as *const __m256i;
            for (i, a) in acc.iter_mut().enumerate() {
                *a = _mm512_fmadd_ps(p0, _mm512_cvtph_ps(_mm256_loadu_si256(r0.add(i))), *a);
            }
        }
        for (a, b) in acc.iter_mut().zip(acc2) {
            *a = _mm512_add_ps(*a, b);
        }
        let mut tmp = [0f32; 16];
        for (i, a) in acc.iter().enumerate() {
            _mm512_storeu_ps(tmp.as_mut_ptr(), *a);
            for (k, v) in tmp.iter().enumerate() {
                // SAFETY: each (query, head) output slice is written by exactly one task.
                out.write(out_off + 16 * i + k, *v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(all(
        target_arch = "x86_64",
        target_feature = "avx512f",
        target_feature = "f16c"
    ))]
    #[test]
    fn simd_attention_matches_scalar() {
        let (nkv, hd) = (3usize, 64usize);
        let mut s = 7u64;
        let mut r = || {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0
        };
        for len in [1usize, 2, 15, 16, 17, 33, 100] {
            let k: Vec<f16> = (0..len * nkv * hd).map(|_| f16::from_f32(r())).collect();
            let v: Vec<f16> = (0..len * nkv * hd).map(|_| f16::from_f32(r())).collect();
            let q: Vec<f32> = (0..hd).map(|_| r() * 3.0).collect();
            for g in 0..nkv {
                let mut a = vec![0f32; hd];
                let mut b = vec![0f32; hd];
                let mut sa = vec![0f32; len];
                let mut sb = vec![0f32; len];
                attend(
                    &q,
                    &k,
                    &v,
                    &mut sa,
                    g,
                    nkv,
                    hd,
                    0.125,
                    true,
                    SyncPtr(a.as_mut_ptr()),
                    0,
                );
                attend_f16_simd::<4>(
                    &q,
                    &k,
                    &v,
                    &mut sb,
                    g,
                    nkv,
                    hd,
                    0.125,
                    true,
                    SyncPtr(b.as_mut_ptr()),
                    0,
                );
                for (x, y) in a.iter().zip(&b) {
                    assert!((x - y).abs() < 2e-3, "len {len} g {g}: {x} vs {y}");
                }
            }
        }
    }
}
