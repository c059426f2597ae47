#!/usr/bin/env bash
# `vigil simulate` speed: events written per second to plain JSON Lines on one
# core (goal >= 500 k events/s), and the size of 10,000 users x 30 days.
# Reference in the same run: Debian's Python re-serialising the first 200,000
# of those events with json.loads/json.dumps (what a Python generator would at
# least have to do per event). Usage: bench/simulate.sh BUILD_DIR
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
cd "$(dirname "$0")/.."
vigil="$build/src/cli/vigil"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
best=""
for i in 1 2 3; do
  start=$(date +%s.%N)
  taskset -c 0 "$vigil" simulate --users 10000 --days 30 --seed 7 --out "$work/e.jsonl" 2> "$work/log"
  end=$(date +%s.%N)
  secs=$(echo "$end - $start" | bc -l)
  if [[ -z "$best" ]] || (( $(echo "$secs < $best" | bc -l) )); then best=$secs; fi
done
events=$(wc -l < "$work/e.jsonl")
bytes=$(stat -c %s "$work/e.jsonl")
gzip -1 -c "$work/e.jsonl" > "$work/e.jsonl.gz"
gzbytes=$(stat -c %s "$work/e.jsonl.gz")
rate=$(echo "$events / $best" | bc -l)
head -n 200000 "$work/e.jsonl" > "$work/head.jsonl"
ref=$(taskset -c 0 /usr/bin/python3 - "$work/head.jsonl" <<'PY'
import json, sys, time
lines = open(sys.argv[1]).read().splitlines()
t = time.perf_counter()
out = [json.dumps(json.loads(l), separators=(",", ":")) for l in lines]
print(len(lines) / (time.perf_counter() - t))
PY
)
goal=500000
verdict=$( (( $(echo "$rate >= $goal" | bc -l) )) && echo PASS || echo "FALLS SHORT")
printf 'simulate: 10,000 users x 30 days: %d events, %.1f MB plain (%.1f MB gzip -1)\n' \
  "$events" "$(echo "$bytes / 1000000" | bc -l)" "$(echo "$gzbytes / 1000000" | bc -l)"
printf 'simulate: best of 3 on one core: %.2f s = %.0f events/s (goal %d: %s)\n' "$best" "$rate" "$goal" "$verdict"
printf 'simulate: reference, Python json re-serialisation of 200k of them: %.0f events/s; ratio %.1fx\n' \
  "$ref" "$(echo "$rate / $ref" | bc -l)"
mkdir -p bench/results
printf '{"events": %d, "bytes": %d, "gzip_bytes": %d, "seconds": %.3f, "events_per_s": %.0f, "python_json_events_per_s": %.0f, "load": "%s"}\n' \
  "$events" "$bytes" "$gzbytes" "$best" "$rate" "$ref" "$(cut -d' ' -f1-3 /proc/loadavg)" > bench/results/simulate.json
