//! The configured upstreams (any OpenAI-compatible base URL), the model → deployments map, and
//! the order in which deployments and fallback models are tried when one fails.

use crate::SetupError;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Uri};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::{Balance, RoutingConfig, UpstreamConfig};

pub type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

pub struct Upstream {
    pub name: String,
    base: String,
    pub authorization: Option<HeaderValue>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub timeout: Duration,
    pub stream_idle_timeout: Duration,
    pub client: HttpClient,
    /// Requests in flight (counted only for `least_busy` balancing).
    in_flight: AtomicUsize,
}

impl Upstream {
    /// One upstream from its configuration: URL checked, key read, headers parsed.
    pub fn from_config(u: &UpstreamConfig) -> Result<Upstream, SetupError> {
        let mut base = u.base_url.trim_end_matches('/').to_owned();
        let uri: Uri = base.parse().map_err(|e| {
            SetupError::Config(format!(
                "upstream '{}': base_url '{}' is not a URL: {e}",
                u.name, u.base_url
            ))
        })?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(SetupError::Config(format!(
                "upstream '{}': base_url '{}' must be an http:// or https:// URL",
                u.name, u.base_url
            )));
        }
        let key = match (&u.api_key, &u.api_key_env) {
            (Some(k), _) => Some(k.clone()),
            (None, Some(var)) => Some(std::env::var(var).map_err(|_| {
                SetupError::Config(format!(
                    "upstream '{}': environment variable {var} (api_key_env) is not set",
                    u.name
                ))
            })?),
            (None, None) => None,
        };
        let authorization = key
            .map(|k| HeaderValue::from_str(&format!("Bearer {k}")))
            .transpose()
            .map_err(|_| {
                SetupError::Config(format!(
                    "upstream '{}': the API key is not a valid header value",
                    u.name
                ))
            })?
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        let mut headers = Vec::new();
        for (k, v) in &u.headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| {
                SetupError::Config(format!("upstream '{}': bad header name '{k}'", u.name))
            })?;
            let value = HeaderValue::from_str(v).map_err(|_| {
                SetupError::Config(format!("upstream '{}': bad value for header '{k}'", u.name))
            })?;
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
            in_flight: AtomicUsize::new(0),
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

/// The deployments of one model (indices into the upstream list) and the turn counter that
/// shares requests between them.
#[derive(Debug)]
struct Group {
    members: Vec<usize>,
    next: AtomicUsize,
}

/// When a failed attempt is tried again.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Further rounds over the deployments and fallbacks after all failed.
    pub retries: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl RetryPolicy {
    /// The wait before round `round` (1 = the first further round): the backoff doubled each
    /// round, capped, with jitter (half of it fixed, half random), or the upstream's
    /// `Retry-After` when it names a longer wait (still capped).
    pub fn wait(&self, round: u32, retry_after: Option<Duration>) -> Duration {
        let doubled = self
            .backoff
            .saturating_mul(1u32 << (round.saturating_sub(1)).min(20));
        let cap = doubled.min(self.max_backoff);
        let half = cap / 2;
        let jitter = half.mul_f64(rand::random::<f64>());
        let wait = half + jitter;
        match retry_after {
            Some(r) if r > wait => r.min(self.max_backoff),
            _ => wait,
        }
    }
}

/// One place a request can be sent: the upstream, and the model name to put in the request
/// when it is a fallback model (`None`: the model the client asked for).
#[derive(Debug, Clone)]
pub struct Candidate {
    pub model: Option<String>,
    pub upstream: Arc<Upstream>,
}

/// Counts a request in flight on an upstream until dropped (`least_busy` balancing).
#[derive(Debug)]
pub struct Busy(Arc<Upstream>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

#[derive(Debug)]
pub struct Upstreams {
    list: Vec<Arc<Upstream>>,
    groups: Vec<Group>,
    exact: HashMap<String, usize>,
    prefixes: Vec<(String, usize)>,
    default: Option<usize>,
    fallbacks: HashMap<String, Vec<String>>,
    balance: Balance,
    retry: RetryPolicy,
}

fn client(connect_timeout: Duration) -> Result<HttpClient, SetupError> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    http.enforce_http(false);
    http.set_connect_timeout(Some(connect_timeout));
    http.set_keepalive(Some(Duration::from_secs(60)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
        .map_err(|e| SetupError::Runtime(format!("TLS setup failed: {e}")))?
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
    ) -> Result<Upstreams, SetupError> {
        let mut list = Vec::new();
        let mut by_name = HashMap::new();
        for u in ups {
            if by_name.contains_key(&u.name) {
                return Err(SetupError::Config(format!(
                    "upstream '{}' is defined twice",
                    u.name
                )));
            }
            by_name.insert(u.name.clone(), list.len());
            list.push(Arc::new(Upstream::from_config(u)?));
        }
        let find = |name: &str| {
            by_name.get(name).copied().ok_or_else(|| {
                SetupError::Config(format!(
                    "the model map names upstream '{name}', which is not defined"
                ))
            })
        };
        let mut groups: Vec<Group> = Vec::new();
        // One group per distinct list of deployments, so that a single upstream named by many
        // models (or by the default) shares one turn counter.
        let mut group_of = |members: Vec<usize>| -> usize {
            if let Some(i) = groups.iter().position(|g| g.members == members) {
                return i;
            }
            groups.push(Group {
                members,
                next: AtomicUsize::new(0),
            });
            groups.len() - 1
        };
        let mut exact = HashMap::new();
        let mut prefixes = Vec::new();
        for (model, deployments) in &routing.models {
            let names = deployments.names();
            if names.is_empty() {
                return Err(SetupError::Config(format!(
                    "model '{model}' names no upstream"
                )));
            }
            let members = names
                .iter()
                .map(|n| find(n))
                .collect::<Result<Vec<_>, _>>()?;
            let g = group_of(members);
            match model.strip_suffix('*') {
                Some(prefix) => prefixes.push((prefix.to_owned(), g)),
                None => {
                    exact.insert(model.clone(), g);
                }
            }
        }
        // Longest prefix wins.
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        // Without a model map everything goes to the first upstream (the quick start). With a
        // map, unmapped models are refused unless a default upstream is named explicitly.
        let default = match &routing.default_upstream {
            Some(name) => Some(group_of(vec![find(name)?])),
            None if list.is_empty() || !routing.models.is_empty() => None,
            None => Some(group_of(vec![0])),
        };
        let upstreams = Upstreams {
            list,
            groups,
            exact,
            prefixes,
            default,
            fallbacks: routing
                .fallbacks
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            balance: routing.balance,
            retry: RetryPolicy {
                retries: routing.retries,
                backoff: Duration::from_millis(routing.retry_backoff_ms),
                max_backoff: Duration::from_millis(routing.retry_max_backoff_ms),
            },
        };
        for (model, fallbacks) in &upstreams.fallbacks {
            for f in fallbacks {
                if upstreams.group(f).is_none() {
                    return Err(SetupError::Config(format!(
                        "routing.fallbacks: '{f}' (a fallback of '{model}') is served by no upstream"
                    )));
                }
            }
        }
        Ok(upstreams)
    }

    fn group(&self, model: &str) -> Option<&Group> {
        let i = self.exact.get(model).copied().or_else(|| {
            self.prefixes
                .iter()
                .find(|(p, _)| model.starts_with(p.as_str()))
                .map(|(_, i)| *i)
                .or(self.default)
        })?;
        self.groups.get(i)
    }

    /// Where a request starts among the group's deployments (a position in `members`).
    fn start(&self, g: &Group) -> usize {
        let n = g.members.len();
        if n == 1 || self.balance == Balance::Ordered {
            return 0;
        }
        let turn = g.next.fetch_add(1, Ordering::Relaxed) % n;
        if self.balance == Balance::RoundRobin {
            return turn;
        }
        // Least busy: the fewest in flight, ties broken by turn.
        (0..n)
            .map(|k| (turn + k) % n)
            .min_by_key(|&p| {
                self.list
                    .get(g.members[p])
                    .map_or(usize::MAX, |u| u.in_flight.load(Ordering::Relaxed))
            })
            .unwrap_or(turn)
    }

    /// The upstream a request for `model` is sent to first, if any.
    pub fn resolve(&self, model: &str) -> Option<&Arc<Upstream>> {
        let g = self.group(model)?;
        self.list.get(g.members[self.start(g)])
    }

    /// Every place a request for `model` can go, in the order they are tried once `first` (where
    /// it was sent) failed: `first`, the model's other deployments in turn, then each fallback
    /// model's deployments. Built only after a failure.
    pub fn plan(&self, model: &str, first: &Arc<Upstream>) -> Vec<Candidate> {
        let mut out = vec![Candidate {
            model: None,
            upstream: first.clone(),
        }];
        let rotation = |g: &Group, from: usize| -> Vec<Arc<Upstream>> {
            let n = g.members.len();
            (0..n)
                .filter_map(|k| self.list.get(g.members[(from + k) % n]).cloned())
                .collect()
        };
        if let Some(g) = self.group(model) {
            let at = g
                .members
                .iter()
                .position(|&i| self.list.get(i).is_some_and(|u| Arc::ptr_eq(u, first)))
                .unwrap_or(0);
            out.extend(
                rotation(g, at + 1)
                    .into_iter()
                    .filter(|u| !Arc::ptr_eq(u, first))
                    .map(|upstream| Candidate {
                        model: None,
                        upstream,
                    }),
            );
        }
        for f in self.fallbacks.get(model).into_iter().flatten() {
            if let Some(g) = self.group(f) {
                let from = self.start(g);
                out.extend(rotation(g, from).into_iter().map(|upstream| Candidate {
                    model: Some(f.clone()),
                    upstream,
                }));
            }
        }
        out
    }

    /// Whether a failed request for `model` has anywhere else to go (or is retried at all).
    pub fn can_retry(&self, model: &str) -> bool {
        self.retry.retries > 0
            || self.fallbacks.contains_key(model)
            || self.group(model).is_some_and(|g| g.members.len() > 1)
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Counts a request in flight on `u` while the result lives (only when balancing by load).
    pub fn busy(&self, u: &Arc<Upstream>) -> Option<Busy> {
        if self.balance != Balance::LeastBusy {
            return None;
        }
        u.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Busy(u.clone()))
    }

    /// Every configured upstream.
    pub fn all(&self) -> &[Arc<Upstream>] {
        &self.list
    }

    pub fn default_upstream(&self) -> Option<&Arc<Upstream>> {
        self.default
            .and_then(|i| self.groups.get(i))
            .and_then(|g| self.list.get(g.members[0]))
    }

    /// Whether `model` is named by the map (exactly or by a pattern), not only by the default.
    pub fn is_mapped(&self, model: &str) -> bool {
        self.exact.contains_key(model)
            || self
                .prefixes
                .iter()
                .any(|(p, _)| model.starts_with(p.as_str()))
    }

    /// Model names the map declares explicitly, with their deployments' names (for
    /// `/v1/models`).
    pub fn declared_models(&self) -> Vec<(&str, String)> {
        let mut v: Vec<(&str, String)> = self
            .exact
            .iter()
            .filter_map(|(m, g)| Some((m.as_str(), self.owners(self.groups.get(*g)?))))
            .collect();
        v.sort();
        v
    }

    /// The map's prefix patterns (without the `*`) with the upstreams serving them.
    pub fn patterns(&self) -> Vec<(&str, Vec<Arc<Upstream>>)> {
        self.prefixes
            .iter()
            .filter_map(|(p, g)| {
                let g = self.groups.get(*g)?;
                let ups = g
                    .members
                    .iter()
                    .filter_map(|&i| self.list.get(i).cloned())
                    .collect();
                Some((p.as_str(), ups))
            })
            .collect()
    }

    fn owners(&self, g: &Group) -> String {
        g.members
            .iter()
            .filter_map(|&i| self.list.get(i).map(|u| u.name.as_str()))
            .collect::<Vec<_>>()
            .join(",")
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

    use crate::config::Deployments;

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

    fn names(plan: &[Candidate]) -> Vec<(Option<&str>, &str)> {
        plan.iter()
            .map(|c| (c.model.as_deref(), c.upstream.name.as_str()))
            .collect()
    }

    #[tokio::test]
    async fn deployments_take_turns_and_a_failure_walks_the_rest_then_the_fallbacks() {
        let mut routing = RoutingConfig::default();
        routing.models.insert(
            "gpt-4o".into(),
            Deployments::Many(vec!["a".into(), "b".into(), "c".into()]),
        );
        routing.models.insert("mini".into(), "c".into());
        routing
            .fallbacks
            .insert("gpt-4o".into(), vec!["mini".into()]);
        let ups = [
            up("a", "http://x"),
            up("b", "http://y"),
            up("c", "http://z"),
        ];
        let u = Upstreams::from_config(&ups, &routing).unwrap();
        let turns: Vec<&str> = (0..4)
            .map(|_| u.resolve("gpt-4o").unwrap().name.as_str())
            .collect();
        assert_eq!(turns, ["a", "b", "c", "a"]);
        let first = u.resolve("gpt-4o").unwrap().clone();
        assert_eq!(first.name, "b");
        assert_eq!(
            names(&u.plan("gpt-4o", &first)),
            [(None, "b"), (None, "c"), (None, "a"), (Some("mini"), "c")]
        );
        assert!(u.can_retry("gpt-4o"));
        assert!(!u.can_retry("mini"));

        routing.balance = Balance::Ordered;
        let u = Upstreams::from_config(&ups, &routing).unwrap();
        assert!((0..3).all(|_| u.resolve("gpt-4o").unwrap().name == "a"));

        // Least busy: the deployment with fewer requests in flight goes first.
        routing.balance = Balance::LeastBusy;
        let u = Upstreams::from_config(&ups, &routing).unwrap();
        let a = u.resolve("gpt-4o").unwrap().clone();
        let _held = u.busy(&a);
        let b = u.resolve("gpt-4o").unwrap().clone();
        let _held_b = u.busy(&b);
        let c = u.resolve("gpt-4o").unwrap().clone();
        let mut all = [a.name.clone(), b.name.clone(), c.name.clone()];
        all.sort();
        assert_eq!(all, ["a", "b", "c"]);
        drop(_held);
        assert_eq!(u.resolve("gpt-4o").unwrap().name, a.name);
    }

    #[test]
    fn retry_waits_double_with_jitter_up_to_the_cap() {
        let p = RetryPolicy {
            retries: 5,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(300),
        };
        for _ in 0..20 {
            let w1 = p.wait(1, None);
            assert!(w1 >= Duration::from_millis(50) && w1 <= Duration::from_millis(100));
            let w2 = p.wait(2, None);
            assert!(w2 >= Duration::from_millis(100) && w2 <= Duration::from_millis(200));
            assert!(p.wait(9, None) <= Duration::from_millis(300));
        }
        // Retry-After wins when longer, within the cap.
        assert_eq!(
            p.wait(1, Some(Duration::from_secs(60))),
            Duration::from_millis(300)
        );
    }

    #[tokio::test]
    async fn bad_configs_are_explained() {
        let mut routing = RoutingConfig::default();
        assert!(
            Upstreams::from_config(&[up("a", "ftp://x")], &routing)
                .unwrap_err()
                .to_string()
                .contains("http://")
        );
        assert!(
            Upstreams::from_config(&[up("a", "not a url")], &routing)
                .unwrap_err()
                .to_string()
                .contains("not a URL")
        );
        assert!(
            Upstreams::from_config(&[up("a", "http://x"), up("a", "http://y")], &routing)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        routing.models.insert("m".into(), "zzz".into());
        assert!(
            Upstreams::from_config(&[up("a", "http://x")], &routing)
                .unwrap_err()
                .to_string()
                .contains("zzz")
        );
        let mut cfg = up("a", "http://x");
        cfg.api_key_env = Some("DOWNSHIFT_TEST_SURELY_UNSET_VAR".into());
        assert!(
            Upstreams::from_config(&[cfg], &RoutingConfig::default())
                .unwrap_err()
                .to_string()
                .contains("DOWNSHIFT_TEST_SURELY_UNSET_VAR")
        );
    }
}
