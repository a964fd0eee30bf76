#!/usr/bin/env bash
# The run behind docs/PERFORMANCE.md's "Language model forward pass": a
# release build, then lmbench (bench/lmbench.c) on a random GPT-2-small
# checkpoint it writes to a temporary folder (or on --lm DIR; --write DIR
# keeps the one it writes there), at batches of 512, 512 and 2048 tokens: the
# forward pass through every block against the same cblas_sgemm calls alone.
# Waits (up to WAIT seconds, default 600) for the 1-minute load average to
# drop under 0.5, and says so if it never does.
#
#   bench/lm.sh [BUILD_DIR] [lmbench flags: --lm DIR | --write DIR, --batch 4x128,
#                            --seconds S, --threads N]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
build=${1:-build-release}
shift || true

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" --buildtype=release >/dev/null
fi
ninja -C "$build" cli/lmbench >/dev/null

wait_quiet lm.sh

machine_header
echo "command: $build/cli/lmbench $*"
"$build/cli/lmbench" "$@"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
