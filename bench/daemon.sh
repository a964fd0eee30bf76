#!/usr/bin/env bash
# bench/daemon.sh: saed's throughput against raw sgemm on the same shapes,
# measured in the same run (issue 3, "Speed"); figures go to
# docs/PERFORMANCE.md, section "Daemon".
#
# The model is a fixture written by mkfixture: d_in 768 x d_sae 24576, F32,
# biases set so about 64 features fire per row. Scenarios:
#   raw        cblas_sgemm of 256 and 64 rows, sgemv of 1 row, all threads
#   binary256  binary bodies of 256 rows, binary replies     target >= 0.80 x raw
#   json256    JSON bodies of 256 rows, JSON replies         target >= 0.40 x raw
#   one_on     64 clients posting one row each, batching on (default workers)
#                                      target >= 0.80 x raw sgemm-64, p99 <= 2 x p50
#   one_core   the same with --workers THREADS (a single-threaded worker per core)
#   one_off    the same with --batching off                 target on/off >= 15
#   compare    64 one-row requests at once (batching on) vs one by one (off):
#              bit-identical rows and the largest difference
# Raw sgemm (256 and 64 rows) is measured before and after the daemons run and
# averaged, so a drift in machine speed shows up instead of skewing the ratio.
# For the one-row scenarios it prints rows per GEMM and the mean time from a
# row's arrival (request headers in) to the start of its GEMM, read from
# /metrics (saed_batch_rows, saed_batch_wait_seconds) over the measured window.
#
# usage: bench/daemon.sh [--build DIR] [--seconds S] [--threads T]
#                        [--d-in N] [--d-sae N] [--l0 L] [--json]
# It waits up to WAIT seconds (default 600) for a load average under 0.5, since
# the clients share the machine's CPUs, and says so when it gave up waiting.
# Besides wall-clock rows/s it reports rows per CPU-second of saed (read from
# /proc over the measured window) against rows per CPU-second of raw sgemm:
# those ratios stay meaningful when other processes share the cores.
set -euo pipefail
cd "$(dirname "$0")/.."

build=build seconds=10 threads=$(nproc) d_in=768 d_sae=24576 l0=64 json_out=0
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --d-in) d_in=$2; shift 2 ;;
    --d-sae) d_sae=$2; shift 2 ;;
    --l0) l0=$2; shift 2 ;;
    --json) json_out=1; shift ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "daemon.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

saed=$build/server/saed loadgen=$build/server/loadgen mkfixture=$build/tests/mkfixture
for b in "$saed" "$loadgen" "$mkfixture"; do
  [ -x "$b" ] || { echo "daemon.sh: $b is not built (ninja -C $build)" >&2; exit 1; }
done
# A quiet machine first: the clients share its CPUs.
. "$(dirname "$0")/lib.sh"
wait_quiet daemon.sh

work=$(mktemp -d "${TMPDIR:-/tmp}/saed-bench-XXXXXX")
declare -A pid port
cleanup() {
  for n in "${!pid[@]}"; do
    kill -TERM "${pid[$n]}" 2>/dev/null || true
    wait "${pid[$n]}" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

echo "daemon.sh: writing a ${d_in}x${d_sae} model (target l0 $l0)" >&2
"$mkfixture" --out "$work/model" --d-in "$d_in" --d-sae "$d_sae" --target-l0 "$l0" --seed 1 >/dev/null

# start_saed NAME [flags...]: starts a daemon, sets pid[NAME] and port[NAME].
start_saed() {
  local name=$1
  shift
  "$saed" --model "$work/model" --listen 127.0.0.1:0 --quiet --threads "$threads" "$@" \
    2>"$work/$name.log" &
  pid[$name]=$!
  for _ in $(seq 300); do
    port[$name]=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$work/$name.log")
    [ -n "${port[$name]}" ] && return 0
    kill -0 "${pid[$name]}" 2>/dev/null || break
    sleep 0.1
  done
  cat "$work/$name.log" >&2
  echo "daemon.sh: saed did not start" >&2
  exit 1
}
stop_saed() {
  kill -TERM "${pid[$1]}"
  wait "${pid[$1]}" || { echo "daemon.sh: saed exited $?" >&2; exit 1; }
  unset "pid[$1]"
}
lg() { "$loadgen" "$@" --d-in "$d_in" --seconds "$seconds" --warmup 2; }

echo "daemon.sh: raw sgemm" >&2
raw_a=$(lg sgemm --d-sae "$d_sae" --rows 256 --threads "$threads")
raw1=$(lg sgemm --d-sae "$d_sae" --rows 1 --threads "$threads")
raw64=$(lg sgemm --d-sae "$d_sae" --rows 64 --threads "$threads")
# Single-threaded, as the daemon's workers run them: the CPU-time bound.
raw64_1=$(lg sgemm --d-sae "$d_sae" --rows 64 --threads 1)
raw1_1=$(lg sgemm --d-sae "$d_sae" --rows 1 --threads 1)

start_saed on
l0_seen=$(python3 - "${port[on]}" "$d_in" <<'EOF'
import json, random, sys, urllib.request
port, d = int(sys.argv[1]), int(sys.argv[2])
random.seed(7)
rows = [[random.gauss(0, 1) for _ in range(d)] for _ in range(16)]
req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/encode",
                             data=json.dumps({"inputs": rows}).encode(),
                             headers={"Content-Type": "application/json"})
res = json.load(urllib.request.urlopen(req))["results"]
print(sum(r["l0"] for r in res) / len(res))
EOF
)
echo "daemon.sh: binary bodies of 256 rows (mean l0 $l0_seen)" >&2
bin=$(lg http --port "${port[on]}" --pid "${pid[on]}" --rows 256 --format binary --accept-binary --clients $((2 * threads)))
echo "daemon.sh: JSON bodies of 256 rows" >&2
json=$(lg http --port "${port[on]}" --pid "${pid[on]}" --rows 256 --format json --clients $((2 * threads)))
# one_row NAME: 64 one-row clients against daemon NAME; prints loadgen's line
# with the GEMMs, rows and arrival-to-GEMM wait of exactly that window
# (/metrics before and after) added.
batch_metrics() {
  curl -s "http://127.0.0.1:${port[$1]}/metrics" |
    grep -E '^saed_batch_(rows|wait_seconds)_(sum|count) ' | tr '\n' ' '
}
one_row() {
  local m0 r m1 lpid
  lg http --port "${port[$1]}" --pid "${pid[$1]}" --rows 1 --format binary --accept-binary \
    --clients 64 >"$work/one_row.json" &
  lpid=$!
  sleep 2 # loadgen's warm-up: the window starts where its latencies do
  m0=$(batch_metrics "$1")
  wait "$lpid"
  m1=$(batch_metrics "$1")
  r=$(cat "$work/one_row.json")
  python3 - "$r" "$m0" "$m1" <<'PY'
import json, sys
r = json.loads(sys.argv[1])
pairs = lambda t: dict(zip(t.split()[0::2], map(float, t.split()[1::2])))
m0, m1 = pairs(sys.argv[2]), pairs(sys.argv[3])
d = {k: m1[k] - m0.get(k, 0) for k in m1}
r["gemms"] = d.get("saed_batch_rows_count", 0)
r["rows_per_gemm"] = round(d.get("saed_batch_rows_sum", 0) / max(r["gemms"], 1), 1)
r["wait_mean_us"] = round(1e6 * d.get("saed_batch_wait_seconds_sum", 0)
                          / max(d.get("saed_batch_wait_seconds_count", 0), 1), 1)
print(json.dumps(r))
PY
}
echo "daemon.sh: 64 clients x 1 row, batching on" >&2
on=$(one_row on)

start_saed off --batching off
echo "daemon.sh: 64 one-row requests at once (batching on) vs one by one (batching off)" >&2
cmp=$("$loadgen" compare --port "${port[on]}" --port-b "${port[off]}" --model "$work/model" --rows 64)
stop_saed on
echo "daemon.sh: 64 clients x 1 row, batching off" >&2
off=$(lg http --port "${port[off]}" --pid "${pid[off]}" --rows 1 --format binary --accept-binary --clients 64)
stop_saed off
start_saed core --workers "$threads"
echo "daemon.sh: 64 clients x 1 row, batching on, a single-threaded worker per core" >&2
core=$(one_row core)
stop_saed core

echo "daemon.sh: raw sgemm again" >&2
raw_b=$(lg sgemm --d-sae "$d_sae" --rows 256 --threads "$threads")
raw64_b=$(lg sgemm --d-sae "$d_sae" --rows 64 --threads "$threads")

python3 - "$json_out" "$raw_a" "$raw_b" "$raw1" "$bin" "$json" "$on" "$off" "$l0_seen" \
  "$core" "$threads" "$cmp" "$raw64" "$raw64_1" "$raw1_1" "$raw64_b" <<'EOF'
import json, sys
out, ra, rb, r1, b, j, on, off = sys.argv[1:9]
l0, threads = float(sys.argv[9]), sys.argv[11]
ra, rb, r1, b, j, on, off, core, cmp, r64, r64_1, r1_1, r64b = map(
    json.loads, (ra, rb, r1, b, j, on, off, sys.argv[10], sys.argv[12], sys.argv[13],
                 sys.argv[14], sys.argv[15], sys.argv[16]))
raw = (ra["rows_per_s"] + rb["rows_per_s"]) / 2
batch = on["rows_per_gemm"]
# sgemm of 64 rows, all threads, before and after the daemons: the bound of
# 64 one-row clients (issue 17 point 4).
raw64 = (r64["rows_per_s"] + r64b["rows_per_s"]) / 2
raw64_cpu = (r64["rows_per_cpu_s"] + r64b["rows_per_cpu_s"]) / 2
res = {
    "threads": int(threads), "mean_l0": l0,
    "raw_sgemm_rows_per_s": round(raw, 1),
    "raw_sgemm_before_after": [ra["rows_per_s"], rb["rows_per_s"]],
    "raw_sgemv_rows_per_s": r1["rows_per_s"],
    "raw_sgemm64_rows_per_s": r64["rows_per_s"],
    "raw_batching_bound": round(r64["rows_per_s"] / r1["rows_per_s"], 2),
    "binary256_rows_per_s": b["rows_per_s"], "binary256_ratio": round(b["rows_per_s"] / raw, 3),
    "json256_rows_per_s": j["rows_per_s"], "json256_ratio": round(j["rows_per_s"] / raw, 3),
    "one_row_batching_on_rows_per_s": on["rows_per_s"],
    "one_row_batching_off_rows_per_s": off["rows_per_s"],
    "batching_speedup": round(on["rows_per_s"] / max(off["rows_per_s"], 1e-9), 2),
    "batching_on_p50_us": on["p50_us"], "batching_on_p99_us": on["p99_us"],
    "batching_off_p50_us": off["p50_us"], "batching_off_p99_us": off["p99_us"],
    "mean_rows_per_gemm_on": round(batch, 1),
    "raw_sgemm64_before_after": [r64["rows_per_s"], r64b["rows_per_s"]],
    "one_row_wait_mean_us_on": on["wait_mean_us"],
    "one_row_ratio_to_sgemm64": round(on["rows_per_s"] / raw64, 3),
    "one_row_cpu_ratio_to_sgemm64": round(on["rows_per_server_cpu_s"] / raw64_cpu, 3),
    "one_row_cpu_ratio_to_sgemm64_1thread": round(on["rows_per_server_cpu_s"] / r64_1["rows_per_cpu_s"], 3),
    "one_row_p99_over_p50": round(on["p99_us"] / max(on["p50_us"], 1), 2),
    "one_row_worker_per_core": {k: core[k] for k in ("rows_per_s", "rows_per_server_cpu_s", "p50_us", "p99_us", "rows_per_gemm", "wait_mean_us")},
    "compare": cmp,
    "errors": b["errors"] + j["errors"] + on["errors"] + off["errors"] + core["errors"],
    "errors_by_scenario": {"binary256": b["errors"], "json256": j["errors"], "one_on": on["errors"],
                           "one_off": off["errors"], "one_core": core["errors"]},
    "load_average": open("/proc/loadavg").read().split()[0],
}
# CPU time: what each row costs the server against what it costs raw sgemm,
# comparable even when other processes take CPU away from both.
raw_cpu = (ra["rows_per_cpu_s"] + rb["rows_per_cpu_s"]) / 2
res["raw_sgemm_rows_per_cpu_s"] = round(raw_cpu, 1)
for name, r in (("binary256", b), ("json256", j), ("one_row_batching_on", on), ("one_row_batching_off", off)):
    res[name + "_rows_per_cpu_s"] = r["rows_per_server_cpu_s"]
res["binary256_cpu_ratio"] = round(b["rows_per_server_cpu_s"] / raw_cpu, 3)
res["json256_cpu_ratio"] = round(j["rows_per_server_cpu_s"] / raw_cpu, 3)
res["batching_cpu_speedup"] = round(on["rows_per_server_cpu_s"] / max(off["rows_per_server_cpu_s"], 1e-9), 2)
res["raw_sgemm64_1thread_rows_per_cpu_s"] = r64_1["rows_per_cpu_s"]
res["raw_sgemv_1thread_rows_per_cpu_s"] = r1_1["rows_per_cpu_s"]
res["raw_batching_cpu_bound"] = round(r64_1["rows_per_cpu_s"] / max(r1_1["rows_per_cpu_s"], 1e-9), 2)
if out == "1":
    print(json.dumps(res))
    sys.exit(0)
print(f"threads {threads}, mean l0 {l0:.1f}, load average at the end {res['load_average']}")
print(f"raw sgemm 256 rows      {raw:10.0f} rows/s (before {ra['rows_per_s']:.0f}, after {rb['rows_per_s']:.0f})")
print(f"raw sgemv 1 row         {r1['rows_per_s']:10.0f} rows/s")
print(f"raw sgemm 64 rows       {r64['rows_per_s']:10.0f} rows/s  ({res['raw_batching_bound']:.2f} x sgemv: what batching 64 one-row clients can gain at most)")
print(f"binary bodies, 256 rows {b['rows_per_s']:10.0f} rows/s  {res['binary256_ratio']:.2f} x raw (target >= 0.80)")
print(f"JSON bodies, 256 rows   {j['rows_per_s']:10.0f} rows/s  {res['json256_ratio']:.2f} x raw (target >= 0.40)")
print(f"raw sgemm 64 rows, all threads {raw64:10.0f} rows/s (before {r64['rows_per_s']:.0f}, after {r64b['rows_per_s']:.0f}), {raw64_cpu:.0f} rows/cpu-s")
for name, r in (("64 x 1 row, batching on", on), ("  same, a worker per core", core)):
    print(f"{name:24s}{r['rows_per_s']:10.0f} rows/s  {r['rows_per_s'] / raw64:.2f} x sgemm-64 (target >= 0.80); "
          f"{r['rows_per_server_cpu_s']:.0f} rows/cpu-s  {r['rows_per_server_cpu_s'] / raw64_cpu:.2f} x sgemm-64 per cpu-s "
          f"({r['rows_per_server_cpu_s'] / r64_1['rows_per_cpu_s']:.2f} x its 1-thread)")
    print(f"{'':24s}p50 {r['p50_us']/1e3:.1f} ms  p99 {r['p99_us']/1e3:.1f} ms  p99/p50 {r['p99_us'] / max(r['p50_us'], 1):.2f} (target <= 2)  "
          f"{r['rows_per_gemm']:.1f} rows/GEMM  arrival to GEMM {r['wait_mean_us']/1e3:.2f} ms mean")
print(f"64 x 1 row, batching off{off['rows_per_s']:10.0f} rows/s  p50 {off['p50_us']/1e3:.1f} ms  p99 {off['p99_us']/1e3:.1f} ms")
print(f"batching on / off       {res['batching_speedup']:10.2f} x (target >= 15)")
print(f"batched vs alone        {cmp['identical_rows']}/{cmp['rows']} rows bit-identical; worst |diff| {cmp['worst_diff_over_dot_scale']:.2g} of sum|x'w|, {cmp['worst_diff_over_row_max']:.2g} of the row max; {cmp['features_in_one_only']} features in one answer only")
print(f"errors                  {res['errors']} {res['errors_by_scenario']}")
print("per CPU-second of saed (robust to other load) against raw sgemm per CPU-second:")
print(f"  raw sgemm 256 rows      {raw_cpu:10.0f} rows/cpu-s")
print(f"  binary, 256 rows        {b['rows_per_server_cpu_s']:10.0f} rows/cpu-s  {res['binary256_cpu_ratio']:.2f} x raw")
print(f"  JSON, 256 rows          {j['rows_per_server_cpu_s']:10.0f} rows/cpu-s  {res['json256_cpu_ratio']:.2f} x raw")
print(f"  64 x 1 row on / off     {on['rows_per_server_cpu_s']:10.0f} / {off['rows_per_server_cpu_s']:.0f} rows/cpu-s  {res['batching_cpu_speedup']:.2f} x")
print(f"  raw sgemm 64 / sgemv, 1 thread {r64_1['rows_per_cpu_s']:4.0f} / {r1_1['rows_per_cpu_s']:.0f} rows/cpu-s  {res['raw_batching_cpu_bound']:.2f} x (the most batching can gain)")
EOF
