use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // A missing .env is normal; real environment variables win over the file.
    let _ = dotenvy::dotenv();
    let cli = celaest_central::cli::Cli::parse();
    match celaest_central::cli::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // Logging may not be set up yet (a configuration error), so say it plainly too.
            tracing::error!(error = %e, "celaest-central failed");
            report_fatal(&e);
            std::process::ExitCode::FAILURE
        }
    }
}

/// A fatal error must reach the operator even when logging is not set up yet (bad configuration).
#[expect(clippy::print_stderr, reason = "the last word of a failed process")]
fn report_fatal(e: &anyhow::Error) {
    eprintln!("celaest-central: {e:#}");
}
