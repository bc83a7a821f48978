#!/usr/bin/env bash
# `make run`: services up, migrations, demo data, then central with its workers in the foreground.
# Ctrl-C stops central gracefully and then the services this script started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/services.sh up
trap 'scripts/services.sh down' EXIT

cargo build -q -p celaest-central -p celaest-edge
bin=target/debug
"$bin/celaest-central" migrate
"$bin/celaest-central" seed
echo "central: http://127.0.0.1:${APP_PORT:-8080}  (docs at /docs, readiness at /health/ready)" >&2
"$bin/celaest-central" serve --with-workers
