#!/usr/bin/env bash
# The run behind docs/PERFORMANCE.md: a release build, then `sae bench` on the
# default shape (d_in 768 x d_sae 24576, l0 64) with the load test, as JSON
# and as the table. Waits (up to WAIT seconds, default 600) for the 1-minute
# load average to drop under 0.5 so other work does not skew the figures, and
# says so if it never does.
#
#   bench/performance.sh [BUILD_DIR] [extra sae bench flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-release}
shift || true
wait_s=${WAIT:-600}

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" --buildtype=release >/dev/null
fi
ninja -C "$build" cli/sae >/dev/null

waited=0
while :; do
  load=$(cut -d' ' -f1 /proc/loadavg)
  if awk -v l="$load" 'BEGIN { exit !(l < 0.5) }'; then
    break
  fi
  if [ "$waited" -ge "$wait_s" ]; then
    echo "performance.sh: load average still $load after ${wait_s}s; measuring anyway" >&2
    break
  fi
  sleep 10
  waited=$((waited + 10))
done

echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "command: $build/cli/sae bench --load-test --seconds 3 $*"
"$build/cli/sae" bench --load-test --seconds 3 --quiet "$@"
