//! The `celaest-central` command line.

use clap::{Parser, Subcommand};

use crate::{app, config::Config, db, seed};

/// CELAEST Core central: the admin REST API, its background workers, and their maintenance
/// commands. Configuration comes from the environment and a `.env` file (see README.md).
#[derive(Debug, Parser)]
#[command(name = "celaest-central", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the REST API on APP_HOST:APP_PORT.
    Serve {
        /// Also run the background workers in this process (the default for local runs).
        #[arg(long)]
        with_workers: bool,
    },
    /// Run the background workers only (queue consumers and scheduled jobs).
    Worker,
    /// Create the database if needed and apply pending migrations.
    Migrate,
    /// Load demo data (idempotent: running it twice changes nothing).
    Seed,
}

/// Parses arguments, loads configuration and runs the chosen command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    app::init_tracing(&config);
    match cli.command {
        Command::Serve { with_workers } => app::run_server(config, with_workers).await,
        Command::Worker => app::run_workers(config).await,
        Command::Migrate => {
            db::migrate(&config.database).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Seed => {
            let pool = db::connect(&config.database)?;
            let summary = seed::run(&pool).await?;
            tracing::info!(?summary, "demo data loaded");
            Ok(())
        }
    }
}
