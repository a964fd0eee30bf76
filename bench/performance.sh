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
. bench/lib.sh
build=${1:-build-release}
shift || true

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" --buildtype=release >/dev/null
fi
ninja -C "$build" cli/sae >/dev/null

wait_quiet performance.sh

machine_header
echo "command: $build/cli/sae bench --load-test --seconds 3 $*"
"$build/cli/sae" bench --load-test --seconds 3 --quiet "$@"
