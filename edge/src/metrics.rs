//! The edge's counters, and their rendering as Prometheus text for `GET /metrics`.
//!
//! Plain atomics, written on the request path without locks; gauges that already live elsewhere
//! (applied sequence, licenses held, buffered reports, connection state) are read from their
//! owners when the page is rendered. Metric names start with `celaest_edge_`.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use celaest_protocol::{ValidationCode, replication::BindOutcome};

use crate::EdgeState;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 14] = [
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
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

#[derive(Debug)]
pub struct Metrics {
    /// One counter per [`ValidationCode::ALL`] entry, same order.
    validations: Box<[AtomicU64]>,
    /// Non-cumulative bucket counts; the last one is `+Inf`.
    latency_buckets: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_micros: AtomicU64,
    latency_count: AtomicU64,
    binds: [AtomicU64; BindResult::ALL.len()],
    collisions: AtomicU64,
    reconnects: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self {
            validations: ValidationCode::ALL
                .iter()
                .map(|_| AtomicU64::new(0))
                .collect(),
            latency_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_sum_micros: AtomicU64::new(0),
            latency_count: AtomicU64::new(0),
            binds: std::array::from_fn(|_| AtomicU64::new(0)),
            collisions: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
        }
    }

    /// Counts one answered validation.
    pub fn validation(&self, code: ValidationCode) {
        if let Some(counter) = ValidationCode::ALL
            .iter()
            .position(|c| *c == code)
            .and_then(|i| self.validations.get(i))
        {
            counter.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Records how long a validation request took to answer.
    pub fn latency(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        if let Some(counter) = self.latency_buckets.get(bucket) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.latency_count.fetch_add(1, Ordering::Relaxed);
    }

    pub fn bind(&self, result: BindResult) {
        if let Some(i) = BindResult::ALL.iter().position(|r| *r == result) {
            self.binds[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn collision(&self) {
        self.collisions.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reconnect(&self) {
        self.reconnects.fetch_add(1, Ordering::Relaxed);
    }

    /// Validations answered with `code` so far.
    pub fn validations(&self, code: ValidationCode) -> u64 {
        ValidationCode::ALL
            .iter()
            .position(|c| *c == code)
            .and_then(|i| self.validations.get(i))
            .map_or(0, |c| c.load(Ordering::Relaxed))
    }
}

/// The whole metrics page.
pub fn render(state: &EdgeState) -> String {
    let m = &state.metrics;
    let mut out = String::with_capacity(4096);
    // Writing to a String cannot fail; the results are ignored for that reason.
    let _ = writeln!(
        out,
        "# HELP celaest_edge_validations_total Validations answered, by result code.\n# TYPE celaest_edge_validations_total counter"
    );
    for (code, counter) in ValidationCode::ALL.iter().zip(m.validations.iter()) {
        let _ = writeln!(
            out,
            "celaest_edge_validations_total{{code=\"{}\"}} {}",
            code.as_str(),
            counter.load(Ordering::Relaxed)
        );
    }

    let _ = writeln!(
        out,
        "# HELP celaest_edge_validation_duration_seconds Time to answer a validation request.\n# TYPE celaest_edge_validation_duration_seconds histogram"
    );
    let mut cumulative = 0;
    for (i, counter) in m.latency_buckets.iter().enumerate() {
        cumulative += counter.load(Ordering::Relaxed);
        let le = BUCKETS
            .get(i)
            .map_or_else(|| "+Inf".to_owned(), f64::to_string);
        let _ = writeln!(
            out,
            "celaest_edge_validation_duration_seconds_bucket{{le=\"{le}\"}} {cumulative}"
        );
    }
    let sum = m.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
    let _ = writeln!(out, "celaest_edge_validation_duration_seconds_sum {sum}");
    let _ = writeln!(
        out,
        "celaest_edge_validation_duration_seconds_count {}",
        m.latency_count.load(Ordering::Relaxed)
    );

    let _ = writeln!(
        out,
        "# HELP celaest_edge_binds_total New IP bindings asked of central, by outcome.\n# TYPE celaest_edge_binds_total counter"
    );
    for (result, counter) in BindResult::ALL.iter().zip(m.binds.iter()) {
        let _ = writeln!(
            out,
            "celaest_edge_binds_total{{outcome=\"{}\"}} {}",
            result.label(),
            counter.load(Ordering::Relaxed)
        );
    }

    let store = &state.store;
    let gauge = |out: &mut String, name: &str, help: &str, kind: &str, value: String| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    gauge(
        &mut out,
        "celaest_edge_collisions_total",
        "Collision episodes seen by this edge.",
        "counter",
        m.collisions.load(Ordering::Relaxed).to_string(),
    );
    gauge(
        &mut out,
        "celaest_edge_reconnects_total",
        "Connections to central that ended and were retried.",
        "counter",
        m.reconnects.load(Ordering::Relaxed).to_string(),
    );
    gauge(
        &mut out,
        "celaest_edge_ready",
        "1 once a complete snapshot from central is held.",
        "gauge",
        u8::from(store.is_ready()).to_string(),
    );
    gauge(
        &mut out,
        "celaest_edge_applied_seq",
        "The last replication sequence applied.",
        "gauge",
        store.applied_seq().unwrap_or(0).to_string(),
    );
    gauge(
        &mut out,
        "celaest_edge_seconds_since_last_change",
        "Seconds since the last change from central was applied (NaN before any).",
        "gauge",
        store
            .seconds_since_last_change()
            .map_or_else(|| "NaN".to_owned(), |s| s.to_string()),
    );
    gauge(
        &mut out,
        "celaest_edge_state_age_seconds",
        "0 while connected and caught up; else seconds since the state was last known current.",
        "gauge",
        store.freshness().map_or_else(
            || "NaN".to_owned(),
            |f| (f.age_ms as f64 / 1000.0).to_string(),
        ),
    );
    gauge(
        &mut out,
        "celaest_edge_licenses",
        "Licenses held in memory.",
        "gauge",
        store.license_count().to_string(),
    );
    gauge(
        &mut out,
        "celaest_edge_reports_buffered",
        "Validation reports waiting to be acknowledged by central.",
        "gauge",
        state.reports.buffered().to_string(),
    );
    gauge(
        &mut out,
        "celaest_edge_reports_dropped_total",
        "Validation reports dropped because the buffer was full.",
        "counter",
        state.reports.dropped().to_string(),
    );
    let _ = writeln!(
        out,
        "# HELP celaest_edge_connection_state The replication connection's state (1 for the current one).\n# TYPE celaest_edge_connection_state gauge"
    );
    let current = state.link.state();
    for connection_state in crate::replication::ConnectionState::ALL {
        let _ = writeln!(
            out,
            "celaest_edge_connection_state{{state=\"{}\"}} {}",
            connection_state.as_str(),
            u8::from(connection_state == current)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_lands_in_the_first_bucket_that_holds_it() {
        let m = Metrics::new();
        m.latency(Duration::from_micros(50));
        m.latency(Duration::from_millis(3));
        m.latency(Duration::from_secs(10));
        let counts: Vec<u64> = m
            .latency_buckets
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts[0], 1);
        assert_eq!(counts[5], 1, "3 ms is at most 5 ms");
        assert_eq!(counts[BUCKETS.len()], 1, "+Inf");
        assert_eq!(m.latency_count.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn validations_are_counted_by_code() {
        let m = Metrics::new();
        m.validation(ValidationCode::Valid);
        m.validation(ValidationCode::Valid);
        m.validation(ValidationCode::LicenseRevoked);
        assert_eq!(m.validations(ValidationCode::Valid), 2);
        assert_eq!(m.validations(ValidationCode::LicenseRevoked), 1);
        assert_eq!(m.validations(ValidationCode::IpLimitReached), 0);
    }
}
