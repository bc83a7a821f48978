//! Signed answers: the success envelope's exact bytes, as `SigningKey::sign_envelope` makes them,
//! sent with their `Celaest-Signature` header — the one way central and the edges answer a
//! validation, so a client verifies both alike.

use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use celaest_protocol::signing::{SIGNATURE_HEADER, SigningKey};
use serde::Serialize;

/// `data` in the success envelope, signed by `key`. Fails only when `data` cannot be serialized
/// (or its signature is not a header value), which is the caller's internal error.
pub fn signed<T: Serialize>(key: &SigningKey, data: T) -> anyhow::Result<Response> {
    let signed = key.sign_envelope(data)?;
    let signature = HeaderValue::from_str(&signed.signature)?;
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        signed.body,
    )
        .into_response();
    response.headers_mut().insert(SIGNATURE_HEADER, signature);
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::to_bytes;

    #[tokio::test]
    async fn the_signature_covers_the_exact_body_sent() {
        let key = SigningKey::from_seed(&[7u8; 32]).unwrap();
        let response = signed(&key, serde_json::json!({ "valid": true })).unwrap();
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
        let signature = response.headers()[SIGNATURE_HEADER]
            .to_str()
            .unwrap()
            .to_owned();
        let body = to_bytes(response.into_body(), usize::MAX).await.unwrap();
        let envelope: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(envelope["data"]["valid"], true);
        key.verifying_key().verify(&body, &signature).unwrap();
    }
}
