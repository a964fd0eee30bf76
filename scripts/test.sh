#!/usr/bin/env bash
# The README's test command. Installs what is missing, then runs every test:
#   1. build with warnings as errors; unit, integration and slow (training
#      recovery) suites
#   2. the unit and integration suites again under AddressSanitizer + UBSan
#   3. every libFuzzer target for 15 s (clang, ASan + UBSan)
#   4. hardening: hostile weights and requests, load, overload, reloads,
#      killed and disk-full index builds, static-file escapes (CI lengths)
#   5. deploy: manifests validated offline, sharded Job path == unsharded
#      build, three replicas behind nginx with one killed mid-run
#   6. the web browser in headless Chromium against saed on a demo index
# Prints "test.sh: N passed, M failed" (stages) and exits 1 if any failed.
# usage: scripts/test.sh [--only STAGE[,STAGE...]]   stages: build,asan,fuzz,hardening,deploy,web
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
only=all
[ "${1:-}" = --only ] && only=${2:?}
scripts/deps.sh test || exit 1

jobs=$(nproc)
passed=0 failed=0 failures=()
want() { [ "$only" = all ] || [[ ",$only," == *",$1,"* ]]; }
stage() {
  local name=$1; shift
  want "$name" || return 0
  local t0=$SECONDS
  echo "=== $name"
  if "$@"; then
    passed=$((passed + 1)); echo "=== $name: passed ($((SECONDS - t0)) s)"
  else
    failed=$((failed + 1)); failures+=("$name"); echo "=== $name: FAILED ($((SECONDS - t0)) s)"
  fi
}
setup() { # setup DIR ARGS...: configure once, reconfigure when it exists
  local dir=$1; shift
  if [ -f "$dir/build.ninja" ]; then meson setup "$dir" "$@" --reconfigure >/dev/null
  else meson setup "$dir" "$@" >/dev/null; fi
}

build_and_test() {
  setup build-test --buildtype=debugoptimized -Dwerror=true &&
    ninja -C build-test &&
    meson test -C build-test --print-errorlogs --num-processes "$jobs"
}
asan() {
  setup build-asan --buildtype=debug -Dwerror=true -Db_sanitize=address,undefined -Db_lundef=false &&
    ninja -C build-asan &&
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    meson test -C build-asan --print-errorlogs --num-processes "$jobs" \
      --suite unit --suite integration --timeout-multiplier 4
}
B=$root/build-test
fuzz() { tests/fuzz/run.sh --seconds 15; }
hardening() {
  tests/hardening/run.sh --ci --saed "$B/server/saed" --sae "$B/cli/sae" --mkfixture "$B/tests/mkfixture"
}
deploy() {
  tests/deploy/validate.sh --saed "$B/server/saed" &&
    tests/deploy/shards.sh --sae "$B/cli/sae" --saed "$B/server/saed" --mkfixture "$B/tests/mkfixture" &&
    tests/deploy/replicas.sh --saed "$B/server/saed" --sae "$B/cli/sae" --mkfixture "$B/tests/mkfixture"
}
web() { # a small demo (synth -> train -> index), then the browser tests against saed on it
  local d=$root/build-test/web-demo
  if [ ! -f "$d/index.db" ]; then
    rm -rf "$d" && mkdir -p "$d" &&
      "$B/cli/sae" synth --out "$d/synth" --seed 1 --max-tokens 20000 --quiet &&
      "$B/cli/sae" train --activations "$d/synth/activations.safetensors" --out "$d/model" \
        --d-sae 512 --steps 600 --seed 1 --truth "$d/synth" --quiet >/dev/null &&
      "$B/cli/sae" index --model "$d/model" --activations "$d/synth/activations.safetensors" \
        --tokens "$d/synth/tokens.jsonl" --explanations "$d/model/explanations.jsonl" \
        --out "$d/index.db" --quiet || return 1
  fi
  tests/web/run.sh --saed "$B/server/saed" --model "$d/model" --index "$d/index.db"
}

stage build build_and_test
stage asan asan
stage fuzz fuzz
stage hardening hardening
stage deploy deploy
stage web web

echo "test.sh: $passed passed, $failed failed${failures[*]:+ (${failures[*]})}"
[ "$failed" -eq 0 ]
