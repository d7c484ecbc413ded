//! Finding and loading a small model by path or hub id.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use downshift_select::Engine;
use downshift_slm::{ARCHITECTURES, LocalModel};

/// What the built-in engine runs, as selection judges catalog models: read from
/// `downshift_slm::ARCHITECTURES`, the list model loading itself checks.
pub fn engine() -> Engine {
    Engine {
        gguf: ARCHITECTURES.iter().map(|a| a.gguf.to_string()).collect(),
        model_types: ARCHITECTURES
            .iter()
            .flat_map(|a| a.model_types.iter().map(|t| t.to_string()))
            .collect(),
    }
}

/// The folders fetched models are looked up in, in order: `$DOWNSHIFT_MODELS_DIR`, `./models`
/// (a checkout where `scripts/fetch.sh` ran), then `models` under the platform's data directory
/// (`~/.local/share/downshift/models` on Linux), so a command finds the same models from any
/// working directory.
pub fn models_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("DOWNSHIFT_MODELS_DIR").filter(|d| !d.is_empty()) {
        dirs.push(PathBuf::from(d));
    }
    dirs.push(PathBuf::from("models"));
    if let Some(d) = dirs::data_dir() {
        dirs.push(d.join("downshift").join("models"));
    }
    dirs.dedup();
    dirs
}

/// Finds a relative model path such as `models/all-minilm-l6-v2` in [`models_dirs`]: the path
/// as given, else the path below each models folder (a leading `models/` dropped). `None` when
/// none exists; an absolute path is only taken as given.
pub fn find_model_path(path: &Path) -> Option<PathBuf> {
    if path.exists() {
        return Some(path.to_path_buf());
    }
    if path.is_absolute() {
        return None;
    }
    let rel = path.strip_prefix("models").unwrap_or(path);
    if rel.as_os_str().is_empty() {
        return None;
    }
    models_dirs()
        .into_iter()
        .map(|d| d.join(rel))
        .find(|p| p.exists())
}

/// Finds a model named by path or by hub id (`org/name`): the path itself or below a models
/// folder ([`find_model_path`]), else `<models folder>/<name>`, else the newest snapshot in the
/// Hugging Face cache.
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    let p = Path::new(spec);
    if let Some(found) = find_model_path(p) {
        return Ok(found);
    }
    let mut tried = vec![p.display().to_string()];
    if p.is_relative() {
        let rel = p.strip_prefix("models").unwrap_or(p);
        tried.extend(
            models_dirs()
                .iter()
                .map(|d| d.join(rel).display().to_string()),
        );
    }
    if let Some((org, name)) = spec.split_once('/')
        && !org.is_empty()
        && !name.is_empty()
        && !name.contains('/')
    {
        for models in models_dirs() {
            let local = models.join(name.to_lowercase());
            if local.exists() {
                return Ok(local);
            }
            tried.push(local.display().to_string());
        }
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
    let mut seen = std::collections::HashSet::new();
    tried.retain(|t| seen.insert(t.clone()));
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
