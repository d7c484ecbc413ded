use std::path::PathBuf;

use downshift_store::StoreError;

/// Every way routing can fail. (A specialist answer that fails validation is not an error but a
/// [`FallbackReason`](crate::FallbackReason); a request the classifier cannot place is `None`.)
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The body is not a JSON object with the shape of a chat completion request.
    #[error("the request is not a chat completion body: {0}")]
    Request(String),
    /// A saved classifier could not be read or written.
    #[error("classifier file {path}: {reason}")]
    ClassifierFile {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A saved classifier is inconsistent or of another format version.
    #[error("invalid classifier: {0}")]
    Classifier(String),
    /// A policy change names no known task.
    #[error("no discovered task '{0}' (see `downshift tasks list`)")]
    UnknownTask(String),
    /// A policy change that cannot be applied (out-of-range numbers, no specialist to route to).
    #[error("{0}")]
    InvalidPolicy(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}
