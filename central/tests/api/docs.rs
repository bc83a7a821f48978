//! The OpenAPI document and Swagger UI, served from the binary with no external assets.

use sqlx::PgPool;

use crate::helpers::TestApp;

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn openapi_31_describes_every_route_and_the_error_codes(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let response = app.get("/openapi.json").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let doc = &response.json;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    for path in ["/health", "/health/live", "/health/ready"] {
        assert!(doc["paths"][path]["get"].is_object(), "{path} missing");
    }
    assert!(doc["paths"]["/health/ready"]["get"]["responses"]["503"].is_object());
    // Every endpoint of modules 2-4, at the spec's paths.
    let endpoints = [
        ("get", "/api/users"),
        ("post", "/api/users"),
        ("get", "/api/users/{id}"),
        ("patch", "/api/users/{id}"),
        ("delete", "/api/users/{id}"),
        ("get", "/api/users/{id}/profile"),
        ("patch", "/api/users/{id}/profile"),
        ("get", "/api/users/{id}/sessions"),
        ("delete", "/api/users/{id}/sessions/{session_id}"),
        ("get", "/api/users/{id}/api-keys"),
        ("post", "/api/users/{id}/api-keys"),
        ("delete", "/api/users/{id}/api-keys/{key_id}"),
        ("post", "/api/users/{id}/api-keys/{key_id}/rotate"),
        ("get", "/api/organizations"),
        ("post", "/api/organizations"),
        ("get", "/api/organizations/{id}"),
        ("patch", "/api/organizations/{id}"),
        ("delete", "/api/organizations/{id}"),
        ("get", "/api/organizations/{id}/members"),
        ("post", "/api/organizations/{id}/members"),
        ("patch", "/api/organizations/{id}/members/{user_id}"),
        ("delete", "/api/organizations/{id}/members/{user_id}"),
        ("get", "/api/organizations/{id}/subscription"),
        ("post", "/api/auth/verify"),
        ("post", "/api/auth/refresh"),
        ("get", "/api/auth/me"),
        ("post", "/api/auth/logout"),
    ];
    for (method, path) in endpoints {
        let operation = &doc["paths"][path][method];
        assert!(
            operation.is_object(),
            "{method} {path} missing from the OpenAPI document"
        );
        assert!(
            operation["responses"]
                .as_object()
                .is_some_and(|r| r.keys().any(|k| k.starts_with('4'))),
            "{method} {path}: no error responses"
        );
    }
    let codes = &doc["components"]["schemas"]["ApiErrorDetail"]["properties"]["code"]["enum"];
    assert!(
        codes
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "VALIDATION_FAILED"),
        "{codes}"
    );
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["securitySchemes"]["api_key"].is_object());
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn swagger_ui_is_served_from_vendored_assets(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let page = app.get("/docs").await;
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    assert!(
        !page.text.contains("https://"),
        "the page must not load anything from the internet"
    );
    for (asset, kind) in [
        ("/docs/swagger-ui-bundle.js", "text/javascript"),
        ("/docs/swagger-ui.css", "text/css"),
        ("/docs/swagger-initializer.js", "text/javascript"),
        ("/docs/favicon-32x32.png", "image/png"),
    ] {
        assert!(
            page.text.contains(asset) || asset.ends_with(".png"),
            "{asset} not referenced"
        );
        let response = app.get(asset).await;
        assert_eq!(response.status, 200, "{asset}");
        assert!(
            response.header("content-type").unwrap().starts_with(kind),
            "{asset}"
        );
    }
    let initializer = app.get("/docs/swagger-initializer.js").await;
    assert!(initializer.text.contains("/openapi.json"));
    let bundle = app.get("/docs/swagger-ui-bundle.js").await;
    assert!(bundle.text.len() > 500_000 && bundle.text.contains("SwaggerUIBundle"));
}
