#!/usr/bin/env bash
# Installs the Debian 12 packages vigil needs to build, run and test, and
# nothing else. Packages already present are skipped, so a second run takes
# about a second. Only Debian's own archive is used.
#
# Usage: scripts/install-deps.sh            (as root, or with sudo on PATH)
#        VIGIL_SKIP_DEPS=1 make test         skips this script entirely
set -euo pipefail

PACKAGES=(
  # toolchain
  g++ cmake ninja-build ccache pkg-config make git
  clang libclang-rt-14-dev            # libFuzzer and sanitizer runtimes
  # libraries
  libabsl-dev libsimdjson-dev nlohmann-json3-dev libyaml-cpp-dev libcli11-dev
  libspdlog-dev libfmt-dev zlib1g-dev libssl-dev libre2-dev
  libxgboost-dev xgboost              # training (xgboost: find_package needs the CLI)
  libhttp-parser-dev libsqlite3-dev   # the decision service: HTTP request parser, default store
  libjemalloc-dev                     # the vigil binary's malloc
  # tests and benchmarks
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  chromium                            # HTML reports are checked in a real browser
  wrk curl openssl                    # HTTP load for the serving benchmark; the API examples; TLS test certificates
  prometheus                          # promtool checks the /metrics exposition (monitor_test)
  # reference scripts for benchmarks (/usr/bin/python3)
  python3 python3-pandas python3-sklearn python3-xgboost python3-scipy
  python3-flask gunicorn              # the reference scoring service of the serving benchmark
)

missing=()
for p in "${PACKAGES[@]}"; do
  # dpkg-query prints "install ok installed" only for fully installed packages.
  if [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]]; then
    missing+=("$p")
  fi
done

if ((${#missing[@]} == 0)); then
  echo "install-deps: all ${#PACKAGES[@]} packages present"
  exit 0
fi

echo "install-deps: installing ${#missing[@]} missing packages: ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO=sudo; else
    echo "install-deps: not root and no sudo; install these as root: ${missing[*]}" >&2
    exit 2
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-deps: done"
