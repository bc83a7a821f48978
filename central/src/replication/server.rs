//! The QUIC listener edges connect to, and one session per edge.
//!
//! Mutual TLS: an edge must present a certificate issued by the deployment's CA. A session reads
//! the edge's `Hello`, refuses an incompatible protocol version, then either resumes from the
//! edge's sequence (when the outbox still holds what follows it) or streams a snapshot — read in
//! one repeatable-read transaction, in chunks — and from then on pushes every change in order.
//! `NOTIFY replication_log` wakes sessions; a one-second poll covers a lost notification. The edge's
//! bind requests are served under the license's row lock (central is the only writer) and its
//! validation reports go to the recorder, acknowledged once stored.

use std::{sync::Arc, time::Duration};

use celaest_net::quic::{self, read_frame};
use celaest_protocol::replication::{
    ALPN, BindOutcome, CentralFrame, EdgeFrame, PROTOCOL_VERSION, SNAPSHOT_CHUNK, Sync, encode,
};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::store;
use crate::{
    config::ReplicationConfig,
    licensing::{
        self,
        recorder::{BatchOutcome, ValidationRecord},
    },
    state::AppState,
};

const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
const POLL_EVERY: Duration = Duration::from_secs(1);
const CHANGES_PER_FRAME: i64 = 500;

/// The QUIC server configuration: TLS 1.3, client certificates required, no 0-RTT.
pub fn server_config(config: &ReplicationConfig) -> anyhow::Result<quinn::ServerConfig> {
    let provider = quic::crypto_provider();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(quic::root_store(&config.ca_path)?),
        provider.clone(),
    )
    .build()?;
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            quic::load_certs(&config.cert_path)?,
            quic::load_key(&config.key_path)?,
        )?;
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.max_early_data_size = 0;
    let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(quic::IDLE_TIMEOUT.try_into()?));
    server.transport_config(Arc::new(transport));
    Ok(server)
}

/// Opens the listener on the configured address.
pub fn listen(config: &ReplicationConfig) -> anyhow::Result<quinn::Endpoint> {
    Ok(quinn::Endpoint::server(
        server_config(config)?,
        config.addr,
    )?)
}

/// Serves edges until `shutdown`.
pub async fn run(state: AppState, endpoint: quinn::Endpoint, shutdown: CancellationToken) {
    let wake = spawn_listener(state.db.clone(), shutdown.clone());
    tracing::info!(addr = ?endpoint.local_addr().ok(), "replication listener started");
    loop {
        let incoming = tokio::select! {
            () = shutdown.cancelled() => break,
            incoming = endpoint.accept() => incoming,
        };
        let Some(incoming) = incoming else { break };
        let (state, wake, shutdown) = (state.clone(), wake.subscribe(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) = session(&state, incoming, wake, shutdown).await {
                tracing::warn!(error = %e, "edge session ended");
            }
        });
    }
    endpoint.close(0u32.into(), b"central is shutting down");
    endpoint.wait_idle().await;
}

/// Wakes sessions on every outbox commit.
fn spawn_listener(db: sqlx::PgPool, shutdown: CancellationToken) -> broadcast::Sender<()> {
    let (tx, _) = broadcast::channel(16);
    let sender = tx.clone();
    tokio::spawn(async move {
        loop {
            let listened = async {
                let mut listener = sqlx::postgres::PgListener::connect_with(&db).await?;
                listener.listen("replication_log").await?;
                loop {
                    listener.recv().await?;
                    let _ = sender.send(());
                }
                #[expect(unreachable_code, reason = "the loop only ends with an error")]
                Ok::<(), sqlx::Error>(())
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                result = listened => {
                    if let Err(e) = result {
                        tracing::warn!(error = %e, "outbox notifications lost; polling until they are back");
                    }
                }
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    });
    tx
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn session(
    state: &AppState,
    incoming: quinn::Incoming,
    wake: broadcast::Receiver<()>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let connection = incoming.await?;
    let address = connection.remote_address().to_string();
    let (mut send, mut recv) =
        tokio::time::timeout(HELLO_TIMEOUT, connection.accept_bi()).await??;
    let hello = tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut recv)).await??;
    let Some(EdgeFrame::Hello {
        protocol_version,
        edge_id,
        region,
        last_seq,
    }) = hello
    else {
        anyhow::bail!("the first frame from {address} was not a Hello");
    };
    if protocol_version != PROTOCOL_VERSION || !valid_name(&edge_id) || !valid_name(&region) {
        let reason = if protocol_version == PROTOCOL_VERSION {
            "edge id and region must be 1-64 characters [A-Za-z0-9_-]".to_owned()
        } else {
            format!("protocol version {protocol_version} is not supported")
        };
        send.write_all(&encode(&CentralFrame::Refused {
            reason,
            supported_version: PROTOCOL_VERSION,
        })?)
        .await?;
        send.finish()?;
        let _ = tokio::time::timeout(Duration::from_secs(2), send.stopped()).await;
        return Ok(());
    }
    store::edge_connected(
        &state.db,
        &edge_id,
        &region,
        &address,
        i32::from(protocol_version),
    )
    .await?;
    tracing::info!(%edge_id, %region, %address, ?last_seq, "edge connected");

    // One writer owns the stream; everything that answers the edge queues frames for it.
    let (out, mut queue) = mpsc::channel::<CentralFrame>(64);
    let writer = tokio::spawn(async move {
        while let Some(frame) = queue.recv().await {
            send.write_all(&encode(&frame)?).await?;
        }
        send.finish()?;
        Ok::<(), anyhow::Error>(())
    });

    let outcome = async {
        let cursor = start(state, last_seq, &out).await?;
        tokio::select! {
            result = push_changes(state, cursor, wake, &out) => result,
            result = serve_edge(state, &edge_id, &region, &mut recv, &out) => result,
            () = shutdown.cancelled() => Ok(()),
        }
    }
    .await;
    drop(out);
    let _ = tokio::time::timeout(Duration::from_secs(2), writer).await;
    store::edge_disconnected(&state.db, &edge_id).await?;
    tracing::info!(%edge_id, "edge disconnected");
    outcome
}

/// Resumes after `last_seq` when the outbox still holds what follows it, else streams a
/// snapshot. Returns the sequence the edge is at afterwards.
async fn start(
    state: &AppState,
    last_seq: Option<u64>,
    out: &mpsc::Sender<CentralFrame>,
) -> anyhow::Result<i64> {
    let (head, oldest) = store::bounds(&state.db).await?;
    if let Some(seq) = last_seq.and_then(|s| i64::try_from(s).ok())
        && seq <= head
        && (seq == head || oldest.is_some_and(|o| o <= seq + 1))
    {
        out.send(CentralFrame::Welcome {
            protocol_version: PROTOCOL_VERSION,
            head_seq: u64::try_from(head)?,
            sync: Sync::Resume,
        })
        .await?;
        return Ok(seq);
    }
    let mut tx = state.db.begin().await?;
    let head = store::snapshot_head(&mut tx).await?;
    let head_seq = u64::try_from(head)?;
    out.send(CentralFrame::Welcome {
        protocol_version: PROTOCOL_VERSION,
        head_seq,
        sync: Sync::Snapshot {
            snapshot_seq: head_seq,
        },
    })
    .await?;
    let mut products = store::snapshot_products(&mut tx).await?;
    let mut after = Uuid::nil();
    loop {
        let licenses =
            store::snapshot_licenses(&mut tx, after, i64::try_from(SNAPSHOT_CHUNK)?).await?;
        let Some(last) = licenses.last() else { break };
        after = last.id;
        let full = licenses.len() == SNAPSHOT_CHUNK;
        out.send(CentralFrame::SnapshotChunk {
            licenses,
            products: std::mem::take(&mut products),
        })
        .await?;
        if !full {
            break;
        }
    }
    if !products.is_empty() {
        out.send(CentralFrame::SnapshotChunk {
            licenses: Vec::new(),
            products,
        })
        .await?;
    }
    tx.rollback().await?;
    out.send(CentralFrame::SnapshotEnd { seq: head_seq })
        .await?;
    Ok(head)
}

/// Pushes every change after `cursor`, in order, as it commits.
async fn push_changes(
    state: &AppState,
    mut cursor: i64,
    mut wake: broadcast::Receiver<()>,
    out: &mpsc::Sender<CentralFrame>,
) -> anyhow::Result<()> {
    loop {
        let changes = store::changes_after(&state.db, cursor, CHANGES_PER_FRAME).await?;
        if let Some(last) = changes.last() {
            cursor = i64::try_from(last.seq)?;
            out.send(CentralFrame::Changes(changes)).await?;
            continue;
        }
        tokio::select! {
            _ = wake.recv() => {}
            () = tokio::time::sleep(POLL_EVERY) => {}
        }
    }
}

/// Answers what the edge asks: binds, report batches, progress.
async fn serve_edge(
    state: &AppState,
    edge_id: &str,
    region: &str,
    recv: &mut quinn::RecvStream,
    out: &mpsc::Sender<CentralFrame>,
) -> anyhow::Result<()> {
    while let Some(frame) = read_frame(recv).await? {
        match frame {
            EdgeFrame::Hello { .. } => anyhow::bail!("a second Hello"),
            EdgeFrame::Bind {
                request_id,
                license_id,
                ip,
                device_info,
            } => {
                // On a database failure nothing is answered: the edge's deadline applies its
                // offline policy rather than a wrong verdict.
                if let Some(outcome) = bind(state, license_id, ip, device_info.as_deref()).await {
                    out.send(CentralFrame::BindResult {
                        request_id,
                        outcome,
                    })
                    .await?;
                }
            }
            EdgeFrame::Reports { batch_id, reports } => {
                // Stored aside, so bind requests never wait behind a batch being written.
                let (state, out, edge_id, region) = (
                    state.clone(),
                    out.clone(),
                    edge_id.to_owned(),
                    region.to_owned(),
                );
                tokio::spawn(async move {
                    if let Err(e) =
                        store_reports(&state, &edge_id, &region, batch_id, reports, &out).await
                    {
                        tracing::warn!(%edge_id, error = %e, "report batch not acknowledged; the edge will resend it");
                    }
                });
            }
            EdgeFrame::Progress { applied_seq } => {
                store::edge_progress(&state.db, edge_id, i64::try_from(applied_seq)?, 0).await?;
            }
        }
    }
    Ok(())
}

/// Records a report batch, then acknowledges it (the edge keeps it until then). The recorder
/// stores the batch in one transaction with its id, so a batch sent again is acknowledged without
/// being counted twice; a batch not stored is not acknowledged and the edge sends it again.
async fn store_reports(
    state: &AppState,
    edge_id: &str,
    region: &str,
    batch_id: Uuid,
    reports: Vec<celaest_protocol::replication::ValidationReport>,
    out: &mpsc::Sender<CentralFrame>,
) -> anyhow::Result<()> {
    let count = i64::try_from(reports.len())?;
    let records = reports
        .into_iter()
        .map(|report| ValidationRecord::from_report(report, edge_id, Some(region)))
        .collect();
    match state
        .licensing
        .recorder
        .record_batch(batch_id, edge_id, records)
        .await
    {
        Some(BatchOutcome::Stored) => {
            // A statistic: its failure must not hold back the acknowledgement of stored reports.
            if let Err(e) = store::edge_progress(&state.db, edge_id, 0, count).await {
                tracing::warn!(%edge_id, error = %e, "reports stored but not counted on the edge");
            }
        }
        Some(BatchOutcome::AlreadyStored) => {
            tracing::debug!(%edge_id, %batch_id, "report batch sent again; stored before");
        }
        Some(BatchOutcome::Refused) | None => {
            anyhow::bail!("the report batch could not be stored")
        }
    }
    out.send(CentralFrame::ReportsAck { batch_id }).await?;
    metrics::counter!(crate::metrics::REPLICATION_REPORT_BATCHES_TOTAL).increment(1);
    Ok(())
}

async fn bind(
    state: &AppState,
    license_id: Uuid,
    ip: std::net::IpAddr,
    device_info: Option<&str>,
) -> Option<BindOutcome> {
    licensing::store::bind_ip_now(&state.db, license_id, ip, device_info)
        .await
        .inspect_err(|e| tracing::error!(error = %e, %license_id, "bind for an edge failed"))
        .ok()
}
