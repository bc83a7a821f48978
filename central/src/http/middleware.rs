//! The request context middleware: request id, language, the access log line, the request
//! metrics, and the rule that every error leaves in the envelope — including those produced below
//! the handlers (405 from the router, 413 from the body limit, timeouts) and panics.

use std::{
    any::Any,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    extract::{MatchedPath, Request},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
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
    // Shared, not copied, by the access log and the two metric keys.
    let route: Option<Arc<str>> = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| Arc::from(p.as_str()));
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

    let elapsed = started.elapsed();
    tracing::info!(
        target: "celaest::access",
        method = %method,
        route = route.as_deref().unwrap_or("<unmatched>"),
        status = response.status().as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        request_id = %request_id.0,
        "request"
    );
    record_request(route, &method, response.status(), elapsed);
    response
}

/// Counts the request and its latency by route template (never the raw path, which would make a
/// series per id), method and status. Labels are static strings or the shared route: the only
/// allocations are the metric keys' own.
fn record_request(route: Option<Arc<str>>, method: &Method, status: StatusCode, elapsed: Duration) {
    use crate::metrics::{HTTP_REQUEST_DURATION_SECONDS, HTTP_REQUESTS_TOTAL};
    use metrics::SharedString;

    let route = route.map_or(
        SharedString::const_str("unmatched"),
        SharedString::from_shared,
    );
    let method = method_label(method);
    metrics::counter!(
        HTTP_REQUESTS_TOTAL,
        "route" => route.clone(),
        "method" => method,
        "status" => status_label(status),
    )
    .increment(1);
    metrics::histogram!(HTTP_REQUEST_DURATION_SECONDS, "route" => route, "method" => method)
        .record(elapsed);
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        // Any other method is answered 405; one label keeps them from making series at will.
        _ => "other",
    }
}

/// The status as a label; the codes central answers with are static strings.
fn status_label(status: StatusCode) -> metrics::SharedString {
    let known = match status.as_u16() {
        200 => "200",
        201 => "201",
        202 => "202",
        204 => "204",
        304 => "304",
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        405 => "405",
        409 => "409",
        410 => "410",
        413 => "413",
        415 => "415",
        422 => "422",
        429 => "429",
        500 => "500",
        502 => "502",
        503 => "503",
        504 => "504",
        _ => return metrics::SharedString::from_owned(status.as_str().to_owned()),
    };
    metrics::SharedString::const_str(known)
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
