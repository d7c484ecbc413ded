//! What a discovered task is (its metadata and statistics), what a model costs, and how
//! suitable a task is for a small model.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use downshift_api::TaskKind;

/// Price of a model in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// USD per million prompt tokens.
    pub prompt: f64,
    /// USD per million completion tokens.
    pub completion: f64,
}

/// Price of `model`: an exact entry, else the longest matching `prefix*`, else `*`.
pub fn price_of(prices: &BTreeMap<String, Price>, model: &str) -> Option<Price> {
    if let Some(p) = prices.get(model) {
        return Some(*p);
    }
    prices
        .iter()
        .filter_map(|(k, p)| {
            let prefix = k.strip_suffix('*')?;
            model.starts_with(prefix).then_some((prefix.len(), *p))
        })
        .max_by_key(|(len, _)| *len)
        .map(|(_, p)| p)
}

/// p50 and p95 of a token count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Percentiles {
    /// The median.
    pub p50: u64,
    /// The 95th percentile.
    pub p95: u64,
}

pub(crate) fn percentiles(mut v: Vec<u64>) -> Percentiles {
    if v.is_empty() {
        return Percentiles { p50: 0, p95: 0 };
    }
    v.sort_unstable();
    let at = |q: f64| v[((q * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)];
    Percentiles {
        p50: at(0.5),
        p95: at(0.95),
    }
}

/// A discovered task.
#[derive(Debug, Clone, Serialize)]
pub struct Task {
    /// Stable id (`task_` + 10 hex digits), kept across runs while the task persists
    /// ([`crate::stable`]).
    pub id: String,
    /// Human-readable label: the answer kind (or `tool:<name>`) and its distinctive terms.
    pub label: String,
    /// Number of calls in it.
    pub calls: usize,
    /// Its share of all input calls.
    pub share_calls: f64,
    /// Its share of all prompt + completion tokens (0 when there are none).
    pub share_tokens: f64,
    /// Share of the LLM cost (0 when no price is known for any call).
    pub share_cost: f64,
    /// LLM cost of its calls in USD at the configured prices (a call of an unpriced model
    /// costs 0).
    pub cost_usd: f64,
    /// Prompt tokens per call.
    pub prompt_tokens: Percentiles,
    /// Completion tokens per call.
    pub completion_tokens: Percentiles,
    /// What its answers are (none: no usable answer); stored as `tool_call`, `json`, `text`
    /// or `none` (`tool` in databases written before the kinds were shared).
    #[serde(with = "downshift_api::kind_or_none")]
    pub output_kind: Option<TaskKind>,
    /// The tool its answers call most often (`None` when they call none).
    pub dominant_tool: Option<String>,
    /// Share of calls whose output has the task's most common shape (tool names / JSON keys).
    pub output_consistency: f64,
    /// Mean cosine of the variable texts to their centroid (hashed n-grams): high = repetitive.
    pub similarity: f64,
    /// SLM suitability in `[0, 1]` (see [`suitability`]).
    pub suitability: f64,
    /// What the suitability rests on, one factor per line, `+` or `-` with its value.
    pub reasons: Vec<String>,
    /// Up to 3 distinctive terms of its masked texts (class-based TF-IDF).
    pub terms: Vec<String>,
    /// The structural signature of its group.
    pub signature: String,
    /// True when its structural group held several jobs and was split semantically.
    pub split: bool,
    /// When it was first discovered, ms since the Unix epoch (a continued task keeps the first).
    pub created_ms: i64,
    /// Indices (into the input) of its calls.
    #[serde(skip)]
    pub members: Vec<usize>,
    /// Mean embedding of its sampled variable texts (empty when its group was not embedded).
    #[serde(skip)]
    pub centroid: Vec<f32>,
}

/// Counts and timings of a run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunStats {
    /// Calls in the input.
    pub calls: usize,
    /// Distinct structural signatures.
    pub structural_groups: usize,
    /// Structural groups that came out as several tasks.
    pub groups_split: usize,
    /// Groups large enough to split that the embedding budget did not reach.
    pub groups_unchecked: usize,
    /// System-prompt templates mined.
    pub templates: usize,
    /// Texts run through the embedder.
    pub texts_embedded: usize,
    /// Calls left in no task.
    pub noise: usize,
    /// Held-back calls of split groups (see [`crate::placement`]) and how many of them the
    /// router's view placed in their own part.
    pub placement_held: usize,
    /// Of those, the calls placed in their own part.
    pub placement_placed: usize,
    /// Tasks were aligned to request keys (`align_to_requests`).
    pub aligned: bool,
    /// The embedder's name (`minilm`, `hashed-<dim>`).
    pub embedder: String,
    /// Wall-clock seconds spent extracting features.
    pub seconds_features: f64,
    /// Wall-clock seconds spent embedding.
    pub seconds_embed: f64,
    /// Wall-clock seconds spent clustering and building the tasks.
    pub seconds_cluster: f64,
    /// Wall-clock seconds of the whole run.
    pub seconds_total: f64,
}

/// SLM suitability in `[0, 1]` and the reasons for it: structured output, consistent output,
/// short completions, low diversity of inputs, volume.
pub fn suitability(
    kind: Option<TaskKind>,
    consistency: f64,
    completion_p95: u64,
    similarity: f64,
    calls: usize,
    share: f64,
) -> (f64, Vec<String>) {
    let mut reasons = Vec::new();
    let structured = match kind {
        Some(TaskKind::ToolCall) => {
            reasons.push("+ structured output (tool calls)".to_owned());
            1.0
        }
        Some(TaskKind::Json) => {
            reasons.push("+ structured output (JSON)".to_owned());
            1.0
        }
        Some(TaskKind::Text | TaskKind::Label) => {
            reasons.push("- free-text output".to_owned());
            0.4
        }
        None => {
            reasons.push("- no usable output".to_owned());
            0.0
        }
    };
    reasons.push(format!(
        "{} output format consistent in {:.0}% of calls",
        if consistency >= 0.8 { "+" } else { "-" },
        consistency * 100.0
    ));
    // 64 tokens or fewer: 1; 1024 or more: 0; log-linear between.
    let p95 = completion_p95.max(1) as f64;
    let short = (1.0 - (p95.log2() - 6.0) / 4.0).clamp(0.0, 1.0);
    reasons.push(format!(
        "{} completions p95 {completion_p95} tokens",
        if short >= 0.5 { "+ short" } else { "- long" }
    ));
    let low_div = ((similarity - 0.2) / 0.6).clamp(0.0, 1.0);
    reasons.push(format!(
        "{} input diversity (mean similarity {similarity:.2})",
        if low_div >= 0.5 { "+ low" } else { "- high" }
    ));
    let volume = ((calls.max(1) as f64).log10() / 3.0).clamp(0.0, 1.0);
    reasons.push(format!(
        "{} volume: {calls} calls ({:.1}% of all)",
        if volume >= 0.5 { "+" } else { "-" },
        share * 100.0
    ));
    let score =
        0.25 * structured + 0.25 * consistency + 0.2 * short + 0.15 * low_div + 0.15 * volume;
    ((score * 1000.0).round() / 1000.0, reasons)
}
