#!/usr/bin/env bash
# Runs vigil's benchmarks against an already built tree (`make bench` builds
# first) and prints a summary at the end. What each one measures, and figures
# from a run, are in bench/README.md. Speed is never a pass/fail test: these
# print figures beside a reference measured in the same run.
#
#   bench/validate.sh        `vigil validate` on the handbook file (CSV, gzip,
#                            JSON Lines) beside pandas.read_csv
#   validator_benchmark      Google Benchmark micro-benchmarks of decoding and
#                            checking one record, and of timestamp parsing
#
# Usage: scripts/bench.sh [build-dir]     (default: build)
# Results: bench/results/validate.json, bench/results/validator_benchmark.json
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
cd "$(dirname "$0")/.."
if [[ -z "${VIGIL_HANDBOOK_DIR:-}" && -d ../shared/data/handbook ]]; then
  export VIGIL_HANDBOOK_DIR=$(cd ../shared/data/handbook && pwd)
fi
mkdir -p bench/results
log=$(mktemp "${TMPDIR:-/tmp}/vigil-bench-log.XXXXXX")
trap 'rm -f "$log"' EXIT

echo "== bench/validate.sh"
bench/validate.sh "$build" | tee "$log"

echo
echo "== validator_benchmark (one core)"
micro="$build/src/event/validator_benchmark"
micro_summary=""
if [[ -x "$micro" ]]; then
  # The first CPU this process may run on ("0-3,6" -> 0).
  cpu=$(taskset -cp $$ | sed 's/.*: //; s/[-,].*//')
  taskset -c "$cpu" "$micro" --benchmark_min_time=0.2 \
    --benchmark_out=bench/results/validator_benchmark.json --benchmark_out_format=json 2>&1 \
    | tee -a "$log"
  # "BM_DecodeCsv  219 ns  134 ns  2086522 bytes_per_second=... items_per_second=7.4M/s [label]":
  # the CPU time (4th and 5th columns) is what items_per_second is computed from.
  micro_summary=$(awk '/^BM_/ {
      ips = ""
      for (i = 1; i <= NF; i++) if ($i ~ /^items_per_second=/) { ips = substr($i, 18); last = i }
      label = ""
      for (i = last + 1; i <= NF; i++) label = label " " $i
      printf "  %-28s %8s %-3s CPU %12s%s\n", $1, $4, $5, ips, label
    }' "$log")
else
  echo "validator_benchmark: skipped, $micro not built (configure with -DVIGIL_BENCHMARKS=ON)"
fi

echo
echo "== summary"
grep -E '^  (vigil validate|pandas|ratio|goal)' "$log" || grep -E '^validate-bench:' "$log" || true
if [[ -n "$micro_summary" ]]; then
  echo "  micro-benchmarks (per record / per call, one core):"
  echo "$micro_summary"
fi
echo "  results in bench/results/; figures are from shared cores and noisy"
