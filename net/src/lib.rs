//! What central and the edges share that needs I/O or a web framework, so the two can never
//! drift apart in how they talk to the world. The pure rules (codes, envelopes, input limits,
//! the validation flow) live in `celaest_protocol`; this crate is the thin glue both run them
//! through:
//!
//! - [`http`]: the JSON body extractor's rules, the client IP behind trusted proxies, the
//!   request context (id, language, access log, bare errors in the envelope), signed answers.
//! - [`metrics`]: series declarations, latency buckets, the Prometheus recorder and page.
//! - [`env`]: configuration from the environment, with errors naming the variable.
//! - [`quic`]: the replication connection's certificates and frame reading.

pub mod env;
pub mod http;
pub mod metrics;
pub mod quic;
