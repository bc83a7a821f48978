//! Access tokens for central's admin API, made the way the end-to-end tests make them: a
//! Supabase-shaped HS256 token signed with central's development secret, with the role in
//! `app_metadata`. Central creates the user's profile on first use.

use serde_json::json;

/// Central's development HS256 secret (`SUPABASE_JWT_SECRET` unset).
const DEV_JWT_SECRET: &str = "dev-only-supabase-jwt-secret-not-for-production";

/// A token for a new user with `role`, valid for a day.
pub fn for_role(role: &str) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp();
    let user = uuid::Uuid::new_v4();
    let claims = json!({
        "aud": "authenticated", "exp": now + 24 * 3600, "iat": now, "sub": user,
        "email": format!("{role}-{user}@bench.test"), "role": "authenticated",
        "session_id": uuid::Uuid::new_v4(), "app_metadata": {"role": role},
    });
    let key = jsonwebtoken::EncodingKey::from_secret(DEV_JWT_SECRET.as_bytes())?;
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &key,
    )?)
}

/// A token for a new admin.
pub fn admin() -> anyhow::Result<String> {
    for_role("admin")
}
