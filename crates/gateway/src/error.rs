//! The gateway's errors, each mapped to an HTTP status and an OpenAI-style error body.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use downshift_api::ErrorBody;

/// Why a request failed; [`GatewayError::status`] and [`GatewayError::body`] give the response
/// the client gets.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The request is malformed or names something invalid (400 `invalid_request`); the
    /// message says what.
    #[error("{0}")]
    BadRequest(String),
    /// The body is over `server.max_body_bytes`, the limit given (413).
    #[error("request body is larger than the limit of {0} bytes")]
    TooLarge(usize),
    /// Authentication is required and the request carries no key (401).
    #[error("missing API key: send 'Authorization: Bearer <key>'")]
    MissingKey,
    /// The key is unknown or revoked (401).
    #[error("invalid API key")]
    InvalidKey,
    /// The key's role lacks the permission the endpoint needs (403).
    #[error("this API key (role '{role}') may not {action}")]
    Forbidden {
        /// The key's role.
        role: String,
        /// What was refused, e.g. `read raw call payloads`.
        action: String,
    },
    /// No upstream is mapped for the requested model, and there is no default (404
    /// `model_not_found`).
    #[error("no upstream serves model '{0}'")]
    UnknownModel(String),
    /// A `local/<name>` model (or adapter) that is not configured (404 `model_not_found`).
    #[error("no local model '{model}' (local models: {known})")]
    UnknownLocalModel {
        /// The model the request named.
        model: String,
        /// The configured local models, for the message.
        known: String,
    },
    /// An admin or UI resource (a call, a task) that does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The prompt (plus `max_tokens`) does not fit a local model's context (400
    /// `context_length_exceeded`).
    #[error("{0}")]
    ContextLength(String),
    /// The upstream could not be connected to or broke the connection (502).
    #[error("upstream '{upstream}' is unreachable: {reason}")]
    Unreachable {
        /// The configured upstream's name.
        upstream: String,
        /// The connection error.
        reason: String,
    },
    /// The upstream did not answer within its `timeout_ms` (504).
    #[error("upstream '{upstream}' did not answer within {ms} ms")]
    Timeout {
        /// The configured upstream's name.
        upstream: String,
        /// The limit that passed, in milliseconds.
        ms: u64,
    },
    /// The client did not send the whole body within `server.body_read_timeout_ms`, the
    /// limit given in milliseconds (408).
    #[error("the request body did not arrive within {0} ms")]
    BodyTimeout(u64),
    /// The store is busy (another writer holds its lock past the busy timeout): retry later
    /// (503 `store_unavailable`).
    #[error("{0}")]
    Unavailable(String),
    /// A requests- or tokens-per-minute limit (429 `rate_limit_exceeded`).
    #[error("{0}")]
    RateLimited(String),
    /// A USD budget is spent (429 `insufficient_quota`).
    #[error("{0}")]
    QuotaExceeded(String),
    /// Anything else that is the gateway's fault: a store failure, a task that panicked (500).
    #[error("internal error: {0}")]
    Internal(String),
}

/// Why the gateway cannot start, reload, or load a specialist — each kind of cause its own
/// variant, so a caller can tell a configuration mistake from a file that will not load or a
/// store that cannot be read. The message names what is wrong and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetupError {
    /// A configuration value is wrong or missing (the message names the field).
    #[error("{0}")]
    Config(String),
    /// A model, adapter or classifier file could not be loaded.
    #[error("{0}")]
    Load(String),
    /// The call log could not be read.
    #[error("{0}")]
    Store(String),
    /// A client, runtime or exporter the gateway needs could not be started.
    #[error("{0}")]
    Runtime(String),
}

/// A store failure the request cannot recover from: a 500 with the store's message.
impl From<downshift_store::StoreError> for GatewayError {
    fn from(e: downshift_store::StoreError) -> Self {
        GatewayError::Internal(e.to_string())
    }
}

impl GatewayError {
    /// The HTTP status of the error response.
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::BadRequest(_) | GatewayError::ContextLength(_) => StatusCode::BAD_REQUEST,
            GatewayError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::MissingKey | GatewayError::InvalidKey => StatusCode::UNAUTHORIZED,
            GatewayError::Forbidden { .. } => StatusCode::FORBIDDEN,
            GatewayError::UnknownModel(_)
            | GatewayError::UnknownLocalModel { .. }
            | GatewayError::NotFound(_) => StatusCode::NOT_FOUND,
            GatewayError::Unreachable { .. } => StatusCode::BAD_GATEWAY,
            GatewayError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            GatewayError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            GatewayError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            GatewayError::RateLimited(_) | GatewayError::QuotaExceeded(_) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The OpenAI-style error body: `type`, `code` and the message.
    pub fn body(&self) -> ErrorBody {
        let (kind, code) = match self {
            GatewayError::BadRequest(_) => ("invalid_request_error", "invalid_request"),
            GatewayError::TooLarge(_) => ("invalid_request_error", "request_too_large"),
            GatewayError::MissingKey => ("invalid_request_error", "missing_api_key"),
            GatewayError::InvalidKey => ("invalid_request_error", "invalid_api_key"),
            GatewayError::Forbidden { .. } => ("permission_error", "insufficient_permissions"),
            GatewayError::UnknownModel(_) | GatewayError::UnknownLocalModel { .. } => {
                ("invalid_request_error", "model_not_found")
            }
            GatewayError::NotFound(_) => ("invalid_request_error", "not_found"),
            GatewayError::ContextLength(_) => ("invalid_request_error", "context_length_exceeded"),
            GatewayError::Unreachable { .. } => ("upstream_error", "upstream_unreachable"),
            GatewayError::Timeout { .. } => ("upstream_error", "upstream_timeout"),
            GatewayError::BodyTimeout(_) => ("invalid_request_error", "request_timeout"),
            GatewayError::Unavailable(_) => ("server_error", "store_unavailable"),
            GatewayError::RateLimited(_) => ("rate_limit_exceeded", "rate_limit_exceeded"),
            GatewayError::QuotaExceeded(_) => ("insufficient_quota", "insufficient_quota"),
            GatewayError::Internal(_) => ("server_error", "internal_error"),
        };
        ErrorBody::new(kind, code, self.to_string())
    }
}

/// An error response with a Content-Length, written in one piece.
pub fn error_response(status: StatusCode, body: &ErrorBody) -> Response {
    (
        status,
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        body.to_json(),
    )
        .into_response()
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        error_response(self.status(), &self.body())
    }
}
