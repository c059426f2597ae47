#!/usr/bin/env bash
# `vigil backfill` of the Fraud Detection Handbook's 14 features
# (examples/handbook/features.yaml) over its transactions (April–July 2018,
# 1.17 M rows), beside the vectorised pandas reference
# (../shared/bench/handbook_pandas.py) on the same file in the same run.
#
#   vigil, plain CSV -> plain CSV, pinned to one core (taskset -c 0)   goal >= 1 M events/s
#   vigil, gzip CSV  -> plain CSV, two cores (inflating on a second thread)
#   vigil, gzip CSV  -> plain CSV, one core (for comparison)
#   pandas (groupby + time-based rolling), plain CSV, one core         goal vigil >= 15x pandas
#
# vigil's figure is the whole process (start-up, spec and schema, reading and
# parsing every row, the features, writing every row and the meta file) timed
# from outside; its CPU time and its own figure (the backfill loop) are
# recorded too. pandas prints its own rows/s for the feature computation
# alone (no read_csv, no writing, no interpreter start-up): that favours
# pandas. Each figure is the best of VIGIL_BENCH_REPEATS runs (default 3).
#
# Usage: bench/backfill.sh BUILD_DIR
# Data:  $VIGIL_HANDBOOK_DIR/transactions_2018-04-01_to_07-31.csv.gz
#        (default ../shared/data/handbook beside the repository); skipped,
#        exit 0, when absent. The reference script is
#        $VIGIL_HANDBOOK_DIR/../../bench/handbook_pandas.py.
# Writes bench/results/backfill.json. Needs ~230 MB in $TMPDIR (default /tmp).
set -euo pipefail

say() { printf 'backfill-bench: %s\n' "$*"; }
results_name=backfill.json
source "$(dirname "$0")/common.sh"
schema="examples/handbook/schema.yaml"
features="examples/handbook/features.yaml"
pandas_script="$data_dir/../../bench/handbook_pandas.py"

# --- data ------------------------------------------------------------------
csv="$tmp/transactions.csv"
out="$tmp/features.csv"
gzip -dc "$gz" >"$csv"
rows=$(($(wc -l <"$csv") - 1))
csv_bytes=$(stat -c %s "$csv")
gz_bytes=$(stat -c %s "$gz")

# One run of `vigil backfill`: the process's wall seconds in $run_s, its CPU
# seconds (user + system, all threads) in $run_cpu_s, its own loop time in
# $run_inner_s. Fails unless every row was read, none rejected, and one
# output row written per transaction.
run_vigil() {  # cpus events
  local cpus=$1 events=$2 rc=0 TIMEFORMAT='%3R %3U %3S'
  rm -f "$out" "$out.meta.json"
  { time taskset -c "$cpus" "$vigil" backfill --schema "$schema" --features "$features" \
      --events "$events" --out "$out" >"$tmp/stdout.txt" 2>"$tmp/stderr.txt"; } \
    2>"$tmp/time.txt" || rc=$?
  # "backfill: 1,169,723 events read, 1,169,723 rows written in 1.46 s (0.80 M events/s); 0 rejected, ..."
  local line n_read n_rows n_rejected out_rows
  line=$(grep -m1 '^backfill: .* events read' "$tmp/stderr.txt" || true)
  n_read=$(sed -n 's/^backfill: \([0-9,]*\) events read.*/\1/p' <<<"$line" | tr -d ,)
  n_rows=$(sed -n 's/.* \([0-9,]*\) rows written.*/\1/p' <<<"$line" | tr -d ,)
  n_rejected=$(sed -n 's/.*; \([0-9,]*\) rejected.*/\1/p' <<<"$line" | tr -d ,)
  out_rows=$(($(wc -l <"$out" 2>/dev/null || echo 1) - 1))
  if ((rc != 0)) || [[ "$n_read" != "$rows" || "$n_rows" != "$rows" || "$n_rejected" != 0 ||
        "$out_rows" != "$rows" ]]; then
    say "error: vigil backfill $events: exit $rc, read ${n_read:-?}, rows ${n_rows:-?}" \
      "(file: $out_rows), rejected ${n_rejected:-?}, expected $rows rows" >&2
    cat "$tmp/stderr.txt" >&2
    exit 1
  fi
  read -r run_s run_user_s run_sys_s <"$tmp/time.txt"
  run_cpu_s=$(awk -v u="$run_user_s" -v s="$run_sys_s" 'BEGIN { printf "%.3f", u + s }')
  run_inner_s=$(sed -n 's/.* rows written in \([0-9.]*\) s.*/\1/p' <<<"$line")
  run_state=$(sed -n 's/^ *\([0-9,]*\) entities, \([0-9,]*\) buffered entries, about \([0-9.]*\) MB.*/\1 entities, \2 entries, \3 MB of state/p' \
    "$tmp/stderr.txt")
}


# --- vigil -----------------------------------------------------------------
measure "$one_core" "$csv"
csv_s=$best_s csv_cpu_s=$best_cpu_s csv_inner_s=$best_inner_s
state=$run_state
out_bytes=$(stat -c %s "$out")
measure "$two_cores" "$gz"
gz2_s=$best_s gz2_cpu_s=$best_cpu_s gz2_inner_s=$best_inner_s
measure "$one_core" "$gz"
gz1_s=$best_s gz1_cpu_s=$best_cpu_s gz1_inner_s=$best_inner_s

csv_eps=$(per_s "$rows" "$csv_s")
gz2_eps=$(per_s "$rows" "$gz2_s")
gz1_eps=$(per_s "$rows" "$gz1_s")

# --- pandas ----------------------------------------------------------------
# "1169723 rows in 8.40 s = 139176 rows/s" (the feature computation alone);
# best of $repeats by that figure. Its whole process (read_csv, start-up and
# import included) is timed from outside for information.
pandas_note=""
p_rows="" p_s="" p_eps="" p_wall_s=""
if [[ ! -f "$pandas_script" ]]; then
  pandas_note="skipped: $pandas_script not found"
elif [[ ! -x "$python" ]] || ! "$python" -c 'import pandas' 2>/dev/null; then
  pandas_note="skipped: $python with pandas not found (apt-get install python3-pandas)"
else
  p_version=$("$python" -c 'import pandas; print(pandas.__version__)')
  for ((i = 0; i < repeats; i++)); do
    TIMEFORMAT='%3R'
    { time taskset -c "$one_core" "$python" "$pandas_script" "$csv" >"$tmp/pandas.txt"; } 2>"$tmp/ptime.txt"
    read -r n _ _ s _ _ eps _ <"$tmp/pandas.txt"
    if [[ "$n" != "$rows" ]]; then
      say "error: $pandas_script: $(cat "$tmp/pandas.txt")" >&2
      exit 1
    fi
    if [[ -z "$p_eps" ]] || awk -v a="$eps" -v b="$p_eps" 'BEGIN { exit !(a > b) }'; then
      p_rows=$n p_s=$s p_eps=$eps p_wall_s=$(cat "$tmp/ptime.txt")
    fi
  done
fi

# --- report ----------------------------------------------------------------
load=$(cut -d' ' -f1-3 /proc/loadavg)
cpu_model=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)
echo
echo "vigil backfill vs pandas — handbook transactions, $rows events, 14 features"
awk -v c="$csv_bytes" -v g="$gz_bytes" -v o="$out_bytes" 'BEGIN {
  printf "  files: CSV %.1f MB, gzip %.1f MB in; features CSV %.1f MB out\n", c / 1e6, g / 1e6, o / 1e6 }'
echo "  machine: $ncpu CPUs ($cpu_model), load $load at the end; shared cores, figures are noisy"
echo "  best of $repeats by wall time; vigil timed as a whole process, CSV in and CSV out (in brackets:"
echo "  its CPU time, all threads, and the backfill loop as vigil reports it)"
echo "  state at the end: $state"
echo
printf '  %-42s %9s %8s %12s\n' "" events seconds events/s
row() { printf '  %-42s %9s %8.3f %12s   %s\n' "$1" "$2" "$3" "$(human "$4")" "$5"; }
row "vigil backfill CSV     taskset -c $one_core" "$rows" "$csv_s" "$csv_eps" "(CPU $csv_cpu_s s, loop $csv_inner_s s)"
row "vigil backfill CSV.gz  taskset -c $two_cores" "$rows" "$gz2_s" "$gz2_eps" "(CPU $gz2_cpu_s s, loop $gz2_inner_s s)"
row "vigil backfill CSV.gz  taskset -c $one_core" "$rows" "$gz1_s" "$gz1_eps" "(CPU $gz1_cpu_s s, loop $gz1_inner_s s)"

ratio=""
if [[ -n "$p_eps" ]]; then
  row "pandas handbook_pandas.py  taskset -c $one_core" "$p_rows" "$p_s" "$p_eps" \
    "(features alone; whole process $p_wall_s s)"
  ratio=$(awk -v a="$csv_eps" -v b="$p_eps" 'BEGIN { printf "%.2f", a / b }')
  echo
  echo "  pandas $p_version, /usr/bin/python3, vectorised (groupby + time-based rolling windows)"
  echo "  ratio vigil CSV (whole process) / pandas (feature computation alone): ${ratio}x"
else
  echo "  pandas: $pandas_note"
fi
eps_verdict=$(verdict "$csv_eps" 1000000)
echo "  goal CSV >= 1 M events/s on one core: $eps_verdict ($(human "$csv_eps"))"
if [[ -n "$ratio" ]]; then
  ratio_verdict=$(verdict "$ratio" 15)
  echo "  goal vigil >= 15x pandas:              $ratio_verdict (${ratio}x)"
else
  ratio_verdict="SKIPPED"
fi

# --- JSON ------------------------------------------------------------------
mkdir -p "$results_dir"
{
  printf '{\n'
  printf '  "benchmark": "backfill",\n'
  printf '  "date": "%s",\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf '  "commit": "%s",\n' "$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  printf '  "machine": {"cpus": %d, "cpu_model": "%s", "load": "%s"},\n' "$ncpu" "$cpu_model" "$load"
  printf '  "data": {"file": "%s", "events": %d, "csv_bytes": %d, "gzip_bytes": %d, "out_csv_bytes": %d},\n' \
    "$(basename "$gz")" "$rows" "$csv_bytes" "$gz_bytes" "$out_bytes"
  printf '  "features": "%s",\n' "$features"
  printf '  "repeats": %d,\n' "$repeats"
  printf '  "timing": "vigil: best wall time of the whole process under taskset, CSV in, CSV out (cpu_seconds: user + system of that run, all threads; inner_seconds: its backfill loop). pandas: best of its own figure for the feature computation alone (no reading or writing).",\n'
  printf '  "vigil": {\n'
  printf '    "csv":              {"cpus": "%s", "seconds": %s, "cpu_seconds": %s, "inner_seconds": %s, "events_per_s": %s},\n' \
    "$one_core" "$csv_s" "$csv_cpu_s" "$csv_inner_s" "$csv_eps"
  printf '    "csv_gzip_2_cores": {"cpus": "%s", "seconds": %s, "cpu_seconds": %s, "inner_seconds": %s, "events_per_s": %s},\n' \
    "$two_cores" "$gz2_s" "$gz2_cpu_s" "$gz2_inner_s" "$gz2_eps"
  printf '    "csv_gzip_1_core":  {"cpus": "%s", "seconds": %s, "cpu_seconds": %s, "inner_seconds": %s, "events_per_s": %s}\n' \
    "$one_core" "$gz1_s" "$gz1_cpu_s" "$gz1_inner_s" "$gz1_eps"
  printf '  },\n'
  if [[ -n "$p_eps" ]]; then
    printf '  "pandas": {"version": "%s", "cpus": "%s", "rows": %s, "seconds": %s, "rows_per_s": %s, "process_wall_seconds": %s},\n' \
      "$p_version" "$one_core" "$p_rows" "$p_s" "$p_eps" "$p_wall_s"
    printf '  "ratio_vigil_csv_to_pandas": %s,\n' "$ratio"
  else
    printf '  "pandas": null,\n'
    printf '  "ratio_vigil_csv_to_pandas": null,\n'
  fi
  printf '  "goals": {"csv_1M_events_per_s": "%s", "ratio_15x_pandas": "%s"}\n' "$eps_verdict" "$ratio_verdict"
  printf '}\n'
} >"$results"
echo "  results: ${results#"$repo"/}"
