//! `/ui/training`: every adapter folder's run — loss and validation-loss curves from its
//! `train_log.jsonl`, its settings (`downshift_specialist.json`), time and tokens/s — and the
//! evaluation `downshift eval` left beside it (`eval.json`), which task pages show too.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;

use super::Viewer;
use super::chart::{self, Series};
use super::layout::{self, opt};
use crate::server::AppState;

const META_FILE: &str = "downshift_specialist.json";
const LOG_FILE: &str = "train_log.jsonl";

/// One adapter folder.
pub struct Run {
    pub dir: PathBuf,
    /// `downshift_specialist.json` (Null when absent or unreadable).
    pub meta: Value,
    /// `train_log.jsonl`, one object per update.
    pub log: Vec<Value>,
    /// `eval.json`, the latest evaluation.
    pub eval: Option<Value>,
    /// When the log (or the metadata) was last written, ms.
    pub modified_ms: Option<i64>,
}

impl Run {
    pub fn task(&self) -> Option<&str> {
        self.meta["task"].as_str()
    }

    pub fn name(&self) -> String {
        self.dir.display().to_string()
    }
}

fn read_json(p: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(p).ok()?).ok()
}

fn modified_ms(p: &Path) -> Option<i64> {
    let t = std::fs::metadata(p).ok()?.modified().ok()?;
    let d = t.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// The run in `dir`, when it is an adapter folder (metadata or a training log).
fn read_run(dir: &Path) -> Option<Run> {
    let meta_path = dir.join(META_FILE);
    let log_path = dir.join(LOG_FILE);
    if !meta_path.is_file() && !log_path.is_file() {
        return None;
    }
    let log = std::fs::read_to_string(&log_path)
        .map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .collect()
        })
        .unwrap_or_default();
    Some(Run {
        dir: dir.to_path_buf(),
        meta: read_json(&meta_path).unwrap_or(Value::Null),
        log,
        eval: read_json(&dir.join("eval.json")),
        modified_ms: modified_ms(&log_path).or_else(|| modified_ms(&meta_path)),
    })
}

/// The adapter folders under `root` (itself, its children and grandchildren: `train` writes
/// `adapters/<task>`, `loop` writes `adapters/<task>/<time>`) and the `extra` folders (the
/// policies' specialists), newest first, each once.
pub fn find_runs(root: &Path, extra: &[PathBuf]) -> Vec<Run> {
    let mut dirs: Vec<PathBuf> = vec![root.to_path_buf()];
    let children = |d: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(d)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_dir() && p.file_name().is_some_and(|n| n != "checkpoints"))
                    .collect()
            })
            .unwrap_or_default()
    };
    for c in children(root) {
        dirs.extend(children(&c));
        dirs.push(c);
    }
    dirs.extend(extra.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    let mut runs: Vec<Run> = dirs
        .iter()
        .filter(|d| seen.insert(std::fs::canonicalize(d).unwrap_or_else(|_| d.to_path_buf())))
        .filter_map(|d| read_run(d))
        .collect();
    runs.sort_by(|a, b| b.modified_ms.cmp(&a.modified_ms).then(a.dir.cmp(&b.dir)));
    runs
}

/// The policies' specialists that are folders.
pub fn policy_dirs(s: &AppState) -> Vec<PathBuf> {
    s.store
        .list_policies()
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| p.specialist)
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .collect()
}

fn f(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "-".into(), |x| format!("{x:.digits$}"))
}

/// The loss and validation-loss curves of a run.
fn curves(id: &str, run: &Run) -> Markup {
    let pts = |key: &str| -> Vec<(f64, f64)> {
        run.log
            .iter()
            .filter_map(|l| Some((l["step"].as_f64()?, l[key].as_f64()?)))
            .collect()
    };
    chart::line(&chart::Line {
        id,
        title: "Loss per update",
        x_label: "update",
        y_label: "loss",
        series: vec![
            Series {
                name: "training loss".into(),
                color: "#4e79a7",
                points: pts("loss"),
            },
            Series {
                name: "validation loss".into(),
                color: "#f28e2b",
                points: pts("val_loss"),
            },
        ],
        y_range: None,
        threshold: None,
        x_fmt: |x| format!("{x:.0}"),
        y_fmt: |y| format!("{y:.2}"),
        x_min_step: 1.0,
    })
}

/// A run's settings, time and speed.
fn summary(run: &Run) -> Markup {
    let cfg = &run.meta["train_config"];
    let last = run.log.last().cloned().unwrap_or(Value::Null);
    let best_val = run
        .log
        .iter()
        .filter_map(|l| l["val_loss"].as_f64())
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.min(v))));
    html! {
        table.small {
            tr { th { "task" } td { @match run.task() { Some(t) => a href=(format!("/ui/tasks/{t}")) { (t) }, None => "-" } } }
            tr { th { "dataset" } td { (run.meta["dataset"].as_str().unwrap_or("-")) } }
            tr { th { "base" } td { code { (run.meta["base_model"].as_str().unwrap_or("-")) } } }
            tr { th { "settings" } td { "rank " (f(&cfg["rank"], 0)) ", alpha " (f(&cfg["alpha"], 0)) ", lr " (cfg["lr"].as_f64().map_or("-".into(), |x| format!("{x:e}")))
                ", batch " (f(&cfg["batch_size"], 0)) ", epochs " (f(&cfg["epochs"], 0)) ", max length " (f(&cfg["max_seq_len"], 0)) } }
            tr { th { "updates" } td.updates { (opt(last["step"].as_u64())) } }
            tr { th { "last loss" } td { (f(&last["loss"], 4)) } }
            tr { th { "best validation loss" } td { (best_val.map_or("-".into(), |v| format!("{v:.4}"))) } }
            tr { th { "time" } td { (f(&last["elapsed_s"], 1)) " s" } }
            tr { th { "tokens/s" } td { (f(&last["tokens_per_s"], 0)) } }
            tr { th { "written" } td { (run.modified_ms.map_or("-".into(), layout::time)) } }
        }
    }
}

pub async fn page(State(s): State<Arc<AppState>>, viewer: Viewer) -> Response {
    super::blocking(&s, move |s| {
        let root = s.ui.options.adapters_dir.clone();
        let runs = find_runs(&root, &policy_dirs(s));
        let body = html! {
            p.mut { "Adapter folders under " code { (root.display()) } " and the policies' specialists; curves from each folder's "
                code { "train_log.jsonl" } ", settings from " code { "downshift_specialist.json" } "." }
            @if runs.is_empty() {
                p #no-runs { "No training runs yet: " code { "downshift train --task ID" } " writes one." }
            }
            @for (i, run) in runs.iter().enumerate() {
                div.card.run data-dir=(run.name()) {
                    h2 { code { (run.name()) } }
                    div.grid {
                        div { (curves(&format!("loss-{i}"), run)) }
                        div { (summary(run)) }
                    }
                }
            }
        };
        Ok(layout::page("Training runs", "training", &viewer, body))
    })
    .await
}
