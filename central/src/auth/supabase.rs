//! Calls to Supabase Auth's HTTP API: refresh a session, log a session out, and create a user
//! (admin API, with the service key). The base URL is `SUPABASE_URL`, so tests point it at an
//! in-process fake speaking the same wire format.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::{
    config::SupabaseConfig,
    http::{Error, ErrorCode, Result},
};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct SupabaseClient {
    base: Option<String>,
    service_key: Option<SecretString>,
    http: reqwest::Client,
}

impl std::fmt::Debug for SupabaseClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SupabaseClient")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// A refreshed session, as Supabase returns it.
#[derive(Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Session {
    pub access_token: String,
    pub refresh_token: String,
    pub token_type: String,
    pub expires_in: i64,
    #[serde(default)]
    pub expires_at: Option<i64>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Deserialize)]
struct CreatedUser {
    id: Uuid,
}

impl SupabaseClient {
    pub fn new(config: &SupabaseConfig, http: reqwest::Client) -> Self {
        Self {
            base: config.url.clone(),
            service_key: config.service_key.clone(),
            http,
        }
    }

    fn endpoint(&self, path: &str) -> Result<(String, &str)> {
        match (&self.base, &self.service_key) {
            (Some(base), Some(key)) => Ok((format!("{base}/auth/v1{path}"), key.expose_secret())),
            _ => Err(Error::with_details(
                ErrorCode::AuthProviderUnavailable,
                json!({ "reason": "SUPABASE_URL and SUPABASE_SERVICE_KEY are not configured" }),
            )),
        }
    }

    /// Exchanges a refresh token for a new session (refresh tokens rotate).
    pub async fn refresh(&self, refresh_token: &str) -> Result<Session> {
        let (url, key) = self.endpoint("/token?grant_type=refresh_token")?;
        let response = self
            .http
            .post(url)
            .header("apikey", key)
            .json(&json!({ "refresh_token": refresh_token }))
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        match response.status().as_u16() {
            200 => response.json().await.map_err(|e| unavailable(&e)),
            400 | 401 | 403 | 404 | 422 => Err(Error::api(ErrorCode::RefreshTokenInvalid)),
            status => Err(provider_status(status)),
        }
    }

    /// Ends the token's session at Supabase (best effort: our own revocation does not wait on it).
    pub async fn logout(&self, access_token: &str) -> Result<()> {
        let (url, key) = self.endpoint("/logout?scope=local")?;
        let response = self
            .http
            .post(url)
            .header("apikey", key)
            .bearer_auth(access_token)
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        match response.status().as_u16() {
            200..=299 | 401 | 403 | 404 => Ok(()),
            status => Err(provider_status(status)),
        }
    }

    /// Creates a confirmed user with the service key; returns its id.
    pub async fn create_user(
        &self,
        email: &str,
        password: Option<&str>,
        role: &str,
    ) -> Result<Uuid> {
        let (url, key) = self.endpoint("/admin/users")?;
        let mut body =
            json!({ "email": email, "email_confirm": true, "app_metadata": { "role": role } });
        if let Some(password) = password {
            body["password"] = Value::from(password);
        }
        let response = self
            .http
            .post(url)
            .header("apikey", key)
            .bearer_auth(key)
            .json(&body)
            .timeout(TIMEOUT)
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        match response.status().as_u16() {
            200 | 201 => Ok(response
                .json::<CreatedUser>()
                .await
                .map_err(|e| unavailable(&e))?
                .id),
            409 | 422 => Err(Error::with_details(
                ErrorCode::AlreadyExists,
                json!({ "field": "email" }),
            )),
            status => Err(provider_status(status)),
        }
    }
}

fn unavailable(e: &reqwest::Error) -> Error {
    tracing::warn!(error = %e, "Supabase did not answer");
    Error::api(ErrorCode::AuthProviderUnavailable)
}

fn provider_status(status: u16) -> Error {
    tracing::warn!(status, "Supabase answered with an unexpected status");
    Error::with_details(
        ErrorCode::AuthProviderUnavailable,
        json!({ "upstream_status": status }),
    )
}
