//! The axum pieces both HTTP layers use. Each crate keeps its own error type and wraps these:
//! a rejection here says *what* was wrong, the caller decides how its error carries it.

pub mod client_ip;
pub mod context;
pub mod json;
pub mod signed;
