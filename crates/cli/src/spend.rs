//! `downshift spend`: tokens and USD of the logged calls, by API key, agent, model or task.

use std::io::Write;

use anyhow::Result;
use downshift_gateway::{SpendBy, month_start_ms, spend_report};

use crate::config::Config;
use crate::output::{parse_time, rfc3339, table};
use downshift_store::DataDir;

#[derive(Debug, clap::Args)]
pub struct SpendArgs {
    /// Group by `key` (API key id), `agent` (pseudonym), `model` or `task`.
    #[arg(long, default_value = "key", value_parser = parse_by)]
    by: SpendBy,
    /// Count calls since this time (RFC 3339, or YYYY-MM-DD for midnight UTC); default: the
    /// start of this UTC month.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// One JSON object per group, one per line.
    #[arg(long)]
    json: bool,
}

fn parse_by(s: &str) -> Result<SpendBy, String> {
    s.parse()
}

pub fn spend(a: SpendArgs, cfg: &Config, data: &DataDir) -> Result<()> {
    let store = data.open_existing_store()?;
    let since = match &a.since {
        Some(t) => parse_time(t)?,
        None => month_start_ms(downshift_store::now_ms()),
    };
    let rows = spend_report(&*store, since, a.by, &cfg.price_table())?;
    if a.json {
        let mut out = std::io::stdout().lock();
        for r in &rows {
            writeln!(out, "{}", serde_json::to_string(r)?)?;
        }
        return Ok(());
    }
    println!("since {}", rfc3339(since));
    let body: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.group.clone(),
                r.calls.to_string(),
                r.prompt_tokens.to_string(),
                r.completion_tokens.to_string(),
                format!("{:.4}", r.usd),
            ]
        })
        .collect();
    let head = match a.by {
        SpendBy::Key => "KEY",
        SpendBy::Agent => "AGENT",
        SpendBy::Model => "MODEL",
        SpendBy::Task => "TASK",
    };
    table(
        &[head, "CALLS", "PROMPT_TOKENS", "COMPLETION_TOKENS", "USD"],
        &body,
    );
    Ok(())
}
