#!/usr/bin/env bash
# replicas.sh: three saed replicas behind deploy/nginx.conf on loopback, under
# load from wrk, one replica SIGKILLed and restarted mid-run (~40 s).
#
#   tests/deploy/replicas.sh --saed PATH (--model DIR | --mkfixture PATH)
#                            [--phase-seconds 10] [--base-port 18180] [--report FILE]
#                            [--no-control] [--sae PATH]
#
# Three consecutive wrk runs of POST /v1/encode (JSON, 4 rows) through nginx:
#   before  all three replicas up
#   during  replica 2 is SIGKILLed 2 s in, with requests in flight, and stays down
#   after   replica 2 is restarted 1 s in, under load, and must take traffic again
# Before them, one POST /v1/encode/stream through nginx must come back whole,
# with nginx spooling neither its body nor its reply.
# Checks: no request failed in any phase (nginx retries a dead replica's
# requests on another: encode is idempotent), each phase made progress, the
# restarted replica served requests, the image's HEALTHCHECK command passes
# against a live replica, the systemd unit's ExecReload makes a replica
# reload its model, every replica exits 0 on SIGTERM (drain), and the saed
# command lines of the unit, the Deployment and the image start and serve
# (with --sae and --mkfixture, on a small index built here, with --index).
# Control (~6 s): the same kill through nginx with retries turned off must
# lose requests, so the zero-error result is the retries' doing.
# Everything listens on 127.0.0.1 only; all processes are stopped on exit.
# Last line: "deploy-replicas: P passed, F failed"; exit 1 on any failure.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"

saed="" sae="" model="" mkfixture="" phase=10 base=18180 report="" control=1
while [ $# -gt 0 ]; do
  case $1 in
    --saed) saed=$2; shift 2 ;;
    --sae) sae=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --mkfixture) mkfixture=$2; shift 2 ;;
    --phase-seconds) phase=$2; shift 2 ;;
    --base-port) base=$2; shift 2 ;;
    --report) report=$2; shift 2 ;;
    --no-control) control=0; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | grep '^#' | cut -c3-; exit 0 ;;
    *) echo "replicas.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$saed" ] || { [ -z "$model" ] && [ -z "$mkfixture" ]; }; then
  echo "usage: replicas.sh --saed PATH (--model DIR | --mkfixture PATH)" >&2
  exit 2
fi
saed=$(readlink -f "$saed")
# nginx retries a failed replica after fail_timeout (5 s): shorter phases would
# end before the restarted replica could be seen taking traffic.
case $phase in ''|*[!0-9]*|[0-7]) echo "replicas.sh: --phase-seconds must be a whole number >= 8" >&2; exit 2 ;; esac

need_cmd wrk wrk || exit 1
need_cmd curl curl || exit 1
need_cmd node nodejs || exit 1
{ need_cmd nginx nginx-light || need_cmd nginx nginx; } || exit 1

work=$(mktemp -d /tmp/saed-deploy-replicas.XXXXXX)
pids=()
nginx_pid=""
control_pid=""
cleanup() {
  local p
  for p in $nginx_pid $control_pid; do [ -n "$p" ] && kill -TERM "$p" 2>/dev/null; done # a SIGKILLed master leaves its workers on the port
  for p in "${pids[@]}"; do
    [ -n "$p" ] && kill -KILL "$p" 2>/dev/null
  done
  wait 2>/dev/null
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

if [ -z "$model" ]; then
  model="$work/model"
  "$mkfixture" --out "$model" --arch standard --d-in 64 --d-sae 256 --target-l0 16 >"$work/mkfixture.log" 2>&1 ||
    { cat "$work/mkfixture.log" >&2; echo "replicas.sh: mkfixture failed" >&2; exit 1; }
fi
d_in=$(grep -o '"d_in"[[:space:]]*:[[:space:]]*[0-9]*' "$model/cfg.json" | grep -o '[0-9]*$')
[ -n "$d_in" ] || { echo "replicas.sh: no d_in in $model/cfg.json" >&2; exit 1; }

lb=$base
ports=($((base + 1)) $((base + 2)) $((base + 3)))

# start_replica I: saed on ports[I], its pid in pids[I]; waits for /v1/health.
start_replica() {
  local i=$1 port=${ports[$1]}
  "$saed" --model "$model" --listen "127.0.0.1:$port" --threads 1 --quiet \
    >>"$work/saed-$i.log" 2>&1 &
  pids[$i]=$!
  wait_health "127.0.0.1:$port" "${pids[$i]}"
}
wait_health() { # addr pid: until it answers, or its process is gone (or 2 min)
  local t
  for t in $(seq 1 2400); do
    curl -fsS -m 1 "http://$1/v1/health" 2>/dev/null | grep -q '"ok"' && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

for i in 0 1 2; do
  if ! start_replica "$i"; then
    fail "replica $i starts and answers /v1/health" "$(tail -3 "$work/saed-$i.log" | tr '\n' '|')"
    summary deploy-replicas
    exit 1
  fi
done
pass "three replicas up on 127.0.0.1:${ports[0]}-${ports[2]}"

render_nginx_conf "$root/deploy/nginx.conf" "$work/nginx.conf" "$work/nginx" "$lb" \
  "127.0.0.1:${ports[0]}" "127.0.0.1:${ports[1]}" "127.0.0.1:${ports[2]}"
nginx -p "$work/nginx" -c "$work/nginx.conf" -g 'daemon off;' >"$work/nginx.out" 2>&1 &
nginx_pid=$!
if wait_health "127.0.0.1:$lb" "$nginx_pid"; then
  pass "nginx (deploy/nginx.conf) up on 127.0.0.1:$lb"
else
  fail "nginx starts" "$(tail -3 "$work/nginx/logs/error.log" "$work/nginx.out" 2>/dev/null | tr '\n' '|')"
  summary deploy-replicas
  exit 1
fi

# The container's HEALTHCHECK, as the Dockerfile writes it, against replica 0.
node -e '
  const t = require("fs").readFileSync(process.argv[1], "utf8").replace(/\\\n/g, " ");
  const m = /^HEALTHCHECK .*?CMD (\[.*\])\s*$/m.exec(t);
  if (!m) process.exit(1);
  process.stdout.write(JSON.parse(m[1]).join("\0") + "\0");' "$root/deploy/Dockerfile" >"$work/healthcheck" 2>/dev/null
if [ -s "$work/healthcheck" ]; then
  mapfile -d '' hc_argv < <(sed "s#/8080#/${ports[0]}#g" "$work/healthcheck")
  if timeout 10 "${hc_argv[@]}"; then pass "the Dockerfile's HEALTHCHECK command passes against a live replica"
  else fail "the Dockerfile's HEALTHCHECK command passes against a live replica" "exit $?"; fi
  kill -STOP "${pids[0]}"
  if timeout 10 "${hc_argv[@]}"; then fail "the HEALTHCHECK fails against a hung replica" "it passed"
  else pass "the HEALTHCHECK fails against a hung replica (SIGSTOP)"; fi
  kill -CONT "${pids[0]}"
else
  fail "the Dockerfile's HEALTHCHECK command" "could not extract it (node missing or no exec-form HEALTHCHECK)"
fi

# The wrk script: POST /v1/encode with 4 fixed rows; counts non-200 replies
# across all threads (wrk's own "Non-2xx" would let a 3xx pass).
rows=$(awk -v d="$d_in" 'BEGIN { srand(7); printf "[";
  for (r = 0; r < 4; r++) { printf "%s[", (r ? "," : "");
    for (i = 0; i < d; i++) printf "%s%.4f", (i ? "," : ""), rand() * 2 - 1; printf "]" }
  printf "]" }')
cat >"$work/encode.lua" <<EOF
wrk.method = "POST"
wrk.path = "/v1/encode"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"inputs": $rows, "top_k": 8}'
local threads = {}
function setup(thread) table.insert(threads, thread) end
function init(args) non200 = 0 end
function response(status, headers, body)
  if status ~= 200 then non200 = non200 + 1 end
end
function done(summary, latency, requests)
  local n = 0
  for _, t in ipairs(threads) do n = n + t:get("non200") end
  local e = summary.errors
  io.write(string.format("RESULT requests=%d duration_us=%d connect=%d read=%d write=%d status=%d timeout=%d non200=%d p50_us=%d p99_us=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, n,
    latency:percentile(50), latency:percentile(99)))
end
EOF
# Sanity: one request through nginx is a real encode reply.
if curl -fsS -m 5 -H 'Content-Type: application/json' --data "{\"inputs\": $rows}" \
     "http://127.0.0.1:$lb/v1/encode" | grep -q '"results"'; then
  pass "POST /v1/encode through nginx answers results"
else
  fail "POST /v1/encode through nginx answers results" "no results in the reply"
fi

# POST /v1/encode/stream through nginx: 6,000 rows (1.5 MB at d_in 64) sent
# chunked, more than nginx's client_body_buffer_size (1m), so a location that
# buffers request bodies (as "/" does) must spool this one to a temp file.
# The stream's location must not: nginx logs every such spool to error.log
# ("a client request body is buffered to a temporary file", at warn, or the
# temp path when its workers cannot write it there). A reply spooled to a
# temp file would show the same way, but it happens only with a slow client.
stream_rows=6000
node -e '
  const [n, d] = [+process.argv[2], +process.argv[3]];
  const a = new Float32Array(n * d);
  let x = 7;
  for (let i = 0; i < a.length; i++) { x = (x * 1103515245 + 12345) % 2147483648; a[i] = x / 1073741824 - 1; }
  require("fs").writeFileSync(process.argv[1], Buffer.from(a.buffer));' "$work/stream.bin" "$stream_rows" "$d_in"
err_mark=$(wc -l <"$work/nginx/logs/error.log")
code=$(curl -sS -m 120 -o "$work/stream.out" -w '%{http_code}' -H 'Content-Type: application/octet-stream' \
  -H 'Transfer-Encoding: chunked' --data-binary @"$work/stream.bin" "http://127.0.0.1:$lb/v1/encode/stream?top_k=8")
# The frames: u32 kind, u32 rows, u64 bytes, payload; rows frames (kind 1),
# then the status record (kind 2) last. Prints "ROWS_IN_FRAMES STATUS_ROWS STOPPED".
got=$(node -e '
  const b = require("fs").readFileSync(process.argv[1]);
  let off = 0, rows = 0, status = null;
  while (off + 16 <= b.length && status === null) {
    const kind = b.readUInt32LE(off), n = b.readUInt32LE(off + 4), len = Number(b.readBigUInt64LE(off + 8));
    if (kind === 1) rows += n;
    else if (kind === 2) status = b.toString("utf8", off + 16, off + 16 + len);
    off += 16 + len;
  }
  if (status === null || off !== b.length) process.exit(1);
  const st = JSON.parse(status);
  process.stdout.write(`${rows} ${st.rows} ${st.stopped}`);' "$work/stream.out" 2>/dev/null)
if [ "$code" = 200 ] && [ "$got" = "$stream_rows $stream_rows end" ]; then
  pass "POST /v1/encode/stream through nginx answers all $stream_rows rows (stopped: end)"
else
  fail "POST /v1/encode/stream through nginx answers all $stream_rows rows" "HTTP $code, frames: ${got:-unreadable}"
fi
spooled=$(tail -n +"$((err_mark + 1))" "$work/nginx/logs/error.log" |
  grep -e 'buffered to a temporary file' -e "$work/nginx/tmp/")
if [ -z "$spooled" ]; then
  pass "nginx passes the stream's body upstream unbuffered (no temp file)"
else
  fail "nginx passes the stream's body upstream unbuffered" "$(echo "$spooled" | head -2 | tr '\n' '|')"
fi

run_wrk() { # name -> $work/wrk-NAME.out
  wrk -t1 -c12 -d"${phase}s" --timeout 10s -s "$work/encode.lua" "http://127.0.0.1:$lb" \
    >"$work/wrk-$1.out" 2>&1
}
field() { grep -o "$2=[0-9]*" "$work/wrk-$1.out" | head -1 | cut -d= -f2; }

run_wrk before

access_mark() { wc -l <"${1:-$work/nginx/logs/access.log}"; }
# wait_traffic PID [LOG]: until nginx has logged 100 more requests than when
# called (the load is flowing), while wrk PID runs; fails if wrk ended first.
# The kills below wait for this rather than a number of seconds, so they land
# mid-run on a slow machine and on a quiet one alike.
wait_traffic() {
  local log=${2:-$work/nginx/logs/access.log} from
  from=$(access_mark "$log")
  while kill -0 "$1" 2>/dev/null; do
    [ "$(access_mark "$log")" -ge $((from + 100)) ] && return 0
    sleep 0.05
  done
  return 1
}
run_wrk during &
wrk_pid=$!
if wait_traffic "$wrk_pid"; then pass "the kill lands while wrk's load flows through nginx"
else fail "the kill lands while wrk's load flows through nginx" "wrk ended first: $(tail -3 "$work/wrk-during.out" | tr '\n' '|')"; fi
kill -KILL "${pids[1]}"
wait "${pids[1]}" 2>/dev/null
pids[1]=""
wait "$wrk_pid"

run_wrk after &
wrk_pid=$!
wait_traffic "$wrk_pid"
mark=$(access_mark)
if start_replica 1; then pass "replica 1 restarted under load and healthy"
else fail "replica 1 restarted" "$(tail -3 "$work/saed-1.log" | tr '\n' '|')"; fi
wait "$wrk_pid"
served=$(tail -n +"$((mark + 1))" "$work/nginx/logs/access.log" | grep -c "upstream=[^ ]*127.0.0.1:${ports[1]}")

printf '\n%-7s %10s %10s %8s %8s %8s %8s\n' phase requests "req/s" errors non200 p50_ms p99_ms
total_err=0
for ph in before during after; do
  req=$(field "$ph" requests)
  dur=$(field "$ph" duration_us)
  if [ -z "$req" ] || [ -z "$dur" ]; then
    fail "wrk $ph phase ran" "$(tail -3 "$work/wrk-$ph.out" | tr '\n' '|')"
    continue
  fi
  errs=$(( $(field "$ph" connect) + $(field "$ph" read) + $(field "$ph" write) + $(field "$ph" timeout) + $(field "$ph" status) ))
  n200=$(field "$ph" non200)
  rps=$(awk -v r="$req" -v d="$dur" 'BEGIN { printf "%.0f", r / (d / 1e6) }')
  printf '%-7s %10d %10d %8d %8d %8.2f %8.2f\n' "$ph" "$req" "$rps" "$errs" "$n200" \
    "$(awk -v u="$(field "$ph" p50_us)" 'BEGIN{print u/1000}')" "$(awk -v u="$(field "$ph" p99_us)" 'BEGIN{print u/1000}')"
  eval "rps_$ph=$rps req_$ph=$req err_$ph=$((errs + n200))"
  total_err=$((total_err + errs + n200))
  if [ "$req" -gt 0 ]; then pass "$ph: requests completed ($req, $rps/s)"
  else fail "$ph: requests completed" "none"; fi
  if [ "$errs" -eq 0 ] && [ "$n200" -eq 0 ]; then pass "$ph: 0 failed requests"
  else fail "$ph: 0 failed requests" "$errs socket/status errors, $n200 non-200 replies"; fi
done
echo
retried=$(grep -c 'upstream_status=[0-9-]*, ' "$work/nginx/logs/access.log")
echo "requests nginx retried on another replica: $retried; served by the restarted replica: $served"
if [ "$served" -gt 0 ]; then pass "the restarted replica takes traffic again ($served requests)"
else fail "the restarted replica takes traffic again" "no request reached 127.0.0.1:${ports[1]} after the restart"; fi

# The systemd unit's reload action (ExecReload, $MAINPID = replica 0) makes
# saed load its model again and keep serving.
reload_cmd=$(sed -n 's/^ExecReload=//p' "$root/deploy/saed.service" | tail -1)
ok_reloads() { curl -fsS -m 2 "http://127.0.0.1:${ports[0]}/metrics" | sed -n 's/^saed_reloads_total{result="ok"} //p'; }
before_reloads=$(ok_reloads)
if [ -n "$reload_cmd" ] && MAINPID=${pids[0]} sh -c "$reload_cmd"; then
  after_reloads=$before_reloads
  for _ in $(seq 1 50); do
    after_reloads=$(ok_reloads)
    [ "${after_reloads:-0}" -gt "${before_reloads:-0}" ] && break
    sleep 0.1
  done
  if [ "${after_reloads:-0}" -gt "${before_reloads:-0}" ] && wait_health "127.0.0.1:${ports[0]}" "${pids[0]}"; then
    pass "saed.service's ExecReload ($reload_cmd) reloads the model; the replica stays healthy"
  else
    fail "saed.service's ExecReload reloads the model" "saed_reloads_total{result=\"ok\"} ${before_reloads:-?} -> ${after_reloads:-?}"
  fi
else
  fail "saed.service's ExecReload runs" "ExecReload='$reload_cmd'"
fi

# Control: the same kill against nginx without retries must lose requests;
# otherwise the zero above would prove nothing about the retry settings.
if [ "$control" = 1 ]; then
  sed -e 's/^\([[:space:]]*\)proxy_next_upstream .*;/\1proxy_next_upstream off;/' \
      -e "s/listen 127.0.0.1:$lb/listen 127.0.0.1:$((base + 9))/" \
      -e "s#$work/nginx/#$work/nginx-control/#g" "$work/nginx.conf" >"$work/nginx-control.conf"
  mkdir -p "$work/nginx-control/logs" "$work/nginx-control/tmp"
  nginx -p "$work/nginx-control" -c "$work/nginx-control.conf" -g 'daemon off;' >"$work/nginx-control.out" 2>&1 &
  control_pid=$!
  if wait_health "127.0.0.1:$((base + 9))" "$control_pid"; then
    wrk -t1 -c12 -d4s --timeout 10s -s "$work/encode.lua" "http://127.0.0.1:$((base + 9))" >"$work/wrk-control.out" 2>&1 &
    wrk_pid=$!
    wait_traffic "$wrk_pid" "$work/nginx-control/logs/access.log" ||
      fail "control: the kill lands while wrk's load flows" "wrk ended first"
    kill -KILL "${pids[1]}"
    wait "${pids[1]}" 2>/dev/null
    pids[1]=""
    wait "$wrk_pid"
    cerr=$(( $(field control connect) + $(field control read) + $(field control write) + $(field control timeout) + $(field control non200) ))
    if [ "$cerr" -gt 0 ]; then pass "control: without retries the same kill loses requests ($cerr failed)"
    else fail "control: without retries the same kill loses requests" "0 failed: the kill test cannot tell"; fi
    start_replica 1 || fail "replica 1 restarted after the control" "$(tail -2 "$work/saed-1.log" | tr '\n' '|')"
  else
    fail "control nginx starts" "$(tail -2 "$work/nginx-control.out" | tr '\n' '|')"
  fi
  kill -QUIT "$control_pid" 2>/dev/null
  wait "$control_pid" 2>/dev/null
fi

# SIGTERM: each replica drains and exits 0.
for i in 0 1 2; do
  p=${pids[$i]}
  [ -n "$p" ] || continue
  kill -TERM "$p"
  rc=0
  wait "$p" || rc=$?
  pids[$i]=""
  if [ "$rc" -eq 0 ]; then pass "replica $i exits 0 on SIGTERM"
  else fail "replica $i exits 0 on SIGTERM" "exit $rc"; fi
done
kill -QUIT "$nginx_pid" 2>/dev/null
wait "$nginx_pid" 2>/dev/null
nginx_pid=""

# The command lines the deploy files run (systemd ExecStart with the example
# config, the Deployment's command + args with the ConfigMap's config, the
# image's CMD), paths and listen address rewritten for loopback: each starts,
# answers /v1/model for this model (and /v1/features/0 from the index, when
# one was built: otherwise "--index X" is dropped), and exits 0 on SIGTERM.
index=""
if [ -n "$sae" ] && [ -n "$mkfixture" ]; then
  "$mkfixture" --out "$work/imodel" --arch standard --d-in 64 --d-sae 256 --target-l0 16 \
    --activations "$work/iacts.safetensors" --rows 4000 >/dev/null 2>&1 &&
  node -e 'const out = []; for (let d = 0; d < 40; d++)
      out.push(JSON.stringify({ id: "d" + d, tokens: Array.from({ length: 100 }, (_, i) => " w" + ((d + i) % 50)) }));
    require("fs").writeFileSync(process.argv[1], out.join("\n") + "\n");' "$work/itokens.jsonl" &&
  "$sae" index --model "$work/imodel" --activations "$work/iacts.safetensors" --tokens "$work/itokens.jsonl" \
    --out "$work/index.db" --quiet >"$work/index.log" 2>&1 &&
  index="$work/index.db" model="$work/imodel"
  [ -n "$index" ] || fail "build a small index for the command-line checks" "$(tail -2 "$work/index.log" | tr '\n' '|')"
fi
if node "$here/commands.mjs" "$root" "$work" "$saed" "$model" "$root/config/saed.conf" "$((base + 8))" $index 2>"$work/commands.err"; then
  for src in unit deployment dockerfile; do
    mapfile -d '' argv <"$work/$src.argv"
    "${argv[@]}" >"$work/cmd-$src.log" 2>&1 &
    cpid=$!
    pids[3]=$cpid
    if wait_health "127.0.0.1:$((base + 8))" "$cpid" &&
       curl -fsS -m 2 "http://127.0.0.1:$((base + 8))/v1/model" | grep -q "\"d_in\":[[:space:]]*$d_in" &&
       { [ -z "$index" ] || curl -fsS -m 2 "http://127.0.0.1:$((base + 8))/v1/features/0" | grep -q '"density"'; }; then
      kill -TERM "$cpid"
      rc=0
      wait "$cpid" || rc=$?
      if [ "$rc" -eq 0 ]; then pass "$src command line serves the model and exits 0 on SIGTERM (${argv[*]:1})"
      else fail "$src command line exits 0 on SIGTERM" "exit $rc"; fi
    else
      kill -KILL "$cpid" 2>/dev/null
      wait "$cpid" 2>/dev/null
      fail "$src command line serves the model" "${argv[*]}: $(tail -2 "$work/cmd-$src.log" | tr '\n' '|')"
    fi
    pids[3]=""
  done
else
  fail "extract the deploy files' command lines" "$(tail -2 "$work/commands.err" | tr '\n' '|')"
fi

if [ -n "$report" ]; then
  cat >"$report" <<EOF
{"phase_seconds": $phase, "d_in": $d_in, "rows_per_request": 4,
 "before": {"requests": ${req_before:-0}, "rps": ${rps_before:-0}, "errors": ${err_before:--1}},
 "during": {"requests": ${req_during:-0}, "rps": ${rps_during:-0}, "errors": ${err_during:--1}},
 "after":  {"requests": ${req_after:-0}, "rps": ${rps_after:-0}, "errors": ${err_after:--1}},
 "retried": $retried, "served_by_restarted": $served}
EOF
fi
summary deploy-replicas
