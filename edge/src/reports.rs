//! Validation reports on their way to central: the bounded queue validations push into, and the
//! [`Outbox`] that turns it into acknowledged batches.
//!
//! Delivery is at least once: a batch leaves the outbox only when central acknowledges its id,
//! and every batch not acknowledged when a connection ends is sent again on the next one. Each
//! report carries its own id, so central stores it once however often it arrives. The bound
//! (`EDGE_REPORT_BUFFER`) counts every report from the moment it is queued until its batch is
//! acknowledged; past it new reports are dropped and counted, never waited for.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::Bytes;
use celaest_protocol::replication::{EdgeFrame, FrameError, ValidationReport, encode};

/// A batch that could not be encoded: its reports are given up rather than retried forever.
#[derive(Debug, thiserror::Error)]
#[error("{count} reports dropped: {error}")]
pub struct BatchDropped {
    pub count: usize,
    pub error: FrameError,
}
use tokio::sync::mpsc;
use uuid::Uuid;

/// Batches sent and not yet acknowledged, at most: keeps a slow central from being flooded and
/// bounds what a reconnection sends again.
const IN_FLIGHT: usize = 4;
/// Sealed batches held at most; beyond it the queue is not drained (its reports stay counted).
const SEALED_MAX: usize = 16;
/// A batch is sealed before its frame could approach the protocol's frame limit.
const BATCH_BYTES_MAX: usize = 1024 * 1024;
/// A report's encoded size without its device text, rounded up (ids, hash, IP, code, timestamp).
const REPORT_FIXED_BYTES: usize = 128;

/// Where validations leave their reports. Pushing never waits.
#[derive(Debug)]
pub struct ReportQueue {
    tx: mpsc::UnboundedSender<ValidationReport>,
    buffered: AtomicUsize,
    dropped: AtomicU64,
    capacity: usize,
}

impl ReportQueue {
    /// A queue holding at most `capacity` unacknowledged reports, and its receiving end.
    pub fn new(capacity: usize) -> (Self, mpsc::UnboundedReceiver<ValidationReport>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let queue = Self {
            tx,
            buffered: AtomicUsize::new(0),
            dropped: AtomicU64::new(0),
            capacity,
        };
        (queue, rx)
    }

    /// Queues a report, or drops it (counted) when the buffer is full.
    pub fn push(&self, report: ValidationReport) {
        if self.buffered.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            self.buffered.fetch_sub(1, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if self.tx.send(report).is_err() {
            // No replication task (an edge serving HTTP only, as in tests): nowhere to deliver.
            self.buffered.fetch_sub(1, Ordering::AcqRel);
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Reports central acknowledged (or that were given up): they no longer count.
    pub fn settled(&self, count: usize) {
        // Saturating: never below zero even if a count were settled twice.
        let _ = self
            .buffered
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(count))
            });
    }

    /// Reports queued or awaiting acknowledgement.
    pub fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Acquire)
    }

    /// Reports dropped because the buffer was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Batch {
    id: Uuid,
    count: usize,
    /// The encoded `Reports` frame, kept to be sent again as it is.
    frame: Bytes,
    sent: bool,
}

/// Report batching and acknowledgement, across connections.
#[derive(Debug)]
pub struct Outbox {
    batch_max: usize,
    staged: Vec<ValidationReport>,
    staged_bytes: usize,
    batches: VecDeque<Batch>,
}

impl Outbox {
    /// Batches of at most `batch_max` reports.
    pub fn new(batch_max: usize) -> Self {
        Self {
            batch_max: batch_max.max(1),
            staged: Vec::new(),
            staged_bytes: 0,
            batches: VecDeque::new(),
        }
    }

    /// Whether more reports may be taken from the queue now.
    pub fn has_room(&self) -> bool {
        self.batches.len() < SEALED_MAX
    }

    /// Adds a report to the batch being formed, sealing it once full.
    pub fn stage(&mut self, report: ValidationReport) -> Result<(), BatchDropped> {
        self.staged_bytes +=
            REPORT_FIXED_BYTES + report.device_info.as_ref().map_or(0, String::len);
        self.staged.push(report);
        if self.staged.len() >= self.batch_max || self.staged_bytes >= BATCH_BYTES_MAX {
            self.seal()?;
        }
        Ok(())
    }

    /// Seals the batch being formed, if it has any report. On error (a frame that cannot be
    /// encoded) the reports are given up and their count returned in the error.
    pub fn seal(&mut self) -> Result<(), BatchDropped> {
        if self.staged.is_empty() {
            return Ok(());
        }
        let reports = std::mem::take(&mut self.staged);
        self.staged_bytes = 0;
        let count = reports.len();
        let id = Uuid::now_v7();
        let frame = encode(&EdgeFrame::Reports {
            batch_id: id,
            reports,
        })
        .map_err(|error| BatchDropped { count, error })?;
        self.batches.push_back(Batch {
            id,
            count,
            frame: Bytes::from(frame),
            sent: false,
        });
        Ok(())
    }

    /// The next batch frame to send, oldest first, while fewer than [`IN_FLIGHT`] await an
    /// acknowledgement. Marks it sent.
    pub fn next_to_send(&mut self) -> Option<Bytes> {
        let in_flight = self.batches.iter().filter(|b| b.sent).count();
        if in_flight >= IN_FLIGHT {
            return None;
        }
        let batch = self.batches.iter_mut().find(|b| !b.sent)?;
        batch.sent = true;
        Some(batch.frame.clone())
    }

    /// Central stored the batch `id`: returns how many reports it held (`None` for an id not
    /// awaited, e.g. a duplicate acknowledgement).
    pub fn ack(&mut self, id: Uuid) -> Option<usize> {
        let at = self.batches.iter().position(|b| b.id == id)?;
        self.batches.remove(at).map(|b| b.count)
    }

    /// The connection ended: every unacknowledged batch goes again on the next one.
    pub fn connection_lost(&mut self) {
        for batch in &mut self.batches {
            batch.sent = false;
        }
    }

    /// Reports staged or in batches not yet acknowledged.
    pub fn pending(&self) -> usize {
        self.staged.len() + self.batches.iter().map(|b| b.count).sum::<usize>()
    }

    /// Nothing staged and nothing awaiting acknowledgement.
    pub fn is_empty(&self) -> bool {
        self.staged.is_empty() && self.batches.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use celaest_protocol::{ValidationCode, replication::decode};
    use chrono::Utc;

    use super::*;

    fn report(n: u8) -> ValidationReport {
        ValidationReport {
            id: Uuid::now_v7(),
            license_id: None,
            key_hash: None,
            ip: std::net::IpAddr::from([10, 0, 0, n]),
            device_info: None,
            code: ValidationCode::InvalidKeyFormat,
            validated_at: Utc::now(),
        }
    }

    fn batch_of(frame: &Bytes) -> (Uuid, Vec<ValidationReport>) {
        match decode::<EdgeFrame>(frame).unwrap().unwrap().0 {
            EdgeFrame::Reports { batch_id, reports } => (batch_id, reports),
            other => panic!("not a batch: {other:?}"),
        }
    }

    #[test]
    fn the_queue_drops_and_counts_beyond_its_capacity() {
        let (queue, mut rx) = ReportQueue::new(2);
        for n in 0..5 {
            queue.push(report(n));
        }
        assert_eq!((queue.buffered(), queue.dropped()), (2, 3));
        assert!(rx.try_recv().is_ok());
        // Taking a report out does not free its place: only an acknowledgement does.
        queue.push(report(9));
        assert_eq!(queue.dropped(), 4);
        queue.settled(1);
        queue.push(report(9));
        assert_eq!((queue.buffered(), queue.dropped()), (2, 4));
    }

    #[test]
    fn batches_seal_by_size_and_leave_only_when_acknowledged() {
        let mut outbox = Outbox::new(2);
        for n in 0..5 {
            outbox.stage(report(n)).unwrap();
        }
        assert_eq!(outbox.pending(), 5);
        outbox.seal().unwrap();
        let first = outbox.next_to_send().unwrap();
        let second = outbox.next_to_send().unwrap();
        let third = outbox.next_to_send().unwrap();
        assert!(outbox.next_to_send().is_none());
        let (id1, reports1) = batch_of(&first);
        assert_eq!(reports1.len(), 2);
        assert_eq!(batch_of(&third).1.len(), 1);

        assert_eq!(outbox.ack(id1), Some(2));
        assert_eq!(outbox.ack(id1), None, "a duplicate acknowledgement");
        assert_eq!(outbox.pending(), 3);

        // The connection drops before the others are acknowledged: they go again, same ids.
        outbox.connection_lost();
        let again = outbox.next_to_send().unwrap();
        assert_eq!(again, second);
        let (id2, _) = batch_of(&again);
        assert_eq!(outbox.ack(id2), Some(2));
        let (id3, _) = batch_of(&outbox.next_to_send().unwrap());
        assert_eq!(outbox.ack(id3), Some(1));
        assert!(outbox.is_empty());
    }

    #[test]
    fn no_more_than_the_window_is_in_flight() {
        let mut outbox = Outbox::new(1);
        for n in 0..10 {
            outbox.stage(report(n)).unwrap();
        }
        let sent: Vec<Bytes> = std::iter::from_fn(|| outbox.next_to_send()).collect();
        assert_eq!(sent.len(), IN_FLIGHT);
        let (id, _) = batch_of(&sent[0]);
        outbox.ack(id);
        assert!(outbox.next_to_send().is_some());
    }

    #[test]
    fn big_device_texts_seal_a_batch_early() {
        let mut outbox = Outbox::new(5_000);
        let mut big = report(1);
        big.device_info = Some("x".repeat(2_000));
        for _ in 0..600 {
            outbox.stage(big.clone()).unwrap();
        }
        let frame = outbox.next_to_send().unwrap();
        assert!(frame.len() < celaest_protocol::replication::MAX_FRAME_LEN);
        assert!(batch_of(&frame).1.len() < 600);
    }
}
