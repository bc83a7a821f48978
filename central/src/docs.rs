//! API documentation: the OpenAPI 3.1 document generated from the handlers' annotations, served
//! at `/openapi.json`, and Swagger UI at `/docs` from assets compiled into the binary (no CDN).

use axum::{
    Router,
    body::Bytes,
    http::header,
    response::{Html, IntoResponse},
    routing::get,
};
use serde::Serialize;
use utoipa::{
    Modify, OpenApi, ToSchema,
    openapi::{
        self, ComponentsBuilder, ObjectBuilder, Type,
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use crate::{http::ErrorCode, state::AppState};

/// `{"success": true, "data": …}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    #[schema(example = true)]
    pub success: bool,
    pub data: T,
}

/// `{"success": true, "data": [...], "meta": {...}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageEnvelope<T> {
    #[schema(example = true)]
    pub success: bool,
    pub data: Vec<T>,
    pub meta: PageMeta,
}

/// Pagination of a list answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct PageMeta {
    #[schema(example = 1)]
    pub page: u32,
    #[schema(example = 20)]
    pub per_page: u32,
    #[schema(example = 150)]
    pub total: u64,
    #[schema(example = 8)]
    pub total_pages: u64,
}

/// `{"success": false, "error": {...}}`: every failed answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiErrorBody {
    #[schema(example = false)]
    pub success: bool,
    pub error: ApiErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiErrorDetail {
    /// A stable code from the `ErrorCode` list.
    #[schema(schema_with = error_code_schema)]
    pub code: String,
    /// Human-readable; Spanish by default, English with `Accept-Language: en`.
    #[schema(example = "Algunos campos no son válidos")]
    pub message: String,
    /// Structured context; for `VALIDATION_FAILED`, `{"fields": [{field, code, message}]}`.
    pub details: Option<serde_json::Value>,
}

fn error_code_schema() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(ErrorCode::ALL.iter().map(|c| c.as_str())))
        .description(Some("Stable error code"))
}

/// One offending field of a `VALIDATION_FAILED` error (`details.fields[]`).
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldErrorDoc {
    /// Dotted path of the field, e.g. `items[0].license_key`.
    pub field: String,
    /// `REQUIRED`, `INVALID_TYPE`, `UNKNOWN_FIELD`, `INVALID_FORMAT`, `TOO_SHORT`, `TOO_LONG`,
    /// `OUT_OF_RANGE`, `NOT_ONE_OF`, or a module's own.
    pub code: String,
    pub message: String,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "CELAEST Core API",
        description = "Central admin API of CELAEST Core: users, organizations, licenses, products, releases, billing, AI gateway, settings, analytics and audit. Every answer uses the envelope `{success, data, meta}` / `{success: false, error: {code, message, details}}`; messages are in Spanish unless `Accept-Language: en`.",
    ),
    tags(
        (name = "health", description = "Liveness and readiness"),
        (name = "auth", description = "MODULO 4: tokens, sessions and the caller"),
        (name = "users", description = "MODULO 2: users, profiles, sessions and API keys"),
        (name = "organizations", description = "MODULO 3: organizations, members and subscriptions"),
        (name = "licenses", description = "MODULO 5: license keys, validation, IP binding, collisions, signed answers"),
        (name = "products", description = "MODULO 7: categories and products"),
        (name = "edges", description = "The edge fleet fed by central over QUIC"),
    ),
    components(schemas(ApiErrorBody, ApiErrorDetail, PageMeta, FieldErrorDoc)),
    modifiers(&SecuritySchemes),
)]
pub struct ApiDoc;

impl ApiDoc {
    /// The document's header, to which every module's routes add their paths.
    pub fn base() -> openapi::OpenApi {
        let mut doc = Self::openapi();
        doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
        doc
    }
}

/// The two ways to authenticate: a Supabase JWT, or a personal API key.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let components = doc
            .components
            .take()
            .unwrap_or_else(|| ComponentsBuilder::new().build());
        let mut components = components;
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-API-Key"))),
        );
        doc.components = Some(components);
    }
}

const INDEX_HTML: &str = r#"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>CELAEST Core API</title>
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png">
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/swagger-initializer.js"></script>
</body>
</html>
"#;

const INITIALIZER_JS: &str = r##"window.onload = function () {
  window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });
};
"##;

const BUNDLE_JS: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui-bundle.js");
const STYLES_CSS: &[u8] = include_bytes!("../assets/swagger-ui/swagger-ui.css");
const FAVICON_PNG: &[u8] = include_bytes!("../assets/swagger-ui/favicon-32x32.png");

/// `/openapi.json` and `/docs`.
pub fn router(doc: &openapi::OpenApi) -> Router<AppState> {
    let asset = |content_type: &'static str, body: Bytes| {
        get(move || {
            let body = body.clone();
            async move {
                (
                    [
                        (header::CONTENT_TYPE, content_type),
                        (header::CACHE_CONTROL, "public, max-age=3600"),
                    ],
                    body,
                )
                    .into_response()
            }
        })
    };
    let document = match serde_json::to_vec(doc) {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => {
            tracing::error!(error = %e, "OpenAPI document could not be serialized");
            Bytes::from_static(b"{}")
        }
    };
    Router::new()
        .route("/openapi.json", asset("application/json", document))
        .route("/docs", get(|| async { Html(INDEX_HTML) }))
        .route("/docs/", get(|| async { Html(INDEX_HTML) }))
        .route(
            "/docs/swagger-initializer.js",
            asset(
                "text/javascript; charset=utf-8",
                Bytes::from_static(INITIALIZER_JS.as_bytes()),
            ),
        )
        .route(
            "/docs/swagger-ui-bundle.js",
            asset(
                "text/javascript; charset=utf-8",
                Bytes::from_static(BUNDLE_JS),
            ),
        )
        .route(
            "/docs/swagger-ui.css",
            asset("text/css; charset=utf-8", Bytes::from_static(STYLES_CSS)),
        )
        .route(
            "/docs/favicon-32x32.png",
            asset("image/png", Bytes::from_static(FAVICON_PNG)),
        )
}
