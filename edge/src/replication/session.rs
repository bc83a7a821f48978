//! One connection's protocol, on the single bidirectional stream the edge opens: `Hello` →
//! `Welcome` (or `Refused`) → a snapshot in chunks or the changes after our sequence → changes
//! for as long as the connection lives; binds, report batches and progress the other way.
//!
//! Reading and writing each have their own task, joined to the session loop by channels, so that
//! the loop never blocks on a write while central waits for us to read (or the reverse): the
//! loop owns all protocol state (phase, pending binds, the outbox) and decides alone.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, anyhow, bail, ensure};
use bytes::Bytes;
use celaest_net::quic::read_frame;
use celaest_protocol::replication::{
    BindOutcome, CentralFrame, EdgeFrame, PROTOCOL_VERSION, Sync, encode,
};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::{ConnectionState, End, Replicator};
use crate::{reports::BatchDropped, store::Snapshot};

/// Central answers `Hello` within this, or the attempt is abandoned.
const WELCOME_TIMEOUT: Duration = Duration::from_secs(10);
/// Frames read ahead of the session loop.
const READ_AHEAD: usize = 16;
/// How long a graceful close waits for the last frames to be acknowledged.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

enum Phase {
    AwaitWelcome,
    /// Receiving a snapshot, built aside.
    Snapshot(Snapshot),
    /// Applying changes.
    Streaming,
}

struct Session {
    phase: Phase,
    /// Central's head when it welcomed us: applied up to it, the edge is caught up.
    head_seq: u64,
    live: bool,
    pending: HashMap<u64, oneshot::Sender<BindOutcome>>,
    next_request: u64,
}

impl Session {
    fn welcomed(&self) -> bool {
        !matches!(self.phase, Phase::AwaitWelcome)
    }
}

type Out = mpsc::UnboundedSender<Bytes>;

fn send(out: &Out, frame: &EdgeFrame) -> anyhow::Result<()> {
    let bytes = encode(frame)?;
    out.send(Bytes::from(bytes))
        .map_err(|_| anyhow!("the replication stream is closed"))
}

impl Replicator {
    /// Runs one connection until it fails, central refuses us, or shutdown has flushed.
    pub(super) async fn session(
        &mut self,
        endpoint: &quinn::Endpoint,
        connection: quinn::Connection,
        shutdown: &CancellationToken,
        flush_deadline: &mut Option<Instant>,
    ) -> anyhow::Result<End> {
        let (send_stream, recv_stream) = connection
            .open_bi()
            .await
            .context("opening the replication stream")?;
        let (out, out_rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(write_frames(send_stream, out_rx));
        let (frames_tx, mut frames) = mpsc::channel(READ_AHEAD);
        let reader = tokio::spawn(read_frames(recv_stream, frames_tx));

        let mut session = Session {
            phase: Phase::AwaitWelcome,
            head_seq: 0,
            live: false,
            pending: HashMap::new(),
            next_request: 0,
        };
        let result = self
            .drive(&out, &mut frames, shutdown, flush_deadline, &mut session)
            .await;
        // Pending binds are dropped with the session: their validations apply the offline policy.
        drop(session);
        drop(out);
        reader.abort();
        match &result {
            Ok(End::Shutdown) => {
                // Let the writer finish the stream, then close so central sees a clean goodbye.
                let _ = tokio::time::timeout(CLOSE_GRACE, writer).await;
                connection.close(0u32.into(), b"edge shutting down");
                let _ = tokio::time::timeout(CLOSE_GRACE, endpoint.wait_idle()).await;
            }
            Ok(End::Refused) => {
                writer.abort();
                connection.close(0u32.into(), b"refused");
            }
            Err(e) => {
                writer.abort();
                let reason = format!("{e:#}");
                connection.close(
                    1u32.into(),
                    reason
                        .get(..reason.len().min(64))
                        .unwrap_or_default()
                        .as_bytes(),
                );
            }
        }
        result
    }

    async fn drive(
        &mut self,
        out: &Out,
        frames: &mut mpsc::Receiver<anyhow::Result<CentralFrame>>,
        shutdown: &CancellationToken,
        flush_deadline: &mut Option<Instant>,
        session: &mut Session,
    ) -> anyhow::Result<End> {
        send(
            out,
            &EdgeFrame::Hello {
                protocol_version: PROTOCOL_VERSION,
                edge_id: self.edge.config.edge_id.clone(),
                region: self.edge.config.region.clone(),
                // None until this process holds a snapshot: central then sends one.
                last_seq: self.edge.store.applied_seq(),
            },
        )?;
        let welcome_by = Instant::now() + WELCOME_TIMEOUT;
        let interval = self.edge.config.reports.interval;
        let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            if session.welcomed() {
                if flush_deadline.is_some() {
                    // Shutting down: HTTP has stopped, take everything still queued.
                    while let Ok(report) = self.reports.try_recv() {
                        self.stage(report);
                    }
                    self.seal();
                }
                while let Some(batch) = self.outbox.next_to_send() {
                    out.send(batch)
                        .map_err(|_| anyhow!("the replication stream is closed"))?;
                }
            }
            let flushing = flush_deadline.is_some();
            if flushing && self.edge.reports.buffered() == 0 {
                return Ok(End::Shutdown);
            }
            let give_up_at = flush_deadline.unwrap_or(welcome_by);
            tokio::select! {
                frame = frames.recv() => {
                    let frame = frame.ok_or_else(|| anyhow!("the replication stream reader stopped"))??;
                    if let Some(end) = self.handle(frame, out, session)? {
                        return Ok(end);
                    }
                }
                Some(request) = self.binds.recv(), if session.welcomed() => {
                    let request_id = session.next_request;
                    session.next_request += 1;
                    send(out, &EdgeFrame::Bind {
                        request_id,
                        license_id: request.license_id,
                        ip: request.ip,
                        device_info: request.device_info,
                    })?;
                    session.pending.insert(request_id, request.reply);
                }
                Some(report) = self.reports.recv(), if session.welcomed() && self.outbox.has_room() => {
                    self.stage(report);
                }
                _ = tick.tick() => {
                    if session.welcomed() {
                        self.seal();
                    }
                    // Validations that stopped waiting (deadline passed) need no answer.
                    session.pending.retain(|_, reply| !reply.is_closed());
                }
                () = shutdown.cancelled(), if !flushing => {
                    *flush_deadline = Some(Instant::now() + self.edge.config.reports.shutdown_flush);
                }
                () = tokio::time::sleep_until(give_up_at), if flushing || !session.welcomed() => {
                    if flushing {
                        return Ok(End::Shutdown);
                    }
                    bail!("no Welcome from central within {} s", WELCOME_TIMEOUT.as_secs());
                }
            }
        }
    }

    /// Applies one frame from central; `Some` when it ends the session.
    fn handle(
        &mut self,
        frame: CentralFrame,
        out: &Out,
        session: &mut Session,
    ) -> anyhow::Result<Option<End>> {
        match frame {
            CentralFrame::Welcome {
                protocol_version,
                head_seq,
                sync,
            } => {
                ensure!(!session.welcomed(), "a second Welcome");
                ensure!(
                    protocol_version == PROTOCOL_VERSION,
                    "central welcomed us with protocol {protocol_version}, this edge speaks {PROTOCOL_VERSION}"
                );
                session.head_seq = head_seq;
                self.edge.link.set_state(ConnectionState::Syncing);
                session.phase = match sync {
                    Sync::Resume => {
                        ensure!(
                            self.edge.store.is_ready(),
                            "central resumed an edge that holds no state"
                        );
                        tracing::info!(
                            from = ?self.edge.store.applied_seq(),
                            head_seq,
                            "resuming replication"
                        );
                        Phase::Streaming
                    }
                    Sync::Snapshot { snapshot_seq } => {
                        tracing::info!(snapshot_seq, head_seq, "receiving a snapshot");
                        Phase::Snapshot(Snapshot::new())
                    }
                };
                self.check_caught_up(session);
            }
            CentralFrame::Refused {
                reason,
                supported_version,
            } => {
                ensure!(!session.welcomed(), "refused after being welcomed");
                tracing::error!(
                    %reason,
                    supported_version,
                    edge_version = PROTOCOL_VERSION,
                    "central refused this edge; retrying later"
                );
                return Ok(Some(End::Refused));
            }
            CentralFrame::SnapshotChunk { licenses, products } => {
                let Phase::Snapshot(snapshot) = &mut session.phase else {
                    bail!("a snapshot chunk outside a snapshot");
                };
                snapshot.add_chunk(licenses, products);
            }
            CentralFrame::SnapshotEnd { seq } => {
                let Phase::Snapshot(snapshot) =
                    std::mem::replace(&mut session.phase, Phase::Streaming)
                else {
                    bail!("a snapshot end outside a snapshot");
                };
                let licenses = snapshot.len();
                self.edge.store.install(snapshot, seq);
                tracing::info!(seq, licenses, "snapshot installed");
                send(out, &EdgeFrame::Progress { applied_seq: seq })?;
                self.check_caught_up(session);
            }
            CentralFrame::Changes(changes) => {
                ensure!(
                    matches!(session.phase, Phase::Streaming),
                    "changes before the state they apply to"
                );
                // A gap ends the session; the next one resumes from what was applied.
                let applied = self.edge.store.apply(changes)?;
                send(
                    out,
                    &EdgeFrame::Progress {
                        applied_seq: applied,
                    },
                )?;
                self.check_caught_up(session);
            }
            CentralFrame::BindResult {
                request_id,
                outcome,
            } => {
                if let Some(reply) = session.pending.remove(&request_id) {
                    // The validation may have stopped waiting: nothing to do then.
                    let _ = reply.send(outcome);
                }
            }
            CentralFrame::ReportsAck { batch_id } => {
                if let Some(count) = self.outbox.ack(batch_id) {
                    self.edge.reports.settled(count);
                    tracing::debug!(%batch_id, count, "report batch acknowledged");
                }
            }
        }
        Ok(None)
    }

    /// Marks the edge live once it has applied everything central had when it welcomed us.
    fn check_caught_up(&mut self, session: &mut Session) {
        if session.live || !matches!(session.phase, Phase::Streaming) {
            return;
        }
        if self
            .edge
            .store
            .applied_seq()
            .is_some_and(|applied| applied >= session.head_seq)
        {
            session.live = true;
            self.reached_live = true;
            self.edge.store.set_live(true);
            self.edge.link.set_state(ConnectionState::Live);
            // Central binds again from now on; what was let through meanwhile is forgotten.
            self.edge.local.clear_provisional();
            tracing::info!(applied_seq = ?self.edge.store.applied_seq(), "caught up with central");
        }
    }

    fn stage(&mut self, report: celaest_protocol::replication::ValidationReport) {
        if let Err(dropped) = self.outbox.stage(report) {
            self.give_up(&dropped);
        }
    }

    fn seal(&mut self) {
        if let Err(dropped) = self.outbox.seal() {
            self.give_up(&dropped);
        }
    }

    fn give_up(&self, dropped: &BatchDropped) {
        tracing::error!(error = %dropped, "report batch dropped: it cannot be encoded");
        self.edge.reports.settled(dropped.count);
    }
}

/// Writes queued frames in order; finishes the stream when the session drops its sender.
async fn write_frames(
    mut stream: quinn::SendStream,
    mut frames: mpsc::UnboundedReceiver<Bytes>,
) -> anyhow::Result<()> {
    while let Some(frame) = frames.recv().await {
        stream.write_chunk(frame).await?;
    }
    stream.finish()?;
    // Wait until central has everything: closing the connection earlier would drop it.
    let _ = stream.stopped().await;
    Ok(())
}

/// Reads frames into the session loop until the stream ends or fails.
async fn read_frames(
    mut stream: quinn::RecvStream,
    frames: mpsc::Sender<anyhow::Result<CentralFrame>>,
) {
    loop {
        let next = read_frame(&mut stream).await;
        let last = !matches!(next, Ok(Some(_)));
        let item = next.and_then(|frame| {
            frame.ok_or_else(|| anyhow!("central closed the replication stream"))
        });
        if frames.send(item).await.is_err() || last {
            return;
        }
    }
}
