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
//! Every projection is a [`Linear`] carrying the LoRA hook. The hyper-parameters live in
//! [`crate::config`], the key/value cache in [`crate::kv_cache`], and the fused attention
//! kernels in [`crate::attention`].

use std::cell::RefCell;
use std::sync::Arc;

use candle_core::{D, DType, Device, Tensor};

pub use crate::attention::RopeTable;
use crate::attention::{CachedAttention, Ropes};
pub use crate::config::{LlamaConfig, RopeScaling, RopeStyle, SlidingWindow};
use crate::error::{Error, Result};
use crate::gguf::Gguf;
pub use crate::kv_cache::{KvCache, KvDtype, LayerKv};
use crate::nn::{AdapterSel, Embedding, GatedAct, Linear, Weight, dense_from_gguf, rms_norm};
use crate::train_ops;

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
    /// RMS-norm weights `[hidden]` before attention.
    pub attn_norm: Tensor,
    /// `[q | k | v]`: one fused projection, or three.
    pub qkv: Vec<Linear>,
    /// Qwen3, Gemma 3: RMS-norm weights `[head_dim]` applied to every query / key head before
    /// the rotary embedding.
    pub q_norm: Option<Tensor>,
    /// Qwen3, Gemma 3: the key heads' RMS-norm weights (see `q_norm`).
    pub k_norm: Option<Tensor>,
    /// Attention output projection.
    pub o: Linear,
    /// Gemma 3: RMS norm of the attention output before the residual add.
    pub post_attn_norm: Option<Tensor>,
    /// RMS-norm weights `[hidden]` before the feed-forward.
    pub ffn_norm: Tensor,
    /// Gemma 3: RMS norm of the feed-forward output before the residual add.
    pub post_ffn_norm: Option<Tensor>,
    /// `[gate | up]`: one fused projection, or two.
    pub gate_up: Vec<Linear>,
    /// Feed-forward down projection.
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
    /// Hyper-parameters.
    pub config: LlamaConfig,
    /// Token embeddings.
    pub embed: Embedding,
    /// The transformer blocks, first to last.
    pub blocks: Vec<Block>,
    /// Final RMS-norm weights `[hidden]`.
    pub norm: Tensor,
    /// Projection to the vocabulary's logits (the embedding table when tied).
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
