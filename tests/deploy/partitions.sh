#!/usr/bin/env bash
# partitions.sh: a release split across saed Deployments by deploy/partition.py, run as
# processes on loopback behind the generated router (nginx), checked against one saed
# serving the whole release (~10 s).
#
#   tests/deploy/partitions.sh --saed PATH --sae PATH --mkfixture PATH [--base-port 18380]
#
# A release of 4 SAEs (2 layers x 2 widths, d_in 32; an index with explanations for one
# SAE of each layer) is listed by a reference saed (--release, the operator's step), cut
# into 2 partitions by deploy/partition.py, and every saed Deployment of the generated
# manifests (2 partitions + the search Deployment) is started with its ConfigMap's
# saed.conf and its command line (paths and ports rewritten: tests/deploy/partfiles.mjs),
# the router with its generated nginx.conf and catalogue. Through the router's one
# address: GET /v1/saes and /v1/saes/{id} equal the reference's; every SAE's encode
# equals its partition's direct answer and the reference's (X-SAE-Id names it); feature
# routes, /v1/search, the Neuronpedia route, the unprefixed routes and a fan-out over one
# hook equal the reference's; an unknown id or one outside [A-Za-z0-9._-] is 404
# sae_not_found (from nginx, as from saed). The partitions hold disjoint SAEs and
# together the release; --plan regenerates the same files. Control: a router whose map
# sends layer 1 to the wrong partition must fail the encode check.
# Last line: "deploy-partitions: P passed, F failed"; exit 1 on any failure.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"

saed="" sae="" mkfixture="" base=18380
while [ $# -gt 0 ]; do
  case $1 in
    --saed) saed=$2; shift 2 ;;
    --sae) sae=$2; shift 2 ;;
    --mkfixture) mkfixture=$2; shift 2 ;;
    --base-port) base=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | grep '^#' | cut -c3-; exit 0 ;;
    *) echo "partitions.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$saed" ] || [ -z "$sae" ] || [ -z "$mkfixture" ]; then
  echo "usage: partitions.sh --saed PATH --sae PATH --mkfixture PATH" >&2
  exit 2
fi
saed=$(readlink -f "$saed")
need_cmd curl curl || exit 1
need_cmd node nodejs || exit 1
need_cmd python3 python3 || exit 1
{ need_cmd nginx nginx-light || need_cmd nginx nginx; } || exit 1
[ -d "$here/node_modules/yaml" ] || (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1) ||
  { echo "partitions.sh: npm ci in tests/deploy failed" >&2; exit 1; }

work=$(mktemp -d /tmp/saed-deploy-partitions.XXXXXX)
pids=()
# nginx masters get SIGTERM (a SIGKILLed master leaves its workers listening, with
# reuseport, on the port); saed processes SIGKILL.
nginx_pids=()
cleanup() {
  local p
  for p in "${nginx_pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  wait 2>/dev/null
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
bail() { fail "$1" "$2"; summary deploy-partitions; exit 1; }

wait_health() { # addr pid [path]: until it answers, or its process is gone (or 1 min)
  local t
  for t in $(seq 1 1200); do
    curl -fsS -m 1 "http://$1${3:-/v1/health}" >/dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}

# ---- the release: layer_L/width_W, two hooks; an index for one SAE of each layer ---------
rel=$work/release idx=$work/indexes
mkdir -p "$rel" "$idx"
python3 - "$work" <<'EOF' || bail "write tokens and explanations" "python3 failed"
import json, sys
w = sys.argv[1]
with open(w + "/tokens.jsonl", "w") as f:
    for d in range(20):
        f.write(json.dumps({"id": "d%d" % d, "tokens": [" w%d" % ((d + i) % 50) for i in range(100)]}) + "\n")
for name, n in (("a", 64), ("b", 128)):
    with open(w + "/expl_%s.jsonl" % name, "w") as f:
        for i in range(0, n, 3):
            topic = "induction" if i % 2 else "syntax"
            f.write(json.dumps({"index": i, "description": "%s %s feature %d" % (topic, name, i), "score": 0.5}) + "\n")
EOF
seed=1
for l in 0 1; do
  for w in a b; do
    d_sae=64; [ $w = b ] && d_sae=128
    "$mkfixture" --out "$rel/layer_$l/width_$w" --d-in 32 --d-sae $d_sae --seed $seed --target-l0 8 \
      --model-name tiny --hook-name "blocks.$l.hook_resid_post" \
      --activations "$work/acts_${l}_$w.safetensors" --rows 2000 >>"$work/mkfixture.log" 2>&1 ||
      bail "mkfixture layer_$l/width_$w" "$(tail -2 "$work/mkfixture.log" | tr '\n' '|')"
    seed=$((seed + 1))
  done
done
indexed=(layer_0.width_a layer_1.width_b)
idx_flags=()
for id in "${indexed[@]}"; do
  l=${id%%.*} w=${id##*.}
  "$sae" index --model "$rel/$l/$w" --activations "$work/acts_${l#layer_}_${w#width_}.safetensors" \
    --tokens "$work/tokens.jsonl" --explanations "$work/expl_${w#width_}.jsonl" --out "$idx/$id.db" --quiet \
    >>"$work/index.log" 2>&1 || bail "sae index $id" "$(tail -2 "$work/index.log" | tr '\n' '|')"
  idx_flags+=(--index "$id=$idx/$id.db")
done
ids=(layer_0.width_a layer_0.width_b layer_1.width_a layer_1.width_b)
pass "a release of ${#ids[@]} SAEs, ${#indexed[@]} indexed"

# ---- the reference: one saed over the whole release; its /v1/saes is the listing ------------
ref=127.0.0.1:$((base + 1))
"$saed" --release "$rel" "${idx_flags[@]}" --listen "$ref" --threads 1 --quiet >"$work/ref.log" 2>&1 &
pids+=($!)
wait_health "$ref" "${pids[-1]}" || bail "reference saed --release starts" "$(tail -2 "$work/ref.log" | tr '\n' '|')"
curl -fsS "http://$ref/v1/saes" >"$work/saes.json" || bail "GET /v1/saes of the reference" "curl failed"

# ---- generate, and regenerate from the plan --------------------------------------------------
gen=$work/gen
python3 "$root/deploy/partition.py" --saes "$work/saes.json" --release "$rel" --index-dir "$idx" \
  --partitions 2 --out "$gen" 2>"$work/partition.log" ||
  bail "deploy/partition.py --partitions 2" "$(tail -2 "$work/partition.log" | tr '\n' '|')"
pass "deploy/partition.py cut the release: $(grep -c '^partition.py: saed-p' "$work/partition.log") partitions"
python3 "$root/deploy/partition.py" --plan "$gen/plan.json" --out "$work/gen2" 2>/dev/null &&
  diff -r "$gen" "$work/gen2" >"$work/regen.diff" && pass "--plan plan.json writes the same files again" ||
  fail "--plan plan.json writes the same files again" "$(head -3 "$work/regen.diff" | tr '\n' '|')"

# ---- start what the manifests run ------------------------------------------------------------
mkdir -p "$work/run"
node "$here/partfiles.mjs" "$gen" "$work/run" "$saed" "$((base + 10))" \
  "saed-release=$rel" "saed-release-index=$idx" >"$work/deployments" 2>"$work/partfiles.err" ||
  bail "extract the Deployments' configs and command lines" "$(tail -2 "$work/partfiles.err" | tr '\n' '|')"
declare -A addr
upstreams=()
while read -r name svc local; do
  mapfile -d '' argv <"$work/run/$name.argv"
  "${argv[@]}" >"$work/$name.log" 2>&1 &
  pids+=($!)
  wait_health "$local" "${pids[-1]}" || bail "$name starts from its ConfigMap" "$(tail -2 "$work/$name.log" | tr '\n' '|')"
  addr[$name]=$local
  upstreams+=("$svc=$local")
done <"$work/deployments"
pass "saed Deployments up: ${!addr[*]}"
# nginx's workers (as root: user nobody) read the catalogue files
chmod a+rx "$work" "$work/run" "$work/run/catalogue" && chmod a+r "$work/run/catalogue"/*

lb=127.0.0.1:$base
start_router() { # conf prefix port -> pid in $router_pid
  render_nginx_conf "$1" "$2.conf" "$2" "$3" "${upstreams[@]}" "root=$work/run/catalogue"
  nginx -p "$2" -c "$2.conf" -g 'daemon off;' >"$2.out" 2>&1 &
  router_pid=$!
  nginx_pids+=($router_pid)
  wait_health "127.0.0.1:$3" "$router_pid" /nginx-health
}
start_router "$work/run/nginx.conf" "$work/router" "$base" ||
  bail "the generated router starts" "$(tail -3 "$work/router.out" "$work/router/logs/error.log" 2>/dev/null | tr '\n' '|')"
pass "router (generated nginx.conf) up on $lb"

# ---- checks ---------------------------------------------------------------------------------
# fetch URL OUT [BODY]: GET (or POST BODY as JSON); OUT.code the status, OUT.hdr the headers
fetch() {
  local a=(-sS -m 10 -o "$2" -D "$2.hdr" -w '%{http_code}')
  [ -n "${3:-}" ] && a+=(-H 'Content-Type: application/json' --data-binary "$3")
  curl "${a[@]}" "$1" >"$2.code" 2>/dev/null || echo 000 >"$2.code"
}
n=0
# same WHAT BODY URL...: every URL answers 200 and the same JSON
same() {
  local what=$1 body=$2 u f files=()
  shift 2
  for u in "$@"; do
    n=$((n + 1)) f=$work/r$n
    fetch "$u" "$f" "$body"
    files+=("$f")
  done
  if python3 - "${files[@]}" <<'EOF'; then pass "$what"; else fail "$what" "$(cat "$work/why")"; fi
import json, sys
fs = sys.argv[1:]
why = ""
docs = []
for f in fs:
    code = open(f + ".code").read().strip()
    if code != "200":
        why = "%s: status %s %s" % (f, code, open(f).read()[:160])
        break
    docs.append(json.load(open(f)))
if not why and any(d != docs[0] for d in docs):
    why = "replies differ: " + " vs ".join(json.dumps(d)[:120] for d in docs)
open(sys.argv[1].rsplit("/", 1)[0] + "/why", "w").write(why)
sys.exit(1 if why else 0)
EOF
}
# not_found WHAT URL [BODY]: 404 with code sae_not_found
not_found() {
  n=$((n + 1))
  fetch "$2" "$work/r$n" "${3:-}"
  if [ "$(cat "$work/r$n.code")" = 404 ] && grep -q '"code":"sae_not_found"' "$work/r$n"; then pass "$1"
  else fail "$1" "status $(cat "$work/r$n.code"): $(head -c 160 "$work/r$n")"; fi
}
header() { grep -i "^$1:" "$2.hdr" | head -1 | cut -d' ' -f2- | tr -d '\r'; }

same "GET /v1/saes through the router is the reference's listing of the release" "" \
  "http://$lb/v1/saes" "http://$ref/v1/saes"
# Each partition serves its own SAEs; together, the release, each once.
python3 - "$work/saes.json" "${addr[@]}" >"$work/owners" 2>"$work/why" <<'EOF'
import json, sys, urllib.request
ref = {e["id"]: e for e in json.load(open(sys.argv[1]))["saes"]}
seen = {}
for a in sys.argv[2:]:
    for e in json.load(urllib.request.urlopen("http://%s/v1/saes" % a))["saes"]:
        r = dict(ref[e["id"]])
        for x in (e, r):
            x.pop("default")
        if e != r:
            sys.exit("%s answers %s unlike the listing" % (a, e["id"]))
        seen.setdefault(e["id"], []).append(a)
for i, owners in seen.items():
    print(i, " ".join(owners))
EOF
[ -s "$work/owners" ] || fail "the Deployments' /v1/saes entries are the listing's" "$(cat "$work/why")"
search_addr=${addr[saed-search]:-}
part_owner() { grep "^$1 " "$work/owners" | cut -d' ' -f2- | tr ' ' '\n' | grep -vx "$search_addr"; }
ok=1
for id in "${ids[@]}"; do [ "$(part_owner "$id" | wc -l)" -eq 1 ] || ok=0; done
if [ "$ok" = 1 ] && [ "$(wc -l <"$work/owners")" -eq ${#ids[@]} ]; then
  pass "every SAE is served by exactly one partition (entries as the listing's)"
else
  fail "every SAE is served by exactly one partition" "$(tr '\n' '|' <"$work/owners")"
fi

rows=$(python3 -c 'import json, random; random.seed(5); print(json.dumps([[round(random.uniform(-1, 1), 4) for _ in range(32)] for _ in range(4)]))')
enc="{\"inputs\": $rows, \"top_k\": 8}"
for id in "${ids[@]}"; do
  same "GET /v1/saes/$id through the router is the reference's entry" "" \
    "http://$lb/v1/saes/$id" "http://$ref/v1/saes/$id"
  same "POST /v1/saes/$id/encode through the router = its partition's direct answer = the reference's" "$enc" \
    "http://$lb/v1/saes/$id/encode" "http://$(part_owner "$id")/v1/saes/$id/encode" "http://$ref/v1/saes/$id/encode"
  got=$(header X-SAE-Id "$work/r$((n - 2))")
  [ "$got" = "$id" ] && pass "X-SAE-Id through the router names $id" || fail "X-SAE-Id through the router names $id" "'$got'"
done
# POST /v1/saes/{id}/encode/stream through the router: its own location (the body goes
# upstream unbuffered: 1.5 MB, past the router's 1 MB body buffer, so a buffered body would
# be spooled to a temp file, which nginx logs); the reply's bytes are the partition's.
python3 -c 'import random, struct, sys; random.seed(7); open(sys.argv[1], "wb").write(struct.pack("<%df" % (12000 * 32), *[random.uniform(-1, 1) for _ in range(12000 * 32)]))' "$work/stream.bin"
stream() { curl -sS -m 60 -o "$2" -w '%{http_code}' -H 'Content-Type: application/octet-stream' \
  -H 'Transfer-Encoding: chunked' --data-binary @"$work/stream.bin" "$1" 2>/dev/null || echo 000; }
# stream_status FILE: the status record's "rows stopped" (the last frame, kind 2)
stream_status() { python3 -c 'import json, struct, sys
b = open(sys.argv[1], "rb").read(); o = 0; st = None
while o + 16 <= len(b):
    kind, rows, n = struct.unpack_from("<IIQ", b, o); o += 16
    if kind == 2: st = json.loads(b[o:o + n])
    o += n
print(st["rows"], st["stopped"])' "$1" 2>/dev/null; }
sid=${ids[$((${#ids[@]} - 1))]}
c1=$(stream "http://$lb/v1/saes/$sid/encode/stream?top_k=8" "$work/stream.lb")
c2=$(stream "http://$(part_owner "$sid")/v1/saes/$sid/encode/stream?top_k=8" "$work/stream.direct")
if [ "$c1" = 200 ] && [ "$c2" = 200 ] && [ "$(stream_status "$work/stream.lb")" = "12000 end" ] && cmp -s "$work/stream.lb" "$work/stream.direct" &&
  ! grep -q "buffered to a temporary file" "$work/router/logs/error.log"; then
  pass "POST /v1/saes/$sid/encode/stream (12000 rows, chunked) through the router, unbuffered, = its partition's bytes"
else
  fail "POST /v1/saes/$sid/encode/stream through the router = its partition's bytes" \
    "router $c1 ($(stream_status "$work/stream.lb"), $(stat -c %s "$work/stream.lb" 2>/dev/null) B), direct $c2 ($(stat -c %s "$work/stream.direct" 2>/dev/null) B); $(grep -m1 temporary "$work/router/logs/error.log")"
fi
for id in "${indexed[@]}"; do
  same "GET /v1/saes/$id/features/3 through the router = the reference's" "" \
    "http://$lb/v1/saes/$id/features/3" "http://$ref/v1/saes/$id/features/3"
done
same "GET /v1/search over the release through the router = the reference's" "" \
  "http://$lb/v1/search?q=induction&limit=100" "http://$ref/v1/search?q=induction&limit=100"
same "GET /v1/search paged (offset) through the router = the reference's" "" \
  "http://$lb/v1/search?q=syntax&limit=5&offset=20" "http://$ref/v1/search?q=syntax&limit=5&offset=20"
same "Neuronpedia route to a layer on the second partition = the reference's" "" \
  "http://$lb/api/feature/tiny/layer_1.width_b/3" "http://$ref/api/feature/tiny/layer_1.width_b/3"
same "unprefixed GET /v1/model (the default SAE) through the router = the reference's" "" \
  "http://$lb/v1/model" "http://$ref/v1/model"
same "unprefixed POST /v1/encode fan-out over the default SAE's hook = the reference's" \
  "{\"saes\": [\"layer_0.width_a\", \"layer_0.width_b\"], \"inputs\": $rows, \"top_k\": 4}" \
  "http://$lb/v1/encode" "http://$ref/v1/encode"
not_found "POST /v1/saes/nope/encode through the router: 404 sae_not_found" "http://$lb/v1/saes/nope/encode" "$enc"
not_found "the reference answers the same for an unknown id" "http://$ref/v1/saes/nope/encode" "$enc"
not_found "GET /v1/saes/nope through the router: 404 sae_not_found" "http://$lb/v1/saes/nope"
not_found "GET /v1/saes/nope/features/1 through the router: 404 sae_not_found" "http://$lb/v1/saes/nope/features/1"
not_found "an id outside [A-Za-z0-9._-] through the router: 404 sae_not_found" "http://$lb/v1/saes/a%20b/model"
python3 -c 'import json, sys; json.load(open(sys.argv[1]))' "$work/r$((n - 2))" 2>/dev/null &&
  pass "the router's sae_not_found body is JSON" || fail "the router's sae_not_found body is JSON" "$(head -c 160 "$work/r$((n - 2))")"

# Control: the same router with layer 1 mapped to the first partition must fail.
sed 's/^\([[:space:]]*"layer_1\.[^"]*"\) saed_p1;/\1 saed_p0;/' "$work/run/nginx.conf" >"$work/run/nginx-wrong.conf"
if cmp -s "$work/run/nginx.conf" "$work/run/nginx-wrong.conf"; then
  fail "control: the router's map" "the edit changed nothing (test out of date)"
elif start_router "$work/run/nginx-wrong.conf" "$work/router-wrong" "$((base + 9))"; then
  n=$((n + 1))
  fetch "http://127.0.0.1:$((base + 9))/v1/saes/layer_1.width_a/encode" "$work/r$n" "$enc"
  if [ "$(cat "$work/r$n.code")" = 200 ]; then fail "control: a wrong map loses layer 1" "still 200"
  else pass "control: with layer 1 mapped to the wrong partition its encode fails ($(cat "$work/r$n.code"))"; fi
else
  fail "control router starts" "$(tail -2 "$work/router-wrong.out" | tr '\n' '|')"
fi

summary deploy-partitions
