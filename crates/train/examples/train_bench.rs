//! The downshift side of `bench/train` (training throughput against PyTorch + PEFT, and the
//! PEFT load check). Three subcommands, each printing one JSON line on stdout:
//!
//! * `data MODEL.gguf OUT.json [--text FILE.jsonl] [--examples N] [--seq-len L] [--batch B]`: the token data
//!   set both sides train on. The chat records of FILE (import format, e.g. `data/bfcl/bfcl.jsonl`,
//!   rendered with the ChatML template, tools included) are tokenized, concatenated and cut into
//!   N windows of exactly L tokens (no padding on either side); without a text file the ids come
//!   from a fixed seed. The loss mask covers the last half of each window. The file also holds
//!   the trainer's batch plan, so that the PEFT side trains on the same batches in the same order.
//! * `train MODEL.gguf DATA.json [--steps N] [--warmup W] [--threads T] [--batch B] [--dequantize]
//!   [--precision auto|f32|bf16]`: W + N updates of LoRA r 16 / alpha 32 / dropout 0 on all seven projections, AdamW lr 2e-4,
//!   clip 1.0; tokens/s over the N timed updates (the W first ones are excluded).
//! * `adapter MODEL.gguf OUT_DIR PROMPTS.json [--steps N] [--lr X] [--threads T] [--max-tokens M]`:
//!   trains a small adapter (QLoRA on the GGUF base) with a high learning rate so that it changes
//!   the answers, writes it in PEFT format to OUT_DIR, then reloads it from OUT_DIR onto the
//!   *dequantized* base and decodes each prompt greedily (chat template applied, f32 KV cache),
//!   and also without the adapter and on the quantized base (the serving path), for
//!   `bench/train/peft_load.py` to compare against `peft`.

use std::path::Path;
use std::time::Instant;

use downshift_slm::{AdapterSel, GenerateOptions, KvDtype, LocalModel};
use downshift_train::trainer::{RunOptions, plan_batches};
use downshift_train::{
    ChatRecord, Example, ExampleBuilder, Precision, Progress, PromptTransform, SpecialistMeta,
    TrainConfig, Trainer,
};
use serde_json::{Value, json};

type Res<T> = Result<T, Box<dyn std::error::Error>>;

const USAGE: &str = "usage: train_bench data MODEL.gguf OUT.json [--text FILE.jsonl] [--examples N] [--seq-len L] [--batch B]
       train_bench train MODEL.gguf DATA.json [--steps N] [--warmup W] [--threads T] [--batch B] [--dequantize] [--precision auto|f32|bf16]
       train_bench adapter MODEL.gguf OUT_DIR PROMPTS.json [--steps N] [--lr X] [--threads T] [--max-tokens M]";

/// Positional arguments and `--flag [value]` options.
struct Args {
    pos: Vec<String>,
    opts: Vec<(String, Option<String>)>,
}

impl Args {
    fn parse() -> Self {
        let mut pos = Vec::new();
        let mut opts = Vec::new();
        let mut it = std::env::args().skip(1).peekable();
        while let Some(a) = it.next() {
            if let Some(name) = a.strip_prefix("--") {
                let v = match it.peek() {
                    Some(n) if !n.starts_with("--") && name != "dequantize" => it.next(),
                    _ => None,
                };
                opts.push((name.to_string(), v));
            } else {
                pos.push(a);
            }
        }
        Self { pos, opts }
    }

    fn flag(&self, name: &str) -> bool {
        self.opts.iter().any(|(n, _)| n == name)
    }

    fn get<T: std::str::FromStr>(&self, name: &str, default: T) -> Res<T> {
        match self.opts.iter().find(|(n, _)| n == name) {
            None => Ok(default),
            Some((_, Some(v))) => v
                .parse()
                .map_err(|_| format!("--{name}: cannot parse {v:?}").into()),
            Some((_, None)) => Err(format!("--{name} needs a value").into()),
        }
    }

    fn str(&self, name: &str) -> Option<&str> {
        self.opts
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn pos(&self, i: usize) -> Res<&str> {
        self.pos
            .get(i)
            .map(String::as_str)
            .ok_or_else(|| USAGE.into())
    }
}

fn main() -> Res<()> {
    let a = Args::parse();
    // one thread count for every pool: the slm kernels' pool, and candle's (its rayon pools read
    // RAYON_NUM_THREADS, its barrier pool CANDLE_NUM_THREADS, when they start)
    let threads: usize = a.get("threads", 0)?;
    if threads > 0 {
        downshift_slm::threads::set_num_threads(threads);
        for var in ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"] {
            // SAFETY: no other thread exists yet.
            unsafe { std::env::set_var(var, threads.to_string()) };
        }
    }
    match a.pos(0)? {
        "data" => data(&a),
        "train" => train(&a),
        "adapter" => adapter(&a, threads),
        _ => Err(USAGE.into()),
    }
}

fn peak_rss_gib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / (1024.0 * 1024.0))
        .unwrap_or(0.0)
}

/// `data`: one token data set for both sides.
fn data(a: &Args) -> Res<()> {
    let model = a.pos(1)?;
    let out = a.pos(2)?;
    let batch: usize = a.get("batch", 4)?;
    let n: usize = a.get("examples", 16)?;
    let seq: usize = a.get("seq-len", 256)?;
    let lm = LocalModel::load(model)?;
    let vocab = lm.model.config.vocab_size as u32;
    let mut stream: Vec<u32> = Vec::new();
    let mut source = "seeded pseudo-random ids".to_string();
    if let Some(text) = a.str("text").filter(|p| Path::new(p).exists()) {
        let canonical = downshift_slm::ChatTemplate::canonical()?;
        let b = ExampleBuilder::new(&canonical, &lm.tokenizer);
        for line in std::fs::read_to_string(text)?.lines() {
            if stream.len() >= n * seq {
                break;
            }
            let v: Value = serde_json::from_str(line)?;
            let Ok(r) = ChatRecord::from_import(&v) else {
                continue;
            };
            if let Ok(e) = b.build(&r) {
                stream.extend(e.ids);
            }
        }
        source = format!("{text} (ChatML, tools included, concatenated)");
    }
    if stream.len() < n * seq {
        // not enough text: a fixed-seed stream (SplitMix64), the same on every run
        let mut s = 0x5eed_u64;
        while stream.len() < n * seq {
            s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = s;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            stream.push(((z ^ (z >> 31)) % vocab as u64) as u32);
        }
    }
    let examples: Vec<Value> = stream
        .chunks(seq)
        .take(n)
        .enumerate()
        .map(|(i, ids)| {
            let mask: Vec<u8> = (0..seq).map(|t| u8::from(t >= seq / 2)).collect();
            json!({"id": format!("w{i}"), "ids": ids, "mask": mask})
        })
        .collect();
    // the trainer's own batch plan over these examples (seeded; what `train` will consume), so
    // that the PEFT side can take the same batches in the same order
    let plan = plan_batches(
        &vec![seq; n],
        &bench_config(batch, seq, n / batch, false, Precision::Auto),
        0,
    );
    let doc = json!({"seq_len": seq, "batch_size": batch, "source": source,
                     "batches": plan, "examples": examples});
    std::fs::write(out, serde_json::to_string(&doc)?)?;
    println!(
        "{}",
        json!({"examples": n, "seq_len": seq, "source": source})
    );
    Ok(())
}

fn read_examples(path: &str) -> Res<Vec<Example>> {
    let v: Value = serde_json::from_str(&std::fs::read_to_string(path)?)?;
    let list = v["examples"].as_array().ok_or("data file: no examples")?;
    let mut out = Vec::with_capacity(list.len());
    for e in list {
        let ids: Vec<u32> = serde_json::from_value(e["ids"].clone())?;
        let mask: Vec<u8> = serde_json::from_value(e["mask"].clone())?;
        out.push(Example {
            id: e["id"].as_str().unwrap_or_default().to_string(),
            ids,
            mask,
        });
    }
    Ok(out)
}

/// The benchmark's training settings (the PEFT side in `bench/train/bench.py` mirrors them).
fn bench_config(
    batch: usize,
    seq: usize,
    updates: usize,
    dequantize: bool,
    precision: Precision,
) -> TrainConfig {
    TrainConfig {
        rank: 16,
        alpha: 32.0,
        dropout: 0.0,
        lr: 2e-4,
        max_steps: Some(updates),
        batch_size: batch,
        warmup_steps: 0,
        min_lr_ratio: 1.0, // constant rate, like the PEFT side
        weight_decay: 0.0,
        clip: 1.0,
        eval_every: 0,
        max_seq_len: seq,
        min_examples: 1,
        dequantize,
        precision,
        ..Default::default()
    }
}

/// `train`: the throughput run.
fn train(a: &Args) -> Res<()> {
    let model_path = a.pos(1)?;
    let data_path = a.pos(2)?;
    let steps: usize = a.get("steps", 4)?;
    let warmup: usize = a.get("warmup", 1)?;
    let batch: usize = a.get("batch", 4)?;
    let dequantize = a.flag("dequantize");
    let precision: Precision = a.get("precision", Precision::Auto)?;
    let bf16 = precision.uses_bf16()?;
    let examples = read_examples(data_path)?;
    let seq = examples.iter().map(Example::len).max().unwrap_or(0);
    if examples.len() / batch < steps + warmup {
        return Err(format!(
            "{} examples in {data_path}, {} needed for {} updates of {batch}",
            examples.len(),
            batch * (steps + warmup),
            steps + warmup
        )
        .into());
    }
    let t0 = Instant::now();
    let model = LocalModel::load(model_path)?.model;
    let mut tr = Trainer::new(
        model,
        bench_config(batch, seq, steps + warmup, dequantize, precision),
    )?;
    let load_s = t0.elapsed().as_secs_f64();
    let mut marks: Vec<Instant> = vec![Instant::now()];
    let mut losses: Vec<f32> = Vec::new();
    let mut cb = |p: &Progress| {
        marks.push(Instant::now());
        losses.push(p.loss);
        eprintln!(
            "downshift step {}/{} loss {:.4}",
            p.step, p.total_steps, p.loss
        );
    };
    let s = tr.run(
        &examples,
        &[],
        RunOptions {
            progress: Some(&mut cb),
            ..Default::default()
        },
    )?;
    let step_s: Vec<f64> = marks
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64())
        .collect();
    let timed: f64 = step_s.iter().skip(warmup).sum();
    let tokens = (steps * batch * seq) as f64;
    println!(
        "{}",
        json!({
            "side": match (bf16, dequantize) {
                (true, _) => "downshift LoRA (bf16 products)",
                (false, true) => "downshift LoRA (f32 base)",
                (false, false) => "downshift QLoRA (Q4_1 base)",
            },
            "precision": if bf16 { "bf16" } else { "f32" },
            "tokens_per_s": tokens / timed.max(1e-9),
            "steps": steps, "warmup": warmup, "batch": batch, "seq_len": seq,
            "step_s": step_s, "losses": losses, "load_s": load_s,
            "threads": downshift_slm::threads::num_threads(),
            "candle_threads": candle_core::utils::get_num_threads(),
            "run_tokens": s.tokens,
            "peak_rss_gib": peak_rss_gib(),
        })
    );
    Ok(())
}

/// A small task the adapter learns: every answer follows one fixed, unusual pattern, so a
/// trained adapter visibly changes the greedy output.
fn adapter_records() -> Vec<ChatRecord> {
    let facts = [
        ("What is the capital of France?", "Paris"),
        ("What is the capital of Japan?", "Tokyo"),
        ("What is the capital of Italy?", "Rome"),
        ("What is the capital of Spain?", "Madrid"),
        ("What is the capital of Germany?", "Berlin"),
        ("What is the capital of Egypt?", "Cairo"),
        ("What is the capital of Canada?", "Ottawa"),
        ("What is the capital of Peru?", "Lima"),
    ];
    facts
        .iter()
        .enumerate()
        .map(|(i, (q, a))| ChatRecord {
            id: format!("cap-{i}"),
            messages: vec![json!({"role": "user", "content": q})],
            tools: None,
            answer: json!({"role": "assistant", "content": format!("ANSWER: {}. Done.", a.to_uppercase())}),
        })
        .collect()
}

/// `adapter`: train, write, reload on the dequantized base, decode greedily.
fn adapter(a: &Args, threads: usize) -> Res<()> {
    let model_path = a.pos(1)?;
    let out = Path::new(a.pos(2)?);
    let prompts: Vec<String> = serde_json::from_str(&std::fs::read_to_string(a.pos(3)?)?)?;
    let steps: usize = a.get("steps", 24)?;
    let lr: f64 = a.get("lr", 3e-3)?;
    let max_tokens: usize = a.get("max-tokens", 24)?;
    let lm = LocalModel::load(model_path)?;
    // the train data rendered with the model's own template, as the PEFT side renders prompts
    let b = ExampleBuilder::new(&lm.template, &lm.tokenizer);
    let train: Vec<Example> = adapter_records()
        .iter()
        .map(|r| b.build(r))
        .collect::<Result<_, _>>()?;
    let cfg = TrainConfig {
        rank: 16,
        alpha: 32.0,
        lr,
        max_steps: Some(steps),
        batch_size: 4,
        warmup_steps: 2,
        eval_every: 0,
        min_examples: 1,
        ..Default::default()
    };
    let t0 = Instant::now();
    let mut tr = Trainer::new(lm.model.clone(), cfg)?;
    let s = tr.run(&train, &[], RunOptions::default())?;
    eprintln!(
        "adapter: {} updates, loss {:?} -> {:?} in {:.0}s",
        s.steps,
        s.first_loss,
        s.last_loss,
        t0.elapsed().as_secs_f64()
    );
    let meta = SpecialistMeta::new(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        tr.model(),
        PromptTransform::identity(),
        tr.config(),
    )?;
    tr.save_adapter(out, &meta)?;
    drop(tr);

    // reload the written adapter: on the dequantized base (f32, what PEFT runs) and on the
    // quantized base (what `downshift generate --adapter` serves)
    let mut dense = LocalModel::load(model_path)?;
    dense.model = dense.model.dequantized()?;
    dense.kv_dtype = KvDtype::F32;
    let dense_id = dense.load_adapter(out)?;
    let mut quant = LocalModel::load(model_path)?;
    let quant_id = quant.load_adapter(out)?;
    let opts = |sel| GenerateOptions {
        max_tokens,
        temperature: 0.0,
        adapter: sel,
        ..Default::default()
    };
    let mut results = Vec::new();
    for p in &prompts {
        let messages = json!([{"role": "user", "content": p}]).to_string();
        let text = dense.render_prompt(&messages, None)?;
        let ids = dense.tokenize(&text);
        let g = dense.generate_ids(&ids, &opts(AdapterSel::One(dense_id)), None)?;
        let base = dense.generate_ids(&ids, &opts(AdapterSel::None), None)?;
        let q = quant.generate_ids(&ids, &opts(AdapterSel::One(quant_id)), None)?;
        results.push(json!({
            "prompt": p, "rendered": text, "prompt_ids": ids,
            "ids": g.token_ids, "text": g.text, "logprobs": g.logprobs,
            "finish": format!("{:?}", g.finish_reason),
            "base_ids": base.token_ids, "base_text": base.text,
            "quantized_ids": q.token_ids, "quantized_text": q.text,
        }));
    }
    println!(
        "{}",
        json!({
            "adapter": out, "steps": s.steps, "first_loss": s.first_loss, "last_loss": s.last_loss,
            "max_tokens": max_tokens, "threads": threads, "results": results,
            "eog_ids": dense.tokenizer.eog_ids(),
        })
    );
    Ok(())
}
