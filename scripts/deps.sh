#!/usr/bin/env bash
# Installs, with apt-get, the Debian 12 packages the build (and, with `test`,
# every test) needs that are not there yet. Safe to run again; does nothing
# when all are present. With --list it prints the packages, one a line, and
# installs nothing (scripts/test.sh's freshbuild stage reads the build list).
# usage: scripts/deps.sh [build|test] [--list]
set -eEuo pipefail
trap 'echo "deps: failed (exit $?): $BASH_COMMAND" >&2' ERR
which=build list=0
for a in "$@"; do
  case "$a" in
    build|test) which=$a ;;
    --list) list=1 ;;
    *) echo "usage: scripts/deps.sh [build|test] [--list]" >&2; exit 2 ;;
  esac
done
# The build: compiler, meson, the libraries meson.build requires (its
# build_pkg) and curl, which scripts/demo.sh asks the daemon with.
want=(meson ninja-build pkg-config gcc libc6-dev libmicrohttpd-dev libjansson-dev
      libsqlite3-dev libopenblas-dev libxxhash-dev zlib1g-dev libzip-dev curl)
if [ "$which" = test ]; then
  # Unit tests (Check) and integration clients (libcurl): meson.build's
  # test_pkg; fuzzing (clang + libFuzzer runtime), load (wrk), the deploy
  # checks (nginx, sqlite3 CLI), the Python client (a venv over Debian's numpy),
  # the browser tests (chromium) and the approximate neighbours (FAISS and the
  # C++ compiler of its one unit: optional for the build, which refuses
  # --neighbours-method approx without them).
  want+=(check libcurl4-openssl-dev clang libclang-rt-14-dev wrk python3 nginx sqlite3
         python3-venv python3-numpy python3-setuptools python3-wheel
         chromium fonts-dejavu-core libfaiss-dev g++)
  command -v node >/dev/null 2>&1 || want+=(nodejs npm)
fi
if [ "$list" = 1 ]; then
  printf '%s\n' "${want[@]}"
  exit 0
fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "deps: need root to apt-get install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
