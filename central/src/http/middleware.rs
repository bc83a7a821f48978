//! The request context middleware: request id, language, the access log line, the request
//! metrics, and the rule that every error leaves in the envelope — including those produced below
//! the handlers (405 from the router, 413 from the body limit, timeouts) and panics.

use std::{any::Any, sync::Arc, time::Duration};

use axum::{
    extract::Request,
    http::{Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use celaest_net::http::context::{RequestContext, Served, carry_headers, is_bare_error, log_panic};
use tracing::Instrument;

use super::{
    codes::{ErrorCode, status_of},
    context::with_lang,
    error::{Error, envelope},
};

pub use celaest_net::http::context::X_REQUEST_ID;

/// Outermost middleware of every request: the shared request context, central's task-local
/// language for the messages rendered below, and the request metrics.
pub async fn request_context(mut req: Request, next: Next) -> Response {
    let context = RequestContext::open(&mut req);
    let span = context.span();
    let mut response = with_lang(
        context.lang,
        async move { into_envelope(next.run(req).await) },
    )
    .instrument(span)
    .await;
    let Served {
        route,
        method,
        status,
        elapsed,
    } = context.close(&mut response);
    record_request(route, &method, status, elapsed);
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
    if !is_bare_error(&response) {
        return response;
    }
    let code = ErrorCode::for_status(response.status().as_u16());
    let mut rewritten = envelope(status_of(code), code, serde_json::Value::Null);
    carry_headers(&response, &mut rewritten);
    rewritten
}

/// Answers a panicked handler with a 500 envelope; the panic is logged once, here.
#[expect(
    clippy::needless_pass_by_value,
    reason = "the signature CatchPanicLayer calls"
)]
pub fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response {
    log_panic(&*panic);
    Error::api(ErrorCode::Internal).into_response()
}

/// The answer for a path no route matches.
pub async fn route_not_found() -> Error {
    Error::api(ErrorCode::RouteNotFound)
}
