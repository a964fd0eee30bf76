#!/usr/bin/env bash
# bench/many_saes.sh: issue 14's figures for one saed serving many SAEs;
# they go to docs/PERFORMANCE.md ("Many SAEs in one saed") and, for the
# indexes, docs/SCALING.md.
#
# usage: bench/many_saes.sh [--build DIR] [--saes N] [--seconds S] [--index-rows R]
#
# Makes N (16) SAEs of 768 x 16384 F32 (one written by mkfixture, the rest
# copies: ~100 MB each, each its own file in the page cache) and runs
# `saed --release` over them (--threads = the machine's cores):
#   memory   time from start to healthy, RssAnon after one encode on each SAE
#   mixed    binary encodes of 64 rows, 2 x cores clients, each taking the N
#            SAEs in turn (bench/loadgen.c --saes), so every GEMM in a row
#            is likely another SAE's weights; rows/s and p50/p99 against raw
#            sgemm of 64 rows on 768 x 16384 measured before and after in
#            the same run (cores threads), and rows per CPU-second of saed
#            against raw sgemm's on one thread, as each worker runs it
#            (comparable on a shared machine)
#   one      the same load on one SAE: what mixing costs against not mixing
#   rows1    64 clients of one-row requests over the N SAEs (each SAE's
#            batcher sees 64/N of them) against the same on one SAE
#   indexes  with R > 0 (default 4096): one index built by `sae index` from R
#            rows, given to every SAE (--index ID=FILE each); RssAnon with
#            and without, per SAE and per index byte (each SAE holds its
#            index privately in memory: docs/SECURITY.md)
# Waits up to WAIT seconds (default 600) for a quiet machine (bench/lib.sh)
# and prints the load average at the start and the end either way.
set -euo pipefail
cd "$(dirname "$0")/.."

build=build n=16 seconds=10 index_rows=4096
while [ $# -gt 0 ]; do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --saes) n=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --index-rows) index_rows=$2; shift 2 ;;
    -h|--help) sed -n '2,29p' "$0"; exit 0 ;;
    *) echo "many_saes.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
saed=$build/server/saed sae=$build/cli/sae loadgen=$build/server/loadgen
mkfixture=$build/tests/mkfixture
for b in "$saed" "$sae" "$loadgen" "$mkfixture"; do
  [ -x "$b" ] || { echo "many_saes.sh: $b is not built (ninja -C $build)" >&2; exit 1; }
done
. "$(dirname "$0")/lib.sh"
wait_quiet many_saes.sh
threads=$(nproc) d_in=768 d_sae=16384

W=$(mktemp -d "${TMPDIR:-/tmp}/many_saes.XXXXXX")
PID=
cleanup() {
  if [ -n "$PID" ]; then kill -TERM "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
  rm -rf "$W"
}
trap cleanup EXIT
machine_header
"$mkfixture" --out "$W/rel/layer_0/width_16k" --d-in $d_in --d-sae $d_sae \
  --target-l0 32 --activations "$W/x.safetensors" --rows "$((index_rows > 0 ? index_rows : 1))" \
  --seed 1 >/dev/null
for i in $(seq 1 $((n - 1))); do cp -r "$W/rel/layer_0" "$W/rel/layer_$i"; done
python3 - "$W" <<'EOF'
import json, struct, sys
w = sys.argv[1]
b = open(w + "/x.safetensors", "rb").read()
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
k = [k for k in h if k != "__metadata__"][0]
a = h[k]["data_offsets"][0]
v = struct.unpack("<768f", b[8 + n + a:8 + n + a + 3072])
open(w + "/body.json", "w").write(json.dumps({"input": v}))
EOF

# serve ARGS...: starts saed over the release (plus ARGS); sets PID, PORT and
# UP, the seconds until it listens and answers /v1/health.
serve() {
  local t0 t1
  t0=$(date +%s.%N)
  "$saed" --release "$W/rel" --listen 127.0.0.1:0 --quiet --threads "$threads" "$@" \
    >/dev/null 2>"$W/saed.log" &
  PID=$!
  PORT=
  until [ -n "$PORT" ]; do
    kill -0 "$PID" 2>/dev/null || { cat "$W/saed.log" >&2; exit 1; }
    PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$W/saed.log")
    sleep 0.02
  done
  until curl -sf "localhost:$PORT/v1/health" >/dev/null; do sleep 0.02; done
  t1=$(date +%s.%N)
  UP=$(echo "$t1 - $t0" | bc)
}
stop() { kill -TERM "$PID"; wait "$PID" || true; PID=; }
rss() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$PID/status"; }
one_each() { # one encode on each SAE
  for id in $ids; do
    curl -sf -H 'Content-Type: application/json' --data-binary @"$W/body.json" \
      "localhost:$PORT/v1/saes/$id/encode" >/dev/null
  done
}
lg() { "$loadgen" "$@" --d-in $d_in --seconds "$seconds" --warmup 2; }

echo "many_saes.sh: $n SAEs of $d_in x $d_sae F32, $(du -sh "$W/rel" | cut -f1) of weights" >&2
raw_a=$(lg sgemm --d-sae $d_sae --rows 64 --threads "$threads")
serve
healthy=$UP
ids=$(curl -s "localhost:$PORT/v1/saes" | python3 -c \
  "import json,sys; print(' '.join(s['id'] for s in json.load(sys.stdin)['saes']))")
one_each
anon_one=$(rss RssAnon) file_one=$(rss RssFile)
first=${ids%% *}
all=$(echo "$ids" | tr ' ' ',')
echo "many_saes.sh: mixed load over $n SAEs" >&2
mixed=$(lg http --port "$PORT" --pid "$PID" --rows 64 --format binary --accept-binary \
  --clients $((2 * threads)) --saes "$all")
one=$(lg http --port "$PORT" --pid "$PID" --rows 64 --format binary --accept-binary \
  --clients $((2 * threads)) --saes "$first")
rows1=$(lg http --port "$PORT" --pid "$PID" --rows 1 --format binary --accept-binary \
  --clients 64 --saes "$all")
rows1_one=$(lg http --port "$PORT" --pid "$PID" --rows 1 --format binary --accept-binary \
  --clients 64 --saes "$first")
anon_load=$(rss RssAnon)
stop
raw_b=$(lg sgemm --d-sae $d_sae --rows 64 --threads "$threads")
raw1=$(lg sgemm --d-sae $d_sae --rows 1 --threads "$threads")
raw64_1=$(lg sgemm --d-sae $d_sae --rows 64 --threads 1)

index_json=null
if [ "$index_rows" -gt 0 ]; then
  echo "many_saes.sh: an index of $index_rows rows for every SAE" >&2
  zipf_tokens "$index_rows" "$W/tokens.jsonl"
  "$sae" index --model "$W/rel/layer_0/width_16k" --activations "$W/x.safetensors" \
    --tokens "$W/tokens.jsonl" --out "$W/index.db" --quiet
  args=()
  for id in $ids; do args+=(--index "$id=$W/index.db"); done
  serve "${args[@]}"
  healthy_ix=$UP
  anon_ix_start=$(rss RssAnon)
  one_each
  for id in $ids; do curl -sf "localhost:$PORT/v1/saes/$id/features/7" >/dev/null; done
  anon_ix=$(rss RssAnon)
  stop
  index_json=$(printf '{"rows": %s, "bytes": %s, "healthy_s": %s, "anon_start_kb": %s, "anon_kb": %s}' \
    "$index_rows" "$(stat -c %s "$W/index.db")" "$healthy_ix" "$anon_ix_start" "$anon_ix")
fi

python3 - "$n" "$healthy" "$anon_one" "$file_one" "$anon_load" "$raw_a" "$raw_b" "$raw1" \
  "$mixed" "$one" "$rows1" "$rows1_one" "$index_json" "$raw64_1" <<'EOF'
import json, sys
n, healthy = int(sys.argv[1]), float(sys.argv[2])
anon, file_kb, anon_load = map(int, sys.argv[3:6])
ra, rb, r1, mixed, one, rows1, rows1_one, ix, r64_1 = map(json.loads, sys.argv[6:15])
raw = (ra["rows_per_s"] + rb["rows_per_s"]) / 2
raw_cpu = r64_1["rows_per_cpu_s"]
print(f"start to healthy        {healthy:8.2f} s (every folder validated, every digest computed)")
print(f"RssAnon after one encode on each {anon / 1024:.1f} MB, after the load {anon_load / 1024:.1f} MB;"
      f" RssFile {file_kb / 1024 / 1024:.2f} GB")
print(f"raw sgemm 64 rows       {raw:8.0f} rows/s (before {ra['rows_per_s']:.0f}, after {rb['rows_per_s']:.0f});"
      f" sgemv 1 row {r1['rows_per_s']:.0f} rows/s; 64 rows on 1 thread {raw_cpu:.0f} rows/cpu-s")
for name, r, bound in ((f"64 rows over {n} SAEs", mixed, raw), ("64 rows, one SAE", one, raw),
                       (f"64 x 1 row over {n} SAEs", rows1, None), ("64 x 1 row, one SAE", rows1_one, None)):
    ratio = f"{r['rows_per_s'] / bound:5.2f} x raw" if bound else "          "
    cpu = r["rows_per_server_cpu_s"]
    print(f"{name:24s}{r['rows_per_s']:8.0f} rows/s {ratio}  p50 {r['p50_us'] / 1e3:6.1f} ms"
          f"  p99 {r['p99_us'] / 1e3:6.1f} ms  {cpu:6.0f} rows/cpu-s of saed ({cpu / raw_cpu:.2f} x raw)"
          f"  errors {r['errors']}")
if ix:
    per = (ix["anon_kb"] - anon) * 1024 / n
    print(f"with an index each: {ix['bytes'] / 1e6:.1f} MB index ({ix['rows']} rows), healthy in"
          f" {ix['healthy_s']:.2f} s, RssAnon {ix['anon_start_kb'] / 1024:.1f} MB at start,"
          f" {ix['anon_kb'] / 1024:.1f} MB after one encode and one feature on each:"
          f" {per / 1e6:.1f} MB per SAE, {per / ix['bytes']:.2f} x its index")
print(f"load average at the end {open('/proc/loadavg').read().split()[0]}")
EOF
