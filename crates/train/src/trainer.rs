//! The LoRA trainer: fresh adapters on the chosen projections of a loaded [`Llama`], masked
//! cross-entropy through `Llama::forward_train`, AdamW with warm-up + cosine, gradient
//! accumulation and clipping, length bucketing, validation loss and early stopping, a JSON
//! lines log and a progress callback. Every random draw (adapter init, batch order, dropout)
//! is derived from the seed and the epoch/step, so a run is reproducible and resumes exactly.
//!
//! QLoRA: a GGUF base loaded with `Llama::from_gguf` stays quantized (Q4_0/Q4_1/Q5_x/Q8_0 are
//! repacked and their matmul has a backward through the dequantized weight); k-quant
//! projections (run by candle's `QMatMul`, which has no backward) are refused with a clear
//! error unless the base is dequantized first ([`TrainConfig::dequantize`]).
//!
//! Precision ([`TrainConfig::precision`]): where the CPU multiplies bf16 pairs (AVX-512 BF16's
//! `vdpbf16ps`, or AMX), the frozen base is stored once as bf16 and its products, forward and
//! backward, take bf16 operands with f32 accumulation (`downshift_slm::bf16`); the LoRA
//! matrices, their gradients and the optimizer state stay f32. `f32` keeps every product in
//! f32: the reference, and the fallback everywhere else.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write;
use std::time::Instant;

use candle_core::{D, DType, Device, Tensor, Var};
use downshift_slm::llama::PROJECTIONS;
use downshift_slm::{AdapterSel, Llama, Lora, Weight};
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainError};
use crate::example::{Example, check_enough};
use crate::loss::cross_entropy_rows;
use crate::optim::{AdamW, AdamWConfig, GradAccum, Schedule, clip_grad_norm};
use crate::rng::Rng;

/// Hyper-parameters of a run (every field has a default).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// LoRA rank.
    pub rank: usize,
    /// LoRA alpha (scale = alpha / rank).
    pub alpha: f64,
    /// LoRA dropout probability (see the crate README for how it is applied).
    pub dropout: f64,
    /// PEFT module names to adapt (default: all attention and MLP projections).
    pub targets: Vec<String>,
    /// Peak learning rate.
    pub lr: f64,
    /// Final learning rate as a fraction of `lr`.
    pub min_lr_ratio: f64,
    /// Passes over the training split (ignored when `max_steps` is set).
    pub epochs: usize,
    /// Optimizer updates in all (overrides `epochs`).
    pub max_steps: Option<usize>,
    /// Most examples per micro-batch.
    pub batch_size: usize,
    /// When set, a micro-batch also holds at most this many padded tokens (a long example
    /// still goes alone): memory grows with the tokens of a micro-batch, and attention's with
    /// the square of its length, so long conversations train in smaller batches.
    pub batch_tokens: Option<usize>,
    /// Micro-batches per optimizer update.
    pub grad_accum: usize,
    /// Warm-up updates.
    pub warmup_steps: usize,
    /// AdamW's decoupled weight decay on the LoRA matrices (0: none).
    pub weight_decay: f64,
    /// Global gradient-norm clip (0: off).
    pub clip: f64,
    /// Seeds the batch order and the dropout masks: a run is reproducible from it.
    pub seed: u64,
    /// Validation loss every N updates (0: at the end only).
    pub eval_every: usize,
    /// Stop after this many evaluations without improvement.
    pub patience: Option<usize>,
    /// Longer examples are truncated to this many tokens.
    pub max_seq_len: usize,
    /// Fewer training examples than this are refused.
    pub min_examples: usize,
    /// Train on a dense f32 copy of the base instead of the quantized weights.
    pub dequantize: bool,
    /// Precision of the frozen base's products (see the module docs).
    pub precision: Precision,
    /// Leave the first N layers without adapters (PEFT's `layers_to_transform` = N..). Their
    /// output does not depend on the adapter, so it is computed once per example and reused
    /// every epoch, and the backward pass stops at layer N.
    pub frozen_layers: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            rank: 16,
            alpha: 32.0,
            dropout: 0.0,
            targets: PROJECTIONS.iter().map(|s| s.to_string()).collect(),
            lr: 2e-4,
            min_lr_ratio: 0.0,
            epochs: 3,
            max_steps: None,
            batch_size: 4,
            batch_tokens: Some(1024),
            grad_accum: 1,
            warmup_steps: 10,
            weight_decay: 0.0,
            clip: 1.0,
            seed: 42,
            eval_every: 50,
            patience: None,
            max_seq_len: 1024,
            min_examples: 10,
            dequantize: false,
            precision: Precision::Auto,
            frozen_layers: 0,
        }
    }
}

impl TrainConfig {
    fn check(&self) -> Result<()> {
        let bad = |m: &str| Err(TrainError::Config(m.into()));
        if self.rank == 0 {
            return bad("rank must be at least 1");
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad("dropout must be in [0, 1)");
        }
        if self.targets.is_empty() {
            return bad("no target projections");
        }
        if let Some(t) = self
            .targets
            .iter()
            .find(|t| !PROJECTIONS.contains(&t.as_str()))
        {
            return Err(TrainError::Config(format!(
                "unknown target projection {t} (known: {PROJECTIONS:?})"
            )));
        }
        if self.batch_size == 0 || self.grad_accum == 0 || self.max_seq_len < 2 {
            return bad("batch_size and grad_accum must be at least 1, max_seq_len at least 2");
        }
        if self.lr.is_nan() || self.lr <= 0.0 {
            return bad("lr must be positive");
        }
        Ok(())
    }
}

/// Precision of the frozen base's products in training.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// bf16 where the CPU has bf16 dot products (AVX-512 BF16 or AMX), else f32.
    #[default]
    Auto,
    /// Every product in f32 (the reference).
    F32,
    /// bf16 operands, f32 accumulation; an error on a CPU without bf16 dot products.
    Bf16,
}

impl Precision {
    /// Whether the base's products run in bf16 here.
    pub fn uses_bf16(self) -> Result<bool> {
        match self {
            Precision::Auto => Ok(downshift_slm::bf16::supported()),
            Precision::F32 => Ok(false),
            Precision::Bf16 if downshift_slm::bf16::supported() => Ok(true),
            Precision::Bf16 => Err(TrainError::Config(
                "precision bf16: this CPU has neither AVX-512 BF16 nor AMX (use f32 or auto)"
                    .into(),
            )),
        }
    }

    /// The name used in configs and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Precision::Auto => "auto",
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = TrainError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "auto" => Ok(Precision::Auto),
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            _ => Err(TrainError::Config(format!(
                "unknown precision {s:?} (auto, f32 or bf16)"
            ))),
        }
    }
}

/// The frozen base's projections and LM head as bf16 ([`Weight::Bf16`]), in place.
fn base_to_bf16(model: &mut Llama) -> Result<()> {
    let conv = |l: &mut downshift_slm::Linear| -> Result<()> {
        l.weight = l.weight.to_bf16()?;
        Ok(())
    };
    for b in &mut model.blocks {
        for l in b.qkv.iter_mut().chain(b.gate_up.iter_mut()) {
            conv(l)?;
        }
        conv(&mut b.o)?;
        conv(&mut b.down)?;
    }
    conv(&mut model.lm_head)
}

/// Where a run stands; saved in checkpoints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer updates done.
    pub step: usize,
    /// The current epoch, 0-based.
    pub epoch: usize,
    /// Micro-batches of the current epoch already consumed.
    pub cursor: usize,
    /// The lowest validation loss so far (mean per target token).
    pub best_val: Option<f32>,
    /// Evaluations since `best_val` last improved (early stopping compares it to `patience`).
    pub evals_without_improvement: usize,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Tokens trained on over the whole run, resumes included.
    pub tokens_seen: u64,
    /// The training loss of the last update.
    pub last_loss: Option<f32>,
}

/// What the progress callback sees after each update.
#[derive(Clone, Debug, Serialize)]
pub struct Progress {
    /// Updates done, this one included.
    pub step: usize,
    /// Updates the run makes in all.
    pub total_steps: usize,
    /// The current epoch, 0-based.
    pub epoch: usize,
    /// This update's training loss: mean per target token.
    pub loss: f32,
    /// The validation loss, when this update ran an evaluation.
    pub val_loss: Option<f32>,
    /// The learning rate this update used.
    pub lr: f64,
    /// The global gradient norm before clipping.
    pub grad_norm: f64,
    /// Training throughput since this call of [`Trainer::run`] started, tokens per second.
    pub tokens_per_s: f64,
    /// Estimated seconds left, at the pace so far.
    pub eta_s: f64,
}

/// The outcome of [`Trainer::run`].
#[derive(Clone, Debug, Serialize)]
pub struct TrainSummary {
    /// Updates done (over the whole run, resumes included).
    pub steps: usize,
    /// Updates the run was planned for.
    pub total_steps: usize,
    /// Training loss of this call's first update (`None`: it made none).
    pub first_loss: Option<f32>,
    /// Training loss of the last update.
    pub last_loss: Option<f32>,
    /// Lowest validation loss; the adapter ends at the weights that reached it.
    pub best_val_loss: Option<f32>,
    /// Whether early stopping ended the run.
    pub stopped_early: bool,
    /// Tokens trained on in this call.
    pub tokens: u64,
    /// Throughput of this call, tokens per second.
    pub tokens_per_s: f64,
    /// Wall-clock seconds of this call.
    pub seconds: f64,
}

/// One adapted projection.
pub(crate) struct Slot {
    pub layer: usize,
    pub module: String,
    /// Index of this adapter's entry in the `Linear`'s `loras`.
    pub lora_index: usize,
    pub a: Var,
    pub b: Var,
}

/// Optional hooks of a run.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Stop (without finishing) once this many updates are done, e.g. to checkpoint.
    pub until_step: Option<usize>,
    /// JSON lines: one object per update (`step, epoch, loss, val_loss, lr, grad_norm,
    /// tokens_per_s, elapsed_s`).
    pub log: Option<&'a mut dyn Write>,
    /// Called after every update.
    pub progress: Option<&'a mut dyn FnMut(&Progress)>,
}

/// A LoRA training run on one base model: the adapter's matrices attached to the model, the
/// optimizer, the run's state and the best weights so far. Checkpointed and resumed by the
/// functions in [`crate::adapter`].
pub struct Trainer {
    pub(crate) model: Llama,
    pub(crate) config: TrainConfig,
    pub(crate) adapter_id: usize,
    pub(crate) slots: Vec<Slot>,
    pub(crate) opt: AdamW,
    pub(crate) state: TrainState,
    /// The LoRA matrices (A, B per slot) at the best validation loss.
    pub(crate) best: Option<Vec<Tensor>>,
    /// With `frozen_layers`: the input of the first adapted layer per example's tokens.
    frozen: RefCell<FrozenCache>,
}

/// The hidden states the frozen layers give each example, kept up to a memory budget
/// (beyond it they are recomputed every pass, which still skips their backward).
#[derive(Default)]
struct FrozenCache {
    states: HashMap<Vec<u32>, Tensor>,
    bytes: usize,
}

impl FrozenCache {
    /// 1 GiB of f32 hidden states: ~450k tokens of a 576-wide model.
    const BUDGET: usize = 1 << 30;
}

impl Trainer {
    /// Attaches fresh LoRA matrices (A: uniform ±1/√in as PEFT's Kaiming init, B: zero) to
    /// the target projections of every layer from `frozen_layers` up.
    pub fn new(model: Llama, config: TrainConfig) -> Result<Self> {
        config.check()?;
        if config.frozen_layers >= model.config.num_layers {
            return Err(TrainError::Config(format!(
                "frozen_layers {} leaves none of the model's {} layers to adapt",
                config.frozen_layers, model.config.num_layers
            )));
        }
        // every step multiplies the frozen base again: keep its bf16 tiles (where AMX runs)
        downshift_slm::amx::set_keep_tiles(true);
        // and allocates the same activation buffers every update: keep them mapped
        downshift_slm::threads::retain_freed_memory();
        let mut model = if config.precision.uses_bf16()? {
            // bf16 from any representation: a dense f32 copy first would only raise the peak
            let mut model = model;
            base_to_bf16(&mut model)?;
            model
        } else if config.dequantize {
            model.dequantized()?
        } else {
            model
        };
        let adapter_id = next_adapter_id(&model);
        let mut rng = Rng::derive(config.seed, 0, 0);
        let scale = config.alpha / config.rank as f64;
        let mut slots = Vec::new();
        for layer in config.frozen_layers..model.config.num_layers {
            for module in &config.targets {
                let (lin, off, len) = model.projection_mut(layer, module)?;
                if matches!(lin.weight, Weight::Quantized(_)) {
                    return Err(TrainError::Config(format!(
                        "layer {layer} {module}: the base weight is a k-quant, whose matmul has no backward; \
                         train on a Q4_0/Q4_1/Q5_0/Q5_1/Q8_0 GGUF or set dequantize"
                    )));
                }
                let inp = lin.in_features();
                let bound = 1.0 / (inp as f32).sqrt();
                let av: Vec<f32> = (0..config.rank * inp)
                    .map(|_| (rng.next_f32() * 2.0 - 1.0) * bound)
                    .collect();
                let a = Var::from_tensor(&Tensor::from_vec(av, (config.rank, inp), &Device::Cpu)?)?;
                let b = Var::zeros((len, config.rank), DType::F32, &Device::Cpu)?;
                let lora_index = lin.loras.len();
                lin.loras.push(Lora {
                    adapter: adapter_id,
                    out_offset: off,
                    a: a.as_tensor().clone(),
                    b: b.as_tensor().clone(),
                    scale,
                });
                slots.push(Slot {
                    layer,
                    module: module.clone(),
                    lora_index,
                    a,
                    b,
                });
            }
        }
        let params: Vec<Var> = slots
            .iter()
            .flat_map(|s| [s.a.clone(), s.b.clone()])
            .collect();
        let opt = AdamW::new(
            params,
            AdamWConfig {
                weight_decay: config.weight_decay,
                ..Default::default()
            },
        )?;
        Ok(Self {
            model,
            config,
            adapter_id,
            slots,
            opt,
            state: TrainState::default(),
            best: None,
            frozen: RefCell::default(),
        })
    }

    /// The run's hyper-parameters.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Where the run stands.
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// The model with the adapter attached (select it with [`Trainer::adapter_sel`]).
    pub fn model(&self) -> &Llama {
        &self.model
    }

    /// Selects this run's adapter in the model's forward passes.
    pub fn adapter_sel(&self) -> AdapterSel {
        AdapterSel::One(self.adapter_id)
    }

    /// The trained LoRA matrices, A and B per slot, in the model's internal row order.
    pub(crate) fn lora_tensors(&self) -> Vec<Tensor> {
        self.slots
            .iter()
            .flat_map(|s| [s.a.as_tensor().clone(), s.b.as_tensor().clone()])
            .collect()
    }

    /// Sets the LoRA matrices (same order as [`Trainer::lora_tensors`]).
    pub(crate) fn set_lora_tensors(&mut self, t: &[Tensor]) -> Result<()> {
        if t.len() != 2 * self.slots.len() {
            return Err(TrainError::Config(format!(
                "{} LoRA tensors for {} projections",
                t.len(),
                self.slots.len()
            )));
        }
        for (s, ab) in self.slots.iter().zip(t.chunks(2)) {
            if s.a.shape() != ab[0].shape() || s.b.shape() != ab[1].shape() {
                return Err(TrainError::Config(format!(
                    "layer {} {}: LoRA shapes {:?}/{:?}, expected {:?}/{:?}",
                    s.layer,
                    s.module,
                    ab[0].shape(),
                    ab[1].shape(),
                    s.a.shape(),
                    s.b.shape()
                )));
            }
            s.a.set(&ab[0])?;
            s.b.set(&ab[1])?;
        }
        self.bind(None)
    }

    /// Points the model's LoRA hooks at the variables, with a dropout mask when training.
    fn bind(&mut self, dropout: Option<&mut Rng>) -> Result<()> {
        let p = self.config.dropout;
        let mut rng = dropout;
        for s in &self.slots {
            let a = match rng.as_deref_mut() {
                Some(r) if p > 0.0 => {
                    let inp = s.a.dim(1)?;
                    let keep: Vec<f32> = (0..inp)
                        .map(|_| {
                            if r.next_f32() < p as f32 {
                                0.0
                            } else {
                                (1.0 / (1.0 - p)) as f32
                            }
                        })
                        .collect();
                    let m = Tensor::from_vec(keep, (1, inp), &Device::Cpu)?;
                    s.a.as_tensor().broadcast_mul(&m)?
                }
                _ => s.a.as_tensor().clone(),
            };
            let (lin, _, _) = self.model.projection_mut(s.layer, &s.module)?;
            let l = lin.loras.get_mut(s.lora_index).ok_or_else(|| {
                TrainError::Config(format!("LoRA hook of layer {} {} lost", s.layer, s.module))
            })?;
            l.a = a;
            l.b = s.b.as_tensor().clone();
        }
        Ok(())
    }

    /// Number of optimizer updates a run over `train` makes.
    pub fn total_steps(&self, train: &[Example]) -> usize {
        match self.config.max_steps {
            Some(n) => n,
            None => {
                let per_epoch = self.plan(train, 0).len().div_ceil(self.config.grad_accum);
                per_epoch * self.config.epochs
            }
        }
    }

    /// The micro-batches of one epoch (see [`plan_batches`]).
    fn plan(&self, train: &[Example], epoch: usize) -> Vec<Vec<usize>> {
        let lens: Vec<usize> = train.iter().map(|e| e.len()).collect();
        plan_batches(&lens, &self.config, epoch)
    }

    /// Sum of the negative log-likelihood of the target tokens of `batch`, and their count.
    fn batch_nll(&self, batch: &[&Example]) -> Result<(Tensor, usize)> {
        let max = self.config.max_seq_len;
        let seq = batch.iter().map(|e| e.len().min(max)).max().unwrap_or(0);
        if seq < 2 {
            return Ok((Tensor::zeros((), DType::F32, &Device::Cpu)?, 0));
        }
        let mut ids = vec![0u32; batch.len() * seq];
        let mut rows: Vec<u32> = Vec::new();
        let mut targets: Vec<u32> = Vec::new();
        for (b, e) in batch.iter().enumerate() {
            let n = e.len().min(max);
            ids[b * seq..b * seq + n].copy_from_slice(&e.ids[..n]);
            for t in 1..n {
                if e.mask[t] == 1 {
                    rows.push((b * seq + t - 1) as u32);
                    targets.push(e.ids[t]);
                }
            }
        }
        if rows.is_empty() {
            return Ok((Tensor::zeros((), DType::F32, &Device::Cpu)?, 0));
        }
        let sel = self.adapter_sel();
        let hidden = match self.config.frozen_layers {
            0 => {
                let ids = Tensor::from_vec(ids, (batch.len(), seq), &Device::Cpu)?;
                self.model.forward_train_hidden(&ids, sel)?
            }
            k => {
                let parts = batch
                    .iter()
                    .map(|e| self.frozen_states(&e.ids[..e.len().min(max)], seq))
                    .collect::<Result<Vec<_>>>()?;
                self.model
                    .forward_train_from(Tensor::stack(&parts, 0)?, k, sel)?
            }
        };
        // Only the positions that predict a target go through the (vocabulary-sized) head.
        let width = hidden.dim(D::Minus1)?;
        let n = rows.len();
        let picked = hidden
            .reshape((batch.len() * seq, width))?
            .index_select(&Tensor::from_vec(rows, n, &Device::Cpu)?, 0)?;
        let logits = self.model.head_train(&picked, sel)?;
        let tgt = Tensor::from_vec(targets, n, &Device::Cpu)?;
        let nll = cross_entropy_rows(&logits, &tgt)?.sum_all()?;
        Ok((nll, n))
    }

    /// The input of the first adapted layer for `ids` (`[seq, hidden]`, zero rows after the
    /// tokens: causal attention never lets them reach a real position), from the cache.
    fn frozen_states(&self, ids: &[u32], seq: usize) -> Result<Tensor> {
        let cached = self.frozen.borrow().states.get(ids).cloned();
        let h = match cached {
            Some(h) => h,
            None => {
                let t = Tensor::from_slice(ids, (1, ids.len()), &Device::Cpu)?;
                let h = self
                    .model
                    .hidden_before(&t, self.config.frozen_layers, self.adapter_sel())?
                    .squeeze(0)?
                    .detach();
                let bytes = h.elem_count() * 4;
                let mut c = self.frozen.borrow_mut();
                if c.bytes + bytes <= FrozenCache::BUDGET {
                    c.bytes += bytes;
                    c.states.insert(ids.to_vec(), h.clone());
                }
                h
            }
        };
        if ids.len() >= seq {
            return Ok(h);
        }
        let pad = Tensor::zeros((seq - ids.len(), h.dim(1)?), DType::F32, &Device::Cpu)?;
        Ok(Tensor::cat(&[&h, &pad], 0)?)
    }

    /// Mean loss per target token over `data` (no dropout, no gradient).
    pub fn evaluate(&mut self, data: &[Example]) -> Result<f32> {
        self.bind(None)?;
        let mut sum = 0f64;
        let mut n = 0usize;
        let mut sorted: Vec<usize> = (0..data.len()).collect();
        sorted.sort_by_key(|&i| std::cmp::Reverse(data[i].len()));
        for batch in cut_batches(&sorted, |i| data[i].len(), &self.config) {
            let chunk: Vec<&Example> = batch.iter().map(|&i| &data[i]).collect();
            let (nll, k) = self.batch_nll(&chunk)?;
            sum += nll.to_scalar::<f32>()? as f64;
            n += k;
        }
        Ok(if n == 0 {
            f32::NAN
        } else {
            (sum / n as f64) as f32
        })
    }

    /// Trains until the configured steps/epochs are done, early stopping fires, or
    /// `opts.until_step` is reached. With validation data, the adapter ends at its best
    /// validation loss.
    pub fn run(
        &mut self,
        train: &[Example],
        val: &[Example],
        mut opts: RunOptions<'_>,
    ) -> Result<TrainSummary> {
        check_enough(train.len(), self.config.min_examples)?;
        let total = self.total_steps(train);
        let sched = Schedule {
            lr: self.config.lr,
            warmup: self.config.warmup_steps,
            total,
            min_ratio: self.config.min_lr_ratio,
        };
        let vars: Vec<Var> = self.opt.params().to_vec();
        let mut acc = GradAccum::new(vars.len());
        let start = Instant::now();
        let start_step = self.state.step;
        let mut run_tokens = 0u64;
        let mut first_loss = None;
        let mut plan_epoch = usize::MAX;
        let mut plan = Vec::new();
        let mut interrupted = false;
        while self.state.step < total && !self.state.stopped_early {
            if opts.until_step.is_some_and(|u| self.state.step >= u) {
                interrupted = true;
                break;
            }
            if plan_epoch != self.state.epoch {
                plan = self.plan(train, self.state.epoch);
                plan_epoch = self.state.epoch;
            }
            if self.state.cursor >= plan.len() {
                self.state.epoch += 1;
                self.state.cursor = 0;
                if self.config.max_steps.is_none() && self.state.epoch >= self.config.epochs {
                    break;
                }
                continue;
            }
            let step = self.state.step;
            let end = (self.state.cursor + self.config.grad_accum).min(plan.len());
            let micro: Vec<Vec<&Example>> = plan[self.state.cursor..end]
                .iter()
                .map(|b| b.iter().map(|&i| &train[i]).collect())
                .collect();
            let denom: usize = micro
                .iter()
                .flatten()
                .map(|e| target_count(e, self.config.max_seq_len))
                .sum();
            let mut loss_sum = 0f64;
            let mut tokens = 0u64;
            let mut drop_rng = Rng::derive(self.config.seed, 2, step as u64);
            for mb in &micro {
                self.bind(Some(&mut drop_rng))?;
                tokens += mb
                    .iter()
                    .map(|e| e.len().min(self.config.max_seq_len) as u64)
                    .sum::<u64>();
                let (nll, n) = self.batch_nll(mb)?;
                if n == 0 {
                    continue;
                }
                loss_sum += nll.to_scalar::<f32>()? as f64;
                let scaled = (nll / denom.max(1) as f64)?;
                acc.add(&scaled.backward()?, &vars)?;
            }
            let loss = (loss_sum / denom.max(1) as f64) as f32;
            if !loss.is_finite() {
                return Err(TrainError::Diverged(loss));
            }
            let mut grads = acc.take(&vars)?;
            let grad_norm = clip_grad_norm(&mut grads, self.config.clip)?;
            let lr = sched.lr_at(step);
            self.opt.step(&grads, lr)?;
            self.state.step += 1;
            self.state.cursor = end;
            self.state.tokens_seen += tokens;
            self.state.last_loss = Some(loss);
            run_tokens += tokens;
            first_loss.get_or_insert(loss);
            let every = self.config.eval_every;
            let val_loss = if !val.is_empty()
                && ((every > 0 && self.state.step.is_multiple_of(every))
                    || self.state.step == total)
            {
                Some(self.validate(val)?)
            } else {
                None
            };
            let elapsed = start.elapsed().as_secs_f64();
            let tps = run_tokens as f64 / elapsed.max(1e-9);
            let done = self.state.step - start_step;
            let eta = elapsed / done.max(1) as f64 * (total - self.state.step) as f64;
            let p = Progress {
                step: self.state.step,
                total_steps: total,
                epoch: self.state.epoch,
                loss,
                val_loss,
                lr,
                grad_norm,
                tokens_per_s: tps,
                eta_s: eta,
            };
            if let Some(w) = opts.log.as_deref_mut() {
                let line = serde_json::json!({
                    "step": p.step, "epoch": p.epoch, "loss": p.loss, "val_loss": p.val_loss,
                    "lr": p.lr, "grad_norm": p.grad_norm, "tokens_per_s": p.tokens_per_s,
                    "elapsed_s": elapsed,
                });
                writeln!(w, "{line}")
                    .map_err(|e| TrainError::io(std::path::Path::new("training log"), e))?;
            }
            if let Some(cb) = opts.progress.as_deref_mut() {
                cb(&p);
            }
        }
        if !interrupted {
            if !val.is_empty() && self.state.best_val.is_none() {
                self.validate(val)?;
            }
            if let Some(best) = self.best.clone() {
                self.set_lora_tensors(&best)?;
            }
        }
        self.bind(None)?;
        let seconds = start.elapsed().as_secs_f64();
        Ok(TrainSummary {
            steps: self.state.step,
            total_steps: total,
            first_loss,
            last_loss: self.state.last_loss,
            best_val_loss: self.state.best_val,
            stopped_early: self.state.stopped_early,
            tokens: run_tokens,
            tokens_per_s: run_tokens as f64 / seconds.max(1e-9),
            seconds,
        })
    }

    /// Validation loss, best-weights bookkeeping and early stopping.
    fn validate(&mut self, val: &[Example]) -> Result<f32> {
        let v = self.evaluate(val)?;
        if self.state.best_val.is_none_or(|b| v < b) {
            self.state.best_val = Some(v);
            self.state.evals_without_improvement = 0;
            self.best = Some(
                self.lora_tensors()
                    .iter()
                    .map(|t| t.copy())
                    .collect::<candle_core::Result<Vec<_>>>()?,
            );
        } else {
            self.state.evals_without_improvement += 1;
            if self
                .config
                .patience
                .is_some_and(|p| self.state.evals_without_improvement >= p)
            {
                self.state.stopped_early = true;
            }
        }
        Ok(v)
    }
}

/// The micro-batches of one epoch over examples of lengths `lens`: shuffled (seeded by
/// `seed` and `epoch`), sorted by length inside windows of 16 batches (length bucketing: little
/// padding, order still random), cut into batches of at most `batch_size` examples and at most
/// `batch_tokens` padded tokens, batches shuffled.
pub fn plan_batches(lens: &[usize], c: &TrainConfig, epoch: usize) -> Vec<Vec<usize>> {
    let mut rng = Rng::derive(c.seed, 1, epoch as u64);
    let mut idx: Vec<usize> = (0..lens.len()).collect();
    rng.shuffle(&mut idx);
    let len = |i: usize| lens[i].min(c.max_seq_len);
    let window = c.batch_size * 16;
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for chunk in idx.chunks_mut(window.max(1)) {
        chunk.sort_by_key(|&i| std::cmp::Reverse(len(i)));
        batches.extend(cut_batches(chunk, len, c));
    }
    rng.shuffle(&mut batches);
    batches
}

/// Cuts examples sorted longest first into consecutive micro-batches of at most `batch_size`
/// examples and at most `batch_tokens` padded tokens (the first of a batch sets its padded
/// length; one example always fits).
fn cut_batches(sorted: &[usize], len: impl Fn(usize) -> usize, c: &TrainConfig) -> Vec<Vec<usize>> {
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for &i in sorted {
        match batches.last_mut() {
            Some(b)
                if b.len() < c.batch_size
                    && c.batch_tokens
                        .is_none_or(|t| len(b[0]).min(c.max_seq_len) * (b.len() + 1) <= t) =>
            {
                b.push(i)
            }
            _ => batches.push(vec![i]),
        }
    }
    batches
}

fn target_count(e: &Example, max: usize) -> usize {
    let n = e.len().min(max);
    e.mask[..n].iter().skip(1).filter(|&&m| m == 1).count()
}

fn next_adapter_id(m: &Llama) -> usize {
    m.blocks
        .iter()
        .flat_map(|b| b.qkv.iter().chain(b.gate_up.iter()).chain([&b.o, &b.down]))
        .flat_map(|l| l.loras.iter().map(|x| x.adapter + 1))
        .max()
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lens(n: usize) -> Vec<usize> {
        (0..n).map(|i| 10 + (i * 37) % 200).collect()
    }

    #[test]
    fn batches_by_count_cover_every_example_once_and_bucket_by_length() {
        let c = TrainConfig {
            batch_size: 4,
            ..Default::default()
        };
        let l = lens(203);
        let p = plan_batches(&l, &c, 0);
        let mut all: Vec<usize> = p.iter().flatten().copied().collect();
        all.sort();
        assert_eq!(all, (0..203).collect::<Vec<_>>());
        assert!(p.iter().all(|b| b.len() <= 4));
        // bucketing: padding is a small part of the padded tokens
        let padded: usize = p
            .iter()
            .map(|b| b.len() * b.iter().map(|&i| l[i]).max().unwrap_or(0))
            .sum();
        let real: usize = l.iter().sum();
        assert!((padded - real) * 10 < real, "{padded} vs {real}");
        // same seed and epoch: same plan; another epoch: another order
        assert_eq!(p, plan_batches(&l, &c, 0));
        assert_ne!(p, plan_batches(&l, &c, 1));
    }

    #[test]
    fn batches_by_tokens_stay_under_the_budget() {
        let c = TrainConfig {
            batch_tokens: Some(512),
            max_seq_len: 300,
            ..Default::default()
        };
        let l = lens(100);
        let p = plan_batches(&l, &c, 3);
        assert_eq!(p.iter().map(|b| b.len()).sum::<usize>(), 100);
        for b in &p {
            let max = b.iter().map(|&i| l[i]).max().unwrap_or(0);
            assert!(b.len() == 1 || b.len() * max <= 512, "{b:?}");
            assert!(b.len() <= c.batch_size, "{b:?}");
        }
        // short examples still fill whole batches of batch_size
        assert!(p.iter().any(|b| b.len() == c.batch_size));
    }
}
