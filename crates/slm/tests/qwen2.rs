//! Qwen2 (q/k/v biases, NEOX rotary) from a GGUF image: loads, tokenizes with the `qwen2`
//! pre-tokenizer, and gives the same logits as the same weights loaded the Hugging Face way.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use downshift_slm::gguf::writer;
use downshift_slm::{AdapterSel, Gguf, KvDtype, Llama, LlamaConfig, Logits, MetaValue, Tokenizer};

fn byte_chars() -> Vec<char> {
    let mut out = vec!['\0'; 256];
    let mut n = 0u32;
    for b in 0..256u32 {
        let printable =
            (0x21..=0x7E).contains(&b) || (0xA1..=0xAC).contains(&b) || (0xAE..=0xFF).contains(&b);
        out[b as usize] = char::from_u32(if printable {
            b
        } else {
            n += 1;
            255 + n
        })
        .expect("char");
    }
    out
}

fn rand(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed;
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 33) as f32 / (1u64 << 31) as f32) * 0.2 - 0.1
        })
        .collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn qwen2_gguf_matches_hugging_face_layout() {
    let chars = byte_chars();
    let mut tokens: Vec<String> = chars.iter().map(|c| c.to_string()).collect();
    let merges = ["Ġ t", "h e", "Ġt he", "1 2"];
    for m in merges {
        tokens.push(m.replace(' ', ""));
    }
    for s in ["<|endoftext|>", "<|im_start|>", "<|im_end|>"] {
        tokens.push(s.into());
    }
    let vocab = tokens.len();
    let mut types = vec![MetaValue::I32(1); vocab];
    for t in types.iter_mut().skip(vocab - 3) {
        *t = MetaValue::I32(3);
    }
    let (h, ff, nh, nkv, layers) = (32usize, 64usize, 4usize, 2usize, 2usize);
    let hd = h / nh;
    let s = |v: &str| MetaValue::String(v.into());
    let meta = vec![
        ("general.architecture", s("qwen2")),
        ("qwen2.embedding_length", MetaValue::U32(h as u32)),
        ("qwen2.feed_forward_length", MetaValue::U32(ff as u32)),
        ("qwen2.block_count", MetaValue::U32(layers as u32)),
        ("qwen2.attention.head_count", MetaValue::U32(nh as u32)),
        ("qwen2.attention.head_count_kv", MetaValue::U32(nkv as u32)),
        (
            "qwen2.attention.layer_norm_rms_epsilon",
            MetaValue::F32(1e-6),
        ),
        ("qwen2.rope.freq_base", MetaValue::F32(1_000_000.0)),
        ("qwen2.context_length", MetaValue::U32(128)),
        ("tokenizer.ggml.model", s("gpt2")),
        ("tokenizer.ggml.pre", s("qwen2")),
        (
            "tokenizer.ggml.tokens",
            MetaValue::Array(tokens.iter().map(|t| s(t)).collect()),
        ),
        ("tokenizer.ggml.token_type", MetaValue::Array(types)),
        (
            "tokenizer.ggml.merges",
            MetaValue::Array(merges.iter().map(|m| s(m)).collect()),
        ),
        (
            "tokenizer.ggml.eos_token_id",
            MetaValue::U32(vocab as u32 - 1),
        ),
        ("tokenizer.ggml.add_bos_token", MetaValue::Bool(false)),
    ];
    // GGUF dims are innermost first: a [rows, cols] weight is written as [cols, rows]
    let mut hf: HashMap<String, Tensor> = HashMap::new();
    let mut tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)> = Vec::new();
    let mut seed = 1;
    let mut add = |gguf: &str, hfname: &str, shape: &[usize], hf: &mut HashMap<String, Tensor>| {
        seed += 1;
        let v = rand(shape.iter().product(), seed);
        let dims: Vec<u64> = shape.iter().rev().map(|&d| d as u64).collect();
        tensors.push((gguf.to_string(), dims, 0, f32_bytes(&v)));
        hf.insert(
            hfname.to_string(),
            Tensor::from_vec(v, shape, &Device::Cpu).expect("t"),
        );
    };
    add(
        "token_embd.weight",
        "model.embed_tokens.weight",
        &[vocab, h],
        &mut hf,
    );
    add("output_norm.weight", "model.norm.weight", &[h], &mut hf);
    add("output.weight", "lm_head.weight", &[vocab, h], &mut hf);
    for i in 0..layers {
        let g = |s: &str| format!("blk.{i}.{s}");
        let p = |s: &str| format!("model.layers.{i}.{s}");
        add(
            &g("attn_norm.weight"),
            &p("input_layernorm.weight"),
            &[h],
            &mut hf,
        );
        add(
            &g("attn_q.weight"),
            &p("self_attn.q_proj.weight"),
            &[nh * hd, h],
            &mut hf,
        );
        add(
            &g("attn_q.bias"),
            &p("self_attn.q_proj.bias"),
            &[nh * hd],
            &mut hf,
        );
        add(
            &g("attn_k.weight"),
            &p("self_attn.k_proj.weight"),
            &[nkv * hd, h],
            &mut hf,
        );
        add(
            &g("attn_k.bias"),
            &p("self_attn.k_proj.bias"),
            &[nkv * hd],
            &mut hf,
        );
        add(
            &g("attn_v.weight"),
            &p("self_attn.v_proj.weight"),
            &[nkv * hd, h],
            &mut hf,
        );
        add(
            &g("attn_v.bias"),
            &p("self_attn.v_proj.bias"),
            &[nkv * hd],
            &mut hf,
        );
        add(
            &g("attn_output.weight"),
            &p("self_attn.o_proj.weight"),
            &[h, nh * hd],
            &mut hf,
        );
        add(
            &g("ffn_norm.weight"),
            &p("post_attention_layernorm.weight"),
            &[h],
            &mut hf,
        );
        add(
            &g("ffn_gate.weight"),
            &p("mlp.gate_proj.weight"),
            &[ff, h],
            &mut hf,
        );
        add(
            &g("ffn_up.weight"),
            &p("mlp.up_proj.weight"),
            &[ff, h],
            &mut hf,
        );
        add(
            &g("ffn_down.weight"),
            &p("mlp.down_proj.weight"),
            &[h, ff],
            &mut hf,
        );
    }
    let refs: Vec<(&str, Vec<u64>, u32, Vec<u8>)> = tensors
        .iter()
        .map(|(n, d, t, b)| (n.as_str(), d.clone(), *t, b.clone()))
        .collect();
    let img = writer::write(&meta, &refs);
    let g = Gguf::from_bytes(img).expect("parse");
    let model = Llama::from_gguf(&g).expect("qwen2 model");
    assert_eq!(model.config.rope_style, downshift_slm::RopeStyle::Neox);
    assert!(
        model.blocks[0].qkv[0].bias.is_some(),
        "q/k/v biases are fused"
    );
    let tok = Tokenizer::from_gguf(&g).expect("tokenizer");
    let ids = tok.encode("the 123 <|im_end|>", false, true);
    assert_eq!(tok.decode(&ids, true), "the 123 <|im_end|>");
    assert!(ids.contains(&(vocab as u32 - 1)));

    let cfg = LlamaConfig::from_hf_json(&serde_json::json!({
        "model_type": "qwen2", "vocab_size": vocab, "hidden_size": h, "intermediate_size": ff,
        "num_hidden_layers": layers, "num_attention_heads": nh, "num_key_value_heads": nkv,
        "rms_norm_eps": 1e-6, "rope_theta": 1_000_000.0, "max_position_embeddings": 128,
        "tie_word_embeddings": false
    }))
    .expect("config");
    let hf_model = Llama::from_hf_tensors(cfg, &|n: &str| hf.get(n).cloned()).expect("hf");
    let run = |m: &Llama| {
        let mut c = m.new_cache(32, KvDtype::F32);
        m.forward(&ids, &mut c, AdapterSel::None, Logits::All)
            .expect("forward")
    };
    let d = (run(&model) - run(&hf_model))
        .expect("sub")
        .abs()
        .expect("abs")
        .max_all()
        .expect("max")
        .to_scalar::<f32>()
        .expect("scalar");
    assert!(d < 1e-5, "GGUF vs HF qwen2 differ by {d}");
    // and the differentiable path agrees with the cached one
    let x = Tensor::new(ids.as_slice(), &Device::Cpu)
        .expect("t")
        .unsqueeze(0)
        .expect("u");
    let t = model
        .forward_train(&x, AdapterSel::None)
        .expect("train")
        .squeeze(0)
        .expect("s");
    let d = (run(&model) - t)
        .expect("sub")
        .abs()
        .expect("abs")
        .max_all()
        .expect("max")
        .to_scalar::<f32>()
        .expect("scalar");
    assert!(d < 1e-4, "cached vs training path differ by {d}");
}
