#!/usr/bin/env bash
# bench/stream.sh: POST /v1/encode/stream against raw sgemm of the same shape,
# measured in the same run (issue 18, point 3); figures go to
# docs/PERFORMANCE.md, section "Streaming bulk encode".
#
# One Python client (http.client, numpy) streams --rows rows (a fixed random
# block repeated) as one chunked body and reads the framed reply, counting rows
# and checking the status record says "end". saed runs with --max-batch-rows
# --chunk (the stream's chunk and the GEMM) and --workers (default: one per
# thread, each GEMM on one BLAS thread: with one worker over all threads the
# BLAS threads spin in sched_yield while the worker runs a batch's sparse
# pass, ~10 % of saed's CPU in perf), its RSS sampled every 0.5 s from
# /proc (start, max, end) and its CPU time read over the run. Raw sgemm is
# `loadgen sgemm` of --chunk rows on all threads (the wall-clock bound) and on
# one worker's BLAS threads (the per-CPU-second bound), before and after the stream,
# averaged. Printed: rows/s and rows per CPU-second of both, and their ratios
# (target >= 0.80).
#
# usage: bench/stream.sh [--build DIR] [--rows N] [--d-in N] [--d-sae N]
#                        [--chunk N] [--top-k K] [--threads T] [--workers W]
set -euo pipefail
cd "$(dirname "$0")/.."

build=build rows=10000000 d_in=768 d_sae=24576 chunk=1024 top_k=32 threads=$(nproc) workers=
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --d-in) d_in=$2; shift 2 ;;
    --d-sae) d_sae=$2; shift 2 ;;
    --chunk) chunk=$2; shift 2 ;;
    --top-k) top_k=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    *) echo "usage: bench/stream.sh [--build DIR] [--rows N] [--d-in N] [--d-sae N] [--chunk N] [--top-k K] [--threads T] [--workers W]" >&2; exit 2 ;;
  esac
done
workers=${workers:-$threads}
saed=$build/server/saed loadgen=$build/server/loadgen mkfixture=$build/tests/mkfixture
for b in "$saed" "$loadgen" "$mkfixture"; do
  [ -x "$b" ] || { echo "stream.sh: $b missing (ninja -C $build)" >&2; exit 1; }
done
work=$(mktemp -d -p "${TMPDIR:-/tmp}")  # the spool is here too: 4 + 8*top_k bytes a row
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
"$mkfixture" --out "$work/model" --d-in "$d_in" --d-sae "$d_sae" --target-l0 64 --seed 1 >/dev/null

raw() { "$loadgen" sgemm --d-in "$d_in" --d-sae "$d_sae" --rows "$chunk" --threads "$1" --seconds 10 --warmup 2; }
per_worker=$(( threads / workers > 0 ? threads / workers : 1 ))  # BLAS threads of one worker's GEMM
echo "stream.sh: raw sgemm" >&2
raw_a=$(raw "$threads")
raw1_a=$(raw "$per_worker")

TMPDIR=$work "$saed" --model "$work/model" --listen 127.0.0.1:0 --quiet --threads "$threads" \
  --workers "$workers" \
  --max-batch-rows "$chunk" --max-queue-rows $((chunk * 16)) --request-timeout-s 600 \
  2>"$work/log" &
pid=$!
port=
for _ in $(seq 300); do
  port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/log")
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || { cat "$work/log" >&2; exit 1; }

# RSS (kB) every 0.5 s while the stream runs.
( while kill -0 "$pid" 2>/dev/null; do
    awk '/^VmRSS/ {print $2}' "/proc/$pid/status" 2>/dev/null || true
    sleep 0.5
  done ) >"$work/rss" &
sampler=$!
cpu() { awk '{print ($14 + $15) / '"$(getconf CLK_TCK)"'}' "/proc/$pid/stat"; }
# The machine's CPU time (all processes): busy and total jiffies.
machine() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8, $2 + $3 + $4 + $5 + $6 + $7 + $8}' /proc/stat; }

echo "stream.sh: streaming $rows rows" >&2
cpu0=$(cpu) m0=$(machine)
client=$(/usr/bin/python3 - "$port" "$rows" "$d_in" "$top_k" <<'EOF'
import http.client, json, struct, sys, time
import numpy as np
port, n, d, k = (int(a) for a in sys.argv[1:5])
block = memoryview(np.random.default_rng(1).standard_normal((4096, d)).astype("<f4").tobytes())
def body():
    left = n
    while left:
        m = min(left, 4096)
        yield block[:m * d * 4]
        left -= m
t0 = time.monotonic()
c = http.client.HTTPConnection("127.0.0.1", port, timeout=3600)
c.request("POST", "/v1/encode/stream?top_k=%d" % k, body=body(), encode_chunked=True,
          headers={"Content-Type": "application/octet-stream"})
r = c.getresponse()
assert r.status == 200, (r.status, r.read()[:300])
t_body = time.monotonic()
got, status = 0, None
while status is None:
    kind, rows, nb = struct.unpack("<IIQ", r.read(16))
    data = r.read(nb)
    if kind == 1:
        got += rows
    else:
        status = json.loads(data)
t1 = time.monotonic()
assert got == n and status["stopped"] == "end" and status["rows"] == n, (got, status)
print(json.dumps({"rows": n, "seconds": round(t1 - t0, 3), "reply_seconds": round(t1 - t_body, 3),
                  "reply_bytes": int(r.getheader("Content-Length", "0")),
                  "rows_per_s": round(n / (t1 - t0), 1)}))
EOF
)
cpu1=$(cpu) m1=$(machine)
rss_end=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true

echo "stream.sh: raw sgemm again" >&2
raw_b=$(raw "$threads")
raw1_b=$(raw "$per_worker")

/usr/bin/python3 - "$raw_a" "$raw_b" "$client" "$cpu0" "$cpu1" "$work/rss" "$rss_end" \
  "$d_in" "$d_sae" "$chunk" "$top_k" "$threads" "$(uptime)" "$workers" "$raw1_a" "$raw1_b" \
  "$m0" "$m1" <<'EOF'
import json, sys
ra, rb, cl = (json.loads(a) for a in sys.argv[1:4])
r1a, r1b = json.loads(sys.argv[15]), json.loads(sys.argv[16])
(b0, t0), (b1, t1) = ([float(v) for v in a.split()] for a in sys.argv[17:19])
cpu = float(sys.argv[5]) - float(sys.argv[4])
rss = [int(x) for x in open(sys.argv[6]).read().split()]
raw = (ra["rows_per_s"] + rb["rows_per_s"]) / 2
raw_cpu = (r1a["rows_per_cpu_s"] + r1b["rows_per_cpu_s"]) / 2  # what one worker's GEMM runs
half = len(rss) // 2
per_cpu = cl["rows"] / cpu if cpu > 0 else 0
print(json.dumps({
    "shape": {"d_in": int(sys.argv[8]), "d_sae": int(sys.argv[9]), "chunk": int(sys.argv[10]),
              "top_k": int(sys.argv[11]), "threads": int(sys.argv[12]),
              "workers": int(sys.argv[14])},
    "load": sys.argv[13].strip(),
    "machine_busy_during_stream": round((b1 - b0) / (t1 - t0), 3),
    "saed_share_of_machine": round(cpu * float(__import__("os").sysconf("SC_CLK_TCK")) / (t1 - t0), 3),
    "raw_sgemm_rows_per_s": round(raw, 1), "raw_before_after": [ra["rows_per_s"], rb["rows_per_s"]],
    "stream_rows": cl["rows"], "stream_seconds": cl["seconds"],
    "stream_reply_seconds": cl["reply_seconds"], "spool_bytes": cl["reply_bytes"],
    "stream_rows_per_s": cl["rows_per_s"], "ratio": round(cl["rows_per_s"] / raw, 3),
    "saed_cpu_s": round(cpu, 1), "stream_rows_per_cpu_s": round(per_cpu, 1),
    "raw_rows_per_cpu_s": round(raw_cpu, 1),
    "raw_rows_per_cpu_s_before_after": [r1a["rows_per_cpu_s"], r1b["rows_per_cpu_s"]], "ratio_per_cpu_s": round(per_cpu / raw_cpu, 3),
    "saed_rss_kb": {"start": rss[0] if rss else None, "max": max(rss) if rss else None,
                    "end": int(sys.argv[7]),
                    "max_first_half": max(rss[:half]) if half else None,
                    "max_second_half": max(rss[half:]) if half else None,
                    "samples": len(rss)},
}, indent=1))
EOF
