#!/usr/bin/env bash
# Makes sure PostgreSQL and Redis answer at DATABASE_URL and REDIS_URL.
#
#   scripts/services.sh up     start what is not answering; prints nothing else on success
#   scripts/services.sh down   stop what `up` started (and only that)
#
# When a service does not answer, this starts a throwaway server under target/services/ (local
# binaries: initdb/pg_ctl, redis-server), or `docker compose up -d postgres redis` when a Docker
# engine works, or stops with a message naming what to install. Servers it started are recorded in
# target/services/started so that `down` stops exactly those.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
state="$root/target/services"
mkdir -p "$state"
started="$state/started"

# Read .env for the URLs when they are not in the environment.
if [[ -f "$root/.env" ]]; then
  while IFS='=' read -r key value; do
    [[ "$key" =~ ^(DATABASE_URL|REDIS_URL)$ ]] && [[ -z "${!key:-}" ]] && export "$key=${value%$'\r'}"
  done < <(grep -E '^(DATABASE_URL|REDIS_URL)=' "$root/.env" || true)
fi
DATABASE_URL="${DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/celaest}"
REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"

# host and port from a URL like scheme://user:pass@host:port/db
url_host() { local u="${1#*://}"; u="${u#*@}"; u="${u%%/*}"; echo "${u%%:*}"; }
url_port() { local u="${1#*://}"; u="${u#*@}"; u="${u%%/*}"; [[ "$u" == *:* ]] && echo "${u##*:}" || echo "$2"; }

pg_host="$(url_host "$DATABASE_URL")"; pg_port="$(url_port "$DATABASE_URL" 5432)"
redis_host="$(url_host "$REDIS_URL")"; redis_port="$(url_port "$REDIS_URL" 6379)"

answers() { # host port: does something accept TCP connections there?
  (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

wait_for() { # name host port seconds
  local i
  for ((i = 0; i < $4 * 10; i++)); do
    answers "$2" "$3" && return 0
    sleep 0.1
  done
  echo "services: $1 did not start on $2:$3" >&2
  return 1
}

pg_bin() { # the directory holding initdb and pg_ctl
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(command -v initdb)"; return
  fi
  local d
  for d in /usr/lib/postgresql/*/bin /usr/local/pgsql/bin; do
    [[ -x "$d/initdb" && -x "$d/pg_ctl" ]] && { echo "$d"; return; }
  done
  return 1
}

docker_works() { command -v docker >/dev/null && docker info >/dev/null 2>&1; }

start_postgres() {
  local bin data="$state/postgres" run_as=()
  if bin="$(pg_bin)"; then
    # PostgreSQL refuses to run as root: run it as the postgres user when we are root.
    if [[ "$(id -u)" == 0 ]]; then
      id postgres >/dev/null 2>&1 || { echo "services: running as root and no 'postgres' user exists" >&2; exit 1; }
      run_as=(runuser -u postgres --)
    fi
    mkdir -p "$data"
    [[ "$(id -u)" == 0 ]] && chown postgres "$data" "$state"
    if [[ ! -f "$data/PG_VERSION" ]]; then
      "${run_as[@]}" "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 >"$state/initdb.log" 2>&1 \
        || { cat "$state/initdb.log" >&2; exit 1; }
    fi
    "${run_as[@]}" "$bin/pg_ctl" -D "$data" -l "$state/postgres.log" -w -t 60 \
      -o "-p $pg_port -c listen_addresses=$pg_host -k $data" start >/dev/null
    echo "postgres-local" >>"$started"
  elif docker_works; then
    docker compose -f "$root/docker-compose.yml" up -d postgres >/dev/null
    echo "postgres-docker" >>"$started"
  else
    echo "services: PostgreSQL is not answering at $pg_host:$pg_port and there is no way to start one." >&2
    echo "          Install PostgreSQL (Debian: apt-get install postgresql) or Docker, or set DATABASE_URL." >&2
    exit 1
  fi
  wait_for PostgreSQL "$pg_host" "$pg_port" 60
}

start_redis() {
  if command -v redis-server >/dev/null; then
    mkdir -p "$state/redis"
    redis-server --daemonize yes --bind "$redis_host" --port "$redis_port" --save "" --appendonly no \
      --dir "$state/redis" --pidfile "$state/redis/redis.pid" --logfile "$state/redis/redis.log"
    echo "redis-local" >>"$started"
  elif docker_works; then
    docker compose -f "$root/docker-compose.yml" up -d redis >/dev/null
    echo "redis-docker" >>"$started"
  else
    echo "services: Redis is not answering at $redis_host:$redis_port and there is no way to start one." >&2
    echo "          Install Redis (Debian: apt-get install redis-server) or Docker, or set REDIS_URL." >&2
    exit 1
  fi
  wait_for Redis "$redis_host" "$redis_port" 30
}

up() {
  answers "$pg_host" "$pg_port" || { echo "services: starting PostgreSQL on $pg_host:$pg_port" >&2; start_postgres; }
  answers "$redis_host" "$redis_port" || { echo "services: starting Redis on $redis_host:$redis_port" >&2; start_redis; }
}

down() {
  [[ -f "$started" ]] || return 0
  local what
  while read -r what; do
    case "$what" in
      postgres-local)
        local bin; bin="$(pg_bin)"
        if [[ "$(id -u)" == 0 ]]; then
          runuser -u postgres -- "$bin/pg_ctl" -D "$state/postgres" -m fast stop >/dev/null || true
        else
          "$bin/pg_ctl" -D "$state/postgres" -m fast stop >/dev/null || true
        fi ;;
      redis-local) [[ -f "$state/redis/redis.pid" ]] && kill "$(cat "$state/redis/redis.pid")" 2>/dev/null || true ;;
      postgres-docker) docker compose -f "$root/docker-compose.yml" stop postgres >/dev/null || true ;;
      redis-docker) docker compose -f "$root/docker-compose.yml" stop redis >/dev/null || true ;;
    esac
  done <"$started"
  rm -f "$started"
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
