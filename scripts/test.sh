#!/usr/bin/env bash
# The README's test command. Installs what is missing, then runs every test:
#   1. build with warnings as errors; unit, integration and slow (training
#      recovery) suites
#   2. the unit and integration suites again under AddressSanitizer + UBSan
#   3. every libFuzzer target for 15 s (clang, ASan + UBSan)
#   4. hardening: hostile weights and requests, load, overload, reloads,
#      killed and disk-full index builds, static-file escapes (CI lengths)
#   5. deploy: manifests validated offline, sharded Job path == unsharded
#      build, three replicas behind nginx with one killed mid-run, a release
#      in two partitions (and a search Deployment) behind the generated router
#   6. the web browser in headless Chromium against saed on a demo index,
#      serving one SAE and then a release of three
#   7. freshbuild: with only scripts/deps.sh build's packages visible to meson
#      (a fresh machine that ran scripts/demo.sh), configure, build sae and
#      saed and run them; setup must say the test suites are skipped
# Every test package is installed here, so stages 1 and 2 fail when meson
# setup reports a skipped test suite.
# Prints "test.sh: N passed, M failed" (stages) and exits 1 if any failed.
# usage: scripts/test.sh [--only STAGE[,STAGE...]]
#   stages: build,asan,fuzz,hardening,deploy,web,freshbuild
set -uo pipefail
cd "$(dirname "$0")/.."
root=$PWD
. scripts/lib.sh
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
# setup DIR ARGS...: configures DIR once, reconfigures it when it exists; quiet
# unless it fails. Fails too when meson skipped a test suite: every test
# package is installed here, so every test must be defined.
setup() {
  local dir=$1 re=(); shift
  [ -f "$dir/build.ninja" ] && re=(--reconfigure)
  mkdir -p "$dir" && logged "$dir/setup.log" meson setup "$dir" "$@" "${re[@]}" || return 1
  if grep 'test suite skipped' "$dir/setup.log" >&2; then
    echo "test.sh: meson setup $dir skipped tests although scripts/deps.sh test ran" >&2
    return 1
  fi
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
    tests/deploy/shards.sh --sae "$B/cli/sae" --mkfixture "$B/tests/mkfixture" --shards 2 --ranges 2 &&
    tests/deploy/replicas.sh --saed "$B/server/saed" --sae "$B/cli/sae" --mkfixture "$B/tests/mkfixture" &&
    tests/deploy/partitions.sh --saed "$B/server/saed" --sae "$B/cli/sae" --mkfixture "$B/tests/mkfixture"
}
web() { # a small demo release (synth -> train -> index), then the browser tests against saed on it
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
  # A second width on the same activations, for the many-SAE browser, with
  # windows of ±32 tokens (the first keeps the default ±8): the page's Expand.
  if [ ! -f "$d/index-256-c32.db" ]; then
    "$B/cli/sae" train --activations "$d/synth/activations.safetensors" --out "$d/model-256" \
        --d-sae 256 --steps 300 --seed 2 --truth "$d/synth" --quiet >/dev/null &&
      "$B/cli/sae" index --model "$d/model-256" --activations "$d/synth/activations.safetensors" \
        --tokens "$d/synth/tokens.jsonl" --explanations "$d/model-256/explanations.jsonl" \
        --context 32 --out "$d/index-256-c32.db" --quiet || return 1
  fi
  # Logit tables for the feature pages, from a made-up W_U (tests/integration/mklm.py).
  python3 tests/integration/mklm.py "$d/lm" \
      "$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["d_in"])' "$d/model/cfg.json")" \
      2000 wu &&
    "$B/cli/sae" index --upgrade "$d/index.db" --model "$d/model" --unembed "$d/lm/W_U.safetensors" \
      --vocab "$d/lm/vocab.json" --quiet || return 1
  # The release: two widths of one hook (both indexed, the 512 the default) and
  # the 256 again as another hook, without an index.
  printf '[sae resid.w512]\nmodel = %s\nindex = %s\n[sae resid.w256]\nmodel = %s\nindex = %s\n[sae mlp.w256]\nmodel = %s\nhook_name = hook_synth_mlp\n' \
    "$d/model" "$d/index.db" "$d/model-256" "$d/index-256-c32.db" "$d/model-256" >"$d/release.conf" || return 1
  tests/web/run.sh --saed "$B/server/saed" --model "$d/model" --index "$d/index.db" &&
    tests/web/run.sh --saed "$B/server/saed" -- --config "$d/release.conf"
}

# build_pc_dir DIR: fills DIR with links to the pkg-config files a fresh machine
# would have after scripts/deps.sh build: those of its packages and of every
# installed package they depend on (a library's Requires come with it).
build_pc_dir() {
  local dir=$1 pkgs f
  pkgs=$(apt-cache depends --recurse --installed --no-recommends --no-suggests \
           --no-conflicts --no-breaks --no-replaces --no-enhances \
           $(scripts/deps.sh build --list) | grep -v '^ ' | sort -u) || return 1
  for f in $(for p in $pkgs; do dpkg -L "$p" 2>/dev/null; done | grep '\.pc$'); do
    [ -e "$dir/${f##*/}" ] || ln -s "$f" "$dir/${f##*/}" || return 1
  done
}
# The freshbuild stage: scripts/demo.sh's build on a machine without the test
# packages, simulated here by what meson may see: pkg-config limited to the
# build packages' files, and no cmake (meson's fallback finder; the native
# file names one that is nowhere).
freshbuild() {
  local f=$root/build-fresh m
  local d=$f/build
  rm -rf "$f" && mkdir -p "$f/pkgconfig" || return 1
  build_pc_dir "$f/pkgconfig" || return 1
  for m in check libcurl; do
    if PKG_CONFIG_LIBDIR=$f/pkgconfig pkg-config --exists "$m"; then
      echo "freshbuild: $m is visible with the build packages only; scripts/deps.sh build lists a test package" >&2
      return 1
    fi
  done
  printf "[binaries]\ncmake = 'saed-no-cmake'\n" >"$f/no-cmake.ini"
  PKG_CONFIG_LIBDIR=$f/pkgconfig PKG_CONFIG_PATH='' \
    logged "$f/setup.log" meson setup "$d" --buildtype=release -Dwerror=true \
      --native-file "$f/no-cmake.ini" || return 1
  for m in 'unit (all but layering) and slow' 'integration daemon and features'; do
    grep -qF "test suite skipped: $m" "$f/setup.log" || {
      cat "$f/setup.log" >&2
      echo "freshbuild: meson setup did not say that it skipped: $m" >&2
      return 1
    }
  done
  logged "$f/ninja.log" ninja -C "$d" cli/sae server/saed &&
    logged "$f/synth.log" "$d/cli/sae" synth --out "$f/synth" --seed 1 --max-tokens 2000 --quiet &&
    [ -s "$f/synth/activations.safetensors" ] &&
    logged "$f/saed.log" "$d/server/saed" --help
}

stage build build_and_test
stage asan asan
stage fuzz fuzz
stage hardening hardening
stage deploy deploy
stage web web
stage freshbuild freshbuild

echo "test.sh: $passed passed, $failed failed${failures[*]:+ (${failures[*]})}"
[ "$failed" -eq 0 ]
