//! `train`: fine-tune a specialist with LoRA/QLoRA on a curated dataset (step S5).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use downshift_curate::CurateConfig;
use downshift_lifecycle::dataset::DataSource;
pub use downshift_lifecycle::train::FrozenLayers;
use downshift_lifecycle::train::{TrainRequest, train as run_training};
use downshift_store::DataDir;
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The base model: a GGUF file (trained through its quantized weights: QLoRA), a model
    /// folder, or a hub id found under ./models or in the Hugging Face cache.
    #[arg(long, value_name = "PATH|ID")]
    base: String,
    /// Compute threads (default: DOWNSHIFT_THREADS, else every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Where the adapter goes (default: `adapters/<task or dataset>` in the data directory, or
    /// under `[loop] adapters_dir`); written in PEFT format.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// LoRA rank.
    #[arg(long, default_value_t = 16)]
    rank: usize,
    /// LoRA alpha (scale = alpha / rank).
    #[arg(long, default_value_t = 32.0)]
    alpha: f64,
    /// LoRA dropout probability on the adapters' inputs (0: off).
    #[arg(long, default_value_t = 0.0)]
    dropout: f64,
    /// Projections to adapt, comma-separated PEFT names (default: all seven attention and MLP
    /// projections: q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj).
    #[arg(long, value_delimiter = ',', value_name = "LIST")]
    targets: Vec<String>,
    /// Peak learning rate.
    #[arg(long, default_value_t = 2e-4)]
    lr: f64,
    /// Final learning rate of the cosine schedule, as a fraction of --lr.
    #[arg(long, default_value_t = 0.0, value_name = "X")]
    min_lr_ratio: f64,
    /// Linear warm-up updates.
    #[arg(long, default_value_t = 10, value_name = "N")]
    warmup_steps: usize,
    /// AdamW decoupled weight decay.
    #[arg(long, default_value_t = 0.0)]
    weight_decay: f64,
    /// Micro-batches per optimizer update (gradient accumulation).
    #[arg(long, default_value_t = 1, value_name = "N")]
    grad_accum: usize,
    /// Global gradient-norm clip (0: off).
    #[arg(long, default_value_t = 1.0)]
    clip: f64,
    /// Validation loss every N updates (0: at the end only); the best weights are kept.
    #[arg(long, default_value_t = 50, value_name = "N")]
    eval_every: usize,
    /// Early stopping: stop after this many validation evaluations without improvement.
    #[arg(long, value_name = "N")]
    patience: Option<usize>,
    /// Passes over the training split.
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Stop after this many updates.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Examples per update.
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Most padded tokens per update (0: no cap): a batch of long conversations is cut to
    /// fewer examples (one always fits), which bounds the memory training takes.
    #[arg(long, default_value_t = 1024, value_name = "N")]
    batch_tokens: usize,
    /// Longest example in tokens; longer ones are left out (and counted).
    #[arg(long, default_value_t = 1024)]
    max_len: usize,
    /// Keep the tool schemas in the prompt (by default the specialist internalises them).
    #[arg(long)]
    keep_tools: bool,
    /// Keep only the last N user turns of each conversation (and the tool calls and results
    /// after them) in the specialist's prompt; the router cuts requests the same way. Shorter
    /// prompts train and serve faster; what the answers need must lie in those turns.
    #[arg(long, value_name = "N")]
    keep_turns: Option<usize>,
    /// With the schemas dropped, still name the offered tools in one system line
    /// (`Tools: a, b, c`): the specialist sees which APIs a request offers and can copy a
    /// name from its prompt, for a few tokens instead of the schemas.
    #[arg(long)]
    tool_names: bool,
    /// Train on a dense f32 copy of the base instead of through its quantized weights.
    #[arg(long)]
    dequantize: bool,
    /// Precision of the frozen base's products: `auto` (bf16 where the CPU has AVX-512 BF16 or
    /// AMX, else f32), `f32` (the reference) or `bf16` (refused on a CPU without them).
    #[arg(long, value_enum, default_value_t = PrecisionArg::Auto)]
    precision: PrecisionArg,
    /// Leave the first N layers without adapters (PEFT's layers_to_transform = N..): their
    /// output is computed once per example instead of every epoch, and the backward pass
    /// stops above them, so each epoch costs less. A count, or a share of the model's
    /// layers (`67%`: 20 of SmolLM2-135M's 30); 0: adapt every layer.
    #[arg(long, default_value = "0", value_name = "N|P%")]
    frozen_layers: FrozenLayers,
    /// Train every example as its own sequence. By default an example whose tokens begin
    /// another one (an agent's earlier step of the same conversation) is folded into it, and
    /// one pass scores both answers.
    #[arg(long)]
    no_fold: bool,
    /// Seed for initialisation, shuffling and dropout.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Save a checkpoint (adapter, optimizer state, run state) every N updates under
    /// <out>/checkpoints (0: never); the newest two are kept.
    #[arg(long, default_value_t = 50, value_name = "N")]
    checkpoint_every: usize,
    /// Stop once this many updates are done, with a checkpoint saved (continue later with
    /// --resume).
    #[arg(long, value_name = "N")]
    stop_after: Option<usize>,
    /// Continue the run saved under <out>/checkpoints (same base, same settings).
    #[arg(long)]
    resume: bool,
    /// Also write the base with the adapter merged in, as a safetensors model under
    /// <out>/merged (needs a safetensors base folder).
    #[arg(long)]
    merge: bool,
    /// Print a JSON summary instead of progress lines.
    #[arg(long)]
    json: bool,
}

/// Where a command's examples come from: a discovered task or a curated dataset.
#[derive(Clone, Debug, clap::Args)]
#[group(multiple = false)]
pub struct DataArgs {
    /// A discovered task (see `downshift tasks list`): its calls are curated into the dataset
    /// `task-<ID>` on first use (PII scrubbed, deduplicated), which later runs reuse.
    #[arg(long, value_name = "ID")]
    pub task: Option<String>,
    /// A curated dataset (`downshift curate`).
    #[arg(long, value_name = "NAME")]
    pub dataset: Option<String>,
}

impl DataArgs {
    /// The source the arguments name, if any.
    pub fn source(&self) -> Option<DataSource> {
        match (&self.task, &self.dataset) {
            (Some(t), _) => Some(DataSource::Task(t.clone())),
            (None, Some(d)) => Some(DataSource::Dataset(d.clone())),
            (None, None) => None,
        }
    }
}

/// `--precision`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum PrecisionArg {
    Auto,
    F32,
    Bf16,
}

pub fn train(
    a: TrainArgs,
    data: &DataDir,
    curate: &CurateConfig,
    adapters_dir: Option<&std::path::Path>,
) -> Result<()> {
    let Some(source) = a.data.source() else {
        bail!("give --task ID or --dataset NAME")
    };
    let req = TrainRequest {
        threads: a.threads,
        out: a.out,
        adapters_dir: adapters_dir.map(Into::into),
        rank: a.rank,
        alpha: a.alpha,
        dropout: a.dropout,
        targets: a.targets,
        lr: a.lr,
        min_lr_ratio: a.min_lr_ratio,
        warmup_steps: a.warmup_steps,
        weight_decay: a.weight_decay,
        grad_accum: a.grad_accum,
        clip: a.clip,
        eval_every: a.eval_every,
        patience: a.patience,
        epochs: a.epochs,
        max_steps: a.max_steps,
        batch_size: a.batch_size,
        batch_tokens: a.batch_tokens,
        max_len: a.max_len,
        keep_tools: a.keep_tools,
        keep_turns: a.keep_turns,
        tool_names: a.tool_names,
        dequantize: a.dequantize,
        precision: match a.precision {
            PrecisionArg::Auto => downshift_train::Precision::Auto,
            PrecisionArg::F32 => downshift_train::Precision::F32,
            PrecisionArg::Bf16 => downshift_train::Precision::Bf16,
        },
        frozen_layers: a.frozen_layers,
        no_fold: a.no_fold,
        seed: a.seed,
        checkpoint_every: a.checkpoint_every,
        stop_after: a.stop_after,
        resume: a.resume,
        merge: a.merge,
        // Notes on stderr unless --json; the bar on a terminal with --json too.
        quiet: a.json,
        bar: true,
        ..TrainRequest::new(source, a.base)
    };
    let report = run_training(&req, data, curate)?;
    let stdout = std::io::stdout();
    let mut o = stdout.lock();
    if a.json {
        writeln!(o, "{}", json!(report))?;
    } else {
        writeln!(
            o,
            "adapter written to {} ({} updates, loss {} -> {}, best validation loss {}, {:.0} tok/s, {:.0}s)",
            report.adapter.display(),
            report.steps,
            fmt_loss(report.first_loss),
            fmt_loss(report.last_loss),
            fmt_loss(report.best_val_loss),
            report.tokens_per_s,
            report.seconds
        )?;
    }
    Ok(())
}

fn fmt_loss(l: Option<f32>) -> String {
    l.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
}
