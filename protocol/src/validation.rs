//! License validation (spec, "Flujo Validacion"): the request and answer on the wire, the license
//! state a validation reads, and [`decide`], the one function central and every edge call so that
//! they can never disagree about a key.
//!
//! The flow a caller runs:
//! 1. [`ValidateRequest::parse`] — key format (`INVALID_KEY_FORMAT`, checksum included, no lookup),
//!    then the IP address (`INVALID_IP_ADDRESS`).
//! 2. Look the license up by [`LicenseKey::hash`](crate::license_key::LicenseKey::hash).
//! 3. [`decide`] — not found → revoked → suspended → expired → product inactive → IP slots.
//! 4. On [`Decision::BindNewIp`], bind the IP atomically (central: in its transaction; an edge: by
//!    asking central), then answer valid; if the bind lost a race answer `IP_LIMIT_REACHED`, if
//!    central could not be asked and policy refuses answer `BINDING_UNAVAILABLE`.
//! 5. [`ValidationAnswer::from_decision`] — the body, always with HTTP 200.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use uuid::Uuid;

use crate::Lang;
use crate::license_key::{ChecksumKey, KeyError, LicenseKey, ProductCode};

macro_rules! validation_codes {
    ($( $(#[$doc:meta])* $variant:ident => ($code:literal, $es:literal, $en:literal), )*) => {
        /// The outcome of a validation, as licensed software sees it in `data.code`.
        ///
        /// Published constants: they never change once released.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "SCREAMING_SNAKE_CASE")]
        pub enum ValidationCode {
            $( $(#[$doc])* $variant, )*
        }

        impl ValidationCode {
            /// Every code, for documentation and exhaustiveness tests.
            pub const ALL: &'static [ValidationCode] = &[$(ValidationCode::$variant),*];

            /// The wire constant, e.g. `LICENSE_EXPIRED`.
            pub const fn as_str(self) -> &'static str {
                match self { $(ValidationCode::$variant => $code,)* }
            }

            /// The human-readable message in `lang`.
            pub const fn message(self, lang: Lang) -> &'static str {
                match (self, lang) {
                    $((ValidationCode::$variant, Lang::Es) => $es, (ValidationCode::$variant, Lang::En) => $en,)*
                }
            }
        }
    };
}

validation_codes! {
    /// The license may be used from this IP address.
    Valid => ("VALID", "Licencia válida", "The license is valid"),
    /// The key is not of the form `CELAEST-CODE-XXXXXXXX-XXXX`, or its checksum is wrong.
    InvalidKeyFormat => ("INVALID_KEY_FORMAT", "El formato de la clave de licencia no es válido", "The license key format is invalid"),
    /// No license has this key.
    LicenseNotFound => ("LICENSE_NOT_FOUND", "La licencia no existe", "The license does not exist"),
    /// The license's expiry has been reached, or it was marked expired.
    LicenseExpired => ("LICENSE_EXPIRED", "La licencia ha expirado", "The license has expired"),
    /// The license was revoked (by an admin or by collision detection).
    LicenseRevoked => ("LICENSE_REVOKED", "La licencia ha sido revocada", "The license has been revoked"),
    /// The license is suspended until an admin reactivates it.
    LicenseSuspended => ("LICENSE_SUSPENDED", "La licencia está suspendida", "The license is suspended"),
    /// The product the license is for is not available.
    ProductInactive => ("PRODUCT_INACTIVE", "El producto de esta licencia no está activo", "The product of this license is not active"),
    /// The IP address is new and every IP slot of the license is taken.
    IpLimitReached => ("IP_LIMIT_REACHED", "La licencia alcanzó su límite de direcciones IP", "The license has reached its IP address limit"),
    /// The IP address is not a usable unicast address.
    InvalidIpAddress => ("INVALID_IP_ADDRESS", "La dirección IP no es válida", "The IP address is invalid"),
    /// The IP address is new, the edge could not reach central to bind it, and policy refuses
    /// unbound addresses meanwhile. Retrying later may succeed.
    BindingUnavailable => ("BINDING_UNAVAILABLE", "No es posible vincular una nueva dirección IP en este momento, inténtelo más tarde", "A new IP address cannot be bound right now, try again later"),
}

impl ValidationCode {
    /// Whether this code means the license may be used.
    pub const fn is_valid(self) -> bool {
        matches!(self, ValidationCode::Valid)
    }
}

impl fmt::Display for ValidationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<KeyError> for ValidationCode {
    /// A mistyped or forged checksum is answered like any other malformed key.
    fn from(_: KeyError) -> Self {
        ValidationCode::InvalidKeyFormat
    }
}

/// A license's status as stored (`licenses.status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LicenseStatus {
    Active,
    Suspended,
    Revoked,
    Expired,
}

impl LicenseStatus {
    /// The stored text: `active`, `suspended`, `revoked` or `expired`.
    pub const fn as_str(self) -> &'static str {
        match self {
            LicenseStatus::Active => "active",
            LicenseStatus::Suspended => "suspended",
            LicenseStatus::Revoked => "revoked",
            LicenseStatus::Expired => "expired",
        }
    }
}

impl fmt::Display for LicenseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Text that is not one of the four stored statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownLicenseStatus;

impl fmt::Display for UnknownLicenseStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("license status must be active, suspended, revoked or expired")
    }
}

impl std::error::Error for UnknownLicenseStatus {}

impl FromStr for LicenseStatus {
    type Err = UnknownLicenseStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "active" => Ok(LicenseStatus::Active),
            "suspended" => Ok(LicenseStatus::Suspended),
            "revoked" => Ok(LicenseStatus::Revoked),
            "expired" => Ok(LicenseStatus::Expired),
            _ => Err(UnknownLicenseStatus),
        }
    }
}

/// The IP addresses bound to a license: canonical, sorted and without duplicates, whatever order
/// they were given or deserialized in.
///
/// IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`) are stored as the IPv4 address, so a client
/// seen over both stacks takes one slot. An edge holds one set per license and bindings change
/// rarely, so the set is sized for memory, not for change: the common case of a single IPv4
/// address is kept inline (no heap block at all), and anything larger in one exact-size block
/// behind a thin pointer, so the set is 16 bytes either way.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct BoundIps(Repr);

/// The one representation of each set (see [`BoundIps::from_sorted`]), so the derived equality
/// is set equality.
#[derive(Clone, Default, PartialEq, Eq)]
enum Repr {
    #[default]
    Empty,
    V4(Ipv4Addr),
    /// Two or more addresses, or one IPv6 address.
    Heap(Box<Box<[IpAddr]>>),
}

impl BoundIps {
    /// From canonical, sorted, unique addresses.
    fn from_sorted(ips: Vec<IpAddr>) -> Self {
        Self(match ips.as_slice() {
            [] => Repr::Empty,
            [IpAddr::V4(ip)] => Repr::V4(*ip),
            _ => Repr::Heap(Box::new(ips.into_boxed_slice())),
        })
    }

    fn to_vec(&self) -> Vec<IpAddr> {
        self.iter().collect()
    }

    /// Whether `ip` (or its IPv4 form) is bound.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        match &self.0 {
            Repr::Empty => false,
            Repr::V4(bound) => ip == IpAddr::V4(*bound),
            Repr::Heap(ips) => ips.binary_search(&ip).is_ok(),
        }
    }

    /// How many addresses are bound.
    pub fn len(&self) -> usize {
        match &self.0 {
            Repr::Empty => 0,
            Repr::V4(_) => 1,
            Repr::Heap(ips) => ips.len(),
        }
    }

    /// Whether no address is bound.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bound addresses, in order.
    pub fn iter(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let (one, many) = match &self.0 {
            Repr::Empty => (None, &[][..]),
            Repr::V4(ip) => (Some(IpAddr::V4(*ip)), &[][..]),
            Repr::Heap(ips) => (None, &ips[..]),
        };
        one.into_iter().chain(many.iter().copied())
    }

    /// Binds `ip`; `false` if it was already bound.
    pub fn insert(&mut self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        let mut ips = self.to_vec();
        match ips.binary_search(&ip) {
            Ok(_) => false,
            Err(at) => {
                ips.insert(at, ip);
                *self = Self::from_sorted(ips);
                true
            }
        }
    }

    /// Unbinds `ip`; `false` if it was not bound.
    pub fn remove(&mut self, ip: IpAddr) -> bool {
        let mut ips = self.to_vec();
        match ips.binary_search(&ip.to_canonical()) {
            Ok(at) => {
                ips.remove(at);
                *self = Self::from_sorted(ips);
                true
            }
            Err(_) => false,
        }
    }
}

impl fmt::Debug for BoundIps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl FromIterator<IpAddr> for BoundIps {
    fn from_iter<I: IntoIterator<Item = IpAddr>>(iter: I) -> Self {
        let mut ips: Vec<IpAddr> = iter.into_iter().map(|ip| ip.to_canonical()).collect();
        ips.sort_unstable();
        ips.dedup();
        Self::from_sorted(ips)
    }
}

impl From<Vec<IpAddr>> for BoundIps {
    fn from(ips: Vec<IpAddr>) -> Self {
        ips.into_iter().collect()
    }
}

impl Serialize for BoundIps {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.iter())
    }
}

impl<'de> Deserialize<'de> for BoundIps {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::<IpAddr>::deserialize(deserializer).map(Self::from)
    }
}

/// What a validation needs to know about one license: the state central streams to its edges.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseState {
    pub id: Uuid,
    pub product_code: ProductCode,
    /// Whether the license's product is currently available.
    pub product_active: bool,
    pub status: LicenseStatus,
    /// `None`: perpetual. Expired from this instant on (`now >= expires_at`).
    pub expires_at: Option<DateTime<Utc>>,
    /// IP slots of the license (the spec's default is 5).
    pub max_ips: u32,
    pub bound_ips: BoundIps,
}

impl LicenseState {
    /// The status a client is told: a license past its expiry is `expired` even before a job
    /// marks it so in the database.
    pub fn effective_status(&self, now: DateTime<Utc>) -> LicenseStatus {
        match self.status {
            LicenseStatus::Active if self.expires_at.is_some_and(|at| now >= at) => {
                LicenseStatus::Expired
            }
            status => status,
        }
    }

    /// IP slots still free (never negative, even if `max_ips` was lowered below the bound count).
    pub fn remaining_ips(&self) -> u32 {
        self.max_ips.saturating_sub(bound_count(&self.bound_ips))
    }
}

fn bound_count(ips: &BoundIps) -> u32 {
    u32::try_from(ips.len()).unwrap_or(u32::MAX)
}

/// Reads the `ip_address` of a request: a plain IPv4 or IPv6 address (no prefix length, no zone),
/// IPv4-mapped IPv6 reduced to IPv4. Unspecified, broadcast and multicast addresses are refused:
/// none of them can be where a request came from.
pub fn parse_ip(raw: &str) -> Result<IpAddr, ValidationCode> {
    let ip = raw
        .trim()
        .parse::<IpAddr>()
        .map_err(|_| ValidationCode::InvalidIpAddress)?
        .to_canonical();
    let unusable = ip.is_unspecified()
        || ip.is_multicast()
        || matches!(ip, IpAddr::V4(v4) if v4.is_broadcast());
    if unusable {
        return Err(ValidationCode::InvalidIpAddress);
    }
    Ok(ip)
}

/// What to do with one validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Decision {
    /// Valid: the IP address is already bound.
    Valid { remaining_ips: u32 },
    /// The IP address is new and a slot is free: the caller binds it atomically, then answers
    /// valid with `remaining_after_bind`.
    BindNewIp { remaining_after_bind: u32 },
    /// Not valid, for this reason.
    Invalid(ValidationCode),
}

impl Decision {
    /// The code this decision is answered with (`VALID` for a bind the caller carried out).
    pub fn code(self) -> ValidationCode {
        match self {
            Decision::Valid { .. } | Decision::BindNewIp { .. } => ValidationCode::Valid,
            Decision::Invalid(code) => code,
        }
    }
}

/// Decides a validation of the license `state` (`None`: no license has the key) from `ip` at `now`.
///
/// Checks in the spec's order, first failure wins: not found; status revoked, then suspended;
/// expired (status `expired`, or `now >= expires_at`); product inactive; then the IP address —
/// already bound is valid even when every slot is taken, a new one takes a free slot, and with
/// none free it is `IP_LIMIT_REACHED`.
pub fn decide(state: Option<&LicenseState>, ip: IpAddr, now: DateTime<Utc>) -> Decision {
    let Some(state) = state else {
        return Decision::Invalid(ValidationCode::LicenseNotFound);
    };
    match state.effective_status(now) {
        LicenseStatus::Revoked => return Decision::Invalid(ValidationCode::LicenseRevoked),
        LicenseStatus::Suspended => return Decision::Invalid(ValidationCode::LicenseSuspended),
        LicenseStatus::Expired => return Decision::Invalid(ValidationCode::LicenseExpired),
        LicenseStatus::Active => {}
    }
    if !state.product_active {
        return Decision::Invalid(ValidationCode::ProductInactive);
    }
    if state.bound_ips.contains(ip) {
        return Decision::Valid {
            remaining_ips: state.remaining_ips(),
        };
    }
    match state.remaining_ips() {
        0 => Decision::Invalid(ValidationCode::IpLimitReached),
        free => Decision::BindNewIp {
            remaining_after_bind: free - 1,
        },
    }
}

/// `POST /api/licenses/validate` (and each item of a batch).
///
/// `ip_address` is what the client says; whether it must equal the request's real source
/// address, or is replaced by it, is the policy of the service answering — here it is just input.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidateRequest {
    pub license_key: String,
    pub ip_address: String,
    #[serde(default)]
    pub device_info: Option<String>,
    /// Echoed in the signed answer so the client can tell a fresh answer from a replayed one.
    #[serde(default)]
    pub nonce: Option<String>,
}

impl fmt::Debug for ValidateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The raw key may be valid: it never reaches a log, not even malformed.
        f.debug_struct("ValidateRequest")
            .field("license_key", &"<redacted>")
            .field("ip_address", &self.ip_address)
            .field("device_info", &self.device_info)
            .field("nonce", &self.nonce)
            .finish()
    }
}

/// The parts of a [`ValidateRequest`] that the decision needs, once they are known to be well-formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedRequest {
    pub key: LicenseKey,
    pub ip: IpAddr,
}

impl ValidateRequest {
    /// Checks what can be checked without a lookup, key first: `INVALID_KEY_FORMAT` (shape or
    /// checksum), then `INVALID_IP_ADDRESS`.
    pub fn parse(&self, secret: &ChecksumKey) -> Result<ParsedRequest, ValidationCode> {
        let key = LicenseKey::parse(&self.license_key, secret)?;
        let ip = parse_ip(&self.ip_address)?;
        Ok(ParsedRequest { key, ip })
    }

    /// The device text a validation is recorded with (central and edge alike): the request's
    /// `device_info`, with the address the body claimed when it is not the `source` that counted
    /// — kept for diagnosis, since the body cannot choose the slot. `claimed` is the body's
    /// `ip_address` as parsed (`None` when it was not a valid address).
    pub fn recorded_device_info(&self, claimed: Option<IpAddr>, source: IpAddr) -> Option<String> {
        match (
            self.device_info.as_deref(),
            claimed.filter(|ip| *ip != source),
        ) {
            (device, None) => device.map(str::to_owned),
            (Some(device), Some(ip)) => Some(format!("{device} (reported ip {ip})")),
            (None, Some(ip)) => Some(format!("(reported ip {ip})")),
        }
    }
}

/// The license as shown in a validation answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LicenseSummary {
    pub id: Uuid,
    /// The effective status (`expired` once `expires_at` is reached).
    pub status: LicenseStatus,
    pub product_code: ProductCode,
    pub expires_at: Option<DateTime<Utc>>,
}

/// The `data` of a validation answer: always HTTP 200, `valid` true or false with a code, so
/// licensed software can tell "this license is not valid" from "the service failed".
///
/// Signed as the exact body bytes (see [`crate::signing`]); `nonce` and `timestamp` inside the
/// body let the client reject a replayed answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationAnswer {
    pub valid: bool,
    pub code: ValidationCode,
    pub message: String,
    /// Free IP slots: after this validation when valid, `0` on `IP_LIMIT_REACHED`, else `null`.
    pub remaining_ips: Option<u32>,
    /// `null` when no license was found (or the key was never looked up).
    pub license: Option<LicenseSummary>,
    /// The request's nonce, echoed.
    pub nonce: Option<String>,
    /// When the answer was made.
    pub timestamp: DateTime<Utc>,
    /// `central`, or the id of the edge that answered.
    pub answered_by: String,
    /// How old the answering edge's copy of the state was, in milliseconds; `null` from central.
    /// Set by the edge after [`ValidationAnswer::from_decision`].
    pub state_age_ms: Option<u64>,
}

impl ValidationAnswer {
    /// Builds the answer for `decision`.
    ///
    /// A [`Decision::BindNewIp`] is answered as valid: pass it only once the bind succeeded. If it
    /// did not, pass `Decision::Invalid(IpLimitReached)` or `Decision::Invalid(BindingUnavailable)`
    /// instead. `license` is the state the decision was made on (`None` before or without a
    /// lookup).
    pub fn from_decision(
        decision: Decision,
        license: Option<&LicenseState>,
        nonce: Option<String>,
        now: DateTime<Utc>,
        answered_by: impl Into<String>,
        lang: Lang,
    ) -> Self {
        let code = decision.code();
        let remaining_ips = match decision {
            Decision::Valid { remaining_ips } => Some(remaining_ips),
            Decision::BindNewIp {
                remaining_after_bind,
            } => Some(remaining_after_bind),
            Decision::Invalid(ValidationCode::IpLimitReached) => Some(0),
            Decision::Invalid(_) => None,
        };
        Self {
            valid: code.is_valid(),
            code,
            message: code.message(lang).to_owned(),
            remaining_ips,
            license: license.map(|state| LicenseSummary {
                id: state.id,
                status: state.effective_status(now),
                product_code: state.product_code,
                expires_at: state.expires_at,
            }),
            nonce,
            timestamp: now,
            answered_by: answered_by.into(),
            state_age_ms: None,
        }
    }
}

/// Most validations one batch request may carry.
pub const BATCH_MAX: usize = 100;

/// The longest value of each field of a validation request, in characters (central documents
/// them from here).
pub mod limits {
    pub const KEY: usize = 64;
    pub const IP: usize = 64;
    pub const DEVICE_INFO: usize = 512;
    pub const NONCE: usize = 256;
}

/// The field limits of a validation request (prefix `items[3].` inside a batch) — the same at
/// central and at every edge. A request within them is always answered 200 with a verdict.
pub fn check_request_fields(
    errors: &mut crate::input::FieldErrors,
    prefix: &str,
    request: &ValidateRequest,
) {
    errors.text(
        &format!("{prefix}license_key"),
        &request.license_key,
        1,
        limits::KEY,
    );
    errors.text(
        &format!("{prefix}ip_address"),
        &request.ip_address,
        1,
        limits::IP,
    );
    errors.opt_text(
        &format!("{prefix}device_info"),
        request.device_info.as_deref(),
        0,
        limits::DEVICE_INFO,
    );
    errors.opt_text(
        &format!("{prefix}nonce"),
        request.nonce.as_deref(),
        1,
        limits::NONCE,
    );
}

impl crate::input::Validate for ValidateRequest {
    fn validate(&self, errors: &mut crate::input::FieldErrors) {
        check_request_fields(errors, "", self);
    }
}

/// `POST /api/licenses/batch-validate`'s body: 1–[`BATCH_MAX`] validations, answered in order.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub items: Vec<ValidateRequest>,
}

impl crate::input::Validate for BatchRequest {
    fn validate(&self, errors: &mut crate::input::FieldErrors) {
        check_batch_size(errors, self.items.len());
        for (i, item) in self.items.iter().enumerate() {
            check_request_fields(errors, &format!("items[{i}]."), item);
        }
    }
}

/// The size limit of a batch.
pub fn check_batch_size(errors: &mut crate::input::FieldErrors, items: usize) {
    if items == 0 || items > BATCH_MAX {
        errors.add(
            "items",
            crate::input::FieldProblem::OutOfRange {
                min: 1,
                max: BATCH_MAX as i64,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use chrono::{TimeDelta, TimeZone};

    use super::*;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap()
    }

    fn ip(n: u8) -> IpAddr {
        IpAddr::from([192, 168, 1, n])
    }

    fn license() -> LicenseState {
        LicenseState {
            id: Uuid::from_u128(0x1234),
            product_code: ProductCode::parse("MKT").unwrap(),
            product_active: true,
            status: LicenseStatus::Active,
            expires_at: None,
            max_ips: 5,
            bound_ips: BoundIps::default(),
        }
    }

    fn with_bound(count: u8) -> LicenseState {
        LicenseState {
            bound_ips: (1..=count).map(ip).collect(),
            ..license()
        }
    }

    #[test]
    fn codes_are_unique_and_serde_writes_the_published_constant() {
        let mut seen = HashSet::new();
        for code in ValidationCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {code:?}");
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::json!(code.as_str()));
            assert_eq!(
                serde_json::from_value::<ValidationCode>(json).unwrap(),
                *code
            );
        }
        assert_eq!(ValidationCode::ALL.len(), 10);
    }

    #[test]
    fn every_code_has_a_spanish_and_an_english_message_and_only_valid_is_valid() {
        for code in ValidationCode::ALL {
            assert_ne!(code.message(Lang::Es), code.message(Lang::En), "{code:?}");
            assert_eq!(code.is_valid(), *code == ValidationCode::Valid);
        }
        assert_eq!(
            ValidationCode::LicenseExpired.message(Lang::Es),
            "La licencia ha expirado"
        );
    }

    #[test]
    fn license_status_uses_the_database_words() {
        for (status, text) in [
            (LicenseStatus::Active, "active"),
            (LicenseStatus::Suspended, "suspended"),
            (LicenseStatus::Revoked, "revoked"),
            (LicenseStatus::Expired, "expired"),
        ] {
            assert_eq!(status.as_str(), text);
            assert_eq!(text.parse(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(text)
            );
        }
        assert_eq!("Active".parse::<LicenseStatus>(), Err(UnknownLicenseStatus));
    }

    #[test]
    fn an_unknown_key_is_license_not_found() {
        assert_eq!(
            decide(None, ip(1), now()),
            Decision::Invalid(ValidationCode::LicenseNotFound)
        );
    }

    #[test]
    fn the_first_ip_of_a_fresh_license_is_bound_leaving_four_slots() {
        // The spec's example: a new license validated from 192.168.1.1 has 4 IPs left.
        assert_eq!(
            decide(Some(&license()), ip(1), now()),
            Decision::BindNewIp {
                remaining_after_bind: 4
            }
        );
    }

    #[test]
    fn a_bound_ip_is_valid_with_the_free_slots_counted() {
        assert_eq!(
            decide(Some(&with_bound(2)), ip(2), now()),
            Decision::Valid { remaining_ips: 3 }
        );
    }

    #[test]
    fn the_fifth_ip_takes_the_last_slot_and_the_sixth_is_refused() {
        assert_eq!(
            decide(Some(&with_bound(4)), ip(5), now()),
            Decision::BindNewIp {
                remaining_after_bind: 0
            }
        );
        assert_eq!(
            decide(Some(&with_bound(5)), ip(6), now()),
            Decision::Invalid(ValidationCode::IpLimitReached)
        );
    }

    #[test]
    fn a_bound_ip_stays_valid_when_every_slot_is_taken() {
        for n in 1..=5 {
            assert_eq!(
                decide(Some(&with_bound(5)), ip(n), now()),
                Decision::Valid { remaining_ips: 0 }
            );
        }
    }

    #[test]
    fn lowering_max_ips_below_the_bound_count_keeps_bound_ips_and_refuses_new_ones() {
        let state = LicenseState {
            max_ips: 3,
            ..with_bound(5)
        };
        assert_eq!(
            decide(Some(&state), ip(5), now()),
            Decision::Valid { remaining_ips: 0 }
        );
        assert_eq!(
            decide(Some(&state), ip(9), now()),
            Decision::Invalid(ValidationCode::IpLimitReached)
        );
    }

    #[test]
    fn an_ipv4_mapped_ipv6_address_is_the_same_client_as_its_ipv4() {
        let mapped: IpAddr = "::ffff:192.168.1.1".parse().unwrap();
        assert_eq!(
            decide(Some(&with_bound(1)), mapped, now()),
            Decision::Valid { remaining_ips: 4 }
        );
    }

    #[test]
    fn a_license_expires_at_the_instant_of_its_expiry_not_a_millisecond_before() {
        let state = LicenseState {
            expires_at: Some(now()),
            ..with_bound(1)
        };
        let just_before = now() - TimeDelta::milliseconds(1);
        assert_eq!(
            decide(Some(&state), ip(1), just_before),
            Decision::Valid { remaining_ips: 4 }
        );
        assert_eq!(
            decide(Some(&state), ip(1), now()),
            Decision::Invalid(ValidationCode::LicenseExpired)
        );
        assert_eq!(state.effective_status(just_before), LicenseStatus::Active);
        assert_eq!(state.effective_status(now()), LicenseStatus::Expired);
    }

    #[test]
    fn a_license_marked_expired_is_expired_whatever_its_date() {
        let state = LicenseState {
            status: LicenseStatus::Expired,
            expires_at: Some(now() + TimeDelta::days(30)),
            ..with_bound(1)
        };
        assert_eq!(
            decide(Some(&state), ip(1), now()),
            Decision::Invalid(ValidationCode::LicenseExpired)
        );
    }

    #[test]
    fn revoked_and_suspended_licenses_are_refused() {
        for (status, code) in [
            (LicenseStatus::Revoked, ValidationCode::LicenseRevoked),
            (LicenseStatus::Suspended, ValidationCode::LicenseSuspended),
        ] {
            let state = LicenseState {
                status,
                ..with_bound(1)
            };
            assert_eq!(decide(Some(&state), ip(1), now()), Decision::Invalid(code));
        }
    }

    #[test]
    fn an_inactive_product_refuses_even_bound_ips() {
        let state = LicenseState {
            product_active: false,
            ..with_bound(1)
        };
        assert_eq!(
            decide(Some(&state), ip(1), now()),
            Decision::Invalid(ValidationCode::ProductInactive)
        );
    }

    #[test]
    fn checks_run_in_the_spec_order_and_the_first_failure_wins() {
        let past = Some(now() - TimeDelta::days(1));
        let everything_wrong = LicenseState {
            status: LicenseStatus::Revoked,
            expires_at: past,
            product_active: false,
            max_ips: 5,
            ..with_bound(5)
        };
        let new_ip = ip(9);
        let cases = [
            (everything_wrong.clone(), ValidationCode::LicenseRevoked),
            (
                LicenseState {
                    status: LicenseStatus::Suspended,
                    ..everything_wrong.clone()
                },
                ValidationCode::LicenseSuspended,
            ),
            (
                LicenseState {
                    status: LicenseStatus::Active,
                    ..everything_wrong.clone()
                },
                ValidationCode::LicenseExpired,
            ),
            (
                LicenseState {
                    status: LicenseStatus::Active,
                    expires_at: None,
                    ..everything_wrong.clone()
                },
                ValidationCode::ProductInactive,
            ),
            (
                LicenseState {
                    status: LicenseStatus::Active,
                    expires_at: None,
                    product_active: true,
                    ..everything_wrong
                },
                ValidationCode::IpLimitReached,
            ),
        ];
        for (state, code) in cases {
            assert_eq!(decide(Some(&state), new_ip, now()), Decision::Invalid(code));
        }
    }

    #[test]
    fn ip_addresses_must_be_plain_usable_unicast_addresses() {
        assert_eq!(parse_ip(" 192.168.1.1 "), Ok(ip(1)));
        assert_eq!(parse_ip("::ffff:192.168.1.1"), Ok(ip(1)));
        assert_eq!(parse_ip("2001:db8::1"), Ok("2001:db8::1".parse().unwrap()));
        assert_eq!(parse_ip("127.0.0.1"), Ok(IpAddr::from([127, 0, 0, 1])));
        for bad in [
            "",
            "localhost",
            "192.168.1",
            "192.168.1.256",
            "192.168.1.0/24",
            "fe80::1%eth0",
            "0.0.0.0",
            "::",
            "255.255.255.255",
            "224.0.0.1",
            "ff02::1",
        ] {
            assert_eq!(
                parse_ip(bad),
                Err(ValidationCode::InvalidIpAddress),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_request_is_checked_for_key_format_before_ip_address() {
        let secret = ChecksumKey::new(&[3u8; 32]).unwrap();
        let rng = ring::rand::SystemRandom::new();
        let key = LicenseKey::generate(&ProductCode::parse("MKT").unwrap(), &secret, &rng).unwrap();
        let request = |license_key: &str, ip_address: &str| ValidateRequest {
            license_key: license_key.to_owned(),
            ip_address: ip_address.to_owned(),
            device_info: Some("Windows 11".to_owned()),
            nonce: None,
        };
        let parsed = request(key.as_str(), "192.168.1.1").parse(&secret).unwrap();
        assert_eq!(
            parsed,
            ParsedRequest {
                key: key.clone(),
                ip: ip(1)
            }
        );
        assert_eq!(
            request("CELAEST-MKT-A8F9D2E1-7B3C", "192.168.1.1").parse(&secret),
            Err(ValidationCode::InvalidKeyFormat),
            "a well-shaped key with a wrong checksum"
        );
        assert_eq!(
            request("not a key", "not an ip").parse(&secret),
            Err(ValidationCode::InvalidKeyFormat)
        );
        assert_eq!(
            request(key.as_str(), "not an ip").parse(&secret),
            Err(ValidationCode::InvalidIpAddress)
        );
    }

    #[test]
    fn a_request_never_prints_its_key() {
        let request: ValidateRequest = serde_json::from_value(serde_json::json!({
            "license_key": "CELAEST-MKT-A8F9D2E1-7B3C",
            "ip_address": "192.168.1.1",
        }))
        .unwrap();
        assert_eq!(request.device_info, None);
        let shown = format!("{request:?}");
        assert!(!shown.contains("A8F9D2E1"), "{shown}");
    }

    #[test]
    fn a_valid_answer_carries_the_license_the_nonce_and_the_remaining_slots() {
        let state = with_bound(1);
        let answer = ValidationAnswer::from_decision(
            decide(Some(&state), ip(2), now()),
            Some(&state),
            Some("n-1".to_owned()),
            now(),
            "edge-eu-1",
            Lang::En,
        );
        let json = serde_json::to_value(&answer).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "valid": true,
                "code": "VALID",
                "message": "The license is valid",
                "remaining_ips": 3,
                "license": {
                    "id": "00000000-0000-0000-0000-000000001234",
                    "status": "active",
                    "product_code": "MKT",
                    "expires_at": null,
                },
                "nonce": "n-1",
                "timestamp": "2026-03-01T12:00:00Z",
                "answered_by": "edge-eu-1",
                "state_age_ms": null,
            })
        );
        assert_eq!(
            serde_json::from_value::<ValidationAnswer>(json).unwrap(),
            answer
        );
    }

    #[test]
    fn invalid_answers_say_why_in_the_callers_language() {
        let full = with_bound(5);
        let answer = ValidationAnswer::from_decision(
            decide(Some(&full), ip(9), now()),
            Some(&full),
            None,
            now(),
            "central",
            Lang::Es,
        );
        assert!(!answer.valid);
        assert_eq!(answer.code, ValidationCode::IpLimitReached);
        assert_eq!(answer.remaining_ips, Some(0));
        assert_eq!(
            answer.message,
            ValidationCode::IpLimitReached.message(Lang::Es)
        );

        let not_found = ValidationAnswer::from_decision(
            decide(None, ip(1), now()),
            None,
            None,
            now(),
            "central",
            Lang::Es,
        );
        assert_eq!(not_found.code, ValidationCode::LicenseNotFound);
        assert_eq!((not_found.license, not_found.remaining_ips), (None, None));

        let unavailable = ValidationAnswer::from_decision(
            Decision::Invalid(ValidationCode::BindingUnavailable),
            Some(&full),
            None,
            now(),
            "edge-eu-1",
            Lang::En,
        );
        assert!(!unavailable.valid);
        assert_eq!(unavailable.remaining_ips, None);
    }

    #[test]
    fn an_answer_shows_a_license_past_its_expiry_as_expired() {
        let state = LicenseState {
            expires_at: Some(now()),
            ..with_bound(1)
        };
        let answer = ValidationAnswer::from_decision(
            decide(Some(&state), ip(1), now()),
            Some(&state),
            None,
            now(),
            "central",
            Lang::Es,
        );
        assert_eq!(answer.code, ValidationCode::LicenseExpired);
        assert_eq!(
            answer.license.map(|l| l.status),
            Some(LicenseStatus::Expired)
        );
    }

    #[test]
    fn bound_ips_stay_sorted_canonical_and_unique_however_they_arrive() {
        let mapped: IpAddr = "::ffff:192.168.1.3".parse().unwrap();
        let mut ips: BoundIps = serde_json::from_value(serde_json::json!([
            "192.168.1.3",
            "192.168.1.1",
            "192.168.1.3",
            "::ffff:192.168.1.1",
        ]))
        .unwrap();
        assert_eq!(ips.to_vec(), [ip(1), ip(3)]);
        assert!(ips.contains(mapped));
        assert!(!ips.insert(mapped));
        assert!(ips.insert(ip(2)));
        assert_eq!(ips.to_vec(), [ip(1), ip(2), ip(3)]);
        assert!(ips.remove(mapped));
        assert!(!ips.remove(ip(3)));
        assert_eq!(ips.len(), 2);
        assert_eq!(
            serde_json::to_value(&ips).unwrap(),
            serde_json::json!(["192.168.1.1", "192.168.1.2"])
        );
    }

    #[test]
    fn the_device_text_keeps_a_claimed_address_that_is_not_the_source() {
        let request = |device: Option<&str>| ValidateRequest {
            license_key: String::new(),
            ip_address: String::new(),
            device_info: device.map(str::to_owned),
            nonce: None,
        };
        let source = IpAddr::from([203, 0, 113, 5]);
        let other = IpAddr::from([10, 0, 0, 1]);
        let pc = request(Some("pc"));
        assert_eq!(
            pc.recorded_device_info(Some(source), source),
            Some("pc".into())
        );
        assert_eq!(pc.recorded_device_info(None, source), Some("pc".into()));
        assert_eq!(
            pc.recorded_device_info(Some(other), source),
            Some("pc (reported ip 10.0.0.1)".into())
        );
        assert_eq!(
            request(None).recorded_device_info(Some(other), source),
            Some("(reported ip 10.0.0.1)".into())
        );
        assert_eq!(request(None).recorded_device_info(None, source), None);
    }

    #[test]
    fn every_way_of_building_a_set_gives_the_same_set() {
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let mut grown = BoundIps::default();
        assert!(grown.is_empty() && !grown.contains(ip(1)));
        assert!(grown.insert(ip(2)));
        assert!(grown.insert(v6));
        assert!(grown.insert(ip(1)));
        assert_eq!(grown.to_vec(), [ip(1), ip(2), v6]);
        assert!(grown.remove(v6) && grown.remove(ip(1)));
        // Back to one IPv4 address: the same (inline) set as one built from it.
        assert_eq!(grown, BoundIps::from(vec![ip(2)]));
        assert!(grown.contains(ip(2)) && !grown.contains(ip(1)) && !grown.contains(v6));
        assert_eq!(format!("{grown:?}"), "[192.168.1.2]");

        let only_v6 = BoundIps::from(vec![v6]);
        assert_eq!(only_v6.len(), 1);
        assert!(only_v6.contains(v6) && !only_v6.contains(ip(2)));
        assert_eq!(
            serde_json::to_value(&only_v6).unwrap(),
            serde_json::json!(["2001:db8::1"])
        );
        let mut emptied = only_v6;
        assert!(emptied.remove(v6));
        assert_eq!(emptied, BoundIps::default());
    }

    #[test]
    fn license_state_stays_small_in_memory() {
        // An edge holds one per license: the bound IPs take 16 bytes inline (a single IPv4
        // address needs no heap block), the whole state 64 bytes on 64-bit targets.
        assert_eq!(std::mem::size_of::<BoundIps>(), 16);
        assert!(
            std::mem::size_of::<LicenseState>() <= 64,
            "{}",
            std::mem::size_of::<LicenseState>()
        );
    }
}
