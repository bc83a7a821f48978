//! The one error type of central's HTTP layer, and how it becomes an envelope.
//!
//! Handlers and business functions return [`Result`]. Known failures carry an [`ErrorCode`];
//! database and other internal errors are logged once here, at the edge of the request, and
//! answered as `INTERNAL_ERROR` without their internals. Constraint violations that reach this
//! point unhandled still become 409/422 rather than 500, so bad input can never look like a crash.
//!
//! Field problems come in two kinds. A request that breaks a rule its OpenAPI schema states is
//! 422 `VALIDATION_FAILED` ([`Error::Validation`]). A well-formed request that the current state
//! does not allow — it names a record that does not exist, or a time that has already passed — is
//! 409 `CONFLICT` ([`Error::Conflict`]), with the same `details.fields`: no schema can say which
//! ids exist or what time it is, and a request the document allows is never answered 422.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use celaest_protocol::ErrorEnvelope;
use serde_json::{Value, json};

use super::{
    codes::{ErrorCode, status_of},
    context::current_lang,
    validate::{FieldErrors, FieldProblem},
};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A known failure, answered with its code's status and message.
    #[error("{}", code.as_str())]
    Api {
        code: ErrorCode,
        details: Value,
        retry_after: Option<u64>,
    },

    /// Fields that failed validation (422 `VALIDATION_FAILED`).
    #[error("validation failed")]
    Validation(FieldErrors),

    /// Well-formed fields the current state does not allow (409 `CONFLICT`).
    #[error("conflict with the current state")]
    Conflict(FieldErrors),

    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),

    #[error("redis error: {0}")]
    Redis(#[from] redis::RedisError),

    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl Error {
    pub fn api(code: ErrorCode) -> Self {
        Self::Api {
            code,
            details: Value::Null,
            retry_after: None,
        }
    }

    pub fn with_details(code: ErrorCode, details: Value) -> Self {
        Self::Api {
            code,
            details,
            retry_after: None,
        }
    }

    pub fn not_found() -> Self {
        Self::api(ErrorCode::NotFound)
    }

    pub fn forbidden() -> Self {
        Self::api(ErrorCode::Forbidden)
    }

    pub fn unauthorized() -> Self {
        Self::api(ErrorCode::Unauthorized)
    }

    /// A single offending field.
    pub fn field(field: impl Into<String>, problem: FieldProblem) -> Self {
        Self::Validation(FieldErrors::single(field, problem))
    }

    /// A single field the current state does not allow, e.g. an id naming nothing.
    pub fn conflict(field: impl Into<String>, problem: FieldProblem) -> Self {
        Self::Conflict(FieldErrors::single(field, problem))
    }

    /// Too many requests, to be retried after `seconds`.
    pub fn rate_limited(seconds: u64) -> Self {
        Self::Api {
            code: ErrorCode::RateLimited,
            details: json!({"retry_after": seconds}),
            retry_after: Some(seconds),
        }
    }

    /// The code this error is answered with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Api { code, .. } => *code,
            Self::Validation(_) => ErrorCode::ValidationFailed,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::Database(e) => classify_database(e).map_or(ErrorCode::Internal, |(code, _)| code),
            Self::Redis(_) | Self::Internal(_) => ErrorCode::Internal,
        }
    }
}

/// Constraint violations that escaped a handler's own mapping, as client errors.
fn classify_database(err: &sqlx::Error) -> Option<(ErrorCode, Value)> {
    let db = err.as_database_error()?;
    let constraint = db.constraint().map(str::to_owned);
    let code = match db.code().as_deref() {
        Some("23505") => ErrorCode::AlreadyExists,
        // Foreign key, check, not null, too long, out of range, bad text representation, and
        // characters PostgreSQL cannot store (NUL in text or in jsonb).
        Some("23503" | "23514" | "23502" | "22001" | "22003" | "22P02" | "22021" | "22P05") => {
            ErrorCode::ValidationFailed
        }
        _ => return None,
    };
    Some((code, json!({ "constraint": constraint })))
}

/// Maps a specific constraint violation to a chosen error (realworld's `on_constraint`).
pub trait ResultExt<T> {
    fn on_constraint(self, name: &str, f: impl FnOnce() -> Error) -> Result<T>;
}

impl<T, E: Into<Error>> ResultExt<T> for std::result::Result<T, E> {
    fn on_constraint(self, name: &str, f: impl FnOnce() -> Error) -> Result<T> {
        self.map_err(|e| match e.into() {
            Error::Database(db)
                if db.as_database_error().and_then(|d| d.constraint()) == Some(name) =>
            {
                f()
            }
            other => other,
        })
    }
}

/// Renders an error envelope in the current request's language.
pub fn envelope(status: StatusCode, code: ErrorCode, details: Value) -> Response {
    let body = ErrorEnvelope::new(code.as_str(), code.message(current_lang()), details);
    (status, axum::Json(body)).into_response()
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        let lang = current_lang();
        match self {
            Self::Api {
                code,
                details,
                retry_after,
            } => {
                let mut response = envelope(status_of(code), code, details);
                if let Some(seconds) = retry_after {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
                }
                response
            }
            Self::Validation(fields) => envelope(
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::ValidationFailed,
                json!({ "fields": fields.render(lang) }),
            ),
            Self::Conflict(fields) => envelope(
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                json!({ "fields": fields.render(lang) }),
            ),
            Self::Database(ref err) if classify_database(err).is_some() => {
                let (code, details) =
                    classify_database(err).unwrap_or((ErrorCode::Internal, Value::Null));
                tracing::warn!(error = %err, "unmapped constraint violation answered as {}", code.as_str());
                envelope(status_of(code), code, details)
            }
            Self::Database(sqlx::Error::PoolTimedOut) => {
                tracing::error!("database pool exhausted");
                envelope(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::ServiceUnavailable,
                    Value::Null,
                )
            }
            other => {
                tracing::error!(error = ?other, "request failed");
                envelope(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    ErrorCode::Internal,
                    Value::Null,
                )
            }
        }
    }
}

impl From<FieldErrors> for Error {
    fn from(errors: FieldErrors) -> Self {
        Self::Validation(errors)
    }
}
