//! PostgreSQL: the pool, and the migrations embedded in the binary.

use secrecy::ExposeSecret;
use sqlx::{
    PgPool,
    migrate::{MigrateDatabase, Migrator},
    postgres::PgPoolOptions,
};

use crate::config::DatabaseConfig;

/// The migrations of `migrations/`, compiled into the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Opens the pool, sized by `DATABASE_MAX_CONNS`. Connections are opened lazily, so a database
/// that is down at start-up delays readiness instead of stopping the process.
pub fn connect(config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .connect_lazy(config.url.expose_secret())?;
    Ok(pool)
}

/// Creates the database if it does not exist, then applies every pending migration.
pub async fn migrate(config: &DatabaseConfig) -> anyhow::Result<()> {
    let url = config.url.expose_secret();
    if !sqlx::Postgres::database_exists(url).await? {
        tracing::info!("creating database");
        sqlx::Postgres::create_database(url).await?;
    }
    let pool = PgPoolOptions::new().max_connections(2).connect(url).await?;
    MIGRATOR.run(&pool).await?;
    pool.close().await;
    Ok(())
}
