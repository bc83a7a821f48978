//! The result of a run: every figure, its ratio to the baseline measured in the same run, a
//! verdict per target of the benchmark issue, and the machine it ran on — written as
//! `latest.json` (for tools) and `latest.md` (for people; also printed at the end of a run).

use std::{collections::BTreeMap, fmt::Write as _, path::Path};

use serde::Serialize;

use crate::{load::Latency, load::Outcome, machine::CpuUsage, machine::Machine};

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// `quick` (`make bench`) or `full` (`make bench-full`).
    pub mode: &'static str,
    pub machine: Machine,
    pub settings: Settings,
    pub scenarios: Vec<Scenario>,
    /// The same saturation runs with wrk (closed loop), to check the load generator.
    pub cross_check: Vec<CrossCheck>,
    pub propagation: Option<Propagation>,
    pub edge_memory: Vec<EdgeMemory>,
    /// Criterion medians of the protocol micro benchmarks, when they ran.
    pub micro: Vec<Micro>,
    pub targets: Vec<Target>,
    pub notes: Vec<String>,
    /// How long the whole run took, in seconds.
    pub took_seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Settings {
    pub load_generator: &'static str,
    pub saturation_connections: usize,
    pub fixed_rate_connections: usize,
    pub warmup_seconds: f64,
    pub measured_seconds: f64,
    pub licenses: usize,
    pub log_level: String,
    pub seeding_seconds: f64,
}

/// One load run against one service.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// Stable identifier, e.g. `edge-validate-half`.
    pub id: String,
    pub title: String,
    pub outcome: Outcome,
    /// Throughput over the baseline's at saturation; saturation runs only (`null` at a fixed
    /// rate, where the throughput is the rate asked for).
    pub throughput_vs_baseline: Option<f64>,
    /// p99 over the baseline's p99 at the same pace (when the baseline ran at that pace).
    pub p99_vs_baseline: Option<f64>,
    pub cpu: CpuUsage,
}

#[derive(Debug, Clone, Serialize)]
pub struct CrossCheck {
    pub title: String,
    pub tool: String,
    pub throughput: f64,
    /// Throughput over the same tool's baseline run (`null` when that run failed).
    pub throughput_vs_baseline: Option<f64>,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub non_2xx: u64,
}

/// Time from a revocation request at central until edges answer `LICENSE_REVOKED`.
#[derive(Debug, Clone, Serialize)]
pub struct Propagation {
    pub revocations: usize,
    /// Until each edge answered it.
    pub per_edge_ms: BTreeMap<String, Latency>,
    /// Until the slower of the edges answered it (the target's figure).
    pub all_edges_ms: Latency,
    /// Central's answer to the revocation request itself.
    pub revoke_request_ms: Latency,
    /// How often each edge was asked.
    pub poll_interval_ms: f64,
    pub timed_out: usize,
}

/// An edge's memory and start-up with a given number of licenses.
#[derive(Debug, Clone, Serialize)]
pub struct EdgeMemory {
    pub licenses: usize,
    /// RSS of an edge with no snapshot (central out of reach): the fixed cost of the process.
    pub empty_rss_bytes: u64,
    /// RSS one second after the snapshot was installed.
    pub loaded_rss_bytes: u64,
    /// Peak RSS (`VmHWM`) while it was loading.
    pub peak_rss_bytes: u64,
    /// `(loaded - empty) / licenses`.
    pub bytes_per_license: f64,
    /// Process start until `/health/live` answered.
    pub start_to_live_s: f64,
    /// Process start until `/health/ready` answered (snapshot complete).
    pub start_to_ready_s: f64,
}

/// One criterion benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct Micro {
    /// `group/function`, e.g. `license_key/parse_and_check`.
    pub name: String,
    /// Median time of one iteration, in nanoseconds.
    pub median_ns: f64,
    /// Elements per iteration, when the benchmark declares them (licenses in a snapshot chunk).
    pub elements: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Pass,
    Miss,
    NotRun,
}

impl Verdict {
    pub fn of(pass: bool) -> Self {
        if pass { Self::Pass } else { Self::Miss }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Miss => "MISS",
            Self::NotRun => "NOT RUN",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub target: String,
    pub figure: String,
    pub verdict: Verdict,
}

impl Report {
    pub fn scenario(&self, id: &str) -> Option<&Scenario> {
        self.scenarios.iter().find(|s| s.id == id)
    }

    /// Writes `latest.json` and `latest.md` into `dir`.
    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut json = serde_json::to_string_pretty(self)?;
        json.push('\n');
        std::fs::write(dir.join("latest.json"), json)?;
        std::fs::write(dir.join("latest.md"), self.markdown())?;
        Ok(())
    }

    /// The human-readable report.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(md, "# Benchmark results ({} run)\n", self.mode);
        let _ = writeln!(
            md,
            "{} · {} × {} · {} GiB · Linux {} · {} · commit {} · load average {:.2} at start · {:.0} s\n",
            m.started_at,
            m.cpus,
            m.cpu_model,
            m.memory_gib,
            m.kernel,
            m.rustc,
            m.git_commit,
            m.load_average_at_start,
            self.took_seconds,
        );
        let s = &self.settings;
        let _ = writeln!(
            md,
            "Load: {}; {} connections at saturation, {} at a fixed rate; {} s warm-up + {} s measured per run; {} licenses seeded in {:.1} s; services log at `{}`.\n",
            s.load_generator,
            s.saturation_connections,
            s.fixed_rate_connections,
            s.warmup_seconds,
            s.measured_seconds,
            s.licenses,
            s.seeding_seconds,
            s.log_level,
        );

        md.push_str("## Targets\n\n| Target | Figure | Verdict |\n|---|---|---|\n");
        for t in &self.targets {
            let _ = writeln!(
                md,
                "| {} | {} | **{}** |",
                t.target,
                t.figure,
                t.verdict.label()
            );
        }

        md.push_str("\n## HTTP scenarios\n\nThroughput is answers per second in the measured window; latencies are in milliseconds, corrected for coordinated omission at a fixed rate. *× base* compares the throughput of a saturation run with the baseline's at saturation (a fixed-rate run's throughput is its rate: –), and *p99 × base* its p99 with the baseline's at the same rate.\n\n");
        md.push_str("| Scenario | Pace | Throughput | × base | p50 | p95 | p99 | p99 × base | OK % |\n|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for sc in &self.scenarios {
            let o = &sc.outcome;
            let pace = o.target_rate.map_or_else(
                || format!("saturation ({} conn.)", o.connections),
                |r| format!("{r:.0} req/s"),
            );
            let _ = writeln!(
                md,
                "| {} | {} | {:.0} | {} | {} | {} | {} | {} | {:.1} |",
                sc.title,
                pace,
                o.throughput,
                ratio(sc.throughput_vs_baseline),
                fmt_ms(o.latency_ms.p50),
                fmt_ms(o.latency_ms.p95),
                fmt_ms(o.latency_ms.p99),
                ratio(sc.p99_vs_baseline),
                o.ok_percent(),
            );
        }
        let troubled: Vec<_> = self
            .scenarios
            .iter()
            .filter(|sc| {
                let o = &sc.outcome;
                o.unexpected + o.http_errors + o.failed + o.behind_schedule > 0
            })
            .collect();
        if !troubled.is_empty() {
            md.push_str("\nNot every request was answered as expected:\n\n");
            for sc in troubled {
                let o = &sc.outcome;
                let statuses: Vec<String> = o
                    .error_statuses
                    .iter()
                    .map(|(status, n)| format!("{n}× {status}"))
                    .collect();
                let _ = writeln!(
                    md,
                    "- {}: {} unexpected answers, {} HTTP errors{}, {} failed or timed out, {} never sent (behind schedule when the run ended)",
                    sc.title,
                    o.unexpected,
                    o.http_errors,
                    if statuses.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", statuses.join(", "))
                    },
                    o.failed,
                    o.behind_schedule
                );
            }
        }

        if !self.cross_check.is_empty() {
            md.push_str("\n## Cross-check with another load tool (closed loop)\n\n| Scenario | Tool | Throughput | × base | p50 | p90 | p99 | non-2xx |\n|---|---|---:|---:|---:|---:|---:|---:|\n");
            for c in &self.cross_check {
                let _ = writeln!(
                    md,
                    "| {} | {} | {:.0} | {} | {} | {} | {} | {} |",
                    c.title,
                    c.tool,
                    c.throughput,
                    ratio(c.throughput_vs_baseline),
                    fmt_ms(c.p50_ms),
                    fmt_ms(c.p90_ms),
                    fmt_ms(c.p99_ms),
                    c.non_2xx
                );
            }
        }

        if let Some(p) = &self.propagation {
            let _ = writeln!(
                md,
                "\n## Revocation propagation\n\n{} licenses revoked one after another at central; each edge asked every {:.0} ms until it answered `LICENSE_REVOKED`{}.\n",
                p.revocations,
                p.poll_interval_ms,
                if p.timed_out > 0 {
                    format!(" ({} never did within 10 s)", p.timed_out)
                } else {
                    String::new()
                },
            );
            md.push_str("| Until | p50 | p95 | p99 | max |\n|---|---:|---:|---:|---:|\n");
            let mut row = |name: &str, l: &Latency| {
                let _ = writeln!(
                    md,
                    "| {name} | {} | {} | {} | {} |",
                    fmt_ms(l.p50),
                    fmt_ms(l.p95),
                    fmt_ms(l.p99),
                    fmt_ms(l.max)
                );
            };
            row("central answered the revocation", &p.revoke_request_ms);
            for (edge, l) in &p.per_edge_ms {
                row(&format!("{edge} answered LICENSE_REVOKED"), l);
            }
            row("both edges answered LICENSE_REVOKED", &p.all_edges_ms);
        }

        if !self.edge_memory.is_empty() {
            md.push_str("\n## Edge memory and start-up\n\n| Licenses | RSS empty | RSS loaded | Peak RSS | Bytes per license | Start → live | Start → ready |\n|---:|---:|---:|---:|---:|---:|---:|\n");
            for e in &self.edge_memory {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {:.0} | {:.2} s | {:.2} s |",
                    e.licenses,
                    mib(e.empty_rss_bytes),
                    mib(e.loaded_rss_bytes),
                    mib(e.peak_rss_bytes),
                    e.bytes_per_license,
                    e.start_to_live_s,
                    e.start_to_ready_s
                );
            }
        }

        if !self.micro.is_empty() {
            md.push_str("\n## Micro benchmarks (criterion, median)\n\n| Benchmark | Time | Per element |\n|---|---:|---:|\n");
            for b in &self.micro {
                let per = b
                    .elements
                    .filter(|n| *n > 0)
                    .map_or_else(|| "–".to_owned(), |n| nanos(b.median_ns / n as f64));
                let _ = writeln!(md, "| `{}` | {} | {per} |", b.name, nanos(b.median_ns));
            }
        }

        md.push_str("\n## Where the CPU went (cores, averaged over each run)\n\n| Scenario | Machine | Load generator | Started processes | PostgreSQL + Redis | Everything else |\n|---|---:|---:|---|---:|---:|\n");
        for sc in &self.scenarios {
            let c = &sc.cpu;
            let processes: Vec<String> = c
                .processes
                .iter()
                .filter(|(_, v)| **v >= 0.01)
                .map(|(k, v)| format!("{k} {v:.2}"))
                .collect();
            let _ = writeln!(
                md,
                "| {} | {:.2} | {:.2} | {} | {:.2} | {:.2} |",
                sc.title,
                c.machine,
                c.load_generator,
                processes.join(", "),
                c.data_services,
                c.everything_else
            );
        }

        if !self.notes.is_empty() {
            md.push_str("\n## Notes\n\n");
            for n in &self.notes {
                let _ = writeln!(md, "- {n}");
            }
        }
        md
    }
}

fn fmt_ms(ms: f64) -> String {
    if ms >= 100.0 {
        format!("{ms:.0}")
    } else if ms >= 10.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.3}")
    }
}

/// A ratio to the baseline, or `–` where there is none.
fn ratio(r: Option<f64>) -> String {
    r.map_or_else(|| "–".to_owned(), |r| format!("{r:.2}"))
}

fn nanos(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{ns:.1} ns")
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / 1024.0 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn milliseconds_keep_three_significant_digits_or_so() {
        assert_eq!(fmt_ms(0.1234), "0.123");
        assert_eq!(fmt_ms(12.345), "12.3");
        assert_eq!(fmt_ms(1234.5), "1234");
        assert_eq!(mib(3 * 1024 * 1024), "3.0 MiB");
        assert_eq!(nanos(12.34), "12.3 ns");
        assert_eq!(nanos(1_234.0), "1.23 µs");
        assert_eq!(nanos(2_500_000.0), "2.50 ms");
        assert_eq!(ratio(Some(0.234)), "0.23");
        assert_eq!(ratio(None), "–");
    }
}
