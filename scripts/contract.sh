#!/usr/bin/env bash
# `make contract`: the OpenAPI document says exactly what the server does.
#
# Starts central from the built binary against a fresh, migrated and seeded database and its own
# Redis key prefix, then runs schemathesis over every operation of /openapi.json with every check
# (`--checks all`) and every phase (examples, coverage, fuzzing, stateful), a fixed seed and a
# fixed number of examples per operation. Any failure fails the run.
#
#   scripts/contract.sh --seed N --max-examples N     (`make contract` passes the project's values)
#
# The operations that can end the caller's own session (logout, revoking a session, deleting a
# user, and changing a user's role or state — the user may be the caller, whose id the stateful
# phase finds at /api/auth/me) cannot share a token with the others: the first logout, or the
# admin demoting itself, would turn every later request into a 401 or 403. The main pass runs
# every other operation as the seeded admin; then each session-ending operation runs in a pass of
# its own, as an admin of its own created beforehand. The passes together cover every operation
# of the document. Each pass runs in a fresh directory: schemathesis keeps a cache where it runs,
# and ids one pass saw must not reach another (the delete pass would delete the next one's admin).
#
# Tokens are HS256 JWTs minted here exactly as Supabase mints them, with a signing secret made up
# for this run and given to central as SUPABASE_JWT_SECRET; the first admin is the seeded one, the
# others are created through the API. Supabase Auth itself is a small fake speaking its wire format
# (admin user creation, token refresh — every refresh token is refused —, logout, JWKS), so that
# the operations that call it answer as they do in production rather than 503. Reports (JUnit, and the failing cases as pytest) are written
# to target/contract/.
#
# Needs python3 (with venv), the PostgreSQL client tools (dropdb) and the PyPI registry:
# schemathesis is a pinned wheel installed on first use into target/contract-tools/venv (re-runs
# skip the install; bump the pin to reinstall). Services are started by scripts/services.sh unless
# the caller (scripts/test.sh) already did (CONTRACT_SERVICES_UP=1).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

SEED="" MAX_EXAMPLES=""
while (($#)); do
  case "$1" in
    --seed) SEED="${2:-}"; shift 2 ;;
    --max-examples) MAX_EXAMPLES="${2:-}"; shift 2 ;;
    *) echo "usage: $0 --seed N --max-examples N" >&2; exit 2 ;;
  esac
done
[[ "$SEED" =~ ^[0-9]+$ && "$MAX_EXAMPLES" =~ ^[0-9]+$ ]] || {
  echo "usage: $0 --seed N --max-examples N" >&2
  exit 2
}

TOOLS_DIR="${CONTRACT_TOOLS_DIR:-$REPO_ROOT/target/contract-tools}"
VENV="$TOOLS_DIR/venv"
PYTHON="${PYTHON:-python3}"
REPORT_DIR="$REPO_ROOT/target/contract"
REQUIREMENTS=("schemathesis==4.32.5")

# The operations that can end the caller's own session, as schemathesis labels them.
SESSION_ENDING=(
  "POST /api/auth/logout"
  "DELETE /api/users/{id}"
  "DELETE /api/users/{id}/sessions/{session_id}"
  "PATCH /api/users/{id}"
)

log() { printf '==> %s\n' "$*" >&2; }

install_tools() {
  local stamp="$VENV/.requirements" wanted
  wanted="$(printf '%s\n' "${REQUIREMENTS[@]}")"
  if [[ -x "$VENV/bin/schemathesis" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]] \
    && "$VENV/bin/python" -c '' 2>/dev/null; then
    return 0
  fi
  log "installing schemathesis into ${VENV#"$REPO_ROOT"/} (first run, or the pin changed)"
  command -v "$PYTHON" >/dev/null 2>&1 || {
    echo "error: $PYTHON not found; install Python 3.10+ with the venv module" >&2
    exit 2
  }
  rm -rf "$VENV"
  mkdir -p "$TOOLS_DIR"
  "$PYTHON" -m venv "$VENV" || {
    echo "error: '$PYTHON -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
    exit 2
  }
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    "${REQUIREMENTS[@]}"
  printf '%s\n' "$wanted" >"$stamp"
}

command -v dropdb >/dev/null 2>&1 || {
  echo "error: dropdb not found; install the PostgreSQL client tools (Debian: postgresql-client)" >&2
  exit 2
}
install_tools
PY="$VENV/bin/python"

if [[ "${CONTRACT_SERVICES_UP:-}" != 1 ]]; then
  scripts/services.sh up
fi

cargo build -q -p celaest-central
BIN="$REPO_ROOT/target/debug/celaest-central"

# A run of its own: database, Redis prefix, ports, certificates and JWT secret.
RUN_ID="contract_$$_$(date +%s)"
WORK="$(mktemp -d)"
BASE_DB_URL="${DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/celaest}"
DB_NAME="$RUN_ID"
DB_URL="${BASE_DB_URL%/*}/$DB_NAME"
free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP_PORT="$(free_port)"
QUIC_PORT="$(free_port)"
SUPABASE_PORT="$(free_port)"
JWT_SECRET="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(48))')"
BASE_URL="http://127.0.0.1:$HTTP_PORT"

central_pid="" supabase_pid=""
cleanup() {
  local rc=$?
  for pid in "$central_pid" "$supabase_pid"; do
    if [[ -n "$pid" ]]; then
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
    fi
  done
  dropdb --if-exists --maintenance-db="$BASE_DB_URL" "$DB_NAME" || true
  rm -rf "$WORK"
  if [[ "${CONTRACT_SERVICES_UP:-}" != 1 ]]; then
    scripts/services.sh down
  fi
  exit "$rc"
}
trap cleanup EXIT

export DATABASE_URL="$DB_URL"
export REDIS_KEY_PREFIX="$RUN_ID:"
export APP_HOST=127.0.0.1 APP_PORT="$HTTP_PORT"
export REPLICATION_ADDR="127.0.0.1:$QUIC_PORT"
export REPLICATION_TLS_CA="$WORK/certs/ca.pem" REPLICATION_TLS_CERT="$WORK/certs/central.pem" \
  REPLICATION_TLS_KEY="$WORK/certs/central.key"
export SUPABASE_JWT_SECRET="$JWT_SECRET"
export SUPABASE_URL="http://127.0.0.1:$SUPABASE_PORT" SUPABASE_SERVICE_KEY="contract-service-key"
# Every request of a run comes from one address; the per-minute limit is for real callers.
export RATE_LIMIT_PER_MIN=1000000
export LOG_LEVEL="${CONTRACT_LOG_LEVEL:-warn}" LOG_FORMAT=json

# The fake Supabase Auth: the answers central's client (central/src/auth/supabase.rs) reads.
"$PY" - "$SUPABASE_PORT" "$SUPABASE_SERVICE_KEY" >"$WORK/supabase.log" 2>&1 <<'PY' &
import json, sys, uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

port, service_key = int(sys.argv[1]), sys.argv[2]


class Auth(BaseHTTPRequestHandler):
    def answer(self, status, body=None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/auth/v1/.well-known/jwks.json":
            return self.answer(200, {"keys": []})
        self.answer(404, {"message": "not found"})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.headers.get("apikey") != service_key:
            return self.answer(401, {"message": "Invalid API key"})
        if self.path == "/auth/v1/admin/users":
            return self.answer(200, {"id": str(uuid.uuid4()), "aud": "authenticated", "email": body.get("email")})
        if self.path.startswith("/auth/v1/token"):
            return self.answer(400, {"error": "invalid_grant", "error_description": "Invalid Refresh Token"})
        if self.path.startswith("/auth/v1/logout"):
            return self.answer(204)
        self.answer(404, {"message": "not found"})

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", port), Auth).serve_forever()
PY
supabase_pid=$!

log "central on $BASE_URL, database $DB_NAME"
"$BIN" migrate >/dev/null
"$BIN" seed >/dev/null
"$BIN" certs --dir "$WORK/certs" >/dev/null
mkdir -p "$REPORT_DIR"
"$BIN" serve --with-workers >"$REPORT_DIR/central.log" 2>&1 &
central_pid=$!
for _ in $(seq 1 300); do
  if "$PY" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1], timeout=1)" \
    "$BASE_URL/health/ready" 2>/dev/null; then
    break
  fi
  kill -0 "$central_pid" 2>/dev/null || { cat "$REPORT_DIR/central.log" >&2; exit 1; }
  sleep 0.2
done

# token USER_ID EMAIL: a Supabase-shaped access token for a fresh session of that user.
token() {
  "$PY" - "$JWT_SECRET" "$1" "$2" "$SUPABASE_URL/auth/v1" <<'PY'
import base64, hashlib, hmac, json, sys, time, uuid

secret, sub, email, issuer = sys.argv[1:5]
b64 = lambda raw: base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
now = int(time.time())
claims = {
    "aud": "authenticated", "exp": now + 6 * 3600, "iat": now, "iss": issuer, "sub": sub, "email": email,
    "phone": "", "role": "authenticated", "aal": "aal1", "session_id": str(uuid.uuid4()),
    "amr": [{"method": "password", "timestamp": now}], "is_anonymous": False,
    "app_metadata": {"provider": "email", "providers": ["email"]}, "user_metadata": {},
}
head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = b64(json.dumps(claims).encode())
signature = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
print(f"{head}.{body}.{b64(signature)}")
PY
}

ADMIN_ID=30000000-0000-4000-8000-000000000001 # the seeded admin (central/src/seed.sql)
ADMIN_TOKEN="$(token "$ADMIN_ID" admin@celaest.dev)"

# admin NAME: creates an admin through the API, as a profile of an (assumed) existing Supabase
# user, and prints its id and e-mail.
admin() {
  "$PY" - "$BASE_URL" "$ADMIN_TOKEN" "$1" <<'PY'
import json, sys, urllib.request, uuid

base, token, name = sys.argv[1:4]
user_id = str(uuid.uuid4())
email = f"contract-{name}-{user_id[:8]}@example.test"
request = urllib.request.Request(
    f"{base}/api/users", method="POST",
    data=json.dumps({"id": user_id, "email": email, "role": "admin"}).encode(),
    headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
)
with urllib.request.urlopen(request, timeout=10) as response:
    assert response.status == 201, response.status
print(user_id, email)
PY
}

# pass_name OPERATION: "DELETE /api/users/{id}" -> "delete-api-users-id".
pass_name() {
  local name
  name="$(tr -c 'a-zA-Z0-9\n' '-' <<<"$1" | tr -s '-' | tr '[:upper:]' '[:lower:]')"
  echo "${name%-}"
}

# Every pass's admin exists before any pass runs, so no pass can see another's id first.
declare -A PASS_ADMIN
for operation in "${SESSION_ENDING[@]}"; do
  PASS_ADMIN["$operation"]="$(admin "$(pass_name "$operation")")"
done

SCHEMATHESIS=(
  "$VENV/bin/schemathesis" run "$BASE_URL/openapi.json"
  --checks all
  --phases "examples,coverage,fuzzing,stateful"
  --seed "$SEED"
  --max-examples "$MAX_EXAMPLES"
  --generation-database none
  --workers 1
  --request-timeout 30
  --no-color
)

# pass NAME TOKEN FILTER...: one schemathesis run; its reports are named after the pass.
pass() {
  local name="$1" bearer="$2" dir="$REPORT_DIR/$1"
  shift 2
  log "schemathesis, $name pass (seed $SEED, $MAX_EXAMPLES examples per operation)"
  rm -rf "$dir"
  mkdir -p "$dir"
  (cd "$dir" && "${SCHEMATHESIS[@]}" "$@" \
    -H "Authorization: Bearer $bearer" \
    --report "junit,pytest" \
    --report-junit-path "$dir/junit.xml" \
    --report-pytest-path "$dir/failures.py")
}

status=0
main_filters=()
for operation in "${SESSION_ENDING[@]}"; do main_filters+=(--exclude-name "$operation"); done
pass main "$ADMIN_TOKEN" "${main_filters[@]}" || status=1
for operation in "${SESSION_ENDING[@]}"; do
  read -r id email <<<"${PASS_ADMIN[$operation]}"
  pass "$(pass_name "$operation")" "$(token "$id" "$email")" --include-name "$operation" || status=1
done
if ((status)); then
  log "contract FAILED: reports in ${REPORT_DIR#"$REPO_ROOT"/}/<pass>/, central's log in central.log"
else
  log "contract passed"
fi
exit "$status"
