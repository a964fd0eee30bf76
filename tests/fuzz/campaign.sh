#!/usr/bin/env bash
# Long fuzzing runs measured in CPU time, not wall time (on a shared machine
# a wall-clock budget says little): each target runs alone (one process,
# libFuzzer's default -jobs/-workers of 1) until its user + system CPU time
# reaches the budget, then gets SIGINT and prints its final stats.
#
#   tests/fuzz/campaign.sh [--cpu-minutes M] [--only NAME[,NAME...]] [--build DIR]
#   tests/fuzz/campaign.sh --summary [--build DIR]
#
# The working corpus of each target lives in BUILD/campaign/<target> and is
# kept between campaigns (it starts as a copy of the committed seeds), so
# runs add up. One line per run is appended to BUILD/campaign/log.tsv:
#   date  target  cpu_s  wall_s  runs  corpus_units  result
# Targets are built first by run.sh (--no-build skips that). Exit status 1
# if any target failed; the input is kept under BUILD/findings/<target>/.
# --summary prints the totals per target from the log (for docs/SECURITY.md).
# SAE_ROOT names the checkout when the script runs from a copy (a long
# campaign should: bash reads a script as it runs, so editing it mid-run
# would change what the running campaign does).
set -euo pipefail
cd "${SAE_ROOT:-$(dirname "$0")/../..}"

minutes=10
build=build-fuzz
only=""
do_build=1
summary=0
while (($#)); do
  case "$1" in
    --cpu-minutes) minutes="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    --no-build) do_build=0; shift ;;
    --summary) summary=1; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "campaign: unknown argument $1" >&2; exit 2 ;;
  esac
done
targets=(safetensors cfg npy encode_json decode_json binary_body tokens explanations
  explanations_json explanations_gz index http saed_config npz torchpt)
if ((summary)); then
  printf "%-13s %9s %6s %12s %7s %s\n" target cpu_min runs execs corpus failed
  awk -F'\t' '{ cpu[$2] += $3; runs[$2] += $5; n[$2]++; units[$2] = $6
                 if ($7 != "ok") bad[$2]++ }
    END { for (t in cpu) printf "%-13s %9.1f %6d %12d %7d %d\n", t, cpu[t] / 60, n[t], runs[t], units[t], bad[t] }' \
    "$build/campaign/log.tsv" | sort
  exit 0
fi
[[ -n "$only" ]] && IFS=, read -r -a targets <<<"$only"
if ((do_build)); then
  tests/fuzz/run.sh --build "$build" --build-only --only "$(IFS=,; echo "${targets[*]}")" >/dev/null
fi

budget=$(awk -v m="$minutes" 'BEGIN { printf "%d", m * 60 }')
hz=$(getconf CLK_TCK)
mkdir -p "$build/campaign"
logf="$build/campaign/log.tsv"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}"

# CPU seconds (user + system) of pid so far, from /proc/PID/stat fields 14-15.
cpu_of() {
  awk -v hz="$hz" '{ sub(/^.*\) /, ""); printf "%d", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null ||
    echo 0
}

failed=0
for t in "${targets[@]}"; do
  corpus="$build/campaign/$t"
  if [[ ! -d "$corpus" ]]; then
    mkdir -p "$corpus"
    cp -r "tests/fuzz/corpus/$t/." "$corpus/"
  fi
  findings="$build/findings/$t"
  mkdir -p "$findings"
  dict=()
  [[ -f "tests/fuzz/dict/$t.dict" ]] && dict=(-dict="tests/fuzz/dict/$t.dict")
  regress=()
  [[ -d "tests/fuzz/regress/$t" ]] && regress=("tests/fuzz/regress/$t")
  out="$build/campaign/$t.$(date +%Y%m%dT%H%M%S).log"
  t0=$(date +%s)
  "$build/fuzz/fuzz_$t" "${dict[@]}" -rss_limit_mb=2048 -timeout=60 -print_final_stats=1 \
    -artifact_prefix="$findings/" "$corpus" "${regress[@]}" >"$out" 2>&1 &
  pid=$!
  cpu=0
  while kill -0 "$pid" 2>/dev/null; do
    cpu=$(cpu_of "$pid")
    if ((cpu >= budget)); then
      kill -INT "$pid" 2>/dev/null || true
      break
    fi
    sleep 5
  done
  set +e
  wait "$pid"
  rc=$?
  set -e
  # libFuzzer exits 72 (-interrupted_exitcode) after SIGINT: a clean stop.
  if ((rc == 72 || rc == 0)); then result=ok; else result="FAILED(exit $rc)"; failed=1; fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$out" | grep -o '[0-9]*$' | tail -n 1 ||
    echo "?")
  units=$(find "$corpus" -type f | wc -l)
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$t" "$cpu" "$(($(date +%s) - t0))" \
    "$runs" "$units" "$result" | tee -a "$logf"
done
exit "$failed"
