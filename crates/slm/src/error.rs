//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("not a GGUF file (magic {0:#010x}, expected 0x46554747 \"GGUF\")")]
    NotGguf(u32),
    #[error("unsupported GGUF version {0} (supported: 2, 3)")]
    GgufVersion(u32),
    #[error("GGUF file is truncated: {what} needs bytes {start}..{end} but the file has {len}")]
    Truncated {
        what: String,
        start: u64,
        end: u64,
        len: u64,
    },
    #[error("corrupt GGUF file: {0}")]
    Corrupt(String),
    #[error("unknown or unsupported quantization type {id} for tensor {tensor}")]
    UnknownQuantType { tensor: String, id: u32 },
    #[error("missing metadata key {0}")]
    MissingMetadata(String),
    #[error("metadata key {key} has the wrong type: expected {expected}")]
    MetadataType { key: String, expected: &'static str },
    #[error("missing tensor {0}")]
    MissingTensor(String),
    #[error("tensor {name} has shape {got:?}, expected {expected:?}")]
    TensorShape {
        name: String,
        got: Vec<usize>,
        expected: Vec<usize>,
    },
    #[error("unsupported model architecture {0:?} (supported: llama, qwen2, qwen3, gemma3)")]
    UnknownArchitecture(String),
    #[error("invalid model configuration: {0}")]
    Config(String),
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("chat template: {0}")]
    Template(String),
    #[error(
        "prompt has {prompt} tokens but the context holds {context} (with {max_new} new tokens requested)"
    )]
    ContextOverflow {
        prompt: usize,
        max_new: usize,
        context: usize,
    },
    #[error("invalid generation request: {0}")]
    Request(String),
    #[error("LoRA adapter: {0}")]
    Adapter(String),
    #[error("adapter for another base: {0}")]
    OtherBase(String),
    #[error(
        "unsupported prompt transform version {0} (this build applies versions 1 to 3; keep_turns needs 2, tool_names 3)"
    )]
    TransformVersion(u32),
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
