//! downshift-curate: step S2 of the LLM-to-SLM conversion. This crate holds the PII/PHI engine:
//! [`Detector`] finds personal, health and secret data in text; [`Scrubber`] replaces it with
//! consistent pseudonyms (per episode, keyed by an HMAC) or realistic surrogates, also inside
//! JSON; [`detect_jsonl`] is the `downshift pii detect` contract used by the benchmark.

mod address;
mod checksum;
mod config;
mod cues;
mod dates;
mod dedup;
mod detector;
mod entity;
mod error;
mod filters;
mod finance;
mod ids;
mod jsonl;
mod lexicon;
mod names;
mod network;
mod person;
mod phone;
mod pipeline;
mod scrub;
mod secrets;
mod snapshot;
mod surrogate;
pub mod tagger;
mod text;
pub mod weights;

pub use config::{Action, CustomRecognizer, PiiConfig, SurrogateMode};
pub use dedup::{DedupConfig, MinHasher, similarity};
pub use detector::Detector;
pub use entity::{Entity, EntityType};
pub use error::CurateError;
pub use filters::{FilterConfig, FilterReason, SHADOW_TAG};
pub use jsonl::{JsonlStats, detect_jsonl, redact};
pub use pipeline::{CallInput, CurateConfig, CurationReport, Curator, Example, curate};
pub use scrub::{Episode, ScrubReport, Scrubbed, Scrubber};
pub use snapshot::{PIPELINE_VERSION, SnapshotError, SnapshotRequest, create_snapshot};
pub use weights::{TAGGER_FETCH, TAGGER_MODEL, TaggerWeights, set_tagger_search};
