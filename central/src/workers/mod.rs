//! Background work: a supervisor that runs each named job until shutdown, restarting a job that
//! fails or panics after a backoff, and waiting for all of them to finish their current unit of
//! work when the process is asked to stop. Modules register their jobs in [`jobs`]. Every start
//! and every failure of a job is counted (`celaest_worker_job_*`, labelled by job name).

mod heartbeat;

use std::{future::Future, pin::Pin, time::Duration};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::{
    metrics::{WORKER_JOB_FAILURES_TOTAL, WORKER_JOB_RUNS_TOTAL},
    state::AppState,
};

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
    let runs = metrics::counter!(WORKER_JOB_RUNS_TOTAL, "job" => job.name);
    let errors =
        metrics::counter!(WORKER_JOB_FAILURES_TOTAL, "job" => job.name, "reason" => "error");
    let panics =
        metrics::counter!(WORKER_JOB_FAILURES_TOTAL, "job" => job.name, "reason" => "panic");
    // At zero from the start, so a dashboard's rate() sees the first failure.
    errors.increment(0);
    panics.increment(0);
    let mut backoff = RESTART_BACKOFF;
    loop {
        runs.increment(1);
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
            Ok(Err(e)) => {
                errors.increment(1);
                tracing::error!(job = job.name, error = ?e, "job failed; restarting");
            }
            Err(e) => {
                panics.increment(1);
                tracing::error!(job = job.name, error = %e, "job panicked; restarting");
            }
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_RESTART_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of `series` (name and labels) on central's metrics page, if there.
    fn sample(series: &str) -> Option<f64> {
        crate::metrics::install()
            .render()
            .lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[tokio::test]
    async fn a_failing_job_is_counted_at_each_start_and_each_failure_by_reason() {
        let config = crate::config::Config::from_lookup(|_| None).unwrap();
        let db = sqlx::postgres::PgPoolOptions::new()
            .connect_lazy("postgres://postgres@127.0.0.1:1/unused")
            .unwrap();
        let state = AppState::new(config, db).unwrap();
        let stop = CancellationToken::new();
        let failing = Job {
            name: "test-fails",
            run: |_, _| Box::pin(async { Err(anyhow::anyhow!("boom")) }),
        };
        let panicking = Job {
            name: "test-panics",
            run: |_, _| Box::pin(async { panic!("boom") }),
        };
        let runs = [
            tokio::spawn(supervise(failing, state.clone(), stop.clone())),
            tokio::spawn(supervise(panicking, state, stop.clone())),
        ];
        let expected = [
            "celaest_worker_job_failures_total{job=\"test-fails\",reason=\"error\"}",
            "celaest_worker_job_failures_total{job=\"test-panics\",reason=\"panic\"}",
        ];
        for _ in 0..100 {
            if expected.iter().all(|s| sample(s).is_some_and(|n| n >= 1.0)) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        stop.cancel();
        for run in runs {
            run.await.unwrap();
        }
        // Every start but perhaps the last (cut short by the stop) ended in a failure of its
        // reason; a slow machine may have restarted them after the backoff.
        for (job, failures) in [("test-fails", expected[0]), ("test-panics", expected[1])] {
            let runs = sample(&format!("celaest_worker_job_runs_total{{job=\"{job}\"}}")).unwrap();
            let failed = sample(failures).unwrap();
            assert!(
                failed >= 1.0 && (runs - failed) <= 1.0,
                "{job}: {runs} runs, {failed} failed"
            );
        }
        assert_eq!(
            sample("celaest_worker_job_failures_total{job=\"test-fails\",reason=\"panic\"}"),
            Some(0.0)
        );
    }
}
