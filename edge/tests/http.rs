//! The edge answers with central's HTTP standards: envelope, codes, request ids, languages.

#![expect(
    clippy::unwrap_used,
    reason = "a test that cannot go on should stop right there"
)]

use celaest_edge::{EdgeConfig, EdgeState};
use serde_json::Value;

struct Edge {
    base: String,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn spawn_edge() -> Edge {
    let config = EdgeConfig::from_lookup(|name| match name {
        "EDGE_ID" => Some("edge-test-1".into()),
        "EDGE_REGION" => Some("eu-west".into()),
        _ => None,
    })
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(celaest_edge::serve(
        listener,
        EdgeState::new(config),
        async move {
            let _ = stopped.await;
        },
    ));
    // reqwest is built without a TLS crypto provider of its own: ring becomes the default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    Edge {
        base,
        client: reqwest::Client::new(),
        _stop: stop,
    }
}

async fn get(
    edge: &Edge,
    path: &str,
    lang: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = edge.client.get(format!("{}{path}", edge.base));
    if let Some(lang) = lang {
        request = request.header("accept-language", lang);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (
        status,
        headers,
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn health_names_the_edge_and_its_region() {
    let edge = spawn_edge().await;
    let (status, headers, body) = get(&edge, "/health", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["success"], true);
    assert_eq!(body["data"]["edge_id"], "edge-test-1");
    assert_eq!(body["data"]["region"], "eu-west");
    assert!(headers.contains_key("x-request-id"));
    let (status, _, body) = get(&edge, "/health/live", None).await;
    assert_eq!(
        (status, body["data"]["status"].as_str()),
        (200, Some("alive"))
    );
}

#[tokio::test]
async fn an_edge_without_a_snapshot_is_not_ready() {
    let edge = spawn_edge().await;
    let (status, _, body) = get(&edge, "/health/ready", None).await;
    assert_eq!(status, 503);
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["code"], "NOT_READY");
    assert_eq!(body["error"]["details"]["reason"], "no_snapshot");
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_get_the_envelope_in_the_callers_language() {
    let edge = spawn_edge().await;
    let (status, headers, body) = get(&edge, "/nope", None).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "ROUTE_NOT_FOUND");
    assert_eq!(body["error"]["message"], "La ruta solicitada no existe");
    assert_eq!(headers["content-language"], "es");

    let (_, _, body) = get(&edge, "/nope", Some("en")).await;
    assert_eq!(
        body["error"]["message"],
        "The requested route does not exist"
    );

    let response = edge
        .client
        .post(format!("{}/health", edge.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert!(
        response.headers()["allow"]
            .to_str()
            .unwrap()
            .contains("GET")
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "METHOD_NOT_ALLOWED");
}

#[tokio::test]
async fn a_plain_incoming_request_id_is_echoed() {
    let edge = spawn_edge().await;
    let response = edge
        .client
        .get(format!("{}/health", edge.base))
        .header("x-request-id", "req-42")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["x-request-id"], "req-42");
}
