#!/usr/bin/env bash
# The demo behind `make demo` (which installs and builds first). It grows as
# vigil does; today: a simulated exchange (10,000 users over 90 days, five
# labelled attacks), validated against its schema, its point-in-time features
# backfilled with training labels from the late label events, and a summary
# of what the features show per attack; then the Fraud Detection Handbook's
# data when ../shared/data/handbook is there.
#
# Usage: scripts/demo.sh [build-dir]
#   OUT=folder        keep the outputs there (default out/demo)
#   DEMO_USERS, DEMO_DAYS, DEMO_SEED   the simulation's size (10000, 90, 7)
#   DEMO_HANDBOOK=0   skip the handbook part
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
vigil="$build/src/cli/vigil"
out=${OUT:-out/demo}
users=${DEMO_USERS:-10000}
days=${DEMO_DAYS:-90}
seed=${DEMO_SEED:-7}
mkdir -p "$out"
export VIGIL_PII_KEY=${VIGIL_PII_KEY:-demo-key-not-for-production}

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
run() { echo "\$ vigil ${*}"; "$vigil" "$@"; }

step "1. Simulate an exchange: $users users over $days days, with five labelled attacks"
run simulate --users "$users" --days "$days" --seed "$seed" --out "$out/events.jsonl"

step "2. Validate the events against the exchange's schema (rejects go to a dead-letter file)"
run validate --schema examples/exchange/schema.yaml --events "$out/events.jsonl" \
  --dead-letter "$out/events.dead-letter.jsonl" --report "$out/validate.json"

step "3. Backfill point-in-time features, with training labels from the late label events"
run backfill --schema examples/exchange/schema.yaml --features examples/exchange/features.yaml \
  --events "$out/events.jsonl" --out "$out/features.csv"

step "4. What the features show per attack (single-feature AUC against genuine rows; no model yet)"
if /usr/bin/python3 -c 'import pandas' 2>/dev/null; then
  /usr/bin/python3 scripts/scenario_summary.py "$out/features.csv"
else
  echo "   (skipped: /usr/bin/python3 with pandas is needed; scripts/install-deps.sh installs it)"
fi
echo "   The labels come from the simulator's delayed label events: a real team would know"
echo "   them only weeks later, and some attacks are never reported."

handbook=${VIGIL_HANDBOOK_DIR:-../shared/data/handbook}
tx="$handbook/transactions_2018-04-01_to_07-31.csv.gz"
if [[ ${DEMO_HANDBOOK:-1} != 0 && -f "$tx" ]]; then
  step "5. The Fraud Detection Handbook: 1.17 M card transactions, the book's 14 features"
  run validate --schema examples/handbook/schema.yaml --events "$tx"
  run backfill --schema examples/handbook/schema.yaml --features examples/handbook/features.yaml \
    --events "$tx" --out "$out/handbook.features.csv"
  echo "   Three rows from early June: amount, then the card's count and mean amount over 1 and 7 days:"
  sed -n '1p;600000,600002p' "$out/handbook.features.csv" | cut -d, -f1,2,4,8-11 | column -t -s, | sed 's/^/   /'
fi

step "Next"
cat <<EOF2
   Outputs are in $out/: events.jsonl, features.csv (+ .meta.json), validate.json.
   Try: $vigil --help; examples/exchange/README.md explains which feature serves which
   threat; docs/README.md lists the docs. Training, the forest evaluator and the decision
   service come next (see the issues); this demo grows with them.
EOF2
