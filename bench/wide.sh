#!/usr/bin/env bash
# The run behind docs/PERFORMANCE.md's "The widest SAEs: end to end" (issue 19
# point 5): for each d_sae of SIZES (D:TOKENS pairs, default 131072:16384
# 262144:8192 1048576:2048) a d_in 2304 BF16 JumpReLU SAE written by
# `tests/wide model` (about 64 features a token), then
#   - load: `sae info` with the weights file dropped from the page cache
#     (cold) and again (warm): wall time and peak RSS;
#   - encode: `tests/wide encode 2304 D 256`, sae_encode at batch 1 and 256
#     against cblas_sgemv/sgemm of the same shapes in F32 (scaled from a
#     131,072-column slice above that width);
#   - index: `sae index --neighbours 0 --threads 2` over TOKENS tokens with
#     the default --max-state-bytes: wall time, peak RSS (/usr/bin/time;
#     and the anonymous part, sampled), passes, index size, its phases;
#   - serve: saed on the model and index, start-up time and RSS, then
#     /v1/features/{i} of the feature with the most activations, cold (its
#     first request, the index file dropped from the page cache before
#     start-up, no prerendering) and warm (the best of 5 more, from the
#     reply cache).
# Files go to WORK (default a new folder under /tmp: at 1M features the model
# alone is 9.7 GB, so give a roomy disk) and are removed at the end unless
# KEEP=1. Anything over 4 GB of RSS on a shared machine: run it under
# `flock /work/wt/bigmem.lock`. Prints the load average with every figure,
# since on a shared machine the absolute times move with it.
#
# STEPS (default "load encode index serve") picks the steps; serve needs the
# index. Files already in WORK (KEEP=1 from an earlier run) are reused.
#
#   WORK=/work/big/me bench/wide.sh [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
build=${1:-build-release}
sizes=${SIZES:-"131072:16384 262144:8192 1048576:2048"}
steps=" ${STEPS-load encode index serve} "
want() { [[ "$steps" == *" $1 "* ]]; }
d_in=2304
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" --buildtype=release >/dev/null
fi
ninja -C "$build" cli/sae server/saed tests/mkfixture tests/wide >/dev/null
if [ -n "${WORK:-}" ]; then
  work=$WORK/wide-bench
  mkdir -p "$work"
else
  work=$(mktemp -d /tmp/saed-bench-wide.XXXXXX)
fi
pid=""
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

load() { cut -d' ' -f1 /proc/loadavg; }
# Drops a file's pages from the page cache (only that file's, clean pages).
evict() { python3 -c 'import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY); os.fsync(fd); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$1"; }
# The peak anonymous RSS in MB of the child of process $1 (/usr/bin/time's
# command), sampled every 0.2 s until it exits: the peak RSS /usr/bin/time
# reports also counts the mapped weights' pages, which the kernel can drop.
peak_anon() {
  local child="" max=0 a
  while kill -0 "$1" 2>/dev/null; do
    [ -n "$child" ] || child=$(pgrep -P "$1" | head -1)
    a=$(awk '/^RssAnon/ { print $2 }' "/proc/$child/status" 2>/dev/null || true)
    [ "${a:-0}" -le "$max" ] || max=$a
    sleep 0.2
  done
  echo $((max / 1024))
}
# "wall_s peak_MB" of a /usr/bin/time -f "%e %M" file
timed() { awk '{ printf "%s %.0f", $1, $2 / 1024 }' "$1"; }

machine_header
for spec in $sizes; do
  D=${spec%%:*} N=${spec##*:}
  m=$work/m-$D acts=$work/acts-$N.safetensors tok=$work/tokens-$N.jsonl db=$work/index-$D.db
  echo "== d_in $d_in x d_sae $D, BF16 JumpReLU, $N tokens"
  [ -f "$m/sae_weights.safetensors" ] || "$build/tests/wide" model "$d_in" "$D" "$m"
  [ -f "$acts" ] || "$build/tests/mkfixture" --out "$work/actsmodel" --d-in "$d_in" --d-sae 16 \
    --activations "$acts" --rows "$N" --act-seed "$N" >/dev/null
  [ -f "$tok" ] || zipf_tokens "$N" "$tok"
  sync
  echo "weights file: $(stat -c %s "$m/sae_weights.safetensors") bytes"

  # load, cold then warm
  want load && evict "$m/sae_weights.safetensors"
  want load && for kind in cold warm; do
    l=$(load)
    /usr/bin/time -f "%e %M" -o "$work/time" "$build/cli/sae" info "$m" >/dev/null
    read -r w r <<<"$(timed "$work/time")"
    echo "load ($kind page cache): $w s, peak RSS $r MB   [load avg $l]"
  done

  # encode against the bound
  if want encode; then
    l=$(load)
    /usr/bin/time -f "%e %M" -o "$work/time" "$build/tests/wide" encode "$d_in" "$D" 256 |
      sed 's/^/encode: /'
    read -r w r <<<"$(timed "$work/time")"
    echo "encode run: $w s, peak RSS $r MB   [load avg $l -> $(load)]"
  fi

  # index
  if want index; then
    l=$(load)
    /usr/bin/time -f "%e %M" -o "$work/time" "$build/cli/sae" index --model "$m" \
      --activations "$acts" --tokens "$tok" --out "$db" --neighbours 0 --threads 2 2>"$work/index.log" &
    anon=$(peak_anon $!)
    wait $!
    read -r w r <<<"$(timed "$work/time")"
    passes=$(grep -c "^index: pass [0-9]*/" "$work/index.log" || true)
    echo "index: $w s wall, $(awk -v w="$w" -v n="$N" 'BEGIN { printf "%.1f", n / w }') tokens/s," \
      "peak RSS $r MB ($anon MB anonymous), passes ${passes:-0} (1 when none shown), index $(stat -c %s "$db") bytes" \
      "  [load avg $l -> $(load)]"
    grep -E "^index: (.*per-feature state|wrote)" "$work/index.log" | sed 's/^/  /'
  fi

  # serve: start-up, then one feature that fired, cold and warm
  if want serve; then
    # the feature with the most activations: the largest reply
    feat=$(python3 -c 'import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute(
    "select idx from features order by n_active desc, idx limit 1").fetchone()[0])' "$db")
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    evict "$db"
    l=$(load)
    t0=$(date +%s%N)
    "$build/server/saed" --model "$m" --index "$db" --listen "127.0.0.1:$port" --threads 2 --prerender-features off \
      2>"$work/saed.log" &
    pid=$!
    until curl -fs "http://127.0.0.1:$port/v1/health" >/dev/null 2>&1; do
      kill -0 "$pid" 2>/dev/null || { cat "$work/saed.log" >&2; exit 1; }
      sleep 0.05
    done
    t1=$(date +%s%N)
    rss=$(awk '/^RssAnon/ { a = $2 } /^RssFile/ { f = $2 }
      END { printf "%.0f MB anonymous + %.0f MB file-backed", a / 1024, f / 1024 }' "/proc/$pid/status")
    url=http://127.0.0.1:$port/v1/features/$feat
    cold=$(curl -fs -o "$work/f.json" -w '%{time_total}' "$url")
    warm=$(for _ in 1 2 3 4 5; do curl -fs -o /dev/null -w '%{time_total}\n' "$url"; done | sort -n | head -1)
    echo "saed: ready in $(((t1 - t0) / 1000000)) ms, RSS $rss; /v1/features/$feat" \
      "($(stat -c %s "$work/f.json") bytes) cold $(awk -v s="$cold" 'BEGIN { printf "%.1f", s * 1000 }') ms," \
      "warm $(awk -v s="$warm" 'BEGIN { printf "%.1f", s * 1000 }') ms   [load avg $l]"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=""
  fi
  [ -n "${KEEP:-}" ] || rm -rf "$m" "$db"
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
