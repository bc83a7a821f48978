//! Identity test support: an in-process fake of Supabase Auth (JWKS, token refresh, logout, admin
//! user creation) speaking its wire format, and tokens minted exactly as Supabase mints them.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    response::IntoResponse,
    routing::{get, post},
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use p256::{ecdsa::SigningKey, pkcs8::EncodePrivateKey};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use crate::helpers::TestApp;

/// The development HS256 secret the test configuration uses (no SUPABASE_JWT_SECRET set).
pub const HS256_SECRET: &str = "dev-only-supabase-jwt-secret-not-for-production";
pub const SERVICE_KEY: &str = "service-role-key-for-tests";
pub const ES256_KID: &str = "es256-test-key";
pub const GOOD_REFRESH_TOKEN: &str = "refresh-token-that-supabase-accepts";

/// The fake's view of what it was asked.
#[derive(Default)]
pub struct FakeLog {
    pub jwks_fetches: AtomicUsize,
    pub logouts: AtomicUsize,
    pub created_users: std::sync::Mutex<Vec<(Uuid, String)>>,
}

#[derive(Clone)]
struct FakeState {
    log: Arc<FakeLog>,
    jwks: Value,
}

/// A running fake Supabase; `url` is what SUPABASE_URL points at.
pub struct FakeSupabase {
    pub url: String,
    pub log: Arc<FakeLog>,
}

fn es256_signing_key() -> SigningKey {
    SigningKey::from_slice(&[7u8; 32]).expect("a valid P-256 scalar")
}

pub fn es256_jwks() -> Value {
    let point = es256_signing_key().verifying_key().to_sec1_point(false);
    json!({"keys": [{
        "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": ES256_KID,
        "x": URL_SAFE_NO_PAD.encode(point.x().expect("x")),
        "y": URL_SAFE_NO_PAD.encode(point.y().expect("y")),
    }]})
}

impl FakeSupabase {
    pub async fn start() -> Self {
        let log = Arc::new(FakeLog::default());
        let state = FakeState {
            log: log.clone(),
            jwks: es256_jwks(),
        };
        let app = Router::new()
            .route("/auth/v1/.well-known/jwks.json", get(jwks))
            .route("/auth/v1/token", post(token))
            .route("/auth/v1/logout", post(logout))
            .route("/auth/v1/admin/users", post(create_user))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, log }
    }
}

async fn jwks(State(state): State<FakeState>) -> Json<Value> {
    state.log.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    Json(state.jwks)
}

fn has_apikey(headers: &HeaderMap) -> bool {
    headers.get("apikey").and_then(|v| v.to_str().ok()) == Some(SERVICE_KEY)
}

async fn token(
    headers: HeaderMap,
    Query(q): Query<Vec<(String, String)>>,
    Json(body): Json<Value>,
) -> impl IntoResponse {
    if !has_apikey(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"message": "Invalid API key"})),
        );
    }
    let grant = q
        .iter()
        .find(|(k, _)| k == "grant_type")
        .map(|(_, v)| v.as_str());
    if grant != Some("refresh_token") || body["refresh_token"] != GOOD_REFRESH_TOKEN {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error": "invalid_grant", "error_description": "Invalid Refresh Token: Refresh Token Not Found"}),
            ),
        );
    }
    (
        StatusCode::OK,
        Json(json!({
            "access_token": "new-access-token", "token_type": "bearer", "expires_in": 3600,
            "expires_at": 4_102_444_800i64, "refresh_token": "rotated-refresh-token",
            "user": {"id": Uuid::now_v7()}
        })),
    )
}

async fn logout(State(state): State<FakeState>, headers: HeaderMap) -> StatusCode {
    if !has_apikey(&headers) || headers.get("authorization").is_none() {
        return StatusCode::UNAUTHORIZED;
    }
    state.log.logouts.fetch_add(1, Ordering::SeqCst);
    StatusCode::NO_CONTENT
}

async fn create_user(
    State(state): State<FakeState>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> impl IntoResponse {
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {SERVICE_KEY}"));
    if !authorized || !has_apikey(&headers) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({"msg": "This endpoint requires a valid service_role key"})),
        );
    }
    let email = body["email"].as_str().unwrap_or_default().to_owned();
    let mut users = state.log.created_users.lock().expect("lock");
    if users.iter().any(|(_, e)| *e == email) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            Json(
                json!({"code": 422, "error_code": "email_exists", "msg": "A user with this email address has already been registered"}),
            ),
        );
    }
    let id = Uuid::new_v4();
    users.push((id, email.clone()));
    (
        StatusCode::OK,
        Json(
            json!({"id": id, "aud": "authenticated", "email": email, "app_metadata": body["app_metadata"]}),
        ),
    )
}

/// Mints access tokens as Supabase does, for one project URL.
#[derive(Clone)]
pub struct Tokens {
    pub issuer: Option<String>,
}

#[derive(Clone, Debug)]
pub struct TokenSpec {
    pub sub: Uuid,
    pub email: String,
    pub session_id: Option<Uuid>,
    pub app_role: Option<String>,
    pub exp_in_secs: i64,
    pub aud: Value,
    pub alg: Algorithm,
    pub kid: Option<String>,
    pub issuer: Option<String>,
}

impl TokenSpec {
    pub fn new(sub: Uuid, email: &str) -> Self {
        Self {
            sub,
            email: email.into(),
            session_id: Some(Uuid::new_v4()),
            app_role: None,
            exp_in_secs: 3600,
            aud: json!("authenticated"),
            alg: Algorithm::HS256,
            kid: None,
            issuer: None,
        }
    }
}

impl Tokens {
    pub fn mint(&self, spec: &TokenSpec) -> String {
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "aud": spec.aud, "exp": now + spec.exp_in_secs, "iat": now - 5, "sub": spec.sub,
            "email": spec.email, "phone": "", "role": "authenticated", "aal": "aal1",
            "amr": [{"method": "password", "timestamp": now - 5}], "is_anonymous": false,
            "app_metadata": {"provider": "email", "providers": ["email"]}, "user_metadata": {},
        });
        if let Some(iss) = spec.issuer.clone().or_else(|| self.issuer.clone()) {
            claims["iss"] = json!(iss);
        }
        if let Some(session) = spec.session_id {
            claims["session_id"] = json!(session);
        }
        if let Some(role) = &spec.app_role {
            claims["app_metadata"]["role"] = json!(role);
        }
        let mut header = Header::new(spec.alg);
        header.kid = spec.kid.clone();
        let key = match spec.alg {
            Algorithm::ES256 => EncodingKey::from_ec_der(
                es256_signing_key()
                    .to_pkcs8_der()
                    .expect("pkcs8")
                    .as_bytes(),
            ),
            _ => EncodingKey::from_secret(HS256_SECRET.as_bytes()).expect("an HMAC key"),
        };
        jsonwebtoken::encode(&header, &claims, &key).expect("token")
    }
}

/// An app wired to a fake Supabase.
pub struct IdentityApp {
    pub app: TestApp,
    pub supabase: FakeSupabase,
    pub tokens: Tokens,
    pub db: PgPool,
}

impl IdentityApp {
    pub async fn start(db: PgPool) -> Self {
        Self::start_with(db, &[]).await
    }

    pub async fn start_with(db: PgPool, extra: &[(&str, &str)]) -> Self {
        let supabase = FakeSupabase::start().await;
        let mut overrides = vec![
            ("SUPABASE_URL", supabase.url.as_str()),
            ("SUPABASE_SERVICE_KEY", SERVICE_KEY),
        ];
        overrides.extend_from_slice(extra);
        let app = TestApp::spawn_with(db.clone(), &overrides).await;
        let tokens = Tokens {
            issuer: Some(format!("{}/auth/v1", supabase.url)),
        };
        Self {
            app,
            supabase,
            tokens,
            db,
        }
    }

    /// A user with a profile of `role` and a token for a fresh session.
    pub async fn user(&self, role: &str) -> TestUser {
        let id = Uuid::new_v4();
        let email = format!("{role}-{}@example.test", &id.to_string()[..8]);
        sqlx::query("INSERT INTO users_profile (id, email, role) VALUES ($1, $2, $3)")
            .bind(id)
            .bind(&email)
            .bind(role)
            .execute(&self.db)
            .await
            .expect("insert user");
        let spec = TokenSpec::new(id, &email);
        TestUser {
            id,
            email,
            token: self.tokens.mint(&spec),
            spec,
        }
    }

    /// An organization with `owner` as its owner.
    pub async fn org(&self, owner: &TestUser, slug: &str) -> Uuid {
        let id: Uuid = sqlx::query_scalar(
            "INSERT INTO organizations (name, slug, subscription_plan_id, subscription_status)
             VALUES ($1, $1, (SELECT id FROM subscription_plans WHERE code = 'pro'), 'active') RETURNING id",
        )
        .bind(slug)
        .fetch_one(&self.db)
        .await
        .expect("insert org");
        sqlx::query("INSERT INTO organization_members (organization_id, user_id, role) VALUES ($1, $2, 'owner')")
            .bind(id)
            .bind(owner.id)
            .execute(&self.db)
            .await
            .expect("insert owner");
        id
    }

    pub async fn send(
        &self,
        user: Option<&TestUser>,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> crate::helpers::TestResponse {
        let mut request = self.app.request(method, path);
        if let Some(user) = user {
            request = request.bearer_auth(&user.token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        crate::helpers::TestResponse::from(request.send().await.expect("request")).await
    }

    pub async fn audit_actions(&self, entity_id: &str) -> Vec<String> {
        sqlx::query_scalar("SELECT action FROM audit_logs WHERE entity_id = $1 ORDER BY created_at")
            .bind(entity_id)
            .fetch_all(&self.db)
            .await
            .expect("audit")
    }
}

#[derive(Clone, Debug)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub token: String,
    pub spec: TokenSpec,
}
