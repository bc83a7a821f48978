//! The request context middleware: request id, language, the access log line, and the rule that
//! every error leaves in the envelope — including those produced below the handlers (405 from the
//! router, 413 from the body limit, timeouts) and panics.

use std::{any::Any, time::Instant};

use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderName, HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use celaest_protocol::Lang;
use tracing::Instrument;

use super::{
    codes::{ErrorCode, status_of},
    context::{RequestId, with_lang},
    error::{Error, envelope},
};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Outermost middleware of every request.
pub async fn request_context(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let headers = req.headers();
    let request_id =
        RequestId::from_header(headers.get(&X_REQUEST_ID).and_then(|v| v.to_str().ok()));
    let lang = headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map(Lang::from_accept_language)
        .unwrap_or_default();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    req.extensions_mut().insert(request_id.clone());

    let span = tracing::info_span!("request", request_id = %request_id.0);
    let mut response = with_lang(lang, async move { into_envelope(next.run(req).await) })
        .instrument(span)
        .await;

    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&request_id.0) {
        headers.insert(X_REQUEST_ID.clone(), value);
    }
    headers.insert(
        header::CONTENT_LANGUAGE,
        HeaderValue::from_static(lang.pick("es", "en")),
    );

    let status = response.status().as_u16();
    let duration_ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(
        target: "celaest::access",
        method = %method,
        route = route.as_deref().unwrap_or("<unmatched>"),
        status,
        duration_ms,
        request_id = %request_id.0,
        "request"
    );
    response
}

/// Replaces a bare error answer (no JSON body) with the envelope for its status.
fn into_envelope(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let code = ErrorCode::for_status(status.as_u16());
    let mut rewritten = envelope(status_of(code), code, serde_json::Value::Null);
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(value) = response.headers().get(&name) {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
}

/// Answers a panicked handler with a 500 envelope; the panic is logged once, here.
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature CatchPanicLayer calls"
)]
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("non-string panic payload");
    tracing::error!(panic = message, "handler panicked");
    Error::api(ErrorCode::Internal).into_response()
}

/// The answer for a path no route matches.
pub async fn route_not_found() -> Error {
    Error::api(ErrorCode::RouteNotFound)
}
