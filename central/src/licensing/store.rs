//! The SQL of licensing: licenses, their IP bindings, collisions, validations and usage, and the
//! outbox rows that carry every change to the edges.

use std::net::IpAddr;

use celaest_protocol::{
    LicenseState, LicenseStatus, ProductCode, replication::BindOutcome, validation::BoundIps,
};
use chrono::{DateTime, NaiveDate, Utc};
use ipnetwork::IpNetwork;
use sqlx::{PgConnection, PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{Binding, Collision, License, LicenseFilters, UsageDay, ValidationRow};
use crate::http::pagination::{Filters, ListRequest};

/// Which licenses a caller may see.
#[derive(Debug, Clone, Copy)]
pub enum LicenseVisibility {
    Everyone,
    /// Licenses of the user, or of an organization it belongs to.
    OwnedBy(Uuid),
}

const LICENSE_COLUMNS: &str = "l.id, l.license_key, l.product_id, p.code AS product_code, l.user_id, l.organization_id, \
    l.order_id, l.status, l.max_ips, (SELECT count(*) FROM license_ip_bindings b WHERE b.license_id = l.id) AS bound_ips, \
    l.expires_at, l.activated_at, l.suspended_at, l.suspended_reason, l.revoked_at, l.revoked_reason, l.collision_count, \
    l.validation_count, l.last_validated_at, l.notes, l.metadata, l.created_by, l.created_at, l.updated_at";

fn push_visibility(f: &mut Filters<'_>, visibility: LicenseVisibility) {
    if let LicenseVisibility::OwnedBy(user) = visibility {
        f.condition(
            "EXISTS (SELECT 1 FROM (SELECT ",
            user,
            "::uuid AS me) v WHERE l.user_id = v.me OR l.organization_id IN \
             (SELECT m.organization_id FROM organization_members m WHERE m.user_id = v.me))",
        );
    }
}

pub async fn list(
    db: &PgPool,
    visibility: LicenseVisibility,
    filters: &LicenseFilters,
    list: &ListRequest,
) -> sqlx::Result<(Vec<License>, i64)> {
    let apply = |qb: &mut QueryBuilder<Postgres>| {
        let mut f = Filters::new(qb);
        push_visibility(&mut f, visibility);
        f.eq("l.status", filters.status.clone())
            .eq("l.product_id", filters.product_id)
            .eq("l.user_id", filters.user_id)
            .eq("l.organization_id", filters.organization_id)
            .after("l.created_at", filters.created_after)
            .before("l.created_at", filters.created_before)
            .after("l.expires_at", filters.expires_after)
            .before("l.expires_at", filters.expires_before);
        if let Some(code) = filters.product_code.clone() {
            f.condition(
                "l.product_id IN (SELECT id FROM products WHERE code = ",
                code,
                ")",
            );
        }
    };
    // Counting needs no join: on a large table the join made every page cost a full join.
    let mut count = QueryBuilder::new("SELECT count(*) FROM licenses l");
    let from = " FROM licenses l JOIN products p ON p.id = l.product_id";
    apply(&mut count);
    let total = count.build_query_scalar::<i64>().fetch_one(db).await?;
    let mut rows = QueryBuilder::new(format!("SELECT {LICENSE_COLUMNS}{from}"));
    apply(&mut rows);
    list.push_order_and_page(&mut rows, "l.id");
    Ok((rows.build_query_as::<License>().fetch_all(db).await?, total))
}

/// One license the caller may see; `lock` takes a row lock for a change in this transaction.
pub async fn get(
    conn: &mut PgConnection,
    id: Uuid,
    visibility: LicenseVisibility,
    lock: bool,
) -> sqlx::Result<Option<License>> {
    let mut qb = QueryBuilder::new(format!(
        "SELECT {LICENSE_COLUMNS} FROM licenses l JOIN products p ON p.id = l.product_id"
    ));
    let mut f = Filters::new(&mut qb);
    f.eq("l.id", Some(id));
    push_visibility(&mut f, visibility);
    if lock {
        qb.push(" FOR UPDATE OF l");
    }
    qb.build_query_as::<License>().fetch_optional(conn).await
}

/// The state a validation needs, by key hash.
pub async fn state_by_hash(db: &PgPool, hash: &[u8]) -> sqlx::Result<Option<LicenseState>> {
    let row = sqlx::query!(
        r#"SELECT l.id, p.code, product_validates(p.status, p.deleted_at) AS "product_active!", l.status, l.expires_at,
                  l.max_ips, array(SELECT b.ip_address FROM license_ip_bindings b WHERE b.license_id = l.id) AS "bound!: Vec<IpNetwork>"
           FROM licenses l JOIN products p ON p.id = l.product_id WHERE l.key_hash = $1"#,
        hash
    )
    .fetch_optional(db)
    .await?;
    Ok(row.and_then(|r| {
        Some(LicenseState {
            id: r.id,
            product_code: ProductCode::parse(&r.code).ok()?,
            product_active: r.product_active,
            status: r.status.parse::<LicenseStatus>().ok()?,
            expires_at: r.expires_at,
            max_ips: u32::try_from(r.max_ips).unwrap_or(0),
            bound_ips: r.bound.iter().map(IpNetwork::ip).collect::<BoundIps>(),
        })
    }))
}

/// Binds `ip` to the license if a slot is free — under the license's row lock, so concurrent
/// binds of new IPs can never exceed `max_ips` — and writes the change to the outbox.
/// `NotFound` when the license is gone (deleted since it was read).
pub async fn bind_ip(
    conn: &mut PgConnection,
    license_id: Uuid,
    ip: IpAddr,
    source: &str,
    device_info: Option<&str>,
) -> sqlx::Result<BindOutcome> {
    // Lock first, count after: under READ COMMITTED a statement's snapshot is taken before it
    // waits for the lock, so counting in the locking statement would see stale bindings.
    let Some(max_ips) = sqlx::query_scalar!(
        "SELECT max_ips FROM licenses WHERE id = $1 FOR UPDATE",
        license_id
    )
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(BindOutcome::NotFound);
    };
    let slots = sqlx::query!(
        r#"SELECT (SELECT count(*) FROM license_ip_bindings b WHERE b.license_id = $1) AS "bound!",
                  EXISTS (SELECT 1 FROM license_ip_bindings b WHERE b.license_id = $1 AND b.ip_address = $2) AS "present!""#,
        license_id,
        IpNetwork::from(ip)
    )
    .fetch_one(&mut *conn)
    .await?;
    let max = i64::from(max_ips);
    if slots.present {
        return Ok(BindOutcome::AlreadyBound {
            remaining: u32::try_from(max - slots.bound).unwrap_or(0),
        });
    }
    if slots.bound >= max {
        return Ok(BindOutcome::Full);
    }
    sqlx::query!(
        "INSERT INTO license_ip_bindings (license_id, ip_address, source, device_info) VALUES ($1, $2, $3, $4)",
        license_id,
        IpNetwork::from(ip),
        source,
        device_info
    )
    .execute(&mut *conn)
    .await?;
    replicate(conn, license_id).await?;
    Ok(BindOutcome::Bound {
        remaining: u32::try_from(max - slots.bound - 1).unwrap_or(0),
    })
}

/// A validation's automatic bind (at central, or asked by an edge), in a transaction of its own.
pub async fn bind_ip_now(
    db: &PgPool,
    license_id: Uuid,
    ip: IpAddr,
    device_info: Option<&str>,
) -> sqlx::Result<BindOutcome> {
    let mut tx = db.begin().await?;
    let outcome = bind_ip(&mut tx, license_id, ip, "auto", device_info).await?;
    tx.commit().await?;
    Ok(outcome)
}

/// Removes a binding; `false` when the IP was not bound.
pub async fn unbind_ip(
    conn: &mut PgConnection,
    license_id: Uuid,
    ip: IpAddr,
) -> sqlx::Result<bool> {
    let removed = sqlx::query!(
        "DELETE FROM license_ip_bindings WHERE license_id = $1 AND ip_address = $2",
        license_id,
        IpNetwork::from(ip)
    )
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if removed > 0 {
        replicate(conn, license_id).await?;
    }
    Ok(removed > 0)
}

pub async fn bindings(db: &PgPool, license_id: Uuid) -> sqlx::Result<Vec<Binding>> {
    sqlx::query_as!(
        Binding,
        r#"SELECT host(ip_address) AS "ip_address!", source, device_info, first_seen_at, last_seen_at, validation_count
           FROM license_ip_bindings WHERE license_id = $1 ORDER BY first_seen_at"#,
        license_id
    )
    .fetch_all(db)
    .await
}

pub async fn collisions(
    db: &PgPool,
    license_id: Uuid,
    list: &ListRequest,
) -> sqlx::Result<(Vec<Collision>, i64)> {
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "n!" FROM license_collisions WHERE license_id = $1"#,
        license_id
    )
    .fetch_one(db)
    .await?;
    let mut qb = QueryBuilder::new(
        "SELECT c.id, array(SELECT host(x) FROM unnest(c.ip_addresses) x) AS ip_addresses, c.ip_count, c.window_start, \
         c.window_end, c.detected_by, c.status, c.auto_revoked, c.detected_at FROM license_collisions c WHERE c.license_id = ",
    );
    qb.push_bind(license_id);
    list.push_order_and_page(&mut qb, "c.id");
    Ok((qb.build_query_as::<Collision>().fetch_all(db).await?, total))
}

pub async fn validations(
    db: &PgPool,
    license_id: Uuid,
    valid: Option<bool>,
    result_code: Option<String>,
    list: &ListRequest,
) -> sqlx::Result<(Vec<ValidationRow>, i64)> {
    let apply = |qb: &mut QueryBuilder<Postgres>| {
        let mut f = Filters::new(qb);
        f.eq("v.license_id", Some(license_id))
            .eq("v.valid", valid)
            .eq("v.result_code", result_code.clone());
    };
    let mut count = QueryBuilder::new("SELECT count(*) FROM license_validations v");
    apply(&mut count);
    let total = count.build_query_scalar::<i64>().fetch_one(db).await?;
    let mut rows = QueryBuilder::new(
        "SELECT v.id, host(v.ip_address) AS ip_address, v.device_info, v.result_code, v.valid, v.answered_by, v.region, \
         v.validated_at, v.count FROM license_validations v",
    );
    apply(&mut rows);
    list.push_order_and_page(&mut rows, "v.id");
    Ok((
        rows.build_query_as::<ValidationRow>().fetch_all(db).await?,
        total,
    ))
}

pub async fn usage(
    db: &PgPool,
    license_id: Uuid,
    from: NaiveDate,
    to: NaiveDate,
) -> sqlx::Result<Vec<UsageDay>> {
    sqlx::query_as!(
        UsageDay,
        r#"SELECT usage_date, validation_count, success_count, failure_count, unique_ip_count, host(last_ip) AS last_ip
           FROM license_usage_log WHERE license_id = $1 AND usage_date BETWEEN $2 AND $3 ORDER BY usage_date"#,
        license_id,
        from,
        to
    )
    .fetch_all(db)
    .await
}

/// Writes the license's current state to the edges' outbox (inside the changing transaction).
pub async fn replicate(conn: &mut PgConnection, license_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("SELECT replicate_license($1)", license_id)
        .fetch_one(conn)
        .await?;
    Ok(())
}

/// Writes a license's removal to the outbox; call before deleting the row.
pub async fn replicate_delete(conn: &mut PgConnection, license_id: Uuid) -> sqlx::Result<()> {
    sqlx::query!(
        r#"SELECT replication_append('license.delete', id, jsonb_build_object('id', id, 'key_hash', encode(key_hash, 'hex')))
           FROM licenses WHERE id = $1"#,
        license_id
    )
    .fetch_optional(conn)
    .await?;
    Ok(())
}

/// The product facts a new license takes its defaults from.
pub struct ProductFacts {
    pub code: String,
    pub default_max_ips: i32,
    pub license_duration_days: Option<i32>,
}

pub async fn product_facts(db: &PgPool, product_id: Uuid) -> sqlx::Result<Option<ProductFacts>> {
    sqlx::query_as!(
        ProductFacts,
        "SELECT code, default_max_ips, license_duration_days FROM products WHERE id = $1 AND deleted_at IS NULL",
        product_id
    )
    .fetch_optional(db)
    .await
}

pub struct NewLicense<'a> {
    pub id: Uuid,
    pub license_key: &'a str,
    pub key_hash: &'a [u8],
    pub product_id: Uuid,
    pub user_id: Option<Uuid>,
    pub organization_id: Option<Uuid>,
    pub max_ips: i32,
    pub expires_at: Option<DateTime<Utc>>,
    pub notes: Option<&'a str>,
    pub metadata: &'a serde_json::Value,
    pub created_by: Uuid,
}

pub async fn insert(conn: &mut PgConnection, l: &NewLicense<'_>) -> sqlx::Result<()> {
    sqlx::query!(
        r#"INSERT INTO licenses (id, license_key, key_hash, product_id, user_id, organization_id, max_ips, expires_at,
                                activated_at, notes, metadata, created_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), $9, $10, $11)"#,
        l.id,
        l.license_key,
        l.key_hash,
        l.product_id,
        l.user_id,
        l.organization_id,
        l.max_ips,
        l.expires_at,
        l.notes,
        l.metadata,
        l.created_by
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Writes the mutable columns of a license (the service decided the values).
pub async fn update(conn: &mut PgConnection, l: &License) -> sqlx::Result<()> {
    sqlx::query!(
        r#"UPDATE licenses SET user_id = $2, organization_id = $3, status = $4, max_ips = $5, expires_at = $6,
                              suspended_at = $7, suspended_reason = $8, revoked_at = $9, revoked_reason = $10,
                              notes = $11, metadata = $12
           WHERE id = $1"#,
        l.id,
        l.user_id,
        l.organization_id,
        l.status,
        l.max_ips,
        l.expires_at,
        l.suspended_at,
        l.suspended_reason,
        l.revoked_at,
        l.revoked_reason,
        l.notes,
        l.metadata
    )
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn delete(conn: &mut PgConnection, id: Uuid) -> sqlx::Result<()> {
    sqlx::query!("DELETE FROM licenses WHERE id = $1", id)
        .execute(conn)
        .await?;
    Ok(())
}

/// A row of `license_validations`: `count` validations sharing these fields (one, or several
/// the recorder coalesced under overload).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationWrite {
    /// The first validation's id: the row is written once however often it is given.
    pub id: Uuid,
    pub license_id: Option<Uuid>,
    pub key_hash: Option<[u8; 32]>,
    /// `None` when the validations came from several addresses.
    pub ip: Option<IpAddr>,
    pub device_info: Option<String>,
    pub result_code: &'static str,
    pub valid: bool,
    pub answered_by: String,
    pub region: Option<String>,
    /// The latest validation's time.
    pub validated_at: DateTime<Utc>,
    pub count: u64,
}

/// Records an edge batch's id; `false` when it was recorded before (the batch was sent again).
pub async fn claim_report_batch(
    conn: &mut PgConnection,
    batch_id: Uuid,
    edge_id: &str,
    reports: usize,
) -> sqlx::Result<bool> {
    let claimed = sqlx::query_scalar!(
        r#"INSERT INTO replication_report_batches (batch_id, edge_id, report_count) VALUES ($1, $2, $3)
           ON CONFLICT (batch_id) DO NOTHING
           RETURNING batch_id"#,
        batch_id,
        edge_id,
        i32::try_from(reports).unwrap_or(i32::MAX)
    )
    .fetch_optional(conn)
    .await?;
    Ok(claimed.is_some())
}

/// Forgets the edge batch ids stored before `before`.
pub async fn forget_report_batches_before(db: &PgPool, before: DateTime<Utc>) -> sqlx::Result<u64> {
    let deleted = sqlx::query!(
        "DELETE FROM replication_report_batches WHERE stored_at < $1",
        before
    )
    .execute(db)
    .await?;
    Ok(deleted.rows_affected())
}

/// Inserts the rows not stored yet; returns the ids stored now.
pub async fn insert_validations(
    conn: &mut PgConnection,
    rows: &[ValidationWrite],
) -> sqlx::Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let licenses: Vec<Option<Uuid>> = rows.iter().map(|r| r.license_id).collect();
    let hashes: Vec<Option<Vec<u8>>> = rows
        .iter()
        .map(|r| r.key_hash.map(|h| h.to_vec()))
        .collect();
    let ips: Vec<Option<IpNetwork>> = rows.iter().map(|r| r.ip.map(IpNetwork::from)).collect();
    let devices: Vec<Option<String>> = rows.iter().map(|r| r.device_info.clone()).collect();
    let codes: Vec<&str> = rows.iter().map(|r| r.result_code).collect();
    let valid: Vec<bool> = rows.iter().map(|r| r.valid).collect();
    let by: Vec<&str> = rows.iter().map(|r| r.answered_by.as_str()).collect();
    let regions: Vec<Option<String>> = rows.iter().map(|r| r.region.clone()).collect();
    let at: Vec<DateTime<Utc>> = rows.iter().map(|r| r.validated_at).collect();
    let counts: Vec<i32> = rows
        .iter()
        .map(|r| i32::try_from(r.count).unwrap_or(i32::MAX))
        .collect();
    sqlx::query_scalar!(
        r#"INSERT INTO license_validations (id, license_id, key_hash, ip_address, device_info, result_code, valid,
                                           answered_by, region, validated_at, count)
           -- A report about a license deleted meanwhile is kept, without the link.
           SELECT v.id, CASE WHEN EXISTS (SELECT 1 FROM licenses l WHERE l.id = v.license_id) THEN v.license_id END,
                  v.key_hash, v.ip, v.device, v.code, v.valid, v.answered_by, v.region, v.validated_at, v.count
           FROM UNNEST($1::uuid[], $2::uuid[], $3::bytea[], $4::inet[], $5::text[], $6::text[], $7::bool[],
                       $8::text[], $9::text[], $10::timestamptz[], $11::int[])
                AS v(id, license_id, key_hash, ip, device, code, valid, answered_by, region, validated_at, count)
           ON CONFLICT (id) DO NOTHING
           RETURNING id"#,
        &ids,
        &licenses as &[Option<Uuid>],
        &hashes as &[Option<Vec<u8>>],
        &ips as &[Option<IpNetwork>],
        &devices as &[Option<String>],
        &codes as &[&str],
        &valid,
        &by as &[&str],
        &regions as &[Option<String>],
        &at,
        &counts
    )
    .fetch_all(conn)
    .await
}

/// One license's validations on one day, to add to its counters and its usage log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayUsage {
    pub license_id: Uuid,
    pub date: NaiveDate,
    pub validations: i64,
    pub successes: i64,
    pub last_ip: Option<IpAddr>,
    pub last_at: DateTime<Utc>,
}

/// Successful validations from one address of a license, for its binding's counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingUsage {
    pub license_id: Uuid,
    pub ip: IpAddr,
    pub validations: i64,
    pub last_at: DateTime<Utc>,
}

/// Adds validations to the licenses', bindings' and daily usage counters. Returns the license
/// days counted for the first time (their first validation of the day).
pub async fn add_usage(
    conn: &mut PgConnection,
    days: &[DayUsage],
    bindings: &[BindingUsage],
) -> sqlx::Result<Vec<(Uuid, NaiveDate)>> {
    if days.is_empty() {
        return Ok(Vec::new());
    }
    let l: Vec<Uuid> = days.iter().map(|d| d.license_id).collect();
    let d: Vec<NaiveDate> = days.iter().map(|d| d.date).collect();
    let n: Vec<i64> = days.iter().map(|d| d.validations).collect();
    let ok: Vec<i64> = days.iter().map(|d| d.successes).collect();
    let ip: Vec<Option<IpNetwork>> = days
        .iter()
        .map(|d| d.last_ip.map(IpNetwork::from))
        .collect();
    let last: Vec<DateTime<Utc>> = days.iter().map(|d| d.last_at).collect();
    sqlx::query!(
        r#"UPDATE licenses SET validation_count = validation_count + x.n,
                              last_validated_at = GREATEST(last_validated_at, x.last)
           FROM (SELECT l, sum(n) AS n, max(last) AS last
                 FROM UNNEST($1::uuid[], $2::bigint[], $3::timestamptz[]) AS t(l, n, last) GROUP BY l) AS x
           WHERE licenses.id = x.l"#,
        &l,
        &n,
        &last
    )
    .execute(&mut *conn)
    .await?;
    let bl: Vec<Uuid> = bindings.iter().map(|b| b.license_id).collect();
    let bip: Vec<IpNetwork> = bindings.iter().map(|b| IpNetwork::from(b.ip)).collect();
    let bn: Vec<i64> = bindings.iter().map(|b| b.validations).collect();
    let bat: Vec<DateTime<Utc>> = bindings.iter().map(|b| b.last_at).collect();
    sqlx::query!(
        r#"UPDATE license_ip_bindings b SET validation_count = b.validation_count + x.n,
                                          last_seen_at = GREATEST(b.last_seen_at, x.at)
           FROM UNNEST($1::uuid[], $2::inet[], $3::bigint[], $4::timestamptz[]) AS x(l, ip, n, at)
           WHERE b.license_id = x.l AND b.ip_address = x.ip"#,
        &bl,
        &bip,
        &bn,
        &bat
    )
    .execute(&mut *conn)
    .await?;
    let counted = sqlx::query!(
        r#"INSERT INTO license_usage_log AS u (license_id, usage_date, validation_count, success_count, failure_count, last_ip,
                                         unique_ip_count)
           SELECT x.l, x.d, x.n, x.ok, x.n - x.ok, x.ip,
                  -- Distinct bound IPs seen that day, the bindings' last_seen_at just updated included.
                  (SELECT count(*) FROM license_ip_bindings b
                   WHERE b.license_id = x.l AND b.last_seen_at >= x.d::timestamptz AND b.last_seen_at < (x.d + 1)::timestamptz)
           FROM UNNEST($1::uuid[], $2::date[], $3::bigint[], $4::bigint[], $5::inet[]) AS x(l, d, n, ok, ip)
           WHERE EXISTS (SELECT 1 FROM licenses WHERE id = x.l)
           ON CONFLICT (license_id, usage_date) DO UPDATE
             SET validation_count = u.validation_count + EXCLUDED.validation_count,
                 success_count = u.success_count + EXCLUDED.success_count,
                 failure_count = u.failure_count + EXCLUDED.failure_count,
                 last_ip = coalesce(EXCLUDED.last_ip, u.last_ip),
                 unique_ip_count = EXCLUDED.unique_ip_count
           RETURNING license_id, usage_date, (xmax = 0) AS "first!""#,
        &l,
        &d,
        &n,
        &ok,
        &ip as &[Option<IpNetwork>]
    )
    .fetch_all(&mut *conn)
    .await?;
    Ok(counted
        .into_iter()
        .filter(|r| r.first)
        .map(|r| (r.license_id, r.usage_date))
        .collect())
}

/// A license's collision count just incremented, and what decides its automatic revocation.
#[derive(Debug, Clone, PartialEq)]
pub struct CollisionCount {
    pub status: String,
    pub collision_count: i32,
    /// The product's threshold, which wins over the global settings.
    pub product_threshold: Option<i32>,
    /// `licensing.collision_threshold`.
    pub global_threshold: Option<serde_json::Value>,
    /// `licensing.auto_revoke_on_collision`.
    pub global_auto_revoke: Option<serde_json::Value>,
}

/// Counts one more collision episode on a license (locking its row); `None` when it is gone.
pub async fn count_collision(
    conn: &mut PgConnection,
    license_id: Uuid,
) -> sqlx::Result<Option<CollisionCount>> {
    sqlx::query_as!(
        CollisionCount,
        r#"WITH counted AS (
               UPDATE licenses SET collision_count = collision_count + 1 WHERE id = $1
               RETURNING id, product_id, status, collision_count)
           SELECT c.status, c.collision_count, p.collision_threshold AS product_threshold,
                  (SELECT value FROM system_config WHERE key = 'licensing.collision_threshold') AS global_threshold,
                  (SELECT value FROM system_config WHERE key = 'licensing.auto_revoke_on_collision') AS global_auto_revoke
           FROM counted c JOIN products p ON p.id = c.product_id"#,
        license_id
    )
    .fetch_optional(conn)
    .await
}

/// A collision episode to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCollision<'a> {
    pub license_id: Uuid,
    pub ips: &'a [IpAddr],
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub detected_by: &'a str,
    pub auto_revoked: bool,
}

pub async fn insert_collision(conn: &mut PgConnection, c: &NewCollision<'_>) -> sqlx::Result<()> {
    let ips: Vec<IpNetwork> = c.ips.iter().map(|ip| IpNetwork::from(*ip)).collect();
    sqlx::query!(
        r#"INSERT INTO license_collisions (license_id, ip_addresses, ip_count, window_start, window_end, detected_by,
                                          auto_revoked)
           VALUES ($1, $2, $3, $4, $5, $6, $7)"#,
        c.license_id,
        &ips,
        i32::try_from(ips.len()).unwrap_or(i32::MAX),
        c.window_start,
        c.window_end,
        c.detected_by,
        c.auto_revoked
    )
    .execute(conn)
    .await?;
    Ok(())
}
