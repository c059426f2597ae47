#!/usr/bin/env bash
# The forest evaluator on a handbook model: `vigil backfill` the handbook's
# features, `vigil train` a model on one week, `vigil predict --margin` on
# all 1,169,723 rows, and python3-xgboost's output_margin on the same
# model.json and rows: every margin must be bit-equal.
# Skips (exit 77) unless VIGIL_HANDBOOK_DIR names the data folder.
#
# Usage: handbook_model_parity.sh VIGIL_BINARY SOURCE_DIR
set -euo pipefail
vigil=$1
src=$2
tx="${VIGIL_HANDBOOK_DIR:-}/transactions_2018-04-01_to_07-31.csv.gz"
if [[ -z "${VIGIL_HANDBOOK_DIR:-}" || ! -f "$tx" ]]; then
  echo "skipped: set VIGIL_HANDBOOK_DIR to the folder holding the handbook data"
  exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/vigil-parity.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$vigil" backfill --schema "$src/examples/handbook/schema.yaml" --features "$src/examples/handbook/features.yaml" \
  --events "$tx" --out "$tmp/f.csv" 2>/dev/null
printf 'tree_method: hist\nmax_depth: 6\nrounds: 100\n' >"$tmp/params.yaml"
"$vigil" train --features "$tmp/f.csv" --label TX_FRAUD --train 2018-07-11..2018-07-17 --params "$tmp/params.yaml" \
  --out "$tmp/model" 2>"$tmp/train.log" || { cat "$tmp/train.log"; exit 1; }
"$vigil" predict --model "$tmp/model" --features "$tmp/f.csv" --margin --out "$tmp/margins.csv" 2>/dev/null
/usr/bin/python3 - "$tmp" <<'PY'
import json, sys
import numpy as np, pandas as pd, xgboost as xgb
tmp = sys.argv[1]
meta = json.load(open(f"{tmp}/f.csv.meta.json"))
df = pd.read_csv(f"{tmp}/f.csv")
booster = xgb.Booster()
booster.load_model(f"{tmp}/model/model.json")
x = df[meta["feature_columns"]].to_numpy(dtype=np.float32)
theirs = booster.predict(xgb.DMatrix(x, missing=np.nan, feature_names=meta["feature_columns"]), output_margin=True)
ours = pd.read_csv(f"{tmp}/margins.csv")["margin"].to_numpy(dtype=np.float32)
assert len(ours) == len(theirs) == len(df), (len(ours), len(theirs), len(df))
same = int((ours.view(np.uint32) == theirs.view(np.uint32)).sum())
print(f"handbook model parity: {same:,} of {len(df):,} margins bit-equal to python3-xgboost's")
if same != len(df):
    bad = np.flatnonzero(ours.view(np.uint32) != theirs.view(np.uint32))[:5]
    for i in bad:
        print(f"  row {i}: vigil {ours[i]!r} xgboost {theirs[i]!r}")
    sys.exit(1)
PY
