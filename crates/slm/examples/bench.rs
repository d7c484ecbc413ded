//! Engine timing harness used by `bench/slm/run.sh`: loads a model once, then for each prompt
//! measures prefill, time to first token and greedy decode speed (end-of-generation ignored, so
//! every engine decodes the same number of tokens). Prints one JSON object.

use std::time::Instant;

use clap::Parser;
use downshift_slm::{AdapterSel, KvDtype, LocalModel, Logits};

#[derive(Parser)]
struct Args {
    #[arg(long)]
    model: std::path::PathBuf,
    /// JSON file: a list of prompt strings (already chat-formatted).
    #[arg(long)]
    prompts: std::path::PathBuf,
    /// Tokens to decode per prompt.
    #[arg(long, default_value_t = 128)]
    gen_tokens: usize,
    #[arg(long, default_value_t = 2)]
    threads: usize,
}

fn argmax(l: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in l.iter().enumerate() {
        if v > l[best] {
            best = i;
        }
    }
    best as u32
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<f64>().ok())
            })
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    downshift_slm::threads::set_num_threads(a.threads);
    let t = Instant::now();
    let m = LocalModel::load(&a.model)?;
    let load_s = t.elapsed().as_secs_f64();
    let prompts: Vec<String> = serde_json::from_str(&std::fs::read_to_string(&a.prompts)?)?;
    let run = |text: &str, n_gen: usize| -> Result<serde_json::Value, Box<dyn std::error::Error>> {
        let ids = m.tokenize(text);
        let mut cache = m.model.new_cache(ids.len() + n_gen + 1, KvDtype::F16);
        let t0 = Instant::now();
        let l = m
            .model
            .forward(&ids, &mut cache, AdapterSel::None, Logits::Last)?;
        let mut next = argmax(&l.flatten_all()?.to_vec1::<f32>()?);
        let prefill_s = t0.elapsed().as_secs_f64();
        let ttft_s = prefill_s;
        let mut out = vec![next];
        let t1 = Instant::now();
        for _ in 1..n_gen {
            let l = m
                .model
                .forward(&[next], &mut cache, AdapterSel::None, Logits::Last)?;
            next = argmax(&l.flatten_all()?.to_vec1::<f32>()?);
            out.push(next);
        }
        let decode_s = t1.elapsed().as_secs_f64();
        Ok(serde_json::json!({
            "prompt_tokens": ids.len(),
            "prefill_s": prefill_s,
            "ttft_s": ttft_s,
            "decode_tokens": n_gen - 1,
            "decode_s": decode_s,
            "tokens": out,
        }))
    };
    // warm-up (page in weights, start threads)
    run(&prompts[0], 4)?;
    let mut results = Vec::new();
    for p in &prompts {
        results.push(run(p, a.gen_tokens)?);
    }
    println!(
        "{}",
        serde_json::json!({"engine": "downshift", "load_s": load_s, "results": results, "peak_rss_mb": peak_rss_mb()})
    );
    Ok(())
}
