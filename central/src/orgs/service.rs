//! The rules of the organizations module, free of HTTP.

use serde_json::json;
use uuid::Uuid;

use super::{
    AddMember, CreateOrg, Member, MemberRole, OrgFilters, Organization, Subscription,
    SubscriptionUsage, UpdateOrg,
    store::{self, OrgVisibility},
};
use crate::{
    audit::{self, AuditEvent, RequestMeta},
    auth::principal::Principal,
    http::{Error, ErrorCode, Result, ResultExt, pagination::ListRequest, validate::FieldProblem},
    state::AppState,
};

fn visibility(principal: &Principal) -> OrgVisibility {
    if principal.reads_everything() {
        OrgVisibility::Everyone
    } else {
        OrgVisibility::MemberOf(principal.user_id)
    }
}

/// `my-org` from `My Org!`.
/// The slug of a record created without one: [`slugify`] of its name, or `{kind}-` and eight
/// random hex digits when the name has no letter or digit to make one from (any name the schema
/// allows can be created).
pub fn derived_slug(name: &str, kind: &str) -> String {
    let slug = slugify(name);
    if slug.is_empty() {
        format!("{kind}-{}", &Uuid::new_v4().simple().to_string()[..8])
    } else {
        slug
    }
}

pub fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for c in name.trim().chars().flat_map(char::to_lowercase) {
        let c = match c {
            'á' | 'à' | 'ä' | 'â' => 'a',
            'é' | 'è' | 'ë' | 'ê' => 'e',
            'í' | 'ì' | 'ï' | 'î' => 'i',
            'ó' | 'ò' | 'ö' | 'ô' => 'o',
            'ú' | 'ù' | 'ü' | 'û' => 'u',
            'ñ' => 'n',
            c => c,
        };
        if c.is_ascii_alphanumeric() {
            slug.push(c);
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-')
        .chars()
        .take(63)
        .collect::<String>()
        .trim_end_matches('-')
        .to_owned()
}

/// The organization, if visible (else 404).
async fn visible(state: &AppState, principal: &Principal, id: Uuid) -> Result<Organization> {
    store::get(&state.db, id, visibility(principal))
        .await?
        .ok_or_else(Error::not_found)
}

pub async fn list(
    state: &AppState,
    principal: &Principal,
    filters: &OrgFilters,
    list: &ListRequest,
) -> Result<(Vec<Organization>, u64)> {
    let (items, total) = store::list(&state.db, visibility(principal), filters, list).await?;
    Ok((items, u64::try_from(total).unwrap_or(0)))
}

pub async fn get(state: &AppState, principal: &Principal, id: Uuid) -> Result<Organization> {
    visible(state, principal, id).await
}

pub async fn create(
    state: &AppState,
    principal: &Principal,
    body: CreateOrg,
    meta: &RequestMeta,
) -> Result<Organization> {
    principal.ensure(principal.can_write())?;
    // A named plan must exist; without one the organization starts on `free` when there is one.
    let plan_code = body.plan.as_deref().unwrap_or("free");
    let plan_id = store::plan_id(&state.db, plan_code).await?;
    if plan_id.is_none() && body.plan.is_some() {
        return Err(Error::conflict("plan", FieldProblem::NotFound));
    }
    let slug = body
        .slug
        .clone()
        .unwrap_or_else(|| derived_slug(&body.name, "org"));
    let mut tx = state.db.begin().await?;
    let id = store::insert(
        &mut tx,
        &store::NewOrg {
            name: body.name.trim(),
            slug: &slug,
            description: body.description.as_deref(),
            website: body.website.as_deref(),
            logo_url: body.logo_url.as_deref(),
            billing_email: body.billing_email.as_deref(),
            plan_id,
        },
    )
    .await
    .on_constraint("organizations_slug_key", || {
        Error::with_details(ErrorCode::AlreadyExists, json!({ "field": "slug" }))
    })?;
    store::add_member(
        &mut tx,
        id,
        principal.user_id,
        MemberRole::Owner,
        principal.user_id,
    )
    .await?;
    let event = AuditEvent::new("organization.created", "organization", id)
        .in_organization(id)
        .meta("name", body.name.trim())
        .meta("slug", &slug)
        .meta("plan", plan_id.map(|_| plan_code));
    audit::record(&mut tx, principal.into(), Some(meta), event).await?;
    let org = store::lock(&mut tx, id)
        .await?
        .ok_or_else(Error::not_found)?;
    tx.commit().await?;
    Ok(org)
}

pub async fn update(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    body: UpdateOrg,
    meta: &RequestMeta,
) -> Result<Organization> {
    visible(state, principal, id).await?;
    principal.ensure(body.is_active.is_none() || principal.is_admin())?;
    let mut tx = state.db.begin().await?;
    let before = store::lock(&mut tx, id)
        .await?
        .ok_or_else(Error::not_found)?;
    // The caller's role as of the lock: a concurrent demotion cannot be acted around.
    let role = store::role_in(&mut tx, id, principal.user_id).await?;
    principal.ensure(
        principal.can_write() && (principal.is_admin() || role.is_some_and(MemberRole::manages)),
    )?;
    let mut after = before.clone();
    after.name = body.name.map(|n| n.trim().to_owned()).unwrap_or(after.name);
    after.slug = body.slug.unwrap_or(after.slug);
    after.description = body.description.or(after.description);
    after.website = body.website.or(after.website);
    after.logo_url = body.logo_url.or(after.logo_url);
    after.billing_email = body.billing_email.or(after.billing_email);
    after.settings = body.settings.unwrap_or(after.settings);
    after.is_active = body.is_active.unwrap_or(after.is_active);
    store::update(&mut tx, &after)
        .await
        .on_constraint("organizations_slug_key", || {
            Error::with_details(ErrorCode::AlreadyExists, json!({ "field": "slug" }))
        })?;
    let event = AuditEvent::new("organization.updated", "organization", id)
        .in_organization(id)
        .change("name", &before.name, &after.name)
        .change("slug", &before.slug, &after.slug)
        .change("description", &before.description, &after.description)
        .change("website", &before.website, &after.website)
        .change("logo_url", &before.logo_url, &after.logo_url)
        .change("billing_email", &before.billing_email, &after.billing_email)
        .change("settings", &before.settings, &after.settings)
        .change("is_active", &before.is_active, &after.is_active);
    if !event.changes.is_empty() {
        audit::record(&mut tx, principal.into(), Some(meta), event).await?;
    }
    let updated = store::lock(&mut tx, id)
        .await?
        .ok_or_else(Error::not_found)?;
    tx.commit().await?;
    Ok(updated)
}

pub async fn delete(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    meta: &RequestMeta,
) -> Result<()> {
    visible(state, principal, id).await?;
    let mut tx = state.db.begin().await?;
    let org = store::lock(&mut tx, id)
        .await?
        .ok_or_else(Error::not_found)?;
    // The caller's role as of the lock: a concurrent demotion cannot be acted around.
    let role = store::role_in(&mut tx, id, principal.user_id).await?;
    principal.ensure(
        principal.can_write() && (principal.is_admin() || role == Some(MemberRole::Owner)),
    )?;
    store::soft_delete(&mut tx, id).await?;
    let event = AuditEvent::new("organization.deleted", "organization", id)
        .in_organization(id)
        .meta("slug", &org.slug);
    audit::record(&mut tx, principal.into(), Some(meta), event).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn members(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    list: &ListRequest,
) -> Result<(Vec<Member>, u64)> {
    visible(state, principal, id).await?;
    let (items, total) = store::members(&state.db, id, list).await?;
    Ok((items, u64::try_from(total).unwrap_or(0)))
}

/// May the caller manage members, and grant or take away `role`?
fn may_manage_members(
    principal: &Principal,
    caller_role: Option<MemberRole>,
    touches_owner: bool,
) -> bool {
    if !principal.can_write() {
        return false;
    }
    if principal.is_admin() {
        return true;
    }
    match caller_role {
        Some(MemberRole::Owner) => true,
        Some(MemberRole::Admin) => !touches_owner,
        _ => false,
    }
}

pub async fn add_member(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    body: AddMember,
    meta: &RequestMeta,
) -> Result<Member> {
    visible(state, principal, id).await?;
    let role = body.role.unwrap_or(MemberRole::Member);
    let mut tx = state.db.begin().await?;
    store::lock(&mut tx, id)
        .await?
        .ok_or_else(Error::not_found)?;
    let caller_role = store::role_in(&mut tx, id, principal.user_id).await?;
    principal.ensure(may_manage_members(
        principal,
        caller_role,
        role == MemberRole::Owner,
    ))?;
    // Only once the caller may add members: a 404 here must not tell others who has an account.
    let user_id = match (body.user_id, body.email.as_deref()) {
        (Some(user_id), _) if store::user_exists(&mut tx, user_id).await? => user_id,
        (None, Some(email)) => store::user_by_email(&mut tx, email)
            .await?
            .ok_or_else(user_not_found)?,
        _ => return Err(user_not_found()),
    };
    store::add_member(&mut tx, id, user_id, role, principal.user_id)
        .await
        .on_constraint("organization_members_pkey", || {
            Error::api(ErrorCode::AlreadyMember)
        })?;
    let event = AuditEvent::new("organization.member_added", "organization", id)
        .in_organization(id)
        .meta("user_id", user_id)
        .meta("role", role);
    audit::record(&mut tx, principal.into(), Some(meta), event).await?;
    let member = store::member(&mut tx, id, user_id)
        .await?
        .ok_or_else(Error::not_found)?;
    tx.commit().await?;
    Ok(member)
}

fn user_not_found() -> Error {
    Error::with_details(ErrorCode::NotFound, json!({ "resource": "user" }))
}

pub async fn update_member(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    user_id: Uuid,
    role: MemberRole,
    meta: &RequestMeta,
) -> Result<Member> {
    visible(state, principal, id).await?;
    let mut tx = state.db.begin().await?;
    store::lock(&mut tx, id)
        .await?
        .ok_or_else(Error::not_found)?;
    // The caller's role as of the lock: a concurrent demotion cannot be acted around.
    let caller_role = store::role_in(&mut tx, id, principal.user_id).await?;
    let before = store::member(&mut tx, id, user_id)
        .await?
        .ok_or_else(Error::not_found)?;
    let touches_owner = role == MemberRole::Owner || before.role == MemberRole::Owner;
    principal.ensure(may_manage_members(principal, caller_role, touches_owner))?;
    if before.role == MemberRole::Owner
        && role != MemberRole::Owner
        && store::owner_count(&mut tx, id).await? <= 1
    {
        return Err(Error::api(ErrorCode::LastOwner));
    }
    store::set_member_role(&mut tx, id, user_id, role).await?;
    let event = AuditEvent::new("organization.member_role_changed", "organization", id)
        .in_organization(id)
        .meta("user_id", user_id)
        .change("role", &before.role, &role);
    audit::record(&mut tx, principal.into(), Some(meta), event).await?;
    let member = store::member(&mut tx, id, user_id)
        .await?
        .ok_or_else(Error::not_found)?;
    tx.commit().await?;
    Ok(member)
}

pub async fn remove_member(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
    user_id: Uuid,
    meta: &RequestMeta,
) -> Result<()> {
    visible(state, principal, id).await?;
    let mut tx = state.db.begin().await?;
    store::lock(&mut tx, id)
        .await?
        .ok_or_else(Error::not_found)?;
    // The caller's role as of the lock: a concurrent demotion cannot be acted around.
    let caller_role = store::role_in(&mut tx, id, principal.user_id).await?;
    let member = store::member(&mut tx, id, user_id)
        .await?
        .ok_or_else(Error::not_found)?;
    let leaving = principal.is(user_id) && principal.can_write();
    principal.ensure(
        leaving || may_manage_members(principal, caller_role, member.role == MemberRole::Owner),
    )?;
    if member.role == MemberRole::Owner && store::owner_count(&mut tx, id).await? <= 1 {
        return Err(Error::api(ErrorCode::LastOwner));
    }
    store::remove_member(&mut tx, id, user_id).await?;
    let event = AuditEvent::new("organization.member_removed", "organization", id)
        .in_organization(id)
        .meta("user_id", user_id)
        .meta("role", member.role);
    audit::record(&mut tx, principal.into(), Some(meta), event).await?;
    tx.commit().await?;
    Ok(())
}

pub async fn subscription(
    state: &AppState,
    principal: &Principal,
    id: Uuid,
) -> Result<Subscription> {
    visible(state, principal, id).await?;
    let facts = store::subscription_facts(&state.db, id)
        .await?
        .ok_or_else(Error::not_found)?;
    let plan = store::subscription_plan(&state.db, id).await?;
    Ok(Subscription {
        organization_id: id,
        usage: SubscriptionUsage {
            members: facts.members,
            max_members: plan.as_ref().and_then(|p| p.max_members),
        },
        plan,
        status: facts.status,
        current_period_start: facts.current_period_start,
        current_period_end: facts.current_period_end,
        trial_ends_at: facts.trial_ends_at,
    })
}

#[cfg(test)]
mod tests {
    use super::{derived_slug, slugify};

    #[test]
    fn slugs_are_lowercase_kebab_case() {
        assert_eq!(slugify("My Org!"), "my-org");
        assert_eq!(slugify("  Compañía  Ñandú  S.A. "), "compania-nandu-s-a");
        assert_eq!(slugify("!!!"), "");
        let fallback = derived_slug("!!!", "org");
        assert!(
            fallback.len() == 12 && fallback.starts_with("org-"),
            "{fallback}"
        );
        assert_eq!(derived_slug("My Org!", "org"), "my-org");
    }
}
