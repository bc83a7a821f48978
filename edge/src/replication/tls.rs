//! The QUIC client configuration: TLS 1.3 only, trusting only the deployment CA
//! (`EDGE_TLS_CA`), presenting this edge's certificate (`EDGE_TLS_CERT`/`EDGE_TLS_KEY`) for
//! mutual TLS, with the replication ALPN, no 0-RTT (replayable), and keep-alive well below the
//! idle timeout so a quiet connection stays up.

use std::{sync::Arc, time::Duration};

use anyhow::Context;
use celaest_net::quic;
use celaest_protocol::replication::ALPN;

use crate::config::TlsConfig;

/// Keep-alive interval: a PING this often keeps NAT bindings and the idle timer (the shared
/// `quic::IDLE_TIMEOUT`) fresh.
const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Reads the certificates and builds the client configuration. Called again on every connection
/// attempt that has none yet, so certificates created after the edge started are picked up.
pub fn client_config(tls: &TlsConfig) -> anyhow::Result<quinn::ClientConfig> {
    let roots = quic::root_store(&tls.ca).context("EDGE_TLS_CA")?;
    let chain = quic::load_certs(&tls.cert).context("EDGE_TLS_CERT")?;
    let key = quic::load_key(&tls.key).context("EDGE_TLS_KEY")?;
    let mut crypto = rustls::ClientConfig::builder_with_provider(quic::crypto_provider())
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
    transport.max_idle_timeout(Some(quic::IDLE_TIMEOUT.try_into()?));
    config.transport_config(Arc::new(transport));
    Ok(config)
}
