//! MODULO 4, authentication: Supabase JWTs and personal API keys, sessions, rate limiting, roles,
//! and the endpoints `/api/auth/{verify,refresh,me,logout}`.

pub mod api_keys;
pub mod gate;
pub mod jwt;
pub mod principal;
pub mod store;
pub mod supabase;
pub mod usage;

use std::time::Duration;

use axum::extract::State;
use redis::AsyncCommands;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use self::{
    jwt::{Claims, JwtVerifier},
    principal::{Authenticated, Role},
    store::{AuthKey, AuthProfile},
    supabase::{Session, SupabaseClient},
};
use crate::{
    audit::RequestMeta,
    cache::Redis,
    config::Config,
    docs::{ApiErrorBody, Envelope},
    http::{
        Error, ErrorCode, Result,
        extract::Json,
        response::{Data, NoContent},
        validate::{FieldErrors, Text, Validate},
    },
    orgs,
    state::AppState,
    users,
};

/// Authentication state shared by every request: verifiers, the Supabase client, and the local
/// caches kept coherent by the auth version (see [`gate`]).
pub struct AuthService {
    pub jwt: JwtVerifier,
    pub supabase: SupabaseClient,
    limit_per_min: u32,
    gate_script: redis::Script,
    profiles: moka::future::Cache<Uuid, (String, AuthProfile)>,
    keys: moka::future::Cache<[u8; 32], (String, Option<AuthKey>)>,
    sessions_seen: moka::future::Cache<Uuid, ()>,
}

impl std::fmt::Debug for AuthService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthService")
            .field("limit_per_min", &self.limit_per_min)
            .finish_non_exhaustive()
    }
}

impl AuthService {
    pub fn new(config: &Config, http: reqwest::Client) -> anyhow::Result<Self> {
        // A cached profile is re-read when its auth version moves; the TTL only bounds how stale
        // it can get if a version bump was lost while Redis was down.
        let ttl = Duration::from_secs(60);
        Ok(Self {
            jwt: JwtVerifier::new(&config.supabase, http.clone())?,
            supabase: SupabaseClient::new(&config.supabase, http),
            limit_per_min: config.security.rate_limit_per_min,
            gate_script: redis::Script::new(gate::GATE_SCRIPT_SOURCE),
            profiles: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            keys: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build(),
            sessions_seen: moka::future::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(Duration::from_secs(60))
                .build(),
        })
    }

    /// Makes every instance re-read `user_id`'s profile and keys on its next request (after a
    /// role change, deactivation, or a key revoked). Call after the change commits.
    pub async fn invalidate_user(&self, redis: &Redis, user_id: Uuid) {
        self.profiles.invalidate(&user_id).await;
        let bumped: redis::RedisResult<()> = async {
            let mut conn = redis.conn().await?;
            conn.set(
                redis.key(&gate::keys::version(user_id)),
                Uuid::new_v4().to_string(),
            )
            .await
        }
        .await;
        if let Err(e) = bumped {
            // Cached keys are trusted while their owner's version holds, and it did not move:
            // drop this instance's (they are cached by hash, so all of them).
            self.keys.invalidate_all();
            tracing::warn!(%user_id, error = %e, "auth version not bumped; other instances may lag up to 60 s");
        }
    }

    /// Makes every instance refuse `session_id` from now on. Call after `revoked_at` commits.
    pub async fn revoke_session(&self, redis: &Redis, session_id: Uuid) {
        self.sessions_seen.invalidate(&session_id).await;
        let marked: redis::RedisResult<()> = async {
            let mut conn = redis.conn().await?;
            conn.set_ex(
                redis.key(&gate::keys::revoked_session(session_id)),
                1,
                gate::REVOCATION_TTL.as_secs(),
            )
            .await
        }
        .await;
        if let Err(e) = marked {
            tracing::warn!(%session_id, error = %e, "revocation not in Redis; instances see it in PostgreSQL within 60 s");
        }
    }
}

/// Routes that need a principal.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me))
        .routes(routes!(logout))
}

/// Routes that work without credentials (and ignore any sent).
pub fn public_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(verify))
        .routes(routes!(refresh))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// A Supabase access token.
    #[schema(schema_with = AccessToken::schema)]
    pub token: String,
}

/// An access token as a request carries it.
type AccessToken = Text<1, 16_384>;
/// A refresh token.
type RefreshToken = Text<1, 4096>;

/// Tokens never print.
macro_rules! redacted_debug {
    ($($ty:ident),*) => {$(
        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($ty), " { <redacted> }"))
            }
        }
    )*};
}

redacted_debug!(VerifyRequest, RefreshRequest);

impl Validate for VerifyRequest {
    fn validate(&self, errors: &mut FieldErrors) {
        AccessToken::check(errors, "token", &self.token);
    }
}

/// The code of a valid token.
pub const VALID: &str = "VALID";

#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyAnswer {
    pub valid: bool,
    /// `VALID`, or why not: `TOKEN_INVALID`, `TOKEN_EXPIRED`, `SESSION_REVOKED`.
    pub code: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<Claims>,
}

/// Whether a token is valid, and its claims.
#[utoipa::path(post, path = "/api/auth/verify", tag = "auth", request_body = VerifyRequest,
    responses((status = 200, body = Envelope<VerifyAnswer>), (status = 422, body = ApiErrorBody), (status = 429, body = ApiErrorBody)))]
async fn verify(
    State(state): State<AppState>,
    Json(body): Json<VerifyRequest>,
) -> Result<Data<VerifyAnswer>> {
    let answer = match state.auth.jwt.verify(&body.token).await {
        Err(code) => VerifyAnswer {
            valid: false,
            code: code.as_str().into(),
            claims: None,
        },
        Ok(claims) => {
            let revoked = match claims.session_id {
                Some(session) => store::session_revoked(&state.db, session).await?,
                None => false,
            };
            if revoked {
                VerifyAnswer {
                    valid: false,
                    code: ErrorCode::SessionRevoked.as_str().into(),
                    claims: None,
                }
            } else {
                VerifyAnswer {
                    valid: true,
                    code: VALID.into(),
                    claims: Some(claims),
                }
            }
        }
    };
    Ok(Data(answer))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[schema(schema_with = RefreshToken::schema)]
    pub refresh_token: String,
}

impl Validate for RefreshRequest {
    fn validate(&self, errors: &mut FieldErrors) {
        RefreshToken::check(errors, "refresh_token", &self.refresh_token);
    }
}

/// Exchanges a refresh token for a new session through Supabase.
#[utoipa::path(post, path = "/api/auth/refresh", tag = "auth", request_body = RefreshRequest,
    responses((status = 200, body = Envelope<Session>), (status = 401, description = "`REFRESH_TOKEN_INVALID`", body = ApiErrorBody),
              (status = 503, description = "`AUTH_PROVIDER_UNAVAILABLE`", body = ApiErrorBody)))]
async fn refresh(
    State(state): State<AppState>,
    Json(body): Json<RefreshRequest>,
) -> Result<Data<Session>> {
    state
        .auth
        .supabase
        .refresh(&body.refresh_token)
        .await
        .map(Data)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub user: users::UserProfile,
    pub role: Role,
    pub organizations: Vec<orgs::Membership>,
    /// What the role allows, in the API-key scope vocabulary.
    pub permissions: Vec<&'static str>,
    /// `jwt` or `api_key`.
    pub authenticated_with: &'static str,
}

/// The caller's profile, role, organizations and permissions.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<Me>), (status = 401, body = ApiErrorBody)))]
async fn me(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Data<Me>> {
    let user = users::store::get(&state.db, principal.user_id)
        .await?
        .ok_or_else(Error::not_found)?;
    let organizations = orgs::store::memberships_of(&state.db, principal.user_id).await?;
    Ok(Data(Me {
        user,
        role: principal.role,
        organizations,
        permissions: principal::permissions(principal.role),
        authenticated_with: if principal.api_key_id().is_some() {
            "api_key"
        } else {
            "jwt"
        },
    }))
}

/// Closes the caller's session: its tokens are refused from now on, on every instance.
#[utoipa::path(post, path = "/api/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204, description = "Session closed"), (status = 400, description = "Not a session token", body = ApiErrorBody),
              (status = 401, body = ApiErrorBody)))]
async fn logout(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    meta: RequestMeta,
    headers: axum::http::HeaderMap,
) -> Result<NoContent> {
    let Some(session_id) = principal.session_id() else {
        return Err(Error::with_details(
            ErrorCode::BadRequest,
            serde_json::json!({ "reason": "not a session token" }),
        ));
    };
    users::service::revoke_session(
        &state,
        &principal,
        principal.user_id,
        session_id,
        users::service::SessionEnd::Logout,
        &meta,
    )
    .await?;
    // Tell Supabase too (best effort: our revocation already holds).
    if let Some(token) = gate::bearer(&headers)
        && let Err(e) = state.auth.supabase.logout(token).await
    {
        tracing::info!(error = ?e.code(), "Supabase logout not confirmed");
    }
    Ok(NoContent)
}
