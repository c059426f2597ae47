#!/usr/bin/env bash
# The demo behind `make demo` (which installs and builds first). What it runs
# grows as vigil does; today: schema validation with a dead-letter file, a
# data profile, and outlier warnings against that profile, on the quickstart
# example and, when ../shared/data/handbook is there, on the Fraud Detection
# Handbook's 1.17 M card transactions.
# Usage: scripts/demo.sh [build-dir]     (OUT=folder to keep the outputs)
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
vigil="$build/src/cli/vigil"
out=${OUT:-out/demo}
mkdir -p "$out"
export VIGIL_PII_KEY=${VIGIL_PII_KEY:-demo-key-not-for-production}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { echo "\$ vigil ${*}"; "$vigil" "$@"; }

step "1. Validate exchange events against a schema (examples/quickstart)"
echo "   Bad records are kept, with the field, rule and value, in a dead-letter file."
set +e
run validate --schema examples/quickstart/schema.yaml --events examples/quickstart/events.jsonl \
  --dead-letter "$out/quickstart.dead-letter.jsonl" --report "$out/quickstart.report.json"
rc=$?
set -e
[[ $rc == 1 ]] || { echo "demo: expected exit 1 (some records rejected), got $rc" >&2; exit 1; }
echo "   exit status $rc: some records were rejected. First dead letter:"
head -n 1 "$out/quickstart.dead-letter.jsonl" | cut -c1-400

handbook=${VIGIL_HANDBOOK_DIR:-../shared/data/handbook}
tx="$handbook/transactions_2018-04-01_to_07-31.csv.gz"
if [[ -f "$tx" ]]; then
  step "2. Validate 1.17 M card transactions (Fraud Detection Handbook)"
  run validate --schema examples/handbook/schema.yaml --events "$tx" --report "$out/handbook.report.json"
  step "3. Profile them: quantiles, top categories, distinct counts"
  run profile --schema examples/handbook/schema.yaml --events "$tx" --out "$out/handbook.profile.json"
  /usr/bin/python3 - "$out/handbook.profile.json" <<'PY' || true
import json, sys
p = json.load(open(sys.argv[1]))
c = p["columns"]["transaction.TX_AMOUNT"]
q = dict(zip(p["quantile_levels"], c["quantiles"]))
print(f"   TX_AMOUNT: mean {c['mean']:.2f}, p50 {q[0.5]:.2f}, p99 {q[0.99]:.2f}, max {c['max']:.2f}")
f = p["columns"]["transaction.TX_FRAUD"]
print("   TX_FRAUD: " + ", ".join(f"{t['value']}: {t['frequency']:.4%}" for t in f["top"]))
PY
  step "4. Point-in-time features: the book's 14 features, by the engine a server runs"
  run backfill --schema examples/handbook/schema.yaml --features examples/handbook/features.yaml \
    --events "$tx" --out "$out/handbook.features.csv"
  echo "   Three rows from early June: amount, then the card's count and mean amount over 1 and 7 days:"
  sed -n '1p;600000,600002p' "$out/handbook.features.csv" | cut -d, -f1,2,4,8-11 | column -t -s, | sed 's/^/   /'
  step "5. Check new data against the profile: outliers are warnings, not rejections"
  printf 'TRANSACTION_ID,TX_DATETIME,CUSTOMER_ID,TERMINAL_ID,TX_AMOUNT,TX_TIME_SECONDS,TX_TIME_DAYS,TX_FRAUD,TX_FRAUD_SCENARIO\n9000001,2018-08-01 10:00:00,17,42,54.20,10490400,121,0,0\n9000002,2018-08-01 10:00:05,18,43,98000.00,10490405,121,0,0\n' > "$out/new.csv"
  run validate --schema examples/handbook/schema.yaml --events "$out/new.csv" --profile "$out/handbook.profile.json"
else
  step "2. (skipped) the handbook data is not at $handbook; set VIGIL_HANDBOOK_DIR to run it"
fi

step "Next"
cat <<EOF2
   Outputs are in $out/. Try:
     $vigil validate --help
     $vigil profile --help
   Docs: docs/README.md (schemas: docs/schema.md, validation: docs/validation.md,
   profiles: docs/profile.md). The simulator, features, models and the decision
   service come next (see the issues); this demo grows with them.
EOF2
