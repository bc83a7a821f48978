//! The spec's validation flow at central, around the one decision function of `protocol`:
//! parse the key (a bad checksum is answered before any lookup), read the license's state, decide,
//! bind a new IP atomically when a slot is free, answer, and queue the record for the writer.
//!
//! Which IP counts: the request's source address — or, behind a trusted proxy, the client in
//! `X-Forwarded-For` (see `http::client_ip`). The body's `ip_address` must be a valid address and
//! is checked, but it cannot choose the slot: a client could otherwise claim any IP. When the body
//! names a different address, the record keeps it in `device_info` for diagnosis.

use std::net::IpAddr;

use celaest_protocol::{
    ChecksumKey, Decision, Lang, ValidateRequest, ValidationAnswer, ValidationCode, decide,
    replication::BindOutcome,
    signing::{KeyRing, SigningKey, VerifyingKey},
    validation::parse_ip,
};
use chrono::Utc;
use secrecy::ExposeSecret;
use uuid::Uuid;

use super::{
    recorder::{Recorder, ValidationRecord},
    store,
};
use crate::{cache::Redis, config::LicensingConfig, http::Result};

/// Who answers validations at central.
pub const ANSWERED_BY: &str = "central";

/// Keys and queue of licensing, shared by every request.
pub struct Licensing {
    pub checksum: ChecksumKey,
    pub keys: KeyRing,
    pub recorder: Recorder,
}

impl std::fmt::Debug for Licensing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Licensing")
            .field("signing_kid", &self.keys.current().kid())
            .finish_non_exhaustive()
    }
}

impl Licensing {
    /// Builds the keys from configuration and starts the validation writer.
    pub fn new(config: &LicensingConfig, db: sqlx::PgPool, redis: Redis) -> anyhow::Result<Self> {
        let checksum = ChecksumKey::new(config.checksum_secret.expose_secret().as_bytes())
            .map_err(|e| anyhow::anyhow!("LICENSE_CHECKSUM_SECRET: {e}"))?;
        let current = SigningKey::from_seed(config.signing_seed.expose_secret())
            .map_err(|e| anyhow::anyhow!("LICENSE_SIGNING_KEY: {e}"))?;
        let mut keys = KeyRing::new(current);
        for public in &config.previous_signing_keys {
            keys = keys
                .with_previous(VerifyingKey::from_bytes(*public))
                .map_err(|e| anyhow::anyhow!("LICENSE_SIGNING_PREVIOUS_KEYS: {e}"))?;
        }
        Ok(Self {
            checksum,
            keys,
            recorder: Recorder::spawn(db, redis),
        })
    }
}

/// Answers one validation from `source` and queues its record.
pub async fn validate(
    db: &sqlx::PgPool,
    licensing: &Licensing,
    request: &ValidateRequest,
    source: IpAddr,
    lang: Lang,
) -> Result<ValidationAnswer> {
    let now = Utc::now();
    let nonce = request.nonce.clone();
    let parsed = request.parse(&licensing.checksum);
    let (key, claimed) = match parsed {
        Ok(parsed) => (parsed.key, Some(parsed.ip)),
        Err(code) => {
            // A malformed key or IP is answered at once; the record keeps no license.
            let answer = ValidationAnswer::from_decision(
                Decision::Invalid(code),
                None,
                nonce,
                now,
                ANSWERED_BY,
                lang,
            );
            let device_info =
                request.recorded_device_info(parse_ip(&request.ip_address).ok(), source);
            licensing
                .recorder
                .record(record(None, None, source, device_info, code, now));
            return Ok(answer);
        }
    };
    let hash = key.hash();
    let state = store::state_by_hash(db, hash.as_bytes()).await?;
    let decision = match (decide(state.as_ref(), source, now), &state) {
        (Decision::BindNewIp { .. }, Some(license)) => {
            let device = request.device_info.as_deref();
            match store::bind_ip_now(db, license.id, source, device).await? {
                BindOutcome::Bound { remaining } | BindOutcome::AlreadyBound { remaining } => {
                    Decision::Valid {
                        remaining_ips: remaining,
                    }
                }
                // Another request took the last slot first.
                BindOutcome::Full => Decision::Invalid(ValidationCode::IpLimitReached),
                // Deleted since it was read: answered like any unknown key, as an edge does.
                BindOutcome::NotFound => Decision::Invalid(ValidationCode::LicenseNotFound),
            }
        }
        (decision, _) => decision,
    };
    let state = state.filter(|_| decision != Decision::Invalid(ValidationCode::LicenseNotFound));
    let answer =
        ValidationAnswer::from_decision(decision, state.as_ref(), nonce, now, ANSWERED_BY, lang);
    let license_id = state.as_ref().map(|s| s.id);
    licensing.recorder.record(record(
        license_id,
        Some(*hash.as_bytes()),
        source,
        request.recorded_device_info(claimed, source),
        answer.code,
        now,
    ));
    Ok(answer)
}

fn record(
    license_id: Option<Uuid>,
    key_hash: Option<[u8; 32]>,
    source: IpAddr,
    device_info: Option<String>,
    code: ValidationCode,
    now: chrono::DateTime<Utc>,
) -> ValidationRecord {
    ValidationRecord {
        id: celaest_protocol::ids::v7_at(now),
        license_id,
        key_hash,
        ip: source,
        device_info,
        result_code: code.as_str(),
        valid: code.is_valid(),
        answered_by: ANSWERED_BY.to_owned(),
        region: None,
        validated_at: now,
    }
}
