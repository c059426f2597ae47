#!/usr/bin/env bash
# `vigil simulate` as a user runs it: gzip output byte-identical for a seed
# (zlib writes a zero mtime), different for another seed; the same events as
# the plain output; bad flags refused with exit 2.
set -euo pipefail
vigil=$1
w=$(mktemp -d)
trap 'rm -rf "$w"' EXIT
fail() { echo "simulate-cli: $*" >&2; exit 1; }
"$vigil" simulate --users 300 --days 5 --seed 3 --out "$w/a.jsonl.gz" 2> /dev/null
sleep 1  # a header with the time in it would now differ
"$vigil" simulate --users 300 --days 5 --seed 3 --out "$w/b.jsonl.gz" 2> /dev/null
"$vigil" simulate --users 300 --days 5 --seed 4 --out "$w/c.jsonl.gz" 2> /dev/null
"$vigil" simulate --users 300 --days 5 --seed 3 --out "$w/a.jsonl" 2> /dev/null
cmp -s "$w/a.jsonl.gz" "$w/b.jsonl.gz" || fail "gzip output differs for the same seed"
cmp -s "$w/a.jsonl.gz" "$w/c.jsonl.gz" && fail "gzip output is the same for another seed"
zcat "$w/a.jsonl.gz" | cmp -s - "$w/a.jsonl" || fail "gzip and plain outputs hold different events"
set +e
"$vigil" simulate --users 0 --days 5 --out "$w/x.jsonl" 2> "$w/err"; rc=$?
set -e
[[ $rc == 2 ]] || fail "--users 0 exited $rc, not 2"
grep -q "between 1 and" "$w/err" || fail "no reason given for --users 0"
echo "simulate-cli: deterministic gzip, seed-dependent, plain = gzip, bad flags refused"
