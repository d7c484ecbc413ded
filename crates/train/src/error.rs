//! The crate's one error enum.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("too few examples: {given} given, at least {needed} needed")]
    TooFewExamples { given: usize, needed: usize },
    #[error("bad record {id}: {msg}")]
    Record { id: String, msg: String },
    #[error(
        "unsupported prompt transform version {0} (this build applies versions 1 to 3; keep_turns needs 2, tool_names 3)"
    )]
    TransformVersion(u32),
    #[error("bad training configuration: {0}")]
    Config(String),
    #[error("adapter for another base: {0}")]
    OtherBase(String),
    #[error("checkpoint {path}: {msg}")]
    Checkpoint { path: String, msg: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("training diverged: loss is {0}")]
    Diverged(f32),
    #[error(transparent)]
    Model(downshift_slm::Error),
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
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

pub type Result<T> = std::result::Result<T, TrainError>;
