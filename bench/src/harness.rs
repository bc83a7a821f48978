//! The whole benchmark, end to end: a fresh database seeded with licenses, the baseline server,
//! central and two edges started as processes, every scenario of the benchmark issue run with
//! the same load generator, and the report with its ratios and verdicts.
//!
//! Scenario order matters on a shared machine: the baseline runs first and again at each fixed
//! rate used elsewhere, so every figure has a ceiling measured minutes, not hours, away. Between
//! runs the harness waits for the started processes to go quiet (central keeps writing the
//! validation records of a run for a moment after it).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::Context;
use serde_json::{Value, json};

use crate::{
    load::{self, Latency, Outcome, Pace, Workload},
    machine::{CpuReading, CpuUsage, Machine},
    report::{CrossCheck, EdgeMemory, Propagation, Report, Scenario, Settings, Target, Verdict},
    say,
    seed::{self, Seeded},
    stack::{CentralSettings, Layout, Process, database_named, free_tcp_port, free_udp_port},
    token, wrk,
};

const VALIDATE: &str = "/api/licenses/validate";
const LIST: &str = "/api/licenses?page=1&per_page=20";
/// How often an edge is asked whether a revocation arrived.
const POLL_EVERY: Duration = Duration::from_millis(1);
/// Database the bench creates (and drops) next to `DATABASE_URL`'s.
const DATABASE: &str = "celaest_bench";

/// What a run does, from `celaest-bench run`'s options.
#[derive(Debug, Clone)]
pub struct Options {
    /// Adds the million-license runs.
    pub full: bool,
    pub layout: Layout,
    pub out_dir: PathBuf,
    /// The server's URL; the bench database is created beside its database.
    pub database_url: String,
    pub redis_url: String,
    pub licenses: usize,
    pub full_licenses: usize,
    pub connections: usize,
    pub fixed_rate_connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// The spec's central validation rate (5,000 req/s).
    pub central_rate: f64,
    pub revocations: usize,
    pub log_level: String,
    pub keep_database: bool,
    /// Criterion's output directory, when the micro benchmarks ran just before.
    pub micro_dir: Option<PathBuf>,
}

/// Runs the benchmark and writes its report into `out_dir`.
pub async fn run(opts: Options) -> anyhow::Result<Report> {
    let started = Instant::now();
    let machine = Machine::describe();
    std::fs::create_dir_all(&opts.layout.work_dir)?;
    let db_url = database_named(&opts.database_url, DATABASE);
    drop_database(&db_url).await;
    let result = run_on(&opts, machine, &db_url, started).await;
    if !opts.keep_database {
        drop_database(&db_url).await;
    }
    let report = result?;
    report.write(&opts.out_dir)?;
    Ok(report)
}

async fn drop_database(url: &str) {
    use sqlx::migrate::MigrateDatabase;
    if let Ok(true) = sqlx::Postgres::database_exists(url).await
        && let Err(e) = sqlx::Postgres::force_drop_database(url).await
    {
        say!("could not drop the bench database: {e}");
    }
}

/// The processes of a run, by name, for CPU accounting.
struct Running {
    baseline: Process,
    /// The baseline with `--sign`: what signing every answer costs alone.
    baseline_signed: Process,
    central: Process,
    edges: Vec<Process>,
}

impl Running {
    fn pids(&self) -> Vec<(&str, u32)> {
        let mut pids = vec![
            ("baseline", self.baseline.pid()),
            ("baseline-signed", self.baseline_signed.pid()),
            ("central", self.central.pid()),
        ];
        pids.extend(self.edges.iter().map(|e| (e.name.as_str(), e.pid())));
        pids
    }
}

async fn run_on(
    opts: &Options,
    machine: Machine,
    db_url: &str,
    started: Instant,
) -> anyhow::Result<Report> {
    let layout = &opts.layout;
    let certs = layout.work_dir.join("certs");
    let _ = std::fs::remove_dir_all(&certs);
    let central = CentralSettings::new(db_url, &opts.redis_url, certs.clone(), &opts.log_level)?;
    say!("migrating a fresh database ({DATABASE})");
    central.command(layout, &["migrate"])?;
    central.command(layout, &["certs", "--dir", &certs.display().to_string()])?;

    say!("seeding {} licenses, one bound IP each", opts.licenses);
    let seeded = seed::seed(
        db_url,
        &seed::Spec {
            product_code: "BENCH".into(),
            count: opts.licenses,
            bind_ips: true,
            ip_offset: 0,
        },
    )
    .await?;
    say!("seeded in {:.1} s", seeded.took.as_secs_f64());
    let keys_file = layout.work_dir.join("keys.csv");
    seed::write_keys(&keys_file, &seeded.licenses)?;
    // The last licenses are revoked by the propagation scenario; the load never asks for them.
    anyhow::ensure!(
        seeded.licenses.len() > opts.revocations,
        "more revocations than licenses"
    );
    let (loaded, victims) = seeded
        .licenses
        .split_at(seeded.licenses.len() - opts.revocations);

    // reqwest is built without a TLS crypto provider of its own: ring becomes the default.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut running = start_services(opts, &central, &client).await?;
    sanity_check(&client, &running, &loaded[0]).await?;
    let admin = token::admin()?;

    let mut report = Report {
        mode: if opts.full { "full" } else { "quick" },
        machine,
        settings: Settings {
            load_generator: "celaest-bench (hyper HTTP/1.1, keep-alive; closed loop for saturation, open loop with coordinated-omission correction at a fixed rate)",
            saturation_connections: opts.connections,
            fixed_rate_connections: opts.fixed_rate_connections,
            warmup_seconds: opts.warmup.as_secs_f64(),
            measured_seconds: opts.duration.as_secs_f64(),
            licenses: opts.licenses,
            log_level: opts.log_level.clone(),
            seeding_seconds: seeded.took.as_secs_f64(),
        },
        scenarios: Vec::new(),
        cross_check: Vec::new(),
        propagation: None,
        edge_memory: Vec::new(),
        micro: opts
            .micro_dir
            .as_deref()
            .map(crate::micro::read)
            .unwrap_or_default(),
        targets: Vec::new(),
        notes: Vec::new(),
        took_seconds: 0.0,
    };

    let validations = validation_workload(loaded.iter())?;
    let bench = Bench {
        opts,
        running: &running,
    };

    // 1. The ceiling.
    let baseline_addr = running.baseline.addr;
    let edge_addr = running.edges[0].addr;
    let central_addr = running.central.addr;
    let base = bench
        .measure(
            "Baseline POST (ceiling)",
            baseline_addr,
            &validations,
            Pace::Saturate,
        )
        .await?;
    let ceiling = base.outcome.throughput;
    let baseline = base.outcome.clone();
    let mut sheet = Sheet::new(ceiling);
    sheet.push(
        "baseline-saturation",
        "Baseline POST (ceiling)",
        base,
        Some(&baseline),
    );

    // 1b. The ceiling of a server that signs every answer, as central and the edges do.
    let title = "Baseline POST, Ed25519-signed";
    let signed = bench
        .measure(
            title,
            running.baseline_signed.addr,
            &validations,
            Pace::Saturate,
        )
        .await?;
    sheet.push("baseline-signed-saturation", title, signed, Some(&baseline));

    // 2. The edge, at saturation and at half of it, next to the baseline at that same rate.
    let title = "Edge validate (bound IPs)";
    let edge_sat = bench
        .measure(title, edge_addr, &validations, Pace::Saturate)
        .await?;
    let half = (edge_sat.outcome.throughput / 2.0).round().max(1.0);
    sheet.push("edge-validate-saturation", title, edge_sat, Some(&baseline));
    let title = "Edge validate at half its saturation";
    let edge_half = bench
        .measure(title, edge_addr, &validations, Pace::Rate(half))
        .await?;
    let base_half = bench
        .measure(
            "Baseline at the same rate",
            baseline_addr,
            &validations,
            Pace::Rate(half),
        )
        .await?;
    let base_half_outcome = base_half.outcome.clone();
    sheet.push(
        "edge-validate-half",
        title,
        edge_half,
        Some(&base_half_outcome),
    );
    sheet.push(
        "baseline-edge-half",
        "Baseline at the same rate",
        base_half,
        None,
    );

    // 3. Central, at saturation and at the spec's rate (the baseline too at that rate).
    let title = "Central validate (bound IPs)";
    let central_sat = bench
        .measure(title, central_addr, &validations, Pace::Saturate)
        .await?;
    let central_saturation = central_sat.outcome.throughput;
    sheet.push(
        "central-validate-saturation",
        title,
        central_sat,
        Some(&baseline),
    );
    let spec_rate = opts.central_rate;
    let title = format!("Central validate at {spec_rate:.0} req/s");
    let central_spec = bench
        .measure(&title, central_addr, &validations, Pace::Rate(spec_rate))
        .await?;
    let spec_achieved = central_spec.outcome.throughput;
    let spec_ok = central_spec.outcome.ok_percent();
    let base_spec = bench
        .measure(
            "Baseline at the same rate",
            baseline_addr,
            &validations,
            Pace::Rate(spec_rate),
        )
        .await?;
    let base_spec_outcome = base_spec.outcome.clone();
    sheet.push(
        "central-validate-spec-rate",
        &title,
        central_spec,
        Some(&base_spec_outcome),
    );
    sheet.push(
        "baseline-spec-rate",
        "Baseline at the same rate",
        base_spec,
        None,
    );
    if !sustains(spec_achieved, spec_ok, spec_rate) {
        // Central did not keep up with the spec's rate in this run (a closed-loop saturation
        // figure above the rate does not promise it): also show what it does at a rate below its
        // saturation, and say so.
        let sustained = (central_saturation * 0.8).round().max(1.0);
        let title = "Central validate at 80 % of its saturation";
        let measured = bench
            .measure(title, central_addr, &validations, Pace::Rate(sustained))
            .await?;
        report.notes.push(format!(
            "Central did not sustain the spec's {spec_rate:.0} req/s in this run ({spec_achieved:.0} req/s answered, {spec_ok:.1} % OK; its saturation: {central_saturation:.0} req/s): that run measures queueing. At {sustained:.0} req/s (80 % of its saturation) its p95 is {} ms.",
            fmt(measured.outcome.latency_ms.p95),
        ));
        sheet.push("central-validate-sustained", title, measured, None);
    }

    // 4. An authenticated read at central, at saturation and at half of it.
    let reads = Workload::get(LIST, Some(&admin))?;
    let title = "Central GET /api/licenses (admin)";
    let read_sat = bench
        .measure(title, central_addr, &reads, Pace::Saturate)
        .await?;
    let read_rate = (read_sat.outcome.throughput / 2.0).round().max(1.0);
    sheet.push("central-read-saturation", title, read_sat, None);
    let title = "Central GET /api/licenses at half its saturation";
    let read_half = bench
        .measure(title, central_addr, &reads, Pace::Rate(read_rate))
        .await?;
    sheet.push("central-read-half", title, read_half, None);

    // The same saturation runs with wrk, when it is installed.
    match wrk::find() {
        Some(wrk_bin) => {
            // wrk's own ceiling, when its baseline run succeeded: the edge's ratio is to it.
            let mut wrk_ceiling = None;
            for (title, addr, is_baseline) in [
                ("Baseline POST (ceiling)", baseline_addr, true),
                ("Edge validate (bound IPs)", edge_addr, false),
            ] {
                bench.settle().await;
                say!("wrk cross-check: {title}");
                let result = wrk::run(
                    &wrk_bin,
                    &layout.work_dir,
                    &keys_file,
                    addr,
                    opts.connections,
                    opts.warmup + opts.duration,
                )
                .await;
                match result {
                    Ok(r) => {
                        if is_baseline {
                            wrk_ceiling = Some(r.throughput);
                        }
                        report.cross_check.push(CrossCheck {
                            title: title.to_owned(),
                            tool: "wrk -t2".to_owned(),
                            throughput_vs_baseline: wrk_ceiling
                                .map(|ceiling| round2(r.throughput / ceiling.max(1.0))),
                            throughput: r.throughput,
                            p50_ms: r.p50_ms,
                            p90_ms: r.p90_ms,
                            p99_ms: r.p99_ms,
                            non_2xx: r.non_2xx,
                        });
                    }
                    Err(e) => report
                        .notes
                        .push(format!("wrk cross-check of {title} failed: {e:#}")),
                }
            }
        }
        None => report.notes.push(
            "wrk is not installed: no cross-check with a second load tool (bench/run.sh installs it with apt-get when it can).".to_owned(),
        ),
    }

    // 5. Revocations reaching both edges.
    bench.settle().await;
    say!("propagation: revoking {} licenses", victims.len());
    let edges: Vec<(String, String)> = running
        .edges
        .iter()
        .map(|e| (e.name.clone(), e.url(VALIDATE)))
        .collect();
    report.propagation =
        Some(propagation(&client, &running.central.url(""), &admin, &edges, victims).await?);

    // 6. Edge memory and start-up.
    bench.settle().await;
    say!("edge memory and start-up with {} licenses", opts.licenses);
    let (memory, edge) =
        edge_memory(layout, &central, &client, &opts.log_level, opts.licenses).await?;
    edge.stop(Duration::from_secs(5));
    report.edge_memory.push(memory);

    if opts.full {
        let more = opts.full_licenses.saturating_sub(opts.licenses);
        say!(
            "seeding {more} more licenses ({} in all)",
            opts.full_licenses
        );
        let extra = seed::seed(
            db_url,
            &seed::Spec {
                product_code: "BENCHM".into(),
                count: more,
                bind_ips: true,
                ip_offset: u32::try_from(opts.licenses)?,
            },
        )
        .await?;
        say!("seeded in {:.1} s", extra.took.as_secs_f64());
        report.notes.push(format!(
            "{more} more licenses seeded in {:.1} s for the million-license runs.",
            extra.took.as_secs_f64()
        ));
        bench.settle().await;
        say!(
            "edge memory and start-up with {} licenses",
            opts.full_licenses
        );
        let (memory, big_edge) = edge_memory(
            layout,
            &central,
            &client,
            &opts.log_level,
            opts.full_licenses,
        )
        .await?;
        report.edge_memory.push(memory);
        // Validation from an edge holding a million licenses: a sample of keys spread over all.
        let big = validation_workload(loaded.iter().chain(&extra.licenses).step_by(10))?;
        running.edges.push(big_edge);
        let bench = Bench {
            opts,
            running: &running,
        };
        let title = format!("Edge validate, {} licenses in memory", opts.full_licenses);
        let measured = bench
            .measure(&title, running.edges[2].addr, &big, Pace::Saturate)
            .await?;
        sheet.push(
            "edge-full-validate-saturation",
            &title,
            measured,
            Some(&baseline),
        );
    }

    report.scenarios = sheet.scenarios;
    report.targets = targets(&report, opts.central_rate);
    report.notes.extend(standing_notes(opts));
    report.took_seconds = started.elapsed().as_secs_f64();
    for process in running.edges.drain(..) {
        process.stop(Duration::from_secs(5));
    }
    running.central.stop(Duration::from_secs(10));
    drop(running.baseline);
    drop(running.baseline_signed);
    Ok(report)
}

/// Validations of `licenses`, each from its bound IP.
fn validation_workload<'a>(licenses: impl Iterator<Item = &'a Seeded>) -> anyhow::Result<Workload> {
    let pairs: Vec<(&str, String)> = licenses
        .map(|l| (l.key.as_str(), l.ip.to_string()))
        .collect();
    Workload::validations(VALIDATE, pairs.iter().map(|(k, ip)| (*k, ip.as_str())))
}

async fn start_services(
    opts: &Options,
    central: &CentralSettings,
    client: &reqwest::Client,
) -> anyhow::Result<Running> {
    let layout = &opts.layout;
    let baseline_addr: SocketAddr = ([127, 0, 0, 1], free_tcp_port()?).into();
    let mut baseline = Process::spawn(
        layout,
        "baseline",
        &layout.binary("baseline-server")?,
        &[&baseline_addr.to_string()],
        &[],
        baseline_addr,
    )?;
    let signed_addr: SocketAddr = ([127, 0, 0, 1], free_tcp_port()?).into();
    let mut baseline_signed = Process::spawn(
        layout,
        "baseline-signed",
        &layout.binary("baseline-server")?,
        &[&signed_addr.to_string(), "--sign"],
        &[],
        signed_addr,
    )?;
    // They only have the POST route: a GET answered 405 means one is up.
    for process in [&mut baseline, &mut baseline_signed] {
        process
            .wait_for(client, VALIDATE, 405, Duration::from_secs(30), POLL)
            .await?;
    }
    say!("starting central and two edges");
    let mut central_process = Process::spawn(
        layout,
        "central",
        &layout.binary("celaest-central")?,
        &["serve"],
        &central.env,
        central.http,
    )?;
    central_process
        .wait_for(client, "/health/ready", 200, Duration::from_secs(60), POLL)
        .await?;
    let mut edges = Vec::new();
    for id in ["edge-1", "edge-2"] {
        let addr: SocketAddr = ([127, 0, 0, 1], free_tcp_port()?).into();
        let mut edge = Process::spawn(
            layout,
            id,
            &layout.binary("celaest-edge")?,
            &[],
            &central.edge_env(id, addr, None, &opts.log_level),
            addr,
        )?;
        edge.wait_for(client, "/health/ready", 200, Duration::from_secs(120), POLL)
            .await?;
        edges.push(edge);
    }
    Ok(Running {
        baseline,
        baseline_signed,
        central: central_process,
        edges,
    })
}

const POLL: Duration = Duration::from_millis(50);

/// One seeded license answers `VALID` at every service before anything is measured.
async fn sanity_check(
    client: &reqwest::Client,
    running: &Running,
    license: &Seeded,
) -> anyhow::Result<()> {
    for process in std::iter::once(&running.central).chain(&running.edges) {
        let code = validation_code(client, &process.url(VALIDATE), license).await?;
        anyhow::ensure!(
            code == "VALID",
            "{} answered {code} for a seeded license from its bound IP; nothing was measured",
            process.name
        );
    }
    Ok(())
}

/// `data.code` of a validation of `license` from its bound IP at `url`.
async fn validation_code(
    client: &reqwest::Client,
    url: &str,
    license: &Seeded,
) -> anyhow::Result<String> {
    let ip = license.ip.to_string();
    let answer: Value = client
        .post(url)
        .header("x-forwarded-for", &ip)
        .json(
            &json!({"license_key": license.key, "ip_address": ip, "device_info": "celaest-bench"}),
        )
        .send()
        .await?
        .json()
        .await?;
    answer["data"]["code"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no data.code in the answer of {url}: {answer}"))
}

/// Runs load scenarios and keeps the CPU usage of the last one.
struct Bench<'a> {
    opts: &'a Options,
    running: &'a Running,
}

impl Bench<'_> {
    async fn measure(
        &self,
        title: &str,
        addr: SocketAddr,
        workload: &Workload,
        pace: Pace,
    ) -> anyhow::Result<Measured> {
        self.settle().await;
        let connections = match pace {
            Pace::Saturate => self.opts.connections,
            Pace::Rate(_) => self.opts.fixed_rate_connections,
        };
        match pace {
            Pace::Saturate => say!("{title}: saturation ({connections} connections)"),
            Pace::Rate(r) => say!("{title}: {r:.0} req/s ({connections} connections)"),
        }
        let pids = self.running.pids();
        // CPU is read over the measured window only, not the warm-up.
        let run = load::Run {
            addr,
            workload: workload.clone(),
            pace,
            connections,
            warmup: self.opts.warmup,
            duration: self.opts.duration,
            timeout: Duration::from_secs(10),
        };
        let warmup = self.opts.warmup;
        let duration = self.opts.duration;
        let reader = tokio::spawn({
            let pids: Vec<(String, u32)> =
                pids.iter().map(|(n, p)| ((*n).to_owned(), *p)).collect();
            async move {
                tokio::time::sleep(warmup).await;
                let named: Vec<(&str, u32)> = pids.iter().map(|(n, p)| (n.as_str(), *p)).collect();
                let before = CpuReading::now(&named);
                tokio::time::sleep(duration).await;
                before.usage_until(&CpuReading::now(&named))
            }
        });
        let outcome = load::run(run)
            .await
            .with_context(|| format!("scenario {title:?}"))?;
        let cpu = reader.await.context("cpu reader")?;
        say!(
            "  {:.0} req/s, p50 {} ms, p95 {} ms, p99 {} ms, {:.1} % ok",
            outcome.throughput,
            fmt(outcome.latency_ms.p50),
            fmt(outcome.latency_ms.p95),
            fmt(outcome.latency_ms.p99),
            outcome.ok_percent()
        );
        Ok(Measured { outcome, cpu })
    }

    /// Waits (at most about twenty seconds) until the started processes and the data services
    /// are idle: central goes on storing the validation records of a run for seconds after it.
    async fn settle(&self) {
        let pids = self.running.pids();
        for _ in 0..66 {
            let before = CpuReading::now(&pids);
            tokio::time::sleep(Duration::from_millis(300)).await;
            let usage = before.usage_until(&CpuReading::now(&pids));
            let busy = usage.data_services + usage.processes.values().sum::<f64>();
            if busy < 0.15 {
                return;
            }
        }
    }
}

/// A load run's outcome and the CPU it took.
#[derive(Debug, Clone)]
struct Measured {
    outcome: Outcome,
    cpu: CpuUsage,
}

/// The scenarios of a report, with the ceiling their throughput is compared to.
struct Sheet {
    ceiling: f64,
    scenarios: Vec<Scenario>,
}

impl Sheet {
    fn new(ceiling: f64) -> Self {
        Self {
            ceiling,
            scenarios: Vec::new(),
        }
    }

    fn push(
        &mut self,
        id: &str,
        title: &str,
        measured: Measured,
        baseline_at_same_pace: Option<&Outcome>,
    ) {
        self.scenarios.push(scenario(
            id,
            title,
            measured,
            self.ceiling,
            baseline_at_same_pace,
        ));
    }
}

fn scenario(
    id: &str,
    title: &str,
    measured: Measured,
    ceiling: f64,
    baseline_at_same_pace: Option<&Outcome>,
) -> Scenario {
    let Measured { outcome, cpu } = measured;
    let p99_vs_baseline = baseline_at_same_pace
        .filter(|b| b.latency_ms.p99 > 0.0)
        .map(|b| round2(outcome.latency_ms.p99 / b.latency_ms.p99));
    // At a fixed rate the throughput is the rate (or less): over the ceiling it says nothing.
    let throughput_vs_baseline = outcome
        .target_rate
        .is_none()
        .then(|| round2(outcome.throughput / ceiling.max(1.0)));
    Scenario {
        id: id.to_owned(),
        title: title.to_owned(),
        throughput_vs_baseline,
        outcome,
        p99_vs_baseline,
        cpu,
    }
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn fmt(ms: f64) -> String {
    format!("{ms:.3}")
}

/// Revokes each of `victims` at central and times until every edge answers `LICENSE_REVOKED`.
async fn propagation(
    client: &reqwest::Client,
    central: &str,
    admin: &str,
    edges: &[(String, String)],
    victims: &[Seeded],
) -> anyhow::Result<Propagation> {
    let mut per_edge: Vec<Vec<u64>> = vec![Vec::new(); edges.len()];
    let mut all = Vec::new();
    let mut revoke_calls = Vec::new();
    let mut timed_out = 0;
    for victim in victims {
        for (name, url) in edges {
            let code = validation_code(client, url, victim).await?;
            anyhow::ensure!(
                code == "VALID",
                "{name} answered {code} before the revocation"
            );
        }
        let started = Instant::now();
        let pollers: Vec<_> = edges
            .iter()
            .map(|(_, url)| {
                let (client, url, victim) = (client.clone(), url.clone(), victim.clone());
                tokio::spawn(async move { until_revoked(&client, &url, &victim, started).await })
            })
            .collect();
        let response = client
            .post(format!("{central}/api/licenses/{}/revoke", victim.id))
            .bearer_auth(admin)
            .json(&json!({"reason": "celaest-bench propagation"}))
            .send()
            .await?;
        revoke_calls.push(nanos(started.elapsed()));
        anyhow::ensure!(
            response.status().is_success(),
            "revoke answered {}: {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        let mut slowest = Duration::ZERO;
        for (i, poller) in pollers.into_iter().enumerate() {
            match poller.await.context("poller")? {
                Some(took) => {
                    per_edge[i].push(nanos(took));
                    slowest = slowest.max(took);
                }
                None => {
                    timed_out += 1;
                    slowest = Duration::from_secs(10);
                }
            }
        }
        all.push(nanos(slowest));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(Propagation {
        revocations: victims.len(),
        per_edge_ms: edges
            .iter()
            .zip(per_edge.iter_mut())
            .map(|((name, _), samples)| (name.clone(), Latency::from_nanos(samples)))
            .collect(),
        all_edges_ms: Latency::from_nanos(&mut all),
        revoke_request_ms: Latency::from_nanos(&mut revoke_calls),
        poll_interval_ms: POLL_EVERY.as_secs_f64() * 1000.0,
        timed_out,
    })
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// Asks `url` about `license` until it answers `LICENSE_REVOKED` (`None` after ten seconds).
async fn until_revoked(
    client: &reqwest::Client,
    url: &str,
    license: &Seeded,
    since: Instant,
) -> Option<Duration> {
    while since.elapsed() < Duration::from_secs(10) {
        if let Ok(code) = validation_code(client, url, license).await
            && code == "LICENSE_REVOKED"
        {
            return Some(since.elapsed());
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
    None
}

/// An edge's resident memory without and with central's licenses, and its time to ready.
/// Returns the loaded edge, still running.
async fn edge_memory(
    layout: &Layout,
    central: &CentralSettings,
    client: &reqwest::Client,
    log_level: &str,
    licenses: usize,
) -> anyhow::Result<(EdgeMemory, Process)> {
    let binary = layout.binary("celaest-edge")?;
    // An edge whose central never answers: everything but the licenses.
    let nowhere: SocketAddr = ([127, 0, 0, 1], free_udp_port()?).into();
    let addr: SocketAddr = ([127, 0, 0, 1], free_tcp_port()?).into();
    let name = format!("edge-empty-{licenses}");
    let mut empty = Process::spawn(
        layout,
        &name,
        &binary,
        &[],
        &central.edge_env(&name, addr, Some(nowhere), log_level),
        addr,
    )?;
    empty
        .wait_for(client, "/health/live", 200, Duration::from_secs(30), POLL)
        .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let empty_memory = empty.memory()?;
    empty.stop(Duration::from_secs(2));

    let addr: SocketAddr = ([127, 0, 0, 1], free_tcp_port()?).into();
    let name = format!("edge-{licenses}");
    let started = Instant::now();
    let mut edge = Process::spawn(
        layout,
        &name,
        &binary,
        &[],
        &central.edge_env(&name, addr, None, log_level),
        addr,
    )?;
    let fine = Duration::from_millis(5);
    edge.wait_for(client, "/health/live", 200, Duration::from_secs(30), fine)
        .await?;
    let live = started.elapsed();
    edge.wait_for(client, "/health/ready", 200, Duration::from_secs(300), fine)
        .await?;
    let ready = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let loaded = edge.memory()?;
    let health: Value = client.get(edge.url("/health")).send().await?.json().await?;
    let held = health["data"]["licenses"]
        .as_u64()
        .context("the edge's /health has no licenses count")?;
    let held = usize::try_from(held)?;
    anyhow::ensure!(
        held >= licenses,
        "the edge holds {held} licenses, {licenses} were seeded"
    );
    let grown = loaded.rss.saturating_sub(empty_memory.rss);
    Ok((
        EdgeMemory {
            licenses: held,
            empty_rss_bytes: empty_memory.rss,
            loaded_rss_bytes: loaded.rss,
            peak_rss_bytes: loaded.peak_rss,
            bytes_per_license: grown as f64 / held.max(1) as f64,
            start_to_live_s: live.as_secs_f64(),
            start_to_ready_s: ready.as_secs_f64(),
        },
        edge,
    ))
}

/// Whether a fixed-rate run kept up with `rate`: at least 95 % of it answered, 99 % of them OK.
fn sustains(throughput: f64, ok_percent: f64, rate: f64) -> bool {
    throughput >= 0.95 * rate && ok_percent >= 99.0
}

/// A verdict per target of the benchmark issue; `central_rate` is the spec's central validation
/// rate (5,000 req/s).
fn targets(report: &Report, central_rate: f64) -> Vec<Target> {
    let mut targets = Vec::new();
    let get = |id: &str| report.scenario(id).map(|s| &s.outcome);
    if let (Some(base), Some(edge)) = (get("baseline-saturation"), get("edge-validate-saturation"))
    {
        let ratio = edge.throughput / base.throughput.max(1.0);
        let signing = get("baseline-signed-saturation").map_or_else(String::new, |signed| {
            format!(
                " (a baseline signing its answers too: {:.0} req/s, the edge {:.2} × of it)",
                signed.throughput,
                edge.throughput / signed.throughput.max(1.0)
            )
        });
        targets.push(Target {
            target: "Edge validation throughput ≥ 0.8 × baseline".into(),
            figure: format!(
                "{:.0} vs {:.0} req/s = {ratio:.2} ×{signing}",
                edge.throughput, base.throughput
            ),
            verdict: Verdict::of(ratio >= 0.8 && edge.ok_percent() >= 99.0),
        });
    }
    if let Some(half) = get("edge-validate-half") {
        let rate = half.target_rate.unwrap_or(0.0);
        let baseline = get("baseline-edge-half").map_or_else(String::new, |b| {
            format!("; the baseline's {} ms", fmt(b.latency_ms.p99))
        });
        targets.push(Target {
            target: "Edge p99 ≤ 1 ms at half its saturation rate".into(),
            figure: format!(
                "p99 {} ms at {rate:.0} req/s ({:.0} achieved{baseline})",
                fmt(half.latency_ms.p99),
                half.throughput
            ),
            verdict: Verdict::of(half.latency_ms.p99 <= 1.0 && half.ok_percent() >= 99.0),
        });
    }
    if let Some(spec) = get("central-validate-spec-rate") {
        let sustained = sustains(spec.throughput, spec.ok_percent(), central_rate);
        targets.push(Target {
            target: format!(
                "Central validation p95 < 100 ms at {central_rate:.0} req/s (aim ≤ 20 ms)"
            ),
            figure: format!(
                "p95 {} ms, {:.0} req/s achieved{}",
                fmt(spec.latency_ms.p95),
                spec.throughput,
                if sustained {
                    String::new()
                } else {
                    format!(" (rate not sustained: {:.1} % OK)", spec.ok_percent())
                }
            ),
            verdict: Verdict::of(spec.latency_ms.p95 < 100.0 && sustained),
        });
    }
    if let Some(p) = &report.propagation {
        targets.push(Target {
            target: "Revocation reaches both edges ≤ 100 ms p99 (loopback)".into(),
            figure: format!(
                "p99 {} ms, p50 {} ms over {} revocations",
                fmt(p.all_edges_ms.p99),
                fmt(p.all_edges_ms.p50),
                p.revocations
            ),
            verdict: Verdict::of(p.all_edges_ms.p99 <= 100.0 && p.timed_out == 0),
        });
    }
    if let Some(m) = report.edge_memory.iter().max_by_key(|m| m.licenses) {
        targets.push(Target {
            target: "Edge memory ≤ 200 bytes per license".into(),
            figure: format!(
                "{:.0} bytes per license with {} licenses",
                m.bytes_per_license, m.licenses
            ),
            verdict: Verdict::of(m.bytes_per_license <= 200.0),
        });
    }
    let million = report.edge_memory.iter().find(|m| m.licenses >= 1_000_000);
    targets.push(match million {
        Some(m) => Target {
            target: "1,000,000 licenses ready ≤ 5 s after connect".into(),
            figure: format!(
                "{:.2} s from process start ({:.2} s after it was live)",
                m.start_to_ready_s,
                m.start_to_ready_s - m.start_to_live_s
            ),
            verdict: Verdict::of(m.start_to_ready_s <= 5.0),
        },
        None => Target {
            target: "1,000,000 licenses ready ≤ 5 s after connect".into(),
            figure: report.edge_memory.first().map_or_else(
                || "not measured".to_owned(),
                |m| {
                    format!(
                        "`make bench-full` measures it; {} licenses were ready {:.2} s after start",
                        m.licenses, m.start_to_ready_s
                    )
                },
            ),
            verdict: Verdict::NotRun,
        },
    });
    targets
}

fn standing_notes(opts: &Options) -> Vec<String> {
    vec![
        "Every process (services, PostgreSQL, Redis and the load generator) shares this machine's cores; on a two-core machine shared with other work the absolute figures move from run to run — read the ratios, and the CPU table for what else ran.".to_owned(),
        "Requests spread over every seeded license, each from its own bound client IP (sent as X-Forwarded-For, which both services believe from loopback), so validations take the already-bound path: no bind, no write on the request path.".to_owned(),
        "While an edge is under load it reports every validation to central, which writes them to PostgreSQL on the same machine: the edge figures include that cost to the machine.".to_owned(),
        format!(
            "Central runs `serve` with RATE_LIMIT_PER_MIN=1000000: the limiter still costs its Redis round trip per request but refuses nothing. Services log at `{}`.",
            opts.log_level
        ),
        "Propagation is timed from the revocation request leaving the harness until an edge answers LICENSE_REVOKED; each edge is asked about every millisecond, so figures carry about a millisecond of polling grain.".to_owned(),
        "Edge memory is the RSS of an edge one second after its snapshot minus the RSS of the same binary with no snapshot (central unreachable), divided by the licenses it holds.".to_owned(),
    ]
}

/// `path` relative to the current directory when it is below it.
pub fn relative(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const SPEC_RATE: f64 = 5_000.0;

    fn no_cpu() -> CpuUsage {
        CpuUsage {
            machine: 0.0,
            load_generator: 0.0,
            data_services: 0.0,
            processes: BTreeMap::new(),
            everything_else: 0.0,
        }
    }

    /// A run with every request answered as expected.
    fn outcome(target_rate: Option<f64>, throughput: f64, p95: f64, p99: f64) -> Outcome {
        Outcome {
            pace: if target_rate.is_some() {
                "fixed"
            } else {
                "saturation"
            },
            target_rate,
            connections: 32,
            seconds: 8.0,
            throughput,
            measured: 1_000,
            ok: 1_000,
            unexpected: 0,
            http_errors: 0,
            error_statuses: BTreeMap::new(),
            failed: 0,
            behind_schedule: 0,
            latency_ms: Latency {
                p50: p95 / 2.0,
                p95,
                p99,
                p999: p99,
                max: p99,
                mean: p95 / 2.0,
            },
        }
    }

    fn saturation(throughput: f64) -> Outcome {
        outcome(None, throughput, 1.0, 2.0)
    }

    fn memory(licenses: usize, bytes_per_license: f64, start_to_ready_s: f64) -> EdgeMemory {
        EdgeMemory {
            licenses,
            empty_rss_bytes: 8 << 20,
            loaded_rss_bytes: 8 << 20,
            peak_rss_bytes: 8 << 20,
            bytes_per_license,
            start_to_live_s: 0.1,
            start_to_ready_s,
        }
    }

    fn report(runs: Vec<(&str, Outcome)>, edge_memory: Vec<EdgeMemory>) -> Report {
        Report {
            mode: "quick",
            machine: Machine {
                cpus: 2,
                cpu_model: "test".into(),
                memory_gib: 1.0,
                kernel: "test".into(),
                rustc: "test".into(),
                git_commit: "test".into(),
                load_average_at_start: 0.0,
                started_at: "2026-01-01T00:00:00Z".into(),
            },
            settings: Settings {
                load_generator: "test",
                saturation_connections: 32,
                fixed_rate_connections: 128,
                warmup_seconds: 0.0,
                measured_seconds: 8.0,
                licenses: 100_000,
                log_level: "warn".into(),
                seeding_seconds: 0.0,
            },
            scenarios: runs
                .into_iter()
                .map(|(id, outcome)| {
                    scenario(
                        id,
                        id,
                        Measured {
                            outcome,
                            cpu: no_cpu(),
                        },
                        1_000.0,
                        None,
                    )
                })
                .collect(),
            cross_check: Vec::new(),
            propagation: None,
            edge_memory,
            micro: Vec::new(),
            targets: Vec::new(),
            notes: Vec::new(),
            took_seconds: 0.0,
        }
    }

    /// The verdict of the target whose name starts with `name`.
    fn verdict(report: &Report, name: &str) -> Verdict {
        let targets = targets(report, SPEC_RATE);
        let target = targets.iter().find(|t| t.target.starts_with(name));
        target
            .map(|t| t.verdict)
            .unwrap_or_else(|| panic!("no target {name:?}"))
    }

    #[test]
    fn edge_throughput_passes_from_eight_tenths_of_the_baseline() {
        let at = |edge: f64| {
            let runs = vec![
                ("baseline-saturation", saturation(1_000.0)),
                ("edge-validate-saturation", saturation(edge)),
            ];
            verdict(&report(runs, Vec::new()), "Edge validation throughput")
        };
        assert_eq!(at(790.0), Verdict::Miss);
        assert_eq!(at(800.0), Verdict::Pass);
    }

    #[test]
    fn edge_p99_at_half_rate_passes_up_to_one_millisecond() {
        let at = |p99: f64| {
            let half = outcome(Some(400.0), 400.0, 0.5, p99);
            verdict(
                &report(vec![("edge-validate-half", half)], Vec::new()),
                "Edge p99",
            )
        };
        assert_eq!(at(1.0), Verdict::Pass);
        assert_eq!(at(1.01), Verdict::Miss);
    }

    #[test]
    fn central_passes_only_when_it_sustains_the_spec_rate() {
        let at = |spec: Outcome| {
            verdict(
                &report(vec![("central-validate-spec-rate", spec)], Vec::new()),
                "Central validation p95",
            )
        };
        assert_eq!(
            at(outcome(Some(SPEC_RATE), 4_750.0, 99.0, 150.0)),
            Verdict::Pass
        );
        assert_eq!(
            at(outcome(Some(SPEC_RATE), 4_749.0, 9.0, 15.0)),
            Verdict::Miss,
            "under 95 % of the rate answered"
        );
        assert_eq!(
            at(outcome(Some(SPEC_RATE), 5_000.0, 100.0, 150.0)),
            Verdict::Miss
        );
        let mut failing = outcome(Some(SPEC_RATE), 5_000.0, 9.0, 15.0);
        failing.ok = 980;
        failing.http_errors = 20;
        assert_eq!(at(failing), Verdict::Miss, "2 % of the answers were errors");
    }

    #[test]
    fn memory_passes_up_to_two_hundred_bytes_and_a_quick_run_does_not_judge_the_million() {
        let quick = report(Vec::new(), vec![memory(100_000, 200.0, 0.4)]);
        assert_eq!(verdict(&quick, "Edge memory"), Verdict::Pass);
        assert_eq!(verdict(&quick, "1,000,000 licenses ready"), Verdict::NotRun);
        let over = report(Vec::new(), vec![memory(100_000, 200.5, 0.4)]);
        assert_eq!(verdict(&over, "Edge memory"), Verdict::Miss);
        let full = report(
            Vec::new(),
            vec![memory(100_000, 180.0, 0.4), memory(1_000_000, 150.0, 4.9)],
        );
        assert_eq!(verdict(&full, "1,000,000 licenses ready"), Verdict::Pass);
    }

    #[test]
    fn only_saturation_runs_have_a_throughput_ratio() {
        let measured = |outcome| Measured {
            outcome,
            cpu: no_cpu(),
        };
        let sat = scenario("s", "s", measured(saturation(250.0)), 1_000.0, None);
        assert_eq!(sat.throughput_vs_baseline, Some(0.25));
        let fixed = outcome(Some(500.0), 500.0, 1.0, 2.0);
        let fixed = scenario("f", "f", measured(fixed), 1_000.0, None);
        assert_eq!(fixed.throughput_vs_baseline, None);
    }

    #[test]
    fn a_spec_rate_run_is_sustained_from_95_percent_answered_and_99_percent_ok() {
        assert!(sustains(4_750.0, 99.0, SPEC_RATE));
        assert!(!sustains(4_749.0, 100.0, SPEC_RATE));
        assert!(!sustains(5_000.0, 98.9, SPEC_RATE));
    }
}
