//! Test support: rebuilds the tiny random models of the architecture-parity fixtures
//! (`tests/fixtures/arch/<name>`) from their `weights.json`, so no weight file is committed.
//! The values come from the same portable generator as `bench/slm/make_arch_fixtures.py`
//! (splitmix64 seeded by the FNV-1a hash of `<seed_prefix>/<tensor name>`, uniform with unit
//! variance, then scaled and offset), computed with exactly rounded operations only, so both
//! sides produce the same bits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use serde::Deserialize;

use crate::error::{Error, Result};

#[derive(Deserialize)]
struct Manifest {
    seed_prefix: String,
    tensors: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    name: String,
    shape: Vec<usize>,
    scale: f64,
    offset: f64,
}

/// `count` values of unit variance times `scale` plus `offset` (see the module docs).
pub fn portable_values(seed: &str, count: usize, scale: f64, offset: f64) -> Vec<f32> {
    let mut state = fnv(seed.as_bytes());
    let root3 = 3f64.sqrt();
    (0..count)
        .map(|_| {
            state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            let u = (z >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
            (offset + scale * ((2.0 * u - 1.0) * root3)) as f32
        })
        .collect()
}

/// A Hugging Face folder (`config.json` + `model.safetensors`) for the fixture in `src`
/// (`config.json` + `weights.json`), built once under the system's temporary directory and
/// reused while its inputs are unchanged.
pub fn materialize_fixture(src: &Path) -> Result<PathBuf> {
    let read = |name: &str| -> Result<Vec<u8>> {
        let p = src.join(name);
        std::fs::read(&p).map_err(|e| Error::io(&p, e))
    };
    let config = read("config.json")?;
    let weights = read("weights.json")?;
    let key = fnv(&[config.as_slice(), weights.as_slice()].concat());
    let leaf = src
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = std::env::temp_dir()
        .join("downshift-arch-fixtures")
        .join(format!("{leaf}-{key:016x}"));
    if out.join("model.safetensors").exists() {
        return Ok(out);
    }
    let manifest: Manifest = serde_json::from_slice(&weights)?;
    let mut tensors = HashMap::new();
    for t in &manifest.tensors {
        let count = t.shape.iter().product();
        let seed = format!("{}/{}", manifest.seed_prefix, t.name);
        let v = portable_values(&seed, count, t.scale, t.offset);
        tensors.insert(
            t.name.clone(),
            Tensor::from_vec(v, t.shape.as_slice(), &Device::Cpu)?,
        );
    }
    // Built beside the final place and renamed into it, so concurrent tests never see half.
    let tmp = out.with_extension(format!("tmp{}", std::process::id()));
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    candle_core::safetensors::save(&tensors, tmp.join("model.safetensors"))?;
    std::fs::write(tmp.join("config.json"), &config).map_err(|e| Error::io(&tmp, e))?;
    if std::fs::rename(&tmp, &out).is_err() {
        // Another process got there first.
        let _ = std::fs::remove_dir_all(&tmp);
    }
    if !out.join("model.safetensors").exists() {
        return Err(Error::Config(format!(
            "could not build the fixture model in {}",
            out.display()
        )));
    }
    Ok(out)
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// The largest absolute element difference of two tensors of the same shape (panics on a shape
/// mismatch: a test helper).
#[allow(
    clippy::expect_used,
    reason = "a test helper: a failure is the test failing"
)]
pub fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shapes differ");
    (a - b)
        .and_then(|d| d.abs())
        .and_then(|d| d.max_all())
        .and_then(|d| d.to_scalar::<f32>())
        .expect("difference of two f32 tensors")
}

/// Writes a specialist folder for `model` into `dir`: a rank-4 PEFT adapter on every layer's
/// `q_proj` and `v_proj` with small portable-random weights, and `downshift_specialist.json`
/// naming `base_model` with `transform` and `template` — what `downshift train` writes,
/// without the training.
pub fn write_specialist(
    dir: &Path,
    base_model: &str,
    model: &crate::Llama,
    transform: crate::PromptTransform,
    template: crate::SpecialistTemplate,
) -> Result<()> {
    let c = &model.config;
    let r = 4;
    let mut t = HashMap::new();
    for layer in 0..c.num_layers {
        for (module, out) in [
            ("q_proj", c.num_heads * c.head_dim),
            ("v_proj", c.num_kv_heads * c.head_dim),
        ] {
            let p = format!("base_model.model.model.layers.{layer}.self_attn.{module}");
            for (ab, shape) in [("lora_A", (r, c.hidden_size)), ("lora_B", (out, r))] {
                let name = format!("{p}.{ab}.weight");
                let v = portable_values(&name, shape.0 * shape.1, 0.02, 0.0);
                t.insert(name, Tensor::from_vec(v, shape, &Device::Cpu)?);
            }
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    candle_core::safetensors::save(&t, dir.join("adapter_model.safetensors"))?;
    let config = serde_json::json!({
        "peft_type": "LORA", "r": r, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"],
        "base_model_name_or_path": base_model,
    });
    let p = dir.join("adapter_config.json");
    std::fs::write(&p, config.to_string()).map_err(|e| Error::io(&p, e))?;
    let meta = crate::SpecialistMeta {
        chat_template: template,
        ..crate::SpecialistMeta::new(base_model, model, transform, &serde_json::json!({}))?
    };
    let p = dir.join(crate::SpecialistMeta::FILE);
    std::fs::write(&p, serde_json::to_string_pretty(&meta)?).map_err(|e| Error::io(&p, e))
}
