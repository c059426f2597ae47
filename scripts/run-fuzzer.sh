#!/usr/bin/env bash
# Runs a libFuzzer binary for a number of seconds over a seed corpus (copied
# to a scratch folder, so the checked-in seeds never change). Fails on any
# crash, leak or sanitizer report.
# Usage: run-fuzzer.sh BINARY SECONDS SEEDS [libFuzzer flags...]
set -euo pipefail
bin=$(realpath "$1") secs=$2 seeds=$(realpath -m "$3")
shift 3
if [[ ! -x "$bin" ]]; then
  echo "run-fuzzer: $bin is missing: build it with 'make fuzz-build' (clang)" >&2
  exit 1
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus"
if [[ -d "$seeds" ]]; then cp -r "$seeds"/. "$work/corpus/"; fi
cd "$work"
"$bin" -max_total_time="$secs" -print_final_stats=1 -timeout=10 -rss_limit_mb=4096 \
  -max_len=4096 "$@" "$work/corpus" 2>&1 | tail -n 25
