//! The SQL of replication: reading the outbox, building a snapshot, pruning, and the fleet
//! registry.

use std::{net::IpAddr, str::FromStr};

use celaest_protocol::{
    KeyHash, LicenseStatus, ProductCode,
    replication::{Change, ReplicatedLicense, ReplicatedProduct, SequencedChange},
    validation::BoundIps,
};
use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
use serde::Deserialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::EdgeView;

/// The newest sequence, and the oldest one still kept (`None` when the outbox is empty).
pub async fn bounds(db: &PgPool) -> sqlx::Result<(i64, Option<i64>)> {
    let row = sqlx::query!(
        r#"SELECT (SELECT last_seq FROM replication_state) AS "head!", (SELECT min(seq) FROM replication_log) AS oldest"#
    )
    .fetch_one(db)
    .await?;
    Ok((row.head, row.oldest))
}

/// Up to `limit` changes after `after`, in order.
pub async fn changes_after(
    db: &PgPool,
    after: i64,
    limit: i64,
) -> anyhow::Result<Vec<SequencedChange>> {
    let rows = sqlx::query!(
        "SELECT seq, kind, payload FROM replication_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        after,
        limit
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .map(|r| {
            let change = decode_change(&r.kind, r.payload)?;
            Ok(SequencedChange {
                seq: u64::try_from(r.seq)?,
                change,
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct LicensePayload {
    id: Uuid,
    key_hash: String,
    product_code: String,
    status: String,
    expires_at: Option<DateTime<Utc>>,
    max_ips: i64,
    bound_ips: Vec<String>,
}

#[derive(Deserialize)]
struct DeletePayload {
    id: Uuid,
    key_hash: String,
}

#[derive(Deserialize)]
struct ProductPayload {
    id: Uuid,
    code: String,
    active: bool,
}

/// Turns an outbox row (written by the SQL functions of migration 0004) into a wire change.
fn decode_change(kind: &str, payload: serde_json::Value) -> anyhow::Result<Change> {
    Ok(match kind {
        "license.upsert" => {
            let p: LicensePayload = serde_json::from_value(payload)?;
            Change::LicenseUpsert(ReplicatedLicense {
                id: p.id,
                key_hash: KeyHash::from_str(&p.key_hash)
                    .map_err(|e| anyhow::anyhow!("key_hash: {e}"))?,
                product_code: ProductCode::parse(&p.product_code)
                    .map_err(|e| anyhow::anyhow!("product_code: {e}"))?,
                status: p
                    .status
                    .parse::<LicenseStatus>()
                    .map_err(|e| anyhow::anyhow!("status: {e}"))?,
                expires_at: p.expires_at,
                max_ips: u32::try_from(p.max_ips)?,
                bound_ips: p
                    .bound_ips
                    .iter()
                    .filter_map(|ip| ip.parse::<IpAddr>().ok())
                    .collect(),
            })
        }
        "license.delete" => {
            let p: DeletePayload = serde_json::from_value(payload)?;
            Change::LicenseDelete {
                id: p.id,
                key_hash: KeyHash::from_str(&p.key_hash)
                    .map_err(|e| anyhow::anyhow!("key_hash: {e}"))?,
            }
        }
        "product.upsert" => {
            let p: ProductPayload = serde_json::from_value(payload)?;
            Change::ProductUpsert(ReplicatedProduct {
                id: p.id,
                code: ProductCode::parse(&p.code).map_err(|e| anyhow::anyhow!("code: {e}"))?,
                active: p.active,
            })
        }
        other => anyhow::bail!("unknown outbox kind {other}"),
    })
}

/// Starts a snapshot: a repeatable-read transaction in which the head sequence and every
/// license are read as of one instant (outbox rows commit with their changes, so the snapshot
/// reflects exactly the changes up to that sequence).
pub async fn snapshot_head(conn: &mut PgConnection) -> sqlx::Result<i64> {
    sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *conn)
        .await?;
    sqlx::query_scalar!("SELECT last_seq FROM replication_state")
        .fetch_one(conn)
        .await
}

/// A page of licenses after `after` (by id), inside the snapshot transaction.
pub async fn snapshot_licenses(
    conn: &mut PgConnection,
    after: Uuid,
    limit: i64,
) -> anyhow::Result<Vec<ReplicatedLicense>> {
    let rows = sqlx::query!(
        r#"SELECT l.id, l.key_hash, p.code, l.status, l.expires_at, l.max_ips,
                  array(SELECT b.ip_address FROM license_ip_bindings b WHERE b.license_id = l.id) AS "bound!: Vec<IpNetwork>"
           FROM licenses l JOIN products p ON p.id = l.product_id
           WHERE l.id > $1 ORDER BY l.id LIMIT $2"#,
        after,
        limit
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(ReplicatedLicense {
                id: r.id,
                key_hash: KeyHash::from_slice(&r.key_hash)
                    .ok_or_else(|| anyhow::anyhow!("bad key hash"))?,
                product_code: ProductCode::parse(&r.code)
                    .map_err(|e| anyhow::anyhow!("product code: {e}"))?,
                status: r
                    .status
                    .parse::<LicenseStatus>()
                    .map_err(|e| anyhow::anyhow!("status: {e}"))?,
                expires_at: r.expires_at,
                max_ips: u32::try_from(r.max_ips)?,
                bound_ips: r.bound.iter().map(IpNetwork::ip).collect::<BoundIps>(),
            })
        })
        .collect()
}

pub async fn snapshot_products(conn: &mut PgConnection) -> anyhow::Result<Vec<ReplicatedProduct>> {
    let rows = sqlx::query!(
        r#"SELECT id, code, product_validates(status, deleted_at) AS "active!" FROM products ORDER BY id"#
    )
    .fetch_all(conn)
    .await?;
    rows.into_iter()
        .map(|r| {
            Ok(ReplicatedProduct {
                id: r.id,
                code: ProductCode::parse(&r.code)
                    .map_err(|e| anyhow::anyhow!("product code: {e}"))?,
                active: r.active,
            })
        })
        .collect()
}

/// Forgets changes older than the newest `keep`; an edge behind them resumes from a snapshot.
pub async fn prune(db: &PgPool, keep: i64) -> sqlx::Result<u64> {
    Ok(sqlx::query!(
        "DELETE FROM replication_log WHERE seq <= (SELECT last_seq FROM replication_state) - $1",
        keep
    )
    .execute(db)
    .await?
    .rows_affected())
}

pub async fn edge_connected(
    db: &PgPool,
    id: &str,
    region: &str,
    address: &str,
    version: i32,
) -> sqlx::Result<()> {
    sqlx::query!(
        r#"INSERT INTO edges (id, region, address, connected, protocol_version, connected_at, last_seen_at)
           VALUES ($1, $2, $3, true, $4, now(), now())
           ON CONFLICT (id) DO UPDATE SET region = $2, address = $3, connected = true, protocol_version = $4,
                                          connected_at = now(), last_seen_at = now()"#,
        id,
        region,
        address,
        version
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn edge_progress(
    db: &PgPool,
    id: &str,
    applied_seq: i64,
    reports: i64,
) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE edges SET applied_seq = GREATEST(applied_seq, $2), reports_received = reports_received + $3,
                          last_seen_at = now() WHERE id = $1",
        id,
        applied_seq,
        reports
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn edge_disconnected(db: &PgPool, id: &str) -> sqlx::Result<()> {
    sqlx::query!(
        "UPDATE edges SET connected = false, disconnected_at = now(), last_seen_at = now() WHERE id = $1",
        id
    )
    .execute(db)
    .await?;
    Ok(())
}

pub async fn edges(db: &PgPool) -> sqlx::Result<Vec<EdgeView>> {
    sqlx::query_as!(
        EdgeView,
        r#"SELECT e.id, e.region, e.address, e.connected, e.protocol_version, e.applied_seq,
                  GREATEST((SELECT last_seq FROM replication_state) - e.applied_seq, 0) AS "lag!",
                  e.reports_received, e.connected_at, e.disconnected_at, e.last_seen_at
           FROM edges e ORDER BY e.region, e.id"#
    )
    .fetch_all(db)
    .await
}
