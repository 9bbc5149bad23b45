#!/usr/bin/env bash
# The fault suite (bench/faults/faults.py): real `switchboard serve` processes under load while the server is
# killed -9, the webhook receiver is down or slow, the disk fills up and PostgreSQL restarts; every acknowledged
# event must be in the history and delivered. Builds the release binary first.
#
# Usage: scripts/faults.sh [--quick|--full] [--out results.json] [--only kill9,disk_full,...]
#   --quick (default) about 4 minutes, meant for CI; --full is the long version (about 13 minutes).
# Needs root (the disk-full scenario loop-mounts a small ext4 image) and, for the PostgreSQL scenarios, the local
# cluster `pg_ctlcluster 15 main` (override: SWITCHBOARD_FAULTS_PG_CLUSTER, SWITCHBOARD_FAULTS_PG_URL). The
# PostgreSQL scenario stops and starts that cluster.
set -euo pipefail
cd "$(dirname "$0")/.."

mode="--quick"
if [ $# -gt 0 ] && { [ "$1" = "--quick" ] || [ "$1" = "--full" ]; }; then
  mode="$1"
  shift
fi

echo "== build (release)"
cargo build --release -p switchboard
echo "== python dependencies"
python3 -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
echo "== faults ${mode}"
exec python3 bench/faults/faults.py "$mode" --binary target/release/switchboard "$@"
