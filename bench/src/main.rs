//! `celaest-bench`: the benchmark harness and its parts as commands.
//!
//! ```text
//! celaest-bench run [--full]        the whole benchmark (what `make bench` runs)
//! celaest-bench seed --count N …    licenses straight into PostgreSQL, keys to a CSV file
//! celaest-bench token [--role R]    an access token for central's API (development secret)
//! celaest-bench load --url … …      one load run (fixed rate or saturation), as JSON
//! ```

use std::{path::PathBuf, time::Duration};

use anyhow::Context;
use celaest_bench::{harness, load, say, seed, stack::Layout, token};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "celaest-bench", about = "CELAEST Core benchmarks", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every scenario and write latest.md and latest.json (services must answer at
    /// DATABASE_URL and REDIS_URL; `bench/run.sh` makes sure they do).
    Run(RunArgs),
    /// Seed a product and licenses (one bound IP each) into a migrated database.
    Seed {
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// Product code for the new product (2–10 of A-Z, 0-9; not used yet).
        #[arg(long, default_value = "BENCH")]
        product: String,
        #[arg(long, default_value_t = 100_000)]
        count: usize,
        /// Do not bind an IP address to each license.
        #[arg(long)]
        no_bind: bool,
        /// First address is 10.0.0.1 plus this.
        #[arg(long, default_value_t = 0)]
        ip_offset: u32,
        /// Where to write `license_key,ip_address,license_id` lines.
        #[arg(long, default_value = "target/bench-run/keys.csv")]
        keys_out: PathBuf,
    },
    /// Print an access token for central (HS256, development secret).
    Token {
        #[arg(long, default_value = "admin")]
        role: String,
    },
    /// One load run; prints its outcome as JSON.
    Load {
        /// http://host:port/path
        #[arg(long)]
        url: String,
        /// Validate the licenses of this CSV file (from `seed`); without it, GET the URL.
        #[arg(long)]
        keys: Option<PathBuf>,
        /// Bearer token for a GET.
        #[arg(long)]
        token: Option<String>,
        /// Requests per second (open loop); without it, saturation (closed loop).
        #[arg(long)]
        rate: Option<f64>,
        #[arg(long, default_value_t = 32)]
        connections: usize,
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
    },
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Add the million-license runs (`make bench-full`).
    #[arg(long)]
    full: bool,
    /// Where latest.md and latest.json go.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// Where celaest-central, celaest-edge and baseline-server are (default: beside this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// Scratch space: logs, certificates, the keys file.
    #[arg(long, default_value = "target/bench-run")]
    work_dir: PathBuf,
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "postgres://postgres:postgres@127.0.0.1:5432/celaest"
    )]
    database_url: String,
    #[arg(long, env = "REDIS_URL", default_value = "redis://127.0.0.1:6379")]
    redis_url: String,
    #[arg(long, env = "BENCH_LICENSES", default_value_t = 100_000)]
    licenses: usize,
    #[arg(long, env = "BENCH_FULL_LICENSES", default_value_t = 1_000_000)]
    full_licenses: usize,
    /// Connections of a saturation (closed-loop) run.
    #[arg(long, env = "BENCH_CONNECTIONS", default_value_t = 32)]
    connections: usize,
    /// Connections of a fixed-rate run: enough that a slow answer does not hold back the rate.
    #[arg(long, env = "BENCH_FIXED_RATE_CONNECTIONS", default_value_t = 128)]
    fixed_rate_connections: usize,
    /// Seconds of warm-up before each measured window.
    #[arg(long, env = "BENCH_WARMUP", default_value_t = 2.0)]
    warmup: f64,
    /// Seconds measured per run.
    #[arg(long, env = "BENCH_DURATION", default_value_t = 8.0)]
    duration: f64,
    /// The central validation rate of the spec's acceptance criterion.
    #[arg(long, env = "BENCH_CENTRAL_RATE", default_value_t = 5_000.0)]
    central_rate: f64,
    /// Revocations timed by the propagation scenario.
    #[arg(long, env = "BENCH_REVOCATIONS", default_value_t = 50)]
    revocations: usize,
    /// LOG_LEVEL of central and the edges.
    #[arg(long, env = "BENCH_LOG_LEVEL", default_value = "warn")]
    log_level: String,
    /// Keep the bench database afterwards (for a look at it).
    #[arg(long, env = "BENCH_KEEP_DB")]
    keep_db: bool,
    /// Criterion's output directory: put the micro benchmarks found there in the report.
    #[arg(long)]
    micro_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            say!("failed: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Run(args) => {
            let bin_dir = match args.bin_dir {
                Some(dir) => dir,
                None => std::env::current_exe()?
                    .parent()
                    .context("this binary has no directory")?
                    .to_path_buf(),
            };
            let out = args.out.clone();
            let options = harness::Options {
                full: args.full,
                layout: Layout {
                    bin_dir,
                    work_dir: args.work_dir,
                },
                out_dir: args.out,
                database_url: args.database_url,
                redis_url: args.redis_url,
                licenses: args.licenses,
                full_licenses: args.full_licenses,
                connections: args.connections,
                fixed_rate_connections: args.fixed_rate_connections,
                warmup: seconds(args.warmup)?,
                duration: seconds(args.duration)?,
                central_rate: args.central_rate,
                revocations: args.revocations,
                log_level: args.log_level,
                keep_database: args.keep_db,
                micro_dir: args.micro_dir,
            };
            // Interrupted, the run is dropped, and with it every process it started.
            let report = tokio::select! {
                report = harness::run(options) => report?,
                () = interrupted() => anyhow::bail!("interrupted"),
            };
            print(&report.markdown());
            say!(
                "written: {} and latest.json",
                harness::relative(&out.join("latest.md"))
            );
            Ok(())
        }
        Command::Seed {
            database_url,
            product,
            count,
            no_bind,
            ip_offset,
            keys_out,
        } => {
            let summary = seed::seed(
                &database_url,
                &seed::Spec {
                    product_code: product,
                    count,
                    bind_ips: !no_bind,
                    ip_offset,
                },
            )
            .await?;
            if let Some(dir) = keys_out.parent() {
                std::fs::create_dir_all(dir)?;
            }
            seed::write_keys(&keys_out, &summary.licenses)?;
            say!(
                "{count} licenses of product {} seeded in {:.1} s; keys in {}",
                summary.product_id,
                summary.took.as_secs_f64(),
                keys_out.display()
            );
            Ok(())
        }
        Command::Token { role } => {
            print(&token::for_role(&role)?);
            Ok(())
        }
        Command::Load {
            url,
            keys,
            token,
            rate,
            connections,
            warmup,
            duration,
        } => {
            let rest = url
                .strip_prefix("http://")
                .context("only http:// URLs are supported")?;
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let addr = tokio::net::lookup_host(authority)
                .await?
                .next()
                .with_context(|| format!("{authority} does not resolve"))?;
            let path = if path.is_empty() { "/" } else { path };
            let workload = match keys {
                Some(file) => {
                    let pairs: Vec<(String, String)> = seed::read_keys(&file)?
                        .into_iter()
                        .map(|(key, ip)| (key, ip.to_string()))
                        .collect();
                    load::Workload::validations(
                        path,
                        pairs.iter().map(|(key, ip)| (key.as_str(), ip.as_str())),
                    )?
                }
                None => load::Workload::get(path, token.as_deref())?,
            };
            let outcome = load::run(load::Run {
                addr,
                workload,
                pace: rate.map_or(load::Pace::Saturate, load::Pace::Rate),
                connections,
                warmup: seconds(warmup)?,
                duration: seconds(duration)?,
                timeout: Duration::from_secs(10),
            })
            .await?;
            print(&serde_json::to_string_pretty(&outcome)?);
            Ok(())
        }
    }
}

/// SIGINT or SIGTERM.
async fn interrupted() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        () = terminate => {},
    }
}

fn seconds(value: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value).map_err(|_| anyhow::anyhow!("not a duration: {value}"))
}

/// The command's result on stdout.
#[expect(clippy::print_stdout, reason = "a command-line tool's output")]
fn print(text: &str) {
    println!("{text}");
}
