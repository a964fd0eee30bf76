#!/usr/bin/env bash
# The hardening integration tests (issue #7) against a real saed on loopback:
# malformed weights at start-up and on SIGHUP, hostile requests, load,
# overload, reloads under load, killed and disk-full index builds, static
# file escapes. See tests/hardening/hardening.py for each test.
#
#   tests/hardening/run.sh [--ci|--full] --saed PATH --sae PATH --mkfixture PATH
#                          [--only weights,requests,costly,auth,load,overload,reload,index,static,saes,...]
#
# --ci (default): load, reload and saes run 20 s, overload 10 s (about 3.5 minutes in
# all); --full: 60 s and 30 s, the corpus of the kill test is larger.
# Needs python3, wrk, cc; the full-disk test mounts a small tmpfs (root), or
# falls back to RLIMIT_FSIZE. Prints "hardening: N passed, M failed" and
# exits 1 if any check failed.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for tool in python3 wrk cc; do
  command -v "$tool" >/dev/null || { echo "hardening: $tool not found" >&2; exit 1; }
done
exec python3 "$here/hardening.py" "$@"
