//! The spec's validation flow at the edge, around the protocol's one decision function: parse the
//! key (a bad checksum is answered before any lookup), read the license from memory, decide, and
//! — only for a new IP with a free slot — ask central to bind it, under the offline policy when
//! central cannot answer in time. Every answer becomes a report for central and is counted.
//!
//! Which IP counts is central's rule: the request's source (after trusted proxies). The body's
//! `ip_address` must be a valid address but cannot choose the slot; when it differs from the
//! source the report keeps it in `device_info`, exactly as central records it.
//!
//! No axum types here: the HTTP layer extracts and signs, this decides.

use std::net::IpAddr;

use celaest_protocol::{
    Decision, KeyHash, Lang, LicenseState, ValidateRequest, ValidationAnswer, ValidationCode,
    decide,
    replication::{BindOutcome, ValidationReport},
    validation::parse_ip,
};
use chrono::{DateTime, Utc};
use futures::future::join_all;
use uuid::Uuid;

use crate::{EdgeState, config::NewIpPolicy, metrics::BindResult, replication::BindReply};

/// Why the edge cannot answer validations at all (503 `NOT_READY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// No complete snapshot yet.
    NoSnapshot,
    /// Central has been out of reach longer than `EDGE_OFFLINE_MAX_SECS`.
    OfflineTooLong { state_age_ms: u64 },
}

/// Whether the edge may answer now, and the age its answers carry.
pub fn availability(edge: &EdgeState) -> Result<u64, Unavailable> {
    let freshness = edge.store.freshness().ok_or(Unavailable::NoSnapshot)?;
    let max_ms = u64::try_from(edge.config.offline.max_stale.as_millis()).unwrap_or(u64::MAX);
    if !freshness.live && freshness.age_ms > max_ms {
        return Err(Unavailable::OfflineTooLong {
            state_age_ms: freshness.age_ms,
        });
    }
    Ok(freshness.age_ms)
}

/// What the memory alone decided for one request, with the address its body claimed.
struct Step {
    claimed: Option<IpAddr>,
    outcome: Outcome,
}

enum Outcome {
    /// Answered.
    Done {
        answer: ValidationAnswer,
        license_id: Option<Uuid>,
        key_hash: Option<KeyHash>,
    },
    /// A new IP with a free slot: central must bind it first.
    Bind {
        license: Box<LicenseState>,
        key_hash: KeyHash,
    },
}

/// Answers `requests` (one, or a batch) from `source`, in order. Binds needed by a batch are
/// asked of central together, so a batch waits at most one bind deadline.
pub async fn validate_all(
    edge: &EdgeState,
    requests: &[ValidateRequest],
    source: IpAddr,
    lang: Lang,
    state_age_ms: u64,
) -> Vec<ValidationAnswer> {
    let now = Utc::now();
    let answered_by = edge.config.edge_id.as_str();
    let steps = requests
        .iter()
        .map(|request| from_memory(edge, request, source, now, lang));
    let answers = join_all(steps.zip(requests).map(|(step, request)| async move {
        let (mut answer, license_id, key_hash) = match step.outcome {
            Outcome::Done {
                answer,
                license_id,
                key_hash,
            } => (answer, license_id, key_hash),
            Outcome::Bind { license, key_hash } => {
                let decision = bind(edge, &license, source, request).await;
                // A license central no longer has is answered like any unknown key.
                let (shown, license_id) = match decision {
                    Decision::Invalid(ValidationCode::LicenseNotFound) => (None, None),
                    _ => (Some(license.as_ref()), Some(license.id)),
                };
                let answer = ValidationAnswer::from_decision(
                    decision,
                    shown,
                    request.nonce.clone(),
                    now,
                    answered_by,
                    lang,
                );
                (answer, license_id, Some(key_hash))
            }
        };
        answer.state_age_ms = Some(state_age_ms);
        let device_info = request.recorded_device_info(step.claimed, source);
        record(
            edge,
            source,
            device_info,
            &answer,
            license_id,
            key_hash,
            now,
        );
        answer
    }));
    answers.await
}

/// Parses and decides from memory; the map is read without any lock or await.
fn from_memory(
    edge: &EdgeState,
    request: &ValidateRequest,
    source: IpAddr,
    now: DateTime<Utc>,
    lang: Lang,
) -> Step {
    let answered_by = edge.config.edge_id.as_str();
    let (key, claimed) = match request.parse(&edge.config.keys.checksum) {
        Ok(parsed) => (parsed.key, Some(parsed.ip)),
        Err(code) => {
            return Step {
                claimed: parse_ip(&request.ip_address).ok(),
                outcome: Outcome::Done {
                    answer: ValidationAnswer::from_decision(
                        Decision::Invalid(code),
                        None,
                        request.nonce.clone(),
                        now,
                        answered_by,
                        lang,
                    ),
                    license_id: None,
                    key_hash: None,
                },
            };
        }
    };
    let key_hash = key.hash();
    let outcome = edge.store.with_license(&key_hash, |state| {
        match (decide(state, source, now), state) {
            (Decision::BindNewIp { .. }, Some(license)) => Outcome::Bind {
                license: Box::new(license.clone()),
                key_hash,
            },
            (decision, state) => Outcome::Done {
                answer: ValidationAnswer::from_decision(
                    decision,
                    state,
                    request.nonce.clone(),
                    now,
                    answered_by,
                    lang,
                ),
                license_id: state.map(|s| s.id),
                key_hash: Some(key_hash),
            },
        }
    });
    Step { claimed, outcome }
}

/// Asks central to bind `source` to `license`; what to answer when it cannot is the offline
/// policy's call.
async fn bind(
    edge: &EdgeState,
    license: &LicenseState,
    source: IpAddr,
    request: &ValidateRequest,
) -> Decision {
    let reply = edge
        .link
        .bind(
            license.id,
            source,
            request.device_info.clone(),
            edge.config.offline.bind_timeout,
        )
        .await;
    let result = match reply {
        BindReply::Outcome(outcome) => BindResult::from(outcome),
        BindReply::Timeout => BindResult::Timeout,
        BindReply::Unavailable => BindResult::Unavailable,
    };
    edge.metrics.bind(result);
    match reply {
        BindReply::Outcome(
            BindOutcome::Bound { remaining } | BindOutcome::AlreadyBound { remaining },
        ) => Decision::Valid {
            remaining_ips: remaining,
        },
        // Another request (at this or another edge) took the last slot first.
        BindReply::Outcome(BindOutcome::Full) => Decision::Invalid(ValidationCode::IpLimitReached),
        BindReply::Outcome(BindOutcome::NotFound) => {
            Decision::Invalid(ValidationCode::LicenseNotFound)
        }
        BindReply::Timeout | BindReply::Unavailable => match edge.config.offline.new_ips {
            NewIpPolicy::Refuse => Decision::Invalid(ValidationCode::BindingUnavailable),
            NewIpPolicy::Allow => match edge.local.admit_provisionally(license, source) {
                Some(remaining_ips) => Decision::Valid { remaining_ips },
                None => Decision::Invalid(ValidationCode::IpLimitReached),
            },
        },
    }
}

/// Counts the answer, feeds the collision window and queues the report for central.
fn record(
    edge: &EdgeState,
    source: IpAddr,
    device_info: Option<String>,
    answer: &ValidationAnswer,
    license_id: Option<Uuid>,
    key_hash: Option<KeyHash>,
    now: DateTime<Utc>,
) {
    edge.metrics.validation(answer.code);
    if let Some(id) = license_id
        && let Some(episode) = edge.local.observe(id, source, now)
    {
        edge.metrics.collision();
        tracing::warn!(
            license.id = %id,
            ips = ?episode.ips,
            window_start = %episode.window_start,
            "collision: one license used from several addresses"
        );
    }
    edge.reports.push(ValidationReport {
        id: celaest_protocol::ids::v7_at(now),
        license_id,
        key_hash,
        ip: source,
        device_info,
        code: answer.code,
        validated_at: now,
    });
}
