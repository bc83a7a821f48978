//! Black-box tests of central: the real app on port 0, a fresh migrated database per test
//! (`#[sqlx::test]`), its own Redis key prefix, and HTTP in between. One binary for all of them
//! keeps link time down.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test that cannot go on should stop right there, with the reason"
)]

mod cli;
mod docs;
mod health;
mod helpers;
mod http_standards;
mod lists;
mod schema;
mod shutdown;
mod workers_and_cache;
