//! The Prometheus set-up central and the edges share: how a series is declared ([`Series`],
//! walked by the exposition tests and the dashboard check), its `# HELP` line, the latency
//! buckets (real histograms, never summaries, the same at both so their dashboards compare),
//! the recorder built with them, and the text answer of `GET /metrics`.
//!
//! Which recorder is installed, and where, stays with each crate: central's is process-wide,
//! each edge owns its own.

use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use metrics::{describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusRecorder};

/// Buckets of the latency histograms, in seconds: 100 µs (a Redis round trip, an answer from
/// memory) to 10 s (the longest a request may reasonably take).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// The content type of the Prometheus text exposition format.
pub const EXPOSITION_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A declared series.
#[derive(Debug, Clone, Copy)]
pub struct Series {
    pub name: &'static str,
    pub kind: Kind,
    pub help: &'static str,
}

impl Series {
    pub const fn counter(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            kind: Kind::Counter,
            help,
        }
    }

    pub const fn gauge(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            kind: Kind::Gauge,
            help,
        }
    }

    pub const fn histogram(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            kind: Kind::Histogram,
            help,
        }
    }
}

/// The Prometheus type of a series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    /// As written on the `# TYPE` line.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Gives every series its `# HELP` line, in the recorder current where this runs.
pub fn describe(all: &[Series]) {
    for series in all {
        match series.kind {
            Kind::Counter => describe_counter!(series.name, series.help),
            Kind::Gauge => describe_gauge!(series.name, series.help),
            Kind::Histogram => describe_histogram!(series.name, series.help),
        }
    }
}

/// A recorder whose histograms use [`LATENCY_BUCKETS`], except the named ones, which use their
/// own buckets (for histograms of sizes rather than seconds).
pub fn recorder(buckets_for: &[(&'static str, &[f64])]) -> PrometheusRecorder {
    let mut builder = PrometheusBuilder::new().set_buckets(LATENCY_BUCKETS);
    for (name, buckets) in buckets_for {
        builder =
            builder.and_then(|b| b.set_buckets_for_metric(Matcher::Full((*name).into()), buckets));
    }
    builder
        .unwrap_or_else(|e| {
            // Only an empty bucket list is refused.
            tracing::error!(error = %e, "metric buckets refused; histograms fall back to defaults");
            PrometheusBuilder::new()
        })
        .build_recorder()
}

/// The `GET /metrics` answer for a rendered page.
pub fn exposition(page: String) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(EXPOSITION_CONTENT_TYPE),
        )],
        page,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn latencies_land_in_the_shared_buckets_and_sizes_in_their_own() {
        let recorder = recorder(&[("sizes", &[10.0, 100.0])]);
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            describe(&[
                Series::histogram("latency", "A latency."),
                Series::histogram("sizes", "Some sizes."),
            ]);
            metrics::histogram!("latency").record(Duration::from_millis(3));
            metrics::histogram!("sizes").record(42.0);
        });
        let page = handle.render();
        for line in [
            "# HELP latency A latency.",
            "# TYPE latency histogram",
            "latency_bucket{le=\"0.0025\"} 0",
            "latency_bucket{le=\"0.005\"} 1",
            "latency_bucket{le=\"10\"} 1",
            "sizes_bucket{le=\"10\"} 0",
            "sizes_bucket{le=\"100\"} 1",
        ] {
            assert!(page.contains(line), "{line} missing from\n{page}");
        }
        assert!(!page.contains("quantile="), "histograms, not summaries");
    }

    #[test]
    fn the_page_is_served_as_prometheus_text() {
        let response = exposition("up 1\n".to_owned());
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            EXPOSITION_CONTENT_TYPE
        );
    }
}
