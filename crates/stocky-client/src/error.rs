//! What can go wrong talking to a hub or edge.

use stocky_core::api::ErrorEnvelope;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server answered with its error envelope (`{"error":{"code","message"}}`).
    #[error("{status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// The server could not be reached, or the exchange broke.
    #[error("cannot reach {url}: {source}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    /// The server answered something that is not the documented shape.
    #[error("unexpected answer from {url}: {message}")]
    Decode { url: String, message: String },
    /// The URL given to the client is not usable.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    /// The call needs a credential and the client has none (log in first).
    #[error("not logged in: call login() or give the client a token")]
    NoCredential,
    /// The subscription stopped for good: the server refused the credential, replaced
    /// this connection, or the attempts ran out.
    #[error("subscription ended: {0}")]
    Ended(String),
}

impl ClientError {
    /// The machine code of an API error (`insufficient_stock`, `forbidden`, …).
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Worth retrying later: the server or network is away, or it said 503 / 429.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Http { .. } => true,
            ClientError::Api { status, .. } => matches!(status, 429 | 502 | 503 | 504),
            _ => false,
        }
    }

    pub(crate) fn from_envelope(status: u16, body: &str) -> Self {
        match serde_json::from_str::<ErrorEnvelope>(body) {
            Ok(envelope) => ClientError::Api {
                status,
                code: envelope.error.code,
                message: envelope.error.message,
            },
            Err(_) => ClientError::Api {
                status,
                code: format!("http_{status}"),
                message: body.chars().take(200).collect(),
            },
        }
    }
}
