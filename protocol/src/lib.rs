//! The crate central and edge share: wire types and pure rules, no I/O.
//!
//! Everything here is plain data with serde and functions over it, so that both processes answer
//! with exactly the same shapes and the same decisions.

pub mod codes;
pub mod envelope;
pub mod lang;
pub mod request_id;

pub use codes::ErrorCode;
pub use envelope::{ErrorBody, ErrorEnvelope, Meta, SuccessEnvelope};
pub use lang::Lang;
