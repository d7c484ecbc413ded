//! The crate's one error enum.

use std::path::Path;

/// Every way building examples, training, checkpointing or exporting an adapter can fail.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// Too little data to train: fewer training examples than
    /// [`crate::TrainConfig::min_examples`], or a task whose usable records would give too few
    /// at the configured split ([`crate::Dataset::build`]; then the counts are records).
    #[error("too few examples: {given} given, at least {needed} needed")]
    TooFewExamples {
        /// Examples available.
        given: usize,
        /// Examples required.
        needed: usize,
    },
    /// A chat record cannot become an example (no messages, an answer with neither content
    /// nor tool calls, a template that does not render it, longer than `max_len`);
    /// [`crate::Dataset::build`] skips such records and lists them.
    #[error("bad record {id}: {msg}")]
    Record {
        /// The record's id.
        id: String,
        /// Why it was refused.
        msg: String,
    },
    /// A specialist's prompt transform has a version this build cannot apply.
    #[error(
        "unsupported prompt transform version {0} (this build applies versions 1 to 3; keep_turns needs 2, tool_names 3)"
    )]
    TransformVersion(u32),
    /// A setting out of range or inconsistent (rank 0, an unknown target module, bf16 on a CPU
    /// without bf16 dot products, optimizer state of the wrong shape, a merge base that is not
    /// a Hugging Face folder, …); the message says which.
    #[error("bad training configuration: {0}")]
    Config(String),
    /// An adapter or checkpoint made for a different base model than the one loaded.
    #[error("adapter for another base: {0}")]
    OtherBase(String),
    /// A checkpoint or safetensors file could not be written or read back (missing tensor,
    /// unreadable file).
    #[error("checkpoint {path}: {msg}")]
    Checkpoint {
        /// The checkpoint folder or file.
        path: String,
        /// What went wrong.
        msg: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: String,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },
    /// The training loss became NaN or infinite: the run is stopped rather than saving
    /// garbage.
    #[error("training diverged: loss is {0}")]
    Diverged(f32),
    /// Loading or running the model failed (`downshift-slm`).
    #[error(transparent)]
    Model(downshift_slm::Error),
    /// A tensor operation failed (shape mismatch, device error, out of memory).
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    /// A JSON file (checkpoint state, adapter metadata, the merge index) could not be read or
    /// written.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl TrainError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        TrainError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

impl From<downshift_slm::Error> for TrainError {
    /// The contract's refusals keep their own variants: a transform this build cannot apply,
    /// an adapter for another base.
    fn from(e: downshift_slm::Error) -> Self {
        match e {
            downshift_slm::Error::TransformVersion(v) => TrainError::TransformVersion(v),
            downshift_slm::Error::OtherBase(m) => TrainError::OtherBase(m),
            e => TrainError::Model(e),
        }
    }
}

/// The result of every fallible operation of the crate.
pub type Result<T> = std::result::Result<T, TrainError>;
