//! The Redis connection.
//!
//! [`Redis`] hands out a multiplexed connection manager that reconnects by itself. It connects
//! lazily and retries on demand (one attempt at a time), so central starts and keeps answering
//! while Redis is down; `/health/ready` reports it. Every key is namespaced by `REDIS_KEY_PREFIX`.
//!
//! The connection handed out is a [`Conn`]: every command and pipeline sent through it is timed
//! and its failures counted (`celaest_redis_*`), whichever module sends it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use redis::{
    Client, ErrorKind, IntoConnectionInfo, RedisFuture, RedisResult, ServerErrorKind,
    aio::{ConnectionLike, ConnectionManager},
};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Mutex;

use crate::config::RedisConfig;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub struct Redis {
    inner: Arc<RedisInner>,
}

struct RedisInner {
    client: Client,
    prefix: String,
    /// The connection once made: read without locking on every request.
    ready: arc_swap::ArcSwapOption<ConnectionManager>,
    /// Held only while connecting, so one attempt runs at a time.
    connecting: Mutex<()>,
    /// When the last connection attempt failed: callers fail fast for [`RETRY_AFTER_FAILURE`]
    /// instead of each waiting out a connect timeout against a Redis that is down.
    failed_at: std::sync::Mutex<Option<std::time::Instant>>,
    instruments: Arc<Instruments>,
}

/// The Redis series' handles, resolved once so a command pays no registry lookup.
struct Instruments {
    duration: metrics::Histogram,
    connect_errors: metrics::Counter,
    command_errors: metrics::Counter,
}

impl Instruments {
    fn new() -> Self {
        use crate::metrics::{REDIS_COMMAND_DURATION_SECONDS, REDIS_ERRORS_TOTAL, install};
        install();
        Self {
            duration: metrics::histogram!(REDIS_COMMAND_DURATION_SECONDS),
            connect_errors: metrics::counter!(REDIS_ERRORS_TOTAL, "stage" => "connect"),
            command_errors: metrics::counter!(REDIS_ERRORS_TOTAL, "stage" => "command"),
        }
    }

    /// Awaits one command or pipeline, recording its round trip and whether it failed.
    async fn time<T>(&self, command: RedisFuture<'_, T>) -> RedisResult<T> {
        let started = Instant::now();
        let result = command.await;
        self.duration.record(started.elapsed());
        // NOSCRIPT is the expected first answer to a script Redis has not cached yet; the
        // client loads the script and retries, so it is not a failure anyone sees.
        if result
            .as_ref()
            .is_err_and(|e| e.kind() != ErrorKind::Server(ServerErrorKind::NoScript))
        {
            self.command_errors.increment(1);
        }
        result
    }
}

/// A Redis connection (the shared multiplexed one): use it with `redis::AsyncCommands`,
/// `query_async` or `Script::invoke_async` like the connection it wraps.
#[derive(Clone)]
pub struct Conn {
    manager: ConnectionManager,
    instruments: Arc<Instruments>,
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, redis::Value> {
        Box::pin(self.instruments.time(self.manager.req_packed_command(cmd)))
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<redis::Value>> {
        Box::pin(
            self.instruments
                .time(self.manager.req_packed_commands(cmd, offset, count)),
        )
    }

    fn get_db(&self) -> i64 {
        self.manager.get_db()
    }
}

const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl Redis {
    pub fn new(config: &RedisConfig) -> anyhow::Result<Self> {
        let mut info = config.url.expose_secret().into_connection_info()?;
        if let Some(password) = config.password.as_ref().map(SecretString::expose_secret) {
            let settings = info.redis_settings().clone().set_password(password);
            info = info.set_redis_settings(settings);
        }
        Ok(Self {
            inner: Arc::new(RedisInner {
                client: Client::open(info)?,
                prefix: config.key_prefix.clone(),
                ready: arc_swap::ArcSwapOption::empty(),
                connecting: Mutex::new(()),
                failed_at: std::sync::Mutex::new(None),
                instruments: Arc::new(Instruments::new()),
            }),
        })
    }

    /// The namespaced form of `key`.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    /// A connection, connecting first if needed. A failure counts as a connect error.
    pub async fn conn(&self) -> redis::RedisResult<Conn> {
        let manager = self.manager().await;
        if manager.is_err() {
            self.inner.instruments.connect_errors.increment(1);
        }
        Ok(Conn {
            manager: manager?,
            instruments: self.inner.instruments.clone(),
        })
    }

    async fn manager(&self) -> redis::RedisResult<ConnectionManager> {
        if let Some(manager) = self.inner.ready.load_full() {
            return Ok((*manager).clone());
        }
        let failed_at = || self.inner.failed_at.lock().map(|at| *at).unwrap_or(None);
        let unreachable = || {
            redis::RedisError::from((redis::ErrorKind::Io, "redis unreachable (retrying shortly)"))
        };
        let _connecting = match self.inner.connecting.try_lock() {
            Ok(guard) => guard,
            // Another task is reconnecting after a failure: fail now (callers fail open) rather
            // than wait up to CONNECT_TIMEOUT behind it. Only the first connection is waited for.
            Err(_) if failed_at().is_some() => return Err(unreachable()),
            Err(_) => self.inner.connecting.lock().await,
        };
        if let Some(manager) = self.inner.ready.load_full() {
            return Ok((*manager).clone());
        }
        if failed_at().is_some_and(|at| at.elapsed() < RETRY_AFTER_FAILURE) {
            return Err(unreachable());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_number_of_retries(1);
        match ConnectionManager::new_with_config(self.inner.client.clone(), config).await {
            Ok(manager) => {
                self.inner.ready.store(Some(Arc::new(manager.clone())));
                Ok(manager)
            }
            Err(e) => {
                if let Ok(mut failed) = self.inner.failed_at.lock() {
                    *failed = Some(std::time::Instant::now());
                }
                Err(e)
            }
        }
    }

    /// `PING`, for readiness.
    pub async fn ping(&self) -> redis::RedisResult<()> {
        let mut conn = self.conn().await?;
        redis::cmd("PING")
            .query_async::<String>(&mut conn)
            .await
            .map(drop)
    }
}
