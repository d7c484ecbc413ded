//! `import`, `export`, `calls list|show`.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use downshift_api::ImportFormat;
use downshift_gateway::ATTEMPTS_TAG;
use downshift_store::{AuditEntry, CallFilter, CallStatus, DataDir, export_jsonl, import_jsonl};
use serde_json::{Value, json};

use crate::output::{parse_tag, parse_time, rfc3339, table, write_output};

/// Who the audit trail names for reads through the CLI.
pub fn cli_actor() -> String {
    format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    )
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum FormatArg {
    Auto,
    Openai,
    Flywheel,
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// JSON Lines file to read ("-" for stdin).
    file: PathBuf,
    /// Record format; auto decides per line.
    #[arg(long, value_enum, default_value = "auto")]
    format: FormatArg,
    /// Tag added to every imported call (repeatable).
    #[arg(long = "tag", value_name = "K=V", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
    /// Fail (exit 1) when any line is bad; the good lines are still stored.
    #[arg(long)]
    strict: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

pub fn import(a: ImportArgs, data: &DataDir) -> Result<()> {
    let (keyring, _) = data.keyring(true)?;
    let store = data.open_store()?;
    let format = match a.format {
        FormatArg::Auto => ImportFormat::Auto,
        FormatArg::Openai => ImportFormat::OpenAi,
        FormatArg::Flywheel => ImportFormat::Flywheel,
    };
    let tags: BTreeMap<String, String> = a.tags.into_iter().collect();
    let report = if a.file.as_os_str() == "-" {
        import_jsonl(std::io::stdin().lock(), format, &tags, &keyring, &*store)?
    } else {
        let f = std::fs::File::open(&a.file)
            .with_context(|| format!("cannot open {}", a.file.display()))?;
        import_jsonl(BufReader::new(f), format, &tags, &keyring, &*store)?
    };
    if a.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        for e in report.errors.iter().take(50) {
            eprintln!("{}:{}: {}", a.file.display(), e.line, e.error);
        }
        if report.errors.len() > 50 {
            eprintln!("… and {} more bad lines", report.errors.len() - 50);
        }
        println!(
            "imported {} calls ({} already present), skipped {} bad lines",
            report.imported,
            report.duplicates,
            report.errors.len()
        );
    }
    if a.strict && !report.errors.is_empty() {
        bail!("{} bad lines (--strict)", report.errors.len());
    }
    Ok(())
}

/// Filters shared by `export` and `calls list`.
#[derive(Debug, clap::Args)]
pub struct FilterArgs {
    /// Only calls at or after this time (RFC 3339, YYYY-MM-DD, or an age like 24h).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only calls before this time.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only calls to this model.
    #[arg(long)]
    model: Option<String>,
    /// Only calls with this status (ok, upstream_error, unreachable, timeout, interrupted).
    #[arg(long)]
    status: Option<String>,
    /// Only calls with this tag (repeatable; all must match).
    #[arg(long = "tag", value_name = "K=V", value_parser = parse_tag)]
    tags: Vec<(String, String)>,
    /// Only calls of this agent: its id as the agent sent it (pseudonymised with the key file
    /// before the lookup) or its stored pseudonym (`agt_…`).
    #[arg(long, value_name = "ID")]
    agent: Option<String>,
    /// Only calls discovery assigned to this task (see `downshift tasks list`).
    #[arg(long, value_name = "TASK_ID")]
    task: Option<String>,
}

impl FilterArgs {
    fn filter(&self, limit: Option<usize>, data: &DataDir) -> Result<CallFilter> {
        let status = match self.status.as_deref() {
            None => None,
            Some(s) => Some(CallStatus::parse(s).with_context(|| {
                format!(
                    "unknown status '{s}' (ok, upstream_error, unreachable, timeout, interrupted)"
                )
            })?),
        };
        Ok(CallFilter {
            since_ms: self.since.as_deref().map(parse_time).transpose()?,
            until_ms: self.until.as_deref().map(parse_time).transpose()?,
            model: self.model.clone(),
            status,
            agent: match self.agent.as_deref() {
                None => None,
                Some(a) if is_agent_pseudonym(a) => Some(a.to_owned()),
                Some(a) => Some(data.keyring(false)?.0.pseudonym("agent", a)),
            },
            tags: self.tags.clone(),
            limit,
            task: self.task.clone(),
            after: None,
        })
    }
}

/// A stored agent pseudonym: `agt_` and 24 lower-case hex digits.
fn is_agent_pseudonym(s: &str) -> bool {
    s.strip_prefix("agt_").is_some_and(|h| {
        h.len() == 24
            && h.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// Output file (default: stdout).
    #[arg(long, short, value_name = "FILE")]
    out: Option<PathBuf>,
    #[command(flatten)]
    filter: FilterArgs,
    /// At most this many calls (oldest first).
    #[arg(long)]
    limit: Option<usize>,
}

pub fn export(a: ExportArgs, data: &DataDir) -> Result<()> {
    let store = data.open_existing_store()?;
    let (keyring, _) = data.keyring(false)?;
    let filter = a.filter.filter(a.limit, data)?;
    store.audit(&AuditEntry::new(
        &cli_actor(),
        "export_raw",
        None,
        a.out.as_ref().map(|p| p.display().to_string()).as_deref(),
    ))?;
    let n = write_output(a.out.as_deref(), |w| {
        Ok(export_jsonl(&filter, &keyring, &*store, w)?)
    })?;
    eprintln!("exported {n} calls");
    Ok(())
}

#[derive(Debug, clap::Subcommand)]
pub enum CallsCommand {
    /// List logged calls, newest first (metadata only; payloads stay encrypted).
    List {
        #[command(flatten)]
        filter: FilterArgs,
        /// At most this many calls.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Show one call with its decrypted request and response (audited).
    Show {
        /// Call id.
        id: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The attempts of a call the gateway tried more than once (upstream, status, latency, error).
/// The call a person meant by `id`: the exact id, or the one call whose id starts with it.
fn resolve_call_id(store: &dyn downshift_store::Store, id: &str) -> Result<String> {
    let id = id.trim();
    if id.is_empty() {
        bail!("an empty call id");
    }
    let found = store.call_ids_with_prefix(id, 4)?;
    if found.iter().any(|f| f == id) {
        return Ok(id.to_owned());
    }
    match found.as_slice() {
        [] => bail!("no call with id or id prefix '{id}' (see `downshift calls list`)"),
        [one] => Ok(one.clone()),
        many => bail!(
            "the id prefix '{id}' matches several calls ({}{}); give more of the id",
            many[..many.len().min(3)].join(", "),
            if many.len() > 3 { ", …" } else { "" }
        ),
    }
}

fn attempts_of(m: &downshift_store::CallMeta) -> Option<Vec<Value>> {
    serde_json::from_str(m.tags.get(ATTEMPTS_TAG)?).ok()
}

fn meta_json(m: &downshift_store::CallMeta) -> Value {
    let mut v = serde_json::to_value(m).unwrap_or(Value::Null);
    if let Value::Object(o) = &mut v {
        o.insert("timestamp".into(), Value::String(rfc3339(m.ts_ms)));
    }
    v
}

pub fn calls(c: CallsCommand, data: &DataDir) -> Result<()> {
    let store = data.open_existing_store()?;
    match c {
        CallsCommand::List {
            filter,
            limit,
            json,
        } => {
            let calls = store.list_calls(&filter.filter(Some(limit), data)?)?;
            if json {
                let mut out = std::io::stdout().lock();
                for m in &calls {
                    writeln!(out, "{}", meta_json(m))?;
                }
                return Ok(());
            }
            let ms = |us: Option<u64>| {
                us.map(|u| format!("{:.1}", u as f64 / 1000.0))
                    .unwrap_or_else(|| "-".into())
            };
            let rows: Vec<Vec<String>> = calls
                .iter()
                .map(|m| {
                    vec![
                        m.id.clone(),
                        rfc3339(m.ts_ms),
                        m.model.clone(),
                        m.status.as_str().to_owned(),
                        if m.stream { "yes" } else { "no" }.to_owned(),
                        ms(m.latency_us),
                        format!(
                            "{}/{}",
                            m.prompt_tokens
                                .map(|t| t.to_string())
                                .unwrap_or_else(|| "-".into()),
                            m.completion_tokens
                                .map(|t| t.to_string())
                                .unwrap_or_else(|| "-".into())
                        ),
                        m.tags
                            .iter()
                            .map(|(k, v)| match attempts_of(m) {
                                Some(a) if k == ATTEMPTS_TAG => format!("attempts={}", a.len()),
                                _ => format!("{k}={v}"),
                            })
                            .collect::<Vec<_>>()
                            .join(","),
                    ]
                })
                .collect();
            table(
                &[
                    "ID",
                    "TIME",
                    "MODEL",
                    "STATUS",
                    "STREAM",
                    "LATENCY_MS",
                    "TOKENS",
                    "TAGS",
                ],
                &rows,
            );
            Ok(())
        }
        CallsCommand::Show { id, json } => {
            let (keyring, _) = data.keyring(false)?;
            let id = resolve_call_id(&*store, &id)?;
            let sealed = store
                .get_call(&id)?
                .with_context(|| format!("no call with id '{id}'"))?;
            store.audit(&AuditEntry::new(
                &cli_actor(),
                "read_raw",
                Some(&id),
                Some("calls show"),
            ))?;
            let payload = keyring.open(&sealed)?;
            let mut out = json!({
                "call": meta_json(&sealed.meta),
                "request": downshift_gateway::payload_value(&payload.request),
                "response": downshift_gateway::payload_value(&payload.response),
            });
            if let Some(attempts) = attempts_of(&sealed.meta) {
                out["attempts"] = Value::Array(attempts);
            }
            if json {
                println!("{out}");
            } else {
                println!("{}", serde_json::to_string_pretty(&out)?);
            }
            Ok(())
        }
    }
}
