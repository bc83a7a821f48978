//! Request validation: the rules live in `celaest_protocol::input`, shared with the edge so both
//! answer bad input with the same fields, codes and messages; this re-exports them for central.

pub use celaest_protocol::input::{FieldErrorBody, FieldErrors, FieldProblem, Validate};
