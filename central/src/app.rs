//! Running central: logging, the HTTP server with graceful shutdown, and the process signals.

use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{Config, LogFormat},
    http,
    state::AppState,
    workers,
};

/// Installs the global tracing subscriber (JSON lines unless `LOG_FORMAT=pretty`).
///
/// Lines go to stderr through a writer thread, so a request never waits on the terminal or a
/// full pipe; if that thread falls far behind, lines are dropped rather than waited for. Keep the
/// returned guard for the life of the process: dropping it writes out what is still queued.
pub fn init_tracing(config: &Config) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let result = match config.log.format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "tracing subscriber already installed");
    }
    guard
}

/// Cancels `token` on Ctrl-C or SIGTERM.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let terminate = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!("Ctrl-C received, shutting down"),
            () = terminate => tracing::info!("SIGTERM received, shutting down"),
        }
        token.cancel();
    });
}

/// Serves the API on `listener` until `shutdown` is cancelled, then lets in-flight requests
/// finish for up to `grace` before returning.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
    grace: Duration,
) -> std::io::Result<()> {
    let signal = shutdown.clone();
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move { signal.cancelled().await });
    let server = tokio::spawn(async move { server.await });
    tokio::select! {
        result = server => result.map_err(std::io::Error::other)?,
        () = async { shutdown.cancelled().await; tokio::time::sleep(grace).await } => {
            tracing::warn!(grace_secs = grace.as_secs(), "in-flight requests did not finish in time; stopping anyway");
            Ok(())
        }
    }
}

/// `celaest-central serve`: the REST API, and the workers too when asked.
pub async fn run_server(config: Config, with_workers: bool) -> anyhow::Result<()> {
    let addr = config.http_addr();
    let grace = config.http.shutdown_grace;
    let db = crate::db::connect(&config.database)?;
    let state = AppState::new(config, db)?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());

    let workers = with_workers.then(|| tokio::spawn(workers::run(state.clone(), shutdown.clone())));
    state.config.replication.require_tls()?;
    crate::replication::ensure_dev_certs(&state.config.replication)?;
    let edges = crate::replication::server::listen(&state.config.replication)?;
    let replication = tokio::spawn(crate::replication::server::run(
        state.clone(),
        edges,
        shutdown.clone(),
    ));
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, with_workers, "central listening");
    serve(
        listener,
        http::build_router(state.clone()),
        shutdown.clone(),
        grace,
    )
    .await?;
    shutdown.cancel();
    let _ = replication.await;
    // Every request is answered and every edge session closed: store the validations queued.
    if !state.licensing.recorder.flush().await {
        tracing::error!("some validation records could not be stored before stopping");
    }
    if let Some(workers) = workers {
        workers.await??;
    }
    state.db.close().await;
    tracing::info!("central stopped");
    Ok(())
}

/// `celaest-central worker`: background work, and on `APP_HOST:APP_PORT` only what a scraper and
/// probes need (`/metrics`, `/health*`): the job series are recorded in this process, so they
/// are served from it.
pub async fn run_workers(config: Config) -> anyhow::Result<()> {
    let addr = config.http_addr();
    let grace = config.http.shutdown_grace;
    let db = crate::db::connect(&config.database)?;
    let state = AppState::new(config, db)?;
    let shutdown = CancellationToken::new();
    cancel_on_signal(shutdown.clone());
    let listener = TcpListener::bind(addr).await?;
    tracing::info!(%addr, "worker serving /metrics");
    let server = tokio::spawn(serve(
        listener,
        http::worker_router(state.clone()),
        shutdown.clone(),
        grace,
    ));
    let ran = workers::run(state.clone(), shutdown.clone()).await;
    shutdown.cancel();
    server.await??;
    state.db.close().await;
    ran
}
