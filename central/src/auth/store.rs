//! The SQL the gate needs: profiles, sessions and API keys as authentication sees them.

use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::principal::Role;

/// A profile as far as authorization cares.
#[derive(Debug, Clone)]
pub struct AuthProfile {
    pub id: Uuid,
    pub role: Role,
    pub is_active: bool,
    pub deleted: bool,
}

/// An API key and its owner.
#[derive(Debug, Clone)]
pub struct AuthKey {
    pub id: Uuid,
    pub scopes: Vec<String>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub owner: AuthProfile,
}

pub async fn profile(db: &PgPool, id: Uuid) -> sqlx::Result<Option<AuthProfile>> {
    sqlx::query_as!(
        AuthProfile,
        r#"SELECT id, role AS "role: Role", is_active, deleted_at IS NOT NULL AS "deleted!"
           FROM users_profile WHERE id = $1"#,
        id
    )
    .fetch_optional(db)
    .await
}

/// Creates the profile of a user seen for the first time (idempotent under races).
pub async fn create_profile(db: &PgPool, id: Uuid, email: &str, role: Role) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO users_profile (id, email, role) VALUES ($1, $2, $3) ON CONFLICT (id) DO NOTHING",
        id,
        email,
        role as Role
    )
    .execute(db)
    .await?;
    Ok(())
}

pub struct SessionTouch {
    pub revoked: bool,
    pub inserted: bool,
}

/// Records that `session_id` was seen (first sight inserts it) and says whether it is revoked.
/// A revoked session's row is left as it was.
pub async fn touch_session(
    conn: &mut PgConnection,
    session_id: Uuid,
    user_id: Uuid,
    ip: IpNetwork,
    user_agent: Option<&str>,
) -> sqlx::Result<SessionTouch> {
    let row = sqlx::query!(
        r#"INSERT INTO user_sessions (id, user_id, ip_address, user_agent, last_seen_at)
           VALUES ($1, $2, $3, $4, now())
           ON CONFLICT (id) DO UPDATE
             SET last_seen_at = now(), ip_address = EXCLUDED.ip_address,
                 user_agent = coalesce(EXCLUDED.user_agent, user_sessions.user_agent)
             WHERE user_sessions.revoked_at IS NULL
           RETURNING (xmax = 0) AS "inserted!""#,
        session_id,
        user_id,
        ip,
        user_agent
    )
    .fetch_optional(conn)
    .await?;
    // No row back: the conflicting session exists and is revoked.
    Ok(match row {
        Some(row) => SessionTouch {
            revoked: false,
            inserted: row.inserted,
        },
        None => SessionTouch {
            revoked: true,
            inserted: false,
        },
    })
}

pub async fn mark_login(conn: &mut PgConnection, user_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE users_profile SET last_login_at = now() WHERE id = $1",
        user_id
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn session_revoked(db: &PgPool, session_id: Uuid) -> sqlx::Result<bool> {
    let revoked = sqlx::query_scalar!(
        r#"SELECT revoked_at IS NOT NULL AS "revoked!" FROM user_sessions WHERE id = $1"#,
        session_id
    )
    .fetch_optional(db)
    .await?;
    Ok(revoked.unwrap_or(false))
}

pub async fn key_by_hash(db: &PgPool, hash: &[u8]) -> sqlx::Result<Option<AuthKey>> {
    let row = sqlx::query!(
        r#"SELECT k.id, k.scopes, k.expires_at, k.revoked_at,
                  p.id AS user_id, p.role AS "role: Role", p.is_active,
                  p.deleted_at IS NOT NULL AS "deleted!"
           FROM user_api_keys k JOIN users_profile p ON p.id = k.user_id
           WHERE k.key_hash = $1"#,
        hash
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|r| AuthKey {
        id: r.id,
        scopes: r.scopes,
        expires_at: r.expires_at,
        revoked_at: r.revoked_at,
        owner: AuthProfile {
            id: r.user_id,
            role: r.role,
            is_active: r.is_active,
            deleted: r.deleted,
        },
    }))
}

/// Stores last-use facts gathered in Redis, never moving a timestamp backwards.
pub async fn record_key_usage(
    db: &PgPool,
    ids: &[Uuid],
    used_at: &[DateTime<Utc>],
    ips: &[Option<IpNetwork>],
) -> sqlx::Result<u64> {
    let result = sqlx::query!(
        r#"UPDATE user_api_keys k
           SET last_used_at = GREATEST(k.last_used_at, u.used_at),
               last_used_ip = CASE WHEN k.last_used_at IS NULL OR u.used_at >= k.last_used_at
                                   THEN coalesce(u.ip, k.last_used_ip) ELSE k.last_used_ip END
           FROM UNNEST($1::uuid[], $2::timestamptz[], $3::inet[]) AS u(id, used_at, ip)
           WHERE k.id = u.id"#,
        ids,
        used_at,
        ips as &[Option<IpNetwork>]
    )
    .execute(db)
    .await?;
    Ok(result.rows_affected())
}
