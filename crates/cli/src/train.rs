//! `train`: fine-tune a specialist with LoRA/QLoRA on a curated dataset (step S5).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use downshift_slm::ChatTemplate;
use downshift_store::{DataDir, Store};
use downshift_train::trainer::RunOptions;
use downshift_train::{
    ChatRecord, Dataset, ExampleBuilder, Progress, PromptTransform, SpecialistMeta, SplitConfig,
    TrainConfig, Trainer,
};
use serde_json::{Value, json};

use crate::local::{ModelArgs, load_model};

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    /// The curated dataset to learn from (`downshift curate --task ID --name NAME` makes one
    /// from a discovered task's calls).
    #[arg(long, value_name = "NAME")]
    dataset: String,
    /// The base model: a GGUF file (trained through its quantized weights: QLoRA), a model
    /// folder, or a hub id found under ./models or in the Hugging Face cache.
    #[arg(long, value_name = "PATH|ID")]
    base: String,
    /// Compute threads (default: DOWNSHIFT_THREADS, else every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Where the adapter goes (default: adapters/<dataset>); written in PEFT format.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// LoRA rank.
    #[arg(long, default_value_t = 16)]
    rank: usize,
    /// LoRA alpha (scale = alpha / rank).
    #[arg(long, default_value_t = 32.0)]
    alpha: f64,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-4)]
    lr: f64,
    /// Passes over the training split.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Stop after this many updates.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Examples per update.
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Longest example in tokens; longer ones are left out (and counted).
    #[arg(long, default_value_t = 1024)]
    max_len: usize,
    /// Keep the tool schemas in the prompt (by default the specialist internalises them).
    #[arg(long)]
    keep_tools: bool,
    /// Train on a dense f32 copy of the base instead of through its quantized weights.
    #[arg(long)]
    dequantize: bool,
    /// Seed for initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Print a JSON summary instead of progress lines.
    #[arg(long)]
    json: bool,
}

/// The dataset's examples as chat records, keyed by the call they came from.
fn records(data: &DataDir, name: &str) -> Result<Vec<ChatRecord>> {
    let store = data.open_store()?;
    let (keyring, _) = data.keyring(false)?;
    let meta = store
        .get_dataset(name)?
        .ok_or_else(|| anyhow!("no dataset named '{name}' (see `downshift datasets list`)"))?;
    let mut out = Vec::new();
    for e in store.dataset_examples(&meta.id)? {
        let plain = keyring
            .open_example(&meta.id, &e)
            .with_context(|| format!("cannot decrypt example {} of '{name}'", e.seq))?;
        let v: Value = serde_json::from_slice(&plain)
            .with_context(|| format!("example {} of '{name}' is not JSON", e.seq))?;
        let mut messages = v["messages"].as_array().cloned().unwrap_or_default();
        let answer = match messages.pop() {
            Some(a) if a["role"] == "assistant" && !messages.is_empty() => a,
            _ => bail!(
                "example {} of '{name}' does not end with an assistant answer",
                e.seq
            ),
        };
        out.push(ChatRecord {
            id: e.call_id.clone(),
            messages,
            tools: v["tools"].as_array().cloned(),
            answer,
        });
    }
    Ok(out)
}

pub fn train(a: TrainArgs, data: &DataDir) -> Result<()> {
    let recs = records(data, &a.dataset)?;
    let lm = load_model(&ModelArgs {
        model: a.base.clone(),
        threads: a.threads,
    })?;
    // The specialist template: the model's own when it can render tool calls, else ChatML.
    let canonical = ChatTemplate::canonical()?;
    let template = if lm.template.supports_tools() {
        &lm.template
    } else {
        &canonical
    };
    let transform = if a.keep_tools {
        PromptTransform::identity()
    } else {
        PromptTransform::pruning(None)
    };
    let builder = ExampleBuilder {
        transform: transform.clone(),
        max_len: Some(a.max_len),
        ..ExampleBuilder::new(template, &lm.tokenizer)
    };
    let cfg = TrainConfig {
        rank: a.rank,
        alpha: a.alpha,
        lr: a.lr,
        epochs: a.epochs,
        max_steps: a.max_steps,
        batch_size: a.batch_size,
        max_seq_len: a.max_len,
        seed: a.seed,
        dequantize: a.dequantize,
        ..Default::default()
    };
    let ds = Dataset::build(&recs, &builder, &SplitConfig::default(), cfg.min_examples)?;
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("adapters").join(&a.dataset));
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let log_path = out.join("train_log.jsonl");
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot write {}", log_path.display()))?;
    if !a.json {
        eprintln!(
            "{}: {} train / {} validation examples ({} held out for testing, {} left out)",
            a.dataset,
            ds.train.len(),
            ds.validation.len(),
            ds.test_ids.len(),
            ds.skipped.len()
        );
    }
    let mut trainer = Trainer::new(lm.model.clone(), cfg)?;
    let quiet = a.json;
    let mut last = Instant::now();
    let mut progress = |p: &Progress| {
        if quiet || (last.elapsed().as_secs_f64() < 1.0 && p.step < p.total_steps) {
            return;
        }
        last = Instant::now();
        let val = p
            .val_loss
            .map(|v| format!(" val {v:.3}"))
            .unwrap_or_default();
        eprintln!(
            "step {}/{}  loss {:.3}{val}  lr {:.1e}  {:.0} tok/s  eta {:.0}s",
            p.step, p.total_steps, p.loss, p.lr, p.tokens_per_s, p.eta_s
        );
    };
    let summary = trainer.run(
        &ds.train,
        &ds.validation,
        RunOptions {
            log: Some(&mut log),
            progress: Some(&mut progress),
            ..Default::default()
        },
    )?;
    let base_name = std::fs::canonicalize(&lm.path)
        .unwrap_or_else(|_| lm.path.clone())
        .display()
        .to_string();
    let meta = SpecialistMeta::new(&base_name, trainer.model(), transform, trainer.config());
    trainer.save_adapter(&out, &meta)?;
    let report = json!({
        "dataset": a.dataset,
        "adapter": out,
        "base": base_name,
        "train_examples": ds.train.len(),
        "validation_examples": ds.validation.len(),
        "test_examples": ds.test_ids.len(),
        "skipped": ds.skipped.len(),
        "summary": summary,
    });
    let stdout = std::io::stdout();
    let mut o = stdout.lock();
    if a.json {
        writeln!(o, "{report}")?;
    } else {
        writeln!(
            o,
            "adapter written to {} ({} updates, loss {} -> {}, best validation loss {}, {:.0} tok/s)",
            out.display(),
            summary.steps,
            fmt_loss(summary.first_loss),
            fmt_loss(summary.last_loss),
            fmt_loss(summary.best_val_loss),
            summary.tokens_per_s
        )?;
    }
    Ok(())
}

fn fmt_loss(l: Option<f32>) -> String {
    l.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
}
