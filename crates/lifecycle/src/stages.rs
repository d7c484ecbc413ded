//! The pipeline's steps as the loop and the demo run them, on one data directory with one set
//! of stage settings: discover, curate, select, train, evaluate, promote — each a call into its
//! stage with typed inputs and results, quiet (no progress drawn, no per-stage notes).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use downshift_curate::CurateConfig;
use downshift_discover::{DiscoverConfig, EmbedderKind};
use downshift_route::{Mode, PolicyChange, change_policy};
use downshift_store::{DataDir, DatasetMeta};

use crate::dataset::{DataSource, curate_task};
use crate::discover::{DiscoverRequest, Discovered, discover};
use crate::evaluate::{EvalReport, EvalRequest, evaluate};
use crate::select::{SelectRequest, Selection, select};
use crate::train::{FrozenLayers, TrainRequest, train};

/// The all-MiniLM-L6-v2 folder discovery uses when it is there (`scripts/fetch.sh`).
const MINILM_DIR: &str = "models/all-minilm-l6-v2";

/// One data directory and the stage settings the steps run with.
pub struct Stages<'a> {
    /// The call log, datasets, tasks and policies.
    pub data: &'a DataDir,
    /// `[curate]`.
    pub curate: &'a CurateConfig,
    /// `[discover]`.
    pub discover: &'a DiscoverConfig,
    /// Who changes policies (recorded with each route event).
    pub actor: &'a str,
    /// No `==>` notes on stderr.
    pub quiet: bool,
}

/// How to train one specialist.
pub struct TrainPlan<'a> {
    /// The base model.
    pub base: &'a str,
    /// The adapter folder.
    pub out: &'a Path,
    /// Passes over the training split.
    pub epochs: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Cap on optimizer updates.
    pub max_steps: Option<usize>,
    /// Compute threads.
    pub threads: Option<usize>,
    /// Train on this dataset instead of the task's own (`task-<ID>`): a retrain on fresh data.
    pub dataset: Option<&'a str>,
    /// Precision the confidence threshold is calibrated for on the validation split.
    pub precision: f64,
    /// Specialists read only the last N user turns.
    pub keep_turns: Option<usize>,
    /// More turns where a task's answers copy values from earlier ones.
    pub widen_turns: bool,
    /// Layers left without adapters.
    pub frozen_layers: FrozenLayers,
    /// Name the offered tools in the specialist's prompt.
    pub tool_names: bool,
}

/// What training and evaluating one specialist gave.
#[derive(Clone, Debug)]
pub struct Trained {
    /// Seconds training took (0 when only evaluated).
    pub train_seconds: f64,
    /// Held-out exact match on the task's test split.
    pub exact_match: Option<f64>,
    /// The confidence threshold reaching the precision on the validation split, and the share
    /// of the validation split it serves.
    pub min_confidence: Option<(f64, f64)>,
    /// That threshold's precision on the test split and how many test answers it served,
    /// when it serves any.
    pub test_precision: Option<(f64, usize)>,
}

impl From<&EvalReport> for Trained {
    fn from(e: &EvalReport) -> Self {
        let c = e.calibration.as_ref();
        Trained {
            train_seconds: 0.0,
            exact_match: e.exact_match,
            min_confidence: c.and_then(|c| c.min_confidence.zip(c.coverage)),
            test_precision: e.test_precision(),
        }
    }
}

impl Stages<'_> {
    /// A `==> msg` line on stderr, unless quiet.
    pub fn say(&self, msg: &str) {
        if !self.quiet {
            eprintln!("==> {msg}");
        }
    }

    /// Discovers the tasks in the call log and stores them, with the packaged
    /// all-MiniLM-L6-v2 when it is there, else with the hashed embedding (no model file
    /// needed).
    pub fn discover(&self) -> Result<Discovered> {
        let mut cfg = self.discover.clone();
        let minilm = crate::model::find_model_path(Path::new(MINILM_DIR));
        if let Some(minilm) = minilm.filter(|d| d.join("model.safetensors").exists()) {
            cfg.model_dir = minilm;
        } else {
            cfg.embedder = EmbedderKind::Hashed;
        }
        discover(&DiscoverRequest::default(), self.data, &cfg)
    }

    /// Curates the calls of `task` into a new dataset `name`.
    pub fn curate_task(&self, task: &str, name: &str) -> Result<DatasetMeta> {
        curate_task(self.data, self.curate, task, name)
    }

    /// Ranks the catalog for `task` (no bake-off).
    pub fn select(&self, task: &str) -> Result<Selection> {
        select(
            &SelectRequest {
                task: task.to_owned(),
                bakeoff_limit: 20,
                quiet: true,
                ..Default::default()
            },
            self.data,
            self.curate,
        )
    }

    /// Trains for `task` (or on `plan.dataset`); returns the seconds it took.
    pub fn train(&self, task: Option<&str>, plan: &TrainPlan) -> Result<f64> {
        let data = match (plan.dataset, task) {
            (Some(d), _) => DataSource::Dataset(d.to_owned()),
            (None, Some(t)) => DataSource::Task(t.to_owned()),
            (None, None) => anyhow::bail!("training needs a task or a dataset"),
        };
        let req = TrainRequest {
            out: Some(plan.out.to_path_buf()),
            epochs: plan.epochs,
            lr: plan.lr,
            max_steps: plan.max_steps,
            threads: plan.threads,
            keep_turns: plan.keep_turns,
            widen_turns: plan.widen_turns,
            frozen_layers: plan.frozen_layers,
            tool_names: plan.tool_names,
            ..TrainRequest::new(data, plan.base)
        };
        let t0 = Instant::now();
        train(&req, self.data, self.curate)?;
        Ok(t0.elapsed().as_secs_f64())
    }

    /// Evaluates the specialist in `adapter` on `task`'s test split, with a confidence
    /// threshold calibrated for `precision` on its validation split (`train_seconds` is 0).
    pub fn evaluate(
        &self,
        task: &str,
        adapter: &Path,
        precision: f64,
        threads: Option<usize>,
    ) -> Result<Trained> {
        let req = EvalRequest {
            data: Some(DataSource::Task(task.to_owned())),
            no_base: true,
            max_tokens: 160,
            calibrate: Some(precision),
            threads,
            ..EvalRequest::new(adapter)
        };
        Ok(Trained::from(&evaluate(&req, self.data, self.curate)?))
    }

    /// Trains a specialist for `task` and evaluates it on the held-out test split.
    pub fn specialize(&self, task: &str, plan: &TrainPlan) -> Result<Trained> {
        let train_seconds = self.train(Some(task), plan)?;
        let mut t = self.evaluate(task, plan.out, plan.precision, plan.threads)?;
        t.train_seconds = train_seconds;
        Ok(t)
    }

    /// Routes `task` as `mode` to the specialist in `adapter` (stored as an absolute path: the
    /// gateway may run from elsewhere), serving only answers at least `min_confidence` sure.
    pub fn promote(
        &self,
        task: &str,
        mode: Mode,
        adapter: &Path,
        min_confidence: Option<f64>,
    ) -> Result<()> {
        let path = std::fs::canonicalize(adapter).unwrap_or_else(|_| PathBuf::from(adapter));
        let change = PolicyChange {
            mode: Some(mode),
            specialist: Some(path.display().to_string()),
            min_confidence,
            ..Default::default()
        };
        let store = self.data.open_store()?;
        change_policy(&*store, task, &change, self.actor)?;
        Ok(())
    }
}
