//! Worker presence: each worker process marks itself alive in a Redis sorted set (score = last
//! beat), so `/health` can tell operators whether any worker is running at all — without workers,
//! queued work (AI tasks, webhook deliveries, …) would silently wait.

use std::time::Duration;

use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;

use crate::{cache::Redis, state::AppState};

const BEAT_EVERY: Duration = Duration::from_secs(10);
/// A worker not seen for this long counts as gone.
const ALIVE_WINDOW: Duration = Duration::from_secs(30);
const KEY: &str = "workers:alive";

pub async fn run(state: AppState, stop: CancellationToken) -> anyhow::Result<()> {
    let member = format!("{}:{}", hostname(), std::process::id());
    let key = state.redis.key(KEY);
    loop {
        if let Err(e) = beat(&state.redis, &key, &member).await {
            tracing::warn!(error = %e, "worker heartbeat not recorded");
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(BEAT_EVERY) => {}
        }
    }
    if let Ok(mut conn) = state.redis.conn().await {
        let _: Result<i64, _> = conn.zrem(&key, &member).await;
    }
    Ok(())
}

async fn beat(redis: &Redis, key: &str, member: &str) -> redis::RedisResult<()> {
    let mut conn = redis.conn().await?;
    let now = chrono::Utc::now().timestamp();
    let stale = now - i64::try_from(ALIVE_WINDOW.as_secs()).unwrap_or(30);
    redis::pipe()
        .zadd(key, member, now)
        .ignore()
        .zrembyscore(key, "-inf", stale)
        .ignore()
        .query_async::<()>(&mut conn)
        .await
}

/// How many worker processes beat within the last [`ALIVE_WINDOW`].
pub async fn alive_workers(redis: &Redis) -> redis::RedisResult<u64> {
    let mut conn = redis.conn().await?;
    let since =
        chrono::Utc::now().timestamp() - i64::try_from(ALIVE_WINDOW.as_secs()).unwrap_or(30);
    conn.zcount(redis.key(KEY), since, "+inf").await
}

fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| {
            std::fs::read_to_string("/etc/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}
