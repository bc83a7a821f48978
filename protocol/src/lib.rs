//! The crate central and edge share: wire types and pure rules, no I/O.
//!
//! Everything here is plain data with serde and functions over it, so that both processes answer
//! with exactly the same shapes and the same decisions.

pub mod client_ip;
pub mod codes;
pub mod collision;
pub mod envelope;
pub mod flow;
mod hex;
pub mod ids;
pub mod input;
pub mod lang;
pub mod license_key;
pub mod money;
pub mod replication;
pub mod request_id;
pub mod semver;
pub mod signing;
pub mod validation;

pub use codes::ErrorCode;
pub use envelope::{ErrorBody, ErrorEnvelope, Meta, SuccessEnvelope};
pub use lang::Lang;
pub use license_key::{ChecksumKey, KeyError, KeyHash, LicenseKey, ProductCode};
pub use validation::{
    Decision, LicenseState, LicenseStatus, ValidateRequest, ValidationAnswer, ValidationCode,
    decide,
};
