//! downshift-evaluate: the metrics that compare a specialist SLM's output with the LLM's logged
//! answer (the reference), for step S5's evaluation and S6's agreement tracking.
//!
//! Answers are OpenAI chat assistant messages as [`serde_json::Value`]. What is compared depends
//! on the [`TaskKind`] of the task ([`kind_of`], [`kind_of_many`]):
//!
//! - tool calls: the same multiset of calls with canonically equal arguments
//!   ([`tool_calls_match`]), and schema validity against the offered tools
//!   ([`validate_tool_call`], built on the general [`validate_json`]);
//! - JSON: equality in normal form ([`normalized_json`]) and per-field accuracy
//!   ([`json_field_accuracy`]);
//! - labels: forgiving exact match ([`label_match`]);
//! - text: ROUGE-L F1 ([`rouge_l_f1`]) and chrF ([`chrf`]).
//!
//! [`calibrate`] picks the confidence threshold below which a specialist's answer goes to the
//! LLM instead. [`score`] computes all that apply for one example, [`agreement`] folds a [`Score`] into one
//! number in [0, 1] for a router, [`quality`] into the kind's own metric (partial credit for
//! JSON fields), and [`Report`] aggregates scores and latencies over a data set.

mod calibrate;
mod canonical;
mod error;
mod fields;
mod label;
mod message;
mod report;
mod schema;
mod score;
mod text;
mod tool_call;

pub use calibrate::{Calibration, CurvePoint, calibrate, calibration_curve};
pub use canonical::{json_equal, normalized_json};
pub use error::EvalError;
pub use fields::{field_accuracy, json_field_accuracy};
pub use label::{label_match, normalise_label};
pub use message::{
    LABEL_MAX_CHARS, LABEL_MAX_WORDS, TaskKind, kind_of, kind_of_many, message_text,
    parse_json_text,
};
pub use report::{Report, Summary};
pub use schema::validate_json;
pub use score::{Score, agreement, quality, score};
pub use text::{chrf, normalise_whitespace, rouge_l_f1, word_tokens};
pub use tool_call::{
    ToolCall, parse_tool_calls, same_tool_calls, tool_calls_match, validate_tool_call,
    validate_tool_calls,
};
