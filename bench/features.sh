#!/usr/bin/env bash
# The run behind docs/PERFORMANCE.md's "Feature routes" section (issue 4):
# requests/s of GET /v1/features/{i} against GET /v1/health on the same
# daemon, in the same run, under wrk (bench/features.lua). Two runs:
#   cold    a fresh daemon asked for each feature once (a permutation, for
#           COLD_SECONDS, fewer requests than d_sae): every reply is read
#           from the SQLite index and rendered; nothing comes from saed's
#           reply cache (saed runs with --prerender-features off; a fresh
#           daemon's default is bench/coldstart.sh)
#   random  features drawn uniformly at random for SECONDS_EACH; replies
#           are kept per snapshot up to 64 MiB, so this is the steady state
#           once the cache holds what it can
# /v1/health is measured before and after them (with a Lua request() too,
# so wrk does the same work per request); the ratios use the mean.
#
#   bench/features.sh [BUILD_DIR]     MODEL=DIR INDEX=FILE.db to reuse inputs
#   env: SECONDS_EACH (10), COLD_SECONDS (1), CONNS (16), THREADS (saed --threads, nproc),
#        ROWS (50000 tokens to index when no INDEX), WAIT (600 s for load < 0.5)
# wrk runs with one thread; saed and wrk share the machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
build=${1:-build-release}
secs=${SECONDS_EACH:-10} cold_secs=${COLD_SECONDS:-1} conns=${CONNS:-16} threads=${THREADS:-$(nproc)} rows=${ROWS:-50000}
feature_bench_inputs features "$build" "$rows"

wait_quiet features.sh

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$build/server/saed" --model "$model" --index "$index" --listen "127.0.0.1:$port" \
  --threads "$threads" --quiet on --prerender-features off 2>"$work/saed.log" &
pid=$!
for _ in $(seq 100); do
  curl -fs "http://127.0.0.1:$port/v1/health" >/dev/null 2>&1 && break
  sleep 0.1
done
curl -fs "http://127.0.0.1:$port/v1/features/0" >/dev/null ||
  { echo "features.sh: saed did not serve /v1/features/0" >&2; cat "$work/saed.log" >&2; exit 1; }

# run NAME ARGS...: wrk for secs seconds; prints requests/s (the Requests/sec
# line), keeps the full output in $work/NAME.txt, and fails on socket errors.
run() {
  local name=$1 d=$2
  shift 2
  wrk -t1 -c"$conns" -d"${d}s" --latency "$@" >"$work/$name.txt"
  if grep -q "Socket errors\|Non-2xx" "$work/$name.txt"; then
    echo "features.sh: $name had errors:" >&2
    cat "$work/$name.txt" >&2
    exit 1
  fi
  awk '/^Requests\/sec:/ { print $2 }' "$work/$name.txt"
}
latency() { # NAME -> "p50 p99" from wrk's --latency table
  awk '$1 == "50%" { p50 = $2 } $1 == "99%" { p99 = $2 } END { print p50 " / " p99 }' "$work/$1.txt"
}

machine_header
echo "index: $index (d_sae $d_sae, $(stat -c %s "$index") bytes); saed --threads $threads; wrk -t1 -c$conns, ${secs} s each"
url=http://127.0.0.1:$port
cold=$(run cold "$cold_secs" -s bench/features.lua "$url" -- "$d_sae" cold)
cold_n=$(sed -n 's/^FEATURES_JSON {"requests": \([0-9]*\).*/\1/p' "$work/cold.txt")
if [ "$cold_n" -gt "$d_sae" ]; then
  echo "features.sh: the cold run made $cold_n requests > d_sae $d_sae; lower COLD_SECONDS" >&2
  exit 1
fi
h1=$(run health1 "$secs" -s bench/health.lua "$url")
f=$(run random "$secs" -s bench/features.lua "$url" -- "$d_sae" random)
h2=$(run health2 "$secs" -s bench/health.lua "$url")
echo "cold: $(grep -h FEATURES_JSON "$work/cold.txt")"
echo "random: $(grep -h FEATURES_JSON "$work/random.txt")"
printf "%-34s %10s %20s\n" route requests_s "p50 / p99"
printf "%-34s %10.0f %20s\n" "/v1/health (before)" "$h1" "$(latency health1)"
printf "%-34s %10.0f %20s\n" "/v1/features/{i}, cold (rendered)" "$cold" "$(latency cold)"
printf "%-34s %10.0f %20s\n" "/v1/features/{i}, random" "$f" "$(latency random)"
printf "%-34s %10.0f %20s\n" "/v1/health (after)" "$h2" "$(latency health2)"
awk -v c="$cold" -v f="$f" -v a="$h1" -v b="$h2" 'BEGIN { h = (a + b) / 2
  printf "features / health: cold %.3f, random %.3f (target >= 0.5)\n", c / h, f / h }'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
