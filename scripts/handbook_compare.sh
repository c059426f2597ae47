#!/usr/bin/env bash
# The Fraud Detection Handbook's chapter-3 protocol on the three latest
# complete folds of ../shared/data/handbook, in one run:
#   book baseline  XGBoost defaults on the book's 15 inputs (the book's own
#                  feature file), through Debian's python3-xgboost
#                  (bench/handbook_baseline.py)
#   vigil book     `vigil backfill` of examples/handbook/features.yaml, then
#                  `vigil train` (defaults) and `vigil evaluate`
#   vigil plus     examples/handbook/features-plus.yaml with
#                  examples/handbook/params-plus.yaml
# Each fold: train 7 days from its start, skip 7 days, test the next 7 with
# the cards already known to be compromised removed (--exclude-known-entities
# CUSTOMER_ID --delay 7d). AUC and AP with 95 % bootstrap intervals (1,000
# resamples), card precision@100. Prints a Markdown table (docs/training.md
# holds one) and writes every report under $OUT (default /tmp/vigil-handbook).
#
# Usage: scripts/handbook_compare.sh [build-dir]      (make handbook-compare)
#        FOLDS="2018-06-27 2018-07-04" scripts/handbook_compare.sh build
set -euo pipefail
build=$(cd "${1:-build}" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
vigil="$build/src/cli/vigil"
py=/usr/bin/python3
data=${VIGIL_HANDBOOK_DIR:-$repo/../shared/data/handbook}
tx="$data/transactions_2018-04-01_to_07-31.csv.gz"
out=${OUT:-/tmp/vigil-handbook}
folds=${FOLDS:-"2018-06-27 2018-07-04 2018-07-11"}
[[ -f "$tx" ]] || { echo "handbook_compare: $tx not found (set VIGIL_HANDBOOK_DIR)" >&2; exit 2; }
[[ -x "$vigil" ]] || { echo "handbook_compare: $vigil not built" >&2; exit 2; }
mkdir -p "$out"
day() { date -u -d "$1 + $2 days" +%F; }

echo "handbook_compare: backfill (features.yaml, features-plus.yaml)" >&2
"$vigil" backfill --schema examples/handbook/schema.yaml --features examples/handbook/features.yaml \
  --events "$tx" --out "$out/book.csv" 2>/dev/null
"$vigil" backfill --schema examples/handbook/schema.yaml --features examples/handbook/features-plus.yaml \
  --events "$tx" --out "$out/plus.csv" 2>/dev/null

echo "handbook_compare: the book's baseline through python3-xgboost" >&2
"$py" bench/handbook_baseline.py --folds "$(echo $folds | tr ' ' ',')" --out "$out/baseline.json" >/dev/null

for f in $folds; do
  train="$f..$(day "$f" 6)"
  test="$(day "$f" 14)..$(day "$f" 20)"
  for variant in book plus; do
    params=()
    [[ $variant == plus ]] && params=(--params examples/handbook/params-plus.yaml)
    echo "handbook_compare: fold $f, vigil $variant: train $train, test $test" >&2
    "$vigil" train --features "$out/$variant.csv" --label TX_FRAUD --train "$train" "${params[@]}" \
      --out "$out/model-$variant-$f" 2>"$out/train-$variant-$f.log"
    "$vigil" evaluate --model "$out/model-$variant-$f" --features "$out/$variant.csv" --label TX_FRAUD \
      --range "$test" --entity CUSTOMER_ID --amount TX_AMOUNT \
      --exclude-known-entities CUSTOMER_ID --delay 7d \
      --out "$out/report-$variant-$f.json" --html "$out/report-$variant-$f.html" 2>/dev/null
  done
done

"$py" - "$out" $folds <<'EOF'
import json, sys
out, folds = sys.argv[1], sys.argv[2:]
base = {f["train_start"]: f for f in json.load(open(f"{out}/baseline.json"))["folds"]}
def ci(m):
    return f"{m['estimate']:.3f} [{m['lower']:.3f}, {m['upper']:.3f}]"
def bci(b, key):
    lo, hi = b[key + "_ci95"]
    return f"{b[key]:.3f} [{lo:.3f}, {hi:.3f}]"
rows = []
means = {}
for f in folds:
    b = base[f]
    rows.append((f, "book baseline (python3-xgboost)", bci(b, "auc_roc"), bci(b, "average_precision"), b["card_precision_at_100"]))
    for v, name in (("book", "vigil, the book's 15 inputs"), ("plus", "vigil, features-plus")):
        r = json.load(open(f"{out}/report-{v}-{f}.json"))["metrics"]
        rows.append((f, name, ci(r["auc"]), ci(r["average_precision"]), r["entity_precision_at_k"]["mean"]))
print("| training week from | model | AUC ROC [95 % CI] | average precision [95 % CI] | card precision@100 |")
print("|---|---|---|---|---|")
for f, name, auc, ap, cp in rows:
    print(f"| {f} | {name} | {auc} | {ap} | {cp:.3f} |")
for name in dict.fromkeys(r[1] for r in rows):
    sel = [r for r in rows if r[1] == name]
    m = lambda i: sum(float(r[i].split()[0]) if isinstance(r[i], str) else r[i] for r in sel) / len(sel)
    print(f"| mean | {name} | {m(2):.3f} | {m(3):.3f} | {m(4):.3f} |")
EOF
