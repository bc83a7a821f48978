//! The two ends of the replication connection share its QUIC plumbing: the deployment's
//! certificates read from PEM files (mutual TLS, rustls on ring), the idle timeout both ends
//! agree on, and reading one length-prefixed frame off a stream. What a frame means lives in
//! `celaest_protocol::replication`; who connects and what a session does stays in each crate.

use std::{path::Path, sync::Arc, time::Duration};

use anyhow::Context;
use celaest_protocol::replication::{decode_body, frame_len};
use rustls::{
    RootCertStore,
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use serde::de::DeserializeOwned;

/// A connection silent this long is dead (the edge keeps it alive well below this).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The crypto both ends use, named explicitly: no dependence on which backends the build
/// happens to include.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate of a PEM file (at least one).
pub fn load_certs(path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("reading {}", path.display()))?
        .collect::<Result<_, _>>()
        .with_context(|| format!("parsing {}", path.display()))?;
    anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", path.display());
    Ok(certs)
}

/// The private key of a PEM file.
pub fn load_key(path: &Path) -> anyhow::Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .with_context(|| format!("reading the private key {}", path.display()))
}

/// The issuers trusted for the other end's certificate: the CA file's, and only those.
pub fn root_store(ca: &Path) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(ca)? {
        roots.add(cert)?;
    }
    Ok(roots)
}

/// Reads one length-prefixed frame; `None` at a clean end of stream. The announced length is
/// checked against the protocol's limit before the body is allocated.
pub async fn read_frame<T: DeserializeOwned>(
    stream: &mut quinn::RecvStream,
) -> anyhow::Result<Option<T>> {
    let mut prefix = [0u8; 4];
    match stream.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let mut body = vec![0u8; frame_len(prefix)?];
    stream.read_exact(&mut body).await?;
    Ok(Some(decode_body(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, contents: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("celaest-net-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        path
    }

    #[test]
    fn a_file_without_a_certificate_is_refused_with_its_path() {
        let path = temp_file("empty.pem", "not a certificate\n");
        let err = load_certs(&path).unwrap_err().to_string();
        assert!(err.contains("holds no certificate"), "{err}");
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(root_store(&path).is_err());
        assert!(load_key(&path).is_err());
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_missing_file_names_its_path() {
        let path = std::env::temp_dir().join("celaest-net-no-such-file.pem");
        let err = format!("{:#}", load_certs(&path).unwrap_err());
        assert!(err.contains("celaest-net-no-such-file.pem"), "{err}");
    }
}
