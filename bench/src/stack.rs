//! The processes a benchmark runs, started as they run in production and the way the end-to-end
//! tests start them (`tests/src/lib.rs`): central against its own fresh database, Redis key prefix,
//! replication port and certificate set; edges with their own HTTP ports; and the baseline server.
//! Each is killed when its handle is dropped, so nothing outlives the harness.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// Where the binaries are and where processes keep their logs and certificates.
#[derive(Debug, Clone)]
pub struct Layout {
    /// `target/<dir>/release`: `celaest-central`, `celaest-edge`, `baseline-server`.
    pub bin_dir: PathBuf,
    /// Scratch space of this run (logs, certificates, key files).
    pub work_dir: PathBuf,
}

impl Layout {
    pub fn binary(&self, name: &str) -> anyhow::Result<PathBuf> {
        let path = self.bin_dir.join(name);
        if !path.exists() {
            bail!(
                "{} not found (build it: cargo build --release -p celaest-central -p celaest-edge -p celaest-bench)",
                path.display()
            );
        }
        Ok(path)
    }

    fn log(&self, name: &str) -> PathBuf {
        self.work_dir.join(format!("{name}.log"))
    }
}

/// A running process; killed (and reaped) when dropped.
#[derive(Debug)]
pub struct Process {
    pub name: String,
    child: Child,
    /// Its HTTP address.
    pub addr: SocketAddr,
}

impl Process {
    /// Starts `program args` with `env`, stdout discarded and stderr in the run's log.
    pub fn spawn(
        layout: &Layout,
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(String, String)],
        addr: SocketAddr,
    ) -> anyhow::Result<Self> {
        let log = std::fs::File::create(layout.log(name))?;
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("start {}", program.display()))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            addr,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Waits until `GET path` answers `status`, failing early if the process exits.
    pub async fn wait_for(
        &mut self,
        client: &reqwest::Client,
        path: &str,
        status: u16,
        timeout: Duration,
        poll: Duration,
    ) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let url = self.url(path);
        loop {
            if let Ok(response) = client.get(&url).send().await
                && response.status().as_u16() == status
            {
                return Ok(started.elapsed());
            }
            if let Some(exit) = self.child.try_wait()? {
                bail!("{} exited ({exit}) before {path} answered", self.name);
            }
            if started.elapsed() > timeout {
                bail!(
                    "{}: {path} did not answer {status} within {timeout:?}",
                    self.name
                );
            }
            tokio::time::sleep(poll).await;
        }
    }

    /// Resident memory now and at its peak, in bytes (`VmRSS`, `VmHWM` of /proc/<pid>/status).
    pub fn memory(&self) -> anyhow::Result<Memory> {
        memory_of(self.pid())
    }

    /// Stops the process gracefully (SIGTERM), killing it after `grace`.
    pub fn stop(mut self, grace: Duration) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Dropping kills it.
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    pub rss: u64,
    pub peak_rss: u64,
}

fn memory_of(pid: u32) -> anyhow::Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(name))
            .with_context(|| format!("{name} missing from /proc/{pid}/status"))?;
        let kib: u64 = line
            .split_whitespace()
            .nth(1)
            .context("malformed status line")?
            .parse()?;
        Ok(kib * 1024)
    };
    Ok(Memory {
        rss: field("VmRSS:")?,
        peak_rss: field("VmHWM:")?,
    })
}

/// A free TCP port on loopback.
pub fn free_tcp_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A free UDP port on loopback.
pub fn free_udp_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// `base`'s server with another database name.
pub fn database_named(base: &str, name: &str) -> String {
    let without_query = base.split('?').next().unwrap_or(base);
    let server = without_query
        .rsplit_once('/')
        .map_or(without_query, |(server, _)| server);
    format!("{server}/{name}")
}

/// Central's settings for the bench: its own database, Redis prefix, ports and certificates.
#[derive(Debug, Clone)]
pub struct CentralSettings {
    pub env: Vec<(String, String)>,
    pub http: SocketAddr,
    replication: SocketAddr,
    certs: PathBuf,
}

impl CentralSettings {
    pub fn new(
        database_url: &str,
        redis_url: &str,
        certs: PathBuf,
        log_level: &str,
    ) -> anyhow::Result<Self> {
        let http: SocketAddr = ([127, 0, 0, 1], free_tcp_port()?).into();
        let replication: SocketAddr = ([127, 0, 0, 1], free_udp_port()?).into();
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let cert = |file: &str| certs.join(file).display().to_string();
        let env = [
            ("APP_ENV", "test".to_owned()),
            ("APP_HOST", "127.0.0.1".to_owned()),
            ("APP_PORT", http.port().to_string()),
            ("DATABASE_URL", database_url.to_owned()),
            ("REDIS_URL", redis_url.to_owned()),
            ("REDIS_KEY_PREFIX", format!("bench:{nonce}:")),
            ("LOG_LEVEL", log_level.to_owned()),
            // The limiter still runs (one Redis round trip per request) but refuses nothing:
            // the harness's single admin would otherwise be stopped at 100 requests a minute.
            ("RATE_LIMIT_PER_MIN", "1000000".to_owned()),
            ("SHUTDOWN_GRACE_SECS", "5".to_owned()),
            ("REPLICATION_ADDR", replication.to_string()),
            ("REPLICATION_TLS_CA", cert("ca.pem")),
            ("REPLICATION_TLS_CERT", cert("central.pem")),
            ("REPLICATION_TLS_KEY", cert("central.key")),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        Ok(Self {
            env,
            http,
            replication,
            certs,
        })
    }

    /// Runs a one-shot subcommand (`migrate`, `certs`) to completion.
    pub fn command(&self, layout: &Layout, args: &[&str]) -> anyhow::Result<()> {
        let output = Command::new(layout.binary("celaest-central")?)
            .args(args)
            .envs(self.env.iter().cloned())
            .output()?;
        if !output.status.success() {
            bail!(
                "celaest-central {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    /// The environment of an edge called `id`, fed by this central (or by `central` when given:
    /// an address nothing answers at keeps an edge empty).
    pub fn edge_env(
        &self,
        id: &str,
        http: SocketAddr,
        central: Option<SocketAddr>,
        log_level: &str,
    ) -> Vec<(String, String)> {
        let cert = |file: &str| self.certs.join(file).display().to_string();
        [
            ("APP_ENV", "test".to_owned()),
            ("EDGE_ID", id.to_owned()),
            ("EDGE_REGION", format!("bench-{id}")),
            ("EDGE_HTTP_ADDR", http.to_string()),
            (
                "EDGE_CENTRAL_ADDR",
                central.unwrap_or(self.replication).to_string(),
            ),
            ("EDGE_SERVER_NAME", "localhost".to_owned()),
            ("EDGE_TLS_CA", cert("ca.pem")),
            ("EDGE_TLS_CERT", cert("edge.pem")),
            ("EDGE_TLS_KEY", cert("edge.key")),
            ("LOG_LEVEL", log_level.to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_keep_their_server() {
        assert_eq!(
            database_named("postgres://u:p@127.0.0.1:5432/celaest", "celaest_bench"),
            "postgres://u:p@127.0.0.1:5432/celaest_bench"
        );
        assert_eq!(
            database_named("postgres://u:p@db/celaest?sslmode=disable", "b"),
            "postgres://u:p@db/b"
        );
    }

    #[test]
    fn memory_is_read_from_proc() {
        let memory = memory_of(std::process::id()).unwrap();
        assert!(memory.rss > 0 && memory.peak_rss >= memory.rss);
    }
}
