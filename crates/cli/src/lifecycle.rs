//! `downshift loop`: runs the conversion's cycles ([`downshift_lifecycle::cycle`]) once or
//! every DURATION, and prints what each did.

use std::time::{Duration, Instant};

use anyhow::Result;
pub use downshift_lifecycle::cycle::LoopConfig;
use downshift_lifecycle::cycle::cycle;
use downshift_lifecycle::stages::Stages;
use downshift_store::DataDir;
use serde_json::json;

use crate::calls::cli_actor;
use crate::output::parse_duration_ms;

#[derive(Debug, clap::Args)]
pub struct LoopArgs {
    /// Run a cycle every DURATION (e.g. 30m, 6h) until stopped; without it, one cycle.
    #[arg(long, value_name = "DURATION")]
    every: Option<String>,
    /// Only plan: say what each task would get, change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print each cycle's actions as one JSON object.
    #[arg(long)]
    json: bool,
}

pub fn loop_cmd(a: LoopArgs, cfg: &crate::config::Config, data: &DataDir) -> Result<()> {
    let every = a
        .every
        .as_deref()
        .map(parse_duration_ms)
        .transpose()?
        .map(|ms| Duration::from_millis(ms.max(1_000) as u64));
    let actor = cli_actor();
    let stages = Stages {
        data,
        curate: &cfg.curate,
        discover: &cfg.discover,
        actor: &actor,
        quiet: a.json,
    };
    std::fs::create_dir_all(&data.root)?;
    loop {
        let t0 = Instant::now();
        let actions = cycle(&stages, &cfg.loop_, a.dry_run)?;
        if a.json {
            println!(
                "{}",
                json!({"actions": actions, "seconds": t0.elapsed().as_secs_f64(), "dry_run": a.dry_run})
            );
        } else {
            for x in &actions {
                println!("{}: {} — {}", x.task, x.action, x.why);
            }
            eprintln!("cycle done in {:.0} s", t0.elapsed().as_secs_f64());
        }
        match every {
            None => return Ok(()),
            Some(d) => std::thread::sleep(d.saturating_sub(t0.elapsed())),
        }
    }
}
