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
    ChecksumKey, Lang, ValidateRequest, ValidationAnswer,
    flow::{Answerer, Finished, Parsed, Step, Validation},
    signing::{KeyRing, SigningKey, VerifyingKey},
};
use chrono::Utc;
use secrecy::ExposeSecret;

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

/// Answers one validation from `source` and queues its record: the protocol's flow, with the
/// license read from PostgreSQL and a new IP bound under the license's row lock.
#[tracing::instrument(skip_all, fields(source = %source))]
pub async fn validate(
    db: &sqlx::PgPool,
    licensing: &Licensing,
    request: &ValidateRequest,
    source: IpAddr,
    lang: Lang,
) -> Result<ValidationAnswer> {
    let answerer = Answerer {
        answered_by: ANSWERED_BY,
        lang,
        now: Utc::now(),
        state_age_ms: None,
    };
    let finished = match Validation::new(request, source, answerer).parse(&licensing.checksum) {
        Parsed::Finished(finished) => finished,
        Parsed::Lookup(lookup) => {
            let state = store::state_by_hash(db, lookup.key_hash().as_bytes()).await?;
            match lookup.decide(state.as_ref()) {
                Step::Finished(finished) => finished,
                Step::Bind(pending) => {
                    let license = pending.license().id;
                    let outcome =
                        store::bind_ip_now(db, license, pending.source(), pending.device_info())
                            .await?;
                    pending.finish(outcome.into())
                }
            }
        }
    };
    let Finished { answer, report } = finished;
    licensing
        .recorder
        .record(ValidationRecord::from_report(report, ANSWERED_BY, None));
    Ok(answer)
}
