//! The HTTP standards every endpoint inherits: envelope, status codes for each kind of bad input,
//! request ids, language, CORS, compression, panics and timeouts. Probe routes are wrapped in the
//! real middleware stack and use the real extractors, as every module's handlers do.

use std::time::Duration;

use axum::{
    Router,
    routing::{get, post},
};
use celaest_central::{
    http::{
        self,
        extract::Json,
        response::{Created, Data},
        validate::{FieldErrors, Validate},
    },
    state::AppState,
};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::helpers::{TestApp, test_config};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Widget {
    name: String,
    quantity: i64,
    email: Option<String>,
}

impl Validate for Widget {
    fn validate(&self, errors: &mut FieldErrors) {
        errors.text("name", &self.name, 2, 10);
        errors.range("quantity", self.quantity, 1, 5);
        if let Some(email) = &self.email
            && !email.contains('@')
        {
            errors.add(
                "email",
                celaest_central::http::validate::FieldProblem::InvalidFormat { expected: "email" },
            );
        }
    }
}

async fn create_widget(Json(widget): Json<Widget>) -> Created<Value> {
    Created(json!({ "name": widget.name, "quantity": widget.quantity }))
}

#[expect(clippy::panic, reason = "the probe exists to panic")]
async fn explode() -> Data<Value> {
    panic!("probe panic with a secret-looking value sk_live_123")
}

async fn slow() -> Data<Value> {
    tokio::time::sleep(Duration::from_secs(5)).await;
    Data(json!("too late"))
}

/// The probes, behind the same stack as the real app, with a 1 s timeout and 1 KiB body limit.
async fn probe_app(db: PgPool) -> TestApp {
    let config = test_config(&[
        ("APP_REQUEST_TIMEOUT_SECS", "1"),
        ("APP_BODY_LIMIT_BYTES", "1024"),
    ]);
    let state = AppState::new(config, db).unwrap();
    let routes = Router::new()
        .route("/probe/widgets", post(create_widget))
        .route("/probe/panic", get(explode))
        .route("/probe/slow", get(slow));
    let router = http::with_middleware(routes, &state.config);
    TestApp::serve(state, router).await
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_valid_body_is_created_in_the_envelope(db: PgPool) {
    let app = probe_app(db).await;
    let response = app
        .post_json("/probe/widgets", &json!({"name": "bolt", "quantity": 3}))
        .await;
    assert_eq!(response.status, 201);
    assert_eq!(response.assert_ok()["name"], "bolt");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn malformed_json_is_400_with_its_position(db: PgPool) {
    let app = probe_app(db).await;
    for body in [
        "{",
        "{\"name\": }",
        "nope",
        "{\"name\":\"ab\",\"quantity\":1} trailing",
    ] {
        let response = app
            .post_raw("/probe/widgets", "application/json", body)
            .await;
        let error = response.assert_error(400, "MALFORMED_JSON");
        assert!(error["details"]["line"].is_u64(), "{body}: {error}");
    }
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn failed_validation_is_422_with_one_entry_per_field(db: PgPool) {
    let app = probe_app(db).await;
    let response = app
        .post_json(
            "/probe/widgets",
            &json!({"name": "a-very-long-name", "quantity": 9, "email": "x"}),
        )
        .await;
    let error = response.assert_error(422, "VALIDATION_FAILED");
    let fields: Vec<(&str, &str)> = error["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["field"].as_str().unwrap(), f["code"].as_str().unwrap()))
        .collect();
    assert_eq!(
        fields,
        [
            ("name", "TOO_LONG"),
            ("quantity", "OUT_OF_RANGE"),
            ("email", "INVALID_FORMAT")
        ]
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn wrong_types_missing_and_unknown_fields_are_422_naming_the_field(db: PgPool) {
    let app = probe_app(db).await;
    let cases = [
        (json!({"name": "bolt"}), "quantity", "REQUIRED"),
        (
            json!({"name": "bolt", "quantity": "three"}),
            "quantity",
            "INVALID_TYPE",
        ),
        (json!({"name": 7, "quantity": 1}), "name", "INVALID_TYPE"),
        (
            json!({"name": "bolt", "quantity": 1, "admin": true}),
            "admin",
            "UNKNOWN_FIELD",
        ),
        (json!("just text"), "body", "INVALID_TYPE"),
    ];
    for (body, field, code) in cases {
        let response = app.post_json("/probe/widgets", &body).await;
        let error = response.assert_error(422, "VALIDATION_FAILED");
        assert_eq!(error["details"]["fields"][0]["field"], field, "{body}");
        assert_eq!(error["details"]["fields"][0]["code"], code, "{body}");
    }
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_body_that_is_not_json_is_415(db: PgPool) {
    let app = probe_app(db).await;
    app.post_raw("/probe/widgets", "text/plain", "name=bolt")
        .await
        .assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
    let no_type = app
        .request(Method::POST, "/probe/widgets")
        .body("{}")
        .send()
        .await
        .unwrap();
    crate::helpers::TestResponse::from(no_type)
        .await
        .assert_error(415, "UNSUPPORTED_MEDIA_TYPE");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn an_oversized_body_is_413(db: PgPool) {
    let app = probe_app(db).await;
    let big = format!("{{\"name\":\"{}\",\"quantity\":1}}", "x".repeat(4096));
    app.post_raw("/probe/widgets", "application/json", big)
        .await
        .assert_error(413, "PAYLOAD_TOO_LARGE");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn unknown_routes_are_404_and_wrong_methods_405(db: PgPool) {
    let app = TestApp::spawn(db).await;
    app.get("/api/nothing-here")
        .await
        .assert_error(404, "ROUTE_NOT_FOUND");
    let response = crate::helpers::TestResponse::from(
        app.request(Method::DELETE, "/health").send().await.unwrap(),
    )
    .await;
    response.assert_error(405, "METHOD_NOT_ALLOWED");
    assert!(
        response.header("allow").is_some_and(|a| a.contains("GET")),
        "{:?}",
        response.headers
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_panicking_handler_answers_500_without_its_internals(db: PgPool) {
    let app = probe_app(db).await;
    let response = app.get("/probe/panic").await;
    response.assert_error(500, "INTERNAL_ERROR");
    assert!(!response.text.contains("sk_live_123"), "{}", response.text);
    // The server keeps serving after a panic.
    app.get("/probe/nothing")
        .await
        .assert_error(404, "ROUTE_NOT_FOUND");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_request_over_the_time_limit_is_answered_with_a_timeout_error(db: PgPool) {
    let app = probe_app(db).await;
    let started = std::time::Instant::now();
    app.get("/probe/slow")
        .await
        .assert_error(503, "REQUEST_TIMEOUT");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "timeout took {:?}",
        started.elapsed()
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn every_response_carries_a_request_id_and_a_plain_incoming_one_is_kept(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let generated = app.get("/health/live").await;
    let id = generated.header("x-request-id").expect("generated id");
    assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
    let error = app.get("/nope").await;
    assert!(error.header("x-request-id").is_some());

    let sent = app
        .request(Method::GET, "/health/live")
        .header("x-request-id", "trace-abc.123")
        .send()
        .await
        .unwrap();
    assert_eq!(sent.headers()["x-request-id"], "trace-abc.123");
    let hostile = app
        .request(Method::GET, "/health/live")
        .header("x-request-id", "a b\"c")
        .send()
        .await
        .unwrap();
    assert_ne!(hostile.headers()["x-request-id"], "a b\"c");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn messages_are_spanish_by_default_and_english_on_request(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let es = app.get("/nope").await;
    assert_eq!(es.json["error"]["message"], "La ruta solicitada no existe");
    assert_eq!(es.header("content-language"), Some("es"));

    let en = app
        .request(Method::GET, "/nope")
        .header("accept-language", "en-US,en;q=0.9")
        .send()
        .await
        .unwrap();
    let en = crate::helpers::TestResponse::from(en).await;
    assert_eq!(
        en.json["error"]["message"],
        "The requested route does not exist"
    );
    assert_eq!(en.header("content-language"), Some("en"));
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn field_messages_follow_the_language_too(db: PgPool) {
    let app = probe_app(db).await;
    let body = json!({"name": "bolt", "quantity": 0});
    let es = app.post_json("/probe/widgets", &body).await;
    assert_eq!(
        es.json["error"]["details"]["fields"][0]["message"],
        "debe estar entre 1 y 5"
    );
    let en = app
        .request(Method::POST, "/probe/widgets")
        .header("accept-language", "en")
        .json(&body)
        .send()
        .await;
    let en = crate::helpers::TestResponse::from(en.unwrap()).await;
    assert_eq!(
        en.json["error"]["details"]["fields"][0]["message"],
        "must be between 1 and 5"
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn cors_allows_the_frontend_origin_and_no_other(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let preflight = |origin: &'static str| {
        app.request(Method::OPTIONS, "/health")
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed = preflight("http://localhost:3000").await.unwrap();
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
    assert_eq!(
        allowed.headers()["access-control-allow-credentials"],
        "true"
    );
    let denied = preflight("https://evil.example").await.unwrap();
    assert!(
        denied
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn large_answers_are_compressed_when_the_client_accepts_it(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let response = app
        .request(Method::GET, "/openapi.json")
        .header("accept-encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    let plain = app
        .request(Method::GET, "/openapi.json")
        .send()
        .await
        .unwrap();
    assert!(plain.headers().get("content-encoding").is_none());
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_constraint_violation_that_escapes_a_handler_is_a_client_error(db: PgPool) {
    // A duplicate that a handler forgot to map must still be a 409, never a 500.
    let insert = "INSERT INTO product_categories (name, slug) VALUES ('A', 'dup')";
    sqlx::query(insert).execute(&db).await.unwrap();
    let err = sqlx::query(insert).execute(&db).await.unwrap_err();
    let response =
        axum::response::IntoResponse::into_response(celaest_central::http::Error::from(err));
    assert_eq!(response.status(), 409);
}
