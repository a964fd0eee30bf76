#!/usr/bin/env bash
# The run behind docs/PERFORMANCE.md's "The widest SAEs: the feature list at
# 1,048,576 features" (issue 19 point 4): GET /v1/features over an index of
# D features built by `sae index` (a synthetic d_in 16 model from mkfixture, a
# small Zipf corpus, explanations on a third of the features so sort=score
# and q= have data), each request timed by curl (time_total, ms) against
# GET /v1/health on the same daemon in the same run:
#   list    first page, offset D/2 and the last page, by every sort key in
#           both orders, alive=1, and full-text q= (a common and a rare word);
#           the first request of each and the median of REPEAT more
#   feature /v1/features/{i}: the first request after start (cold: saed runs
#           with --prerender-features off, so nothing is rendered before it),
#           the same feature again (warm: saed's reply cache), and the median
#           of 20 other features each asked once (rendered from SQLite)
#   start   seconds from saed's launch to its first /v1/health
#
#   bench/features_wide.sh [BUILD_DIR]
#   env: DIR (the inputs and the index, kept for reuse; default
#        BUILD_DIR/features-wide), D (1048576), ROWS (4000 tokens), REPEAT (5),
#        THREADS (saed --threads, nproc), MAX_STATE (sae index --max-state-bytes,
#        default sae's); DIR is kept (delete it when done)
# The index build holds ~5 GB with sae's default bound here (4 passes), ~2.5 GB
# with MAX_STATE=2000000000 (more passes): run it under the machine's
# big-memory lock where there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
build=${1:-build-release}
d=${D:-1048576} rows=${ROWS:-4000} repeat=${REPEAT:-5} threads=${THREADS:-$(nproc)}
dir=${DIR:-$build/features-wide}
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" --buildtype=release >/dev/null
fi
ninja -C "$build" cli/sae server/saed tests/mkfixture >/dev/null
mkdir -p "$dir"
model=$dir/model index=$dir/index.db

if [ ! -f "$index" ]; then
  t0=$(date +%s.%N)
  "$build/tests/mkfixture" --out "$model" --d-in 16 --d-sae "$d" --target-l0 32 \
    --activations "$dir/acts.safetensors" --rows "$rows" >/dev/null
  zipf_tokens "$rows" "$dir/tokens.jsonl"
  # A third of the features explained, one in 21 twice; scores in [-1, 1]
  # with 3 decimals (ties), one in ten unscored; two words of 40 each.
  python3 - "$d" "$dir/explanations.jsonl" <<'PY'
import json, random, sys
d, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(19)
words = ("cats dogs numbers dates names code brackets quotes verbs plurals negation "
         "questions french german spanish urls emails years months weekdays colours "
         "animals cities rivers kings math physics music sport food drinks tools cars "
         "trains ships planes weather feelings zebra").split()
with open(path, "w") as f:
    for i in range(0, d, 3):
        for _ in range(2 if i % 21 == 0 else 1):
            e = {"index": i, "description": "%s %s" % (rng.choice(words), rng.choice(words[:-1])),
                 "source": "bench"}
            if rng.random() >= 0.1:
                e["score"] = round(rng.uniform(-1, 1), 3)
            f.write(json.dumps(e) + "\n")
PY
  /usr/bin/time -f "index: %e s wall, %M KB peak RSS" "$build/cli/sae" index --model "$model" \
    --activations "$dir/acts.safetensors" --tokens "$dir/tokens.jsonl" \
    --explanations "$dir/explanations.jsonl" --out "$index" --quiet \
    ${MAX_STATE:+--max-state-bytes "$MAX_STATE"}
  echo "inputs and index written in $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.0f", b - a }') s"
fi

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
url=http://127.0.0.1:$port
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null' EXIT
t0=$(date +%s.%N)
"$build/server/saed" --model "$model" --index "$index" --listen "127.0.0.1:$port" \
  --threads "$threads" --quiet on --prerender-features off 2>"$dir/saed.log" &
pid=$!
for _ in $(seq 600); do
  curl -fs "$url/v1/health" >/dev/null 2>&1 && break
  sleep 0.1
done
start=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')

# ms PATH: one request's time_total in ms (fails on a non-200).
ms() { curl -fs -o /dev/null -w '%{time_total}\n' "$url$1" | awk '{ printf "%.2f", $1 * 1000 }'; }
# median PATH N: the median of N requests' ms.
median() {
  local i
  for i in $(seq "$2"); do ms "$1"; echo; done | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}

machine_header
echo "index: $index (d_sae $d, $(stat -c %s "$index") bytes); saed --threads $threads, up in $start s"
i=$(( (d / 2 + 12345) % d ))
cold=$(ms "/v1/features/$i")
warm=$(median "/v1/features/$i" 20)
other=$(for k in $(seq 20); do ms "/v1/features/$(( (i + k * 48611) % d ))"; echo; done |
  sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
health=$(median "/v1/health" 20)
printf "%-68s %9s %9s\n" request first "median"
printf "%-68s %9s %9s\n" "/v1/health" "" "$health"
printf "%-68s %9s %9s\n" "/v1/features/$i (cold: first after start)" "$cold" ""
printf "%-68s %9s %9s\n" "/v1/features/$i again (warm)" "" "$warm"
printf "%-68s %9s %9s\n" "/v1/features/{other i}, each once" "" "$other"
last=$((d - 50))
for sort in index density max_activation score; do
  for order in asc desc; do
    for off in 0 $((d / 2)) $last; do
      p="/v1/features?sort=$sort&order=$order&offset=$off&limit=50"
      printf "%-68s %9s %9s\n" "$p" "$(ms "$p")" "$(median "$p" "$repeat")"
    done
    p="/v1/features?sort=$sort&order=$order&alive=1&limit=50"
    printf "%-68s %9s %9s\n" "$p" "$(ms "$p")" "$(median "$p" "$repeat")"
  done
done
for q in cats zebra "cats+dogs"; do
  for sort in relevance score density; do
    p="/v1/features?q=$q&sort=$sort&limit=50"
    printf "%-68s %9s %9s\n" "$p" "$(ms "$p")" "$(median "$p" "$repeat")"
  done
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
