//! `downshift demo`: the whole conversion end to end on loopback
//! ([`downshift_lifecycle::demo`]); this prints its result as tables or JSON.

use std::path::PathBuf;

use anyhow::Result;
pub use downshift_lifecycle::demo::Prices;
use downshift_lifecycle::demo::{DemoOptions, run};
use downshift_lifecycle::train::FrozenLayers;
use serde_json::json;

use crate::config::Config;
use crate::output::table;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// A short run (< 5 min on 2 cores): the most learnable task (consistent, shortest
    /// answers), one short fine-tune.
    #[arg(long)]
    quick: bool,
    /// Print the result as one JSON object.
    #[arg(long)]
    json: bool,
    /// The traffic: recorded calls in the import format (default: the demo's deployment mix —
    /// BFCL agent steps, τ² airline and telecom calls, support jobs — built by `scripts/fetch.sh
    /// demo` as `data/demo/traffic.jsonl`; the hard BFCL-only run: `data/bfcl/agent.jsonl`).
    #[arg(long, value_name = "FILE")]
    traffic: Option<PathBuf>,
    /// Keep only the records tagged with one of these values (comma-separated): any string
    /// value of a record's `metadata` — a source (`tau2`), an agent (`support`), a BFCL
    /// category (`multi_turn_agent`). `all` keeps everything.
    #[arg(long, default_value = "all", value_name = "LIST")]
    categories: String,
    /// The small base model (default: the packaged SmolLM2-135M-Instruct).
    #[arg(long, value_name = "PATH|ID")]
    base: Option<String>,
    /// How many tasks get a specialist (default: every suitable one — at least 40 calls whose
    /// answers are tool calls, JSON or short labels, largest first; 1 with --quick).
    #[arg(long, value_name = "N")]
    tasks: Option<usize>,
    /// One specialist for all the tasks: a single adapter trained on all the replayed traffic,
    /// then evaluated, calibrated, gated and promoted task by task. It learns what the tasks
    /// share (an agent's vehicle steps look alike whichever other API it has) and trains
    /// once instead of once per task.
    #[arg(long)]
    shared: bool,
    /// Passes over each task's training split (default: 3; 2 with --quick; 1 with --shared,
    /// whose one pass covers all the traffic).
    #[arg(long, value_name = "N")]
    epochs: Option<usize>,
    /// Cap on optimizer updates per task (default: 200, which keeps the run within its time
    /// budget on 2 cores whatever the traffic's task sizes; 150 with --quick; none with
    /// --shared).
    #[arg(long, value_name = "N")]
    max_steps: Option<usize>,
    /// Peak learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Specialists read only the last N user turns of each conversation (0: all of it); see
    /// `train --keep-turns`. One turn (the default) trains about twice as fast as the whole
    /// conversation (whose steps `train` folds into one sequence) and was more accurate at the
    /// same number of passes.
    #[arg(long, default_value_t = 1, value_name = "N")]
    keep_turns: usize,
    /// Layers of the base left without adapters, a count or a share (`67%`); see `train
    /// --frozen-layers`. An epoch then costs about half as much.
    #[arg(long, default_value = "0", value_name = "N|P%")]
    frozen_layers: FrozenLayers,
    /// Specialists see the names of the tools a request offers (one system line) instead of
    /// nothing of them; see `train --tool-names`.
    #[arg(long)]
    tool_names: bool,
    /// Share of the traffic held out: replayed only after promotion, never trained on.
    #[arg(long, default_value_t = 0.2, value_name = "X")]
    holdout: f64,
    /// A specialist is promoted to `on` when its exact match on its task's test split is at
    /// least this, or when a confidence threshold serves at least --min-coverage of the
    /// validation split at --precision and holds that precision on the test split (less
    /// confident answers then go to the LLM); otherwise it stays in `shadow`.
    #[arg(long, default_value_t = 0.8, value_name = "X")]
    gate: f64,
    /// Precision the confidence threshold is calibrated for.
    #[arg(long, default_value_t = 0.95, value_name = "X")]
    precision: f64,
    /// Least share of the validation split a thresholded specialist must serve.
    #[arg(long, default_value_t = 0.2, value_name = "X")]
    min_coverage: f64,
    /// Working folder (data, adapters, logs); emptied first. Default `.downshift-demo`, and
    /// `.downshift-demo/quick` with --quick, so that a quick run never empties the folder of a
    /// full run it follows.
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
    /// Compute threads for each training and evaluation run (default: the cores divided
    /// among the --jobs).
    #[arg(long)]
    threads: Option<usize>,
    /// Specialists trained and evaluated at the same time (default: one per core, at most one
    /// per task). The small model's products scale poorly past one thread, so two runs on one
    /// thread each do about 1.5× the work of one run on two.
    #[arg(long, value_name = "N")]
    jobs: Option<usize>,
}

/// The demo's options as the arguments give them.
fn options(a: DemoArgs) -> DemoOptions {
    DemoOptions {
        quick: a.quick,
        traffic: a.traffic,
        categories: a.categories,
        base: a.base,
        tasks: a.tasks,
        shared: a.shared,
        epochs: a.epochs,
        max_steps: a.max_steps,
        lr: a.lr,
        keep_turns: a.keep_turns,
        frozen_layers: a.frozen_layers,
        tool_names: a.tool_names,
        holdout: a.holdout,
        gate: a.gate,
        precision: a.precision,
        min_coverage: a.min_coverage,
        work: a.work,
        threads: a.threads,
        jobs: a.jobs,
        quiet: a.json,
    }
}

pub fn demo(a: DemoArgs, cfg: &Config) -> Result<()> {
    let json = a.json;
    let out = run(&options(a), &cfg.prices)?;
    if json {
        println!("{}", json!(out));
        return Ok(());
    }
    let s = &out.seconds;
    println!();
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    let rows: Vec<Vec<String>> = out
        .tasks
        .iter()
        .map(|r| {
            vec![
                r.task.clone(),
                r.label.chars().take(36).collect(),
                r.metric.clone(),
                r.heldout_calls.to_string(),
                r.mode.clone(),
                r.eval_exact_match.map_or("-".into(), pct),
                if r.served > 0 {
                    format!("{} ({}/{} exact)", r.served, r.served_exact, r.served)
                } else {
                    "-".into()
                },
                r.served_quality.map_or("-".into(), pct),
                r.fallbacks.to_string(),
                r.specialist_p50_ms
                    .map_or("-".into(), |m| format!("{m:.0} ms")),
            ]
        })
        .collect();
    table(
        &[
            "TASK",
            "LABEL",
            "METRIC",
            "HELD-OUT",
            "ROUTE",
            "EVAL EXACT",
            "SERVED",
            "SERVED QUALITY",
            "FALLBACKS",
            "SLM P50",
        ],
        &rows,
    );
    println!();
    let rows: Vec<Vec<String>> = out
        .agents
        .iter()
        .map(|a| {
            vec![
                a.agent.clone(),
                a.heldout_calls.to_string(),
                format!("{} ({})", a.served, pct(a.share_served)),
                pct(a.quality_vs_llm),
                pct(a.cost_saving),
            ]
        })
        .collect();
    table(
        &[
            "AGENT",
            "HELD-OUT",
            "SERVED",
            "QUALITY VS LLM",
            "COST SAVED",
        ],
        &rows,
    );
    println!();
    if let Some(f) = &out.first_served {
        println!(
            "first held-out call a specialist served: x-downshift-route: {} → {}",
            f.route, f.answer
        );
    }
    println!(
        "held-out calls: {}   served by specialists: {}   quality vs the LLM: {} (each call by its task's metric; LLM-only: 100%)",
        out.heldout_calls,
        pct(out.served_by_specialists),
        pct(out.quality_vs_llm)
    );
    println!(
        "estimated LLM cost: ${:.4} LLM-only → ${:.4} with specialists ({} saved); mean latency {:.0} ms → {:.0} ms",
        out.cost_usd.llm_only,
        out.cost_usd.with_specialists,
        pct(out.cost_usd.saving),
        out.latency_ms_mean.llm_only,
        out.latency_ms_mean.with_specialists
    );
    println!(
        "took {:.0} s (replay {:.0} s, discover {:.0} s, train+eval {:.0} s, held-out {:.0} s); work folder {}",
        s.total,
        s.replay,
        s.discover,
        s.train_and_eval,
        s.heldout,
        out.work.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        demo: DemoArgs,
    }

    /// The folder `downshift demo ARGS` would empty and work in.
    fn folder(args: &[&str]) -> PathBuf {
        let a = Cli::try_parse_from(std::iter::once("demo").chain(args.iter().copied()))
            .map(|c| c.demo)
            .unwrap_or_else(|e| panic!("{e}"));
        options(a).work_folder()
    }

    #[test]
    fn a_quick_run_never_empties_the_full_runs_folder() {
        assert_eq!(folder(&[]), PathBuf::from(".downshift-demo"));
        assert_eq!(folder(&["--quick"]), PathBuf::from(".downshift-demo/quick"));
        assert_eq!(folder(&["--quick", "--work", "w"]), PathBuf::from("w"));
        assert_eq!(folder(&["--work", "w"]), PathBuf::from("w"));
    }
}
