//! `last_used_at` of API keys without a database write per request: the gate records each use
//! in a Redis hash (`key id → "millis|ip"`), and this worker job moves it to PostgreSQL in bulk.
//! Fields are deleted only after the write committed, and only if no newer use replaced them,
//! so a crash in between loses nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
use redis::AsyncCommands;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{gate::keys::KEY_USAGE, store};
use crate::state::AppState;

const EVERY: Duration = Duration::from_secs(15);

/// Deletes each field whose value is still the one we stored.
const CLEAR_SCRIPT: &str = r"
local cleared = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    redis.call('HDEL', KEYS[1], ARGV[i])
    cleared = cleared + 1
  end
end
return cleared
";

/// The worker job: flush every [`EVERY`], and once more on shutdown.
pub async fn run(state: AppState, stop: CancellationToken) -> anyhow::Result<()> {
    loop {
        let stopping = tokio::select! {
            () = stop.cancelled() => true,
            () = tokio::time::sleep(EVERY) => false,
        };
        if let Err(e) = flush(&state).await {
            tracing::warn!(error = %e, "API key usage not flushed; will retry");
        }
        if stopping {
            return Ok(());
        }
    }
}

/// Moves the recorded uses to PostgreSQL; returns how many keys were updated.
pub async fn flush(state: &AppState) -> anyhow::Result<u64> {
    let key = state.redis.key(KEY_USAGE);
    let mut conn = state.redis.conn().await?;
    let entries: Vec<(String, String)> = conn.hgetall(&key).await?;
    if entries.is_empty() {
        return Ok(0);
    }
    let (mut ids, mut times, mut ips) = (Vec::new(), Vec::new(), Vec::new());
    for (field, value) in &entries {
        let Some((id, at, ip)) = parse(field, value) else {
            continue;
        };
        ids.push(id);
        times.push(at);
        ips.push(ip);
    }
    let updated = store::record_key_usage(&state.db, &ids, &times, &ips).await?;
    let script = redis::Script::new(CLEAR_SCRIPT);
    let mut clear = script.key(&key);
    for (field, value) in &entries {
        clear.arg(field).arg(value);
    }
    let _: i64 = clear.invoke_async(&mut conn).await?;
    Ok(updated)
}

fn parse(field: &str, value: &str) -> Option<(Uuid, DateTime<Utc>, Option<IpNetwork>)> {
    let id = Uuid::parse_str(field).ok()?;
    let (millis, ip) = value.split_once('|')?;
    let at = DateTime::from_timestamp_millis(millis.parse().ok()?)?;
    Some((
        id,
        at,
        ip.parse::<std::net::IpAddr>().ok().map(IpNetwork::from),
    ))
}
