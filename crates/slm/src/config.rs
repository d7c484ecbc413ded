//! The hyper-parameters of the Llama-family decoder ([`LlamaConfig`]). A Hugging Face
//! `config.json` deserialises into one serde struct (`ConfigFile`, with the Gemma 3 fields
//! in their own `Gemma3Fields`); a GGUF file's `{arch}.*` metadata is read into the same
//! struct; one function resolves it into the values the network reads (rotary style and
//! scaling, head norms, sliding windows, scales), so no rule is worked out twice.

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::gguf::{Gguf, MetaValue};
use crate::nn::{FfnAct, dense_from_gguf};

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
    /// Positions as they are.
    None,
    /// Positions divided by `factor`.
    Linear(f32),
    /// Llama 3.x frequency-dependent scaling.
    Llama3 {
        /// Divisor of the low frequencies: how far the trained context is stretched.
        factor: f32,
        /// Wavelengths longer than `original_max_position_embeddings / low_freq_factor` are divided
        /// by `factor` in full.
        low_freq_factor: f32,
        /// Wavelengths shorter than `original_max_position_embeddings / high_freq_factor` are kept;
        /// those in between are interpolated.
        high_freq_factor: f32,
        /// The context length the model was pre-trained with.
        original_max_position_embeddings: usize,
    },
    /// Explicit per-frequency divisors (GGUF `rope_freqs.weight`).
    Factors(Vec<f32>),
}

/// One architecture the engine runs: its name in a GGUF file (`general.architecture`, also
/// [`LlamaConfig::architecture`]), the Hugging Face `config.json` `model_type`s that load as it,
/// and how llama.cpp's converter lays out its rotary pairs in GGUF.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Architecture {
    /// GGUF `general.architecture`, and the name [`LlamaConfig::architecture`] carries.
    pub gguf: &'static str,
    /// `config.json` `model_type`s of a Hugging Face folder that load as this architecture
    /// (the first is the one a GGUF file's metadata is read as).
    pub model_types: &'static [&'static str],
    /// Rotary layout of the GGUF weights.
    gguf_rope: RopeStyle,
}

/// Every architecture the engine runs, from a GGUF file or a Hugging Face folder: the one list
/// loading checks, and what `select` reads to say whether a catalog model runs here.
pub const ARCHITECTURES: &[Architecture] = &[
    Architecture {
        gguf: "llama",
        model_types: &["llama", "mistral"],
        gguf_rope: RopeStyle::Interleaved,
    },
    Architecture {
        gguf: "qwen2",
        model_types: &["qwen2"],
        gguf_rope: RopeStyle::Neox,
    },
    Architecture {
        gguf: "qwen3",
        model_types: &["qwen3"],
        gguf_rope: RopeStyle::Neox,
    },
    Architecture {
        gguf: "gemma3",
        model_types: &["gemma3_text"],
        gguf_rope: RopeStyle::Neox,
    },
];

/// The architectures the engine runs, for messages: `llama (llama, mistral), qwen2, …` — the
/// GGUF name, with the `config.json` `model_type`s in brackets where they differ from it.
pub fn supported_architectures() -> String {
    ARCHITECTURES
        .iter()
        .map(|a| {
            if a.model_types == [a.gguf] {
                a.gguf.to_string()
            } else {
                format!("{} (config.json: {})", a.gguf, a.model_types.join(", "))
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl Architecture {
    /// The architecture a GGUF file's `general.architecture` names, if the engine runs it.
    pub fn of_gguf(name: &str) -> Option<&'static Architecture> {
        ARCHITECTURES.iter().find(|a| a.gguf == name)
    }

    /// The architecture a `config.json` `model_type` loads as, if the engine runs it.
    pub fn of_model_type(model_type: &str) -> Option<&'static Architecture> {
        ARCHITECTURES
            .iter()
            .find(|a| a.model_types.contains(&model_type))
    }
}

/// Hyper-parameters of a Llama-family model.
#[derive(Clone, Debug)]
pub struct LlamaConfig {
    /// `llama` (also Mistral), `qwen2`, `qwen3` or `gemma3`.
    pub architecture: String,
    /// Rows of the token embedding.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Transformer blocks.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (fewer than `num_heads` under grouped-query attention).
    pub num_kv_heads: usize,
    /// Dimensions per head.
    pub head_dim: usize,
    /// Dimensions per head that are rotated (usually `head_dim`).
    pub rope_dim: usize,
    /// Epsilon of the RMS norms.
    pub rms_eps: f32,
    /// Base frequency of the rotary embedding.
    pub rope_theta: f32,
    /// Which dimensions the rotary embedding pairs.
    pub rope_style: RopeStyle,
    /// Frequency scaling of the rotary embedding.
    pub rope_scaling: RopeScaling,
    /// Longest sequence the model supports, in tokens.
    pub context_length: usize,
    /// The output head reuses the token embedding (no separate `lm_head` / `output.weight`).
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
    /// Positions each query sees, itself included.
    pub window: usize,
    /// `layers[i]`: whether layer `i` is a sliding-window layer.
    pub layers: Vec<bool>,
    /// Base frequency of the rotary embedding on the sliding-window layers.
    pub rope_theta: f32,
}

/// A model's configuration as written, in Hugging Face `config.json` names: what a
/// `config.json` deserialises into, and what a GGUF file's `{arch}.*` metadata is read into
/// ([`ConfigFile::from_gguf`]). [`ConfigFile::resolve`] turns it into a [`LlamaConfig`] — the
/// one place every architecture's rules (defaults, rotary parameters, Gemma 3's windows and
/// scales) are worked out.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ConfigFile {
    model_type: Option<String>,
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    num_key_value_heads: Option<usize>,
    head_dim: Option<usize>,
    rms_norm_eps: Option<f64>,
    /// transformers 4.x: beside `rope_scaling`; 5.x: inside `rope_parameters`.
    rope_theta: Option<f64>,
    rope_scaling: Option<serde_json::Value>,
    /// transformers 5.x; Gemma 3: one set per layer type (`full_attention`,
    /// `sliding_attention`).
    rope_parameters: Option<serde_json::Value>,
    max_position_embeddings: Option<usize>,
    tie_word_embeddings: Option<bool>,
    #[serde(flatten)]
    gemma3: Gemma3Fields,
    /// What only a GGUF file says.
    #[serde(skip)]
    gguf: GgufFields,
}

/// The Gemma 3 text model's own `config.json` fields.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Gemma3Fields {
    query_pre_attn_scalar: Option<f64>,
    sliding_window: Option<usize>,
    /// Every `n`-th layer is global (transformers 4.x).
    sliding_window_pattern: Option<usize>,
    /// `sliding_attention` or `full_attention` per layer (transformers 5.x).
    layer_types: Option<Vec<String>>,
    rope_local_base_freq: Option<f64>,
    hidden_activation: Option<String>,
    final_logit_softcapping: Option<f64>,
    attn_logit_softcapping: Option<f64>,
}

/// What a GGUF file carries beyond `config.json`'s fields (llama.cpp's conventions).
#[derive(Debug, Default)]
struct GgufFields {
    /// llama.cpp's converter permutes Llama's q/k rows (interleaved rotary pairs).
    rope_style: Option<RopeStyle>,
    rope_dim: Option<usize>,
    /// From `rope_freqs.weight` or `rope.scaling.*`.
    rope_scaling: Option<RopeScaling>,
    attn_scale: Option<f32>,
    /// One flag per layer (`attention.sliding_window_pattern` as an array).
    sliding_layers: Option<Vec<bool>>,
}

impl ConfigFile {
    /// Reads a GGUF file's `{arch}.*` metadata into `config.json`'s fields.
    fn from_gguf(g: &Gguf) -> Result<Self> {
        let arch = g.architecture()?.to_string();
        let Some(a) = Architecture::of_gguf(&arch) else {
            return Err(Error::UnknownArchitecture(arch));
        };
        let model_type = a.model_types.first().copied().unwrap_or(a.gguf);
        let rope_style = a.gguf_rope;
        let k = |s: &str| format!("{arch}.{s}");
        let hidden_size = g.get_usize(&k("embedding_length"))?;
        let num_heads = g.get_usize(&k("attention.head_count"))?;
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
        let mut g3 = Gemma3Fields::default();
        let mut sliding_layers = None;
        if gemma3 {
            // llama.cpp: `sliding_window_pattern` is a period or one flag per layer
            let key = k("attention.sliding_window_pattern");
            match g.get(&key) {
                Some(MetaValue::Array(flags)) => {
                    sliding_layers = Some(
                        flags
                            .iter()
                            .map(|f| match f {
                                MetaValue::Bool(b) => Ok(*b),
                                _ => Err(Error::MetadataType {
                                    key: key.clone(),
                                    expected: "array of booleans",
                                }),
                            })
                            .collect::<Result<Vec<bool>>>()?,
                    )
                }
                Some(_) => g3.sliding_window_pattern = Some(g.get_usize(&key)?),
                None => {}
            }
            g3.sliding_window = Some(g.get_usize(&k("attention.sliding_window"))?);
            // GGUF has no local rotary base: llama.cpp's 10000
            g3.rope_local_base_freq = Some(10_000.0);
        }
        // `attention.scale` when given; else llama.cpp's rule for Gemma 3: 1/√(hidden/heads)
        // for the 27B (62 layers; its query_pre_attn_scalar), 1/√head_dim otherwise
        let attn_scale = match g.get_f64(&k("attention.scale")) {
            Ok(s) => Some(s as f32),
            Err(_) if gemma3 && num_layers == 62 => {
                Some(1.0 / ((hidden_size / num_heads.max(1)) as f32).sqrt())
            }
            Err(_) => None,
        };
        Ok(Self {
            model_type: Some(model_type.into()),
            vocab_size: Some(vocab_size),
            hidden_size: Some(hidden_size),
            intermediate_size: Some(g.get_usize(&k("feed_forward_length"))?),
            num_hidden_layers: Some(num_layers),
            num_attention_heads: Some(num_heads),
            num_key_value_heads: Some(
                g.get_usize(&k("attention.head_count_kv"))
                    .unwrap_or(num_heads),
            ),
            head_dim: Some(head_dim),
            rms_norm_eps: Some(g.get_f64(&k("attention.layer_norm_rms_epsilon"))?),
            rope_theta: Some(g.get_f64(&k("rope.freq_base")).unwrap_or(10_000.0)),
            rope_scaling: None,
            rope_parameters: None,
            max_position_embeddings: Some(g.get_usize(&k("context_length")).unwrap_or(4096)),
            tie_word_embeddings: Some(!g.has_tensor("output.weight")),
            gemma3: g3,
            gguf: GgufFields {
                rope_style: Some(rope_style),
                rope_dim: Some(g.get_usize(&k("rope.dimension_count")).unwrap_or(head_dim)),
                rope_scaling: Some(rope_scaling),
                attn_scale,
                sliding_layers,
            },
        })
    }

    /// The hyper-parameters the network reads, with each architecture's defaults and rules.
    fn resolve(self) -> Result<LlamaConfig> {
        let need = |v: Option<usize>, k: &str| {
            v.ok_or_else(|| Error::Config(format!("config.json lacks {k}")))
        };
        let model_type = self.model_type.as_deref().unwrap_or("llama");
        let Some(arch) = Architecture::of_model_type(model_type) else {
            return Err(Error::UnknownArchitecture(model_type.into()));
        };
        let architecture = arch.gguf;
        let gemma3 = architecture == "gemma3";
        let g3 = &self.gemma3;
        if gemma3 {
            if g3.final_logit_softcapping.is_some() {
                return Err(Error::Config("unsupported final_logit_softcapping".into()));
            }
            if g3.attn_logit_softcapping.is_some() {
                return Err(Error::Config("unsupported attn_logit_softcapping".into()));
            }
            let act = g3.hidden_activation.as_deref();
            if act.is_some_and(|a| a != "gelu_pytorch_tanh") {
                return Err(Error::Config(format!("unsupported activation {act:?}")));
            }
        }
        let hidden_size = need(self.hidden_size, "hidden_size")?;
        let num_heads = need(self.num_attention_heads, "num_attention_heads")?;
        let head_dim = self
            .head_dim
            .unwrap_or(hidden_size.checked_div(num_heads).unwrap_or(0));
        let num_layers = need(self.num_hidden_layers, "num_hidden_layers")?;
        // transformers 5 writes `rope_parameters` (with `rope_theta` inside; Gemma 3: one set
        // per layer type); 4.x wrote `rope_scaling` next to a top-level `rope_theta`
        let mut rope_params = self
            .rope_parameters
            .as_ref()
            .filter(|s| s.is_object())
            .or_else(|| self.rope_scaling.as_ref().filter(|s| s.is_object()));
        let mut rope_local = None;
        if let Some(p) = rope_params.filter(|p| p.get("full_attention").is_some()) {
            rope_local = p.get("sliding_attention");
            rope_params = p.get("full_attention");
        }
        let rope_theta = rope_params
            .and_then(|p| p.get("rope_theta"))
            .and_then(|x| x.as_f64())
            .or(self.rope_theta)
            .unwrap_or(if gemma3 { 1_000_000.0 } else { 10_000.0 }) as f32;
        let rope_scaling = match (self.gguf.rope_scaling, rope_params) {
            (Some(s), _) => s,
            (None, None) => RopeScaling::None,
            (None, Some(s)) => rope_scaling_of(s)?,
        };
        let sliding = if gemma3 {
            let layers: Vec<bool> = match (self.gguf.sliding_layers, &g3.layer_types) {
                (Some(flags), _) => flags,
                (None, Some(types)) => types.iter().map(|t| t == "sliding_attention").collect(),
                (None, None) => {
                    // every 6th layer global unless the pattern says otherwise
                    let pattern = g3.sliding_window_pattern.unwrap_or(6).max(1);
                    (0..num_layers).map(|i| (i + 1) % pattern != 0).collect()
                }
            };
            if layers.len() != num_layers {
                return Err(Error::Config(format!(
                    "layer_types lists {} layers, not {num_layers}",
                    layers.len()
                )));
            }
            // local layers: their own base, unscaled
            let local_theta = rope_local
                .and_then(|p| p.get("rope_theta"))
                .and_then(|x| x.as_f64())
                .or(g3.rope_local_base_freq)
                .unwrap_or(10_000.0) as f32;
            Some(SlidingWindow {
                window: g3.sliding_window.unwrap_or(4096),
                layers,
                rope_theta: local_theta,
            })
        } else {
            None
        };
        let attn_scale = match (self.gguf.attn_scale, g3.query_pre_attn_scalar) {
            (Some(s), _) => s,
            (None, Some(q)) if gemma3 => (1.0 / q.sqrt()) as f32,
            _ => 1.0 / (head_dim as f32).sqrt(),
        };
        let cfg = LlamaConfig {
            vocab_size: need(self.vocab_size, "vocab_size")?,
            hidden_size,
            intermediate_size: need(self.intermediate_size, "intermediate_size")?,
            num_layers,
            num_heads,
            num_kv_heads: self.num_key_value_heads.unwrap_or(num_heads),
            head_dim,
            rope_dim: self.gguf.rope_dim.unwrap_or(head_dim),
            rms_eps: self.rms_norm_eps.unwrap_or(1e-6) as f32,
            rope_theta,
            rope_style: self.gguf.rope_style.unwrap_or(RopeStyle::Neox),
            rope_scaling,
            context_length: self.max_position_embeddings.unwrap_or(4096),
            tie_word_embeddings: self.tie_word_embeddings.unwrap_or(gemma3),
            // Gemma: embeddings scaled by √hidden_size, GeGLU
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
            architecture: architecture.into(),
        };
        cfg.validate()?;
        Ok(cfg)
    }
}

/// A `config.json` rotary-scaling object (`rope_scaling` or `rope_parameters`).
fn rope_scaling_of(s: &serde_json::Value) -> Result<RopeScaling> {
    let ty = s
        .get("rope_type")
        .or_else(|| s.get("type"))
        .and_then(|x| x.as_str())
        .unwrap_or("default");
    let f = |k: &str, d: f64| s.get(k).and_then(|x| x.as_f64()).unwrap_or(d) as f32;
    Ok(match ty {
        "default" => RopeScaling::None,
        "linear" => RopeScaling::Linear(f("factor", 1.0)),
        "llama3" => RopeScaling::Llama3 {
            factor: f("factor", 8.0),
            low_freq_factor: f("low_freq_factor", 1.0),
            high_freq_factor: f("high_freq_factor", 4.0),
            original_max_position_embeddings: s
                .get("original_max_position_embeddings")
                .and_then(|x| x.as_u64())
                .unwrap_or(8192) as usize,
        },
        other => return Err(Error::Config(format!("unsupported rope scaling {other:?}"))),
    })
}

impl LlamaConfig {
    /// Reads `{arch}.*` metadata of a GGUF file (into the same `ConfigFile` a
    /// `config.json` gives, so both sources are resolved by one function).
    pub fn from_gguf(g: &Gguf) -> Result<Self> {
        ConfigFile::from_gguf(g)?.resolve()
    }

    /// Reads a Hugging Face `config.json` (`LlamaForCausalLM`, `Qwen2ForCausalLM`,
    /// `Qwen3ForCausalLM`, `Gemma3ForCausalLM`).
    pub fn from_hf_json(v: &serde_json::Value) -> Result<Self> {
        let file: ConfigFile = serde_json::from_value(v.clone())
            .map_err(|e| Error::Config(format!("config.json: {e}")))?;
        file.resolve()
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn gemma3_config_as_transformers_5_writes_it() {
        let v = serde_json::json!({
            "model_type": "gemma3_text", "vocab_size": 100, "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 4,
            "num_key_value_heads": 1, "head_dim": 32, "query_pre_attn_scalar": 16,
            "layer_types": ["sliding_attention", "sliding_attention", "full_attention"],
            "sliding_window": 16, "tie_word_embeddings": false,
            "rope_parameters": {
                "full_attention": {"rope_type": "linear", "factor": 8.0, "rope_theta": 1e6},
                "sliding_attention": {"rope_type": "default", "rope_theta": 1e4}
            }
        });
        let c = LlamaConfig::from_hf_json(&v).expect("config");
        let s = c.sliding.clone().expect("sliding");
        assert_eq!(s.layers, [true, true, false]);
        assert_eq!((s.window, s.rope_theta), (16, 10_000.0));
        assert_eq!(
            (c.rope_theta, c.rope_scaling),
            (1e6, RopeScaling::Linear(8.0))
        );
        assert_eq!(c.attn_scale, 0.25);
        assert!(!c.tie_word_embeddings);
        // one flag per layer, or it is refused
        let mut short = v.clone();
        short["layer_types"] = serde_json::json!(["full_attention"]);
        let e = LlamaConfig::from_hf_json(&short).unwrap_err();
        assert!(e.to_string().contains("layer_types"), "{e}");
        // what no architecture here reads is refused by name
        let mut other = v;
        other["model_type"] = serde_json::json!("phi3");
        assert!(matches!(
            LlamaConfig::from_hf_json(&other),
            Err(Error::UnknownArchitecture(t)) if t == "phi3"
        ));
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
