//! Supabase access tokens: HS256 with the project's legacy secret, ES256/RS256 with the keys of
//! `{SUPABASE_URL}/auth/v1/.well-known/jwks.json`.
//!
//! The JWKS is fetched on first need, kept for [`JWKS_TTL`], and fetched again when a token names
//! a `kid` we do not know — one fetch at a time, and at most once per [`REFETCH_INTERVAL`], so a
//! flood of tokens with made-up `kid`s cannot turn into a flood of requests to Supabase.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation, decode, decode_header, errors::ErrorKind, jwk::JwkSet,
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, RwLock};
use uuid::Uuid;

use crate::{config::SupabaseConfig, http::ErrorCode};

const JWKS_TTL: Duration = Duration::from_secs(600);
const REFETCH_INTERVAL: Duration = Duration::from_secs(30);
const LEEWAY_SECS: u64 = 10;

/// The claims central reads from a Supabase access token.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Claims {
    /// The user's id.
    pub sub: Uuid,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub session_id: Option<Uuid>,
    #[serde(default)]
    pub app_metadata: AppMetadata,
    pub exp: i64,
    #[serde(default)]
    pub iat: Option<i64>,
    #[serde(default)]
    pub iss: Option<String>,
    /// Supabase's Postgres role (`authenticated`), not ours.
    #[serde(default)]
    pub role: Option<String>,
}

/// Server-only metadata; `role` is the initial CELAEST role of a new user.
#[derive(Debug, Clone, Default, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppMetadata {
    #[serde(default)]
    pub role: Option<String>,
}

pub struct JwtVerifier {
    hs256: DecodingKey,
    issuer: Option<String>,
    jwks_url: Option<String>,
    http: reqwest::Client,
    jwks: Arc<RwLock<JwksCache>>,
    fetch_lock: Arc<Mutex<Option<Instant>>>,
}

#[derive(Default)]
struct JwksCache {
    keys: HashMap<String, DecodingKey>,
    fetched_at: Option<Instant>,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// Fails on an empty JWT secret (jsonwebtoken refuses an empty HMAC key).
    pub fn new(config: &SupabaseConfig, http: reqwest::Client) -> anyhow::Result<Self> {
        Ok(Self {
            hs256: DecodingKey::from_secret(config.jwt_secret.expose_secret().as_bytes())?,
            issuer: config.url.as_ref().map(|url| format!("{url}/auth/v1")),
            jwks_url: config
                .url
                .as_ref()
                .map(|url| format!("{url}/auth/v1/.well-known/jwks.json")),
            http,
            jwks: Arc::new(RwLock::new(JwksCache::default())),
            fetch_lock: Arc::new(Mutex::new(None)),
        })
    }

    /// Verifies a token's signature, audience, issuer and times; `TOKEN_EXPIRED` or
    /// `TOKEN_INVALID` otherwise.
    pub async fn verify(&self, token: &str) -> Result<Claims, ErrorCode> {
        let header = decode_header(token).map_err(|_| ErrorCode::TokenInvalid)?;
        let key = match header.alg {
            Algorithm::HS256 => self.hs256.clone(),
            Algorithm::ES256 | Algorithm::RS256 => {
                let kid = header.kid.as_deref().ok_or(ErrorCode::TokenInvalid)?;
                self.jwks_key(kid).await.ok_or(ErrorCode::TokenInvalid)?
            }
            _ => return Err(ErrorCode::TokenInvalid),
        };
        let mut validation = Validation::new(header.alg);
        validation.set_audience(&["authenticated"]);
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        validation.validate_nbf = true;
        validation.leeway = LEEWAY_SECS;
        if let Some(issuer) = &self.issuer {
            validation.set_issuer(&[issuer]);
            // jsonwebtoken checks `iss` only when a token has one: require it.
            validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
        }
        decode::<Claims>(token, &key, &validation)
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => ErrorCode::TokenExpired,
                _ => ErrorCode::TokenInvalid,
            })
    }

    /// The key for `kid`. A known key is served even when the set is due for a refresh (which then
    /// happens in the background); only an unknown `kid` waits for a fetch.
    async fn jwks_key(&self, kid: &str) -> Option<DecodingKey> {
        {
            let cache = self.jwks.read().await;
            if let Some(key) = cache.keys.get(kid) {
                let stale = cache.fetched_at.is_none_or(|at| at.elapsed() >= JWKS_TTL);
                if stale {
                    self.refresh_in_background();
                }
                return Some(key.clone());
            }
        }
        self.refresh(kid).await;
        self.jwks.read().await.keys.get(kid).cloned()
    }

    fn refresh_in_background(&self) {
        let (Some(url), Ok(mut last_attempt)) = (
            self.jwks_url.clone(),
            self.fetch_lock.clone().try_lock_owned(),
        ) else {
            return; // a fetch is already under way
        };
        if last_attempt.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
            return;
        }
        *last_attempt = Some(Instant::now());
        let (http, jwks) = (self.http.clone(), self.jwks.clone());
        tokio::spawn(async move {
            match fetch(&http, &url).await {
                Ok(keys) => {
                    *jwks.write().await = JwksCache {
                        keys,
                        fetched_at: Some(Instant::now()),
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "JWKS refresh failed; keeping the keys we have");
                }
            }
            drop(last_attempt);
        });
    }

    /// Fetches the JWKS for an unknown `kid`, unless another task just did or the last attempt
    /// was too recent.
    async fn refresh(&self, kid: &str) {
        let Some(url) = &self.jwks_url else { return };
        let mut last_attempt = self.fetch_lock.lock().await;
        if self.jwks.read().await.keys.contains_key(kid) {
            return;
        }
        if last_attempt.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
            return;
        }
        *last_attempt = Some(Instant::now());
        match fetch(&self.http, url).await {
            Ok(keys) => {
                tracing::info!(keys = keys.len(), "JWKS refreshed");
                *self.jwks.write().await = JwksCache {
                    keys,
                    fetched_at: Some(Instant::now()),
                };
            }
            Err(e) => tracing::warn!(error = %e, "JWKS fetch failed; keeping the keys we have"),
        }
    }
}

async fn fetch(http: &reqwest::Client, url: &str) -> anyhow::Result<HashMap<String, DecodingKey>> {
    let set: JwkSet = http
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let mut keys = HashMap::new();
    for jwk in &set.keys {
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        match DecodingKey::from_jwk(jwk) {
            Ok(key) => {
                keys.insert(kid, key);
            }
            Err(e) => tracing::warn!(kid, error = %e, "unusable JWK skipped"),
        }
    }
    Ok(keys)
}
