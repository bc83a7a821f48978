//! The gate every `/api` request passes: authentication, session revocation, rate limiting.
//!
//! One Redis round trip per request (a Lua script) does three things at once: counts the caller
//! against its per-minute limit, tells whether the token's session was revoked, and returns the
//! user's *auth version* — a counter bumped whenever the user's role, state or keys change. Each
//! instance caches profiles and keys locally under that version, so a change made on any instance
//! takes effect on the next request everywhere, without a database read per request.
//!
//! When Redis is unreachable the gate keeps answering: rate limiting fails open (logged, and
//! `/health/ready` reports Redis down) and revocation and profiles are read from PostgreSQL.

use std::{net::IpAddr, time::Duration};

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use chrono::Utc;
use ipnetwork::IpNetwork;
use uuid::Uuid;

use super::{
    AuthService, api_keys,
    principal::{AuthOutcome, Credential, Principal, Role},
    store::{self, AuthKey, AuthProfile},
};
use crate::{
    audit::{self, Actor, AuditEvent, RequestMeta},
    cache::Redis,
    http::{Error, ErrorCode, Result},
    state::AppState,
};

/// A session revocation is remembered in Redis this long (longer than any access token lives).
pub const REVOCATION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
const WINDOW_SECS: u64 = 60;

pub(super) const GATE_SCRIPT_SOURCE: &str = r"
local count = redis.call('INCR', KEYS[1])
local ttl = redis.call('TTL', KEYS[1])
if count == 1 or ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
local revoked = 0
if ARGV[2] == '1' then revoked = redis.call('EXISTS', KEYS[2]) end
local version = redis.call('GET', KEYS[3])
if not version then
  -- A fresh random token: after a Redis flush no cached entry can match by accident.
  version = ARGV[5]
  if version ~= '' then redis.call('SET', KEYS[3], version) end
end
if ARGV[3] ~= '' then redis.call('HSET', KEYS[4], ARGV[3], ARGV[4]) end
return {count, ttl, revoked, version}
";

/// Rate-limit state of one request, for the `X-RateLimit-*` headers.
#[derive(Debug, Clone, Copy)]
pub struct RateInfo {
    pub limit: u64,
    pub count: u64,
    pub reset_secs: u64,
}

impl RateInfo {
    fn exceeded(self) -> bool {
        self.count > self.limit
    }

    fn apply(self, headers: &mut HeaderMap) {
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.limit));
        headers.insert(
            "x-ratelimit-remaining",
            HeaderValue::from(self.limit.saturating_sub(self.count)),
        );
        headers.insert("x-ratelimit-reset", HeaderValue::from(self.reset_secs));
    }
}

struct GateReply {
    rate: RateInfo,
    revoked: bool,
    version: String,
}

/// Redis keys of the gate.
pub mod keys {
    use uuid::Uuid;

    pub fn version(user_id: Uuid) -> String {
        format!("auth:version:{user_id}")
    }
    pub fn revoked_session(session_id: Uuid) -> String {
        format!("auth:revoked-session:{session_id}")
    }
    pub const KEY_USAGE: &str = "auth:api-key-usage";
}

/// An authentication failure, with the caller's rate-limit state when it was charged.
pub(super) struct Rejection {
    error: Error,
    rate: Option<RateInfo>,
}

impl From<Error> for Rejection {
    fn from(error: Error) -> Self {
        Self { error, rate: None }
    }
}

impl From<sqlx::Error> for Rejection {
    fn from(error: sqlx::Error) -> Self {
        Self {
            error: error.into(),
            rate: None,
        }
    }
}

fn reject(rejection: Rejection) -> Response {
    let mut response = rejection.error.into_response();
    if response.status() == 401 {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    }
    if let Some(rate) = rejection.rate {
        rate.apply(response.headers_mut());
    }
    response
}

/// The middleware of authenticated routes.
pub async fn gate(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let meta = RequestMeta::from_parts(&parts, &state.config.http.trusted_proxies);
    match authenticate(&state, &parts.headers, &meta).await {
        Ok((outcome, rate)) => {
            parts.extensions.insert(outcome);
            let mut response = next.run(Request::from_parts(parts, body)).await;
            if let Some(rate) = rate {
                rate.apply(response.headers_mut());
            }
            response
        }
        Err(rejection) => reject(rejection),
    }
}

/// The middleware of public routes (license validation, token verify and refresh): limited per
/// client IP, and credentials sent along are ignored — an expired token must not stop a refresh.
pub async fn public_gate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let ip = crate::http::client_ip::client_ip_of(
        req.extensions(),
        req.headers(),
        &state.config.http.trusted_proxies,
    );
    let rate = match state.auth.charge_ip(&state.redis, ip).await {
        Ok(rate) => rate,
        Err(rejection) => return reject(rejection),
    };
    req.extensions_mut().insert(AuthOutcome::Anonymous);
    let mut response = next.run(req).await;
    if let Some(rate) = rate {
        rate.apply(response.headers_mut());
    }
    response
}

enum Presented<'a> {
    None,
    Bearer(&'a str),
    ApiKey(&'a str),
}

/// The token of an `Authorization: Bearer <token>` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

fn presented(headers: &HeaderMap) -> Result<Presented<'_>> {
    if headers.contains_key(header::AUTHORIZATION) {
        return bearer(headers)
            .map(Presented::Bearer)
            .ok_or_else(|| Error::api(ErrorCode::TokenInvalid));
    }
    if let Some(value) = headers.get("x-api-key") {
        return Ok(Presented::ApiKey(
            value
                .to_str()
                .map_err(|_| Error::api(ErrorCode::ApiKeyInvalid))?,
        ));
    }
    Ok(Presented::None)
}

async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    meta: &RequestMeta,
) -> Result<(AuthOutcome, Option<RateInfo>), Rejection> {
    let auth = &state.auth;
    let presented = match presented(headers) {
        Ok(presented) => presented,
        Err(error) => return Err(auth.failed(&state.redis, meta.ip, error).await),
    };
    match presented {
        Presented::None => Ok((
            AuthOutcome::Anonymous,
            auth.charge_ip(&state.redis, meta.ip).await?,
        )),
        Presented::Bearer(token) => {
            let (principal, rate) = auth.authenticate_token(state, token, meta).await?;
            Ok((AuthOutcome::Authenticated(principal), rate))
        }
        Presented::ApiKey(key) => {
            let (principal, rate) = auth.authenticate_api_key(state, key, meta.ip).await?;
            Ok((AuthOutcome::Authenticated(principal), rate))
        }
    }
}

impl AuthService {
    /// Counts a request against its client IP's budget; over it, the request is refused.
    pub(super) async fn charge_ip(
        &self,
        redis: &Redis,
        ip: IpAddr,
    ) -> Result<Option<RateInfo>, Rejection> {
        let rate = self
            .run_gate(redis, &format!("ip:{ip}"), None, None, None)
            .await
            .map(|g| g.rate);
        match rate {
            Some(rate) if rate.exceeded() => Err(Rejection {
                error: Error::rate_limited(rate.reset_secs.max(1)),
                rate: Some(rate),
            }),
            rate => Ok(rate),
        }
    }

    /// A failed authentication still costs the client IP one request, so guessing is limited.
    async fn failed(&self, redis: &Redis, ip: IpAddr, error: Error) -> Rejection {
        match self.charge_ip(redis, ip).await {
            Ok(rate) => Rejection { error, rate },
            Err(limited) => limited,
        }
    }

    /// Refuses a principal over its budget before any further work.
    fn within_limit(gate: Option<&GateReply>) -> Result<(), Rejection> {
        match gate {
            Some(g) if g.rate.exceeded() => Err(Rejection {
                error: Error::rate_limited(g.rate.reset_secs.max(1)),
                rate: Some(g.rate),
            }),
            _ => Ok(()),
        }
    }

    /// Runs the gate script; `None` (and a warning) when Redis cannot be reached.
    async fn run_gate(
        &self,
        redis: &Redis,
        subject: &str,
        session: Option<Uuid>,
        user: Option<Uuid>,
        key_use: Option<(Uuid, String)>,
    ) -> Option<GateReply> {
        let window = redis_window_key(subject);
        let session_key = session.map_or_else(
            || redis.key("auth:none"),
            |s| redis.key(&keys::revoked_session(s)),
        );
        let version_key =
            user.map_or_else(|| redis.key("auth:none"), |u| redis.key(&keys::version(u)));
        let (field, value) = key_use.map_or((String::new(), String::new()), |(id, v)| {
            (id.to_string(), v)
        });
        let result: redis::RedisResult<(u64, i64, i64, String)> = async {
            let mut conn = redis.conn().await?;
            self.gate_script
                .key(redis.key(&window))
                .key(session_key)
                .key(version_key)
                .key(redis.key(keys::KEY_USAGE))
                .arg(WINDOW_SECS)
                .arg(if session.is_some() { "1" } else { "0" })
                .arg(field)
                .arg(value)
                .arg(if user.is_some() {
                    Uuid::new_v4().to_string()
                } else {
                    String::new()
                })
                .invoke_async(&mut conn)
                .await
        }
        .await;
        match result {
            Ok((count, ttl, revoked, version)) => Some(GateReply {
                rate: RateInfo {
                    limit: u64::from(self.limit_per_min),
                    count,
                    reset_secs: u64::try_from(ttl).unwrap_or(WINDOW_SECS),
                },
                revoked: revoked == 1,
                version,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "Redis unreachable: rate limiting fails open, auth reads PostgreSQL");
                None
            }
        }
    }

    async fn authenticate_token(
        &self,
        state: &AppState,
        token: &str,
        meta: &RequestMeta,
    ) -> Result<(Principal, Option<RateInfo>), Rejection> {
        let claims = match self.jwt.verify(token).await {
            Ok(claims) => claims,
            Err(code) => return Err(self.failed(&state.redis, meta.ip, Error::api(code)).await),
        };
        let user_id = claims.sub;
        let gate = self
            .run_gate(
                &state.redis,
                &format!("user:{user_id}"),
                claims.session_id,
                Some(user_id),
                None,
            )
            .await;
        Self::within_limit(gate.as_ref())?;
        if let Some(g) = &gate
            && g.revoked
        {
            return Err(Error::api(ErrorCode::SessionRevoked).into());
        }
        if gate.is_none()
            && let Some(session_id) = claims.session_id
            && store::session_revoked(&state.db, session_id).await?
        {
            return Err(Error::api(ErrorCode::SessionRevoked).into());
        }
        let version = gate.as_ref().map(|g| g.version.clone());
        let profile = self
            .profile_for_token(state, user_id, version, &claims)
            .await?;
        ensure_active(&profile)?;
        if let Some(session_id) = claims.session_id {
            self.touch_session(state, session_id, &profile, meta)
                .await?;
        }
        let principal = Principal {
            user_id,
            role: profile.role,
            credential: Credential::Jwt {
                session_id: claims.session_id,
            },
        };
        Ok((principal, gate.map(|g| g.rate)))
    }

    /// The caller's profile: the cached copy when its auth version is current, else PostgreSQL
    /// (creating the profile on a user's first authenticated request).
    async fn profile_for_token(
        &self,
        state: &AppState,
        user_id: Uuid,
        version: Option<String>,
        claims: &super::jwt::Claims,
    ) -> Result<AuthProfile> {
        if let Some(version) = &version
            && let Some((cached_version, profile)) = self.profiles.get(&user_id).await
            && cached_version == *version
        {
            return Ok(profile);
        }
        let profile = match store::profile(&state.db, user_id).await? {
            Some(profile) => profile,
            None => {
                let role = claims
                    .app_metadata
                    .role
                    .as_deref()
                    .and_then(Role::parse)
                    .unwrap_or(Role::Client);
                let email = claims
                    .email
                    .clone()
                    .unwrap_or_else(|| format!("{user_id}@no-email.invalid"));
                store::create_profile(&state.db, user_id, &email, role).await?;
                tracing::info!(%user_id, role = role.as_str(), "profile created on first request");
                store::profile(&state.db, user_id)
                    .await?
                    .ok_or_else(Error::not_found)?
            }
        };
        if let Some(version) = version {
            self.profiles
                .insert(user_id, (version, profile.clone()))
                .await;
        }
        Ok(profile)
    }

    /// Tracks the session (at most once a minute per instance) and refuses a revoked one.
    async fn touch_session(
        &self,
        state: &AppState,
        session_id: Uuid,
        profile: &AuthProfile,
        meta: &RequestMeta,
    ) -> Result<()> {
        if self.sessions_seen.contains_key(&session_id) {
            return Ok(());
        }
        let mut tx = state.db.begin().await?;
        let touch = store::touch_session(
            &mut tx,
            session_id,
            profile.id,
            IpNetwork::from(meta.ip),
            meta.user_agent.as_deref(),
        )
        .await?;
        if touch.inserted {
            store::mark_login(&mut tx, profile.id).await?;
            let actor = Actor::User {
                user_id: profile.id,
                api_key_id: None,
            };
            let event = AuditEvent::new("user.login", "session", session_id);
            audit::record(&mut tx, actor, Some(meta), event).await?;
        }
        tx.commit().await?;
        if touch.revoked {
            // PostgreSQL knew what Redis forgot: remember it there again.
            self.revoke_session(&state.redis, session_id).await;
            return Err(Error::api(ErrorCode::SessionRevoked));
        }
        self.sessions_seen.insert(session_id, ()).await;
        Ok(())
    }

    async fn authenticate_api_key(
        &self,
        state: &AppState,
        presented: &str,
        ip: IpAddr,
    ) -> Result<(Principal, Option<RateInfo>), Rejection> {
        if !api_keys::looks_valid(presented) {
            return Err(self
                .failed(&state.redis, ip, Error::api(ErrorCode::ApiKeyInvalid))
                .await);
        }
        let hash = api_keys::hash(presented);
        // The key and, when it came from this instance's cache, the auth version it was cached
        // under (`None`: just read from PostgreSQL).
        let (known, cached_version) = match self.keys.get(&hash).await {
            Some((version, key)) => (key, Some(version)),
            None => {
                // A key this instance does not know costs a database read: charge the client IP
                // first, so guessing keys is bounded by the rate limit.
                let rate = self.charge_ip(&state.redis, ip).await?;
                let Some(key) = store::key_by_hash(&state.db, &hash).await? else {
                    // Unknown keys are remembered too: guessing costs no database read.
                    self.keys.insert(hash, (String::new(), None)).await;
                    return Err(Rejection {
                        error: Error::api(ErrorCode::ApiKeyInvalid),
                        rate,
                    });
                };
                (Some(key), None)
            }
        };
        let Some(known) = known else {
            return Err(self
                .failed(&state.redis, ip, Error::api(ErrorCode::ApiKeyInvalid))
                .await);
        };
        let usage = format!("{}|{ip}", Utc::now().timestamp_millis());
        let gate = self
            .run_gate(
                &state.redis,
                &format!("key:{}", known.id),
                None,
                Some(known.owner.id),
                Some((known.id, usage)),
            )
            .await;
        Self::within_limit(gate.as_ref())?;
        let key = match (&gate, cached_version) {
            (Some(g), Some(version)) if version == g.version => known,
            // Just read, before the gate told the owner's version: good for this request, but a
            // deletion or role change may have committed and bumped the version in between, so
            // it is cached under no version — the next request reads it again, after its gate,
            // and only that read is cached under the version.
            (Some(_), None) => {
                self.keys
                    .insert(hash, (String::new(), Some(known.clone())))
                    .await;
                known
            }
            (None, None) => known,
            // Cached under an older version, or Redis is down: read it again.
            (gate, Some(_)) => {
                let fresh = store::key_by_hash(&state.db, &hash).await?;
                if let Some(g) = gate {
                    self.keys
                        .insert(hash, (g.version.clone(), fresh.clone()))
                        .await;
                }
                fresh.ok_or_else(|| Rejection::from(Error::api(ErrorCode::ApiKeyRevoked)))?
            }
        };
        check_key(&key)?;
        ensure_active(&key.owner)?;
        let principal = Principal {
            user_id: key.owner.id,
            role: key.owner.role,
            credential: Credential::ApiKey {
                key_id: key.id,
                scopes: key.scopes,
            },
        };
        Ok((principal, gate.map(|g| g.rate)))
    }
}

fn redis_window_key(subject: &str) -> String {
    format!("ratelimit:{subject}")
}

fn check_key(key: &AuthKey) -> Result<()> {
    let now = Utc::now();
    if key.revoked_at.is_some_and(|at| at <= now) {
        return Err(Error::api(ErrorCode::ApiKeyRevoked));
    }
    if key.expires_at.is_some_and(|at| at <= now) {
        return Err(Error::api(ErrorCode::ApiKeyExpired));
    }
    Ok(())
}

fn ensure_active(profile: &AuthProfile) -> Result<()> {
    if profile.is_active && !profile.deleted {
        Ok(())
    } else {
        Err(Error::api(ErrorCode::UserDisabled))
    }
}
