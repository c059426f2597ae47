#!/usr/bin/env bash
# `vigil train` beside XGBoost's own Python training on the same matrix: how
# much of the time goes to reading and preparing data rather than to the
# trees. Both read the whole backfill CSV of the handbook (1.17 M rows, 15
# features), keep four weeks (2018-06-01..06-28, ~270 k rows) and train 200
# rounds of depth-6 hist trees on two threads with the same parameters.
#
#   vigil:  "reading" (CSV, columns, time filter, float32 matrix) vs "training"
#           (XGBoost's rounds and the per-round evaluation), as vigil reports them
#   python: pandas.read_csv + filter + DMatrix vs xgboost.train (bench/train_reference.py)
#
# Usage: bench/train.sh BUILD_DIR      Writes bench/results/train.json.
set -euo pipefail

say() { printf 'train-bench: %s\n' "$*"; }
results_name=train.json
source "$(dirname "$0")/common.sh"

features="$tmp/features.csv"
"$vigil" backfill --schema examples/handbook/schema.yaml --features examples/handbook/features.yaml \
  --events "$gz" --out "$features" 2>/dev/null
cat >"$tmp/params.yaml" <<'YAML'
tree_method: hist
max_depth: 6
eta: 0.1
nthread: 2
eval_metric: aucpr
rounds: 200
YAML
params_json='{"objective": "binary:logistic", "tree_method": "hist", "max_depth": 6, "eta": 0.1, "nthread": 2, "eval_metric": "aucpr", "seed": 0}'

best_read="" best_train=""
for ((i = 0; i < repeats; i++)); do
  "$vigil" train --features "$features" --label TX_FRAUD --train 2018-06-01..2018-06-28 \
    --params "$tmp/params.yaml" --out "$tmp/model" 2>"$tmp/train.log"
  # "train: reading 0.61 s, training 29.26 s; bundle ..."
  read -r r t < <(sed -n 's/^train: reading \([0-9.]*\) s, training \([0-9.]*\) s.*/\1 \2/p' "$tmp/train.log")
  if [[ -z "$best_read" ]] || awk -v a="$r" -v b="$best_read" 'BEGIN { exit !(a < b) }'; then best_read=$r; fi
  if [[ -z "$best_train" ]] || awk -v a="$t" -v b="$best_train" 'BEGIN { exit !(a < b) }'; then best_train=$t; fi
done
rows=$(sed -n 's/^train: \([0-9]*\) training rows.*/\1/p' "$tmp/train.log")

best_prep="" best_pytrain=""
for ((i = 0; i < repeats; i++)); do
  line=$("$python" bench/train_reference.py "$features" TX_FRAUD 2018-06-01 2018-06-29 "$params_json" 200)
  p=$("$python" -c 'import json,sys; print(json.loads(sys.argv[1])["seconds_preparing"])' "$line")
  t=$("$python" -c 'import json,sys; print(json.loads(sys.argv[1])["seconds_training"])' "$line")
  if [[ -z "$best_prep" ]] || awk -v a="$p" -v b="$best_prep" 'BEGIN { exit !(a < b) }'; then best_prep=$p; fi
  if [[ -z "$best_pytrain" ]] || awk -v a="$t" -v b="$best_pytrain" 'BEGIN { exit !(a < b) }'; then best_pytrain=$t; fi
done

share() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", 100 * a / (a + b) }'; }
say "rows in range: $rows of 1,169,723 read; 200 rounds, depth 6, hist, 2 threads; best of $repeats"
say "vigil:  reading + preparing $(printf %.2f "$best_read") s, training $(printf %.2f "$best_train") s -> data is $(share "$best_read" "$best_train") % of the run"
say "python: read_csv + DMatrix  $(printf %.2f "$best_prep") s, xgboost.train $(printf %.2f "$best_pytrain") s -> data is $(share "$best_prep" "$best_pytrain") % of the run"
say "reading and preparing: vigil is $(awk -v a="$best_prep" -v b="$best_read" 'BEGIN { printf "%.1f", a / b }')x faster than pandas + DMatrix"
mkdir -p "$results_dir"
cat >"$results" <<JSON
{"rows": $rows, "vigil": {"seconds_reading": $best_read, "seconds_training": $best_train},
 "python": {"seconds_preparing": $best_prep, "seconds_training": $best_pytrain}}
JSON
