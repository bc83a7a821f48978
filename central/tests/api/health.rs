//! MODULO 1 health endpoints.

use celaest_central::{http, state::AppState};
use sqlx::{PgPool, postgres::PgPoolOptions};

use crate::helpers::{TestApp, test_config};

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn health_reports_status_version_and_uptime(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let response = app.get("/health").await;
    let data = response.assert_ok();
    assert_eq!(data["status"], "ok");
    assert_eq!(data["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(data["environment"], "test");
    assert!(data["uptime_seconds"].is_u64());
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn live_answers_while_the_process_runs(db: PgPool) {
    let app = TestApp::spawn(db).await;
    assert_eq!(app.get("/health/live").await.assert_ok()["status"], "alive");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn ready_checks_postgres_and_redis(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let response = app.get("/health/ready").await;
    let data = response.assert_ok();
    assert_eq!(data["status"], "ready");
    assert_eq!(data["checks"]["postgres"]["status"], "up");
    assert_eq!(data["checks"]["redis"]["status"], "up");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn ready_is_503_naming_redis_when_redis_does_not_answer(db: PgPool) {
    let app = TestApp::spawn_with(db, &[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let response = app.get("/health/ready").await;
    let error = response.assert_error(503, "NOT_READY");
    assert_eq!(error["details"]["failed"], serde_json::json!(["redis"]));
    assert_eq!(error["details"]["checks"]["postgres"]["status"], "up");
    // Liveness does not depend on Redis.
    app.get("/health/live").await.assert_ok();
}

#[tokio::test]
async fn ready_is_503_naming_postgres_when_the_database_does_not_answer() {
    let unreachable = PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(500))
        .connect_lazy("postgres://postgres@127.0.0.1:1/nothing")
        .unwrap();
    let state = AppState::new(test_config(&[]), unreachable).unwrap();
    let app = TestApp::serve(state.clone(), http::build_router(state)).await;
    let response = app.get("/health/ready").await;
    let error = response.assert_error(503, "NOT_READY");
    assert_eq!(error["details"]["failed"], serde_json::json!(["postgres"]));
    assert_eq!(error["details"]["checks"]["redis"]["status"], "up");
}
