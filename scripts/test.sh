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
echo "== tests"
cargo test --workspace
