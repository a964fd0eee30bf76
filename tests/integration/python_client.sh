#!/usr/bin/env bash
# The Python client (clients/python) as a user installs it: a venv over
# Debian's numpy and setuptools, `pip install --no-index` (no network), then
# its unittest suite against real saed processes on loopback
# (clients/python/tests/test_client.py: a million rows, forced 503s, a
# restarted daemon, weights changed midway).
# env: SAED_BIN, SAE_BIN, MKFIXTURE, SAE_TEST_TMP, SAE_SOURCE_ROOT
set -euo pipefail
src=${SAE_SOURCE_ROOT:?}/clients/python
py=/usr/bin/python3   # Debian's, whose numpy the venv sees (not a pyenv one)
if ! "$py" -c 'import numpy, setuptools, venv' 2>/dev/null; then
  echo "SKIP: python3-venv, python3-numpy or python3-setuptools missing (scripts/deps.sh test)"
  exit 77
fi
tmp=$(mktemp -d "${SAE_TEST_TMP:-/tmp}/pyclient.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
"$py" -m venv --system-site-packages "$tmp/venv"
# pip builds in a copy of the tree so the source folder gets no build/ or egg-info.
cp -r "$src" "$tmp/src"
"$tmp/venv/bin/pip" install -q --no-build-isolation --no-index "$tmp/src" >"$tmp/pip.log" 2>&1 \
  || { cat "$tmp/pip.log"; exit 1; }
cd "$tmp"   # import the installed package, not the source folder
exec "$tmp/venv/bin/python" "$src/tests/test_client.py"
