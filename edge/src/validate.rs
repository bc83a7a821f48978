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
    Decision, Lang, LicenseState, ValidateRequest, ValidationAnswer, ValidationCode,
    flow::{Answerer, Finished, Parsed, Step, Validation},
    replication::ValidationReport,
};
use chrono::Utc;
use futures::future::join_all;

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

/// Answers `requests` (one, or a batch) from `source`, in order, through the protocol's flow with
/// the edge's memory as the lookup. Binds needed by a batch are asked of central together, so a
/// batch waits at most one bind deadline.
pub async fn validate_all(
    edge: &EdgeState,
    requests: &[ValidateRequest],
    source: IpAddr,
    lang: Lang,
    state_age_ms: u64,
) -> Vec<ValidationAnswer> {
    let answerer = Answerer {
        answered_by: edge.config.edge_id.as_str(),
        lang,
        now: Utc::now(),
        state_age_ms: Some(state_age_ms),
    };
    let answers = join_all(requests.iter().map(|request| async move {
        let Finished { answer, report } = match from_memory(edge, request, source, answerer) {
            Step::Finished(finished) => finished,
            Step::Bind(pending) => {
                let decision = bind(edge, pending.license(), source, pending.device_info()).await;
                pending.finish(decision)
            }
        };
        record(edge, &answer, report);
        answer
    }));
    answers.await
}

/// Parses and decides from memory; the map is read without any lock or await.
fn from_memory<'a>(
    edge: &EdgeState,
    request: &'a ValidateRequest,
    source: IpAddr,
    answerer: Answerer<'a>,
) -> Step<'a> {
    match Validation::new(request, source, answerer).parse(&edge.config.keys.checksum) {
        Parsed::Finished(finished) => Step::Finished(finished),
        Parsed::Lookup(lookup) => {
            let key_hash = *lookup.key_hash();
            edge.store
                .with_license(&key_hash, |state| lookup.decide(state))
        }
    }
}

/// Asks central to bind `source` to `license`; what to answer when it cannot is the offline
/// policy's call.
async fn bind(
    edge: &EdgeState,
    license: &LicenseState,
    source: IpAddr,
    device_info: Option<&str>,
) -> Decision {
    let reply = edge
        .link
        .bind(
            license.id,
            source,
            device_info.map(str::to_owned),
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
        BindReply::Outcome(outcome) => Decision::from(outcome),
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
fn record(edge: &EdgeState, answer: &ValidationAnswer, report: ValidationReport) {
    edge.metrics.validation(answer.code);
    if let Some(id) = report.license_id
        && let Some(episode) = edge.local.observe(id, report.ip, report.validated_at)
    {
        edge.metrics.collision();
        tracing::warn!(
            license.id = %id,
            ips = ?episode.ips,
            window_start = %episode.window_start,
            "collision: one license used from several addresses"
        );
    }
    edge.reports.push(report);
}
