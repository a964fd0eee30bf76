#!/usr/bin/env bash
# bench/stream.sh: POST /v1/encode/stream against raw sgemm of the same shape,
# measured in the same run (issue 18, point 3); figures go to
# docs/PERFORMANCE.md, section "Streaming bulk encode".
#
# One Python client (http.client, numpy) streams --rows rows (a fixed random
# block repeated) as one chunked body and reads the framed reply, counting rows
# and checking the status record says "end". saed runs with --max-batch-rows
# --chunk (the stream's chunk and the GEMM), its RSS sampled every 0.5 s from
# /proc (start, max, end) and its CPU time read over the run. Raw sgemm is
# `loadgen sgemm` of --chunk rows on all threads, before and after the stream,
# averaged. Printed: rows/s and rows per CPU-second of both, and their ratios
# (target >= 0.80).
#
# usage: bench/stream.sh [--build DIR] [--rows N] [--d-in N] [--d-sae N]
#                        [--chunk N] [--top-k K] [--threads T]
set -euo pipefail
cd "$(dirname "$0")/.."

build=build rows=10000000 d_in=768 d_sae=24576 chunk=1024 top_k=32 threads=$(nproc)
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --d-in) d_in=$2; shift 2 ;;
    --d-sae) d_sae=$2; shift 2 ;;
    --chunk) chunk=$2; shift 2 ;;
    --top-k) top_k=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    *) echo "usage: bench/stream.sh [--build DIR] [--rows N] [--d-in N] [--d-sae N] [--chunk N] [--top-k K] [--threads T]" >&2; exit 2 ;;
  esac
done
saed=$build/server/saed loadgen=$build/server/loadgen mkfixture=$build/tests/mkfixture
for b in "$saed" "$loadgen" "$mkfixture"; do
  [ -x "$b" ] || { echo "stream.sh: $b missing (ninja -C $build)" >&2; exit 1; }
done
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
"$mkfixture" --out "$work/model" --d-in "$d_in" --d-sae "$d_sae" --target-l0 64 --seed 1 >/dev/null

raw() { "$loadgen" sgemm --d-in "$d_in" --d-sae "$d_sae" --rows "$chunk" --threads "$threads" --seconds 10 --warmup 2; }
echo "stream.sh: raw sgemm" >&2
raw_a=$(raw)

TMPDIR=$work "$saed" --model "$work/model" --listen 127.0.0.1:0 --quiet --threads "$threads" \
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

echo "stream.sh: streaming $rows rows" >&2
cpu0=$(cpu)
client=$(/usr/bin/python3 - "$port" "$rows" "$d_in" "$top_k" <<'EOF'
import http.client, json, struct, sys, time
import numpy as np
port, n, d, k = (int(a) for a in sys.argv[1:5])
block = np.random.default_rng(1).standard_normal((4096, d)).astype("<f4").tobytes()
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
                  "rows_per_s": round(n / (t1 - t0), 1)}))
EOF
)
cpu1=$(cpu)
rss_end=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
kill "$sampler" 2>/dev/null || true; wait "$sampler" 2>/dev/null || true

echo "stream.sh: raw sgemm again" >&2
raw_b=$(raw)

/usr/bin/python3 - "$raw_a" "$raw_b" "$client" "$cpu0" "$cpu1" "$work/rss" "$rss_end" \
  "$d_in" "$d_sae" "$chunk" "$top_k" "$threads" "$(uptime)" <<'EOF'
import json, sys
ra, rb, cl = (json.loads(a) for a in sys.argv[1:4])
cpu = float(sys.argv[5]) - float(sys.argv[4])
rss = [int(x) for x in open(sys.argv[6]).read().split()]
raw = (ra["rows_per_s"] + rb["rows_per_s"]) / 2
raw_cpu = (ra["rows_per_cpu_s"] + rb["rows_per_cpu_s"]) / 2
per_cpu = cl["rows"] / cpu if cpu > 0 else 0
print(json.dumps({
    "shape": {"d_in": int(sys.argv[8]), "d_sae": int(sys.argv[9]), "chunk": int(sys.argv[10]),
              "top_k": int(sys.argv[11]), "threads": int(sys.argv[12])},
    "load": sys.argv[13].strip(),
    "raw_sgemm_rows_per_s": round(raw, 1), "raw_before_after": [ra["rows_per_s"], rb["rows_per_s"]],
    "stream_rows": cl["rows"], "stream_seconds": cl["seconds"],
    "stream_reply_seconds": cl["reply_seconds"],
    "stream_rows_per_s": cl["rows_per_s"], "ratio": round(cl["rows_per_s"] / raw, 3),
    "saed_cpu_s": round(cpu, 1), "stream_rows_per_cpu_s": round(per_cpu, 1),
    "raw_rows_per_cpu_s": round(raw_cpu, 1), "ratio_per_cpu_s": round(per_cpu / raw_cpu, 3),
    "saed_rss_kb": {"start": rss[0] if rss else None, "max": max(rss) if rss else None,
                    "end": int(sys.argv[7])},
}, indent=1))
EOF
