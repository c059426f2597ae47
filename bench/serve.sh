#!/usr/bin/env bash
# The decision service's speed: vigil's pipeline in-process and over HTTP,
# beside the service a team would otherwise write (bench/serve_reference.py:
# Flask + XGBoost's Python package under gunicorn), measured in the same run.
#
#   Engine::Decide in-process, one core (serve_engine_benchmark): parse,
#     validate, features, model, policy on a simulated exchange stream;
#     p50/p99/p99.9 µs and events/s per core           goal p99 <= 50 µs
#   vigil serve over loopback HTTP, wrk -t1 -c16 -d10s --latency, keep-alive,
#     server and wrk sharing the machine's cores       goal >= 20 k req/s, p99 <= 2 ms
#   the reference, gunicorn -w 2 with its default sync workers (what a team
#     deploys first; they close the connection after each answer) and with
#     gthread workers (--threads 8: keep-alive), the same model, posted the
#     features vigil computed                          goal vigil >= 10x its req/s
#                                                      at <= 1/10 of its p99
# for the exchange example's model (123 trees) and a 1,000-tree model trained
# on the same features (bench/results/exchange-1000/, made once, ~2 minutes;
# VIGIL_BENCH_SKIP_1000=1 skips it).
#
# vigil is posted real exchange events from `vigil simulate --users 100000
# --days 2`: the first day is posted first (bench/serve_warmup.py: ~195 k
# events; the feature state is then warm), then wrk posts the second day's
# scored events (deposits, withdrawals, trades, sign-ups, promotions, API
# keys; ~185 k, more than a run needs) in order, each with a fresh event id
# and its time spread evenly over that day (bench/wrk_post.lua): every
# request is a new event and is decided, written to the event log and
# stored, as in production. That many users keep each one's activity
# realistic: a small population replayed at 20 k req/s would turn every user
# into a bot.
# Each server gets a 2-second wrk run first (not reported). Every wrk answer
# must be 2xx and vigil's /metrics must show no rejected or retried event, or
# the script fails.
#
# Usage: bench/serve.sh BUILD_DIR     Writes bench/results/serve.json and
#        bench/results/serve_engine_benchmark.json. Builds vigil (and the
#        benchmark, when configured with -DVIGIL_BENCHMARKS=ON) if needed.
# Knobs: VIGIL_BENCH_WRK_SECONDS (10), VIGIL_BENCH_USERS (100000),
#        VIGIL_BENCH_REF_WORKERS ("sync gthread"), VIGIL_BENCH_SKIP_1000,
#        VIGIL_BENCH_PERF (a path: perf record -g of the server over each
#        measured run, to PATH.<trees>; the profile includes perf's own cost),
#        VIGIL_BENCH_PRETOUCH_MB (vigil's limits.pretouch_mb, 1024; 0: off),
#        VIGIL_BENCH_THREADS (vigil's limits.threads, its event loops;
#        default: vigil.yaml's default).
set -euo pipefail

say() { printf 'serve-bench: %s\n' "$*"; }
build=$(cd "${1:-build}" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
vigil="$build/src/cli/vigil"
micro="$build/src/serve/serve_engine_benchmark"
python=/usr/bin/python3
seconds=${VIGIL_BENCH_WRK_SECONDS:-10}
ref_workers=${VIGIL_BENCH_REF_WORKERS:-sync gthread}
results_dir="$repo/bench/results"
model1000="$results_dir/exchange-1000"
ex="$repo/examples/exchange"
sim_users=${VIGIL_BENCH_USERS:-100000}
loops=${VIGIL_BENCH_THREADS:-}
pretouch=${VIGIL_BENCH_PRETOUCH_MB:-1024}
export VIGIL_PII_KEY=${VIGIL_PII_KEY:-serve-bench-key}
mkdir -p "$results_dir"

# --- build, tools ----------------------------------------------------------
# Brought up to date (a no-op after `make bench`'s build): never measure a
# stale binary. The benchmark exists only with -DVIGIL_BENCHMARKS=ON.
cmake --build "$build" --target vigil >/dev/null
if grep -q '^VIGIL_BENCHMARKS:BOOL=ON' "$build/CMakeCache.txt" 2>/dev/null; then
  cmake --build "$build" --target serve_engine_benchmark >/dev/null
fi
# What was measured: the commit, and whether the sources differ from it.
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- src include CMakeLists.txt 2>/dev/null || commit="$commit+working-changes"
for tool in wrk curl; do
  command -v "$tool" >/dev/null || { say "error: $tool not found (apt-get install $tool)" >&2; exit 2; }
done
have_ref=1
if ! "$python" -c 'import flask, xgboost, numpy, gunicorn' 2>/dev/null; then
  have_ref=0
  say "reference skipped: $python lacks flask, xgboost, numpy or gunicorn (python3-flask python3-xgboost gunicorn)"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vigil-serve-bench.XXXXXX")
pids=()
stop_pid() {  # pid: SIGTERM, then wait for it (vigil flushes its decisions first)
  kill -TERM "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  local p keep=()
  for p in "${pids[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  pids=("${keep[@]}")
}
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
cpu=$(taskset -cp $$ | sed 's/.*: //; s/[-,].*//')
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
uptime_start=$(uptime)

# --- the 1,000-tree model (cached) -----------------------------------------
# scripts/make_exchange_model.sh's steps with 1,000 rounds and no early
# stopping. Remade when the feature spec or schema changed (vigil serve
# refuses a bundle trained on another spec).
spec_hash() { sed -n "s/^ *\"$1\": \"\([0-9a-f]*\)\".*/\1/p" "$2" | head -1; }
trees1000=""
if [[ -z "${VIGIL_BENCH_SKIP_1000:-}" ]]; then
  if [[ ! -f "$model1000/manifest.json" ||
        "$(spec_hash feature_spec_hash "$model1000/manifest.json")" != "$(spec_hash feature_spec_hash "$ex/model/manifest.json")" ||
        "$(spec_hash schema_hash "$model1000/manifest.json")" != "$(spec_hash schema_hash "$ex/model/manifest.json")" ]]; then
    say "training the 1,000-tree exchange model into ${model1000#"$repo"/} (once; about 2 minutes)"
    w="$tmp/train1000"
    mkdir -p "$w"
    "$vigil" simulate --users 3000 --days 90 --seed 7 --out "$w/events.jsonl" 2>/dev/null
    VIGIL_PII_KEY=example-key "$vigil" backfill --schema "$ex/schema.yaml" --features "$ex/features.yaml" \
      --events "$w/events.jsonl" --out "$w/features.csv" 2>/dev/null
    printf 'max_depth: 5\neta: 0.1\nrounds: 1000\n' >"$w/params.yaml"
    rm -rf "$model1000"
    "$vigil" train --features "$w/features.csv" --label label --train 2024-01-01..2024-01-20 \
      --params "$w/params.yaml" --threads 2 --seed 1 --out "$model1000" 2>"$w/train.log" \
      || { cat "$w/train.log" >&2; exit 1; }
    rm -rf "$w"
  fi
  trees1000=$(grep -o '"num_trees":"[0-9]*"' "$model1000/model.json" | grep -o '[0-9]*')
fi
trees123=$(grep -o '"num_trees":"[0-9]*"' "$ex/model/model.json" | grep -o '[0-9]*')

# --- in-process: Engine::Decide --------------------------------------------
decide_log="$tmp/decide.txt"
if [[ -x "$micro" ]]; then
  say "Engine::Decide in-process, one core (taskset -c $cpu), exchange stream of 2,000 users:" \
    "7 days of warm-up, 7 days timed"
  VIGIL_BENCH_MODEL=${trees1000:+$model1000} VIGIL_BENCH_MODEL_NAME="exchange-${trees1000}" \
    taskset -c "$cpu" "$micro" --benchmark_out="$results_dir/serve_engine_benchmark.json" \
    --benchmark_out_format=json 2>/dev/null | tee "$decide_log"
else
  say "serve_engine_benchmark: skipped, $micro not built (configure with -DVIGIL_BENCHMARKS=ON)" | tee "$decide_log"
fi

# --- the stream ------------------------------------------------------------
events="$tmp/events.jsonl"
"$vigil" simulate --users "$sim_users" --days 2 --seed 1 --out "$events" 2>/dev/null

# --- servers ---------------------------------------------------------------
wait_port() {  # pid log sed-expression -> prints the port
  local i port
  for ((i = 0; i < 300; i++)); do
    port=$(sed -n "$3" "$2" | head -1)
    if [[ -n "$port" ]]; then echo "$port"; return 0; fi
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  say "error: the server did not start:" >&2
  cat "$2" >&2
  return 1
}

# vigil serve with its own state folder and a score key: sets vpid vport vkey vdir.
start_vigil() {  # name [bundle]
  vdir="$tmp/$1"
  mkdir -p "$vdir/var"
  {
    printf 'schema: %s/schema.yaml\nfeatures: %s/features.yaml\npolicy: %s/policy.yaml\nmodels:\n' "$ex" "$ex" "$ex"
    printf '  withdrawal:\n    champion: {name: exchange, bundle: %s/model}\n    holdout: 0.01\n' "$ex"
    for t in deposit trade promo_redeem signup api_key_create; do
      printf '  %s: {champion: {name: exchange, bundle: %s/model}}\n' "$t" "$ex"
    done
    printf 'store: sqlite:%s/var/vigil.db\njournal: %s/var/journal.jsonl\n' "$vdir" "$vdir"
    printf 'event_log: {dir: %s/var/eventlog}\ndead_letter: %s/var/dead-letter.jsonl\n' "$vdir" "$vdir"
    printf 'keys_file: %s/var/keys.txt\nlisten: 127.0.0.1:0\nreasons: 3\n' "$vdir"
    # pretouch_mb (docs/api.md): the state grows through the run, and on
    # this VM faulting its pages in while scoring cost a third of Decide.
    printf 'limits: {pretouch_mb: %s%s}\n' "$pretouch" "${loops:+, threads: $loops}"
  } >"$vdir/vigil.yaml"
  vkey=$("$vigil" keys create --config "$vdir/vigil.yaml" --role score 2>/dev/null)
  "$vigil" serve --config "$vdir/vigil.yaml" ${2:+--model "$2"} 2>"$vdir/serve.log" &
  vpid=$!
  pids+=("$vpid")
  vport=$(wait_port "$vpid" "$vdir/serve.log" 's/^serve: listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p')
}

# The reference under gunicorn: sets rpid rport.
start_reference() {  # name model.json worker-class
  local d="$tmp/$1" extra=()
  mkdir -p "$d"
  [[ $3 == gthread ]] && extra=(--threads 8)
  VIGIL_REF_MODEL="$2" "$python" -m gunicorn -w 2 -k "$3" "${extra[@]}" -b 127.0.0.1:0 \
    --chdir "$repo/bench" serve_reference:app 2>"$d/gunicorn.log" &
  rpid=$!
  pids+=("$rpid")
  rport=$(wait_port "$rpid" "$d/gunicorn.log" 's/.*Listening at: http:\/\/127\.0\.0\.1:\([0-9]*\).*/\1/p')
  local i
  for ((i = 0; i < 100; i++)); do
    curl -sf "http://127.0.0.1:$rport/healthz" >/dev/null && return 0
    sleep 0.1
  done
  say "error: the reference did not answer /healthz" >&2
  cat "$d/gunicorn.log" >&2
  return 1
}

# CPU seconds (user + system, all threads) a process and its children (the
# gunicorn workers) have used so far.
cpu_s() {
  local p files=("/proc/$1/stat")
  for p in $(pgrep -P "$1" || true); do files+=("/proc/$p/stat"); done
  awk -v hz="$(getconf CLK_TCK)" '{ t += $14 + $15 } END { printf "%.2f", t / hz }' "${files[@]}" 2>/dev/null
}

# One wrk run against the server `pid`: sets w_requests w_seconds w_rps w_p50
# w_p90 w_p99 w_p999 w_max (µs) w_non2xx w_errors, and the CPU time per
# request of the server and of wrk in w_server_cpu_us, w_wrk_cpu_us.
run_wrk() {  # url mode bodies start seconds key pid
  local c0 c1 wrk_cpu
  c0=$(cpu_s "$7")
  WRK_MODE=$2 WRK_BODIES=$3 WRK_START=$4 WRK_START_MS=${start_ms:-0} WRK_PERIOD_MS=${period_ms:-0} WRK_KEY=${6:-} \
    /usr/bin/time -f '%U %S' -o "$tmp/wrk.time" \
    wrk -t1 -c16 -d"$5"s --latency -s "$repo/bench/wrk_post.lua" "$1" >"$tmp/wrk.txt" 2>&1 || {
    cat "$tmp/wrk.txt" >&2
    return 1
  }
  c1=$(cpu_s "$7")
  wrk_cpu=$(awk '{ print $1 + $2 }' "$tmp/wrk.time")
  local line
  line=$(grep '^wrk-result:' "$tmp/wrk.txt") || { cat "$tmp/wrk.txt" >&2; return 1; }
  field() { sed -n "s/.* $1=\([0-9.]*\).*/\1/p" <<<"$line"; }
  w_requests=$(field requests) w_seconds=$(field seconds) w_p50=$(field p50_us) w_p90=$(field p90_us)
  w_p99=$(field p99_us) w_p999=$(field p999_us) w_max=$(field max_us) w_non2xx=$(field non2xx)
  w_errors=$(field errors)
  w_rps=$(awk -v n="$w_requests" -v s="$w_seconds" 'BEGIN { printf "%.0f", n / s }')
  w_server_cpu_us=$(awk -v a="$c0" -v b="$c1" -v n="$w_requests" 'BEGIN { printf "%.0f", (b - a) * 1e6 / n }')
  w_wrk_cpu_us=$(awk -v c="$wrk_cpu" -v n="$w_requests" 'BEGIN { printf "%.0f", c * 1e6 / n }')
}

check_vigil_run() {  # what: every answer 2xx, no socket error
  if [[ $w_non2xx != 0 || $w_errors != 0 ]]; then
    say "error: $1: vigil answered $w_non2xx non-2xx responses, $w_errors socket errors" >&2
    cat "$tmp/wrk.txt" "$vdir/serve.log" >&2
    [[ ! -f "$vdir/var/dead-letter.jsonl" ]] || { echo "dead letters:"; tail -n 3 "$vdir/var/dead-letter.jsonl"; } >&2
    exit 1
  fi
}
metric() { sed -n "s/^vigil_events_total{outcome=\"$1\"} \([0-9.e+]*\)$/\1/p" "$tmp/metrics.txt"; }
# A sample of /metrics (name with its labels, exactly) in a saved scrape.
sample() { awk -v k="$2" '$1 == k { print $2 }' "$1"; }
scrape() { curl -sf -H "Authorization: Bearer $vkey" "http://127.0.0.1:$vport/metrics" >"$1"; }
# Where a request's time goes inside vigil, over the measured run (two
# scrapes): the handler (waiting for the sequencer's lock + Decide + answer)
# and Decide alone, from their histograms: mean, share over 1 ms, and the
# calls over 5 and 25 ms: stalls (the identity graph's rebuild at each event
# midnight; a day of events passes every ~7 s here), each of which holds up
# every connection, which wrk counts for each.
server_split() {  # before after
  local h='vigil_http_request_seconds' d='vigil_decide_stage_seconds' e='{endpoint="events"' t='{stage="total"'
  awk -v hs0="$(sample "$1" "${h}_sum$e}")" -v hs1="$(sample "$2" "${h}_sum$e}")" \
      -v hn0="$(sample "$1" "${h}_count$e}")" -v hn1="$(sample "$2" "${h}_count$e}")" \
      -v hb0="$(sample "$1" "${h}_bucket$e,le=\"0.001\"}")" -v hb1="$(sample "$2" "${h}_bucket$e,le=\"0.001\"}")" \
      -v ds0="$(sample "$1" "${d}_sum$t}")" -v ds1="$(sample "$2" "${d}_sum$t}")" \
      -v dn0="$(sample "$1" "${d}_count$t}")" -v dn1="$(sample "$2" "${d}_count$t}")" \
      -v db0="$(sample "$1" "${d}_bucket$t,le=\"0.001\"}")" -v db1="$(sample "$2" "${d}_bucket$t,le=\"0.001\"}")" \
      -v d50="$(sample "$1" "${d}_bucket$t,le=\"0.005\"}")" -v d51="$(sample "$2" "${d}_bucket$t,le=\"0.005\"}")" \
      -v d250="$(sample "$1" "${d}_bucket$t,le=\"0.025\"}")" -v d251="$(sample "$2" "${d}_bucket$t,le=\"0.025\"}")" \
      -v wb0="$(sample "$1" vigil_decision_writer_boosts_total)" -v wb1="$(sample "$2" vigil_decision_writer_boosts_total)" 'BEGIN {
    hn = hn1 - hn0; dn = dn1 - dn0
    if (hn <= 0 || dn <= 0) { print "n/a"; exit }
    printf "handler (sequencer wait + Decide) mean %.0f µs, %.2f %% over 1 ms; Decide alone mean %.1f µs, %.3f %% over 1 ms, %d calls over 5 ms, %d over 25 ms; decision writer boosted %d times\n",
      (hs1 - hs0) / hn * 1e6, 100 * (1 - (hb1 - hb0) / hn), (ds1 - ds0) / dn * 1e6, 100 * (1 - (db1 - db0) / dn),
      dn - (d51 - d50), dn - (d251 - d250), wb1 - wb0 }'
}

declare -A rps p50 p99 p999 note split_of cpu_of wrk_cpu_of
rows=()
bench_model() {  # label trees bundle-dir (empty: the example's)
  local label=$1 trees=$2 bundle=$3 model_json
  model_json="${bundle:-$ex/model}/model.json"
  say "vigil serve, $label ($trees trees): a simulated day of $sim_users users first, then wrk ${seconds}s"
  start_vigil "vigil-$trees" "$bundle"
  local warm
  warm=$("$python" bench/serve_warmup.py "$vport" "$vkey" "$events" "$vdir" \
    --warm-days 1 $([[ -f "$tmp/reference.jsonl" ]] || echo --reference-bodies))
  say "  $warm"
  start_ms=$(sed -n 's/.*start_ms=\([0-9]*\).*/\1/p' <<<"$warm")
  period_ms=$(sed -n 's/.*period_ms=\([0-9]*\).*/\1/p' <<<"$warm")
  [[ -f "$tmp/reference.jsonl" ]] || cp "$vdir/reference.jsonl" "$tmp/reference.jsonl"
  run_wrk "http://127.0.0.1:$vport" vigil "$vdir/templates.tsv" 0 2 "$vkey" "$vpid"
  check_vigil_run "the 2-second run"
  scrape "$tmp/metrics0.txt"
  # The measured run continues the stream: after the first run's requests,
  # plus a margin for any in flight when it stopped.
  local perf_pid=
  if [[ -n "${VIGIL_BENCH_PERF:-}" ]]; then
    perf record -q --call-graph dwarf,32768 -F 1000 -p "$vpid" -o "$VIGIL_BENCH_PERF.$trees" >/dev/null 2>&1 &
    perf_pid=$!
    sleep 0.5
  fi
  run_wrk "http://127.0.0.1:$vport" vigil "$vdir/templates.tsv" $((w_requests + 100)) "$seconds" "$vkey" "$vpid"
  if [[ -n "$perf_pid" ]]; then
    kill -INT "$perf_pid"
    wait "$perf_pid" || true
    say "  perf record of the measured run: $VIGIL_BENCH_PERF.$trees"
  fi
  check_vigil_run "the measured run"
  scrape "$tmp/metrics.txt"
  local split
  split=$(server_split "$tmp/metrics0.txt" "$tmp/metrics.txt")
  local decided rejected retry
  decided=$(metric decided) rejected=$(metric rejected) retry=$(metric retry)
  if [[ $rejected != 0 || $retry != 0 ]]; then
    say "error: vigil rejected $rejected and retried $retry events (expected none)" >&2
    exit 1
  fi
  say "  $w_requests requests in ${w_seconds}s: $w_rps req/s, p50 $w_p50 µs, p99 $w_p99 µs; $decided decisions in all, 0 rejected, 0 retries"
  say "  CPU per request: vigil serve $w_server_cpu_us µs (all threads), wrk $w_wrk_cpu_us µs; inside vigil: $split"
  split_of[$trees]="$split"
  local k="vigil $trees" shown=${bundle:-$ex/model}
  rows+=("$k")
  rps[$k]=$w_rps p50[$k]=$w_p50 p99[$k]=$w_p99 p999[$k]=$w_p999 cpu_of[$k]=$w_server_cpu_us wrk_cpu_of[$k]=$w_wrk_cpu_us
  note[$k]="vigil serve, model ${shown#"$repo"/}, limits.threads ${loops:-default}, pretouch_mb $pretouch"
  stop_pid "$vpid"

  ((have_ref)) || return 0
  local wk
  for wk in $ref_workers; do
    say "reference, gunicorn -w 2 -k $wk, $label ($trees trees): wrk ${seconds}s"
    start_reference "ref-$trees-$wk" "$model_json" "$wk"
    run_wrk "http://127.0.0.1:$rport" reference "$tmp/reference.jsonl" 0 2 "" "$rpid"
    run_wrk "http://127.0.0.1:$rport" reference "$tmp/reference.jsonl" 0 "$seconds" "" "$rpid"
    if [[ $w_non2xx != 0 ]]; then
      say "error: the reference answered $w_non2xx non-2xx responses" >&2
      exit 1
    fi
    say "  $w_requests requests in ${w_seconds}s: $w_rps req/s, p50 $w_p50 µs, p99 $w_p99 µs; socket errors $w_errors;" \
      "CPU per request: gunicorn $w_server_cpu_us µs (master and workers), wrk $w_wrk_cpu_us µs"
    k="ref $trees $wk"
    rows+=("$k")
    rps[$k]=$w_rps p50[$k]=$w_p50 p99[$k]=$w_p99 p999[$k]=$w_p999 cpu_of[$k]=$w_server_cpu_us wrk_cpu_of[$k]=$w_wrk_cpu_us
    note[$k]="gunicorn -w 2 -k $wk, Flask, xgboost.Booster (nthread 1), one-row DMatrix"
    stop_pid "$rpid"
  done
}

bench_model "the exchange example" "$trees123" ""
[[ -z "$trees1000" ]] || bench_model "1,000 trees on the exchange features" "$trees1000" "$model1000"

# --- report ----------------------------------------------------------------
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
ms() { awk -v u="$1" 'BEGIN { printf "%.2f ms", u / 1000 }'; }
echo
echo "vigil serve vs a Flask + XGBoost service — loopback HTTP, wrk -t1 -c16 -d${seconds}s --latency, keep-alive"
echo "  commit $commit; machine: $(nproc) CPUs ($cpu_model), servers and wrk sharing them"
echo "  load $load_start at the start, $load_end at the end (the servers' own threads count)"
echo "  uptime at the start: $uptime_start"
echo
printf '  %-32s %7s %9s %9s %9s  %-20s\n' "" "req/s" p50 p99 p99.9 "CPU µs/req srv, wrk"
for k in "${rows[@]}"; do
  read -r who trees wk <<<"$k"
  if [[ $who == vigil ]]; then name="vigil serve, $trees trees"; else name="reference ($wk), $trees trees"; fi
  printf '  %-32s %7s %9s %9s %9s  %-20s %s\n' "$name" "${rps[$k]}" "$(ms "${p50[$k]}")" \
    "$(ms "${p99[$k]}")" "$(ms "${p999[$k]}")" "${cpu_of[$k]}, ${wrk_cpu_of[$k]}" "${note[$k]}"
done
echo "  CPU µs/req: CPU time (user + system) over the requests of the run, of the server (all its threads"
echo "  and processes) and of wrk, which shares the cores."
for trees in $trees123 $trees1000; do
  [[ -z "${split_of[$trees]:-}" ]] || echo "  inside vigil serve, $trees trees: ${split_of[$trees]}"
done
echo
verdicts=()
for trees in $trees123 $trees1000; do
  v="vigil $trees"
  [[ -n "${rps[$v]:-}" ]] || continue
  g1=$(awk -v r="${rps[$v]}" -v p="${p99[$v]}" 'BEGIN { print (r >= 20000 && p <= 2000 ? "PASS" : "FALL SHORT") }')
  echo "  goal >= 20 k req/s with p99 <= 2 ms, $trees trees: $g1 ($(printf "%'d" "${rps[$v]}") req/s, p99 $(ms "${p99[$v]}"))"
  verdicts+=("\"http_${trees}\": \"$g1\"")
  for wk in $ref_workers; do
    r="ref $trees $wk"
    [[ -n "${rps[$r]:-}" ]] || continue
    read -r tr pr cr g2 < <(awk -v a="${rps[$v]}" -v b="${rps[$r]}" -v pa="${p99[$v]}" -v pb="${p99[$r]}" \
      -v ca="${cpu_of[$v]}" -v cb="${cpu_of[$r]}" 'BEGIN {
      t = a / b; p = pa / pb; printf "%.1f %.3f %.1f %s\n", t, p, cb / ca, (t >= 10 && p <= 0.1 ? "PASS" : "FALL SHORT") }')
    echo "  vs reference ($wk), $trees trees: ${tr}x the throughput at ${pr}x the p99" \
      "(goal >= 10x at <= 0.1x): $g2; ${cr}x less server CPU per request"
    verdicts+=("\"ratio_${trees}_${wk}\": {\"throughput\": $tr, \"p99\": $pr, \"cpu_per_request\": $cr, \"goal\": \"$g2\"}")
  done
done
grep '^decide-bench:' "$decide_log" | sed 's/^decide-bench: /  in-process Engine::Decide, /' || true

# --- JSON ------------------------------------------------------------------
{
  printf '{"date": "%s", "commit": "%s", "load_start": "%s", "load_end": "%s", "wrk": "-t1 -c16 -d%ss --latency",\n' \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$commit" \
    "$load_start" "$load_end" "$seconds"
  printf ' "runs": {'
  first=1
  for k in "${rows[@]}"; do
    ((first)) || printf ','
    first=0
    printf '\n  "%s": {"requests_per_s": %s, "p50_us": %s, "p99_us": %s, "p999_us": %s, "server_cpu_us_per_request": %s, "wrk_cpu_us_per_request": %s}' \
      "$k" "${rps[$k]}" "${p50[$k]}" "${p99[$k]}" "${p999[$k]}" "${cpu_of[$k]}" "${wrk_cpu_of[$k]}"
  done
  printf '},\n "goals": {%s}}\n' "$(IFS=,; echo "${verdicts[*]}")"
} >"$results_dir/serve.json"
echo "  results: bench/results/serve.json, bench/results/serve_engine_benchmark.json"
