#!/usr/bin/env bash
# vigil's forest evaluator beside XGBoost's own predictor, one thread, same
# model and same rows, for the issue's two sizes (bench/make_models.py trains
# them once with python3-xgboost into bench/results/models/):
#   300 trees of depth 6 on 30 features    goals: one row >= 10x, batch >= 2x
#   1,000 trees of depth 8 on 30 features  goals: one row >= 3x,  batch >= 2x
# Each model: `vigil bench model --json` (p50/p99 per row, batch rows/s, the
# better XGBoost path per figure) and the forest_benchmark Google Benchmark
# (mean per call, reasons, load time) when it is built.
#
# Usage: bench/forest.sh BUILD_DIR      Writes bench/results/forest.json.
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
cd "$(dirname "$0")/.."
vigil="$build/src/cli/vigil"
micro="$build/src/model/forest_benchmark"
models=bench/results/models
mkdir -p "$models"
/usr/bin/python3 bench/make_models.py "$models"
cpu=$(taskset -cp $$ | sed 's/.*: //; s/[-,].*//')
say() { printf 'forest-bench: %s\n' "$*"; }
echo "{" >bench/results/forest.json
first=1
for spec in "trees300_depth6 10" "trees1000_depth8 3"; do
  read -r name goal <<<"$spec"
  json=$(taskset -c "$cpu" "$vigil" bench model --model "$models/$name.json" --features "$models/rows.csv" \
    --rows 10000 --json)
  [[ $first == 1 ]] || echo "," >>bench/results/forest.json
  first=0
  printf '"%s": %s\n' "$name" "$json" >>bench/results/forest.json
  /usr/bin/python3 - "$name" "$goal" "$json" <<'PY'
import json, sys
name, goal, r = sys.argv[1], float(sys.argv[2]), json.loads(sys.argv[3])
v, x = r["vigil"], r["xgboost"]
ok = lambda a, g: "meets" if a >= g else "FALLS SHORT of"
print(f"forest-bench: {name}: vigil p50 {v['p50_us']:.2f} µs p99 {v['p99_us']:.2f} µs, batch {v['batch_rows_per_s']/1e3:.0f} k rows/s; "
      f"XGBoost ({x['path']}) p50 {x['p50_us']:.2f} µs p99 {x['p99_us']:.2f} µs, batch {x['batch_rows_per_s']/1e3:.0f} k rows/s")
print(f"forest-bench: {name}: one row {r['speedup_p50']:.1f}x ({ok(r['speedup_p50'], goal)} the {goal:g}x goal), "
      f"batch {r['speedup_batch']:.1f}x ({ok(r['speedup_batch'], 2)} the 2x goal); reasons per row: path "
      f"{r['reasons_us_per_row']['path']:.1f} µs, TreeSHAP {r['reasons_us_per_row']['treeshap']:.0f} µs; load {r['load_ms']:.1f} ms")
d = r["path_vs_treeshap"]
print(f"forest-bench: {name}: path attribution vs TreeSHAP on {d['rows']} rows: same top feature {100*d['same_top1']:.0f} %, "
      f"same top-3 set {100*d['same_top3']:.0f} %, {100*d['l1_difference']:.0f} % of the attribution on other features")
PY
  if [[ -x "$micro" ]]; then
    VIGIL_BENCH_MODEL="$models/$name.json" VIGIL_BENCH_ROWS="$models/rows.csv" \
      taskset -c "$cpu" "$micro" --benchmark_min_time=0.3 2>/dev/null | sed "s/^/  [$name] /"
  fi
done
echo "}" >>bench/results/forest.json
