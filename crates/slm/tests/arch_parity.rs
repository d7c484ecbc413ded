//! Architecture parity with `transformers`: tiny random models of every supported
//! architecture, made and run by `bench/slm/make_arch_fixtures.py` (float32, eager attention),
//! loaded here through the Hugging Face folder path. Logits must match transformers' at every
//! position to 1e-4 on each path: the cached forward with an f32 KV cache (whole prompt, and a
//! prefill followed by tokens fed one and a few at a time), the batched forward and the
//! differentiable `forward_train`. The default f16 cache rounds keys, values, queries and
//! attention weights by design (like llama.cpp) and cannot meet 1e-4; it is held to 1% of the
//! logits' spread, which still catches a wrong window, position or kernel.
//!
//! The same weights converted to GGUF the way llama.cpp's `convert_hf_to_gguf.py` does (q/k rows
//! permuted for Llama's interleaved rotary layout, `rope_freqs` for Llama-3 scaling, Gemma's
//! norms stored as 1 + w, `qwen2` / `qwen3` / `gemma3` names and metadata) must match
//! transformers too.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use downshift_slm::gguf::writer;
use downshift_slm::testing::max_diff;
use downshift_slm::{AdapterSel, Gguf, KvDtype, Llama, Logits, MetaValue};

const TOL: f32 = 1e-4;

/// Every folder under `tests/fixtures/arch`, each checked by a test below.
const ARCHS: [&str; 7] = [
    "llama",
    "llama3_rope",
    "smollm2",
    "qwen2",
    "qwen2_tied",
    "qwen3",
    "gemma3",
];

struct Fixture {
    name: &'static str,
    model: Llama,
    /// Token ids and transformers' logits `[len, vocab]` of each input sequence.
    seqs: Vec<(Vec<u32>, Tensor)>,
}

fn load(name: &'static str) -> Fixture {
    let dir = common::arch(name);
    let model = Llama::from_hf_dir(&dir).unwrap_or_else(|e| panic!("{name}: load: {e}"));
    with_model(name, model)
}

/// The fixture's references with another model (e.g. the GGUF conversion of its weights).
fn with_model(name: &'static str, model: Llama) -> Fixture {
    let dir = common::fixture("arch").join(name);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("reference.json")).expect("reference.json"))
            .expect("reference.json is JSON");
    let raw = std::fs::read(dir.join("reference.f32")).expect("reference.f32");
    let all: Vec<f32> = raw
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let vocab = meta["vocab"].as_u64().expect("vocab") as usize;
    assert_eq!(vocab, model.config.vocab_size, "{name}: reference vocab");
    let mut seqs = Vec::new();
    let mut at = 0;
    for s in meta["sequences"].as_array().expect("sequences") {
        let ids: Vec<u32> = s
            .as_array()
            .expect("ids")
            .iter()
            .map(|x| x.as_u64().expect("id") as u32)
            .collect();
        let n = ids.len() * vocab;
        assert!(at + n <= all.len(), "{name}: reference.f32 is short");
        let logits =
            Tensor::from_slice(&all[at..at + n], (ids.len(), vocab), &Device::Cpu).expect("logits");
        at += n;
        seqs.push((ids, logits));
    }
    assert_eq!(at, all.len(), "{name}: reference.f32 has extra values");
    assert!(seqs.len() >= 2, "{name}: reference holds no sequences");
    Fixture { name, model, seqs }
}

/// Compares every path of the Hugging Face loading with transformers.
fn check(name: &'static str) -> f32 {
    check_fixture(&load(name), "")
}

/// Compares every path with transformers; returns the largest difference seen.
fn check_fixture(f: &Fixture, label: &str) -> f32 {
    let name = f.name;
    let m = &f.model;
    let mut worst = 0f32;
    let mut report = |path: &str, i: usize, d: f32| {
        assert!(
            d <= TOL,
            "{name}{label}: {path}, sequence {i}: max |logit - transformers| = {d:e} > {TOL:e}"
        );
        worst = worst.max(d);
    };
    // the references are large enough for the tolerance to mean something
    let all = Tensor::cat(&f.seqs.iter().map(|s| s.1.clone()).collect::<Vec<_>>(), 0)
        .expect("cat")
        .flatten_all()
        .expect("flat");
    let mean = all.mean_all().expect("mean").to_scalar::<f32>().expect("s");
    let var = all
        .affine(1.0, -mean as f64)
        .expect("centre")
        .sqr()
        .expect("sqr")
        .mean_all()
        .expect("var")
        .to_scalar::<f32>()
        .expect("s");
    let spread = var.sqrt();
    assert!(spread > 0.5, "{name}: reference logits too flat");
    // the f16 cache rounds keys, values, queries and attention weights (as llama.cpp does), so
    // it is held to 1% of the logits' spread: enough to catch a wrong window, position or
    // kernel (errors of the order of the spread), not a 1e-4 match
    let f16_tol = 0.01 * spread;
    let mut worst_f16 = 0f32;

    for (i, (ids, want)) in f.seqs.iter().enumerate() {
        // the whole sequence in one cached pass
        let mut cache = m.new_cache(64, KvDtype::F32);
        let got = m
            .forward(ids, &mut cache, AdapterSel::None, Logits::All)
            .expect("forward");
        report("cached forward, one pass", i, max_diff(&got, want));
        assert_eq!(cache.len(), ids.len());

        // the default f16 cache: prefill half, then token by token
        let mut cache = m.new_cache(64, KvDtype::F16);
        let p = ids.len() / 2;
        let mut rows = vec![
            m.forward(&ids[..p], &mut cache, AdapterSel::None, Logits::All)
                .expect("f16 prefill"),
        ];
        for t in p..ids.len() {
            rows.push(
                m.forward(&ids[t..t + 1], &mut cache, AdapterSel::None, Logits::All)
                    .expect("f16 decode"),
            );
        }
        let got = Tensor::cat(&rows, 0).expect("cat");
        let d = max_diff(&got, want);
        assert!(
            d <= f16_tol,
            "{name}{label}: f16 cache, sequence {i}: max |logit - transformers| = {d:e} > {f16_tol:e}"
        );
        worst_f16 = worst_f16.max(d);

        // a prefill, then pieces of 1, 3, 1, 2, ... tokens through the same cache
        let mut cache = m.new_cache(64, KvDtype::F32);
        let mut pos = 0;
        let mut step = 0;
        let pieces = [1usize, 3, 1, 2];
        while pos < ids.len() {
            let n = if pos == 0 {
                (ids.len() / 2).max(1)
            } else {
                step += 1;
                pieces[(step - 1) % pieces.len()].min(ids.len() - pos)
            };
            let got = m
                .forward(
                    &ids[pos..pos + n],
                    &mut cache,
                    AdapterSel::None,
                    Logits::All,
                )
                .expect("forward");
            let want_rows = want.narrow(0, pos, n).expect("rows");
            report("incremental forward", i, max_diff(&got, &want_rows));
            // the last-position logits of generation are the same row
            if n == 1 {
                assert_eq!(cache.len(), pos + 1);
            }
            pos += n;
        }

        // generation-style: Logits::Last after a prefill, one token at a time
        let mut cache = m.new_cache(64, KvDtype::F32);
        let p = ids.len() - 3;
        let got = m
            .forward(&ids[..p], &mut cache, AdapterSel::None, Logits::Last)
            .expect("prefill");
        report(
            "last-position prefill",
            i,
            max_diff(&got, &want.narrow(0, p - 1, 1).expect("row")),
        );
        for t in p..ids.len() {
            let got = m
                .forward(&ids[t..t + 1], &mut cache, AdapterSel::None, Logits::Last)
                .expect("decode");
            report(
                "decode step",
                i,
                max_diff(&got, &want.narrow(0, t, 1).expect("row")),
            );
        }

        // the differentiable path, one sequence
        let x = Tensor::new(ids.as_slice(), &Device::Cpu)
            .expect("ids")
            .unsqueeze(0)
            .expect("batch");
        let got = m
            .forward_train(&x, AdapterSel::None)
            .expect("forward_train")
            .squeeze(0)
            .expect("squeeze");
        report("forward_train", i, max_diff(&got, want));
    }

    // forward_train on a batch of the equal-length sequences
    let len = f.seqs[0].0.len();
    let same: Vec<&(Vec<u32>, Tensor)> = f.seqs.iter().filter(|s| s.0.len() == len).collect();
    assert!(same.len() >= 2, "{name}: no two sequences of equal length");
    let flat: Vec<u32> = same.iter().flat_map(|s| s.0.iter().copied()).collect();
    let x = Tensor::from_vec(flat, (same.len(), len), &Device::Cpu).expect("batch");
    let got = m
        .forward_train(&x, AdapterSel::None)
        .expect("forward_train");
    for (b, s) in same.iter().enumerate() {
        let row = got.get(b).expect("row");
        report("forward_train batch", b, max_diff(&row, &s.1));
    }

    // forward_batch: all sequences' prompts at once, then one more token each, in one batch
    let mut caches: Vec<_> = f
        .seqs
        .iter()
        .map(|_| m.new_cache(64, KvDtype::F32))
        .collect();
    let prompts: Vec<&[u32]> = f.seqs.iter().map(|s| &s.0[..s.0.len() - 1]).collect();
    let mut batch: Vec<(&[u32], &mut _)> = prompts.iter().copied().zip(caches.iter_mut()).collect();
    let got = m
        .forward_batch(&mut batch, AdapterSel::None)
        .expect("forward_batch");
    for (i, (s, g)) in f.seqs.iter().zip(&got).enumerate() {
        let row = s.1.narrow(0, s.0.len() - 2, 1).expect("row");
        report("forward_batch prefill", i, max_diff(g, &row));
    }
    let lasts: Vec<&[u32]> = f.seqs.iter().map(|s| &s.0[s.0.len() - 1..]).collect();
    let mut batch: Vec<(&[u32], &mut _)> = lasts.iter().copied().zip(caches.iter_mut()).collect();
    let got = m
        .forward_batch(&mut batch, AdapterSel::None)
        .expect("forward_batch");
    for (i, (s, g)) in f.seqs.iter().zip(&got).enumerate() {
        let row = s.1.narrow(0, s.0.len() - 1, 1).expect("row");
        report("forward_batch decode", i, max_diff(g, &row));
    }
    eprintln!(
        "{name}{label}: max |logit - transformers| = {worst:e} (f32 cache), {worst_f16:e} (f16 cache)"
    );
    worst
}

#[test]
fn every_fixture_is_checked() {
    let mut found: Vec<String> = std::fs::read_dir(common::fixture("arch"))
        .expect("fixtures/arch")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut want: Vec<String> = ARCHS.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(found, want);
}

#[test]
fn llama() {
    check("llama");
}

#[test]
fn llama3_rope_scaling() {
    let f = load("llama3_rope");
    assert!(matches!(
        f.model.config.rope_scaling,
        downshift_slm::RopeScaling::Llama3 { .. }
    ));
    check("llama3_rope");
}

#[test]
fn smollm2_tied_embeddings() {
    let f = load("smollm2");
    assert!(f.model.config.tie_word_embeddings);
    check("smollm2");
}

#[test]
fn qwen2_biases() {
    let f = load("qwen2");
    assert!(f.model.blocks[0].qkv.iter().all(|l| l.bias.is_some()));
    assert!(!f.model.config.tie_word_embeddings);
    check("qwen2");
}

#[test]
fn qwen2_tied() {
    check("qwen2_tied");
}

#[test]
fn qwen3_head_norms() {
    let f = load("qwen3");
    let c = &f.model.config;
    assert_eq!(c.architecture, "qwen3");
    assert_ne!(
        c.head_dim * c.num_heads,
        c.hidden_size,
        "head_dim is not hidden / heads"
    );
    let b = &f.model.blocks[0];
    assert!(b.q_norm.is_some() && b.k_norm.is_some());
    assert!(b.qkv.iter().all(|l| l.bias.is_none()));
    check("qwen3");
}

/// A GGUF image of a fixture's weights, converted like llama.cpp's `convert_hf_to_gguf.py`
/// (f32 tensors, no tokenizer).
fn gguf_of(name: &str) -> Gguf {
    let dir = common::arch(name);
    let cfg: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).expect("config"))
            .expect("json");
    let hf: HashMap<String, Tensor> =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).expect("st");
    let u = |k: &str| cfg[k].as_u64().unwrap_or_else(|| panic!("{k}")) as usize;
    let arch = cfg["model_type"].as_str().expect("model_type").to_string();
    let (h, nh, nkv) = (
        u("hidden_size"),
        u("num_attention_heads"),
        u("num_key_value_heads"),
    );
    let hd = cfg["head_dim"].as_u64().map_or(h / nh, |x| x as usize);
    // Gemma 3 keeps one rotary set per layer type; GGUF holds the global one
    let rope = match cfg["rope_parameters"].get("full_attention") {
        Some(full) => full,
        None => &cfg["rope_parameters"],
    };
    let gemma3 = arch == "gemma3_text";
    let arch = if gemma3 { "gemma3".to_string() } else { arch };
    let theta = rope["rope_theta"].as_f64().expect("rope_theta");
    let k = |s: &str| format!("{arch}.{s}");
    let mut meta = vec![
        (
            "general.architecture".to_string(),
            MetaValue::String(arch.clone()),
        ),
        (k("embedding_length"), MetaValue::U32(h as u32)),
        (
            k("feed_forward_length"),
            MetaValue::U32(u("intermediate_size") as u32),
        ),
        (
            k("block_count"),
            MetaValue::U32(u("num_hidden_layers") as u32),
        ),
        (
            k("context_length"),
            MetaValue::U32(u("max_position_embeddings") as u32),
        ),
        (k("attention.head_count"), MetaValue::U32(nh as u32)),
        (k("attention.head_count_kv"), MetaValue::U32(nkv as u32)),
        (k("attention.key_length"), MetaValue::U32(hd as u32)),
        (k("attention.value_length"), MetaValue::U32(hd as u32)),
        (k("rope.dimension_count"), MetaValue::U32(hd as u32)),
        (k("rope.freq_base"), MetaValue::F32(theta as f32)),
        (
            k("attention.layer_norm_rms_epsilon"),
            MetaValue::F32(cfg["rms_norm_eps"].as_f64().expect("eps") as f32),
        ),
    ];
    if gemma3 {
        let types = cfg["layer_types"].as_array().expect("layer_types");
        meta.push((
            k("attention.sliding_window"),
            MetaValue::U32(u("sliding_window") as u32),
        ));
        meta.push((
            k("attention.sliding_window_pattern"),
            MetaValue::Array(
                types
                    .iter()
                    .map(|t| MetaValue::Bool(t == "sliding_attention"))
                    .collect(),
            ),
        ));
        let q = cfg["query_pre_attn_scalar"].as_f64().expect("scalar");
        meta.push((
            k("attention.scale"),
            MetaValue::F32((1.0 / q.sqrt()) as f32),
        ));
    }
    if rope["rope_type"] == "linear" {
        meta.push((k("rope.scaling.type"), MetaValue::String("linear".into())));
        let f = rope["factor"].as_f64().expect("factor");
        meta.push((k("rope.scaling.factor"), MetaValue::F32(f as f32)));
    }
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    // Llama's converter permutes q/k rows so that rotary pairs are adjacent (llama.cpp's
    // "normal" rope); Qwen keeps the Hugging Face (NEOX) layout
    let permute = |t: &Tensor, heads: usize| -> Tensor {
        if arch != "llama" {
            return t.clone();
        }
        let dims = t.dims().to_vec();
        let mut split = vec![heads, 2, dims[0] / heads / 2];
        split.extend_from_slice(&dims[1..]);
        t.reshape(split)
            .expect("reshape")
            .transpose(1, 2)
            .expect("swap")
            .contiguous()
            .expect("contiguous")
            .reshape(dims)
            .expect("back")
    };
    let mut rename = |from: &str, to: String, heads: Option<usize>| {
        if let Some(t) = hf.get(from) {
            let t = match heads {
                Some(n) => permute(t, n),
                None => t.clone(),
            };
            // the Gemma converter stores norm weights as 1 + w
            let t = if gemma3 && from.ends_with("norm.weight") {
                (t + 1.0).expect("+1")
            } else {
                t
            };
            tensors.push((to, t));
        }
    };
    rename(
        "model.embed_tokens.weight",
        "token_embd.weight".into(),
        None,
    );
    rename("model.norm.weight", "output_norm.weight".into(), None);
    if cfg["tie_word_embeddings"].as_bool() != Some(true) {
        rename("lm_head.weight", "output.weight".into(), None);
    }
    for i in 0..u("num_hidden_layers") {
        let p = |s: &str| format!("model.layers.{i}.{s}");
        let g = |s: &str| format!("blk.{i}.{s}");
        // Gemma's `post_attention_layernorm` normalises the attention output; Llama's is the
        // pre-feed-forward norm
        if gemma3 {
            rename(
                &p("post_attention_layernorm.weight"),
                g("post_attention_norm.weight"),
                None,
            );
            rename(
                &p("pre_feedforward_layernorm.weight"),
                g("ffn_norm.weight"),
                None,
            );
            rename(
                &p("post_feedforward_layernorm.weight"),
                g("post_ffw_norm.weight"),
                None,
            );
        } else {
            rename(
                &p("post_attention_layernorm.weight"),
                g("ffn_norm.weight"),
                None,
            );
        }
        for (from, to, heads) in [
            ("input_layernorm.weight", "attn_norm.weight", None),
            ("self_attn.q_proj.weight", "attn_q.weight", Some(nh)),
            ("self_attn.q_proj.bias", "attn_q.bias", Some(nh)),
            ("self_attn.k_proj.weight", "attn_k.weight", Some(nkv)),
            ("self_attn.k_proj.bias", "attn_k.bias", Some(nkv)),
            ("self_attn.v_proj.weight", "attn_v.weight", None),
            ("self_attn.v_proj.bias", "attn_v.bias", None),
            ("self_attn.q_norm.weight", "attn_q_norm.weight", None),
            ("self_attn.k_norm.weight", "attn_k_norm.weight", None),
            ("self_attn.o_proj.weight", "attn_output.weight", None),
            ("mlp.gate_proj.weight", "ffn_gate.weight", None),
            ("mlp.up_proj.weight", "ffn_up.weight", None),
            ("mlp.down_proj.weight", "ffn_down.weight", None),
        ] {
            rename(&p(from), g(to), heads);
        }
    }
    if rope["rope_type"] == "llama3" {
        // the converter's `rope_freqs`: a divisor per frequency
        let f = |k: &str| rope[k].as_f64().expect("rope parameter");
        let (factor, lo, hi) = (f("factor"), f("low_freq_factor"), f("high_freq_factor"));
        let old = f("original_max_position_embeddings");
        let divisors: Vec<f32> = (0..hd / 2)
            .map(|i| {
                let freq = 1.0 / theta.powf(2.0 * i as f64 / hd as f64);
                let wavelen = 2.0 * std::f64::consts::PI / freq;
                if wavelen < old / hi {
                    1.0
                } else if wavelen > old / lo {
                    factor as f32
                } else {
                    let smooth = (old / wavelen - lo) / (hi - lo);
                    (1.0 / ((1.0 - smooth) / factor + smooth)) as f32
                }
            })
            .collect();
        let n = divisors.len();
        tensors.push((
            "rope_freqs.weight".into(),
            Tensor::from_vec(divisors, n, &Device::Cpu).expect("t"),
        ));
    }
    let data: Vec<(String, Vec<u64>, u32, Vec<u8>)> = tensors
        .iter()
        .map(|(n, t)| {
            // GGUF dims are innermost first
            let dims = t.dims().iter().rev().map(|&d| d as u64).collect();
            let v = t
                .flatten_all()
                .expect("flat")
                .to_vec1::<f32>()
                .expect("f32");
            let bytes = v.iter().flat_map(|x| x.to_le_bytes()).collect();
            (n.clone(), dims, 0u32, bytes)
        })
        .collect();
    let meta: Vec<(&str, MetaValue)> = meta.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let refs: Vec<(&str, Vec<u64>, u32, Vec<u8>)> = data
        .iter()
        .map(|(n, d, t, b)| (n.as_str(), d.clone(), *t, b.clone()))
        .collect();
    Gguf::from_bytes(writer::write(&meta, &refs)).expect("gguf")
}

#[test]
fn gemma3_text() {
    let f = load("gemma3");
    let c = &f.model.config;
    assert_eq!(c.architecture, "gemma3");
    let s = c.sliding.as_ref().expect("sliding window");
    assert_eq!(
        (s.window, s.layers.as_slice()),
        (5, &[true, false, true][..])
    );
    assert_eq!(s.rope_theta, 10_000.0);
    assert_eq!(c.rope_theta, 1e6);
    assert_eq!(c.rope_scaling, downshift_slm::RopeScaling::Linear(8.0));
    assert_eq!(c.embed_scale, 8.0);
    assert!((c.attn_scale - 1.0 / 48f32.sqrt()).abs() < 1e-7);
    let b = &f.model.blocks[0];
    assert!(b.q_norm.is_some() && b.post_attn_norm.is_some() && b.post_ffn_norm.is_some());
    check("gemma3");
}

#[test]
fn gguf_conversions_match_transformers() {
    for name in ARCHS {
        let g = gguf_of(name);
        let model = Llama::from_gguf(&g).unwrap_or_else(|e| panic!("{name}: gguf: {e}"));
        let hf = Llama::from_hf_dir(common::arch(name)).expect("hf");
        assert_eq!(model.config.rope_theta, hf.config.rope_theta, "{name}");
        // (Llama-3 scaling arrives as explicit `rope_freqs` divisors in GGUF)
        let (a, b) = (model.config.freq_factors(), hf.config.freq_factors());
        assert!(
            a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5),
            "{name}: rotary divisors {a:?} vs {b:?}"
        );
        assert_eq!(model.config.sliding, hf.config.sliding, "{name}");
        assert_eq!(model.config.attn_scale, hf.config.attn_scale, "{name}");
        assert_eq!(
            model.config.tie_word_embeddings, hf.config.tie_word_embeddings,
            "{name}"
        );
        check_fixture(&with_model(name, model), " (GGUF)");
    }
}

/// Gemma 3's sliding-window layers (window 5 in the fixture) let go of positions no query can
/// see: decoding 40 tokens one by one, they hold at most about two windows while the global
/// layer holds every position, and every step's logits still match transformers.
#[test]
fn gemma3_sliding_window_cache_is_bounded() {
    let f = load("gemma3");
    let m = &f.model;
    let (ids, want) = f.seqs.iter().max_by_key(|s| s.0.len()).expect("a sequence");
    assert!(ids.len() >= 30, "the longest fixture sequence is too short");
    let mut cache = m.new_cache(64, KvDtype::F32);
    let mut rows = Vec::new();
    let mut most = 0;
    for t in 0..ids.len() {
        rows.push(
            m.forward(&ids[t..t + 1], &mut cache, AdapterSel::None, Logits::All)
                .expect("decode"),
        );
        most = most.max(cache.held(0));
        assert_eq!(
            cache.held(1),
            t + 1,
            "the global layer keeps every position"
        );
    }
    assert!(
        most <= 2 * 5 + 1,
        "a sliding layer held {most} positions (window 5)"
    );
    let got = Tensor::cat(&rows, 0).expect("cat");
    let d = max_diff(&got, want);
    assert!(d <= TOL, "max |logit - transformers| = {d:e}");
    // undoing the last pass keeps what the next query needs; truncating further empties
    cache.truncate(ids.len() - 1);
    assert_eq!(cache.len(), ids.len() - 1);
    cache.truncate(ids.len() - 8);
    assert_eq!(cache.len(), 0);
}
