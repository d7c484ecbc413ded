//! QLoRA on the real SmolLM2-135M-Instruct GGUF (Q4_1, llama.cpp's permuted q/k rows): a few
//! updates through the quantized base, then the PEFT export (rows back in Hugging Face
//! order) loads through the slm crate with the same logits. Needs the model from
//! `scripts/fetch.sh` (or `DOWNSHIFT_TEST_MODEL`).
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

use std::path::PathBuf;

use downshift_slm::{AdapterSel, KvDtype, LocalModel, Logits, RopeStyle, Weight};
use downshift_train::trainer::RunOptions;
use downshift_train::{
    ChatRecord, ExampleBuilder, PromptTransform, SpecialistMeta, TrainConfig, Trainer, load_adapter,
};
use serde_json::json;

fn smollm2_path() -> PathBuf {
    if let Ok(p) = std::env::var("DOWNSHIFT_TEST_MODEL") {
        return PathBuf::from(p);
    }
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        p.exists(),
        "test model missing: {} — run scripts/fetch.sh (or set DOWNSHIFT_TEST_MODEL)",
        p.display()
    );
    p
}

#[test]
fn qlora_on_the_gguf_base_exports_a_peft_adapter_with_the_same_logits() {
    let lm = LocalModel::load(smollm2_path()).expect("model");
    assert_eq!(lm.model.config.rope_style, RopeStyle::Interleaved);
    assert!(matches!(lm.model.blocks[0].o.weight, Weight::Packed(_)));
    let b = ExampleBuilder::new(&lm.template, &lm.tokenizer);
    let data: Vec<_> = [("Say hi.", "Hi!"), ("Say bye.", "Bye!")]
        .iter()
        .map(|(q, a)| {
            let r = ChatRecord {
                id: q.to_string(),
                messages: vec![json!({"role": "user", "content": q})],
                tools: None,
                answer: json!({"role": "assistant", "content": a}),
            };
            b.build(&r).expect("example")
        })
        .collect();
    let cfg = TrainConfig {
        rank: 4,
        alpha: 8.0,
        lr: 1e-3,
        max_steps: Some(2),
        warmup_steps: 0,
        batch_size: 2,
        min_examples: 2,
        // the trainer's own logits are compared with the exported adapter on the packed base:
        // both in f32 products (bf16 training would compare bf16 logits with f32 ones)
        precision: downshift_train::Precision::F32,
        ..Default::default()
    };
    let mut tr = Trainer::new(lm.model.clone(), cfg).expect("trainer");
    let before = tr.evaluate(&data).expect("eval");
    tr.run(&data, &[], RunOptions::default()).expect("train");
    let after = tr.evaluate(&data).expect("eval");
    assert!(after < before, "{before} -> {after}");
    let dir = tempfile::tempdir().expect("tmp");
    let meta = SpecialistMeta::new(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        tr.model(),
        PromptTransform::identity(),
        tr.config(),
    )
    .expect("meta");
    tr.save_adapter(dir.path(), &meta).expect("save");
    let mut fresh = lm.model.clone();
    let (id, _) = load_adapter(&mut fresh, dir.path()).expect("load");
    let ids = &data[0].ids;
    let logits = |m: &downshift_slm::Llama, sel| {
        let mut c = m.new_cache(128, KvDtype::F32);
        m.forward(ids, &mut c, sel, Logits::All).expect("forward")
    };
    let base = logits(&lm.model, AdapterSel::None);
    let want = logits(tr.model(), tr.adapter_sel());
    let got = logits(&fresh, AdapterSel::One(id));
    let diff = |a: &candle_core::Tensor, b: &candle_core::Tensor| -> f32 {
        (a - b)
            .expect("sub")
            .abs()
            .expect("abs")
            .max_all()
            .expect("max")
            .to_scalar::<f32>()
            .expect("s")
    };
    assert!(diff(&base, &want) > 1e-3, "the adapter changes the logits");
    assert!(diff(&want, &got) < 1e-5, "{}", diff(&want, &got));
}
