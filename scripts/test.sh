#!/usr/bin/env bash
# The README's test command: installs what is missing, builds with warnings as
# errors, runs every test, then runs the unit and integration tests again under
# AddressSanitizer + UndefinedBehaviorSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh test

jobs=$(nproc)
meson setup build-test --buildtype=debugoptimized -Dwerror=true --reconfigure >/dev/null 2>&1 ||
  meson setup build-test --buildtype=debugoptimized -Dwerror=true
ninja -C build-test
meson test -C build-test --print-errorlogs --num-processes "$jobs"

meson setup build-asan --buildtype=debug -Dwerror=true -Db_sanitize=address,undefined \
  -Db_lundef=false --reconfigure >/dev/null 2>&1 ||
  meson setup build-asan --buildtype=debug -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false
ninja -C build-asan
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  meson test -C build-asan --print-errorlogs --num-processes "$jobs" --suite unit --suite integration \
  --timeout-multiplier 4
