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
