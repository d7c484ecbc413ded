//! Hugging Face folders: `tokenizer.json` parity with the GGUF tokenizer (on the llama.cpp
//! fixture) and a tiny random Llama loaded from `config.json` + safetensors.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use downshift_slm::{GenerateOptions, Gguf, LocalModel, Tokenizer};

/// Rebuilds SmolLM2's `tokenizer.json` from the GGUF metadata, in the shape the Hub ships it.
fn smollm2_tokenizer_json() -> String {
    let g = Gguf::open(common::smollm2_path()).expect("open");
    let tokens = g.get_str_array("tokenizer.ggml.tokens").expect("tokens");
    let types = g.get_i64_array("tokenizer.ggml.token_type").expect("types");
    let merges = g.get_str_array("tokenizer.ggml.merges").expect("merges");
    let mut vocab = serde_json::Map::new();
    let mut added = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        vocab.insert(t.to_string(), serde_json::json!(i));
        if types[i] == 3 {
            added.push(serde_json::json!({"id": i, "content": t, "special": true}));
        }
    }
    serde_json::json!({
        "version": "1.0",
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
        ]},
        "post_processor": null,
        "decoder": {"type": "ByteLevel"},
        "model": {"type": "BPE", "vocab": vocab, "merges": merges, "ignore_merges": false}
    })
    .to_string()
}

#[test]
fn tokenizer_json_matches_llama_cpp_fixture() {
    let cfg = r#"{"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "add_bos_token": false}"#;
    let tok = Tokenizer::from_hf_json(&smollm2_tokenizer_json(), Some(cfg)).expect("tokenizer");
    let fx = std::fs::read_to_string(common::fixture("tokenizer_smollm2.jsonl")).expect("fixture");
    let mut bad = 0;
    for line in fx.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("json");
        let want: Vec<u32> = v["ids"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|x| x.as_u64().expect("id") as u32)
            .collect();
        let got = tok.encode(v["text"].as_str().expect("text"), true, true);
        if got != want {
            bad += 1;
            eprintln!("{:?}: {got:?} vs {want:?}", v["text"]);
        }
    }
    assert_eq!(bad, 0);
    assert_eq!(tok.eos, Some(2));
    assert!(tok.is_eog(2));
}

fn rand(shape: &[usize], seed: u64) -> Tensor {
    let n: usize = shape.iter().product();
    let mut s = seed;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) * 0.2 - 0.1
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).expect("tensor")
}

#[test]
fn loads_a_tiny_hugging_face_llama() {
    let dir = tempfile::tempdir().expect("tmp");
    let (vocab, h, ff, layers, nh, nkv) = (49152usize, 64usize, 128usize, 2usize, 4usize, 2usize);
    let hd = h / nh;
    let config = serde_json::json!({
        "model_type": "llama", "vocab_size": vocab, "hidden_size": h, "intermediate_size": ff,
        "num_hidden_layers": layers, "num_attention_heads": nh, "num_key_value_heads": nkv,
        "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256,
        "tie_word_embeddings": true,
        "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                         "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    });
    std::fs::write(dir.path().join("config.json"), config.to_string()).expect("config");
    let mut t: HashMap<String, Tensor> = HashMap::new();
    t.insert("model.embed_tokens.weight".into(), rand(&[vocab, h], 1));
    t.insert(
        "model.norm.weight".into(),
        Tensor::ones(h, candle_core::DType::F32, &Device::Cpu).expect("ones"),
    );
    for i in 0..layers {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        let s = 10 * i as u64;
        t.insert(p("self_attn.q_proj.weight"), rand(&[nh * hd, h], s + 2));
        t.insert(p("self_attn.k_proj.weight"), rand(&[nkv * hd, h], s + 3));
        t.insert(p("self_attn.v_proj.weight"), rand(&[nkv * hd, h], s + 4));
        t.insert(p("self_attn.o_proj.weight"), rand(&[h, nh * hd], s + 5));
        t.insert(p("mlp.gate_proj.weight"), rand(&[ff, h], s + 6));
        t.insert(p("mlp.up_proj.weight"), rand(&[ff, h], s + 7));
        t.insert(p("mlp.down_proj.weight"), rand(&[h, ff], s + 8));
        t.insert(p("input_layernorm.weight"), rand(&[h], s + 9));
        t.insert(p("post_attention_layernorm.weight"), rand(&[h], s + 10));
    }
    candle_core::safetensors::save(&t, dir.path().join("model.safetensors")).expect("save");
    std::fs::write(dir.path().join("tokenizer.json"), smollm2_tokenizer_json()).expect("tok");
    std::fs::write(
        dir.path().join("tokenizer_config.json"),
        serde_json::json!({"eos_token": "<|im_end|>", "add_bos_token": false,
            "chat_template": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"})
        .to_string(),
    )
    .expect("tok cfg");
    let m = LocalModel::load(dir.path()).expect("load HF folder");
    assert_eq!(m.model.config.num_layers, 2);
    assert!(matches!(
        m.model.config.rope_scaling,
        downshift_slm::RopeScaling::Llama3 { .. }
    ));
    let f = m.model.config.freq_factors();
    assert_eq!(f[0], 1.0, "high frequencies are not scaled");
    assert!(
        (f[f.len() - 1] - 8.0).abs() < 1e-3,
        "low frequencies are divided by the factor: {f:?}"
    );
    let g = m
        .chat(
            &[downshift_slm::Message::new("user", "hi")],
            None,
            &GenerateOptions {
                max_tokens: 5,
                stop_at_eog: false,
                ..Default::default()
            },
            None,
        )
        .expect("generate");
    assert_eq!(g.completion_tokens, 5);
    // the fused inference path and the differentiable path agree on this dense model
    let ids: Vec<u32> = m.tokenize("hello world, 123");
    let mut cache = m.model.new_cache(64, downshift_slm::KvDtype::F32);
    let a = m
        .model
        .forward(
            &ids,
            &mut cache,
            downshift_slm::AdapterSel::None,
            downshift_slm::Logits::All,
        )
        .expect("forward");
    let x = Tensor::new(ids.as_slice(), &Device::Cpu)
        .expect("t")
        .unsqueeze(0)
        .expect("u");
    let b = m
        .model
        .forward_train(&x, downshift_slm::AdapterSel::None)
        .expect("train")
        .squeeze(0)
        .expect("s");
    let d = (a - b)
        .expect("d")
        .abs()
        .expect("a")
        .max_all()
        .expect("m")
        .to_scalar::<f32>()
        .expect("s");
    assert!(d < 1e-4, "max difference {d}");
}
