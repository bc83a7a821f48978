//! CELAEST Core edge node.
//!
//! Today the edge serves its health endpoints with central's HTTP standards. Replication from
//! central over QUIC and in-memory validation arrive with the edge issue; until then the edge
//! reports itself not ready, so no load balancer sends it validations it cannot answer.

pub mod config;
pub mod http;

use std::{sync::Arc, time::Instant};

use tokio::net::TcpListener;

pub use config::EdgeConfig;

/// What every edge handler shares.
#[derive(Debug, Clone)]
pub struct EdgeState {
    pub config: Arc<EdgeConfig>,
    pub started_at: Instant,
}

impl EdgeState {
    pub fn new(config: EdgeConfig) -> Self {
        Self {
            config: Arc::new(config),
            started_at: Instant::now(),
        }
    }
}

/// Serves the edge's HTTP API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    state: EdgeState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, http::router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
