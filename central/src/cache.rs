//! Redis and the in-process cache in front of it.
//!
//! [`Redis`] hands out a multiplexed connection manager that reconnects by itself. It connects
//! lazily and retries on demand (one attempt at a time), so central starts and keeps answering
//! while Redis is down; `/health/ready` reports it. Every key is namespaced by `REDIS_KEY_PREFIX`.
//!
//! [`Cache`] is a two-level JSON cache: a short-lived moka layer per process in front of Redis,
//! so a hot key costs neither a network round trip nor a deserialization. The local layer may
//! lag a Redis invalidation made by another instance by at most its TTL.

use std::{sync::Arc, time::Duration};

use redis::{AsyncCommands, Client, IntoConnectionInfo, aio::ConnectionManager};
use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, de::DeserializeOwned};
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
            info.redis.password = Some(password.to_owned());
        }
        Ok(Self {
            inner: Arc::new(RedisInner {
                client: Client::open(info)?,
                prefix: config.key_prefix.clone(),
                ready: arc_swap::ArcSwapOption::empty(),
                connecting: Mutex::new(()),
                failed_at: std::sync::Mutex::new(None),
            }),
        })
    }

    /// The namespaced form of `key`.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.inner.prefix)
    }

    /// A connection, connecting first if needed.
    pub async fn conn(&self) -> redis::RedisResult<ConnectionManager> {
        if let Some(manager) = self.inner.ready.load_full() {
            return Ok((*manager).clone());
        }
        let _connecting = self.inner.connecting.lock().await;
        if let Some(manager) = self.inner.ready.load_full() {
            return Ok((*manager).clone());
        }
        let recently_failed = self
            .inner
            .failed_at
            .lock()
            .map(|at| at.is_some_and(|at| at.elapsed() < RETRY_AFTER_FAILURE))
            .unwrap_or(false);
        if recently_failed {
            return Err(redis::RedisError::from((
                redis::ErrorKind::IoError,
                "redis unreachable (retrying shortly)",
            )));
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT)
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

/// Two-level JSON cache (moka in front of Redis).
#[derive(Clone)]
pub struct Cache {
    redis: Redis,
    local: moka::future::Cache<String, Arc<[u8]>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("local_entries", &self.local.entry_count())
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// `local_ttl` bounds how stale this process's copy can be after another instance writes.
    pub fn new(redis: Redis, local_capacity: u64, local_ttl: Duration) -> Self {
        let local = moka::future::Cache::builder()
            .max_capacity(local_capacity)
            .time_to_live(local_ttl)
            .build();
        Self { redis, local }
    }

    /// Reads `key`: this process first, then Redis (filling this process on a hit).
    pub async fn get<T: DeserializeOwned>(&self, key: &str) -> redis::RedisResult<Option<T>> {
        let key = self.redis.key(key);
        if let Some(bytes) = self.local.get(&key).await {
            return Ok(serde_json::from_slice(&bytes).ok());
        }
        let mut conn = self.redis.conn().await?;
        let bytes: Option<Vec<u8>> = conn.get(&key).await?;
        let Some(bytes) = bytes else { return Ok(None) };
        let value = serde_json::from_slice(&bytes).ok();
        if value.is_some() {
            self.local.insert(key, bytes.into()).await;
        }
        Ok(value)
    }

    /// Stores `value` under `key` in both levels, expiring from Redis after `ttl`.
    pub async fn set<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> redis::RedisResult<()> {
        let key = self.redis.key(key);
        let bytes = serde_json::to_vec(value).map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::TypeError, "serialize", e.to_string()))
        })?;
        let mut conn = self.redis.conn().await?;
        let () = conn
            .set_ex(&key, bytes.as_slice(), ttl.as_secs().max(1))
            .await?;
        self.local.insert(key, bytes.into()).await;
        Ok(())
    }

    /// Removes `key` from both levels.
    pub async fn invalidate(&self, key: &str) -> redis::RedisResult<()> {
        let key = self.redis.key(key);
        self.local.invalidate(&key).await;
        let mut conn = self.redis.conn().await?;
        let _: i64 = conn.del(&key).await?;
        Ok(())
    }
}
