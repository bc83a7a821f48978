//! Helpers for end-to-end tests: run the real `celaest-central` binary as a process, against a
//! fresh PostgreSQL database and its own Redis key prefix, and talk HTTP to it.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

/// The base database URL tests create their own databases next to.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/celaest".into())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A workspace binary built by cargo (`target/<profile>/<name>`), located from this test's own
/// executable (`target/<profile>/deps/<test>`), or from `CELAEST_BIN_DIR` when set.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let dir = match std::env::var_os("CELAEST_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let exe = std::env::current_exe()?;
            exe.parent()
                .and_then(|deps| deps.parent())
                .context("test executable has no target dir")?
                .to_path_buf()
        }
    };
    let path = dir.join(name);
    if !path.exists() {
        bail!(
            "{} not found; build it first (cargo build -p celaest-central)",
            path.display()
        );
    }
    Ok(path)
}

/// A free TCP port on loopback.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A free UDP port on loopback.
pub fn free_udp_port() -> anyhow::Result<u16> {
    Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A database URL for a new, uniquely named database on the test server.
pub fn fresh_database_url(label: &str) -> String {
    let base = database_url();
    let (server, _) = base.rsplit_once('/').unwrap_or((&base, ""));
    let nonce = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{server}/e2e_{label}_{}_{nonce}", std::process::id())
}

/// A running `celaest-central` process; killed when dropped.
pub struct CentralProcess {
    pub child: Child,
    pub base_url: String,
    pub env: Vec<(String, String)>,
}

impl CentralProcess {
    /// The environment a central process needs to run against `database_url`.
    pub fn env_for(database_url: &str, port: u16) -> Vec<(String, String)> {
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let certs =
            std::env::temp_dir().join(format!("celaest-e2e-certs-{}-{nonce}", std::process::id()));
        let replication_port = free_udp_port().unwrap_or(0);
        vec![
            ("APP_ENV".into(), "test".into()),
            ("APP_HOST".into(), "127.0.0.1".into()),
            ("APP_PORT".into(), port.to_string()),
            ("DATABASE_URL".into(), database_url.into()),
            ("DATABASE_MAX_CONNS".into(), "5".into()),
            ("REDIS_URL".into(), redis_url()),
            ("REDIS_KEY_PREFIX".into(), format!("e2e:{nonce}:")),
            ("LOG_LEVEL".into(), "info".into()),
            ("SHUTDOWN_GRACE_SECS".into(), "10".into()),
            // Its own replication port and certificate set (made by `celaest-central certs`).
            (
                "REPLICATION_ADDR".into(),
                format!("127.0.0.1:{replication_port}"),
            ),
            (
                "REPLICATION_TLS_CA".into(),
                certs.join("ca.pem").display().to_string(),
            ),
            (
                "REPLICATION_TLS_CERT".into(),
                certs.join("central.pem").display().to_string(),
            ),
            (
                "REPLICATION_TLS_KEY".into(),
                certs.join("central.key").display().to_string(),
            ),
            ("CERTS_DIR".into(), certs.display().to_string()),
        ]
    }

    /// Runs a one-shot subcommand (`migrate`, `seed`) to completion, returning its output.
    pub fn run_command(
        env: &[(String, String)],
        args: &[&str],
    ) -> anyhow::Result<std::process::Output> {
        let output = Command::new(binary("celaest-central")?)
            .args(args)
            .envs(env.iter().cloned())
            .output()?;
        Ok(output)
    }

    /// Starts `celaest-central serve` with `args` and waits until `/health/live` answers; the
    /// replication certificates are created first when missing.
    pub async fn start(env: Vec<(String, String)>, args: &[&str]) -> anyhow::Result<Self> {
        if let Some((_, dir)) = env.iter().find(|(k, _)| k == "CERTS_DIR")
            && !std::path::Path::new(dir).join("ca.pem").exists()
        {
            let made = Self::run_command(&env, &["certs", "--dir", dir])?;
            anyhow::ensure!(
                made.status.success(),
                "certs: {}",
                String::from_utf8_lossy(&made.stderr)
            );
        }
        let port = env
            .iter()
            .find(|(k, _)| k == "APP_PORT")
            .map(|(_, v)| v.clone())
            .context("APP_PORT missing")?;
        let child = Command::new(binary("celaest-central")?)
            .args(args)
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let process = Self {
            child,
            base_url: format!("http://127.0.0.1:{port}"),
            env,
        };
        process.wait_until_live(Duration::from_secs(30)).await?;
        Ok(process)
    }

    async fn wait_until_live(&self, timeout: Duration) -> anyhow::Result<()> {
        let client = http_client();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(response) = client
                .get(format!("{}/health/live", self.base_url))
                .send()
                .await
                && response.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("central did not answer /health/live within {timeout:?}")
    }

    /// Sends SIGTERM and waits for the process to exit, returning its exit status.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("central did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for CentralProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Drops a database created by a test (best effort; open connections are terminated).
pub async fn drop_database(url: &str) {
    use sqlx::migrate::MigrateDatabase;
    if let Err(e) = sqlx::Postgres::force_drop_database(url).await {
        tracing_free_warn(&format!("could not drop test database: {e}"));
    }
}

#[expect(
    clippy::print_stderr,
    reason = "test helpers report to the test output"
)]
fn tracing_free_warn(message: &str) {
    eprintln!("warning: {message}");
}

/// The development HS256 secret central uses when SUPABASE_JWT_SECRET is not set.
const DEV_JWT_SECRET: &str = "dev-only-supabase-jwt-secret-not-for-production";

/// A Supabase-shaped access token for a new user of `role` (the profile is created on first use).
pub fn token_for(role: &str) -> anyhow::Result<String> {
    let now = chrono::Utc::now().timestamp();
    let claims = serde_json::json!({
        "aud": "authenticated", "exp": now + 3600, "iat": now, "sub": uuid::Uuid::new_v4(),
        "email": format!("{role}-{}@e2e.test", uuid::Uuid::new_v4()), "role": "authenticated",
        "session_id": uuid::Uuid::new_v4(), "app_metadata": {"role": role},
    });
    let key = jsonwebtoken::EncodingKey::from_secret(DEV_JWT_SECRET.as_bytes())?;
    Ok(jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &key,
    )?)
}

/// A running `celaest-edge` process; killed when dropped.
pub struct EdgeProcess {
    pub child: Child,
    pub base_url: String,
}

impl EdgeProcess {
    /// The environment of an edge called `id` in `region`, fed by the central of `central_env`.
    pub fn env_for(
        central_env: &[(String, String)],
        id: &str,
        region: &str,
    ) -> anyhow::Result<Vec<(String, String)>> {
        let get = |name: &str| {
            central_env
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let certs = get("CERTS_DIR").context("CERTS_DIR missing")?;
        let central = get("REPLICATION_ADDR").context("REPLICATION_ADDR missing")?;
        let port = free_port()?;
        Ok(vec![
            ("APP_ENV".into(), "test".into()),
            ("EDGE_ID".into(), id.into()),
            ("EDGE_REGION".into(), region.into()),
            ("EDGE_HTTP_ADDR".into(), format!("127.0.0.1:{port}")),
            ("EDGE_CENTRAL_ADDR".into(), central),
            ("EDGE_SERVER_NAME".into(), "localhost".into()),
            ("EDGE_TLS_CA".into(), format!("{certs}/ca.pem")),
            ("EDGE_TLS_CERT".into(), format!("{certs}/edge.pem")),
            ("EDGE_TLS_KEY".into(), format!("{certs}/edge.key")),
            ("EDGE_REPORT_INTERVAL_MS".into(), "100".into()),
            ("LOG_LEVEL".into(), "info".into()),
        ])
    }

    /// Starts an edge and waits until it answers `/health/live`.
    pub async fn start(env: Vec<(String, String)>) -> anyhow::Result<Self> {
        let addr = env
            .iter()
            .find(|(k, _)| k == "EDGE_HTTP_ADDR")
            .map(|(_, v)| v.clone())
            .context("EDGE_HTTP_ADDR missing")?;
        let child = Command::new(binary("celaest-edge")?)
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let edge = Self {
            child,
            base_url: format!("http://{addr}"),
        };
        wait_for_status(
            &format!("{}/health/live", edge.base_url),
            200,
            Duration::from_secs(30),
        )
        .await?;
        Ok(edge)
    }

    /// Waits until the edge holds central's state.
    pub async fn ready(&self, timeout: Duration) -> anyhow::Result<()> {
        wait_for_status(&format!("{}/health/ready", self.base_url), 200, timeout).await
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP client. reqwest is built without a TLS crypto provider of its own, so ring (the
/// one rustls and quinn use in the binaries) is installed as the process default first.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// Polls `url` until it answers `status`.
pub async fn wait_for_status(url: &str, status: u16, timeout: Duration) -> anyhow::Result<()> {
    let client = http_client();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(response) = client.get(url).send().await
            && response.status().as_u16() == status
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{url} did not answer {status} within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
