//! End-to-end: the real `celaest-central` binary, as an operator runs it — migrate, seed, serve
//! with workers, answer, and stop cleanly on SIGTERM.

use std::time::Duration;

use celaest_tests::{CentralProcess, drop_database, free_port, fresh_database_url, http_client};
use sqlx::Connection;

#[tokio::test]
async fn central_migrates_seeds_serves_and_stops_on_sigterm() -> anyhow::Result<()> {
    let db_url = fresh_database_url("lifecycle");
    let env = CentralProcess::env_for(&db_url, free_port()?);

    // `migrate` creates the database with all 35 tables of the spec (and the design's additions).
    let migrate = CentralProcess::run_command(&env, &["migrate"])?;
    assert!(
        migrate.status.success(),
        "{}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    let mut conn = sqlx::PgConnection::connect(&db_url).await?;
    let tables: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM information_schema.tables
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE'
           AND table_name IN ('organizations', 'users_profile', 'subscription_plans', 'licenses', 'license_usage_log',
               'ai_models', 'ai_api_pool', 'prompts_master', 'task_batches', 'processed_tasks', 'roi_metrics',
               'audit_logs', 'telemetry_events', 'system_config', 'feature_flags', 'product_categories', 'products',
               'product_reviews', 'product_releases', 'customer_assets', 'asset_downloads', 'payment_methods',
               'payment_gateways', 'orders', 'order_items', 'invoices', 'tax_rates', 'coupons', 'user_sessions',
               'user_api_keys', 'webhooks', 'webhook_deliveries', 'license_ip_bindings', 'license_validations',
               'license_collisions')",
    )
    .fetch_one(&mut conn)
    .await?;
    assert_eq!(tables, 35);

    // `seed` is idempotent.
    for _ in 0..2 {
        let seed = CentralProcess::run_command(&env, &["seed"])?;
        assert!(
            seed.status.success(),
            "{}",
            String::from_utf8_lossy(&seed.stderr)
        );
    }
    let plans: i64 = sqlx::query_scalar("SELECT count(*) FROM subscription_plans")
        .fetch_one(&mut conn)
        .await?;
    assert_eq!(plans, 3);
    conn.close().await?;

    // `serve --with-workers` becomes ready and runs its workers.
    let mut central = CentralProcess::start(env, &["serve", "--with-workers"]).await?;
    let client = http_client();
    let ready = client
        .get(format!("{}/health/ready", central.base_url))
        .send()
        .await?;
    assert_eq!(ready.status(), 200);
    let mut workers_alive = serde_json::Value::Null;
    for _ in 0..50 {
        let health: serde_json::Value = client
            .get(format!("{}/health", central.base_url))
            .send()
            .await?
            .json()
            .await?;
        workers_alive = health["data"]["workers_alive"].clone();
        if workers_alive == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(workers_alive, 1);
    let docs = client
        .get(format!("{}/docs", central.base_url))
        .send()
        .await?;
    assert_eq!(docs.status(), 200);

    // A validation answered just before the signal is stored by the graceful shutdown's flush.
    let answer: serde_json::Value = client
        .post(format!("{}/api/licenses/validate", central.base_url))
        .json(&serde_json::json!({"license_key": "CELAEST-MKT-00000000-0000", "ip_address": "203.0.113.1"}))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(answer["data"]["code"], "INVALID_KEY_FORMAT");

    // SIGTERM: a clean exit, with the access log written as JSON lines.
    let status = central.terminate(Duration::from_secs(15))?;
    assert!(status.success(), "exit status {status}");
    let mut stderr = String::new();
    if let Some(mut pipe) = central.child.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr)?;
    }
    let access: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|l| l["target"] == "celaest::access")
        .collect();
    let ready_line = access
        .iter()
        .find(|l| l["route"] == "/health/ready")
        .expect("access line for /health/ready");
    assert_eq!(ready_line["method"], "GET");
    assert_eq!(ready_line["status"], 200);
    assert!(ready_line["duration_ms"].is_number());
    assert!(ready_line["request_id"].is_string());
    assert!(
        !stderr.contains("postgres:postgres@"),
        "database credentials in the log"
    );

    drop(central);
    drop_database(&db_url).await;
    Ok(())
}
