//! `downshift.toml`: one file, every field defaulted (see `downshift.example.toml`).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use downshift_curate::CurateConfig;
use downshift_discover::DiscoverConfig;
use downshift_gateway::{
    LimitsConfig, LocalModelConfig, PriceTable, RouteConfig, RoutingConfig, ServerConfig,
    SpecialistEndpointConfig, TelemetryConfig, UpstreamConfig,
};
use downshift_store::{DataDir, StoreConfig};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Data directory (overridden by `--data-dir` / `DOWNSHIFT_DATA_DIR`).
    pub data_dir: Option<PathBuf>,
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub upstreams: Vec<UpstreamConfig>,
    pub routing: RoutingConfig,
    /// Small models served natively as `local/<name>`.
    pub local_models: Vec<LocalModelConfig>,
    /// Routing between the LLM and the specialists (S6).
    pub route: RouteConfig,
    /// Specialists served by remote OpenAI-compatible endpoints.
    pub specialists: Vec<SpecialistEndpointConfig>,
    pub curate: CurateConfig,
    pub discover: DiscoverConfig,
    /// The price and latency assumptions of `downshift demo`'s cost estimate.
    pub prices: crate::demo::Prices,
    /// Per-key and per-agent limits and budgets the gateway enforces.
    pub limits: LimitsConfig,
    /// What `downshift loop` trains, and its gates.
    #[serde(rename = "loop")]
    pub loop_: crate::lifecycle::LoopConfig,
    /// OpenTelemetry trace export and the metrics' label bounds.
    pub telemetry: TelemetryConfig,
}

impl Config {
    /// Reads `path`, or `./downshift.toml` when it exists, or the defaults.
    pub fn load(path: Option<&Path>) -> Result<Config> {
        let path = match path {
            Some(p) => p.to_owned(),
            None => {
                let default = PathBuf::from("downshift.toml");
                if !default.exists() {
                    return Ok(Config::default());
                }
                default
            }
        };
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }

    /// The prices budgets and spend are counted in: `discover.prices` per model, and the
    /// `[prices]` LLM prices for every model it does not name.
    pub fn price_table(&self) -> PriceTable {
        let mut entries: Vec<(String, f64, f64)> = self
            .discover
            .prices
            .iter()
            .map(|(m, p)| (m.clone(), p.prompt, p.completion))
            .collect();
        if !self.discover.prices.contains_key("*") {
            entries.push((
                "*".into(),
                self.prices.llm_input_usd_per_mtok,
                self.prices.llm_output_usd_per_mtok,
            ));
        }
        PriceTable::new(entries)
    }

    /// The data directory: flag or env (clap merges both), then the config, then
    /// [`default_data_dir`]; `store_url` (`--store-url` / `DOWNSHIFT_STORE_URL`) overrides
    /// `[store] url`.
    pub fn data_dir(&self, flag: Option<&Path>, store_url: Option<&str>) -> DataDir {
        let root = flag
            .map(Path::to_owned)
            .or_else(|| self.data_dir.clone())
            .unwrap_or_else(default_data_dir);
        let mut store = self.store.clone();
        if let Some(url) = store_url.filter(|u| !u.is_empty()) {
            store.url = Some(url.to_owned());
        }
        if let Ok(k) = std::env::var("DOWNSHIFT_KEY_FILE")
            && !k.is_empty()
        {
            store.key_file = Some(k.into());
        }
        DataDir::new(&root, &store)
    }
}

impl Config {
    /// An adapter named on the command line: the path as given when it exists, else the folder
    /// of that name where `train` and `loop` write adapters (`adapters` in the data directory,
    /// or `[loop] adapters_dir`), so `eval --adapter TASK` finds what `train --task TASK` wrote.
    pub fn adapter_path(&self, data: &DataDir, spec: &Path) -> PathBuf {
        if spec.exists() {
            return spec.to_path_buf();
        }
        let stored =
            downshift_lifecycle::cycle::adapters_root(self.loop_.adapters_dir.as_deref(), data)
                .join(spec);
        if stored.exists() {
            stored
        } else {
            spec.to_path_buf()
        }
    }
}

/// Where the call log lives when nothing names a place: `./.downshift` when it already exists
/// (a directory used before), else the platform's data directory (`$XDG_DATA_HOME/downshift`
/// or `~/.local/share/downshift` on Linux, `~/Library/Application Support/downshift` on macOS),
/// so that every command finds the same log whatever directory it runs from.
pub fn default_data_dir() -> PathBuf {
    let local = PathBuf::from(".downshift");
    if local.is_dir() {
        return local;
    }
    dirs::data_dir().map_or(local, |d| d.join("downshift"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses_and_matches_the_defaults() {
        let text = include_str!("../../../downshift.example.toml");
        let cfg: Config = toml::from_str(text).unwrap();
        let defaults = Config::default();
        assert_eq!(cfg.server.max_body_bytes, defaults.server.max_body_bytes);
        assert_eq!(cfg.server.require_auth, defaults.server.require_auth);
        assert_eq!(cfg.server.worker_threads, defaults.server.worker_threads);
        assert_eq!(cfg.store.queue_capacity, defaults.store.queue_capacity);
        assert_eq!(cfg.store.batch_delay_ms, defaults.store.batch_delay_ms);
        assert_eq!(cfg.server.local_threads, defaults.server.local_threads);
        assert_eq!(cfg.discover, defaults.discover);
        assert_eq!(
            serde_json::to_value(&cfg.route).unwrap(),
            serde_json::to_value(&defaults.route).unwrap()
        );
        assert_eq!(
            serde_json::to_value(&cfg.loop_).unwrap(),
            serde_json::to_value(&defaults.loop_).unwrap()
        );
        assert_eq!(
            serde_json::to_value(&cfg.prices).unwrap(),
            serde_json::to_value(&defaults.prices).unwrap()
        );
        assert_eq!(
            serde_json::to_value(&cfg.routing).unwrap(),
            serde_json::to_value(&defaults.routing).unwrap()
        );
        // As shipped it starts: one upstream (the mock's address) that needs no key, no local
        // model files, no specialists.
        assert!(cfg.specialists.is_empty());
        assert_eq!(cfg.upstreams.len(), 1);
        assert!(cfg.upstreams[0].api_key_env.is_none() && cfg.upstreams[0].api_key.is_none());
        assert!(cfg.local_models.is_empty());
        assert_eq!(
            cfg.upstreams[0].timeout_ms,
            UpstreamConfig::default().timeout_ms
        );
    }

    /// The example with every commented-out setting (`# key = value`, `# [table]`) switched on.
    fn uncommented(text: &str) -> String {
        let setting = |rest: &str| {
            if rest.starts_with('[') {
                return rest.trim_end().ends_with(']');
            }
            let Some((key, _)) = rest.split_once(" = ") else {
                return false;
            };
            let quoted = key.len() > 1 && key.starts_with('"') && key.ends_with('"');
            quoted || key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        };
        text.lines()
            .map(|l| match l.strip_prefix("# ") {
                Some(rest) if setting(rest) => rest,
                _ => l,
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[test]
    fn every_commented_example_in_the_example_config_is_valid() {
        let text = uncommented(include_str!("../../../downshift.example.toml"));
        let cfg: Config = toml::from_str(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(cfg.upstreams.len(), 3);
        assert_eq!(
            cfg.upstreams[0].api_key_env.as_deref(),
            Some("OPENAI_API_KEY")
        );
        assert_eq!(cfg.local_models.len(), 1);
        let lm = &cfg.local_models[0];
        assert_eq!(
            lm.max_concurrent,
            LocalModelConfig::default().max_concurrent
        );
        assert_eq!(
            lm.default_max_tokens,
            LocalModelConfig::default().default_max_tokens
        );
        assert_eq!(cfg.specialists.len(), 1);
        assert_eq!(cfg.routing.models["gpt-4o"].names(), ["openai", "local"]);
        assert_eq!(cfg.routing.models["qwen2.5-*"].names(), ["local"]);
        assert_eq!(cfg.routing.fallbacks["gpt-4o"], ["llama-3.1-8b-instruct"]);
        assert_eq!(cfg.curate.pii.custom.len(), 1);
        assert!(cfg.data_dir.is_some());
    }

    #[test]
    fn unknown_fields_are_errors() {
        assert!(toml::from_str::<Config>("[server]\nlisten_on = \"x\"").is_err());
    }
}
