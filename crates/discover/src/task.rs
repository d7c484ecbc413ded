//! What a discovered task is (its metadata and statistics), what a model costs, and how
//! suitable a task is for a small model.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use downshift_api::TaskKind;

/// Price of a model in USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    pub prompt: f64,
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
    pub p50: u64,
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
    pub id: String,
    pub label: String,
    pub calls: usize,
    pub share_calls: f64,
    pub share_tokens: f64,
    /// Share of the LLM cost (0 when no price is known for any call).
    pub share_cost: f64,
    pub cost_usd: f64,
    pub prompt_tokens: Percentiles,
    pub completion_tokens: Percentiles,
    /// What its answers are (none: no usable answer); stored as `tool_call`, `json`, `text`
    /// or `none` (`tool` in databases written before the kinds were shared).
    #[serde(with = "downshift_api::kind_or_none")]
    pub output_kind: Option<TaskKind>,
    pub dominant_tool: Option<String>,
    /// Share of calls whose output has the task's most common shape (tool names / JSON keys).
    pub output_consistency: f64,
    /// Mean cosine of the variable texts to their centroid (hashed n-grams): high = repetitive.
    pub similarity: f64,
    pub suitability: f64,
    pub reasons: Vec<String>,
    pub terms: Vec<String>,
    pub signature: String,
    /// True when its structural group held several jobs and was split semantically.
    pub split: bool,
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
    pub calls: usize,
    pub structural_groups: usize,
    pub groups_split: usize,
    /// Groups large enough to split that the embedding budget did not reach.
    pub groups_unchecked: usize,
    pub templates: usize,
    pub texts_embedded: usize,
    pub noise: usize,
    /// Held-back calls of split groups (see [`crate::placement`]) and how many of them the
    /// router's view placed in their own part.
    pub placement_held: usize,
    pub placement_placed: usize,
    /// Tasks were aligned to request keys (`align_to_requests`).
    pub aligned: bool,
    pub embedder: String,
    pub seconds_features: f64,
    pub seconds_embed: f64,
    pub seconds_cluster: f64,
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
