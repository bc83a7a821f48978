#!/usr/bin/env bash
# `make bench` (quick, a few minutes once built) and `make bench-full` (adds the million-license
# runs): every benchmark of bench/README.md, end to end, on a fresh clone.
#
#   bench/run.sh [--full] [extra options of `celaest-bench run`]
#
# 1. makes sure PostgreSQL and Redis answer (scripts/services.sh; stops afterwards only what it
#    started), and installs wrk from Debian for the cross-check when it is missing and it can;
# 2. builds celaest-central, celaest-edge and celaest-bench in release, into their own target
#    directory (target/bench unless CARGO_TARGET_DIR is set) so a development build is not locked;
# 3. runs the protocol micro benchmarks briefly (criterion; BENCH_MICRO=0 skips them);
# 4. runs `celaest-bench run`: a fresh database `celaest_bench` seeded with licenses, the baseline
#    server, central and two edges as processes, every scenario, and the report in
#    bench/results/latest.md and latest.json (also printed). Everything it starts, it stops.
#
# Settings (environment): BENCH_DURATION, BENCH_WARMUP (seconds per run), BENCH_CONNECTIONS,
# BENCH_FIXED_RATE_CONNECTIONS, BENCH_LICENSES, BENCH_FULL_LICENSES, BENCH_CENTRAL_RATE,
# BENCH_REVOCATIONS, BENCH_LOG_LEVEL, BENCH_KEEP_DB, BENCH_MICRO; DATABASE_URL and REDIS_URL.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

run_args=()
if [[ "${1:-}" == "--full" ]]; then
  run_args+=(--full)
  shift
fi
run_args+=("$@")

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/bench}"
export SQLX_OFFLINE="${SQLX_OFFLINE:-true}"
bin_dir="$CARGO_TARGET_DIR/release"
cargo="${CARGO:-cargo}"

say() { echo "bench: $*" >&2; }

if ! command -v wrk >/dev/null; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
    say "installing wrk (Debian package) for the cross-check"
    { apt-get update -qq && apt-get install -y -qq wrk; } >/dev/null 2>&1 \
      || say "could not install wrk; the cross-check is skipped"
  else
    say "wrk is not installed (apt-get install wrk); the cross-check is skipped"
  fi
fi

# Stop afterwards only what this run started: services already running belong to someone else.
started_file=target/services/started
lines_before=0
[[ -f "$started_file" ]] && lines_before="$(wc -l <"$started_file")"
scripts/services.sh up
lines_after=0
[[ -f "$started_file" ]] && lines_after="$(wc -l <"$started_file")"
if ((lines_after > lines_before)); then
  trap 'scripts/services.sh down' EXIT
fi

say "building release binaries into ${CARGO_TARGET_DIR#"$PWD"/}"
"$cargo" build --release --locked -p celaest-central -p celaest-edge -p celaest-bench

micro_args=()
if [[ "${BENCH_MICRO:-1}" != 0 ]]; then
  say "micro benchmarks (criterion, brief)"
  rm -rf "$CARGO_TARGET_DIR/criterion"
  # Criterion prints its progress on stdout; the report carries the medians.
  "$cargo" bench --locked -p celaest-bench --bench protocol -- \
    --warm-up-time 0.5 --measurement-time 1.5 --nresamples 10000 --noplot >&2
  micro_args=(--micro-dir "$CARGO_TARGET_DIR/criterion")
fi

"$bin_dir/celaest-bench" run --bin-dir "$bin_dir" "${micro_args[@]}" "${run_args[@]}"
