//! Central's metrics: the name of every series (one constant each, so the code that records it,
//! the Grafana dashboard in `deploy/grafana/` and the test that reads `/metrics` agree), their
//! descriptions and histogram buckets, the process-wide Prometheus recorder, and `GET /metrics`.
//!
//! Code records through the `metrics` facade (`metrics::counter!(HTTP_REQUESTS_TOTAL, …)`). The
//! facade's recorder is global to the process, so [`install`] sets it up once however many apps
//! a process builds (the tests build many); series therefore add up across those apps. Gauges
//! that already live elsewhere — the PostgreSQL pool, the edge fleet — are read from their owners
//! when `/metrics` is scraped, so nothing on the request path keeps them current.
//!
//! `/metrics` is public like `/health` unless `METRICS_TOKEN` is set, in which case a scraper
//! sends it as `Authorization: Bearer <token>` (Prometheus: `authorization.credentials`).

use std::{sync::OnceLock, time::Duration};

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
pub use celaest_net::metrics::{Kind, Series};
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    docs::ApiErrorBody,
    http::{Error, ErrorCode},
    state::AppState,
};

// HTTP -------------------------------------------------------------------------------------------

/// Counter, labels `route` (the route template, never the raw path; `unmatched` when no route
/// matched), `method`, `status`.
pub const HTTP_REQUESTS_TOTAL: &str = "celaest_http_requests_total";
/// Histogram (seconds), labels `route`, `method`.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "celaest_http_request_duration_seconds";

// PostgreSQL pool (read at scrape time) ----------------------------------------------------------

/// Gauge: connections the pool holds open (idle and in use).
pub const DB_POOL_CONNECTIONS: &str = "celaest_db_pool_connections";
/// Gauge: connections idle in the pool.
pub const DB_POOL_IDLE: &str = "celaest_db_pool_idle";
/// Gauge: connections lent out to queries and transactions.
pub const DB_POOL_IN_USE: &str = "celaest_db_pool_in_use";
/// Gauge: the most connections the pool may open (`DATABASE_MAX_CONNS`).
pub const DB_POOL_MAX: &str = "celaest_db_pool_max";

// Redis ------------------------------------------------------------------------------------------

/// Histogram (seconds): one command or pipeline, sent to its answer.
pub const REDIS_COMMAND_DURATION_SECONDS: &str = "celaest_redis_command_duration_seconds";
/// Counter, label `stage`: `connect` (no connection could be had) or `command` (a command or
/// pipeline failed: I/O, timeout, or an error answer).
pub const REDIS_ERRORS_TOTAL: &str = "celaest_redis_errors_total";

// Validation recorder (recorded by `licensing::recorder`) ----------------------------------------

/// Gauge: validation records waiting to be stored.
pub const RECORDER_QUEUE_DEPTH: &str = "celaest_recorder_queue_depth";
/// Histogram: records per batch written to PostgreSQL.
pub const RECORDER_BATCH_SIZE: &str = "celaest_recorder_batch_size";
/// Histogram (seconds): time to store one batch.
pub const RECORDER_FLUSH_SECONDS: &str = "celaest_recorder_flush_seconds";
/// Counter: validations accounted for (each coalesced repeat included).
pub const RECORDER_RECORDS_TOTAL: &str = "celaest_recorder_records_total";
/// Counter: validations folded into an existing record under overload instead of queued alone.
pub const RECORDER_COALESCED_TOTAL: &str = "celaest_recorder_coalesced_total";
/// Counter: batches that PostgreSQL refused or did not answer (retried, not dropped).
pub const RECORDER_STORE_FAILURES_TOTAL: &str = "celaest_recorder_store_failures_total";

// Replication (the fleet view, read at scrape time, except batches) ------------------------------

/// Gauge: edges connected now.
pub const REPLICATION_EDGES_CONNECTED: &str = "celaest_replication_edges_connected";
/// Gauge: the newest outbox sequence (what a caught-up edge has applied).
pub const REPLICATION_HEAD_SEQ: &str = "celaest_replication_head_seq";
/// Gauge, labels `edge`, `region`: 1 while that edge is connected.
pub const REPLICATION_EDGE_CONNECTED: &str = "celaest_replication_edge_connected";
/// Gauge, labels `edge`, `region`: the last outbox sequence that edge applied.
pub const REPLICATION_EDGE_APPLIED_SEQ: &str = "celaest_replication_edge_applied_seq";
/// Gauge, labels `edge`, `region`: changes that edge is behind the head.
pub const REPLICATION_EDGE_LAG: &str = "celaest_replication_edge_lag";
/// Counter, labels `edge`, `region`: validation reports received from that edge (all time).
pub const REPLICATION_EDGE_REPORTS_TOTAL: &str = "celaest_replication_edge_reports_total";
/// Counter: report batches from edges stored and acknowledged (recorded by
/// `replication::server`).
pub const REPLICATION_REPORT_BATCHES_TOTAL: &str = "celaest_replication_report_batches_total";

// Workers ----------------------------------------------------------------------------------------

/// Counter, label `job`: times a job was started (its first run and every restart).
pub const WORKER_JOB_RUNS_TOTAL: &str = "celaest_worker_job_runs_total";
/// Counter, labels `job`, `reason` (`error` or `panic`): runs that ended in failure.
pub const WORKER_JOB_FAILURES_TOTAL: &str = "celaest_worker_job_failures_total";

/// Every series central declares: its kind and help text (the `# HELP` line). The exposition
/// test walks this list, and `make lint-delivery` reads it to check the dashboard.
pub const ALL: &[Series] = &[
    Series::counter(
        HTTP_REQUESTS_TOTAL,
        "HTTP requests answered, by route template, method and status.",
    ),
    Series::histogram(
        HTTP_REQUEST_DURATION_SECONDS,
        "Time to answer an HTTP request, by route template and method.",
    ),
    Series::gauge(
        DB_POOL_CONNECTIONS,
        "PostgreSQL connections the pool holds open.",
    ),
    Series::gauge(DB_POOL_IDLE, "PostgreSQL connections idle in the pool."),
    Series::gauge(DB_POOL_IN_USE, "PostgreSQL connections in use."),
    Series::gauge(
        DB_POOL_MAX,
        "The most PostgreSQL connections the pool may open.",
    ),
    Series::histogram(
        REDIS_COMMAND_DURATION_SECONDS,
        "Redis round trip of one command or pipeline.",
    ),
    Series::counter(
        REDIS_ERRORS_TOTAL,
        "Redis failures, by stage (connect, command).",
    ),
    Series::gauge(
        RECORDER_QUEUE_DEPTH,
        "Validation records waiting to be stored.",
    ),
    Series::histogram(
        RECORDER_BATCH_SIZE,
        "Validation records per batch written to PostgreSQL.",
    ),
    Series::histogram(
        RECORDER_FLUSH_SECONDS,
        "Time to store one batch of validation records.",
    ),
    Series::counter(
        RECORDER_RECORDS_TOTAL,
        "Validations accounted for by the recorder, coalesced repeats included.",
    ),
    Series::counter(
        RECORDER_COALESCED_TOTAL,
        "Validations folded into an existing record under overload.",
    ),
    Series::counter(
        RECORDER_STORE_FAILURES_TOTAL,
        "Validation record batches PostgreSQL refused or did not answer.",
    ),
    Series::gauge(REPLICATION_EDGES_CONNECTED, "Edges connected to central."),
    Series::gauge(
        REPLICATION_HEAD_SEQ,
        "The newest replication outbox sequence.",
    ),
    Series::gauge(
        REPLICATION_EDGE_CONNECTED,
        "1 while the edge is connected, by edge.",
    ),
    Series::gauge(
        REPLICATION_EDGE_APPLIED_SEQ,
        "The last outbox sequence the edge applied, by edge.",
    ),
    Series::gauge(
        REPLICATION_EDGE_LAG,
        "Changes the edge is behind the outbox head, by edge.",
    ),
    Series::counter(
        REPLICATION_EDGE_REPORTS_TOTAL,
        "Validation reports received from the edge, by edge.",
    ),
    Series::counter(
        REPLICATION_REPORT_BATCHES_TOTAL,
        "Report batches from edges stored and acknowledged.",
    ),
    Series::counter(
        WORKER_JOB_RUNS_TOTAL,
        "Worker job starts (first run and restarts), by job.",
    ),
    Series::counter(
        WORKER_JOB_FAILURES_TOTAL,
        "Worker job runs that failed, by job and reason (error, panic).",
    ),
];

/// Buckets of the recorder's batch sizes, in records.
const BATCH_SIZE_BUCKETS: &[f64] = &[
    1.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1_000.0, 2_500.0, 5_000.0, 10_000.0,
];
/// How often histogram samples are folded into their buckets between scrapes, so the samples
/// waiting for a scrape stay few.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder on first call (every later call returns the same handle):
/// buckets for every histogram (real Prometheus histograms, never summaries), descriptions, and
/// the unlabelled series at zero, so a dashboard shows 0 rather than "no data" before the first
/// event. Call it before anything records.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = celaest_net::metrics::recorder(&[(RECORDER_BATCH_SIZE, BATCH_SIZE_BUCKETS)]);
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            tracing::error!(error = %e, "another metrics recorder is installed; /metrics stays empty");
        }
        celaest_net::metrics::describe(ALL);
        zero();
        let upkeep = handle.clone();
        let spawned = std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(UPKEEP_EVERY);
                    upkeep.run_upkeep();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "metrics upkeep thread not started; scrapes still fold samples");
        }
        handle
    })
}

/// Registers the series whose labels are known up front, at zero.
fn zero() {
    for name in [
        RECORDER_RECORDS_TOTAL,
        RECORDER_COALESCED_TOTAL,
        RECORDER_STORE_FAILURES_TOTAL,
        REPLICATION_REPORT_BATCHES_TOTAL,
    ] {
        metrics::counter!(name).increment(0);
    }
    for stage in ["connect", "command"] {
        metrics::counter!(REDIS_ERRORS_TOTAL, "stage" => stage).increment(0);
    }
    metrics::gauge!(RECORDER_QUEUE_DEPTH).set(0.0);
    for name in [RECORDER_BATCH_SIZE, RECORDER_FLUSH_SECONDS] {
        // A registered histogram is exposed with empty buckets until its first sample.
        drop(metrics::histogram!(name));
    }
}

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(scrape))
}

/// Prometheus metrics (text exposition format 0.0.4). Public unless `METRICS_TOKEN` is set; then
/// `Authorization: Bearer <METRICS_TOKEN>` is required.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Every series, in the Prometheus text format", content_type = "text/plain", body = String),
        (status = 401, description = "`UNAUTHORIZED`: `METRICS_TOKEN` is set and was not sent", body = ApiErrorBody),
    ))]
async fn scrape(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Error> {
    if let Some(token) = &state.config.http.metrics_token
        && !bearer_matches(&headers, token.expose_secret())
    {
        let mut response = Error::api(ErrorCode::Unauthorized).into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return Ok(response);
    }
    let handle = install();
    read_pool(&state.db, state.config.database.max_connections);
    if let Err(e) = read_fleet(&state.db).await {
        // The rest of the page is still worth serving; the fleet series keep their last values.
        tracing::warn!(error = %e, "fleet view not read for /metrics");
    }
    Ok(celaest_net::metrics::exposition(handle.render()))
}

/// Whether the request carries `Authorization: Bearer <expected>` (compared in constant time).
fn bearer_matches(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|sent| bool::from(sent.as_bytes().ct_eq(expected.as_bytes())))
}

/// The pool's gauges. sqlx tells how many connections are open and idle; it does not expose how
/// many callers wait for one, so saturation shows as `in_use` reaching `max`.
fn read_pool(db: &sqlx::PgPool, max: u32) {
    let size = db.size();
    let idle = u32::try_from(db.num_idle()).unwrap_or(u32::MAX);
    metrics::gauge!(DB_POOL_CONNECTIONS).set(size);
    metrics::gauge!(DB_POOL_IDLE).set(idle);
    metrics::gauge!(DB_POOL_IN_USE).set(size.saturating_sub(idle));
    metrics::gauge!(DB_POOL_MAX).set(max);
}

/// The replication gauges, from the fleet view admins see at `/api/edges`.
async fn read_fleet(db: &sqlx::PgPool) -> sqlx::Result<()> {
    let edges = crate::replication::store::edges(db).await?;
    let (head, _) = crate::replication::store::bounds(db).await?;
    let connected = edges.iter().filter(|e| e.connected).count();
    metrics::gauge!(REPLICATION_EDGES_CONNECTED).set(u32::try_from(connected).unwrap_or(u32::MAX));
    metrics::gauge!(REPLICATION_HEAD_SEQ).set(head as f64);
    for edge in edges {
        let labels = [("edge", edge.id), ("region", edge.region)];
        metrics::gauge!(REPLICATION_EDGE_CONNECTED, &labels).set(u8::from(edge.connected));
        metrics::gauge!(REPLICATION_EDGE_APPLIED_SEQ, &labels).set(edge.applied_seq as f64);
        metrics::gauge!(REPLICATION_EDGE_LAG, &labels).set(edge.lag as f64);
        metrics::counter!(REPLICATION_EDGE_REPORTS_TOTAL, &labels)
            .absolute(u64::try_from(edge.reports_received).unwrap_or(0));
    }
    Ok(())
}
