//! The gateway's part of `downshift.toml`. Every field has a default; see
//! `downshift.example.toml` for the commented reference.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The `[server]` section: the listener, authentication, timeouts and connection limits.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: String,
    /// Largest request body accepted, in bytes (413 above).
    pub max_body_bytes: usize,
    /// Require an API key on `/v1` and `/admin` (`Authorization: Bearer …`).
    pub require_auth: bool,
    /// Serve `/metrics` without a key (Prometheus scrapers usually carry none).
    pub metrics_public: bool,
    /// Seconds to let in-flight requests finish on shutdown.
    pub shutdown_grace_secs: u64,
    /// Event-loop threads serving requests; 0 means one per core, 1 the single-threaded
    /// scheduler (no hand-offs between threads). Proxying is I/O-bound: one
    /// thread serves well over 10k requests/s, and more threads mostly add cross-thread
    /// wake-ups on a machine whose cores are shared with other work.
    pub worker_threads: usize,
    /// Compute threads for local models; 0 means `DOWNSHIFT_THREADS`, else one per core.
    pub local_threads: usize,
    /// Longest a client may take to send a request's head (request line and headers), from
    /// its first byte, in milliseconds; slower connections are closed.
    pub header_read_timeout_ms: u64,
    /// Longest a client may take to send a request's body, in milliseconds (408 after).
    pub body_read_timeout_ms: u64,
    /// Longest a kept-alive connection may sit idle between requests, in milliseconds.
    pub idle_timeout_ms: u64,
    /// Most client connections open at once; 0: derived from the process's descriptor limit
    /// (half of it, less a reserve, for upstream connections and files). At the cap the
    /// connection idle the longest is closed to make room; when all are busy, new ones wait.
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 16 * 1024 * 1024,
            require_auth: true,
            metrics_public: true,
            shutdown_grace_secs: 10,
            worker_threads: 1,
            local_threads: 0,
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 60_000,
            idle_timeout_ms: 20_000,
            max_connections: 0,
        }
    }
}

/// One OpenAI-compatible upstream.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Name used in the model map and in logs.
    pub name: String,
    /// Base URL including the version path, e.g. `https://api.openai.com/v1`; a bare
    /// `http://host:port` means `http://host:port/v1`.
    pub base_url: String,
    /// API key sent as `Authorization: Bearer …` (prefer `api_key_env`).
    pub api_key: Option<String>,
    /// Name of an environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// Limit for the whole answer of a non-streaming call, and for the response headers of a
    /// streaming one, in milliseconds.
    pub timeout_ms: u64,
    /// Limit for establishing a connection, in milliseconds.
    pub connect_timeout_ms: u64,
    /// Longest silence allowed between two chunks of a stream, in milliseconds.
    pub stream_idle_timeout_ms: u64,
    /// Extra headers sent with every request to this upstream (e.g. `OpenAI-Organization`).
    pub headers: BTreeMap<String, String>,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            name: "default".into(),
            base_url: String::new(),
            api_key: None,
            api_key_env: None,
            timeout_ms: 600_000,
            connect_timeout_ms: 5_000,
            stream_idle_timeout_ms: 120_000,
            headers: BTreeMap::new(),
        }
    }
}

/// Where each model goes, what is tried when an upstream fails, and how often.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Upstream for models the map does not name. Default: with an empty model map, the first
    /// upstream; with a map, none (unmapped models get a 404 `model_not_found`).
    pub default_upstream: Option<String>,
    /// Model name → upstream name, or a list of upstream names (deployments of the same model,
    /// shared by `balance`; a failed one passes the request to the next). A trailing `*`
    /// matches a prefix (`"claude-*" = "anthropic"`).
    pub models: BTreeMap<String, Deployments>,
    /// How a model's deployments share its requests: `round_robin`, `least_busy` (fewest
    /// requests in flight) or `ordered` (always the first that answers: primary and backups).
    pub balance: Balance,
    /// Model → models tried, in order, once every deployment of the model has failed (the
    /// request's `model` is replaced by the fallback's name).
    pub fallbacks: BTreeMap<String, Vec<String>>,
    /// Further rounds over the model's deployments and fallbacks after all of them failed with
    /// a connection error, a 429 or a 5xx (never once a byte has reached the client).
    pub retries: u32,
    /// Wait before the first further round, in milliseconds; it doubles every round (with full
    /// jitter), up to `retry_max_backoff_ms`. A 429's `Retry-After` is honoured up to that cap.
    pub retry_backoff_ms: u64,
    /// Longest wait between two rounds, in milliseconds.
    pub retry_max_backoff_ms: u64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            default_upstream: None,
            models: BTreeMap::new(),
            balance: Balance::RoundRobin,
            fallbacks: BTreeMap::new(),
            retries: 0,
            retry_backoff_ms: 200,
            retry_max_backoff_ms: 5_000,
        }
    }
}

/// The upstream(s) serving one model: a name, or a list of deployments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Deployments {
    /// A single upstream (`"gpt-4o" = "openai"`).
    One(String),
    /// Several deployments of the model, shared by [`RoutingConfig::balance`]
    /// (`"gpt-4o" = ["azure-eu", "azure-us"]`).
    Many(Vec<String>),
}

impl Deployments {
    /// The upstream names, in the configured order.
    pub fn names(&self) -> &[String] {
        match self {
            Deployments::One(n) => std::slice::from_ref(n),
            Deployments::Many(v) => v,
        }
    }
}

impl From<&str> for Deployments {
    fn from(name: &str) -> Self {
        Deployments::One(name.to_owned())
    }
}

/// How the deployments of one model share its requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balance {
    /// Each request starts at the next deployment in turn.
    #[default]
    RoundRobin,
    /// Each request starts at the deployment with the fewest requests in flight.
    LeastBusy,
    /// Each request starts at the first deployment; the others are backups.
    Ordered,
}

/// A small model served natively as `model: "local/<name>"` (adapters as
/// `"local/<name>:<adapter>"`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalModelConfig {
    /// The name clients use after `local/`.
    pub name: String,
    /// A GGUF file, a folder holding one, or a Hugging Face folder.
    pub path: PathBuf,
    /// PEFT LoRA adapters kept unmerged over the base: adapter name → folder.
    pub adapters: BTreeMap<String, PathBuf>,
    /// Requests generating at once on this model; others wait their turn.
    pub max_concurrent: usize,
    /// Tokens generated when a request sets no `max_tokens` (the context bounds it too).
    pub default_max_tokens: usize,
}

impl Default for LocalModelConfig {
    fn default() -> Self {
        LocalModelConfig {
            name: String::new(),
            path: PathBuf::new(),
            adapters: BTreeMap::new(),
            max_concurrent: 1,
            default_max_tokens: 512,
        }
    }
}

/// How the gateway routes each task's requests between the LLM and its specialist (S6). The
/// per-task policies live in the store (`downshift promote`); these are the gateway's knobs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    /// Classify requests and apply the task policies. Off: every request goes where its model
    /// names, as a plain proxy.
    pub enabled: bool,
    /// How often the policies (and, after a new `discover`, the classifier) are re-read from
    /// the store, in milliseconds.
    pub reload_ms: u64,
    /// A saved classifier to load instead of training one from the store's task assignments.
    pub classifier: Option<PathBuf>,
    /// Longest a specialist may take to answer, in milliseconds; then the LLM answers
    /// (fallback `timeout`).
    pub specialist_timeout_ms: u64,
    /// Tokens a built-in specialist may generate when the request sets no `max_tokens`.
    pub max_tokens: usize,
    /// Specialist runs measuring agreement in the background at once; more are skipped (and
    /// counted) rather than queued, so shadow traffic never piles up behind served traffic.
    pub max_shadow_in_flight: usize,
    /// Requests generating at once on each built-in specialist.
    pub max_concurrent: usize,
}

impl Default for RouteConfig {
    fn default() -> Self {
        RouteConfig {
            enabled: true,
            reload_ms: 2_000,
            classifier: None,
            specialist_timeout_ms: 60_000,
            max_tokens: 256,
            max_shadow_in_flight: 4,
            max_concurrent: 1,
        }
    }
}

/// A specialist served by a remote OpenAI-compatible endpoint (vLLM with LoRA modules, a
/// llama.cpp server, Ollama …). A task policy names it by `name` as its specialist.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SpecialistEndpointConfig {
    /// The name a policy's `specialist` refers to.
    pub name: String,
    /// Base URL including the version path (`http://host:port/v1`; a bare `http://host:port`
    /// means `…/v1`).
    pub base_url: String,
    /// The `model` sent to the endpoint (e.g. the LoRA module's name in vLLM).
    pub model: String,
    /// Name of an environment variable holding the endpoint's API key.
    pub api_key_env: Option<String>,
    /// An adapter folder written by `downshift train`: its prompt transform (pruned system
    /// text, dropped tool schemas) is applied before the request is sent. Without it the
    /// request is sent as the agent wrote it.
    pub adapter: Option<PathBuf>,
    /// Limit for connecting, in milliseconds (the answer's limit is
    /// `route.specialist_timeout_ms`).
    pub connect_timeout_ms: u64,
}

impl Default for SpecialistEndpointConfig {
    fn default() -> Self {
        SpecialistEndpointConfig {
            name: String::new(),
            base_url: String::new(),
            model: String::new(),
            api_key_env: None,
            adapter: None,
            connect_timeout_ms: 2_000,
        }
    }
}
