//! downshift-slm: the model runtime (S5/S6): GGUF weights, architectures, tokenizer, chat
//! templates and generation.

mod error;
pub mod gguf;

pub use error::{Error, Result};
pub use gguf::{GgmlType, Gguf, MetaValue, TensorInfo};
pub mod quant;
pub mod threads;
