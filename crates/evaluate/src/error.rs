//! The crate's one error type.

/// What can go wrong while reading an assistant message's tool calls.
///
/// Metrics never return it: a prediction that cannot be read simply does not match (see
/// [`score`](crate::score)). It surfaces from [`parse_tool_calls`](crate::parse_tool_calls),
/// for callers that want to know why.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// `tool_calls` is present but is not an array.
    #[error("`tool_calls` is not an array")]
    ToolCallsNotArray,
    /// A tool call lacks its function name, or its arguments are neither a string nor an object.
    #[error("tool call {index}: {reason}")]
    MalformedToolCall {
        /// Its position in `tool_calls`.
        index: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A tool call's `arguments` string is not valid JSON.
    #[error("tool call {index} (`{name}`): arguments are not valid JSON: {source}")]
    InvalidArguments {
        /// Its position in `tool_calls`.
        index: usize,
        /// The function called.
        name: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
}
