//! The crate's one error type.

/// Everything that can go wrong while building a detector or scrubbing data.
#[derive(Debug, thiserror::Error)]
pub enum CurateError {
    /// A custom recogniser's pattern (or a built-in one) failed to compile.
    #[error("invalid pattern for recogniser `{name}`: {source}")]
    Pattern {
        /// The recogniser: a custom recogniser's `name`, or the built-in pattern's name.
        name: String,
        /// Why the regex engine rejected the pattern.
        #[source]
        source: Box<regex::Error>,
    },
    /// The cue-word automaton could not be built.
    #[error("cannot build cue automaton: {0}")]
    Automaton(#[from] aho_corasick::BuildError),
    /// The pseudonymisation key is unusable (empty).
    #[error("the pseudonymisation key must not be empty")]
    EmptyKey,
    /// Reading or writing a stream failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A shipped model file (the name/address tagger's weights) is unusable.
    #[error("invalid model: {0}")]
    Model(String),
    /// The tagger's weights are nowhere to be found (where they are required: tests and
    /// benchmarks that measure them); the message names where they were looked for.
    #[error("{0}")]
    ModelMissing(String),
    /// Serialising JSON failed.
    #[error("json error: {0}")]
    Json(#[from] serde_json::Error),
}

impl CurateError {
    pub(crate) fn pattern(name: &str, source: regex::Error) -> Self {
        CurateError::Pattern {
            name: name.to_string(),
            source: Box::new(source),
        }
    }
}
