//! `downshift demo`: the whole LLM-to-SLM conversion on the embedded default, end to end, on
//! loopback. The mock teacher LLM answers recorded traffic (by default the demo's deployment
//! mix, `data/demo/traffic.jsonl`, built by `scripts/fetch.sh demo`); the gateway captures
//! the training part; the calls are discovered into tasks; for the most suitable tasks a small
//! model is selected, fine-tuned and evaluated; the ones that pass the gate are promoted; then
//! the held-out part is replayed through the gateway and every answer is scored against the
//! LLM's own.
//!
//! Every stage runs as the real command (`serve`, `mock-llm`, `discover`, `select`, `train`,
//! `eval`, `promote`) of this same binary, so the demo exercises exactly what a user runs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use downshift_evaluate::{OutputKind, kind_of, kind_of_many, quality, score};
use downshift_store::DataDir;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

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
    /// Cap on optimizer updates per task (default: none; 150 with --quick, which keeps that run
    /// within its time budget on 2 cores whatever task it picks).
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
    frozen_layers: crate::train::FrozenLayers,
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
    /// Working folder (data, adapters, logs); emptied first.
    #[arg(long, default_value = ".downshift-demo", value_name = "DIR")]
    work: PathBuf,
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

/// A child process of this binary, killed on drop.
struct Server {
    child: Child,
    addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs this binary's own commands on one data directory and config, logging their stderr.
pub struct Runner {
    pub exe: PathBuf,
    pub data: PathBuf,
    pub config: Option<PathBuf>,
    pub log: PathBuf,
    pub quiet: bool,
}

impl Runner {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.exe);
        c.args(args)
            .arg("--data-dir")
            .arg(&self.data)
            .env("DOWNSHIFT_LOG", "warn")
            .env_remove("DOWNSHIFT_DATA_DIR");
        if let Some(cfg) = &self.config {
            c.arg("--config").arg(cfg);
        }
        c
    }

    /// Runs a command to the end; its stdout, or an error with its stderr.
    pub fn run(&self, args: &[&str]) -> Result<String> {
        let out = self
            .cmd(args)
            .output()
            .with_context(|| format!("cannot run downshift {}", args.join(" ")))?;
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        // One write per command, so the logs of commands running side by side stay whole.
        let mut entry = format!("$ downshift {}\n", args.join(" ")).into_bytes();
        entry.extend_from_slice(&out.stderr);
        log.write_all(&entry)?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(8).collect();
            bail!(
                "downshift {} failed:\n{}",
                args.join(" "),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts a server command and waits for its "listening on" line.
    fn start(&self, args: &[&str]) -> Result<Server> {
        let mut child = self
            .cmd(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)?,
            ))
            .spawn()
            .with_context(|| format!("cannot start downshift {}", args.join(" ")))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let Some(Ok(line)) = lines.next() else { break };
            if let Some(addr) = line.split("listening on http://").nth(1) {
                let addr = addr.trim().to_owned();
                // Keep draining stdout so the child never blocks on a full pipe.
                std::thread::spawn(move || for _ in lines.by_ref() {});
                return Ok(Server { child, addr });
            }
        }
        let _ = child.kill();
        bail!(
            "downshift {} did not start (see {})",
            args.join(" "),
            self.log.display()
        )
    }

    /// Runs `discover` with the packaged all-MiniLM-L6-v2 when it is there, else with the
    /// hashed embedding (no model file needed).
    pub fn discover(&self) -> Result<String> {
        let minilm = Path::new("models/all-minilm-l6-v2");
        if minilm.join("model.safetensors").exists() {
            self.run(&["discover", "--model-dir", &minilm.display().to_string()])
        } else {
            self.run(&["discover", "--embedder", "hashed"])
        }
    }

    pub fn say(&self, msg: &str) {
        if !self.quiet {
            eprintln!("==> {msg}");
        }
    }
}

/// An HTTP answer: status, headers (names lower-cased), body.
type Answer = (u16, Vec<(String, String)>, Vec<u8>);

/// A minimal HTTP/1.1 POST on loopback.
fn post(addr: &str, path: &str, body: &[u8]) -> Result<Answer> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("cannot connect to {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(600)))?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("malformed response from {addr}"))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("malformed status line from {addr}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = downshift_api::dechunk(&body);
    }
    Ok((status, headers, body))
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
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

/// The demo's traffic when no --traffic is given (`scripts/fetch.sh demo` builds it).
const DEFAULT_TRAFFIC: &str = "data/demo/traffic.jsonl";

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

/// A task's ranking weight: its calls times discovery's suitability.
fn weight(t: &Value) -> f64 {
    t["calls"].as_f64().unwrap_or(0.0) * t["suitability"].as_f64().unwrap_or(0.0)
}

/// The metric a task's answers are scored by.
fn metric_name(kind: OutputKind) -> &'static str {
    match kind {
        OutputKind::ToolCall => "tool call exact",
        OutputKind::Json => "JSON fields",
        OutputKind::Label => "label exact",
        OutputKind::Text => "text",
    }
}

/// The kind of a task's answers, read from (up to 200 of) its logged calls: discovery tells
/// tool calls and JSON from text, and this tells short labels from free text.
fn answers_kind(runner: &Runner, task: &str) -> Result<Option<OutputKind>> {
    let out = runner.run(&["export", "--task", task, "--limit", "200"])?;
    let answers: Vec<Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|r| r["response"]["choices"][0]["message"].clone())
        .collect();
    Ok(kind_of_many(&answers))
}

#[derive(Default, Serialize)]
struct AgentResult {
    heldout_calls: usize,
    served: usize,
    share_served: f64,
    /// Mean quality of its held-out answers, each by its task's metric (LLM-only: 1).
    quality_vs_llm: f64,
    cost_saving: f64,
    #[serde(skip)]
    quality_sum: f64,
    #[serde(skip)]
    llm_cost: f64,
    #[serde(skip)]
    routed_cost: f64,
}

#[derive(Default, Serialize)]
struct TaskResult {
    task: String,
    label: String,
    /// How its answers are scored: `tool call exact`, `label exact` or `JSON fields`.
    metric: String,
    heldout_calls: usize,
    mode: String,
    /// On the task's own test split (`eval`).
    eval_exact_match: Option<f64>,
    /// Held-out calls the specialist answered.
    served: usize,
    /// Of those, answers identical to the LLM's (tool name + arguments).
    served_exact: usize,
    /// Mean quality of the served answers by the task's metric (JSON: field accuracy).
    served_quality: Option<f64>,
    /// Mean quality of all its held-out answers, the LLM's included.
    quality: Option<f64>,
    #[serde(skip)]
    served_quality_sum: f64,
    #[serde(skip)]
    quality_sum: f64,
    fallbacks: usize,
    train_seconds: Option<f64>,
    specialist_p50_ms: Option<f64>,
    /// The confidence threshold it serves above (none: it serves every answer that validates).
    min_confidence: Option<f64>,
}

fn train_plan<'a>(
    a: &DemoArgs,
    base: &'a str,
    out: &'a Path,
    epochs: usize,
    max_steps: Option<usize>,
    dataset: Option<&'a str>,
    threads: Option<usize>,
) -> crate::lifecycle::TrainPlan<'a> {
    crate::lifecycle::TrainPlan {
        base,
        out,
        epochs,
        lr: a.lr,
        max_steps,
        threads,
        dataset,
        precision: a.precision,
        keep_turns: (a.keep_turns > 0).then_some(a.keep_turns),
        frozen_layers: a.frozen_layers,
        tool_names: a.tool_names,
    }
}

pub fn demo(a: DemoArgs, cfg: &Config) -> Result<()> {
    let t_start = Instant::now();
    let quick = a.quick;
    let n_tasks = a.tasks.unwrap_or(if quick { 1 } else { usize::MAX });
    let epochs = a.epochs.unwrap_or(match (quick, a.shared) {
        (true, _) => 2,
        (false, true) => 1,
        (false, false) => 3,
    });
    let max_steps = a.max_steps.or(quick.then_some(150));
    let traffic = a
        .traffic
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_TRAFFIC));
    if !(0.0..1.0).contains(&a.holdout) || a.holdout == 0.0 {
        bail!("--holdout must be between 0 and 1, got {}", a.holdout);
    }

    // The traffic, split into the part the gateway sees first and the held-out part.
    let text = std::fs::read_to_string(&traffic).with_context(|| {
        if a.traffic.is_none() {
            format!(
                "cannot read the traffic {}: build the demo's traffic first with `scripts/fetch.sh demo` \
                 (or pass --traffic FILE, e.g. data/bfcl/agent.jsonl after `scripts/fetch.sh bfcl`)",
                traffic.display()
            )
        } else {
            format!("cannot read the traffic {}", traffic.display())
        }
    })?;
    let cats: Vec<&str> = a.categories.split(',').map(str::trim).collect();
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
            a.categories,
            traffic.display()
        );
    }
    let base = a.base.clone().unwrap_or_else(|| {
        "models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf".to_string()
    });
    let base = crate::local::resolve_model(&base).with_context(|| {
        format!("the base model {base} is missing (run scripts/fetch.sh smollm2)")
    })?;
    let base = std::fs::canonicalize(&base)?.display().to_string();
    let (heldout, training): (Vec<&Value>, Vec<&Value>) =
        records.iter().partition(|r| held_out(r, a.holdout));

    let work = &a.work;
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
    let config = work.join("downshift.toml");
    // One task per tool family: the agent's calls to one API (its vehicle, its file system)
    // are one job whatever the conversation is about, and its specialist learns from all of
    // them — split semantically, each part would see a fraction of the conversations.
    std::fs::write(
        &config,
        "# written by `downshift demo`\n[route]\nreload_ms = 300\n\n\
         # one task per tool family (no semantic split), each holding whole agents' requests\n\
         [discover]\nmin_split_share = 1.0\nalign_to_requests = true\n\n\
         # personal data in the training sets as realistic surrogates, not <PERSON_1>: a\n\
         # specialist that copies a name or an e-mail into its answer learns to copy, and\n\
         # does the same with the real values it is served\n\
         [curate.pii]\nsurrogate = \"surrogate\"\n",
    )?;
    let runner = Runner {
        exe: std::env::current_exe()?,
        data: work.join("data"),
        config: Some(config),
        log: work.join("demo.log"),
        quiet: a.json,
    };

    runner.say(&format!(
        "traffic: {} calls ({}), {} replayed first, {} held out",
        records.len(),
        a.categories,
        training.len(),
        heldout.len()
    ));
    runner.say("starting the mock teacher LLM and the gateway in front of it");
    let teacher = runner.start(&[
        "mock-llm",
        "--listen",
        "127.0.0.1:0",
        "--replay",
        replay.to_str().unwrap_or_default(),
    ])?;
    let upstream = format!("http://{}", teacher.addr);
    let gw = runner.start(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        &upstream,
        "--no-auth",
    ])?;

    runner.say(&format!(
        "replaying {} calls through the gateway",
        training.len()
    ));
    let t0 = Instant::now();
    for r in &training {
        let (status, _, body) = post(
            &gw.addr,
            "/v1/chat/completions",
            r["request"].to_string().as_bytes(),
        )?;
        if status != 200 {
            bail!(
                "the gateway answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
    }
    let replay_s = t0.elapsed().as_secs_f64();
    let store_dir = DataDir::new(&runner.data, &cfg.store);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let n = store_dir.open_store()?.count_calls()?;
        if n as usize >= training.len() {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {n} of {} calls reached the log", training.len());
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    runner.say("discovering the recurring tasks");
    let t0 = Instant::now();
    runner.discover()?;
    let discover_s = t0.elapsed().as_secs_f64();
    let tasks: Vec<Value> = runner
        .run(&["tasks", "list", "--json"])?
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(serde_json::from_str)
        .collect::<std::result::Result<_, _>>()?;
    // The tasks with enough calls to train, evaluate and test on, whose answers a metric can
    // score: tool calls, JSON, or short labels (free text stays on the LLM).
    let mut candidates: Vec<(&Value, OutputKind)> = Vec::new();
    for t in tasks
        .iter()
        .filter(|t| t["calls"].as_u64().unwrap_or(0) >= 40)
    {
        let kind = match t["output_kind"].as_str() {
            Some("tool") => Some(OutputKind::ToolCall),
            Some("json") => Some(OutputKind::Json),
            Some("text") => answers_kind(&runner, t["id"].as_str().unwrap_or_default())?
                .filter(|k| *k == OutputKind::Label),
            _ => None,
        };
        if let Some(kind) = kind {
            candidates.push((t, kind));
        }
    }
    if quick {
        // The most learnable: consistent answers first, then the shortest, then the largest.
        candidates.sort_by_key(|(t, _)| {
            (
                t["output_consistency"].as_f64().unwrap_or(0.0) < 0.9,
                t["completion_tokens"]["p95"].as_u64().unwrap_or(u64::MAX),
                std::cmp::Reverse(t["calls"].as_u64().unwrap_or(0)),
            )
        });
    } else {
        candidates.sort_by(|(x, _), (y, _)| weight(y).total_cmp(&weight(x)));
    }
    candidates.truncate(n_tasks);
    if candidates.is_empty() {
        bail!(
            "discovery found no task with at least 40 calls whose answers are tool calls, JSON or short labels"
        );
    }
    runner.say(&format!(
        "{} tasks found; specialists for {}",
        tasks.len(),
        candidates
            .iter()
            .map(|(t, k)| format!(
                "{} ({})",
                t["label"].as_str().unwrap_or_default(),
                metric_name(*k)
            ))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let mut results: BTreeMap<String, TaskResult> = BTreeMap::new();
    let t_train = Instant::now();
    let base_name = Path::new(&base)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    // --shared: one adapter on everything the gateway logged so far.
    let shared = if a.shared {
        runner.run(&["curate", "--name", "demo-traffic", "--json"])?;
        let out = work.join("adapters").join("shared");
        runner.say(&format!(
            "training one specialist ({base_name}) on all {} replayed calls",
            training.len()
        ));
        let plan = train_plan(
            &a,
            &base,
            &out,
            epochs,
            max_steps,
            Some("demo-traffic"),
            a.threads,
        );
        let secs = crate::lifecycle::train(&runner, None, &plan)?;
        runner.say(&format!("trained in {secs:.0} s"));
        Some((out, secs))
    } else {
        None
    };
    // Train (or, with --shared, evaluate) the candidates' specialists, --jobs at a time.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let jobs = a.jobs.unwrap_or(cores).clamp(1, candidates.len());
    let threads = a.threads.or((jobs > 1).then(|| (cores / jobs).max(1)));
    if jobs > 1 {
        runner.say(&format!(
            "{jobs} specialists at a time, {} thread(s) each",
            threads.unwrap_or(cores)
        ));
    }
    let specialize = |t: &Value| -> (PathBuf, Result<crate::lifecycle::Trained>) {
        let id = t["id"].as_str().unwrap_or_default();
        match &shared {
            Some((out, _)) => (
                out.clone(),
                crate::lifecycle::evaluate(&runner, id, out, a.precision, threads),
            ),
            None => {
                let out = work.join("adapters").join(id);
                let trained = (|| {
                    let sel: Value =
                        serde_json::from_str(&runner.run(&["select", "--task", id, "--json"])?)?;
                    runner.say(&format!(
                        "{id}: select recommends {} ({} calls); training {base_name} on it",
                        sel["recommended"].as_str().unwrap_or("-"),
                        t["calls"],
                    ));
                    let plan = train_plan(&a, &base, &out, epochs, max_steps, None, threads);
                    crate::lifecycle::specialize(&runner, id, &plan)
                })();
                (out, trained)
            }
        }
    };
    // Each task's dataset is curated first, one at a time: `train --task` curates it when
    // missing, and two curations writing the database at once can fail on its lock.
    if shared.is_none() {
        for (t, _) in &candidates {
            let id = t["id"].as_str().unwrap_or_default();
            runner.run(&["curate", "--task", id, "--name", &format!("task-{id}")])?;
        }
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done = std::sync::Mutex::new(BTreeMap::new());
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((t, _)) = candidates.get(i) else {
                        break;
                    };
                    let r = specialize(t);
                    done.lock().unwrap_or_else(|e| e.into_inner()).insert(i, r);
                }
            });
        }
    });
    let mut done = done.into_inner().unwrap_or_else(|e| e.into_inner());
    for (i, (t, kind)) in candidates.iter().enumerate() {
        let id = t["id"].as_str().unwrap_or_default().to_owned();
        let label = t["label"].as_str().unwrap_or_default().to_owned();
        let mut res = TaskResult {
            task: id.clone(),
            label: label.clone(),
            metric: metric_name(*kind).into(),
            mode: "off".into(),
            ..Default::default()
        };
        let (out, trained) = done
            .remove(&i)
            .context("a specialist job ended without a result")?;
        let out_s = out.display().to_string();
        let trained = match trained {
            Ok(t) => t,
            Err(e) => {
                runner.say(&format!(
                    "{id}: training or evaluation failed, the LLM keeps the task: {e}"
                ));
                results.insert(id, res);
                continue;
            }
        };
        res.train_seconds = shared.is_none().then_some(trained.train_seconds);
        res.eval_exact_match = trained.exact_match;
        let verdict = crate::lifecycle::gate(&trained, a.gate, a.min_coverage, a.precision);
        let mode = if verdict.is_some() { "on" } else { "shadow" };
        let threshold = verdict.as_ref().and_then(|v| v.0).map(|t| t.to_string());
        let mut args = vec!["promote", &id, "--mode", mode, "--specialist", &out_s];
        if let Some(t) = &threshold {
            args.extend(["--min-confidence", t]);
        }
        runner.run(&args)?;
        res.min_confidence = verdict.as_ref().and_then(|v| v.0);
        res.mode = mode.into();
        runner.say(&format!(
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

    runner.say(&format!(
        "replaying the {} held-out calls through the gateway",
        heldout.len()
    ));
    let p = &cfg.prices;
    let t0 = Instant::now();
    let (mut served, mut exact, mut qual, mut llm_cost, mut routed_cost, mut llm_ms, mut routed_ms) =
        (0usize, 0usize, 0.0, 0.0, 0.0, 0.0, 0.0);
    let mut spec_lat: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut agents: BTreeMap<String, AgentResult> = BTreeMap::new();
    // The first call a specialist served: its route header and answer, shown at the end.
    let mut first_served: Option<(String, String)> = None;
    for r in &heldout {
        let reference = &r["response"]["choices"][0]["message"];
        let t_req = Instant::now();
        let (status, headers, body) = post(
            &gw.addr,
            "/v1/chat/completions",
            r["request"].to_string().as_bytes(),
        )?;
        let ms = t_req.elapsed().as_secs_f64() * 1e3;
        if status != 200 {
            bail!(
                "the gateway answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
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
                let said = match message["tool_calls"].as_array() {
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
                };
                first_served = Some((route.to_owned(), said.chars().take(120).collect()));
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
        if let Some(t) = task.filter(|t| results.contains_key(t)) {
            let res = results.get_mut(&t).expect("checked");
            res.heldout_calls += 1;
            res.quality_sum += q;
            if by_specialist {
                res.served += 1;
                res.served_exact += usize::from(ok);
                res.served_quality_sum += q;
                spec_lat.entry(t.clone()).or_default().push(ms);
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
    let served_share = served as f64 / n;
    // The LLM-only baseline answers every held-out call with the LLM's own answer: quality 1
    // by every metric.
    let llm_only_exact = 1.0;
    let quality = qual / n / llm_only_exact;
    for r in results.values_mut() {
        r.quality = (r.heldout_calls > 0).then(|| r.quality_sum / r.heldout_calls as f64);
        r.served_quality = (r.served > 0).then(|| r.served_quality_sum / r.served as f64);
    }
    for a in agents.values_mut() {
        a.share_served = a.served as f64 / a.heldout_calls.max(1) as f64;
        a.quality_vs_llm = a.quality_sum / a.heldout_calls.max(1) as f64;
        a.cost_saving = if a.llm_cost > 0.0 {
            1.0 - a.routed_cost / a.llm_cost
        } else {
            0.0
        };
    }
    let tasks_json: Vec<Value> = results.values().map(|r| json!(r)).collect();
    let agents_json: Vec<Value> = agents
        .iter()
        .map(|(name, a)| {
            let mut v = json!(a);
            v["agent"] = json!(name);
            v
        })
        .collect();
    let out = json!({
        "heldout_calls": heldout.len(),
        "served_by_specialists": served_share,
        "quality_vs_llm": quality,
        "exact_match": exact as f64 / n,
        "llm_only_exact_match": llm_only_exact,
        "tasks": tasks_json,
        "agents": agents_json,
        "first_served": first_served.as_ref().map(|(route, answer)| json!({"route": route, "answer": answer})),
        "traffic_calls": records.len(),
        "replayed_calls": training.len(),
        "tasks_discovered": tasks.len(),
        "shared_specialist": shared.as_ref().map(|(out, secs)| json!({"adapter": out, "train_seconds": secs})),
        "base": base,
        "cost_usd": {"llm_only": llm_cost, "with_specialists": routed_cost,
                     "saving": if llm_cost > 0.0 { 1.0 - routed_cost / llm_cost } else { 0.0 }},
        "latency_ms_mean": {"llm_only": llm_ms / n, "with_specialists": routed_ms / n},
        "seconds": {"replay": replay_s, "discover": discover_s, "train_and_eval": train_s,
                    "heldout": heldout_s, "total": t_start.elapsed().as_secs_f64()},
        "quick": quick,
        "work": work,
    });
    std::fs::write(
        work.join("result.json"),
        serde_json::to_string_pretty(&out)?,
    )?;
    if a.json {
        println!("{out}");
        return Ok(());
    }
    println!();
    let pct = |x: f64| format!("{:.1}%", x * 100.0);
    let rows: Vec<Vec<String>> = results
        .values()
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
    let rows: Vec<Vec<String>> = agents
        .iter()
        .map(|(name, a)| {
            vec![
                name.clone(),
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
    if let Some((route, said)) = &first_served {
        println!("first held-out call a specialist served: x-downshift-route: {route} → {said}");
    }
    println!(
        "held-out calls: {}   served by specialists: {}   quality vs the LLM: {} (each call by its task's metric; LLM-only: 100%)",
        heldout.len(),
        pct(served_share),
        pct(quality)
    );
    println!(
        "estimated LLM cost: ${:.4} LLM-only → ${:.4} with specialists ({} saved); mean latency {:.0} ms → {:.0} ms",
        llm_cost,
        routed_cost,
        pct(if llm_cost > 0.0 {
            1.0 - routed_cost / llm_cost
        } else {
            0.0
        }),
        llm_ms / n,
        routed_ms / n
    );
    println!(
        "took {:.0} s (replay {:.0} s, discover {:.0} s, train+eval {:.0} s, held-out {:.0} s); work folder {}",
        t_start.elapsed().as_secs_f64(),
        replay_s,
        discover_s,
        train_s,
        heldout_s,
        work.display()
    );
    Ok(())
}
