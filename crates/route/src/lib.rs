//! downshift-route: the router of step S6 — which task a request belongs to, who answers it,
//! whether a specialist's answer may be returned, and when a task's specialist is promoted or
//! demoted. A library: the gateway calls it on every request, `promote` and `loop` on policies.
//!
//! # The request path
//!
//! ```text
//! body bytes ──Classifier::classify──▶ Option<Classification{task, confidence, method}>
//!            ──PolicyTable::decide(task, stable_hash(request id))──▶ Decision
//!   Llm | LlmWithShadow | Specialist{shadow}
//! specialist answer ──validate_answer──▶ Ok | FallbackReason (→ the LLM answers)
//! LLM vs specialist (shadow/canary/on sample) ──Tracker::record──▶ demotion on drift
//! ```
//!
//! **Hot-path design.** The classifier takes the raw body bytes the gateway already holds — it
//! is a byte-faithful proxy and never builds a JSON tree of the request — and makes *one*
//! light serde pass over them: tool definitions are hashed canonically while they are scanned
//! (key order and whitespace do not matter; nothing is allocated for them), message contents
//! stay borrowed raw slices, and only the system messages are decoded (to their template). The
//! [`RequestKey`] (tool set + system-prompt template + response format) is then one lookup in a
//! hash map keyed by the precomputed 64-bit hash. The newest turns are decoded and
//! vectorised only when that lookup is not conclusive. A request already parsed into a
//! [`serde_json::Value`] can be classified with [`Classifier::classify_value`], which gives the
//! same answer. Policies are read from an in-memory [`PolicyTable`], not from the store, and
//! [`decide`] is a couple of multiplications. Measured on the 2,445 BFCL requests (mean body
//! 6 KB; `tests/bfcl.rs`, `classify_latency`): structural path p50 5–7 µs, p99 26–33 µs on a
//! shared 2-core machine — a fifth of what parsing the same bodies into a `Value` costs.
//!
//! # Pieces
//!
//! - [`Classifier`] / [`ClassifierBuilder`] / [`train_from_store`]: learnt from the calls
//!   discovery assigned to tasks (noise included), serialisable so the gateway loads it at start
//!   and swaps in a rebuilt one after `discover`. Structural key first (a key maps to a task
//!   holding ≥ [`ClassifierConfig::min_share`] of its calls; confidence = that share), then the
//!   nearest centroid of a hashed word n-gram vector of the newest turns among the tasks
//!   seen with the same key or tool set (cosine ≥ [`ClassifierConfig::min_cosine`]); an unseen
//!   tool set is never placed. [`request_key`] and [`template_text`] expose the features.
//! - [`Policy`] / [`Mode`] (`off | shadow | canary:P | on`, stored by `downshift-store`) and
//!   [`decide`] → [`Decision`]: deterministic by a hash of the request id, so a retried request
//!   routes the same way; canary and on-mode shadow sampling use independent draws.
//! - [`validate_answer`] → [`FallbackReason`] (`empty`, `unoffered_tool`, `schema`,
//!   `not_json`, `low_confidence`, `timeout`, `error` — [`FallbackReason::code`]): a specialist
//!   answer is checked against the request's tools, `tool_choice` and `response_format` (via
//!   `downshift-evaluate`) and the task's log-probability threshold before it is returned.
//! - [`should_demote`] / [`should_promote`] (pure) and [`Tracker`] (over the store's
//!   `recent_agreement`): on/canary → shadow when the rolling agreement over a full window
//!   drops below the threshold; shadow → on when it reaches it.
//!
//! What this crate does not do: call models (the gateway runs the specialist and the LLM and
//! applies the specialist's `PromptTransform` from `downshift-train`), or compute agreement
//! (`downshift_evaluate::agreement` over `score`).

mod classifier;
mod error;
mod hash;
pub mod mask;
mod ngram;
mod policy;
mod request;
mod template;
mod tracker;
mod validate;

pub use classifier::{
    CLASSIFIER_FORMAT, Classification, Classifier, ClassifierBuilder, ClassifierConfig,
    ClassifierStats, Method, TrainReport, train_from_store,
};
pub use downshift_store::{
    AgreementRecord, AgreementSource, Mode, Policy, RouteEvent, RouteEventKind,
};
pub use error::RouteError;
pub use hash::stable_hash;
pub use policy::{Decision, PolicyChange, PolicyTable, change_policy, decide};
pub use request::{
    GENERIC_PROMPT_WORDS, RequestKey, instruction_head, is_generic_prompt, prompt_words,
    request_key, request_key_of_value, routing_text_of_value,
};
pub use template::template_text;
pub use tracker::{
    Tracker, Transition, rolling_mean, should_demote, should_promote, window_agreement,
};
pub use validate::{FallbackReason, validate_answer};
