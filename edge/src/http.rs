//! The edge's HTTP surface and its standards — the same envelope, codes, request ids and access
//! log as central. Handlers fail with an [`EdgeError`]; the one middleware here renders every
//! error (a handler's, or a bare one from the router such as 405) as an envelope in the caller's
//! language.

use std::time::Instant;

use axum::{
    Json, Router,
    extract::{MatchedPath, Request, State},
    http::{HeaderName, HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
    routing::get,
};
use celaest_protocol::{ErrorCode, ErrorEnvelope, Lang, SuccessEnvelope, request_id};
use serde::Serialize;
use serde_json::{Value, json};

use crate::EdgeState;

static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A failure, rendered as an envelope by [`request_context`].
#[derive(Debug, Clone)]
pub struct EdgeError {
    pub code: ErrorCode,
    pub details: Value,
}

impl IntoResponse for EdgeError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

pub fn router(state: EdgeState) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .fallback(|| async {
            EdgeError {
                code: ErrorCode::RouteNotFound,
                details: Value::Null,
            }
        })
        .layer(axum::middleware::from_fn(request_context))
        .with_state(state)
}

#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    edge_id: String,
    region: String,
    uptime_seconds: u64,
}

async fn health(State(state): State<EdgeState>) -> Json<SuccessEnvelope<Health>> {
    Json(SuccessEnvelope::new(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        edge_id: state.config.edge_id.clone(),
        region: state.config.region.clone(),
        uptime_seconds: state.started_at.elapsed().as_secs(),
    }))
}

async fn live() -> Json<SuccessEnvelope<Value>> {
    Json(SuccessEnvelope::new(json!({ "status": "alive" })))
}

/// Ready only once the edge holds a complete snapshot from central. Replication is not built yet
/// (see the edge issue), so an edge never claims to be ready and load balancers keep traffic away.
async fn ready(State(state): State<EdgeState>) -> EdgeError {
    EdgeError {
        code: ErrorCode::NotReady,
        details: json!({ "reason": "no_snapshot", "central_addr": state.config.central_addr }),
    }
}

/// Request id, language, envelope for every error, and one access-log line per request.
async fn request_context(mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request_id::accept_or_generate(
        req.headers()
            .get(&X_REQUEST_ID)
            .and_then(|v| v.to_str().ok()),
    );
    let lang = req
        .headers()
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok())
        .map(Lang::from_accept_language)
        .unwrap_or_default();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    req.extensions_mut().insert(lang);

    let response = next.run(req).await;
    let mut response = render_error(response, lang);
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    response.headers_mut().insert(
        header::CONTENT_LANGUAGE,
        HeaderValue::from_static(lang.pick("es", "en")),
    );
    tracing::info!(
        target: "celaest::access",
        method = %method,
        route = route.as_deref().unwrap_or("<unmatched>"),
        status = response.status().as_u16(),
        duration_ms = started.elapsed().as_secs_f64() * 1000.0,
        request_id = %id,
        "request"
    );
    response
}

/// Gives an error answer its envelope: a handler's [`EdgeError`], or a bare status from below.
fn render_error(response: Response, lang: Lang) -> Response {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error())
        || response.headers().contains_key(header::CONTENT_TYPE)
    {
        return response;
    }
    let error = response
        .extensions()
        .get::<EdgeError>()
        .cloned()
        .unwrap_or_else(|| EdgeError {
            code: ErrorCode::for_status(status.as_u16()),
            details: Value::Null,
        });
    let status = StatusCode::from_u16(error.code.status()).unwrap_or(status);
    let body = ErrorEnvelope::new(error.code.as_str(), error.code.message(lang), error.details);
    let mut rendered = (status, Json(body)).into_response();
    if let Some(allow) = response.headers().get(header::ALLOW) {
        rendered.headers_mut().insert(header::ALLOW, allow.clone());
    }
    rendered
}
