//! Recording validations off the request path, without ever dropping one.
//!
//! A validation answered by central becomes a [`ValidationRecord`] on a bounded in-process queue;
//! one writer task stores them in batches — by size or every [`FLUSH_EVERY`] — into
//! `license_validations` (idempotent by the record's id), and, in the same transaction,
//! `license_usage_log` (per license and day) and the licenses' and bindings' counters; then it
//! runs collision detection. The SQL is the licensing store's; an automatic revocation is the
//! licensing service's. A graceful shutdown flushes what is held.
//!
//! Overload (PostgreSQL slow or down) costs detail, never a validation: once the queue is full,
//! further validations are coalesced — the same license, IP, result code and minute become one
//! row with a `count` — within a memory bound ([`coalesce`] documents its levels). A batch that
//! cannot be written goes back to the queue or the coalescer and is written again later, so the
//! stored counts add up exactly once PostgreSQL is back. Only a row PostgreSQL refuses as such
//! (a data or constraint error, which no retry can fix) is given up, logged and counted.
//!
//! An edge's report batch is stored as one unit in its own transaction, together with its batch
//! id: a batch sent again (its acknowledgement was lost) is recognised by that id and never
//! counted twice, whether it was stored one row per report or coalesced. Its caller acknowledges
//! it only once that transaction committed. Under overload a batch is coalesced on its own (its
//! reports by license, IP, code and minute); the edge keeps it until then, so its memory at
//! central is bounded by [`Limits::reports`] — a batch beyond it waits for room.
//!
//! Collision detection spans every central instance: a Redis script per license keeps the IPs
//! seen in the last window and opens an *episode* the first time two or more distinct IPs share
//! it, so an episode is recorded once, not once per request. Without Redis, each instance falls
//! back to its own in-memory windows (the protocol's `CollisionWindow`). Past the threshold
//! (per product, else the global setting; off by default) the license is revoked automatically,
//! audited, and the revocation streams to the edges like any other change. A coalesced row is one
//! observation of its address (collisions need only the distinct addresses, not how often).
//!
//! Metrics: `celaest_recorder_queue_depth` rows waiting (queued, coalesced, in edge batches);
//! `celaest_recorder_batch_size` rows per committed write and `celaest_recorder_flush_seconds`
//! its duration; `celaest_recorder_records_total` validations handed over (a resent edge batch
//! counts again); `celaest_recorder_coalesced_total` validations that joined a coalesced row
//! (again if their write failed and they were folded back); `celaest_recorder_store_failures_total`
//! failed writes plus rows given up.

mod coalesce;

use std::{
    collections::{HashMap, HashSet, VecDeque},
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard},
    time::{Duration, Instant},
};

use celaest_protocol::{
    collision::{CollisionWindow, DEFAULT_WINDOW_SECS, MAX_TRACKED_IPS},
    replication::ValidationReport,
};
use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};
use uuid::Uuid;

pub use self::coalesce::Caps;
use self::coalesce::Coalescer;
use super::{
    service,
    store::{self, ValidationWrite as Row},
};
use crate::{
    audit::{self, Actor, AuditEvent},
    cache::Redis,
    metrics::{
        RECORDER_BATCH_SIZE, RECORDER_COALESCED_TOTAL, RECORDER_FLUSH_SECONDS,
        RECORDER_QUEUE_DEPTH, RECORDER_RECORDS_TOTAL, RECORDER_STORE_FAILURES_TOTAL,
    },
};

/// Rows written per transaction, at most.
const BATCH_MAX: usize = 1_000;
const FLUSH_EVERY: Duration = Duration::from_millis(200);
/// Waits between attempts after a failed write: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// A flush reports failure after this many failed writes in a row (a shutdown must not wait
/// for PostgreSQL forever); what is held stays held and is written when it can be.
const FLUSH_ATTEMPTS: u32 = 3;
/// How long an edge batch's id is remembered. An edge resends a batch only until it is
/// acknowledged, from a buffer in its memory: far shorter than this.
const BATCH_IDS_KEPT: chrono::TimeDelta = chrono::TimeDelta::days(7);
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// How much the recorder holds in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Validations queued one by one; past it they are coalesced.
    pub queue: usize,
    /// The coalescing levels' caps.
    pub caps: Caps,
    /// Edge-reported validations held awaiting their write; a batch beyond it waits for room.
    pub reports: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            queue: 100_000,
            caps: Caps::default(),
            reports: 100_000,
        }
    }
}

impl Limits {
    /// The most rows held waiting to be written: the queue, the coalescer and the edge batches
    /// (plus the one batch of at most 1,000 rows being written).
    pub fn max_waiting(&self) -> usize {
        self.queue + self.caps.max_rows() + self.reports
    }
}

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

/// What became of an edge's report batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Written now.
    Stored,
    /// Its id was written before: a batch sent again, not counted twice.
    AlreadyStored,
    /// PostgreSQL refuses its rows (a data or constraint error): not stored, not to acknowledge.
    Refused,
}

/// What the recorder holds, for tests and diagnosis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Rows waiting: queued, coalesced and in edge batches.
    pub rows: usize,
    /// The validations those rows stand for.
    pub validations: u64,
    /// The most rows ever waiting at once.
    pub peak_rows: usize,
    /// Validations that joined a coalesced row since the start.
    pub coalesced: u64,
}

/// The handle the request path uses: recording never waits and never drops.
#[derive(Clone)]
pub struct Recorder {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("limits", &self.handle.shared.limits)
            .finish_non_exhaustive()
    }
}

/// Closes the writer once the last handle is gone (it writes what is held, then ends).
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

struct Shared {
    limits: Limits,
    pending: Mutex<Pending>,
    /// Wakes the writer: the queue's first record, a full batch, an edge batch, a flush.
    wake: Notify,
    /// Room for edge-reported rows, [`Limits::reports`] permits.
    report_room: Arc<Semaphore>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Pending> {
        // A panic elsewhere cannot leave the counts half-updated: every change is one step.
        self.pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Default)]
struct Pending {
    queue: VecDeque<Row>,
    coalesced: Coalescer,
    batches: VecDeque<ReportBatch>,
    /// Rows in `batches`.
    batch_rows: usize,
    flushes: Vec<oneshot::Sender<bool>>,
    peak_rows: usize,
    coalesced_total: u64,
    /// Validations were coalesced or a write failed, and no write succeeded since with the queue
    /// below capacity: edge batches are coalesced on arrival meanwhile.
    overloaded: bool,
    closed: bool,
    /// The writer ended (its database pool closed): nothing will be written any more.
    stopped: bool,
}

impl Pending {
    fn rows(&self) -> usize {
        self.queue.len() + self.coalesced.len() + self.batch_rows
    }

    fn has_rows(&self) -> bool {
        !self.queue.is_empty() || !self.coalesced.is_empty()
    }

    /// Queues a row while there is room, else coalesces it.
    fn push(&mut self, row: Row, queue_max: usize) {
        if self.queue.len() < queue_max {
            self.queue.push_back(row);
        } else {
            self.coalesce(row);
        }
        self.peak_rows = self.peak_rows.max(self.rows());
    }

    fn coalesce(&mut self, row: Row) {
        self.overloaded = true;
        self.coalesced_total = self.coalesced_total.saturating_add(row.count);
        metrics::counter!(RECORDER_COALESCED_TOTAL).increment(row.count);
        self.coalesced.add(row);
    }

    /// Rows whose write failed: back to the front of the queue while it has room (their order
    /// kept), the rest coalesced.
    fn put_back(&mut self, rows: Vec<Row>, queue_max: usize) {
        for row in rows.into_iter().rev() {
            if self.queue.len() < queue_max {
                self.queue.push_front(row);
            } else {
                self.coalesce(row);
            }
        }
        self.peak_rows = self.peak_rows.max(self.rows());
    }

    /// Up to [`BATCH_MAX`] rows, the queue's oldest first.
    fn take_rows(&mut self) -> Vec<Row> {
        let from_queue = self.queue.len().min(BATCH_MAX);
        let mut rows: Vec<Row> = self.queue.drain(..from_queue).collect();
        if rows.len() < BATCH_MAX {
            rows.extend(self.coalesced.take(BATCH_MAX - rows.len()));
        }
        rows
    }

    fn held(&self) -> Held {
        let queued: u64 = self.queue.iter().map(|r| r.count).sum();
        let reported: u64 = self
            .batches
            .iter()
            .flat_map(|b| &b.rows)
            .map(|r| r.count)
            .sum();
        Held {
            rows: self.rows(),
            validations: queued + self.coalesced.validations() + reported,
            peak_rows: self.peak_rows,
            coalesced: self.coalesced_total,
        }
    }
}

/// An edge's report batch awaiting its write.
struct ReportBatch {
    id: Uuid,
    edge_id: String,
    reports: usize,
    rows: Vec<Row>,
    done: oneshot::Sender<BatchOutcome>,
    /// Its share of [`Limits::reports`], given back once it is written.
    _room: OwnedSemaphorePermit,
}

impl Recorder {
    /// Starts the writer task (inside a tokio runtime) with the default [`Limits`].
    pub fn spawn(db: PgPool, redis: Redis) -> Self {
        Self::with_limits(db, redis, Limits::default())
    }

    /// Starts the writer task with the given memory limits.
    pub fn with_limits(db: PgPool, redis: Redis, limits: Limits) -> Self {
        let reports = limits.reports.clamp(1, Semaphore::MAX_PERMITS);
        let shared = Arc::new(Shared {
            limits,
            pending: Mutex::new(Pending {
                coalesced: Coalescer::new(limits.caps),
                ..Pending::default()
            }),
            wake: Notify::new(),
            report_room: Arc::new(Semaphore::new(reports)),
        });
        tokio::spawn(
            Writer {
                shared: shared.clone(),
                db,
                redis,
                local_windows: HashMap::new(),
                failures: 0,
                pruned_at: None,
            }
            .run(),
        );
        Self {
            handle: Arc::new(Handle { shared }),
        }
    }

    /// Records a validation: queued, or coalesced when the queue is full. Never waits, never
    /// drops.
    pub fn record(&self, record: ValidationRecord) {
        let shared = &self.handle.shared;
        let mut pending = shared.lock();
        pending.push(Row::from(record), shared.limits.queue);
        // The first record starts the writer's batch timer; a full batch is written at once.
        let wake = matches!(pending.queue.len(), 1 | BATCH_MAX) || pending.coalesced.len() == 1;
        drop(pending);
        metrics::counter!(RECORDER_RECORDS_TOTAL).increment(1);
        if wake {
            shared.wake.notify_one();
        }
    }

    /// Stores an edge's report batch as one unit and answers once its transaction committed:
    /// only then may it be acknowledged. `None` when the recorder stopped first.
    pub async fn record_batch(
        &self,
        batch_id: Uuid,
        edge_id: &str,
        records: Vec<ValidationRecord>,
    ) -> Option<BatchOutcome> {
        let shared = &self.handle.shared;
        let reports = records.len();
        metrics::counter!(RECORDER_RECORDS_TOTAL).increment(u64::try_from(reports).ok()?);
        let overloaded = {
            let pending = shared.lock();
            pending.overloaded || pending.batch_rows >= shared.limits.reports / 2
        };
        let rows = if overloaded {
            let rows = coalesce::merge_all(records);
            let folded = reports - rows.len();
            metrics::counter!(RECORDER_COALESCED_TOTAL).increment(u64::try_from(folded).ok()?);
            shared.lock().coalesced_total += u64::try_from(folded).ok()?;
            rows
        } else {
            records.into_iter().map(Row::from).collect()
        };
        let permits = rows.len().clamp(1, shared.limits.reports.max(1));
        let room = shared
            .report_room
            .clone()
            .acquire_many_owned(u32::try_from(permits).ok()?)
            .await
            .ok()?;
        let (done, outcome) = oneshot::channel();
        {
            let mut pending = shared.lock();
            if pending.stopped {
                return None;
            }
            pending.batch_rows += rows.len();
            pending.batches.push_back(ReportBatch {
                id: batch_id,
                edge_id: edge_id.to_owned(),
                reports,
                rows,
                done,
                _room: room,
            });
            pending.peak_rows = pending.peak_rows.max(pending.rows());
        }
        shared.wake.notify_one();
        outcome.await.ok()
    }

    /// Waits until nothing is held, everything written. `false` when writes kept failing
    /// ([`FLUSH_ATTEMPTS`] in a row) or a row was refused since the previous flush: what is held
    /// stays held, to be written when PostgreSQL is back.
    pub async fn flush(&self) -> bool {
        let (done, wait) = oneshot::channel();
        {
            let mut pending = self.handle.shared.lock();
            if pending.stopped {
                return false;
            }
            pending.flushes.push(done);
        }
        self.handle.shared.wake.notify_one();
        wait.await.unwrap_or(false)
    }

    /// What the recorder holds now.
    pub fn held(&self) -> Held {
        self.handle.shared.lock().held()
    }
}

enum Work {
    Rows(Vec<Row>),
    Batch(ReportBatch),
}

struct Writer {
    shared: Arc<Shared>,
    db: PgPool,
    redis: Redis,
    local_windows: HashMap<Uuid, CollisionWindow>,
    /// Failed writes in a row.
    failures: u32,
    pruned_at: Option<Instant>,
}

/// A committed write.
struct Written {
    outcome: BatchOutcome,
    /// Rows PostgreSQL refused, left out.
    given_up: u64,
}

/// Why a write failed: worth retrying, or refused as such.
enum WriteError {
    Transient(sqlx::Error),
    Refused(sqlx::Error),
}

impl From<sqlx::Error> for WriteError {
    fn from(e: sqlx::Error) -> Self {
        if refused(&e) {
            Self::Refused(e)
        } else {
            Self::Transient(e)
        }
    }
}

/// Class 22 (data exception) and 23 (integrity constraint violation): the rows themselves are
/// refused. Anything else — connection, pool, lock or statement timeout, shutdown — may pass on
/// a later attempt.
fn refused(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|code| code.starts_with("22") || code.starts_with("23"))
}

impl Writer {
    async fn run(mut self) {
        let mut refused = false;
        while let Some(work) = self.next_work().await {
            let ok = match work {
                Work::Rows(rows) => self.write_rows(rows).await,
                Work::Batch(batch) => self.write_batch(batch).await,
            };
            refused |= ok == Some(false);
            if ok.is_none() {
                self.backoff().await;
            }
            let mut pending = self.shared.lock();
            metrics::gauge!(RECORDER_QUEUE_DEPTH).set(pending.rows() as f64);
            let settled = pending.rows() == 0 && pending.batches.is_empty();
            let given_up = self.failures >= FLUSH_ATTEMPTS;
            if settled || given_up {
                let stored = settled && !std::mem::take(&mut refused);
                for done in pending.flushes.drain(..) {
                    let _ = done.send(stored);
                }
            }
        }
        let mut pending = self.shared.lock();
        pending.stopped = true;
        // Dropping the waiting batches answers their callers: not stored.
        pending.batches.clear();
        pending.batch_rows = 0;
        for done in pending.flushes.drain(..) {
            let _ = done.send(false);
        }
    }

    /// The next thing to write: an edge batch first (its edge waits for the answer), else up to
    /// [`BATCH_MAX`] rows once a batch is full, [`FLUSH_EVERY`] passed, a flush waits, or the
    /// queue overflowed. `None` once the recorder is closed and everything written, or the
    /// database pool closed.
    async fn next_work(&mut self) -> Option<Work> {
        let mut deadline: Option<tokio::time::Instant> = None;
        loop {
            if self.db.is_closed() {
                return None;
            }
            {
                let mut pending = self.shared.lock();
                if let Some(batch) = pending.batches.pop_front() {
                    pending.batch_rows -= batch.rows.len();
                    return Some(Work::Batch(batch));
                }
                let due = pending.queue.len() >= BATCH_MAX
                    || !pending.coalesced.is_empty()
                    || !pending.flushes.is_empty()
                    || pending.closed
                    || deadline.is_some_and(|d| d <= tokio::time::Instant::now());
                if pending.has_rows() && due {
                    let rows = pending.take_rows();
                    metrics::gauge!(RECORDER_QUEUE_DEPTH).set(pending.rows() as f64);
                    return Some(Work::Rows(rows));
                }
                if !pending.has_rows() {
                    for done in pending.flushes.drain(..) {
                        let _ = done.send(true);
                    }
                    if pending.closed {
                        return None;
                    }
                    deadline = None;
                } else if deadline.is_none() {
                    deadline = Some(tokio::time::Instant::now() + FLUSH_EVERY);
                }
            }
            match deadline {
                Some(at) => {
                    tokio::select! {
                        () = self.shared.wake.notified() => {}
                        () = tokio::time::sleep_until(at) => {}
                    }
                }
                None => self.shared.wake.notified().await,
            }
        }
    }

    async fn backoff(&self) {
        let doublings = self.failures.saturating_sub(1).min(5);
        tokio::time::sleep((RETRY_FIRST * 2u32.pow(doublings)).min(RETRY_MAX)).await;
    }

    /// Writes rows of central's own validations. `Some(true)` when written, `Some(false)` when
    /// some were refused (given up), `None` when the write failed and they are held again.
    async fn write_rows(&mut self, rows: Vec<Row>) -> Option<bool> {
        let mut written = self.write(&rows, None, false).await;
        if let Err(WriteError::Refused(e)) = &written {
            tracing::warn!(rows = rows.len(), error = %e, "a validation batch was refused; writing it row by row");
            written = self.write(&rows, None, true).await;
        }
        match written {
            Ok(written) => Some(written.given_up == 0),
            Err(WriteError::Transient(e)) => {
                tracing::error!(rows = rows.len(), attempt = self.failures, error = %e, "validations not written; held to write again");
                let shared = self.shared.clone();
                shared.lock().put_back(rows, shared.limits.queue);
                None
            }
            Err(WriteError::Refused(e)) => {
                let count: u64 = rows.iter().map(|r| r.count).sum();
                tracing::error!(count, error = %e, "validations refused by the database; given up");
                Some(false)
            }
        }
    }

    /// Writes an edge's batch and answers its caller. A failed write keeps it (coalesced) at the
    /// head of the batches, to be written again: the edge waits for its acknowledgement.
    async fn write_batch(&mut self, mut batch: ReportBatch) -> Option<bool> {
        let unit = Some((batch.id, batch.edge_id.as_str(), batch.reports));
        let mut written = self.write(&batch.rows, unit, false).await;
        if let Err(WriteError::Refused(e)) = &written {
            tracing::warn!(edge_id = %batch.edge_id, batch_id = %batch.id, error = %e, "a report batch was refused; writing it row by row");
            written = self.write(&batch.rows, unit, true).await;
        }
        match written {
            Ok(written) => {
                let _ = batch.done.send(written.outcome);
                Some(written.given_up == 0)
            }
            Err(WriteError::Refused(e)) => {
                tracing::error!(edge_id = %batch.edge_id, batch_id = %batch.id, error = %e, "report batch refused by the database; not acknowledged");
                let _ = batch.done.send(BatchOutcome::Refused);
                Some(false)
            }
            Err(WriteError::Transient(e)) => {
                tracing::error!(edge_id = %batch.edge_id, batch_id = %batch.id, attempt = self.failures, error = %e, "report batch not written; held to write again");
                if batch.done.is_closed() {
                    // The session ended; the edge sends the batch again on its next one.
                    return None;
                }
                let before = batch.rows.len();
                batch.rows = coalesce::merge_rows(std::mem::take(&mut batch.rows));
                let folded = u64::try_from(before - batch.rows.len()).unwrap_or(u64::MAX);
                metrics::counter!(RECORDER_COALESCED_TOTAL).increment(folded);
                let mut pending = self.shared.lock();
                pending.coalesced_total = pending.coalesced_total.saturating_add(folded);
                pending.batch_rows += batch.rows.len();
                pending.batches.push_front(batch);
                None
            }
        }
    }

    /// One transaction: the batch id (for an edge's batch), the rows not written before, the
    /// counters they add to. Then collision detection over what was new. `row_by_row` isolates
    /// the rows PostgreSQL refuses (each in a savepoint): they are given up, the others written.
    async fn write(
        &mut self,
        rows: &[Row],
        batch: Option<(Uuid, &str, usize)>,
        row_by_row: bool,
    ) -> Result<Written, WriteError> {
        let started = Instant::now();
        let split = split_counts(rows);
        let rows = split.as_deref().unwrap_or(rows);
        let mut given_up = 0;
        let written = async {
            let mut tx = self.db.begin().await?;
            if let Some((id, edge_id, reports)) = batch
                && !store::claim_report_batch(&mut tx, id, edge_id, reports).await?
            {
                tx.commit().await?;
                return Ok::<_, sqlx::Error>(None);
            }
            let stored: HashSet<Uuid> = if row_by_row {
                let mut stored = HashSet::new();
                for row in rows {
                    let mut savepoint = sqlx::Connection::begin(&mut *tx).await?;
                    match store::insert_validations(&mut savepoint, std::slice::from_ref(row)).await
                    {
                        Ok(ids) => {
                            savepoint.commit().await?;
                            stored.extend(ids);
                        }
                        Err(e) if refused(&e) => {
                            savepoint.rollback().await?;
                            given_up += 1;
                            tracing::error!(
                                count = row.count,
                                code = row.result_code,
                                "validation refused by the database; given up"
                            );
                        }
                        Err(e) => return Err(e),
                    }
                }
                stored
            } else {
                store::insert_validations(&mut tx, rows)
                    .await?
                    .into_iter()
                    .collect()
            };
            let fresh: Vec<&Row> = rows.iter().filter(|r| stored.contains(&r.id)).collect();
            count_usage(&mut tx, &fresh).await?;
            tx.commit().await?;
            Ok(Some(fresh))
        }
        .await;
        let fresh = match written {
            Ok(fresh) => fresh,
            Err(e) => {
                metrics::counter!(RECORDER_STORE_FAILURES_TOTAL).increment(1);
                let e = WriteError::from(e);
                if matches!(e, WriteError::Transient(_)) {
                    self.failures += 1;
                    self.shared.lock().overloaded = true;
                }
                return Err(e);
            }
        };
        self.failures = 0;
        {
            let mut pending = self.shared.lock();
            if pending.coalesced.is_empty() && pending.queue.len() < self.shared.limits.queue {
                pending.overloaded = false;
            }
        }
        if given_up > 0 {
            metrics::counter!(RECORDER_STORE_FAILURES_TOTAL).increment(given_up);
        }
        metrics::histogram!(RECORDER_BATCH_SIZE).record(rows.len() as f64);
        metrics::histogram!(RECORDER_FLUSH_SECONDS).record(started.elapsed().as_secs_f64());
        if batch.is_some() {
            self.prune_batch_ids().await;
        }
        let Some(fresh) = fresh else {
            return Ok(Written {
                outcome: BatchOutcome::AlreadyStored,
                given_up,
            });
        };
        self.detect_collisions(&fresh).await;
        Ok(Written {
            outcome: BatchOutcome::Stored,
            given_up,
        })
    }

    /// Forgets edge batch ids past [`BATCH_IDS_KEPT`], at most once per [`PRUNE_EVERY`].
    async fn prune_batch_ids(&mut self) {
        if self.pruned_at.is_some_and(|at| at.elapsed() < PRUNE_EVERY) {
            return;
        }
        self.pruned_at = Some(Instant::now());
        if let Err(e) =
            store::forget_report_batches_before(&self.db, Utc::now() - BATCH_IDS_KEPT).await
        {
            tracing::warn!(error = %e, "old report batch ids not pruned; trying again later");
        }
    }

    /// Feeds each license's new observations to its window, oldest first (edge reports may
    /// arrive late or interleaved), and records the episodes that open.
    async fn detect_collisions(&mut self, fresh: &[&Row]) {
        let mut by_license: HashMap<Uuid, Vec<Observation<'_>>> = HashMap::new();
        for r in fresh {
            if let (Some(license), Some(ip)) = (r.license_id, r.ip) {
                by_license.entry(license).or_default().push((
                    ip,
                    r.validated_at,
                    r.answered_by.as_str(),
                ));
            }
        }
        for (license, mut seen) in by_license {
            seen.sort_by_key(|(_, at, _)| *at);
            let Some(episode) = self.observe(license, &seen).await else {
                continue;
            };
            if let Err(e) = record_collision(&self.db, license, &episode).await {
                // The validations are stored; only this episode's record is missing.
                metrics::counter!(RECORDER_STORE_FAILURES_TOTAL).increment(1);
                tracing::error!(%license, error = %e, "collision episode not recorded");
            }
        }
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

/// Rows whose count exceeds the column's `integer`, split into several (new ids for the extra
/// ones); `None` when none does (almost always).
fn split_counts(rows: &[Row]) -> Option<Vec<Row>> {
    const MAX: u64 = i32::MAX as u64;
    if rows.iter().all(|r| r.count <= MAX) {
        return None;
    }
    let mut split = Vec::with_capacity(rows.len() + 1);
    for row in rows {
        let mut row = row.clone();
        while row.count > MAX {
            split.push(Row {
                id: Uuid::now_v7(),
                count: MAX,
                ..row.clone()
            });
            row.count -= MAX;
        }
        split.push(row);
    }
    Some(split)
}

/// Counters of licenses, bindings and the daily usage log — a row counting as `count`
/// validations; the first validation of a license on a day also writes its `license.validated`
/// audit row (validations are audited in aggregate). A row without a license adds to none; one
/// without an address (several coalesced) adds to its license but to no binding.
async fn count_usage(conn: &mut PgConnection, rows: &[&Row]) -> sqlx::Result<()> {
    let (days, bindings) = usage_of(rows);
    let first_of_day = store::add_usage(&mut *conn, &days, &bindings).await?;
    for (license_id, usage_date) in first_of_day {
        let event = AuditEvent::new("license.validated", "license", license_id)
            .meta("usage_date", usage_date)
            .meta(
                "aggregate",
                "first validation of the day; counts in license_usage_log",
            );
        audit::record(&mut *conn, Actor::System, None, event).await?;
    }
    Ok(())
}

/// What rows add to each license's day and each bound address (successful validations only).
fn usage_of(rows: &[&Row]) -> (Vec<store::DayUsage>, Vec<store::BindingUsage>) {
    let mut days: HashMap<(Uuid, chrono::NaiveDate), store::DayUsage> = HashMap::new();
    let mut bindings: HashMap<(Uuid, IpAddr), store::BindingUsage> = HashMap::new();
    for r in rows {
        let Some(license_id) = r.license_id else {
            continue;
        };
        let count = i64::try_from(r.count).unwrap_or(i64::MAX);
        let date = r.validated_at.date_naive();
        let day = days
            .entry((license_id, date))
            .or_insert_with(|| store::DayUsage {
                license_id,
                date,
                validations: 0,
                successes: 0,
                last_ip: None,
                last_at: r.validated_at,
            });
        day.validations += count;
        if r.valid {
            day.successes += count;
        }
        if day.last_at <= r.validated_at {
            day.last_at = r.validated_at;
            day.last_ip = r.ip.or(day.last_ip);
        }
        if let (true, Some(ip)) = (r.valid, r.ip) {
            let binding = bindings
                .entry((license_id, ip))
                .or_insert_with(|| store::BindingUsage {
                    license_id,
                    ip,
                    validations: 0,
                    last_at: r.validated_at,
                });
            binding.validations += count;
            binding.last_at = binding.last_at.max(r.validated_at);
        }
    }
    (
        days.into_values().collect(),
        bindings.into_values().collect(),
    )
}

/// Stores an episode, counts it on the license, and revokes the license past its threshold —
/// through the licensing service, as an administrator's revocation: the outbox row that carries
/// it to the edges and its audit row, by the system.
async fn record_collision(
    db: &PgPool,
    license: Uuid,
    episode: &Episode,
) -> crate::http::Result<()> {
    let mut tx = db.begin().await?;
    let Some(counted) = store::count_collision(&mut tx, license).await? else {
        return Ok(()); // deleted meanwhile
    };
    let threshold = revocation_threshold(&counted);
    let revoke = counted.status == "active"
        && threshold.is_some_and(|t| i64::from(counted.collision_count) > t);
    store::insert_collision(
        &mut tx,
        &store::NewCollision {
            license_id: license,
            ips: &episode.ips,
            window_start: episode.window_start,
            window_end: episode.window_end,
            detected_by: &episode.detected_by,
            auto_revoked: revoke,
        },
    )
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
        .meta("collision_count", counted.collision_count);
    audit::record(&mut tx, Actor::System, None, event).await?;
    if revoke {
        let reason = format!(
            "automatic: {} collisions (threshold {})",
            counted.collision_count,
            threshold.unwrap_or(0)
        );
        service::revoke_automatically(&mut tx, license, reason).await?;
        tracing::warn!(%license, collisions = counted.collision_count, "license revoked automatically for collisions");
    }
    tx.commit().await?;
    Ok(())
}

/// Past how many collisions a license is revoked: its product's threshold, else the global one
/// while `licensing.auto_revoke_on_collision` is on; `None` never.
fn revocation_threshold(counted: &store::CollisionCount) -> Option<i64> {
    counted.product_threshold.map(i64::from).or_else(|| {
        let on = counted
            .global_auto_revoke
            .as_ref()
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false);
        on.then(|| {
            counted
                .global_threshold
                .as_ref()
                .and_then(serde_json::Value::as_i64)
        })
        .flatten()
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn counted(
        product: Option<i32>,
        global: Option<i64>,
        auto: Option<bool>,
    ) -> store::CollisionCount {
        store::CollisionCount {
            status: "active".to_owned(),
            collision_count: 3,
            product_threshold: product,
            global_threshold: global.map(|t| json!(t)),
            global_auto_revoke: auto.map(|on| json!(on)),
        }
    }

    #[test]
    fn the_products_threshold_wins_and_the_global_one_applies_only_when_switched_on() {
        assert_eq!(
            revocation_threshold(&counted(Some(5), Some(1), Some(true))),
            Some(5)
        );
        assert_eq!(
            revocation_threshold(&counted(None, Some(2), Some(true))),
            Some(2)
        );
        assert_eq!(
            revocation_threshold(&counted(None, Some(2), Some(false))),
            None
        );
        assert_eq!(revocation_threshold(&counted(None, Some(2), None)), None);
        assert_eq!(revocation_threshold(&counted(None, None, Some(true))), None);
    }

    fn row(license: Option<u128>, ip: Option<u8>, valid: bool, count: u64, minute: i64) -> Row {
        Row {
            id: Uuid::now_v7(),
            license_id: license.map(Uuid::from_u128),
            key_hash: None,
            ip: ip.map(|n| IpAddr::from([192, 0, 2, n])),
            device_info: None,
            result_code: if valid { "VALID" } else { "LICENSE_EXPIRED" },
            valid,
            answered_by: "central".to_owned(),
            region: None,
            validated_at: DateTime::from_timestamp(1_790_000_000 + minute * 60, 0).unwrap(),
            count,
        }
    }

    #[test]
    fn a_coalesced_row_counts_as_its_count_on_the_license_and_the_binding() {
        let rows = [
            row(Some(1), Some(1), true, 40, 0),
            row(Some(1), Some(1), true, 2, 1),
            row(Some(1), None, true, 7, 2),
            row(Some(1), Some(2), false, 5, 3),
            row(None, Some(1), false, 100, 0),
        ];
        let refs: Vec<&Row> = rows.iter().collect();
        let (days, bindings) = usage_of(&refs);
        assert_eq!(
            days.len(),
            1,
            "one license, one day; no license counts on none"
        );
        let day = &days[0];
        assert_eq!((day.validations, day.successes), (54, 49));
        assert_eq!(day.last_at, rows[3].validated_at);
        assert_eq!(day.last_ip, rows[3].ip);
        // Only successful validations from a known address reach a binding.
        assert_eq!(bindings.len(), 1);
        assert_eq!(
            (bindings[0].ip, bindings[0].validations),
            (rows[0].ip.unwrap(), 42)
        );
        assert_eq!(bindings[0].last_at, rows[1].validated_at);
    }
}
