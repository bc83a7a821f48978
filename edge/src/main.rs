//! The `celaest-edge` binary: reads the configuration, sets up logging and the shutdown signals,
//! and runs the edge ([`celaest_edge::run`]). Everything else lives in the library.

use celaest_edge::EdgeConfig;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let _ = dotenvy::dotenv();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "celaest-edge failed");
            report_fatal(&e);
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let config = EdgeConfig::from_env()?;
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Through a writer thread: a validation never waits on stderr (lines are dropped, not
    // waited for, if it falls far behind). The guard writes out what is queued when run ends.
    let (writer, _log) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    if config.log_pretty {
        builder.init();
    } else {
        builder.json().flatten_event(true).init();
    }
    let listener = tokio::net::TcpListener::bind(config.http_addr).await?;
    tracing::info!(addr = %config.http_addr, central = %config.central_addr, edge_id = %config.edge_id, region = %config.region, "edge listening");
    celaest_edge::run(config, listener, shutdown_signal()).await?;
    tracing::info!("edge stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}

/// A fatal error must reach the operator even when logging is not set up yet (bad configuration).
#[expect(clippy::print_stderr, reason = "the last word of a failed process")]
fn report_fatal(e: &anyhow::Error) {
    eprintln!("celaest-edge: {e:#}");
}
