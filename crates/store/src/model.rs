//! The records the store holds.

use std::collections::BTreeMap;

use downshift_api::TaskKind;
use serde::{Deserialize, Serialize};

use crate::Role;

/// Milliseconds since the Unix epoch, UTC.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// How a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallStatus {
    /// The upstream answered with a 2xx and the whole response reached the client.
    Ok,
    /// The upstream answered with an error status; its body reached the client unchanged.
    UpstreamError,
    /// The upstream could not be reached (the client got a 502).
    Unreachable,
    /// The upstream did not answer in time (the client got a 504).
    Timeout,
    /// The client went away, or the upstream stream broke, before the response was complete.
    Interrupted,
}

impl CallStatus {
    /// The stored and displayed name (`ok`, `upstream_error`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            CallStatus::Ok => "ok",
            CallStatus::UpstreamError => "upstream_error",
            CallStatus::Unreachable => "unreachable",
            CallStatus::Timeout => "timeout",
            CallStatus::Interrupted => "interrupted",
        }
    }

    /// The status a name from [`CallStatus::as_str`] stands for; `None` for any other string.
    pub fn parse(s: &str) -> Option<CallStatus> {
        Some(match s {
            "ok" => CallStatus::Ok,
            "upstream_error" => CallStatus::UpstreamError,
            "unreachable" => CallStatus::Unreachable,
            "timeout" => CallStatus::Timeout,
            "interrupted" => CallStatus::Interrupted,
            _ => return None,
        })
    }
}

/// Where a call came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Proxied and logged by the gateway.
    Gateway,
    /// Read from a JSON Lines file by `downshift import`.
    Import,
}

impl Source {
    /// The stored and displayed name: `gateway` or `import`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Gateway => "gateway",
            Source::Import => "import",
        }
    }

    /// The source a stored string names; anything but `import` reads as the gateway.
    pub(crate) fn from_stored(s: &str) -> Source {
        if s == "import" {
            Source::Import
        } else {
            Source::Gateway
        }
    }
}

/// A task centroid as stored: little-endian `f32`s.
pub(crate) fn centroid_bytes(centroid: &[f32]) -> Vec<u8> {
    centroid.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// The centroid [`centroid_bytes`] stored.
pub(crate) fn centroid_from_bytes(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

/// Everything about a call except its payload. Stored in clear so calls can be listed and
/// filtered without the data key; identifiers in it are already pseudonyms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallMeta {
    /// UUIDv7, time-ordered.
    pub id: String,
    /// When the gateway received the call, ms since the Unix epoch; for an import, the record's
    /// timestamp, else the time of the import.
    pub ts_ms: i64,
    /// `chat/completions`, `embeddings`, …
    pub endpoint: String,
    /// The model the request named.
    pub model: String,
    /// Who answered: the configured upstream's name, `local:<name>` for a local model,
    /// `specialist:<name>` for a routed specialist (`None` for an import).
    pub upstream: Option<String>,
    /// How the call ended.
    pub status: CallStatus,
    /// The HTTP status the client got (499 when it went away first); `None` for an imported
    /// record without a response.
    pub http_status: Option<u16>,
    /// Whether the response was streamed (server-sent events).
    pub stream: bool,
    /// Time from sending the upstream request to its last byte.
    pub latency_us: Option<u64>,
    /// Time from sending the upstream request to the first streamed output (content, refusal
    /// or tool-call delta; streams only).
    pub ttft_us: Option<u64>,
    /// Time the gateway itself added to the call.
    pub overhead_us: Option<u64>,
    /// Prompt tokens, from the response's `usage`.
    pub prompt_tokens: Option<u64>,
    /// Completion tokens, from the response's `usage`.
    pub completion_tokens: Option<u64>,
    /// Keyed-HMAC pseudonym of the agent identifier.
    pub agent: Option<String>,
    /// Keyed-HMAC pseudonym of the episode identifier.
    pub episode: Option<String>,
    /// The id of the API key the call was made with (`None`: no known key, or an import).
    pub api_key_id: Option<String>,
    /// Labels: `x-downshift-tags` of the request or an import's metadata, plus the gateway's
    /// own (e.g. [`crate::TASK_TAG`]).
    pub tags: BTreeMap<String, String>,
    /// Where the call came from.
    pub source: Source,
}

impl CallMeta {
    /// A successful chat completion from `source` with nothing else known yet; callers fill
    /// in what they measured.
    pub fn new(
        id: impl Into<String>,
        ts_ms: i64,
        model: impl Into<String>,
        source: Source,
    ) -> CallMeta {
        CallMeta {
            id: id.into(),
            ts_ms,
            endpoint: "chat/completions".into(),
            model: model.into(),
            upstream: None,
            status: CallStatus::Ok,
            http_status: Some(200),
            stream: false,
            latency_us: None,
            ttft_us: None,
            overhead_us: None,
            prompt_tokens: None,
            completion_tokens: None,
            agent: None,
            episode: None,
            api_key_id: None,
            tags: BTreeMap::new(),
            source,
        }
    }
}

/// The raw bytes of a call, exactly as they crossed the wire (a streamed response is stored as
/// the assembled `chat.completion`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CallPayload {
    /// The request body the client sent.
    pub request: Vec<u8>,
    /// The response body the client got (empty when there was none).
    pub response: Vec<u8>,
}

/// A call in memory, not yet sealed.
#[derive(Debug, Clone, PartialEq)]
pub struct CallRecord {
    /// What is stored in clear.
    pub meta: CallMeta,
    /// What is encrypted before it is stored.
    pub payload: CallPayload,
}

/// A call as it is stored: metadata in clear, payload encrypted with the data key `key_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SealedCall {
    /// The call's metadata, in clear (flattened into the JSON object).
    #[serde(flatten)]
    pub meta: CallMeta,
    /// The id of the data key in the key file that sealed the payload.
    pub key_id: String,
    /// The 12-byte AES-GCM nonce (hex in JSON).
    #[serde(with = "hex_bytes")]
    pub nonce: Vec<u8>,
    /// The encrypted payload with its 16-byte tag, the call id bound in as associated data (hex
    /// in JSON).
    #[serde(with = "hex_bytes")]
    pub ciphertext: Vec<u8>,
}

/// Which calls to list, scan or export.
#[derive(Debug, Clone, Default)]
pub struct CallFilter {
    /// Only calls at or after this time (ms since the Unix epoch).
    pub since_ms: Option<i64>,
    /// Only calls before this time (ms since the Unix epoch).
    pub until_ms: Option<i64>,
    /// Only calls to this model.
    pub model: Option<String>,
    /// Only calls that ended this way.
    pub status: Option<CallStatus>,
    /// Already pseudonymised agent.
    pub agent: Option<String>,
    /// Only calls carrying every one of these tags (key, value).
    pub tags: Vec<(String, String)>,
    /// At most this many calls.
    pub limit: Option<usize>,
    /// Only calls assigned to this discovered task.
    pub task: Option<String>,
    /// Keyset pagination for scans: only calls after this (timestamp, id), in scan order.
    pub after: Option<(i64, String)>,
}

/// An API key as stored: only the SHA-256 of the secret is kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    /// UUIDv7.
    pub id: String,
    /// What the person who created it called it (not unique).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// SHA-256 of the secret ([`crate::hash_api_key`]); never serialized.
    #[serde(skip)]
    pub key_hash: Vec<u8>,
    /// The first characters of the key, enough to recognise it.
    pub prefix: String,
    /// Pseudonym of the agent whose calls this key makes, if one was given.
    pub agent: Option<String>,
    /// When it was created, ms since the Unix epoch.
    pub created_ms: i64,
    /// When it was revoked (`None`: still valid), ms since the Unix epoch.
    pub revoked_ms: Option<i64>,
}

/// One line of the audit trail: who read what.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// UUIDv7.
    pub id: String,
    /// When it happened, ms since the Unix epoch.
    pub ts_ms: i64,
    /// Who: `key:<api key id>` on the gateway, `cli:<user>` from the CLI.
    pub actor: String,
    /// What, e.g. `read_raw`, `export_raw`, `export_dataset`, `set_policy`.
    pub action: String,
    /// What it was done to (a call id, a dataset, a task), when there is one thing.
    pub target: Option<String>,
    /// Anything else worth keeping: what it came through (`admin api`, `calls show`), the
    /// file an export went to, the change made.
    pub detail: Option<String>,
}

impl AuditEntry {
    /// An entry stamped now with a fresh id.
    pub fn new(actor: &str, action: &str, target: Option<&str>, detail: Option<&str>) -> Self {
        AuditEntry {
            id: uuid::Uuid::now_v7().to_string(),
            ts_ms: now_ms(),
            actor: actor.to_owned(),
            action: action.to_owned(),
            target: target.map(str::to_owned),
            detail: detail.map(str::to_owned),
        }
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        hex::decode(s).map_err(serde::de::Error::custom)
    }
}

/// A curated dataset snapshot: immutable once written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetMeta {
    /// UUIDv7.
    pub id: String,
    /// Unique, chosen by the user.
    pub name: String,
    /// When it was written, ms since the Unix epoch.
    pub created_ms: i64,
    /// How many examples it holds.
    pub examples: u64,
    /// What produced it: the call filter, the policy, versions.
    pub params: serde_json::Value,
    /// The curation report.
    pub report: serde_json::Value,
}

/// One example of a dataset, encrypted like call payloads (associated data: dataset id and
/// position).
#[derive(Debug, Clone, PartialEq)]
pub struct SealedExample {
    /// Its 0-based position in the dataset.
    pub seq: u64,
    /// The call it was made from.
    pub call_id: String,
    /// The id of the data key that sealed it.
    pub key_id: String,
    /// The 12-byte AES-GCM nonce.
    pub nonce: Vec<u8>,
    /// The encrypted JSON example with its 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl SealedExample {
    /// The associated data binding an example to its dataset and position.
    pub fn aad(dataset_id: &str, seq: u64) -> String {
        format!("{dataset_id}/{seq}")
    }
}

/// A task found by discovery (S3): a recurring job of the agent's, with the statistics and the
/// features later runs need to keep its id stable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskRecord {
    /// Stable across discovery runs while the task persists (`task_…`).
    pub id: String,
    /// Human label, e.g. `tool:get_weather · "forecast city tomorrow"`.
    pub label: String,
    /// When the id was first minted.
    pub created_ms: i64,
    /// The discovery run that last wrote it.
    pub updated_ms: i64,
    /// Calls assigned to it in that run.
    pub calls: u64,
    /// Structural signature (template, tools, output kind) used to match tasks across runs.
    pub signature: String,
    /// Everything else discovery reports: shares, token percentiles, consistency, suitability.
    pub stats: serde_json::Value,
    /// Mean embedding of its calls' variable parts (may be empty).
    pub centroid: Vec<f32>,
}

impl TaskRecord {
    /// The statistics later stages read (kind, suitability, consistency, token counts),
    /// typed; defaults where a field is missing or unreadable.
    pub fn task_stats(&self) -> TaskStats {
        serde_json::from_value(self.stats.clone()).unwrap_or_default()
    }
}

/// What selection, the loop and the demo read of a task's statistics.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct TaskStats {
    /// What its answers are (none: no usable answer). Databases written before the kinds were
    /// shared hold `tool` for [`TaskKind::ToolCall`]; it reads the same.
    #[serde(deserialize_with = "downshift_api::kind_or_none::deserialize")]
    pub output_kind: Option<TaskKind>,
    /// SLM suitability in `[0, 1]`.
    pub suitability: f64,
    /// Share of calls whose output has the task's most common shape.
    pub output_consistency: f64,
    /// Prompt tokens per call.
    pub prompt_tokens: TokenPercentiles,
    /// Completion tokens per call.
    pub completion_tokens: TokenPercentiles,
}

/// Percentiles of a token count.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct TokenPercentiles {
    /// Median.
    pub p50: u64,
    /// 95th percentile.
    pub p95: u64,
}
