//! The QUIC client configuration: TLS 1.3 only, trusting only the deployment CA
//! (`EDGE_TLS_CA`), presenting this edge's certificate (`EDGE_TLS_CERT`/`EDGE_TLS_KEY`) for
//! mutual TLS, with the replication ALPN, no 0-RTT (replayable), and keep-alive well below the
//! idle timeout so a quiet connection stays up.

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use celaest_protocol::replication::ALPN;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

use crate::config::TlsConfig;

/// Keep-alive interval: a PING this often keeps NAT bindings and the idle timer fresh.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// Idle timeout (central's is the same): a connection silent this long is dead.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Reads the certificates and builds the client configuration. Called again on every connection
/// attempt that has none yet, so certificates created after the edge started are picked up.
pub fn client_config(tls: &TlsConfig) -> anyhow::Result<quinn::ClientConfig> {
    // Explicit provider: no dependence on which crypto backends the build happens to include.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for cert in load_certs(&tls.ca).context("EDGE_TLS_CA")? {
        roots.add(cert).context("EDGE_TLS_CA")?;
    }
    let chain = load_certs(&tls.cert).context("EDGE_TLS_CERT")?;
    let key = PrivateKeyDer::from_pem_file(&tls.key)
        .with_context(|| format!("EDGE_TLS_KEY: reading {}", tls.key.display()))?;
    let mut crypto = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .context("EDGE_TLS_CERT/EDGE_TLS_KEY: the certificate and key do not match")?;
    crypto.alpn_protocols = vec![ALPN.to_vec()];
    crypto.enable_early_data = false;
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto)?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(KEEP_ALIVE));
    transport.max_idle_timeout(Some(IDLE_TIMEOUT.try_into()?));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", path.display());
    Ok(certs)
}
