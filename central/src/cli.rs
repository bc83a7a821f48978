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
    /// Create a development CA and certificates for central and edges (replication over QUIC).
    Certs {
        /// Where to write ca.pem, central.pem/.key and edge.pem/.key.
        #[arg(long, default_value = ".dev/certs")]
        dir: std::path::PathBuf,
        /// Names and addresses central's certificate is valid for.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "localhost,127.0.0.1,central"
        )]
        hosts: Vec<String>,
        /// Replace an existing set.
        #[arg(long, conflicts_with = "if_missing")]
        force: bool,
        /// Do nothing when a complete set is already there (for deployment scripts).
        #[arg(long)]
        if_missing: bool,
    },
}

/// Parses arguments, loads configuration and runs the chosen command.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let _log = app::init_tracing(&config);
    match cli.command {
        Command::Serve { with_workers } => app::run_server(config, with_workers).await,
        Command::Worker => app::run_workers(config).await,
        Command::Migrate => {
            db::migrate(&config.database).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Certs {
            dir,
            hosts,
            force,
            if_missing,
        } => {
            let set = crate::replication::certs::CertSet::new(dir);
            if set.complete() && if_missing {
                return Ok(());
            }
            if set.complete() && !force {
                anyhow::bail!(
                    "{} already holds a certificate set (use --force to replace it)",
                    set.dir.display()
                );
            }
            set.generate(&hosts)?;
            tracing::info!(dir = %set.dir.display(), "certificates written");
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
