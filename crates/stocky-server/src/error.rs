//! The one HTTP error type: a status, a stable machine `code` and a human `message`,
//! rendered as `{"success":false,"error":{"code":"…","message":"…"}}`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use stocky_core::stock::Rejection;
use stocky_store::{StoreError, SubmitError};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"success": false, "error": {"code": self.code, "message": self.message}});
        (self.status, Json(body)).into_response()
    }
}

impl From<Rejection> for ApiError {
    fn from(r: Rejection) -> Self {
        let status = match r {
            Rejection::UnknownProduct { .. } => StatusCode::NOT_FOUND,
            Rejection::InsufficientStock { .. }
            | Rejection::VersionConflict { .. }
            | Rejection::IdempotencyConflict { .. } => StatusCode::CONFLICT,
            Rejection::NotFound { .. } => StatusCode::NOT_FOUND,
            Rejection::Overflow { .. } | Rejection::Custom(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Rejection::Refused { conflict: true, .. } => StatusCode::CONFLICT,
            Rejection::Refused { .. } => StatusCode::UNPROCESSABLE_ENTITY,
        };
        ApiError::new(status, r.code(), r.to_string())
    }
}

impl From<SubmitError> for ApiError {
    fn from(e: SubmitError) -> Self {
        match e {
            SubmitError::Rejected(r) => r.into(),
            SubmitError::Unavailable(why) => {
                tracing::warn!(error = %why, "command not applied: storage unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "storage unavailable; nothing was changed, retry later",
                )
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(what) => {
                return ApiError::new(StatusCode::CONFLICT, "conflict", what)
            }
            StoreError::NotFound(what) => {
                return ApiError::new(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    format!("{what} not found"),
                )
            }
            _ => {}
        }
        tracing::error!(error = %e, "read failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "storage unavailable; retry later",
        )
    }
}

/// `axum::Json` whose rejections are [`ApiError`]s: 400 for malformed JSON, 413 for bodies
/// over the limit, 415 for a missing JSON content type.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    Json<T>: FromRequest<S, Rejection = JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(value)) => Ok(ApiJson(value)),
            Err(rejection) => {
                let status = rejection.status();
                let code = match status {
                    StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
                    StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                    _ => "invalid_json",
                };
                Err(ApiError::new(status, code, rejection.body_text()))
            }
        }
    }
}
