//! The test harness: start the real app, talk to it.

use std::{collections::HashMap, net::SocketAddr};

use axum::Router;
use celaest_central::{config::Config, http, state::AppState};
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::Value;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Test configuration: the environment's Redis under a key prefix of its own, everything else
/// from development defaults, with `overrides` on top.
pub fn test_config(overrides: &[(&str, &str)]) -> Config {
    let prefix = format!("test:{}:", uuid::Uuid::now_v7());
    let mut vars: HashMap<String, String> = HashMap::from([
        ("APP_ENV".into(), "test".into()),
        (
            "REDIS_URL".into(),
            std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        ),
        ("REDIS_KEY_PREFIX".into(), prefix),
        (
            "CORS_ALLOWED_ORIGINS".into(),
            "http://localhost:3000".into(),
        ),
        ("LOG_LEVEL".into(), "warn".into()),
    ]);
    for (k, v) in overrides {
        vars.insert((*k).into(), (*v).into());
    }
    Config::from_lookup(|k| vars.get(k).cloned()).expect("test configuration is valid")
}

/// A running app and a client for it; the server stops when this is dropped.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    pub shutdown: CancellationToken,
    pub server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestApp {
    /// The real application against `db`.
    pub async fn spawn(db: PgPool) -> Self {
        Self::spawn_with(db, &[]).await
    }

    pub async fn spawn_with(db: PgPool, overrides: &[(&str, &str)]) -> Self {
        let state = AppState::new(test_config(overrides), db).expect("state");
        let router = http::build_router(state.clone());
        Self::serve(state, router).await
    }

    /// Serves any router (e.g. probe routes wrapped in the real middleware stack).
    pub async fn serve(state: AppState, router: Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(celaest_central::app::serve(
            listener,
            router,
            shutdown.clone(),
            std::time::Duration::from_secs(5),
        ));
        let client = reqwest::Client::builder()
            .no_gzip()
            .build()
            .expect("client");
        Self {
            addr,
            client,
            state,
            shutdown,
            server: Some(server),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> TestResponse {
        TestResponse::from(
            self.request(Method::GET, path)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> TestResponse {
        TestResponse::from(
            self.request(Method::POST, path)
                .json(body)
                .send()
                .await
                .expect("request"),
        )
        .await
    }

    /// A POST with a raw body and content type.
    pub async fn post_raw(
        &self,
        path: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> TestResponse {
        let request = self
            .request(Method::POST, path)
            .header("content-type", content_type)
            .body(body);
        TestResponse::from(request.send().await.expect("request")).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A response read whole: status, headers, and the body as JSON (or `Value::Null`) and text.
#[derive(Debug)]
pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl TestResponse {
    pub async fn from(response: reqwest::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.expect("body");
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Self {
            status,
            headers,
            text,
            json,
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the error envelope's shape, status and code; returns the error object.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> &Value {
        assert_eq!(self.status.as_u16(), status, "status of {}", self.text);
        assert_eq!(self.json["success"], Value::Bool(false), "{}", self.text);
        assert_eq!(self.json["error"]["code"], code, "{}", self.text);
        let message = self.json["error"]["message"].as_str().unwrap_or_default();
        assert!(!message.is_empty(), "error without message: {}", self.text);
        assert!(
            self.json["error"].get("details").is_some(),
            "error without details: {}",
            self.text
        );
        &self.json["error"]
    }

    /// Asserts a success envelope and returns `data`.
    #[track_caller]
    pub fn assert_ok(&self) -> &Value {
        assert!(
            self.status.is_success(),
            "status {} of {}",
            self.status,
            self.text
        );
        assert_eq!(self.json["success"], Value::Bool(true), "{}", self.text);
        &self.json["data"]
    }
}
