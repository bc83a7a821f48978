//! The SQL of the users module. Every read takes the caller's [`Visibility`], so no query can
//! return a user the caller may not see.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{ApiKeyView, SessionView, UserFilters, UserProfile};
use crate::{
    auth::principal::Role,
    http::pagination::{Filters, ListRequest},
};

/// Whose rows a query may return.
#[derive(Debug, Clone, Copy)]
pub enum Visibility {
    Everyone,
    OnlySelf(Uuid),
}

const USER_COLUMNS: &str = "u.id, u.email, u.full_name, u.display_name, u.avatar_url, u.phone, u.role, \
     u.organization_id, u.locale, u.timezone, u.metadata, u.is_active, u.last_login_at, u.created_at, u.updated_at";

pub async fn get(db: &PgPool, id: Uuid) -> sqlx::Result<Option<UserProfile>> {
    sqlx::query_as!(
        UserProfile,
        r#"SELECT id, email, full_name, display_name, avatar_url, phone, role AS "role: Role", organization_id,
                  locale, timezone, metadata, is_active, last_login_at, created_at, updated_at
           FROM users_profile WHERE id = $1 AND deleted_at IS NULL"#,
        id
    )
    .fetch_optional(db)
    .await
}

/// A user the caller may see.
pub async fn get_visible(
    db: &PgPool,
    id: Uuid,
    visibility: Visibility,
) -> sqlx::Result<Option<UserProfile>> {
    match visibility {
        Visibility::OnlySelf(me) if me != id => Ok(None),
        _ => get(db, id).await,
    }
}

pub async fn list(
    db: &PgPool,
    visibility: Visibility,
    filters: &UserFilters,
    list: &ListRequest,
) -> sqlx::Result<(Vec<UserProfile>, i64)> {
    let apply = |qb: &mut QueryBuilder<Postgres>| {
        let mut f = Filters::new(qb);
        f.raw("u.deleted_at IS NULL");
        if let Visibility::OnlySelf(me) = visibility {
            f.eq("u.id", Some(me));
        }
        f.eq("u.role", filters.role.map(Role::as_str))
            .eq("u.is_active", filters.is_active)
            .eq("u.organization_id", filters.organization_id)
            .after("u.created_at", filters.created_after)
            .before("u.created_at", filters.created_before)
            .search(
                &["u.email", "u.full_name", "u.display_name"],
                filters.q.clone(),
            );
    };
    let mut count = QueryBuilder::new("SELECT count(*) FROM users_profile u");
    apply(&mut count);
    let total = count.build_query_scalar::<i64>().fetch_one(db).await?;
    let mut rows = QueryBuilder::new(format!("SELECT {USER_COLUMNS} FROM users_profile u"));
    apply(&mut rows);
    list.push_order_and_page(&mut rows, "u.id");
    let items = rows.build_query_as::<UserProfile>().fetch_all(db).await?;
    Ok((items, total))
}

pub struct NewUser<'a> {
    pub id: Uuid,
    pub email: &'a str,
    pub full_name: Option<&'a str>,
    pub role: Role,
    pub organization_id: Option<Uuid>,
    pub locale: &'a str,
}

pub async fn insert(conn: &mut PgConnection, user: &NewUser<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO users_profile (id, email, full_name, role, organization_id, locale) VALUES ($1, $2, $3, $4, $5, $6)",
        user.id,
        user.email,
        user.full_name,
        user.role as Role,
        user.organization_id,
        user.locale
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn email_taken(db: &PgPool, email: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM users_profile WHERE lower(email) = lower($1) AND deleted_at IS NULL) AS "e!""#,
        email
    )
    .fetch_one(db)
    .await
}

/// Locks a live user row for an update in this transaction.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<UserProfile>> {
    sqlx::query_as!(
        UserProfile,
        r#"SELECT id, email, full_name, display_name, avatar_url, phone, role AS "role: Role", organization_id,
                  locale, timezone, metadata, is_active, last_login_at, created_at, updated_at
           FROM users_profile WHERE id = $1 AND deleted_at IS NULL FOR UPDATE"#,
        id
    )
    .fetch_optional(conn)
    .await
}

/// Writes every mutable column of `user` (the service decided what changes).
pub async fn update(conn: &mut PgConnection, user: &UserProfile) -> sqlx::Result<UserProfile> {
    sqlx::query_as!(
        UserProfile,
        r#"UPDATE users_profile
           SET full_name = $2, display_name = $3, avatar_url = $4, phone = $5, role = $6, organization_id = $7,
               locale = $8, timezone = $9, metadata = $10, is_active = $11
           WHERE id = $1
           RETURNING id, email, full_name, display_name, avatar_url, phone, role AS "role: Role", organization_id,
                     locale, timezone, metadata, is_active, last_login_at, created_at, updated_at"#,
        user.id,
        user.full_name,
        user.display_name,
        user.avatar_url,
        user.phone,
        user.role as Role,
        user.organization_id,
        user.locale,
        user.timezone,
        user.metadata,
        user.is_active
    )
    .fetch_one(conn)
    .await
}

/// Soft-deletes a user and revokes everything that lets it in; returns the sessions revoked.
pub async fn soft_delete(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Vec<Uuid>> {
    sqlx::query!(
        "UPDATE users_profile SET deleted_at = now(), is_active = false WHERE id = $1",
        id
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query!("UPDATE user_api_keys SET revoked_at = now() WHERE user_id = $1 AND (revoked_at IS NULL OR revoked_at > now())", id)
        .execute(&mut *conn)
        .await?;
    sqlx::query_scalar!(
        "UPDATE user_sessions SET revoked_at = now(), revoked_reason = 'user deleted'
         WHERE user_id = $1 AND revoked_at IS NULL RETURNING id",
        id
    )
    .fetch_all(conn)
    .await
}

pub async fn sessions(db: &PgPool, user_id: Uuid) -> sqlx::Result<Vec<SessionView>> {
    sqlx::query_as!(
        SessionView,
        r#"SELECT id, host(ip_address) AS ip_address, user_agent, created_at, last_seen_at, expires_at, revoked_at, revoked_reason,
                  false AS "current!"
           FROM user_sessions WHERE user_id = $1 ORDER BY last_seen_at DESC LIMIT 200"#,
        user_id
    )
    .fetch_all(db)
    .await
}

/// Marks a session revoked; `None` when the user has no such session.
pub async fn revoke_session(
    conn: &mut PgConnection,
    user_id: Uuid,
    session_id: Uuid,
    reason: &str,
) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "UPDATE user_sessions SET revoked_at = coalesce(revoked_at, now()), revoked_reason = coalesce(revoked_reason, $3)
         WHERE id = $1 AND user_id = $2 RETURNING id",
        session_id,
        user_id,
        reason
    )
    .fetch_optional(conn)
    .await
}

pub async fn api_keys(db: &PgPool, user_id: Uuid) -> sqlx::Result<Vec<ApiKeyView>> {
    sqlx::query_as!(
        ApiKeyView,
        r#"SELECT id, name, key_prefix, scopes, expires_at, last_used_at, host(last_used_ip) AS last_used_ip, revoked_at, rotated_from_id, created_at
           FROM user_api_keys WHERE user_id = $1 ORDER BY created_at DESC"#,
        user_id
    )
    .fetch_all(db)
    .await
}

pub struct NewKey<'a> {
    pub user_id: Uuid,
    pub name: &'a str,
    pub prefix: &'a str,
    pub hash: &'a [u8],
    pub scopes: &'a [String],
    pub expires_at: Option<DateTime<Utc>>,
    pub rotated_from: Option<Uuid>,
}

pub async fn insert_key(conn: &mut PgConnection, key: &NewKey<'_>) -> sqlx::Result<ApiKeyView> {
    sqlx::query_as!(
        ApiKeyView,
        r#"INSERT INTO user_api_keys (user_id, name, key_prefix, key_hash, scopes, expires_at, rotated_from_id)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           RETURNING id, name, key_prefix, scopes, expires_at, last_used_at, host(last_used_ip) AS last_used_ip, revoked_at, rotated_from_id, created_at"#,
        key.user_id,
        key.name,
        key.prefix,
        key.hash,
        key.scopes,
        key.expires_at,
        key.rotated_from
    )
    .fetch_one(conn)
    .await
}

/// A key of `user_id` that still lets its holder in, locked for this transaction.
pub async fn lock_live_key(
    conn: &mut PgConnection,
    user_id: Uuid,
    key_id: Uuid,
) -> sqlx::Result<Option<ApiKeyView>> {
    sqlx::query_as!(
        ApiKeyView,
        r#"SELECT id, name, key_prefix, scopes, expires_at, last_used_at, host(last_used_ip) AS last_used_ip, revoked_at, rotated_from_id, created_at
           FROM user_api_keys
           WHERE id = $1 AND user_id = $2 AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())
           FOR UPDATE"#,
        key_id,
        user_id
    )
    .fetch_optional(conn)
    .await
}

/// Revokes a live key at once (the row stays, for its owner's history and the audit trail).
pub async fn delete_key(
    conn: &mut PgConnection,
    user_id: Uuid,
    key_id: Uuid,
) -> sqlx::Result<Option<ApiKeyView>> {
    sqlx::query_as!(
        ApiKeyView,
        r#"UPDATE user_api_keys SET revoked_at = now()
           WHERE id = $1 AND user_id = $2 AND (revoked_at IS NULL OR revoked_at > now())
           RETURNING id, name, key_prefix, scopes, expires_at, last_used_at, host(last_used_ip) AS last_used_ip, revoked_at,
                     rotated_from_id, created_at"#,
        key_id,
        user_id
    )
    .fetch_optional(conn)
    .await
}

pub async fn retire_key(
    conn: &mut PgConnection,
    key_id: Uuid,
    at: DateTime<Utc>,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE user_api_keys SET revoked_at = $2 WHERE id = $1",
        key_id,
        at
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Which of `user_id`'s organizations exist and are visible, for validation of a primary org.
pub async fn organization_exists(db: &PgPool, id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM organizations WHERE id = $1 AND deleted_at IS NULL) AS "e!""#, id)
        .fetch_one(db)
        .await
}
