//! Error codes: the catalogue lives in `celaest_protocol::codes`, shared with the edge so both
//! answer with the same vocabulary; this adds the HTTP status type.

use axum::http::StatusCode;
pub use celaest_protocol::ErrorCode;

/// The HTTP status of a code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}
