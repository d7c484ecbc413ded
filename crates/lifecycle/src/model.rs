//! Finding and loading a small model by path or hub id.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use downshift_slm::LocalModel;

/// Finds a model named by path or by hub id (`org/name`): the path itself, else
/// `$DOWNSHIFT_MODELS_DIR/<name>` (default `./models`), else the newest snapshot in the Hugging
/// Face cache.
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    let p = Path::new(spec);
    if p.exists() {
        return Ok(p.to_path_buf());
    }
    let mut tried = vec![p.display().to_string()];
    if let Some((org, name)) = spec.split_once('/')
        && !org.is_empty()
        && !name.is_empty()
        && !name.contains('/')
    {
        let models = std::env::var_os("DOWNSHIFT_MODELS_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("models"));
        let local = models.join(name.to_lowercase());
        if local.exists() {
            return Ok(local);
        }
        tried.push(local.display().to_string());
        let hub = std::env::var_os("HF_HUB_CACHE")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HF_HOME").map(|h| PathBuf::from(h).join("hub")))
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/huggingface/hub"))
            });
        if let Some(hub) = hub {
            let snapshots = hub.join(format!("models--{org}--{name}")).join("snapshots");
            if let Ok(rd) = std::fs::read_dir(&snapshots) {
                let mut dirs: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
                dirs.sort();
                if let Some(d) = dirs.pop() {
                    return Ok(d);
                }
            }
            tried.push(snapshots.display().to_string());
        }
    }
    bail!(
        "model '{spec}' not found (looked at: {}); pass a GGUF file or model folder, or run scripts/fetch.sh",
        tried.join(", ")
    )
}

/// Loads the model `spec` names ([`resolve_model`]), first setting the compute threads when
/// `threads` is given (the pool is sized once per process).
pub fn load_model(spec: &str, threads: Option<usize>) -> Result<LocalModel> {
    if let Some(n) = threads {
        downshift_slm::threads::set_num_threads(n);
    }
    let path = resolve_model(spec)?;
    LocalModel::load(&path).with_context(|| format!("cannot load model {}", path.display()))
}
