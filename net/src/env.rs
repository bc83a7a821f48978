//! Reading configuration from the environment as central and the edges both do: values are
//! trimmed and an empty one counts as unset, typed parsing and ranges fail with a
//! [`ConfigError`] naming the variable (never its value when it is a secret), and the settings
//! both read alike — `APP_ENV`, `LOG_FORMAT`, the trusted proxies — are parsed once, here.
//!
//! Each crate keeps its own typed config and its defaults; this is the reader under them.

use std::{fmt::Display, ops::RangeInclusive, str::FromStr};

use ipnetwork::IpNetwork;

/// A configuration problem, naming the variable at fault.
#[derive(Debug, thiserror::Error)]
#[error("configuración inválida: {variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl ConfigError {
    pub fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        Self {
            variable,
            problem: problem.into(),
        }
    }
}

/// Where the process runs (`APP_ENV`); decides which defaults are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Test,
    Staging,
    Production,
}

impl AppEnv {
    /// Reads a value of `APP_ENV` (case-insensitive; `dev`, `local` and `prod` accepted).
    pub fn parse(raw: &str) -> Option<Self> {
        match raw.to_ascii_lowercase().as_str() {
            "development" | "dev" | "local" => Some(Self::Development),
            "test" => Some(Self::Test),
            "staging" => Some(Self::Staging),
            "production" | "prod" => Some(Self::Production),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Test => "test",
            Self::Staging => "staging",
            Self::Production => "production",
        }
    }

    /// Whether secrets must be given explicitly (no development defaults).
    pub fn requires_secrets(self) -> bool {
        matches!(self, Self::Staging | Self::Production)
    }
}

/// How log lines are written (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// Environment access with trimming and typed parsing; empty values count as unset.
pub struct Vars<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl<'a> Vars<'a> {
    /// Reads through `lookup`: the process environment in production, a map in tests.
    pub fn new(lookup: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self { lookup }
    }

    /// The trimmed value of `name`, if set and not empty.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// `name` parsed as a `T`; `default` when unset (an error naming `name` when there is none).
    pub fn parse<T: FromStr>(
        &self,
        name: &'static str,
        default: Option<T>,
    ) -> Result<T, ConfigError> {
        match self.get(name) {
            Some(raw) => raw
                .parse()
                .map_err(|_| ConfigError::new(name, format!("valor inválido: {raw:?}"))),
            None => default.ok_or_else(|| ConfigError::new(name, "es obligatoria")),
        }
    }

    /// `name` parsed as a `T` within `range`, `default` when unset.
    pub fn parse_in<T>(
        &self,
        name: &'static str,
        default: T,
        range: RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + Display + Copy,
    {
        let value = self.parse(name, Some(default))?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::new(
                name,
                format!("debe estar entre {} y {}", range.start(), range.end()),
            ))
        }
    }

    /// The comma-separated items of `name` (none when unset).
    pub fn list(&self, name: &str) -> Vec<String> {
        split_list(&self.get(name).unwrap_or_default())
    }

    /// `APP_ENV`, development when unset.
    pub fn app_env(&self) -> Result<AppEnv, ConfigError> {
        match self.get("APP_ENV") {
            None => Ok(AppEnv::Development),
            Some(raw) => AppEnv::parse(&raw).ok_or_else(|| {
                ConfigError::new(
                    "APP_ENV",
                    "se esperaba development, test, staging o production",
                )
            }),
        }
    }

    /// `LOG_FORMAT`: `json` (the default) or `pretty`.
    pub fn log_format(&self) -> Result<LogFormat, ConfigError> {
        match self.get("LOG_FORMAT").as_deref() {
            None | Some("json") => Ok(LogFormat::Json),
            Some("pretty") => Ok(LogFormat::Pretty),
            Some(_) => Err(ConfigError::new("LOG_FORMAT", "se esperaba json o pretty")),
        }
    }

    /// The proxies whose `X-Forwarded-For` is believed: loopback always (a sidecar or local
    /// proxy), plus the CIDRs listed in `name`.
    pub fn trusted_proxies(&self, name: &'static str) -> Result<Vec<IpNetwork>, ConfigError> {
        let mut trusted: Vec<IpNetwork> = ["127.0.0.0/8", "::1/128"]
            .iter()
            .filter_map(|net| net.parse().ok())
            .collect();
        for cidr in self.list(name) {
            trusted.push(
                cidr.parse()
                    .map_err(|_| ConfigError::new(name, format!("CIDR inválido: {cidr:?}")))?,
            );
        }
        Ok(trusted)
    }
}

/// The non-empty, trimmed items of a comma-separated list.
pub fn split_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, net::IpAddr};

    use super::*;

    fn with<R>(pairs: &[(&str, &str)], read: impl FnOnce(&Vars<'_>) -> R) -> R {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        let lookup = move |name: &str| map.get(name).cloned();
        read(&Vars::new(&lookup))
    }

    #[test]
    fn values_are_trimmed_and_empty_ones_are_unset() {
        with(&[("A", "  x  "), ("B", "   ")], |vars| {
            assert_eq!(vars.get("A").as_deref(), Some("x"));
            assert_eq!(vars.get("B"), None);
            assert_eq!(vars.parse_in("B", 7u32, 1..=10).unwrap(), 7);
        });
    }

    #[test]
    fn malformed_or_out_of_range_values_name_their_variable() {
        with(&[("PORT", "eighty"), ("BATCH", "0")], |vars| {
            let err = vars.parse::<u16>("PORT", Some(80)).unwrap_err();
            assert_eq!(err.variable, "PORT");
            assert!(err.problem.contains("eighty"), "{}", err.problem);
            let err = vars.parse_in("BATCH", 500u32, 1..=5_000).unwrap_err();
            assert_eq!(
                (err.variable, err.problem.as_str()),
                ("BATCH", "debe estar entre 1 y 5000")
            );
            assert_eq!(
                vars.parse::<u16>("MISSING", None).unwrap_err().variable,
                "MISSING"
            );
        });
    }

    #[test]
    fn the_environment_decides_whether_secrets_are_required() {
        for (raw, strict) in [
            ("development", false),
            ("TEST", false),
            ("staging", true),
            ("prod", true),
        ] {
            let env = with(&[("APP_ENV", raw)], |vars| vars.app_env().unwrap());
            assert_eq!(env.requires_secrets(), strict, "{raw}");
        }
        assert_eq!(
            with(&[], |vars| vars.app_env().unwrap()),
            AppEnv::Development
        );
        let err = with(&[("APP_ENV", "moon")], |vars| vars.app_env().unwrap_err());
        assert_eq!(err.variable, "APP_ENV");
        let err = with(&[("LOG_FORMAT", "xml")], |vars| {
            vars.log_format().unwrap_err()
        });
        assert_eq!(err.variable, "LOG_FORMAT");
    }

    #[test]
    fn loopback_is_always_a_trusted_proxy_and_a_bad_cidr_names_the_variable() {
        let trusted = with(&[("PROXIES", "10.0.0.0/8, 2001:db8::/32")], |vars| {
            vars.trusted_proxies("PROXIES").unwrap()
        });
        for ip in ["127.0.0.9", "::1", "10.1.2.3", "2001:db8::1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(trusted.iter().any(|n| n.contains(ip)), "{ip}");
        }
        let err = with(&[("PROXIES", "10.0.0.0/8, nonsense")], |vars| {
            vars.trusted_proxies("PROXIES").unwrap_err()
        });
        assert_eq!(err.variable, "PROXIES");
    }
}
