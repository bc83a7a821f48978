//! `GET /metrics`: every declared series is exposed, requests are labelled by route template,
//! the fleet and pool gauges are read at scrape time, Redis failures are counted, and
//! `METRICS_TOKEN` guards the page when set.
//!
//! The recorder is process-wide, so counters may include other tests' traffic: these tests read
//! series labelled with something only they use, or compare before and after.

use std::time::Duration;

use celaest_central::{metrics, replication, workers};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::helpers::TestApp;

/// The value of the first sample line starting with `series` (name and labels) on the page.
fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

async fn scrape(app: &TestApp) -> String {
    let response = app.get("/metrics").await;
    assert_eq!(response.status, 200, "{}", response.text);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        response.headers
    );
    response.text
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn every_declared_series_is_on_the_page_after_some_traffic(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    // HTTP, PostgreSQL and Redis: a readiness probe uses both.
    app.get("/health/ready").await.assert_ok();
    // An edge in the fleet view.
    replication::store::edge_connected(&db, "edge-declared", "eu", "127.0.0.1:1", 1)
        .await
        .unwrap();
    // The workers: each job started once, then stopped.
    let stop = CancellationToken::new();
    let running = tokio::spawn(workers::run(app.state.clone(), stop.clone()));
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("workers stopped")
        .unwrap()
        .unwrap();

    let page = scrape(&app).await;
    for series in metrics::ALL {
        let (name, kind) = (series.name, series.kind.as_str());
        assert!(
            page.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} ({kind}) is declared but not on the page:\n{page}"
        );
    }
    // Histograms are real Prometheus histograms with buckets, not summaries.
    assert!(page.contains("celaest_http_request_duration_seconds_bucket{"));
    assert!(page.contains("celaest_redis_command_duration_seconds_bucket{le=\"0.001\"}"));
    assert!(!page.contains("quantile="), "no summaries:\n{page}");
    // Every job was started under its own name.
    for job in workers::jobs() {
        let series = format!("celaest_worker_job_runs_total{{job=\"{}\"}}", job.name);
        assert!(
            sample(&page, &series).is_some_and(|runs| runs >= 1.0),
            "{series}"
        );
    }
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn requests_are_counted_by_route_template_never_by_raw_path(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let id = uuid::Uuid::now_v7();
    app.get(&format!("/api/licenses/{id}"))
        .await
        .assert_error(401, "AUTH_REQUIRED");
    app.get(&format!("/no-such-route/{id}")).await;

    let page = scrape(&app).await;
    let templated = sample(
        &page,
        "celaest_http_requests_total{route=\"/api/licenses/{id}\",method=\"GET\",status=\"401\"}",
    );
    assert!(templated.is_some_and(|n| n >= 1.0), "{page}");
    assert!(
        sample(
            &page,
            "celaest_http_requests_total{route=\"unmatched\",method=\"GET\",status=\"404\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{page}"
    );
    assert!(
        page.contains(
            "celaest_http_request_duration_seconds_count{route=\"/api/licenses/{id}\",method=\"GET\"}"
        ),
        "{page}"
    );
    assert!(
        !page.contains(&id.to_string()),
        "a raw path leaked into a label"
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn each_edge_is_exposed_with_its_applied_sequence_and_lag(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    sqlx::query(
        "SELECT replication_append('product.upsert', gen_random_uuid(), '{}'::jsonb) \
         FROM generate_series(1, 10)",
    )
    .execute(&db)
    .await
    .unwrap();
    let edge = format!("edge-{}", uuid::Uuid::now_v7());
    replication::store::edge_connected(&db, &edge, "sa-east", "127.0.0.1:1", 1)
        .await
        .unwrap();
    replication::store::edge_progress(&db, &edge, 7, 42)
        .await
        .unwrap();

    let page = scrape(&app).await;
    let labels = format!("{{edge=\"{edge}\",region=\"sa-east\"}}");
    let value = |name: &str| sample(&page, &format!("{name}{labels}"));
    assert_eq!(value(metrics::REPLICATION_EDGE_CONNECTED), Some(1.0));
    assert_eq!(value(metrics::REPLICATION_EDGE_APPLIED_SEQ), Some(7.0));
    assert_eq!(value(metrics::REPLICATION_EDGE_LAG), Some(3.0));
    assert_eq!(value(metrics::REPLICATION_EDGE_REPORTS_TOTAL), Some(42.0));

    replication::store::edge_disconnected(&db, &edge)
        .await
        .unwrap();
    let page = scrape(&app).await;
    assert_eq!(
        sample(
            &page,
            &format!("{}{labels}", metrics::REPLICATION_EDGE_CONNECTED)
        ),
        Some(0.0),
        "a disconnected edge reads 0, not its last value"
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn the_pool_gauges_are_read_when_scraped(db: PgPool) {
    let app = TestApp::spawn(db).await;
    // Hold one connection: the page must count it in use.
    let held = app.state.db.acquire().await.unwrap();
    let page = scrape(&app).await;
    let value = |name: &str| sample(&page, name).unwrap_or(f64::NAN);
    assert!(value(metrics::DB_POOL_IN_USE) >= 1.0, "{page}");
    assert_eq!(
        value(metrics::DB_POOL_CONNECTIONS),
        value(metrics::DB_POOL_IN_USE) + value(metrics::DB_POOL_IDLE)
    );
    assert!(value(metrics::DB_POOL_MAX) >= value(metrics::DB_POOL_CONNECTIONS));
    drop(held);
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_redis_that_does_not_answer_is_counted_as_connect_errors(db: PgPool) {
    let app = TestApp::spawn_with(db, &[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let series = "celaest_redis_errors_total{stage=\"connect\"}";
    let before = sample(&scrape(&app).await, series).unwrap();
    app.get("/health/ready")
        .await
        .assert_error(503, "NOT_READY");
    let after = sample(&scrape(&app).await, series).unwrap();
    assert!(after > before, "{before} → {after}");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn metrics_token_when_set_is_required_as_a_bearer_token(db: PgPool) {
    let app = TestApp::spawn_with(db, &[("METRICS_TOKEN", "scrape-me-0123456789")]).await;
    let get = |auth: Option<&'static str>| {
        let mut request = app.request(reqwest::Method::GET, "/metrics");
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        async move { crate::helpers::TestResponse::from(request.send().await.unwrap()).await }
    };
    get(None).await.assert_error(401, "UNAUTHORIZED");
    get(Some("Bearer wrong"))
        .await
        .assert_error(401, "UNAUTHORIZED");
    let ok = get(Some("Bearer scrape-me-0123456789")).await;
    assert_eq!(ok.status, 200);
    assert!(
        ok.text
            .contains("# TYPE celaest_http_requests_total counter")
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_worker_process_serves_its_metrics_and_probes_but_no_api(db: PgPool) {
    let state =
        celaest_central::state::AppState::new(crate::helpers::test_config(&[]), db).unwrap();
    let app = TestApp::serve(state.clone(), celaest_central::http::worker_router(state)).await;
    app.get("/health/live").await.assert_ok();
    app.get("/api/edges")
        .await
        .assert_error(404, "ROUTE_NOT_FOUND");
    let page = scrape(&app).await;
    assert!(page.contains("# TYPE celaest_db_pool_max gauge"), "{page}");
    assert!(
        sample(
            &page,
            "celaest_http_requests_total{route=\"/health/live\",method=\"GET\",status=\"200\"}"
        )
        .is_some_and(|n| n >= 1.0),
        "{page}"
    );
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn recorded_validations_move_the_recorder_series(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let before = scrape(&app).await;
    let records = |page: &str| sample(page, "celaest_recorder_records_total").unwrap_or(0.0);
    let batches = |page: &str| sample(page, "celaest_recorder_batch_size_count").unwrap_or(0.0);
    // Malformed keys need no license, yet each validation is recorded.
    for _ in 0..3 {
        let answer = app
            .post_json(
                "/api/licenses/validate",
                &serde_json::json!({"license_key": "CELAEST-NOPE", "ip_address": "203.0.113.7"}),
            )
            .await;
        assert_eq!(answer.assert_ok()["code"], "INVALID_KEY_FORMAT");
    }
    assert!(app.state.licensing.recorder.flush().await);

    let after = scrape(&app).await;
    assert!(
        records(&after) >= records(&before) + 3.0,
        "records: {} then {}",
        records(&before),
        records(&after)
    );
    assert!(
        batches(&after) > batches(&before),
        "no committed write was measured"
    );
    assert_eq!(sample(&after, "celaest_recorder_queue_depth"), Some(0.0));
}
