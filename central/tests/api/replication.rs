//! Central's side of replication over real QUIC on loopback, with a test client that speaks the
//! wire protocol the way an edge does.

use std::{sync::Arc, time::Duration};

use celaest_central::replication::{certs::CertSet, server};
use celaest_protocol::replication::{
    ALPN, BindOutcome, CentralFrame, Change, EdgeFrame, PROTOCOL_VERSION, Sync, ValidationReport,
    decode_body, encode, frame_len,
};
use reqwest::Method;
use serde_json::json;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::support::{IdentityApp, TestUser};

fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("celaest-repl-{}", Uuid::now_v7()))
}

struct Central {
    id: IdentityApp,
    admin: TestUser,
    addr: std::net::SocketAddr,
    certs: CertSet,
    stop: CancellationToken,
}

impl Central {
    async fn start(db: PgPool) -> Self {
        let certs = CertSet::new(temp_dir());
        certs.generate(&["localhost".into()]).unwrap();
        let (ca, cert, key) = (certs.ca(), certs.central_cert(), certs.central_key());
        let id = IdentityApp::start_with(
            db,
            &[
                ("REPLICATION_ADDR", "127.0.0.1:0"),
                ("REPLICATION_TLS_CA", ca.to_str().unwrap()),
                ("REPLICATION_TLS_CERT", cert.to_str().unwrap()),
                ("REPLICATION_TLS_KEY", key.to_str().unwrap()),
            ],
        )
        .await;
        let endpoint = server::listen(&id.app.state.config.replication).unwrap();
        let addr = endpoint.local_addr().unwrap();
        let stop = CancellationToken::new();
        tokio::spawn(server::run(id.app.state.clone(), endpoint, stop.clone()));
        let admin = id.user("admin").await;
        Self {
            id,
            admin,
            addr,
            certs,
            stop,
        }
    }

    async fn api(&self, method: Method, path: &str, body: serde_json::Value) -> serde_json::Value {
        let response = self
            .id
            .send(Some(&self.admin), method, path, Some(body))
            .await;
        assert!(response.status.is_success(), "{}", response.text);
        response.json["data"].clone()
    }

    async fn product_and_license(&self) -> serde_json::Value {
        let product = self.api(Method::POST, "/api/products", json!({"code": "MKT", "name": "M", "product_type": "software", "status": "published"})).await;
        self.api(
            Method::POST,
            "/api/licenses",
            json!({"product_id": product["id"]}),
        )
        .await
    }
}

impl Drop for Central {
    fn drop(&mut self) {
        self.stop.cancel();
        let _ = std::fs::remove_dir_all(&self.certs.dir);
    }
}

/// A minimal edge: one bidirectional stream of length-prefixed frames.
struct Edge {
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    _connection: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

fn client_config(ca: &CertSet, identity: &CertSet) -> quinn::ClientConfig {
    use celaest_central::replication::certs::{load_certs, load_key};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(&ca.ca()).unwrap() {
        roots.add(cert).unwrap();
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            load_certs(&identity.edge_cert()).unwrap(),
            load_key(&identity.edge_key()).unwrap(),
        )
        .unwrap();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap(),
    ))
}

impl Edge {
    async fn connect_as(
        central: &Central,
        identity: &CertSet,
    ) -> Result<Self, quinn::ConnectionError> {
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(client_config(&central.certs, identity));
        let connection = endpoint.connect(central.addr, "localhost").unwrap().await?;
        let (send, recv) = connection.open_bi().await?;
        Ok(Self {
            send,
            recv,
            _connection: connection,
            _endpoint: endpoint,
        })
    }

    async fn connect(central: &Central, last_seq: Option<u64>) -> Self {
        let mut edge = Self::connect_as(central, &central.certs).await.unwrap();
        edge.send(&EdgeFrame::Hello {
            protocol_version: PROTOCOL_VERSION,
            edge_id: "edge-test-1".into(),
            region: "eu-west".into(),
            last_seq,
        })
        .await;
        edge
    }

    async fn send(&mut self, frame: &EdgeFrame) {
        self.send.write_all(&encode(frame).unwrap()).await.unwrap();
    }

    async fn next(&mut self) -> CentralFrame {
        let read = async {
            let mut prefix = [0u8; 4];
            self.recv.read_exact(&mut prefix).await.unwrap();
            let mut body = vec![0u8; frame_len(prefix).unwrap()];
            self.recv.read_exact(&mut body).await.unwrap();
            decode_body(&body).unwrap()
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("a frame within 10 s")
    }

    /// Reads until a frame matches.
    async fn until(&mut self, mut wanted: impl FnMut(&CentralFrame) -> bool) -> CentralFrame {
        loop {
            let frame = self.next().await;
            if wanted(&frame) {
                return frame;
            }
        }
    }
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn a_new_edge_gets_a_snapshot_then_every_change_in_order(db: PgPool) {
    let central = Central::start(db).await;
    let license = central.product_and_license().await;
    let mut edge = Edge::connect(&central, None).await;
    let CentralFrame::Welcome {
        sync: Sync::Snapshot { snapshot_seq },
        ..
    } = edge.next().await
    else {
        panic!("expected a snapshot")
    };
    let mut licenses = Vec::new();
    let mut products = Vec::new();
    loop {
        match edge.next().await {
            CentralFrame::SnapshotChunk {
                licenses: l,
                products: p,
            } => {
                licenses.extend(l);
                products.extend(p);
            }
            CentralFrame::SnapshotEnd { seq } => {
                assert_eq!(seq, snapshot_seq);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(licenses.len(), 1);
    assert_eq!(licenses[0].id.to_string(), license["id"].as_str().unwrap());
    assert_eq!(products.len(), 1);
    assert!(products[0].active);

    let id = license["id"].as_str().unwrap();
    central
        .api(
            Method::POST,
            &format!("/api/licenses/{id}/revoke"),
            json!({"reason": "test"}),
        )
        .await;
    let CentralFrame::Changes(changes) =
        edge.until(|f| matches!(f, CentralFrame::Changes(_))).await
    else {
        unreachable!()
    };
    assert_eq!(changes[0].seq, snapshot_seq + 1);
    let Change::LicenseUpsert(revoked) = &changes[0].change else {
        panic!("{changes:?}")
    };
    assert_eq!(revoked.status.as_str(), "revoked");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn an_edge_within_retention_resumes_without_a_snapshot(db: PgPool) {
    let central = Central::start(db).await;
    central.product_and_license().await; // seq 1: product, seq 2: license
    let mut edge = Edge::connect(&central, Some(1)).await;
    assert!(matches!(
        edge.next().await,
        CentralFrame::Welcome {
            sync: Sync::Resume,
            head_seq: 2,
            ..
        }
    ));
    let CentralFrame::Changes(changes) = edge.next().await else {
        panic!("expected changes")
    };
    assert_eq!(changes.iter().map(|c| c.seq).collect::<Vec<_>>(), [2]);

    // Past the retained window, a snapshot instead.
    sqlx::query("DELETE FROM replication_log")
        .execute(&central.id.db)
        .await
        .unwrap();
    let mut late = Edge::connect(&central, Some(0)).await;
    assert!(matches!(
        late.next().await,
        CentralFrame::Welcome {
            sync: Sync::Snapshot { snapshot_seq: 2 },
            ..
        }
    ));
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn binds_and_reports_are_served_and_the_fleet_sees_the_edge(db: PgPool) {
    let central = Central::start(db).await;
    let license = central.product_and_license().await;
    let license_id: Uuid = license["id"].as_str().unwrap().parse().unwrap();
    let mut edge = Edge::connect(&central, None).await;
    edge.until(|f| matches!(f, CentralFrame::SnapshotEnd { .. }))
        .await;

    let ip = "203.0.113.9".parse().unwrap();
    edge.send(&EdgeFrame::Bind {
        request_id: 1,
        license_id,
        ip,
        device_info: Some("edge test".into()),
    })
    .await;
    let bound = edge
        .until(|f| matches!(f, CentralFrame::BindResult { .. }))
        .await;
    assert_eq!(
        bound,
        CentralFrame::BindResult {
            request_id: 1,
            outcome: BindOutcome::Bound { remaining: 4 }
        }
    );
    edge.send(&EdgeFrame::Bind {
        request_id: 2,
        license_id,
        ip,
        device_info: None,
    })
    .await;
    let again = edge
        .until(|f| matches!(f, CentralFrame::BindResult { .. }))
        .await;
    assert_eq!(
        again,
        CentralFrame::BindResult {
            request_id: 2,
            outcome: BindOutcome::AlreadyBound { remaining: 4 }
        }
    );
    edge.send(&EdgeFrame::Bind {
        request_id: 3,
        license_id: Uuid::now_v7(),
        ip,
        device_info: None,
    })
    .await;
    let missing = edge
        .until(|f| matches!(f, CentralFrame::BindResult { .. }))
        .await;
    assert_eq!(
        missing,
        CentralFrame::BindResult {
            request_id: 3,
            outcome: BindOutcome::NotFound
        }
    );

    // The same batch twice: stored once.
    let reports: Vec<ValidationReport> = (0..2)
        .map(|_| ValidationReport {
            id: Uuid::now_v7(),
            license_id: Some(license_id),
            key_hash: None,
            ip,
            device_info: None,
            code: celaest_protocol::ValidationCode::Valid,
            validated_at: chrono::Utc::now(),
        })
        .collect();
    for _ in 0..2 {
        let batch_id = Uuid::now_v7();
        edge.send(&EdgeFrame::Reports {
            batch_id,
            reports: reports.clone(),
        })
        .await;
        let ack = edge
            .until(|f| matches!(f, CentralFrame::ReportsAck { .. }))
            .await;
        assert_eq!(ack, CentralFrame::ReportsAck { batch_id });
    }
    let stored: Vec<(String, Option<String>)> =
        sqlx::query_as("SELECT answered_by, region FROM license_validations WHERE license_id = $1")
            .bind(license_id)
            .fetch_all(&central.id.db)
            .await
            .unwrap();
    assert_eq!(
        stored,
        vec![("edge-test-1".to_owned(), Some("eu-west".to_owned())); 2]
    );

    edge.send(&EdgeFrame::Progress { applied_seq: 3 }).await;
    let mut fleet = serde_json::Value::Null;
    for _ in 0..50 {
        fleet = central.api(Method::GET, "/api/edges", json!(null)).await;
        if fleet[0]["applied_seq"] == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fleet[0]["id"], "edge-test-1");
    assert_eq!(fleet[0]["region"], "eu-west");
    assert_eq!(fleet[0]["connected"], true);
    assert_eq!(fleet[0]["applied_seq"], 3);
    assert_eq!(fleet[0]["reports_received"], 4);
    let viewer = central.id.user("viewer").await;
    central
        .id
        .send(Some(&viewer), Method::GET, "/api/edges", None)
        .await
        .assert_error(403, "INSUFFICIENT_ROLE");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn an_incompatible_protocol_version_is_refused_clearly(db: PgPool) {
    let central = Central::start(db).await;
    let mut edge = Edge::connect_as(&central, &central.certs).await.unwrap();
    edge.send(&EdgeFrame::Hello {
        protocol_version: 99,
        edge_id: "old".into(),
        region: "eu".into(),
        last_seq: None,
    })
    .await;
    let CentralFrame::Refused {
        reason,
        supported_version,
    } = edge.next().await
    else {
        panic!("expected a refusal")
    };
    assert_eq!(supported_version, PROTOCOL_VERSION);
    assert!(reason.contains("99"), "{reason}");
}

#[sqlx::test(migrator = "celaest_central::db::MIGRATOR")]
async fn an_edge_with_a_certificate_from_another_ca_is_refused(db: PgPool) {
    let central = Central::start(db).await;
    let stranger = CertSet::new(temp_dir());
    stranger.generate(&["localhost".into()]).unwrap();
    let attempt = async {
        let mut edge = Edge::connect_as(&central, &stranger).await?;
        // Client certificates are checked during the handshake; a refused one ends the connection.
        edge.send
            .write_all(
                &encode(&EdgeFrame::Hello {
                    protocol_version: PROTOCOL_VERSION,
                    edge_id: "x".into(),
                    region: "y".into(),
                    last_seq: None,
                })
                .unwrap(),
            )
            .await
            .ok();
        let mut prefix = [0u8; 4];
        match edge.recv.read_exact(&mut prefix).await {
            Ok(()) => Ok(edge),
            Err(_) => Err(quinn::ConnectionError::LocallyClosed),
        }
    };
    let result = tokio::time::timeout(Duration::from_secs(10), attempt)
        .await
        .expect("settled in time");
    assert!(result.is_err(), "a foreign certificate must not be served");
    let _ = std::fs::remove_dir_all(&stranger.dir);
}
