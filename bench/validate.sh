#!/usr/bin/env bash
# `vigil validate` on the Fraud Detection Handbook transactions (April–July
# 2018, 1.17 M rows) against examples/handbook/schema.yaml, beside
# pandas.read_csv on the same file measured in the same run.
#
#   vigil, plain CSV,  pinned to one core (taskset -c 0)     goal >= 1 M records/s
#   vigil, gzip CSV,   two cores (inflating runs on a second thread)
#   vigil, gzip CSV,   one core (for comparison)
#   vigil, JSON Lines, pinned to one core                    goal >= 500 k records/s
#   pandas.read_csv, plain CSV, one core, parse_dates on TX_DATETIME (and defaults)
#
# vigil's figure is the whole process (start-up, schema, reading, every check,
# the report) timed from outside; its CPU time and its own "elapsed" (the
# reading loop only) are recorded too. pandas is timed inside Python (no start-up, no import).
# Each figure is the best of VIGIL_BENCH_REPEATS runs (default 3).
#
# Usage: bench/validate.sh BUILD_DIR
# Data:  $VIGIL_HANDBOOK_DIR/transactions_2018-04-01_to_07-31.csv.gz
#        (default ../shared/data/handbook beside the repository); skipped,
#        exit 0, when absent.
# Writes bench/results/validate.json. Needs ~330 MB in $TMPDIR (default /tmp).
set -euo pipefail

say() { printf 'validate-bench: %s\n' "$*"; }
results_name=validate.json
source "$(dirname "$0")/common.sh"
schema="examples/handbook/schema.yaml"

# --- data ------------------------------------------------------------------
csv="$tmp/transactions.csv"
jsonl="$tmp/transactions.jsonl"
gzip -dc "$gz" >"$csv"
awk -F, -v EVENT_TYPE=transaction -v ID_COLUMN=TRANSACTION_ID -v TIME_COLUMN=TX_DATETIME \
  -f bench/csv_to_jsonl.awk "$csv" >"$jsonl"
rows=$(($(wc -l <"$csv") - 1))
csv_bytes=$(stat -c %s "$csv")
gz_bytes=$(stat -c %s "$gz")
jsonl_bytes=$(stat -c %s "$jsonl")

# A field of vigil's --report JSON (numbers only).
report_field() { sed -n "s/^  \"$2\": \([0-9.eE+-]*\),\{0,1\}$/\1/p" "$1"; }

# One run of `vigil validate`: the process's wall seconds in $run_s, its CPU
# seconds (user + system, all threads) in $run_cpu_s, its own loop time in
# $run_inner_s. Fails unless every record was read and valid.
run_vigil() {  # cpus events
  local cpus=$1 events=$2 rc=0 TIMEFORMAT='%3R %3U %3S'
  rm -f "$tmp/report.json"
  { time taskset -c "$cpus" "$vigil" validate --schema "$schema" --events "$events" \
      --report "$tmp/report.json" --dead-letter "$tmp/dead-letter.jsonl" >"$tmp/out.txt" 2>&1; } \
    2>"$tmp/time.txt" || rc=$?
  local n_read valid
  n_read=$(report_field "$tmp/report.json" read 2>/dev/null || true)
  valid=$(report_field "$tmp/report.json" valid 2>/dev/null || true)
  if ((rc != 0)) || [[ "$n_read" != "$rows" || "$valid" != "$rows" ]]; then
    say "error: vigil validate $events: exit $rc, read ${n_read:-?}, valid ${valid:-?} of $rows rows" >&2
    cat "$tmp/out.txt" >&2
    exit 1
  fi
  read -r run_s run_user_s run_sys_s <"$tmp/time.txt"
  run_cpu_s=$(awk -v u="$run_user_s" -v s="$run_sys_s" 'BEGIN { printf "%.3f", u + s }')
  run_inner_s=$(printf "%.3f" "$(report_field "$tmp/report.json" elapsed_s)")
}


# Before timing: the JSON Lines must validate as cleanly as the CSV.
run_vigil "$one_core" "$jsonl"
say "JSON Lines check: $rows of $rows records valid, 0 rejected"

# --- vigil -----------------------------------------------------------------
measure "$one_core" "$csv"
csv_s=$best_s csv_cpu_s=$best_cpu_s csv_inner_s=$best_inner_s
measure "$two_cores" "$gz"
gz2_s=$best_s gz2_cpu_s=$best_cpu_s gz2_inner_s=$best_inner_s
measure "$one_core" "$gz"
gz1_s=$best_s gz1_cpu_s=$best_cpu_s gz1_inner_s=$best_inner_s
measure "$one_core" "$jsonl"
jsonl_s=$best_s jsonl_cpu_s=$best_cpu_s jsonl_inner_s=$best_inner_s

csv_rps=$(per_s "$rows" "$csv_s")
gz2_rps=$(per_s "$rows" "$gz2_s")
gz1_rps=$(per_s "$rows" "$gz1_s")
jsonl_rps=$(per_s "$rows" "$jsonl_s")

# --- pandas ----------------------------------------------------------------
pandas_json=""
pandas_note=""
if [[ -x "$python" ]] && "$python" -c 'import pandas' 2>/dev/null; then
  pandas_json=$(taskset -c "$one_core" "$python" bench/pandas_read_csv.py "$csv" TX_DATETIME "$repeats")
else
  pandas_note="skipped: $python with pandas not found (apt-get install python3-pandas)"
fi
pfield() { sed -n "s/.*\"$1\": \"\{0,1\}\([^,\"}]*\)\"\{0,1\}[,}].*/\1/p" <<<"$pandas_json"; }

# --- report ----------------------------------------------------------------
load=$(cut -d' ' -f1 /proc/loadavg)
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
echo
echo "vigil validate vs pandas.read_csv — handbook transactions, $rows records"
awk -v c="$csv_bytes" -v g="$gz_bytes" -v j="$jsonl_bytes" 'BEGIN {
  printf "  files: CSV %.1f MB, gzip %.1f MB, JSONL %.1f MB (same fields + event_type; id, time as event_id, time)\n",
    c / 1e6, g / 1e6, j / 1e6 }'
echo "  machine: $ncpu CPUs ($cpu_model), load $load at the end; shared cores, figures are noisy"
echo "  best of $repeats by wall time; vigil timed as a whole process (in brackets: its CPU time,"
echo "  all threads, and the reading loop alone as vigil reports it)"
echo
printf '  %-40s %9s %8s %12s\n' "" records seconds records/s
row() { printf '  %-40s %9s %8.3f %12s   %s\n' "$1" "$2" "$3" "$(human "$4")" "$5"; }
row "vigil validate CSV     taskset -c $one_core" "$rows" "$csv_s" "$csv_rps" "(CPU $csv_cpu_s s, loop $csv_inner_s s)"
row "vigil validate CSV.gz  taskset -c $two_cores" "$rows" "$gz2_s" "$gz2_rps" "(CPU $gz2_cpu_s s, loop $gz2_inner_s s)"
row "vigil validate CSV.gz  taskset -c $one_core" "$rows" "$gz1_s" "$gz1_rps" "(CPU $gz1_cpu_s s, loop $gz1_inner_s s)"
row "vigil validate JSONL   taskset -c $one_core" "$rows" "$jsonl_s" "$jsonl_rps" "(CPU $jsonl_cpu_s s, loop $jsonl_inner_s s)"

ratio=""
if [[ -n "$pandas_json" ]]; then
  p_rows=$(pfield rows)
  p_dates_s=$(pfield parse_dates_s)
  p_default_s=$(pfield default_s)
  p_version=$(pfield pandas)
  p_dates_rps=$(per_s "$p_rows" "$p_dates_s")
  p_default_rps=$(per_s "$p_rows" "$p_default_s")
  row "pandas.read_csv parse_dates taskset -c $one_core" "$p_rows" "$p_dates_s" "$p_dates_rps" ""
  row "pandas.read_csv defaults    taskset -c $one_core" "$p_rows" "$p_default_s" "$p_default_rps" \
    "(TX_DATETIME left as text)"
  ratio=$(awk -v a="$csv_rps" -v b="$p_dates_rps" 'BEGIN { printf "%.2f", a / b }')
  ratio_default=$(awk -v a="$csv_rps" -v b="$p_default_rps" 'BEGIN { printf "%.2f", a / b }')
  echo
  echo "  pandas $p_version (C engine, default dtype inference), timed inside /usr/bin/python3"
  echo "  ratio vigil CSV / pandas.read_csv(parse_dates=[\"TX_DATETIME\"]): ${ratio}x" \
    "(against read_csv with defaults only: ${ratio_default}x)"
else
  echo "  pandas.read_csv: $pandas_note"
fi
csv_verdict=$(verdict "$csv_rps" 1000000)
jsonl_verdict=$(verdict "$jsonl_rps" 500000)
echo "  goal CSV   >= 1 M records/s on one core:   $csv_verdict ($(human "$csv_rps"))"
echo "  goal JSONL >= 500 k records/s on one core: $jsonl_verdict ($(human "$jsonl_rps"))"

# --- JSON ------------------------------------------------------------------
mkdir -p "$results_dir"
{
  printf '{\n'
  printf '  "benchmark": "validate",\n'
  printf '  "date": "%s",\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf '  "commit": "%s",\n' "$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  printf '  "machine": {"cpus": %d, "cpu_model": "%s", "load_1m": %s},\n' "$ncpu" "$cpu_model" "$load"
  printf '  "data": {"file": "%s", "records": %d, "csv_bytes": %d, "gzip_bytes": %d, "jsonl_bytes": %d},\n' \
    "$(basename "$gz")" "$rows" "$csv_bytes" "$gz_bytes" "$jsonl_bytes"
  printf '  "repeats": %d,\n' "$repeats"
  printf '  "timing": "vigil: best wall time of the whole process under taskset (cpu_seconds: user + system of that run, all threads; inner_seconds: its own reading loop). pandas: best in-process read_csv time.",\n'
  printf '  "vigil": {\n'
  printf '    "csv":      {"cpus": "%s", "seconds": %s, "cpu_seconds": %s, "inner_seconds": %s, "records_per_s": %s},\n' \
    "$one_core" "$csv_s" "$csv_cpu_s" "$csv_inner_s" "$csv_rps"
  printf '    "csv_gzip_2_cores": {"cpus": "%s", "seconds": %s, "cpu_seconds": %s, "inner_seconds": %s, "records_per_s": %s},\n' \
    "$two_cores" "$gz2_s" "$gz2_cpu_s" "$gz2_inner_s" "$gz2_rps"
  printf '    "csv_gzip_1_core":  {"cpus": "%s", "seconds": %s, "cpu_seconds": %s, "inner_seconds": %s, "records_per_s": %s},\n' \
    "$one_core" "$gz1_s" "$gz1_cpu_s" "$gz1_inner_s" "$gz1_rps"
  printf '    "jsonl":    {"cpus": "%s", "seconds": %s, "cpu_seconds": %s, "inner_seconds": %s, "records_per_s": %s}\n' \
    "$one_core" "$jsonl_s" "$jsonl_cpu_s" "$jsonl_inner_s" "$jsonl_rps"
  printf '  },\n'
  if [[ -n "$pandas_json" ]]; then
    printf '  "pandas": {"version": "%s", "cpus": "%s", "rows": %s,\n' "$p_version" "$one_core" "$p_rows"
    printf '    "read_csv_parse_dates": {"seconds": %s, "rows_per_s": %s},\n' "$p_dates_s" "$p_dates_rps"
    printf '    "read_csv_defaults": {"seconds": %s, "rows_per_s": %s}},\n' "$p_default_s" "$p_default_rps"
    printf '  "ratio_vigil_csv_to_pandas_parse_dates": %s,\n' "$ratio"
    printf '  "ratio_vigil_csv_to_pandas_defaults": %s,\n' "$ratio_default"
  else
    printf '  "pandas": null,\n'
    printf '  "ratio_vigil_csv_to_pandas_parse_dates": null,\n'
  fi
  printf '  "goals": {"csv_1M_per_s": "%s", "jsonl_500k_per_s": "%s"}\n' "$csv_verdict" "$jsonl_verdict"
  printf '}\n'
} >"$results"
echo "  results: ${results#"$repo"/}"
