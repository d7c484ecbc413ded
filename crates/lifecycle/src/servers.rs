//! The gateway and the mock teacher LLM run inside this process, on loopback ports the OS
//! picks, for the demo (the gateway crate is a library: no child process of the binary).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use downshift_gateway::mock::{MockOptions, MockState, Replay, run_mock};
use downshift_gateway::{
    AppState, LimitsConfig, LocalModels, PriceTable, RouteConfig, RoutingConfig, ServeOptions,
    ServerConfig, UpstreamConfig,
};
use downshift_store::{DataDir, StoreConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// A server running on a thread (and async runtime) of its own; stopped gracefully on drop.
pub struct Running {
    /// The address it listens on.
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
    /// Held while the server runs (the gateway's lock on its data directory).
    _guard: Option<std::fs::File>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            match thread.join() {
                Ok(Err(e)) => tracing::warn!("a server stopped with an error: {e}"),
                Err(_) => tracing::warn!("a server's thread panicked"),
                Ok(Ok(())) => {}
            }
        }
    }
}

/// Runs `serve` on a new thread with its own async runtime, listening on 127.0.0.1 at a port
/// the OS picks, until the [`Running`] it returns is dropped.
fn spawn<F, Fut>(name: &str, guard: Option<std::fs::File>, serve: F) -> Result<Running>
where
    F: FnOnce(TcpListener, oneshot::Receiver<()>) -> Fut + Send + 'static,
    Fut: Future<Output = std::io::Result<()>>,
{
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(async move {
                let listener = match TcpListener::bind("127.0.0.1:0").await {
                    Ok(l) => l,
                    Err(e) => {
                        let _ = addr_tx.send(Err(e));
                        return Ok(());
                    }
                };
                let _ = addr_tx.send(listener.local_addr());
                serve(listener, stopped).await
            })
        })
        .with_context(|| format!("cannot start the {name} thread"))?;
    let addr = match addr_rx.recv() {
        Ok(addr) => addr.with_context(|| format!("the {name} cannot listen on 127.0.0.1"))?,
        Err(_) => match thread.join() {
            Ok(r) => bail!("the {name} did not start: {:?}", r.err()),
            Err(_) => bail!("the {name} did not start"),
        },
    };
    Ok(Running {
        addr,
        stop: Some(stop),
        thread: Some(thread),
        _guard: guard,
    })
}

/// The mock teacher LLM answering from the recorded calls in `replay` (the import format).
pub fn start_mock(replay: &Path) -> Result<Running> {
    let (replay_set, _) = Replay::load(replay)
        .with_context(|| format!("cannot read replay file {}", replay.display()))?;
    let state = MockState::new(replay_set, MockOptions::default());
    spawn("mock-llm", None, move |listener, stopped| {
        run_mock(listener, state, async move {
            let _ = stopped.await;
        })
    })
}

/// What an in-process gateway is configured with (the `downshift.toml` sections it reads).
#[derive(Clone, Debug, Default)]
pub struct GatewayConfig {
    /// `[server]`; its `listen` is ignored (loopback, a port the OS picks).
    pub server: ServerConfig,
    /// `[store]`.
    pub store: StoreConfig,
    /// `[[upstreams]]`.
    pub upstreams: Vec<UpstreamConfig>,
    /// `[routing]`.
    pub routing: RoutingConfig,
    /// `[route]`.
    pub route: RouteConfig,
    /// `[limits]`.
    pub limits: LimitsConfig,
    /// Prices budgets and spend are counted in.
    pub prices: PriceTable,
}

impl GatewayConfig {
    /// No authentication and one upstream, `default`, at `upstream` (the demo's teacher or a
    /// test's mock): the rest as `downshift serve` defaults it.
    pub fn open_to(upstream: std::net::SocketAddr) -> GatewayConfig {
        GatewayConfig {
            server: ServerConfig {
                require_auth: false,
                ..Default::default()
            },
            upstreams: vec![UpstreamConfig {
                name: "default".into(),
                base_url: format!("http://{upstream}"),
                ..Default::default()
            }],
            ..Default::default()
        }
    }
}

/// A gateway logging into `data`, as `downshift serve` runs it, inside this process. No
/// admin key is created: give it `server.require_auth = false`, or keys made beforehand.
pub fn start_gateway(data: &DataDir, cfg: GatewayConfig) -> Result<Running> {
    data.make_private()?;
    let guard = data.lock_for_serving()?;
    let (keyring, _) = data.keyring(true)?;
    let store = data.open_store()?;
    data.replay_unstored(&*store)?;
    let mut server = cfg.server;
    if server.max_connections == 0 {
        server.max_connections = 256;
    }
    let state = AppState::new(ServeOptions {
        server: server.clone(),
        upstreams: cfg.upstreams,
        routing: cfg.routing,
        local: LocalModels::load(&[])?,
        store: Arc::from(data.open_admin_store(&cfg.store)?),
        auth_store: Some(Arc::from(data.open_admin_store(&cfg.store)?)),
        writer_store: store,
        keyring: Arc::new(RwLock::new(keyring)),
        writer: data.writer_config(&cfg.store),
        route: cfg.route,
        specialists: Vec::new(),
        limits: cfg.limits,
        prices: cfg.prices,
        telemetry: downshift_gateway::TelemetryConfig::default(),
        ui: downshift_gateway::UiOptions::default(),
    })?;
    let limits = downshift_gateway::conn_limits(&server);
    let grace = Duration::from_secs(server.shutdown_grace_secs);
    spawn("gateway", Some(guard), move |listener, stopped| {
        downshift_gateway::run(
            listener,
            state,
            limits,
            async move {
                let _ = stopped.await;
            },
            grace,
        )
    })
}
