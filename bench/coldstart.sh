#!/usr/bin/env bash
# bench/coldstart.sh: a fresh daemon's GET /v1/features/{i} rate against its
# warm rate (issue 17, point 6), with feature replies rendered at load
# (prerender_features on, the default) and without (off). For each setting:
#   start-up  from starting saed to its first 200 from /v1/health (polled
#             every 10 ms), and the time saed logs for rendering at load
#   first     wrk from that moment for SECONDS_EACH, features drawn
#             uniformly at random (bench/features.lua random)
#   warm      the same again right after, on the same daemon
# and prints first / warm (target >= 0.5) and what prerendering costs at
# start-up. A third daemon keeps no replies at all (feature_cache_mib 0):
# if its first and warm rates match, nothing but the reply cache warms up
# (no SQLite page cache, no page faults on the index). The index and weights files are read once before, so both
# settings start with them in the page cache: what is measured is the
# process's own cold start. Figures go to docs/PERFORMANCE.md, "Cold start".
#
#   bench/coldstart.sh [BUILD_DIR]     MODEL=DIR INDEX=FILE.db to reuse inputs
#   env: SECONDS_EACH (10), CONNS (16), THREADS (saed --threads, nproc),
#        ROWS (50000 tokens to index when no INDEX), WAIT (600 s for load < 0.5)
# wrk runs with one thread; saed and wrk share the machine's cores.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
build=${1:-build-release}
secs=${SECONDS_EACH:-10} conns=${CONNS:-16} threads=${THREADS:-$(nproc)} rows=${ROWS:-50000}
feature_bench_inputs coldstart "$build" "$rows"
cat "$index" "$model"/* >/dev/null

wait_quiet coldstart.sh

# cpu_ticks PID: user + system clock ticks the process has used.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

# run NAME: wrk for secs seconds of random features; prints requests/s and
# requests per CPU-second of saed over the same window (the figure that stays
# comparable when other work shares the cores), and fails on socket errors
# or a non-200.
run() {
  local c0 c1 rps
  c0=$(cpu_ticks "$pid")
  wrk -t1 -c"$conns" -d"${secs}s" --latency -s bench/features.lua "$url" -- "$d_sae" random \
    >"$work/$1.txt"
  if grep -q "Socket errors\|Non-2xx" "$work/$1.txt" ||
    ! grep -q '"non200": 0' "$work/$1.txt"; then
    echo "coldstart.sh: $1 had errors:" >&2
    cat "$work/$1.txt" >&2
    exit 1
  fi
  c1=$(cpu_ticks "$pid")
  rps=$(awk '/^Requests\/sec:/ { print $2 }' "$work/$1.txt")
  awk -v r="$rps" -v c=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v s="$secs" \
    'BEGIN { printf "%s %.0f\n", r, r * s / (c / hz) }'
}

# fresh NAME FLAGS...: a new saed with FLAGS; prints "startup_ms first
# first_per_cpu warm warm_per_cpu logged_ms" (logged_ms: what saed logged for
# rendering at load, or 0).
fresh() {
  local name=$1 port t0 t1 first warm
  shift
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  url=http://127.0.0.1:$port
  t0=$(date +%s%N)
  "$build/server/saed" --model "$model" --index "$index" --listen "127.0.0.1:$port" \
    --threads "$threads" "$@" 2>"$work/$name.log" &
  pid=$!
  until curl -fs "$url/v1/health" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { cat "$work/$name.log" >&2; exit 1; }
    sleep 0.01
  done
  t1=$(date +%s%N)
  first=$(run "$name-first")
  warm=$(run "$name-warm")
  kill "$pid"
  wait "$pid" || true
  pid=""
  echo "$(((t1 - t0) / 1000000)) $first $warm" \
    "$(sed -n 's/.*rendered at load .* in \([0-9]*\) ms.*/\1/p' "$work/$name.log" | head -1)"
}

machine_header
echo "index: $index (d_sae $d_sae, $(stat -c %s "$index") bytes); saed --threads $threads; wrk -t1 -c$conns, ${secs} s each"
read -r s_off f_off fc_off w_off wc_off _ <<<"$(fresh off --prerender-features off)"
read -r s_on f_on fc_on w_on wc_on l_on <<<"$(fresh on --prerender-features on)"
read -r s_nc f_nc fc_nc w_nc wc_nc _ <<<"$(fresh nocache --prerender-features off --feature-cache-mib 0)"
grep -h "rendered at load" "$work/on.log" || true
printf "%-26s %10s %21s %21s %17s\n" "" start-up first_${secs}s warm first/warm
printf "%-26s %10s %21s %21s %17s\n" prerender_features ms "req/s (per cpu-s)" "req/s (per cpu-s)" "(per cpu-s)"
line() {
  awk -v n="$1" -v s="$2" -v f="$3" -v fc="$4" -v w="$5" -v wc="$6" 'BEGIN {
    printf "%-26s %10d %10.0f (%8.0f) %10.0f (%8.0f) %7.3f (%7.3f)\n", n, s, f, fc, w, wc, f / w, fc / wc }'
}
line off "$s_off" "$f_off" "$fc_off" "$w_off" "$wc_off"
line "on (the default)" "$s_on" "$f_on" "$fc_on" "$w_on" "$wc_on"
line "off, feature_cache_mib 0" "$s_nc" "$f_nc" "$fc_nc" "$w_nc" "$wc_nc"
awk -v a="$s_off" -v b="$s_on" -v l="${l_on:-0}" 'BEGIN {
  printf "prerendering costs %d ms of start-up (%d ms logged by saed); target first/warm >= 0.5\n", b - a, l }'
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
