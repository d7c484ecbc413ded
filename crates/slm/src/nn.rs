//! Building blocks shared by the architectures: weights that stay quantized, linear layers with a
//! LoRA hook, embeddings, and the fused CPU ops of the inference path.

use std::sync::Arc;

use candle_core::quantized::{QMatMul, QStorage, QTensor};
use candle_core::{CpuStorage, CustomOp1, D, DType, Device, Layout, Module, Shape, Tensor};

use crate::bf16::Bf16Matrix;
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, Gguf};
use crate::quant::PackedMatrix;

/// A weight matrix `[out_features, in_features]`.
#[derive(Clone)]
pub enum Weight {
    /// Quantized, repacked for the crate's own kernels (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0).
    Packed(Arc<PackedMatrix>),
    /// Quantized, run by candle's kernels (k-quants).
    Quantized(Arc<QTensor>),
    /// Dense f32.
    Dense(Tensor),
    /// Frozen bf16 for the bf16 products of training ([`crate::bf16`]).
    Bf16(Arc<Bf16Matrix>),
}

impl std::fmt::Debug for Weight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Weight::Packed(p) => write!(f, "Packed({:?} {}x{})", p.src_type(), p.rows(), p.cols()),
            Weight::Quantized(q) => write!(f, "Quantized({:?} {:?})", q.dtype(), q.shape()),
            Weight::Dense(t) => write!(f, "Dense({:?})", t.shape()),
            Weight::Bf16(b) => write!(f, "{b:?}"),
        }
    }
}

impl Weight {
    /// Loads a 2-D weight from GGUF, checking its shape is `[rows, cols]`.
    pub fn from_gguf(g: &Gguf, name: &str, rows: usize, cols: usize) -> Result<Self> {
        let info = g.tensor_info(name)?;
        let shape = info.shape();
        if shape != [rows, cols] {
            return Err(Error::TensorShape {
                name: name.into(),
                got: shape,
                expected: vec![rows, cols],
            });
        }
        let data = g.tensor_data(info);
        let w = match info.ggml_type {
            t if PackedMatrix::supports(t) => PackedMatrix::from_ggml(t, data, rows, cols)
                .map(|p| Weight::Packed(Arc::new(p)))
                .ok_or_else(|| Error::Corrupt(format!("tensor {name}: cannot repack {t:?}")))?,
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => {
                Weight::Dense(dense_from_gguf(g, name)?.reshape((rows, cols))?)
            }
            t => {
                let storage = QStorage::from_data(
                    std::borrow::Cow::Borrowed(data),
                    &Device::Cpu,
                    t.to_candle(),
                )?;
                Weight::Quantized(Arc::new(QTensor::new(storage, (rows, cols))?))
            }
        };
        g.release(info);
        Ok(w)
    }

    /// Output features (rows).
    pub fn out_features(&self) -> usize {
        match self {
            Weight::Packed(p) => p.rows(),
            Weight::Quantized(q) => q.shape().dims().first().copied().unwrap_or(0),
            Weight::Dense(t) => t.dims().first().copied().unwrap_or(0),
            Weight::Bf16(b) => b.rows(),
        }
    }

    /// Input features (columns).
    pub fn in_features(&self) -> usize {
        match self {
            Weight::Packed(p) => p.cols(),
            Weight::Quantized(q) => q.shape().dims().get(1).copied().unwrap_or(0),
            Weight::Dense(t) => t.dims().get(1).copied().unwrap_or(0),
            Weight::Bf16(b) => b.cols(),
        }
    }

    /// The weight as a dense f32 tensor `[out, in]`.
    pub fn dequantize(&self) -> Result<Tensor> {
        Ok(match self {
            Weight::Packed(p) => {
                Tensor::from_vec(p.dequantize(), (p.rows(), p.cols()), &Device::Cpu)?
            }
            Weight::Quantized(q) => q.dequantize(&Device::Cpu)?,
            Weight::Dense(t) => t.clone(),
            Weight::Bf16(b) => {
                Tensor::from_vec(b.dequantize(), (b.rows(), b.cols()), &Device::Cpu)?
            }
        })
    }

    /// `x @ W^T` for `x` of shape `[.., in]`.
    pub fn matmul_t(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Weight::Quantized(q) => QMatMul::from_arc(q.clone())?.forward(x)?,
            // a dense weight that is not a 2-D f32 matrix: candle's product
            Weight::Dense(w) if !crate::linear_op::supported(self) => {
                x.broadcast_matmul(&w.t()?)?
            }
            // packed, or dense f32: one node with a gradient for x only
            w => crate::linear_op::base_matmul(w, &x.to_dtype(DType::F32)?)?,
        })
    }

    /// The weight as bf16 ([`Bf16Matrix`]): for the bf16 products of training.
    pub fn to_bf16(&self) -> Result<Weight> {
        Ok(Weight::Bf16(Arc::new(match self {
            Weight::Bf16(b) => return Ok(Weight::Bf16(b.clone())),
            Weight::Packed(p) => Bf16Matrix::from_packed(p),
            w => {
                let t = w.dequantize()?.to_dtype(DType::F32)?;
                let (rows, cols) = t.dims2()?;
                let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
                Bf16Matrix::from_f32(&v, rows, cols).ok_or_else(|| {
                    Error::Corrupt(format!("weight of {} values is not {rows}x{cols}", v.len()))
                })?
            }
        })))
    }

    /// Stacks weights along the output dimension when they share a representation.
    pub fn concat_rows(parts: &[&Weight]) -> Option<Weight> {
        let packed: Option<Vec<&PackedMatrix>> = parts
            .iter()
            .map(|w| match w {
                Weight::Packed(p) => Some(p.as_ref()),
                _ => None,
            })
            .collect();
        if let Some(p) = packed {
            return PackedMatrix::concat_rows(&p).map(|m| Weight::Packed(Arc::new(m)));
        }
        let dense: Option<Vec<Tensor>> = parts
            .iter()
            .map(|w| match w {
                Weight::Dense(t) => Some(t.clone()),
                _ => None,
            })
            .collect();
        dense
            .and_then(|d| Tensor::cat(&d, 0).ok())
            .map(Weight::Dense)
    }
}

/// Reads any float GGUF tensor as f32 (in its row-major shape).
pub fn dense_from_gguf(g: &Gguf, name: &str) -> Result<Tensor> {
    let info = g.tensor_info(name)?;
    let data = g.tensor_data(info);
    let n = info.elem_count();
    let v: Vec<f32> = match info.ggml_type {
        GgmlType::F32 => data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
        GgmlType::F16 => data
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        GgmlType::BF16 => data
            .chunks_exact(2)
            .map(|c| half::bf16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        t => {
            let storage = QStorage::from_data(
                std::borrow::Cow::Borrowed(data),
                &Device::Cpu,
                t.to_candle(),
            )?;
            return Ok(QTensor::new(storage, info.shape())?.dequantize(&Device::Cpu)?);
        }
    };
    debug_assert_eq!(v.len(), n);
    g.release(info);
    Ok(Tensor::from_vec(v, info.shape(), &Device::Cpu)?)
}

/// The elements of a contiguous tensor's storage (`what` names it in the error, e.g.
/// `"gated-act: input"`), for custom ops' CPU kernels.
pub fn contiguous_slice<'a, T: candle_core::WithDType>(
    s: &'a CpuStorage,
    l: &Layout,
    what: &str,
) -> candle_core::Result<&'a [T]> {
    let v = s.as_slice::<T>()?;
    let (a, b) = l
        .contiguous_offsets()
        .ok_or_else(|| candle_core::Error::Msg(format!("{what} not contiguous")))?;
    Ok(&v[a..b])
}

/// A low-rank adapter `ΔW = scale · B A` on a slice of a layer's outputs.
#[derive(Clone, Debug)]
pub struct Lora {
    /// Which adapter this belongs to (adapters are chosen per request by id).
    pub adapter: usize,
    /// First output feature the adapter applies to (non-zero inside fused projections).
    pub out_offset: usize,
    /// `[rank, in_features]`.
    pub a: Tensor,
    /// `[out_len, rank]`.
    pub b: Tensor,
    /// Factor of the adapter's update (`lora_alpha / r`, or `/ √r` with rsLoRA).
    pub scale: f64,
}

/// A linear projection: base weight (quantized or dense), optional bias, and the LoRA hook.
#[derive(Clone, Debug)]
pub struct Linear {
    /// The frozen base weight `[out, in]`.
    pub weight: Weight,
    /// Added to the output when present (`[out]`).
    pub bias: Option<Tensor>,
    /// Attached adapters' matrices; a forward pass applies those its [`AdapterSel`] picks.
    pub loras: Vec<Lora>,
}

/// Which adapters a forward pass applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AdapterSel {
    /// Base model only.
    #[default]
    None,
    /// One adapter by id.
    One(usize),
    /// Every attached adapter (training several at once, or stacking).
    All,
}

impl AdapterSel {
    fn includes(self, id: usize) -> bool {
        match self {
            AdapterSel::None => false,
            AdapterSel::One(i) => i == id,
            AdapterSel::All => true,
        }
    }
}

impl Linear {
    /// A projection with no adapter attached.
    pub fn new(weight: Weight, bias: Option<Tensor>) -> Self {
        Self {
            weight,
            bias,
            loras: Vec::new(),
        }
    }

    /// Output features.
    pub fn out_features(&self) -> usize {
        self.weight.out_features()
    }

    /// Input features.
    pub fn in_features(&self) -> usize {
        self.weight.in_features()
    }

    /// `x Wᵀ (+ bias)`, plus the selected adapters' `scale · x Aᵀ Bᵀ`.
    pub fn forward(&self, x: &Tensor, sel: AdapterSel) -> Result<Tensor> {
        let mut active: Vec<&Lora> = self
            .loras
            .iter()
            .filter(|l| sel.includes(l.adapter))
            .collect();
        let fused = !active.is_empty()
            && crate::linear_op::supported(&self.weight)
            && x.dtype() == DType::F32
            && active
                .iter()
                .all(|l| l.a.dtype() == DType::F32 && l.b.dtype() == DType::F32);
        if fused {
            // base product and every delta in one node (no weight gradient, no padded copies)
            let loras: Vec<(usize, &Tensor, &Tensor, f64)> = active
                .iter()
                .map(|l| (l.out_offset, &l.a, &l.b, l.scale))
                .collect();
            let y = crate::linear_op::lora_matmul(&self.weight, x, &loras)?;
            return Ok(match &self.bias {
                Some(b) => y.broadcast_add(b)?,
                None => y,
            });
        }
        let mut y = self.weight.matmul_t(x)?;
        if let Some(b) = &self.bias {
            y = y.broadcast_add(b)?;
        }
        if active.is_empty() {
            return Ok(y);
        }
        // Each adapter's delta is `scale · (x Aᵀ) Bᵀ` (scaled while it is rank-wide). The
        // deltas of one fused projection (q/k/v, gate/up) are laid side by side into a single
        // output-wide tensor, so training keeps one such tensor per projection rather than one
        // zero-padded copy per adapter slice.
        active.sort_by_key(|l| l.out_offset);
        let mut deltas: Vec<(usize, usize, Tensor)> = Vec::with_capacity(active.len());
        for l in active {
            let d = (x.broadcast_matmul(&l.a.t()?)? * l.scale)?.broadcast_matmul(&l.b.t()?)?;
            let (s, e) = (l.out_offset, l.out_offset + d.dim(D::Minus1)?);
            match deltas.last_mut() {
                // adapters stacked on the same slice add up
                Some(last) if (last.0, last.1) == (s, e) => last.2 = (&last.2 + d)?,
                _ => deltas.push((s, e, d)),
            }
        }
        let out = self.out_features();
        if deltas.windows(2).any(|w| w[0].1 > w[1].0) {
            // partly overlapping slices: add each one output-wide
            for (s, e, d) in deltas {
                y = (y + d.pad_with_zeros(D::Minus1, s, out - e)?)?;
            }
            return Ok(y);
        }
        let zeros = |n: usize| -> Result<Tensor> {
            let mut shape = y.dims().to_vec();
            if let Some(last) = shape.last_mut() {
                *last = n;
            }
            Ok(Tensor::zeros(shape, y.dtype(), y.device())?)
        };
        let mut pieces = Vec::with_capacity(2 * deltas.len() + 1);
        let mut at = 0;
        for (s, e, d) in deltas {
            if s > at {
                pieces.push(zeros(s - at)?);
            }
            pieces.push(d);
            at = e;
        }
        if at < out {
            pieces.push(zeros(out - at)?);
        }
        let delta = if pieces.len() == 1 {
            pieces.remove(0)
        } else {
            Tensor::cat(&pieces, D::Minus1)?
        };
        Ok((y + delta)?)
    }
}

/// Token embeddings: a (possibly quantized) `[vocab, hidden]` table.
#[derive(Clone, Debug)]
pub struct Embedding {
    /// The `[vocab, hidden]` table.
    pub weight: Weight,
}

impl Embedding {
    /// Rows for `ids`, as `[ids.len(), hidden]`.
    pub fn forward(&self, ids: &[u32]) -> Result<Tensor> {
        let vocab = self.weight.out_features();
        if let Some(&bad) = ids.iter().find(|&&i| i as usize >= vocab) {
            return Err(Error::Request(format!(
                "token id {bad} outside the vocabulary of {vocab}"
            )));
        }
        match &self.weight {
            Weight::Packed(p) => {
                let h = p.cols();
                let mut out = vec![0f32; ids.len() * h];
                for (i, &id) in ids.iter().enumerate() {
                    p.dequantize_row(id as usize, &mut out[i * h..(i + 1) * h]);
                }
                Ok(Tensor::from_vec(out, (ids.len(), h), &Device::Cpu)?)
            }
            Weight::Quantized(q) => {
                let t = Tensor::new(ids, &Device::Cpu)?;
                Ok(q.embedding(&t)?)
            }
            Weight::Dense(w) => {
                let t = Tensor::new(ids, &Device::Cpu)?;
                Ok(w.index_select(&t, 0)?)
            }
            Weight::Bf16(b) => {
                let h = b.cols();
                let mut out = vec![0f32; ids.len() * h];
                for (i, &id) in ids.iter().enumerate() {
                    b.dequantize_row(id as usize, &mut out[i * h..(i + 1) * h]);
                }
                Ok(Tensor::from_vec(out, (ids.len(), h), &Device::Cpu)?)
            }
        }
    }
}

/// Activation of the gate of a gated feed-forward block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FfnAct {
    /// `silu(gate) * up` (SwiGLU: Llama, Qwen).
    #[default]
    Silu,
    /// `gelu_tanh(gate) * up` (GeGLU with the tanh approximation: Gemma).
    GeluTanh,
}

/// `act(gate) * up` over a fused `[.., 2 * ff]` input (gate first).
pub(crate) struct GatedAct(pub FfnAct);

impl CustomOp1 for GatedAct {
    fn name(&self) -> &'static str {
        "gated-act"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = contiguous_slice::<f32>(s, l, "gated-act: input")?;
        let dims = l.dims();
        let w2 = dims.last().copied().unwrap_or(0);
        let ff = w2 / 2;
        let n = x.len().checked_div(w2).unwrap_or(0);
        let mut out = vec![0f32; n * ff];
        for i in 0..n {
            let row = &x[i * w2..(i + 1) * w2];
            let (g, u) = row.split_at(ff);
            let o = &mut out[i * ff..(i + 1) * ff];
            match self.0 {
                FfnAct::Silu => {
                    for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                        *o = g / (1.0 + (-g).exp()) * u;
                    }
                }
                FfnAct::GeluTanh => {
                    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
                    for ((o, &g), &u) in o.iter_mut().zip(g).zip(u) {
                        let t = (SQRT_2_OVER_PI * (g + 0.044715 * g * g * g)).tanh();
                        *o = 0.5 * g * (1.0 + t) * u;
                    }
                }
            }
        }
        let mut shape = dims.to_vec();
        if let Some(last) = shape.last_mut() {
            *last = ff;
        }
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

/// RMS norm: a fused kernel for inference (sum of squares in f64, as ggml), the
/// differentiable composition when training.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f32, train: bool) -> Result<Tensor> {
    Ok(if train {
        crate::train_ops::rms_norm(x, w, eps)?
    } else {
        x.apply_op2_no_bwd(w, &RmsNorm { eps })?
    })
}

struct RmsNorm {
    eps: f32,
}

impl candle_core::CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "rms-norm-f64"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let mut x = contiguous_slice::<f32>(s1, l1, "rms-norm: input")?.to_vec();
        let w = contiguous_slice::<f32>(s2, l2, "rms-norm: input")?;
        let h = w.len();
        if h == 0 || l1.dims().last() != Some(&h) {
            candle_core::bail!("rms-norm: weight of {h} for input {:?}", l1.dims());
        }
        for row in x.chunks_exact_mut(h) {
            let sum: f64 = row.iter().map(|&v| (v as f64) * (v as f64)).sum();
            let mean = (sum / h as f64) as f32;
            let scale = 1.0 / (mean + self.eps).sqrt();
            for (v, w) in row.iter_mut().zip(w) {
                *v = (*v * scale) * w;
            }
        }
        Ok((CpuStorage::F32(x), l1.shape().clone()))
    }
}
