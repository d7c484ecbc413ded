//! downshift-slm: the model runtime (S5/S6): GGUF weights, architectures, tokenizer, chat
//! templates, generation, and the specialist contract ([`Specialist::open`]).

pub mod amx;
pub mod attention;
pub mod bf16;
pub mod chat;
pub mod config;
#[cfg(feature = "constrained")]
pub mod constrain;
mod engine;
mod error;
pub mod generate;
pub mod gguf;
pub mod kv_cache;
mod linear_op;
pub mod llama;
pub mod lora;
pub mod nn;
pub mod quant;
pub mod specialist;
mod spm;
#[doc(hidden)]
pub mod testing;
pub mod threads;
pub mod tokenizer;
pub mod train_ops;
pub mod transform;

pub use chat::{ChatTemplate, Message, ToolCall, assistant_message, function_of, parse_tool_calls};
pub use config::{ARCHITECTURES, Architecture};
#[cfg(feature = "constrained")]
pub use constrain::{Constraint, Guidance};
pub use engine::LocalModel;
pub use error::{Error, Result};
pub use generate::{
    FinishReason, GenerateOptions, Generation, Prefix, Sampler, TokenFilter, generate_batch,
};
pub use gguf::{GgmlType, Gguf, MetaValue, TensorInfo};
pub use llama::{
    KvCache, KvDtype, Llama, LlamaConfig, Logits, RopeScaling, RopeStyle, SlidingWindow,
};
pub use lora::{AdapterConfig, LoraAdapter};
pub use nn::{AdapterSel, FfnAct, Linear, Lora, Weight};
pub use specialist::{
    PromptRecipe, Specialist, SpecialistMeta, SpecialistTemplate, base_fingerprint,
};
pub use tokenizer::{StreamDecoder, TokenType, Tokenizer};
pub use transform::{PromptTransform, common_system_text};
