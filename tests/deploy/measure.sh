#!/usr/bin/env bash
# measure.sh: the figures docs/SCALING.md is built on, measured on this machine.
#
#   tests/deploy/measure.sh --saed PATH --mkfixture PATH [--sae PATH]
#                           [--d-in 768] [--d-sae 24576] [--threads 1] [--seconds 10]
#                           [--index-tokens "100000 400000"]
#
# Writes a d_in x d_sae F32 standard SAE with mkfixture, starts one saed with
# --threads T on loopback and reports:
#   - resident memory (VmRSS) once ready, and the peak (VmHWM) after load;
#   - encode throughput through HTTP, for binary batches of 256 rows
#     (application/octet-stream) and JSON batches of 16 rows, with wrk: rows/s
#     of wall time, and rows per CPU-second saed used (/proc/PID/stat), which
#     is the per-core figure even on a machine shared with other work;
#   - the peak after 4 concurrent requests of max_request_rows binary rows;
#   - with --sae: `sae bench` on the same model and thread count (the kernel
#     alone, no HTTP), for comparison;
#   - with --sae and --index-tokens "N1 N2 ...": for each N, `sae index
#     --threads T` over N tokens of F16 activations (documents of 128
#     tokens, default settings): tokens per CPU-second, and the index size.
# Also prints the load average: on a shared machine the throughput is a floor.
# Not a test: it prints numbers and exits 0 unless something failed to run.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"

saed="" mkfixture="" sae="" d_in=768 d_sae=24576 threads=1 seconds=10 port=18170 index_tokens=""
while [ $# -gt 0 ]; do
  case $1 in
    --saed) saed=$2; shift 2 ;;
    --mkfixture) mkfixture=$2; shift 2 ;;
    --sae) sae=$2; shift 2 ;;
    --d-in) d_in=$2; shift 2 ;;
    --d-sae) d_sae=$2; shift 2 ;;
    --threads) threads=$2; shift 2 ;;
    --seconds) seconds=$2; shift 2 ;;
    --index-tokens) index_tokens=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | grep '^#' | cut -c3-; exit 0 ;;
    *) echo "measure.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$saed" ] && [ -n "$mkfixture" ] || { echo "usage: measure.sh --saed PATH --mkfixture PATH" >&2; exit 2; }
need_cmd wrk wrk && need_cmd curl curl && need_cmd node nodejs || exit 1

work=$(mktemp -d /tmp/saed-deploy-measure.XXXXXX)
pid=""
trap '[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT

"$mkfixture" --out "$work/model" --arch standard --d-in "$d_in" --d-sae "$d_sae" --target-l0 64 >/dev/null ||
  { echo "measure.sh: mkfixture failed" >&2; exit 1; }
wbytes=$(stat -c %s "$work/model/sae_weights.safetensors")
echo "model: standard F32 d_in $d_in x d_sae $d_sae, weights file $((wbytes / 1000000)) MB"
echo "machine: $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg) at start"

"$saed" --model "$work/model" --listen "127.0.0.1:$port" --threads "$threads" --quiet >"$work/saed.log" 2>&1 &
pid=$!
t0=$(date +%s.%N)
for _ in $(seq 1 600); do
  curl -fsS -m 1 "http://127.0.0.1:$port/v1/health" >/dev/null 2>&1 && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/saed.log" >&2; exit 1; }
  sleep 0.05
done
ready=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')
# user + system CPU time saed has used, in clock ticks: rows per CPU-second
# is the per-core figure even when other work shares the machine.
cputicks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
kb() { awk -v k="$1:" '$1 == k {print $2}' "/proc/$pid/status"; }
echo "saed --threads $threads: ready in ${ready} s; VmRSS $(( $(kb VmRSS) / 1024 )) MiB once ready (RssFile $(( $(kb RssFile) / 1024 )) MiB, RssAnon $(( $(kb RssAnon) / 1024 )) MiB)"

# Bodies: random N(0,1)-ish rows (the fixture's encoder gives about target-l0
# active features on such rows).
node -e 'const [d, n, out] = [Number(process.argv[1]), Number(process.argv[2]), process.argv[3]];
  let s = 1; const r = () => { s = (s * 1103515245 + 12345) % 2147483648; return (s / 2147483648) * 2 - 1; };
  const f = new Float32Array(d * n); for (let i = 0; i < f.length; i++) f[i] = r() + r() + r();
  require("fs").writeFileSync(out, Buffer.from(f.buffer));' "$d_in" 256 "$work/bin256"
node -e "$(cat <<'EOF'
const [d, n, out] = [Number(process.argv[1]), Number(process.argv[2]), process.argv[3]];
let s = 7; const r = () => { s = (s * 1103515245 + 12345) % 2147483648; return (s / 2147483648) * 2 - 1; };
const rows = [];
for (let j = 0; j < n; j++) { const a = []; for (let i = 0; i < d; i++) a.push((r() + r() + r()).toFixed(4)); rows.push("[" + a.join(",") + "]"); }
require("fs").writeFileSync(out, "{\"inputs\":[" + rows.join(",") + "]}");
EOF
)" "$d_in" 16 "$work/json16"

lua() { # body-file content-type
  cat <<EOF
local f = io.open("$1", "rb"); wrk.body = f:read("*a"); f:close()
wrk.method = "POST"; wrk.path = "/v1/encode"
wrk.headers["Content-Type"] = "$2"
function done(s, lat)
  io.write(string.format("RESULT requests=%d duration_us=%d errors=%d p50_us=%d p99_us=%d\n", s.requests, s.duration,
    s.errors.connect + s.errors.read + s.errors.write + s.errors.timeout + s.errors.status, lat:percentile(50), lat:percentile(99)))
end
EOF
}
nbench=0
bench() { # name body content-type rows connections
  nbench=$((nbench + 1))
  local out="$work/bench-$nbench"
  lua "$2" "$3" >"$out.lua"
  local c0 c1
  c0=$(cputicks)
  wrk -t1 -c"$5" -d"${seconds}s" --timeout 30s -s "$out.lua" "http://127.0.0.1:$port" >"$out.out" 2>&1
  local req dur err p50 p99
  req=$(grep -o 'requests=[0-9]*' "$out.out" | cut -d= -f2)
  dur=$(grep -o 'duration_us=[0-9]*' "$out.out" | cut -d= -f2)
  err=$(grep -o 'errors=[0-9]*' "$out.out" | cut -d= -f2)
  p50=$(grep -o 'p50_us=[0-9]*' "$out.out" | cut -d= -f2)
  p99=$(grep -o 'p99_us=[0-9]*' "$out.out" | cut -d= -f2)
  c1=$(cputicks)
  [ -n "$req" ] || { echo "$1: wrk failed: $(tail -2 "$out.out")"; return; }
  awk -v n="$1" -v q="$req" -v d="$dur" -v r="$4" -v e="$err" -v a="$p50" -v b="$p99" -v c="$5" \
      -v cpu="$(( c1 - c0 ))" -v hz="$(getconf CLK_TCK)" 'BEGIN {
    printf "%-26s %6d req  %8.0f rows/s wall  %8.0f rows per saed CPU-second  errors %d  p50 %.1f ms  p99 %.1f ms  (%d conn, saed used %.1f CPU-s)\n",
      n, q, q * r / (d / 1e6), q * r / (cpu / hz), e, a / 1000, b / 1000, c, cpu / hz }'
}
bench "binary, 256 rows/request" "$work/bin256" application/octet-stream 256 4
bench "JSON, 16 rows/request" "$work/json16" application/json 16 8
bench "binary, 256 rows, 1 conn" "$work/bin256" application/octet-stream 256 1
echo "after load: VmRSS $(( $(kb VmRSS) / 1024 )) MiB, peak VmHWM $(( $(kb VmHWM) / 1024 )) MiB"

# The largest requests saed accepts by default, 4 at once.
max_rows=16384
node -e 'const [d, n, out] = [Number(process.argv[1]), Number(process.argv[2]), process.argv[3]];
  const f = new Float32Array(d * n); for (let i = 0; i < f.length; i++) f[i] = Math.sin(i) * 1.5;
  require("fs").writeFileSync(out, Buffer.from(f.buffer));' "$d_in" "$max_rows" "$work/big"
curls=()
for i in 1 2 3 4; do
  curl -sS -m 300 -o /dev/null -w "%{http_code}\n" -H 'Content-Type: application/octet-stream' \
    -H 'Accept: application/octet-stream' --data-binary @"$work/big" "http://127.0.0.1:$port/v1/encode" >"$work/big-$i" &
  curls+=($!)
done
wait "${curls[@]}"
echo "after 4 concurrent requests of $max_rows rows ($(( $(stat -c %s "$work/big") / 1048576 )) MiB each; status $(cat "$work"/big-* | sort | uniq -c | tr -s ' ' | tr '\n' ' ')): peak VmHWM $(( $(kb VmHWM) / 1024 )) MiB"
kill -TERM "$pid"; wait "$pid"; pid=""

if [ -n "$sae" ]; then
  echo "sae bench --threads $threads (kernel only):"
  "$sae" bench --model "$work/model" --threads "$threads" --batch 1 --batch 64 --batch 256 --seconds 2 --quiet 2>&1 |
    grep -E '^ +[0-9]+ +sgem' | sed 's/^/  /'
fi
# CPU seconds (user + system) of this shell's finished children, from `times`.
# Sets cpu_now. Called as is, never in $(...) or a pipe: a subshell's `times`
# would not see this shell's children.
child_cpu() {
  times >"$work/times"
  cpu_now=$(tail -1 "$work/times" | awk '{ for (i = 1; i <= 2; i++) { split($i, p, "m"); t += p[1] * 60 + p[2] } print t }')
}
if [ -n "$sae" ] && [ -n "$index_tokens" ]; then
  for n in $index_tokens; do
    "$mkfixture" --out "$work/model" --arch standard --d-in "$d_in" --d-sae "$d_sae" --target-l0 64 \
      --activations "$work/acts-$n.safetensors" --rows "$n" --act-dtype F16 >/dev/null ||
      { echo "measure.sh: mkfixture --activations failed" >&2; exit 1; }
    node -e 'const n = Number(process.argv[1]); const out = [];
      for (let d = 0, left = n; left > 0; d++, left -= 128)
        out.push(JSON.stringify({ id: "doc-" + d, tokens: Array.from({ length: Math.min(128, left) }, (_, i) => " t" + ((d * 7 + i * 13) % 5000)) }));
      require("fs").writeFileSync(process.argv[2], out.join("\n") + "\n");' "$n" "$work/tokens-$n.jsonl"
    child_cpu; c0=$cpu_now
    t0=$(date +%s.%N)
    "$sae" index --model "$work/model" --activations "$work/acts-$n.safetensors" --tokens "$work/tokens-$n.jsonl" \
      --threads "$threads" --quiet --out "$work/index-$n.db" || { echo "measure.sh: sae index failed" >&2; exit 1; }
    t1=$(date +%s.%N)
    child_cpu; c1=$cpu_now
    size=$(stat -c %s "$work/index-$n.db")
    awk -v n="$n" -v c="$(awk -v a="$c0" -v b="$c1" 'BEGIN{print b-a}')" -v w="$(awk -v a="$t0" -v b="$t1" 'BEGIN{print b-a}')" \
        -v s="$size" -v ex="$(sqlite3 "$work/index-$n.db" 'SELECT sum(n) FROM examples WHERE id % 4 < 2')" 'BEGIN {
      printf "sae index over %d tokens: %.1f s wall, %.1f CPU-s, %.0f tokens per CPU-second; index %.1f MB (%.2f MB per million tokens), %d examples\n",
        n, w, c, n / c, s / 1e6, s / 1e6 / (n / 1e6), ex }'
    rm -f "$work/acts-$n.safetensors"
  done
fi
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) at end"
