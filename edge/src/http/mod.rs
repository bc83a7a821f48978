//! The edge's HTTP surface, with central's standards and central's validation contract: the same
//! envelope, codes, request ids, languages and access log, the same bodies and limits for
//! `POST /api/licenses/validate` and `/api/licenses/batch-validate`, and answers signed over their
//! exact bytes with the key central publishes. Plus health, readiness and Prometheus metrics.
//!
//! Handlers fail with an [`EdgeError`]; the one middleware here renders every error (a handler's,
//! or a bare one from the router such as 405) as an envelope in the caller's language.

pub mod client_ip;
pub mod input;

use std::time::Instant;

use axum::{
    Extension, Json, Router,
    extract::{DefaultBodyLimit, Request, State},
    http::StatusCode,
    middleware::Next,
    response::{IntoResponse, Response},
    routing::{get, post},
};
use celaest_net::http::context::{
    RequestContext, carry_headers, error_envelope, is_bare_error, log_panic,
};
use celaest_protocol::{
    ErrorCode, Lang, SuccessEnvelope, ValidateRequest, ValidationAnswer, signing::SigningKey,
    validation::BatchRequest,
};
use serde::Serialize;
use serde_json::{Value, json};
use tracing::Instrument;

use crate::{
    EdgeState,
    validate::{Unavailable, availability, validate_all},
};
use client_ip::ClientIp;

/// Largest request body accepted: central's default (`APP_BODY_LIMIT_BYTES`), far above a full
/// batch of 100 validations.
const BODY_LIMIT: usize = 1024 * 1024;

/// A failure, rendered as an envelope by [`request_context`].
#[derive(Debug, Clone)]
pub struct EdgeError {
    pub code: ErrorCode,
    pub details: Value,
}

impl EdgeError {
    fn internal() -> Self {
        Self {
            code: ErrorCode::Internal,
            details: Value::Null,
        }
    }
}

impl From<Unavailable> for EdgeError {
    fn from(why: Unavailable) -> Self {
        let details = match why {
            Unavailable::NoSnapshot => json!({ "reason": "no_snapshot" }),
            Unavailable::OfflineTooLong { state_age_ms } => {
                json!({ "reason": "offline_too_long", "state_age_ms": state_age_ms })
            }
        };
        Self {
            code: ErrorCode::NotReady,
            details,
        }
    }
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
        .route("/api/licenses/validate", post(validate_one))
        .route("/api/licenses/batch-validate", post(validate_batch))
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .route("/metrics", get(metrics))
        .fallback(|| async {
            EdgeError {
                code: ErrorCode::RouteNotFound,
                details: Value::Null,
            }
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |panic: Box<dyn std::any::Any + Send>| {
                log_panic(&*panic);
                EdgeError::internal().into_response()
            },
        ))
        .layer(axum::middleware::from_fn(request_context))
        .with_state(state)
}

/// The request's language, set by [`request_context`].
fn lang_of(lang: Option<Extension<Lang>>) -> Lang {
    lang.map(|Extension(lang)| lang).unwrap_or_default()
}

/// Validates one license key for licensed software. Always 200 for a well-formed request once
/// the edge is ready; the answer is signed (`Celaest-Signature`).
async fn validate_one(
    State(edge): State<EdgeState>,
    ClientIp(source): ClientIp,
    lang: Option<Extension<Lang>>,
    input::Json(request): input::Json<ValidateRequest>,
) -> Result<Response, EdgeError> {
    let started = Instant::now();
    let state_age_ms = availability(&edge)?;
    let answer = validate_all(
        &edge,
        std::slice::from_ref(&request),
        source,
        lang_of(lang),
        state_age_ms,
    )
    .await
    .pop()
    .ok_or_else(EdgeError::internal)?;
    let response = signed(&edge.config.keys.signing, answer);
    edge.metrics.latency(started.elapsed());
    response
}

#[derive(Debug, Serialize)]
struct BatchAnswer {
    results: Vec<ValidationAnswer>,
}

/// Validates up to 100 keys in one request; one signature covers the whole answer.
async fn validate_batch(
    State(edge): State<EdgeState>,
    ClientIp(source): ClientIp,
    lang: Option<Extension<Lang>>,
    input::Json(body): input::Json<BatchRequest>,
) -> Result<Response, EdgeError> {
    let started = Instant::now();
    let state_age_ms = availability(&edge)?;
    let results = validate_all(&edge, &body.items, source, lang_of(lang), state_age_ms).await;
    let response = signed(&edge.config.keys.signing, BatchAnswer { results });
    edge.metrics.latency(started.elapsed());
    response
}

/// The answer as the protocol signs it: the envelope's exact bytes and their signature.
fn signed<T: Serialize>(key: &SigningKey, data: T) -> Result<Response, EdgeError> {
    celaest_net::http::signed::signed(key, data).map_err(|e| {
        tracing::error!(error = %e, "answer not signed");
        EdgeError::internal()
    })
}

#[derive(Debug, Serialize)]
struct Health {
    status: &'static str,
    version: &'static str,
    edge_id: String,
    region: String,
    uptime_seconds: u64,
    ready: bool,
    connection: &'static str,
    applied_seq: Option<u64>,
    licenses: usize,
}

async fn health(State(state): State<EdgeState>) -> Json<SuccessEnvelope<Health>> {
    Json(SuccessEnvelope::new(Health {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        edge_id: state.config.edge_id.clone(),
        region: state.config.region.clone(),
        uptime_seconds: state.started_at.elapsed().as_secs(),
        ready: availability(&state).is_ok(),
        connection: state.link.state().as_str(),
        applied_seq: state.store.applied_seq(),
        licenses: state.store.license_count(),
    }))
}

async fn live() -> Json<SuccessEnvelope<Value>> {
    Json(SuccessEnvelope::new(json!({ "status": "alive" })))
}

/// Ready once the edge holds a complete snapshot from central, and for as long as it may answer
/// from it (`EDGE_OFFLINE_MAX_SECS` after losing central): load balancers send validations only
/// to edges that can answer them.
async fn ready(State(state): State<EdgeState>) -> Result<Json<SuccessEnvelope<Value>>, EdgeError> {
    let state_age_ms = availability(&state)?;
    Ok(Json(SuccessEnvelope::new(json!({
        "status": "ready",
        "applied_seq": state.store.applied_seq(),
        "connection": state.link.state().as_str(),
        "state_age_ms": state_age_ms,
    }))))
}

/// Prometheus text exposition.
async fn metrics(State(state): State<EdgeState>) -> Response {
    celaest_net::metrics::exposition(crate::metrics::render(&state))
}

/// The shared request context (id, language, access log) around the envelope for every error.
async fn request_context(mut req: Request, next: Next) -> Response {
    let context = RequestContext::open(&mut req);
    let (lang, span) = (context.lang, context.span());
    let mut response = render_error(next.run(req).instrument(span).await, lang);
    context.close(&mut response);
    response
}

/// Gives an error answer its envelope: a handler's [`EdgeError`], or a bare status from below.
fn render_error(response: Response, lang: Lang) -> Response {
    if !is_bare_error(&response) {
        return response;
    }
    let status = response.status();
    let error = response
        .extensions()
        .get::<EdgeError>()
        .cloned()
        .unwrap_or_else(|| EdgeError {
            code: ErrorCode::for_status(status.as_u16()),
            details: Value::Null,
        });
    let status = StatusCode::from_u16(error.code.status()).unwrap_or(status);
    let mut rendered = error_envelope(status, error.code, lang, error.details);
    carry_headers(&response, &mut rendered);
    rendered
}
