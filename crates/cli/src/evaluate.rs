//! `eval`: a specialist against the LLM's logged answers on its task's held-out test split,
//! with the base model's zero-shot scores beside it (step S5).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use downshift_curate::CurateConfig;
use downshift_evaluate::{OutputKind, Report, Score, kind_of_many, score};
use downshift_slm::{AdapterSel, GenerateOptions, LocalModel, Specialist, assistant_message};
use downshift_store::DataDir;
use downshift_train::{ChatRecord, SpecialistMeta, Split, SplitConfig};
use serde_json::{Value, json};

use crate::local::{ModelArgs, load_model};
use crate::output::table;
use crate::train::DataArgs;

/// Fewest validation answers a calibrated threshold must serve: two right answers out of two
/// (the old floor) promoted a specialist that was right on none of its test split.
const MIN_SERVED: usize = 5;

#[derive(Debug, clap::Args)]
pub struct EvalArgs {
    #[command(flatten)]
    data: DataArgs,
    /// The specialist: an adapter folder written by `downshift train`.
    #[arg(long, value_name = "DIR")]
    adapter: PathBuf,
    /// The base model (default: the one the adapter was trained on).
    #[arg(long, value_name = "PATH|ID")]
    base: Option<String>,
    /// Skip the base model's zero-shot run.
    #[arg(long)]
    no_base: bool,
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

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum SplitArg {
    Test,
    Validation,
}

/// One model's answers to a split.
pub struct Run {
    pub report: Report,
    pub answers: Vec<Value>,
    /// Mean token log-probability of each answer, and whether it matched exactly.
    pub confidence: Vec<(f64, bool)>,
    /// Each answer's tokens with their log-probabilities.
    pub tokens: Vec<Vec<(String, f32)>>,
    /// Each prompt, as rendered, and its length in tokens.
    pub prompts: Vec<(String, usize)>,
}

/// The prompt a model answers zero-shot: the request as logged, tool schemas included.
pub fn zero_shot_prompt(lm: &LocalModel, r: &ChatRecord) -> Result<String> {
    let m = serde_json::to_string(&r.messages)?;
    let t = r.tools.as_ref().map(serde_json::to_string).transpose()?;
    Ok(lm.render_prompt(&m, t.as_deref())?)
}

pub fn run_model(
    lm: &LocalModel,
    tests: &[&ChatRecord],
    kind: OutputKind,
    opts: &GenerateOptions,
    prompt: &dyn Fn(&ChatRecord) -> Result<String>,
) -> Result<Run> {
    let mut report = Report::new();
    let mut answers = Vec::with_capacity(tests.len());
    let mut confidence = Vec::with_capacity(tests.len());
    let mut tokens = Vec::with_capacity(tests.len());
    let mut prompts = Vec::with_capacity(tests.len());
    let pb = crate::progress::bar(tests.len() as u64, "generating");
    for r in tests {
        pb.inc(1);
        let text = prompt(r)?;
        let ids = lm.tokenize(&text);
        let t0 = Instant::now();
        let g = lm
            .generate_ids(&ids, opts, None)
            .with_context(|| format!("generation failed on call {}", r.id))?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        let pred = assistant_message(&g.text);
        let s: Score = score(&pred, &r.answer, r.tools.as_deref(), kind);
        report.add(&s, Some(ms));
        answers.push(pred);
        let mean = if g.logprobs.is_empty() {
            f64::NAN
        } else {
            g.logprobs.iter().map(|&l| f64::from(l)).sum::<f64>() / g.logprobs.len() as f64
        };
        confidence.push((mean, s.exact));
        prompts.push((text, ids.len()));
        tokens.push(
            g.token_ids
                .iter()
                .zip(&g.logprobs)
                .map(|(&t, &l)| (lm.tokenizer.decode(&[t], true), l))
                .collect(),
        );
    }
    pb.finish_and_clear();
    Ok(Run {
        report,
        answers,
        confidence,
        tokens,
        prompts,
    })
}

pub fn eval(a: EvalArgs, data: &DataDir, curate: &CurateConfig) -> Result<()> {
    let spec = Specialist::open(&a.adapter)
        .with_context(|| format!("cannot read the specialist in {}", a.adapter.display()))?;
    let meta = spec.trained_meta()?.clone();
    if meta.format_version < SpecialistMeta::FORMAT_VERSION {
        bail!(
            "{} was written by an older downshift (specialist format {}) whose train / test split \
             is not this version's, so its test split may hold calls it trained on; retrain it",
            a.adapter.display(),
            meta.format_version
        );
    }
    // What the command line names, else what the adapter was trained on (its task first).
    let data_args = if a.data.task.is_some() || a.data.dataset.is_some() {
        a.data.clone()
    } else {
        DataArgs {
            task: meta.task.clone(),
            dataset: meta.task.is_none().then(|| meta.dataset.clone()).flatten(),
        }
    };
    let (dataset, recs) = data_args.load(data, curate)?;
    let split = SplitConfig::default();
    let which = match a.split {
        SplitArg::Test => Split::Test,
        SplitArg::Validation => Split::Validation,
    };
    let mut tests: Vec<&ChatRecord> = recs
        .iter()
        .filter(|r| split.split_of_record(r) == which)
        .collect();
    if let Some(n) = a.limit {
        tests.truncate(n);
    }
    if tests.is_empty() {
        bail!(
            "dataset '{dataset}' has no {} examples ({} records; about 10% of calls are \
             held out for validation and 10% for testing)",
            if which == Split::Test {
                "test"
            } else {
                "validation"
            },
            recs.len()
        );
    }
    if a.calibrate.is_some() && which != Split::Test {
        bail!(
            "--calibrate picks its threshold on the validation split; score the test split with it"
        );
    }
    let refs = recs.iter().map(|r| &r.answer);
    let kind = kind_of_many(refs).unwrap_or(OutputKind::Text);

    let base = a.base.clone().unwrap_or_else(|| meta.base_model.clone());
    let mut lm = load_model(&ModelArgs {
        model: base.clone(),
        threads: a.threads,
    })?;
    let adapter_id = lm
        .attach_specialist(&spec)
        .with_context(|| format!("cannot load the adapter {}", a.adapter.display()))?;
    // The specialist's own recipe (its transform and template), as every path serving it.
    let recipe = lm
        .prompt_recipe(adapter_id)
        .cloned()
        .ok_or_else(|| anyhow!("{} has no prompt recipe", a.adapter.display()))?;
    let greedy = GenerateOptions {
        max_tokens: a.max_tokens,
        temperature: 0.0,
        ..Default::default()
    };
    let spec_opts = GenerateOptions {
        adapter: AdapterSel::One(adapter_id),
        ..greedy.clone()
    };
    if !a.json {
        eprintln!(
            "evaluating {} on {} held-out calls of '{dataset}' ({} answers)",
            a.adapter.display(),
            tests.len(),
            kind.as_str()
        );
    }
    let spec = run_model(&lm, &tests, kind, &spec_opts, &|r| {
        Ok(recipe.render(&r.messages, r.tools.as_deref())?)
    })?;
    if let Some(p) = &a.predictions {
        write_predictions(p, &tests, &spec)?;
    }
    // The base answers zero-shot, with the full prompt (tool schemas included).
    let base_run = if a.no_base {
        None
    } else {
        Some(run_model(&lm, &tests, kind, &greedy, &|r| {
            zero_shot_prompt(&lm, r)
        })?)
    };
    // The confidence threshold, chosen on the validation split (never on the test split).
    let calibration = match a.calibrate {
        None => None,
        Some(p) if !(0.0..=1.0).contains(&p) => {
            bail!("--calibrate takes a precision between 0 and 1, got {p}")
        }
        Some(p) => {
            let mut vals: Vec<&ChatRecord> = recs
                .iter()
                .filter(|r| split.split_of_record(r) == Split::Validation)
                .collect();
            if let Some(n) = a.limit {
                vals.truncate(n);
            }
            let run = run_model(&lm, &vals, kind, &spec_opts, &|r| {
                Ok(recipe.render(&r.messages, r.tools.as_deref())?)
            })?;
            let c = downshift_evaluate::calibrate(&run.confidence, p, MIN_SERVED);
            // How the threshold does on the test split.
            let on_test = c.map(|c| {
                let served: Vec<bool> = spec
                    .confidence
                    .iter()
                    .filter(|(m, _)| *m >= c.min_confidence)
                    .map(|(_, ok)| *ok)
                    .collect();
                json!({
                    "coverage": served.len() as f64 / spec.confidence.len().max(1) as f64,
                    "precision": (!served.is_empty()).then(|| {
                        served.iter().filter(|ok| **ok).count() as f64 / served.len() as f64
                    }),
                })
            });
            Some(json!({
                "split": "validation",
                "target_precision": p,
                "examples": vals.len(),
                "min_confidence": c.map(|c| c.min_confidence),
                "coverage": c.map(|c| c.coverage),
                "precision": c.map(|c| c.precision),
                "test": on_test,
            }))
        }
    };
    let s = spec.report.summary();
    let b = base_run.as_ref().map(|r| r.report.summary());
    let out = json!({
        "task": meta.task.clone().or(data_args.task.clone()),
        "dataset": dataset,
        "adapter": a.adapter,
        "base": base,
        "kind": kind.as_str(),
        "examples": tests.len(),
        "exact_match": s.exact_match,
        "base_exact_match": b.as_ref().and_then(|b| b.exact_match),
        "schema_valid": s.schema_valid,
        "base_schema_valid": b.as_ref().and_then(|b| b.schema_valid),
        "specialist": s,
        "base_model": b,
        "calibration": calibration,
        // Precision against share served by confidence threshold, on the test split.
        "calibration_curve": downshift_evaluate::calibration_curve(&spec.confidence),
    });
    write_result(&a.adapter, &out)?;
    if a.json {
        println!("{out}");
        return Ok(());
    }
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
            "base (zero-shot)".into(),
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
    if let Some(c) = out.get("calibration").filter(|c| !c.is_null()) {
        match c["min_confidence"].as_f64() {
            Some(m) => eprintln!(
                "confidence threshold {m:.4} (mean token log-probability): serves {} of the validation split at {} precision",
                pct(c["coverage"].as_f64()),
                pct(c["precision"].as_f64())
            ),
            None => eprintln!(
                "no confidence threshold reaches {} precision on the validation split",
                pct(c["target_precision"].as_f64())
            ),
        }
    }
    let misses = tests
        .iter()
        .zip(&spec.answers)
        .filter(|(r, p)| !score(p, &r.answer, r.tools.as_deref(), kind).exact)
        .take(3);
    for (r, p) in misses {
        eprintln!(
            "miss on {}:\n  expected {}\n  got      {}",
            r.id, r.answer, p
        );
    }
    Ok(())
}

/// One line per scored call: what the LLM answered, what the specialist answered.
fn write_predictions(path: &Path, tests: &[&ChatRecord], run: &Run) -> Result<()> {
    let mut out = String::new();
    let rows = tests
        .iter()
        .zip(&run.answers)
        .zip(&run.confidence)
        .zip(&run.tokens)
        .zip(&run.prompts);
    for ((((r, got), (confidence, exact)), tokens), (prompt, prompt_tokens)) in rows {
        let line = json!({
            "id": r.id,
            "messages": r.messages,
            "tools": r.tools,
            "prompt": prompt,
            "prompt_tokens": prompt_tokens,
            "exact": exact,
            "confidence": confidence.is_finite().then_some(*confidence),
            "expected": r.answer,
            "got": got,
            "tokens": tokens,
        });
        out.push_str(&line.to_string());
        out.push('\n');
    }
    std::fs::write(path, out).with_context(|| format!("cannot write {}", path.display()))
}

/// Keeps the latest evaluation beside the adapter (`eval.json`), for promotion gates.
fn write_result(dir: &Path, v: &Value) -> Result<()> {
    let p = dir.join("eval.json");
    downshift_train::adapter::write_atomic(&p, serde_json::to_string_pretty(v)?.as_bytes())
        .with_context(|| format!("cannot write {}", p.display()))
}
