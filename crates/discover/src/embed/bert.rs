//! BERT encoder (Devlin et al., 2019) on candle, as used by all-MiniLM-L6-v2: embeddings
//! (word + position + token type, LayerNorm), then `num_hidden_layers` post-LayerNorm blocks of
//! masked multi-head self-attention and a GELU (erf) feed-forward network.

use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{LayerNorm, VarBuilder, layer_norm};
use serde::Deserialize;

/// The fields of a Hugging Face BERT `config.json` that the encoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    #[serde(default)]
    pub model_type: Option<String>,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_position")]
    pub position_embedding_type: String,
}

fn default_act() -> String {
    "gelu".into()
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}
fn default_position() -> String {
    "absolute".into()
}

impl BertConfig {
    /// Why this config is not a BERT encoder this file implements, if it is not.
    pub fn unsupported(&self) -> Option<String> {
        match self.model_type.as_deref() {
            Some("bert") | None => {}
            Some(other) => return Some(format!("model_type is {other:?}, expected \"bert\"")),
        }
        if self.hidden_act != "gelu" {
            return Some(format!(
                "hidden_act {:?} is not supported (expected \"gelu\")",
                self.hidden_act
            ));
        }
        if self.position_embedding_type != "absolute" {
            return Some(format!(
                "position_embedding_type {:?} is not supported (expected \"absolute\")",
                self.position_embedding_type
            ));
        }
        if self.num_attention_heads == 0
            || !self.hidden_size.is_multiple_of(self.num_attention_heads)
        {
            return Some(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        None
    }
}

/// `y = x Wᵀ + b` over the last dimension of a `(tokens, in)` matrix.
#[derive(Debug, Clone)]
struct Linear {
    weight_t: Tensor,
    bias: Tensor,
}

impl Linear {
    fn load(vb: VarBuilder, in_dim: usize, out_dim: usize) -> candle_core::Result<Self> {
        let weight = vb.get((out_dim, in_dim), "weight")?;
        let bias = vb.get(out_dim, "bias")?;
        Ok(Self {
            // Stored transposed once, so every forward is a plain row-major GEMM.
            weight_t: weight.t()?.contiguous()?,
            bias,
        })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(&self.weight_t)?.broadcast_add(&self.bias)
    }
}

#[derive(Debug, Clone)]
struct Embeddings {
    word: Tensor,
    position: Tensor,
    token_type: Tensor,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        Ok(Self {
            word: vb.get((cfg.vocab_size, h), "word_embeddings.weight")?,
            position: vb.get(
                (cfg.max_position_embeddings, h),
                "position_embeddings.weight",
            )?,
            token_type: vb.get((cfg.type_vocab_size, h), "token_type_embeddings.weight")?,
            norm: layer_norm(h, cfg.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    /// `ids`: `(batch, seq)` u32 → `(batch * seq, hidden)`; every token has segment 0.
    fn forward(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, seq) = ids.dims2()?;
        let hidden = self.word.dim(1)?;
        let words = self.word.index_select(&ids.flatten_all()?, 0)?;
        let words = words.reshape((batch, seq, hidden))?;
        let positions = self.position.narrow(0, 0, seq)?.unsqueeze(0)?;
        let segment = self.token_type.narrow(0, 0, 1)?.unsqueeze(0)?;
        let x = words.broadcast_add(&positions)?.broadcast_add(&segment)?;
        self.norm.forward(&x.reshape((batch * seq, hidden))?)
    }
}

#[derive(Debug, Clone)]
struct Layer {
    /// Query, key and value projections fused into one `(hidden, 3·hidden)` matrix.
    qkv: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    intermediate: Linear,
    output: Linear,
    out_norm: LayerNorm,
    heads: usize,
}

impl Layer {
    fn load(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        let h = cfg.hidden_size;
        let att = vb.pp("attention");
        let q = Linear::load(att.pp("self").pp("query"), h, h)?;
        let k = Linear::load(att.pp("self").pp("key"), h, h)?;
        let v = Linear::load(att.pp("self").pp("value"), h, h)?;
        let qkv = Linear {
            weight_t: Tensor::cat(&[&q.weight_t, &k.weight_t, &v.weight_t], 1)?.contiguous()?,
            bias: Tensor::cat(&[&q.bias, &k.bias, &v.bias], 0)?,
        };
        Ok(Self {
            qkv,
            attn_out: Linear::load(att.pp("output").pp("dense"), h, h)?,
            attn_norm: layer_norm(h, cfg.layer_norm_eps, att.pp("output").pp("LayerNorm"))?,
            intermediate: Linear::load(
                vb.pp("intermediate").pp("dense"),
                h,
                cfg.intermediate_size,
            )?,
            output: Linear::load(vb.pp("output").pp("dense"), cfg.intermediate_size, h)?,
            out_norm: layer_norm(h, cfg.layer_norm_eps, vb.pp("output").pp("LayerNorm"))?,
            heads: cfg.num_attention_heads,
        })
    }

    /// `x`: `(batch * seq, hidden)`; `mask`: additive `(batch, 1, 1, seq)`, 0 on tokens, -∞-ish on padding.
    fn forward(
        &self,
        x: &Tensor,
        batch: usize,
        seq: usize,
        mask: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let hidden = x.dim(1)?;
        let head_dim = hidden / self.heads;

        // Multi-head self-attention: softmax(Q Kᵀ / √d + mask) V.
        let qkv = self
            .qkv
            .forward(x)?
            .reshape((batch, seq, 3, self.heads, head_dim))?;
        let split = |i: usize| {
            qkv.narrow(2, i, 1)?
                .squeeze(2)?
                .transpose(1, 2)?
                .contiguous()
        };
        let (q, k, v) = (split(0)?, split(1)?, split(2)?);
        let scale = 1.0 / (head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs
            .matmul(&v)?
            .transpose(1, 2)?
            .reshape((batch * seq, hidden))?;
        let x = self
            .attn_norm
            .forward(&(self.attn_out.forward(&context)? + x)?)?;

        // Position-wise feed-forward network with GELU (erf), post-LayerNorm residual.
        let ffn = self
            .output
            .forward(&self.intermediate.forward(&x)?.gelu_erf()?)?;
        self.out_norm.forward(&(ffn + x)?)
    }
}

/// The BERT encoder: token ids and attention mask in, last hidden states out.
#[derive(Debug, Clone)]
pub struct BertModel {
    embeddings: Embeddings,
    layers: Vec<Layer>,
    hidden: usize,
}

impl BertModel {
    pub fn load(vb: VarBuilder, cfg: &BertConfig) -> candle_core::Result<Self> {
        // Checkpoints saved from `BertForX` heads prefix every name with `bert.`.
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") {
            vb.pp("bert")
        } else {
            vb
        };
        let embeddings = Embeddings::load(vb.pp("embeddings"), cfg)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| Layer::load(vb.pp("encoder").pp("layer").pp(i), cfg))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Self {
            embeddings,
            layers,
            hidden: cfg.hidden_size,
        })
    }

    /// `ids`, `attention_mask`: `(batch, seq)` (u32, f32 1/0) → hidden states `(batch, seq, hidden)`.
    pub fn forward(&self, ids: &Tensor, attention_mask: &Tensor) -> candle_core::Result<Tensor> {
        let (batch, seq) = ids.dims2()?;
        let mask =
            ((attention_mask.to_dtype(DType::F32)? - 1.0)? * 1e9)?.reshape((batch, 1, 1, seq))?;
        let mut x = self.embeddings.forward(ids)?;
        for layer in &self.layers {
            x = layer.forward(&x, batch, seq, &mask)?;
        }
        x.reshape((batch, seq, self.hidden))
    }
}

/// Mean of the hidden states over the attention mask, then L2-normalised: `(batch, hidden)`.
pub fn mean_pool_normalize(
    hidden: &Tensor,
    attention_mask: &Tensor,
) -> candle_core::Result<Tensor> {
    let mask = attention_mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
    let summed = hidden.broadcast_mul(&mask)?.sum(1)?;
    let counts = mask.sum(1)?.clamp(1e-9, f64::INFINITY)?;
    let mean = summed.broadcast_div(&counts)?;
    let norm = mean
        .sqr()?
        .sum_keepdim(1)?
        .sqrt()?
        .clamp(1e-12, f64::INFINITY)?;
    mean.broadcast_div(&norm)
}

/// The device the embedder runs on.
pub fn device() -> Device {
    Device::Cpu
}
