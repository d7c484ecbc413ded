//! Differentiable products of a frozen base weight, with and without LoRA adapters, as single
//! graph nodes.
//!
//! candle's matmul backward computes the gradient of both operands. For a frozen base weight
//! that is a second product as large as the input gradient, plus a weight-sized gradient tensor
//! per layer, all of it thrown away. And a LoRA delta built from candle ops (`x Aᵀ`, scale,
//! `· Bᵀ`, zero padding, concatenation, sum) keeps five or six output-sized tensors alive per
//! projection until the backward pass. The ops here compute
//!
//! ```text
//! y = x Wᵀ + Σᵢ scaleᵢ · (x Aᵢᵀ) Bᵢᵀ      (adapter i adds to its slice of outputs)
//! ```
//!
//! with the `gemm` crate (or the packed quantized kernels) in the compute pool, keep only their
//! inputs and output, and return gradients for `x`, the `A`s and the `B`s: never for `W`.

use candle_core::{CpuStorage, CustomOp1, CustomOp3, Layout, Shape, Tensor};

use crate::nn::{Weight, contiguous_slice};
use crate::quant::PackedMatrix;

/// `dst[m×n] = (acc ? dst : 0) + beta · lhs[m×k] · rhs[k×n]`, every operand given by its row and
/// column strides (in elements), in the compute pool when the product is large enough.
///
/// # Safety
/// The pointers and strides must describe live buffers of the given shapes; `dst` must not
/// alias `lhs` or `rhs`.
pub(crate) unsafe fn mm(
    dims: (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    acc: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
    beta: f32,
) {
    // SAFETY: forwarded from the caller.
    unsafe { mm_in(true, dims, dst, dst_rs, acc, lhs, rhs, beta) }
}

/// [`mm`] on the calling thread only (for products inside a parallel loop).
///
/// # Safety
/// As for [`mm`].
pub(crate) unsafe fn mm_serial(
    dims: (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    acc: bool,
    lhs: (*const f32, usize, usize),
    rhs: (*const f32, usize, usize),
    beta: f32,
) {
    // SAFETY: forwarded from the caller.
    unsafe { mm_in(false, dims, dst, dst_rs, acc, lhs, rhs, beta) }
}

#[allow(clippy::too_many_arguments)]
unsafe fn mm_in(
    pool: bool,
    (m, n, k): (usize, usize, usize),
    dst: *mut f32,
    dst_rs: usize,
    acc: bool,
    (lhs, lhs_rs, lhs_cs): (*const f32, usize, usize),
    (rhs, rhs_rs, rhs_cs): (*const f32, usize, usize),
    beta: f32,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !acc {
            for i in 0..m {
                // SAFETY: row i of dst holds n elements (caller's contract).
                unsafe { std::ptr::write_bytes(dst.add(i * dst_rs), 0, n) };
            }
        }
        return;
    }
    let threads = crate::threads::num_threads();
    let par = if pool && threads > 1 && m * n * k >= 1 << 18 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: forwarded from the caller.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            acc,
            lhs,
            lhs_cs as isize,
            lhs_rs as isize,
            rhs,
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            beta,
            false,
            false,
            false,
            par,
        )
    }
}

/// The contiguous f32 elements of several tensors (each named for errors), for the duration of
/// `f` (their storage stays read-locked until it returns).
pub(crate) fn with_f32s<const N: usize, R>(
    ts: [(&Tensor, &str); N],
    f: impl FnOnce([&[f32]; N]) -> R,
) -> candle_core::Result<R> {
    let held: Vec<_> = ts.iter().map(|(t, _)| t.storage_and_layout()).collect();
    let mut slices: Vec<&[f32]> = Vec::with_capacity(N);
    for ((storage, layout), (_, what)) in held.iter().zip(&ts) {
        match &**storage {
            candle_core::Storage::Cpu(s) => slices.push(contiguous_slice::<f32>(s, layout, what)?),
            _ => candle_core::bail!("{what}: only CPU tensors"),
        }
    }
    match <[&[f32]; N]>::try_from(slices) {
        Ok(all) => Ok(f(all)),
        Err(_) => candle_core::bail!("one slice per tensor"),
    }
}

/// [`with_f32s`] for one tensor.
fn with_f32<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> R) -> candle_core::Result<R> {
    with_f32s([(t, what)], |[s]| f(s))
}

/// Whether [`base_forward`] and [`base_grad`] handle `w` (packed quantized, or dense f32).
pub(crate) fn supported(w: &Weight) -> bool {
    match w {
        Weight::Packed(_) | Weight::Bf16(_) => true,
        Weight::Dense(t) => t.dtype() == candle_core::DType::F32 && t.rank() == 2,
        Weight::Quantized(_) => false,
    }
}

/// `x Wᵀ` for `x: [m, in]`: `[m, out]`.
fn base_forward(w: &Weight, x: &[f32], m: usize) -> candle_core::Result<Vec<f32>> {
    let (rows, cols) = (w.out_features(), w.in_features());
    let mut out = vec![0f32; m * rows];
    match w {
        Weight::Packed(p) => crate::threads::run(|| p.matmul(x, m, &mut out)),
        Weight::Bf16(b) => crate::threads::run(|| b.matmul(x, m, &mut out)),
        Weight::Dense(t) => with_f32(t, "linear: weight", |w| {
            // SAFETY: x is [m, cols], w is [rows, cols] read as its transpose, out is [m, rows].
            crate::threads::run(|| unsafe {
                mm(
                    (m, rows, cols),
                    out.as_mut_ptr(),
                    rows,
                    false,
                    (x.as_ptr(), cols, 1),
                    (w.as_ptr(), 1, cols),
                    1.0,
                )
            })
        })?,
        Weight::Quantized(_) => candle_core::bail!("linear: k-quant weights take candle's path"),
    }
    Ok(out)
}

/// `g W` for `g: [m, out]`: the gradient with respect to the input, `[m, in]`.
fn base_grad(w: &Weight, g: &[f32], m: usize) -> candle_core::Result<Vec<f32>> {
    let (rows, cols) = (w.out_features(), w.in_features());
    match w {
        Weight::Packed(p) => Ok(packed_grad(p, g, m)),
        Weight::Bf16(b) => {
            let mut dx = vec![0f32; m * cols];
            crate::threads::run(|| b.matmul_grad(g, m, &mut dx));
            Ok(dx)
        }
        Weight::Dense(t) => {
            let mut dx = vec![0f32; m * cols];
            with_f32(t, "linear: weight", |w| {
                // SAFETY: g is [m, rows], w is [rows, cols], dx is [m, cols].
                crate::threads::run(|| unsafe {
                    mm(
                        (m, cols, rows),
                        dx.as_mut_ptr(),
                        cols,
                        false,
                        (g.as_ptr(), rows, 1),
                        (w.as_ptr(), cols, 1),
                        1.0,
                    )
                })
            })?;
            Ok(dx)
        }
        Weight::Quantized(_) => candle_core::bail!("linear: k-quant weights take candle's path"),
    }
}

/// Rows of `W` dequantized at a time by [`packed_grad`].
const GRAD_TILE: usize = 64;

/// `dx = g W` for a packed `W: [out, in]`: AMX tiles where the CPU has them; otherwise each
/// thread takes a block of rows of `g` and walks `W` in tiles of rows it dequantizes into a small
/// buffer, so the full f32 weight is never materialised.
fn packed_grad(p: &PackedMatrix, g: &[f32], n: usize) -> Vec<f32> {
    use rayon::prelude::*;
    let (rows, cols) = (p.rows(), p.cols());
    let mut dx = vec![0f32; n * cols];
    if n >= crate::amx::MIN_ROWS && crate::amx::packed_matmul_grad(p, g, n, &mut dx) {
        return dx;
    }
    let threads = crate::threads::num_threads().max(1);
    let per = n.div_ceil(threads).max(1);
    crate::threads::run(|| {
        dx.par_chunks_mut(per * cols)
            .zip(g.par_chunks(per * rows))
            .for_each(|(dx, g)| {
                let m = g.len() / rows;
                let mut tile = vec![0f32; GRAD_TILE * cols];
                for r0 in (0..rows).step_by(GRAD_TILE) {
                    let t = GRAD_TILE.min(rows - r0);
                    for r in 0..t {
                        p.dequantize_row(r0 + r, &mut tile[r * cols..(r + 1) * cols]);
                    }
                    // dx[m, cols] += g[m, r0..r0 + t] · tile[t, cols], single-threaded (the
                    // threads already split the rows of g).
                    // SAFETY: dx is m × cols, g is m × rows (read from column r0), tile is
                    // t × cols; dx aliases neither.
                    unsafe {
                        gemm::gemm(
                            m,
                            cols,
                            t,
                            dx.as_mut_ptr(),
                            1,
                            cols as isize,
                            r0 > 0,
                            g.as_ptr().add(r0),
                            1,
                            rows as isize,
                            tile.as_ptr(),
                            1,
                            cols as isize,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        );
                    }
                }
            });
    });
    dx
}

/// Rows of a `[.., width]` input and the output shape `[.., out]`.
fn rows_and_shape(
    l: &Layout,
    width: usize,
    out: usize,
    what: &str,
) -> candle_core::Result<(usize, Shape)> {
    let dims = l.dims();
    if dims.last() != Some(&width) {
        candle_core::bail!("{what}: input of shape {dims:?}, expected last dimension {width}");
    }
    let mut shape = dims.to_vec();
    if let Some(last) = shape.last_mut() {
        *last = out;
    }
    Ok((l.shape().elem_count() / width.max(1), Shape::from(shape)))
}

/// `x Wᵀ` for a frozen `W`, with a gradient for `x` only. Build with [`base_matmul`].
struct BaseMatMul(Weight);

/// `x @ Wᵀ` for `x: [.., in]` with a frozen weight (packed or dense f32, see [`supported`]).
pub(crate) fn base_matmul(w: &Weight, x: &Tensor) -> candle_core::Result<Tensor> {
    x.contiguous()?.apply_op1(BaseMatMul(w.clone()))
}

impl CustomOp1 for BaseMatMul {
    fn name(&self) -> &'static str {
        "base-matmul"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_slice::<f32>(s, l, "linear: input")?;
        let (m, shape) = rows_and_shape(l, self.0.in_features(), self.0.out_features(), "linear")?;
        Ok((CpuStorage::F32(base_forward(&self.0, x, m)?), shape))
    }

    fn bwd(
        &self,
        arg: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<Option<Tensor>> {
        let grad = grad.contiguous()?;
        let m = grad.elem_count() / self.0.out_features().max(1);
        let dx = with_f32(&grad, "linear: gradient", |g| base_grad(&self.0, g, m))??;
        Ok(Some(Tensor::from_vec(dx, arg.shape(), arg.device())?))
    }
}

/// One adapter of a [`LoraMatMul`]: its slice of outputs, rank and scale; its `A` (`[rank, in]`)
/// and `B` (`[len, rank]`) lie, flattened, at `a_at` and `b_at` of the op's second and third
/// inputs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    pub out_offset: usize,
    pub len: usize,
    pub rank: usize,
    pub scale: f32,
    pub a_at: usize,
    pub b_at: usize,
}

/// `x Wᵀ + Σᵢ scaleᵢ · (x Aᵢᵀ) Bᵢᵀ` on each adapter's slice; inputs `x`, the flattened `A`s and
/// the flattened `B`s. Build with [`lora_matmul`].
struct LoraMatMul {
    base: Weight,
    slots: Vec<Slot>,
}

/// `x @ Wᵀ` plus the LoRA deltas `(out_offset, A, B, scale)` as one differentiable node (the
/// gradient flows to `x`, every `A` and every `B`).
pub(crate) fn lora_matmul(
    base: &Weight,
    x: &Tensor,
    loras: &[(usize, &Tensor, &Tensor, f64)],
) -> crate::Result<Tensor> {
    let (inp, out) = (base.in_features(), base.out_features());
    let (mut a_at, mut b_at) = (0, 0);
    let mut slots = Vec::with_capacity(loras.len());
    let mut a_parts = Vec::with_capacity(loras.len());
    let mut b_parts = Vec::with_capacity(loras.len());
    for &(off, a, b, scale) in loras {
        let (rank, a_in) = a.dims2()?;
        let (len, b_rank) = b.dims2()?;
        if a_in != inp || b_rank != rank || off + len > out {
            return Err(crate::Error::Adapter(format!(
                "LoRA A {:?} / B {:?} at output {off} does not fit a {out}x{inp} weight",
                a.dims(),
                b.dims()
            )));
        }
        slots.push(Slot {
            out_offset: off,
            len,
            rank,
            scale: scale as f32,
            a_at,
            b_at,
        });
        a_at += rank * inp;
        b_at += len * rank;
        a_parts.push(a.flatten_all()?);
        b_parts.push(b.flatten_all()?);
    }
    let cat = |parts: Vec<Tensor>| -> crate::Result<Tensor> {
        // One part needs no copy (a tensor clone shares its storage).
        let joined = match parts.as_slice() {
            [one] => one.clone(),
            _ => Tensor::cat(&parts, 0)?,
        };
        Ok(joined.contiguous()?)
    };
    let (a, b) = (cat(a_parts)?, cat(b_parts)?);
    Ok(x.contiguous()?.apply_op3(
        &a,
        &b,
        LoraMatMul {
            base: base.clone(),
            slots,
        },
    )?)
}

impl LoraMatMul {
    /// `x Aᵢᵀ` for one slot: `[m, rank]`.
    fn down(&self, s: &Slot, x: &[f32], a: &[f32], m: usize) -> Vec<f32> {
        let inp = self.base.in_features();
        let mut xa = vec![0f32; m * s.rank];
        // SAFETY: x is [m, inp], A (at a_at) is [rank, inp] read as its transpose, xa is
        // [m, rank].
        unsafe {
            mm(
                (m, s.rank, inp),
                xa.as_mut_ptr(),
                s.rank,
                false,
                (x.as_ptr(), inp, 1),
                (a.as_ptr().add(s.a_at), 1, inp),
                1.0,
            )
        };
        xa
    }
}

impl CustomOp3 for LoraMatMul {
    fn name(&self) -> &'static str {
        "lora-matmul"
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
        let x = contiguous_slice::<f32>(s1, l1, "lora-linear: input")?;
        let a = contiguous_slice::<f32>(s2, l2, "lora-linear: A")?;
        let b = contiguous_slice::<f32>(s3, l3, "lora-linear: B")?;
        let out = self.base.out_features();
        let (m, shape) = rows_and_shape(l1, self.base.in_features(), out, "lora-linear")?;
        let mut y = base_forward(&self.base, x, m)?;
        crate::threads::run(|| {
            for s in &self.slots {
                let xa = self.down(s, x, a, m);
                // y[:, off..off + len] += scale · xa Bᵀ
                // SAFETY: y is [m, out] written from column off (off + len ≤ out, checked when
                // the op was built), xa is [m, rank], B (at b_at) is [len, rank] read as its
                // transpose.
                unsafe {
                    mm(
                        (m, s.len, s.rank),
                        y.as_mut_ptr().add(s.out_offset),
                        out,
                        true,
                        (xa.as_ptr(), s.rank, 1),
                        (b.as_ptr().add(s.b_at), 1, s.rank),
                        s.scale,
                    )
                };
            }
        });
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x_t: &Tensor,
        a_t: &Tensor,
        b_t: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (inp, out) = (self.base.in_features(), self.base.out_features());
        let grad = grad.contiguous()?;
        let m = grad.elem_count() / out.max(1);
        let mut dx = with_f32(&grad, "lora-linear: gradient", |g| {
            base_grad(&self.base, g, m)
        })??;
        let mut da = vec![0f32; a_t.elem_count()];
        let mut db = vec![0f32; b_t.elem_count()];
        with_f32s(
            [
                (&grad, "lora-linear: gradient"),
                (x_t, "lora-linear: input"),
                (a_t, "lora-linear: A"),
                (b_t, "lora-linear: B"),
            ],
            |[g, x, a, b]| {
                crate::threads::run(|| {
                    for s in &self.slots {
                        let xa = self.down(s, x, a, m);
                        let gs = g[s.out_offset..].as_ptr();
                        let mut dxa = vec![0f32; m * s.rank];
                        // SAFETY (all four): g is [m, out] read from column off, xa and
                        // dxa are [m, rank], x and dx are [m, inp], A (at a_at) is
                        // [rank, inp], B (at b_at) is [len, rank]; dB and dA are this
                        // slot's own ranges of db and da.
                        unsafe {
                            // dxa = scale · g_s B
                            mm(
                                (m, s.rank, s.len),
                                dxa.as_mut_ptr(),
                                s.rank,
                                false,
                                (gs, out, 1),
                                (b.as_ptr().add(s.b_at), s.rank, 1),
                                s.scale,
                            );
                            // dB = scale · g_sᵀ xa
                            mm(
                                (s.len, s.rank, m),
                                db.as_mut_ptr().add(s.b_at),
                                s.rank,
                                false,
                                (gs, 1, out),
                                (xa.as_ptr(), s.rank, 1),
                                s.scale,
                            );
                            // dA = dxaᵀ x
                            mm(
                                (s.rank, inp, m),
                                da.as_mut_ptr().add(s.a_at),
                                inp,
                                false,
                                (dxa.as_ptr(), 1, s.rank),
                                (x.as_ptr(), inp, 1),
                                1.0,
                            );
                            // dx += dxa A
                            mm(
                                (m, inp, s.rank),
                                dx.as_mut_ptr(),
                                inp,
                                true,
                                (dxa.as_ptr(), s.rank, 1),
                                (a.as_ptr().add(s.a_at), inp, 1),
                                1.0,
                            );
                        }
                    }
                })
            },
        )?;
        let dev = x_t.device();
        Ok((
            Some(Tensor::from_vec(dx, x_t.shape(), dev)?),
            Some(Tensor::from_vec(da, a_t.shape(), dev)?),
            Some(Tensor::from_vec(db, b_t.shape(), dev)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::max_diff;
    use candle_core::{Device, Var};

    fn det(shape: &[usize], seed: usize) -> Tensor {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| (((i * 7919 + seed * 104_729) % 1009) as f32 / 1009.0 - 0.5) * 0.8)
            .collect();
        Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
    }

    /// The composition the op replaces: candle's matmuls, zero padding and sums.
    fn reference(w: &Tensor, x: &Tensor, loras: &[(usize, &Tensor, &Tensor, f64)]) -> Tensor {
        let out = w.dim(0).unwrap();
        let mut y = x.broadcast_matmul(&w.t().unwrap()).unwrap();
        for &(off, a, b, scale) in loras {
            let d = (x.broadcast_matmul(&a.t().unwrap()).unwrap() * scale)
                .unwrap()
                .broadcast_matmul(&b.t().unwrap())
                .unwrap();
            let len = b.dim(0).unwrap();
            y = (y + d.pad_with_zeros(2, off, out - off - len).unwrap()).unwrap();
        }
        y
    }

    /// Values and gradients (x, every A, every B) against the composition, on three adapters:
    /// two side by side and one overlapping both, with ranks that differ; dense and packed
    /// base weights.
    #[test]
    fn lora_matmul_matches_the_composition() {
        let (inp, out) = (40, 24);
        let w_dense = det(&[out, inp], 1);
        let packed = PackedMatrix::quantize_q8_0(
            &w_dense.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            out,
            inp,
        );
        let mut bases = vec![Weight::Dense(w_dense.clone())];
        if let Some(p) = packed {
            bases.push(Weight::Packed(std::sync::Arc::new(p)));
        }
        for base in bases {
            let w = base.dequantize().unwrap();
            let x = Var::from_tensor(&det(&[2, 5, inp], 2)).unwrap();
            let shapes = [(0usize, 4usize, 10usize), (10, 3, 14), (6, 2, 12)];
            let ab: Vec<(Var, Var)> = shapes
                .iter()
                .enumerate()
                .map(|(i, &(_, r, len))| {
                    (
                        Var::from_tensor(&det(&[r, inp], 10 + i)).unwrap(),
                        Var::from_tensor(&det(&[len, r], 20 + i)).unwrap(),
                    )
                })
                .collect();
            let loras: Vec<(usize, &Tensor, &Tensor, f64)> = shapes
                .iter()
                .zip(&ab)
                .enumerate()
                .map(|(i, (&(off, _, _), (a, b)))| {
                    (off, a.as_tensor(), b.as_tensor(), 0.5 + i as f64)
                })
                .collect();
            let proj = det(&[2, 5, out], 3);
            let fused = lora_matmul(&base, &x, &loras).unwrap();
            let plain = reference(&w, &x, &loras);
            assert!(max_diff(&fused, &plain) < 1e-5, "{:?}", base);
            let gf = (fused * &proj)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let gp = (plain * &proj)
                .unwrap()
                .sum_all()
                .unwrap()
                .backward()
                .unwrap();
            let mut vars: Vec<&Var> = vec![&x];
            for (a, b) in &ab {
                vars.push(a);
                vars.push(b);
            }
            for v in vars {
                let (f, p) = (gf.get(v).unwrap(), gp.get(v).unwrap());
                assert!(
                    max_diff(f, p) < 1e-4,
                    "{:?}: gradient differs by {}",
                    base,
                    max_diff(f, p)
                );
            }
            // the frozen weight gets no gradient
            assert!(gf.get(&w_dense).is_none());
        }
    }

    #[test]
    fn base_matmul_matches_candle_and_passes_the_input_gradient() {
        let w = det(&[7, 33], 4);
        let x = Var::from_tensor(&det(&[3, 33], 5)).unwrap();
        let proj = det(&[3, 7], 6);
        let ours = base_matmul(&Weight::Dense(w.clone()), &x).unwrap();
        let theirs = x.matmul(&w.t().unwrap()).unwrap();
        assert!(max_diff(&ours, &theirs) < 1e-5);
        let g1 = (ours * &proj)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let g2 = (theirs * &proj)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        assert!(max_diff(g1.get(&x).unwrap(), g2.get(&x).unwrap()) < 1e-5);
        assert!(g1.get(&w).is_none());
    }

    #[test]
    fn a_lora_that_does_not_fit_is_an_error() {
        let w = Weight::Dense(det(&[8, 6], 1));
        let x = det(&[2, 6], 2);
        let (a, b) = (det(&[2, 6], 3), det(&[5, 2], 4));
        let err = lora_matmul(&w, &x, &[(4, &a, &b, 1.0)]).unwrap_err();
        assert!(err.to_string().contains("does not fit"), "{err}");
        let x_bad = det(&[2, 5], 2);
        assert!(lora_matmul(&w, &x_bad, &[(0, &a, &det(&[4, 2], 4), 1.0)]).is_err());
    }
}
