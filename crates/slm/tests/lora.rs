//! PEFT LoRA adapters: unmerged (several over one base), merged, Hugging Face layout parity,
//! and adapters for another base.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

mod common;

use std::collections::HashMap;
use std::sync::OnceLock;

use candle_core::{D, Device, Tensor};
use downshift_slm::testing::max_diff;
use downshift_slm::{AdapterSel, Error, Gguf, KvDtype, Llama, Logits, LoraAdapter, RopeStyle};

fn dense() -> &'static Llama {
    static M: OnceLock<Llama> = OnceLock::new();
    M.get_or_init(|| {
        let g = Gguf::open(common::smollm2_path()).expect("open");
        Llama::from_gguf(&g)
            .expect("load")
            .dequantized()
            .expect("dequantize")
    })
}

fn rand(shape: (usize, usize), seed: u64, scale: f32) -> Tensor {
    let mut s = seed;
    let v: Vec<f32> = (0..shape.0 * shape.1)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (((s >> 33) as f32 / (1u64 << 31) as f32) * 2.0 - 1.0) * scale
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).expect("tensor")
}

/// Writes a PEFT adapter folder with random weights.
fn write_adapter(dir: &std::path::Path, seed: u64, in_override: Option<usize>) {
    let cfg = &dense().config;
    let (h, ff) = (cfg.hidden_size, cfg.intermediate_size);
    let kvd = cfg.num_kv_heads * cfg.head_dim;
    let r = 8;
    let mut t = HashMap::new();
    for layer in [0usize, 7, 29] {
        for (kind, module, inp, out) in [
            ("self_attn", "q_proj", h, h),
            ("self_attn", "k_proj", h, kvd),
            ("self_attn", "v_proj", h, kvd),
            ("self_attn", "o_proj", h, h),
            ("mlp", "gate_proj", h, ff),
            ("mlp", "down_proj", ff, h),
        ] {
            let inp = in_override.unwrap_or(inp);
            let p = format!("base_model.model.model.layers.{layer}.{kind}.{module}");
            let s = seed + layer as u64 * 31 + module.len() as u64;
            t.insert(format!("{p}.lora_A.weight"), rand((r, inp), s, 0.05));
            t.insert(format!("{p}.lora_B.weight"), rand((out, r), s + 1, 0.05));
        }
    }
    candle_core::safetensors::save(&t, dir.join("adapter_model.safetensors")).expect("save");
    std::fs::write(
        dir.join("adapter_config.json"),
        r#"{"r": 8, "lora_alpha": 16, "target_modules": ["q_proj","k_proj","v_proj","o_proj","gate_proj","down_proj"], "peft_type": "LORA", "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"}"#,
    )
    .expect("config");
}

fn logits(m: &Llama, ids: &[u32], sel: AdapterSel) -> Tensor {
    let mut c = m.new_cache(64, KvDtype::F32);
    m.forward(ids, &mut c, sel, Logits::All).expect("forward")
}

const IDS: [u32; 8] = [1, 4093, 198, 1780, 314, 260, 3575, 282];

#[test]
fn unmerged_adapters_are_chosen_per_request_and_match_merged() {
    let d1 = tempfile::tempdir().expect("tmp");
    let d2 = tempfile::tempdir().expect("tmp");
    write_adapter(d1.path(), 1, None);
    write_adapter(d2.path(), 2, None);
    let a1 = LoraAdapter::load(d1.path()).expect("a1");
    let a2 = LoraAdapter::load(d2.path()).expect("a2");
    assert_eq!(a1.config.scale(), 2.0);
    let mut m = dense().clone();
    let base = logits(&m, &IDS, AdapterSel::None);
    let id1 = m.attach_adapter(&a1).expect("attach 1");
    let id2 = m.attach_adapter(&a2).expect("attach 2");
    assert_ne!(id1, id2);
    let none = logits(&m, &IDS, AdapterSel::None);
    let with1 = logits(&m, &IDS, AdapterSel::One(id1));
    let with2 = logits(&m, &IDS, AdapterSel::One(id2));
    assert!(max_diff(&base, &none) < 1e-5, "base changed by attaching");
    assert!(max_diff(&base, &with1) > 1e-2, "adapter 1 has no effect");
    assert!(
        max_diff(&with1, &with2) > 1e-2,
        "adapters indistinguishable"
    );
    let mut merged = dense().clone();
    merged.merge_adapter(&a1).expect("merge");
    let m1 = logits(&merged, &IDS, AdapterSel::None);
    let d = max_diff(&m1, &with1);
    assert!(d < 2e-3, "merged vs unmerged differ by {d}");
    m.detach_adapter(id1);
    assert!(max_diff(&base, &logits(&m, &IDS, AdapterSel::One(id1))) < 1e-5);
}

/// Splits the GGUF model back into Hugging Face tensors (undoing the q/k row permutation of
/// llama.cpp's converter) and checks that the HF-layout model and an adapter applied to it give
/// the same logits as the GGUF-layout model: the rotary layouts and the adapter's row
/// permutation agree.
#[test]
fn hugging_face_layout_gives_the_same_logits() {
    let g = dense();
    let cfg = g.config.clone();
    let (nh, nkv, hd) = (cfg.num_heads, cfg.num_kv_heads, cfg.head_dim);
    let unpermute = |w: Tensor, n: usize| -> Tensor {
        let (out, inp) = w.dims2().expect("2d");
        w.reshape((n, out / n / 2, 2, inp))
            .and_then(|t| t.transpose(1, 2))
            .and_then(|t| t.contiguous())
            .and_then(|t| t.reshape((out, inp)))
            .expect("unpermute")
    };
    let mut t: HashMap<String, Tensor> = HashMap::new();
    let dq = |l: &downshift_slm::Linear| l.weight.dequantize().expect("w");
    t.insert(
        "model.embed_tokens.weight".into(),
        g.embed.weight.dequantize().expect("e"),
    );
    t.insert("model.norm.weight".into(), g.norm.clone());
    for (i, b) in g.blocks.iter().enumerate() {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        let qkv = dq(&b.qkv[0]);
        let q = qkv.narrow(0, 0, nh * hd).expect("q");
        let k = qkv.narrow(0, nh * hd, nkv * hd).expect("k");
        let v = qkv.narrow(0, nh * hd + nkv * hd, nkv * hd).expect("v");
        t.insert(p("self_attn.q_proj.weight"), unpermute(q, nh));
        t.insert(p("self_attn.k_proj.weight"), unpermute(k, nkv));
        t.insert(p("self_attn.v_proj.weight"), v);
        t.insert(p("self_attn.o_proj.weight"), dq(&b.o));
        let gu = dq(&b.gate_up[0]);
        let ff = cfg.intermediate_size;
        t.insert(p("mlp.gate_proj.weight"), gu.narrow(0, 0, ff).expect("g"));
        t.insert(p("mlp.up_proj.weight"), gu.narrow(0, ff, ff).expect("u"));
        t.insert(p("mlp.down_proj.weight"), dq(&b.down));
        t.insert(p("input_layernorm.weight"), b.attn_norm.clone());
        t.insert(p("post_attention_layernorm.weight"), b.ffn_norm.clone());
    }
    let mut hf_cfg = cfg.clone();
    hf_cfg.rope_style = RopeStyle::Neox;
    hf_cfg.tie_word_embeddings = true;
    let mut hf = Llama::from_hf_tensors(hf_cfg, &|n: &str| t.get(n).cloned()).expect("hf model");
    let a = logits(g, &IDS, AdapterSel::None);
    let b = logits(&hf, &IDS, AdapterSel::None);
    let d = max_diff(&a, &b);
    assert!(d < 2e-3, "HF layout differs by {d}");
    let dir = tempfile::tempdir().expect("tmp");
    write_adapter(dir.path(), 3, None);
    let ad = LoraAdapter::load(dir.path()).expect("adapter");
    let mut gg = g.clone();
    let ig = gg.attach_adapter(&ad).expect("attach gguf");
    let ih = hf.attach_adapter(&ad).expect("attach hf");
    let a = logits(&gg, &IDS, AdapterSel::One(ig));
    let b = logits(&hf, &IDS, AdapterSel::One(ih));
    let d = max_diff(&a, &b);
    assert!(d < 2e-3, "adapter on HF vs GGUF layout differs by {d}");
    // and the same argmax at every position
    let am = a
        .argmax(D::Minus1)
        .expect("am")
        .to_vec1::<u32>()
        .expect("v");
    let bm = b
        .argmax(D::Minus1)
        .expect("am")
        .to_vec1::<u32>()
        .expect("v");
    assert_eq!(am, bm);
}

#[test]
fn adapter_for_another_base_is_rejected() {
    let dir = tempfile::tempdir().expect("tmp");
    write_adapter(dir.path(), 4, Some(100));
    let ad = LoraAdapter::load(dir.path()).expect("parse");
    let mut m = dense().clone();
    let e = m.attach_adapter(&ad).expect_err("wrong dims");
    assert!(matches!(e, Error::Adapter(_)), "{e}");
    assert!(e.to_string().contains("another base"), "{e}");
    // nothing was attached
    let base = logits(dense(), &IDS, AdapterSel::None);
    assert!(max_diff(&base, &logits(&m, &IDS, AdapterSel::All)) < 1e-5);
    let empty = tempfile::tempdir().expect("tmp");
    let e = LoraAdapter::load(empty.path()).expect_err("missing");
    assert!(e.to_string().contains("adapter_config.json"), "{e}");
}

#[test]
fn adapters_work_on_the_quantized_model() {
    let dir = tempfile::tempdir().expect("tmp");
    write_adapter(dir.path(), 5, None);
    let mut m = downshift_slm::LocalModel::load(common::smollm2_path()).expect("load");
    let id = m.load_adapter(dir.path()).expect("attach");
    let base = logits(&m.model, &IDS, AdapterSel::None);
    let with = logits(&m.model, &IDS, AdapterSel::One(id));
    assert!(max_diff(&base, &with) > 1e-2);
    let mut merged = downshift_slm::LocalModel::load(common::smollm2_path()).expect("load");
    merged.merge_adapter(dir.path()).expect("merge");
    let mm = logits(&merged.model, &IDS, AdapterSel::None);
    // Q8_0 re-quantization of merged projections: same next-token choices
    let am = with
        .argmax(D::Minus1)
        .expect("am")
        .to_vec1::<u32>()
        .expect("v");
    let bm = mm
        .argmax(D::Minus1)
        .expect("am")
        .to_vec1::<u32>()
        .expect("v");
    let same = am.iter().zip(&bm).filter(|(a, b)| a == b).count();
    assert!(same >= am.len() - 2, "{am:?} vs {bm:?}");
}
