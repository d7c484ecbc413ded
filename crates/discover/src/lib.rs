//! Step S3: find the recurring tasks in the call log without being told what they are.
//!
//! * [`features`]: per-call structural signature (system prompt, tools offered and called,
//!   output kind) and the variable text;
//! * [`template`]: Drain-style system-prompt templates (constant text vs `<*>` slots);
//! * [`embed`]: all-MiniLM-L6-v2 sentence embeddings computed natively on candle from the
//!   packaged weights (mean pooling, L2-normalised), matching sentence-transformers;
//!   [`hashed`]: a hashed n-gram embedding for tiny deployments;
//! * [`hdbscan`]: HDBSCAN density clustering — no `k`, noise stays unassigned;
//! * [`pipeline`]: structural groups, semantic split and statistics; [`task`]: what a task is,
//!   model prices and SLM suitability;
//! * [`mask`]: the masked view (entities → their type, values normalised) that discovery
//!   embeds and labels with; [`placement`]: a split stands only where the router can place it;
//! * [`relation`]: how an answer relates to its material (language kept, length, words kept):
//!   features of a job under a generic prompt that do not depend on the instruction's language;
//! * [`labels`]: class-based TF-IDF terms; [`stable`]: task ids that persist across runs.

mod align;
pub mod config;
pub mod embed;
pub mod features;
pub mod hashed;
pub mod hdbscan;
pub mod labels;
pub mod mask;
pub mod pipeline;
pub mod placement;
pub mod relation;
mod split;
pub mod stable;
pub mod task;
pub mod template;

pub use config::{DiscoverConfig, EmbedderKind};
pub use downshift_api::TaskKind;
pub use features::{CallInput, kind_tag};
pub use hashed::HashedEmbedder;
pub use pipeline::{
    DiscoverError, DiscoverParams, Discovery, ExtractedCall, TextEmbedder, discover,
    discover_extracted,
};
pub use stable::PriorTask;
pub use task::{Percentiles, Price, RunStats, Task, price_of, suitability};
