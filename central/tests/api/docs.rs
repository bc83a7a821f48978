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
async fn every_operation_documents_the_errors_the_shared_plumbing_can_give(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let doc = app.get("/openapi.json").await.json;
    let shared = doc["components"]["responses"].as_object().unwrap();
    for (status, name) in [
        ("400", "BadRequest"),
        ("401", "Unauthorized"),
        ("403", "Forbidden"),
        ("404", "NotFound"),
        ("409", "Conflict"),
        ("413", "PayloadTooLarge"),
        ("415", "UnsupportedMediaType"),
        ("422", "ValidationFailed"),
        ("429", "RateLimited"),
        ("503", "Unavailable"),
    ] {
        let schema = &shared[name]["content"]["application/json"]["schema"];
        assert_eq!(
            schema["allOf"][0]["$ref"], "#/components/schemas/ApiErrorBody",
            "{name}"
        );
        let codes = schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"]
            .as_array()
            .unwrap();
        assert!(!codes.is_empty(), "{name}: no codes");
        for code in codes {
            let code = code.as_str().unwrap();
            let known = celaest_protocol::ErrorCode::ALL
                .iter()
                .find(|c| c.as_str() == code)
                .unwrap();
            assert_eq!(known.status().to_string(), status, "{name}: {code}");
        }
    }
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let responses = operation["responses"].as_object().unwrap();
            let has = |status: &str| responses.contains_key(status);
            let params_in = |place: &str| {
                operation["parameters"]
                    .as_array()
                    .is_some_and(|ps| ps.iter().any(|p| p["in"] == place))
            };
            let what = format!("{method} {path}");
            assert!(has("503"), "{what}: 503");
            for response in responses.values() {
                assert!(
                    response.get("$ref").is_some()
                        || response["description"]
                            .as_str()
                            .is_some_and(|d| !d.is_empty()),
                    "{what}: a response without a description"
                );
            }
            if path.starts_with("/api/") {
                assert!(has("429"), "{what}: 429");
            }
            if operation["security"]
                .as_array()
                .is_some_and(|s| !s.is_empty())
            {
                assert!(has("401") && has("403"), "{what}: 401/403");
            }
            if params_in("path") {
                assert!(has("400") && has("404"), "{what}: 400/404 for its path");
            }
            if params_in("query") {
                assert!(has("422"), "{what}: 422 for its query");
            }
            if operation.get("requestBody").is_some() {
                for status in ["400", "409", "413", "415", "422"] {
                    assert!(has(status), "{what}: {status} for its body");
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} operations");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn validator_rules_are_stated_in_the_schema(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let doc = app.get("/openapi.json").await.json;
    let schemas = &doc["components"]["schemas"];
    // Text rules: the bounds and the pattern the validator applies.
    let token = &schemas["VerifyRequest"]["properties"]["token"];
    assert_eq!(token["minLength"], 1);
    assert_eq!(token["maxLength"], 16_384);
    assert_eq!(
        token["pattern"],
        celaest_protocol::input::NON_BLANK_TEXT_PATTERN
    );
    let description = &schemas["CreateOrg"]["properties"]["description"];
    assert_eq!(
        description["pattern"],
        celaest_protocol::input::TEXT_PATTERN
    );
    // Ranges, closed sets, formats.
    let max_ips = &schemas["CreateLicense"]["properties"]["max_ips"];
    assert_eq!(
        (&max_ips["minimum"], &max_ips["maximum"]),
        (&1.into(), &1000.into())
    );
    assert_eq!(
        schemas["UpdateLicense"]["properties"]["status"]["enum"],
        serde_json::json!(["active", "suspended", null])
    );
    let ip = &schemas["IpInput"]["properties"]["ip_address"]["anyOf"];
    assert_eq!(ip[0]["format"], "ipv4");
    assert_eq!(ip[1]["format"], "ipv6");
    // A create body requires what its update body leaves optional.
    assert_eq!(
        schemas["NewProduct"]["required"],
        serde_json::json!(["code", "name", "product_type"])
    );
    assert_eq!(
        schemas["NewProduct"]["properties"]["name"]["type"],
        "string"
    );
    // A flattened body is one object, so a body with fields of both parts can validate.
    let update_user = &schemas["UpdateUser"];
    assert_eq!(update_user["additionalProperties"], false);
    for field in ["full_name", "role", "organization_id"] {
        assert!(update_user["properties"][field].is_object(), "{field}");
    }
    // List parameters: the endpoint's own sort columns, page bounds, dates.
    let params = doc["paths"]["/api/users"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let param = |name: &str| params.iter().find(|p| p["name"] == name).unwrap()["schema"].clone();
    assert_eq!(
        param("sort")["enum"],
        serde_json::json!(["created_at", "email", "full_name", "last_login_at", "role"])
    );
    assert_eq!(param("order")["enum"], serde_json::json!(["asc", "desc"]));
    assert_eq!(param("per_page")["maximum"], 100);
    assert_eq!(param("created_after")["anyOf"][0]["format"], "date");
    assert_eq!(param("created_after")["anyOf"][1]["format"], "date-time");
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
