//! End-to-end training on the tiny parity fixtures of the slm crate (random 2-layer models
//! with a 384-token vocabulary) with a byte-level tokenizer built here: the loss falls, the
//! model then answers the trained prompts greedily, the PEFT export loads back through the
//! slm crate with identical logits, resume equals an uninterrupted run bit for bit, and bad
//! input gives clear errors.
// Clippy allows unwrap/expect/panic in tests (clippy.toml) only inside `cfg(test)`: this
// marks the whole test crate, helpers included.
#![cfg(test)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Tensor;
use downshift_slm::quant::PackedMatrix;
use downshift_slm::{ChatTemplate, KvDtype, Llama, Logits, Tokenizer, Weight};
use downshift_train::adapter::prune_checkpoints;
use downshift_train::base_fingerprint;
use downshift_train::trainer::RunOptions;
use downshift_train::{
    ChatRecord, Dataset, Example, ExampleBuilder, Precision, PromptTransform, SpecialistMeta,
    SplitConfig, TrainConfig, TrainError, Trainer, load_adapter, merge_to_hf_dir,
};
use serde_json::json;

/// A parity fixture of the slm crate as a Hugging Face folder (weights regenerated).
fn fixture(name: &str) -> PathBuf {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../slm/tests/fixtures/arch")
        .join(name);
    downshift_slm::testing::materialize_fixture(&src).expect("fixture model")
}

fn model(name: &str) -> Llama {
    Llama::from_hf_dir(fixture(name)).expect("fixture model")
}

/// GPT-2's byte → printable character map.
fn byte_char(b: u8) -> char {
    let printable = |b: u8| (33..=126).contains(&b) || (161..=172).contains(&b) || b >= 174;
    if printable(b) {
        return b as char;
    }
    let n = (0..b).filter(|&x| !printable(x)).count() as u32;
    char::from_u32(256 + n).expect("char")
}

/// A byte-level BPE tokenizer without merges: 256 byte tokens + the two ChatML specials.
fn byte_tokenizer() -> Tokenizer {
    let vocab: serde_json::Map<String, serde_json::Value> = (0..=255u8)
        .map(|b| (byte_char(b).to_string(), json!(b as u32)))
        .collect();
    let tj = json!({
        "model": {"type": "BPE", "vocab": vocab, "merges": []},
        "added_tokens": [
            {"id": 256, "content": "<|im_start|>", "special": true},
            {"id": 257, "content": "<|im_end|>", "special": true}
        ],
        "pre_tokenizer": null,
        "post_processor": null
    });
    Tokenizer::from_hf_json(&tj.to_string(), Some(r#"{"eos_token": "<|im_end|>"}"#))
        .expect("tokenizer")
}

const FACTS: [(&str, &str); 8] = [
    ("France", "Paris"),
    ("Spain", "Madrid"),
    ("Italy", "Rome"),
    ("Peru", "Lima"),
    ("Japan", "Tokyo"),
    ("Chile", "Santiago"),
    ("Egypt", "Cairo"),
    ("Kenya", "Nairobi"),
];

fn records() -> Vec<ChatRecord> {
    FACTS
        .iter()
        .map(|(c, a)| ChatRecord {
            id: format!("call-{c}"),
            messages: vec![
                json!({"role": "system", "content": "You answer with a capital."}),
                json!({"role": "user", "content": c}),
            ],
            tools: None,
            answer: json!({"role": "assistant", "content": a}),
        })
        .collect()
}

fn examples() -> Vec<Example> {
    let t = ChatTemplate::canonical().expect("template");
    let tok = byte_tokenizer();
    // the constant system text is pruned, as a specialist's prompt would be
    let b = ExampleBuilder {
        transform: PromptTransform::pruning(Some("You answer with a capital.".into())),
        ..ExampleBuilder::new(&t, &tok)
    };
    records()
        .iter()
        .map(|r| b.build(r).expect("example"))
        .collect()
}

fn config() -> TrainConfig {
    TrainConfig {
        rank: 8,
        alpha: 16.0,
        lr: 2e-2,
        max_steps: Some(100),
        batch_size: 4,
        warmup_steps: 5,
        eval_every: 0,
        min_examples: 4,
        // the f32 reference everywhere; the bf16 products have their own tests below
        precision: Precision::F32,
        ..Default::default()
    }
}

fn greedy(m: &Llama, sel: downshift_slm::AdapterSel, prompt: &[u32], max: usize) -> Vec<u32> {
    let mut cache = m.new_cache(256, KvDtype::F32);
    let mut out = Vec::new();
    let mut next = prompt.to_vec();
    for _ in 0..max {
        let l = m
            .forward(&next, &mut cache, sel, Logits::Last)
            .expect("forward");
        let id = l
            .flatten_all()
            .expect("flat")
            .argmax(0)
            .expect("argmax")
            .to_scalar::<u32>()
            .expect("id");
        out.push(id);
        if id == 257 {
            break;
        }
        next = vec![id];
    }
    out
}

fn all_logits(m: &Llama, sel: downshift_slm::AdapterSel, ids: &[u32]) -> Tensor {
    let mut c = m.new_cache(256, KvDtype::F32);
    m.forward(ids, &mut c, sel, Logits::All).expect("forward")
}

fn max_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .expect("sub")
        .abs()
        .expect("abs")
        .max_all()
        .expect("max")
        .to_scalar::<f32>()
        .expect("scalar")
}

fn meta(tr: &Trainer) -> SpecialistMeta {
    SpecialistMeta::new(
        "fixtures/llama",
        tr.model(),
        PromptTransform::pruning(Some("You answer with a capital.".into())),
        tr.config(),
    )
    .expect("meta")
}

#[test]
fn mask_covers_the_answer_and_end_of_turn_only() {
    let t = ChatTemplate::canonical().expect("template");
    let tok = byte_tokenizer();
    let b = ExampleBuilder::new(&t, &tok);
    let e = b.build(&records()[0]).expect("example");
    assert_eq!(tok.decode(&e.answer(), true), "Paris<|im_end|>");
    assert!(
        tok.decode(e.prompt(), true)
            .ends_with("<|im_start|>assistant\n")
    );
    // a tool-call answer: the call JSON is the target
    let mut r = records()[0].clone();
    r.tools = Some(vec![
        json!({"type": "function", "function": {"name": "capital",
        "parameters": {"type": "object", "properties": {"country": {"type": "string"}}}}}),
    ]);
    r.answer = json!({"role": "assistant", "content": null, "tool_calls": [{"id": "c0",
        "type": "function", "function": {"name": "capital", "arguments": "{\"country\": \"France\"}"}}]});
    let e = b.build(&r).expect("tool example");
    assert_eq!(
        tok.decode(&e.answer(), true),
        "<tool_call>\n{\"name\": \"capital\", \"arguments\": {\"country\": \"France\"}}\n</tool_call><|im_end|>"
    );
    assert!(tok.decode(e.prompt(), true).contains("<tools>"));
    // pruning: no tool schemas and no constant system text in the prompt
    let pruned = ExampleBuilder {
        transform: PromptTransform::pruning(Some("You answer with a capital.".into())),
        ..ExampleBuilder::new(&t, &tok)
    };
    let e = pruned.build(&r).expect("pruned");
    let p = tok.decode(e.prompt(), true);
    assert!(!p.contains("<tools>") && !p.contains("capital."), "{p}");
    assert_eq!(
        p,
        pruned
            .render_prompt(&r.messages, r.tools.as_deref())
            .expect("router prompt")
    );
}

#[test]
fn training_lowers_the_loss_and_the_model_answers() {
    let data = examples();
    let mut tr = Trainer::new(model("llama"), config()).expect("trainer");
    let before = tr.evaluate(&data).expect("eval");
    let mut log = Vec::new();
    let mut seen = 0usize;
    let mut progress = |p: &downshift_train::Progress| {
        assert!(p.tokens_per_s > 0.0 && p.lr > 0.0);
        seen += 1;
    };
    let s = tr
        .run(
            &data,
            &[],
            RunOptions {
                log: Some(&mut log),
                progress: Some(&mut progress),
                ..Default::default()
            },
        )
        .expect("train");
    let after = tr.evaluate(&data).expect("eval");
    assert_eq!(s.steps, s.total_steps);
    assert_eq!(seen, s.steps);
    eprintln!(
        "loss {before} -> {after} in {:.1}s, {:.0} tok/s",
        s.seconds, s.tokens_per_s
    );
    assert!(after < before * 0.1, "loss {before} -> {after}");
    let lines: Vec<serde_json::Value> = String::from_utf8(log)
        .expect("utf8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), s.steps);
    assert!(
        lines[s.steps - 1]["loss"].as_f64().expect("loss")
            < lines[0]["loss"].as_f64().expect("loss")
    );
    for e in &data {
        let got = greedy(tr.model(), tr.adapter_sel(), e.prompt(), 16);
        assert_eq!(got, e.answer(), "example {}", e.id);
    }
    // the base alone does not know the answers
    let base_right = data
        .iter()
        .filter(|e| {
            greedy(tr.model(), downshift_slm::AdapterSel::None, e.prompt(), 16) == e.answer()
        })
        .count();
    assert_eq!(base_right, 0);

    // PEFT export → the slm crate's loader → identical logits and answers
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("adapter");
    tr.save_adapter(&out, &meta(&tr)).expect("save");
    let cfg: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("adapter_config.json")).expect("config"),
    )
    .expect("json");
    assert_eq!(cfg["peft_type"], "LORA");
    assert_eq!(cfg["task_type"], "CAUSAL_LM");
    assert_eq!(cfg["r"], 8);
    let names = candle_core::safetensors::load(
        out.join("adapter_model.safetensors"),
        &candle_core::Device::Cpu,
    )
    .expect("tensors");
    let a = &names["base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight"];
    let b = &names["base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"];
    assert_eq!(a.dims(), &[8, 64]);
    assert_eq!(b.dims(), &[64, 8]);
    assert_eq!(names.len(), 2 * 7 * 2);
    let mut fresh = model("llama");
    let (id, m) = load_adapter(&mut fresh, &out).expect("load");
    assert_eq!(m.expect("meta").transform, meta(&tr).transform);
    for e in &data {
        let d = max_diff(
            &all_logits(tr.model(), tr.adapter_sel(), &e.ids),
            &all_logits(&fresh, downshift_slm::AdapterSel::One(id), &e.ids),
        );
        assert_eq!(d, 0.0, "example {}", e.id);
    }
    // merged into the Hugging Face base folder: same logits without an adapter
    let merged_dir = dir.path().join("merged");
    merge_to_hf_dir(&fixture("llama"), &out, &merged_dir).expect("merge");
    assert!(merged_dir.join("config.json").exists());
    let merged = Llama::from_hf_dir(&merged_dir).expect("merged model");
    for e in &data {
        let d = max_diff(
            &all_logits(tr.model(), tr.adapter_sel(), &e.ids),
            &all_logits(&merged, downshift_slm::AdapterSel::None, &e.ids),
        );
        assert!(d < 1e-4, "example {}: {d}", e.id);
    }
    // a merge onto a base of other shapes is refused
    let e = merge_to_hf_dir(&fixture("smollm2"), &out, &dir.path().join("bad")).unwrap_err();
    assert!(matches!(e, TrainError::OtherBase(_)), "{e}");
}

/// Per-update losses of a run with `precision`, and the trainer after it.
fn losses_with(precision: Precision, steps: usize) -> (Vec<f32>, Trainer) {
    let data = examples();
    let cfg = TrainConfig {
        precision,
        max_steps: Some(steps),
        ..config()
    };
    let mut tr = Trainer::new(model("llama"), cfg).expect("trainer");
    let mut losses = Vec::new();
    let mut progress = |p: &downshift_train::Progress| losses.push(p.loss);
    tr.run(
        &data,
        &[],
        RunOptions {
            progress: Some(&mut progress),
            ..Default::default()
        },
    )
    .expect("train");
    (losses, tr)
}

#[test]
fn bf16_products_train_like_f32() {
    if !downshift_slm::bf16::supported() {
        eprintln!("this CPU has neither AVX-512 BF16 nor AMX: bf16 training test skipped");
        return;
    }
    let (f32_losses, f32_tr) = losses_with(Precision::F32, 12);
    let (bf16_losses, bf16_tr) = losses_with(Precision::Bf16, 12);
    // the f32 run keeps its base as loaded; the bf16 run multiplies by bf16 weights
    assert!(matches!(
        f32_tr.model().blocks[0].o.weight,
        Weight::Dense(_)
    ));
    assert!(matches!(
        bf16_tr.model().blocks[0].o.weight,
        Weight::Bf16(_)
    ));
    assert!(matches!(bf16_tr.model().lm_head.weight, Weight::Bf16(_)));
    // Tolerance: bf16 rounds every product's operands by up to 2⁻⁹ relative, which moves a
    // loss by well under 1%; the two runs then take slightly different updates, and at this
    // test's high rate (lr 2e-2, the loss falls from ~6.2 to ~2 in 12 updates) the difference
    // grows along the run (measured: ≤ 0.9% over these 12 updates, ~6% after 20 more, while
    // both keep falling). Each of the 12 losses must be within 2% of the f32 one.
    eprintln!("f32 {f32_losses:?}\nbf16 {bf16_losses:?}");
    let mut worst = 0f32;
    for (i, (b, f)) in bf16_losses.iter().zip(&f32_losses).enumerate() {
        let tol = 0.02 * f.abs();
        worst = worst.max((b - f).abs() / tol);
        assert!((b - f).abs() <= tol, "update {i}: bf16 {b} vs f32 {f}");
    }
    eprintln!("worst |diff| / tol {worst:.3}");
    // and the products did change something (the comparison is not vacuous)
    assert!(bf16_losses.iter().zip(&f32_losses).any(|(b, f)| b != f));
}

#[test]
fn forced_bf16_precision_is_refused_without_bf16_dot_products() {
    let cfg = TrainConfig {
        precision: Precision::Bf16,
        ..config()
    };
    downshift_slm::bf16::set_enabled(false);
    let r = Trainer::new(model("llama"), cfg);
    downshift_slm::bf16::set_enabled(true);
    if downshift_slm::amx::available() {
        eprintln!("AMX present: bf16 stays available, refusal not reachable here");
        return;
    }
    let e = r.err().expect("refused");
    assert!(e.to_string().contains("precision bf16"), "{e}");
    assert_eq!("f32".parse::<Precision>().expect("f32"), Precision::F32);
    assert!("fp8".parse::<Precision>().is_err());
}

#[test]
fn qlora_trains_through_a_quantized_base() {
    // the fixture's projections quantized to Q8_0 in the crate's packed layout (what a GGUF
    // base loads as): gradients flow through the packed matmul's backward
    let mut m = model("llama");
    let q = |w: &Weight| -> Weight {
        let t = w.dequantize().expect("dense");
        let (r, c) = t.dims2().expect("2d");
        let v: Vec<f32> = t.flatten_all().expect("f").to_vec1().expect("v");
        Weight::Packed(Arc::new(
            PackedMatrix::quantize_q8_0(&v, r, c).expect("q8_0"),
        ))
    };
    for b in &mut m.blocks {
        for l in b
            .qkv
            .iter_mut()
            .chain(b.gate_up.iter_mut())
            .chain([&mut b.o, &mut b.down])
        {
            l.weight = q(&l.weight);
        }
    }
    assert!(matches!(m.blocks[0].o.weight, Weight::Packed(_)));
    let data = examples();
    let mut tr = Trainer::new(m, config()).expect("trainer");
    let before = tr.evaluate(&data).expect("eval");
    tr.run(&data, &[], RunOptions::default()).expect("train");
    let after = tr.evaluate(&data).expect("eval");
    assert!(after < before * 0.1, "loss {before} -> {after}");
}

fn resume_config() -> TrainConfig {
    TrainConfig {
        max_steps: Some(8),
        batch_size: 2,
        grad_accum: 2,
        dropout: 0.1,
        eval_every: 2,
        patience: Some(10),
        weight_decay: 0.01,
        ..config()
    }
}

#[test]
fn resume_continues_exactly_like_an_uninterrupted_run() {
    let data = examples();
    let (train, val) = data.split_at(6);
    let mut whole = Trainer::new(model("llama"), resume_config()).expect("trainer");
    whole.run(train, val, RunOptions::default()).expect("train");

    let dir = tempfile::tempdir().expect("tmp");
    let mut first = Trainer::new(model("llama"), resume_config()).expect("trainer");
    let s = first
        .run(
            train,
            val,
            RunOptions {
                until_step: Some(4),
                ..Default::default()
            },
        )
        .expect("train");
    assert_eq!(s.steps, 4);
    let ck = first
        .save_checkpoint(dir.path(), &meta(&first))
        .expect("checkpoint");
    assert!(ck.join("adapter_model.safetensors").exists());
    drop(first);
    let mut second = Trainer::resume(model("llama"), dir.path()).expect("resume");
    assert_eq!(second.state().step, 4);
    second
        .run(train, val, RunOptions::default())
        .expect("train");
    assert_eq!(second.state(), whole.state());
    let (a, b) = (
        whole.peft_tensors().expect("a"),
        second.peft_tensors().expect("b"),
    );
    for (k, t) in &a {
        assert_eq!(max_diff(t, &b[k]), 0.0, "{k}");
    }
    // a different seed gives a different run (the comparison above is not vacuous)
    let mut other = Trainer::new(
        model("llama"),
        TrainConfig {
            seed: 7,
            ..resume_config()
        },
    )
    .expect("trainer");
    other.run(train, val, RunOptions::default()).expect("train");
    let c = other.peft_tensors().expect("c");
    assert!(a.iter().any(|(k, t)| max_diff(t, &c[k]) > 0.0));
}

#[test]
fn too_few_examples_is_refused_with_the_number_needed() {
    let data = examples();
    let mut tr = Trainer::new(
        model("llama"),
        TrainConfig {
            min_examples: 10,
            ..config()
        },
    )
    .expect("trainer");
    let e = tr.run(&data[..3], &[], RunOptions::default()).unwrap_err();
    assert!(matches!(
        e,
        TrainError::TooFewExamples {
            given: 3,
            needed: 10
        }
    ));
    assert_eq!(
        e.to_string(),
        "too few examples: 3 given, at least 10 needed"
    );
}

#[test]
fn an_adapter_for_another_base_is_refused() {
    let data = examples();
    let mut tr = Trainer::new(
        model("llama"),
        TrainConfig {
            max_steps: Some(1),
            ..config()
        },
    )
    .expect("trainer");
    tr.run(&data, &[], RunOptions::default()).expect("train");
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path().join("adapter");
    tr.save_adapter(&out, &meta(&tr)).expect("save");
    // by the stored fingerprint
    let mut other = model("smollm2");
    assert_ne!(
        base_fingerprint(&other.config),
        base_fingerprint(&tr.model().config)
    );
    let e = load_adapter(&mut other, &out).unwrap_err();
    assert!(matches!(e, TrainError::OtherBase(_)), "{e}");
    assert!(e.to_string().contains("fixtures/llama"), "{e}");
    // without our metadata, by the shapes (the slm loader's check)
    std::fs::remove_file(out.join(SpecialistMeta::FILE)).expect("rm");
    let e = load_adapter(&mut other, &out).unwrap_err();
    assert!(matches!(e, TrainError::OtherBase(_)), "{e}");
    // and a checkpoint does not resume on another base
    let ck = dir.path().join("ck");
    tr.save_checkpoint(&ck, &meta(&tr)).expect("checkpoint");
    let e = Trainer::resume(model("smollm2"), &ck)
        .err()
        .expect("refused");
    assert!(matches!(e, TrainError::OtherBase(_)), "{e}");
}

#[test]
fn unknown_projection_and_bad_settings_are_refused() {
    let e = Trainer::new(
        model("llama"),
        TrainConfig {
            targets: vec!["qkv_proj".into()],
            ..config()
        },
    )
    .err()
    .expect("refused");
    assert!(
        e.to_string().contains("unknown target projection qkv_proj"),
        "{e}"
    );
    let e = Trainer::new(
        model("llama"),
        TrainConfig {
            rank: 0,
            ..config()
        },
    )
    .err()
    .expect("refused");
    assert!(matches!(e, TrainError::Config(_)));
}

fn listing(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(p)
        .expect("dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn a_failing_checkpoint_write_leaves_the_previous_one_intact() {
    let data = examples();
    let cfg = TrainConfig {
        max_steps: Some(4),
        ..config()
    };
    let mut tr = Trainer::new(model("llama"), cfg).expect("trainer");
    let dir = tempfile::tempdir().expect("tmp");
    let root = dir.path().join("ck");
    tr.run(
        &data,
        &[],
        RunOptions {
            until_step: Some(2),
            ..Default::default()
        },
    )
    .expect("train");
    tr.save_checkpoint(&root, &meta(&tr))
        .expect("first checkpoint");
    let saved = tr.peft_tensors().expect("tensors");
    tr.run(&data, &[], RunOptions::default()).expect("train");
    // the next checkpoint's final name is taken by a file: writing succeeds, the rename fails
    std::fs::write(root.join("step-00000004"), b"in the way").expect("obstacle");
    let e = tr.save_checkpoint(&root, &meta(&tr)).unwrap_err();
    assert!(e.to_string().contains("step-00000004"), "{e}");
    assert_eq!(
        listing(&root),
        vec!["latest", "step-00000002", "step-00000004"]
    );
    assert_eq!(
        std::fs::read_to_string(root.join("latest")).expect("latest"),
        "step-00000002"
    );
    let back = Trainer::resume(model("llama"), &root).expect("resume");
    assert_eq!(back.state().step, 2);
    let got = back.peft_tensors().expect("tensors");
    for (k, t) in &saved {
        assert_eq!(max_diff(t, &got[k]), 0.0, "{k}");
    }
    // pruning keeps the newest and never the one `latest` names
    std::fs::remove_file(root.join("step-00000004")).expect("rm obstacle");
    tr.save_checkpoint(&root, &meta(&tr))
        .expect("second checkpoint");
    let removed = prune_checkpoints(&root, 1).expect("prune");
    assert_eq!(removed, vec![root.join("step-00000002")]);
    assert_eq!(listing(&root), vec!["latest", "step-00000004"]);
    // an adapter folder whose parent is a file is a clear I/O error
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").expect("file");
    let e = tr
        .save_adapter(&file.join("adapter"), &meta(&tr))
        .unwrap_err();
    assert!(matches!(e, TrainError::Io { .. }), "{e}");
}

#[test]
fn early_stopping_stops_and_keeps_the_best_weights() {
    // validation asks for other answers to the same prompts: its loss falls while the format
    // is learned, then rises as the training answers are memorised
    let t = ChatTemplate::canonical().expect("template");
    let tok = byte_tokenizer();
    let b = ExampleBuilder::new(&t, &tok);
    let val: Vec<Example> = records()
        .into_iter()
        .map(|mut r| {
            r.id = format!("{}-other", r.id);
            r.answer = json!({"role": "assistant", "content": "Bordeaux"});
            b.build(&r).expect("example")
        })
        .collect();
    let train = examples();
    let mut tr = Trainer::new(
        model("llama"),
        TrainConfig {
            eval_every: 5,
            patience: Some(2),
            ..config()
        },
    )
    .expect("trainer");
    let s = tr.run(&train, &val, RunOptions::default()).expect("train");
    assert!(s.stopped_early, "{s:?}");
    assert!(s.steps < s.total_steps, "{s:?}");
    let best = s.best_val_loss.expect("best");
    assert_eq!(tr.evaluate(&val).expect("eval"), best);
}

/// One step of an agent conversation: the calls so far with their results, then `answer`.
fn agent_step(id: &str, done: &[(&str, &str)], answer: (&str, &str)) -> ChatRecord {
    let call = |i: usize, (name, args): (&str, &str)| {
        json!({"role": "assistant", "content": null, "tool_calls": [{"id": format!("call_{i}"),
            "type": "function", "function": {"name": name, "arguments": args}}]})
    };
    let mut messages = vec![json!({"role": "user", "content": "move report.pdf to temp"})];
    for (i, c) in done.iter().enumerate() {
        messages.push(call(i, *c));
        messages
            .push(json!({"role": "tool", "tool_call_id": format!("call_{i}"), "content": "ok"}));
    }
    ChatRecord {
        id: id.into(),
        messages,
        tools: None,
        answer: call(done.len(), answer),
    }
}

#[test]
fn an_agents_consecutive_steps_fold_into_one_sequence() {
    let t = ChatTemplate::canonical().expect("template");
    let tok = byte_tokenizer();
    let b = ExampleBuilder::new(&t, &tok);
    let (cd, mkdir, mv) = (
        ("cd", r#"{"folder": "document"}"#),
        ("mkdir", r#"{"dir_name": "temp"}"#),
        ("mv", r#"{"source": "report.pdf", "destination": "temp"}"#),
    );
    let recs = [
        agent_step("s1", &[], cd),
        agent_step("s2", &[cd], mkdir),
        agent_step("s3", &[cd, mkdir], mv),
        agent_step("other", &[], mkdir),
    ];
    let examples: Vec<Example> = recs.iter().map(|r| b.build(r).expect("example")).collect();
    let targets: usize = examples.iter().map(Example::target_tokens).sum();
    let mut d = Dataset {
        train: examples.clone(),
        ..Default::default()
    };
    assert_eq!(d.fold_prefixes(), 2);
    assert_eq!((d.train.len(), d.folded), (2, 2));
    // The last step carries every answer of its conversation, at the positions where each
    // step's answer stood; the unrelated call is untouched.
    let last = d.train.iter().find(|e| e.id == "s3").expect("s3 kept");
    assert_eq!(last.ids, examples[2].ids);
    for e in &examples[..3] {
        let n = e.len();
        assert_eq!(&last.ids[..n], &e.ids[..]);
        for (i, m) in e.mask.iter().enumerate() {
            assert!(
                *m == 0 || last.mask[i] == 1,
                "{} token {i} lost its target",
                e.id
            );
        }
    }
    let kept: usize = d.train.iter().map(Example::target_tokens).sum();
    assert_eq!(kept, targets);
    assert!(d.train.iter().any(|e| e.id == "other" && *e == examples[3]));
    // Nothing to fold a second time.
    assert_eq!(d.fold_prefixes(), 0);
}

#[test]
fn dataset_splits_by_call_and_refuses_a_small_task() {
    let t = ChatTemplate::canonical().expect("template");
    let tok = byte_tokenizer();
    let b = ExampleBuilder {
        max_len: Some(60),
        ..ExampleBuilder::new(&t, &tok)
    };
    let mut recs: Vec<ChatRecord> = (0..200)
        .map(|i| ChatRecord {
            id: format!("call-{i}"),
            messages: vec![json!({"role": "user", "content": format!("n{i}")})],
            tools: None,
            answer: json!({"role": "assistant", "content": "ok"}),
        })
        .collect();
    recs[0].messages = vec![json!({"role": "user", "content": "x".repeat(100)})];
    let split = SplitConfig::default();
    let d = Dataset::build(&recs, &b, &split, 10).expect("dataset");
    let n = d.train.len() + d.validation.len() + d.test_ids.len() + d.skipped.len();
    assert_eq!(n, 200);
    assert!(
        d.test_ids.len() > 5 && d.validation.len() > 5,
        "{} {}",
        d.test_ids.len(),
        d.validation.len()
    );
    // no test call is among the examples
    assert!(
        d.train
            .iter()
            .chain(&d.validation)
            .all(|e| !d.test_ids.contains(&e.id))
    );
    // the too-long record is skipped with its reason, unless it fell in the test split
    if !d.test_ids.contains(&"call-0".to_string()) {
        assert_eq!(d.skipped.len(), 1);
        assert!(
            d.skipped[0].1.contains("maximum sequence length"),
            "{:?}",
            d.skipped
        );
    }
    let e = Dataset::build(&recs[..8], &b, &split, 10).unwrap_err();
    let TrainError::TooFewExamples { given, needed } = e else {
        panic!("{e}")
    };
    assert!(given <= 8 && needed >= 13, "{given} {needed}");
}

/// Mean NLL of the target tokens of `data` under the inference forward pass.
fn inference_loss(m: &Llama, sel: downshift_slm::AdapterSel, data: &[Example]) -> f32 {
    let (mut sum, mut n) = (0f64, 0usize);
    for e in data {
        let rows: Vec<Vec<f32>> = all_logits(m, sel, &e.ids)
            .squeeze(0)
            .expect("squeeze")
            .to_vec2()
            .expect("rows");
        for t in 1..e.ids.len() {
            if e.mask[t] == 1 {
                let row = &rows[t - 1];
                let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let lse = max + row.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
                sum += (lse - row[e.ids[t] as usize]) as f64;
                n += 1;
            }
        }
    }
    (sum / n as f64) as f32
}

#[test]
fn frozen_layers_adapt_only_the_upper_layers_and_score_like_the_full_pass() {
    let data = examples();
    let cfg = TrainConfig {
        frozen_layers: 1,
        ..config()
    };
    let mut tr = Trainer::new(model("llama"), cfg).expect("trainer");
    let before = tr.evaluate(&data).expect("eval");
    tr.run(&data, &[], RunOptions::default()).expect("train");
    // the second pass over the same tokens comes from the cache: it must score the same
    let after = tr.evaluate(&data).expect("eval");
    assert_eq!(after, tr.evaluate(&data).expect("eval again"));
    assert!(after < before * 0.5, "loss {before} -> {after}");
    let names: Vec<String> = tr.peft_tensors().expect("tensors").into_keys().collect();
    assert!(!names.is_empty());
    assert!(
        names.iter().all(|k| k.contains(".layers.1.")),
        "adapter outside the unfrozen layer: {names:?}"
    );
    assert_eq!(
        tr.peft_config("fixtures/llama")["layers_to_transform"],
        json!([1])
    );
    // the exported adapter, loaded on a fresh model, gives the loss the cached pass reported
    let dir = tempfile::tempdir().expect("tmp");
    tr.save_adapter(dir.path(), &meta(&tr)).expect("save");
    let mut fresh = model("llama");
    let (id, _) = load_adapter(&mut fresh, dir.path()).expect("load");
    let full = inference_loss(&fresh, downshift_slm::AdapterSel::One(id), &data);
    assert!(
        (full - after).abs() <= 1e-3 * after.max(1.0),
        "cached {after} vs full pass {full}"
    );
    // nothing left to adapt
    let err = Trainer::new(
        model("llama"),
        TrainConfig {
            frozen_layers: 2,
            ..config()
        },
    )
    .err()
    .expect("refused");
    assert!(err.to_string().contains("frozen_layers 2"), "{err}");
}
