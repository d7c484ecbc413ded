//! `downshift serve` and `downshift mock-llm`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use downshift_gateway::mock::{MockOptions, MockState, Replay, run_mock};
use downshift_gateway::{AppState, LocalModelConfig, LocalModels, ServeOptions, UpstreamConfig};
use downshift_store::{DataDir, bootstrap_admin_key};

use crate::config::Config;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Upstream base URL of any OpenAI-compatible API (e.g. https://api.openai.com/v1); replaces
    /// the configured upstreams with this one, named "default".
    #[arg(long, value_name = "URL")]
    upstream: Option<String>,
    /// Environment variable holding the API key for --upstream.
    #[arg(long, value_name = "VAR", requires = "upstream")]
    upstream_key_env: Option<String>,
    /// Time limit for the upstream's answer, in milliseconds (applies to every upstream).
    #[arg(long, value_name = "MS")]
    upstream_timeout_ms: Option<u64>,
    /// Accept requests without an API key (local development only).
    #[arg(long)]
    no_auth: bool,
    /// Serve a small model natively as `model: "local/NAME"` (repeatable; adds to the
    /// configured [[local_models]]). PATH: a GGUF file or model folder.
    #[arg(long = "local", value_name = "NAME=PATH", value_parser = parse_local)]
    local: Vec<(String, PathBuf)>,
}

fn parse_local(s: &str) -> Result<(String, PathBuf), String> {
    match s.split_once('=') {
        Some((n, p)) if !n.is_empty() && !p.is_empty() => Ok((n.to_string(), PathBuf::from(p))),
        _ => Err(format!("'{s}' is not NAME=PATH")),
    }
}

/// The async runtime; `workers` event-loop threads (0: one per core).
fn runtime(workers: usize) -> Result<tokio::runtime::Runtime> {
    // One event loop: the single-threaded scheduler, which never hands work between threads.
    let mut b = if workers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if workers > 1 {
        b.worker_threads(workers);
    }
    b.enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled, so a signal sent right after the "listening" line is not missed.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let (int, term) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = wait(int) => {},
                _ = wait(term) => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down");
    }
}

/// Prints a line to stdout at once (tests and scripts read it).
fn announce(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub fn serve(a: ServeArgs, mut cfg: Config, data: DataDir) -> Result<()> {
    if let Some(url) = a.upstream {
        cfg.upstreams = vec![UpstreamConfig {
            name: "default".into(),
            base_url: url,
            api_key_env: a.upstream_key_env,
            ..Default::default()
        }];
        cfg.routing.default_upstream = None;
        cfg.routing.models.clear();
    }
    if let Some(ms) = a.upstream_timeout_ms {
        for u in &mut cfg.upstreams {
            u.timeout_ms = ms;
        }
    }
    if let Some(l) = a.listen {
        cfg.server.listen = l;
    }
    if a.no_auth {
        cfg.server.require_auth = false;
        tracing::warn!(
            "--no-auth: every request is accepted, with any API key or none (local development only)"
        );
    }

    for (name, path) in a.local {
        cfg.local_models.push(LocalModelConfig {
            name,
            path,
            ..Default::default()
        });
    }
    if cfg.upstreams.is_empty() && cfg.local_models.is_empty() {
        bail!(
            "no upstream configured: pass --upstream URL or add an [[upstreams]] section (or serve local models: --local NAME=PATH or [[local_models]])"
        );
    }
    if cfg.server.local_threads > 0 {
        downshift_slm::threads::set_num_threads(cfg.server.local_threads);
    }
    let local = LocalModels::load(&cfg.local_models)?;

    data.make_private()?;
    // Held until serve returns: no second gateway journals into this directory meanwhile.
    let _serving = data.lock_for_serving()?;
    let (keyring, created) = data.keyring(true)?;
    if created {
        eprintln!(
            "created key file {} (mode 0600); back it up: without it the call log cannot be read",
            data.key_file.display()
        );
    }
    let store: Arc<dyn downshift_store::Store> = Arc::from(data.open_store()?);
    let report = data.replay_unstored(store.as_ref())?;
    if report.files > 0 {
        tracing::info!(
            files = report.files,
            records = report.records,
            inserted = report.inserted,
            bad_lines = report.bad_lines,
            "replayed call records left in the journal or spill files"
        );
    }
    let preset = std::env::var("DOWNSHIFT_ADMIN_KEY")
        .ok()
        .filter(|k| !k.is_empty());
    if let Some(key) = bootstrap_admin_key(store.as_ref(), &keyring, preset.as_deref())? {
        announce(&format!(
            "bootstrap admin key (shown once, store it now): {key}"
        ));
    }
    let writer = data.writer_config(&cfg.store);
    let state = AppState::new(ServeOptions {
        server: cfg.server.clone(),
        upstreams: cfg.upstreams.clone(),
        routing: cfg.routing.clone(),
        local,
        store: Arc::from(data.open_admin_store(&cfg.store)?),
        auth_store: Some(Arc::from(data.open_admin_store(&cfg.store)?)),
        writer_store: data.open_store()?,
        keyring: Arc::new(RwLock::new(keyring)),
        writer,
        route: cfg.route.clone(),
        specialists: cfg.specialists.clone(),
        limits: cfg.limits.clone(),
        prices: cfg.price_table(),
        telemetry: cfg.telemetry.clone(),
        ui: downshift_gateway::UiOptions {
            adapters_dir: downshift_lifecycle::cycle::adapters_root(
                cfg.loop_.adapters_dir.as_deref(),
                &data,
            ),
            specialist_usd_per_mtok: cfg.prices.specialist_usd_per_mtok,
        },
    })?;
    if cfg.server.max_connections == 0 {
        cfg.server.max_connections = auto_max_connections();
    }
    let limits = downshift_gateway::conn_limits(&cfg.server);
    let grace = Duration::from_secs(cfg.server.shutdown_grace_secs);
    runtime(cfg.server.worker_threads)?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&cfg.server.listen)
            .await
            .with_context(|| format!("cannot listen on {}", cfg.server.listen))?;
        let addr = listener.local_addr()?;
        let shutdown = shutdown_signal();
        announce(&format!("downshift listening on http://{addr}"));
        downshift_gateway::run(listener, state, limits, shutdown, grace).await?;
        Ok(())
    })
}

/// The connection cap when the config leaves it at 0: raises the soft descriptor limit to the
/// hard one, then keeps half of it for client connections (each proxied request may hold an
/// upstream connection too), less a reserve for the database, journal and logs.
fn auto_max_connections() -> usize {
    #[cfg(unix)]
    {
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit only read and write the struct passed by reference.
        let soft = unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return 1024;
            }
            if lim.rlim_cur < lim.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: lim.rlim_max,
                    rlim_max: lim.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    lim.rlim_cur = lim.rlim_max;
                }
            }
            lim.rlim_cur
        };
        let soft = usize::try_from(soft).unwrap_or(usize::MAX);
        (soft.saturating_sub(64) / 2).clamp(16, 16_384)
    }
    #[cfg(not(unix))]
    {
        1024
    }
}

#[derive(Debug, clap::Args)]
pub struct MockArgs {
    /// Address to listen on; port 0 picks a free port (the bound address is printed).
    #[arg(long, default_value = "127.0.0.1:8000", value_name = "ADDR")]
    listen: String,
    /// JSONL of recorded calls (the import format) to answer from.
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
    /// Wait this long before answering each request.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    delay_ms: u64,
    /// Wait this long between two chunks of a stream.
    #[arg(long, default_value_t = 0, value_name = "MS")]
    chunk_delay_ms: u64,
    /// Share of requests (0 to 1) answered with an error (--fail-status).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    fail_rate: f64,
    /// Answer the first N requests with an error (--fail-status), then normally.
    #[arg(long, default_value_t = 0, value_name = "N")]
    fail_first: u64,
    /// The HTTP status of injected failures (4xx or 5xx).
    #[arg(long, default_value_t = 500, value_name = "CODE")]
    fail_status: u16,
    /// Seed for --fail-rate.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

pub fn mock(a: MockArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&a.fail_rate) {
        bail!("--fail-rate must be between 0 and 1, got {}", a.fail_rate);
    }
    if !(400..=599).contains(&a.fail_status) {
        bail!(
            "--fail-status must be a 4xx or 5xx status, got {}",
            a.fail_status
        );
    }
    let replay = match &a.replay {
        None => Replay::default(),
        Some(path) => {
            let (replay, report) = Replay::load(path)
                .with_context(|| format!("cannot read replay file {}", path.display()))?;
            for (line, why) in report.skipped.iter().take(20) {
                eprintln!("{}:{line}: skipped: {why}", path.display());
            }
            eprintln!(
                "replay: {} records, {} distinct requests, {} lines skipped",
                report.records,
                report.distinct,
                report.skipped.len()
            );
            replay
        }
    };
    let state = MockState::new(
        replay,
        MockOptions {
            delay: Duration::from_millis(a.delay_ms),
            chunk_delay: Duration::from_millis(a.chunk_delay_ms),
            fail_rate: a.fail_rate,
            fail_first: a.fail_first,
            fail_status: a.fail_status,
            seed: a.seed,
        },
    );
    runtime(0)?.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&a.listen)
            .await
            .with_context(|| format!("cannot listen on {}", a.listen))?;
        let shutdown = shutdown_signal();
        announce(&format!(
            "mock-llm listening on http://{}",
            listener.local_addr()?
        ));
        run_mock(listener, state, shutdown).await?;
        Ok(())
    })
}
