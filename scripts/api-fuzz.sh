#!/usr/bin/env bash
# Fuzz the HTTP API with schemathesis against the server's own OpenAPI document (/api/openapi.json).
# Usage: scripts/api-fuzz.sh [--quick]
#
# Builds the release binary, starts it on free loopback ports with a fresh SQLite database in a temp dir, and runs
# schemathesis with every check twice: once with the admin token, once with an org key. --quick bounds the run
# (a few examples per operation, under 2 minutes once built); the full run generates many more. The server is
# stopped at the end; the exit status is non-zero if schemathesis reports a failure or the server logged a panic.
#
# Nothing leaves the machine: the webhook delivery worker is off (subscriptions the fuzzer creates are never
# called), the webhook test ping (POST /api/webhooks/{id}/test, which calls the subscriber's URL) is excluded,
# /api/hl7/send has no allowed destination, and FHIR sync is off. GET /api/events/stream (SSE) is excluded
# because a valid request never ends; it has its own tests.
#
# Both runs send `x-switchboard-org: org-a`, which the FHIR API needs with an admin key (org keys ignore it), so
# the admin run reaches FHIR handlers instead of stopping at that 400.
#
# The positive_data_acceptance check is left out: it expects every schema-valid request to succeed, but the API
# also enforces rules a schema cannot state (an admin key must name the org, event types come from a registry, the
# FHIR resource type must exist, `format` applies to the export only). Those answers are precise 4xx errors.
#
# Environment: SWITCHBOARD_BIN=<path> uses that binary instead of building release; SCHEMATHESIS_SEED=<n> repeats a run; API_FUZZ_KEEP=1 keeps the temp dir (database, server log,
# reports).
set -euo pipefail
cd "$(dirname "$0")/.."

mode=full
case "${1:-}" in
  --quick) mode=quick ;;
  '') ;;
  *) echo "usage: scripts/api-fuzz.sh [--quick]" >&2; exit 2 ;;
esac

if ! command -v schemathesis >/dev/null 2>&1; then
  echo "== installing schemathesis"
  python3 -m pip install --quiet --disable-pip-version-check \
    "$(grep -i '^schemathesis==' tests/requirements.txt)"
fi
echo "== $(schemathesis --version)"

# SWITCHBOARD_BIN names an already built binary (CI passes its debug build); otherwise build release.
if [ -n "${SWITCHBOARD_BIN:-}" ]; then
  bin="$SWITCHBOARD_BIN"
else
  echo "== building the release binary"
  cargo build --release -q -p switchboard
  bin="${CARGO_TARGET_DIR:-target}/release/switchboard"
fi

tmp=$(mktemp -d)
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
http_port=$(free_port)
mllp_port=$(free_port)
admin="fuzz-admin-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
base="http://127.0.0.1:$http_port"

SWITCHBOARD_ADMIN_TOKEN="$admin" \
  SWITCHBOARD_DATABASE_URL="sqlite://$tmp/db.sqlite" \
  SWITCHBOARD_HTTP_ADDR="127.0.0.1:$http_port" \
  SWITCHBOARD_MLLP_ADDR="127.0.0.1:$mllp_port" \
  SWITCHBOARD_WEBHOOKS_ENABLED=false \
  RUST_LOG="${RUST_LOG:-info}" \
  "$bin" serve >"$tmp/server.log" 2>&1 &
server=$!

cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  if [ "${API_FUZZ_KEEP:-0}" = 1 ]; then
    echo "kept $tmp"
  else
    rm -rf "$tmp"
  fi
}
trap cleanup EXIT

for _ in $(seq 1 100); do
  if curl -fsS "$base/health/ready" >/dev/null 2>&1; then break; fi
  if ! kill -0 "$server" 2>/dev/null; then
    echo "server exited early:" >&2
    cat "$tmp/server.log" >&2
    exit 1
  fi
  sleep 0.2
done
curl -fsS "$base/health/ready" >/dev/null

if [ "$mode" = quick ]; then
  limits=(--max-examples 8 --phases examples,coverage,fuzzing --max-time 45)
else
  limits=(--max-examples 150)
fi
seed=()
if [ -n "${SCHEMATHESIS_SEED:-}" ]; then seed=(--seed "$SCHEMATHESIS_SEED"); fi

# schemathesis' own entry point, with the modules it would otherwise import lazily deep inside hypothesis' call
# stack imported up front: CPython 3.11.7 can fail to compile() there ("AST constructor recursion depth
# mismatch", a CPython bug), which schemathesis reports as a runtime error of the operation under test.
st_main='
import sys
import anyio, hypothesis.internal.lambda_sources, schemathesis.transport.asgi  # noqa: F401
from schemathesis.cli import schemathesis
sys.argv[0] = "schemathesis"
sys.exit(schemathesis())
'

status=0
for who in admin org; do
  if [ "$who" = admin ]; then
    token=$admin
  else
    # Created only now: the admin run may revoke any org key it finds in GET /api/keys.
    token=$(curl -fsS -X POST "$base/api/keys" -H "Authorization: Bearer $admin" \
      -H 'content-type: application/json' -d '{"orgId":"org-a","name":"api-fuzz"}' |
      python3 -c 'import json, sys; print(json.load(sys.stdin)["key"])')
  fi
  echo "== schemathesis ($mode) as $who"
  if ! python3 -c "$st_main" run "$base/api/openapi.json" \
    -H "Authorization: Bearer $token" \
    -H 'x-switchboard-org: org-a' \
    --checks all --exclude-checks positive_data_acceptance \
    --exclude-path /api/events/stream \
    --exclude-path '/api/webhooks/{id}/test' \
    --workers 2 \
    --request-timeout 10 \
    --report junit --report-dir "$tmp/report-$who" \
    "${limits[@]}" "${seed[@]}"; then
    status=1
  fi
done

if grep -n 'panicked' "$tmp/server.log"; then
  echo "the server panicked (see above)" >&2
  status=1
fi
errors=$(grep -c 'internal error while serving a request' "$tmp/server.log" || true)
echo "== server logged $errors internal errors"
if [ "$errors" -gt 0 ]; then
  grep 'internal error while serving a request' "$tmp/server.log" | head -20 >&2
  status=1
fi
exit "$status"
