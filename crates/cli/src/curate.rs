//! `curate`, `datasets list|show|export`, `pii detect` (step S2).

use std::path::PathBuf;

use anyhow::{Context, Result};
use downshift_curate::{CurateConfig, Detector, SnapshotRequest, create_snapshot, detect_jsonl};
use downshift_store::{AuditEntry, CallFilter, DataDir, export_dataset_jsonl};
use serde_json::json;

use crate::output::{parse_tag, parse_time, rfc3339, table, write_output};

#[derive(Debug, clap::Args)]
pub struct CurateArgs {
    /// Name of the dataset snapshot to write (letters, digits, '-', '_', '.'; must be new).
    #[arg(long)]
    name: String,
    /// Only calls at or after this time (RFC 3339, YYYY-MM-DD, or an age like 24h).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only calls before this time.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only calls of this agent (its raw identifier; it is pseudonymised for the lookup).
    #[arg(long)]
    agent: Option<String>,
    /// Only calls to this model.
    #[arg(long)]
    model: Option<String>,
    /// Only calls with this tag (repeatable; all must match).
    #[arg(long = "tag", value_name = "K=V", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
    /// Only calls of this discovered task (see `downshift discover`).
    #[arg(long, value_name = "ID")]
    task: Option<String>,
    /// Scrubbing threads (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn curate(a: CurateArgs, data: &DataDir, cfg: &CurateConfig) -> Result<()> {
    let (keyring, _) = data.keyring(false)?;
    let store = data.open_store()?;
    let filter = CallFilter {
        since_ms: a.since.as_deref().map(parse_time).transpose()?,
        until_ms: a.until.as_deref().map(parse_time).transpose()?,
        model: a.model.clone(),
        status: None,
        agent: a.agent.as_deref().map(|r| keyring.pseudonym("agent", r)),
        tags: a.tags.clone(),
        limit: None,
        task: a.task.clone(),
        after: None,
    };
    if let Some(t) = &a.task
        && store.task_size(t)? == 0
    {
        anyhow::bail!("no calls are assigned to task '{t}' (tasks come from `downshift discover`)");
    }
    let threads = a.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(2)
    });
    let started = std::time::Instant::now();
    let spinner = crate::progress::spinner("curate");
    spinner.set_message("reading, scrubbing and filtering the calls");
    let (meta, report) = create_snapshot(
        &*store,
        &keyring,
        &SnapshotRequest {
            name: a.name,
            filter,
            threads,
        },
        cfg,
    )?;
    spinner.finish_and_clear();
    if a.json {
        println!(
            "{}",
            json!({"dataset": meta.name, "id": meta.id, "examples": meta.examples,
                   "seconds": started.elapsed().as_secs_f64(), "report": report})
        );
        return Ok(());
    }
    println!(
        "dataset '{}' ({}): {} examples from {} calls in {:.1}s",
        meta.name,
        meta.id,
        meta.examples,
        report.calls_in,
        started.elapsed().as_secs_f64()
    );
    print_report(&meta.report);
    Ok(())
}

/// The curation report as a table: one row per step and rule.
fn print_report(report: &serde_json::Value) {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0).to_string();
    rows.push(vec!["input".into(), "calls".into(), n(&report["calls_in"])]);
    if let Some(f) = report["filtered"].as_object() {
        for (k, v) in f {
            rows.push(vec!["filter".into(), k.clone(), format!("-{}", n(v))]);
        }
    }
    rows.push(vec![
        "pii".into(),
        "calls with entities".into(),
        n(&report["calls_with_pii"]),
    ]);
    if let Some(e) = report["pii_entities"].as_object() {
        for (k, v) in e {
            rows.push(vec!["pii".into(), format!("{k} replaced"), n(v)]);
        }
    }
    rows.push(vec![
        "pii".into(),
        "calls dropped by policy".into(),
        format!("-{}", n(&report["pii_dropped_calls"])),
    ]);
    rows.push(vec![
        "dedup".into(),
        "exact duplicates".into(),
        format!("-{}", n(&report["exact_duplicates"])),
    ]);
    rows.push(vec![
        "dedup".into(),
        "near duplicates".into(),
        format!("-{}", n(&report["near_duplicates"])),
    ]);
    rows.push(vec![
        "output".into(),
        "examples".into(),
        n(&report["examples_out"]),
    ]);
    table(&["STEP", "RULE", "COUNT"], &rows);
}

#[derive(Debug, clap::Subcommand)]
pub enum DatasetsCommand {
    /// List dataset snapshots, newest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show a dataset's parameters and curation report.
    Show {
        /// Dataset name or id.
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Write a dataset as chat-format JSON Lines (`{"messages": [...], "tools": [...]}`), the
    /// format `train` and external trainers read.
    Export {
        /// Dataset name or id.
        name: String,
        /// Output file (default: stdout); written atomically.
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

pub fn datasets(c: DatasetsCommand, data: &DataDir) -> Result<()> {
    let store = data.open_existing_store()?;
    let find = |name: &str| -> Result<downshift_store::DatasetMeta> {
        store
            .get_dataset(name)?
            .with_context(|| format!("no dataset named '{name}' (see `downshift datasets list`)"))
    };
    match c {
        DatasetsCommand::List { json } => {
            let all = store.list_datasets()?;
            if json {
                for d in &all {
                    println!(
                        "{}",
                        json!({"id": d.id, "name": d.name, "created": rfc3339(d.created_ms), "examples": d.examples})
                    );
                }
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|d| {
                        vec![
                            d.name.clone(),
                            d.id.clone(),
                            rfc3339(d.created_ms),
                            d.examples.to_string(),
                        ]
                    })
                    .collect();
                table(&["NAME", "ID", "CREATED", "EXAMPLES"], &rows);
            }
        }
        DatasetsCommand::Show { name, json } => {
            let d = find(&name)?;
            if json {
                println!("{}", serde_json::to_string(&d)?);
            } else {
                println!(
                    "dataset '{}' ({}), created {}, {} examples",
                    d.name,
                    d.id,
                    rfc3339(d.created_ms),
                    d.examples
                );
                println!("parameters: {}", d.params);
                print_report(&d.report);
            }
        }
        DatasetsCommand::Export { name, out } => {
            let d = find(&name)?;
            let (keyring, _) = data.keyring(false)?;
            store.audit(&AuditEntry::new(
                &crate::calls::cli_actor(),
                "export_dataset",
                Some(&d.id),
                Some(&d.name),
            ))?;
            let n = write_output(out.as_deref(), |w| {
                Ok(export_dataset_jsonl(&d, &keyring, &*store, w)?)
            })?;
            eprintln!("exported {n} examples");
        }
    }
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum PiiCommand {
    /// Read JSON Lines `{"text": ...}` on stdin; write one line per input:
    /// `{"entities": [{"type", "start", "end", "text"}], "redacted": "..."}` (UTF-8 byte offsets).
    Detect,
}

pub fn pii(c: PiiCommand, cfg: &CurateConfig) -> Result<()> {
    match c {
        PiiCommand::Detect => {
            let detector = Detector::new(&cfg.pii)?;
            let stdin = std::io::stdin().lock();
            let stats = detect_jsonl(&detector, stdin, std::io::stdout().lock())?;
            if stats.errors > 0 {
                eprintln!(
                    "{} input lines were not {{\"text\": ...}} objects (answered with an error line)",
                    stats.errors
                );
            }
        }
    }
    Ok(())
}
