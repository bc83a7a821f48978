//! The ceiling every benchmark is reported against: a minimal axum server on the same runtime
//! settings as central and edge, answering a POST with a fixed JSON body the size of a license
//! validation answer. Whatever it reaches on a machine is the most an axum service can do there.
//!
//! With `--sign` it also signs every answer as the services do (Ed25519 over the body, in the
//! `Celaest-Signature` header): the ceiling of a server that must sign, which separates the cost
//! of the signature from everything else a validation does.
//!
//! Usage: `baseline-server [ADDR] [--sign]` (default `127.0.0.1:9090`), then POST to
//! `/api/licenses/validate`.

use std::sync::Arc;

use axum::{
    Router,
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
    routing::post,
};
use celaest_protocol::signing::{SIGNATURE_HEADER, SigningKey};

/// About the size and shape of a signed validation answer in its envelope.
const BODY: &str = r#"{"success":true,"data":{"valid":true,"code":"VALID","message":"La licencia es válida","remaining_ips":4,"license":{"id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","status":"active","product_code":"MKT","expires_at":"2027-11-21T00:00:00Z"},"answered_by":"baseline","state_age_ms":0,"nonce":"3f1a9c","signature":"MEUCIQDx8kq2Qy7bLqY1mFZ3n0k4x8h9XbqkHq1nN1v2u3w4yAIgF5o6p7q8r9s0t1u2v3w4x5y6z7A8B9C0D1E2F3G4H5I="}}"#;

fn plain() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], BODY).into_response()
}

fn signed(key: &SigningKey) -> Response {
    let mut response = plain();
    if let Ok(value) = HeaderValue::from_str(&key.sign(BODY.as_bytes()).to_header_value()) {
        response.headers_mut().insert(SIGNATURE_HEADER, value);
    }
    response
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sign = args.iter().any(|a| a == "--sign");
    let addr = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "127.0.0.1:9090".into());
    let route = if sign {
        // A fixed seed: the key only has to cost what a real one costs.
        let key = Arc::new(SigningKey::from_seed(&[7; 32]).map_err(std::io::Error::other)?);
        post(move || {
            let key = Arc::clone(&key);
            async move { signed(&key) }
        })
    } else {
        post(|| async { plain() })
    };
    let app = Router::new().route("/api/licenses/validate", route);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await
}
