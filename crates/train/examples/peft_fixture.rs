//! Trains a small adapter on a Hugging Face model folder (e.g. the slm crate's parity
//! fixtures) and writes it in PEFT format with `reference.safetensors` (token ids and the
//! adapted logits), for `scripts/peft_check.py` to compare against `peft` + `transformers`:
//! `cargo run -p downshift-train --example peft_fixture -- MODEL_DIR OUT_DIR`.

use candle_core::{Device, Tensor};
use downshift_train::trainer::RunOptions;
use downshift_train::{Example, PromptTransform, SpecialistMeta, TrainConfig, Trainer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(model_dir), Some(out)) = (args.get(1), args.get(2)) else {
        return Err("usage: peft_fixture MODEL_DIR OUT_DIR".into());
    };
    // A parity fixture (config.json + weights.json) has its weights regenerated first.
    let src = std::path::Path::new(model_dir);
    let dir = if src.join("weights.json").exists() {
        downshift_slm::testing::materialize_fixture(src)?
    } else {
        src.to_path_buf()
    };
    let model = downshift_slm::Llama::from_hf_dir(&dir)?;
    let vocab = model.config.vocab_size as u32;
    // synthetic examples: a prompt of 12 tokens, an answer of 4 derived from it
    let data: Vec<Example> = (0..16u32)
        .map(|i| {
            let prompt: Vec<u32> = (0..12).map(|j| (i * 31 + j * 7) % vocab).collect();
            let answer: Vec<u32> = (0..4).map(|j| (i * 13 + j + 5) % vocab).collect();
            let mut mask = vec![0u8; prompt.len()];
            mask.extend([1u8; 4]);
            Example {
                id: format!("ex-{i}"),
                ids: [prompt, answer].concat(),
                mask,
            }
        })
        .collect();
    let cfg = TrainConfig {
        rank: 8,
        alpha: 16.0,
        lr: 1e-2,
        max_steps: Some(20),
        warmup_steps: 2,
        min_examples: 4,
        ..Default::default()
    };
    let mut tr = Trainer::new(model, cfg)?;
    let s = tr.run(&data, &[], RunOptions::default())?;
    eprintln!("loss {:?} -> {:?}", s.first_loss, s.last_loss);
    let out = std::path::Path::new(out);
    let meta = SpecialistMeta::new(
        model_dir,
        tr.model(),
        PromptTransform::identity(),
        tr.config(),
    )?;
    tr.save_adapter(out, &meta)?;
    let ids: Vec<u32> = data[0].ids.clone();
    let n = ids.len();
    let t = Tensor::from_vec(ids, (1, n), &Device::Cpu)?;
    let logits = tr.model().forward_train(&t, tr.adapter_sel())?;
    let base = tr
        .model()
        .forward_train(&t, downshift_slm::AdapterSel::None)?;
    let mut m = std::collections::HashMap::new();
    m.insert("ids".to_string(), t.to_dtype(candle_core::DType::I64)?);
    m.insert("logits".to_string(), logits);
    m.insert("base_logits".to_string(), base);
    candle_core::safetensors::save(&m, out.join("reference.safetensors"))?;
    downshift_train::merge_to_hf_dir(std::path::Path::new(model_dir), out, &out.join("merged"))?;
    Ok(())
}
