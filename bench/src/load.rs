//! The load generator: HTTP/1.1 over a fixed set of keep-alive connections, either closed-loop
//! (each connection sends its next request as soon as the last one is answered: the saturation
//! throughput) or open-loop at a fixed rate, with latencies corrected for coordinated omission.
//!
//! Open loop follows wrk2: request `i` is due at `start + i / rate` and connection `i mod C` sends
//! it. Its latency counts from the due time, whatever made it leave late, as wrk2 counts it: a
//! connection still waiting for an earlier answer (or pausing after a failed one) means the server
//! is late, and a client that woke up late is counted too, because on a shared machine the client
//! waits for a core like the server does and leaving that out would flatter the figures. Only one
//! grain of tokio's timer (`TIMER_GRAIN`, one millisecond) is excused, and only when the
//! connection was free: such a request counts from its actual send or from `due + 1 ms`, whichever
//! is earlier. Requests still unsent when the run ends count as `behind_schedule`, each with its
//! wait so far as a lower bound of its latency.
//!
//! Every request picks one of the workload's items (a license key and its client IP) by a
//! deterministic hash of its number, so a run touches many licenses and addresses, never one hot
//! key. Latencies are kept as exact samples (a ten-second run is at most a few hundred thousand)
//! and sorted for the percentiles.

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{
    Method, Request,
    client::conn::http1::SendRequest,
    header::{HeaderName, HeaderValue},
};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::time::Instant;

/// One request of a workload: its body and the headers that vary with it.
#[derive(Debug, Clone)]
struct Item {
    body: Bytes,
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// What to send: one method and path, items chosen per request, and what a good answer contains.
#[derive(Debug, Clone)]
pub struct Workload {
    method: Method,
    path: String,
    items: Arc<[Item]>,
    /// A byte string every expected answer contains (e.g. `"code":"VALID"`); answers with a 2xx
    /// status but without it are counted as `unexpected`.
    expect: Option<&'static [u8]>,
}

impl Workload {
    /// `POST {path}` of license validations, one item per `(key, ip)`: the body names the IP and
    /// `X-Forwarded-For` carries it, which the services believe from a loopback peer.
    pub fn validations<'a>(
        path: &str,
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> anyhow::Result<Self> {
        let forwarded = HeaderName::from_static("x-forwarded-for");
        let json = HeaderValue::from_static("application/json");
        let items = entries
            .into_iter()
            .map(|(key, ip)| {
                let body = serde_json::to_vec(&serde_json::json!({
                    "license_key": key, "ip_address": ip, "device_info": "celaest-bench",
                    "nonce": "bench",
                }))?;
                Ok(Item {
                    body: body.into(),
                    headers: vec![
                        (hyper::header::CONTENT_TYPE, json.clone()),
                        (forwarded.clone(), HeaderValue::from_str(ip)?),
                    ],
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!items.is_empty(), "no licenses to validate");
        Ok(Self {
            method: Method::POST,
            path: path.to_owned(),
            items: items.into(),
            expect: Some(br#""code":"VALID""#),
        })
    }

    /// `GET {path}`, with a bearer token when given, expecting a success envelope.
    pub fn get(path: &str, bearer: Option<&str>) -> anyhow::Result<Self> {
        let headers = match bearer {
            Some(token) => vec![(
                hyper::header::AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {token}"))?,
            )],
            None => Vec::new(),
        };
        Ok(Self {
            method: Method::GET,
            path: path.to_owned(),
            items: vec![Item {
                body: Bytes::new(),
                headers,
            }]
            .into(),
            expect: Some(br#""success":true"#),
        })
    }

    fn item(&self, request: u64) -> &Item {
        // splitmix64: consecutive request numbers land on unrelated items.
        let mut z = request.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let len = self.items.len() as u64;
        // `z % len < len`, which came from a usize.
        &self.items[usize::try_from(z % len).unwrap_or(0)]
    }
}

/// How requests are paced.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// Closed loop: as fast as the server answers.
    Saturate,
    /// Open loop at this many requests per second.
    Rate(f64),
}

/// One run of a workload against one address.
#[derive(Debug, Clone)]
pub struct Run {
    pub addr: SocketAddr,
    pub workload: Workload,
    pub pace: Pace,
    pub connections: usize,
    /// Sent but not measured: connections open, caches and allocators warm.
    pub warmup: Duration,
    /// Measured.
    pub duration: Duration,
    /// A request unanswered after this long is abandoned (and its connection reopened).
    pub timeout: Duration,
}

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Latency {
    /// From samples in nanoseconds (sorted here).
    pub fn from_nanos(samples: &mut [u64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            // Nearest rank: the smallest sample with at least q of them at or below it.
            let rank = (q * samples.len() as f64).ceil() as usize;
            ms(samples[rank.clamp(1, samples.len()) - 1])
        };
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Self {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            p999: at(0.999),
            max: ms(samples[samples.len() - 1]),
            mean: sum as f64 / samples.len() as f64 / 1e6,
        }
    }
}

fn ms(nanos: u64) -> f64 {
    nanos as f64 / 1e6
}

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// `saturation` or `fixed`.
    pub pace: &'static str,
    /// The requested rate of a fixed-rate run.
    pub target_rate: Option<f64>,
    pub connections: usize,
    /// Length of the measured window, in seconds.
    pub seconds: f64,
    /// Answers received during the measured window, per second.
    pub throughput: f64,
    /// Requests whose latency was measured (due in the window).
    pub measured: u64,
    /// 2xx answers containing the expected text.
    pub ok: u64,
    /// 2xx answers without it (e.g. a validation that was not `VALID`).
    pub unexpected: u64,
    /// Answers with any other status.
    pub http_errors: u64,
    /// Those answers by status.
    pub error_statuses: BTreeMap<u16, u64>,
    /// Requests that failed at the connection level or timed out.
    pub failed: u64,
    /// Fixed rate only: requests due in the window that could not even be sent before it ended.
    pub behind_schedule: u64,
    /// Latencies of every measured request, in milliseconds.
    pub latency_ms: Latency,
}

impl Outcome {
    /// Share of measured requests answered as expected, in percent.
    pub fn ok_percent(&self) -> f64 {
        let all = self.measured + self.behind_schedule;
        if all == 0 {
            0.0
        } else {
            100.0 * self.ok as f64 / all as f64
        }
    }
}

#[derive(Default)]
struct Tally {
    samples: Vec<u64>,
    answered_in_window: u64,
    ok: u64,
    unexpected: u64,
    http_errors: u64,
    error_statuses: BTreeMap<u16, u64>,
    failed: u64,
    behind_schedule: u64,
}

struct Clock {
    start: Instant,
    measure_from: Instant,
    end: Instant,
}

/// Runs `run` to completion.
pub async fn run(run: Run) -> anyhow::Result<Outcome> {
    anyhow::ensure!(run.connections > 0, "at least one connection");
    if let Pace::Rate(rate) = run.pace {
        anyhow::ensure!(rate > 0.0, "the rate must be positive");
    }
    // Connections are opened before the clock starts, so the first requests are not late.
    let mut senders = Vec::with_capacity(run.connections);
    for _ in 0..run.connections {
        senders.push(connect(run.addr).await?);
    }
    let start = Instant::now() + Duration::from_millis(20);
    let clock = Arc::new(Clock {
        start,
        measure_from: start + run.warmup,
        end: start + run.warmup + run.duration,
    });
    let run = Arc::new(run);
    let workers: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(index, sender)| tokio::spawn(worker(index, sender, run.clone(), clock.clone())))
        .collect();
    let mut total = Tally::default();
    for worker in workers {
        let tally = worker.await.context("load worker")?;
        total.samples.extend_from_slice(&tally.samples);
        total.answered_in_window += tally.answered_in_window;
        total.ok += tally.ok;
        total.unexpected += tally.unexpected;
        total.http_errors += tally.http_errors;
        for (status, n) in tally.error_statuses {
            *total.error_statuses.entry(status).or_default() += n;
        }
        total.failed += tally.failed;
        total.behind_schedule += tally.behind_schedule;
    }
    let seconds = run.duration.as_secs_f64();
    let measured = total.samples.len() as u64 - total.behind_schedule;
    Ok(Outcome {
        pace: match run.pace {
            Pace::Saturate => "saturation",
            Pace::Rate(_) => "fixed",
        },
        target_rate: match run.pace {
            Pace::Saturate => None,
            Pace::Rate(rate) => Some(rate),
        },
        connections: run.connections,
        seconds,
        throughput: total.answered_in_window as f64 / seconds,
        measured,
        ok: total.ok,
        unexpected: total.unexpected,
        http_errors: total.http_errors,
        error_statuses: total.error_statuses,
        failed: total.failed,
        behind_schedule: total.behind_schedule,
        latency_ms: Latency::from_nanos(&mut total.samples),
    })
}

type Sender = SendRequest<Full<Bytes>>;

/// The lateness of a request sent on a free connection that is not counted in its latency:
/// tokio's timer wakes a sleeping task up to a millisecond after the instant it was asked for.
const TIMER_GRAIN: Duration = Duration::from_millis(1);

/// How late after the end of a fixed-rate run a request due before it may still leave when its
/// connection is free (its lateness counts in its latency; it is not dropped for a late wake-up).
const END_GRACE: Duration = Duration::from_millis(20);

/// Where the latency of a fixed-rate request due at `due` and sent at `now` counts from.
///
/// From the due time, except for one timer grain when the connection was free: a connection
/// still busy with the server (`held_by_server`) is the server's lateness, and a client that
/// woke up more than a grain late waited for a core, which counts as on any shared machine.
fn latency_start(due: Instant, now: Instant, held_by_server: bool) -> Instant {
    if held_by_server {
        due
    } else {
        now.min(due + TIMER_GRAIN)
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One connection's share of the run.
async fn worker(index: usize, first: Sender, run: Arc<Run>, clock: Arc<Clock>) -> Tally {
    let mut tally = Tally::default();
    let mut sender = Some(first);
    let step = run.connections as u64;
    let mut number = index as u64;
    // When this connection could send again: after its last answer, or after the pause that
    // follows a failure.
    let mut free_from = clock.start;
    loop {
        // When the request is due, and where its latency is counted from.
        let (due, counted_from) = match run.pace {
            Pace::Saturate => {
                let now = Instant::now();
                if now >= clock.end {
                    break;
                }
                (now, now)
            }
            Pace::Rate(rate) => {
                let due = clock.start + Duration::from_secs_f64(number as f64 / rate);
                if due >= clock.end {
                    break;
                }
                if Instant::now() < due {
                    tokio::time::sleep_until(due).await;
                }
                let now = Instant::now();
                // Coordinated omission: late because this connection still awaited the server
                // (or paused after a failed request).
                let held_by_server = free_from > due;
                // Past the end, a request held back by the server is not sent any more; one that
                // is only late by this process's own timer still goes.
                if now >= clock.end && (held_by_server || now >= clock.end + END_GRACE) {
                    record_unsent(&mut tally, &clock, due, rate, number, step);
                    break;
                }
                (due, latency_start(due, now, held_by_server))
            }
        };
        let item = run.workload.item(number);
        let answer = tokio::time::timeout(run.timeout, send(&mut sender, &run, item)).await;
        let done = Instant::now();
        free_from = done;
        if due >= clock.measure_from {
            tally
                .samples
                .push(u64::try_from((done - counted_from).as_nanos()).unwrap_or(u64::MAX));
            match answer {
                Ok(Ok(Answer::Expected)) => tally.ok += 1,
                Ok(Ok(Answer::Unexpected)) => tally.unexpected += 1,
                Ok(Ok(Answer::Status(status))) => {
                    tally.http_errors += 1;
                    *tally.error_statuses.entry(status).or_default() += 1;
                }
                Ok(Err(_)) | Err(_) => tally.failed += 1,
            }
        }
        if done >= clock.measure_from && done < clock.end {
            tally.answered_in_window += 1;
        }
        if !matches!(answer, Ok(Ok(_))) {
            // Timed out or broken: the connection's state is unknown, open a new one. A server
            // that refuses connections is not hammered in a tight loop; requests due during the
            // pause are held by the failure, and count from their due time.
            sender = None;
            tokio::time::sleep(Duration::from_millis(10)).await;
            free_from = Instant::now();
        }
        number += step;
    }
    tally
}

/// Requests of this connection due in the measured window but never sent: each counts, with
/// the time it had waited when the run ended as a lower bound of its latency.
fn record_unsent(
    tally: &mut Tally,
    clock: &Clock,
    first_due: Instant,
    rate: f64,
    mut number: u64,
    step: u64,
) {
    let mut due = first_due;
    while due < clock.end {
        if due >= clock.measure_from {
            tally.behind_schedule += 1;
            tally
                .samples
                .push(u64::try_from((clock.end - due).as_nanos()).unwrap_or(u64::MAX));
        }
        number += step;
        due = clock.start + Duration::from_secs_f64(number as f64 / rate);
    }
}

enum Answer {
    Expected,
    Unexpected,
    Status(u16),
}

async fn send(sender: &mut Option<Sender>, run: &Run, item: &Item) -> anyhow::Result<Answer> {
    let conn = match sender {
        Some(conn) if !conn.is_closed() => conn,
        _ => sender.insert(connect(run.addr).await?),
    };
    conn.ready().await?;
    let mut request = Request::builder()
        .method(run.workload.method.clone())
        .uri(&run.workload.path)
        .header(hyper::header::HOST, run.addr.to_string());
    for (name, value) in &item.headers {
        request = request.header(name, value);
    }
    let response = conn
        .send_request(request.body(Full::new(item.body.clone()))?)
        .await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        return Ok(Answer::Status(status.as_u16()));
    }
    Ok(match run.workload.expect {
        Some(needle) if !contains(&body, needle) => Answer::Unexpected,
        _ => Answer::Expected,
    })
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An HTTP/1.1 keep-alive server on a free loopback port that answers every request with a
    /// valid-looking validation after `delay`: a stand-in for a service of known speed.
    async fn server_answering_after(delay: Duration) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(move || async move {
            tokio::time::sleep(delay).await;
            r#"{"success":true,"data":{"code":"VALID"}}"#
        });
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// One measured second at `rate` over `connections`, no warm-up.
    fn one_second_at(addr: SocketAddr, rate: f64, connections: usize) -> Run {
        Run {
            addr,
            workload: Workload::validations("/validate", [("KEY-1", "10.0.0.1")]).unwrap(),
            pace: Pace::Rate(rate),
            connections,
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn latency_counts_from_the_due_time_but_one_timer_grain() {
        let due = Instant::now();
        let ms = Duration::from_millis;
        // Held by the server: from the due time, however late it left.
        assert_eq!(latency_start(due, due + ms(40), true), due);
        // Free, and woken within a grain: from the actual send.
        let within = due + Duration::from_micros(600);
        assert_eq!(latency_start(due, within, false), within);
        // Free, and woken late: the lateness past one grain counts.
        assert_eq!(latency_start(due, due + ms(7), false), due + ms(1));
    }

    #[tokio::test]
    async fn a_server_slower_than_the_rate_is_charged_with_its_queue() {
        // 200 req/s on one connection to a server that takes 50 ms per answer: it answers about
        // 20 of the 200 due, and the rest wait behind them.
        let addr = server_answering_after(Duration::from_millis(50)).await;
        let outcome = run(one_second_at(addr, 200.0, 1)).await.unwrap();
        assert!(
            outcome.latency_ms.p50 > 200.0,
            "the median counts the queue, not the 50 ms of service: {outcome:?}"
        );
        assert!(outcome.behind_schedule > 0, "{outcome:?}");
        assert!(outcome.ok_percent() < 50.0, "{outcome:?}");
        assert_eq!(outcome.target_rate, Some(200.0));
    }

    #[tokio::test]
    async fn answered_requests_that_waited_for_their_connection_count_from_their_due_time() {
        // 30 req/s on one connection to a 50 ms server: about 20 of the 30 are answered, each
        // after waiting longer for the connection than the last (50, 67, … 370 ms from its due
        // time). Counted from the send instead, all would be 50 ms and the median with them.
        let addr = server_answering_after(Duration::from_millis(50)).await;
        let outcome = run(one_second_at(addr, 30.0, 1)).await.unwrap();
        assert!(outcome.measured >= 15, "{outcome:?}");
        assert!(
            outcome.latency_ms.p50 > 100.0,
            "the median counts the wait for the connection: {outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_fast_server_gets_the_requested_rate_on_time() {
        let addr = server_answering_after(Duration::ZERO).await;
        let outcome = run(one_second_at(addr, 100.0, 2)).await.unwrap();
        assert_eq!(outcome.behind_schedule, 0, "{outcome:?}");
        assert!(
            (90.0..=110.0).contains(&outcome.throughput),
            "100 req/s ± 10 %: {outcome:?}"
        );
        assert_eq!(outcome.ok, outcome.measured, "{outcome:?}");
        assert!(outcome.latency_ms.p50 < 50.0, "{outcome:?}");
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut samples: Vec<u64> = (1..=1000).map(|i| i * 1_000_000).collect();
        let latency = Latency::from_nanos(&mut samples);
        assert_eq!(latency.p50, 500.0);
        assert_eq!(latency.p95, 950.0);
        assert_eq!(latency.p99, 990.0);
        assert_eq!(latency.p999, 999.0);
        assert_eq!(latency.max, 1000.0);
        assert_eq!(latency.mean, 500.5);
        assert_eq!(Latency::from_nanos(&mut []).p99, 0.0);
    }

    #[test]
    fn requests_spread_over_every_item() {
        let entries: Vec<(String, String)> = (0..100)
            .map(|i| (format!("KEY-{i}"), format!("10.0.0.{i}")))
            .collect();
        let workload = Workload::validations(
            "/api/licenses/validate",
            entries.iter().map(|(k, ip)| (k.as_str(), ip.as_str())),
        )
        .unwrap();
        let mut seen = std::collections::HashSet::new();
        for n in 0..2_000 {
            seen.insert(workload.item(n).body.clone());
        }
        assert_eq!(
            seen.len(),
            100,
            "two thousand requests touch all hundred items"
        );
    }

    #[test]
    fn needles_are_found_anywhere() {
        assert!(contains(
            br#"{"data":{"code":"VALID"}}"#,
            br#""code":"VALID""#
        ));
        assert!(!contains(
            br#"{"code":"LICENSE_REVOKED"}"#,
            br#""code":"VALID""#
        ));
    }
}
