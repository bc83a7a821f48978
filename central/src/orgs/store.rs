//! The SQL of the organizations module. Reads take the caller's [`OrgVisibility`], so no query
//! can return an organization the caller does not belong to (unless it may read everything).

use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{Member, MemberRole, Membership, OrgFilters, Organization, Plan, SubscriptionFacts};
use crate::http::pagination::{Filters, ListRequest};

#[derive(Debug, Clone, Copy)]
pub enum OrgVisibility {
    Everyone,
    MemberOf(Uuid),
}

const ORG_COLUMNS: &str = "o.id, o.name, o.slug, o.description, o.logo_url, o.website, o.billing_email, \
     o.subscription_status, o.settings, o.is_active, o.created_at, o.updated_at, p.code AS plan_code";

pub async fn list(
    db: &PgPool,
    visibility: OrgVisibility,
    filters: &OrgFilters,
    list: &ListRequest,
) -> sqlx::Result<(Vec<Organization>, i64)> {
    let apply = |qb: &mut QueryBuilder<Postgres>| {
        let mut f = Filters::new(qb);
        f.raw("o.deleted_at IS NULL");
        if let OrgVisibility::MemberOf(user) = visibility {
            f.condition(
                "EXISTS (SELECT 1 FROM organization_members m WHERE m.organization_id = o.id AND m.user_id = ",
                user,
                ")",
            );
        }
        f.eq("o.is_active", filters.is_active)
            .eq("p.code", filters.plan.clone())
            .after("o.created_at", filters.created_after)
            .before("o.created_at", filters.created_before)
            .search(&["o.name", "o.slug"], filters.q.clone());
    };
    let from =
        " FROM organizations o LEFT JOIN subscription_plans p ON p.id = o.subscription_plan_id";
    let mut count = QueryBuilder::new(format!("SELECT count(*){from}"));
    apply(&mut count);
    let total = count.build_query_scalar::<i64>().fetch_one(db).await?;
    let mut rows = QueryBuilder::new(format!("SELECT {ORG_COLUMNS}{from}"));
    apply(&mut rows);
    list.push_order_and_page(&mut rows, "o.id");
    Ok((
        rows.build_query_as::<Organization>().fetch_all(db).await?,
        total,
    ))
}

pub async fn get(
    db: &PgPool,
    id: Uuid,
    visibility: OrgVisibility,
) -> sqlx::Result<Option<Organization>> {
    let member = match visibility {
        OrgVisibility::Everyone => None,
        OrgVisibility::MemberOf(user) => Some(user),
    };
    sqlx::query_as!(
        Organization,
        r#"SELECT o.id, o.name, o.slug, o.description, o.logo_url, o.website, o.billing_email, o.subscription_status,
                  o.settings, o.is_active, o.created_at, o.updated_at, p.code AS "plan_code?"
           FROM organizations o LEFT JOIN subscription_plans p ON p.id = o.subscription_plan_id
           WHERE o.id = $1 AND o.deleted_at IS NULL
             AND ($2::uuid IS NULL OR EXISTS (SELECT 1 FROM organization_members m
                                              WHERE m.organization_id = o.id AND m.user_id = $2))"#,
        id,
        member
    )
    .fetch_optional(db)
    .await
}

/// Locks a live organization: membership changes of one organization happen one at a time.
pub async fn lock(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<Option<Organization>> {
    sqlx::query_as!(
        Organization,
        r#"SELECT o.id, o.name, o.slug, o.description, o.logo_url, o.website, o.billing_email, o.subscription_status,
                  o.settings, o.is_active, o.created_at, o.updated_at,
                  (SELECT code FROM subscription_plans p WHERE p.id = o.subscription_plan_id) AS "plan_code?"
           FROM organizations o WHERE o.id = $1 AND o.deleted_at IS NULL FOR UPDATE"#,
        id
    )
    .fetch_optional(conn)
    .await
}

pub async fn plan_id(db: &PgPool, code: &str) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "SELECT id FROM subscription_plans WHERE code = $1 AND is_active",
        code
    )
    .fetch_optional(db)
    .await
}

pub struct NewOrg<'a> {
    pub name: &'a str,
    pub slug: &'a str,
    pub description: Option<&'a str>,
    pub website: Option<&'a str>,
    pub logo_url: Option<&'a str>,
    pub billing_email: Option<&'a str>,
    pub plan_id: Option<Uuid>,
}

pub async fn insert(conn: &mut PgConnection, org: &NewOrg<'_>) -> sqlx::Result<Uuid> {
    sqlx::query_scalar!(
        r#"INSERT INTO organizations (name, slug, description, website, logo_url, billing_email, subscription_plan_id,
                                      subscription_status)
           VALUES ($1, $2, $3, $4, $5, $6, $7, CASE WHEN $7::uuid IS NULL THEN NULL ELSE 'active' END)
           RETURNING id"#,
        org.name,
        org.slug,
        org.description,
        org.website,
        org.logo_url,
        org.billing_email,
        org.plan_id
    )
    .fetch_one(conn)
    .await
}

pub async fn update(conn: &mut PgConnection, org: &Organization) -> sqlx::Result<()> {
    sqlx::query!(
        r#"UPDATE organizations SET name = $2, slug = $3, description = $4, website = $5, logo_url = $6,
                                    billing_email = $7, settings = $8, is_active = $9
           WHERE id = $1"#,
        org.id,
        org.name,
        org.slug,
        org.description,
        org.website,
        org.logo_url,
        org.billing_email,
        org.settings,
        org.is_active
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn soft_delete(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE organizations SET deleted_at = now(), is_active = false WHERE id = $1",
        id
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// The caller's role in an organization, read inside a transaction after the organization's lock.
pub async fn role_in(
    conn: &mut PgConnection,
    org: Uuid,
    user: Uuid,
) -> sqlx::Result<Option<MemberRole>> {
    sqlx::query_scalar!(
        r#"SELECT role AS "role: MemberRole" FROM organization_members WHERE organization_id = $1 AND user_id = $2"#,
        org,
        user
    )
    .fetch_optional(conn)
    .await
}

pub async fn members(
    db: &PgPool,
    org: Uuid,
    list: &ListRequest,
) -> sqlx::Result<(Vec<Member>, i64)> {
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM organization_members WHERE organization_id = $1"#,
        org
    )
    .fetch_one(db)
    .await?;
    let mut rows = QueryBuilder::new(
        "SELECT m.user_id, u.email, u.full_name, m.role, m.created_at AS joined_at
         FROM organization_members m JOIN users_profile u ON u.id = m.user_id WHERE m.organization_id = ",
    );
    rows.push_bind(org);
    list.push_order_and_page(&mut rows, "m.user_id");
    Ok((rows.build_query_as::<Member>().fetch_all(db).await?, total))
}

pub async fn member(
    conn: &mut PgConnection,
    org: Uuid,
    user: Uuid,
) -> sqlx::Result<Option<Member>> {
    sqlx::query_as!(
        Member,
        r#"SELECT m.user_id, u.email, u.full_name, m.role AS "role: MemberRole", m.created_at AS joined_at
           FROM organization_members m JOIN users_profile u ON u.id = m.user_id
           WHERE m.organization_id = $1 AND m.user_id = $2"#,
        org,
        user
    )
    .fetch_optional(conn)
    .await
}

pub async fn add_member(
    conn: &mut PgConnection,
    org: Uuid,
    user: Uuid,
    role: MemberRole,
    by: Uuid,
) -> sqlx::Result<()> {
    sqlx::query!(
        "INSERT INTO organization_members (organization_id, user_id, role, invited_by) VALUES ($1, $2, $3, $4)",
        org,
        user,
        role as MemberRole,
        by
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn set_member_role(
    conn: &mut PgConnection,
    org: Uuid,
    user: Uuid,
    role: MemberRole,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE organization_members SET role = $3 WHERE organization_id = $1 AND user_id = $2",
        org,
        user,
        role as MemberRole
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn remove_member(conn: &mut PgConnection, org: Uuid, user: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        "DELETE FROM organization_members WHERE organization_id = $1 AND user_id = $2",
        org,
        user
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn owner_count(conn: &mut PgConnection, org: Uuid) -> sqlx::Result<i64> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM organization_members m JOIN users_profile u ON u.id = m.user_id
           WHERE m.organization_id = $1 AND m.role = 'owner' AND u.deleted_at IS NULL AND u.is_active"#,
        org
    )
    .fetch_one(conn)
    .await
}

/// A live user id for an email (case-insensitive).
pub async fn user_by_email(conn: &mut PgConnection, email: &str) -> sqlx::Result<Option<Uuid>> {
    sqlx::query_scalar!(
        "SELECT id FROM users_profile WHERE lower(email) = lower($1) AND deleted_at IS NULL",
        email
    )
    .fetch_optional(conn)
    .await
}

pub async fn user_exists(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<bool> {
    sqlx::query_scalar!(r#"SELECT EXISTS (SELECT 1 FROM users_profile WHERE id = $1 AND deleted_at IS NULL) AS "e!""#, id)
        .fetch_one(conn)
        .await
}

/// Every organization `user` belongs to, with its role there.
pub async fn memberships_of(db: &PgPool, user: Uuid) -> sqlx::Result<Vec<Membership>> {
    sqlx::query_as!(
        Membership,
        r#"SELECT o.id, o.name, o.slug, m.role AS "role: MemberRole"
           FROM organization_members m JOIN organizations o ON o.id = m.organization_id
           WHERE m.user_id = $1 AND o.deleted_at IS NULL ORDER BY o.name"#,
        user
    )
    .fetch_all(db)
    .await
}

pub async fn subscription_plan(db: &PgPool, org: Uuid) -> sqlx::Result<Option<Plan>> {
    sqlx::query_as!(
        Plan,
        r#"SELECT p.id, p.code, p.name, p.description, p.price_cents, p.currency, p.billing_interval, p.trial_days,
                  p.max_members, p.max_licenses, p.max_products, p.ai_requests_per_month, p.features
           FROM organizations o JOIN subscription_plans p ON p.id = o.subscription_plan_id WHERE o.id = $1"#,
        org
    )
    .fetch_optional(db)
    .await
}

pub async fn subscription_facts(db: &PgPool, org: Uuid) -> sqlx::Result<Option<SubscriptionFacts>> {
    sqlx::query_as!(
        SubscriptionFacts,
        r#"SELECT subscription_status AS status, current_period_start, current_period_end, trial_ends_at,
                  (SELECT count(*) FROM organization_members m WHERE m.organization_id = o.id) AS "members!"
           FROM organizations o WHERE o.id = $1 AND deleted_at IS NULL"#,
        org
    )
    .fetch_optional(db)
    .await
}
