#!/usr/bin/env bash
# Fuzz the HL7 parser and the MLLP framer (crates/switchboard-hl7) with cargo-fuzz / libFuzzer.
# Usage: scripts/fuzz.sh [seconds]   — seconds per target, default 600.
#
# Runs on the stable toolchain: cargo-fuzz passes -Z flags (sanitizer, coverage), which RUSTC_BOOTSTRAP=1 makes
# stable rustc accept. Targets run one after the other under `nice -n 19`. The growing corpus is kept in
# fuzz/corpus/<target>/ (not committed), starting from the committed seeds in fuzz/seeds/<target>/. A crash
# leaves its input in fuzz/artifacts/<target>/ and makes this script exit non-zero; the libFuzzer log of each
# run is fuzz/logs/<target>.log.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs="${1:-600}"
case "$secs" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [seconds]" >&2; exit 2 ;;
esac
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "== installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

echo "== building fuzz targets"
nice -n 19 cargo fuzz build

mkdir -p logs
status=0
for target in parse framer; do
  mkdir -p "corpus/$target"
  args=(-max_total_time="$secs" -print_final_stats=1)
  if [ "$target" = parse ]; then args+=(-dict=hl7.dict); fi
  echo "== fuzzing $target for ${secs}s: cargo fuzz run $target corpus/$target seeds/$target -- ${args[*]}"
  started=$(date +%s)
  if nice -n 19 cargo fuzz run "$target" "corpus/$target" "seeds/$target" -- "${args[@]}" >"logs/$target.log" 2>&1; then
    result=ok
  else
    result=FAILED
    status=1
  fi
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$target.log" | grep -o '[0-9]*$' || true)
  echo "$target: $result after $(($(date +%s) - started))s, ${execs:-?} executions," \
    "corpus $(find "corpus/$target" -type f | wc -l) inputs ($(du -sh "corpus/$target" | cut -f1))"
  if [ "$result" = FAILED ]; then
    grep -A6 -m1 'panicked at\|ERROR: libFuzzer' "logs/$target.log" || true
    ls "artifacts/$target" 2>/dev/null || true
  fi
done
exit "$status"
