//! Architecture parity with `transformers`: tiny random models of every supported
//! architecture, made and run by `bench/slm/make_arch_fixtures.py` (float32, eager attention),
//! loaded here through the Hugging Face folder path. Logits must match transformers' at every
//! position to 1e-4 on each path: the cached forward (whole prompt, and a prefill followed by
//! tokens fed one and a few at a time), the batched forward and the differentiable
//! `forward_train`. The KV cache is f32 here; the default f16 cache rounds keys and values by
//! design (like llama.cpp) and cannot meet 1e-4.

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use downshift_slm::{AdapterSel, KvDtype, Llama, Logits};

const TOL: f32 = 1e-4;

/// Every folder under `tests/fixtures/arch`, each checked by a test below.
const ARCHS: [&str; 5] = ["llama", "llama3_rope", "smollm2", "qwen2", "qwen2_tied"];

struct Fixture {
    name: &'static str,
    model: Llama,
    /// Token ids and transformers' logits `[len, vocab]` of each input sequence.
    seqs: Vec<(Vec<u32>, Tensor)>,
}

fn load(name: &'static str) -> Fixture {
    let dir = common::fixture("arch").join(name);
    let model = Llama::from_hf_dir(&dir).unwrap_or_else(|e| panic!("{name}: load: {e}"));
    let refs: HashMap<String, Tensor> =
        candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu)
            .expect("reference.safetensors");
    let mut seqs = Vec::new();
    for i in 0.. {
        let Some(ids) = refs.get(&format!("ids.{i}")) else {
            break;
        };
        let ids: Vec<u32> = ids
            .to_vec1::<i64>()
            .expect("ids")
            .into_iter()
            .map(|x| x as u32)
            .collect();
        let logits = refs[&format!("logits.{i}")].clone();
        assert_eq!(
            logits.dims(),
            [ids.len(), model.config.vocab_size],
            "{name}: reference shape"
        );
        seqs.push((ids, logits));
    }
    assert!(seqs.len() >= 2, "{name}: reference holds no sequences");
    Fixture { name, model, seqs }
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b)
        .expect("sub")
        .abs()
        .expect("abs")
        .max_all()
        .expect("max")
        .to_scalar::<f32>()
        .expect("scalar")
}

/// Compares every path with transformers; returns the largest difference seen.
fn check(name: &'static str) -> f32 {
    let f = load(name);
    let m = &f.model;
    let mut worst = 0f32;
    let mut report = |path: &str, i: usize, d: f32| {
        assert!(
            d <= TOL,
            "{}: {path}, sequence {i}: max |logit - transformers| = {d:e} > {TOL:e}",
            f.name
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
    assert!(var.sqrt() > 0.5, "{name}: reference logits too flat");

    for (i, (ids, want)) in f.seqs.iter().enumerate() {
        // the whole sequence in one cached pass
        let mut cache = m.new_cache(64, KvDtype::F32);
        let got = m
            .forward(ids, &mut cache, AdapterSel::None, Logits::All)
            .expect("forward");
        report("cached forward, one pass", i, max_diff(&got, want));
        assert_eq!(cache.len(), ids.len());

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
    eprintln!("{name}: max |logit - transformers| = {worst:e}");
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
