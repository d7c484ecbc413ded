//! Fine-tuning one specialist (step S5): the base model, the task's (or a dataset's)
//! examples, LoRA/QLoRA training with checkpoints, and the PEFT adapter written with the
//! specialist's metadata.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use downshift_curate::CurateConfig;
use downshift_slm::SpecialistTemplate;
use downshift_store::DataDir;
use downshift_train::adapter::prune_checkpoints;
use downshift_train::trainer::RunOptions;
use downshift_train::{
    Dataset, ExampleBuilder, Progress, PromptTransform, SpecialistMeta, SplitConfig, TrainConfig,
    Trainer, infer_transform, merge_to_hf_dir, turns_needed,
};
use serde::Serialize;

use crate::dataset::DataSource;
use crate::model::load_model;

/// How many of the base's first layers `train` leaves without adapters: a count (`20`) or a
/// share of the model's layers (`67%`, rounded, always leaving one layer to adapt). The
/// default, a count of 0, adapts every layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FrozenLayers {
    /// The first N layers.
    Count(usize),
    /// This share of the layers, in percent.
    Percent(f64),
}

impl Default for FrozenLayers {
    fn default() -> Self {
        Self::Count(0)
    }
}

impl FrozenLayers {
    /// The count for a model of `layers` layers.
    pub fn resolve(self, layers: usize) -> usize {
        match self {
            Self::Count(n) => n,
            Self::Percent(p) => {
                ((p / 100.0 * layers as f64).round() as usize).min(layers.saturating_sub(1))
            }
        }
    }
}

impl std::str::FromStr for FrozenLayers {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let s = s.trim();
        let bad = || format!("{s:?} is neither a layer count (20) nor a share of the layers (67%)");
        match s.strip_suffix('%') {
            Some(p) => match p.trim().parse::<f64>() {
                Ok(p) if (0.0..100.0).contains(&p) => Ok(Self::Percent(p)),
                _ => Err(bad()),
            },
            None => s.parse().map(Self::Count).map_err(|_| bad()),
        }
    }
}

impl std::fmt::Display for FrozenLayers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Count(n) => write!(f, "{n}"),
            Self::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl serde::Serialize for FrozenLayers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Self::Count(n) => s.serialize_u64(*n as u64),
            Self::Percent(_) => s.serialize_str(&self.to_string()),
        }
    }
}

impl<'de> serde::Deserialize<'de> for FrozenLayers {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(usize),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(n) => Ok(Self::Count(n)),
            Raw::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// What to train: the data, the base, the LoRA and optimizer settings, and the run's own
/// options. [`TrainRequest::new`] gives the `downshift train` defaults.
#[derive(Clone, Debug)]
pub struct TrainRequest {
    /// The examples.
    pub data: DataSource,
    /// The base model: a GGUF file (trained through its quantized weights: QLoRA), a model
    /// folder, or a hub id.
    pub base: String,
    /// Compute threads (none: `DOWNSHIFT_THREADS`, else every core).
    pub threads: Option<usize>,
    /// Where the adapter goes (none: `<adapters_dir>/<task or dataset>`).
    pub out: Option<PathBuf>,
    /// Where `out` defaults to a folder per task or dataset (`[loop] adapters_dir`; unset:
    /// `adapters` in the data directory).
    pub adapters_dir: Option<PathBuf>,
    /// LoRA rank.
    pub rank: usize,
    /// LoRA alpha (scale = alpha / rank).
    pub alpha: f64,
    /// LoRA dropout on the adapters' inputs.
    pub dropout: f64,
    /// Projections to adapt (empty: all seven attention and MLP projections).
    pub targets: Vec<String>,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate of the cosine schedule, as a fraction of `lr`.
    pub min_lr_ratio: f64,
    /// Linear warm-up updates.
    pub warmup_steps: usize,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// Micro-batches per optimizer update.
    pub grad_accum: usize,
    /// Global gradient-norm clip (0: off).
    pub clip: f64,
    /// Validation loss every N updates (0: at the end only).
    pub eval_every: usize,
    /// Early stopping after this many validation evaluations without improvement.
    pub patience: Option<usize>,
    /// Passes over the training split.
    pub epochs: usize,
    /// Stop after this many updates.
    pub max_steps: Option<usize>,
    /// Examples per update.
    pub batch_size: usize,
    /// Most padded tokens per update (0: no cap).
    pub batch_tokens: usize,
    /// Longest example in tokens; longer ones are left out.
    pub max_len: usize,
    /// Keep the tool schemas in the prompt.
    pub keep_tools: bool,
    /// Keep only the last N user turns of each conversation.
    pub keep_turns: Option<usize>,
    /// Read more turns than `keep_turns` where the task's answers copy values from earlier
    /// ones ([`downshift_train::turns_needed`]).
    pub widen_turns: bool,
    /// Name the offered tools in one system line.
    pub tool_names: bool,
    /// Train on a dense f32 copy of the base.
    pub dequantize: bool,
    /// Precision of the frozen base's products (`auto`: bf16 where the CPU has it).
    pub precision: downshift_train::Precision,
    /// Layers of the base left without adapters.
    pub frozen_layers: FrozenLayers,
    /// Train every example as its own sequence (no folding of earlier steps).
    pub no_fold: bool,
    /// Seed for initialisation, shuffling and dropout.
    pub seed: u64,
    /// Checkpoint every N updates (0: never).
    pub checkpoint_every: usize,
    /// Stop once this many updates are done, with a checkpoint saved.
    pub stop_after: Option<usize>,
    /// Continue the run saved under `<out>/checkpoints`.
    pub resume: bool,
    /// Also write the base with the adapter merged in (safetensors bases only).
    pub merge: bool,
    /// No notes on stderr (the dataset's sizes, resumption, per-second progress lines).
    pub quiet: bool,
    /// Draw a progress bar when stderr is a terminal.
    pub bar: bool,
}

impl TrainRequest {
    /// `downshift train`'s defaults for `data` on `base`.
    pub fn new(data: DataSource, base: impl Into<String>) -> Self {
        TrainRequest {
            data,
            base: base.into(),
            threads: None,
            out: None,
            adapters_dir: None,
            rank: 16,
            alpha: 32.0,
            dropout: 0.0,
            targets: Vec::new(),
            lr: 2e-4,
            min_lr_ratio: 0.0,
            warmup_steps: 10,
            weight_decay: 0.0,
            grad_accum: 1,
            clip: 1.0,
            eval_every: 50,
            patience: None,
            epochs: 3,
            max_steps: None,
            batch_size: 4,
            batch_tokens: 1024,
            max_len: 1024,
            keep_tools: false,
            keep_turns: None,
            widen_turns: false,
            tool_names: false,
            dequantize: false,
            precision: downshift_train::Precision::Auto,
            frozen_layers: FrozenLayers::default(),
            no_fold: false,
            seed: 42,
            checkpoint_every: 50,
            stop_after: None,
            resume: false,
            merge: false,
            quiet: true,
            bar: false,
        }
    }
}

/// What a training run did (`train --json` prints it).
#[derive(Clone, Debug, Serialize)]
pub struct TrainReport {
    /// The dataset trained on.
    pub dataset: String,
    /// The task, when trained for one.
    pub task: Option<String>,
    /// The adapter folder.
    pub adapter: PathBuf,
    /// The base model's canonical path.
    pub base: String,
    /// Examples in the training split.
    pub train_examples: usize,
    /// Sequences trained on (examples after folding).
    pub train_sequences: usize,
    /// Examples in the validation split.
    pub validation_examples: usize,
    /// Examples held out for testing.
    pub test_examples: usize,
    /// Examples left out (too long).
    pub skipped: usize,
    /// Optimizer updates of this run.
    pub steps: usize,
    /// The update a resumed run started at.
    pub resumed_from: Option<usize>,
    /// Loss of the first update.
    pub first_loss: Option<f32>,
    /// Loss of the last update.
    pub last_loss: Option<f32>,
    /// Best validation loss (its weights are kept).
    pub best_val_loss: Option<f32>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Tokens trained on.
    pub tokens: u64,
    /// Training throughput.
    pub tokens_per_s: f64,
    /// Wall time of the training loop.
    pub seconds: f64,
    /// The merged model's folder, with `merge`.
    pub merged: Option<PathBuf>,
}

/// Trains a specialist as `req` says and writes its adapter.
pub fn train(req: &TrainRequest, data: &DataDir, curate: &CurateConfig) -> Result<TrainReport> {
    let (dataset, recs) = req.data.load(data, curate, req.quiet)?;
    let lm = load_model(&req.base, req.threads)?;
    // The base's own template when it renders tool calls, else the canonical one; stored in
    // the specialist's metadata, so every path that serves it renders the same way.
    let template_choice = SpecialistTemplate::for_base(&lm.template);
    let template = template_choice.template(&lm.template)?;
    let pruning = if req.keep_tools {
        PromptTransform::identity()
    } else {
        infer_transform(&recs)
    };
    let keep_turns = match req.keep_turns {
        Some(least) if req.widen_turns => {
            let needed = turns_needed(&recs, &pruning, least);
            if needed != least && !req.quiet {
                eprintln!(
                    "{dataset}: the answers copy values from earlier turns: the specialist reads \
                     the last {needed} user turns"
                );
            }
            Some(needed)
        }
        k => k,
    };
    let transform = pruning
        .with_keep_turns(keep_turns)
        .with_tool_names(req.tool_names);
    let builder = ExampleBuilder {
        transform: transform.clone(),
        max_len: Some(req.max_len),
        ..ExampleBuilder::new(&template, &lm.tokenizer)
    };
    let cfg = TrainConfig {
        rank: req.rank,
        alpha: req.alpha,
        dropout: req.dropout,
        targets: if req.targets.is_empty() {
            TrainConfig::default().targets
        } else {
            req.targets.clone()
        },
        lr: req.lr,
        min_lr_ratio: req.min_lr_ratio,
        warmup_steps: req.warmup_steps,
        weight_decay: req.weight_decay,
        grad_accum: req.grad_accum,
        clip: req.clip,
        eval_every: req.eval_every,
        patience: req.patience,
        epochs: req.epochs,
        max_steps: req.max_steps,
        batch_size: req.batch_size,
        batch_tokens: (req.batch_tokens > 0).then_some(req.batch_tokens),
        max_seq_len: req.max_len,
        seed: req.seed,
        dequantize: req.dequantize,
        precision: req.precision,
        frozen_layers: req.frozen_layers.resolve(lm.model.config.num_layers),
        ..Default::default()
    };
    let mut ds = Dataset::build(&recs, &builder, &SplitConfig::default(), cfg.min_examples)?;
    let train_examples = ds.train.len();
    if !req.no_fold {
        ds.fold_prefixes();
    }
    let out = req.out.clone().unwrap_or_else(|| {
        crate::cycle::adapters_root(req.adapters_dir.as_deref(), data)
            .join(req.data.task().unwrap_or(&dataset))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let ck_root = out.join("checkpoints");
    let log_path = out.join("train_log.jsonl");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(req.resume)
        .write(true)
        .truncate(!req.resume)
        .open(&log_path)
        .with_context(|| format!("cannot write {}", log_path.display()))?;
    if !req.quiet {
        eprintln!(
            "{dataset}: {} train / {} validation examples ({} held out for testing, {} left out)",
            train_examples,
            ds.validation.len(),
            ds.test_ids.len(),
            ds.skipped.len()
        );
        if ds.folded > 0 {
            eprintln!(
                "{} of them are earlier steps of a conversation another example continues: \
                 {} sequences to train on",
                ds.folded,
                ds.train.len()
            );
        }
        if let Some(t) = &transform.drop_system_text {
            eprintln!(
                "pruning {} characters of constant system prompt and the tool schemas",
                t.len()
            );
        }
    }
    let mut trainer = if req.resume {
        let t = Trainer::resume(lm.model.clone(), &ck_root).with_context(|| {
            format!(
                "cannot resume from {} (nothing to resume?)",
                ck_root.display()
            )
        })?;
        if !req.quiet {
            eprintln!("resuming at update {}", t.state().step);
        }
        t
    } else {
        Trainer::new(lm.model.clone(), cfg)?
    };
    let base_name = std::fs::canonicalize(&lm.path)
        .unwrap_or_else(|_| lm.path.clone())
        .display()
        .to_string();
    let meta = SpecialistMeta {
        chat_template: template_choice,
        task: req.data.task().map(str::to_owned),
        dataset: Some(dataset.clone()),
        ..SpecialistMeta::new(&base_name, trainer.model(), transform, trainer.config())?
    };
    let quiet = req.quiet;
    let mut last = Instant::now();
    // On a terminal a bar (with --json too); otherwise a line a second unless --json.
    let bar = (req.bar && crate::progress::visible()).then(|| crate::progress::bar(0, "training"));
    let mut progress = |p: &Progress| {
        if let Some(pb) = &bar {
            pb.set_length(p.total_steps as u64);
            pb.set_position(p.step as u64);
            let val = p
                .val_loss
                .map(|v| format!(" val {v:.3}"))
                .unwrap_or_default();
            pb.set_message(format!(
                "loss {:.3}{val}  {:.0} tok/s",
                p.loss, p.tokens_per_s
            ));
            return;
        }
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
    let started = Instant::now();
    let first_step = trainer.state().step;
    let mut first_loss = None;
    let mut tokens = 0u64;
    let summary = loop {
        let next_ck = (req.checkpoint_every > 0)
            .then(|| (trainer.state().step / req.checkpoint_every + 1) * req.checkpoint_every);
        let until = match (next_ck, req.stop_after) {
            (Some(c), Some(s)) => Some(c.min(s)),
            (c, s) => c.or(s),
        };
        let s = trainer.run(
            &ds.train,
            &ds.validation,
            RunOptions {
                until_step: until,
                log: Some(&mut log),
                progress: Some(&mut progress),
            },
        )?;
        first_loss = first_loss.or(s.first_loss);
        tokens += s.tokens;
        let step = trainer.state().step;
        let finished = trainer.state().stopped_early
            || until.is_none_or(|u| step < u)
            || step >= trainer.total_steps(&ds.train);
        let stop = req.stop_after.is_some_and(|s| step >= s);
        if (req.checkpoint_every > 0 || stop) && !finished {
            trainer
                .save_checkpoint(&ck_root, &meta)
                .with_context(|| format!("cannot save a checkpoint under {}", ck_root.display()))?;
            prune_checkpoints(&ck_root, 2)?;
        }
        if finished || stop {
            if stop && !finished && !req.quiet {
                eprintln!("stopped after update {step}; continue with --resume");
            }
            break s;
        }
    };
    if let Some(pb) = &bar {
        pb.finish_and_clear();
    }
    let seconds = started.elapsed().as_secs_f64();
    trainer.save_adapter(&out, &meta)?;
    if req.merge {
        if !lm.path.is_dir() {
            bail!(
                "--merge needs a safetensors base folder; {} is a GGUF file (the adapter is \
                 saved in {} — load it with `generate --adapter`, or train on the Hugging Face \
                 folder of the model to merge)",
                lm.path.display(),
                out.display()
            );
        }
        merge_to_hf_dir(&lm.path, &out, &out.join("merged"))?;
    }
    let tokens_per_s = tokens as f64 / seconds.max(1e-9);
    Ok(TrainReport {
        dataset,
        task: req.data.task().map(str::to_owned),
        merged: req.merge.then(|| out.join("merged")),
        adapter: out,
        base: base_name,
        train_examples,
        train_sequences: ds.train.len(),
        validation_examples: ds.validation.len(),
        test_examples: ds.test_ids.len(),
        skipped: ds.skipped.len(),
        steps: summary.steps,
        resumed_from: (first_step > 0).then_some(first_step),
        first_loss,
        last_loss: summary.last_loss,
        best_val_loss: summary.best_val_loss,
        stopped_early: summary.stopped_early,
        tokens,
        tokens_per_s,
        seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::FrozenLayers;

    #[test]
    fn frozen_layers_parse_counts_and_shares_and_resolve_per_model() {
        let p = |s: &str| s.parse::<FrozenLayers>();
        assert_eq!(p("20"), Ok(FrozenLayers::Count(20)));
        assert_eq!(p("0"), Ok(FrozenLayers::default()));
        assert_eq!(p(" 67% "), Ok(FrozenLayers::Percent(67.0)));
        for bad in ["", "x", "-1", "100%", "-5%", "2.5"] {
            let e = p(bad).expect_err(bad);
            assert!(e.contains("layer count"), "{bad}: {e}");
        }
        assert_eq!(FrozenLayers::Percent(67.0).resolve(30), 20);
        assert_eq!(FrozenLayers::Percent(67.0).resolve(2), 1);
        // a share always leaves a layer to adapt; a count is taken as given (train refuses it)
        assert_eq!(FrozenLayers::Percent(99.9).resolve(1), 0);
        assert_eq!(FrozenLayers::Count(40).resolve(30), 40);
        assert_eq!(FrozenLayers::default().resolve(30), 0);
        // the config takes an integer or a share, and writes back what it read
        #[derive(Debug, serde::Deserialize, serde::Serialize)]
        struct T {
            f: FrozenLayers,
        }
        let e = toml::from_str::<T>("f = \"9 layers\"").expect_err("bad share");
        assert!(e.to_string().contains("layer count"), "{e}");
        for (toml_value, want) in [
            ("12", FrozenLayers::Count(12)),
            ("0", FrozenLayers::default()),
            ("\"67%\"", FrozenLayers::Percent(67.0)),
        ] {
            let t: T = toml::from_str(&format!("f = {toml_value}")).expect(toml_value);
            assert_eq!(t.f, want);
            let back: T = toml::from_str(&toml::to_string(&t).expect("ser")).expect("de");
            assert_eq!(back.f, want);
        }
    }
}
