//! downshift-train: the LoRA/QLoRA trainer of step S5.
//!
//! * [`example`]: chat records → token ids + assistant-only loss mask, the versioned
//!   [`PromptTransform`] the router repeats at serving time, the deterministic split.
//! * [`optim`]: AdamW, warm-up + cosine schedule, global-norm clipping.
//! * [`trainer`]: [`Trainer`] runs `Llama::forward_train` with LoRA on the chosen projections.
//! * [`adapter`]: PEFT export, checkpoints with atomic writes, resume.

pub mod adapter;
mod error;
pub mod example;
pub mod loss;
pub mod optim;
pub mod rng;
pub mod trainer;

pub use adapter::{SpecialistMeta, load_adapter, merge_to_hf_dir};
pub use error::{Result, TrainError};
pub use example::{
    ChatRecord, Dataset, Example, ExampleBuilder, PromptTransform, Split, SplitConfig,
};
pub use optim::{AdamW, AdamWConfig, Schedule};
pub use trainer::{Progress, TrainConfig, TrainSummary, Trainer};
