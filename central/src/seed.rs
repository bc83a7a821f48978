//! `celaest-central seed`: demo data for local runs (see `seed.sql`), loaded in one transaction
//! and idempotent — a second run inserts nothing and overwrites nothing.

use sqlx::PgPool;

const DEMO_DATA: &str = include_str!("seed.sql");

/// How many demo-relevant rows exist after seeding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedSummary {
    pub plans: i64,
    pub organizations: i64,
    pub users: i64,
    pub products: i64,
    pub tax_rates: i64,
    pub feature_flags: i64,
    pub ai_models: i64,
}

pub async fn run(pool: &PgPool) -> anyhow::Result<SeedSummary> {
    let mut tx = pool.begin().await?;
    sqlx::raw_sql(DEMO_DATA).execute(&mut *tx).await?;
    tx.commit().await?;
    summary(pool).await
}

pub async fn summary(pool: &PgPool) -> anyhow::Result<SeedSummary> {
    let summary = sqlx::query_as!(
        SeedSummary,
        r#"SELECT
             (SELECT count(*) FROM subscription_plans) AS "plans!",
             (SELECT count(*) FROM organizations) AS "organizations!",
             (SELECT count(*) FROM users_profile) AS "users!",
             (SELECT count(*) FROM products) AS "products!",
             (SELECT count(*) FROM tax_rates) AS "tax_rates!",
             (SELECT count(*) FROM feature_flags) AS "feature_flags!",
             (SELECT count(*) FROM ai_models) AS "ai_models!""#
    )
    .fetch_one(pool)
    .await?;
    Ok(summary)
}
