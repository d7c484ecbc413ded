//! downshift-train: the LoRA/QLoRA trainer of step S5.
//!
//! * [`example`]: chat records → token ids + assistant-only loss mask, the
//!   [`PromptTransform`] inferred for a task, the deterministic split. The transform and the
//!   specialist's metadata are the specialist contract of `downshift-slm`, re-exported here.
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

pub use adapter::{load_adapter, merge_to_hf_dir};
pub use downshift_slm::{PromptTransform, SpecialistMeta, SpecialistTemplate, base_fingerprint};
pub use error::{Result, TrainError};
pub use example::{
    ChatRecord, Dataset, Example, ExampleBuilder, Split, SplitConfig, infer_transform, turns_needed,
};
pub use optim::{AdamW, AdamWConfig, Schedule};
pub use trainer::{Precision, Progress, TrainConfig, TrainSummary, Trainer};
