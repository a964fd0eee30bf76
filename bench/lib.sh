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
