//! Edge configuration from the environment (and `.env`): where to listen, where central is, and
//! who this edge is. Every value has a local default; a malformed one stops start-up naming it.

use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
#[error("configuración inválida: {variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

#[derive(Debug, Clone)]
pub struct EdgeConfig {
    /// `EDGE_HTTP_ADDR`, default `0.0.0.0:8081`.
    pub http_addr: SocketAddr,
    /// `EDGE_CENTRAL_ADDR`, default `127.0.0.1:7443` (central's replication listener).
    pub central_addr: String,
    /// `EDGE_ID`, default `edge-local`.
    pub edge_id: String,
    /// `EDGE_REGION`, default `local`.
    pub region: String,
    /// `LOG_LEVEL`, an `EnvFilter` directive.
    pub log_level: String,
    /// `LOG_FORMAT`: `json` (default) or `pretty`.
    pub log_pretty: bool,
}

impl EdgeConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let http_addr = match get("EDGE_HTTP_ADDR") {
            None => SocketAddr::from(([0, 0, 0, 0], 8081)),
            Some(raw) => raw.parse().map_err(|_| ConfigError {
                variable: "EDGE_HTTP_ADDR",
                problem: format!("se esperaba host:puerto, no {raw:?}"),
            })?,
        };
        let central_addr = get("EDGE_CENTRAL_ADDR").unwrap_or_else(|| "127.0.0.1:7443".into());
        if !central_addr
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
        {
            return Err(ConfigError {
                variable: "EDGE_CENTRAL_ADDR",
                problem: "se esperaba host:puerto".into(),
            });
        }
        let ident = |name: &'static str, default: &str| -> Result<String, ConfigError> {
            let value = get(name).unwrap_or_else(|| default.to_owned());
            let ok = value.len() <= 64
                && value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if ok {
                Ok(value)
            } else {
                Err(ConfigError {
                    variable: name,
                    problem: "hasta 64 caracteres [A-Za-z0-9_-]".into(),
                })
            }
        };
        let log_pretty = match get("LOG_FORMAT").as_deref() {
            None | Some("json") => false,
            Some("pretty") => true,
            Some(_) => {
                return Err(ConfigError {
                    variable: "LOG_FORMAT",
                    problem: "se esperaba json o pretty".into(),
                });
            }
        };
        Ok(Self {
            http_addr,
            central_addr,
            edge_id: ident("EDGE_ID", "edge-local")?,
            region: ident("EDGE_REGION", "local")?,
            log_level: get("LOG_LEVEL").unwrap_or_else(|| "info".into()),
            log_pretty,
        })
    }
}

#[cfg(test)]
mod tests {
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
    }

    #[test]
    fn malformed_values_name_their_variable() {
        for (name, value) in [
            ("EDGE_HTTP_ADDR", "8081"),
            ("EDGE_CENTRAL_ADDR", "central"),
            ("EDGE_ID", "has space"),
            ("EDGE_REGION", "eu/west"),
            ("LOG_FORMAT", "xml"),
        ] {
            assert_eq!(load(&[(name, value)]).unwrap_err().variable, name);
        }
    }
}
