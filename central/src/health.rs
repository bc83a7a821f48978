//! MODULO 1 health checks: `/health` (what runs), `/health/live` (the process answers) and
//! `/health/ready` (PostgreSQL and Redis answer within a short timeout; 503 naming what failed).

use std::time::{Duration, Instant};

use axum::{extract::State, response::IntoResponse};
use serde::Serialize;
use serde_json::json;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    cache::Redis,
    docs::{ApiErrorBody, Envelope},
    http::{Error, ErrorCode, response::Data},
    state::AppState,
    workers::alive_workers,
};

/// How long each dependency may take to answer a readiness probe.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(live))
        .routes(routes!(ready))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthStatus {
    /// Always `ok` when the process answers.
    pub status: &'static str,
    pub version: &'static str,
    pub environment: &'static str,
    pub uptime_seconds: u64,
    /// Worker processes seen in the last 30 s (`null` when Redis cannot tell).
    pub workers_alive: Option<u64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LiveStatus {
    pub status: &'static str,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReadyStatus {
    pub status: &'static str,
    pub checks: Checks,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Checks {
    pub postgres: Check,
    pub redis: Check,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Check {
    /// `up` or `down`.
    pub status: &'static str,
    pub latency_ms: u64,
    /// Why the check failed (`timeout`, or the kind of error); absent when up.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Check {
    fn is_up(&self) -> bool {
        self.status == "up"
    }
}

/// Service status, version and uptime.
#[utoipa::path(get, path = "/health", tag = "health",
    responses((status = 200, description = "The service runs", body = Envelope<HealthStatus>)))]
async fn health(State(state): State<AppState>) -> Data<HealthStatus> {
    Data(HealthStatus {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
        environment: state.config.env.as_str(),
        uptime_seconds: state.started_at.elapsed().as_secs(),
        workers_alive: tokio::time::timeout(
            Duration::from_millis(500),
            alive_workers(&state.redis),
        )
        .await
        .ok()
        .and_then(Result::ok),
    })
}

/// Liveness: the process answers HTTP.
#[utoipa::path(get, path = "/health/live", tag = "health",
    responses((status = 200, description = "Alive", body = Envelope<LiveStatus>)))]
async fn live() -> Data<LiveStatus> {
    Data(LiveStatus { status: "alive" })
}

/// Readiness: PostgreSQL and Redis both answer.
#[utoipa::path(get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, description = "Ready for traffic", body = Envelope<ReadyStatus>),
        (status = 503, description = "`NOT_READY`: `details.failed` names the dependencies that did not answer", body = ApiErrorBody),
    ))]
async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    let (postgres, redis) = tokio::join!(check_postgres(&state.db), check_redis(&state.redis));
    let failed: Vec<&str> = [("postgres", &postgres), ("redis", &redis)]
        .into_iter()
        .filter(|(_, c)| !c.is_up())
        .map(|(n, _)| n)
        .collect();
    let checks = Checks { postgres, redis };
    if failed.is_empty() {
        Ok(Data(ReadyStatus {
            status: "ready",
            checks,
        }))
    } else {
        tracing::warn!(?failed, "not ready");
        Err(Error::with_details(
            ErrorCode::NotReady,
            json!({ "failed": failed, "checks": checks }),
        ))
    }
}

async fn timed<E: std::fmt::Display>(fut: impl Future<Output = Result<(), E>>) -> Check {
    let started = Instant::now();
    let outcome = tokio::time::timeout(CHECK_TIMEOUT, fut).await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    match outcome {
        Ok(Ok(())) => Check {
            status: "up",
            latency_ms,
            error: None,
        },
        Ok(Err(e)) => Check {
            status: "down",
            latency_ms,
            error: Some(e.to_string()),
        },
        Err(_) => Check {
            status: "down",
            latency_ms,
            error: Some("timeout".into()),
        },
    }
}

async fn check_postgres(db: &sqlx::PgPool) -> Check {
    timed(async { sqlx::query("SELECT 1").execute(db).await.map(drop) }).await
}

async fn check_redis(redis: &Redis) -> Check {
    timed(redis.ping()).await
}
