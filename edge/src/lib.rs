//! CELAEST Core edge node: answers license validations from memory, with central's exact HTTP
//! contract, fed by central over QUIC (DESIGN.md, "Central ⇄ edge").
//!
//! - [`config`]: settings from the environment, validated at start.
//! - [`store`]: the licenses and products held in memory, replaced by snapshots and updated by
//!   sequenced changes, read lock-free by validations.
//! - [`validate`]: the validation flow (decide from memory; ask central to bind a new IP).
//! - [`local`]: what only this edge knows: collision windows, provisional IPs.
//! - [`reports`]: every answered validation, batched back to central until acknowledged.
//! - [`replication`]: the QUIC client that connects, syncs, binds and delivers reports.
//! - [`http`]: routes, central's input rules, signed answers, health and metrics.

pub mod config;
pub mod http;
pub mod local;
pub mod metrics;
pub mod replication;
pub mod reports;
pub mod store;
pub mod validate;

use std::{net::SocketAddr, sync::Arc, time::Duration, time::Instant};

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::EdgeConfig;

use crate::{
    local::LocalTracker,
    metrics::Metrics,
    replication::{Link, ReplicationInputs, Replicator},
    reports::ReportQueue,
    store::Store,
};

/// How often idle collision windows are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(60);
/// How often latency samples are folded into their histogram buckets between scrapes.
const METRICS_UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// What every edge handler shares.
#[derive(Debug, Clone)]
pub struct EdgeState {
    pub config: Arc<EdgeConfig>,
    pub started_at: Instant,
    pub store: Arc<Store>,
    pub local: Arc<LocalTracker>,
    pub metrics: Arc<Metrics>,
    pub reports: Arc<ReportQueue>,
    pub link: Arc<Link>,
}

impl EdgeState {
    /// A state with no replication behind it (nothing consumes its binds or reports): for
    /// serving HTTP alone, as tests that load the store themselves do.
    pub fn new(config: EdgeConfig) -> Self {
        Self::with_replication(config).0
    }

    /// A state and the inputs of the [`Replicator`] that serves it.
    pub fn with_replication(config: EdgeConfig) -> (Self, ReplicationInputs) {
        let (reports, report_rx) = ReportQueue::new(config.reports.buffer);
        let (link, bind_rx) = Link::new();
        let state = Self {
            config: Arc::new(config),
            started_at: Instant::now(),
            store: Arc::new(Store::new()),
            local: Arc::new(LocalTracker::new()),
            metrics: Arc::new(Metrics::new()),
            reports: Arc::new(reports),
            link: Arc::new(link),
        };
        let inputs = ReplicationInputs {
            binds: bind_rx,
            reports: report_rx,
        };
        (state, inputs)
    }
}

/// Serves the edge's HTTP API on `listener` until `shutdown` completes (in-flight requests
/// finish first).
pub async fn serve(
    listener: TcpListener,
    state: EdgeState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        http::router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Runs a whole edge: HTTP on `listener` and replication from central, until `shutdown`
/// completes. Then HTTP stops taking requests and finishes those in flight, and only after that
/// are the buffered reports flushed to central (within `EDGE_SHUTDOWN_FLUSH_MS`).
pub async fn run(
    config: EdgeConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if config.strict {
        // In production the certificates are known up front: a bad one stops start-up here.
        replication::tls::client_config(&config.tls)?;
    }
    let (state, inputs) = EdgeState::with_replication(config);
    let stop = CancellationToken::new();
    let replicator = tokio::spawn(Replicator::new(state.clone(), inputs).run(stop.clone()));
    let housekeeping = tokio::spawn(housekeeping(state.clone(), stop.clone()));
    let served = serve(listener, state, shutdown).await;
    stop.cancel();
    let replicated = replicator.await;
    let _ = housekeeping.await;
    served?;
    replicated?;
    Ok(())
}

/// Periodic chores: forgetting idle collision windows, and metrics upkeep.
async fn housekeeping(state: EdgeState, stop: CancellationToken) {
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    let mut upkeep = tokio::time::interval(METRICS_UPKEEP_EVERY);
    loop {
        tokio::select! {
            _ = prune.tick() => state.local.prune(chrono::Utc::now()),
            _ = upkeep.tick() => state.metrics.upkeep(),
            () = stop.cancelled() => return,
        }
    }
}
