#!/usr/bin/env bash
# `make test`: services up, the base database migrated (tests create their own databases next to
# it), then every test of the workspace, then the API contract check (`make contract`: schemathesis
# against a running central). Stops the services this script started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/services.sh up
trap 'scripts/services.sh down' EXIT

cargo build --workspace --all-targets
target/debug/celaest-central migrate

if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  echo "test: cargo-nextest not installed; using cargo test" >&2
  cargo test --workspace --no-fail-fast
fi

# The OpenAPI document against the server it describes; the services are already up.
CONTRACT_SERVICES_UP=1 make --no-print-directory contract
