//! Edge configuration from the environment (and `.env`): where to listen, where central is, who
//! this edge is, its certificates, the licensing keys it shares with central, and how it behaves
//! when central is out of reach.
//!
//! Every value has a development default so that an edge started beside `celaest-central serve`
//! works with no setup; with `APP_ENV=staging|production` the certificates and the licensing
//! secrets must be given. A malformed value stops start-up with a message naming its variable.
//! Secrets are parsed into their key types at once ([`ChecksumKey`], [`SigningKey`]), whose
//! `Debug` never shows them.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use celaest_protocol::{ChecksumKey, signing::SigningKey};
use ipnetwork::IpNetwork;

pub use celaest_net::env::ConfigError;
use celaest_net::env::{LogFormat, Vars};

/// Development-only secrets, the same as central's so that a local edge signs and checks keys
/// exactly like a local central. They are public: strict environments refuse to start on them.
mod dev {
    pub const LICENSE_CHECKSUM_SECRET: &str = "dev-only-license-checksum-secret-not-for-production";
    pub const LICENSE_SIGNING_KEY: &str =
        "6465762d6f6e6c792d6c6963656e73652d7369676e696e672d736565642d3332";
    pub const TLS_CA: &str = ".dev/certs/ca.pem";
    pub const TLS_CERT: &str = ".dev/certs/edge.pem";
    pub const TLS_KEY: &str = ".dev/certs/edge.key";
}

#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// `APP_ENV` is `staging` or `production`: no development defaults for secrets or certificates.
    pub strict: bool,
    /// `EDGE_HTTP_ADDR`, default `0.0.0.0:8081`.
    pub http_addr: SocketAddr,
    /// `EDGE_CENTRAL_ADDR`, default `127.0.0.1:7443` (central's replication listener). A host
    /// name is resolved again on every connection attempt.
    pub central_addr: String,
    /// `EDGE_ID`, default `edge-local`.
    pub edge_id: String,
    /// `EDGE_REGION`, default `local`.
    pub region: String,
    /// `LOG_LEVEL`, an `EnvFilter` directive.
    pub log_level: String,
    /// `LOG_FORMAT`: `json` (default) or `pretty`.
    pub log_pretty: bool,
    pub tls: TlsConfig,
    pub keys: LicensingKeys,
    /// `EDGE_TRUSTED_PROXIES` (CIDRs) plus loopback: peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNetwork>,
    pub offline: OfflinePolicy,
    pub reports: ReportSettings,
    pub replication: ReplicationSettings,
}

/// The certificates of the mutual-TLS replication connection (PEM files).
#[derive(Debug, Clone)]
pub struct TlsConfig {
    /// `EDGE_TLS_CA`: the deployment CA; the only issuer central's certificate is trusted from.
    pub ca: PathBuf,
    /// `EDGE_TLS_CERT`: this edge's client certificate, issued by that CA.
    pub cert: PathBuf,
    /// `EDGE_TLS_KEY`: its private key.
    pub key: PathBuf,
    /// `EDGE_SERVER_NAME`: the name central's certificate must carry, default `localhost`.
    pub server_name: String,
}

/// The licensing secrets shared with central.
#[derive(Debug, Clone)]
pub struct LicensingKeys {
    /// `LICENSE_CHECKSUM_SECRET`: checks a key's checksum before any lookup.
    pub checksum: ChecksumKey,
    /// `LICENSE_SIGNING_KEY`: signs answers with the key central publishes.
    pub signing: Arc<SigningKey>,
}

/// What to do with a new IP address when central cannot be asked to bind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewIpPolicy {
    /// Answer `BINDING_UNAVAILABLE` (the default: the slot count is never exceeded).
    Refuse,
    /// Answer valid without binding, counting the address against the license's free slots on
    /// this edge until central is back.
    Allow,
}

#[derive(Debug, Clone, Copy)]
pub struct OfflinePolicy {
    /// `EDGE_OFFLINE_MAX_SECS` (default 3600): how long after losing central validations are
    /// still answered from the last state; beyond it they get 503 `NOT_READY`.
    pub max_stale: Duration,
    /// `EDGE_OFFLINE_NEW_IPS`: `refuse` (default) or `allow`.
    pub new_ips: NewIpPolicy,
    /// `EDGE_BIND_TIMEOUT_MS` (default 500): how long a validation waits for central to bind a
    /// new IP before the policy above applies.
    pub bind_timeout: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct ReportSettings {
    /// `EDGE_REPORT_BATCH` (default 500): reports per batch at most.
    pub batch: usize,
    /// `EDGE_REPORT_INTERVAL_MS` (default 1000): a partial batch leaves after this long.
    pub interval: Duration,
    /// `EDGE_REPORT_BUFFER` (default 100000): reports held until central acknowledges them;
    /// beyond it new ones are dropped (and counted).
    pub buffer: usize,
    /// `EDGE_SHUTDOWN_FLUSH_MS` (default 5000): how long a graceful shutdown waits for central
    /// to acknowledge what is buffered.
    pub shutdown_flush: Duration,
}

#[derive(Debug, Clone, Copy)]
pub struct ReplicationSettings {
    /// `EDGE_CONNECT_TIMEOUT_MS` (default 5000): a connection attempt (QUIC + TLS) gives up after it.
    pub connect_timeout: Duration,
    /// `EDGE_RECONNECT_MIN_MS` (default 500): the first reconnection delay.
    pub reconnect_min: Duration,
    /// `EDGE_RECONNECT_MAX_MS` (default 30000): the delay doubles per failure up to this.
    pub reconnect_max: Duration,
}

impl EdgeConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars::new(&lookup);
        let strict = vars.app_env()?.requires_secrets();
        let required = |name: &'static str, dev_default: &str| -> Result<String, ConfigError> {
            match vars.get(name) {
                Some(value) => Ok(value),
                None if strict => Err(ConfigError::new(name, "es obligatoria en este entorno")),
                None => Ok(dev_default.to_owned()),
            }
        };

        let http_addr = match vars.get("EDGE_HTTP_ADDR") {
            None => SocketAddr::from(([0, 0, 0, 0], 8081)),
            Some(raw) => raw.parse().map_err(|_| {
                ConfigError::new(
                    "EDGE_HTTP_ADDR",
                    format!("se esperaba host:puerto, no {raw:?}"),
                )
            })?,
        };
        let central_addr = vars
            .get("EDGE_CENTRAL_ADDR")
            .unwrap_or_else(|| "127.0.0.1:7443".into());
        if !central_addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        {
            return Err(ConfigError::new(
                "EDGE_CENTRAL_ADDR",
                "se esperaba host:puerto",
            ));
        }
        let ident = |name: &'static str, default: &str| -> Result<String, ConfigError> {
            let value = vars.get(name).unwrap_or_else(|| default.to_owned());
            let ok = value.len() <= 64
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if ok {
                Ok(value)
            } else {
                Err(ConfigError::new(name, "hasta 64 caracteres [A-Za-z0-9_-]"))
            }
        };
        let log_pretty = vars.log_format()? == LogFormat::Pretty;

        let server_name = vars
            .get("EDGE_SERVER_NAME")
            .unwrap_or_else(|| "localhost".into());
        if rustls::pki_types::ServerName::try_from(server_name.as_str()).is_err() {
            return Err(ConfigError::new(
                "EDGE_SERVER_NAME",
                "se esperaba un nombre DNS o una dirección IP",
            ));
        }
        let tls = TlsConfig {
            ca: required("EDGE_TLS_CA", dev::TLS_CA)?.into(),
            cert: required("EDGE_TLS_CERT", dev::TLS_CERT)?.into(),
            key: required("EDGE_TLS_KEY", dev::TLS_KEY)?.into(),
            server_name,
        };

        let checksum_secret = required("LICENSE_CHECKSUM_SECRET", dev::LICENSE_CHECKSUM_SECRET)?;
        let checksum = ChecksumKey::new(checksum_secret.as_bytes()).map_err(|_| {
            ConfigError::new("LICENSE_CHECKSUM_SECRET", "debe tener al menos 32 bytes")
        })?;
        let seed = celaest_protocol::signing::parse_key32(&required(
            "LICENSE_SIGNING_KEY",
            dev::LICENSE_SIGNING_KEY,
        )?)
        .ok_or_else(|| {
            ConfigError::new(
                "LICENSE_SIGNING_KEY",
                "se esperaban 32 bytes (texto, 64 hex o base64)",
            )
        })?;
        let signing = SigningKey::from_seed(&seed)
            .map_err(|_| ConfigError::new("LICENSE_SIGNING_KEY", "no es una clave Ed25519"))?;

        let trusted_proxies = vars.trusted_proxies("EDGE_TRUSTED_PROXIES")?;

        let new_ips = match vars.get("EDGE_OFFLINE_NEW_IPS").as_deref() {
            None | Some("refuse") => NewIpPolicy::Refuse,
            Some("allow") => NewIpPolicy::Allow,
            Some(_) => {
                return Err(ConfigError::new(
                    "EDGE_OFFLINE_NEW_IPS",
                    "se esperaba refuse o allow",
                ));
            }
        };
        let millis = |name: &'static str, default: u64, min: u64, max: u64| {
            vars.parse_in(name, default, min..=max)
                .map(Duration::from_millis)
        };
        let offline = OfflinePolicy {
            max_stale: Duration::from_secs(vars.parse_in(
                "EDGE_OFFLINE_MAX_SECS",
                3600,
                0..=30 * 24 * 3600,
            )?),
            new_ips,
            bind_timeout: millis("EDGE_BIND_TIMEOUT_MS", 500, 10, 30_000)?,
        };
        let reports = ReportSettings {
            batch: vars.parse_in("EDGE_REPORT_BATCH", 500, 1..=5_000)?,
            interval: millis("EDGE_REPORT_INTERVAL_MS", 1_000, 10, 600_000)?,
            buffer: vars.parse_in("EDGE_REPORT_BUFFER", 100_000, 1..=10_000_000)?,
            shutdown_flush: millis("EDGE_SHUTDOWN_FLUSH_MS", 5_000, 0, 600_000)?,
        };
        let replication = ReplicationSettings {
            connect_timeout: millis("EDGE_CONNECT_TIMEOUT_MS", 5_000, 100, 120_000)?,
            reconnect_min: millis("EDGE_RECONNECT_MIN_MS", 500, 10, 600_000)?,
            reconnect_max: millis("EDGE_RECONNECT_MAX_MS", 30_000, 10, 3_600_000)?,
        };
        if replication.reconnect_max < replication.reconnect_min {
            return Err(ConfigError::new(
                "EDGE_RECONNECT_MAX_MS",
                "no puede ser menor que EDGE_RECONNECT_MIN_MS",
            ));
        }

        Ok(Self {
            strict,
            http_addr,
            central_addr,
            edge_id: ident("EDGE_ID", "edge-local")?,
            region: ident("EDGE_REGION", "local")?,
            log_level: vars.get("LOG_LEVEL").unwrap_or_else(|| "info".into()),
            log_pretty,
            tls,
            keys: LicensingKeys {
                checksum,
                signing: Arc::new(signing),
            },
            trusted_proxies,
            offline,
            reports,
            replication,
        })
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use std::collections::HashMap;

    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<EdgeConfig, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        EdgeConfig::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_need_no_variables() {
        let config = load(&[]).unwrap();
        assert_eq!(config.http_addr.to_string(), "0.0.0.0:8081");
        assert_eq!(config.central_addr, "127.0.0.1:7443");
        assert_eq!(
            (config.edge_id.as_str(), config.region.as_str()),
            ("edge-local", "local")
        );
        assert_eq!(config.tls.ca, PathBuf::from(".dev/certs/ca.pem"));
        assert_eq!(config.tls.server_name, "localhost");
        assert_eq!(config.offline.max_stale, Duration::from_secs(3600));
        assert_eq!(config.offline.new_ips, NewIpPolicy::Refuse);
        assert_eq!(config.offline.bind_timeout, Duration::from_millis(500));
        assert_eq!(
            (config.reports.batch, config.reports.buffer),
            (500, 100_000)
        );
        assert_eq!(config.reports.interval, Duration::from_secs(1));
        let loopback: std::net::IpAddr = "127.0.0.9".parse().unwrap();
        assert!(config.trusted_proxies.iter().any(|n| n.contains(loopback)));
    }

    #[test]
    fn the_development_signing_key_is_centrals() {
        // Central's development seed (hex of "dev-only-license-signing-seed-32"), so a local
        // edge's answers verify with the key a local central publishes.
        let config = load(&[]).unwrap();
        let central = SigningKey::from_seed(b"dev-only-license-signing-seed-32").unwrap();
        assert_eq!(config.keys.signing.kid(), central.kid());
    }

    #[test]
    fn keys_are_read_as_text_hex_or_base64() {
        let seed = [7u8; 32];
        let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(seed);
        let url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(seed);
        for raw in [hex, b64, url] {
            assert_eq!(
                celaest_protocol::signing::parse_key32(&raw),
                Some(seed),
                "{raw}"
            );
        }
        assert_eq!(
            celaest_protocol::signing::parse_key32("0123456789abcdef0123456789abcdef"),
            Some(*b"0123456789abcdef0123456789abcdef")
        );
        assert_eq!(celaest_protocol::signing::parse_key32("short"), None);
    }

    #[test]
    fn malformed_values_name_their_variable() {
        for (name, value) in [
            ("EDGE_HTTP_ADDR", "8081"),
            ("EDGE_CENTRAL_ADDR", "central"),
            ("EDGE_ID", "has space"),
            ("EDGE_REGION", "eu/west"),
            ("LOG_FORMAT", "xml"),
            ("APP_ENV", "moon"),
            ("EDGE_SERVER_NAME", "not a name!"),
            ("LICENSE_CHECKSUM_SECRET", "too-short"),
            ("LICENSE_SIGNING_KEY", "not-a-key"),
            ("EDGE_TRUSTED_PROXIES", "10.0.0.0/8, nonsense"),
            ("EDGE_OFFLINE_MAX_SECS", "-1"),
            ("EDGE_OFFLINE_NEW_IPS", "maybe"),
            ("EDGE_BIND_TIMEOUT_MS", "0"),
            ("EDGE_REPORT_BATCH", "0"),
            ("EDGE_REPORT_INTERVAL_MS", "soon"),
            ("EDGE_REPORT_BUFFER", "0"),
            ("EDGE_RECONNECT_MAX_MS", "20"),
        ] {
            assert_eq!(load(&[(name, value)]).unwrap_err().variable, name);
        }
    }

    #[test]
    fn production_requires_certificates_and_secrets_and_never_prints_them() {
        let err = load(&[("APP_ENV", "production")]).unwrap_err();
        assert_eq!(err.variable, "EDGE_TLS_CA");
        let full = [
            ("APP_ENV", "production"),
            ("EDGE_TLS_CA", "/etc/celaest/ca.pem"),
            ("EDGE_TLS_CERT", "/etc/celaest/edge.pem"),
            ("EDGE_TLS_KEY", "/etc/celaest/edge.key"),
            (
                "LICENSE_CHECKSUM_SECRET",
                "production-checksum-secret-of-enough-length",
            ),
        ];
        assert_eq!(
            load(&full).unwrap_err().variable,
            "LICENSE_SIGNING_KEY",
            "no development signing key in production"
        );
        let mut with_key = full.to_vec();
        with_key.push(("LICENSE_SIGNING_KEY", "production-signing-seed-32-bytes"));
        let config = load(&with_key).unwrap();
        assert!(config.strict);
        let printed = format!("{config:?}");
        for secret in ["production-checksum", "production-signing-seed"] {
            assert!(!printed.contains(secret), "{secret} leaked in {printed}");
        }
    }

    #[test]
    fn trusted_proxies_and_the_offline_policy_are_read() {
        let config = load(&[
            ("EDGE_TRUSTED_PROXIES", "10.0.0.0/8, 2001:db8::/32"),
            ("EDGE_OFFLINE_NEW_IPS", "allow"),
            ("EDGE_OFFLINE_MAX_SECS", "60"),
        ])
        .unwrap();
        let inside: std::net::IpAddr = "10.1.2.3".parse().unwrap();
        assert!(config.trusted_proxies.iter().any(|n| n.contains(inside)));
        assert_eq!(config.offline.new_ips, NewIpPolicy::Allow);
        assert_eq!(config.offline.max_stale, Duration::from_secs(60));
    }
}
