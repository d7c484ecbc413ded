//! Where a stage's examples come from: a discovered task's calls (curated on first use) or a
//! curated dataset, read back as chat records.

use anyhow::{Context, Result, anyhow, bail};
use downshift_curate::{CurateConfig, SnapshotRequest, create_snapshot};
use downshift_store::{CallFilter, DataDir, DatasetMeta};
use downshift_train::ChatRecord;
use serde_json::Value;

/// The examples a stage works on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataSource {
    /// A discovered task: its calls are curated into the dataset `task-<ID>` on first use
    /// (PII scrubbed, deduplicated), which later runs reuse.
    Task(String),
    /// A curated dataset, by name.
    Dataset(String),
}

impl DataSource {
    /// The task, when the source is one.
    pub fn task(&self) -> Option<&str> {
        match self {
            DataSource::Task(t) => Some(t),
            DataSource::Dataset(_) => None,
        }
    }

    /// The dataset's name and its records; curates the task's calls first when needed
    /// (saying so on stderr unless `quiet`).
    pub fn load(
        &self,
        data: &DataDir,
        curate: &CurateConfig,
        quiet: bool,
    ) -> Result<(String, Vec<ChatRecord>)> {
        let name = match self {
            DataSource::Task(t) => task_dataset(data, curate, t, quiet)?,
            DataSource::Dataset(d) => d.clone(),
        };
        let recs = records(data, &name)?;
        Ok((name, recs))
    }
}

/// The dataset of a task's calls, `task-<ID>`, curated now if it does not exist yet.
pub fn task_dataset(
    data: &DataDir,
    curate: &CurateConfig,
    task: &str,
    quiet: bool,
) -> Result<String> {
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
    let meta = curate_task(data, curate, task, &name)?;
    if !quiet {
        eprintln!(
            "curated {} examples of task {task} into dataset '{name}'",
            meta.examples
        );
    }
    Ok(name)
}

/// Curates the calls of `task` into a new dataset `name`, on every core.
pub fn curate_task(
    data: &DataDir,
    curate: &CurateConfig,
    task: &str,
    name: &str,
) -> Result<DatasetMeta> {
    let store = data.open_store()?;
    if store.task_size(task)? == 0 {
        bail!("no calls are assigned to task '{task}' (run `downshift discover` again)");
    }
    let filter = CallFilter {
        task: Some(task.to_string()),
        ..Default::default()
    };
    curate_calls(data, curate, name, filter)
        .with_context(|| format!("cannot curate the calls of task '{task}'"))
}

/// Curates the calls `filter` selects into a new dataset `name`, on every core.
pub fn curate_calls(
    data: &DataDir,
    curate: &CurateConfig,
    name: &str,
    filter: CallFilter,
) -> Result<DatasetMeta> {
    let store = data.open_store()?;
    let (keyring, _) = data.keyring(false)?;
    let threads = std::thread::available_parallelism()
        .map(usize::from)
        .unwrap_or(2);
    let (meta, _) = create_snapshot(
        &*store,
        &keyring,
        &SnapshotRequest {
            name: name.to_string(),
            filter,
            threads,
        },
        curate,
    )?;
    Ok(meta)
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
