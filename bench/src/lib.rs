//! CELAEST Core's benchmark harness (`make bench`, `make bench-full`; see `bench/README.md`).
//!
//! Every figure is measured next to the baseline server (`src/bin/baseline_server.rs`), in the
//! same run and with the same load generator, because on a shared machine the ratio is what
//! holds from run to run.

pub mod harness;
pub mod load;
pub mod machine;
pub mod micro;
pub mod report;
pub mod seed;
pub mod stack;
pub mod token;
pub mod wrk;

/// Reports progress on the terminal (stderr), like `format!`.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::progress(&format!($($arg)*))
    };
}

/// Writes one progress line to stderr.
#[expect(
    clippy::print_stderr,
    reason = "the harness reports its progress on the terminal"
)]
pub fn progress(message: &str) {
    eprintln!("bench: {message}");
}
