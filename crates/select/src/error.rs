//! The crate's one error type.

/// Everything that can go wrong loading a catalog or parsing a name.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    /// The catalog text is not valid TOML or does not have the catalog's shape (a missing or
    /// misspelt field, a value of the wrong type, an unknown precision or benchmark name). The
    /// message carries the line and column.
    #[error("malformed TOML: {0}")]
    Toml(#[from] toml::de::Error),
    /// The catalog holds no model.
    #[error("the catalog holds no model")]
    EmptyCatalog,
    /// Two entries share one hub id.
    #[error("duplicate model id {0:?} in the catalog")]
    DuplicateId(String),
    /// An entry parsed but one of its values is out of range.
    #[error("catalog model {id:?}: {reason}")]
    InvalidModel {
        /// Hub id of the offending entry.
        id: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// An entry of the packaged-model list is malformed.
    #[error("packaged model {name:?}: {reason}")]
    InvalidPackage {
        /// Name of the offending entry.
        name: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// A precision name this crate has no bytes-per-parameter rule for.
    #[error("unknown precision {0:?} (known: f32, f16, bf16, q8_0, q6_k, q4_1, q4_k_m, q4_0)")]
    UnknownPrecision(String),
}

/// `Result` with [`SelectError`].
pub type Result<T> = std::result::Result<T, SelectError>;
