//! The Llama family decoder: Llama 2/3 (with Llama-3 RoPE scaling), SmolLM2, TinyLlama,
//! Qwen2/Qwen2.5 (the same network with q/k/v biases and NEOX-style rotary embeddings),
//! Qwen3 (no biases; an RMS norm on each query and key head before the rotary embedding) and
//! Gemma 3 text models (q/k head norms, norms after attention and feed-forward, GeGLU, scaled
//! embeddings, sliding-window attention with its own rotary base on 5 of 6 layers).
//!
//! One implementation serves inference and training:
//! * [`Llama::forward`] runs with a [`KvCache`] and fused CPU kernels (rotary embedding, cache
//!   append and attention in one op, SwiGLU, packed quantized matmuls);
//! * [`Llama::forward_train`] runs the same layers with differentiable candle ops.
//!
//! Every projection is a [`Linear`] carrying the LoRA hook.

use std::cell::RefCell;
use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, D, DType, Device, Layout, Shape, Tensor};
use half::f16;

use crate::error::{Error, Result};
use crate::gguf::{Gguf, MetaValue};
use crate::nn::{
    AdapterSel, Embedding, FfnAct, GatedAct, Linear, Weight, contiguous_slice, dense_from_gguf,
    rms_norm,
};
use crate::threads::{SyncPtr, par_for};
use crate::train_ops;

/// How rotary embeddings pair up dimensions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeStyle {
    /// Pairs `(x[2i], x[2i+1])`: llama.cpp's layout for GGUF Llama weights (the converter
    /// permutes q/k rows).
    Interleaved,
    /// Pairs `(x[i], x[i + d/2])`: Hugging Face's `rotate_half`, and Qwen2 in GGUF.
    Neox,
}

/// Frequency scaling of the rotary embedding.
#[derive(Clone, Debug, PartialEq)]
pub enum RopeScaling {
    None,
    /// Positions divided by `factor`.
    Linear(f32),
    /// Llama 3.x frequency-dependent scaling.
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position_embeddings: usize,
    },
    /// Explicit per-frequency divisors (GGUF `rope_freqs.weight`).
    Factors(Vec<f32>),
}

/// Hyper-parameters of a Llama-family model.
#[derive(Clone, Debug)]
pub struct LlamaConfig {
    pub architecture: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    /// Dimensions per head that are rotated (usually `head_dim`).
    pub rope_dim: usize,
    pub rms_eps: f32,
    pub rope_theta: f32,
    pub rope_style: RopeStyle,
    pub rope_scaling: RopeScaling,
    pub context_length: usize,
    pub tie_word_embeddings: bool,
    /// Factor of the token embeddings (Gemma: √hidden_size; otherwise 1).
    pub embed_scale: f32,
    /// Factor of the attention logits (1/√head_dim; Gemma 3: 1/√query_pre_attn_scalar).
    pub attn_scale: f32,
    /// Activation of the feed-forward gate.
    pub ffn_act: FfnAct,
    /// Sliding-window attention on some layers (Gemma 3).
    pub sliding: Option<SlidingWindow>,
}

/// Local attention layers: each query sees the last `window` positions (itself included), and
/// their rotary embedding has its own base frequency and no scaling.
#[derive(Clone, Debug, PartialEq)]
pub struct SlidingWindow {
    pub window: usize,
    /// `layers[i]`: whether layer `i` is a sliding-window layer.
    pub layers: Vec<bool>,
    pub rope_theta: f32,
}

impl LlamaConfig {
    /// Reads `{arch}.*` metadata of a GGUF file.
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let arch = g.architecture()?.to_string();
        let rope_style = match arch.as_str() {
            "llama" => RopeStyle::Interleaved,
            "qwen2" | "qwen3" | "gemma3" => RopeStyle::Neox,
            _ => return Err(Error::UnknownArchitecture(arch)),
        };
        let k = |s: &str| format!("{arch}.{s}");
        let hidden_size = g.get_usize(&k("embedding_length"))?;
        let num_heads = g.get_usize(&k("attention.head_count"))?;
        let num_kv_heads = g
            .get_usize(&k("attention.head_count_kv"))
            .unwrap_or(num_heads);
        let head_dim = g
            .get_usize(&k("attention.key_length"))
            .unwrap_or(hidden_size.checked_div(num_heads).unwrap_or(0));
        let vocab_size = match g.get_usize(&k("vocab_size")) {
            Ok(v) => v,
            Err(_) => g.tensor_info("token_embd.weight")?.shape()[0],
        };
        let rope_scaling = if let Ok(info) = g.tensor_info("rope_freqs.weight") {
            let t = dense_from_gguf(g, &info.name)?;
            RopeScaling::Factors(t.flatten_all()?.to_vec1::<f32>()?)
        } else {
            match g.get_str(&k("rope.scaling.type")) {
                Ok("linear") => RopeScaling::Linear(g.get_f64(&k("rope.scaling.factor"))? as f32),
                Ok("none") | Err(_) => RopeScaling::None,
                Ok(other) => {
                    return Err(Error::Config(format!(
                        "unsupported rope scaling type {other:?}"
                    )));
                }
            }
        };
        let num_layers = g.get_usize(&k("block_count"))?;
        let gemma3 = arch == "gemma3";
        let sliding = if gemma3 {
            // llama.cpp: every 6th layer global unless `sliding_window_pattern` says otherwise
            // (a period, or one flag per layer); local layers at base 10000, unscaled
            let key = k("attention.sliding_window_pattern");
            let layers = match g.get(&key) {
                Some(MetaValue::Array(flags)) => flags
                    .iter()
                    .map(|f| match f {
                        MetaValue::Bool(b) => Ok(*b),
                        _ => Err(Error::MetadataType {
                            key: key.clone(),
                            expected: "array of booleans",
                        }),
                    })
                    .collect::<Result<Vec<bool>>>()?,
                Some(_) => {
                    let period = g.get_usize(&key)?.max(1);
                    (0..num_layers).map(|i| (i + 1) % period != 0).collect()
                }
                None => (0..num_layers).map(|i| (i + 1) % 6 != 0).collect(),
            };
            Some(SlidingWindow {
                window: g.get_usize(&k("attention.sliding_window"))?,
                layers,
                rope_theta: 10_000.0,
            })
        } else {
            None
        };
        // `attention.scale` when given; else llama.cpp's rule for Gemma 3: 1/√(hidden/heads)
        // for the 27B (62 layers; its query_pre_attn_scalar), 1/√head_dim otherwise
        let attn_scale = match g.get_f64(&k("attention.scale")) {
            Ok(s) => s as f32,
            Err(_) if gemma3 && num_layers == 62 => {
                1.0 / ((hidden_size / num_heads.max(1)) as f32).sqrt()
            }
            Err(_) => 1.0 / (head_dim as f32).sqrt(),
        };
        let cfg = Self {
            vocab_size,
            hidden_size,
            intermediate_size: g.get_usize(&k("feed_forward_length"))?,
            num_layers,
            num_heads,
            num_kv_heads,
            head_dim,
            rope_dim: g.get_usize(&k("rope.dimension_count")).unwrap_or(head_dim),
            rms_eps: g.get_f64(&k("attention.layer_norm_rms_epsilon"))? as f32,
            rope_theta: g.get_f64(&k("rope.freq_base")).unwrap_or(10_000.0) as f32,
            rope_style,
            rope_scaling,
            context_length: g.get_usize(&k("context_length")).unwrap_or(4096),
            tie_word_embeddings: !g.has_tensor("output.weight"),
            embed_scale: if gemma3 {
                (hidden_size as f32).sqrt()
            } else {
                1.0
            },
            attn_scale,
            ffn_act: if gemma3 {
                FfnAct::GeluTanh
            } else {
                FfnAct::Silu
            },
            sliding,
            architecture: arch,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads a Hugging Face `config.json` (`LlamaForCausalLM`, `Qwen2ForCausalLM`,
    /// `Qwen3ForCausalLM`, `Gemma3ForCausalLM`).
    pub fn from_hf_json(v: &serde_json::Value) -> Result<Self> {
        let get = |k: &str| v.get(k).and_then(|x| x.as_u64()).map(|x| x as usize);
        let need = |k: &str| get(k).ok_or_else(|| Error::Config(format!("config.json lacks {k}")));
        let model_type = v
            .get("model_type")
            .and_then(|x| x.as_str())
            .unwrap_or("llama")
            .to_string();
        let architecture = match model_type.as_str() {
            "llama" | "mistral" => "llama".to_string(),
            "qwen2" => "qwen2".to_string(),
            "qwen3" => "qwen3".to_string(),
            "gemma3_text" => "gemma3".to_string(),
            other => return Err(Error::UnknownArchitecture(other.into())),
        };
        let gemma3 = architecture == "gemma3";
        let f64_of = |k: &str| v.get(k).and_then(|x| x.as_f64());
        if gemma3 {
            for k in ["final_logit_softcapping", "attn_logit_softcapping"] {
                if v.get(k).is_some_and(|x| !x.is_null()) {
                    return Err(Error::Config(format!("unsupported {k}")));
                }
            }
            let act = v.get("hidden_activation").and_then(|x| x.as_str());
            if act.is_some_and(|a| a != "gelu_pytorch_tanh") {
                return Err(Error::Config(format!("unsupported activation {act:?}")));
            }
        }
        let hidden_size = need("hidden_size")?;
        let num_heads = need("num_attention_heads")?;
        let head_dim = get("head_dim").unwrap_or(hidden_size.checked_div(num_heads).unwrap_or(0));
        // transformers 5 writes `rope_parameters` (with `rope_theta` inside; Gemma 3: one set
        // per layer type); 4.x wrote `rope_scaling` next to a top-level `rope_theta`
        let mut rope_params = v
            .get("rope_parameters")
            .filter(|s| s.is_object())
            .or_else(|| v.get("rope_scaling").filter(|s| s.is_object()));
        let mut rope_local = None;
        if let Some(p) = rope_params.filter(|p| p.get("full_attention").is_some()) {
            rope_local = p.get("sliding_attention");
            rope_params = p.get("full_attention");
        }
        let rope_theta = rope_params
            .and_then(|p| p.get("rope_theta"))
            .or_else(|| v.get("rope_theta"))
            .and_then(|x| x.as_f64())
            .unwrap_or(if gemma3 { 1_000_000.0 } else { 10_000.0 }) as f32;
        let rope_scaling = match rope_params {
            None => RopeScaling::None,
            Some(s) => {
                let ty = s
                    .get("rope_type")
                    .or_else(|| s.get("type"))
                    .and_then(|x| x.as_str())
                    .unwrap_or("default");
                let f = |k: &str, d: f64| s.get(k).and_then(|x| x.as_f64()).unwrap_or(d) as f32;
                match ty {
                    "default" => RopeScaling::None,
                    "linear" => RopeScaling::Linear(f("factor", 1.0)),
                    "llama3" => RopeScaling::Llama3 {
                        factor: f("factor", 8.0),
                        low_freq_factor: f("low_freq_factor", 1.0),
                        high_freq_factor: f("high_freq_factor", 4.0),
                        original_max_position_embeddings: s
                            .get("original_max_position_embeddings")
                            .and_then(|x| x.as_u64())
                            .unwrap_or(8192)
                            as usize,
                    },
                    other => {
                        return Err(Error::Config(format!("unsupported rope scaling {other:?}")));
                    }
                }
            }
        };
        let num_layers = need("num_hidden_layers")?;
        let sliding = if gemma3 {
            let layers: Vec<bool> = match v.get("layer_types").and_then(|x| x.as_array()) {
                Some(types) => types
                    .iter()
                    .map(|t| t.as_str() == Some("sliding_attention"))
                    .collect(),
                None => {
                    let pattern = get("sliding_window_pattern").unwrap_or(6).max(1);
                    (0..num_layers).map(|i| (i + 1) % pattern != 0).collect()
                }
            };
            if layers.len() != num_layers {
                return Err(Error::Config(format!(
                    "layer_types lists {} layers, not {num_layers}",
                    layers.len()
                )));
            }
            let local_theta = rope_local
                .and_then(|p| p.get("rope_theta"))
                .or_else(|| v.get("rope_local_base_freq"))
                .and_then(|x| x.as_f64())
                .unwrap_or(10_000.0) as f32;
            Some(SlidingWindow {
                window: get("sliding_window").unwrap_or(4096),
                layers,
                rope_theta: local_theta,
            })
        } else {
            None
        };
        let attn_scale = match f64_of("query_pre_attn_scalar") {
            Some(q) if gemma3 => (1.0 / q.sqrt()) as f32,
            _ => 1.0 / (head_dim as f32).sqrt(),
        };
        let cfg = Self {
            vocab_size: need("vocab_size")?,
            hidden_size,
            intermediate_size: need("intermediate_size")?,
            num_layers,
            num_heads,
            num_kv_heads: get("num_key_value_heads").unwrap_or(num_heads),
            head_dim,
            rope_dim: head_dim,
            rms_eps: v
                .get("rms_norm_eps")
                .and_then(|x| x.as_f64())
                .unwrap_or(1e-6) as f32,
            rope_theta,
            rope_style: RopeStyle::Neox,
            rope_scaling,
            context_length: get("max_position_embeddings").unwrap_or(4096),
            tie_word_embeddings: v
                .get("tie_word_embeddings")
                .and_then(|x| x.as_bool())
                .unwrap_or(gemma3),
            embed_scale: if gemma3 {
                (hidden_size as f32).sqrt()
            } else {
                1.0
            },
            attn_scale,
            ffn_act: if gemma3 {
                FfnAct::GeluTanh
            } else {
                FfnAct::Silu
            },
            sliding,
            architecture,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.hidden_size == 0 || self.num_layers == 0 || self.vocab_size == 0 {
            return bad(format!("empty model: {self:?}"));
        }
        if self.num_heads == 0
            || self.num_kv_heads == 0
            || !self.num_heads.is_multiple_of(self.num_kv_heads)
        {
            return bad(format!(
                "{} heads cannot share {} kv heads",
                self.num_heads, self.num_kv_heads
            ));
        }
        if self.head_dim == 0 || self.rope_dim > self.head_dim || !self.rope_dim.is_multiple_of(2) {
            return bad(format!(
                "head_dim {} / rope_dim {}",
                self.head_dim, self.rope_dim
            ));
        }
        if let Some(s) = &self.sliding
            && (s.window == 0 || s.layers.len() != self.num_layers)
        {
            return bad(format!(
                "sliding window {} over {} of {} layers",
                s.window,
                s.layers.len(),
                self.num_layers
            ));
        }
        if let RopeScaling::Factors(f) = &self.rope_scaling
            && f.len() != self.rope_dim / 2
        {
            return bad(format!(
                "rope_freqs has {} entries, expected {}",
                f.len(),
                self.rope_dim / 2
            ));
        }
        Ok(())
    }

    /// Whether each query and key head is RMS-normalised before the rotary embedding (Qwen3,
    /// Gemma 3).
    pub fn qk_norm(&self) -> bool {
        matches!(self.architecture.as_str(), "qwen3" | "gemma3")
    }

    /// Whether blocks normalise the attention and feed-forward outputs before adding them to
    /// the residual stream (Gemma 3).
    pub fn post_norms(&self) -> bool {
        self.architecture == "gemma3"
    }

    /// The attention window of layer `i` (`None`: all previous positions).
    pub fn window(&self, layer: usize) -> Option<usize> {
        self.sliding
            .as_ref()
            .filter(|s| s.layers.get(layer).copied().unwrap_or(false))
            .map(|s| s.window)
    }

    /// Divisor of each rotary frequency (1 for unscaled ones).
    pub fn freq_factors(&self) -> Vec<f32> {
        let half = self.rope_dim / 2;
        match &self.rope_scaling {
            RopeScaling::None => vec![1.0; half],
            RopeScaling::Linear(f) => vec![*f; half],
            RopeScaling::Factors(f) => f.clone(),
            RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                let old = *original_max_position_embeddings as f32;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                (0..half)
                    .map(|i| {
                        let inv = 1.0 / self.rope_theta.powf(2.0 * i as f32 / self.rope_dim as f32);
                        let wavelen = 2.0 * std::f32::consts::PI / inv;
                        let new_inv = if wavelen < high_wavelen {
                            inv
                        } else if wavelen > low_wavelen {
                            inv / factor
                        } else {
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * inv / factor + smooth * inv
                        };
                        inv / new_inv
                    })
                    .collect()
            }
        }
    }
}

/// cos/sin of the rotary angles for a run of positions: `[n_pos, rope_dim / 2]`.
pub struct RopeTable {
    pub half: usize,
    pub cos: Vec<f32>,
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

/// Precision of the key/value cache.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KvDtype {
    /// Half the memory; rounds like llama.cpp's default f16 cache.
    #[default]
    F16,
    /// Exact (used for parity checks against f32 references).
    F32,
}

#[derive(Clone, Debug)]
enum KvData {
    F16(Vec<f16>),
    F32(Vec<f32>),
}

impl KvData {
    fn new(dtype: KvDtype) -> Self {
        match dtype {
            KvDtype::F16 => KvData::F16(Vec::new()),
            KvDtype::F32 => KvData::F32(Vec::new()),
        }
    }

    fn push(&mut self, xs: &[f32]) {
        match self {
            KvData::F16(v) => v.extend(xs.iter().map(|&x| f16::from_f32(x))),
            KvData::F32(v) => v.extend_from_slice(xs),
        }
    }

    fn truncate(&mut self, n: usize) {
        match self {
            KvData::F16(v) => v.truncate(n),
            KvData::F32(v) => v.truncate(n),
        }
    }
}

/// Keys and values of one layer, position-major: `[pos, kv_head, head_dim]`.
#[derive(Clone, Debug)]
pub struct LayerKv {
    k: KvData,
    v: KvData,
}

/// The key/value cache of one sequence.
#[derive(Clone, Debug)]
pub struct KvCache {
    layers: Vec<LayerKv>,
    len: usize,
    max_len: usize,
    row: usize,
    dtype: KvDtype,
}

impl KvCache {
    pub fn new(cfg: &LlamaConfig, max_len: usize, dtype: KvDtype) -> Self {
        Self {
            layers: (0..cfg.num_layers)
                .map(|_| LayerKv {
                    k: KvData::new(dtype),
                    v: KvData::new(dtype),
                })
                .collect(),
            len: 0,
            max_len,
            row: cfg.num_kv_heads * cfg.head_dim,
            dtype,
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The most positions this cache accepts.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    pub fn dtype(&self) -> KvDtype {
        self.dtype
    }

    /// Forgets positions from `n` on (to reuse a shared prompt prefix).
    pub fn truncate(&mut self, n: usize) {
        let n = n.min(self.len);
        for l in &mut self.layers {
            l.k.truncate(n * self.row);
            l.v.truncate(n * self.row);
        }
        self.len = n;
    }

    pub fn clear(&mut self) {
        self.truncate(0);
    }
}

/// Which positions get logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Only the last position (generation).
    Last,
    /// Every position (scoring, perplexity).
    All,
}

/// Projections in one block. q/k/v and gate/up are fused into one matmul each when their
/// weights share a representation.
#[derive(Clone, Debug)]
pub struct Block {
    pub attn_norm: Tensor,
    /// `[q | k | v]`: one fused projection, or three.
    pub qkv: Vec<Linear>,
    /// Qwen3, Gemma 3: RMS-norm weights `[head_dim]` applied to every query / key head before
    /// the rotary embedding.
    pub q_norm: Option<Tensor>,
    pub k_norm: Option<Tensor>,
    pub o: Linear,
    /// Gemma 3: RMS norm of the attention output before the residual add.
    pub post_attn_norm: Option<Tensor>,
    pub ffn_norm: Tensor,
    /// Gemma 3: RMS norm of the feed-forward output before the residual add.
    pub post_ffn_norm: Option<Tensor>,
    /// `[gate | up]`: one fused projection, or two.
    pub gate_up: Vec<Linear>,
    pub down: Linear,
}

impl Block {
    /// The query/key head-norm weights as plain slices for the fused attention op.
    fn head_norms(&self) -> Result<Option<(Vec<f32>, Vec<f32>)>> {
        match (&self.q_norm, &self.k_norm) {
            (Some(q), Some(k)) => Ok(Some((q.to_vec1::<f32>()?, k.to_vec1::<f32>()?))),
            _ => Ok(None),
        }
    }
}

/// A Llama-family model.
#[derive(Clone, Debug)]
pub struct Llama {
    pub config: LlamaConfig,
    pub embed: Embedding,
    pub blocks: Vec<Block>,
    pub norm: Tensor,
    pub lm_head: Linear,
    freq_factors: Vec<f32>,
}

fn fuse(parts: Vec<Linear>) -> Vec<Linear> {
    let ws: Vec<&Weight> = parts.iter().map(|l| &l.weight).collect();
    let biases: Option<Vec<Tensor>> = parts.iter().map(|l| l.bias.clone()).collect();
    let any_bias = parts.iter().any(|l| l.bias.is_some());
    if any_bias && biases.is_none() {
        return parts;
    }
    match Weight::concat_rows(&ws) {
        Some(w) => {
            let bias = biases.and_then(|b| Tensor::cat(&b, 0).ok());
            if any_bias && bias.is_none() {
                return parts;
            }
            vec![Linear::new(w, bias)]
        }
        None => parts,
    }
}

fn forward_group(parts: &[Linear], x: &Tensor, sel: AdapterSel) -> Result<Tensor> {
    if parts.len() == 1 {
        return parts[0].forward(x, sel);
    }
    let ys = parts
        .iter()
        .map(|l| l.forward(x, sel))
        .collect::<Result<Vec<_>>>()?;
    Ok(Tensor::cat(&ys, D::Minus1)?)
}

/// The projections a LoRA adapter can target, by PEFT module name.
pub const PROJECTIONS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

impl Llama {
    /// Loads a GGUF model (weights stay quantized).
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        let cfg = LlamaConfig::from_gguf(g)?;
        let h = cfg.hidden_size;
        let qd = cfg.num_heads * cfg.head_dim;
        let kvd = cfg.num_kv_heads * cfg.head_dim;
        let ff = cfg.intermediate_size;
        let embed_w = Weight::from_gguf(g, "token_embd.weight", cfg.vocab_size, h)?;
        let lm_head = if cfg.tie_word_embeddings {
            Linear::new(embed_w.clone(), None)
        } else {
            Linear::new(
                Weight::from_gguf(g, "output.weight", cfg.vocab_size, h)?,
                None,
            )
        };
        let vec1 = |name: &str, n: usize| -> Result<Tensor> {
            let t = dense_from_gguf(g, name)?;
            if t.dims() != [n] {
                return Err(Error::TensorShape {
                    name: name.into(),
                    got: t.dims().to_vec(),
                    expected: vec![n],
                });
            }
            Ok(t)
        };
        let opt_bias = |name: String, n: usize| -> Result<Option<Tensor>> {
            if g.has_tensor(&name) {
                vec1(&name, n).map(Some)
            } else {
                Ok(None)
            }
        };
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let p = |s: &str| format!("blk.{i}.{s}");
            let lin = |s: &str, rows: usize, cols: usize, bias: usize| -> Result<Linear> {
                Ok(Linear::new(
                    Weight::from_gguf(g, &p(&format!("{s}.weight")), rows, cols)?,
                    opt_bias(p(&format!("{s}.bias")), bias)?,
                ))
            };
            let q = lin("attn_q", qd, h, qd)?;
            let k = lin("attn_k", kvd, h, kvd)?;
            let v = lin("attn_v", kvd, h, kvd)?;
            let head_norm = |s: &str| -> Result<Option<Tensor>> {
                match cfg.qk_norm() {
                    true => vec1(&p(s), cfg.head_dim).map(Some),
                    false => Ok(None),
                }
            };
            // (llama.cpp's converter already added Gemma's +1 to every norm weight)
            let post_norm = |s: &str| -> Result<Option<Tensor>> {
                match cfg.post_norms() {
                    true => vec1(&p(s), h).map(Some),
                    false => Ok(None),
                }
            };
            blocks.push(Block {
                attn_norm: vec1(&p("attn_norm.weight"), h)?,
                qkv: fuse(vec![q, k, v]),
                q_norm: head_norm("attn_q_norm.weight")?,
                k_norm: head_norm("attn_k_norm.weight")?,
                o: lin("attn_output", h, qd, h)?,
                post_attn_norm: post_norm("post_attention_norm.weight")?,
                ffn_norm: vec1(&p("ffn_norm.weight"), h)?,
                post_ffn_norm: post_norm("post_ffw_norm.weight")?,
                gate_up: fuse(vec![lin("ffn_gate", ff, h, ff)?, lin("ffn_up", ff, h, ff)?]),
                down: lin("ffn_down", h, ff, h)?,
            });
        }
        let freq_factors = cfg.freq_factors();
        Ok(Self {
            norm: vec1("output_norm.weight", h)?,
            embed: Embedding { weight: embed_w },
            blocks,
            lm_head,
            freq_factors,
            config: cfg,
        })
    }

    /// Builds a model from dense f32 tensors named like Hugging Face checkpoints
    /// (`model.layers.N.self_attn.q_proj.weight`, ...), e.g. read from safetensors.
    pub fn from_hf_tensors(cfg: LlamaConfig, get: &dyn Fn(&str) -> Option<Tensor>) -> Result<Self> {
        let need = |name: &str, shape: &[usize]| -> Result<Tensor> {
            let t = get(name).ok_or_else(|| Error::MissingTensor(name.into()))?;
            let t = t.to_dtype(DType::F32)?;
            if t.dims() != shape {
                return Err(Error::TensorShape {
                    name: name.into(),
                    got: t.dims().to_vec(),
                    expected: shape.to_vec(),
                });
            }
            Ok(t)
        };
        let h = cfg.hidden_size;
        let qd = cfg.num_heads * cfg.head_dim;
        let kvd = cfg.num_kv_heads * cfg.head_dim;
        let ff = cfg.intermediate_size;
        let lin = |name: &str, rows: usize, cols: usize| -> Result<Linear> {
            let w = need(&format!("{name}.weight"), &[rows, cols])?;
            let b = match get(&format!("{name}.bias")) {
                Some(_) => Some(need(&format!("{name}.bias"), &[rows])?),
                None => None,
            };
            Ok(Linear::new(Weight::Dense(w), b))
        };
        // Gemma stores norm weights as offsets from 1 (`x̂ · (1 + w)`)
        let gemma3 = cfg.architecture == "gemma3";
        let norm = |name: &str, n: usize| -> Result<Tensor> {
            let w = need(name, &[n])?;
            Ok(if gemma3 { (w + 1.0)? } else { w })
        };
        let embed_w = Weight::Dense(need("model.embed_tokens.weight", &[cfg.vocab_size, h])?);
        let lm_head = if get("lm_head.weight").is_some() && !cfg.tie_word_embeddings {
            lin("lm_head", cfg.vocab_size, h)?
        } else {
            Linear::new(embed_w.clone(), None)
        };
        let mut blocks = Vec::with_capacity(cfg.num_layers);
        for i in 0..cfg.num_layers {
            let p = |s: &str| format!("model.layers.{i}.{s}");
            let head_norm = |s: &str| -> Result<Option<Tensor>> {
                match cfg.qk_norm() {
                    true => norm(&p(s), cfg.head_dim).map(Some),
                    false => Ok(None),
                }
            };
            // Gemma 3 names its pre-feed-forward norm `pre_feedforward_layernorm`, and its
            // `post_attention_layernorm` is the norm of the attention output
            let (post_attn_norm, ffn_norm, post_ffn_norm) = if gemma3 {
                (
                    Some(norm(&p("post_attention_layernorm.weight"), h)?),
                    norm(&p("pre_feedforward_layernorm.weight"), h)?,
                    Some(norm(&p("post_feedforward_layernorm.weight"), h)?),
                )
            } else {
                (None, norm(&p("post_attention_layernorm.weight"), h)?, None)
            };
            blocks.push(Block {
                attn_norm: norm(&p("input_layernorm.weight"), h)?,
                qkv: fuse(vec![
                    lin(&p("self_attn.q_proj"), qd, h)?,
                    lin(&p("self_attn.k_proj"), kvd, h)?,
                    lin(&p("self_attn.v_proj"), kvd, h)?,
                ]),
                q_norm: head_norm("self_attn.q_norm.weight")?,
                k_norm: head_norm("self_attn.k_norm.weight")?,
                o: lin(&p("self_attn.o_proj"), h, qd)?,
                post_attn_norm,
                ffn_norm,
                post_ffn_norm,
                gate_up: fuse(vec![
                    lin(&p("mlp.gate_proj"), ff, h)?,
                    lin(&p("mlp.up_proj"), ff, h)?,
                ]),
                down: lin(&p("mlp.down_proj"), h, ff)?,
            });
        }
        let freq_factors = cfg.freq_factors();
        Ok(Self {
            norm: norm("model.norm.weight", h)?,
            embed: Embedding { weight: embed_w },
            blocks,
            lm_head,
            freq_factors,
            config: cfg,
        })
    }

    /// Loads the network of a Hugging Face model folder, without its tokenizer: `config.json`
    /// and `model.safetensors` (or the shards listed in `model.safetensors.index.json`).
    /// Weights are kept as dense f32. [`crate::LocalModel::load`] adds the tokenizer and chat
    /// template.
    pub fn from_hf_dir(dir: impl AsRef<std::path::Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let read = |name: &str| -> Result<String> {
            let p = dir.join(name);
            std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))
        };
        let config: serde_json::Value = serde_json::from_str(&read("config.json")?)?;
        let cfg = LlamaConfig::from_hf_json(&config)?;
        let mut files = Vec::new();
        if dir.join("model.safetensors.index.json").exists() {
            let idx: serde_json::Value =
                serde_json::from_str(&read("model.safetensors.index.json")?)?;
            let mut names: Vec<String> = idx["weight_map"]
                .as_object()
                .ok_or_else(|| {
                    Error::Config("model.safetensors.index.json lacks weight_map".into())
                })?
                .values()
                .filter_map(|v| v.as_str().map(String::from))
                .collect();
            names.sort();
            names.dedup();
            files.extend(names.into_iter().map(|n| dir.join(n)));
        } else {
            files.push(dir.join("model.safetensors"));
        }
        let mut tensors = std::collections::HashMap::new();
        for f in &files {
            if !f.exists() {
                return Err(Error::io(
                    f,
                    std::io::Error::from(std::io::ErrorKind::NotFound),
                ));
            }
            let t = candle_core::safetensors::load(f, &candle_core::Device::Cpu)
                .map_err(|e| Error::Config(format!("{}: {e}", f.display())))?;
            tensors.extend(t);
        }
        Self::from_hf_tensors(cfg, &|n: &str| tensors.get(n).cloned())
    }

    /// A copy with every projection dequantized to dense f32 (a full-precision reference, or
    /// a base for training that needs exact gradients through the weights).
    pub fn dequantized(&self) -> Result<Self> {
        let mut m = self.clone();
        let deq = |l: &mut Linear| -> Result<()> {
            l.weight = Weight::Dense(l.weight.dequantize()?);
            Ok(())
        };
        for b in &mut m.blocks {
            for l in b.qkv.iter_mut().chain(b.gate_up.iter_mut()) {
                deq(l)?;
            }
            deq(&mut b.o)?;
            deq(&mut b.down)?;
        }
        deq(&mut m.lm_head)?;
        Ok(m)
    }

    /// A fresh cache for up to `max_len` positions (capped at the model's context length).
    pub fn new_cache(&self, max_len: usize, dtype: KvDtype) -> KvCache {
        KvCache::new(&self.config, max_len.min(self.config.context_length), dtype)
    }

    /// Runs `ids` after the positions already in `cache`, appending to it. Returns logits
    /// `[1, vocab]` ([`Logits::Last`]) or `[ids.len(), vocab]` ([`Logits::All`]).
    pub fn forward(
        &self,
        ids: &[u32],
        cache: &mut KvCache,
        sel: AdapterSel,
        logits: Logits,
    ) -> Result<Tensor> {
        if ids.is_empty() {
            return Err(Error::Request("forward needs at least one token".into()));
        }
        if cache.len + ids.len() > cache.max_len {
            return Err(Error::ContextOverflow {
                prompt: cache.len + ids.len(),
                max_new: 0,
                context: cache.max_len,
            });
        }
        if cache.layers.len() != self.blocks.len()
            || cache.row != self.config.num_kv_heads * self.config.head_dim
        {
            return Err(Error::Request("cache was made for another model".into()));
        }
        let start = cache.len;
        let res = crate::threads::run(|| self.forward_cached(ids, cache, sel, logits));
        match res {
            Ok(t) => {
                cache.len = start + ids.len();
                Ok(t)
            }
            Err(e) => {
                cache.len = start + ids.len();
                cache.truncate(start);
                Err(e)
            }
        }
    }

    fn forward_cached(
        &self,
        ids: &[u32],
        cache: &mut KvCache,
        sel: AdapterSel,
        logits: Logits,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let n = ids.len();
        let start = cache.len;
        let ropes = self.ropes(start, n);
        let kv_f16 = cache.dtype == KvDtype::F16;
        let mut x = self.embed_tokens(ids)?;
        for (li, (b, kv)) in self.blocks.iter().zip(cache.layers.iter_mut()).enumerate() {
            let h = rms_norm(&x, &b.attn_norm, cfg.rms_eps, false)?;
            let qkv = forward_group(&b.qkv, &h, sel)?;
            let head_norms = b.head_norms()?;
            let window = cfg.window(li);
            let op = CachedAttention {
                kv: RefCell::new(kv),
                rope: ropes.for_window(window),
                scale: cfg.attn_scale,
                window,
                start,
                nh: cfg.num_heads,
                nkv: cfg.num_kv_heads,
                hd: cfg.head_dim,
                n_rot: cfg.rope_dim,
                style: cfg.rope_style,
                head_norms: head_norms
                    .as_ref()
                    .map(|(q, k)| (q.as_slice(), k.as_slice())),
                eps: cfg.rms_eps,
                round_f16: kv_f16,
            };
            let att = qkv.apply_op1_no_bwd(&op)?;
            x = self.residual(x, b.o.forward(&att, sel)?, &b.post_attn_norm, false)?;
            x = self.ffn(b, x, sel, false)?;
        }
        let x = match logits {
            Logits::Last => x.narrow(0, n - 1, 1)?,
            Logits::All => x,
        };
        let x = rms_norm(&x, &self.norm, cfg.rms_eps, false)?;
        self.lm_head.forward(&x, sel)
    }

    /// Runs several sequences in one pass (each `ids` after the positions in its own cache):
    /// the projections see all rows at once, attention runs per sequence. Returns the logits
    /// `[1, vocab]` of each sequence's last position.
    pub fn forward_batch(
        &self,
        batch: &mut [(&[u32], &mut KvCache)],
        sel: AdapterSel,
    ) -> Result<Vec<Tensor>> {
        let row = self.config.num_kv_heads * self.config.head_dim;
        for (ids, cache) in batch.iter() {
            if ids.is_empty() {
                return Err(Error::Request("forward needs at least one token".into()));
            }
            if cache.len + ids.len() > cache.max_len {
                return Err(Error::ContextOverflow {
                    prompt: cache.len + ids.len(),
                    max_new: 0,
                    context: cache.max_len,
                });
            }
            if cache.layers.len() != self.blocks.len() || cache.row != row {
                return Err(Error::Request("cache was made for another model".into()));
            }
        }
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let starts: Vec<usize> = batch.iter().map(|(_, c)| c.len).collect();
        let res = crate::threads::run(|| self.forward_batch_inner(batch, &starts, sel));
        for ((ids, cache), &start) in batch.iter_mut().zip(&starts) {
            cache.len = start + ids.len();
            if res.is_err() {
                cache.truncate(start);
            }
        }
        res
    }

    fn forward_batch_inner(
        &self,
        batch: &mut [(&[u32], &mut KvCache)],
        starts: &[usize],
        sel: AdapterSel,
    ) -> Result<Vec<Tensor>> {
        let cfg = &self.config;
        let all: Vec<u32> = batch
            .iter()
            .flat_map(|(ids, _)| ids.iter().copied())
            .collect();
        let ropes: Vec<Ropes> = batch
            .iter()
            .zip(starts)
            .map(|((ids, _), &s)| self.ropes(s, ids.len()))
            .collect();
        let mut x = self.embed_tokens(&all)?;
        for (li, b) in self.blocks.iter().enumerate() {
            let h = rms_norm(&x, &b.attn_norm, cfg.rms_eps, false)?;
            let qkv = forward_group(&b.qkv, &h, sel)?;
            let head_norms = b.head_norms()?;
            let window = cfg.window(li);
            let mut parts = Vec::with_capacity(batch.len());
            let mut off = 0;
            for (k, (ids, cache)) in batch.iter_mut().enumerate() {
                let n = ids.len();
                let round_f16 = cache.dtype == KvDtype::F16;
                let op = CachedAttention {
                    kv: RefCell::new(&mut cache.layers[li]),
                    rope: ropes[k].for_window(window),
                    scale: cfg.attn_scale,
                    window,
                    start: starts[k],
                    nh: cfg.num_heads,
                    nkv: cfg.num_kv_heads,
                    hd: cfg.head_dim,
                    n_rot: cfg.rope_dim,
                    style: cfg.rope_style,
                    head_norms: head_norms
                        .as_ref()
                        .map(|(q, k)| (q.as_slice(), k.as_slice())),
                    eps: cfg.rms_eps,
                    round_f16,
                };
                parts.push(qkv.narrow(0, off, n)?.apply_op1_no_bwd(&op)?);
                off += n;
            }
            let att = if parts.len() == 1 {
                parts.remove(0)
            } else {
                Tensor::cat(&parts, 0)?
            };
            x = self.residual(x, b.o.forward(&att, sel)?, &b.post_attn_norm, false)?;
            x = self.ffn(b, x, sel, false)?;
        }
        let mut last = Vec::with_capacity(batch.len());
        let mut end = 0u32;
        for (ids, _) in batch.iter() {
            end += ids.len() as u32;
            last.push(end - 1);
        }
        let x = x.index_select(&Tensor::new(last.as_slice(), &Device::Cpu)?, 0)?;
        let x = rms_norm(&x, &self.norm, cfg.rms_eps, false)?;
        let logits = self.lm_head.forward(&x, sel)?;
        (0..batch.len())
            .map(|i| Ok(logits.narrow(0, i, 1)?))
            .collect()
    }

    /// Differentiable forward pass over a batch `ids: [batch, seq]` (u32), without a cache.
    /// Returns logits `[batch, seq, vocab]`.
    pub fn forward_train(&self, ids: &Tensor, sel: AdapterSel) -> Result<Tensor> {
        let h = self.forward_train_hidden(ids, sel)?;
        self.lm_head.forward(&h, sel)
    }

    /// The differentiable LM head over final hidden states `[.., hidden]` (see
    /// [`Llama::forward_train_hidden`]).
    pub fn head_train(&self, hidden: &Tensor, sel: AdapterSel) -> Result<Tensor> {
        self.lm_head.forward(hidden, sel)
    }

    /// [`Llama::forward_train`] without the LM head: the final normed hidden states
    /// `[batch, seq, hidden]`. A trainer picks the positions it scores before the (vocabulary
    /// sized) head, which saves most of the head's time and memory.
    pub fn forward_train_hidden(&self, ids: &Tensor, sel: AdapterSel) -> Result<Tensor> {
        let x = self.hidden_before(ids, 0, sel)?;
        self.forward_train_from(x, 0, sel)
    }

    /// The input of block `layer` (the embeddings for 0) for `ids: [batch, seq]`:
    /// `[batch, seq, hidden]`. A trainer whose adapters start at `layer` computes this once
    /// per example and resumes with [`Llama::forward_train_from`] every epoch.
    pub fn hidden_before(&self, ids: &Tensor, layer: usize, sel: AdapterSel) -> Result<Tensor> {
        let cfg = &self.config;
        let (bsz, seq) = ids.dims2()?;
        let flat: Vec<u32> = ids.flatten_all()?.to_vec1::<u32>()?;
        let x = self
            .embed_tokens(&flat)?
            .reshape((bsz, seq, cfg.hidden_size))?;
        self.train_blocks(x, 0..layer.min(self.blocks.len()), sel)
    }

    /// The differentiable rest of [`Llama::forward_train_hidden`] from the input `x` of block
    /// `layer` (`[batch, seq, hidden]`, positions from 0): the final normed hidden states.
    pub fn forward_train_from(&self, x: Tensor, layer: usize, sel: AdapterSel) -> Result<Tensor> {
        let x = self.train_blocks(x, layer.min(self.blocks.len())..self.blocks.len(), sel)?;
        rms_norm(&x, &self.norm, self.config.rms_eps, true)
    }

    /// Blocks `layers` of the differentiable forward pass over `x: [batch, seq, hidden]`.
    fn train_blocks(
        &self,
        mut x: Tensor,
        layers: std::ops::Range<usize>,
        sel: AdapterSel,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let (bsz, seq, _) = x.dims3()?;
        if layers.is_empty() {
            return Ok(x);
        }
        let ropes = self.ropes(0, seq);
        let global = Arc::new(ropes.global);
        let local = ropes.local.map(Arc::new);
        let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
        let scale = cfg.attn_scale;
        for (li, b) in self
            .blocks
            .iter()
            .enumerate()
            .take(layers.end)
            .skip(layers.start)
        {
            let window = cfg.window(li);
            let table = match (&local, window.is_some()) {
                (Some(l), true) => l,
                _ => &global,
            };
            let h = rms_norm(&x, &b.attn_norm, cfg.rms_eps, true)?;
            let qkv = forward_group(&b.qkv, &h, sel)?;
            let heads = |off: usize, n: usize| -> Result<Tensor> {
                Ok(qkv
                    .narrow(D::Minus1, off * hd, n * hd)?
                    .reshape((bsz, seq, n, hd))?
                    .transpose(1, 2)?
                    .contiguous()?)
            };
            let head_norm = |x: Tensor, w: &Option<Tensor>| -> Result<Tensor> {
                match w {
                    Some(w) => rms_norm(&x, w, cfg.rms_eps, true),
                    None => Ok(x),
                }
            };
            let q = head_norm(heads(0, nh)?, &b.q_norm)?;
            let k = head_norm(heads(nh, nkv)?, &b.k_norm)?;
            let q = train_ops::rope(&q, table, cfg.rope_style)?;
            let k = train_ops::rope(&k, table, cfg.rope_style)?;
            let v = heads(nh + nkv, nkv)?;
            let y = train_ops::causal_attention(&q, &k, &v, scale, window)?;
            x = self.residual(x, b.o.forward(&y, sel)?, &b.post_attn_norm, true)?;
            x = self.ffn(b, x, sel, true)?;
        }
        Ok(x)
    }

    /// Token embeddings, scaled as the architecture asks.
    fn embed_tokens(&self, ids: &[u32]) -> Result<Tensor> {
        let x = self.embed.forward(ids)?;
        Ok(match self.config.embed_scale {
            1.0 => x,
            s => (x * s as f64)?,
        })
    }

    /// Rotary tables for positions `start..start + n`.
    fn ropes(&self, start: usize, n: usize) -> Ropes {
        let cfg = &self.config;
        Ropes {
            global: RopeTable::new(cfg, &self.freq_factors, start, n),
            local: cfg.sliding.as_ref().map(|s| {
                let ones = vec![1.0; cfg.rope_dim / 2];
                RopeTable::with_base(s.rope_theta, cfg.rope_dim, &ones, start, n)
            }),
        }
    }

    /// `x + y`, with Gemma's norm of the branch output `y` first.
    fn residual(&self, x: Tensor, y: Tensor, post: &Option<Tensor>, train: bool) -> Result<Tensor> {
        let y = match post {
            Some(w) => rms_norm(&y, w, self.config.rms_eps, train)?,
            None => y,
        };
        Ok((x + y)?)
    }

    /// The feed-forward half of a block, residual add included.
    fn ffn(&self, b: &Block, x: Tensor, sel: AdapterSel, train: bool) -> Result<Tensor> {
        let cfg = &self.config;
        let h = rms_norm(&x, &b.ffn_norm, cfg.rms_eps, train)?;
        let gu = forward_group(&b.gate_up, &h, sel)?;
        let a = if train {
            train_ops::gated_act(&gu, cfg.ffn_act)?
        } else {
            gu.apply_op1_no_bwd(&GatedAct(cfg.ffn_act))?
        };
        let y = b.down.forward(&a, sel)?;
        self.residual(x, y, &b.post_ffn_norm, train)
    }

    /// Mutable access to the projection `name` (one of [`PROJECTIONS`]) of block `layer`:
    /// the [`Linear`] that computes it and the offset of its outputs inside that layer.
    pub fn projection_mut(
        &mut self,
        layer: usize,
        name: &str,
    ) -> Result<(&mut Linear, usize, usize)> {
        let cfg = &self.config;
        let qd = cfg.num_heads * cfg.head_dim;
        let kvd = cfg.num_kv_heads * cfg.head_dim;
        let ff = cfg.intermediate_size;
        let block = self
            .blocks
            .get_mut(layer)
            .ok_or_else(|| Error::Adapter(format!("no layer {layer}")))?;
        let (group, idx, off, len) = match name {
            "q_proj" => (Some(&mut block.qkv), 0, 0, qd),
            "k_proj" => (Some(&mut block.qkv), 1, qd, kvd),
            "v_proj" => (Some(&mut block.qkv), 2, qd + kvd, kvd),
            "gate_proj" => (Some(&mut block.gate_up), 0, 0, ff),
            "up_proj" => (Some(&mut block.gate_up), 1, ff, ff),
            "o_proj" => (None, 0, 0, cfg.hidden_size),
            "down_proj" => (None, 0, 0, cfg.hidden_size),
            other => return Err(Error::Adapter(format!("unknown projection {other}"))),
        };
        match group {
            Some(g) if g.len() == 1 => Ok((&mut g[0], off, len)),
            Some(g) => g
                .get_mut(idx)
                .map(|l| (l, 0, len))
                .ok_or_else(|| Error::Adapter(format!("projection {name} missing"))),
            None if name == "o_proj" => Ok((&mut block.o, 0, len)),
            None => Ok((&mut block.down, 0, len)),
        }
    }
}

/// The rotary tables of one forward pass: the model's, and that of the sliding-window layers.
struct Ropes {
    global: RopeTable,
    local: Option<RopeTable>,
}

impl Ropes {
    fn for_window(&self, window: Option<usize>) -> &RopeTable {
        match (&self.local, window) {
            (Some(l), Some(_)) => l,
            _ => &self.global,
        }
    }
}

/// Rotary embedding + cache append + causal attention for the positions of one forward pass.
struct CachedAttention<'a> {
    kv: RefCell<&'a mut LayerKv>,
    rope: &'a RopeTable,
    /// Factor of the attention logits.
    scale: f32,
    /// Each query attends to the last `window` positions only (itself included).
    window: Option<usize>,
    start: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
    n_rot: usize,
    style: RopeStyle,
    /// Per-head RMS-norm weights of queries and keys, applied before the rotary embedding.
    head_norms: Option<(&'a [f32], &'a [f32])>,
    eps: f32,
    /// Round q and the attention weights to f16 like llama.cpp does with an f16 cache.
    round_f16: bool,
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
                        let (kc, vc) = (&kc[lo * kw..], &vc[lo * kw..]);
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
                        let (kc, vc) = (&kc[lo * kw..], &vc[lo * kw..]);
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

    #[test]
    fn hf_config_rope_in_both_formats() {
        // transformers 4.x: `rope_theta` + `rope_scaling`; 5.x: `rope_parameters`
        let base = serde_json::json!({
            "model_type": "llama", "vocab_size": 10, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2
        });
        let scaling = serde_json::json!({"rope_type": "llama3", "factor": 32.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192});
        let mut v4 = base.clone();
        v4["rope_theta"] = serde_json::json!(500_000.0);
        v4["rope_scaling"] = scaling.clone();
        let mut v5 = base.clone();
        let mut params = scaling;
        params["rope_theta"] = serde_json::json!(500_000.0);
        v5["rope_parameters"] = params;
        let mut plain = base;
        plain["rope_parameters"] = serde_json::json!({"rope_type": "default", "rope_theta": 1e6});
        for v in [v4, v5] {
            let c = LlamaConfig::from_hf_json(&v).expect("config");
            assert_eq!(c.rope_theta, 500_000.0);
            assert!(matches!(c.rope_scaling, RopeScaling::Llama3 { factor, .. } if factor == 32.0));
        }
        let c = LlamaConfig::from_hf_json(&plain).expect("config");
        assert_eq!((c.rope_theta, c.rope_scaling), (1e6, RopeScaling::None));
    }

    #[test]
    fn gemma3_config_as_transformers_4_wrote_it() {
        // gemma-3-1b-it's config.json (transformers 4.50), dimensions shrunk
        let v = serde_json::json!({
            "architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text",
            "vocab_size": 100, "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 8, "num_attention_heads": 4, "num_key_value_heads": 1,
            "head_dim": 32, "query_pre_attn_scalar": 32, "rms_norm_eps": 1e-6,
            "rope_theta": 1_000_000.0, "rope_local_base_freq": 10_000.0, "rope_scaling": null,
            "sliding_window": 512, "sliding_window_pattern": 6,
            "final_logit_softcapping": null, "attn_logit_softcapping": null,
            "hidden_activation": "gelu_pytorch_tanh", "max_position_embeddings": 32768
        });
        let c = LlamaConfig::from_hf_json(&v).expect("config");
        assert_eq!(c.architecture, "gemma3");
        assert!(c.tie_word_embeddings, "Gemma ties by default");
        assert_eq!(
            (c.rope_theta, c.rope_scaling.clone()),
            (1e6, RopeScaling::None)
        );
        let s = c.sliding.clone().expect("sliding");
        assert_eq!((s.window, s.rope_theta), (512, 10_000.0));
        let global: Vec<usize> = (0..8).filter(|&i| c.window(i).is_none()).collect();
        assert_eq!(global, [5]);
        assert_eq!(c.attn_scale, 1.0 / 32f32.sqrt());
        assert_eq!(c.embed_scale, 8.0);
        assert_eq!(c.ffn_act, FfnAct::GeluTanh);
        let mut capped = v.clone();
        capped["final_logit_softcapping"] = serde_json::json!(30.0);
        assert!(LlamaConfig::from_hf_json(&capped).is_err());
    }

    #[test]
    fn llama3_rope_factors() {
        let cfg = LlamaConfig {
            architecture: "llama".into(),
            vocab_size: 10,
            hidden_size: 128,
            intermediate_size: 256,
            num_layers: 1,
            num_heads: 2,
            num_kv_heads: 1,
            head_dim: 64,
            rope_dim: 64,
            rms_eps: 1e-5,
            rope_theta: 500_000.0,
            rope_style: RopeStyle::Neox,
            rope_scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192,
            },
            context_length: 131_072,
            tie_word_embeddings: true,
            embed_scale: 1.0,
            attn_scale: 0.125,
            ffn_act: FfnAct::Silu,
            sliding: None,
        };
        let f = cfg.freq_factors();
        assert_eq!(f.len(), 32);
        assert_eq!(f[0], 1.0);
        assert!((f[31] - 8.0).abs() < 1e-4);
        assert!(f.windows(2).all(|w| w[0] <= w[1] + 1e-6), "{f:?}");
    }
}
