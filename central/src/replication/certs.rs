//! Certificates for the replication connection: a deployment CA, central's server certificate,
//! and edge client certificates signed by it (mutual TLS); loading them from PEM files is
//! `celaest_net::quic`'s, shared with the edge.
//!
//! `celaest-central certs` writes a development set; in development central creates one under
//! `.dev/certs/` on first start, and an edge started from the same directory uses it.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// Loading them, shared with the edge.
pub use celaest_net::quic::{load_certs, load_key};

/// The files of a development certificate set.
#[derive(Debug, Clone)]
pub struct CertSet {
    pub dir: PathBuf,
}

impl CertSet {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn central_cert(&self) -> PathBuf {
        self.dir.join("central.pem")
    }
    pub fn central_key(&self) -> PathBuf {
        self.dir.join("central.key")
    }
    pub fn edge_cert(&self) -> PathBuf {
        self.dir.join("edge.pem")
    }
    pub fn edge_key(&self) -> PathBuf {
        self.dir.join("edge.key")
    }

    /// Whether every file exists.
    pub fn complete(&self) -> bool {
        [
            self.ca(),
            self.central_cert(),
            self.central_key(),
            self.edge_cert(),
            self.edge_key(),
        ]
        .iter()
        .all(|p| p.exists())
    }

    /// Writes a fresh CA, a central certificate for `hosts` (names or IPs) and an edge client
    /// certificate. The CA's private key is not kept: a new edge certificate means a new set.
    pub fn generate(&self, hosts: &[String]) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("creating {}", self.dir.display()))?;
        let mut ca_params = CertificateParams::default();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "CELAEST development CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;
        let issuer = Issuer::new(ca_params, ca_key);

        let mut server = CertificateParams::default();
        server
            .distinguished_name
            .push(DnType::CommonName, "celaest-central");
        server.subject_alt_names = hosts
            .iter()
            .map(|h| match h.parse::<IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => h.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()?;
        server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_key = KeyPair::generate()?;
        let server_cert = server.signed_by(&server_key, &issuer)?;

        let mut edge = CertificateParams::default();
        edge.distinguished_name
            .push(DnType::CommonName, "celaest-edge");
        edge.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let edge_key = KeyPair::generate()?;
        let edge_cert = edge.signed_by(&edge_key, &issuer)?;

        write(&self.ca(), &ca_cert.pem())?;
        write(&self.central_cert(), &server_cert.pem())?;
        write_secret(&self.central_key(), &server_key.serialize_pem())?;
        write(&self.edge_cert(), &edge_cert.pem())?;
        write_secret(&self.edge_key(), &edge_key.serialize_pem())?;
        Ok(())
    }
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

/// Private keys are readable by their owner only.
fn write_secret(path: &Path, contents: &str) -> anyhow::Result<()> {
    write(path, contents)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_set_loads_back() {
        let dir = std::env::temp_dir().join(format!("celaest-certs-{}", uuid::Uuid::now_v7()));
        let set = CertSet::new(&dir);
        set.generate(&["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        assert!(set.complete());
        assert_eq!(load_certs(&set.ca()).unwrap().len(), 1);
        load_key(&set.central_key()).unwrap();
        load_key(&set.edge_key()).unwrap();
        std::fs::remove_dir_all(dir).unwrap();
    }
}
