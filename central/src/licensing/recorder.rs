//! Recording validations off the request path.
//!
//! A validation answered by central (or reported by an edge) becomes a [`ValidationRecord`] on a
//! bounded in-process queue; one writer task stores them in batches — by size or every
//! [`FLUSH_EVERY`] — into `license_validations` (idempotent by the record's id, so an edge report
//! delivered twice is stored once), `license_usage_log` (per license and day), the licenses' and
//! bindings' counters, and runs collision detection. A graceful shutdown flushes the queue.
//!
//! Collision detection spans every central instance: a Redis script per license keeps the IPs
//! seen in the last window and opens an *episode* the first time two or more distinct IPs share
//! it, so an episode is recorded once, not once per request. Without Redis, each instance falls
//! back to its own in-memory windows (the protocol's `CollisionWindow`). Past the threshold
//! (per product, else the global setting; off by default) the license is revoked automatically,
//! audited, and the revocation streams to the edges like any other change.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    time::Duration,
};

use celaest_protocol::{
    collision::{CollisionWindow, DEFAULT_WINDOW_SECS, MAX_TRACKED_IPS},
    replication::ValidationReport,
};
use chrono::{DateTime, Utc};
use ipnetwork::IpNetwork;
use sqlx::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::{
    audit::{self, Actor, AuditEvent},
    cache::Redis,
};

const QUEUE_CAPACITY: usize = 100_000;
const BATCH_MAX: usize = 1_000;
const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// One validation to store.
#[derive(Debug, Clone)]
pub struct ValidationRecord {
    /// Made by whoever answered; an edge report carries the edge's id for it.
    pub id: Uuid,
    pub license_id: Option<Uuid>,
    pub key_hash: Option<[u8; 32]>,
    pub ip: IpAddr,
    pub device_info: Option<String>,
    pub result_code: &'static str,
    pub valid: bool,
    pub answered_by: String,
    pub region: Option<String>,
    pub validated_at: DateTime<Utc>,
}

impl ValidationRecord {
    /// The record of a validation answered by `answered_by` (central, or an edge in `region`):
    /// the report the protocol's flow made, under its own id.
    pub fn from_report(report: ValidationReport, answered_by: &str, region: Option<&str>) -> Self {
        Self {
            id: report.id,
            license_id: report.license_id,
            key_hash: report.key_hash.map(|hash| *hash.as_bytes()),
            ip: report.ip,
            device_info: report.device_info,
            result_code: report.code.as_str(),
            valid: report.code.is_valid(),
            answered_by: answered_by.to_owned(),
            region: region.map(str::to_owned),
            validated_at: report.validated_at,
        }
    }
}

enum Command {
    Record(Box<ValidationRecord>),
    Flush(oneshot::Sender<bool>),
}

/// The handle the request path uses: queueing never waits.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Command>,
}

impl Recorder {
    /// Starts the writer task (inside a tokio runtime).
    pub fn spawn(db: PgPool, redis: Redis) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(
            Writer {
                db,
                redis,
                local_windows: HashMap::new(),
                dropped: false,
            }
            .run(rx),
        );
        Self { tx }
    }

    /// Queues a record; when the queue is full the record is dropped and logged, never waited on.
    pub fn record(&self, record: ValidationRecord) {
        if let Err(e) = self.tx.try_send(Command::Record(Box::new(record))) {
            tracing::warn!(error = %e, "validation record dropped: the recorder queue is full or stopped");
        }
    }

    /// Queues a record, waiting for room rather than dropping it (for edge reports, which are
    /// acknowledged only once stored).
    pub async fn record_wait(&self, record: ValidationRecord) {
        if self
            .tx
            .send(Command::Record(Box::new(record)))
            .await
            .is_err()
        {
            tracing::error!("validation record not queued: the recorder stopped");
        }
    }

    /// Waits until everything queued before this call is written. `false` when some batch since
    /// the previous flush could not be stored (it was dropped after its retries): a caller that
    /// acknowledges records to someone else (an edge's reports) must not acknowledge them then.
    pub async fn flush(&self) -> bool {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Command::Flush(done)).await.is_err() {
            return false;
        }
        wait.await.unwrap_or(false)
    }
}

struct Writer {
    db: PgPool,
    redis: Redis,
    local_windows: HashMap<Uuid, CollisionWindow>,
    /// A batch was dropped since the last flush was answered.
    dropped: bool,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut batch: Vec<ValidationRecord> = Vec::new();
        let mut waiting: Vec<oneshot::Sender<bool>> = Vec::new();
        loop {
            let command = if batch.is_empty() {
                rx.recv().await
            } else {
                match tokio::time::timeout(FLUSH_EVERY, rx.recv()).await {
                    Ok(command) => command,
                    Err(_) => {
                        self.flush(&mut batch).await;
                        continue;
                    }
                }
            };
            match command {
                Some(Command::Record(record)) => {
                    batch.push(*record);
                    if batch.len() >= BATCH_MAX {
                        self.flush(&mut batch).await;
                    }
                }
                Some(Command::Flush(done)) => {
                    waiting.push(done);
                    // Take whatever else is already queued, then store it all.
                    while let Ok(command) = rx.try_recv() {
                        match command {
                            Command::Record(record) => batch.push(*record),
                            Command::Flush(done) => waiting.push(done),
                        }
                    }
                    self.flush(&mut batch).await;
                    let stored = !std::mem::take(&mut self.dropped);
                    for done in waiting.drain(..) {
                        let _ = done.send(stored);
                    }
                }
                None => {
                    self.flush(&mut batch).await;
                    return;
                }
            }
        }
    }

    /// Stores a batch, retrying a few times; a batch that still fails is logged and dropped so
    /// one poisoned record cannot stop recording for good.
    async fn flush(&mut self, batch: &mut Vec<ValidationRecord>) {
        if batch.is_empty() {
            return;
        }
        let records = std::mem::take(batch);
        for attempt in 1..=3u32 {
            match self.store(&records).await {
                Ok(()) => return,
                Err(e) => {
                    tracing::error!(attempt, records = records.len(), error = ?e, "validation batch not stored");
                    tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
                }
            }
        }
        self.dropped = true;
    }

    async fn store(&mut self, records: &[ValidationRecord]) -> anyhow::Result<()> {
        let stored: HashSet<Uuid> = insert_validations(&self.db, records)
            .await?
            .into_iter()
            .collect();
        let fresh: Vec<&ValidationRecord> =
            records.iter().filter(|r| stored.contains(&r.id)).collect();
        if fresh.is_empty() {
            return Ok(());
        }
        count_usage(&self.db, &fresh).await?;
        let mut by_license: HashMap<Uuid, Vec<Observation<'_>>> = HashMap::new();
        for r in &fresh {
            if let Some(license) = r.license_id {
                by_license.entry(license).or_default().push((
                    r.ip,
                    r.validated_at,
                    r.answered_by.as_str(),
                ));
            }
        }
        for (license, mut seen) in by_license {
            // Oldest first, as the window expects: edge reports may arrive late or interleaved.
            seen.sort_by_key(|(_, at, _)| *at);
            if let Some(episode) = self.observe(license, &seen).await {
                record_collision(&self.db, license, &episode).await?;
            }
        }
        Ok(())
    }

    /// Feeds a license's observations to the shared window; `Some` when a new episode opened.
    async fn observe(&mut self, license: Uuid, seen: &[Observation<'_>]) -> Option<Episode> {
        match observe_in_redis(&self.redis, license, seen).await {
            Ok(episode) => episode,
            Err(e) => {
                tracing::warn!(error = %e, "collision detection falls back to this instance's memory");
                let window = self.local_windows.entry(license).or_default();
                let mut opened = None;
                for (ip, at, by) in seen {
                    if let Some(episode) = window.observe(*ip, *at) {
                        opened = Some(Episode {
                            ips: episode.ips,
                            window_start: episode.window_start,
                            window_end: episode.window_end,
                            detected_by: (*by).to_owned(),
                        });
                    }
                }
                let now = Utc::now();
                self.local_windows.retain(|_, w| !w.is_idle(now));
                opened
            }
        }
    }
}

/// One use of a license: from where, when, and who answered it.
type Observation<'a> = (IpAddr, DateTime<Utc>, &'a str);

#[derive(Debug, Clone)]
struct Episode {
    ips: Vec<IpAddr>,
    window_start: DateTime<Utc>,
    window_end: DateTime<Utc>,
    detected_by: String,
}

/// The protocol's `CollisionWindow::observe`, shared by every instance: one observation at a
/// time, in the order given (oldest first).
/// KEYS[1]: the license's recent IPs (zset ip → last ms); KEYS[2]: present while an episode is
/// open. ARGV: window ms, tracked IPs, then (ip, ms) pairs. Returns the window's IPs and times
/// when an episode opened, else an empty list.
const COLLISION_SCRIPT: &str = r"
local window = tonumber(ARGV[1])
local keep = tonumber(ARGV[2])
local opened = {}
for i = 3, #ARGV, 2 do
  local ip, at = ARGV[i], tonumber(ARGV[i + 1])
  local reference = at
  local newest = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
  if newest[2] and tonumber(newest[2]) > at then reference = tonumber(newest[2]) end
  local horizon = reference - window
  -- Older than a window before the latest use: too late to change anything.
  if at > horizon then
    redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', horizon)
    -- At most one address left inside the window: any episode is over.
    if redis.call('ZCARD', KEYS[1]) <= 1 then redis.call('DEL', KEYS[2]) end
    local prev = redis.call('ZSCORE', KEYS[1], ip)
    if not prev or tonumber(prev) < at then redis.call('ZADD', KEYS[1], at, ip) end
    local excess = redis.call('ZCARD', KEYS[1]) - keep
    if excess > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], 0, excess - 1) end
    if redis.call('ZCARD', KEYS[1]) >= 2 and redis.call('EXISTS', KEYS[2]) == 0 then
      redis.call('SET', KEYS[2], '1')
      opened = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
    end
  end
end
redis.call('PEXPIRE', KEYS[1], window)
if redis.call('EXISTS', KEYS[2]) == 1 then redis.call('PEXPIRE', KEYS[2], window) end
return opened
";

async fn observe_in_redis(
    redis: &Redis,
    license: Uuid,
    seen: &[Observation<'_>],
) -> redis::RedisResult<Option<Episode>> {
    let mut conn = redis.conn().await?;
    let script = redis::Script::new(COLLISION_SCRIPT);
    let mut call = script.key(redis.key(&format!("collision:ips:{license}")));
    call.key(redis.key(&format!("collision:episode:{license}")));
    call.arg(DEFAULT_WINDOW_SECS * 1000).arg(MAX_TRACKED_IPS);
    for (ip, at, _) in seen {
        call.arg(ip.to_string()).arg(at.timestamp_millis());
    }
    let flat: Vec<String> = call.invoke_async(&mut conn).await?;
    if flat.is_empty() {
        return Ok(None);
    }
    let mut ips = Vec::new();
    let mut times = Vec::new();
    for pair in flat.chunks(2) {
        if let [ip, ms] = pair
            && let (Ok(ip), Ok(ms)) = (ip.parse::<IpAddr>(), ms.parse::<f64>())
        {
            ips.push(ip);
            #[expect(
                clippy::cast_possible_truncation,
                reason = "millisecond timestamps fit in i64"
            )]
            times.push(DateTime::from_timestamp_millis(ms as i64).unwrap_or_else(Utc::now));
        }
    }
    let detected_by = seen.last().map_or("central", |(_, _, by)| by).to_owned();
    Ok(Some(Episode {
        window_start: times.iter().min().copied().unwrap_or_else(Utc::now),
        window_end: times.iter().max().copied().unwrap_or_else(Utc::now),
        ips,
        detected_by,
    }))
}

/// Inserts the records not stored yet; returns the ids stored now.
async fn insert_validations(db: &PgPool, records: &[ValidationRecord]) -> sqlx::Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = records.iter().map(|r| r.id).collect();
    let licenses: Vec<Option<Uuid>> = records.iter().map(|r| r.license_id).collect();
    let hashes: Vec<Option<Vec<u8>>> = records
        .iter()
        .map(|r| r.key_hash.map(|h| h.to_vec()))
        .collect();
    let ips: Vec<IpNetwork> = records.iter().map(|r| IpNetwork::from(r.ip)).collect();
    let devices: Vec<Option<String>> = records.iter().map(|r| r.device_info.clone()).collect();
    let codes: Vec<&str> = records.iter().map(|r| r.result_code).collect();
    let valid: Vec<bool> = records.iter().map(|r| r.valid).collect();
    let by: Vec<&str> = records.iter().map(|r| r.answered_by.as_str()).collect();
    let regions: Vec<Option<String>> = records.iter().map(|r| r.region.clone()).collect();
    let at: Vec<DateTime<Utc>> = records.iter().map(|r| r.validated_at).collect();
    sqlx::query_scalar!(
        r#"INSERT INTO license_validations (id, license_id, key_hash, ip_address, device_info, result_code, valid,
                                           answered_by, region, validated_at)
           -- A report about a license deleted meanwhile is kept, without the link.
           SELECT v.id, CASE WHEN EXISTS (SELECT 1 FROM licenses l WHERE l.id = v.license_id) THEN v.license_id END,
                  v.key_hash, v.ip, v.device, v.code, v.valid, v.answered_by, v.region, v.validated_at
           FROM UNNEST($1::uuid[], $2::uuid[], $3::bytea[], $4::inet[], $5::text[], $6::text[], $7::bool[],
                       $8::text[], $9::text[], $10::timestamptz[]) AS v(id, license_id, key_hash, ip, device, code, valid, answered_by, region, validated_at)
           ON CONFLICT (id) DO NOTHING
           RETURNING id"#,
        &ids,
        &licenses as &[Option<Uuid>],
        &hashes as &[Option<Vec<u8>>],
        &ips,
        &devices as &[Option<String>],
        &codes as &[&str],
        &valid,
        &by as &[&str],
        &regions as &[Option<String>],
        &at
    )
    .fetch_all(db)
    .await
}

/// Counters of licenses, bindings and the daily usage log; the first validation of a license on
/// a day also writes its `license.validated` audit row (validations are audited in aggregate).
async fn count_usage(db: &PgPool, records: &[&ValidationRecord]) -> sqlx::Result<()> {
    #[derive(Default)]
    struct Day {
        total: i64,
        ok: i64,
        last_ip: Option<IpAddr>,
        last_at: Option<DateTime<Utc>>,
    }
    let mut days: HashMap<(Uuid, chrono::NaiveDate), Day> = HashMap::new();
    let mut seen_ips: HashMap<(Uuid, IpAddr), (i64, DateTime<Utc>)> = HashMap::new();
    for r in records {
        let Some(license) = r.license_id else {
            continue;
        };
        let day = days
            .entry((license, r.validated_at.date_naive()))
            .or_default();
        day.total += 1;
        day.ok += i64::from(r.valid);
        if day.last_at.is_none_or(|t| t <= r.validated_at) {
            day.last_at = Some(r.validated_at);
            day.last_ip = Some(r.ip);
        }
        if r.valid {
            let ip = seen_ips
                .entry((license, r.ip))
                .or_insert((0, r.validated_at));
            ip.0 += 1;
            ip.1 = ip.1.max(r.validated_at);
        }
    }
    if days.is_empty() {
        return Ok(());
    }
    let mut tx = db.begin().await?;
    let (mut l, mut d, mut n, mut ok, mut ip, mut last) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for ((license, date), day) in &days {
        l.push(*license);
        d.push(*date);
        n.push(day.total);
        ok.push(day.ok);
        ip.push(day.last_ip.map(IpNetwork::from));
        last.push(day.last_at.unwrap_or_else(Utc::now));
    }
    sqlx::query!(
        r#"UPDATE licenses SET validation_count = validation_count + x.n,
                              last_validated_at = GREATEST(last_validated_at, x.last)
           FROM (SELECT l, sum(n) AS n, max(last) AS last
                 FROM UNNEST($1::uuid[], $2::bigint[], $3::timestamptz[]) AS t(l, n, last) GROUP BY l) AS x
           WHERE licenses.id = x.l"#,
        &l,
        &n,
        &last
    )
    .execute(&mut *tx)
    .await?;
    let (bl, bip, bn, bat): (Vec<Uuid>, Vec<IpNetwork>, Vec<i64>, Vec<DateTime<Utc>>) =
        seen_ips.iter().fold(
            (vec![], vec![], vec![], vec![]),
            |(mut a, mut b, mut c, mut d), ((license, ip), (count, at))| {
                a.push(*license);
                b.push(IpNetwork::from(*ip));
                c.push(*count);
                d.push(*at);
                (a, b, c, d)
            },
        );
    sqlx::query!(
        r#"UPDATE license_ip_bindings b SET validation_count = b.validation_count + x.n,
                                          last_seen_at = GREATEST(b.last_seen_at, x.at)
           FROM UNNEST($1::uuid[], $2::inet[], $3::bigint[], $4::timestamptz[]) AS x(l, ip, n, at)
           WHERE b.license_id = x.l AND b.ip_address = x.ip"#,
        &bl,
        &bip,
        &bn,
        &bat
    )
    .execute(&mut *tx)
    .await?;
    let first_of_day = sqlx::query!(
        r#"INSERT INTO license_usage_log AS u (license_id, usage_date, validation_count, success_count, failure_count, last_ip,
                                         unique_ip_count)
           SELECT x.l, x.d, x.n, x.ok, x.n - x.ok, x.ip,
                  -- Distinct bound IPs seen that day, the bindings' last_seen_at just updated included.
                  (SELECT count(*) FROM license_ip_bindings b
                   WHERE b.license_id = x.l AND b.last_seen_at >= x.d::timestamptz AND b.last_seen_at < (x.d + 1)::timestamptz)
           FROM UNNEST($1::uuid[], $2::date[], $3::bigint[], $4::bigint[], $5::inet[]) AS x(l, d, n, ok, ip)
           WHERE EXISTS (SELECT 1 FROM licenses WHERE id = x.l)
           ON CONFLICT (license_id, usage_date) DO UPDATE
             SET validation_count = u.validation_count + EXCLUDED.validation_count,
                 success_count = u.success_count + EXCLUDED.success_count,
                 failure_count = u.failure_count + EXCLUDED.failure_count,
                 last_ip = coalesce(EXCLUDED.last_ip, u.last_ip),
                 unique_ip_count = EXCLUDED.unique_ip_count
           RETURNING license_id, usage_date, (xmax = 0) AS "first!""#,
        &l,
        &d,
        &n,
        &ok,
        &ip as &[Option<IpNetwork>]
    )
    .fetch_all(&mut *tx)
    .await?;
    for row in first_of_day.iter().filter(|r| r.first) {
        let event = AuditEvent::new("license.validated", "license", row.license_id)
            .meta("usage_date", row.usage_date)
            .meta(
                "aggregate",
                "first validation of the day; counts in license_usage_log",
            );
        audit::record(&mut tx, Actor::System, None, event).await?;
    }
    tx.commit().await
}

/// Stores an episode, counts it on the license, and revokes the license past its threshold.
async fn record_collision(db: &PgPool, license: Uuid, episode: &Episode) -> sqlx::Result<()> {
    let mut tx = db.begin().await?;
    let ips: Vec<IpNetwork> = episode.ips.iter().map(|ip| IpNetwork::from(*ip)).collect();
    let Some(row) = sqlx::query!(
        r#"WITH counted AS (
               UPDATE licenses SET collision_count = collision_count + 1 WHERE id = $1
               RETURNING id, product_id, status, collision_count)
           SELECT c.status, c.collision_count, p.collision_threshold AS product_threshold,
                  (SELECT value FROM system_config WHERE key = 'licensing.collision_threshold') AS global_threshold,
                  (SELECT value FROM system_config WHERE key = 'licensing.auto_revoke_on_collision') AS global_auto_revoke
           FROM counted c JOIN products p ON p.id = c.product_id"#,
        license
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(()); // deleted meanwhile
    };
    let threshold = row.product_threshold.map(i64::from).or_else(|| {
        let on = row
            .global_auto_revoke
            .as_ref()
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        on.then(|| {
            row.global_threshold
                .as_ref()
                .and_then(serde_json::Value::as_i64)
        })
        .flatten()
    });
    let revoke =
        row.status == "active" && threshold.is_some_and(|t| i64::from(row.collision_count) > t);
    sqlx::query!(
        r#"INSERT INTO license_collisions (license_id, ip_addresses, ip_count, window_start, window_end, detected_by,
                                          auto_revoked)
           VALUES ($1, $2, $3, $4, $5, $6, $7)"#,
        license,
        &ips,
        i32::try_from(ips.len()).unwrap_or(i32::MAX),
        episode.window_start,
        episode.window_end,
        episode.detected_by,
        revoke
    )
    .execute(&mut *tx)
    .await?;
    let event = AuditEvent::new("license.collision_detected", "license", license)
        .meta(
            "ips",
            episode
                .ips
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
        )
        .meta("collision_count", row.collision_count);
    audit::record(&mut tx, Actor::System, None, event).await?;
    if revoke {
        let reason = format!(
            "automatic: {} collisions (threshold {})",
            row.collision_count,
            threshold.unwrap_or(0)
        );
        sqlx::query!(
            "UPDATE licenses SET status = 'revoked', revoked_at = now(), revoked_reason = $2 WHERE id = $1",
            license,
            reason
        )
        .execute(&mut *tx)
        .await?;
        super::store::replicate(&mut tx, license).await?;
        let event = AuditEvent::new("license.revoked", "license", license)
            .change("status", &"active", &"revoked")
            .meta("reason", &reason)
            .meta("automatic", true);
        audit::record(&mut tx, Actor::System, None, event).await?;
        tracing::warn!(%license, collisions = row.collision_count, "license revoked automatically for collisions");
    }
    tx.commit().await
}
