//! Scoring a specialist (step S5): its answers against the LLM's logged ones on its task's
//! held-out test split, the base model's zero-shot answers beside them, and a confidence
//! threshold calibrated on the validation split.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};
use downshift_curate::CurateConfig;
use downshift_evaluate::{Report, Score, Summary, TaskKind, kind_of_many, score};
use downshift_slm::{AdapterSel, GenerateOptions, LocalModel, Specialist, assistant_message};
use downshift_store::DataDir;
use downshift_train::{ChatRecord, SpecialistMeta, Split, SplitConfig};
use serde::Serialize;
use serde_json::{Value, json};

use crate::dataset::DataSource;
use crate::model::load_model;

/// Fewest validation answers a calibrated threshold must serve: two right answers out of two
/// (the old floor) promoted a specialist that was right on none of its test split.
const MIN_SERVED: usize = 5;

/// How many scored calls the base model answers zero-shot by default.
pub const DEFAULT_BASE_CALLS: usize = 32;

/// What to evaluate. [`EvalRequest::new`] gives the `downshift eval` defaults.
#[derive(Clone, Debug)]
pub struct EvalRequest {
    /// The specialist: an adapter folder written by [`crate::train::train`].
    pub adapter: PathBuf,
    /// The examples (none: what the adapter was trained on, its task first).
    pub data: Option<DataSource>,
    /// The base model (none: the one the adapter was trained on).
    pub base: Option<String>,
    /// Skip the base model's zero-shot run.
    pub no_base: bool,
    /// At most this many of the scored calls answered by the base model zero-shot, spread
    /// evenly over the split (none: every one). The base reads the whole logged prompt, tool
    /// schemas and policy included, so on long-prompt tasks its answers cost many times the
    /// specialist's; a sample gives the comparison at a fraction of the time.
    pub base_calls: Option<usize>,
    /// The split scored: [`Split::Test`] or [`Split::Validation`].
    pub split: Split,
    /// At most this many examples of the split.
    pub limit: Option<usize>,
    /// Most tokens per answer.
    pub max_tokens: usize,
    /// Compute threads.
    pub threads: Option<usize>,
    /// Also pick the confidence threshold reaching this precision on the validation split.
    pub calibrate: Option<f64>,
    /// Also write the specialist's answers to this file, one JSON object per line.
    pub predictions: Option<PathBuf>,
    /// No notes on stderr.
    pub quiet: bool,
    /// Draw progress bars when stderr is a terminal.
    pub bar: bool,
}

impl EvalRequest {
    /// `downshift eval`'s defaults for the specialist in `adapter`.
    pub fn new(adapter: impl Into<PathBuf>) -> Self {
        EvalRequest {
            adapter: adapter.into(),
            data: None,
            base: None,
            no_base: false,
            base_calls: Some(DEFAULT_BASE_CALLS),
            split: Split::Test,
            limit: None,
            max_tokens: 256,
            threads: None,
            calibrate: None,
            predictions: None,
            quiet: true,
            bar: false,
        }
    }
}

/// How a calibrated threshold does on the test split.
#[derive(Clone, Debug, Serialize)]
pub struct OnTest {
    /// Share of the test answers it serves.
    pub coverage: f64,
    /// Share of those that are right (none when it serves none).
    pub precision: Option<f64>,
}

/// The confidence threshold picked on the validation split.
#[derive(Clone, Debug, Serialize)]
pub struct CalibrationReport {
    /// Always `validation`.
    pub split: &'static str,
    /// The precision asked for.
    pub target_precision: f64,
    /// Validation examples answered.
    pub examples: usize,
    /// The lowest mean token log-probability served (none: no threshold reaches the target).
    pub min_confidence: Option<f64>,
    /// Share of the validation split it serves.
    pub coverage: Option<f64>,
    /// Its precision there.
    pub precision: Option<f64>,
    /// How it does on the test split.
    pub test: Option<OnTest>,
}

/// A test answer that missed.
#[derive(Clone, Debug)]
pub struct Miss {
    /// The call it came from.
    pub id: String,
    /// The LLM's answer.
    pub expected: Value,
    /// The specialist's.
    pub got: Value,
}

/// An evaluation's result (`eval --json` prints it; `eval.json` beside the adapter keeps it).
#[derive(Clone, Debug, Serialize)]
pub struct EvalReport {
    /// The task, when the data is one's.
    pub task: Option<String>,
    /// The dataset scored.
    pub dataset: String,
    /// The adapter folder.
    pub adapter: PathBuf,
    /// The base model.
    pub base: String,
    /// How the answers are scored.
    pub kind: &'static str,
    /// Examples scored.
    pub examples: usize,
    /// The specialist's exact match.
    pub exact_match: Option<f64>,
    /// The base model's zero-shot exact match.
    pub base_exact_match: Option<f64>,
    /// Share of the specialist's answers valid against their schema.
    pub schema_valid: Option<f64>,
    /// The same for the base model.
    pub base_schema_valid: Option<f64>,
    /// The specialist's scores.
    pub specialist: Summary,
    /// The base model's scores (on `base_examples` of the scored calls).
    pub base_model: Option<Summary>,
    /// How many of the scored calls the base model answered (a sample when fewer than
    /// `examples`).
    pub base_examples: Option<usize>,
    /// Most tokens the base model could write per answer: twice the longest logged answer of
    /// the split plus a margin, at most `max_tokens` (a longer answer cannot match).
    pub base_max_tokens: Option<usize>,
    /// The confidence threshold, when asked for.
    pub calibration: Option<CalibrationReport>,
    /// Precision against share served by confidence threshold, on the test split (the web
    /// UI's calibration chart).
    pub calibration_curve: Vec<downshift_evaluate::CurvePoint>,
    /// The first three test answers that missed.
    #[serde(skip)]
    pub misses: Vec<Miss>,
}

impl EvalReport {
    /// The calibrated threshold's precision on the test split and how many test answers it
    /// served, when it serves any.
    pub fn test_precision(&self) -> Option<(f64, usize)> {
        let test = self.calibration.as_ref()?.test.as_ref()?;
        let served = (test.coverage * self.examples as f64).round() as usize;
        test.precision.zip(Some(served).filter(|n| *n > 0))
    }
}

/// One model's answers to a split.
pub struct Run {
    /// The answers' scores.
    pub report: Report,
    /// The answers, as assistant messages.
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

/// Runs `lm` on each record's prompt (greedy as `opts` says) and scores its answers as `kind`;
/// a progress bar when `bar` and stderr is a terminal.
pub fn run_model(
    lm: &LocalModel,
    tests: &[&ChatRecord],
    kind: TaskKind,
    opts: &GenerateOptions,
    prompt: &dyn Fn(&ChatRecord) -> Result<String>,
    bar: bool,
) -> Result<Run> {
    let mut report = Report::new();
    let mut answers = Vec::with_capacity(tests.len());
    let mut confidence = Vec::with_capacity(tests.len());
    let mut tokens = Vec::with_capacity(tests.len());
    let mut prompts = Vec::with_capacity(tests.len());
    let pb = crate::progress::bar_if(bar, tests.len() as u64, "generating");
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

/// Evaluates the specialist `req.adapter` names and keeps the result beside it (`eval.json`).
pub fn evaluate(req: &EvalRequest, data: &DataDir, curate: &CurateConfig) -> Result<EvalReport> {
    let spec = Specialist::open(&req.adapter)
        .with_context(|| format!("cannot read the specialist in {}", req.adapter.display()))?;
    let meta = spec.trained_meta()?.clone();
    if meta.format_version < SpecialistMeta::FORMAT_VERSION {
        bail!(
            "{} was written by an older downshift (specialist format {}) whose train / test split \
             is not this version's, so its test split may hold calls it trained on; retrain it",
            req.adapter.display(),
            meta.format_version
        );
    }
    // What the request names, else what the adapter was trained on (its task first).
    let source = match (&req.data, &meta.task, &meta.dataset) {
        (Some(s), _, _) => s.clone(),
        (None, Some(t), _) => DataSource::Task(t.clone()),
        (None, None, Some(d)) => DataSource::Dataset(d.clone()),
        (None, None, None) => bail!("give --task ID or --dataset NAME"),
    };
    let (dataset, recs) = source.load(data, curate, req.quiet)?;
    let split = SplitConfig::default();
    let which = req.split;
    let mut tests: Vec<&ChatRecord> = recs
        .iter()
        .filter(|r| split.split_of_record(r) == which)
        .collect();
    if let Some(n) = req.limit {
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
    if req.calibrate.is_some() && which != Split::Test {
        bail!(
            "--calibrate picks its threshold on the validation split; score the test split with it"
        );
    }
    let refs = recs.iter().map(|r| &r.answer);
    let kind = kind_of_many(refs).unwrap_or(TaskKind::Text);

    let base = req.base.clone().unwrap_or_else(|| meta.base_model.clone());
    let mut lm = load_model(&base, req.threads)?;
    let adapter_id = lm
        .attach_specialist(&spec)
        .with_context(|| format!("cannot load the adapter {}", req.adapter.display()))?;
    // The specialist's own recipe (its transform and template), as every path serving it.
    let recipe = lm
        .prompt_recipe(adapter_id)
        .cloned()
        .ok_or_else(|| anyhow!("{} has no prompt recipe", req.adapter.display()))?;
    let greedy = GenerateOptions {
        max_tokens: req.max_tokens,
        temperature: 0.0,
        ..Default::default()
    };
    let spec_opts = GenerateOptions {
        adapter: AdapterSel::One(adapter_id),
        ..greedy.clone()
    };
    if !req.quiet {
        eprintln!(
            "evaluating {} on {} held-out calls of '{dataset}' ({} answers)",
            req.adapter.display(),
            tests.len(),
            kind.as_str()
        );
    }
    let render =
        |r: &ChatRecord| -> Result<String> { Ok(recipe.render(&r.messages, r.tools.as_deref())?) };
    let spec = run_model(&lm, &tests, kind, &spec_opts, &render, req.bar)?;
    if let Some(p) = &req.predictions {
        write_predictions(p, &tests, &spec)?;
    }
    // The base answers zero-shot, with the full prompt (tool schemas included), on an even
    // sample of the scored calls, never writing longer than a matching answer could be.
    let base_run = if req.no_base {
        None
    } else {
        let sample = even_sample(&tests, req.base_calls);
        let opts = GenerateOptions {
            max_tokens: base_token_cap(&lm, &tests, req.max_tokens),
            ..greedy.clone()
        };
        if !req.quiet {
            eprintln!(
                "base model {base}: answering {} of the {} calls zero-shot (full prompts, at most \
                 {} tokens each)",
                sample.len(),
                tests.len(),
                opts.max_tokens
            );
        }
        let zero_shot = |r: &ChatRecord| -> Result<String> { zero_shot_prompt(&lm, r) };
        let run = run_model(&lm, &sample, kind, &opts, &zero_shot, req.bar)?;
        Some((run, sample.len(), opts.max_tokens))
    };
    // The confidence threshold, chosen on the validation split (never on the test split).
    let calibration = match req.calibrate {
        None => None,
        Some(p) if !(0.0..=1.0).contains(&p) => {
            bail!("--calibrate takes a precision between 0 and 1, got {p}")
        }
        Some(p) => {
            let mut vals: Vec<&ChatRecord> = recs
                .iter()
                .filter(|r| split.split_of_record(r) == Split::Validation)
                .collect();
            if let Some(n) = req.limit {
                vals.truncate(n);
            }
            let run = run_model(&lm, &vals, kind, &spec_opts, &render, req.bar)?;
            let c = downshift_evaluate::calibrate(&run.confidence, p, MIN_SERVED);
            // How the threshold does on the test split.
            let test = c.map(|c| {
                let served: Vec<bool> = spec
                    .confidence
                    .iter()
                    .filter(|(m, _)| *m >= c.min_confidence)
                    .map(|(_, ok)| *ok)
                    .collect();
                OnTest {
                    coverage: served.len() as f64 / spec.confidence.len().max(1) as f64,
                    precision: (!served.is_empty()).then(|| {
                        served.iter().filter(|ok| **ok).count() as f64 / served.len() as f64
                    }),
                }
            });
            Some(CalibrationReport {
                split: "validation",
                target_precision: p,
                examples: vals.len(),
                min_confidence: c.map(|c| c.min_confidence),
                coverage: c.map(|c| c.coverage),
                precision: c.map(|c| c.precision),
                test,
            })
        }
    };
    let s = spec.report.summary();
    let b = base_run.as_ref().map(|(r, _, _)| r.report.summary());
    let misses = tests
        .iter()
        .zip(&spec.answers)
        .filter(|(r, p)| !score(p, &r.answer, r.tools.as_deref(), kind).exact)
        .take(3)
        .map(|(r, p)| Miss {
            id: r.id.clone(),
            expected: r.answer.clone(),
            got: p.clone(),
        })
        .collect();
    let report = EvalReport {
        task: meta.task.clone().or(source.task().map(str::to_owned)),
        dataset,
        adapter: req.adapter.clone(),
        base,
        kind: kind.as_str(),
        examples: tests.len(),
        exact_match: s.exact_match,
        base_exact_match: b.as_ref().and_then(|b| b.exact_match),
        schema_valid: s.schema_valid,
        base_schema_valid: b.as_ref().and_then(|b| b.schema_valid),
        specialist: s,
        base_model: b,
        base_examples: base_run.as_ref().map(|(_, n, _)| *n),
        base_max_tokens: base_run.as_ref().map(|(_, _, t)| *t),
        calibration,
        calibration_curve: downshift_evaluate::calibration_curve(&spec.confidence),
        misses,
    };
    write_result(&req.adapter, &json!(report))?;
    Ok(report)
}

/// At most `n` of `calls`, spread evenly over them (all of them when `n` is none or covers them).
fn even_sample<T: Copy>(calls: &[T], n: Option<usize>) -> Vec<T> {
    match n {
        Some(n) if n < calls.len() => (0..n).map(|i| calls[i * calls.len() / n]).collect(),
        _ => calls.to_vec(),
    }
}

/// The most tokens the base model may write per answer: twice the longest logged answer of
/// `calls` (in the model's tokens, as JSON) plus 32, at most `max_tokens`. An answer that
/// long cannot match the logged one any more, and a base model that does not know the
/// format writes until the limit.
fn base_token_cap(lm: &LocalModel, calls: &[&ChatRecord], max_tokens: usize) -> usize {
    let longest = calls
        .iter()
        .map(|r| lm.tokenize(&r.answer.to_string()).len())
        .max()
        .unwrap_or(0);
    (2 * longest + 32).min(max_tokens)
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

#[cfg(test)]
mod tests {
    use super::even_sample;

    #[test]
    fn the_base_sample_spreads_over_the_split() {
        let calls: Vec<u32> = (0..10).collect();
        assert_eq!(even_sample(&calls, Some(4)), vec![0, 2, 5, 7]);
        assert_eq!(even_sample(&calls, Some(1)), vec![0]);
        assert_eq!(even_sample(&calls, Some(10)), calls);
        assert_eq!(even_sample(&calls, Some(50)), calls);
        assert_eq!(even_sample(&calls, None), calls);
        assert!(even_sample::<u32>(&[], Some(3)).is_empty());
    }
}
