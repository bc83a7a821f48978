//! What the edge's black-box tests share: configuration, license keys, HTTP calls, certificates
//! made with rcgen, and an in-process fake central — a real quinn server with mutual TLS that
//! speaks the replication frames exactly as the test scripts them.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::Arc,
    time::Duration,
};

use celaest_edge::{EdgeConfig, EdgeState};
use celaest_protocol::{
    ChecksumKey, KeyHash, LicenseKey, LicenseStatus, ProductCode,
    replication::{
        ALPN, CentralFrame, EdgeFrame, ReplicatedLicense, ReplicatedProduct, decode_body, encode,
        frame_len,
    },
    signing::SigningKey,
};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use uuid::Uuid;

pub const EDGE_ID: &str = "edge-test-1";
pub const CHECKSUM_SECRET: &str = "edge-test-checksum-secret-long-enough";
/// 32 bytes of text: read as the raw Ed25519 seed.
pub const SIGNING_SEED: &[u8; 32] = b"edge-test-signing-seed-32-bytes!";

/// The settings every test starts from, plus `overrides`.
pub fn config(overrides: &[(&str, String)]) -> EdgeConfig {
    let base: Vec<(&str, String)> = vec![
        ("EDGE_ID", EDGE_ID.into()),
        ("EDGE_REGION", "eu-west".into()),
        ("LICENSE_CHECKSUM_SECRET", CHECKSUM_SECRET.into()),
        (
            "LICENSE_SIGNING_KEY",
            String::from_utf8_lossy(SIGNING_SEED).into_owned(),
        ),
    ];
    EdgeConfig::from_lookup(|name| {
        overrides
            .iter()
            .chain(base.iter())
            .find(|(key, _)| *key == name)
            .map(|(_, value)| value.clone())
    })
    .unwrap()
}

pub fn checksum() -> ChecksumKey {
    ChecksumKey::new(CHECKSUM_SECRET.as_bytes()).unwrap()
}

pub fn signing_key() -> SigningKey {
    SigningKey::from_seed(SIGNING_SEED).unwrap()
}

pub fn mkt() -> ProductCode {
    ProductCode::parse("MKT").unwrap()
}

/// A fresh, well-formed key under the test checksum secret.
pub fn new_key() -> LicenseKey {
    LicenseKey::generate(&mkt(), &checksum(), &ring::rand::SystemRandom::new()).unwrap()
}

pub fn product(active: bool) -> ReplicatedProduct {
    ReplicatedProduct {
        id: Uuid::from_u128(1),
        code: mkt(),
        active,
    }
}

/// A license for `key`, with `bound` IPs taken of `max_ips`.
pub fn license(
    key: &LicenseKey,
    status: LicenseStatus,
    max_ips: u32,
    bound: &[&str],
) -> ReplicatedLicense {
    ReplicatedLicense {
        id: Uuid::now_v7(),
        key_hash: key.hash(),
        product_code: mkt(),
        status,
        expires_at: None,
        max_ips,
        bound_ips: bound
            .iter()
            .map(|ip| ip.parse::<IpAddr>().unwrap())
            .collect(),
    }
}

pub fn hash_of(key: &LicenseKey) -> KeyHash {
    key.hash()
}

/// Serves the HTTP API of `state` alone (no replication) on a free port.
pub async fn serve_http(state: EdgeState) -> (String, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(celaest_edge::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    (base, stop)
}

/// An HTTP answer, with the exact body bytes (what the signature covers).
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub bytes: Vec<u8>,
    pub json: Value,
}

/// Posts `body` to `path` as a client at `client_ip` behind the (trusted, loopback) proxy.
pub async fn post(
    base: &str,
    path: &str,
    client_ip: &str,
    body: &Value,
    lang: Option<&str>,
) -> Answer {
    let mut request = http_client()
        .post(format!("{base}{path}"))
        .header("x-forwarded-for", client_ip)
        .json(body);
    if let Some(lang) = lang {
        request = request.header("accept-language", lang);
    }
    into_answer(request.send().await.unwrap()).await
}

pub async fn into_answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let bytes = response.bytes().await.unwrap().to_vec();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        bytes,
        json,
    }
}

/// Validates `key` from `client_ip` (which the body also claims).
pub async fn validate(base: &str, key: &str, client_ip: &str) -> Answer {
    let body = serde_json::json!({ "license_key": key, "ip_address": client_ip, "nonce": "n-1" });
    post(base, "/api/licenses/validate", client_ip, &body, None).await
}

pub async fn get(base: &str, path: &str) -> Answer {
    into_answer(
        http_client()
            .get(format!("{base}{path}"))
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// A plain HTTP client. reqwest is built without a TLS crypto provider of its own, so ring (the
/// one rustls and quinn use here) is installed as the process default first.
pub fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// The value of a metric line (`name` including its labels) on `/metrics`.
pub async fn metric(base: &str, name: &str) -> Option<f64> {
    let page = String::from_utf8(get(base, "/metrics").await.bytes).unwrap();
    page.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Polls `check` every few milliseconds until it holds, for at most ten seconds.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A certificate set in a temporary directory: a CA, central's server certificate, an edge
/// certificate from that CA, and an edge certificate from an unrelated CA.
pub struct Certs {
    pub dir: PathBuf,
    ca_der: CertificateDer<'static>,
    server_der: CertificateDer<'static>,
    server_key_der: Vec<u8>,
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn ca(name: &str) -> (rcgen::Certificate, Issuer<'static, KeyPair>) {
    let mut params = CertificateParams::default();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert, Issuer::new(params, key))
}

fn edge_cert(issuer: &Issuer<'static, KeyPair>) -> (String, String) {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "celaest-edge");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Certs {
    pub fn generate() -> Self {
        let dir = std::env::temp_dir().join(format!("celaest-edge-test-{}", Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();
        let (ca_cert, issuer) = ca("CELAEST test CA");
        let mut server = CertificateParams::default();
        server
            .distinguished_name
            .push(DnType::CommonName, "celaest-central");
        server.subject_alt_names = vec![
            SanType::DnsName("localhost".try_into().unwrap()),
            SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
        ];
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate().unwrap();
        let server_cert = server.signed_by(&server_key, &issuer).unwrap();
        let (edge_pem, edge_key) = edge_cert(&issuer);
        let (_, rogue_issuer) = ca("Someone else's CA");
        let (rogue_pem, rogue_key) = edge_cert(&rogue_issuer);
        for (name, contents) in [
            ("ca.pem", ca_cert.pem()),
            ("edge.pem", edge_pem),
            ("edge.key", edge_key),
            ("rogue.pem", rogue_pem),
            ("rogue.key", rogue_key),
        ] {
            std::fs::write(dir.join(name), contents).unwrap();
        }
        Self {
            dir,
            ca_der: ca_cert.der().clone(),
            server_der: server_cert.der().clone(),
            server_key_der: server_key.serialize_der(),
        }
    }

    /// The edge settings for these certificates (`rogue`: the certificate from another CA).
    pub fn edge_settings(&self, central: SocketAddr, rogue: bool) -> Vec<(&'static str, String)> {
        let file = |name: &str| self.dir.join(name).display().to_string();
        let (cert, key) = if rogue {
            ("rogue.pem", "rogue.key")
        } else {
            ("edge.pem", "edge.key")
        };
        vec![
            ("EDGE_CENTRAL_ADDR", central.to_string()),
            ("EDGE_SERVER_NAME", "localhost".into()),
            ("EDGE_TLS_CA", file("ca.pem")),
            ("EDGE_TLS_CERT", file(cert)),
            ("EDGE_TLS_KEY", file(key)),
            ("EDGE_RECONNECT_MIN_MS", "20".into()),
            ("EDGE_RECONNECT_MAX_MS", "200".into()),
            ("EDGE_CONNECT_TIMEOUT_MS", "2000".into()),
            ("EDGE_REPORT_INTERVAL_MS", "20".into()),
            ("EDGE_SHUTDOWN_FLUSH_MS", "5000".into()),
        ]
    }
}

/// A QUIC listener that accepts only edges with a certificate from the test CA, like central's.
pub struct FakeCentral {
    endpoint: quinn::Endpoint,
    pub addr: SocketAddr,
}

impl FakeCentral {
    pub fn start(certs: &Certs) -> Self {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certs.ca_der.clone()).unwrap();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()
        .unwrap();
        let key = PrivateKeyDer::try_from(certs.server_key_der.clone()).unwrap();
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![certs.server_der.clone()], key)
            .unwrap();
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).unwrap();
        let server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let endpoint =
            quinn::Endpoint::server(server, SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
        let addr = endpoint.local_addr().unwrap();
        Self { endpoint, addr }
    }

    /// The next connection attempt's handshake: `Err` when TLS refused the edge.
    pub async fn handshake(&self) -> Result<quinn::Connection, quinn::ConnectionError> {
        let incoming = tokio::time::timeout(Duration::from_secs(10), self.endpoint.accept())
            .await
            .expect("no connection attempt from the edge")
            .unwrap();
        incoming.await
    }

    /// The next edge session: handshake, then the stream the edge opens.
    pub async fn accept(&self) -> Peer {
        let connection = self.handshake().await.unwrap();
        let (send, recv) = tokio::time::timeout(Duration::from_secs(10), connection.accept_bi())
            .await
            .expect("the edge opened no stream")
            .unwrap();
        Peer {
            connection,
            send,
            recv,
            seen: Vec::new(),
        }
    }
}

/// One edge's session as the fake central sees it.
pub struct Peer {
    pub connection: quinn::Connection,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    /// Every frame read but not returned by [`Peer::until`].
    pub seen: Vec<EdgeFrame>,
}

impl Peer {
    pub async fn send(&mut self, frame: CentralFrame) {
        self.send.write_all(&encode(&frame).unwrap()).await.unwrap();
    }

    /// The next frame from the edge (ten seconds at most).
    pub async fn recv(&mut self) -> EdgeFrame {
        tokio::time::timeout(Duration::from_secs(10), async {
            let mut prefix = [0u8; 4];
            self.recv.read_exact(&mut prefix).await.unwrap();
            let mut body = vec![0u8; frame_len(prefix).unwrap()];
            self.recv.read_exact(&mut body).await.unwrap();
            decode_body(&body).unwrap()
        })
        .await
        .expect("no frame from the edge")
    }

    /// Reads until a frame matches, keeping the others in [`Peer::seen`].
    pub async fn until(&mut self, wanted: impl Fn(&EdgeFrame) -> bool) -> EdgeFrame {
        loop {
            let frame = self.recv().await;
            if wanted(&frame) {
                return frame;
            }
            self.seen.push(frame);
        }
    }

    /// Reads the `Hello`, returning its `last_seq`.
    pub async fn hello(&mut self) -> Option<u64> {
        match self.recv().await {
            EdgeFrame::Hello {
                protocol_version,
                edge_id,
                region,
                last_seq,
            } => {
                assert_eq!(
                    protocol_version,
                    celaest_protocol::replication::PROTOCOL_VERSION
                );
                assert_eq!((edge_id.as_str(), region.as_str()), (EDGE_ID, "eu-west"));
                last_seq
            }
            other => panic!("expected Hello, got {other:?}"),
        }
    }

    /// Welcomes the edge with a snapshot of `licenses` (and the MKT product) as of `seq`.
    pub async fn snapshot(&mut self, seq: u64, licenses: Vec<ReplicatedLicense>) {
        self.send(CentralFrame::Welcome {
            protocol_version: celaest_protocol::replication::PROTOCOL_VERSION,
            head_seq: seq,
            sync: celaest_protocol::replication::Sync::Snapshot { snapshot_seq: seq },
        })
        .await;
        self.send(CentralFrame::SnapshotChunk {
            licenses,
            products: vec![product(true)],
        })
        .await;
        self.send(CentralFrame::SnapshotEnd { seq }).await;
        let progress = self
            .until(|f| matches!(f, EdgeFrame::Progress { .. }))
            .await;
        assert_eq!(progress, EdgeFrame::Progress { applied_seq: seq });
    }
}

/// A whole edge (HTTP + replication) running against a fake central.
pub struct RunningEdge {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl RunningEdge {
    pub async fn start(config: EdgeConfig) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(celaest_edge::run(config, listener, async move {
            let _ = stopped.await;
        }));
        Self {
            base,
            stop: Some(stop),
            task,
        }
    }

    /// Signals a graceful shutdown and waits for the edge to finish it.
    pub async fn shutdown(mut self) {
        drop(self.stop.take());
        tokio::time::timeout(Duration::from_secs(15), &mut self.task)
            .await
            .expect("the edge did not stop")
            .unwrap()
            .unwrap();
    }
}

impl Drop for RunningEdge {
    fn drop(&mut self) {
        self.task.abort();
    }
}
