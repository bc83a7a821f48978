//! The edge's metrics: the name of every series (one constant each, read by the Grafana
//! dashboard check in `scripts/lint-delivery.sh`), and their Prometheus rendering for
//! `GET /metrics`, on the `metrics` crate and its Prometheus exporter as at central.
//!
//! Each edge owns its recorder rather than using the process-wide one, so several edges in one
//! process (the tests start many) keep their own counts. Handles are resolved once when the
//! edge starts: the request path does atomic adds only, no registry lookup. Gauges that already
//! live elsewhere (applied sequence, licenses held, buffered reports, connection state) are read
//! from their owners when the page is rendered. Metric names start with `celaest_edge_`.

use std::time::Duration;

pub use celaest_net::metrics::{Kind, Series};
use celaest_protocol::{ValidationCode, replication::BindOutcome};
use metrics::{Counter, Gauge, Histogram};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::{EdgeState, replication::ConnectionState};

/// Counter, label `code`: validations answered, by result code.
pub const VALIDATIONS_TOTAL: &str = "celaest_edge_validations_total";
/// Histogram (seconds): time to answer a validation request (one or a batch).
pub const VALIDATION_DURATION_SECONDS: &str = "celaest_edge_validation_duration_seconds";
/// Counter, label `outcome`: new IP bindings asked of central.
pub const BINDS_TOTAL: &str = "celaest_edge_binds_total";
/// Counter: collision episodes seen by this edge.
pub const COLLISIONS_TOTAL: &str = "celaest_edge_collisions_total";
/// Counter: connections to central that ended and were retried.
pub const RECONNECTS_TOTAL: &str = "celaest_edge_reconnects_total";
/// Gauge: 1 once a complete snapshot from central is held.
pub const READY: &str = "celaest_edge_ready";
/// Gauge: the last replication sequence applied.
pub const APPLIED_SEQ: &str = "celaest_edge_applied_seq";
/// Gauge: seconds since the last change from central was applied (NaN before any).
pub const SECONDS_SINCE_LAST_CHANGE: &str = "celaest_edge_seconds_since_last_change";
/// Gauge: 0 while connected and caught up; else seconds since the state was last known current.
pub const STATE_AGE_SECONDS: &str = "celaest_edge_state_age_seconds";
/// Gauge: licenses held in memory.
pub const LICENSES: &str = "celaest_edge_licenses";
/// Gauge: validation reports waiting to be acknowledged by central.
pub const REPORTS_BUFFERED: &str = "celaest_edge_reports_buffered";
/// Counter: validation reports dropped because the buffer was full.
pub const REPORTS_DROPPED_TOTAL: &str = "celaest_edge_reports_dropped_total";
/// Gauge, label `state`: 1 for the replication connection's current state, 0 for the others.
pub const CONNECTION_STATE: &str = "celaest_edge_connection_state";

/// Every series the edge declares: its kind and help text (the `# HELP` line). The exposition
/// test walks this list, and `make lint-delivery` reads it to check the dashboard.
pub const ALL: &[Series] = &[
    Series::counter(VALIDATIONS_TOTAL, "Validations answered, by result code."),
    Series::histogram(
        VALIDATION_DURATION_SECONDS,
        "Time to answer a validation request.",
    ),
    Series::counter(BINDS_TOTAL, "New IP bindings asked of central, by outcome."),
    Series::counter(COLLISIONS_TOTAL, "Collision episodes seen by this edge."),
    Series::counter(
        RECONNECTS_TOTAL,
        "Connections to central that ended and were retried.",
    ),
    Series::gauge(READY, "1 once a complete snapshot from central is held."),
    Series::gauge(APPLIED_SEQ, "The last replication sequence applied."),
    Series::gauge(
        SECONDS_SINCE_LAST_CHANGE,
        "Seconds since the last change from central was applied (NaN before any).",
    ),
    Series::gauge(
        STATE_AGE_SECONDS,
        "0 while connected and caught up; else seconds since the state was last known current.",
    ),
    Series::gauge(LICENSES, "Licenses held in memory."),
    Series::gauge(
        REPORTS_BUFFERED,
        "Validation reports waiting to be acknowledged by central.",
    ),
    Series::counter(
        REPORTS_DROPPED_TOTAL,
        "Validation reports dropped because the buffer was full.",
    ),
    Series::gauge(
        CONNECTION_STATE,
        "The replication connection's state (1 for the current one).",
    ),
];

/// How a bind asked of central ended, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindResult {
    Bound,
    AlreadyBound,
    Full,
    NotFound,
    /// No answer within `EDGE_BIND_TIMEOUT_MS`.
    Timeout,
    /// Not connected to central.
    Unavailable,
}

impl BindResult {
    const ALL: [BindResult; 6] = [
        BindResult::Bound,
        BindResult::AlreadyBound,
        BindResult::Full,
        BindResult::NotFound,
        BindResult::Timeout,
        BindResult::Unavailable,
    ];

    fn label(self) -> &'static str {
        match self {
            BindResult::Bound => "bound",
            BindResult::AlreadyBound => "already_bound",
            BindResult::Full => "full",
            BindResult::NotFound => "not_found",
            BindResult::Timeout => "timeout",
            BindResult::Unavailable => "unavailable",
        }
    }
}

impl From<BindOutcome> for BindResult {
    fn from(outcome: BindOutcome) -> Self {
        match outcome {
            BindOutcome::Bound { .. } => BindResult::Bound,
            BindOutcome::AlreadyBound { .. } => BindResult::AlreadyBound,
            BindOutcome::Full => BindResult::Full,
            BindOutcome::NotFound => BindResult::NotFound,
        }
    }
}

/// This edge's recorder and the handles of its series.
#[derive(Debug)]
pub struct Metrics {
    handle: PrometheusHandle,
    /// One counter per [`ValidationCode::ALL`] entry, same order.
    validations: Box<[Counter]>,
    latency: Histogram,
    /// One counter per [`BindResult::ALL`] entry, same order.
    binds: [Counter; BindResult::ALL.len()],
    collisions: Counter,
    reconnects: Counter,
    gauges: Gauges,
}

/// Series read from their owners at render time.
#[derive(Debug)]
struct Gauges {
    ready: Gauge,
    applied_seq: Gauge,
    seconds_since_last_change: Gauge,
    state_age: Gauge,
    licenses: Gauge,
    reports_buffered: Gauge,
    reports_dropped: Counter,
    /// One gauge per [`ConnectionState::ALL`] entry, same order.
    connection_state: [Gauge; ConnectionState::ALL.len()],
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        // The only histogram is a latency: the shared buckets, as at central.
        let recorder = celaest_net::metrics::recorder(&[]);
        let handle = recorder.handle();
        // Every series is registered now, at zero, so the page lists them all from the start.
        metrics::with_local_recorder(&recorder, || {
            celaest_net::metrics::describe(ALL);
            Self {
                handle,
                validations: ValidationCode::ALL
                    .iter()
                    .map(|code| metrics::counter!(VALIDATIONS_TOTAL, "code" => code.as_str()))
                    .collect(),
                latency: metrics::histogram!(VALIDATION_DURATION_SECONDS),
                binds: BindResult::ALL
                    .map(|result| metrics::counter!(BINDS_TOTAL, "outcome" => result.label())),
                collisions: metrics::counter!(COLLISIONS_TOTAL),
                reconnects: metrics::counter!(RECONNECTS_TOTAL),
                gauges: Gauges {
                    ready: metrics::gauge!(READY),
                    applied_seq: metrics::gauge!(APPLIED_SEQ),
                    seconds_since_last_change: metrics::gauge!(SECONDS_SINCE_LAST_CHANGE),
                    state_age: metrics::gauge!(STATE_AGE_SECONDS),
                    licenses: metrics::gauge!(LICENSES),
                    reports_buffered: metrics::gauge!(REPORTS_BUFFERED),
                    reports_dropped: metrics::counter!(REPORTS_DROPPED_TOTAL),
                    connection_state: ConnectionState::ALL
                        .map(|s| metrics::gauge!(CONNECTION_STATE, "state" => s.as_str())),
                },
            }
        })
    }

    /// Counts one answered validation.
    pub fn validation(&self, code: ValidationCode) {
        if let Some(counter) = ValidationCode::ALL
            .iter()
            .position(|c| *c == code)
            .and_then(|i| self.validations.get(i))
        {
            counter.increment(1);
        }
    }

    /// Records how long a validation request took to answer.
    pub fn latency(&self, elapsed: Duration) {
        self.latency.record(elapsed);
    }

    pub fn bind(&self, result: BindResult) {
        if let Some(i) = BindResult::ALL.iter().position(|r| *r == result) {
            self.binds[i].increment(1);
        }
    }

    pub fn collision(&self) {
        self.collisions.increment(1);
    }

    pub fn reconnect(&self) {
        self.reconnects.increment(1);
    }

    /// Folds the latency samples recorded since the last call into their buckets; run every few
    /// seconds so samples do not pile up between scrapes (rendering does it too).
    pub fn upkeep(&self) {
        self.handle.run_upkeep();
    }
}

/// The whole metrics page.
pub fn render(state: &EdgeState) -> String {
    let g = &state.metrics.gauges;
    let store = &state.store;
    g.ready.set(u8::from(store.is_ready()));
    g.applied_seq.set(store.applied_seq().unwrap_or(0) as f64);
    g.seconds_since_last_change
        .set(store.seconds_since_last_change().unwrap_or(f64::NAN));
    g.state_age.set(
        store
            .freshness()
            .map_or(f64::NAN, |f| f.age_ms as f64 / 1000.0),
    );
    g.licenses.set(store.license_count() as f64);
    g.reports_buffered.set(state.reports.buffered() as f64);
    g.reports_dropped.absolute(state.reports.dropped());
    let current = state.link.state();
    for (connection_state, gauge) in ConnectionState::ALL.iter().zip(&g.connection_state) {
        gauge.set(u8::from(*connection_state == current));
    }
    state.metrics.handle.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(m: &Metrics) -> String {
        m.handle.render()
    }

    #[test]
    fn latency_lands_in_every_bucket_that_holds_it() {
        let m = Metrics::new();
        m.latency(Duration::from_micros(50));
        m.latency(Duration::from_millis(3));
        m.latency(Duration::from_secs(10));
        let text = page(&m);
        for line in [
            "celaest_edge_validation_duration_seconds_bucket{le=\"0.0001\"} 1",
            "celaest_edge_validation_duration_seconds_bucket{le=\"0.0025\"} 1",
            // 3 ms is at most 5 ms; the buckets are cumulative.
            "celaest_edge_validation_duration_seconds_bucket{le=\"0.005\"} 2",
            "celaest_edge_validation_duration_seconds_bucket{le=\"2.5\"} 2",
            "celaest_edge_validation_duration_seconds_bucket{le=\"10\"} 3",
            "celaest_edge_validation_duration_seconds_bucket{le=\"+Inf\"} 3",
            "celaest_edge_validation_duration_seconds_count 3",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn validations_are_counted_by_code() {
        let m = Metrics::new();
        m.validation(ValidationCode::Valid);
        m.validation(ValidationCode::Valid);
        m.validation(ValidationCode::LicenseRevoked);
        let text = page(&m);
        for line in [
            "celaest_edge_validations_total{code=\"VALID\"} 2",
            "celaest_edge_validations_total{code=\"LICENSE_REVOKED\"} 1",
            "celaest_edge_validations_total{code=\"IP_LIMIT_REACHED\"} 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
    }

    #[test]
    fn two_edges_in_one_process_keep_their_own_counts() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.collision();
        a.collision();
        b.collision();
        assert!(page(&a).contains("celaest_edge_collisions_total 2"));
        assert!(page(&b).contains("celaest_edge_collisions_total 1"));
    }
}
