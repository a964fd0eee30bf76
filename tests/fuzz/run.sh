#!/usr/bin/env bash
# Builds every libFuzzer target (clang, AddressSanitizer + UndefinedBehavior-
# Sanitizer, no recovery) and runs each for N seconds on a copy of its
# committed seed corpus. Exit status 1 if any target crashes, leaks, times
# out or breaks an invariant; the input that did it is kept under
# BUILD/findings/<target>/.
#
#   tests/fuzz/run.sh [--seconds N] [--build DIR] [--only NAME[,NAME...]]
#                     [--no-build] [--build-only] [--regen-corpus]
#
#   --seconds N      per-target run time (default 15; libFuzzer's wall time)
#   --build DIR      meson build folder configured with clang (default build-fuzz)
#   --only LIST      run only these targets
#   --no-build       use the binaries already built
#   --build-only     build, then stop
#   --regen-corpus   rewrite the generated seeds (tests/fuzz/gen_corpus.sh) first
#
# The core and server objects come from a meson build configured with
# CC=clang and -fsanitize=fuzzer-no-link (coverage instrumentation without
# libFuzzer's main), so generated sources (schema, OpenAPI) are built the way
# the project builds them; the targets are then linked here with
# -fsanitize=fuzzer. CPU time used per target is printed (for docs/SECURITY.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

seconds=15
build=build-fuzz
only=""
do_build=1
regen=0
build_only=0
while (($#)); do
  case "$1" in
    --seconds) seconds="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --build-only) build_only=1; shift ;;
    --regen-corpus) regen=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "fuzz: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ "$seconds" =~ ^[1-9][0-9]*$ ]] || { echo "fuzz: --seconds needs a positive whole number" >&2; exit 2; }

targets=(safetensors cfg npy encode_json decode_json binary_body tokens explanations
  explanations_json explanations_gz index http saed_config bpe npz torchpt text)
# Targets linked with saed's own objects (the route table, the config loader).
body_targets=" encode_json decode_json binary_body http saed_config "
if [[ -n "$only" ]]; then
  IFS=, read -r -a targets <<<"$only"
fi

san="-fsanitize=address,undefined -fno-sanitize-recover=all"
cflags="-g -O1 -fno-omit-frame-pointer -std=c11 -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 -Wall -Wextra"
bin="$build/fuzz"

build_all() {
  command -v clang >/dev/null || { echo "fuzz: clang not found (apt-get install clang)" >&2; exit 1; }
  if [[ ! -f "$build/build.ninja" ]]; then
    CC=clang meson setup "$build" --buildtype=plain -Db_sanitize=address,undefined \
      -Db_lundef=false -Dc_args="$cflags -fsanitize=fuzzer-no-link -fno-sanitize-recover=all" \
      >/dev/null
  fi
  local extra_targets=()
  ((regen)) && extra_targets=(cli/sae tests/mkfixture)
  ninja -j2 -C "$build" core/libsaecore.a tests/libsaefixture.a server/saed "${extra_targets[@]}" \
    >/dev/null
  mkdir -p "$bin/obj"
  local inc="-Icore -Iserver -Itests/fixture -Itests/fuzz -I$build/server"
  local pc
  pc=$(pkg-config --cflags jansson libmicrohttpd sqlite3)
  for src in fuzz_common body_encode body_decode; do
    clang $cflags $san -fsanitize=fuzzer-no-link $inc $pc -c "tests/fuzz/$src.c" \
      -o "$bin/obj/$src.o"
  done
  # Every server object but main (it has main()) and the two handlers the
  # body shims compile in themselves.
  server_objs=()
  for o in "$build"/server/saed.p/*.o; do
    case "$(basename "$o")" in
      main.c.o|encode_post.c.o|decode_post.c.o) ;;
      *) server_objs+=("$o") ;;
    esac
  done
  local libs
  libs="$(pkg-config --libs jansson sqlite3 libxxhash zlib libzip libmicrohttpd) -lopenblas -lm -lpthread"
  for t in "${targets[@]}"; do
    local extra=("$bin/obj/fuzz_common.o")
    if [[ "$body_targets" == *" $t "* ]]; then
      extra+=("$bin/obj/body_encode.o" "$bin/obj/body_decode.o" "${server_objs[@]}")
    fi
    clang $cflags $san -fsanitize=fuzzer $inc $pc "tests/fuzz/fuzz_$t.c" "${extra[@]}" \
      "$build/tests/libsaefixture.a" "$build/core/libsaecore.a" $libs -o "$bin/fuzz_$t"
  done
  clang $cflags $san $inc "tests/fuzz/gen_corpus.c" "$bin/obj/fuzz_common.o" \
    "$build/tests/libsaefixture.a" "$build/core/libsaecore.a" $libs -fsanitize=fuzzer-no-link \
    -o "$bin/gen_corpus"
}

if ((do_build)); then
  echo "fuzz: building in $build" >&2
  build_all
fi
if ((regen)); then
  tests/fuzz/gen_corpus.sh "$bin/gen_corpus" "$build/cli/sae" "$build/tests/mkfixture"
fi
((build_only)) && exit 0

passed=0
failed=0
work=$(mktemp -d "${TMPDIR:-/tmp}/saefuzz-run.XXXXXX")
trap 'rm -rf "$work"' EXIT
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"
for t in "${targets[@]}"; do
  exe="$bin/fuzz_$t"
  seeds="tests/fuzz/corpus/$t"
  if [[ ! -x "$exe" || ! -d "$seeds" ]]; then
    echo "fuzz: $t: FAILED (no binary $exe or no corpus $seeds)"
    failed=$((failed + 1))
    continue
  fi
  # A copy: libFuzzer adds what it finds to the first corpus folder, and the
  # committed corpus must not grow in CI.
  mkdir -p "$work/$t"
  cp -r "$seeds/." "$work/$t/"
  findings="$build/findings/$t"
  mkdir -p "$findings"
  dict=()
  [[ -f "tests/fuzz/dict/$t.dict" ]] && dict=(-dict="tests/fuzz/dict/$t.dict")
  # Inputs of past findings, replayed as a second (read-only) corpus.
  regress=()
  [[ -d "tests/fuzz/regress/$t" ]] && regress=("tests/fuzz/regress/$t")
  log="$work/$t.log"
  t0=$(date +%s)
  set +e
  /usr/bin/time -f "%U %S" -o "$work/$t.time" "$exe" "${dict[@]}" -max_total_time="$seconds" \
    -rss_limit_mb=2048 -timeout=60 -print_final_stats=1 -artifact_prefix="$findings/" \
    "$work/$t" "${regress[@]}" >"$log" 2>&1
  rc=$?
  set -e
  cpu=$(awk '{printf "%.1f", $1 + $2}' "$work/$t.time" 2>/dev/null || echo "?")
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -n 1 ||
    echo "?")
  if ((rc == 0)); then
    echo "fuzz: $t: ok ($((($(date +%s) - t0))) s wall, ${cpu} s CPU, $execs runs)"
    passed=$((passed + 1))
  else
    echo "fuzz: $t: FAILED (exit $rc); the input is in $findings/, the log follows"
    grep -v '^#' "$log" | tail -n 60
    failed=$((failed + 1))
  fi
done
echo "fuzz: $passed passed, $failed failed"
((failed == 0))
