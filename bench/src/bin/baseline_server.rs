//! The ceiling every benchmark is reported against: a minimal axum server on the same runtime
//! settings as central and edge, answering a POST with a fixed JSON body the size of a license
//! validation answer. Whatever it reaches on a machine is the most an axum service can do there.
//!
//! Usage: `baseline-server [ADDR]` (default `127.0.0.1:9090`), then POST to `/api/licenses/validate`.

use axum::{Router, http::header, routing::post};

/// About the size and shape of a signed validation answer in its envelope.
const BODY: &str = r#"{"success":true,"data":{"valid":true,"code":"VALID","message":"La licencia es válida","remaining_ips":4,"license":{"id":"0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b","status":"active","product_code":"MKT","expires_at":"2027-11-21T00:00:00Z"},"answered_by":"baseline","state_age_ms":0,"nonce":"3f1a9c","signature":"MEUCIQDx8kq2Qy7bLqY1mFZ3n0k4x8h9XbqkHq1nN1v2u3w4yAIgF5o6p7q8r9s0t1u2v3w4x5y6z7A8B9C0D1E2F3G4H5I="}}"#;

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9090".into());
    let app = Router::new().route(
        "/api/licenses/validate",
        post(|| async { ([(header::CONTENT_TYPE, "application/json")], BODY) }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    axum::serve(listener, app).await
}
