//! `eval`: a specialist against the LLM's logged answers on its task's held-out test split,
//! with the base model's zero-shot scores beside it (step S5).

use std::path::PathBuf;

use anyhow::Result;
use downshift_lifecycle::evaluate::{EvalRequest, evaluate};
use downshift_store::DataDir;
use downshift_train::Split;
use serde_json::json;

use crate::output::table;
use crate::train::DataArgs;

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The specialist: an adapter folder written by `downshift train`, or the name of one in
    /// the adapters folder (`adapters` in the data directory: the task id `train` used).
    #[arg(long, value_name = "DIR")]
    adapter: PathBuf,
    /// The base model (default: the one the adapter was trained on).
    #[arg(long, value_name = "PATH|ID")]
    base: Option<String>,
    /// Skip the base model's zero-shot run.
    #[arg(long)]
    no_base: bool,
    /// How many of the scored calls the base model answers zero-shot, spread evenly over the
    /// split (`all`: every one). It reads whole logged prompts, so on long-prompt tasks each
    /// of its answers costs many of the specialist's.
    #[arg(long, value_name = "N|all", default_value = "32", value_parser = parse_base_calls)]
    base_calls: BaseCalls,
    /// The split to score: `test` (held out from training and selection) or `validation`.
    #[arg(long, value_enum, default_value_t = SplitArg::Test)]
    split: SplitArg,
    /// Evaluate at most this many examples of the split.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Most tokens per answer.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Compute threads (default: DOWNSHIFT_THREADS, else every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Also pick the specialist's confidence threshold: on the validation split, the lowest
    /// mean token log-probability at which its answers are right at least this often (e.g.
    /// 0.95). `promote --min-confidence` takes the result.
    #[arg(long, value_name = "PRECISION")]
    calibrate: Option<f64>,
    /// Also write the specialist's answers on the scored split to FILE, one JSON object per
    /// line: `{"id", "messages", "tools", "prompt", "prompt_tokens", "exact", "confidence",
    /// "expected", "got", "tokens"}` (prompt: the exact text the specialist saw; confidence:
    /// the answer's mean token log-probability; tokens: `[text, log-probability]` pairs).
    #[arg(long, value_name = "FILE")]
    predictions: Option<PathBuf>,
    /// Print `{"task", "examples", "exact_match", "base_exact_match", "schema_valid", …}`.
    #[arg(long)]
    json: bool,
}

/// `--base-calls`: a count, or every call.
#[derive(Clone, Copy, Debug)]
struct BaseCalls(Option<usize>);

fn parse_base_calls(s: &str) -> Result<BaseCalls, String> {
    if s == "all" {
        return Ok(BaseCalls(None));
    }
    match s.parse::<usize>() {
        Ok(0) => Err("0 base calls: use --no-base to skip the base model".into()),
        Ok(n) => Ok(BaseCalls(Some(n))),
        Err(_) => Err(format!("'{s}' is not a number of calls or `all`")),
    }
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum SplitArg {
    Test,
    Validation,
}

pub fn eval(a: EvalArgs, data: &DataDir, cfg: &crate::config::Config) -> Result<()> {
    let curate = &cfg.curate;
    let adapter = cfg.adapter_path(data, &a.adapter);
    let req = EvalRequest {
        data: a.data.source(),
        base: a.base,
        no_base: a.no_base,
        base_calls: a.base_calls.0,
        split: match a.split {
            SplitArg::Test => Split::Test,
            SplitArg::Validation => Split::Validation,
        },
        limit: a.limit,
        max_tokens: a.max_tokens,
        threads: a.threads,
        calibrate: a.calibrate,
        predictions: a.predictions,
        quiet: a.json,
        bar: true,
        ..EvalRequest::new(adapter)
    };
    let out = evaluate(&req, data, curate)?;
    if a.json {
        println!("{}", json!(out));
        return Ok(());
    }
    let (s, b) = (&out.specialist, &out.base_model);
    let pct = |v: Option<f64>| {
        v.map(|v| format!("{:.1}%", v * 100.0))
            .unwrap_or("-".into())
    };
    let num = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or("-".into());
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.0} ms")).unwrap_or("-".into());
    let mut rows = vec![vec![
        "specialist".to_string(),
        pct(s.exact_match),
        pct(s.schema_valid),
        num(s.rouge_l),
        ms(s.latency_p50_ms),
        ms(s.latency_p95_ms),
    ]];
    if let Some(b) = &b {
        rows.push(vec![
            match out.base_examples {
                Some(n) if n < out.examples => format!("base (zero-shot, {n} of the calls)"),
                _ => "base (zero-shot)".into(),
            },
            pct(b.exact_match),
            pct(b.schema_valid),
            num(b.rouge_l),
            ms(b.latency_p50_ms),
            ms(b.latency_p95_ms),
        ]);
    }
    table(
        &["MODEL", "EXACT", "SCHEMA VALID", "ROUGE-L", "P50", "P95"],
        &rows,
    );
    if let Some(c) = &out.calibration {
        match c.min_confidence {
            Some(m) => eprintln!(
                "confidence threshold {m:.4} (mean token log-probability): serves {} of the validation split at {} precision",
                pct(c.coverage),
                pct(c.precision)
            ),
            None => eprintln!(
                "no confidence threshold reaches {} precision on the validation split",
                pct(Some(c.target_precision))
            ),
        }
    }
    for m in &out.misses {
        eprintln!(
            "miss on {}:\n  expected {}\n  got      {}",
            m.id, m.expected, m.got
        );
    }
    Ok(())
}
