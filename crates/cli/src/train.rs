//! `train`: fine-tune a specialist with LoRA/QLoRA on a curated dataset (step S5).

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use downshift_curate::{CurateConfig, SnapshotRequest, create_snapshot};
use downshift_slm::SpecialistTemplate;
use downshift_store::{CallFilter, DataDir};
use downshift_train::adapter::prune_checkpoints;
use downshift_train::trainer::RunOptions;
use downshift_train::{
    ChatRecord, Dataset, ExampleBuilder, Progress, PromptTransform, SpecialistMeta, SplitConfig,
    TrainConfig, Trainer, infer_transform, merge_to_hf_dir,
};
use serde_json::{Value, json};

use crate::local::{ModelArgs, load_model};

/// How many of the base's first layers `train` leaves without adapters: a count (`20`) or a
/// share of the model's layers (`67%`, rounded, always leaving one layer to adapt). The
/// default, a count of 0, adapts every layer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FrozenLayers {
    Count(usize),
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
    /// Where the adapter goes (default: adapters/<task or dataset>); written in PEFT format.
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
    /// The dataset's name and its records; curates the task's calls first when needed.
    pub fn load(&self, data: &DataDir, curate: &CurateConfig) -> Result<(String, Vec<ChatRecord>)> {
        let name = match (&self.task, &self.dataset) {
            (Some(t), _) => task_dataset(data, curate, t)?,
            (None, Some(d)) => d.clone(),
            (None, None) => bail!("give --task ID or --dataset NAME"),
        };
        let recs = records(data, &name)?;
        Ok((name, recs))
    }
}

/// The dataset of a task's calls, `task-<ID>`, curated now if it does not exist yet.
fn task_dataset(data: &DataDir, curate: &CurateConfig, task: &str) -> Result<String> {
    let store = data.open_store()?;
    let name = format!("task-{task}");
    if store.get_dataset(&name)?.is_some() {
        return Ok(name);
    }
    if store.get_task(task)?.is_none() {
        bail!(
            "no task '{task}' (see `downshift tasks list`; tasks come from `downshift discover`)"
        );
    }
    if store.task_size(task)? == 0 {
        bail!("no calls are assigned to task '{task}' (run `downshift discover` again)");
    }
    let (keyring, _) = data.keyring(false)?;
    let threads = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(2);
    let (meta, _) = create_snapshot(
        &*store,
        &keyring,
        &SnapshotRequest {
            name: name.clone(),
            filter: CallFilter {
                task: Some(task.to_string()),
                ..Default::default()
            },
            threads,
        },
        curate,
    )
    .with_context(|| format!("cannot curate the calls of task '{task}'"))?;
    eprintln!(
        "curated {} examples of task {task} into dataset '{name}'",
        meta.examples
    );
    Ok(name)
}

/// The dataset's examples as chat records, keyed by the call they came from.
pub fn records(data: &DataDir, name: &str) -> Result<Vec<ChatRecord>> {
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

pub fn train(a: TrainArgs, data: &DataDir, curate: &CurateConfig) -> Result<()> {
    let (dataset, recs) = a.data.load(data, curate)?;
    let lm = load_model(&ModelArgs {
        model: a.base.clone(),
        threads: a.threads,
    })?;
    // The base's own template when it renders tool calls, else the canonical one; stored in
    // the specialist's metadata, so every path that serves it renders the same way.
    let template_choice = SpecialistTemplate::for_base(&lm.template);
    let template = template_choice.template(&lm.template)?;
    let transform = if a.keep_tools {
        PromptTransform::identity()
    } else {
        infer_transform(&recs)
    }
    .with_keep_turns(a.keep_turns)
    .with_tool_names(a.tool_names);
    let builder = ExampleBuilder {
        transform: transform.clone(),
        max_len: Some(a.max_len),
        ..ExampleBuilder::new(&template, &lm.tokenizer)
    };
    let cfg = TrainConfig {
        rank: a.rank,
        alpha: a.alpha,
        dropout: a.dropout,
        targets: if a.targets.is_empty() {
            TrainConfig::default().targets
        } else {
            a.targets.clone()
        },
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
        batch_tokens: (a.batch_tokens > 0).then_some(a.batch_tokens),
        max_seq_len: a.max_len,
        seed: a.seed,
        dequantize: a.dequantize,
        frozen_layers: a.frozen_layers.resolve(lm.model.config.num_layers),
        ..Default::default()
    };
    let mut ds = Dataset::build(&recs, &builder, &SplitConfig::default(), cfg.min_examples)?;
    let train_examples = ds.train.len();
    if !a.no_fold {
        ds.fold_prefixes();
    }
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from("adapters").join(a.data.task.as_deref().unwrap_or(&dataset))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let ck_root = out.join("checkpoints");
    let log_path = out.join("train_log.jsonl");
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(a.resume)
        .write(true)
        .truncate(!a.resume)
        .open(&log_path)
        .with_context(|| format!("cannot write {}", log_path.display()))?;
    if !a.json {
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
    let mut trainer = if a.resume {
        let t = Trainer::resume(lm.model.clone(), &ck_root).with_context(|| {
            format!(
                "cannot resume from {} (nothing to resume?)",
                ck_root.display()
            )
        })?;
        if !a.json {
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
        task: a.data.task.clone(),
        dataset: Some(dataset.clone()),
        ..SpecialistMeta::new(&base_name, trainer.model(), transform, trainer.config())?
    };
    let quiet = a.json;
    let mut last = Instant::now();
    // On a terminal a bar (with --json too); otherwise a line a second unless --json.
    let bar = crate::progress::visible().then(|| crate::progress::bar(0, "training"));
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
        let next_ck = (a.checkpoint_every > 0)
            .then(|| (trainer.state().step / a.checkpoint_every + 1) * a.checkpoint_every);
        let until = match (next_ck, a.stop_after) {
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
        let stop = a.stop_after.is_some_and(|s| step >= s);
        if (a.checkpoint_every > 0 || stop) && !finished {
            trainer
                .save_checkpoint(&ck_root, &meta)
                .with_context(|| format!("cannot save a checkpoint under {}", ck_root.display()))?;
            prune_checkpoints(&ck_root, 2)?;
        }
        if finished || stop {
            if stop && !finished && !a.json {
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
    if a.merge {
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
    let report = json!({
        "dataset": dataset,
        "task": a.data.task,
        "adapter": out,
        "base": base_name,
        "train_examples": train_examples,
        "train_sequences": ds.train.len(),
        "validation_examples": ds.validation.len(),
        "test_examples": ds.test_ids.len(),
        "skipped": ds.skipped.len(),
        "steps": summary.steps,
        "resumed_from": (first_step > 0).then_some(first_step),
        "first_loss": first_loss,
        "last_loss": summary.last_loss,
        "best_val_loss": summary.best_val_loss,
        "stopped_early": summary.stopped_early,
        "tokens": tokens,
        "tokens_per_s": tokens_per_s,
        "seconds": seconds,
        "merged": a.merge.then(|| out.join("merged")),
    });
    let stdout = std::io::stdout();
    let mut o = stdout.lock();
    if a.json {
        writeln!(o, "{report}")?;
    } else {
        writeln!(
            o,
            "adapter written to {} ({} updates, loss {} -> {}, best validation loss {}, {:.0} tok/s, {:.0}s)",
            out.display(),
            summary.steps,
            fmt_loss(first_loss),
            fmt_loss(summary.last_loss),
            fmt_loss(summary.best_val_loss),
            tokens_per_s,
            seconds
        )?;
    }
    Ok(())
}

fn fmt_loss(l: Option<f32>) -> String {
    l.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into())
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
