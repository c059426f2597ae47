# Shared set-up of the handbook benchmarks (bench/validate.sh, bench/backfill.sh).
# Source it after defining `say` and `results_name`:
#   build, repo, vigil, python, data_dir, gz, repeats, results_dir, results
#   tmp (removed on exit), cpu_a / cpu_b: the first one and two allowed CPUs,
#   one_core / two_cores: taskset lists, ncpu.
# Exits 0 with a "skipped" line when the data is absent, 2 when vigil is not built.
build=$(cd "${1:-build}" && pwd)
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
vigil="$build/src/cli/vigil"
repeats=${VIGIL_BENCH_REPEATS:-3}
python=/usr/bin/python3
data_dir=${VIGIL_HANDBOOK_DIR:-$repo/../shared/data/handbook}
gz="$data_dir/transactions_2018-04-01_to_07-31.csv.gz"
results_dir="$repo/bench/results"
results="$results_dir/$results_name"

if [[ ! -f "$gz" ]]; then
  say "skipped: $gz not found (set VIGIL_HANDBOOK_DIR to the folder holding it)"
  exit 0
fi
if [[ ! -x "$vigil" ]]; then
  say "error: $vigil not built (cmake --build $build --target vigil)" >&2
  exit 2
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/vigil-bench.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# The first one and two CPUs this process may run on ("0-3,6" -> 0 and 0,1).
allowed=$(taskset -cp $$ | sed 's/.*: //')
read -r cpu_a cpu_b < <(awk -v list="$allowed" 'BEGIN {
  n = split(list, parts, ","); k = 0
  for (i = 1; i <= n && k < 2; i++) {
    m = split(parts[i], r, "-"); lo = r[1]; hi = (m > 1 ? r[2] : r[1])
    for (c = lo; c <= hi && k < 2; c++) cpus[k++] = c
  }
  print cpus[0], (k > 1 ? cpus[1] : "")
}')
ncpu=$(nproc)
one_core=$cpu_a
two_cores=$cpu_a${cpu_b:+,$cpu_b}

# Best of $repeats runs of the script's run_vigil CPUS EVENTS (which sets
# run_s, run_cpu_s, run_inner_s), by wall time: sets best_s, best_cpu_s, best_inner_s.
measure() {  # cpus events
  best_s=""
  local i
  for ((i = 0; i < repeats; i++)); do
    run_vigil "$1" "$2"
    if [[ -z "$best_s" ]] || awk -v a="$run_s" -v b="$best_s" 'BEGIN { exit !(a < b) }'; then
      best_s=$run_s
      best_cpu_s=$run_cpu_s
      best_inner_s=$run_inner_s
    fi
  done
}

per_s() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", (s > 0 ? n / s : 0) }'; }
human() {  # per second -> "1.23 M/s" or "139 k/s"
  awk -v r="$1" 'BEGIN { if (r >= 1e6) printf "%.2f M/s", r / 1e6; else printf "%.0f k/s", r / 1e3 }'
}
verdict() { awk -v r="$1" -v g="$2" 'BEGIN { print (r >= g ? "PASS" : "FALL SHORT") }'; }
