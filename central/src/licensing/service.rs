//! The administrative rules of licensing, free of HTTP: who sees which license, and what every
//! change writes — the change, its audit row and its outbox row, in one transaction.

use std::net::IpAddr;

use celaest_protocol::{LicenseKey, ProductCode, license_key::redact, replication::BindOutcome};
use chrono::{Duration, Utc};
use ring::rand::SystemRandom;
use serde_json::json;
use sqlx::PgConnection;
use uuid::Uuid;

use super::{
    CreateLicense, License, RenewLicense, UpdateLicense,
    store::{self, LicenseVisibility},
    validate::Licensing,
};
use crate::{
    audit::{self, Actor, AuditEvent, RequestMeta},
    auth::principal::{Principal, Role},
    http::{
        Error, ErrorCode, Result, ResultExt,
        validate::{FieldProblem, ensure_future},
    },
    state::AppState,
};

pub fn visibility(principal: &Principal) -> LicenseVisibility {
    if principal.reads_everything() || principal.manages_catalogue() {
        LicenseVisibility::Everyone
    } else {
        LicenseVisibility::OwnedBy(principal.user_id)
    }
}

/// Owners and managers read the full key; viewers see it masked.
pub fn present(principal: &Principal, mut license: License) -> License {
    if principal.role == Role::Viewer {
        license.license_key = redact(&license.license_key);
    }
    license
}

/// A license the caller may see (404 otherwise).
pub async fn visible(state: &AppState, principal: &Principal, id: Uuid) -> Result<License> {
    let mut conn = state.db.acquire().await?;
    store::get(&mut conn, id, visibility(principal), false)
        .await?
        .ok_or_else(Error::not_found)
}

fn field_not_found(field: &'static str) -> impl FnOnce() -> Error {
    move || Error::conflict(field, FieldProblem::NotFound)
}

pub async fn create(
    state: &AppState,
    licensing: &Licensing,
    principal: &Principal,
    body: CreateLicense,
    meta: &RequestMeta,
) -> Result<License> {
    principal.ensure(principal.manages_catalogue())?;
    ensure_future("expires_at", body.expires_at)?;
    let product = store::product_facts(&state.db, body.product_id)
        .await?
        .ok_or_else(field_not_found("product_id"))?;
    let code = ProductCode::parse(&product.code).map_err(|_| {
        Error::field(
            "product_id",
            FieldProblem::InvalidFormat {
                expected: "a product with a valid code",
            },
        )
    })?;
    let expires_at = body.expires_at.or_else(|| {
        product
            .license_duration_days
            .map(|days| Utc::now() + Duration::days(i64::from(days)))
    });
    let rng = SystemRandom::new();
    let metadata = body.metadata.unwrap_or_else(|| json!({}));
    // The random part has 32 bits: a clash with an existing key is rare but possible; draw again.
    for _ in 0..5 {
        let key = LicenseKey::generate(&code, &licensing.checksum, &rng)
            .map_err(|_| anyhow::anyhow!("no randomness available"))?;
        let id = Uuid::now_v7();
        let mut tx = state.db.begin().await?;
        let inserted = store::insert(
            &mut tx,
            &store::NewLicense {
                id,
                license_key: key.as_str(),
                key_hash: key.hash().as_bytes(),
                product_id: body.product_id,
                user_id: body.user_id,
                organization_id: body.organization_id,
                max_ips: body.max_ips.unwrap_or(product.default_max_ips),
                expires_at,
                notes: body.notes.as_deref(),
                metadata: &metadata,
                created_by: principal.user_id,
            },
        )
        .await
        .on_constraint("licenses_user_id_fkey", field_not_found("user_id"))
        .on_constraint(
            "licenses_organization_id_fkey",
            field_not_found("organization_id"),
        );
        match inserted {
            Ok(()) => {}
            Err(Error::Database(e))
                if matches!(
                    e.as_database_error().and_then(|d| d.constraint()),
                    Some("licenses_key_hash_key" | "licenses_license_key_key")
                ) =>
            {
                continue;
            }
            Err(e) => return Err(e),
        }
        store::replicate(&mut tx, id).await?;
        let event = AuditEvent::new("license.created", "license", id)
            .meta("product_code", &product.code)
            .meta("user_id", body.user_id)
            .meta("organization_id", body.organization_id)
            .meta("key", key.to_string());
        audit::record(&mut tx, principal.into(), Some(meta), event).await?;
        let license = store::get(&mut tx, id, LicenseVisibility::Everyone, false)
            .await?
            .ok_or_else(Error::not_found)?;
        tx.commit().await?;
        return Ok(license);
    }
    Err(anyhow::anyhow!("five license keys in a row clashed with existing ones").into())
}

/// Applies `change` to a locked license, then writes it, its outbox row and its audit row.
async fn change(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    meta: &RequestMeta,
    action: &'static str,
    change: impl FnOnce(&mut License) -> Result<()>,
) -> Result<License> {
    let mut tx = state.db.begin().await?;
    let before = store::get(&mut tx, id, visibility(principal), true)
        .await?
        .ok_or_else(Error::not_found)?;
    principal.ensure(principal.manages_catalogue())?;
    let saved = apply(
        &mut tx,
        Changed {
            actor: principal.into(),
            meta: Some(meta),
            action,
            automatic: false,
        },
        before,
        change,
    )
    .await?;
    tx.commit().await?;
    Ok(saved)
}

/// Who changes a license, how, and why.
struct Changed<'a> {
    actor: Actor,
    meta: Option<&'a RequestMeta>,
    action: &'static str,
    /// The system acting on its own rule (collisions), not on a request.
    automatic: bool,
}

/// Writes `before` (locked in `conn`) as `change` makes it, its outbox row and its audit row.
async fn apply(
    conn: &mut PgConnection,
    changed: Changed<'_>,
    before: License,
    change: impl FnOnce(&mut License) -> Result<()>,
) -> Result<License> {
    let id = before.id;
    let mut after = before.clone();
    change(&mut after)?;
    store::update(conn, &after)
        .await
        .on_constraint("licenses_user_id_fkey", field_not_found("user_id"))
        .on_constraint(
            "licenses_organization_id_fkey",
            field_not_found("organization_id"),
        )?;
    store::replicate(conn, id).await?;
    let mut event = AuditEvent::new(changed.action, "license", id)
        .change("status", &before.status, &after.status)
        .change("max_ips", &before.max_ips, &after.max_ips)
        .change("expires_at", &before.expires_at, &after.expires_at)
        .change("user_id", &before.user_id, &after.user_id)
        .change(
            "organization_id",
            &before.organization_id,
            &after.organization_id,
        )
        .change("notes", &before.notes, &after.notes)
        .change(
            "revoked_reason",
            &before.revoked_reason,
            &after.revoked_reason,
        )
        .change(
            "suspended_reason",
            &before.suspended_reason,
            &after.suspended_reason,
        );
    if changed.automatic {
        event = event.meta("automatic", true);
    }
    audit::record(conn, changed.actor, changed.meta, event).await?;
    store::get(conn, id, LicenseVisibility::Everyone, false)
        .await?
        .ok_or_else(Error::not_found)
}

pub async fn update(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    body: UpdateLicense,
    meta: &RequestMeta,
) -> Result<License> {
    ensure_future("expires_at", body.expires_at)?;
    change(state, principal, id, meta, "license.updated", |l| {
        if let Some(user) = body.user_id {
            l.user_id = Some(user);
        }
        if let Some(org) = body.organization_id {
            l.organization_id = Some(org);
        }
        l.max_ips = body.max_ips.unwrap_or(l.max_ips);
        l.expires_at = body.expires_at.or(l.expires_at);
        l.notes = body.notes.or(l.notes.take());
        l.metadata = body.metadata.unwrap_or_else(|| l.metadata.take());
        match body.status.as_deref() {
            Some("suspended") if l.status == "active" => {
                l.status = "suspended".into();
                l.suspended_at = Some(Utc::now());
                l.suspended_reason = body.reason;
            }
            Some("active") if l.status == "suspended" => {
                l.status = "active".into();
                l.suspended_at = None;
                l.suspended_reason = None;
            }
            Some(status) if status != l.status => {
                return Err(Error::with_details(
                    ErrorCode::InvalidLicenseState,
                    json!({ "status": l.status }),
                ));
            }
            _ => {}
        }
        Ok(())
    })
    .await
}

pub async fn renew(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    body: RenewLicense,
    meta: &RequestMeta,
) -> Result<License> {
    ensure_future("until", body.until)?;
    change(state, principal, id, meta, "license.renewed", |l| {
        if l.status == "revoked" {
            return Err(Error::with_details(
                ErrorCode::InvalidLicenseState,
                json!({ "status": l.status }),
            ));
        }
        let now = Utc::now();
        let new_expiry = match (body.until, body.days) {
            (Some(until), _) => until,
            (None, Some(days)) => {
                let base = match body.from.as_deref() {
                    Some("now") => now,
                    _ => l.expires_at.filter(|e| *e > now).unwrap_or(now),
                };
                base + Duration::days(i64::from(days))
            }
            (None, None) => return Err(Error::field("days", FieldProblem::Required)),
        };
        l.expires_at = Some(new_expiry);
        if l.status == "expired" {
            l.status = "active".into();
        }
        Ok(())
    })
    .await
}

pub async fn revoke(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    reason: String,
    meta: &RequestMeta,
) -> Result<License> {
    change(state, principal, id, meta, "license.revoked", |l| {
        revoked(l, reason)
    })
    .await
}

/// Revokes a license by the system's own rule (past its collision threshold), inside the
/// caller's transaction, exactly as an administrator's revocation: its outbox row carries it to
/// the edges, its audit row says it was automatic. Only an active license is revoked this way:
/// `None` when it is gone or no longer active.
pub async fn revoke_automatically(
    conn: &mut PgConnection,
    id: Uuid,
    reason: String,
) -> Result<Option<License>> {
    let Some(before) = store::get(conn, id, LicenseVisibility::Everyone, true).await? else {
        return Ok(None);
    };
    if before.status != "active" {
        return Ok(None);
    }
    let changed = Changed {
        actor: Actor::System,
        meta: None,
        action: "license.revoked",
        automatic: true,
    };
    apply(conn, changed, before, |l| revoked(l, reason))
        .await
        .map(Some)
}

/// The revocation rule: any license not revoked yet.
fn revoked(l: &mut License, reason: String) -> Result<()> {
    if l.status == "revoked" {
        return Err(Error::with_details(
            ErrorCode::InvalidLicenseState,
            json!({ "status": l.status }),
        ));
    }
    l.status = "revoked".into();
    l.revoked_at = Some(Utc::now());
    l.revoked_reason = Some(reason);
    Ok(())
}

pub async fn reactivate(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    reason: Option<String>,
    meta: &RequestMeta,
) -> Result<License> {
    let license = change(state, principal, id, meta, "license.reactivated", |l| {
        if l.status == "active" {
            return Err(Error::with_details(
                ErrorCode::InvalidLicenseState,
                json!({ "status": l.status }),
            ));
        }
        if l.expires_at.is_some_and(|e| e <= Utc::now()) || l.status == "expired" {
            return Err(Error::with_details(
                ErrorCode::LicenseExpired,
                json!({ "expired_at": l.expires_at }),
            ));
        }
        l.status = "active".into();
        l.revoked_at = None;
        l.revoked_reason = None;
        l.suspended_at = None;
        l.suspended_reason = None;
        Ok(())
    })
    .await?;
    if let Some(reason) = reason {
        tracing::info!(license = %id, reason = %reason, "license reactivated");
    }
    Ok(license)
}

pub async fn delete(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    meta: &RequestMeta,
) -> Result<()> {
    let mut tx = state.db.begin().await?;
    let license = store::get(&mut tx, id, visibility(principal), true)
        .await?
        .ok_or_else(Error::not_found)?;
    principal.ensure(principal.manages_catalogue())?;
    store::replicate_delete(&mut tx, id).await?;
    store::delete(&mut tx, id).await?;
    let event = AuditEvent::new("license.deleted", "license", id)
        .meta("product_code", &license.product_code)
        .meta("key", redact(&license.license_key));
    audit::record(&mut tx, principal.into(), Some(meta), event).await?;
    tx.commit().await?;
    Ok(())
}

/// Owners and managers manage a license's IP slots by hand.
async fn slots_manageable(state: &AppState, principal: &Principal, id: Uuid) -> Result<License> {
    let license = visible(state, principal, id).await?;
    principal.ensure(principal.can_write())?;
    Ok(license)
}

pub async fn bind(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    ip: IpAddr,
    meta: &RequestMeta,
) -> Result<u32> {
    slots_manageable(state, principal, id).await?;
    let mut tx = state.db.begin().await?;
    let remaining = match store::bind_ip(&mut tx, id, ip, "manual", None).await? {
        BindOutcome::Bound { remaining } => remaining,
        BindOutcome::AlreadyBound { .. } => {
            return Err(Error::with_details(
                ErrorCode::AlreadyExists,
                json!({ "field": "ip_address" }),
            ));
        }
        BindOutcome::Full => return Err(Error::api(ErrorCode::IpLimitReached)),
        BindOutcome::NotFound => return Err(Error::not_found()),
    };
    let event =
        AuditEvent::new("license.ip_bound", "license", id).meta("ip_address", ip.to_string());
    audit::record(&mut tx, principal.into(), Some(meta), event).await?;
    tx.commit().await?;
    Ok(remaining)
}

pub async fn unbind(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    ip: IpAddr,
    meta: &RequestMeta,
) -> Result<()> {
    slots_manageable(state, principal, id).await?;
    let mut tx = state.db.begin().await?;
    sqlx::query!("SELECT id FROM licenses WHERE id = $1 FOR UPDATE", id)
        .fetch_one(&mut *tx)
        .await?;
    if !store::unbind_ip(&mut tx, id, ip).await? {
        return Err(Error::with_details(
            ErrorCode::NotFound,
            json!({ "ip_address": ip.to_string() }),
        ));
    }
    let event =
        AuditEvent::new("license.ip_unbound", "license", id).meta("ip_address", ip.to_string());
    audit::record(&mut tx, principal.into(), Some(meta), event).await?;
    tx.commit().await?;
    Ok(())
}
