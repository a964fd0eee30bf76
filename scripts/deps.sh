#!/usr/bin/env bash
# Installs, with apt-get, the Debian 12 packages the build (and, with `test`,
# every test) needs that are not there yet. Safe to run again; does nothing
# when all are present.
# usage: scripts/deps.sh [build|test]
set -euo pipefail
want=(meson ninja-build pkg-config gcc libc6-dev libmicrohttpd-dev libjansson-dev
      libsqlite3-dev check libopenblas-dev libxxhash-dev zlib1g-dev curl)
if [ "${1:-build}" = test ]; then
  # fuzzing (clang + libFuzzer runtime), integration clients, load (wrk),
  # the deploy checks (nginx, sqlite3 CLI) and the browser tests (chromium).
  want+=(clang libclang-rt-14-dev libcurl4-openssl-dev wrk python3 nginx sqlite3
         chromium fonts-dejavu-core)
  command -v node >/dev/null 2>&1 || want+=(nodejs npm)
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
