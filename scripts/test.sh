#!/usr/bin/env bash
# Runs every test of an already built tree with ctest; the last line printed
# is ctest's summary. Usage: scripts/test.sh [build-dir]
set -euo pipefail
build=${1:-build}
cd "$(dirname "$0")/.."
if [[ -z "${VIGIL_HANDBOOK_DIR:-}" && -d ../shared/data/handbook ]]; then
  export VIGIL_HANDBOOK_DIR=$(cd ../shared/data/handbook && pwd)
fi
if [[ -n "${VIGIL_HANDBOOK_DIR:-}" ]]; then
  echo "test: handbook data from $VIGIL_HANDBOOK_DIR"
else
  echo "test: VIGIL_HANDBOOK_DIR not set and ../shared/data/handbook absent: handbook tests skip"
fi
cd "$build"
exec ctest --output-on-failure -j "$(nproc)" --timeout 600
