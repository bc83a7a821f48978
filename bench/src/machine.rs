//! The machine a run happened on, and where its CPU went during each scenario.
//!
//! On a shared two-core machine a figure means little without knowing what else ran: each
//! scenario records the CPU time (in cores) of the load generator, of each process the harness
//! started, of PostgreSQL and Redis, and of everything else on the machine (other users).

use std::{collections::BTreeMap, process::Command, time::Instant};

use serde::Serialize;

/// What the run happened on.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
    pub kernel: String,
    pub rustc: String,
    pub git_commit: String,
    /// The 1-minute load average when the run started: above zero, something else was running.
    pub load_average_at_start: f64,
    pub started_at: String,
}

impl Machine {
    pub fn describe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or_else(|| "unknown".to_owned(), |(_, v)| v.trim().to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let mem_kib: f64 = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        let load = std::fs::read_to_string("/proc/loadavg")
            .ok()
            .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok()))
            .unwrap_or(0.0);
        let commit = output("git", &["rev-parse", "--short=12", "HEAD"]);
        let dirty = !output("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
        Self {
            cpus: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model,
            memory_gib: (mem_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .map_or_else(|_| "unknown".to_owned(), |v| v.trim().to_owned()),
            rustc: output("rustc", &["--version"]),
            git_commit: if dirty {
                format!("{commit} (with uncommitted changes)")
            } else {
                commit
            },
            load_average_at_start: load,
            started_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }
}

fn output(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

/// Clock ticks per second of /proc's CPU times.
fn ticks_per_second() -> f64 {
    output("getconf", &["CLK_TCK"]).parse().unwrap_or(100.0)
}

/// CPU ticks of a process (user + system, all threads), from /proc/<pid>/stat.
fn process_ticks(pid: &str) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields count from after it.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Busy and total ticks of the whole machine, from /proc/stat.
fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let values: Vec<u64> = line
        .split_whitespace()
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + values.get(4)?;
    Some((total - idle, total))
}

/// Ticks of every process whose command name is one of `names` (PostgreSQL's backends, Redis).
fn ticks_by_name(names: &[&str]) -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0;
    };
    dir.filter_map(Result::ok)
        .filter_map(|entry| {
            let pid = entry.file_name().to_string_lossy().into_owned();
            pid.bytes().all(|b| b.is_ascii_digit()).then_some(pid)
        })
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| names.iter().any(|n| comm.trim().starts_with(n)))
        })
        .filter_map(|pid| process_ticks(&pid))
        .sum()
}

const DATA_SERVICES: &[&str] = &["postgres", "redis-server"];

/// A reading of the CPU counters; two readings give the usage between them.
#[derive(Debug, Clone)]
pub struct CpuReading {
    at: Instant,
    machine_busy: u64,
    harness: u64,
    data_services: u64,
    processes: BTreeMap<String, u64>,
}

impl CpuReading {
    /// Reads the counters of the harness itself, `processes` (name, pid) and the data services.
    pub fn now(processes: &[(&str, u32)]) -> Self {
        Self {
            at: Instant::now(),
            machine_busy: machine_ticks().map_or(0, |(busy, _)| busy),
            harness: process_ticks("self").unwrap_or(0),
            data_services: ticks_by_name(DATA_SERVICES),
            processes: processes
                .iter()
                .map(|(name, pid)| {
                    (
                        (*name).to_owned(),
                        process_ticks(&pid.to_string()).unwrap_or(0),
                    )
                })
                .collect(),
        }
    }

    /// The usage since `self`, in cores (1.0 = one core busy the whole time).
    pub fn usage_until(&self, later: &CpuReading) -> CpuUsage {
        let seconds = (later.at - self.at).as_secs_f64().max(1e-3);
        let hz = ticks_per_second();
        let cores = |ticks: u64| (ticks as f64 / hz / seconds * 100.0).round() / 100.0;
        let processes: BTreeMap<String, f64> = later
            .processes
            .iter()
            .map(|(name, &ticks)| {
                let before = self.processes.get(name).copied().unwrap_or(ticks);
                (name.clone(), cores(ticks.saturating_sub(before)))
            })
            .collect();
        let machine = cores(later.machine_busy.saturating_sub(self.machine_busy));
        let harness = cores(later.harness.saturating_sub(self.harness));
        let data_services = cores(later.data_services.saturating_sub(self.data_services));
        let ours = harness + data_services + processes.values().sum::<f64>();
        CpuUsage {
            machine,
            load_generator: harness,
            data_services,
            processes,
            everything_else: ((machine - ours).max(0.0) * 100.0).round() / 100.0,
        }
    }
}

/// CPU used during a scenario, in cores.
#[derive(Debug, Clone, Serialize)]
pub struct CpuUsage {
    /// The whole machine.
    pub machine: f64,
    /// This harness (the load generator and its bookkeeping).
    pub load_generator: f64,
    /// PostgreSQL and Redis (all their processes on the machine).
    pub data_services: f64,
    /// Each process the harness started, by name.
    pub processes: BTreeMap<String, f64>,
    /// Other users of the machine (and time the kernel does not charge to a process).
    pub everything_else: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_process_is_charged_with_its_cpu_time() {
        let me = [("me", std::process::id())];
        let before = CpuReading::now(&me);
        // Spin for 300 ms of wall time: a whole core when the machine has one free; a tenth of
        // one leaves room for a machine busy with other work (a build, other tests).
        let spin = Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < std::time::Duration::from_millis(300) {
            for i in 0..10_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            std::hint::black_box(x);
        }
        let usage = before.usage_until(&CpuReading::now(&me));
        assert!(usage.processes["me"] >= 0.1, "{usage:?}");
        // The harness is this process too: the load generator's figure is the same time.
        assert!(usage.load_generator >= 0.1, "{usage:?}");
        assert!(usage.machine >= 0.1, "{usage:?}");
    }
}
