//! One error type for every route of both servers, mapped to an HTTP status and a `{"error": "..."}` body.

use crate::domain::SetError;
use crate::wire::orchestrator::ErrorBody;
use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unavailable(String),
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status_code());
        if let ApiError::Unauthorized = self {
            resp.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        resp.json(ErrorBody {
            error: self.to_string(),
        })
    }
}

impl From<SetError> for ApiError {
    fn from(e: SetError) -> Self {
        ApiError::BadRequest(e.to_string())
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(e: actix::MailboxError) -> Self {
        ApiError::Unavailable(format!("the server is shutting down or overloaded: {e}"))
    }
}

/// Turns extractor failures (bad JSON, bad path or query) into JSON 400s.
pub fn json_error(
    err: actix_web::error::JsonPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    use actix_web::error::JsonPayloadError as J;
    match err {
        J::Overflow { limit } | J::OverflowKnownLength { limit, .. } => {
            ApiError::TooLarge(format!("request body is larger than {limit} bytes")).into()
        }
        J::ContentType => {
            ApiError::BadRequest("expected Content-Type: application/json".into()).into()
        }
        other => ApiError::BadRequest(format!("invalid JSON body: {other}")).into(),
    }
}

pub fn path_error(
    err: actix_web::error::PathError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid path: {err}")).into()
}

pub fn query_error(
    err: actix_web::error::QueryPayloadError,
    _: &actix_web::HttpRequest,
) -> actix_web::Error {
    ApiError::BadRequest(format!("invalid query: {err}")).into()
}
