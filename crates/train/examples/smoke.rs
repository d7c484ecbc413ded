//! Training throughput on a real model and real calls:
//! `cargo run --release -p downshift-train --example smoke -- MODEL.gguf bfcl.jsonl [N] [STEPS] [dense]`
//! (tool schemas pruned, examples of at most 256 tokens, r = 16 on all projections,
//! batch 4; `LR` sets the peak rate). Prints the loss per update, tokens/s and the training-set
//! loss before and after.

use downshift_train::trainer::RunOptions;
use downshift_train::{ChatRecord, ExampleBuilder, PromptTransform, TrainConfig, Trainer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(model), Some(data)) = (args.get(1), args.get(2)) else {
        return Err("usage: smoke MODEL.gguf bfcl.jsonl [N] [STEPS] [dense]".into());
    };
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(32);
    let steps: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(8);
    let dense = args.get(5).is_some_and(|s| s == "dense");
    let lm = downshift_slm::LocalModel::load(model)?;
    // SmolLM2's own template cannot render tool calls: use the canonical ChatML one
    let canonical = downshift_slm::ChatTemplate::canonical()?;
    let template = if lm.template.supports_tools() {
        &lm.template
    } else {
        &canonical
    };
    let b = ExampleBuilder {
        transform: PromptTransform::pruning(None),
        max_len: Some(256),
        ..ExampleBuilder::new(template, &lm.tokenizer)
    };
    let text = std::fs::read_to_string(data)?;
    let mut ex = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        let Ok(r) = ChatRecord::from_import(&v) else {
            continue;
        };
        if let Ok(e) = b.build(&r) {
            ex.push(e);
        }
        if ex.len() == n {
            break;
        }
    }
    let avg = ex.iter().map(|e| e.len()).sum::<usize>() as f64 / ex.len().max(1) as f64;
    eprintln!("{} examples, {avg:.0} tokens on average", ex.len());
    let cfg = TrainConfig {
        rank: 16,
        alpha: 32.0,
        max_steps: Some(steps),
        batch_size: 4,
        warmup_steps: 2,
        min_examples: 4,
        dequantize: dense,
        ..Default::default()
    };
    let lr: f64 = std::env::var("LR")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2e-4);
    let cfg = TrainConfig { lr, ..cfg };
    let mut tr = Trainer::new(lm.model.clone(), cfg)?;
    let before = tr.evaluate(&ex)?;
    let mut cb = |p: &downshift_train::Progress| {
        eprintln!(
            "step {}/{} loss {:.3} lr {:.2e} {:.0} tok/s eta {:.0}s",
            p.step, p.total_steps, p.loss, p.lr, p.tokens_per_s, p.eta_s
        );
    };
    let s = tr.run(
        &ex,
        &[],
        RunOptions {
            progress: Some(&mut cb),
            ..Default::default()
        },
    )?;
    let after = tr.evaluate(&ex)?;
    println!("training-set loss {before:.3} -> {after:.3}");
    println!(
        "{} updates, {} tokens in {:.1}s: {:.0} tokens/s ({} base)",
        s.steps,
        s.tokens,
        s.seconds,
        s.tokens_per_s,
        if dense { "dense f32" } else { "quantized Q4_1" }
    );
    Ok(())
}
