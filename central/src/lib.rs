//! CELAEST Core central: the admin API and the source of truth for the edge fleet.
//!
//! Layout: one folder per module of the spec (vertical slices) beside the shared plumbing —
//! [`config`], [`http`] (envelope, errors, extractors, pagination, middleware), [`db`],
//! [`cache`], [`workers`] — and the entry points [`cli`] and [`app`].

pub mod app;
pub mod audit;
pub mod auth;
pub mod cache;
pub mod cli;
pub mod config;
pub mod db;
pub mod docs;
pub mod health;
pub mod http;
pub mod licensing;
pub mod metrics;
pub mod orgs;
pub mod products;
pub mod replication;
pub mod seed;
pub mod state;
pub mod users;
pub mod workers;
