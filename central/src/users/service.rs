//! The rules of the users module, free of HTTP: who may see and change which user, and what each
//! change writes (always with its audit row, in the same transaction).

use chrono::{Duration, Utc};
use serde_json::json;
use uuid::Uuid;

use super::{
    ApiKeyView, CreateApiKey, CreateUser, CreatedApiKey, RotateApiKey, SessionView, UpdateUser,
    UserFilters, UserProfile,
    store::{self, Visibility},
};
use crate::{
    audit::{self, AuditEvent, RequestMeta},
    auth::{
        api_keys,
        principal::{Credential, Principal, Role, scopes},
    },
    http::{Error, ErrorCode, Result, ResultExt, pagination::ListRequest, validate::FieldProblem},
    state::AppState,
};

/// Users the principal may read.
fn visibility(principal: &Principal) -> Visibility {
    if principal.reads_everything() {
        Visibility::Everyone
    } else {
        Visibility::OnlySelf(principal.user_id)
    }
}

/// The principal may manage `user_id`'s own things (profile, sessions, keys): itself, or admins.
fn may_manage(principal: &Principal, user_id: Uuid) -> bool {
    principal.is(user_id) || principal.is_admin()
}

/// A key made by a caller that itself came with an API key may not grant more than that key has.
fn ensure_scopes_within(principal: &Principal, scopes: &[String]) -> Result<()> {
    match &principal.credential {
        Credential::ApiKey { scopes: own, .. }
            if !scopes.iter().all(|s| scopes::grants(own, s)) =>
        {
            Err(Error::with_details(
                ErrorCode::InsufficientScope,
                json!({ "reason": "a key cannot grant scopes its creator's key lacks" }),
            ))
        }
        _ => Ok(()),
    }
}

/// A primary organization named in a body must exist (409 on `organization_id` otherwise).
async fn ensure_organization_exists(state: &AppState, organization_id: Option<Uuid>) -> Result<()> {
    match organization_id {
        Some(org) if !store::organization_exists(&state.db, org).await? => {
            Err(Error::conflict("organization_id", FieldProblem::NotFound))
        }
        _ => Ok(()),
    }
}

/// Checks the user is visible (else 404) and manageable (else 403).
async fn manageable(state: &AppState, principal: &Principal, user_id: Uuid) -> Result<UserProfile> {
    let user = get(state, principal, user_id).await?;
    principal.ensure(may_manage(principal, user_id))?;
    Ok(user)
}

pub async fn list(
    state: &AppState,
    principal: &Principal,
    filters: &UserFilters,
    list: &ListRequest,
) -> Result<(Vec<UserProfile>, u64)> {
    principal.ensure(principal.reads_everything())?;
    let (items, total) = store::list(&state.db, visibility(principal), filters, list).await?;
    Ok((items, u64::try_from(total).unwrap_or(0)))
}

pub async fn get(state: &AppState, principal: &Principal, id: Uuid) -> Result<UserProfile> {
    store::get_visible(&state.db, id, visibility(principal))
        .await?
        .ok_or_else(Error::not_found)
}

pub async fn create(
    state: &AppState,
    principal: &Principal,
    body: CreateUser,
    meta: &RequestMeta,
) -> Result<UserProfile> {
    principal.ensure(principal.is_admin())?;
    ensure_organization_exists(state, body.organization_id).await?;
    let role = body.role.unwrap_or(Role::Client);
    let email = body.email.trim().to_lowercase();
    // Refuse a taken email before creating anything at Supabase, so a conflict leaves no orphan.
    if store::email_taken(&state.db, &email).await? {
        return Err(Error::with_details(
            ErrorCode::AlreadyExists,
            json!({ "field": "email" }),
        ));
    }
    let id = match body.id {
        Some(id) => id,
        None => {
            state
                .auth
                .supabase
                .create_user(&email, body.password.as_deref(), role.as_str())
                .await?
        }
    };
    let mut tx = state.db.begin().await?;
    let new = store::NewUser {
        id,
        email: &email,
        full_name: body.full_name.as_deref().map(str::trim),
        role,
        organization_id: body.organization_id,
        locale: body.locale.as_deref().unwrap_or("es"),
    };
    store::insert(&mut tx, &new)
        .await
        .on_constraint("users_profile_email_lower_key", || {
            Error::with_details(ErrorCode::AlreadyExists, json!({ "field": "email" }))
        })
        .on_constraint("users_profile_pkey", || {
            Error::with_details(ErrorCode::AlreadyExists, json!({ "field": "id" }))
        })?;
    let event = AuditEvent::new("user.created", "user", id)
        .meta("email", &email)
        .meta("role", role.as_str());
    audit::record(&mut tx, principal.into(), Some(meta), event).await?;
    let user = store::lock(&mut tx, id)
        .await?
        .ok_or_else(Error::not_found)?;
    tx.commit().await?;
    Ok(user)
}

pub async fn update(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    body: UpdateUser,
    meta: &RequestMeta,
) -> Result<UserProfile> {
    manageable(state, principal, id).await?;
    principal.ensure(principal.can_write())?;
    let account_change =
        body.role.is_some() || body.is_active.is_some() || body.organization_id.is_some();
    principal.ensure(!account_change || principal.is_admin())?;
    ensure_organization_exists(state, body.organization_id).await?;

    let mut tx = state.db.begin().await?;
    let before = store::lock(&mut tx, id)
        .await?
        .ok_or_else(Error::not_found)?;
    let p = body.profile;
    let mut after = before.clone();
    after.full_name = p.full_name.map(|s| s.trim().to_owned()).or(after.full_name);
    after.display_name = p
        .display_name
        .map(|s| s.trim().to_owned())
        .or(after.display_name);
    after.avatar_url = p.avatar_url.or(after.avatar_url);
    after.phone = p.phone.or(after.phone);
    after.locale = p.locale.unwrap_or(after.locale);
    after.timezone = p.timezone.unwrap_or(after.timezone);
    after.metadata = p.metadata.unwrap_or(after.metadata);
    after.role = body.role.unwrap_or(after.role);
    after.is_active = body.is_active.unwrap_or(after.is_active);
    after.organization_id = body.organization_id.or(after.organization_id);
    let updated = store::update(&mut tx, &after).await?;

    let event = AuditEvent::new("user.updated", "user", id)
        .change("full_name", &before.full_name, &updated.full_name)
        .change("display_name", &before.display_name, &updated.display_name)
        .change("avatar_url", &before.avatar_url, &updated.avatar_url)
        .change("phone", &before.phone, &updated.phone)
        .change("locale", &before.locale, &updated.locale)
        .change("timezone", &before.timezone, &updated.timezone)
        .change("metadata", &before.metadata, &updated.metadata)
        .change("role", &before.role, &updated.role)
        .change("is_active", &before.is_active, &updated.is_active)
        .change(
            "organization_id",
            &before.organization_id,
            &updated.organization_id,
        );
    if !event.changes.is_empty() {
        audit::record(&mut tx, principal.into(), Some(meta), event).await?;
    }
    tx.commit().await?;
    if before.role != updated.role || before.is_active != updated.is_active {
        state.auth.invalidate_user(&state.redis, id).await;
    }
    Ok(updated)
}

pub async fn delete(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    meta: &RequestMeta,
) -> Result<()> {
    get(state, principal, id).await?;
    principal.ensure(principal.is_admin())?;
    let mut tx = state.db.begin().await?;
    let user = store::lock(&mut tx, id)
        .await?
        .ok_or_else(Error::not_found)?;
    let sessions = store::soft_delete(&mut tx, id).await?;
    let event = AuditEvent::new("user.deleted", "user", id)
        .meta("email", &user.email)
        .meta("sessions_revoked", sessions.len());
    audit::record(&mut tx, principal.into(), Some(meta), event).await?;
    tx.commit().await?;
    state.auth.invalidate_user(&state.redis, id).await;
    for session in sessions {
        state.auth.revoke_session(&state.redis, session).await;
    }
    Ok(())
}

pub async fn sessions(
    state: &AppState,
    principal: &Principal,
    user_id: Uuid,
) -> Result<Vec<SessionView>> {
    let user = get(state, principal, user_id).await?;
    let current = principal.session_id();
    let mut sessions = store::sessions(&state.db, user.id).await?;
    for session in &mut sessions {
        session.current = Some(session.id) == current;
    }
    Ok(sessions)
}

/// Why a session ends: the reason stored on it and the audit action recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The session's own user logged out.
    Logout,
    /// The session was revoked from the sessions list.
    Revoked,
}

impl SessionEnd {
    fn reason(self) -> &'static str {
        match self {
            Self::Logout => "logout",
            Self::Revoked => "revoked",
        }
    }

    fn audit_action(self) -> &'static str {
        match self {
            Self::Logout => "user.logout",
            Self::Revoked => "session.revoked",
        }
    }
}

pub async fn revoke_session(
    state: &AppState,
    principal: &Principal,
    user_id: Uuid,
    session_id: Uuid,
    end: SessionEnd,
    meta: &RequestMeta,
) -> Result<()> {
    manageable(state, principal, user_id).await?;
    let mut tx = state.db.begin().await?;
    store::revoke_session(&mut tx, user_id, session_id, end.reason())
        .await?
        .ok_or_else(Error::not_found)?;
    let event = AuditEvent::new(end.audit_action(), "session", session_id).meta("user_id", user_id);
    audit::record(&mut tx, principal.into(), Some(meta), event).await?;
    tx.commit().await?;
    state.auth.revoke_session(&state.redis, session_id).await;
    Ok(())
}

pub async fn api_keys(
    state: &AppState,
    principal: &Principal,
    user_id: Uuid,
) -> Result<Vec<ApiKeyView>> {
    let user = get(state, principal, user_id).await?;
    Ok(store::api_keys(&state.db, user.id).await?)
}

pub async fn create_api_key(
    state: &AppState,
    principal: &Principal,
    user_id: Uuid,
    body: CreateApiKey,
    meta: &RequestMeta,
) -> Result<CreatedApiKey> {
    manageable(state, principal, user_id).await?;
    ensure_scopes_within(principal, &body.scopes)?;
    crate::http::validate::ensure_future("expires_at", body.expires_at)?;
    let new = api_keys::generate()?;
    let mut scopes = body.scopes;
    scopes.sort();
    scopes.dedup();
    let mut tx = state.db.begin().await?;
    let key = store::insert_key(
        &mut tx,
        &store::NewKey {
            user_id,
            name: body.name.trim(),
            prefix: &new.prefix,
            hash: &new.hash,
            scopes: &scopes,
            expires_at: body.expires_at,
            rotated_from: None,
        },
    )
    .await?;
    let event = AuditEvent::new("api_key.created", "api_key", key.id)
        .meta("user_id", user_id)
        .meta("name", &key.name)
        .meta("scopes", &key.scopes);
    audit::record(&mut tx, principal.into(), Some(meta), event).await?;
    tx.commit().await?;
    Ok(CreatedApiKey {
        key,
        secret: new.secret,
    })
}

pub async fn delete_api_key(
    state: &AppState,
    principal: &Principal,
    user_id: Uuid,
    key_id: Uuid,
    meta: &RequestMeta,
) -> Result<()> {
    manageable(state, principal, user_id).await?;
    let mut tx = state.db.begin().await?;
    let key = store::delete_key(&mut tx, user_id, key_id)
        .await?
        .ok_or_else(Error::not_found)?;
    let event = AuditEvent::new("api_key.deleted", "api_key", key.id)
        .meta("user_id", user_id)
        .meta("name", &key.name);
    audit::record(&mut tx, principal.into(), Some(meta), event).await?;
    tx.commit().await?;
    state.auth.invalidate_user(&state.redis, user_id).await;
    Ok(())
}

pub async fn rotate_api_key(
    state: &AppState,
    principal: &Principal,
    user_id: Uuid,
    key_id: Uuid,
    body: RotateApiKey,
    meta: &RequestMeta,
) -> Result<CreatedApiKey> {
    manageable(state, principal, user_id).await?;
    let new = api_keys::generate()?;
    let overlap = Duration::seconds(body.overlap_seconds.unwrap_or(0));
    let mut tx = state.db.begin().await?;
    let old = store::lock_live_key(&mut tx, user_id, key_id)
        .await?
        .ok_or_else(Error::not_found)?;
    let retire_at = Utc::now() + overlap;
    store::retire_key(&mut tx, old.id, retire_at).await?;
    let key = store::insert_key(
        &mut tx,
        &store::NewKey {
            user_id,
            name: &old.name,
            prefix: &new.prefix,
            hash: &new.hash,
            scopes: &old.scopes,
            expires_at: old.expires_at,
            rotated_from: Some(old.id),
        },
    )
    .await?;
    let event = AuditEvent::new("api_key.rotated", "api_key", key.id)
        .meta("user_id", user_id)
        .meta("rotated_from", old.id)
        .meta("old_key_retired_at", retire_at);
    audit::record(&mut tx, principal.into(), Some(meta), event).await?;
    tx.commit().await?;
    state.auth.invalidate_user(&state.redis, user_id).await;
    Ok(CreatedApiKey {
        key,
        secret: new.secret,
    })
}
