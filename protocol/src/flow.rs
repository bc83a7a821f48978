//! The validation flow central and edge both run, without its I/O: parse the request, decide on
//! the license the caller looked up, let the caller bind a new IP address, then answer and report.
//!
//! The caller supplies only the two steps that touch the world — the lookup (PostgreSQL at
//! central, memory at an edge) and the bind (a row lock at central, a request to central from an
//! edge) — and drives the flow through its states, so central and edge cannot answer, or record,
//! one validation differently:
//!
//! ```text
//! Validation::new(request, source, answerer)
//!     .parse(checksum) ── Parsed::Finished(Finished)   a malformed key or IP: no lookup
//!     Parsed::Lookup(Lookup) ── .decide(looked up state) ── Step::Finished(Finished)
//!                                                     └─ Step::Bind(PendingBind)
//!                                                           └─ .finish(bind decision)
//! Finished { answer, report }                  the answer to sign, the report to record
//! ```

use std::net::IpAddr;

use chrono::{DateTime, Utc};

use crate::{
    ChecksumKey, Decision, KeyHash, Lang, LicenseState, ValidateRequest, ValidationAnswer,
    ValidationCode, decide,
    replication::{BindOutcome, ValidationReport},
    validation::parse_ip,
};

/// Who answers, in which language, and when: the same for every item of a batch.
#[derive(Debug, Clone, Copy)]
pub struct Answerer<'a> {
    /// `central`, or the edge's id.
    pub answered_by: &'a str,
    pub lang: Lang,
    pub now: DateTime<Utc>,
    /// How old an edge's copy of the state is; `None` at central.
    pub state_age_ms: Option<u64>,
}

/// One validation before its request is parsed.
#[derive(Debug, Clone, Copy)]
pub struct Validation<'a> {
    request: &'a ValidateRequest,
    source: IpAddr,
    answerer: Answerer<'a>,
}

/// A validation whose key and IP address are well-formed: the caller looks up
/// [`Lookup::key_hash`] and passes what it found to [`Lookup::decide`].
#[derive(Debug)]
pub struct Lookup<'a> {
    validation: Validation<'a>,
    key_hash: KeyHash,
    claimed: IpAddr,
}

/// What comes after parsing.
#[derive(Debug)]
pub enum Parsed<'a> {
    /// Well-formed: look the license up.
    Lookup(Lookup<'a>),
    /// Malformed: answered already.
    Finished(Finished),
}

/// What comes after the decision.
#[derive(Debug)]
pub enum Step<'a> {
    /// Answered from the state alone.
    Finished(Finished),
    /// The source address is new and the license has a free slot: the caller binds it (the only
    /// writer, central, does so atomically) and passes the outcome to [`PendingBind::finish`].
    Bind(PendingBind<'a>),
}

/// A validation waiting for its bind.
#[derive(Debug)]
pub struct PendingBind<'a> {
    lookup: Lookup<'a>,
    license: Box<LicenseState>,
}

/// The end of a validation: the answer to sign and send, the report to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub answer: ValidationAnswer,
    pub report: ValidationReport,
}

impl<'a> Validation<'a> {
    /// Starts the validation of `request`, which came from `source` (the address that counts:
    /// the connection's peer, or the client behind a trusted proxy — never the body's claim).
    pub fn new(request: &'a ValidateRequest, source: IpAddr, answerer: Answerer<'a>) -> Self {
        Self {
            request,
            source,
            answerer,
        }
    }

    /// Checks what needs no lookup (the key's shape and checksum, then the IP address). A
    /// malformed request is finished here, with no license in its answer or report.
    pub fn parse(self, checksum: &ChecksumKey) -> Parsed<'a> {
        match self.request.parse(checksum) {
            Ok(parsed) => Parsed::Lookup(Lookup {
                validation: self,
                key_hash: parsed.key.hash(),
                claimed: parsed.ip,
            }),
            Err(code) => {
                let claimed = parse_ip(&self.request.ip_address).ok();
                Parsed::Finished(self.finish(Decision::Invalid(code), None, None, claimed))
            }
        }
    }

    fn finish(
        self,
        decision: Decision,
        license: Option<&LicenseState>,
        key_hash: Option<KeyHash>,
        claimed: Option<IpAddr>,
    ) -> Finished {
        let Answerer {
            answered_by,
            lang,
            now,
            state_age_ms,
        } = self.answerer;
        let mut answer = ValidationAnswer::from_decision(
            decision,
            license,
            self.request.nonce.clone(),
            now,
            answered_by,
            lang,
        );
        answer.state_age_ms = state_age_ms;
        let report = ValidationReport::new(
            license.map(|state| state.id),
            key_hash,
            self.source,
            self.request.recorded_device_info(claimed, self.source),
            answer.code,
            now,
        );
        Finished { answer, report }
    }
}

impl<'a> Lookup<'a> {
    /// The hash the license is looked up by (no node ever holds the plaintext key).
    pub fn key_hash(&self) -> &KeyHash {
        &self.key_hash
    }

    /// Decides on the license the caller found for [`Lookup::key_hash`] (`None`: no license has
    /// the key). A state is copied only when a bind is needed.
    pub fn decide(self, state: Option<&LicenseState>) -> Step<'a> {
        let source = self.validation.source;
        match (decide(state, source, self.validation.answerer.now), state) {
            (Decision::BindNewIp { .. }, Some(license)) => Step::Bind(PendingBind {
                lookup: self,
                license: Box::new(license.clone()),
            }),
            (decision, state) => Step::Finished(self.finish(decision, state)),
        }
    }

    fn finish(self, decision: Decision, state: Option<&LicenseState>) -> Finished {
        let Self {
            validation,
            key_hash,
            claimed,
        } = self;
        validation.finish(decision, state, Some(key_hash), Some(claimed))
    }
}

impl<'a> PendingBind<'a> {
    /// The license the new address is to be bound to.
    pub fn license(&self) -> &LicenseState {
        &self.license
    }

    /// The address to bind.
    pub fn source(&self) -> IpAddr {
        self.lookup.validation.source
    }

    /// The request's device text, stored with the binding.
    pub fn device_info(&self) -> Option<&'a str> {
        self.lookup.validation.request.device_info.as_deref()
    }

    /// Answers with what the bind decided: central's [`BindOutcome`] through
    /// `Decision::from`, or, when central could not be asked, the edge's offline policy
    /// (`Valid`, `Invalid(BindingUnavailable)` or `Invalid(IpLimitReached)`). A license that
    /// vanished meanwhile (`Invalid(LicenseNotFound)`) is answered like any unknown key.
    pub fn finish(self, decision: Decision) -> Finished {
        let Self { lookup, license } = self;
        let shown = match decision {
            Decision::Invalid(ValidationCode::LicenseNotFound) => None,
            _ => Some(license.as_ref()),
        };
        lookup.finish(decision, shown)
    }
}

impl From<BindOutcome> for Decision {
    /// What a validation answers once central has tried the bind.
    fn from(outcome: BindOutcome) -> Self {
        match outcome {
            BindOutcome::Bound { remaining } | BindOutcome::AlreadyBound { remaining } => {
                Decision::Valid {
                    remaining_ips: remaining,
                }
            }
            // Another request (at central or any edge) took the last slot first.
            BindOutcome::Full => Decision::Invalid(ValidationCode::IpLimitReached),
            // Deleted since it was read.
            BindOutcome::NotFound => Decision::Invalid(ValidationCode::LicenseNotFound),
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use uuid::Uuid;

    use super::*;
    use crate::{LicenseKey, LicenseStatus, ProductCode, validation::BoundIps};

    const SECRET: &[u8] = b"flow-test-checksum-secret-32-bytes!!";

    fn checksum() -> ChecksumKey {
        ChecksumKey::new(SECRET).expect("a long enough secret")
    }

    fn key() -> LicenseKey {
        let code = ProductCode::parse("PROD").expect("a product code");
        LicenseKey::generate(&code, &checksum(), &ring::rand::SystemRandom::new())
            .expect("random bytes")
    }

    fn answerer(now: DateTime<Utc>) -> Answerer<'static> {
        Answerer {
            answered_by: "edge-test",
            lang: Lang::En,
            now,
            state_age_ms: Some(42),
        }
    }

    fn request(key: &str, ip: &str) -> ValidateRequest {
        ValidateRequest {
            license_key: key.to_owned(),
            ip_address: ip.to_owned(),
            device_info: Some("build 7".to_owned()),
            nonce: Some("n-1".to_owned()),
        }
    }

    fn license(bound: &[&str], max_ips: u32) -> LicenseState {
        LicenseState {
            id: Uuid::from_u128(7),
            product_code: ProductCode::parse("PROD").expect("a product code"),
            product_active: true,
            status: LicenseStatus::Active,
            expires_at: None,
            max_ips,
            bound_ips: bound
                .iter()
                .map(|ip| ip.parse().expect("an address"))
                .collect::<BoundIps>(),
        }
    }

    fn ip(raw: &str) -> IpAddr {
        raw.parse().expect("an address")
    }

    #[test]
    fn a_malformed_key_is_finished_before_any_lookup_and_reported_without_a_license() {
        let now = Utc::now();
        let request = request("CELAEST-PROD-NOTAKEY", "10.0.0.1");
        let Parsed::Finished(finished) =
            Validation::new(&request, ip("10.0.0.1"), answerer(now)).parse(&checksum())
        else {
            panic!("a malformed key must not reach the lookup");
        };
        assert_eq!(finished.answer.code, ValidationCode::InvalidKeyFormat);
        assert!(!finished.answer.valid);
        assert_eq!(finished.answer.license, None);
        assert_eq!(finished.answer.nonce.as_deref(), Some("n-1"));
        assert_eq!(finished.answer.state_age_ms, Some(42));
        assert_eq!(finished.report.license_id, None);
        assert_eq!(finished.report.key_hash, None);
        assert_eq!(finished.report.code, ValidationCode::InvalidKeyFormat);
        assert_eq!(finished.report.validated_at, now);
    }

    #[test]
    fn a_bound_address_is_answered_from_the_state_alone() {
        let now = Utc::now();
        let key = key();
        let request = request(key.as_str(), "10.0.0.1");
        let Parsed::Lookup(lookup) =
            Validation::new(&request, ip("10.0.0.1"), answerer(now)).parse(&checksum())
        else {
            panic!("a well-formed request");
        };
        assert_eq!(lookup.key_hash(), &key.hash());
        let state = license(&["10.0.0.1"], 3);
        let Step::Finished(finished) = lookup.decide(Some(&state)) else {
            panic!("a bound address needs no bind");
        };
        assert!(finished.answer.valid);
        assert_eq!(finished.answer.remaining_ips, Some(2));
        assert_eq!(finished.answer.answered_by, "edge-test");
        assert_eq!(finished.report.license_id, Some(state.id));
        assert_eq!(finished.report.key_hash, Some(key.hash()));
        assert_eq!(finished.report.ip, ip("10.0.0.1"));
        assert_eq!(finished.report.device_info.as_deref(), Some("build 7"));
    }

    #[test]
    fn an_unknown_key_is_reported_with_its_hash_but_no_license() {
        let key = key();
        let request = request(key.as_str(), "10.0.0.1");
        let Parsed::Lookup(lookup) =
            Validation::new(&request, ip("10.0.0.1"), answerer(Utc::now())).parse(&checksum())
        else {
            panic!("a well-formed request");
        };
        let Step::Finished(finished) = lookup.decide(None) else {
            panic!("nothing to bind without a license");
        };
        assert_eq!(finished.answer.code, ValidationCode::LicenseNotFound);
        assert_eq!(finished.report.license_id, None);
        assert_eq!(finished.report.key_hash, Some(key.hash()));
    }

    #[test]
    fn a_new_address_with_a_free_slot_waits_for_its_bind() {
        let key = key();
        let request = request(key.as_str(), "10.0.0.2");
        let state = license(&["10.0.0.1"], 2);
        let Parsed::Lookup(lookup) =
            Validation::new(&request, ip("10.0.0.2"), answerer(Utc::now())).parse(&checksum())
        else {
            panic!("a well-formed request");
        };
        let Step::Bind(pending) = lookup.decide(Some(&state)) else {
            panic!("a new address must be bound first");
        };
        assert_eq!(pending.license(), &state);
        assert_eq!(pending.source(), ip("10.0.0.2"));
        assert_eq!(pending.device_info(), Some("build 7"));
        let finished = pending.finish(BindOutcome::Bound { remaining: 0 }.into());
        assert!(finished.answer.valid);
        assert_eq!(finished.answer.remaining_ips, Some(0));
        assert_eq!(finished.report.license_id, Some(state.id));
    }

    #[test]
    fn a_bind_lost_to_another_request_answers_ip_limit_reached() {
        let key = key();
        let request = request(key.as_str(), "10.0.0.2");
        let state = license(&[], 1);
        let Parsed::Lookup(lookup) =
            Validation::new(&request, ip("10.0.0.2"), answerer(Utc::now())).parse(&checksum())
        else {
            panic!("a well-formed request");
        };
        let Step::Bind(pending) = lookup.decide(Some(&state)) else {
            panic!("a free slot means a bind");
        };
        let finished = pending.finish(BindOutcome::Full.into());
        assert_eq!(finished.answer.code, ValidationCode::IpLimitReached);
        assert_eq!(finished.answer.remaining_ips, Some(0));
        assert!(finished.answer.license.is_some());
    }

    #[test]
    fn a_license_deleted_before_its_bind_is_answered_like_an_unknown_key() {
        let key = key();
        let request = request(key.as_str(), "10.0.0.2");
        let state = license(&[], 1);
        let Parsed::Lookup(lookup) =
            Validation::new(&request, ip("10.0.0.2"), answerer(Utc::now())).parse(&checksum())
        else {
            panic!("a well-formed request");
        };
        let Step::Bind(pending) = lookup.decide(Some(&state)) else {
            panic!("a free slot means a bind");
        };
        let finished = pending.finish(BindOutcome::NotFound.into());
        assert_eq!(finished.answer.code, ValidationCode::LicenseNotFound);
        assert_eq!(finished.answer.license, None);
        assert_eq!(finished.report.license_id, None);
        assert_eq!(finished.report.key_hash, Some(key.hash()));
    }

    #[test]
    fn a_claimed_address_other_than_the_source_is_kept_in_the_report_only() {
        let key = key();
        let request = request(key.as_str(), "192.0.2.9");
        let state = license(&["10.0.0.1"], 1);
        let Parsed::Lookup(lookup) =
            Validation::new(&request, ip("10.0.0.1"), answerer(Utc::now())).parse(&checksum())
        else {
            panic!("a well-formed request");
        };
        let Step::Finished(finished) = lookup.decide(Some(&state)) else {
            panic!("the source is bound");
        };
        assert!(finished.answer.valid, "the body cannot choose the slot");
        assert_eq!(finished.report.ip, ip("10.0.0.1"));
        assert_eq!(
            finished.report.device_info.as_deref(),
            Some("build 7 (reported ip 192.0.2.9)")
        );
    }

    #[test]
    fn an_expired_license_is_refused_without_a_bind() {
        let now = Utc::now();
        let key = key();
        let request = request(key.as_str(), "10.0.0.2");
        let mut state = license(&[], 5);
        state.expires_at = Some(now - Duration::seconds(1));
        let Parsed::Lookup(lookup) =
            Validation::new(&request, ip("10.0.0.2"), answerer(now)).parse(&checksum())
        else {
            panic!("a well-formed request");
        };
        let Step::Finished(finished) = lookup.decide(Some(&state)) else {
            panic!("an expired license binds nothing");
        };
        assert_eq!(finished.answer.code, ValidationCode::LicenseExpired);
    }

    #[test]
    fn every_bind_outcome_maps_to_the_decision_central_answers() {
        assert_eq!(
            Decision::from(BindOutcome::Bound { remaining: 3 }),
            Decision::Valid { remaining_ips: 3 }
        );
        assert_eq!(
            Decision::from(BindOutcome::AlreadyBound { remaining: 1 }),
            Decision::Valid { remaining_ips: 1 }
        );
        assert_eq!(
            Decision::from(BindOutcome::Full),
            Decision::Invalid(ValidationCode::IpLimitReached)
        );
        assert_eq!(
            Decision::from(BindOutcome::NotFound),
            Decision::Invalid(ValidationCode::LicenseNotFound)
        );
    }
}
