//! Fused, differentiable operations for the training forward pass.
//!
//! candle's fused `rms_norm`, `softmax_last_dim` and `rope` record no gradient, and the
//! compositions that do (`rms_norm_slow`, `softmax`, narrow/mul/cat for RoPE) keep every
//! intermediate tensor alive for the backward pass and run single-threaded. These ops keep only
//! their input or output, run their rows in the compute pool, and have hand-written backward
//! passes (checked against finite differences by the gradient tests).
//!
//! Only gradients with respect to activations are produced: the frozen base's norm weights
//! get none (LoRA training does not update them).

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::error::Result;
use crate::llama::{RopeStyle, RopeTable};
use crate::nn::{FfnAct, contiguous_slice};

fn slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a [f32]> {
    contiguous_slice(s, l, &format!("{op}: input"))
}

fn last_dim(l: &Layout) -> usize {
    l.dims().last().copied().unwrap_or(1).max(1)
}

/// `x · rsqrt(mean(x²) + eps) · w` over the last dimension (sum of squares in f64, like the
/// inference kernel, so training and serving compute the same numbers).
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    Ok(x.contiguous()?
        .apply_op2(&w.contiguous()?, RmsNorm { eps })?)
}

struct RmsNorm {
    eps: f32,
}

fn inv_rms(row: &[f32], eps: f32) -> f32 {
    let sum: f64 = row.iter().map(|&v| (v as f64) * (v as f64)).sum();
    1.0 / ((sum / row.len() as f64) as f32 + eps).sqrt()
}

impl CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm-train"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "rms-norm")?;
        let w = slice(s2, l2, "rms-norm")?;
        let h = last_dim(l1);
        if w.len() != h {
            candle_core::bail!("rms-norm: weight of {} for rows of {h}", w.len());
        }
        let mut out = vec![0f32; x.len()];
        crate::threads::run(|| {
            out.par_chunks_mut(h)
                .zip(x.par_chunks(h))
                .for_each(|(o, row)| {
                    let r = inv_rms(row, self.eps);
                    for ((o, &v), &w) in o.iter_mut().zip(row).zip(w) {
                        *o = v * r * w;
                    }
                });
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        // y = w ∘ x · r, r = (mean x² + eps)^-½:  dx = r (g∘w) − x · r³/h · Σ (g∘w∘x)
        let gw = grad.broadcast_mul(w)?.contiguous()?;
        let dx = x.apply_op2_no_bwd(&gw, &RmsNormGrad { eps: self.eps })?;
        Ok((Some(dx), None))
    }
}

struct RmsNormGrad {
    eps: f32,
}

impl CustomOp2 for RmsNormGrad {
    fn name(&self) -> &'static str {
        "rms-norm-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "rms-norm-grad")?;
        let gw = slice(s2, l2, "rms-norm-grad")?;
        let h = last_dim(l1);
        let mut out = vec![0f32; x.len()];
        crate::threads::run(|| {
            out.par_chunks_mut(h)
                .zip(x.par_chunks(h).zip(gw.par_chunks(h)))
                .for_each(|(o, (row, g))| {
                    let r = inv_rms(row, self.eps);
                    let dot: f64 = row.iter().zip(g).map(|(&a, &b)| a as f64 * b as f64).sum();
                    let k = (dot as f32) * r * r * r / h as f32;
                    for ((o, &v), &g) in o.iter_mut().zip(row).zip(g) {
                        *o = r * g - v * k;
                    }
                });
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

/// The causal (optionally sliding-window) mask and the logit scale of [`causal_attention`].
struct CausalMask {
    scale: f32,
    window: usize,
}

impl CausalMask {
    /// The keys query `i` may attend to.
    fn visible(&self, i: usize) -> std::ops::Range<usize> {
        let lo = (i + 1).saturating_sub(self.window);
        lo..i + 1
    }
}

/// Causal self-attention as one node: `softmax(scale · q kᵀ + mask) v` for `q: [batch, heads,
/// seq, head_dim]` and `k`, `v: [batch, kv_heads, seq, head_dim]` (grouped queries share their
/// key/value head; nothing is expanded), returning `[batch, seq, heads · head_dim]` (the layout
/// the output projection reads). Query `i` sees keys `j ≤ i` (and `i − j < window`).
///
/// The graph keeps only `q`, `k`, `v` and the output: the backward pass recomputes each head's
/// probabilities (one `seq × seq` product, a few percent of a layer's work) instead of holding
/// scores, probabilities and expanded keys and values for every layer.
pub fn causal_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f32,
    window: Option<usize>,
) -> Result<Tensor> {
    Ok(q.contiguous()?.apply_op3(
        &k.contiguous()?,
        &v.contiguous()?,
        Attention {
            soft: CausalMask {
                scale,
                window: window.unwrap_or(usize::MAX),
            },
        },
    )?)
}

struct Attention {
    soft: CausalMask,
}

/// `(batch, heads, kv_heads, seq, head_dim)` of an attention call.
type AttnDims = (usize, usize, usize, usize, usize);

fn attn_dims(q: &Layout, k: &Layout, v: &Layout) -> candle_core::Result<AttnDims> {
    let (b, nh, s, hd) = q.shape().dims4()?;
    let kd = k.shape().dims4()?;
    if kd != v.shape().dims4()?
        || kd.0 != b
        || kd.2 != s
        || kd.3 != hd
        || kd.1 == 0
        || nh % kd.1 != 0
    {
        candle_core::bail!(
            "attention: q {:?}, k {:?}, v {:?} do not fit",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    Ok((b, nh, kd.1, s, hd))
}

/// Query rows per block of the attention products: a block of rows multiplies only the keys
/// its rows can see, which skips most of the masked half of each `seq × seq` product.
const ATTN_BLOCK: usize = 64;

/// `eˣ` for `x ≤ 0` (softmax arguments after the row maximum is subtracted), branch-free so a
/// row's loop vectorises: `2ⁿ · e^r` with `n = round(x / ln 2)`, `|r| ≤ ln 2 / 2` split off in
/// two steps, and a degree-6 polynomial for `e^r` (relative error below 2e-7; 0 below −87).
#[inline(always)]
fn exp_neg(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_145_75;
    const LN2_LO: f32 = 1.428_606_8e-6;
    let x = x.max(-87.0);
    let n = (x * std::f32::consts::LOG2_E).round();
    let r = (x - n * LN2_HI) - n * LN2_LO;
    let p = 1.0
        + r * (1.0
            + r * (0.5
                + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    p * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

impl Attention {
    /// The query row blocks `(r0, r1)` of a sequence of `s` and the key range `lo..hi` every
    /// row of the block may see (rows see keys up to themselves, the first row of the block the
    /// fewest under a window).
    fn blocks(&self, s: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> + '_ {
        (0..s).step_by(ATTN_BLOCK).map(move |r0| {
            let r1 = (r0 + ATTN_BLOCK).min(s);
            (r0, r1, self.soft.visible(r0).start, r1)
        })
    }

    /// The probabilities of query head `qh` (`[seq, head_dim]`) against key head `kh` into
    /// `p` (`[seq, seq]`): valid on each row block's key range (zero where masked inside it);
    /// outside those ranges `p` is not written.
    fn probs(&self, qh: &[f32], kh: &[f32], s: usize, hd: usize, p: &mut [f32]) {
        let scale = self.soft.scale;
        for (r0, r1, lo, hi) in self.blocks(s) {
            // SAFETY: qh and kh are [s, hd] (rows r0..r1 and lo..hi read), p is [s, s]
            // (rows r0..r1, columns lo..hi written).
            unsafe {
                crate::linear_op::mm_serial(
                    (r1 - r0, hi - lo, hd),
                    p.as_mut_ptr().add(r0 * s + lo),
                    s,
                    false,
                    (qh.as_ptr().add(r0 * hd), hd, 1),
                    (kh.as_ptr().add(lo * hd), 1, hd),
                    1.0,
                )
            };
            for i in r0..r1 {
                let row = &mut p[i * s..(i + 1) * s];
                let vis = self.soft.visible(i);
                let max = row[vis.clone()]
                    .iter()
                    .fold(f32::NEG_INFINITY, |m, &v| m.max(v * scale));
                let mut sum = 0f32;
                for v in &mut row[vis.clone()] {
                    *v = exp_neg(*v * scale - max);
                    sum += *v;
                }
                let inv = 1.0 / sum;
                for v in &mut row[vis.clone()] {
                    *v *= inv;
                }
                row[lo..vis.start].fill(0.0);
                row[vis.end..hi].fill(0.0);
            }
        }
    }
}

impl CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "causal-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, nh, nkv, s, hd) = attn_dims(l1, l2, l3)?;
        let q = slice(s1, l1, "attention: q")?;
        let k = slice(s2, l2, "attention: k")?;
        let v = slice(s3, l3, "attention: v")?;
        let (rep, width) = (nh / nkv, nh * hd);
        let mut y = vec![0f32; b * s * width];
        let out = crate::threads::SyncPtr(y.as_mut_ptr());
        crate::threads::par_for(b * nkv, |t| {
            let (bi, g) = (t / nkv, t % nkv);
            let kv = (bi * nkv + g) * s * hd;
            let (kh, vh) = (&k[kv..kv + s * hd], &v[kv..kv + s * hd]);
            let mut p = vec![0f32; s * s];
            for h in g * rep..(g + 1) * rep {
                let qo = (bi * nh + h) * s * hd;
                self.probs(&q[qo..qo + s * hd], kh, s, hd, &mut p);
                for (r0, r1, lo, hi) in self.blocks(s) {
                    // SAFETY: y is [b, s, nh·hd]; this task alone writes head h's columns of
                    // batch bi (rows of stride nh·hd from bi·s·nh·hd + h·hd), here rows
                    // r0..r1; p rows r0..r1 are valid on columns lo..hi, vh is [s, hd].
                    unsafe {
                        crate::linear_op::mm_serial(
                            (r1 - r0, hd, hi - lo),
                            out.get().add((bi * s + r0) * width + h * hd),
                            width,
                            false,
                            (p.as_ptr().add(r0 * s + lo), s, 1),
                            (vh.as_ptr().add(lo * hd), hd, 1),
                            1.0,
                        )
                    };
                }
            }
        });
        Ok((CpuStorage::F32(y), Shape::from((b, s, width))))
    }

    fn bwd(
        &self,
        q_t: &Tensor,
        k_t: &Tensor,
        v_t: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (b, nh, s, hd) = q_t.dims4()?;
        let nkv = k_t.dim(1)?;
        let (rep, width) = (nh / nkv, nh * hd);
        let grad = grad.contiguous()?;
        let (q_t, k_t, v_t) = (q_t.contiguous()?, k_t.contiguous()?, v_t.contiguous()?);
        let mut dq = vec![0f32; b * nh * s * hd];
        let mut dk = vec![0f32; b * nkv * s * hd];
        let mut dv = vec![0f32; b * nkv * s * hd];
        let outs = (
            crate::threads::SyncPtr(dq.as_mut_ptr()),
            crate::threads::SyncPtr(dk.as_mut_ptr()),
            crate::threads::SyncPtr(dv.as_mut_ptr()),
        );
        let scale = self.soft.scale;
        let tensors = [
            (&q_t, "attention: q"),
            (&k_t, "attention: k"),
            (&v_t, "attention: v"),
            (&grad, "attention: gradient"),
        ];
        crate::linear_op::with_f32s(tensors, |[q, k, v, g]| {
            let ptrs = (
                crate::threads::SyncPtr(q.as_ptr() as *mut f32),
                crate::threads::SyncPtr(k.as_ptr() as *mut f32),
                crate::threads::SyncPtr(v.as_ptr() as *mut f32),
                crate::threads::SyncPtr(g.as_ptr() as *mut f32),
            );
            crate::threads::par_for(b * nkv, |t| {
                let (bi, gh) = (t / nkv, t % nkv);
                let kv = (bi * nkv + gh) * s * hd;
                let (qp, kp, vp, gp) = (ptrs.0.get(), ptrs.1.get(), ptrs.2.get(), ptrs.3.get());
                let (dqp, dkp, dvp) = (outs.0.get(), outs.1.get(), outs.2.get());
                // SAFETY: q, k, v and the gradient are live, contiguous [b, nh, s, hd],
                // [b, nkv, s, hd] (twice) and [b, s, nh·hd] buffers, read-locked by with_f32s; this task alone writes kv head gh of batch bi in dk and dv and its query
                // heads in dq.
                unsafe {
                    let kh = std::slice::from_raw_parts(kp.add(kv), s * hd);
                    let mut p = vec![0f32; s * s];
                    let mut dp = vec![0f32; s * s];
                    for h in gh * rep..(gh + 1) * rep {
                        let qo = (bi * nh + h) * s * hd;
                        let qh = std::slice::from_raw_parts(qp.add(qo), s * hd);
                        self.probs(qh, kh, s, hd, &mut p);
                        for (r0, r1, lo, hi) in self.blocks(s) {
                            let (m, n) = (r1 - r0, hi - lo);
                            let go = gp.add((bi * s + r0) * width + h * hd);
                            let pb = p.as_ptr().add(r0 * s + lo);
                            let db = dp.as_mut_ptr().add(r0 * s + lo);
                            // dV[lo..hi] += P[r0..r1, lo..hi]ᵀ dO[r0..r1]
                            crate::linear_op::mm_serial(
                                (n, hd, m),
                                dvp.add(kv + lo * hd),
                                hd,
                                true,
                                (pb, 1, s),
                                (go, width, 1),
                                1.0,
                            );
                            // dP = dO Vᵀ
                            crate::linear_op::mm_serial(
                                (m, n, hd),
                                db,
                                s,
                                false,
                                (go, width, 1),
                                (vp.add(kv + lo * hd), 1, hd),
                                1.0,
                            );
                            // dS = scale · P ∘ (dP − Σⱼ P dP)
                            for i in r0..r1 {
                                let pr = &p[i * s + lo..i * s + hi];
                                let dr = &mut dp[i * s + lo..i * s + hi];
                                let dot: f32 = pr.iter().zip(dr.iter()).map(|(a, b)| a * b).sum();
                                for (d, &pv) in dr.iter_mut().zip(pr) {
                                    *d = scale * pv * (*d - dot);
                                }
                            }
                            let db = dp.as_ptr().add(r0 * s + lo);
                            // dQ[r0..r1] = dS K[lo..hi]
                            crate::linear_op::mm_serial(
                                (m, hd, n),
                                dqp.add(qo + r0 * hd),
                                hd,
                                false,
                                (db, s, 1),
                                (kh.as_ptr().add(lo * hd), hd, 1),
                                1.0,
                            );
                            // dK[lo..hi] += dSᵀ Q[r0..r1]
                            crate::linear_op::mm_serial(
                                (n, hd, m),
                                dkp.add(kv + lo * hd),
                                hd,
                                true,
                                (db, 1, s),
                                (qh.as_ptr().add(r0 * hd), hd, 1),
                                1.0,
                            );
                        }
                    }
                }
            });
        })?;
        let dev = q_t.device();
        Ok((
            Some(Tensor::from_vec(dq, q_t.shape(), dev)?),
            Some(Tensor::from_vec(dk, k_t.shape(), dev)?),
            Some(Tensor::from_vec(dv, v_t.shape(), dev)?),
        ))
    }
}

/// Rotary embedding of `x: [batch, heads, seq, head_dim]` (positions `0..seq`, the first
/// `2 · table.half` dimensions of each head rotated).
pub fn rope(x: &Tensor, table: &Arc<RopeTable>, style: RopeStyle) -> Result<Tensor> {
    Ok(x.contiguous()?.apply_op1(Rope {
        table: table.clone(),
        style,
        sign: 1.0,
    })?)
}

struct Rope {
    table: Arc<RopeTable>,
    style: RopeStyle,
    sign: f32,
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "rope-train"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "rope")?;
        let (_, _, seq, hd) = l.shape().dims4()?;
        if 2 * self.table.half > hd || self.table.cos.len() < seq * self.table.half {
            candle_core::bail!(
                "rope: table of {} dims × {} positions for heads of {hd} × {seq}",
                2 * self.table.half,
                self.table.cos.len() / self.table.half.max(1)
            );
        }
        let mut out = x.to_vec();
        crate::threads::run(|| {
            out.par_chunks_mut(hd).enumerate().for_each(|(r, row)| {
                self.table.rotate(row, r % seq, self.style, self.sign);
            });
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(
        &self,
        _arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        // A rotation's gradient is the rotation back.
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&Rope {
            table: self.table.clone(),
            style: self.style,
            sign: -self.sign,
        })?))
    }
}

/// `act(gate) · up` over a fused `[.., 2 · ff]` input (gate first), differentiable.
pub fn gated_act(gate_up: &Tensor, act: FfnAct) -> Result<Tensor> {
    Ok(gate_up.contiguous()?.apply_op1(GatedActTrain(act))?)
}

struct GatedActTrain(FfnAct);

const SQRT_2_OVER_PI: f32 = 0.797_884_6;

/// `(act(g), act'(g))`.
#[inline]
fn act_and_slope(act: FfnAct, g: f32) -> (f32, f32) {
    match act {
        FfnAct::Silu => {
            let s = 1.0 / (1.0 + (-g).exp());
            (g * s, s * (1.0 + g * (1.0 - s)))
        }
        FfnAct::GeluTanh => {
            let u = SQRT_2_OVER_PI * (g + 0.044715 * g * g * g);
            let t = u.tanh();
            let du = SQRT_2_OVER_PI * (1.0 + 3.0 * 0.044715 * g * g);
            (
                0.5 * g * (1.0 + t),
                0.5 * (1.0 + t) + 0.5 * g * (1.0 - t * t) * du,
            )
        }
    }
}

impl CustomOp1 for GatedActTrain {
    fn name(&self) -> &'static str {
        "gated-act-train"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s, l, "gated-act")?;
        let w2 = last_dim(l);
        let ff = w2 / 2;
        let mut out = vec![0f32; x.len() / 2];
        crate::threads::run(|| {
            out.par_chunks_mut(ff.max(1))
                .zip(x.par_chunks(w2))
                .for_each(|(o, row)| {
                    let (g, u) = row.split_at(ff);
                    for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                        *o = act_and_slope(self.0, g).0 * u;
                    }
                });
        });
        let mut shape = l.dims().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = ff;
        }
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        Ok(Some(arg.apply_op2_no_bwd(
            &grad.contiguous()?,
            &GatedActGrad(self.0),
        )?))
    }
}

/// `[d gate, d up] = [g_out · up · act'(gate), g_out · act(gate)]`.
struct GatedActGrad(FfnAct);

impl CustomOp2 for GatedActGrad {
    fn name(&self) -> &'static str {
        "gated-act-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = slice(s1, l1, "gated-act-grad")?;
        let go = slice(s2, l2, "gated-act-grad")?;
        let w2 = last_dim(l1);
        let ff = w2 / 2;
        let mut out = vec![0f32; x.len()];
        crate::threads::run(|| {
            out.par_chunks_mut(w2)
                .zip(x.par_chunks(w2).zip(go.par_chunks(ff.max(1))))
                .for_each(|(o, (row, go))| {
                    let (g, u) = row.split_at(ff);
                    let (og, ou) = o.split_at_mut(ff);
                    for i in 0..ff {
                        let (a, da) = act_and_slope(self.0, g[i]);
                        og[i] = go[i] * u[i] * da;
                        ou[i] = go[i] * a;
                    }
                });
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::max_diff;
    use candle_core::{D, Device, Var};

    fn det(shape: &[usize], seed: usize) -> Var {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| (((i + seed) * 7919 % 211) as f32 - 105.0) / 70.0)
            .collect();
        Var::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// The op and a candle composition give the same values and the same gradient of
    /// `Σ out ∘ weights`.
    fn agree(
        x: &Var,
        ours: impl Fn(&Tensor) -> Tensor,
        theirs: impl Fn(&Tensor) -> Tensor,
        what: &str,
    ) {
        let a = ours(x.as_tensor());
        let b = theirs(x.as_tensor());
        assert!(
            max_diff(&a, &b) < 1e-5,
            "{what}: values differ by {}",
            max_diff(&a, &b)
        );
        let wts = det(a.dims(), 3);
        let ga = (a * wts.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gb = (b * wts.as_tensor())
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let (ga, gb) = (ga.get(x).unwrap(), gb.get(x).unwrap());
        assert!(
            max_diff(ga, gb) < 1e-4,
            "{what}: gradients differ by {}",
            max_diff(ga, gb)
        );
    }

    #[test]
    fn rms_norm_matches_the_composition() {
        let x = det(&[2, 3, 8], 0);
        let w = det(&[8], 5).as_tensor().clone();
        agree(
            &x,
            |x| rms_norm(x, &w, 1e-5).unwrap(),
            |x| candle_nn::ops::rms_norm_slow(x, &w, 1e-5).unwrap(),
            "rms norm",
        );
    }

    #[test]
    fn exp_neg_matches_exp() {
        let mut worst = 0f64;
        for i in 0..=200_000 {
            let x = -87.0 * i as f32 / 200_000.0;
            let (ours, exact) = (exp_neg(x) as f64, (x as f64).exp());
            worst = worst.max((ours - exact).abs() / exact);
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert_eq!(exp_neg(0.0), 1.0);
        assert!(exp_neg(-1000.0) < 1e-37);
    }

    /// The fused attention against candle's composition (expanded grouped heads, masked
    /// softmax, two matmuls): values and the gradients of q, k and v, with and without a window.
    #[test]
    fn causal_attention_matches_the_composition() {
        let (b, nh, nkv, hd, scale) = (2, 4, 2, 3, 0.7f32);
        // one row block, and several (with a window that starts inside an earlier block)
        for (seq, window) in [(5, None), (5, Some(2)), (150, None), (150, Some(70))] {
            let q = det(&[b, nh, seq, hd], 1);
            let k = det(&[b, nkv, seq, hd], 2);
            let v = det(&[b, nkv, seq, hd], 4);
            let wts = det(&[b, seq, nh * hd], 3);
            let w = window.unwrap_or(usize::MAX);
            let m: Vec<f32> = (0..seq)
                .flat_map(|i| {
                    (0..seq).map(move |j| {
                        if j <= i && i - j < w {
                            0.0
                        } else {
                            f32::NEG_INFINITY
                        }
                    })
                })
                .collect();
            let mask = Tensor::from_vec(m, (seq, seq), &Device::Cpu).unwrap();
            let ours = causal_attention(&q, &k, &v, scale, window).unwrap();
            let rep = |t: &Tensor| {
                t.unsqueeze(2)
                    .unwrap()
                    .expand((b, nkv, nh / nkv, seq, hd))
                    .unwrap()
                    .reshape((b, nh, seq, hd))
                    .unwrap()
            };
            let s = (q.matmul(&rep(&k).t().unwrap()).unwrap() * scale as f64)
                .unwrap()
                .broadcast_add(&mask)
                .unwrap();
            let p = candle_nn::ops::softmax(&s, D::Minus1).unwrap();
            let theirs = p
                .matmul(&rep(&v))
                .unwrap()
                .transpose(1, 2)
                .unwrap()
                .reshape((b, seq, nh * hd))
                .unwrap();
            assert!(max_diff(&ours, &theirs) < 1e-5, "{window:?}: values differ");
            let go = (ours * wts.as_tensor())
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gt = (theirs * wts.as_tensor())
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            for (x, name) in [(&q, "q"), (&k, "k"), (&v, "v")] {
                let d = max_diff(go.get(x).unwrap(), gt.get(x).unwrap());
                assert!(d < 1e-4, "{window:?}: gradient of {name} differs by {d}");
            }
        }
    }

    #[test]
    fn rope_matches_the_rotation_and_rotates_back() {
        let (seq, hd) = (4, 8);
        let table = Arc::new(RopeTable::with_base(10_000.0, 6, &[1.0; 3], 0, seq));
        let x = det(&[1, 2, seq, hd], 2);
        for style in [RopeStyle::Interleaved, RopeStyle::Neox] {
            let t = table.clone();
            agree(
                &x,
                |x| rope(x, &table, style).unwrap(),
                move |x| {
                    // the same rotation, row by row, as a dense matrix product (differentiable)
                    let mut rows = Vec::new();
                    for p in 0..seq {
                        let mut m = vec![0f32; hd * hd];
                        for c in 0..hd {
                            let mut e = vec![0f32; hd];
                            e[c] = 1.0;
                            t.rotate(&mut e, p, style, 1.0);
                            for (r, v) in e.iter().enumerate() {
                                m[r * hd + c] = *v;
                            }
                        }
                        let m = Tensor::from_vec(m, (hd, hd), &Device::Cpu).unwrap();
                        let xp = x.narrow(2, p, 1).unwrap();
                        rows.push(xp.broadcast_matmul(&m.t().unwrap()).unwrap());
                    }
                    Tensor::cat(&rows, 2).unwrap()
                },
                "rope",
            );
        }
    }

    #[test]
    fn gated_activations_match_the_composition() {
        let x = det(&[3, 10], 4);
        for act in [FfnAct::Silu, FfnAct::GeluTanh] {
            agree(
                &x,
                |x| gated_act(x, act).unwrap(),
                |x| {
                    let g = x.narrow(D::Minus1, 0, 5).unwrap();
                    let u = x.narrow(D::Minus1, 5, 5).unwrap();
                    let a = match act {
                        FfnAct::Silu => g.silu().unwrap(),
                        FfnAct::GeluTanh => g.gelu().unwrap(),
                    };
                    (a * u).unwrap()
                },
                "gated act",
            );
        }
    }
}
