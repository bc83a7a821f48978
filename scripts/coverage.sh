#!/usr/bin/env bash
# `make coverage`: line coverage of the whole test suite, against the same services as `make test`.
# Uses cargo-llvm-cov when the toolchain has llvm-tools, otherwise cargo-tarpaulin (which needs no
# LLVM tools); either is installed from crates.io on first use. Report: target/coverage/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/services.sh up
trap 'scripts/services.sh down' EXIT
cargo build -q -p celaest-central
target/debug/celaest-central migrate
mkdir -p target/coverage

if rustup component list --installed 2>/dev/null | grep -q '^llvm-tools'; then
  command -v cargo-llvm-cov >/dev/null || cargo install --locked cargo-llvm-cov
  cargo llvm-cov --workspace --html --output-dir target/coverage
  cargo llvm-cov report --summary-only
else
  command -v cargo-tarpaulin >/dev/null || cargo install --locked cargo-tarpaulin
  cargo tarpaulin --workspace --engine ptrace --out Html --out Stdout --output-dir target/coverage \
    --exclude-files 'bench/*' --timeout 300
fi
