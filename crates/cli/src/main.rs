//! The `downshift` binary: parses arguments and wires the crates together.

mod calls;
mod config;
mod curate;
mod demo;
mod discover;
mod evaluate;
mod keys;
mod lifecycle;
mod local;
mod models;
mod output;
mod route;
mod select;
mod serve;
mod spend;
mod train;

use std::io::IsTerminal;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use downshift_lifecycle::progress;

/// The gateway and the curation pipeline allocate many small JSON values; mimalloc serves them
/// markedly faster than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v2's `mi_option_e` (the crate names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// downshift moves an agent's routine LLM calls onto small specialist models.
///
/// Point the agent's OpenAI base URL at `downshift serve`; every call is logged (encrypted),
/// and later stages turn the log into fine-tuned specialists.
#[derive(Debug, Parser)]
#[command(name = "downshift", version, propagate_version = true)]
struct Cli {
    /// Config file (default: ./downshift.toml when it exists).
    #[arg(long, global = true, value_name = "FILE", help_heading = GLOBAL_OPTIONS)]
    config: Option<PathBuf>,
    /// Data directory: database, key file, spill files.
    #[arg(
        long,
        global = true,
        env = "DOWNSHIFT_DATA_DIR",
        value_name = "DIR",
        help_heading = GLOBAL_OPTIONS
    )]
    data_dir: Option<PathBuf>,
    /// Keep the call log in this PostgreSQL database (postgres://user:password@host/db) instead
    /// of the data directory's SQLite file; gateway replicas share one (see docs/postgres.md).
    #[arg(
        long,
        global = true,
        env = "DOWNSHIFT_STORE_URL",
        value_name = "URL",
        hide_env_values = true,
        help_heading = GLOBAL_OPTIONS
    )]
    store_url: Option<String>,
    /// Log filter for stderr (e.g. info, debug, downshift_gateway=debug).
    #[arg(
        long,
        global = true,
        env = "DOWNSHIFT_LOG",
        default_value = "info",
        help_heading = GLOBAL_OPTIONS
    )]
    log: String,
    /// Log format on stderr: `text` (coloured only on a terminal) or `json` (one object a line,
    /// for log collectors).
    #[arg(
        long,
        global = true,
        env = "DOWNSHIFT_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        help_heading = GLOBAL_OPTIONS
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// Where clap lists the options every command takes, apart from each command's own.
const GLOBAL_OPTIONS: &str = "Global options";

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines; ANSI colours only when stderr is a terminal (and `NO_COLOR` unset).
    Text,
    /// One JSON object per line: timestamp, level, message and fields.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The main job, end to end on loopback: mock teacher LLM on the BFCL traffic, gateway,
    /// replay, discover, select, train, eval, promote, then the held-out traffic served by
    /// specialists and scored against the LLM (S1–S6).
    Demo(demo::DemoArgs),
    /// Run the OpenAI-compatible gateway that logs every call (S1).
    Serve(serve::ServeArgs),
    /// Run a mock OpenAI-compatible LLM (replays recorded calls, else echoes).
    MockLlm(serve::MockArgs),
    /// Import logged calls from JSON Lines (OpenAI request/response pairs or Data Flywheel logs).
    Import(calls::ImportArgs),
    /// Export logged calls as JSON Lines, decrypted (the import format).
    Export(calls::ExportArgs),
    /// List and inspect logged calls.
    #[command(subcommand)]
    Calls(calls::CallsCommand),
    /// Tokens and USD spent by the logged calls, by API key, agent, model or task (priced from
    /// `discover.prices`, else `[prices]`).
    Spend(spend::SpendArgs),
    /// Curate logged calls into a named, immutable training dataset: PII scrubbed, duplicates
    /// and bad examples removed (S2).
    Curate(curate::CurateArgs),
    /// List, inspect and export curated datasets.
    #[command(subcommand)]
    Datasets(curate::DatasetsCommand),
    /// Find the recurring tasks in the calls: cluster, label, score SLM suitability (S3).
    Discover(discover::DiscoverArgs),
    /// List and inspect the tasks discovery found.
    #[command(subcommand)]
    Tasks(discover::TasksCommand),
    /// PII/PHI detection tools.
    #[command(subcommand)]
    Pii(curate::PiiCommand),
    /// Manage API keys and data-encryption keys.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Run a small model natively: generate text, JSON or a tool call (S5).
    Generate(local::GenerateArgs),
    /// Print the token ids of each line of stdin (JSON-string lines are decoded first).
    Tokenize(local::TokenizeArgs),
    /// The packaged models: list them, pull one, or check and add a local GGUF file or
    /// Hugging Face folder.
    #[command(subcommand)]
    Models(models::ModelsCommand),
    /// Rank the catalog's small models for a task: hard constraints, task-kind ranking, and
    /// an optional zero-shot bake-off of the local ones (S4).
    Select(select::SelectArgs),
    /// Fine-tune a specialist (LoRA/QLoRA) for a task or on a curated dataset; writes a PEFT
    /// adapter (S5).
    Train(train::TrainArgs),
    /// Score a specialist against the LLM's answers on its task's held-out test split, with
    /// the base model beside it (S5).
    Eval(evaluate::EvalArgs),
    /// Set how a task's traffic is served: off | shadow | canary:P | on, and by which
    /// specialist (S6). A running gateway applies it within `route.reload_ms`.
    Promote(route::PromoteArgs),
    /// Show the tasks' routing policies, live agreement and the newest route events.
    Policies(route::PoliciesArgs),
    /// Keep converting: re-discover tasks, train and gate specialists for suitable tasks,
    /// promote shadow → on when live agreement passes, retrain on drift (S3–S6).
    Loop(lifecycle::LoopArgs),
}

fn main() {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Serve(_) | Command::MockLlm(_)) {
        // Like other Unix tools, stop quietly when the reader of stdout goes away
        // (`downshift export | head`). Servers keep SIGPIPE ignored: a closed socket must not
        // kill them.
        // SAFETY: restoring the default disposition of one signal before any thread starts.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    // The demo and the loop train and evaluate in this process too.
    let trains = matches!(
        cli.command,
        Command::Train(_) | Command::Eval(_) | Command::Demo(_) | Command::Loop(_)
    );
    if trains {
        // Training allocates and frees the same large activation buffers every step; with
        // mimalloc's default purge they go back to the OS and return as fresh pages the kernel
        // must zero (about a tenth of a training step). A batch job keeps them.
        // SAFETY: sets a mimalloc option; mimalloc reads options with atomics.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
        // The frozen base is multiplied again and again: keep its bf16 tiles (where AMX runs)
        // instead of dequantizing every weight on every product.
        downshift_slm::amx::set_keep_tiles(true);
    }
    // Not for the demo and the loop: their discovery embeds with candle's own matmuls.
    if matches!(cli.command, Command::Train(_)) && std::env::var_os("CANDLE_NUM_THREADS").is_none()
    {
        // Training runs its heavy kernels (packed matmuls and their backward, the fused ops)
        // in downshift's own compute pool; candle's pool, left to the remaining small ops,
        // would only spin against it for the same cores.
        // SAFETY: no other thread exists yet.
        unsafe {
            std::env::set_var("CANDLE_NUM_THREADS", "1");
        }
    }
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // candle asks for its thread count on every matmul, and without this variable it
        // counts the physical cores by reading /proc/cpuinfo each time (a few percent of a
        // training step). The value is rayon's own default.
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        // SAFETY: no other thread exists yet.
        unsafe {
            std::env::set_var("RAYON_NUM_THREADS", n.to_string());
        }
    }
    // The PII detector's tagger weights are looked up like every other model (loaded by the
    // first command that builds a detector).
    downshift_curate::set_tagger_search(
        downshift_lifecycle::model::models_dirs()
            .into_iter()
            .map(|d| d.join(downshift_curate::TAGGER_MODEL))
            .collect(),
    );
    let cfg = match config::Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    };
    // Held until the command returns: dropping it flushes the spans still queued.
    let _trace_export = match init_logging(&cli, &cfg) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = run(cli, cfg) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

/// Logs to stderr as `--log`/`--log-format` say; `serve` also exports its call spans when
/// `[telemetry] otlp_endpoint` is set (they never reach the log).
fn init_logging(
    cli: &Cli,
    cfg: &config::Config,
) -> Result<Option<downshift_gateway::telemetry::TraceExport>, downshift_gateway::SetupError> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // The demo runs the gateway in this process: its per-request lines stay out of the
    // demo's output unless a log level is asked for.
    let log = match cli.command {
        Command::Demo(_) if cli.log == "info" => "warn",
        _ => cli.log.as_str(),
    };
    let mut filter = tracing_subscriber::EnvFilter::try_new(log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if let Ok(d) = format!("{}=off", downshift_gateway::telemetry::TARGET).parse() {
        filter = filter.add_directive(d);
    }
    let fmt = match cli.log_format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .with_writer(std::io::stderr)
            .with_current_span(false)
            .boxed(),
    };
    let (otel, export) = match &cli.command {
        Command::Serve(_) => match downshift_gateway::telemetry::layer(&cfg.telemetry)? {
            Some((layer, export)) => (Some(layer), Some(export)),
            None => (None, None),
        },
        _ => (None, None),
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(filter))
        .with(otel)
        .init();
    Ok(export)
}

fn run(cli: Cli, cfg: config::Config) -> anyhow::Result<()> {
    let data = cfg.data_dir(cli.data_dir.as_deref(), cli.store_url.as_deref());
    match cli.command {
        Command::Demo(a) => demo::demo(a, &cfg),
        Command::Serve(a) => serve::serve(a, cfg, data),
        Command::MockLlm(a) => serve::mock(a),
        Command::Import(a) => calls::import(a, &data),
        Command::Export(a) => calls::export(a, &data),
        Command::Calls(c) => calls::calls(c, &data),
        Command::Spend(a) => spend::spend(a, &cfg, &data),
        Command::Keys(c) => keys::keys(c, &data),
        Command::Curate(a) => curate::curate(a, &data, &cfg.curate),
        Command::Datasets(c) => curate::datasets(c, &data),
        Command::Pii(c) => curate::pii(c, &cfg.curate),
        Command::Generate(a) => local::generate(a),
        Command::Tokenize(a) => local::tokenize(a),
        Command::Train(a) => train::train(a, &data, &cfg.curate, cfg.loop_.adapters_dir.as_deref()),
        Command::Models(c) => models::models(c),
        Command::Select(a) => select::select_cmd(a, &data, &cfg.curate),
        Command::Eval(a) => evaluate::eval(a, &data, &cfg),
        Command::Promote(a) => route::promote(a, &cfg, &data),
        Command::Policies(a) => route::policies(a, &data),
        Command::Loop(a) => lifecycle::loop_cmd(a, &cfg, &data),
        Command::Discover(a) => discover::discover_cmd(a, &data, &cfg.discover),
        Command::Tasks(c) => discover::tasks(c, &data),
    }
}
