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
#   bench/backfill.sh        `vigil backfill` of the handbook's 14 features (CSV in,
#                            CSV out; gzip too) beside the vectorised pandas reference
#   bench/simulate.sh        `vigil simulate` events/s to plain JSON Lines, and the size
#                            of 10 k users x 30 days, beside Python's json
#   bench/forest.sh          the forest evaluator beside XGBoost's predictor (one row,
#                            batches, reasons, load) on a 300- and a 1,000-tree model
#   bench/train.sh           `vigil train`: reading and preparing data as a share of the
#                            run, beside pandas + DMatrix and xgboost.train
#   engine_benchmark         FeatureEngine::Process on a 30-feature spec: p50/p99/p99.9
#                            per call and events/s on one core; memory per entity per
#                            window feature with 1 M entities
#   bench/serve.sh           the decision service: Engine::Decide in-process (serve_engine_
#                            benchmark: p50/p99 µs, events/s per core) and `vigil serve` over
#                            loopback HTTP (wrk: req/s, p99) beside a Flask + XGBoost service
#                            under gunicorn, for the exchange model and a 1,000-tree one
#
# Usage: scripts/bench.sh [build-dir]     (default: build)
# Results: bench/results/validate.json, bench/results/validator_benchmark.json,
#          bench/results/backfill.json, bench/results/engine_benchmark.json,
#          bench/results/serve.json, bench/results/serve_engine_benchmark.json
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
cd "$(dirname "$0")/.."
if [[ -z "${VIGIL_HANDBOOK_DIR:-}" && -d ../shared/data/handbook ]]; then
  export VIGIL_HANDBOOK_DIR=$(cd ../shared/data/handbook && pwd)
fi
mkdir -p bench/results
log=$(mktemp "${TMPDIR:-/tmp}/vigil-bench-log.XXXXXX")
backfill_log=$(mktemp "${TMPDIR:-/tmp}/vigil-bench-log.XXXXXX")
engine_log=$(mktemp "${TMPDIR:-/tmp}/vigil-bench-log.XXXXXX")
trap 'rm -f "$log" "$backfill_log" "$engine_log"' EXIT
# The first CPU this process may run on ("0-3,6" -> 0).
cpu=$(taskset -cp $$ | sed 's/.*: //; s/[-,].*//')

echo "== bench/validate.sh"
bench/validate.sh "$build" | tee "$log"

echo
echo "== validator_benchmark (one core)"
micro="$build/src/event/validator_benchmark"
micro_summary=""
if [[ -x "$micro" ]]; then
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
echo "== bench/backfill.sh"
bench/backfill.sh "$build" | tee "$backfill_log"

echo
echo "== engine_benchmark (one core)"
engine="$build/src/feature/engine_benchmark"
if [[ -x "$engine" ]]; then
  taskset -c "$cpu" "$engine" --json bench/results/engine_benchmark.json | tee "$engine_log"
else
  echo "engine_benchmark: skipped, $engine not built (configure with -DVIGIL_BENCHMARKS=ON)" \
    | tee "$engine_log"
fi

echo
echo "== bench/simulate.sh"
sim_log=$(mktemp "${TMPDIR:-/tmp}/vigil-bench-sim.XXXXXX")
bench/simulate.sh "$build" | tee "$sim_log"

echo
echo "== bench/forest.sh"
forest_log=$(mktemp "${TMPDIR:-/tmp}/vigil-bench-forest.XXXXXX")
bench/forest.sh "$build" | tee "$forest_log"

echo
echo "== bench/train.sh"
train_log=$(mktemp "${TMPDIR:-/tmp}/vigil-bench-train.XXXXXX")
bench/train.sh "$build" | tee "$train_log"

echo
echo "== bench/serve.sh"
serve_log=$(mktemp "${TMPDIR:-/tmp}/vigil-bench-serve.XXXXXX")
bench/serve.sh "$build" | tee "$serve_log"

echo
echo "== summary"
echo "  vigil validate:"
grep -E '^  (vigil validate|pandas|ratio|goal)' "$log" || grep -E '^validate-bench:' "$log" || true
if [[ -n "$micro_summary" ]]; then
  echo "  micro-benchmarks (per record / per call, one core):"
  echo "$micro_summary"
fi
echo "  vigil backfill:"
grep -E '^  (vigil backfill|pandas|ratio|goal)' "$backfill_log" \
  || grep -E '^backfill-bench:' "$backfill_log" || true
echo "  FeatureEngine::Process (engine_benchmark):"
grep -E '^  (throughput|scored|spec  |count-mean|4-aggs|bytes per)|^ +calls +p50' "$engine_log" \
  || grep -E '^engine_benchmark' "$engine_log" || true
echo "  vigil simulate:"
sed 's/^/    /' "$sim_log"
echo "  forest evaluator vs XGBoost (one thread):"
grep '^forest-bench:' "$forest_log" | sed 's/^forest-bench: /    /'
echo "  vigil train (data preparation vs training):"
sed 's/^train-bench: /    /' "$train_log"
echo "  vigil serve and Engine::Decide (bench/serve.sh):"
sed -n '/^vigil serve vs a Flask/,/^  results:/p' "$serve_log" | grep -vE '^vigil serve vs|^  results:|^$' \
  | sed 's/^/  /'
rm -f "$sim_log" "$train_log" "$forest_log" "$serve_log"
echo "  load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "  results in bench/results/; figures are from shared cores and noisy"
