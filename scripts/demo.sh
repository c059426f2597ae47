#!/usr/bin/env bash
# The demo behind `make demo` (which installs and builds first). It grows as
# vigil does; today: a simulated exchange (10,000 users over 90 days, five
# labelled attacks), validated against its schema, its point-in-time features
# backfilled with training labels from the late label events, a summary of
# what the features show per attack, a model trained on the first weeks and
# judged on the last ones (report, HTML page, review threshold, reasons);
# the decision service serving it (decisions, reasons, metrics, event log);
# then the Fraud Detection Handbook's data when ../shared/data/handbook is
# there, with the book's protocol on one fold.
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

# Time splits of the simulation. A row's label is known (0 or 1) only once
# the longest label horizon (chargebacks: 60 days) has passed by the end of
# the data, so only the first days - 60 days are labelled for genuine
# traffic: train on the first half of them, validate on the next fifth,
# judge on the rest.
start=2024-01-01
day() { date -u -d "$start + $1 days" +%F; }
horizon=$(/usr/bin/python3 -c 'import json,sys,re
h=json.load(open(sys.argv[1])).get("label_horizons") or {}
d={"d":1,"w":7}
print(max([int(re.match(r"(\d+)",v).group(1))*d.get(v[-1],1) for v in h.values()] or [0]))' "$out/features.csv.meta.json")
known=$((days - horizon))
if ((known < 10)); then
  echo "   (skipping the model: only $known days have known labels; simulate at least $((horizon + 10)) days)"
  exit 0
fi
t1=$((known / 2)) t2=$((known * 7 / 10))
step "5. Train a model on days 1-$t1, stop early on days $((t1 + 1))-$t2 (splits by time, never at random)"
run train --features "$out/features.csv" --label label --train "$start..$(day $((t1 - 1)))" \
  --valid "$(day "$t1")..$(day $((t2 - 1)))" --out "$out/model"

step "6. Judge it on days $((t2 + 1))-$known, which it never saw: intervals, recall at low FPR, groups"
run evaluate --model "$out/model" --features "$out/features.csv" --label label \
  --range "$(day "$t2")..$(day $((known - 1)))" --entity user_id --group-by age_band \
  --out "$out/report.json" --html "$out/report.html"
echo "   The page: $out/report.html (curves and tables; opens in any browser)."

step "7. The threshold a team reviewing 50 alerts a day would use, and why three events scored high"
run thresholds --model "$out/model" --features "$out/features.csv" --label label \
  --range "$(day "$t2")..$(day $((known - 1)))" --review-budget 50/day --amount amount_usd \
  --out "$out/thresholds.yaml"
cat "$out/thresholds.yaml" | sed 's/^/   /'
run predict --model "$out/model" --features "$out/features.csv" --reasons 3 --out "$out/scores.csv"
echo "   The three highest scores, with the features that moved them most:"
(head -1 "$out/scores.csv"; tail -n +2 "$out/scores.csv" | sort -t, -k2 -g -r | awk 'NR <= 3') | cut -d, -f1-8 |
  column -t -s, | sed 's/^/   /'

step "8. Serve it: vigil serve answers each event with a decision and its reasons, and logs it"
srv="$(realpath "$out")/serve"
rm -rf "$srv" && mkdir -p "$srv"
models=""
for t in signup deposit withdrawal trade promo_redeem api_key_create; do
  models+="  $t: {champion: {name: demo, bundle: $(realpath "$out")/model}}"$'\n'
done
cat > "$srv/vigil.yaml" <<EOF2
schema: $PWD/examples/exchange/schema.yaml
features: $PWD/examples/exchange/features.yaml
policy: $PWD/examples/exchange/policy.yaml
models:
$models
store: sqlite:var/vigil.db
event_log: var/eventlog
journal: var/decisions.journal.jsonl
dead_letter: var/dead-letter.jsonl
keys_file: var/keys.txt
listen: 127.0.0.1:0
EOF2
run serve --config "$srv/vigil.yaml" --check
echo "\$ vigil keys create --config $srv/vigil.yaml --role score"
key=$("$vigil" keys create --config "$srv/vigil.yaml" --role score)
"$vigil" serve --config "$srv/vigil.yaml" 2> "$srv/serve.log" &
serve_pid=$!
trap 'kill "$serve_pid" 2>/dev/null || true' EXIT
for _ in $(seq 100); do grep -q "listening on" "$srv/serve.log" && break; sleep 0.1; done
url="http://$(grep -o '127\.0\.0\.1:[0-9]*' "$srv/serve.log" | head -1)"
echo "   listening on $url; the 30 hand-written events of examples/exchange/sample.jsonl, one POST each:"
while IFS= read -r ev; do
  curl -s -X POST "$url/v1/events" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d "$ev"
  echo
done < examples/exchange/sample.jsonl > "$srv/answers.jsonl"
/usr/bin/python3 - "$srv/answers.jsonl" <<'PY'
import json, sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    if d.get("scored"):
        rules = ", ".join(r["name"] for r in d["rules"]) or "-"
        top = d["reasons"][0]["feature"] if d["reasons"] else "-"
        print(f"   {d['event_id']} {d['event_type']:<15} {d['action']:<9} score {d['score']:.3f}  "
              f"{d['decided_by']:<28} rules: {rules:<22} top reason: {top}  {d['latency_us']} us")
PY
echo "   The account takeover's withdrawal, as an analyst reads it (exact TreeSHAP, top 3):"
curl -s "$url/v1/decisions/e000000000025" -H "Authorization: Bearer $key" |
  /usr/bin/python3 -c 'import json,sys; d=json.load(sys.stdin); print("  ", d["action"], d["decided_by"], [r["name"] for r in d["rules"]]); [print("   ", r) for r in d["exact_reasons"][:3]]'
curl -s "$url/metrics" -H "Authorization: Bearer $key" | grep -E '^vigil_(decisions_total|rule_hits_total)' | sed 's/^/   /'
kill -TERM "$serve_pid"; wait "$serve_pid" || true
trap - EXIT
tail -1 "$srv/serve.log" | sed 's/^/   /'
run backfill --schema examples/exchange/schema.yaml --features examples/exchange/features.yaml \
  --events "$srv/var/eventlog" --out "$srv/replayed.csv"
echo "   The event log replays into the same features the server used (docs/api.md; serve.backfill_parity)."

handbook=${VIGIL_HANDBOOK_DIR:-../shared/data/handbook}
tx="$handbook/transactions_2018-04-01_to_07-31.csv.gz"
if [[ ${DEMO_HANDBOOK:-1} != 0 && -f "$tx" ]]; then
  step "9. The Fraud Detection Handbook: 1.17 M card transactions, the book's 14 features"
  run validate --schema examples/handbook/schema.yaml --events "$tx"
  run backfill --schema examples/handbook/schema.yaml --features examples/handbook/features.yaml \
    --events "$tx" --out "$out/handbook.features.csv"
  echo "   Three rows from early June: amount, then the card's count and mean amount over 1 and 7 days:"
  sed -n '1p;600000,600002p' "$out/handbook.features.csv" | cut -d, -f1,2,4,8-11 | column -t -s, | sed 's/^/   /'
  step "10. The book's protocol: train one week, skip one, test the next without the cards already known"
  run train --features "$out/handbook.features.csv" --label TX_FRAUD --train 2018-07-04..2018-07-10 \
    --out "$out/handbook.model"
  run evaluate --model "$out/handbook.model" --features "$out/handbook.features.csv" --label TX_FRAUD \
    --range 2018-07-18..2018-07-24 --entity CUSTOMER_ID --amount TX_AMOUNT \
    --exclude-known-entities CUSTOMER_ID --delay 7d \
    --out "$out/handbook.report.json" --html "$out/handbook.report.html"
  echo "   The book's XGBoost on the same week (make handbook-compare runs three): AUC 0.868, AP 0.701,"
  echo "   card precision@100 0.266; with examples/handbook/features-plus.yaml vigil reaches AP 0.752."
  run bench model --model "$out/handbook.model" --features "$out/handbook.features.csv" --rows 5000
fi

step "Next"
cat <<EOF2
   Outputs are in $out/: events.jsonl, features.csv (+ .meta.json), validate.json, model/,
   report.json and report.html, thresholds.yaml, scores.csv.
   Try: $vigil --help; examples/exchange/README.md explains which feature serves which
   threat; docs/README.md lists the docs; docs/api.md the decision service (serve/ holds
   its config, event log, store and answers).
EOF2
