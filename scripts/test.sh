#!/usr/bin/env bash
# The whole test suite, on a fresh machine of this kind: installs what the tests need, then checks formatting,
# lints, and runs every test. Usage: scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== toolchain"
cargo --version

# Interop clients used by the integration tests (independent implementations of the protocols we speak).
if [ -f tests/requirements.txt ]; then
  echo "== python test dependencies"
  python3 -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
fi
if [ -f tests/js/package.json ]; then
  echo "== node test dependencies"
  (cd tests/js && npm ci --no-audit --no-fund --loglevel=error)
fi

echo "== fmt"
cargo fmt --all -- --check
echo "== clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== tests (SQLite)"
cargo test --workspace

# The integration suite again on PostgreSQL (each test in a schema of its own, dropped here before the run), which
# also runs the multi-instance tests. SWITCHBOARD_TEST_PG_URL overrides the server.
echo "== tests (PostgreSQL)"
export SWITCHBOARD_TEST_PG_URL="${SWITCHBOARD_TEST_PG_URL:-postgres://postgres@127.0.0.1:5432/test}"
if command -v psql >/dev/null; then
  psql "$SWITCHBOARD_TEST_PG_URL" -qAt -c "SELECT 'DROP SCHEMA ' || quote_ident(nspname) || ' CASCADE;' FROM pg_namespace WHERE nspname LIKE 'sbt\_%'" \
    | PGOPTIONS="-c client_min_messages=warning" psql "$SWITCHBOARD_TEST_PG_URL" -q >/dev/null
fi
SWITCHBOARD_TEST_BACKEND=postgres cargo test -p switchboard --test api

# Bad input: schemathesis against the OpenAPI document (a bounded run), on the debug binary the tests just built.
echo "== API fuzzing (quick)"
SWITCHBOARD_BIN="${CARGO_TARGET_DIR:-target}/debug/switchboard" scripts/api-fuzz.sh --quick

# Faults: the quick fault suite (kill -9 under load, receiver down and slow, disk full on a loop-mounted image,
# PostgreSQL stopped and started, two instances with one killed), on the debug binary. Needs root (the mount) and
# restarts the local PostgreSQL cluster, so it runs last. The long version: scripts/faults.sh --full.
echo "== fault suite (quick)"
python3 bench/faults/faults.py --quick --binary "${CARGO_TARGET_DIR:-target}/debug/switchboard"
