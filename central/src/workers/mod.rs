//! Background work: a supervisor that runs each named job until shutdown, restarting a job that
//! fails or panics after a backoff, and waiting for all of them to finish their current unit of
//! work when the process is asked to stop. Modules register their jobs in [`jobs`].

mod heartbeat;

use std::{future::Future, pin::Pin, time::Duration};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::state::AppState;

pub use heartbeat::alive_workers;

type JobFuture = Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

/// A long-running job: called again after it returns an error, until shutdown.
pub struct Job {
    pub name: &'static str,
    pub run: fn(AppState, CancellationToken) -> JobFuture,
}

/// Every job a worker process runs.
pub fn jobs() -> Vec<Job> {
    vec![
        Job {
            name: "heartbeat",
            run: |state, stop| Box::pin(heartbeat::run(state, stop)),
        },
        Job {
            name: "api-key-usage",
            run: |state, stop| Box::pin(crate::auth::usage::run(state, stop)),
        },
        Job {
            name: "replication-retention",
            run: |state, stop| Box::pin(crate::replication::retention(state, stop)),
        },
    ]
}

const RESTART_BACKOFF: Duration = Duration::from_secs(2);
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(60);

/// Runs every job until `shutdown` is cancelled and all of them have returned.
pub async fn run(state: AppState, shutdown: CancellationToken) -> anyhow::Result<()> {
    let mut set = JoinSet::new();
    for job in jobs() {
        set.spawn(supervise(job, state.clone(), shutdown.clone()));
    }
    tracing::info!(jobs = set.len(), "workers started");
    while let Some(result) = set.join_next().await {
        if let Err(e) = result {
            tracing::error!(error = %e, "worker supervisor ended abnormally");
        }
    }
    tracing::info!("workers stopped");
    Ok(())
}

/// Runs one job, restarting it with a growing backoff when it fails or panics.
async fn supervise(job: Job, state: AppState, shutdown: CancellationToken) {
    let mut backoff = RESTART_BACKOFF;
    loop {
        let handle = tokio::spawn((job.run)(state.clone(), shutdown.clone()));
        let outcome = handle.await;
        if shutdown.is_cancelled() {
            return;
        }
        match outcome {
            Ok(Ok(())) => {
                tracing::info!(job = job.name, "job finished");
                return;
            }
            Ok(Err(e)) => tracing::error!(job = job.name, error = ?e, "job failed; restarting"),
            Err(e) => tracing::error!(job = job.name, error = %e, "job panicked; restarting"),
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_RESTART_BACKOFF);
    }
}
