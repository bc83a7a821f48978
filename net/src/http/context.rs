//! The context both HTTP layers open around every request, so central and the edges answer with
//! the same standards: a request id (`X-Request-Id`, a caller's kept when safe, echoed back), the
//! caller's language (`Accept-Language`, answered in `Content-Language`), one access-log line per
//! request, and the envelope for every error — including bare ones produced below the handlers
//! (405 from the router, a timeout, a panic).
//!
//! Each crate's middleware opens a [`RequestContext`], runs the request the way it renders its
//! own errors, and closes the context on the response; what differs (central's task-local
//! language and request metrics) stays in that crate.

use std::{
    any::Any,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    Json,
    extract::{MatchedPath, Request},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use celaest_protocol::{ErrorCode, ErrorEnvelope, Lang};
use serde_json::Value;

/// The request id header, read from callers and echoed on every answer.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id (`X-Request-Id`), as a request extension.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    /// Accepts a caller's id when it is short and plain (safe to log and echo), else makes one.
    pub fn from_header(value: Option<&str>) -> Self {
        Self(celaest_protocol::request_id::accept_or_generate(value))
    }
}

/// A request being served: who it is and when it started.
#[derive(Debug)]
pub struct RequestContext {
    pub id: RequestId,
    pub lang: Lang,
    method: Method,
    /// The route template (never the raw path); shared, not copied, by the log and metrics.
    route: Option<Arc<str>>,
    started: Instant,
}

/// What a served request leaves behind for metrics.
#[derive(Debug)]
pub struct Served {
    pub route: Option<Arc<str>>,
    pub method: Method,
    pub status: StatusCode,
    pub elapsed: Duration,
}

impl RequestContext {
    /// Reads the request's id and language, and leaves both in its extensions ([`RequestId`],
    /// [`Lang`]) for the handlers.
    pub fn open(req: &mut Request) -> Self {
        let started = Instant::now();
        let headers = req.headers();
        let id = RequestId::from_header(headers.get(&X_REQUEST_ID).and_then(|v| v.to_str().ok()));
        let lang = headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .map(Lang::from_accept_language)
            .unwrap_or_default();
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|p| Arc::from(p.as_str()));
        let method = req.method().clone();
        req.extensions_mut().insert(id.clone());
        req.extensions_mut().insert(lang);
        Self {
            id,
            lang,
            method,
            route,
            started,
        }
    }

    /// The span the request runs in, so every line it logs carries its id.
    pub fn span(&self) -> tracing::Span {
        tracing::info_span!("request", request_id = %self.id.0)
    }

    /// Stamps the answer with the request id and language, and writes the access-log line.
    pub fn close(self, response: &mut Response) -> Served {
        let headers = response.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&self.id.0) {
            headers.insert(X_REQUEST_ID.clone(), value);
        }
        headers.insert(
            header::CONTENT_LANGUAGE,
            HeaderValue::from_static(self.lang.pick("es", "en")),
        );
        let elapsed = self.started.elapsed();
        let status = response.status();
        tracing::info!(
            target: "celaest::access",
            method = %self.method,
            route = self.route.as_deref().unwrap_or("<unmatched>"),
            status = status.as_u16(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            request_id = %self.id.0,
            "request"
        );
        Served {
            route: self.route,
            method: self.method,
            status,
            elapsed,
        }
    }
}

/// Whether an answer is an error without a JSON body — one the router, a layer or a rejection
/// produced below the handlers — which must be given its envelope.
pub fn is_bare_error(response: &Response) -> bool {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    (status.is_client_error() || status.is_server_error()) && !is_json
}

/// An error answer in the envelope, its message in `lang`.
pub fn error_envelope(status: StatusCode, code: ErrorCode, lang: Lang, details: Value) -> Response {
    let body = ErrorEnvelope::new(code.as_str(), code.message(lang), details);
    (status, Json(body)).into_response()
}

/// Copies the headers a bare error's meaning depends on onto its envelope.
pub fn carry_headers(bare: &Response, rendered: &mut Response) {
    for name in [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE] {
        if let Some(value) = bare.headers().get(&name) {
            rendered.headers_mut().insert(name, value.clone());
        }
    }
}

/// Logs a handler's panic once, with its message when it has one.
pub fn log_panic(panic: &(dyn Any + Send)) {
    let message = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("non-string panic payload");
    tracing::error!(panic = message, "handler panicked");
}

#[cfg(test)]
mod tests {
    use axum::body::Body;

    use super::*;

    fn request(headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().method(Method::POST).uri("/x");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::empty()).unwrap()
    }

    #[test]
    fn a_plain_caller_id_and_language_are_kept_and_echoed() {
        let mut req = request(&[("x-request-id", "abc-123"), ("accept-language", "en-US")]);
        let context = RequestContext::open(&mut req);
        assert_eq!(context.id.0, "abc-123");
        assert_eq!(context.lang, Lang::En);
        assert_eq!(req.extensions().get::<Lang>(), Some(&Lang::En));
        assert_eq!(
            req.extensions().get::<RequestId>().map(|r| r.0.as_str()),
            Some("abc-123")
        );
        let mut response = StatusCode::OK.into_response();
        let served = context.close(&mut response);
        assert_eq!(served.status, StatusCode::OK);
        assert_eq!(served.method, Method::POST);
        assert_eq!(response.headers()[&X_REQUEST_ID], "abc-123");
        assert_eq!(response.headers()[header::CONTENT_LANGUAGE], "en");
    }

    #[test]
    fn an_unsafe_caller_id_is_replaced_and_spanish_is_the_default() {
        let mut req = request(&[("x-request-id", "has space")]);
        let context = RequestContext::open(&mut req);
        assert_ne!(context.id.0, "has space");
        assert_eq!(context.lang, Lang::Es);
    }

    #[test]
    fn only_errors_without_a_json_body_are_bare() {
        assert!(is_bare_error(
            &StatusCode::METHOD_NOT_ALLOWED.into_response()
        ));
        assert!(is_bare_error(
            &(StatusCode::PAYLOAD_TOO_LARGE, "too large").into_response()
        ));
        assert!(!is_bare_error(&StatusCode::NO_CONTENT.into_response()));
        let rendered = error_envelope(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            Lang::En,
            Value::Null,
        );
        assert!(!is_bare_error(&rendered));
    }

    #[test]
    fn the_envelope_keeps_allow_and_retry_after() {
        let mut bare = StatusCode::METHOD_NOT_ALLOWED.into_response();
        bare.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        let mut rendered = error_envelope(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            Lang::Es,
            Value::Null,
        );
        carry_headers(&bare, &mut rendered);
        assert_eq!(rendered.headers()[header::ALLOW], "GET");
        assert!(!rendered.headers().contains_key(header::RETRY_AFTER));
    }
}
