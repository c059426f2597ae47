#!/usr/bin/env bash
# The whole demo pipeline on a small simulation (1,000 users over 75 days, so
# that 15 days have known labels): simulate, validate, backfill with training
# labels, summarise per scenario, train, evaluate, thresholds, predict with
# reasons, serve the sample events over HTTP and replay the event log. Fails if a step fails or an output is missing or empty.
set -euo pipefail
build=$1 src=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
cd "$src"
OUT="$out" DEMO_USERS=1000 DEMO_DAYS=75 DEMO_HANDBOOK=0 scripts/demo.sh "$build" > "$out/demo.log" 2>&1 ||
  { cat "$out/demo.log"; echo "demo-smoke: the demo failed" >&2; exit 1; }
fail() { cat "$out/demo.log"; echo "demo-smoke: $*" >&2; exit 1; }
[[ $(wc -l < "$out/events.jsonl") -gt 10000 ]] || fail "too few events"
grep -q '"rejected": 0' "$out/validate.json" || fail "simulated events were rejected"
[[ $(wc -l < "$out/features.csv") -gt 5000 ]] || fail "too few feature rows"
head -1 "$out/features.csv" | grep -q ',label,label_delay_ms,' || fail "no label columns"
grep -q '"label_column": "label"' "$out/features.csv.meta.json" || fail "meta has no label column"
grep -q '^bot ' "$out/demo.log" || fail "no per-scenario summary"
[[ -s "$out/model/model.json" && -s "$out/model/manifest.json" ]] || fail "no model bundle"
grep -q '"auc"' "$out/report.json" || fail "no evaluation report"
grep -q '<svg' "$out/report.html" || fail "no HTML report"
grep -q 'score_at_least' "$out/thresholds.yaml" || fail "no threshold snippet"
head -1 "$out/scores.csv" | grep -q 'r1_feature' || fail "no reasons in the scores"
[[ $(grep -c '"scored":true' "$out/serve/answers.jsonl") -eq 20 ]] || fail "the served sample did not get 20 decisions"
grep -q 'exact' "$out/demo.log" || fail "no analyst view of a decision"
[[ $(wc -l < "$out/serve/replayed.csv") -eq 21 ]] || fail "backfill over the event log: not 20 rows"
grep -q 'stopped after 30 events' "$out/serve/serve.log" || fail "serve did not stop cleanly"
echo "demo-smoke: $(wc -l < "$out/events.jsonl") events, $(($(wc -l < "$out/features.csv") - 1)) feature rows"
