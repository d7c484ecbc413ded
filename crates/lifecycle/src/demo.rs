//! `downshift demo`: the whole LLM-to-SLM conversion on the embedded default, end to end, on
//! loopback. The mock teacher LLM answers recorded traffic (by default the demo's deployment
//! mix, `data/demo/traffic.jsonl`, built by `scripts/fetch.sh demo`); the gateway captures
//! the training part; the calls are discovered into tasks; for the most suitable tasks a small
//! model is selected, fine-tuned and evaluated; the ones that pass the gate are promoted; then
//! the held-out part is replayed through the gateway and every answer is scored against the
//! LLM's own.
//!
//! Every stage runs through the same library call its command makes (the mock teacher and the
//! gateway in this process, on loopback ports the OS picks; the traffic goes over HTTP), so the
//! demo exercises what a user runs.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use downshift_curate::{CurateConfig, SurrogateMode};
use downshift_discover::DiscoverConfig;
use downshift_evaluate::{TaskKind, kind_of, kind_of_many, quality, score};
use downshift_gateway::{PriceTable, RouteConfig};
use downshift_route::Mode;
use downshift_store::{CallFilter, DataDir, StoreConfig, TaskRecord, TaskStats};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cycle::gate;
use crate::http::{Answer, header, post};
use crate::servers::{GatewayConfig, start_gateway, start_mock};
use crate::stages::{Stages, TrainPlan, Trained};
use crate::train::FrozenLayers;

/// How the demo runs (`downshift demo`'s options; [`DemoOptions::default`] gives its
/// defaults).
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// A short run: the most learnable task, one short fine-tune.
    pub quick: bool,
    /// The traffic (none: [`DEFAULT_TRAFFIC`]).
    pub traffic: Option<PathBuf>,
    /// Keep only the records tagged with one of these values (comma-separated; `all`).
    pub categories: String,
    /// The small base model (none: the packaged SmolLM2-135M-Instruct).
    pub base: Option<String>,
    /// How many tasks get a specialist (none: every suitable one; 1 with `quick`).
    pub tasks: Option<usize>,
    /// One specialist for all the tasks.
    pub shared: bool,
    /// Passes over each task's training split (none: 3; 2 with `quick`; 1 with `shared`).
    pub epochs: Option<usize>,
    /// Cap on optimizer updates per task (none: [`DEFAULT_MAX_STEPS`]; 150 with `quick`; no
    /// cap with `shared`).
    pub max_steps: Option<usize>,
    /// Peak learning rate.
    pub lr: f64,
    /// Specialists read only the last N user turns (0: all of it), more for a task whose
    /// answers copy values from earlier turns.
    pub keep_turns: usize,
    /// Layers of the base left without adapters.
    pub frozen_layers: FrozenLayers,
    /// Specialists see the names of the offered tools.
    pub tool_names: bool,
    /// Share of the traffic held out.
    pub holdout: f64,
    /// Exact match on the test split that promotes a specialist to `on`.
    pub gate: f64,
    /// Precision the confidence threshold is calibrated for.
    pub precision: f64,
    /// Least share of the validation split a thresholded specialist must serve.
    pub min_coverage: f64,
    /// Working folder (data, adapters); emptied first. None: [`DemoOptions::work_folder`].
    pub work: Option<PathBuf>,
    /// Compute threads for each training and evaluation (none: the cores divided among the
    /// jobs).
    pub threads: Option<usize>,
    /// Specialists trained and evaluated at the same time (none: one per core, at most one
    /// per task).
    pub jobs: Option<usize>,
    /// No `==>` notes on stderr.
    pub quiet: bool,
}

impl DemoOptions {
    /// The folder the run empties and works in: `work`, else `.downshift-demo`, or
    /// `.downshift-demo/quick` for a quick run, so that a quick run never empties a full
    /// run's folder.
    pub fn work_folder(&self) -> PathBuf {
        self.work.clone().unwrap_or_else(|| {
            PathBuf::from(if self.quick {
                ".downshift-demo/quick"
            } else {
                ".downshift-demo"
            })
        })
    }
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            quick: false,
            traffic: None,
            categories: "all".into(),
            base: None,
            tasks: None,
            shared: false,
            epochs: None,
            max_steps: None,
            lr: 1e-3,
            keep_turns: 1,
            frozen_layers: FrozenLayers::default(),
            tool_names: false,
            holdout: 0.2,
            gate: 0.8,
            precision: 0.95,
            min_coverage: 0.2,
            work: None,
            threads: None,
            jobs: None,
            quiet: false,
        }
    }
}

/// Assumptions behind the cost and latency estimate (`[prices]` in the config).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Prices {
    /// The LLM's price per million input tokens, USD.
    pub llm_input_usd_per_mtok: f64,
    /// The LLM's price per million output tokens, USD.
    pub llm_output_usd_per_mtok: f64,
    /// What serving a specialist costs per million tokens (input and output), USD.
    pub specialist_usd_per_mtok: f64,
    /// The LLM's latency to the first token, ms.
    pub llm_first_token_ms: f64,
    /// The LLM's time per output token, ms.
    pub llm_ms_per_output_token: f64,
}

impl Default for Prices {
    fn default() -> Self {
        // gpt-4o list prices; a small self-hosted model at a few cents per million tokens.
        Prices {
            llm_input_usd_per_mtok: 2.5,
            llm_output_usd_per_mtok: 10.0,
            specialist_usd_per_mtok: 0.05,
            llm_first_token_ms: 450.0,
            llm_ms_per_output_token: 12.0,
        }
    }
}

/// The first held-out call a specialist answered.
#[derive(Clone, Debug, Serialize)]
pub struct FirstServed {
    /// Its `x-downshift-route` header.
    pub route: String,
    /// The answer (tool calls as `name(arguments)`), at most 120 characters.
    pub answer: String,
}

/// The shared specialist (`shared`).
#[derive(Clone, Debug, Serialize)]
pub struct SharedSpecialist {
    /// Its adapter folder.
    pub adapter: PathBuf,
    /// Seconds its training took.
    pub train_seconds: f64,
}

/// The LLM-only figure beside the one with specialists.
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// Every call answered by the LLM.
    pub llm_only: f64,
    /// Calls routed as promoted.
    pub with_specialists: f64,
}

/// The estimated cost, USD.
#[derive(Clone, Debug, Serialize)]
pub struct Cost {
    /// Every call answered by the LLM.
    pub llm_only: f64,
    /// Calls routed as promoted.
    pub with_specialists: f64,
    /// Share of the LLM-only cost saved.
    pub saving: f64,
}

/// Wall time of each part, seconds.
#[derive(Clone, Debug, Serialize)]
pub struct Seconds {
    /// Replaying the training part through the gateway.
    pub replay: f64,
    /// Discovery.
    pub discover: f64,
    /// Training and evaluating the specialists.
    pub train_and_eval: f64,
    /// Replaying the held-out part.
    pub heldout: f64,
    /// The whole run.
    pub total: f64,
}

/// The demo's result (`demo --json` prints it; `result.json` in the work folder keeps it).
#[derive(Clone, Debug, Serialize)]
pub struct DemoReport {
    /// Calls held out.
    pub heldout_calls: usize,
    /// Share of them a specialist answered.
    pub served_by_specialists: f64,
    /// Mean quality of the held-out answers, each by its task's metric (LLM-only: 1).
    pub quality_vs_llm: f64,
    /// Share of held-out answers identical to the LLM's.
    pub exact_match: f64,
    /// The LLM-only baseline's exact match (1).
    pub llm_only_exact_match: f64,
    /// Per task given a specialist.
    pub tasks: Vec<TaskResult>,
    /// Per agent.
    pub agents: Vec<AgentResult>,
    /// The first held-out call a specialist answered.
    pub first_served: Option<FirstServed>,
    /// Records of the traffic kept.
    pub traffic_calls: usize,
    /// Of those, replayed before discovery.
    pub replayed_calls: usize,
    /// Tasks discovery found.
    pub tasks_discovered: usize,
    /// The shared specialist (`shared`).
    pub shared_specialist: Option<SharedSpecialist>,
    /// The base model's path.
    pub base: String,
    /// Estimated cost.
    pub cost_usd: Cost,
    /// Estimated mean latency, ms.
    pub latency_ms_mean: Comparison,
    /// Wall times.
    pub seconds: Seconds,
    /// Whether it was a `quick` run.
    pub quick: bool,
    /// The work folder.
    pub work: PathBuf,
}

/// One agent's held-out calls.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AgentResult {
    /// The agent (its `metadata.agent` tag, else `metadata.source`, else `-`).
    pub agent: String,
    /// Its held-out calls.
    pub heldout_calls: usize,
    /// Of those, the ones a specialist answered.
    pub served: usize,
    /// `served` as a share.
    pub share_served: f64,
    /// Mean quality of its held-out answers, each by its task's metric (LLM-only: 1).
    pub quality_vs_llm: f64,
    /// Share of the LLM cost saved.
    pub cost_saving: f64,
    #[serde(skip)]
    quality_sum: f64,
    #[serde(skip)]
    llm_cost: f64,
    #[serde(skip)]
    routed_cost: f64,
}

/// One task's specialist and its held-out calls.
#[derive(Clone, Debug, Default, Serialize)]
pub struct TaskResult {
    /// The task.
    pub task: String,
    /// Its label.
    pub label: String,
    /// How its answers are scored: `tool call exact`, `label exact` or `JSON fields`.
    pub metric: String,
    /// Its held-out calls.
    pub heldout_calls: usize,
    /// How it is routed: `on`, `shadow` or `off`.
    pub mode: String,
    /// On the task's own test split (`eval`).
    pub eval_exact_match: Option<f64>,
    /// Held-out calls the specialist answered.
    pub served: usize,
    /// Of those, answers identical to the LLM's (tool name + arguments).
    pub served_exact: usize,
    /// Mean quality of the served answers by the task's metric (JSON: field accuracy).
    pub served_quality: Option<f64>,
    /// Mean quality of all its held-out answers, the LLM's included.
    pub quality: Option<f64>,
    #[serde(skip)]
    served_quality_sum: f64,
    #[serde(skip)]
    quality_sum: f64,
    /// Served answers the gateway replaced with the LLM's.
    pub fallbacks: usize,
    /// Seconds its training took (none with a shared specialist).
    pub train_seconds: Option<f64>,
    /// Median latency of the answers its specialist served.
    pub specialist_p50_ms: Option<f64>,
    /// The confidence threshold it serves above (none: it serves every answer that validates).
    pub min_confidence: Option<f64>,
}

/// A deterministic share of the traffic, by the request's content.
fn held_out(record: &Value, share: f64) -> bool {
    let key = record["request"].to_string();
    let h = downshift_route::stable_hash(&key);
    (h % 10_000) as f64 / 10_000.0 < share
}

/// Tokens of a text, estimated as four characters per token (BFCL records carry no usage).
fn est_tokens(v: &Value) -> f64 {
    v.to_string().len() as f64 / 4.0
}

/// Updates per task in the full demo unless `--max-steps` says otherwise: three epochs of a
/// task of up to ~270 training calls. A larger task (hundreds of τ² airline lookups) stops
/// here: its training loss is flat long before, and the 30-minute budget on 2 cores cannot
/// pay for three passes over it.
pub const DEFAULT_MAX_STEPS: usize = 200;

/// The demo's traffic when no --traffic is given (`scripts/fetch.sh demo` builds it).
pub const DEFAULT_TRAFFIC: &str = "data/demo/traffic.jsonl";

/// Whether a record carries one of `cats` among its metadata's string values (`all`: every
/// record does).
fn tagged(record: &Value, cats: &[&str]) -> bool {
    cats.contains(&"all")
        || record["metadata"].as_object().is_some_and(|m| {
            m.values()
                .any(|v| v.as_str().is_some_and(|s| cats.contains(&s)))
        })
}

/// Which agent sent a recorded call, for the per-agent figures: its `metadata.agent` tag, else
/// its `metadata.source`, else `-` (tags are never read by discovery or routing).
fn agent_of(record: &Value) -> String {
    let m = &record["metadata"];
    m["agent"]
        .as_str()
        .or(m["source"].as_str())
        .unwrap_or("-")
        .to_owned()
}

/// The metric a task's answers are scored by.
fn metric_name(kind: TaskKind) -> &'static str {
    match kind {
        TaskKind::ToolCall => "tool call exact",
        TaskKind::Json => "JSON fields",
        TaskKind::Label => "label exact",
        TaskKind::Text => "text",
    }
}

/// A discovered task as the demo ranks it.
struct Candidate {
    task: TaskRecord,
    stats: TaskStats,
    kind: TaskKind,
}

/// The kind of a task's answers, read from (up to 200 of) its logged calls: discovery tells
/// tool calls and JSON from text, and this tells short labels from free text.
fn answers_kind(data: &DataDir, task: &str) -> Result<Option<TaskKind>> {
    let store = data.open_store()?;
    let (keyring, _) = data.keyring(false)?;
    let filter = CallFilter {
        task: Some(task.to_owned()),
        limit: Some(200),
        ..Default::default()
    };
    let mut answers = Vec::new();
    for sealed in store.scan_calls(&filter)? {
        let payload = keyring.open(&sealed)?;
        let r: Value = serde_json::from_slice(&payload.response).unwrap_or(Value::Null);
        answers.push(r["choices"][0]["message"].clone());
    }
    Ok(kind_of_many(&answers))
}

/// The demo's own settings for the stages: one task per tool family (no semantic split), each
/// holding whole agents' requests; personal data in the training sets as realistic
/// surrogates, not <PERSON_1> (a specialist that copies a name or an e-mail into its answer
/// learns to copy, and does the same with the real values it is served); policies reloaded
/// every 300 ms.
fn demo_settings() -> (DiscoverConfig, CurateConfig, RouteConfig) {
    let discover = DiscoverConfig {
        min_split_share: 1.0,
        align_to_requests: true,
        ..Default::default()
    };
    let mut curate = CurateConfig::default();
    curate.pii.surrogate = SurrogateMode::Surrogate;
    let route = RouteConfig {
        reload_ms: 300,
        ..Default::default()
    };
    (discover, curate, route)
}

/// The prices the gateway counts spend in: discovery's per-model prices, then `prices` for
/// every other model.
fn price_table(discover: &DiscoverConfig, prices: &Prices) -> PriceTable {
    let mut entries: Vec<(String, f64, f64)> = discover
        .prices
        .iter()
        .map(|(m, p)| (m.clone(), p.prompt, p.completion))
        .collect();
    if !discover.prices.contains_key("*") {
        entries.push((
            "*".into(),
            prices.llm_input_usd_per_mtok,
            prices.llm_output_usd_per_mtok,
        ));
    }
    PriceTable::new(entries)
}

/// How the demo trains one specialist: its options, into `out`, on the task's data or on
/// `dataset`. No thread count: the jobs share the compute pool the demo sized.
fn train_plan<'a>(
    o: &DemoOptions,
    base: &'a str,
    out: &'a Path,
    epochs: usize,
    max_steps: Option<usize>,
    dataset: Option<&'a str>,
) -> TrainPlan<'a> {
    TrainPlan {
        base,
        out,
        epochs,
        lr: o.lr,
        max_steps,
        threads: None,
        dataset,
        precision: o.precision,
        keep_turns: (o.keep_turns > 0).then_some(o.keep_turns),
        // per task: more turns where its answers copy values from earlier ones
        widen_turns: true,
        frozen_layers: o.frozen_layers,
        tool_names: o.tool_names,
    }
}

/// Posts `request` to the gateway's chat completions; an error unless it answers 200.
fn chat(addr: &std::net::SocketAddr, request: &Value) -> Result<Answer> {
    let answer = post(addr, "/v1/chat/completions", request.to_string().as_bytes())?;
    if answer.0 != 200 {
        bail!(
            "the gateway answered {}: {}",
            answer.0,
            String::from_utf8_lossy(&answer.2)
        );
    }
    Ok(answer)
}

/// Runs the demo as `o` says, with `prices` for the estimate; writes `result.json` in the work
/// folder and returns the same report.
pub fn run(o: &DemoOptions, prices: &Prices) -> Result<DemoReport> {
    let t_start = Instant::now();
    let quick = o.quick;
    let n_tasks = o.tasks.unwrap_or(if quick { 1 } else { usize::MAX });
    let epochs = o.epochs.unwrap_or(match (quick, o.shared) {
        (true, _) => 2,
        (false, true) => 1,
        (false, false) => 3,
    });
    let max_steps = o.max_steps.or(match (quick, o.shared) {
        (true, _) => Some(150),
        (false, false) => Some(DEFAULT_MAX_STEPS),
        (false, true) => None,
    });
    let traffic = o
        .traffic
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_TRAFFIC));
    if !(0.0..1.0).contains(&o.holdout) || o.holdout == 0.0 {
        bail!("--holdout must be between 0 and 1, got {}", o.holdout);
    }

    // The traffic, split into the part the gateway sees first and the held-out part.
    let text = std::fs::read_to_string(&traffic).with_context(|| {
        if o.traffic.is_none() {
            format!(
                "cannot read the traffic {}: build the demo's traffic first with `scripts/fetch.sh demo` \
                 (or pass --traffic FILE, e.g. data/bfcl/agent.jsonl after `scripts/fetch.sh bfcl`)",
                traffic.display()
            )
        } else {
            format!("cannot read the traffic {}", traffic.display())
        }
    })?;
    let cats: Vec<&str> = o.categories.split(',').map(str::trim).collect();
    let records: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str::<Value>)
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("{} is not JSON Lines", traffic.display()))?;
    let records: Vec<Value> = records
        .into_iter()
        .filter(|r| tagged(r, &cats))
        .filter(|r| r["request"].is_object() && r["response"].is_object())
        .collect();
    if records.len() < 50 {
        bail!(
            "only {} calls tagged {} in {} (the demo needs at least 50)",
            records.len(),
            o.categories,
            traffic.display()
        );
    }
    let base = o.base.clone().unwrap_or_else(|| {
        "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf".to_string()
    });
    let base = crate::model::resolve_model(&base).with_context(|| {
        format!("the base model {base} is missing (run scripts/fetch.sh smollm2)")
    })?;
    let base = std::fs::canonicalize(&base)?.display().to_string();
    let (heldout, training): (Vec<&Value>, Vec<&Value>) =
        records.iter().partition(|r| held_out(r, o.holdout));

    let work = &o.work_folder();
    if work.exists() {
        std::fs::remove_dir_all(work)
            .with_context(|| format!("cannot empty {}", work.display()))?;
    }
    std::fs::create_dir_all(work)?;
    let work = std::fs::canonicalize(work)?;
    let replay = work.join("traffic.jsonl");
    let mut f = std::fs::File::create(&replay)?;
    for r in &records {
        writeln!(f, "{r}")?;
    }
    drop(f);
    let data = DataDir::new(&work.join("data"), &StoreConfig::default());
    let (discover_cfg, curate_cfg, route_cfg) = demo_settings();
    let stages = Stages {
        data: &data,
        curate: &curate_cfg,
        discover: &discover_cfg,
        actor: "demo",
        quiet: o.quiet,
    };

    stages.say(&format!(
        "traffic: {} calls ({}), {} replayed first, {} held out",
        records.len(),
        o.categories,
        training.len(),
        heldout.len()
    ));
    stages.say("starting the mock teacher LLM and the gateway in front of it");
    let teacher = start_mock(&replay)?;
    let gw = start_gateway(
        &data,
        GatewayConfig {
            route: route_cfg,
            prices: price_table(&discover_cfg, prices),
            ..GatewayConfig::open_to(teacher.addr)
        },
    )?;

    stages.say(&format!(
        "replaying {} calls through the gateway",
        training.len()
    ));
    let t0 = Instant::now();
    for r in &training {
        chat(&gw.addr, &r["request"])?;
    }
    let replay_s = t0.elapsed().as_secs_f64();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = data.open_store()?.count_calls()?;
        if n as usize >= training.len() {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {n} of {} calls reached the log", training.len());
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    stages.say("discovering the recurring tasks");
    let t0 = Instant::now();
    stages.discover()?;
    let discover_s = t0.elapsed().as_secs_f64();
    let tasks = data.open_store()?.list_tasks()?;
    let tasks_discovered = tasks.len();
    // The tasks with enough calls to train, evaluate and test on, whose answers a metric can
    // score: tool calls, JSON, or short labels (free text stays on the LLM).
    let mut candidates: Vec<Candidate> = Vec::new();
    for t in tasks.into_iter().filter(|t| t.calls >= 40) {
        let stats = t.task_stats();
        let kind = match stats.output_kind {
            Some(TaskKind::Text) => answers_kind(&data, &t.id)?.filter(|k| *k == TaskKind::Label),
            k => k,
        };
        if let Some(kind) = kind {
            candidates.push(Candidate {
                task: t,
                stats,
                kind,
            });
        }
    }
    if quick {
        // The most learnable: consistent answers first, then the shortest, then the largest.
        candidates.sort_by_key(|c| {
            (
                c.stats.output_consistency < 0.9,
                c.stats.completion_tokens.p95,
                std::cmp::Reverse(c.task.calls),
            )
        });
    } else {
        // By calls times discovery's suitability.
        let weight = |c: &Candidate| c.task.calls as f64 * c.stats.suitability;
        candidates.sort_by(|x, y| weight(y).total_cmp(&weight(x)));
    }
    candidates.truncate(n_tasks);
    if candidates.is_empty() {
        bail!(
            "discovery found no task with at least 40 calls whose answers are tool calls, JSON or short labels"
        );
    }
    stages.say(&format!(
        "{} tasks found; specialists for {}",
        tasks_discovered,
        candidates
            .iter()
            .map(|c| format!("{} ({})", c.task.label, metric_name(c.kind)))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let mut results: BTreeMap<String, TaskResult> = BTreeMap::new();
    let t_train = Instant::now();
    let base_name = Path::new(&base)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // Train (or, with --shared, evaluate) the candidates' specialists, --jobs at a time.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = o.jobs.unwrap_or(cores).clamp(1, candidates.len());
    let threads = o.threads.or((jobs > 1).then(|| (cores / jobs).max(1)));
    // The jobs share this process's compute pool: size it for all of them at once (it is
    // sized once, before the first model runs), and let each job leave the count alone.
    downshift_slm::threads::set_num_threads(threads.map_or(cores, |t| t * jobs));
    // --shared: one adapter on everything the gateway logged so far.
    let shared = if o.shared {
        crate::dataset::curate_calls(&data, &curate_cfg, "demo-traffic", CallFilter::default())?;
        let out = work.join("adapters").join("shared");
        stages.say(&format!(
            "training one specialist ({base_name}) on all {} replayed calls",
            training.len()
        ));
        let plan = train_plan(o, &base, &out, epochs, max_steps, Some("demo-traffic"));
        let secs = stages.train(None, &plan)?;
        stages.say(&format!("trained in {secs:.0} s"));
        Some((out, secs))
    } else {
        None
    };
    if jobs > 1 {
        stages.say(&format!(
            "{jobs} specialists at a time, {} thread(s) each",
            threads.unwrap_or(cores)
        ));
    }
    let specialize = |c: &Candidate| -> (PathBuf, Result<Trained>) {
        let id = c.task.id.as_str();
        match &shared {
            Some((out, _)) => (out.clone(), stages.evaluate(id, out, o.precision, None)),
            None => {
                let out = work.join("adapters").join(id);
                let trained = (|| {
                    let sel = stages.select(id)?;
                    stages.say(&format!(
                        "{id}: select recommends {} ({} calls); training {base_name} on it",
                        sel.recommended.as_deref().unwrap_or("-"),
                        c.task.calls,
                    ));
                    stages.specialize(id, &train_plan(o, &base, &out, epochs, max_steps, None))
                })();
                (out, trained)
            }
        }
    };
    // Each task's dataset is curated first, one at a time: training curates it when missing,
    // and two curations writing the database at once would wait on its lock.
    if shared.is_none() {
        for c in &candidates {
            let id = &c.task.id;
            stages.curate_task(id, &format!("task-{id}"))?;
        }
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(c) = candidates.get(i) else {
                        break;
                    };
                    let r = specialize(c);
                    done.lock().unwrap_or_else(|e| e.into_inner()).insert(i, r);
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    for (i, c) in candidates.iter().enumerate() {
        let id = c.task.id.clone();
        let mut res = TaskResult {
            task: id.clone(),
            label: c.task.label.clone(),
            metric: metric_name(c.kind).into(),
            mode: "off".into(),
            ..Default::default()
        };
        let (out, trained) = done
            .remove(&i)
            .context("a specialist job ended without a result")?;
        let trained = match trained {
            Ok(t) => t,
            Err(e) => {
                stages.say(&format!(
                    "{id}: training or evaluation failed, the LLM keeps the task: {e}"
                ));
                results.insert(id, res);
                continue;
            }
        };
        res.train_seconds = shared.is_none().then_some(trained.train_seconds);
        res.eval_exact_match = trained.exact_match;
        let verdict = gate(&trained, o.gate, o.min_coverage, o.precision);
        let mode = if verdict.is_some() {
            Mode::On
        } else {
            Mode::Shadow
        };
        res.min_confidence = verdict.as_ref().and_then(|v| v.0);
        stages.promote(&id, mode, &out, res.min_confidence)?;
        res.mode = mode.to_string();
        stages.say(&format!(
            "{id}: {}exact match {} on its test split → {mode}{}",
            res.train_seconds
                .map_or(String::new(), |s| format!("trained in {s:.0} s; ")),
            res.eval_exact_match
                .map_or("-".into(), |x| format!("{:.1}%", x * 100.0)),
            verdict.map(|v| format!(" ({})", v.1)).unwrap_or_default()
        ));
        results.insert(id, res);
    }
    let train_s = t_train.elapsed().as_secs_f64();
    // The gateway reloads policies every 300 ms and loads the promoted specialists.
    std::thread::sleep(Duration::from_millis(1500));

    stages.say(&format!(
        "replaying the {} held-out calls through the gateway",
        heldout.len()
    ));
    let p = prices;
    let t0 = Instant::now();
    let (mut served, mut exact, mut qual, mut llm_cost, mut routed_cost, mut llm_ms, mut routed_ms) =
        (0usize, 0usize, 0.0, 0.0, 0.0, 0.0, 0.0);
    let mut spec_lat: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut agents: BTreeMap<String, AgentResult> = BTreeMap::new();
    // The first call a specialist served: its route header and answer, shown at the end.
    let mut first_served: Option<FirstServed> = None;
    for r in &heldout {
        let reference = &r["response"]["choices"][0]["message"];
        let t_req = Instant::now();
        let (_, headers, body) = chat(&gw.addr, &r["request"])?;
        let ms = t_req.elapsed().as_secs_f64() * 1e3;
        let answer: Value = serde_json::from_slice(&body)?;
        let message = &answer["choices"][0]["message"];
        // Each answer by its own metric, decided from the shape of the LLM's answer.
        let kind = kind_of(reference);
        let tools = r["request"]["tools"].as_array().map(Vec::as_slice);
        let sc = score(message, reference, tools, kind);
        let (ok, q) = (sc.exact, quality(&sc, kind));
        let route = header(&headers, "x-downshift-route").unwrap_or("");
        let task = header(&headers, "x-downshift-task").map(str::to_owned);
        let tin = est_tokens(&r["request"]["messages"]) + est_tokens(&r["request"]["tools"]);
        let tout = est_tokens(reference);
        let llm_call_cost =
            (tin * p.llm_input_usd_per_mtok + tout * p.llm_output_usd_per_mtok) / 1e6;
        let llm_call_ms = p.llm_first_token_ms + tout * p.llm_ms_per_output_token;
        llm_cost += llm_call_cost;
        llm_ms += llm_call_ms;
        let by_specialist = route.starts_with("specialist:");
        let call_cost = if by_specialist {
            (tin + tout) * p.specialist_usd_per_mtok / 1e6
        } else {
            llm_call_cost
        };
        routed_cost += call_cost;
        if by_specialist {
            served += 1;
            routed_ms += ms;
            if first_served.is_none() {
                first_served = Some(FirstServed {
                    route: route.to_owned(),
                    answer: said(message).chars().take(120).collect(),
                });
            }
        } else {
            routed_ms += llm_call_ms;
        }
        exact += usize::from(ok);
        qual += q;
        let ag = agents.entry(agent_of(r)).or_default();
        ag.heldout_calls += 1;
        ag.served += usize::from(by_specialist);
        ag.quality_sum += q;
        ag.llm_cost += llm_call_cost;
        ag.routed_cost += call_cost;
        if let Some((t, res)) = task.and_then(|t| results.get_mut(&t).map(|res| (t, res))) {
            res.heldout_calls += 1;
            res.quality_sum += q;
            if by_specialist {
                res.served += 1;
                res.served_exact += usize::from(ok);
                res.served_quality_sum += q;
                spec_lat.entry(t).or_default().push(ms);
            }
            if header(&headers, "x-downshift-fallback").is_some() {
                res.fallbacks += 1;
            }
        }
    }
    let heldout_s = t0.elapsed().as_secs_f64();
    for (t, mut v) in spec_lat {
        v.sort_by(f64::total_cmp);
        if let Some(res) = results.get_mut(&t) {
            res.specialist_p50_ms = v.get(v.len() / 2).copied();
        }
    }
    drop(gw);
    drop(teacher);

    let n = heldout.len().max(1) as f64;
    // The LLM-only baseline answers every held-out call with the LLM's own answer: quality 1
    // by every metric.
    let llm_only_exact = 1.0;
    for r in results.values_mut() {
        r.quality = (r.heldout_calls > 0).then(|| r.quality_sum / r.heldout_calls as f64);
        r.served_quality = (r.served > 0).then(|| r.served_quality_sum / r.served as f64);
    }
    for (name, a) in agents.iter_mut() {
        a.agent = name.clone();
        a.share_served = a.served as f64 / a.heldout_calls.max(1) as f64;
        a.quality_vs_llm = a.quality_sum / a.heldout_calls.max(1) as f64;
        a.cost_saving = if a.llm_cost > 0.0 {
            1.0 - a.routed_cost / a.llm_cost
        } else {
            0.0
        };
    }
    let report = DemoReport {
        heldout_calls: heldout.len(),
        served_by_specialists: served as f64 / n,
        quality_vs_llm: qual / n / llm_only_exact,
        exact_match: exact as f64 / n,
        llm_only_exact_match: llm_only_exact,
        tasks: results.into_values().collect(),
        agents: agents.into_values().collect(),
        first_served,
        traffic_calls: records.len(),
        replayed_calls: training.len(),
        tasks_discovered,
        shared_specialist: shared.map(|(adapter, train_seconds)| SharedSpecialist {
            adapter,
            train_seconds,
        }),
        base,
        cost_usd: Cost {
            llm_only: llm_cost,
            with_specialists: routed_cost,
            saving: if llm_cost > 0.0 {
                1.0 - routed_cost / llm_cost
            } else {
                0.0
            },
        },
        latency_ms_mean: Comparison {
            llm_only: llm_ms / n,
            with_specialists: routed_ms / n,
        },
        seconds: Seconds {
            replay: replay_s,
            discover: discover_s,
            train_and_eval: train_s,
            heldout: heldout_s,
            total: t_start.elapsed().as_secs_f64(),
        },
        quick,
        work: work.clone(),
    };
    std::fs::write(
        work.join("result.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    Ok(report)
}

/// What an answer said: its tool calls as `name(arguments)`, else its text.
fn said(message: &Value) -> String {
    match message["tool_calls"].as_array() {
        Some(calls) => calls
            .iter()
            .map(|c| {
                format!(
                    "{}({})",
                    c["function"]["name"].as_str().unwrap_or("?"),
                    c["function"]["arguments"].as_str().unwrap_or("")
                )
            })
            .collect::<Vec<_>>()
            .join(", "),
        None => message["content"].as_str().unwrap_or_default().to_owned(),
    }
}
