#!/usr/bin/env bash
# The run behind docs/PERFORMANCE.md's "Language model forward pass": a
# release build, then lmbench (bench/lmbench.c) on a random GPT-2-small
# checkpoint it writes to a temporary folder (or on --lm DIR; --keep DIR
# keeps the one it writes there), at batches of 512, 512 and 2048 tokens: the
# forward pass through every block against the same cblas_sgemm calls alone.
# Waits (up to WAIT seconds, default 600) for the 1-minute load average to
# drop under 0.5, and says so if it never does.
#
# Then, unless --lm DIR was given, "encode_text latency": the same
# checkpoint, with the small fixture's tokenizer (tests/fixture/lm/
# gpt2_text_v300: byte-level, 300 ids) and a random 768 x 24576 SAE on
# blocks.11.hook_resid_post (so every block runs, as in lmbench), served by
# saed --lm (--workers 1: its BLAS gets every core, as lmbench's does). One
# 128-token text (the BOS included) is POSTed to /v1/encode_text over
# keep-alive, alternately with lmbench's forward pass alone at 1x128 (the
# median of 3 passes), 10 rounds, so both see the same machine: medians and
# the median of the rounds' ratios. Then 4 clients at once (16 requests),
# whose texts share forward passes (saed's exit line says how many passes
# its requests took), against one client's rate.
#
#   bench/lm.sh [BUILD_DIR] [lmbench flags: --lm DIR --batch 4x128 --seconds S --threads N]
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
build=${1:-build-release}
shift || true

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" --buildtype=release >/dev/null
fi
ninja -C "$build" cli/lmbench server/saed tests/mkfixture >/dev/null

wait_quiet lm.sh

machine_header
own=yes
for a in "$@"; do [ "$a" = --lm ] && own=''; done
if [ -z "$own" ]; then
  echo "command: $build/cli/lmbench $*"
  "$build/cli/lmbench" "$@"
  echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
  exit 0
fi

tmp=$(mktemp -d -t lmbench.XXXXXX)
pid=''
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

echo "command: $build/cli/lmbench --keep \$tmp/gpt2 $*"
"$build/cli/lmbench" --keep "$tmp/gpt2" "$@"

echo
echo "encode_text latency: saed --lm (the same checkpoint) --workers 1, an SAE 768 x 24576 on blocks.11.hook_resid_post"
cp tests/fixture/lm/gpt2_text_v300/tokenizer.json "$tmp/gpt2/"
"$build/tests/mkfixture" --out "$tmp/sae" --d-in 768 --d-sae 24576 --target-l0 64 \
  --hook-name blocks.11.hook_resid_post --model-name gpt2-random >/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$build/server/saed" --model "$tmp/sae" --lm "$tmp/gpt2" --workers 1 --quiet \
  --listen "127.0.0.1:$port" 2>"$tmp/saed.log" &
pid=$!
status=0
python3 - "$port" "$build/cli/lmbench" "$tmp/gpt2" <<'PY' || status=$?
import http.client, json, statistics, subprocess, sys, threading, time
port, lmbench, ck = int(sys.argv[1]), sys.argv[2], sys.argv[3]

def forward_alone():
    """lmbench's median forward pass at 1x128 (3 passes), in seconds."""
    out = subprocess.run([lmbench, "--lm", ck, "--batch", "1x128", "--seconds", "0.01"],
                         check=True, capture_output=True, text=True).stdout
    return float(out.strip().splitlines()[-1].split()[2]) / 1e3

def post(conn, body):
    conn.request("POST", "/v1/encode_text", body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200:
        sys.exit("encode_text: %d %s" % (r.status, data[:200]))
    return json.loads(data)

for _ in range(600):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        c.request("GET", "/v1/health")
        if c.getresponse().status == 200:
            break
    except OSError:
        time.sleep(0.2)
else:
    sys.exit("saed did not answer /v1/health in 2 minutes")
c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
# A text of exactly 128 tokens with the BOS: the longest prefix of a long one.
base = ("The quick brown fox jumps over the lazy dog; then it rests by the river. " * 8)
lo, hi = 1, len(base)
while lo < hi:
    mid = (lo + hi + 1) // 2
    n = len(post(c, json.dumps({"text": base[:mid], "top_k": 32}))["tokens"])
    lo, hi = (mid, hi) if n <= 128 else (lo, mid - 1)
body = json.dumps({"text": base[:lo], "top_k": 32})
n = len(post(c, body)["tokens"])
for _ in range(2):
    post(c, body)
one, fwd = [], []
for _ in range(10):
    # saed closes a connection left idle while lmbench runs: a fresh one,
    # opened by an untimed GET, for each timed request.
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("GET", "/v1/health")
    c.getresponse().read()
    t0 = time.perf_counter()
    post(c, body)
    one.append(time.perf_counter() - t0)
    fwd.append(forward_alone())
med, fmed = statistics.median(one), statistics.median(fwd)
print("forward pass alone (lmbench 1x128, BLAS threads 2): median %.1f ms over %d rounds" %
      (fmed * 1e3, len(fwd)))
print("encode_text, one client: %d tokens, median %.1f ms (min %.1f, max %.1f) over %d requests" %
      (n, med * 1e3, min(one) * 1e3, max(one) * 1e3, len(one)))
print("encode_text / forward alone: %.2f (median of the rounds' ratios; ratio of medians %.2f)" %
      (statistics.median(a / b for a, b in zip(one, fwd)), med / fmed))

def client(k, out):
    cc = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    for _ in range(4):
        t0 = time.perf_counter()
        post(cc, body)
        out.append(time.perf_counter() - t0)

lat = []
t0 = time.perf_counter()
th = [threading.Thread(target=client, args=(k, lat)) for k in range(4)]
for t in th:
    t.start()
for t in th:
    t.join()
wall = time.perf_counter() - t0
print("encode_text, 4 clients: %d requests in %.1f s: %.2f texts/s (one client: %.2f texts/s), median latency %.1f ms" %
      (len(lat), wall, len(lat) / wall, 1 / med, statistics.median(lat) * 1e3))
PY
kill -TERM "$pid" 2>/dev/null || true
wait "$pid" || true
pid=''
if [ "$status" -ne 0 ]; then cat "$tmp/saed.log" >&2; exit "$status"; fi
grep 'forward passes' "$tmp/saed.log" || true
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
