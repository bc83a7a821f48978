//! The edge's side of replication: one long-lived QUIC connection to central (mutual TLS) that
//! feeds the [`Store`](crate::store::Store), carries bind requests for new IPs, and delivers the
//! validation reports.
//!
//! [`Replicator::run`] owns the connection's life: connect (with a timeout), run a session until
//! it ends, wait with exponential backoff and jitter, connect again with the last applied
//! sequence so central resumes rather than resends everything. Validations reach it only through
//! the [`Link`] (binds) and the report queue, never by waiting on it: the hot path reads memory.
//! On shutdown it keeps the connection (or makes one) just long enough for central to
//! acknowledge the buffered reports, within `EDGE_SHUTDOWN_FLUSH_MS`.

mod session;
pub mod tls;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

use anyhow::Context;
use celaest_protocol::replication::{BindOutcome, ValidationReport};
use ring::rand::{SecureRandom, SystemRandom};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{EdgeState, reports::Outbox};

/// Bind requests waiting for the session at most; beyond it a validation gets the offline policy.
const BIND_QUEUE: usize = 1024;

/// Where the replication connection stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionState {
    /// No connection (start-up, or between attempts).
    Disconnected,
    /// Connecting (QUIC + TLS handshake, then `Hello`).
    Connecting,
    /// Welcomed by central, receiving the snapshot or the changes missed.
    Syncing,
    /// Caught up with central and following its changes.
    Live,
    /// Central refused this edge (e.g. an incompatible protocol version).
    Refused,
}

impl ConnectionState {
    pub const ALL: [ConnectionState; 5] = [
        ConnectionState::Disconnected,
        ConnectionState::Connecting,
        ConnectionState::Syncing,
        ConnectionState::Live,
        ConnectionState::Refused,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Disconnected => "disconnected",
            ConnectionState::Connecting => "connecting",
            ConnectionState::Syncing => "syncing",
            ConnectionState::Live => "live",
            ConnectionState::Refused => "refused",
        }
    }

    fn from_u8(raw: u8) -> Self {
        Self::ALL
            .get(usize::from(raw))
            .copied()
            .unwrap_or(ConnectionState::Disconnected)
    }

    fn to_u8(self) -> u8 {
        match self {
            ConnectionState::Disconnected => 0,
            ConnectionState::Connecting => 1,
            ConnectionState::Syncing => 2,
            ConnectionState::Live => 3,
            ConnectionState::Refused => 4,
        }
    }
}

/// A validation's request that central bind an IP.
#[derive(Debug)]
pub struct BindRequest {
    license_id: Uuid,
    ip: IpAddr,
    device_info: Option<String>,
    reply: oneshot::Sender<BindOutcome>,
}

/// How a bind request ended, for the validation that asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindReply {
    Outcome(BindOutcome),
    /// Central did not answer within the deadline.
    Timeout,
    /// Not connected to central.
    Unavailable,
}

/// What validations see of the replication connection.
#[derive(Debug)]
pub struct Link {
    state: AtomicU8,
    binds: mpsc::Sender<BindRequest>,
}

impl Link {
    /// A link and the receiving end of its bind requests (for the [`Replicator`]).
    pub fn new() -> (Self, mpsc::Receiver<BindRequest>) {
        let (binds, rx) = mpsc::channel(BIND_QUEUE);
        let link = Self {
            state: AtomicU8::new(ConnectionState::Disconnected.to_u8()),
            binds,
        };
        (link, rx)
    }

    pub fn state(&self) -> ConnectionState {
        ConnectionState::from_u8(self.state.load(Ordering::Acquire))
    }

    fn set_state(&self, state: ConnectionState) {
        self.state.store(state.to_u8(), Ordering::Release);
    }

    /// Asks central to bind `ip` to a license, waiting at most `deadline` for the answer.
    pub async fn bind(
        &self,
        license_id: Uuid,
        ip: IpAddr,
        device_info: Option<String>,
        deadline: Duration,
    ) -> BindReply {
        // Not worth the wait when central is known to be unreachable.
        if !matches!(
            self.state(),
            ConnectionState::Syncing | ConnectionState::Live
        ) {
            return BindReply::Unavailable;
        }
        let (reply, answer) = oneshot::channel();
        let request = BindRequest {
            license_id,
            ip,
            device_info,
            reply,
        };
        if self.binds.try_send(request).is_err() {
            return BindReply::Unavailable;
        }
        match tokio::time::timeout(deadline, answer).await {
            Ok(Ok(outcome)) => BindReply::Outcome(outcome),
            // The session ended before central answered.
            Ok(Err(_)) => BindReply::Unavailable,
            Err(_) => BindReply::Timeout,
        }
    }
}

/// The receiving ends the [`Replicator`] consumes: made with the state, handed to it at start.
#[derive(Debug)]
pub struct ReplicationInputs {
    pub(crate) binds: mpsc::Receiver<BindRequest>,
    pub(crate) reports: mpsc::UnboundedReceiver<ValidationReport>,
}

/// How a session ended.
#[derive(Debug)]
enum End {
    /// Shutdown: reports flushed (or the flush deadline passed) and the connection closed.
    Shutdown,
    /// Central refused this edge.
    Refused,
}

/// Exponential backoff with equal jitter: half the delay fixed, half random, so that edges that
/// lost central together do not all come back at the same instant.
struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
    rng: SystemRandom,
}

impl Backoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max,
            next: min,
            rng: SystemRandom::new(),
        }
    }

    fn delay(&mut self) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        let half = base / 2;
        let span = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        let mut bytes = [0u8; 8];
        let random = self
            .rng
            .fill(&mut bytes)
            .map_or(0, |()| u64::from_le_bytes(bytes));
        half + Duration::from_millis(random % span.saturating_add(1))
    }

    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// The replication client task.
pub struct Replicator {
    edge: EdgeState,
    binds: mpsc::Receiver<BindRequest>,
    reports: mpsc::UnboundedReceiver<ValidationReport>,
    outbox: Outbox,
    /// Set when a session catches up with central; resets the backoff.
    reached_live: bool,
}

impl Replicator {
    pub fn new(edge: EdgeState, inputs: ReplicationInputs) -> Self {
        let outbox = Outbox::new(edge.config.reports.batch);
        Self {
            edge,
            binds: inputs.binds,
            reports: inputs.reports,
            outbox,
            reached_live: false,
        }
    }

    /// Runs until `shutdown` is cancelled and the buffered reports are delivered (or the flush
    /// deadline passes).
    pub async fn run(mut self, shutdown: CancellationToken) {
        let settings = self.edge.config.replication;
        let mut backoff = Backoff::new(settings.reconnect_min, settings.reconnect_max);
        let mut client: Option<quinn::ClientConfig> = None;
        let mut flush_deadline: Option<Instant> = None;
        loop {
            if shutdown.is_cancelled() {
                let deadline = *flush_deadline.get_or_insert_with(|| {
                    Instant::now() + self.edge.config.reports.shutdown_flush
                });
                if self.edge.reports.buffered() == 0 || Instant::now() >= deadline {
                    break;
                }
            }
            self.edge.link.set_state(ConnectionState::Connecting);
            let mut connect_timeout = settings.connect_timeout;
            if let Some(deadline) = flush_deadline {
                connect_timeout = connect_timeout.min(deadline - Instant::now());
            }
            let attempt = tokio::time::timeout(connect_timeout, self.connect(&mut client)).await;
            let end = match attempt {
                Ok(Ok((endpoint, connection))) => {
                    tracing::info!(central = %self.edge.config.central_addr, "connected to central");
                    let end = self
                        .session(&endpoint, connection, &shutdown, &mut flush_deadline)
                        .await;
                    self.session_ended();
                    end
                }
                Ok(Err(e)) => Err(e),
                Err(_) => Err(anyhow::anyhow!(
                    "no connection within {} ms",
                    connect_timeout.as_millis()
                )),
            };
            match end {
                Ok(End::Shutdown) => break,
                Ok(End::Refused) => self.edge.link.set_state(ConnectionState::Refused),
                Err(e) => {
                    tracing::warn!(error = format!("{e:#}"), central = %self.edge.config.central_addr, "replication connection lost or not made");
                    self.edge.link.set_state(ConnectionState::Disconnected);
                }
            }
            if std::mem::take(&mut self.reached_live) {
                backoff.reset();
            }
            let mut delay = backoff.delay();
            if let Some(deadline) = flush_deadline {
                // Shutting down: retry quickly while the flush deadline allows.
                delay = settings
                    .reconnect_min
                    .min(deadline.saturating_duration_since(Instant::now()));
            }
            self.wait(delay, &shutdown).await;
        }
        self.edge.link.set_state(ConnectionState::Disconnected);
        self.edge.store.set_live(false);
        let undelivered = self.edge.reports.buffered();
        if undelivered > 0 {
            tracing::warn!(
                undelivered,
                "shutting down with validation reports central did not acknowledge"
            );
        }
    }

    /// Waits between attempts; bind requests that arrive meanwhile are refused at once.
    async fn wait(&mut self, delay: Duration, shutdown: &CancellationToken) {
        let until = Instant::now() + delay;
        loop {
            tokio::select! {
                () = tokio::time::sleep_until(until) => return,
                () = shutdown.cancelled(), if !shutdown.is_cancelled() => return,
                // Dropping the request drops its reply: the validation applies the offline policy.
                Some(_) = self.binds.recv() => {}
            }
        }
    }

    /// Resolves central's address and opens a connection to it.
    async fn connect(
        &self,
        client: &mut Option<quinn::ClientConfig>,
    ) -> anyhow::Result<(quinn::Endpoint, quinn::Connection)> {
        let config = match client {
            Some(config) => config.clone(),
            None => client
                .insert(tls::client_config(&self.edge.config.tls)?)
                .clone(),
        };
        let central = self.edge.config.central_addr.as_str();
        let addr = tokio::net::lookup_host(central)
            .await
            .with_context(|| format!("resolving {central}"))?
            .next()
            .with_context(|| format!("{central} resolves to no address"))?;
        let local: SocketAddr = if addr.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let mut endpoint = quinn::Endpoint::client(local)?;
        endpoint.set_default_client_config(config);
        let connection = endpoint
            .connect(addr, &self.edge.config.tls.server_name)?
            .await?;
        Ok((endpoint, connection))
    }

    /// What every end of a session leaves behind: not live, reports to resend, binds abandoned.
    fn session_ended(&mut self) {
        self.edge.store.set_live(false);
        self.outbox.connection_lost();
        self.edge.metrics.reconnect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling_with_jitter_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(1_000));
        let delays: Vec<Duration> = (0..6).map(|_| backoff.delay()).collect();
        for (delay, base) in delays.iter().zip([100u64, 200, 400, 800, 1_000, 1_000]) {
            assert!(
                *delay >= Duration::from_millis(base / 2) && *delay <= Duration::from_millis(base),
                "{delay:?} for a base of {base} ms"
            );
        }
        backoff.reset();
        assert!(backoff.delay() <= Duration::from_millis(100));
    }

    #[test]
    fn connection_states_round_trip_through_their_number() {
        for state in ConnectionState::ALL {
            assert_eq!(ConnectionState::from_u8(state.to_u8()), state);
        }
    }
}
