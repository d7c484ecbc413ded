//! Limits and spend: requests and tokens per minute, USD per day and per month, for each API key
//! and each agent; and the spend report (by key, agent, model or task) read from the call log.
//!
//! The counters the gateway checks live in memory (one short lock per request, never the
//! database): at start they are filled from the call log's metadata since the month began, and
//! afterwards each answered call adds its tokens and cost. The calls themselves reach the
//! database asynchronously through the log writer, which is what makes the spend durable.

use crate::SetupError;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use chrono::{Datelike, TimeZone, Utc};
use downshift_api::Usage;
use downshift_store::{CallFilter, CallMeta, Store, TASK_TAG};
use serde::{Deserialize, Serialize};

use crate::GatewayError;

/// The limits of one API key or agent; 0 means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limit {
    /// Requests accepted per minute (a fixed one-minute window).
    pub requests_per_minute: u64,
    /// Tokens (prompt + completion) per minute; a request is refused once the minute's
    /// answered calls used this many.
    pub tokens_per_minute: u64,
    /// USD per UTC day, priced from the price table.
    pub usd_per_day: f64,
    /// USD per UTC calendar month.
    pub usd_per_month: f64,
}

impl Limit {
    fn is_none(&self) -> bool {
        *self == Limit::default()
    }
}

/// `[limits]` of `downshift.toml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Every API key without an entry of its own in `keys`.
    pub per_key: Limit,
    /// API key name or id → its limits.
    pub keys: BTreeMap<String, Limit>,
    /// Agent (as sent in `x-downshift-agent`, or bound to its key) → its limits.
    pub agents: BTreeMap<String, Limit>,
}

/// Model → USD per million prompt and completion tokens; a key is a model name, a `prefix*`, or
/// `*` for every other model. The longest match wins.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    entries: Vec<(String, f64, f64)>,
}

impl PriceTable {
    /// A table of `(model or pattern, USD per million prompt tokens, USD per million
    /// completion tokens)`.
    pub fn new(entries: impl IntoIterator<Item = (String, f64, f64)>) -> PriceTable {
        let mut entries: Vec<(String, f64, f64)> = entries.into_iter().collect();
        // Exact names first, then longer prefixes; `*` last.
        entries.sort_by_key(|(k, _, _)| {
            (
                k.ends_with('*'),
                std::cmp::Reverse(k.trim_end_matches('*').len()),
            )
        });
        PriceTable { entries }
    }

    /// USD for `prompt_tokens` and `completion_tokens` on `model` (0 when no price applies).
    pub fn cost(&self, model: &str, prompt_tokens: u64, completion_tokens: u64) -> f64 {
        let price = self
            .entries
            .iter()
            .find(|(k, _, _)| match k.strip_suffix('*') {
                Some(prefix) => model.starts_with(prefix),
                None => k == model,
            });
        price.map_or(0.0, |(_, p, c)| {
            (prompt_tokens as f64 * p + completion_tokens as f64 * c) / 1e6
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    Key(String),
    Agent(String),
}

impl Subject {
    fn describe(&self) -> String {
        match self {
            Subject::Key(id) => format!("API key {id}"),
            Subject::Agent(a) => format!("agent {a}"),
        }
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct Counter {
    minute: i64,
    requests: u64,
    tokens: u64,
    day: i64,
    usd_day: f64,
    month: i64,
    usd_month: f64,
}

/// UTC minute, day and month (year × 12 + month) of a time in milliseconds.
fn periods(ms: i64) -> (i64, i64, i64) {
    let month = Utc
        .timestamp_millis_opt(ms)
        .single()
        .map_or(0, |t| i64::from(t.year()) * 12 + i64::from(t.month0()));
    (ms.div_euclid(60_000), ms.div_euclid(86_400_000), month)
}

/// The first millisecond of the UTC month holding `ms`.
pub fn month_start_ms(ms: i64) -> i64 {
    Utc.timestamp_millis_opt(ms)
        .single()
        .and_then(|t| {
            Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0)
                .single()
        })
        .map_or(0, |t| t.timestamp_millis())
}

impl Counter {
    fn roll(&mut self, now_ms: i64) {
        let (minute, day, month) = periods(now_ms);
        if minute != self.minute {
            self.minute = minute;
            self.requests = 0;
            self.tokens = 0;
        }
        if day != self.day {
            self.day = day;
            self.usd_day = 0.0;
        }
        if month != self.month {
            self.month = month;
            self.usd_month = 0.0;
        }
    }
}

/// The limits in force and the counters they are checked against.
pub struct Limiter {
    per_key: Limit,
    keys: HashMap<String, Limit>,
    agents: HashMap<String, Limit>,
    prices: PriceTable,
    counters: Mutex<HashMap<Subject, Counter>>,
    enabled: bool,
}

impl Limiter {
    /// From the configuration, with key names resolved to ids (`keys`: every known key's name
    /// and id) and agent names turned into their pseudonyms.
    pub fn new(
        cfg: &LimitsConfig,
        prices: PriceTable,
        key_ids: &[(String, String)],
        pseudonym: impl Fn(&str) -> String,
    ) -> Result<Limiter, SetupError> {
        let mut keys = HashMap::new();
        for (name_or_id, limit) in &cfg.keys {
            let ids: Vec<&String> = key_ids
                .iter()
                .filter(|(name, id)| name == name_or_id || id == name_or_id)
                .map(|(_, id)| id)
                .collect();
            if ids.is_empty() {
                return Err(SetupError::Config(format!(
                    "limits.keys: no API key is named or has the id '{name_or_id}' (downshift keys list)"
                )));
            }
            for id in ids {
                keys.insert(id.clone(), *limit);
            }
        }
        let agents: HashMap<String, Limit> =
            cfg.agents.iter().map(|(a, l)| (pseudonym(a), *l)).collect();
        let enabled = !cfg.per_key.is_none()
            || keys.values().any(|l| !l.is_none())
            || agents.values().any(|l| !l.is_none());
        Ok(Limiter {
            per_key: cfg.per_key,
            keys,
            agents,
            prices,
            counters: Mutex::new(HashMap::new()),
            enabled,
        })
    }

    /// A limiter that limits nothing.
    pub fn none() -> Limiter {
        Limiter {
            per_key: Limit::default(),
            keys: HashMap::new(),
            agents: HashMap::new(),
            prices: PriceTable::default(),
            counters: Mutex::new(HashMap::new()),
            enabled: false,
        }
    }

    /// The same limiter pricing with `prices` (for the spend report).
    pub fn with_prices(mut self, prices: PriceTable) -> Limiter {
        self.prices = prices;
        self
    }

    /// The price table spend is counted in.
    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    /// Whether any limit is set (otherwise nothing is counted).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    fn subjects(&self, key_id: Option<&str>, agent: Option<&str>) -> Vec<(Subject, Limit)> {
        let mut out = Vec::with_capacity(2);
        if let Some(id) = key_id {
            let limit = self.keys.get(id).copied().unwrap_or(self.per_key);
            if !limit.is_none() {
                out.push((Subject::Key(id.to_owned()), limit));
            }
        }
        if let Some(a) = agent
            && let Some(limit) = self.agents.get(a)
        {
            out.push((Subject::Agent(a.to_owned()), *limit));
        }
        out
    }

    /// Admits a request (and counts it) or refuses it with an OpenAI-style 429.
    pub fn admit(
        &self,
        key_id: Option<&str>,
        agent: Option<&str>,
        now_ms: i64,
    ) -> Result<(), GatewayError> {
        let subjects = self.subjects(key_id, agent);
        if subjects.is_empty() {
            return Ok(());
        }
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        for (subject, l) in &subjects {
            let c = counters.entry(subject.clone()).or_default();
            c.roll(now_ms);
            let who = subject.describe();
            if l.requests_per_minute > 0 && c.requests >= l.requests_per_minute {
                return Err(GatewayError::RateLimited(format!(
                    "{who} is over its limit of {} requests per minute",
                    l.requests_per_minute
                )));
            }
            if l.tokens_per_minute > 0 && c.tokens >= l.tokens_per_minute {
                return Err(GatewayError::RateLimited(format!(
                    "{who} is over its limit of {} tokens per minute",
                    l.tokens_per_minute
                )));
            }
            if l.usd_per_day > 0.0 && c.usd_day >= l.usd_per_day {
                return Err(GatewayError::QuotaExceeded(format!(
                    "{who} has spent its budget of {:.2} USD for today (UTC)",
                    l.usd_per_day
                )));
            }
            if l.usd_per_month > 0.0 && c.usd_month >= l.usd_per_month {
                return Err(GatewayError::QuotaExceeded(format!(
                    "{who} has spent its budget of {:.2} USD for this month (UTC)",
                    l.usd_per_month
                )));
            }
        }
        for (subject, _) in &subjects {
            if let Some(c) = counters.get_mut(subject) {
                c.requests += 1;
            }
        }
        Ok(())
    }

    /// Adds an answered call's tokens and cost to its key's and agent's counters.
    pub fn record(
        &self,
        key_id: Option<&str>,
        agent: Option<&str>,
        model: &str,
        usage: Usage,
        at_ms: i64,
        now_ms: i64,
    ) {
        let subjects = self.subjects(key_id, agent);
        if subjects.is_empty() {
            return;
        }
        let usd = self
            .prices
            .cost(model, usage.prompt_tokens, usage.completion_tokens);
        let (minute, day, month) = periods(at_ms);
        let mut counters = self.counters.lock().unwrap_or_else(|p| p.into_inner());
        for (subject, _) in subjects {
            let c = counters.entry(subject).or_default();
            c.roll(now_ms);
            if c.minute == minute {
                c.tokens += usage.prompt_tokens + usage.completion_tokens;
            }
            if c.day == day {
                c.usd_day += usd;
            }
            if c.month == month {
                c.usd_month += usd;
            }
        }
    }

    /// Fills the counters from the log's calls of this month (at start, before serving).
    pub fn load(&self, store: &dyn Store, now_ms: i64) -> Result<(), SetupError> {
        if !self.enabled {
            return Ok(());
        }
        let calls = store
            .list_calls(&CallFilter {
                since_ms: Some(month_start_ms(now_ms)),
                ..Default::default()
            })
            .map_err(|e| {
                SetupError::Store(format!(
                    "cannot read this month's spend from the call log: {e}"
                ))
            })?;
        for m in &calls {
            if let Some(usage) = usage_of(m) {
                self.record(
                    m.api_key_id.as_deref(),
                    m.agent.as_deref(),
                    &m.model,
                    usage,
                    m.ts_ms,
                    now_ms,
                );
            }
        }
        Ok(())
    }
}

fn usage_of(m: &CallMeta) -> Option<Usage> {
    if m.prompt_tokens.is_none() && m.completion_tokens.is_none() {
        return None;
    }
    Some(Usage {
        prompt_tokens: m.prompt_tokens.unwrap_or(0),
        completion_tokens: m.completion_tokens.unwrap_or(0),
    })
}

/// What spend is grouped by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpendBy {
    /// The API key id the call was made with.
    Key,
    /// The agent's pseudonym.
    Agent,
    /// The model the request named.
    Model,
    /// The discovered task the gateway classified the call into ([`TASK_TAG`]).
    Task,
}

impl std::str::FromStr for SpendBy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "key" => Ok(SpendBy::Key),
            "agent" => Ok(SpendBy::Agent),
            "model" => Ok(SpendBy::Model),
            "task" => Ok(SpendBy::Task),
            other => Err(format!(
                "cannot group spend by '{other}' (key, agent, model or task)"
            )),
        }
    }
}

/// One group's spend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpendRow {
    /// The key id, agent pseudonym, model or task; `-` for calls without one.
    pub group: String,
    /// Calls in the group.
    pub calls: u64,
    /// Their prompt tokens.
    pub prompt_tokens: u64,
    /// Their completion tokens.
    pub completion_tokens: u64,
    /// Their cost in USD, from the price table.
    pub usd: f64,
}

/// Spend of the calls logged since `since_ms`, grouped, most expensive first.
pub fn spend_report(
    store: &dyn Store,
    since_ms: i64,
    by: SpendBy,
    prices: &PriceTable,
) -> Result<Vec<SpendRow>, downshift_store::StoreError> {
    let calls = store.list_calls(&CallFilter {
        since_ms: Some(since_ms),
        ..Default::default()
    })?;
    let mut groups: BTreeMap<String, SpendRow> = BTreeMap::new();
    for m in &calls {
        let group = match by {
            SpendBy::Key => m.api_key_id.clone(),
            SpendBy::Agent => m.agent.clone(),
            SpendBy::Model => Some(m.model.clone()),
            SpendBy::Task => m.tags.get(TASK_TAG).cloned(),
        }
        .unwrap_or_else(|| "-".into());
        let row = groups.entry(group.clone()).or_insert_with(|| SpendRow {
            group,
            calls: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            usd: 0.0,
        });
        row.calls += 1;
        if let Some(u) = usage_of(m) {
            row.prompt_tokens += u.prompt_tokens;
            row.completion_tokens += u.completion_tokens;
            row.usd += prices.cost(&m.model, u.prompt_tokens, u.completion_tokens);
        }
    }
    let mut rows: Vec<SpendRow> = groups.into_values().collect();
    rows.sort_by(|a, b| b.usd.total_cmp(&a.usd).then(a.group.cmp(&b.group)));
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;
    // 2026-12-07 10:00 UTC.
    const T: i64 = 1_796_637_600_000;

    fn limiter(cfg: LimitsConfig) -> Limiter {
        let prices = PriceTable::new([
            ("gpt-4o*".to_owned(), 2.5, 10.0),
            ("gpt-4o-mini".to_owned(), 0.15, 0.6),
            ("*".to_owned(), 1.0, 1.0),
        ]);
        let keys = [("ci".to_owned(), "key1".to_owned())];
        Limiter::new(&cfg, prices, &keys, |a| format!("agt_{a}")).unwrap()
    }

    #[test]
    fn prices_take_the_longest_match() {
        let p = limiter(LimitsConfig::default()).prices;
        assert_eq!(p.cost("gpt-4o-mini", 1_000_000, 0), 0.15);
        assert_eq!(p.cost("gpt-4o-2024", 0, 1_000_000), 10.0);
        assert_eq!(p.cost("other", 500_000, 500_000), 1.0);
        assert_eq!(PriceTable::default().cost("x", 10, 10), 0.0);
    }

    #[test]
    fn requests_per_minute_reset_each_minute() {
        let mut cfg = LimitsConfig::default();
        cfg.keys.insert(
            "ci".into(),
            Limit {
                requests_per_minute: 2,
                ..Default::default()
            },
        );
        let l = limiter(cfg);
        assert!(l.enabled());
        assert!(l.admit(Some("key1"), None, T).is_ok());
        assert!(l.admit(Some("key1"), None, T + 1).is_ok());
        let e = l.admit(Some("key1"), None, T + 2).unwrap_err();
        assert_eq!(e.status().as_u16(), 429);
        assert!(e.body().to_json().contains("rate_limit_exceeded"));
        // Another key, and no key at all, are not limited by this entry.
        assert!(l.admit(Some("key2"), None, T + 2).is_ok());
        assert!(l.admit(None, None, T + 2).is_ok());
        assert!(l.admit(Some("key1"), None, T + MIN).is_ok());
    }

    #[test]
    fn budgets_and_tokens_count_answered_calls() {
        let mut cfg = LimitsConfig {
            per_key: Limit {
                tokens_per_minute: 1000,
                ..Default::default()
            },
            ..Default::default()
        };
        cfg.agents.insert(
            "bot".into(),
            Limit {
                usd_per_day: 1.0,
                ..Default::default()
            },
        );
        let l = limiter(cfg);
        let u = |p, c| Usage {
            prompt_tokens: p,
            completion_tokens: c,
        };
        assert!(l.admit(Some("k"), Some("agt_bot"), T).is_ok());
        l.record(Some("k"), Some("agt_bot"), "gpt-4o", u(600, 500), T, T);
        let e = l.admit(Some("k"), None, T + 1).unwrap_err();
        assert!(e.to_string().contains("tokens per minute"), "{e}");
        // 100k output tokens of gpt-4o cost 1 USD: the agent's day is spent.
        l.record(None, Some("agt_bot"), "gpt-4o", u(0, 100_000), T, T);
        let e = l.admit(None, Some("agt_bot"), T + MIN).unwrap_err();
        assert!(e.body().to_json().contains("insufficient_quota"));
        // The next UTC day starts afresh.
        assert!(l.admit(None, Some("agt_bot"), T + 14 * 60 * MIN).is_ok());
    }

    #[test]
    fn unknown_key_names_are_refused_and_months_start_on_the_first() {
        let mut cfg = LimitsConfig::default();
        cfg.keys.insert("nobody".into(), Limit::default());
        assert!(
            Limiter::new(&cfg, PriceTable::default(), &[], |a| a.to_owned())
                .err()
                .unwrap()
                .to_string()
                .contains("nobody")
        );
        assert!(!Limiter::none().enabled());
        // 2026-12-01 00:00 UTC.
        assert_eq!(month_start_ms(T), 1_796_083_200_000);
    }
}
