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
        self, AllOfBuilder, ComponentsBuilder, ContentBuilder, ObjectBuilder, Ref, RefOr,
        ResponseBuilder, Type,
        header::HeaderBuilder,
        path::{Operation, ParameterIn},
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

    /// Finishes the document once every module's routes are in it: the shared error answers
    /// ([`SharedErrors`]) attached to each operation they can reach, and flattened bodies
    /// described as the one object serde reads ([`merge_flattened`]).
    pub fn complete(doc: &mut openapi::OpenApi) {
        SharedErrors.modify(doc);
        if let Some(components) = doc.components.as_mut() {
            for schema in components.schemas.values_mut() {
                merge_flattened(schema);
            }
        }
    }
}

/// A struct with a `#[serde(flatten)]` field is documented by utoipa as `allOf` of inline
/// objects. When one of them also refuses unknown fields (`additionalProperties: false`), the
/// `allOf` refuses every property of the others, so no body validates — yet serde reads the
/// union. This merges such an `allOf` into the one object serde reads: every property, every
/// required field, and unknown fields refused if any part refused them.
fn merge_flattened(schema: &mut RefOr<openapi::Schema>) {
    let RefOr::T(openapi::Schema::AllOf(all)) = schema else {
        return;
    };
    let parts: Option<Vec<&openapi::Object>> = all
        .items
        .iter()
        .map(|item| match item {
            RefOr::T(openapi::Schema::Object(object)) => Some(object),
            _ => None,
        })
        .collect();
    let Some(parts) = parts else {
        return;
    };
    let mut merged = ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(all.description.clone())
        .build();
    for part in parts {
        merged.properties.extend(part.properties.clone());
        merged.required.extend(part.required.iter().cloned());
        if part.additional_properties.is_some() {
            merged.additional_properties = part.additional_properties.clone();
        }
    }
    *schema = RefOr::T(openapi::Schema::Object(merged));
}

/// The error answers that come from the shared plumbing rather than from a handler — the gates,
/// the extractors, the timeout — documented once as response components (each with the envelope,
/// its `code` narrowed to the codes of its status) and attached to every operation they can
/// reach, judged from what the operation declares:
///
/// | answer | when |
/// |---|---|
/// | 400 `INVALID_PATH_PARAMETER`, 404 | the path has parameters ([`extract::Path`], then the lookup) |
/// | 400 `MALFORMED_JSON`, 413, 415, 422 | it takes a JSON body ([`extract::Json`]) |
/// | 409 | it takes a JSON body: it writes, and what it names may not exist or clash ([`Error::Conflict`], unique constraints) |
/// | 422 | it takes query parameters ([`extract::Query`] and the list rules) |
/// | 401, 403 | it needs credentials (it declares `security`): the gate and the scope check |
/// | 429 | it is under `/api` (every `/api` route passes a rate-limiting gate) |
/// | 503 | always (the request timeout and an exhausted database pool) |
///
/// A status the handler documents itself keeps the handler's description. Responses left
/// without a description get their status's reason phrase, as OpenAPI 3.1 requires one.
///
/// [`extract::Path`]: crate::http::extract::Path
/// [`extract::Json`]: crate::http::extract::Json
/// [`extract::Query`]: crate::http::extract::Query
/// [`Error::Conflict`]: crate::http::Error::Conflict
pub struct SharedErrors;

/// `(status, component name, what it means)` of each shared error answer.
const SHARED_ERRORS: [(u16, &str, &str); 10] = [
    (
        400,
        "BadRequest",
        "The request could not be read: a malformed path parameter or JSON body",
    ),
    (
        401,
        "Unauthorized",
        "No valid credentials: a missing, invalid or expired token or API key, or a closed session",
    ),
    (
        403,
        "Forbidden",
        "The caller may not do this: its role, its API key's scopes, or a disabled account",
    ),
    (
        404,
        "NotFound",
        "Nothing with this id exists, or the caller may not see it",
    ),
    (
        409,
        "Conflict",
        "The current state does not allow it: a named record does not exist or already does, or a time has passed (`details.fields` names each field)",
    ),
    (
        413,
        "PayloadTooLarge",
        "The body is larger than the server accepts",
    ),
    (
        415,
        "UnsupportedMediaType",
        "The body is not sent as `Content-Type: application/json`",
    ),
    (
        422,
        "ValidationFailed",
        "Some fields or query parameters are invalid: `details.fields` names each one",
    ),
    (
        429,
        "RateLimited",
        "Too many requests: retry after `Retry-After` seconds",
    ),
    (
        503,
        "Unavailable",
        "The service could not answer in time, or a dependency is unavailable",
    ),
];

impl SharedErrors {
    /// The component answering with `status`: the envelope with `code` limited to that status.
    fn component(status: u16, description: &str) -> openapi::Response {
        let codes = ErrorCode::ALL
            .iter()
            .filter(|c| c.status() == status && **c != ErrorCode::RouteNotFound)
            .map(|c| c.as_str());
        let narrowed = ObjectBuilder::new().property(
            "error",
            ObjectBuilder::new().property(
                "code",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(codes)),
            ),
        );
        let schema = AllOfBuilder::new()
            .item(Ref::from_schema_name("ApiErrorBody"))
            .item(narrowed);
        let mut response = ResponseBuilder::new().description(description).content(
            "application/json",
            ContentBuilder::new().schema(Some(schema)).build(),
        );
        if status == 429 {
            response = response.header(
                "Retry-After",
                HeaderBuilder::new()
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::Integer)
                            .minimum(Some(0)),
                    ))
                    .description(Some("Seconds to wait before retrying"))
                    .build(),
            );
        }
        response.build()
    }

    /// The shared statuses `operation` at `path` can answer with.
    fn statuses(path: &str, operation: &Operation) -> Vec<u16> {
        let params_in = |place: ParameterIn| {
            operation.parameters.iter().flatten().any(|p| match p {
                RefOr::T(p) => p.parameter_in == place,
                RefOr::Ref(_) => false,
            })
        };
        let authenticated = operation.security.as_ref().is_some_and(|s| !s.is_empty());
        let mut statuses = vec![503];
        if path.starts_with("/api/") {
            statuses.push(429);
        }
        if authenticated {
            statuses.extend([401, 403]);
        }
        if params_in(ParameterIn::Path) {
            statuses.extend([400, 404]);
        }
        if operation.request_body.is_some() {
            statuses.extend([400, 409, 413, 415, 422]);
        }
        if params_in(ParameterIn::Query) {
            statuses.push(422);
        }
        statuses
    }
}

impl Modify for SharedErrors {
    fn modify(&self, doc: &mut openapi::OpenApi) {
        let components = doc
            .components
            .get_or_insert_with(|| ComponentsBuilder::new().build());
        for (status, name, description) in SHARED_ERRORS {
            components
                .responses
                .insert(name.to_owned(), Self::component(status, description).into());
        }
        for (path, item) in &mut doc.paths.paths {
            let operations = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
                &mut item.head,
                &mut item.options,
                &mut item.trace,
            ];
            for operation in operations.into_iter().flatten() {
                let statuses = Self::statuses(path, operation);
                let responses = &mut operation.responses.responses;
                for status in statuses {
                    let Some((_, name, _)) = SHARED_ERRORS.iter().find(|(s, ..)| *s == status)
                    else {
                        continue;
                    };
                    responses
                        .entry(status.to_string())
                        .or_insert_with(|| Ref::from_response_name(*name).into());
                }
                for (status, response) in responses.iter_mut() {
                    if let RefOr::T(response) = response
                        && response.description.is_empty()
                    {
                        response.description = status
                            .parse::<u16>()
                            .ok()
                            .and_then(|s| axum::http::StatusCode::from_u16(s).ok())
                            .and_then(|s| s.canonical_reason())
                            .unwrap_or("Answer")
                            .to_owned();
                    }
                }
            }
        }
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
