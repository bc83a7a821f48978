//! Replication to the edges: the outbox (`replication_log`, written by the modules in the same
//! transaction as their changes), the QUIC listener edges connect to, and the fleet view.

pub mod certs;
pub mod server;
pub mod store;

use std::time::Duration;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    auth::principal::{Scoped, SettingsRead},
    docs::{ApiErrorBody, Envelope},
    http::{Result, response::Data},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list_edges))
}

/// An edge as central sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EdgeView {
    pub id: String,
    pub region: String,
    /// Where it connected from.
    pub address: Option<String>,
    pub connected: bool,
    pub protocol_version: i32,
    /// The last outbox sequence it applied.
    pub applied_seq: i64,
    /// How many changes it is behind central.
    pub lag: i64,
    pub reports_received: i64,
    pub connected_at: Option<DateTime<Utc>>,
    pub disconnected_at: Option<DateTime<Utc>>,
    pub last_seen_at: DateTime<Utc>,
}

/// The edge fleet (admins): every edge known, connected or not, and how far behind it is.
#[utoipa::path(get, path = "/api/edges", tag = "edges", security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<Vec<EdgeView>>), (status = 401, body = ApiErrorBody), (status = 403, body = ApiErrorBody)))]
async fn list_edges(
    State(state): State<AppState>,
    Scoped(principal, _): Scoped<SettingsRead>,
) -> Result<Data<Vec<EdgeView>>> {
    principal.ensure(principal.is_admin())?;
    Ok(Data(store::edges(&state.db).await?))
}

const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Worker job: keeps the outbox to `REPLICATION_RETAIN_CHANGES` rows.
pub async fn retention(state: AppState, stop: CancellationToken) -> anyhow::Result<()> {
    let keep = state.config.replication.retain_changes;
    loop {
        match store::prune(&state.db, keep).await {
            Ok(0) => {}
            Ok(pruned) => tracing::info!(pruned, "outbox pruned"),
            Err(e) => tracing::warn!(error = %e, "outbox not pruned"),
        }
        tokio::select! {
            () = stop.cancelled() => return Ok(()),
            () = tokio::time::sleep(PRUNE_EVERY) => {}
        }
    }
}

/// Makes sure the listener has certificates: in development, a set under `.dev/certs/` is made
/// on first start (an edge started from the same directory finds it there).
pub fn ensure_dev_certs(config: &crate::config::ReplicationConfig) -> anyhow::Result<()> {
    if !config.create_dev_certs {
        return Ok(());
    }
    let dir = config.ca_path.parent().map_or_else(
        || std::path::PathBuf::from(".dev/certs"),
        std::path::Path::to_path_buf,
    );
    let set = certs::CertSet::new(dir);
    if !set.complete() {
        tracing::info!(dir = %set.dir.display(), "creating development certificates for replication");
        set.generate(&["localhost".into(), "127.0.0.1".into(), "central".into()])?;
    }
    Ok(())
}
