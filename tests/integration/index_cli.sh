#!/usr/bin/env bash
# index_cli.sh: `sae index` and `sae merge` as processes, as users and the
# Kubernetes Jobs run them: exit codes (0, 1 with one "sae: error:" line
# naming the file, 2 for usage), progress on stderr, a byte-identical rebuild,
# SIGKILL while the temporary file exists and while it is being written (the
# old target stays byte-identical; the next run removes the stale file),
# shards merged, merge refusals; feature-range shards, a grid of ranges x
# document shards and --max-state-bytes passes equal to the unsharded index
# (every table, and every feature route saed serves from it).
# Env: SAE_BIN, SAED_BIN, MKFIXTURE, SAE_TEST_TMP, SAE_SOURCE_ROOT. Last line: "index-cli: P passed, F failed".
set -uo pipefail
sae=${SAE_BIN:?} mkf=${MKFIXTURE:?} saed=${SAED_BIN:?} root=${SAE_SOURCE_ROOT:?}
work=$(mktemp -d "${SAE_TEST_TMP:-/tmp}/index-cli.XXXXXX")
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
pass() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1${2:+: $2}"; }
check() { if eval "$2"; then pass "$1"; else fail "$1" "${3:-}"; fi; }

# A corpus: documents of 0..60 tokens adding up to ROWS rows.
tokens() { # rows path
  python3 - "$1" "$2" <<'PY'
import json, random, sys
n, path = int(sys.argv[1]), sys.argv[2]
rng, done, d = random.Random(n), 0, 0
with open(path, "w") as f:
    while done < n:
        k = min(rng.randint(0, 60), n - done)
        f.write(json.dumps({"id": "d%d" % d, "tokens": [" t%d" % rng.randint(0, 999) for _ in range(k)]}) + "\n")
        done, d = done + k, d + 1
PY
}
cd "$work"
"$mkf" --out small --d-in 16 --d-sae 64 --target-l0 8 --activations small.safetensors --rows 600 >/dev/null
tokens 600 small.jsonl
"$mkf" --out big --d-in 32 --d-sae 512 --target-l0 32 --activations big.safetensors --rows 12000 >/dev/null
tokens 12000 big.jsonl

# ---- usage and failures
"$sae" index --model small >out 2>err; rc=$?
check "missing flags: exit 2" '[ $rc -eq 2 ] && grep -q "required" err'
"$sae" index --model small --activations small.safetensors --tokens small.jsonl --out x.db --top -1 2>err; rc=$?
check "bad --top: exit 2" '[ $rc -eq 2 ] && grep -q -- "--top" err'
"$sae" index --model small --activations small.safetensors --tokens small.jsonl --out x.db --shard 3/3 2>err; rc=$?
check "bad --shard: exit 2" '[ $rc -eq 2 ] && grep -q -- "--shard" err'
head -n 3 small.jsonl >short.jsonl
"$sae" index --model small --activations small.safetensors --tokens short.jsonl --out x.db 2>err; rc=$?
check "token count mismatch: exit 1, one line naming the file" \
  '[ $rc -eq 1 ] && [ "$(grep -c "^sae: error: .*short.jsonl.*600 rows" err)" -eq 1 ] && [ ! -e x.db ]' "$(cat err)"
{ head -n 2 small.jsonl; echo '{"tokens": ["a",]}'; tail -n +3 small.jsonl; } >bad.jsonl
"$sae" index --model small --activations small.safetensors --tokens bad.jsonl --out x.db 2>err; rc=$?
check "malformed line: exit 1 naming line 3" '[ $rc -eq 1 ] && grep -q "bad.jsonl: line 3" err' "$(cat err)"
"$sae" index --model small --activations big.safetensors --tokens big.jsonl --out x.db 2>err; rc=$?
check "d_in mismatch: exit 1 naming the activations" \
  '[ $rc -eq 1 ] && grep -q "big.safetensors: activations have d_in 32, the model.s d_in is 16" err' "$(cat err)"
cp small.jsonl own.jsonl
"$sae" index --model small --activations small.safetensors --tokens own.jsonl --out ./own.jsonl 2>err; rc=$?
check "--out the tokens file: exit 2, tokens kept" '[ $rc -eq 2 ] && cmp -s small.jsonl own.jsonl' "$(cat err)"
echo '{"index": 64, "description": "x"}' >expl.jsonl
"$sae" index --model small --activations small.safetensors --tokens small.jsonl --out x.db --explanations expl.jsonl 2>err; rc=$?
check "explanation out of range: exit 1" '[ $rc -eq 1 ] && grep -q "expl.jsonl: line 1: index 64 out of range" err' "$(cat err)"
"$sae" index --model small --activations small.safetensors --tokens small.jsonl --out nodir/x.db 2>err; rc=$?
check "missing output folder: exit 1" '[ $rc -eq 1 ] && grep -q "does not exist" err' "$(cat err)"

# Non-finite activations in two blocks (rows 300 and 560; blocks of 256):
# the first in row order is named, however many threads encode in parallel.
python3 - small.safetensors nan.safetensors <<'PY'
import struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
base = 8 + struct.unpack("<Q", b[:8])[0]
for row, col in ((300, 5), (560, 0)):
    b[base + (row * 16 + col) * 4:base + (row * 16 + col) * 4 + 4] = struct.pack("<f", float("nan"))
open(sys.argv[2], "wb").write(b)
PY
for t in 1 2 4; do
  "$sae" index --threads $t --model small --activations nan.safetensors --tokens small.jsonl --out x.db 2>err; rc=$?
  check "NaN activations, --threads $t: exit 1 naming row 300" \
    '[ $rc -eq 1 ] && grep -q "activations row 300: value 5 is not finite" err && [ ! -e x.db ]' "$(cat err)"
done

# ---- a build, and the same build again
"$sae" index --model small --activations small.safetensors --tokens small.jsonl --out a.db 2>err; rc=$?
check "build: exit 0 with progress and phase times" \
  '[ $rc -eq 0 ] && grep -q "tokens/s" err && grep -q "^index: wrote a.db" err && [ -s a.db ]' "$(cat err)"
"$sae" index --model small --activations small.safetensors --tokens small.jsonl --out b.db --quiet 2>err; rc=$?
check "rebuild is byte-identical, --quiet is quiet" '[ $rc -eq 0 ] && cmp -s a.db b.db && [ ! -s err ]'
check "no temporary file left" '[ -z "$(ls -A | grep "\.tmp-")" ]'
# Each encoding thread runs single-threaded BLAS, so the statistics and
# examples do not depend on --threads (the neighbours' GEMMs use the BLAS
# threads and may differ in the last bits between thread counts).
dumpx() { sqlite3 -readonly "$1" "SELECT * FROM meta; SELECT * FROM features; SELECT id, n, hex(data) FROM examples; SELECT * FROM vocab; SELECT * FROM documents"; }
for t in 1 3; do
  "$sae" index --threads $t --model big --activations big.safetensors --tokens big.jsonl --out "th$t.db" --quiet 2>err
done
check "features, examples, vocabulary: the same with --threads 1 and 3" \
  '[ -s th1.db ] && [ "$(dumpx th1.db | md5sum)" = "$(dumpx th3.db | md5sum)" ]'

# ---- SIGKILL mid-build: once the temporary file exists, and while it grows
"$sae" index --model big --activations big.safetensors --tokens big.jsonl --out t.db --quiet 2>err
cp t.db t.orig
# A poll sees the temporary file every few ms, and a build of this corpus
# writes for some tens of ms. When the build ends before the poll saw its file
# pass the size, the same kill is tried again with --context doubled (about
# twice the bytes to write, so a longer window), up to --context 256: the work
# grows until the kill lands, whatever the machine's speed.
kills=0
for grow in -1 4096 1048576; do  # -1: as soon as the file exists
  landed=0
  for ctx in 8 16 32 64 128 256; do
    kb=(--model big --activations big.safetensors --tokens big.jsonl --seed 9 --context "$ctx" --quiet)
    "$sae" index "${kb[@]}" --out t.db 2>/dev/null &
    pid=$!
    tmp=".t.db.tmp-$pid"
    while kill -0 $pid 2>/dev/null; do
      size=$(stat -c %s "$tmp" 2>/dev/null || echo -2)
      [ "$size" -gt "$grow" ] && break
      sleep 0.005
    done
    kill -KILL $pid 2>/dev/null
    { wait $pid; } 2>/dev/null; st=$?
    if [ $st -eq 137 ] && ! cmp -s t.db t.orig; then
      # Killed after the rename, while the process freed its memory: the
      # complete new target (builds are deterministic).
      "$sae" index "${kb[@]}" --out t9.db 2>/dev/null
      check "killed after the rename (> $grow bytes, --context $ctx): the complete new target" 'cmp -s t.db t9.db'
      cp t.orig t.db
    elif [ $st -eq 137 ]; then
      landed=1
      check "killed with the temporary file at > $grow bytes (--context $ctx): target byte-identical, temporary file left" \
        'cmp -s t.db t.orig && [ -e "$tmp" ]'
      break
    else
      check "build finished before the kill (> $grow bytes, --context $ctx): a complete new target" '[ $st -eq 0 ] && ! cmp -s t.db t.orig'
      cp t.orig t.db
    fi
  done
  kills=$((kills + landed))
done
check "a kill landed mid-build at each of the 3 points" '[ $kills -eq 3 ]'
"$sae" index --model small --activations small.safetensors --tokens small.jsonl --out t.db --quiet 2>err; rc=$?
check "next run succeeds and removes the stale temporary files" '[ $rc -eq 0 ] && [ -z "$(ls -A | grep "^\.t\.db\.tmp-")" ]' "$(ls -A)"

# ---- shards and merge
for i in 0 1 2; do
  "$sae" index --model small --activations small.safetensors --tokens small.jsonl --out "s$i.db" --shard "$i/3" --quiet || fail "shard $i"
done
"$sae" merge --out m.db s2.db s0.db s1.db 2>err; rc=$?
check "merge of 3 shards: exit 0" '[ $rc -eq 0 ] && [ -s m.db ]' "$(cat err)"
"$sae" merge --out m2.db s0.db s2.db 2>err; rc=$?
check "merge with a shard missing: exit 1" '[ $rc -eq 1 ] && grep -q "shard 1/3 is missing" err && [ ! -e m2.db ]' "$(cat err)"
"$sae" merge --out m2.db s0.db a.db 2>err; rc=$?
check "merge of a non-shard: exit 1 naming it" '[ $rc -eq 1 ] && grep -q "a.db: not a shard" err' "$(cat err)"
"$sae" merge s0.db 2>err; rc=$?
check "merge without --out: exit 2" '[ $rc -eq 2 ]'

# ---- a BF16 model: encoded on its 16-bit kernel (--compute native) or converted (f32)
"$mkf" --out half --d-in 16 --d-sae 64 --target-l0 8 --dtype BF16 >/dev/null
for c in native f32; do
  "$sae" index --model half --activations small.safetensors --tokens small.jsonl \
    --out half-$c.db --correlations --compute $c --quiet 2>err; rc=$?
  check "BF16 model, --compute $c, with the dashboards' W_dec: exit 0" '[ $rc -eq 0 ] && [ -s half-$c.db ]' "$(cat err)"
done
"$sae" index --model half --activations small.safetensors --tokens small.jsonl --out x.db --compute bf16 2>err; rc=$?
check "--compute bf16: exit 2 naming the choices" '[ $rc -eq 2 ] && grep -q "native or f32" err' "$(cat err)"

# ---- feature-range shards, a grid of ranges x document shards, passes
# dump DB: every table with its rows sorted by every column, as the
# Kubernetes build's test compares them (tests/deploy/dump-index.sh).
dump() { "$root/tests/deploy/dump-index.sh" "$1"; }
same_dump() { dump "$1" >dump-a; dump "$2" >dump-b; cmp -s dump-a dump-b; }
# routes DB...: saed over each index; every feature route of every feature
# (the feature, its examples, the first example of each kind, its vector,
# the Neuronpedia route) and the feature list, the same from all of them.
routes() {
  local pids="" ports="" db pid port
  for db in "$@"; do
    "$saed" --model small --index "$db" --listen 127.0.0.1:0 --model-name m --hook-name h 2>"saed-$db.err" &
    pid=$!; pids="$pids $pid"; port=
    for _ in $(seq 100); do port=$(grep -o "127.0.0.1:[0-9]*" "saed-$db.err" | head -1); [ -n "$port" ] && break; sleep 0.1; done
    ports="$ports $port"
  done
  python3 - $ports <<'PY'
import sys, urllib.request, urllib.error
ports = sys.argv[1:]
def get(port, path):
    try:
        with urllib.request.urlopen("http://%s%s" % (port, path)) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
paths = ["/v1/features?limit=1000", "/v1/features?sort=density&limit=1000"]
for i in range(64):
    paths += ["/v1/features/%d" % i, "/v1/features/%d/examples" % i,
              "/v1/features/%d/examples/top/0" % i, "/v1/features/%d/examples/quantile/0" % i,
              "/v1/features/%d/vector" % i, "/api/feature/m/h/%d" % i]
ok = 0
for p in paths:
    replies = [get(port, p) for port in ports]
    if any(r != replies[0] for r in replies):
        print("differs: %s: %s" % (p, " vs ".join(repr(r)[:100] for r in replies)))
        sys.exit(1)
    ok += replies[0][0] == 200
print("%d routes, %d answered 200" % (len(paths), ok))
PY
  local rc=$?
  for pid in $pids; do kill "$pid"; wait "$pid" 2>/dev/null; done
  return $rc
}
build() { "$sae" index --model small --activations small.safetensors --tokens small.jsonl --quiet "$@"; }
build --out ref.db || fail "unsharded build"
build --out f0.db --features 0:20 && build --out f1.db --features 20:64 || fail "range shards"
"$sae" merge --out fm.db f1.db f0.db 2>err; rc=$?
check "merge of 2 feature-range shards: exit 0" '[ $rc -eq 0 ]' "$(cat err)"
check "range shards merged = the unsharded index, every table row for row" 'same_dump ref.db fm.db' "$(diff dump-a dump-b 2>&1 | head -5)"
check "control: the comparison tells a range shard from the whole index" '! same_dump ref.db f0.db'
for r in 0:33 33:64; do for i in 0 1; do
  build --out "g${r%%:*}-$i.db" --features "$r" --shard "$i/2" || fail "grid shard $r $i/2"
done; done
"$sae" merge --out gm.db g33-1.db g0-0.db g33-0.db g0-1.db 2>err; rc=$?
check "merge of 2 ranges x 2 document shards: exit 0" '[ $rc -eq 0 ]' "$(cat err)"
check "grid merged = the unsharded index, every table row for row" 'same_dump ref.db gm.db' "$(diff dump-a dump-b 2>&1 | head -5)"
"$sae" index --model small --activations small.safetensors --tokens small.jsonl --out pm.db --max-state-bytes 100000 2>err; rc=$?
npass=$(grep -c "^index: pass [0-9]*/" err)
check "a tiny --max-state-bytes: several passes, shown in progress ($npass)" '[ $rc -eq 0 ] && [ "$npass" -gt 2 ] && grep -q "pass 1/$npass: features 0:" err' "$(head -3 err)"
check "passes = the unsharded index, every table row for row" 'same_dump ref.db pm.db' "$(diff dump-a dump-b 2>&1 | head -5)"
check "passes leave no pass files" '[ -z "$(ls -A | grep "pm.db.pass-")" ]' "$(ls -A)"
check "saed: every feature route the same over the unsharded, range, grid and passes indexes" 'routes ref.db fm.db gm.db pm.db >out 2>&1' "$(tail -2 out)"
build --out seed.db --seed 7 || fail "build with --seed 7"
check "control: saed's routes tell a rebuilt index with another --seed" '! routes ref.db seed.db >out 2>&1' "$(tail -1 out)"
# Every architecture's range encode: the column sub-product (standard,
# JumpReLU, gated, F32 and BF16; a transposed W_enc in the sparsify layout),
# the full encode keeping the range (TopK).
for arch in "jumprelu" "gated" "topk --k 8" "standard --sparsify" "standard --dtype BF16"; do
  a=${arch%% *}; a=$a${arch#"$a"}; a=$(echo "$a" | tr -cd 'a-zA-Z0-9')
  "$mkf" --out "m-$a" --arch $arch --d-in 16 --d-sae 64 --target-l0 8 --activations "m-$a.safetensors" --rows 600 >/dev/null
  for r in "" 0:21 21:50 50:64; do
    "$sae" index --model "m-$a" --activations "m-$a.safetensors" --tokens small.jsonl --quiet \
      --out "m-$a${r:+-${r%%:*}}.db" ${r:+--features $r} || fail "build $a ${r:-whole}"
  done
  "$sae" merge --out "m-$a-m.db" "m-$a-50.db" "m-$a-0.db" "m-$a-21.db" 2>err
  check "$arch: 3 range shards merged = the unsharded index" "same_dump m-$a.db m-$a-m.db" "$(cat err; diff dump-a dump-b 2>&1 | head -5)"
done
# The column sub-GEMM against each BLAS kernel family: OpenBLAS cuts columns
# into panels of its unroll width and finishes with a tail kernel that
# rounds differently (Haswell's did, for a range ending mid-panel), so the
# range's block is widened to 96-column boundaries. Uneven ranges, d_sae 256;
# 2817 rows = 11 blocks of 256 and one of 1 row (the sgemv path).
"$mkf" --out wide --d-in 64 --d-sae 256 --target-l0 16 --activations wide.safetensors --rows 2817 >/dev/null
tokens 2817 wide.jsonl
for ct in Haswell Sandybridge SkylakeX; do
  w() { OPENBLAS_CORETYPE=$ct "$sae" index --model wide --activations wide.safetensors --tokens wide.jsonl --threads 1 --quiet "$@"; }
  w --out "w-$ct.db" || fail "build $ct"
  for r in 0:37 37:128 128:201 201:256; do w --out "w-$ct-${r%%:*}.db" --features "$r" || fail "build $ct $r"; done
  "$sae" merge --out "w-$ct-m.db" "w-$ct-0.db" "w-$ct-37.db" "w-$ct-128.db" "w-$ct-201.db" 2>err
  check "OPENBLAS_CORETYPE=$ct: ranges 0:37 37:128 128:201 201:256 merged = the unsharded index" "same_dump w-$ct.db w-$ct-m.db" "$(cat err; diff dump-a dump-b 2>&1 | head -3)"
done
# The 16-bit kernels' column range (sae_gemm_half_cols, widened to 64
# columns) on every kernel this CPU has: d_sae 200 ends mid-tile (avx2's
# plain-C tail), ranges start and end unaligned, 2817 rows end in a 1-row
# block (the one-row kernels); passes forced by a tiny --max-state-bytes too.
for dt in BF16 F16; do
  "$mkf" --out "h$dt" --dtype $dt --d-in 64 --d-sae 200 --target-l0 16 --activations "h$dt.safetensors" --rows 2817 >/dev/null
  kerns="best avx2 c"; [ $dt = F16 ] && kerns="best c"
  for kern in $kerns; do
    tag="$dt-$kern"; [ $kern = best ] && kern=
    h() { SAE_KERNEL=$kern "$sae" index --model "h$dt" --activations "h$dt.safetensors" --tokens wide.jsonl --threads 1 --quiet "$@"; }
    h --out "h-$tag.db" || fail "build $tag"
    for r in 0:37 37:130 130:199 199:200; do h --out "h-$tag-${r%%:*}.db" --features "$r" || fail "build $tag $r"; done
    "$sae" merge --out "h-$tag-m.db" "h-$tag-199.db" "h-$tag-0.db" "h-$tag-37.db" "h-$tag-130.db" 2>err
    check "$dt, kernel ${kern:-best}: ranges 0:37 37:130 130:199 199:200 merged = the unsharded index" "same_dump h-$tag.db h-$tag-m.db" "$(cat err; diff dump-a dump-b 2>&1 | head -3)"
    SAE_KERNEL=$kern "$sae" index --model "h$dt" --activations "h$dt.safetensors" --tokens wide.jsonl --threads 1 --out "h-$tag-p.db" --max-state-bytes 600000 2>err || fail "passes $tag"
    npass=$(grep -c "^index: pass [0-9]*/" err)
    check "$dt, kernel ${kern:-best}: $npass passes = the unsharded index" "[ $npass -gt 1 ] && same_dump h-$tag.db h-$tag-p.db" "$(diff dump-a dump-b 2>&1 | head -3)"
  done
done
"$saed" --model small --index f1.db --listen 127.0.0.1:0 2>err; rc=$?
check "saed refuses to serve a feature-range shard, saying to merge it" '[ $rc -ne 0 ] && grep -q "f1.db: a feature-range shard (features 20:64 of 64)" err' "$(cat err)"
"$sae" merge --out bad.db f0.db g0-0.db g0-1.db f1.db 2>err; rc=$?
check "merge refuses overlapping ranges, naming both files" '[ $rc -eq 1 ] && grep -q "g0-0.db (features 0:33) overlaps f0.db (features 0:20)" err && [ ! -e bad.db ]' "$(cat err)"
"$sae" merge --out bad.db g0-0.db g0-1.db 2>err; rc=$?
check "merge refuses a missing range, naming the file before it" '[ $rc -eq 1 ] && grep -q "features 33:64 are in no file (g0-0.db ends at 33)" err && [ ! -e bad.db ]' "$(cat err)"
"$sae" merge --out bad.db g0-0.db g33-0.db g33-1.db 2>err; rc=$?
check "merge refuses a range missing a document shard" '[ $rc -eq 1 ] && grep -q "shard 1/2 of features 0:33 is missing" err && [ ! -e bad.db ]' "$(cat err)"
build --out h.db --features 40:64 && "$sae" merge --out bad.db f0.db h.db 2>err; rc=$?
check "merge refuses a gap between ranges, naming the files on either side" '[ $rc -eq 1 ] && grep -q "features 20:40 are in no file (between f0.db and h.db)" err' "$(cat err)"
build --out x.db --features 0:65 2>err; rc=$?
check "--features beyond d_sae: exit 1 naming it" '[ $rc -eq 1 ] && grep -q -- "--features 0:65" err' "$(cat err)"
build --out x.db --features 5:5 2>err; rc=$?
check "--features A:A: exit 2" '[ $rc -eq 2 ] && grep -q -- "--features" err' "$(cat err)"
build --out x.db --features 0:20 --correlations 2>err; rc=$?
check "--features with a dashboard table: refused" '[ $rc -eq 1 ] && grep -q -- "--features range" err' "$(cat err)"
build --out x.db --max-state-bytes 100000 --correlations 2>err; rc=$?
check "passes with a dashboard table: refused naming --max-state-bytes" '[ $rc -eq 1 ] && grep -q -- "--max-state-bytes" err' "$(cat err)"

# ---- --neighbours-method: exact and auto write the default build; approx
# (when built with FAISS) reports recall@K on stderr and in the meta table,
# and otherwise is refused, saying why
"$sae" index --model small --activations small.safetensors --tokens small.jsonl --out n.db --quiet --neighbours-method nearest 2>err; rc=$?
check "--neighbours-method nearest: exit 2" '[ $rc -eq 2 ] && grep -q -- "--neighbours-method" err' "$(cat err)"
for m in exact auto; do
  "$sae" index --model small --activations small.safetensors --tokens small.jsonl --out n-$m.db --quiet --neighbours-method $m 2>err; rc=$?
  check "--neighbours-method $m: the default build, byte for byte" '[ $rc -eq 0 ] && cmp -s a.db n-$m.db' "$(cat err)"
done
"$sae" index --model big --activations big.safetensors --tokens big.jsonl --out n-approx.db --neighbours-method approx 2>err; rc=$?
if grep -q "no FAISS" err; then
  check "--neighbours-method approx without FAISS: exit 1, saying what to install" '[ $rc -eq 1 ] && grep -q "libfaiss-dev" err' "$(cat err)"
else
  check "--neighbours-method approx: recall@10 on stderr and in the meta table" \
    '[ $rc -eq 0 ] && grep -q "recall@10 [01]\.[0-9]* against exact on 512 sampled" err && python3 -c "import sqlite3, sys; m = dict(sqlite3.connect(\"n-approx.db\").execute(\"SELECT key, value FROM meta\")); r = float(m[\"neighbours_recall\"].split()[0]); sys.exit(not (m[\"neighbours_method\"].startswith(\"approx\") and 0.5 <= r <= 1))"' "$(cat err)"
  # merge keeps the range from 0's neighbours and the meta keys reporting them
  for r in 0:200 200:512; do
    "$sae" index --model big --activations big.safetensors --tokens big.jsonl --out "na-${r%%:*}.db" --features "$r" --neighbours-method approx --quiet || fail "approx range $r"
  done
  "$sae" merge --out na-m.db na-200.db na-0.db 2>err; rc=$?
  check "approx range shards merged = the unsharded approx build, neighbours_* meta too" '[ $rc -eq 0 ] && same_dump n-approx.db na-m.db && grep -q "neighbours_recall" dump-b' "$(cat err; diff dump-a dump-b 2>&1 | head -5)"
fi

echo "index-cli: $passed passed, $failed failed"
[ $failed -eq 0 ]
