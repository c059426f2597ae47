#!/usr/bin/env bash
# Trains the model bundle the exchange example serves (examples/exchange/model):
# a simulated exchange, its point-in-time features, an XGBoost model on the
# first weeks with known labels. Deterministic (fixed seeds, one thread).
# Run it again after any change to examples/exchange/features.yaml or
# schema.yaml: vigil serve refuses a bundle trained on another spec.
#
# Usage: scripts/make_exchange_model.sh [path/to/vigil]
set -euo pipefail
cd "$(dirname "$0")/.."
vigil=${1:-build/src/cli/vigil}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ex=examples/exchange
"$vigil" simulate --users 3000 --days 90 --seed 7 --out "$work/events.jsonl"
VIGIL_PII_KEY=example-key "$vigil" backfill --schema $ex/schema.yaml --features $ex/features.yaml \
  --events "$work/events.jsonl" --out "$work/features.csv"
cat > "$work/params.yaml" <<'YAML'
max_depth: 5
eta: 0.1
rounds: 200
early_stopping_rounds: 30
YAML
rm -rf $ex/model
"$vigil" train --features "$work/features.csv" --label label --train 2024-01-01..2024-01-20 \
  --valid 2024-01-21..2024-01-30 --params "$work/params.yaml" --threads 1 --seed 1 --out $ex/model
du -sh $ex/model
