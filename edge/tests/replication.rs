//! The edge against an in-process fake central over real QUIC with mutual TLS: snapshot then
//! ready, changes applied in order, binds round-tripped, reports delivered and acknowledged
//! exactly once across a reconnection, refusals (another CA, another protocol version), gaps,
//! and the report flush of a graceful shutdown.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "a test that cannot go on should stop right there"
)]

pub mod common;

use std::collections::HashSet;

use celaest_protocol::{
    LicenseStatus, ValidationCode,
    replication::{
        BindOutcome, CentralFrame, Change, EdgeFrame, PROTOCOL_VERSION, SequencedChange, Sync,
        ValidationReport,
    },
};
use common::{
    Certs, FakeCentral, RunningEdge, config, eventually, license, metric, new_key, validate,
};
use uuid::Uuid;

const BOUND: &str = "198.51.100.7";

async fn edge_for(certs: &Certs, central: &FakeCentral, extra: &[(&str, String)]) -> RunningEdge {
    let mut settings = certs.edge_settings(central.addr, false);
    settings.extend(extra.iter().cloned());
    RunningEdge::start(config(&settings)).await
}

async fn is_ready(base: &str) -> bool {
    common::get(base, "/health/ready").await.status == 200
}

async fn code(base: &str, key: &str, ip: &str) -> String {
    validate(base, key, ip).await.json["data"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_snapshot_makes_the_edge_ready_and_changes_stream_in() {
    let certs = Certs::generate();
    let central = FakeCentral::start(&certs);
    let edge = edge_for(&certs, &central, &[]).await;
    let key = new_key();
    let mut revoked = license(&key, LicenseStatus::Active, 5, &[BOUND]);

    let mut peer = central.accept().await;
    assert_eq!(
        peer.hello().await,
        None,
        "a new process has applied nothing"
    );
    assert!(!is_ready(&edge.base).await);
    peer.snapshot(5, vec![revoked.clone()]).await;
    eventually("ready after the snapshot", || is_ready(&edge.base)).await;

    let answer = validate(&edge.base, key.as_str(), BOUND).await;
    assert_eq!(answer.json["data"]["code"], "VALID");
    assert_eq!(answer.json["data"]["answered_by"], common::EDGE_ID);
    assert_eq!(answer.json["data"]["state_age_ms"], 0, "live and caught up");

    revoked.status = LicenseStatus::Revoked;
    peer.send(CentralFrame::Changes(vec![SequencedChange {
        seq: 6,
        change: Change::LicenseUpsert(revoked),
    }]))
    .await;
    let progress = peer
        .until(|f| matches!(f, EdgeFrame::Progress { .. }))
        .await;
    assert_eq!(progress, EdgeFrame::Progress { applied_seq: 6 });
    assert_eq!(
        code(&edge.base, key.as_str(), BOUND).await,
        "LICENSE_REVOKED"
    );
    assert_eq!(
        metric(&edge.base, "celaest_edge_applied_seq").await,
        Some(6.0)
    );
    assert_eq!(
        metric(&edge.base, "celaest_edge_connection_state{state=\"live\"}").await,
        Some(1.0)
    );

    // A resent change is skipped; the state stays where it is.
    peer.send(CentralFrame::Changes(vec![SequencedChange {
        seq: 6,
        change: Change::LicenseUpsert(license(&key, LicenseStatus::Active, 5, &[BOUND])),
    }]))
    .await;
    peer.until(|f| matches!(f, EdgeFrame::Progress { applied_seq: 6 }))
        .await;
    assert_eq!(
        code(&edge.base, key.as_str(), BOUND).await,
        "LICENSE_REVOKED"
    );
}

#[tokio::test]
async fn a_new_ip_is_bound_by_central() {
    let certs = Certs::generate();
    let central = FakeCentral::start(&certs);
    let edge = edge_for(&certs, &central, &[("EDGE_BIND_TIMEOUT_MS", "300".into())]).await;
    let key = new_key();
    let held = license(&key, LicenseStatus::Active, 3, &[BOUND]);
    let license_id = held.id;
    let mut peer = central.accept().await;
    peer.hello().await;
    peer.snapshot(1, vec![held]).await;
    eventually("ready", || is_ready(&edge.base)).await;

    let outcomes = [
        (BindOutcome::Bound { remaining: 1 }, "VALID", Some(1)),
        (BindOutcome::AlreadyBound { remaining: 1 }, "VALID", Some(1)),
        (BindOutcome::Full, "IP_LIMIT_REACHED", Some(0)),
        (BindOutcome::NotFound, "LICENSE_NOT_FOUND", None),
    ];
    for (n, (outcome, expected, remaining)) in outcomes.into_iter().enumerate() {
        let ip = format!("203.0.113.{}", n + 1);
        let asking = tokio::spawn({
            let (base, key, ip) = (edge.base.clone(), key.as_str().to_owned(), ip.clone());
            async move { validate(&base, &key, &ip).await }
        });
        let EdgeFrame::Bind {
            request_id,
            license_id: asked_for,
            ip: asked_ip,
            ..
        } = peer.until(|f| matches!(f, EdgeFrame::Bind { .. })).await
        else {
            unreachable!()
        };
        assert_eq!(asked_for, license_id);
        assert_eq!(asked_ip.to_string(), ip);
        peer.send(CentralFrame::BindResult {
            request_id,
            outcome,
        })
        .await;
        let answer = asking.await.unwrap();
        assert_eq!(answer.json["data"]["code"], expected, "{outcome:?}");
        assert_eq!(
            answer.json["data"]["remaining_ips"].as_u64(),
            remaining,
            "{outcome:?}"
        );
    }

    // Central does not answer in time: the default policy refuses the new IP, for now.
    let answer = validate(&edge.base, key.as_str(), "203.0.113.99").await;
    assert_eq!(answer.json["data"]["code"], "BINDING_UNAVAILABLE");
    assert_eq!(answer.json["data"]["valid"], false);
    let asked = || async {
        let mut total = 0.0;
        for outcome in ["bound", "already_bound", "full", "not_found", "timeout"] {
            let name = format!("celaest_edge_binds_total{{outcome=\"{outcome}\"}}");
            total += metric(&edge.base, &name).await.unwrap();
        }
        total
    };
    assert_eq!(asked().await, 5.0);
    assert_eq!(
        metric(&edge.base, "celaest_edge_binds_total{outcome=\"timeout\"}").await,
        Some(1.0)
    );
    // A bound IP is answered from memory: central is not asked.
    assert_eq!(code(&edge.base, key.as_str(), BOUND).await, "VALID");
    assert_eq!(asked().await, 5.0);
}

/// Reads report batches until `count` distinct reports arrived, acknowledging each batch unless
/// `ack` is false. Returns the batches as received.
async fn read_reports(
    peer: &mut common::Peer,
    count: usize,
    ack: bool,
) -> Vec<(Uuid, Vec<ValidationReport>)> {
    let mut batches = Vec::new();
    let mut ids = HashSet::new();
    while ids.len() < count {
        let EdgeFrame::Reports { batch_id, reports } =
            peer.until(|f| matches!(f, EdgeFrame::Reports { .. })).await
        else {
            unreachable!()
        };
        ids.extend(reports.iter().map(|r| r.id));
        if ack {
            peer.send(CentralFrame::ReportsAck { batch_id }).await;
        }
        batches.push((batch_id, reports));
    }
    batches
}

#[tokio::test]
async fn reports_reach_central_exactly_once_across_a_reconnection() {
    let certs = Certs::generate();
    let central = FakeCentral::start(&certs);
    let edge = edge_for(&certs, &central, &[]).await;
    let key = new_key();
    let mut peer = central.accept().await;
    peer.hello().await;
    peer.snapshot(4, vec![license(&key, LicenseStatus::Active, 5, &[BOUND])])
        .await;
    eventually("ready", || is_ready(&edge.base)).await;

    validate(&edge.base, key.as_str(), BOUND).await;
    validate(&edge.base, "not a key", "192.0.2.33").await;
    validate(&edge.base, new_key().as_str(), BOUND).await;

    // Central receives the reports but goes away before acknowledging them.
    let unacked = read_reports(&mut peer, 3, false).await;
    let first_ids: HashSet<Uuid> = unacked
        .iter()
        .flat_map(|(_, reports)| reports.iter().map(|r| r.id))
        .collect();
    let reports: Vec<&ValidationReport> = unacked.iter().flat_map(|(_, r)| r).collect();
    let valid = reports
        .iter()
        .find(|r| r.code == ValidationCode::Valid)
        .unwrap();
    assert_eq!(valid.key_hash, Some(key.hash()));
    assert!(valid.license_id.is_some());
    assert_eq!(valid.ip.to_string(), BOUND);
    let malformed = reports
        .iter()
        .find(|r| r.code == ValidationCode::InvalidKeyFormat)
        .unwrap();
    assert_eq!((malformed.license_id, malformed.key_hash), (None, None));
    assert_eq!(malformed.ip.to_string(), "192.0.2.33");
    assert!(
        reports
            .iter()
            .any(|r| r.code == ValidationCode::LicenseNotFound)
    );
    peer.connection.close(0u32.into(), b"central restarting");
    drop(peer);

    // The edge comes back with its sequence, and sends the same batches again.
    let mut peer = central.accept().await;
    assert_eq!(peer.hello().await, Some(4), "resumes from what it applied");
    peer.send(CentralFrame::Welcome {
        protocol_version: PROTOCOL_VERSION,
        head_seq: 4,
        sync: Sync::Resume,
    })
    .await;
    let resent = read_reports(&mut peer, 3, true).await;
    let resent_batches: HashSet<Uuid> = resent.iter().map(|(id, _)| *id).collect();
    let unacked_batches: HashSet<Uuid> = unacked.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        resent_batches, unacked_batches,
        "the same batches, same ids"
    );
    let resent_ids: HashSet<Uuid> = resent
        .iter()
        .flat_map(|(_, reports)| reports.iter().map(|r| r.id))
        .collect();
    assert_eq!(resent_ids, first_ids);
    eventually("nothing left to deliver", || async {
        metric(&edge.base, "celaest_edge_reports_buffered").await == Some(0.0)
    })
    .await;

    // Once acknowledged, a batch is never sent again: the next one holds only the new report.
    validate(&edge.base, key.as_str(), BOUND).await;
    let next = read_reports(&mut peer, 1, true).await;
    for (batch_id, reports) in &next {
        assert!(!resent_batches.contains(batch_id));
        assert!(reports.iter().all(|r| !first_ids.contains(&r.id)));
    }
}

#[tokio::test]
async fn bound_ips_keep_validating_while_central_is_away() {
    let certs = Certs::generate();
    let central = FakeCentral::start(&certs);
    let edge = edge_for(
        &certs,
        &central,
        &[
            ("EDGE_RECONNECT_MIN_MS", "2000".into()),
            ("EDGE_RECONNECT_MAX_MS", "2000".into()),
        ],
    )
    .await;
    let key = new_key();
    let mut peer = central.accept().await;
    peer.hello().await;
    peer.snapshot(2, vec![license(&key, LicenseStatus::Active, 5, &[BOUND])])
        .await;
    eventually("ready", || is_ready(&edge.base)).await;
    peer.connection.close(0u32.into(), b"central stopped");
    eventually("disconnected", || async {
        metric(&edge.base, "celaest_edge_connection_state{state=\"live\"}").await == Some(0.0)
    })
    .await;
    let answer = validate(&edge.base, key.as_str(), BOUND).await;
    assert_eq!(answer.json["data"]["code"], "VALID");
    assert!(is_ready(&edge.base).await, "within the offline limit");
    // A new IP cannot be bound meanwhile.
    assert_eq!(
        code(&edge.base, key.as_str(), "203.0.113.7").await,
        "BINDING_UNAVAILABLE"
    );
}

#[tokio::test]
async fn a_gap_makes_the_edge_resume_from_its_sequence() {
    let certs = Certs::generate();
    let central = FakeCentral::start(&certs);
    let edge = edge_for(&certs, &central, &[]).await;
    let key = new_key();
    let mut peer = central.accept().await;
    peer.hello().await;
    peer.snapshot(5, vec![license(&key, LicenseStatus::Active, 5, &[BOUND])])
        .await;
    peer.send(CentralFrame::Changes(vec![
        SequencedChange {
            seq: 6,
            change: Change::LicenseUpsert(license(&key, LicenseStatus::Suspended, 5, &[BOUND])),
        },
        SequencedChange {
            seq: 8,
            change: Change::LicenseUpsert(license(&key, LicenseStatus::Revoked, 5, &[BOUND])),
        },
    ]))
    .await;
    let mut peer = central.accept().await;
    assert_eq!(
        peer.hello().await,
        Some(6),
        "applied up to the gap, then resumed"
    );
    assert_eq!(
        code(&edge.base, key.as_str(), BOUND).await,
        "LICENSE_SUSPENDED"
    );
}

#[tokio::test]
async fn an_edge_with_a_certificate_from_another_ca_is_refused() {
    let certs = Certs::generate();
    let central = FakeCentral::start(&certs);
    let settings = certs.edge_settings(central.addr, true);
    let edge = RunningEdge::start(config(&settings)).await;
    for _ in 0..2 {
        let handshake = central.handshake().await;
        assert!(handshake.is_err(), "the rogue edge was let in");
    }
    assert!(!is_ready(&edge.base).await);
    assert_eq!(
        metric(&edge.base, "celaest_edge_connection_state{state=\"live\"}").await,
        Some(0.0)
    );
}

#[tokio::test]
async fn a_protocol_refusal_is_retried_later() {
    let certs = Certs::generate();
    let central = FakeCentral::start(&certs);
    let edge = edge_for(&certs, &central, &[]).await;
    let mut peer = central.accept().await;
    peer.hello().await;
    peer.send(CentralFrame::Refused {
        reason: "protocol version 1 is not supported".into(),
        supported_version: 2,
    })
    .await;
    // The edge tries again (with backoff), still as a new process.
    let mut again = central.accept().await;
    assert_eq!(again.hello().await, None);
    assert!(!is_ready(&edge.base).await);
    let key = new_key();
    again
        .snapshot(1, vec![license(&key, LicenseStatus::Active, 5, &[BOUND])])
        .await;
    eventually("ready after the retry", || is_ready(&edge.base)).await;
}

#[tokio::test]
async fn a_graceful_shutdown_flushes_the_buffered_reports() {
    let certs = Certs::generate();
    let central = FakeCentral::start(&certs);
    // Reports would wait a minute for their batch: only the shutdown sends them.
    let edge = edge_for(
        &certs,
        &central,
        &[("EDGE_REPORT_INTERVAL_MS", "60000".into())],
    )
    .await;
    let key = new_key();
    let mut peer = central.accept().await;
    peer.hello().await;
    peer.snapshot(3, vec![license(&key, LicenseStatus::Active, 5, &[BOUND])])
        .await;
    eventually("ready", || is_ready(&edge.base)).await;
    validate(&edge.base, key.as_str(), BOUND).await;
    validate(&edge.base, key.as_str(), BOUND).await;

    let stopping = tokio::spawn(edge.shutdown());
    let batches = read_reports(&mut peer, 2, true).await;
    assert_eq!(batches.iter().map(|(_, r)| r.len()).sum::<usize>(), 2);
    tokio::time::timeout(std::time::Duration::from_secs(10), stopping)
        .await
        .expect("the edge did not stop after its reports were acknowledged")
        .unwrap();
}

#[tokio::test]
async fn a_new_snapshot_on_reconnection_replaces_the_state() {
    let certs = Certs::generate();
    let central = FakeCentral::start(&certs);
    let edge = edge_for(&certs, &central, &[]).await;
    let old = new_key();
    let new = new_key();
    let mut peer = central.accept().await;
    peer.hello().await;
    peer.snapshot(3, vec![license(&old, LicenseStatus::Active, 5, &[BOUND])])
        .await;
    eventually("ready", || is_ready(&edge.base)).await;
    peer.connection.close(0u32.into(), b"central restarting");
    drop(peer);

    // Central no longer holds the changes after 3: a full snapshot as of 90.
    let mut peer = central.accept().await;
    assert_eq!(peer.hello().await, Some(3));
    // The old state keeps answering while the new one is received.
    assert_eq!(code(&edge.base, old.as_str(), BOUND).await, "VALID");
    peer.snapshot(90, vec![license(&new, LicenseStatus::Active, 5, &[BOUND])])
        .await;
    eventually("the new state is in", || async {
        metric(&edge.base, "celaest_edge_applied_seq").await == Some(90.0)
    })
    .await;
    assert_eq!(code(&edge.base, new.as_str(), BOUND).await, "VALID");
    assert_eq!(
        code(&edge.base, old.as_str(), BOUND).await,
        "LICENSE_NOT_FOUND"
    );
}
