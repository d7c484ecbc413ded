//! The configured upstreams (any OpenAI-compatible base URL) and the model → upstream map.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::{RoutingConfig, UpstreamConfig};

pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

pub struct Upstream {
    pub name: String,
    base: String,
    pub authorization: Option<HeaderValue>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub timeout: Duration,
    pub stream_idle_timeout: Duration,
    pub client: HttpClient,
}

impl Upstream {
    /// One upstream from its configuration: URL checked, key read, headers parsed.
    pub fn from_config(u: &UpstreamConfig) -> Result<Upstream, String> {
        let mut base = u.base_url.trim_end_matches('/').to_owned();
        let uri: Uri = base.parse().map_err(|e| {
            format!(
                "upstream '{}': base_url '{}' is not a URL: {e}",
                u.name, u.base_url
            )
        })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(format!(
                "upstream '{}': base_url '{}' must be an http:// or https:// URL",
                u.name, u.base_url
            ));
        }
        let key = match (&u.api_key, &u.api_key_env) {
            (Some(k), _) => Some(k.clone()),
            (None, Some(var)) => Some(std::env::var(var).map_err(|_| {
                format!(
                    "upstream '{}': environment variable {var} (api_key_env) is not set",
                    u.name
                )
            })?),
            (None, None) => None,
        };
        let authorization = key
            .map(|k| HeaderValue::from_str(&format!("Bearer {k}")))
            .transpose()
            .map_err(|_| {
                format!(
                    "upstream '{}': the API key is not a valid header value",
                    u.name
                )
            })?
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        let mut headers = Vec::new();
        for (k, v) in &u.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| format!("upstream '{}': bad header name '{k}'", u.name))?;
            let value = HeaderValue::from_str(v)
                .map_err(|_| format!("upstream '{}': bad value for header '{k}'", u.name))?;
            headers.push((name, value));
        }
        // A bare host means the conventional OpenAI path.
        if uri.path().trim_end_matches('/').is_empty() {
            base.push_str("/v1");
        }
        Ok(Upstream {
            name: u.name.clone(),
            base,
            authorization,
            headers,
            timeout: Duration::from_millis(u.timeout_ms.max(1)),
            stream_idle_timeout: Duration::from_millis(u.stream_idle_timeout_ms.max(1)),
            client: client(Duration::from_millis(u.connect_timeout_ms.max(1)))?,
        })
    }

    /// The URL of an endpoint under the base URL, e.g. `chat/completions`.
    pub fn url(&self, path: &str) -> Result<Uri, http::uri::InvalidUri> {
        format!("{}/{}", self.base, path).parse()
    }
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The authorization header is never printed.
        f.debug_struct("Upstream")
            .field("name", &self.name)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
pub struct Upstreams {
    list: Vec<Arc<Upstream>>,
    exact: HashMap<String, usize>,
    prefixes: Vec<(String, usize)>,
    default: Option<usize>,
}

fn client(connect_timeout: Duration) -> Result<HttpClient, String> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(256)
        .build(https))
}

impl Upstreams {
    pub fn from_config(
        ups: &[UpstreamConfig],
        routing: &RoutingConfig,
    ) -> Result<Upstreams, String> {
        let mut list = Vec::new();
        let mut by_name = HashMap::new();
        for u in ups {
            if by_name.contains_key(&u.name) {
                return Err(format!("upstream '{}' is defined twice", u.name));
            }
            by_name.insert(u.name.clone(), list.len());
            list.push(Arc::new(Upstream::from_config(u)?));
        }
        let find = |name: &str| {
            by_name.get(name).copied().ok_or_else(|| {
                format!("the model map names upstream '{name}', which is not defined")
            })
        };
        let mut exact = HashMap::new();
        let mut prefixes = Vec::new();
        for (model, up) in &routing.models {
            let i = find(up)?;
            match model.strip_suffix('*') {
                Some(prefix) => prefixes.push((prefix.to_owned(), i)),
                None => {
                    exact.insert(model.clone(), i);
                }
            }
        }
        // Longest prefix wins.
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        // Without a model map everything goes to the first upstream (the quick start). With a
        // map, unmapped models are refused unless a default upstream is named explicitly.
        let default = match &routing.default_upstream {
            Some(name) => Some(find(name)?),
            None if list.is_empty() || !routing.models.is_empty() => None,
            None => Some(0),
        };
        Ok(Upstreams {
            list,
            exact,
            prefixes,
            default,
        })
    }

    /// The upstream serving `model`, if any.
    pub fn resolve(&self, model: &str) -> Option<&Arc<Upstream>> {
        let i = self.exact.get(model).copied().or_else(|| {
            self.prefixes
                .iter()
                .find(|(p, _)| model.starts_with(p.as_str()))
                .map(|(_, i)| *i)
                .or(self.default)
        })?;
        self.list.get(i)
    }

    /// Every configured upstream.
    pub fn all(&self) -> &[Arc<Upstream>] {
        &self.list
    }

    pub fn default_upstream(&self) -> Option<&Arc<Upstream>> {
        self.default.and_then(|i| self.list.get(i))
    }

    /// Model names the map declares explicitly (for `/v1/models`).
    pub fn declared_models(&self) -> Vec<(&str, &str)> {
        let mut v: Vec<(&str, &str)> = self
            .exact
            .iter()
            .filter_map(|(m, i)| self.list.get(*i).map(|u| (m.as_str(), u.name.as_str())))
            .collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(name: &str, url: &str) -> UpstreamConfig {
        UpstreamConfig {
            name: name.into(),
            base_url: url.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn resolves_exact_prefix_and_default() {
        let mut routing = RoutingConfig {
            default_upstream: Some("a".into()),
            ..Default::default()
        };
        routing.models.insert("gpt-4o".into(), "b".into());
        routing.models.insert("claude-*".into(), "c".into());
        routing.models.insert("claude-3-*".into(), "b".into());
        let u = Upstreams::from_config(
            &[
                up("a", "http://127.0.0.1:1/"),
                up("b", "http://127.0.0.1:2/v1"),
                up("c", "https://x.test/api/openai"),
            ],
            &routing,
        )
        .unwrap();
        assert_eq!(u.resolve("gpt-4o").unwrap().name, "b");
        assert_eq!(u.resolve("claude-3-opus").unwrap().name, "b");
        assert_eq!(u.resolve("claude-sonnet").unwrap().name, "c");
        assert_eq!(
            u.resolve("claude-sonnet")
                .unwrap()
                .url("models")
                .unwrap()
                .to_string(),
            "https://x.test/api/openai/models"
        );
        assert_eq!(u.resolve("other").unwrap().name, "a");
        assert_eq!(
            u.resolve("x")
                .unwrap()
                .url("chat/completions")
                .unwrap()
                .to_string(),
            "http://127.0.0.1:1/v1/chat/completions"
        );
    }

    #[tokio::test]
    async fn a_model_map_without_default_refuses_unknown_models() {
        let mut routing = RoutingConfig::default();
        routing.models.insert("gpt-4o".into(), "b".into());
        let u =
            Upstreams::from_config(&[up("a", "http://x"), up("b", "http://y")], &routing).unwrap();
        assert_eq!(u.resolve("gpt-4o").unwrap().name, "b");
        assert!(u.resolve("other").is_none());
        let open =
            Upstreams::from_config(&[up("a", "http://x")], &RoutingConfig::default()).unwrap();
        assert_eq!(open.resolve("anything").unwrap().name, "a");
    }

    #[tokio::test]
    async fn bad_configs_are_explained() {
        let mut routing = RoutingConfig::default();
        assert!(
            Upstreams::from_config(&[up("a", "ftp://x")], &routing)
                .unwrap_err()
                .contains("http://")
        );
        assert!(
            Upstreams::from_config(&[up("a", "not a url")], &routing)
                .unwrap_err()
                .contains("not a URL")
        );
        assert!(
            Upstreams::from_config(&[up("a", "http://x"), up("a", "http://y")], &routing)
                .unwrap_err()
                .contains("twice")
        );
        routing.models.insert("m".into(), "zzz".into());
        assert!(
            Upstreams::from_config(&[up("a", "http://x")], &routing)
                .unwrap_err()
                .contains("zzz")
        );
        let mut cfg = up("a", "http://x");
        cfg.api_key_env = Some("DOWNSHIFT_TEST_SURELY_UNSET_VAR".into());
        assert!(
            Upstreams::from_config(&[cfg], &RoutingConfig::default())
                .unwrap_err()
                .contains("DOWNSHIFT_TEST_SURELY_UNSET_VAR")
        );
    }
}
