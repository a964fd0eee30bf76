#!/usr/bin/env bash
# shards.sh: the sharded index build exactly as the Kubernetes Jobs run it,
# as local processes, compared with one unsharded build.
#
#   tests/deploy/shards.sh --sae PATH (--model DIR --activations FILE --tokens FILE
#                          | --mkfixture PATH) [--shards N] [--parallel P]
#                          [--ranges R] [--options "..."] [--saed PATH]
#
# With --mkfixture, a d_in 64 x d_sae 256 model, 20,000 rows of activations
# and ~180 documents of tokens are made here.
# 1. sae index over the whole corpus -> ref.db, in the Indexed Job's
#    environment (its OPENBLAS_CORETYPE and --threads: the float arithmetic
#    must be the same for the two builds to be equal)
# 2. the script of deploy/k8s/indexing/index-shards-job.yaml, with that
#    manifest's environment (paths pointed at the given files, SHARDS=N,
#    FEATURE_RANGES=R), run once per JOB_COMPLETION_INDEX 0..N*R-1, P at a
#    time, into one folder
# 3. the script of merge-job.yaml over that folder -> merged.db
# 4. every table of merged.db equals ref.db's, row for row (sqlite3 CLI), as
#    do application_id and user_version
# Controls: the comparison tells ref.db from a single shard; the merge script
# refuses to run with a shard missing; on an AVX-512 CPU, one shard built
# with OpenBLAS's AVX-512 kernels instead of the Job's pinned Haswell ones
# changes the merge (why the Job pins them). With --saed, saed serves merged.db.
# Last line: "deploy-shards: P passed, F failed"; exit 1 on any failure.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
. "$here/lib.sh"

sae="" model="" acts="" tokens="" shards=4 ranges=1 parallel=2 options="" saed="" mkfixture=""
while [ $# -gt 0 ]; do
  case $1 in
    --sae) sae=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --activations) acts=$2; shift 2 ;;
    --tokens) tokens=$2; shift 2 ;;
    --shards) shards=$2; shift 2 ;;
    --ranges) ranges=$2; shift 2 ;;
    --parallel) parallel=$2; shift 2 ;;
    --options) options=$2; shift 2 ;;
    --saed) saed=$2; shift 2 ;;
    --mkfixture) mkfixture=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | grep '^#' | cut -c3-; exit 0 ;;
    *) echo "shards.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ -z "$sae" ] || { [ -z "$mkfixture" ] && { [ -z "$model" ] || [ -z "$acts" ] || [ -z "$tokens" ]; }; }; then
  echo "usage: shards.sh --sae PATH (--model DIR --activations FILE --tokens FILE | --mkfixture PATH)" >&2
  exit 2
fi
sae=$(readlink -f "$sae")

need_cmd sqlite3 sqlite3 || exit 1
{ need_cmd node nodejs && need_cmd npm npm; } || exit 1
if [ ! -d "$here/node_modules/yaml" ]; then
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null 2>&1) ||
    { echo "shards.sh: npm ci failed in tests/deploy" >&2; exit 1; }
fi

work=$(mktemp -d /tmp/saed-deploy-shards.XXXXXX)
saed_pid=""
cleanup() {
  [ -n "$saed_pid" ] && kill -KILL "$saed_pid" 2>/dev/null
  wait 2>/dev/null
  [ -n "${KEEP_WORK:-}" ] || rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$work/bin" "$work/index"
ln -s "$sae" "$work/bin/sae"   # the Jobs call `sae` from PATH, as in the image

if [ -z "$model" ]; then
  model="$work/data/model" acts="$work/data/acts.safetensors" tokens="$work/data/tokens.jsonl"
  mkdir -p "$work/data"
  "$mkfixture" --out "$model" --arch standard --d-in 64 --d-sae 256 --target-l0 16 \
    --activations "$acts" --rows 20000 >"$work/mkfixture.log" 2>&1 ||
    { cat "$work/mkfixture.log" >&2; echo "shards.sh: mkfixture failed" >&2; exit 1; }
  # Documents of 20..199 tokens adding up to the 20,000 rows.
  node -e '
    let s = 3; const r = () => { s = (s * 1103515245 + 12345) % 2147483648; return s / 2147483648; };
    const words = ["The", " cat", " sat", " on", " the", " mat", ".", " a", " dog", " ran", " caf\u00e9", "\n", " 42"];
    const out = []; let left = 20000, d = 0;
    while (left > 0) {
      const n = Math.min(left, 20 + Math.floor(r() * 180)), t = [];
      for (let i = 0; i < n; i++) t.push(words[Math.floor(r() * words.length)]);
      out.push(JSON.stringify({ id: "doc-" + d++, tokens: t })); left -= n;
    }
    require("fs").writeFileSync(process.argv[1], out.join("\n") + "\n");' "$tokens"
fi
model=$(readlink -f "$model")
acts=$(readlink -f "$acts")
tokens=$(readlink -f "$tokens")

# ---- 1. unsharded, in the Job's environment ---------------------------------
info=$(node "$here/jobscript.mjs" "$root/deploy/k8s/indexing/index-shards-job.yaml" "$work/index-job") ||
  { fail "read the Indexed Job" "jobscript.mjs failed"; summary deploy-shards; exit 1; }
node "$here/jobscript.mjs" "$root/deploy/k8s/indexing/merge-job.yaml" "$work/merge-job" >/dev/null ||
  { fail "read the merge Job" "jobscript.mjs failed"; summary deploy-shards; exit 1; }
echo "index Job as written: $info; run here with SHARDS=$shards FEATURE_RANGES=$ranges, $parallel at a time"
mapfile -t index_env <"$work/index-job.env"
mapfile -t merge_env <"$work/merge-job.env"
# The manifests' values, then what differs outside the cluster: where the
# volumes are, how many shards, and PATH to the sae under test.
overrides=(PATH="$work/bin:/usr/bin:/bin" HOME="$work" SHARDS="$shards" FEATURE_RANGES="$ranges" INDEX_RUN=test-run
  SAE_MODEL="$model" SAE_ACTIVATIONS="$acts" SAE_TOKENS="$tokens" SAE_INDEX_OPTIONS="$options"
  SHARD_DIR="$work/index/shards" INDEX_OUT="$work/index/index.db" WAIT_SECONDS=0)

t0=$(date +%s.%N)
# The shard script itself with its --shard line dropped and --out pointed at
# ref.db: same model, corpus, options, --threads and OPENBLAS_CORETYPE.
sed -e '/--shard /d' -e 's#--out "[^"]*"#--out "$REF"#' "$work/index-job.sh" >"$work/ref-job.sh"
if grep -q -- '--shard' "$work/ref-job.sh" || ! grep -q -- '--out "$REF"' "$work/ref-job.sh"; then
  fail "derive the unsharded command from the Job's script" "$(cat "$work/ref-job.sh" | tr '\n' '|')"
  summary deploy-shards
  exit 1
fi
if env -i "${index_env[@]}" "${overrides[@]}" REF="$work/ref.db" /bin/sh -c "$(cat "$work/ref-job.sh")" \
     >"$work/ref.log" 2>&1; then
  pass "unsharded sae index ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s)"
else
  fail "unsharded sae index" "$(tail -3 "$work/ref.log" | tr '\n' '|')"
  summary deploy-shards
  exit 1
fi

# ---- 2. the Indexed Job, as processes ---------------------------------------------
t0=$(date +%s.%N)
running=()
shard_fail=0
cells=$((shards * ranges))
for ((i = 0; i < cells; i++)); do
  env -i "${index_env[@]}" "${overrides[@]}" JOB_COMPLETION_INDEX="$i" \
    /bin/sh -c "$(cat "$work/index-job.sh")" >"$work/shard-$i.log" 2>&1 &
  running+=($!)
  if [ ${#running[@]} -ge "$parallel" ]; then
    wait "${running[0]}" || shard_fail=$((shard_fail + 1))
    running=("${running[@]:1}")
  fi
done
for p in "${running[@]}"; do wait "$p" || shard_fail=$((shard_fail + 1)); done
shard_time=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
if [ "$shard_fail" -eq 0 ]; then pass "$cells shard processes ($ranges feature ranges x $shards slices) (the Indexed Job's script) exit 0 (${shard_time} s)"
else fail "shard processes exit 0" "$shard_fail of $shards failed: $(tail -2 "$work"/shard-*.log | tr '\n' '|')"; fi
n=$(find "$work/index/shards/test-run" -name 'shard-*.db' | wc -l)
if [ "$n" -eq "$cells" ]; then pass "one shard file per completion index in one folder ($n)"
else fail "one shard file per completion index" "$n files for $cells shards"; fi

# ---- 3. the merge Job -----------------------------------------------------------
t0=$(date +%s.%N)
if env -i "${merge_env[@]}" "${overrides[@]}" /bin/sh -c "$(cat "$work/merge-job.sh")" \
     >"$work/merge.log" 2>&1; then
  pass "the merge Job's script exits 0 ($(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}') s)"
else
  fail "the merge Job's script" "$(tail -3 "$work/merge.log" | tr '\n' '|')"
fi

# ---- 4. compare --------------------------------------------------------------------
# dump DB: the index's content in a deterministic order (dump-index.sh).
dump() { "$here/dump-index.sh" "$1"; }
same_index() { # a b label -> 0 if equal; the first differences in $work/diff-LABEL
  dump "$1" >"$work/dump-a" 2>&1
  dump "$2" >"$work/dump-b" 2>&1
  diff "$work/dump-a" "$work/dump-b" >"$work/diff-$3"
}
if [ -f "$work/index/index.db" ]; then
  rows=$(sqlite3 -readonly "$work/ref.db" "SELECT (SELECT count(*) FROM features) || ' features, ' ||
         (SELECT sum(n) FROM examples WHERE id % 4 < 2) || ' examples, ' || (SELECT count(*) FROM documents) || ' documents'")
  if same_index "$work/ref.db" "$work/index/index.db" merged; then
    pass "merged index = unsharded index, every table row for row ($rows)"
  else
    fail "merged index = unsharded index" "$(head -8 "$work/diff-merged" | cut -c1-160 | tr '\n' '|')"
  fi
  if [ "$(sqlite3 -readonly "$work/index/index.db" 'PRAGMA integrity_check')" = ok ]; then
    pass "merged index passes PRAGMA integrity_check"
  else fail "merged index passes PRAGMA integrity_check" "not ok"; fi
  ls -l "$work/ref.db" "$work/index/index.db" | awk '{print "  " $5 " bytes  " $NF}'
fi

# Controls: the comparison must see a difference where there is one, and the
# merge must refuse an incomplete set of shards.
if [ -f "$work/index/shards/test-run/shard-0.db" ]; then
  if same_index "$work/ref.db" "$work/index/shards/test-run/shard-0.db" control; then
    fail "control: the comparison tells the full index from shard 0" "reported equal"
  else pass "control: the comparison tells the full index from shard 0"; fi
  mkdir -p "$work/partial/test-run"
  for ((i = 1; i < cells; i++)); do cp "$work/index/shards/test-run/shard-$i.db" "$work/partial/test-run/"; done
  if env -i "${merge_env[@]}" "${overrides[@]}" SHARD_DIR="$work/partial" INDEX_OUT="$work/partial/index.db" \
       /bin/sh -c "$(cat "$work/merge-job.sh")" >"$work/partial.log" 2>&1; then
    fail "control: the merge Job refuses a missing shard" "it merged $((shards - 1)) of $shards"
  elif [ -e "$work/partial/index.db" ]; then
    fail "control: the merge Job refuses a missing shard" "it failed but left index.db"
  else
    pass "control: the merge Job refuses a missing shard ($(head -1 "$work/partial.log"))"
  fi
fi

# Why the Job pins OPENBLAS_CORETYPE: on a CPU with AVX-512, one shard built
# with OpenBLAS's AVX-512 kernels (as on another node of a mixed cluster)
# makes the merge differ from the unsharded index in the last bits.
if grep -q -m1 avx512f /proc/cpuinfo && [ -f "$work/index/shards/test-run/shard-0.db" ]; then
  mkdir -p "$work/mixed/test-run"
  for ((i = 1; i < cells; i++)); do cp "$work/index/shards/test-run/shard-$i.db" "$work/mixed/test-run/"; done
  env -i "${index_env[@]}" "${overrides[@]}" OPENBLAS_CORETYPE=SkylakeX SHARD_DIR="$work/mixed" JOB_COMPLETION_INDEX=0 \
    /bin/sh -c "$(cat "$work/index-job.sh")" >"$work/mixed.log" 2>&1 &&
  env -i "${merge_env[@]}" "${overrides[@]}" SHARD_DIR="$work/mixed" INDEX_OUT="$work/mixed/index.db" \
    /bin/sh -c "$(cat "$work/merge-job.sh")" >>"$work/mixed.log" 2>&1
  if [ ! -f "$work/mixed/index.db" ]; then
    fail "control: a shard on AVX-512 kernels" "build failed: $(tail -2 "$work/mixed.log" | tr '\n' '|')"
  elif same_index "$work/ref.db" "$work/mixed/index.db" mixed; then
    skip "control: a shard on AVX-512 kernels changes the merged index" "it did not on this CPU"
  else
    pass "control: a shard on AVX-512 kernels changes the merged index ($(grep -c '^<' "$work/diff-mixed") rows differ): the pin matters"
  fi
fi

# ---- optional: saed serves the merged index -----------------------------------
if [ -n "$saed" ] && [ -f "$work/index/index.db" ]; then
  need_cmd curl curl || exit 1
  port=18199
  "$saed" --model "$model" --index "$work/index/index.db" --listen "127.0.0.1:$port" --threads 1 --quiet \
    >"$work/saed.log" 2>&1 &
  saed_pid=$!
  ok=""
  for _ in $(seq 1 1200); do  # until it answers or exits (2 min: a hang guard)
    curl -fsS -m 1 "http://127.0.0.1:$port/v1/health" >/dev/null 2>&1 && { ok=1; break; }
    kill -0 "$saed_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -n "$ok" ] && curl -fsS -m 5 "http://127.0.0.1:$port/v1/features/0" | grep -q '"density"'; then
    pass "saed loads the merged index and serves GET /v1/features/0"
  else
    fail "saed serves the merged index" "$(tail -3 "$work/saed.log" | tr '\n' '|')"
  fi
  kill -TERM "$saed_pid" 2>/dev/null
  wait "$saed_pid" 2>/dev/null
  saed_pid=""
fi

summary deploy-shards
