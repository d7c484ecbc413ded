//! The OpenAI-style error body every failing HTTP answer carries.

use serde::Serialize;

/// `{"error": {"message", "type", "param", "code"}}`, as OpenAI clients expect it.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ApiError,
}

/// The error inside an [`ErrorBody`].
#[derive(Debug, Clone, Serialize)]
pub struct ApiError {
    /// What went wrong, for a person.
    pub message: String,
    /// The error class (`invalid_request_error`, `authentication_error`, …), as `type`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request parameter at fault, if one is.
    pub param: Option<String>,
    /// A machine-readable code.
    pub code: Option<String>,
}

impl ErrorBody {
    /// An error of class `kind` with `code` and `message`.
    pub fn new(kind: &str, code: &str, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ApiError {
                message: message.into(),
                kind: kind.to_owned(),
                param: None,
                code: Some(code.to_owned()),
            },
        }
    }

    /// The body as JSON text.
    pub fn to_json(&self) -> String {
        // Serialising a struct of strings cannot fail.
        serde_json::to_string(self).unwrap_or_else(|_| String::from("{\"error\":{}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serialises_like_openai() {
        let body = ErrorBody::new("invalid_request_error", "invalid_json", "bad body").to_json();
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_json");
        assert_eq!(v["error"]["message"], "bad body");
        assert!(v["error"]["param"].is_null());
    }
}
