//! Adapter export in PEFT format, the specialist's metadata (the prompt transform the router
//! must repeat), checkpoints with atomic writes, and resume.
//!
//! A PEFT folder holds `adapter_config.json` and `adapter_model.safetensors` with PEFT's tensor
//! names (`base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight`, A `[r, in]`,
//! B `[out, r]`), plus `downshift_specialist.json` ([`SpecialistMeta`], the specialist
//! contract of `downshift-slm`).
//!
//! A checkpoint is a folder `step-NNNNNNNN` under a root, written as a hidden temporary
//! folder and renamed into place; `latest` (itself replaced atomically) names the newest. A
//! failure while writing leaves the previous checkpoint and `latest` untouched.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use downshift_slm::{Llama, RopeStyle, Specialist, SpecialistMeta, base_fingerprint};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::trainer::{TrainConfig, TrainState, Trainer};

fn peft_prefix(layer: usize, module: &str) -> String {
    let kind = if matches!(module, "gate_proj" | "up_proj" | "down_proj") {
        "mlp"
    } else {
        "self_attn"
    };
    format!("base_model.model.model.layers.{layer}.{kind}.{module}")
}

/// Undoes llama.cpp's q/k row permutation (the model's internal order for GGUF Llama) so B
/// is in Hugging Face order.
fn unpermute_rows(b: &Tensor, n_head: usize) -> Result<Tensor> {
    let (out, r) = b.dims2()?;
    Ok(b.reshape((n_head, out / n_head / 2, 2, r))?
        .transpose(1, 2)?
        .contiguous()?
        .reshape((out, r))?)
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = tmp_sibling(path);
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    res.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TrainError::io(path, e)
    })
}

fn tmp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn save_tensors_atomic(path: &Path, t: &HashMap<String, Tensor>) -> Result<()> {
    let tmp = tmp_sibling(path);
    let res = candle_core::safetensors::save(t, &tmp)
        .map_err(|e| TrainError::Checkpoint {
            path: path.display().to_string(),
            msg: e.to_string(),
        })
        .and_then(|_| {
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .and_then(|_| std::fs::rename(&tmp, path))
                .map_err(|e| TrainError::io(path, e))
        });
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

impl Trainer {
    /// The adapter's tensors under PEFT names, in Hugging Face row order.
    pub fn peft_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let cfg = &self.model.config;
        let mut out = HashMap::new();
        for s in &self.slots {
            let p = peft_prefix(s.layer, &s.module);
            let b = s.b.as_tensor();
            let b = match (cfg.rope_style, s.module.as_str()) {
                (RopeStyle::Interleaved, "q_proj") => unpermute_rows(b, cfg.num_heads)?,
                (RopeStyle::Interleaved, "k_proj") => unpermute_rows(b, cfg.num_kv_heads)?,
                _ => b.copy()?,
            };
            out.insert(format!("{p}.lora_A.weight"), s.a.as_tensor().copy()?);
            out.insert(format!("{p}.lora_B.weight"), b);
        }
        Ok(out)
    }

    /// PEFT's `adapter_config.json` for this run.
    pub fn peft_config(&self, base_model: &str) -> serde_json::Value {
        let c = &self.config;
        serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "r": c.rank,
            "lora_alpha": c.alpha,
            "lora_dropout": c.dropout,
            "target_modules": c.targets,
            "base_model_name_or_path": base_model,
            "bias": "none",
            "fan_in_fan_out": false,
            "use_rslora": false,
            "inference_mode": true,
            "modules_to_save": null,
            "init_lora_weights": true,
            "layers_to_transform": (c.frozen_layers > 0)
                .then(|| (c.frozen_layers..self.model.config.num_layers).collect::<Vec<_>>()),
        })
    }

    /// Writes the adapter in PEFT format with its metadata into `dir` (created if needed);
    /// each file is replaced atomically.
    pub fn save_adapter(&self, dir: &Path, meta: &SpecialistMeta) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        save_tensors_atomic(
            &dir.join("adapter_model.safetensors"),
            &self.peft_tensors()?,
        )?;
        write_atomic(
            &dir.join("adapter_config.json"),
            serde_json::to_string_pretty(&self.peft_config(&meta.base_model))?.as_bytes(),
        )?;
        write_atomic(
            &dir.join(SpecialistMeta::FILE),
            serde_json::to_string_pretty(meta)?.as_bytes(),
        )
    }

    /// Saves a checkpoint (adapter, optimizer moments, best weights, run state) as
    /// `root/step-NNNNNNNN` and points `root/latest` at it. Returns its folder.
    pub fn save_checkpoint(&self, root: &Path, meta: &SpecialistMeta) -> Result<PathBuf> {
        std::fs::create_dir_all(root).map_err(|e| TrainError::io(root, e))?;
        let name = format!("step-{:08}", self.state.step);
        let dest = root.join(&name);
        let tmp = root.join(format!(".tmp-{name}-{}", std::process::id()));
        if tmp.exists() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        let res = (|| -> Result<()> {
            std::fs::create_dir(&tmp).map_err(|e| TrainError::io(&tmp, e))?;
            self.save_adapter(&tmp, meta)?;
            let mut t = HashMap::new();
            for (i, x) in self.lora_tensors().into_iter().enumerate() {
                t.insert(format!("lora.{i}"), x);
            }
            let (steps, m, v) = self.opt.state();
            for (i, (m, v)) in m.iter().zip(v).enumerate() {
                t.insert(format!("adam.m.{i}"), m.clone());
                t.insert(format!("adam.v.{i}"), v.clone());
            }
            if let Some(best) = &self.best {
                for (i, x) in best.iter().enumerate() {
                    t.insert(format!("best.{i}"), x.clone());
                }
            }
            save_tensors_atomic(&tmp.join("trainer.safetensors"), &t)?;
            let st = CheckpointState {
                state: self.state.clone(),
                config: self.config.clone(),
                adam_steps: steps,
                base_fingerprint: base_fingerprint(&self.model.config),
            };
            write_atomic(
                &tmp.join("trainer_state.json"),
                serde_json::to_string_pretty(&st)?.as_bytes(),
            )?;
            if dest.is_dir() {
                std::fs::remove_dir_all(&dest).map_err(|e| TrainError::io(&dest, e))?;
            }
            std::fs::rename(&tmp, &dest).map_err(|e| TrainError::io(&dest, e))?;
            write_atomic(&root.join("latest"), name.as_bytes())
        })();
        if res.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        res.map(|_| dest)
    }

    /// Continues the run saved under `root` (the checkpoint `root/latest` names) on `model`,
    /// the same base it was trained on.
    pub fn resume(model: Llama, root: &Path) -> Result<Self> {
        let latest = root.join("latest");
        let name = std::fs::read_to_string(&latest).map_err(|e| TrainError::io(&latest, e))?;
        let dir = root.join(name.trim());
        let ck = |msg: String| TrainError::Checkpoint {
            path: dir.display().to_string(),
            msg,
        };
        let sp = dir.join("trainer_state.json");
        let text = std::fs::read_to_string(&sp).map_err(|e| TrainError::io(&sp, e))?;
        let st: CheckpointState = serde_json::from_str(&text)?;
        let fp = base_fingerprint(&model.config);
        if st.base_fingerprint != fp {
            return Err(TrainError::OtherBase(format!(
                "checkpoint {} was trained on {} but the model is {fp}",
                dir.display(),
                st.base_fingerprint
            )));
        }
        let mut tr = Trainer::new(model, st.config)?;
        let tp = dir.join("trainer.safetensors");
        let t = candle_core::safetensors::load(&tp, &Device::Cpu)
            .map_err(|e| ck(format!("trainer.safetensors: {e}")))?;
        let get = |k: String| {
            t.get(&k)
                .cloned()
                .ok_or_else(|| ck(format!("trainer.safetensors lacks {k}")))
        };
        let n = 2 * tr.slots.len();
        let lora = (0..n)
            .map(|i| get(format!("lora.{i}")))
            .collect::<Result<Vec<_>>>()?;
        tr.set_lora_tensors(&lora)?;
        let m = (0..n)
            .map(|i| get(format!("adam.m.{i}")))
            .collect::<Result<Vec<_>>>()?;
        let v = (0..n)
            .map(|i| get(format!("adam.v.{i}")))
            .collect::<Result<Vec<_>>>()?;
        tr.opt.set_state(st.adam_steps, m, v)?;
        if t.contains_key("best.0") {
            tr.best = Some(
                (0..n)
                    .map(|i| get(format!("best.{i}")))
                    .collect::<Result<Vec<_>>>()?,
            );
        }
        tr.state = st.state;
        Ok(tr)
    }
}

/// Removes all but the newest `keep` checkpoints under `root` (never the one `latest`
/// names). Returns the folders removed.
pub fn prune_checkpoints(root: &Path, keep: usize) -> Result<Vec<PathBuf>> {
    let latest = std::fs::read_to_string(root.join("latest")).unwrap_or_default();
    let mut steps: Vec<String> = std::fs::read_dir(root)
        .map_err(|e| TrainError::io(root, e))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .collect();
    steps.sort();
    let n = steps.len().saturating_sub(keep);
    let mut removed = Vec::new();
    for name in steps.into_iter().take(n) {
        if name == latest.trim() {
            continue;
        }
        let p = root.join(&name);
        std::fs::remove_dir_all(&p).map_err(|e| TrainError::io(&p, e))?;
        removed.push(p);
    }
    Ok(removed)
}

#[derive(Serialize, Deserialize)]
struct CheckpointState {
    state: TrainState,
    config: TrainConfig,
    adam_steps: u64,
    base_fingerprint: String,
}

/// Opens the adapter folder ([`Specialist::open`]) and attaches it to `model` (unmerged);
/// returns its id and metadata. An adapter whose `downshift_specialist.json` names another
/// base, or whose shapes do not fit the model, is refused with [`TrainError::OtherBase`].
pub fn load_adapter(model: &mut Llama, dir: &Path) -> Result<(usize, Option<SpecialistMeta>)> {
    let s = Specialist::open(dir)?;
    let id = s.attach_to(model)?;
    Ok((id, s.meta().cloned()))
}

/// Writes a merged model: the Hugging Face folder `base_dir` (`config.json` +
/// `model.safetensors[.index.json]`) with `scale · B A` of the PEFT adapter in `adapter_dir`
/// added to each adapted projection, as one `model.safetensors` in `out_dir` beside copies of
/// the base's other files (config, tokenizer). The weights keep the base's dtype. A GGUF
/// base has no Hugging Face tensor names to write back to; merge onto its original folder.
pub fn merge_to_hf_dir(base_dir: &Path, adapter_dir: &Path, out_dir: &Path) -> Result<()> {
    let folder = Specialist::open(adapter_dir)?;
    let adapter = folder.adapter();
    let scale = adapter.config.scale();
    let idx = base_dir.join("model.safetensors.index.json");
    let mut files = Vec::new();
    if idx.exists() {
        let text = std::fs::read_to_string(&idx).map_err(|e| TrainError::io(&idx, e))?;
        let v: serde_json::Value = serde_json::from_str(&text)?;
        let mut names: Vec<String> = v["weight_map"]
            .as_object()
            .map(|m| {
                m.values()
                    .filter_map(|x| x.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names.dedup();
        files.extend(names.into_iter().map(|n| base_dir.join(n)));
    } else {
        files.push(base_dir.join("model.safetensors"));
    }
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    for f in &files {
        if !f.exists() {
            return Err(TrainError::Config(format!(
                "{} is missing: merging needs the base as a Hugging Face folder",
                f.display()
            )));
        }
        let t = candle_core::safetensors::load(f, &Device::Cpu).map_err(|e| {
            TrainError::Checkpoint {
                path: f.display().to_string(),
                msg: e.to_string(),
            }
        })?;
        tensors.extend(t);
    }
    for p in &adapter.pairs {
        let name = format!(
            "{}.weight",
            peft_prefix(p.layer, &p.module).trim_start_matches("base_model.model.")
        );
        let w = tensors.get(&name).ok_or_else(|| {
            TrainError::OtherBase(format!("the base has no tensor {name} for the adapter"))
        })?;
        let delta = (p.b.matmul(&p.a)? * scale)?;
        if delta.dims() != w.dims() {
            return Err(TrainError::OtherBase(format!(
                "{name}: the adapter's update is {:?}, the weight {:?}",
                delta.dims(),
                w.dims()
            )));
        }
        let dtype = w.dtype();
        let merged = (w.to_dtype(candle_core::DType::F32)? + delta)?.to_dtype(dtype)?;
        tensors.insert(name, merged);
    }
    std::fs::create_dir_all(out_dir).map_err(|e| TrainError::io(out_dir, e))?;
    for entry in std::fs::read_dir(base_dir).map_err(|e| TrainError::io(base_dir, e))? {
        let entry = entry.map_err(|e| TrainError::io(base_dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_weights = name.ends_with(".safetensors") || name == "model.safetensors.index.json";
        if is_weights || !entry.path().is_file() {
            continue;
        }
        let bytes = std::fs::read(entry.path()).map_err(|e| TrainError::io(&entry.path(), e))?;
        write_atomic(&out_dir.join(&name), &bytes)?;
    }
    save_tensors_atomic(&out_dir.join("model.safetensors"), &tensors)
}
