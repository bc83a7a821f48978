#!/usr/bin/env bash
# `make run`: services up, migrations, demo data, then central with its workers in the foreground.
# An edge runs beside it. Ctrl-C stops central gracefully, then the edge and the services this
# script started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/services.sh up
edge_pid=""
stop_all() {
  if [[ -n "$edge_pid" ]]; then
    kill "$edge_pid" 2>/dev/null || true
    wait "$edge_pid" 2>/dev/null || true
  fi
  scripts/services.sh down
}
trap stop_all EXIT

cargo build -q -p celaest-central -p celaest-edge
bin=target/debug
"$bin/celaest-central" migrate
"$bin/celaest-central" seed
# Development certificates for replication over QUIC, shared by central and the edge.
"$bin/celaest-central" certs --dir .dev/certs --if-missing
# One edge beside central; it is ready once central's first snapshot is applied.
"$bin/celaest-edge" &
edge_pid=$!
echo "central: http://127.0.0.1:${APP_PORT:-8080}  (docs at /docs, readiness at /health/ready)" >&2
echo "edge:    http://127.0.0.1:8081 (EDGE_HTTP_ADDR)" >&2
"$bin/celaest-central" serve --with-workers
