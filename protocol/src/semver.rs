//! Semantic versions (SemVer 2.0.0, <https://semver.org>) for releases: parsed once, ordered by
//! the specification's precedence.
//!
//! `MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD]`: numbers without leading zeros; pre-release
//! identifiers dot-separated `[0-9A-Za-z-]`, numeric ones without leading zeros; build metadata
//! likewise but ignored for precedence (`1.0.0+a` and `1.0.0+b` are equal in order, and distinct
//! as text). A leading `v` is not part of a version and is refused.

use std::{cmp::Ordering, fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest version text accepted; the releases table stores it in a bounded column.
pub const MAX_LEN: usize = 64;

/// A parsed semantic version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SemVer {
    pub major: u64,
    pub minor: u64,
    pub patch: u64,
    pre: Vec<Identifier>,
    build: Vec<String>,
}

/// One pre-release identifier: numeric ones compare as numbers and sort before alphanumeric ones.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Identifier {
    Numeric(u64),
    AlphaNumeric(String),
}

/// Why a text is not a semantic version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidSemVer;

impl fmt::Display for InvalidSemVer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a semantic version (MAJOR.MINOR.PATCH[-PRERELEASE][+BUILD])")
    }
}

impl std::error::Error for InvalidSemVer {}

impl SemVer {
    /// Reads a version exactly as SemVer 2.0.0 writes it.
    pub fn parse(text: &str) -> Result<Self, InvalidSemVer> {
        if text.is_empty() || text.len() > MAX_LEN {
            return Err(InvalidSemVer);
        }
        let (rest, build) = match text.split_once('+') {
            Some((rest, build)) => (rest, Some(build)),
            None => (text, None),
        };
        let (core, pre) = match rest.split_once('-') {
            Some((core, pre)) => (core, Some(pre)),
            None => (rest, None),
        };
        let mut numbers = core.split('.');
        let (Some(major), Some(minor), Some(patch), None) = (
            numbers.next(),
            numbers.next(),
            numbers.next(),
            numbers.next(),
        ) else {
            return Err(InvalidSemVer);
        };
        let pre = match pre {
            Some(pre) => pre
                .split('.')
                .map(pre_identifier)
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        let build = match build {
            Some(build) => build
                .split('.')
                .map(|part| {
                    if is_identifier(part) {
                        Ok(part.to_owned())
                    } else {
                        Err(InvalidSemVer)
                    }
                })
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };
        Ok(Self {
            major: number(major)?,
            minor: number(minor)?,
            patch: number(patch)?,
            pre,
            build,
        })
    }

    /// `1.2.3` with no pre-release or build.
    pub fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self {
            major,
            minor,
            patch,
            pre: Vec::new(),
            build: Vec::new(),
        }
    }

    /// A pre-release (`1.0.0-beta.2`) is not a stable release.
    pub fn is_prerelease(&self) -> bool {
        !self.pre.is_empty()
    }
}

/// A numeric part: digits, no leading zero (but `0` itself).
fn number(part: &str) -> Result<u64, InvalidSemVer> {
    let digits = !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits || (part.len() > 1 && part.starts_with('0')) {
        return Err(InvalidSemVer);
    }
    part.parse().map_err(|_| InvalidSemVer)
}

fn is_identifier(part: &str) -> bool {
    !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn pre_identifier(part: &str) -> Result<Identifier, InvalidSemVer> {
    if !is_identifier(part) {
        return Err(InvalidSemVer);
    }
    if part.bytes().all(|b| b.is_ascii_digit()) {
        number(part).map(Identifier::Numeric)
    } else {
        Ok(Identifier::AlphaNumeric(part.to_owned()))
    }
}

impl Ord for SemVer {
    /// SemVer §11: major, minor, patch numerically; a pre-release sorts before its release;
    /// pre-releases identifier by identifier, a shorter prefix first. Build metadata is ignored,
    /// then compared as text only so that the order stays consistent with equality.
    fn cmp(&self, other: &Self) -> Ordering {
        (self.major, self.minor, self.patch)
            .cmp(&(other.major, other.minor, other.patch))
            .then_with(|| match (self.pre.is_empty(), other.pre.is_empty()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Greater,
                (false, true) => Ordering::Less,
                (false, false) => self.pre.cmp(&other.pre),
            })
            .then_with(|| self.build.cmp(&other.build))
    }
}

impl PartialOrd for SemVer {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl SemVer {
    /// Precedence alone (§11), build metadata ignored: `1.0.0+a` and `1.0.0+b` are equal here.
    pub fn precedence(&self, other: &Self) -> Ordering {
        let strip = |v: &Self| Self {
            build: Vec::new(),
            ..v.clone()
        };
        strip(self).cmp(&strip(other))
    }
}

impl fmt::Display for SemVer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        for (i, id) in self.pre.iter().enumerate() {
            f.write_str(if i == 0 { "-" } else { "." })?;
            match id {
                Identifier::Numeric(n) => write!(f, "{n}")?,
                Identifier::AlphaNumeric(s) => f.write_str(s)?,
            }
        }
        for (i, part) in self.build.iter().enumerate() {
            f.write_str(if i == 0 { "+" } else { "." })?;
            f.write_str(part)?;
        }
        Ok(())
    }
}

impl FromStr for SemVer {
    type Err = InvalidSemVer;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for SemVer {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SemVer {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> SemVer {
        SemVer::parse(text).unwrap()
    }

    #[test]
    fn the_specifications_precedence_example_is_in_order() {
        // SemVer 2.0.0 §11.4, verbatim.
        let ordered = [
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-alpha.beta",
            "1.0.0-beta",
            "1.0.0-beta.2",
            "1.0.0-beta.11",
            "1.0.0-rc.1",
            "1.0.0",
        ];
        for pair in ordered.windows(2) {
            assert!(v(pair[0]) < v(pair[1]), "{} < {}", pair[0], pair[1]);
        }
        // §11.2: numerically, not as text.
        assert!(v("1.0.0") < v("2.0.0"));
        assert!(v("2.0.0") < v("2.1.0"));
        assert!(v("2.1.0") < v("2.1.1"));
        assert!(v("1.9.0") < v("1.10.0"));
    }

    #[test]
    fn build_metadata_is_ignored_for_precedence_but_kept_as_text() {
        let (a, b) = (v("1.0.0+build.1"), v("1.0.0+build.2"));
        assert_eq!(a.precedence(&b), Ordering::Equal);
        assert_ne!(a, b);
        assert_eq!(a.to_string(), "1.0.0+build.1");
        assert_eq!(
            v("1.0.0-rc.1+exp.sha.5114f85").precedence(&v("1.0.0-rc.1")),
            Ordering::Equal
        );
    }

    #[test]
    fn valid_versions_round_trip_through_text() {
        for text in [
            "0.0.0",
            "1.2.3",
            "10.20.30",
            "1.0.0-alpha",
            "1.0.0-alpha.1",
            "1.0.0-0.3.7",
            "1.0.0-x.7.z.92",
            "1.0.0-x-y-z.--",
            "1.0.0+20130313144700",
            "1.0.0-beta+exp.sha.5114f85",
            "1.0.0+21AF26D3----117B344092BD",
            "18446744073709551615.0.0",
        ] {
            assert_eq!(v(text).to_string(), text);
        }
    }

    #[test]
    fn invalid_versions_are_refused() {
        for text in [
            "",
            "1",
            "1.2",
            "1.2.3.4",
            "v1.2.3",
            "01.2.3",
            "1.02.3",
            "1.2.03",
            "1.2.3-",
            "1.2.3-01",
            "1.2.3-alpha..1",
            "1.2.3+",
            "1.2.3+a..b",
            "1.2.3-α",
            " 1.2.3",
            "1.2.3 ",
            "-1.2.3",
            "1.2.-3",
            "18446744073709551616.0.0",
        ] {
            assert_eq!(SemVer::parse(text), Err(InvalidSemVer), "{text:?}");
        }
        assert_eq!(
            SemVer::parse(&format!("1.0.0-{}", "a".repeat(MAX_LEN))),
            Err(InvalidSemVer)
        );
    }

    #[test]
    fn a_prerelease_is_not_stable() {
        assert!(v("1.0.0-rc.1").is_prerelease());
        assert!(!v("1.0.0+build").is_prerelease());
        assert_eq!(SemVer::new(1, 2, 3), v("1.2.3"));
    }

    #[test]
    fn versions_travel_as_their_text() {
        let json = serde_json::to_string(&v("1.0.0-beta.2")).unwrap();
        assert_eq!(json, "\"1.0.0-beta.2\"");
        assert_eq!(
            serde_json::from_str::<SemVer>(&json).unwrap(),
            v("1.0.0-beta.2")
        );
        assert!(serde_json::from_str::<SemVer>("\"1.0\"").is_err());
    }
}
