//! Typed configuration, read once at start-up from the environment (and `.env`).
//!
//! Variable names are the spec's (SEGURIDAD). Every variable has a development default so that
//! `make run` works on a fresh machine; with `APP_ENV=production` every secret must be given and
//! start-up stops with a message naming the first one missing or malformed. Secrets are wrapped in
//! [`SecretString`] so they never reach a log line or a `Debug` print.

use std::{net::IpAddr, sync::Arc, time::Duration};

use secrecy::{ExposeSecret, SecretBox, SecretString};

pub use celaest_net::env::{AppEnv, ConfigError, LogFormat};
use celaest_net::env::{Vars, split_list};

#[derive(Debug, Clone)]
pub struct Config {
    pub env: AppEnv,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub redis: RedisConfig,
    pub supabase: SupabaseConfig,
    pub stripe: StripeConfig,
    pub ai: AiProviderKeys,
    pub security: SecurityConfig,
    pub licensing: LicensingConfig,
    pub replication: ReplicationConfig,
    pub log: LogConfig,
}

/// The QUIC listener that feeds the edges.
#[derive(Debug, Clone)]
pub struct ReplicationConfig {
    /// `REPLICATION_ADDR`, default `0.0.0.0:7443` (UDP).
    pub addr: std::net::SocketAddr,
    /// PEM files: the deployment's CA (edges' certificates must chain to it), and central's
    /// own certificate and key. In development, `.dev/certs/` is created on first start.
    pub ca_path: std::path::PathBuf,
    pub cert_path: std::path::PathBuf,
    pub key_path: std::path::PathBuf,
    /// Whether missing certificates may be created (development only).
    pub create_dev_certs: bool,
    /// In staging and production, the first certificate variable not set (checked by `serve`).
    pub missing_tls: Option<&'static str>,
    /// How many changes the outbox keeps for edges to resume from (`REPLICATION_RETAIN_CHANGES`);
    /// an edge further behind gets a snapshot.
    pub retain_changes: i64,
}

#[derive(Debug, Clone)]
pub struct LicensingConfig {
    /// HMAC key of license-key checksums (`LICENSE_CHECKSUM_SECRET`, ≥ 32 bytes). Never rotated:
    /// every key ever issued carries a checksum made with it.
    pub checksum_secret: SecretString,
    /// Ed25519 seed that signs validation answers (`LICENSE_SIGNING_KEY`: 64 hex or base64).
    pub signing_seed: Arc<SecretBox<[u8; 32]>>,
    /// Public keys of earlier signing keys, still published so clients holding them keep
    /// verifying (`LICENSE_SIGNING_PREVIOUS_KEYS`: comma-separated base64url).
    pub previous_signing_keys: Vec<[u8; 32]>,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub host: IpAddr,
    pub port: u16,
    /// Longest a request may take before it is answered with a timeout error.
    pub request_timeout: Duration,
    /// Largest request body accepted, in bytes.
    pub body_limit: usize,
    /// Origins of the Next.js frontend allowed by CORS (`*` allows any).
    pub cors_allowed_origins: Vec<String>,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Peers whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`, CIDRs; loopback always).
    pub trusted_proxies: Vec<ipnetwork::IpNetwork>,
    /// `METRICS_TOKEN`: when set, `GET /metrics` wants it as a bearer token; unset, it is public.
    pub metrics_token: Option<SecretString>,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    pub url: SecretString,
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct RedisConfig {
    pub url: SecretString,
    pub password: Option<SecretString>,
    /// Prefix of every key this deployment writes (tests use one per test).
    pub key_prefix: String,
}

#[derive(Debug, Clone)]
pub struct SupabaseConfig {
    /// Project URL (`https://<ref>.supabase.co`); `None` in development when not set.
    pub url: Option<String>,
    pub jwt_secret: SecretString,
    pub service_key: Option<SecretString>,
}

#[derive(Debug, Clone)]
pub struct StripeConfig {
    pub secret_key: SecretString,
    pub webhook_secret: SecretString,
}

/// AI provider keys given in the environment (comma-separated, for pooling).
#[derive(Debug, Clone, Default)]
pub struct AiProviderKeys {
    pub gemini: Vec<SecretString>,
    pub openai: Vec<SecretString>,
    pub groq: Vec<SecretString>,
    pub deepseek: Vec<SecretString>,
    pub anthropic: Vec<SecretString>,
}

#[derive(Debug, Clone)]
pub struct SecurityConfig {
    /// AES-256-GCM key for secrets at rest (AI provider keys, webhook secrets).
    pub encryption_key: Arc<SecretBox<[u8; 32]>>,
    pub rate_limit_per_min: u32,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    /// An `EnvFilter` directive: `info`, `debug`, `celaest_central=debug,sqlx=warn`, …
    pub level: String,
    pub format: LogFormat,
}

impl ReplicationConfig {
    /// Stops `serve` when the listener's certificates are not configured where they must be.
    pub fn require_tls(&self) -> Result<(), ConfigError> {
        match self.missing_tls {
            Some(name) => Err(ConfigError::new(
                name,
                "es obligatoria en este entorno para `serve`",
            )),
            None => Ok(()),
        }
    }
}

/// Development-only secrets. They are public, so production refuses to start without real ones.
mod dev {
    pub const DATABASE_URL: &str = "postgres://postgres:postgres@127.0.0.1:5432/celaest";
    pub const REDIS_URL: &str = "redis://127.0.0.1:6379";
    pub const SUPABASE_JWT_SECRET: &str = "dev-only-supabase-jwt-secret-not-for-production";
    pub const STRIPE_SECRET_KEY: &str = "sk_test_dev_only";
    pub const STRIPE_WEBHOOK_SECRET: &str = "whsec_dev_only";
    pub const ENCRYPTION_KEY: &str = "dev-only-32-byte-encryption-key!";
    pub const LICENSE_CHECKSUM_SECRET: &str = "dev-only-license-checksum-secret-not-for-production";
    pub const LICENSE_SIGNING_KEY: &str =
        "6465762d6f6e6c792d6c6963656e73652d7369676e696e672d736565642d3332";
    pub const CORS_ALLOWED_ORIGINS: &str = "http://localhost:3000,http://127.0.0.1:3000";
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads configuration through `lookup` (the environment in production, a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars::new(&lookup);
        let env = vars.app_env()?;
        let strict = env.requires_secrets();
        let secret = |name: &'static str, dev_default: &str| -> Result<SecretString, ConfigError> {
            match vars.get(name) {
                Some(v) => Ok(SecretString::from(v)),
                None if strict => Err(ConfigError::new(name, "es obligatoria en este entorno")),
                None => Ok(SecretString::from(dev_default)),
            }
        };

        let database_url = secret("DATABASE_URL", dev::DATABASE_URL)?;
        check_scheme(
            "DATABASE_URL",
            database_url.expose_secret(),
            &["postgres", "postgresql"],
        )?;
        let redis_url = secret("REDIS_URL", dev::REDIS_URL)?;
        check_scheme("REDIS_URL", redis_url.expose_secret(), &["redis", "rediss"])?;

        let supabase_url = vars.get("SUPABASE_URL");
        if let Some(url) = &supabase_url {
            check_scheme("SUPABASE_URL", url, &["http", "https"])?;
        } else if strict {
            return Err(ConfigError::new(
                "SUPABASE_URL",
                "es obligatoria en este entorno",
            ));
        }
        let service_key = vars.get("SUPABASE_SERVICE_KEY").map(SecretString::from);
        if strict && service_key.is_none() {
            return Err(ConfigError::new(
                "SUPABASE_SERVICE_KEY",
                "es obligatoria en este entorno",
            ));
        }

        let encryption_key = parse_encryption_key(&secret("ENCRYPTION_KEY", dev::ENCRYPTION_KEY)?)?;

        let checksum_secret = secret("LICENSE_CHECKSUM_SECRET", dev::LICENSE_CHECKSUM_SECRET)?;
        if checksum_secret.expose_secret().len() < 32 {
            return Err(ConfigError::new(
                "LICENSE_CHECKSUM_SECRET",
                "debe tener al menos 32 bytes",
            ));
        }
        let signing_seed = parse_key32(
            "LICENSE_SIGNING_KEY",
            &secret("LICENSE_SIGNING_KEY", dev::LICENSE_SIGNING_KEY)?,
        )?;
        let mut previous_signing_keys = Vec::new();
        for raw in vars.list("LICENSE_SIGNING_PREVIOUS_KEYS") {
            previous_signing_keys.push(celaest_protocol::signing::parse_key32(&raw).ok_or_else(
                || {
                    ConfigError::new(
                        "LICENSE_SIGNING_PREVIOUS_KEYS",
                        "se esperaban claves públicas Ed25519 en base64url",
                    )
                },
            )?);
        }

        let tls_paths: [Option<String>; 3] = [
            vars.get("REPLICATION_TLS_CA"),
            vars.get("REPLICATION_TLS_CERT"),
            vars.get("REPLICATION_TLS_KEY"),
        ];
        // Only `serve` runs the listener, so it checks these (see `ReplicationConfig::require_tls`).
        let missing_tls = [
            "REPLICATION_TLS_CA",
            "REPLICATION_TLS_CERT",
            "REPLICATION_TLS_KEY",
        ]
        .into_iter()
        .zip(&tls_paths)
        .find_map(|(name, value)| value.is_none().then_some(name));
        let create_dev_certs = !strict && tls_paths.iter().all(Option::is_none);
        let [ca, cert, key] = tls_paths;
        let replication = ReplicationConfig {
            addr: vars.parse("REPLICATION_ADDR", "0.0.0.0:7443".parse().ok())?,
            ca_path: ca.unwrap_or_else(|| ".dev/certs/ca.pem".into()).into(),
            cert_path: cert
                .unwrap_or_else(|| ".dev/certs/central.pem".into())
                .into(),
            key_path: key
                .unwrap_or_else(|| ".dev/certs/central.key".into())
                .into(),
            create_dev_certs,
            missing_tls: if strict { missing_tls } else { None },
            retain_changes: vars.parse_in(
                "REPLICATION_RETAIN_CHANGES",
                100_000,
                100..=100_000_000,
            )?,
        };

        let cors = vars.get("CORS_ALLOWED_ORIGINS").unwrap_or_else(|| {
            if strict {
                String::new()
            } else {
                dev::CORS_ALLOWED_ORIGINS.into()
            }
        });
        let cors_allowed_origins = split_list(&cors);
        for origin in &cors_allowed_origins {
            if origin != "*" {
                check_scheme("CORS_ALLOWED_ORIGINS", origin, &["http", "https"])?;
            }
        }

        let trusted_proxies = vars.trusted_proxies("TRUSTED_PROXIES")?;

        let log_format = vars.log_format()?;

        Ok(Self {
            env,
            http: HttpConfig {
                host: vars.parse("APP_HOST", "0.0.0.0".parse().ok())?,
                port: vars.parse("APP_PORT", Some(8080))?,
                request_timeout: Duration::from_secs(vars.parse_in(
                    "APP_REQUEST_TIMEOUT_SECS",
                    30,
                    1..=600,
                )?),
                body_limit: vars.parse_in(
                    "APP_BODY_LIMIT_BYTES",
                    1024 * 1024,
                    1024..=64 * 1024 * 1024,
                )?,
                cors_allowed_origins,
                shutdown_grace: Duration::from_secs(vars.parse_in(
                    "SHUTDOWN_GRACE_SECS",
                    30,
                    0..=600,
                )?),
                trusted_proxies,
                metrics_token: vars.get("METRICS_TOKEN").map(SecretString::from),
            },
            database: DatabaseConfig {
                url: database_url,
                max_connections: vars.parse_in("DATABASE_MAX_CONNS", 25, 1..=1000)?,
                acquire_timeout: Duration::from_secs(vars.parse_in(
                    "DATABASE_ACQUIRE_TIMEOUT_SECS",
                    5,
                    1..=120,
                )?),
            },
            redis: RedisConfig {
                url: redis_url,
                password: vars.get("REDIS_PASSWORD").map(SecretString::from),
                key_prefix: vars
                    .get("REDIS_KEY_PREFIX")
                    .unwrap_or_else(|| "celaest:".into()),
            },
            supabase: SupabaseConfig {
                url: supabase_url.map(|u| u.trim_end_matches('/').to_owned()),
                jwt_secret: secret("SUPABASE_JWT_SECRET", dev::SUPABASE_JWT_SECRET)?,
                service_key,
            },
            stripe: StripeConfig {
                secret_key: secret("STRIPE_SECRET_KEY", dev::STRIPE_SECRET_KEY)?,
                webhook_secret: secret("STRIPE_WEBHOOK_SECRET", dev::STRIPE_WEBHOOK_SECRET)?,
            },
            ai: AiProviderKeys {
                gemini: secrets(&vars, "GEMINI_API_KEYS"),
                openai: secrets(&vars, "OPENAI_API_KEYS"),
                groq: secrets(&vars, "GROQ_API_KEYS"),
                deepseek: secrets(&vars, "DEEPSEEK_API_KEYS"),
                anthropic: secrets(&vars, "ANTHROPIC_API_KEYS"),
            },
            security: SecurityConfig {
                encryption_key,
                rate_limit_per_min: vars.parse_in("RATE_LIMIT_PER_MIN", 100, 1..=1_000_000)?,
            },
            replication,
            licensing: LicensingConfig {
                checksum_secret,
                signing_seed: Arc::new(SecretBox::new(Box::new(signing_seed))),
                previous_signing_keys,
            },
            log: LogConfig {
                level: vars.get("LOG_LEVEL").unwrap_or_else(|| "info".into()),
                format: log_format,
            },
        })
    }

    /// The address the REST API listens on.
    pub fn http_addr(&self) -> std::net::SocketAddr {
        (self.http.host, self.http.port).into()
    }
}

/// The comma-separated secrets of `name` (AI provider keys, pooled).
fn secrets(vars: &Vars<'_>, name: &str) -> Vec<SecretString> {
    vars.list(name)
        .into_iter()
        .map(SecretString::from)
        .collect()
}

fn check_scheme(name: &'static str, url: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    let ok = url
        .split_once("://")
        .is_some_and(|(scheme, rest)| schemes.contains(&scheme) && !rest.is_empty());
    if ok {
        Ok(())
    } else {
        Err(ConfigError::new(
            name,
            format!("se esperaba una URL {}://…", schemes.join("|")),
        ))
    }
}

/// Accepts the key as 32 raw bytes, 64 hex characters, or base64 of 32 bytes.
fn parse_encryption_key(raw: &SecretString) -> Result<Arc<SecretBox<[u8; 32]>>, ConfigError> {
    parse_key32("ENCRYPTION_KEY", raw).map(|key| Arc::new(SecretBox::new(Box::new(key))))
}

/// Accepts a 32-byte key as raw text, 64 hex characters, or base64.
fn parse_key32(name: &'static str, raw: &SecretString) -> Result<[u8; 32], ConfigError> {
    celaest_protocol::signing::parse_key32(raw.expose_secret())
        .ok_or_else(|| ConfigError::new(name, "se esperaban 32 bytes (texto, 64 hex o base64)"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    const PRODUCTION: &[(&str, &str)] = &[
        ("APP_ENV", "production"),
        ("DATABASE_URL", "postgres://u:p@db:5432/celaest"),
        ("REDIS_URL", "redis://cache:6379"),
        ("SUPABASE_URL", "https://abc.supabase.co/"),
        ("SUPABASE_JWT_SECRET", "jwt-secret"),
        ("SUPABASE_SERVICE_KEY", "service-key"),
        ("STRIPE_SECRET_KEY", "sk_live_x"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_x"),
        (
            "ENCRYPTION_KEY",
            "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
        ),
        (
            "LICENSE_CHECKSUM_SECRET",
            "a-production-checksum-secret-of-more-than-32-bytes",
        ),
        (
            "LICENSE_SIGNING_KEY",
            "1f1e1d1c1b1a191817161514131211100f0e0d0c0b0a09080706050403020100",
        ),
    ];

    #[test]
    fn development_starts_with_no_variables_at_all() {
        let config = load(&[]).unwrap();
        assert_eq!(config.env, AppEnv::Development);
        assert_eq!(config.http_addr().to_string(), "0.0.0.0:8080");
        assert_eq!(config.database.max_connections, 25);
        assert_eq!(config.security.rate_limit_per_min, 100);
        assert_eq!(config.http.cors_allowed_origins.len(), 2);
    }

    #[test]
    fn production_with_every_secret_starts() {
        let config = load(PRODUCTION).unwrap();
        assert_eq!(config.env, AppEnv::Production);
        assert_eq!(
            config.supabase.url.as_deref(),
            Some("https://abc.supabase.co")
        );
        assert_eq!(config.security.encryption_key.expose_secret()[31], 0x1f);
    }

    #[test]
    fn production_names_each_missing_secret() {
        for (missing, _) in PRODUCTION.iter().filter(|(k, _)| *k != "APP_ENV") {
            let pairs: Vec<_> = PRODUCTION
                .iter()
                .copied()
                .filter(|(k, _)| k != missing)
                .collect();
            let err = load(&pairs).unwrap_err();
            assert_eq!(err.variable, *missing, "{err}");
            assert!(err.to_string().contains(missing));
        }
    }

    #[test]
    fn malformed_values_name_their_variable() {
        let cases = [
            ("APP_PORT", "eighty"),
            ("APP_PORT", "70000"),
            ("DATABASE_MAX_CONNS", "0"),
            ("DATABASE_URL", "mysql://x"),
            ("REDIS_URL", "localhost:6379"),
            ("ENCRYPTION_KEY", "too-short"),
            ("APP_ENV", "moon"),
            ("LOG_FORMAT", "xml"),
            ("CORS_ALLOWED_ORIGINS", "localhost:3000"),
            ("RATE_LIMIT_PER_MIN", "-5"),
            ("TRUSTED_PROXIES", "10.0.0.0/33"),
            ("LICENSE_CHECKSUM_SECRET", "too-short"),
            ("LICENSE_SIGNING_KEY", "not-a-key"),
            ("LICENSE_SIGNING_PREVIOUS_KEYS", "%%%"),
        ];
        for (name, value) in cases {
            let err = load(&[(name, value)]).unwrap_err();
            assert_eq!(err.variable, name, "{name}={value}: {err}");
        }
    }

    #[test]
    fn encryption_key_accepts_raw_hex_and_base64() {
        let raw = load(&[("ENCRYPTION_KEY", "0123456789abcdef0123456789abcdef")]).unwrap();
        assert_eq!(raw.security.encryption_key.expose_secret()[0], b'0');
        let b64 = load(&[(
            "ENCRYPTION_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )])
        .unwrap();
        assert_eq!(b64.security.encryption_key.expose_secret()[31], 31);
    }

    #[test]
    fn production_serve_needs_the_replication_certificates() {
        let config = load(PRODUCTION).unwrap();
        assert_eq!(
            config.replication.require_tls().unwrap_err().variable,
            "REPLICATION_TLS_CA"
        );
        let mut with_tls = PRODUCTION.to_vec();
        with_tls.extend([
            ("REPLICATION_TLS_CA", "/etc/celaest/ca.pem"),
            ("REPLICATION_TLS_CERT", "/etc/celaest/central.pem"),
            ("REPLICATION_TLS_KEY", "/etc/celaest/central.key"),
        ]);
        assert!(load(&with_tls).unwrap().replication.require_tls().is_ok());
        assert!(
            load(&[]).unwrap().replication.require_tls().is_ok(),
            "development makes its own"
        );
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let config = load(PRODUCTION).unwrap();
        let printed = format!("{config:?}");
        for secret in [
            "jwt-secret",
            "service-key",
            "sk_live_x",
            "whsec_x",
            "u:p@db",
            "production-checksum",
        ] {
            assert!(!printed.contains(secret), "{secret} leaked in {printed}");
        }
    }

    #[test]
    fn ai_keys_are_split_on_commas() {
        let config = load(&[("GEMINI_API_KEYS", "k1, k2,,k3")]).unwrap();
        assert_eq!(config.ai.gemini.len(), 3);
        assert!(config.ai.openai.is_empty());
    }
}
