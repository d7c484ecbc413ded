//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, mapped or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with the GGUF magic; holds the four bytes read.
    #[error("not a GGUF file (magic {0:#010x}, expected 0x46554747 \"GGUF\")")]
    NotGguf(u32),
    /// The GGUF version is not 2 or 3.
    #[error("unsupported GGUF version {0} (supported: 2, 3)")]
    GgufVersion(u32),
    /// Something the header promises lies past the end of the file.
    #[error("GGUF file is truncated: {what} needs bytes {start}..{end} but the file has {len}")]
    Truncated {
        /// What was being read.
        what: String,
        /// Its first byte offset.
        start: u64,
        /// Its end offset (exclusive).
        end: u64,
        /// The file's length in bytes.
        len: u64,
    },
    /// The file (or a tensor in it) is malformed: impossible counts, offsets, sizes or data.
    #[error("corrupt GGUF file: {0}")]
    Corrupt(String),
    /// A tensor's element type is unknown or cannot be read.
    #[error("unknown or unsupported quantization type {id} for tensor {tensor}")]
    UnknownQuantType {
        /// The tensor's name.
        tensor: String,
        /// The `ggml_type` id stored for it.
        id: u32,
    },
    /// A metadata key the model needs is absent.
    #[error("missing metadata key {0}")]
    MissingMetadata(String),
    /// A metadata key holds a value of the wrong type.
    #[error("metadata key {key} has the wrong type: expected {expected}")]
    MetadataType {
        /// The key.
        key: String,
        /// The type it should hold.
        expected: &'static str,
    },
    /// A tensor the architecture needs is not in the weights.
    #[error("missing tensor {0}")]
    MissingTensor(String),
    /// A tensor's shape is not the one the configuration implies.
    #[error("tensor {name} has shape {got:?}, expected {expected:?}")]
    TensorShape {
        /// The tensor.
        name: String,
        /// Its shape in the file.
        got: Vec<usize>,
        /// The shape the configuration implies.
        expected: Vec<usize>,
    },
    /// The model's architecture is not one this runtime implements.
    #[error(
        "unsupported model architecture {0:?} (supported: {supported})",
        supported = crate::config::supported_architectures()
    )]
    UnknownArchitecture(String),
    /// The model's hyperparameters are missing or do not fit together.
    #[error("invalid model configuration: {0}")]
    Config(String),
    /// The tokenizer's data (vocabulary, merges, special tokens) is unusable.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// The chat template does not compile or fails to render the messages.
    #[error("chat template: {0}")]
    Template(String),
    /// The prompt and the requested new tokens do not fit the context window.
    #[error(
        "prompt has {prompt} tokens but the context holds {context} (with {max_new} new tokens requested)"
    )]
    ContextOverflow {
        /// Tokens of the prompt (or already in the cache plus those fed).
        prompt: usize,
        /// New tokens requested.
        max_new: usize,
        /// The context window in tokens.
        context: usize,
    },
    /// A generation request is invalid (its messages, tools, sampling or grammar).
    #[error("invalid generation request: {0}")]
    Request(String),
    /// A LoRA adapter cannot be read or does not fit the model.
    #[error("LoRA adapter: {0}")]
    Adapter(String),
    /// The adapter was trained on another base model (its fingerprint or its shapes differ).
    #[error("adapter for another base: {0}")]
    OtherBase(String),
    /// The adapter's prompt transform has a version this build does not apply, or one below
    /// what its fields need.
    #[error(
        "unsupported prompt transform version {0} (this build applies versions 1 to 3; keep_turns needs 2, tool_names 3)"
    )]
    TransformVersion(u32),
    /// JSON could not be read or written.
    #[error("JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// A tensor operation failed.
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
