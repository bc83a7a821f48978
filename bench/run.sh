#!/usr/bin/env bash
# `make bench`: central next to the baseline server, same load tool, same run.
#
# Today this measures the cost of central's HTTP stack (request id, language, access log, CORS,
# compression, timeout, envelope) on GET /health/live against the bare baseline server on the same
# machine. The licensing and edge issues add validation workloads at fixed request rates (open
# loop), propagation time and memory per license; see bench/README.md.
#
# Settings: BENCH_DURATION (default 10s), BENCH_CONNECTIONS (default 32).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

duration="${BENCH_DURATION:-10s}"
connections="${BENCH_CONNECTIONS:-32}"

if ! command -v wrk >/dev/null; then
  echo "bench: installing wrk (Debian package)" >&2
  { apt-get update -qq && apt-get install -y -qq wrk; } >/dev/null
fi

scripts/services.sh up
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; scripts/services.sh down; }
trap cleanup EXIT

cargo build -q --release -p celaest-central -p celaest-bench
target/release/celaest-central migrate

target/release/baseline-server 127.0.0.1:9090 & pids+=($!)
APP_HOST=127.0.0.1 APP_PORT=9091 LOG_LEVEL=warn target/release/celaest-central serve & pids+=($!)
for port in 9090 9091; do
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
done

cat >target/bench-post.lua <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"license_key":"CELAEST-MKT-A8F9D2E1-7B3C","ip_address":"203.0.113.7","device_info":"bench"}'
LUA

run() { # name url [script]
  local out
  out=$(wrk -t2 -c"$connections" -d"$duration" --latency ${3:+-s "$3"} "$2")
  local rps p50 p99
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  printf '%-28s %12s req/s   p50 %8s   p99 %8s\n' "$1" "$rps" "$p50" "$p99"
  echo "$rps"
}

echo "wrk -t2 -c$connections -d$duration on $(nproc) cores ($(date -u +%FT%TZ))"
base=$(run "baseline POST (ceiling)" http://127.0.0.1:9090/api/licenses/validate target/bench-post.lua | tee /dev/stderr | tail -1)
central=$(run "central GET /health/live" http://127.0.0.1:9091/health/live | tee /dev/stderr | tail -1)
awk -v c="$central" -v b="$base" 'BEGIN { printf "central / baseline throughput: %.2f\n", c / b }'
