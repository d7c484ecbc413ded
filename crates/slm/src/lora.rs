//! LoRA adapters in PEFT format (`adapter_config.json` + `adapter_model.safetensors`), applied
//! unmerged (several over one base, chosen per request) or merged into the base weights.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::llama::{Llama, PROJECTIONS, RopeStyle};
use crate::nn::{Lora, Weight};
use crate::quant::PackedMatrix;

/// The fields of PEFT's `adapter_config.json` that matter here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdapterConfig {
    /// Rank of the adapter matrices.
    pub r: usize,
    /// Scale numerator: the update is `B·A · lora_alpha / r` (see [`AdapterConfig::scale`]).
    pub lora_alpha: f64,
    /// The modules PEFT adapted (for the record; the pairs are read from the tensor names).
    #[serde(default)]
    pub target_modules: TargetModules,
    /// The base model it was trained on, as PEFT wrote it.
    #[serde(default)]
    pub base_model_name_or_path: Option<String>,
    /// rsLoRA: scale by `lora_alpha / √r` instead.
    #[serde(default)]
    pub use_rslora: bool,
    /// The matrices are stored transposed (`[in, out]`), as for GPT-2-style `Conv1D` layers.
    #[serde(default)]
    pub fan_in_fan_out: bool,
    /// Must be `LORA`; anything else is refused.
    #[serde(default = "default_peft_type")]
    pub peft_type: String,
}

fn default_peft_type() -> String {
    "LORA".into()
}

/// `target_modules` is a list or a regex string in PEFT.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetModules {
    /// Module names (`q_proj`, `v_proj`, …).
    List(Vec<String>),
    /// A regex over full module names.
    Pattern(String),
}

impl Default for TargetModules {
    fn default() -> Self {
        TargetModules::List(Vec::new())
    }
}

impl AdapterConfig {
    /// `lora_alpha / r` (or `/ sqrt(r)` with rsLoRA).
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }
}

/// One projection's adapter matrices.
#[derive(Clone, Debug)]
pub struct LoraPair {
    /// The transformer block it belongs to.
    pub layer: usize,
    /// PEFT module name (`q_proj`, ...).
    pub module: String,
    /// `[r, in]`
    pub a: Tensor,
    /// `[out, r]`
    pub b: Tensor,
}

/// A PEFT LoRA adapter read from disk.
#[derive(Clone, Debug)]
pub struct LoraAdapter {
    /// The folder's name.
    pub name: String,
    /// The folder it was read from.
    pub path: PathBuf,
    /// Its `adapter_config.json`.
    pub config: AdapterConfig,
    /// One pair of matrices per adapted projection.
    pub pairs: Vec<LoraPair>,
}

impl LoraAdapter {
    /// Reads a PEFT adapter folder.
    pub fn load(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let cfg_path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| Error::io(&cfg_path, e))?;
        let config: AdapterConfig = serde_json::from_str(&text)
            .map_err(|e| Error::Adapter(format!("{}: {e}", cfg_path.display())))?;
        if config.peft_type != "LORA" {
            return Err(Error::Adapter(format!(
                "peft_type {} is not LORA",
                config.peft_type
            )));
        }
        if config.r == 0 {
            return Err(Error::Adapter("rank r = 0".into()));
        }
        let st = dir.join("adapter_model.safetensors");
        if !st.exists() {
            return Err(Error::Adapter(format!(
                "{} is missing (only safetensors adapters are read)",
                st.display()
            )));
        }
        let tensors = candle_core::safetensors::load(&st, &Device::Cpu)
            .map_err(|e| Error::Adapter(format!("{}: {e}", st.display())))?;
        let pairs = pairs_from_tensors(&tensors, &config)?;
        Ok(Self {
            name: dir
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
            path: dir.to_path_buf(),
            config,
            pairs,
        })
    }
}

/// Groups `...layers.{i}.{self_attn|mlp}.{module}.lora_{A|B}.weight` tensors.
fn pairs_from_tensors(t: &HashMap<String, Tensor>, cfg: &AdapterConfig) -> Result<Vec<LoraPair>> {
    let mut found: HashMap<(usize, String), (Option<Tensor>, Option<Tensor>)> = HashMap::new();
    for (name, tensor) in t {
        let Some(rest) = name.split(".layers.").nth(1) else {
            continue;
        };
        let mut parts = rest.split('.');
        let layer: usize = parts
            .next()
            .and_then(|p| p.parse().ok())
            .ok_or_else(|| Error::Adapter(format!("cannot read the layer of {name}")))?;
        let parts: Vec<&str> = parts.collect();
        let Some(pos) = parts.iter().position(|p| *p == "lora_A" || *p == "lora_B") else {
            continue; // e.g. lora_embedding or magnitude vectors
        };
        if pos == 0 {
            return Err(Error::Adapter(format!("cannot read the module of {name}")));
        }
        let module = parts[pos - 1].to_string();
        if !PROJECTIONS.contains(&module.as_str()) {
            return Err(Error::Adapter(format!(
                "{name}: module {module} is not a supported projection ({PROJECTIONS:?})"
            )));
        }
        let t = tensor.to_dtype(DType::F32)?;
        let t = if cfg.fan_in_fan_out {
            t.t()?.contiguous()?
        } else {
            t
        };
        let e = found.entry((layer, module)).or_default();
        if parts[pos] == "lora_A" {
            e.0 = Some(t);
        } else {
            e.1 = Some(t);
        }
    }
    let mut pairs = Vec::new();
    for ((layer, module), (a, b)) in found {
        let (Some(a), Some(b)) = (a, b) else {
            return Err(Error::Adapter(format!(
                "layer {layer} {module}: lora_A and lora_B must both be present"
            )));
        };
        if a.dims().len() != 2 || b.dims().len() != 2 || a.dims()[0] != b.dims()[1] {
            return Err(Error::Adapter(format!(
                "layer {layer} {module}: lora_A {:?} and lora_B {:?} do not chain",
                a.dims(),
                b.dims()
            )));
        }
        pairs.push(LoraPair {
            layer,
            module,
            a,
            b,
        });
    }
    if pairs.is_empty() {
        return Err(Error::Adapter(
            "no LoRA weights found in adapter_model.safetensors".into(),
        ));
    }
    pairs.sort_by(|x, y| (x.layer, &x.module).cmp(&(y.layer, &y.module)));
    Ok(pairs)
}

/// llama.cpp's converter permutes q/k rows of Llama models so that rotary pairs are adjacent;
/// adapter rows for those projections need the same permutation.
fn permute_rows(b: &Tensor, n_head: usize) -> Result<Tensor> {
    let (out, r) = b.dims2()?;
    Ok(b.reshape((n_head, 2, out / n_head / 2, r))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, r))?)
}

impl Llama {
    fn checked_pair(&self, p: &LoraPair) -> Result<(Tensor, Tensor)> {
        let cfg = &self.config;
        if p.layer >= cfg.num_layers {
            return Err(Error::Adapter(format!(
                "adapter targets layer {} but the model has {} layers (adapter for another base?)",
                p.layer, cfg.num_layers
            )));
        }
        let qd = cfg.num_heads * cfg.head_dim;
        let kvd = cfg.num_kv_heads * cfg.head_dim;
        let (h, ff) = (cfg.hidden_size, cfg.intermediate_size);
        let (out, inp) = match p.module.as_str() {
            "q_proj" => (qd, h),
            "k_proj" | "v_proj" => (kvd, h),
            "o_proj" => (h, qd),
            "gate_proj" | "up_proj" => (ff, h),
            _ => (h, ff),
        };
        let (r, a_in) = p.a.dims2()?;
        let (b_out, _) = p.b.dims2()?;
        if a_in != inp || b_out != out {
            return Err(Error::Adapter(format!(
                "layer {} {}: adapter maps {a_in} -> {b_out} (rank {r}) but the model's projection maps {inp} -> {out} (adapter for another base?)",
                p.layer, p.module
            )));
        }
        let b = match (cfg.rope_style, p.module.as_str()) {
            (RopeStyle::Interleaved, "q_proj") => permute_rows(&p.b, cfg.num_heads)?,
            (RopeStyle::Interleaved, "k_proj") => permute_rows(&p.b, cfg.num_kv_heads)?,
            _ => p.b.clone(),
        };
        Ok((p.a.clone(), b))
    }

    /// Attaches an adapter without changing the base weights; select it per forward pass with
    /// `AdapterSel::One(id)`. Returns the id.
    pub fn attach_adapter(&mut self, adapter: &LoraAdapter) -> Result<usize> {
        let id = self
            .blocks
            .iter()
            .flat_map(|b| b.qkv.iter().chain(b.gate_up.iter()).chain([&b.o, &b.down]))
            .flat_map(|l| l.loras.iter().map(|x| x.adapter + 1))
            .max()
            .unwrap_or(0);
        // validate everything before changing the model
        let checked: Vec<(&LoraPair, Tensor, Tensor)> = adapter
            .pairs
            .iter()
            .map(|p| self.checked_pair(p).map(|(a, b)| (p, a, b)))
            .collect::<Result<_>>()?;
        let scale = adapter.config.scale();
        for (p, a, b) in checked {
            let (lin, off, _) = self.projection_mut(p.layer, &p.module)?;
            lin.loras.push(Lora {
                adapter: id,
                out_offset: off,
                a,
                b,
                scale,
            });
        }
        Ok(id)
    }

    /// Removes an attached adapter.
    pub fn detach_adapter(&mut self, id: usize) {
        for b in &mut self.blocks {
            for l in b
                .qkv
                .iter_mut()
                .chain(b.gate_up.iter_mut())
                .chain([&mut b.o, &mut b.down])
            {
                l.loras.retain(|x| x.adapter != id);
            }
        }
    }

    /// Adds `scale · B A` into the base weights. Quantized projections are dequantized, updated
    /// and re-quantized to Q8_0; dense ones stay dense.
    pub fn merge_adapter(&mut self, adapter: &LoraAdapter) -> Result<()> {
        let checked: Vec<(&LoraPair, Tensor, Tensor)> = adapter
            .pairs
            .iter()
            .map(|p| self.checked_pair(p).map(|(a, b)| (p, a, b)))
            .collect::<Result<_>>()?;
        let scale = adapter.config.scale();
        for (p, a, b) in checked {
            let (lin, off, len) = self.projection_mut(p.layer, &p.module)?;
            let delta = (b.matmul(&a)? * scale)?;
            let w = lin.weight.dequantize()?;
            let rows = w.dims2()?.0;
            let delta = delta.pad_with_zeros(0, off, rows - off - len)?;
            let merged = (w + delta)?;
            lin.weight = match &lin.weight {
                Weight::Dense(_) => Weight::Dense(merged),
                _ => {
                    let (r, c) = merged.dims2()?;
                    let v: Vec<f32> = merged.flatten_all()?.to_vec1()?;
                    match PackedMatrix::quantize_q8_0(&v, r, c) {
                        Some(m) => Weight::Packed(Arc::new(m)),
                        None => Weight::Dense(merged),
                    }
                }
            };
        }
        Ok(())
    }
}
