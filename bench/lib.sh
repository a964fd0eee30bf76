# bench/lib.sh: what the benchmark scripts share; sourced, not run.

# wait_quiet NAME: waits (up to $WAIT seconds, default 600) for the 1-minute
# load average to drop under 0.5, since other work skews the figures; says
# so on stderr, naming the script, if it never does.
wait_quiet() {
  local name=$1 wait_s=${WAIT:-600} waited=0 load
  while :; do
    load=$(cut -d' ' -f1 /proc/loadavg)
    if awk -v l="$load" 'BEGIN { exit !(l < 0.5) }'; then return 0; fi
    if [ "$waited" -ge "$wait_s" ]; then
      echo "$name: load average still $load after ${wait_s}s; measuring anyway" >&2
      return 0
    fi
    sleep 10
    waited=$((waited + 10))
  done
}

# machine_header: the date and the CPU the figures below it come from.
machine_header() {
  echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)"
}

# zipf_tokens N PATH: a tokens file (JSON Lines, CONTRACT 3) of N tokens in
# documents of 128..1024 tokens drawn from a 50k-word Zipf vocabulary, the
# same for the same N.
zipf_tokens() {
  python3 - "$1" "$2" <<'PY'
import json, random, sys
n, path = int(sys.argv[1]), sys.argv[2]
rng = random.Random(n)
words = [" w%d" % i for i in range(50000)]
weights = [1.0 / (i + 1) for i in range(50000)]
with open(path, "w") as f:
    done, d = 0, 0
    while done < n:
        k = min(rng.randint(128, 1024), n - done)
        f.write(json.dumps({"id": "doc-%d" % d, "tokens": rng.choices(words, weights, k=k)}) + "\n")
        done += k
        d += 1
PY
}

# feature_index BUILD WORK ROWS: writes the benchmark's model and index, a
# 768 x 24576 fixture and `sae index` over ROWS Zipf tokens, as WORK/model
# and WORK/index.db (bench/features.sh, bench/coldstart.sh).
feature_index() {
  local build=$1 work=$2 rows=$3
  "$build/tests/mkfixture" --out "$work/model" --d-in 768 --d-sae 24576 --target-l0 64 --seed 1 \
    --activations "$work/acts.safetensors" --rows "$rows" --act-seed 7 >/dev/null
  zipf_tokens "$rows" "$work/tokens.jsonl"
  "$build/cli/sae" index --model "$work/model" --activations "$work/acts.safetensors" \
    --tokens "$work/tokens.jsonl" --out "$work/index.db" 2>"$work/index.log"
}

# feature_bench_inputs NAME BUILD ROWS: what bench/features.sh and
# bench/coldstart.sh (NAME) start from: wrk installed, BUILD built (set up as
# a release build when new), a scratch folder $work removed on exit unless
# KEEP is set (the daemon $pid, when set, is killed first), and $model,
# $index and $d_sae: MODEL and INDEX from the environment, else a fixture
# index of ROWS tokens written by feature_index.
feature_bench_inputs() {
  local name=$1 rows=$3
  build=$2
  command -v wrk >/dev/null || { echo "$name.sh: wrk is not installed (apt-get install wrk)" >&2; exit 1; }
  if [ ! -f "$build/build.ninja" ]; then
    meson setup "$build" --buildtype=release >/dev/null
  fi
  ninja -C "$build" cli/sae server/saed tests/mkfixture >/dev/null
  work=$(mktemp -d "/tmp/saed-bench-$name.XXXXXX")
  pid=""
  trap feature_bench_cleanup EXIT
  model=${MODEL:-} index=${INDEX:-}
  if [ -z "$model" ] || [ -z "$index" ]; then
    model=$work/model index=$work/index.db
    feature_index "$build" "$work" "$rows"
  fi
  d_sae=$(sqlite3 -readonly "$index" "SELECT value FROM meta WHERE key = 'd_sae'")
}
# feature_bench_cleanup: the exit trap feature_bench_inputs sets.
feature_bench_cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; fi
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
