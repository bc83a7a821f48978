//! Black-box tests of central: the real app on port 0, a fresh migrated database per test
//! (`#[sqlx::test]`), its own Redis key prefix, and HTTP in between. One binary for all of them
//! keeps link time down.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop right there, with the reason"
)]

mod api_keys_and_limits;
mod auth;
mod cli;
mod docs;
mod health;
mod helpers;
mod http_standards;
mod licensing;
mod lists;
mod metrics;
mod permissions;
mod recorder;
mod replication;
mod schema;
mod shutdown;
mod support;
mod workers_and_cache;
