#!/usr/bin/env bash
# Regenerates the per-scenario table in README.md (between the markers
# <!-- scenario-table --> and <!-- /scenario-table -->): simulates 10,000
# users over 90 days (seed 7), backfills examples/exchange/features.yaml and
# summarises the features per attack. Usage: scripts/scenario_table.sh [build-dir]
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export VIGIL_PII_KEY=scenario-table
"$build/src/cli/vigil" simulate --users 10000 --days 90 --seed 7 --out "$work/events.jsonl"
"$build/src/cli/vigil" backfill --schema examples/exchange/schema.yaml \
  --features examples/exchange/features.yaml --events "$work/events.jsonl" --out "$work/f.csv"
/usr/bin/python3 scripts/scenario_summary.py "$work/f.csv" --markdown > "$work/table.md"
/usr/bin/python3 - "$work/table.md" <<'PY'
import re, sys
table = open(sys.argv[1]).read().strip()
readme = open("README.md").read()
if "<!-- scenario-table -->" not in readme:
    sys.exit("README.md has no <!-- scenario-table --> markers")
new = re.sub(r"<!-- scenario-table -->.*?<!-- /scenario-table -->",
             lambda m: "<!-- scenario-table -->\n" + table + "\n<!-- /scenario-table -->",
             readme, flags=re.S)
open("README.md", "w").write(new)
print(table)
PY
