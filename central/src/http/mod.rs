//! Central's HTTP plumbing: the envelope, errors and their codes, extractors, validation,
//! pagination, middleware, and the assembly of every module's routes into one app.

pub mod client_ip;
pub mod codes;
pub mod context;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod pagination;
pub mod response;
pub mod validate;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    http::{HeaderName, HeaderValue, Method, header},
};
use tower_http::{
    catch_panic::CatchPanicLayer,
    compression::CompressionLayer,
    cors::{AllowOrigin, CorsLayer},
    timeout::TimeoutLayer,
};
use utoipa_axum::router::OpenApiRouter;

pub use codes::ErrorCode;
pub use error::{Error, Result, ResultExt};

use crate::{
    auth, config::Config, docs, health, licensing, orgs, products, replication, state::AppState,
    users,
};

/// Every module's routes, with their OpenAPI description. Modules are merged here, one line
/// each. Everything under `/api` passes a gate: the authenticating one, or — for the routes
/// licensed software and token refresh use without credentials — the per-IP one.
pub fn api_router(state: &AppState) -> OpenApiRouter<AppState> {
    let gated = OpenApiRouter::new()
        .merge(auth::router())
        .merge(users::router())
        .merge(orgs::router())
        .merge(products::router())
        .merge(licensing::router())
        .merge(replication::router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::gate::gate,
        ));
    let public = OpenApiRouter::new()
        .merge(auth::public_router())
        .merge(licensing::public_router())
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::gate::public_gate,
        ));
    OpenApiRouter::with_openapi(docs::ApiDoc::base())
        .merge(health::router())
        .merge(crate::metrics::router())
        .merge(public)
        .merge(gated)
}

/// The complete application: routes, documentation and the middleware stack.
pub fn build_router(state: AppState) -> Router {
    let (router, mut openapi) = api_router(&state).split_for_parts();
    docs::ApiDoc::complete(&mut openapi);
    with_middleware(router.merge(docs::router(&openapi)), &state.config).with_state(state)
}

/// What a worker process serves: its metrics and health probes, in the standard stack.
pub fn worker_router(state: AppState) -> Router {
    let (router, _) = OpenApiRouter::new()
        .merge(crate::metrics::router())
        .merge(health::router())
        .split_for_parts();
    with_middleware(router, &state.config).with_state(state)
}

/// Wraps routes in the standard stack, outermost first: request context (id, language, access
/// log, envelope for bare errors), panic catcher, timeout, CORS, compression, and the body
/// limit that body extractors enforce (413 in the envelope).
pub fn with_middleware<S: Clone + Send + Sync + 'static>(
    router: Router<S>,
    config: &Config,
) -> Router<S> {
    let stack = tower::ServiceBuilder::new()
        .layer(axum::middleware::from_fn(middleware::request_context))
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(TimeoutLayer::with_status_code(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            config.http.request_timeout,
        ))
        .layer(cors(config))
        .layer(CompressionLayer::new())
        .layer(DefaultBodyLimit::max(config.http.body_limit));
    router.fallback(middleware::route_not_found).layer(stack)
}

fn cors(config: &Config) -> CorsLayer {
    let origins = &config.http.cors_allowed_origins;
    let allow_origin = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let layer = CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::ACCEPT_LANGUAGE,
            HeaderName::from_static("x-api-key"),
            middleware::X_REQUEST_ID.clone(),
        ])
        .expose_headers([
            middleware::X_REQUEST_ID.clone(),
            header::RETRY_AFTER,
            HeaderName::from_static("x-ratelimit-limit"),
            HeaderName::from_static("x-ratelimit-remaining"),
            HeaderName::from_static("x-ratelimit-reset"),
        ])
        .max_age(std::time::Duration::from_secs(600));
    // Credentials cannot be combined with a wildcard origin.
    if origins.iter().any(|o| o == "*") {
        layer
    } else {
        layer.allow_credentials(true)
    }
}
