#!/usr/bin/env bash
# `sae info` and `sae encode` as a user runs them: exit codes (0 success,
# 1 failure, 2 bad usage), the error line naming the file, the JSON summary,
# and encode's output rules (one line per row, values descending with ties by
# index ascending, --top-k/--threshold filtering only the returned list,
# l0 from the full output). Numbers themselves are checked against the double
# reference in tests/unit/test_encode.c; here the streaming CLI around them.
# env: SAE_BIN, MKFIXTURE, SAE_TEST_TMP, SAE_SOURCE_ROOT, SAED_BIN (for --server)
set -uo pipefail
sae=${SAE_BIN:?} mk=${MKFIXTURE:?}
tmp=$(mktemp -d "${SAE_TEST_TMP:-/tmp}/cli.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL: $*"; }
expect_rc() { # expect_rc WANT DESCRIPTION CMD...
  local want=$1 what=$2; shift 2
  "$@" >"$tmp/out" 2>"$tmp/err"; local rc=$?
  if [ "$rc" = "$want" ]; then ok; else bad "$what: exit $rc, wanted $want ($(head -c 300 "$tmp/err"))"; fi
}

"$mk" --out "$tmp/m" --arch standard --d-in 32 --d-sae 256 --target-l0 10 --seed 3 \
  --activations "$tmp/a.safetensors" --rows 300 >/dev/null || { echo "FAIL: mkfixture"; exit 1; }

expect_rc 0 "info on a good model" "$sae" info "$tmp/m"
python3 - "$tmp/out" "$tmp/m/sae_weights.safetensors" <<'PY' && ok || bad "info summary"
import json, sys
s = json.load(open(sys.argv[1]))
assert s["d_in"] == 32 and s["d_sae"] == 256 and s["architecture"] == "standard", s
assert s["dtype"] == "F32" and len(s["weights_digest"]) == 32, s
int(s["weights_digest"], 16)
PY
expect_rc 2 "info without a folder" "$sae" info
expect_rc 2 "encode without --model" "$sae" encode --activations "$tmp/a.safetensors"
expect_rc 2 "encode with a bad --top-k" "$sae" encode --model "$tmp/m" --activations "$tmp/a.safetensors" --top-k x
expect_rc 1 "info on a missing folder" "$sae" info "$tmp/nope"

# A corrupt weights file: exit 1, one line naming the file.
cp -r "$tmp/m" "$tmp/broken"
truncate -s -5 "$tmp/broken/sae_weights.safetensors"
expect_rc 1 "info on a truncated weights file" "$sae" info "$tmp/broken"
if grep -q "sae: error: .*broken/sae_weights.safetensors" "$tmp/err" && [ "$(wc -l <"$tmp/err")" = 1 ]; then ok
else bad "truncated file error line: $(cat "$tmp/err")"; fi

# Activations of another width: exit 1 naming the activations file.
"$mk" --out "$tmp/m2" --d-in 16 --d-sae 64 --activations "$tmp/a16.safetensors" --rows 5 >/dev/null
expect_rc 1 "encode with d_in mismatch" "$sae" encode --model "$tmp/m" --activations "$tmp/a16.safetensors"
grep -q "a16.safetensors" "$tmp/err" && ok || bad "d_in mismatch names the file: $(cat "$tmp/err")"

# A file that is neither .npy nor safetensors (a raw float dump) is called that.
head -c 4000 /dev/urandom >"$tmp/raw.f32"
expect_rc 1 "encode a raw float file" "$sae" encode --model "$tmp/m" --activations "$tmp/raw.f32"
grep -q "raw.f32: not an .npy file nor a readable safetensors file" "$tmp/err" && ok || bad "raw file: $(cat "$tmp/err")"

expect_rc 0 "encode full" "$sae" encode --model "$tmp/m" --activations "$tmp/a.safetensors" --metrics --quiet
cp "$tmp/out" "$tmp/full.jsonl"
expect_rc 0 "encode top-k 3" "$sae" encode --model "$tmp/m" --activations "$tmp/a.safetensors" --top-k 3 --metrics --quiet
cp "$tmp/out" "$tmp/top3.jsonl"
expect_rc 0 "encode --out" "$sae" encode --model "$tmp/m" --activations "$tmp/a.safetensors" --metrics --quiet --out "$tmp/file.jsonl"
cmp -s "$tmp/file.jsonl" "$tmp/full.jsonl" && ok || bad "--out differs from stdout"

python3 - "$tmp/full.jsonl" "$tmp/top3.jsonl" <<'PY' && ok || bad "encode output rules"
import json, sys
full = [json.loads(l) for l in open(sys.argv[1])]
top = [json.loads(l) for l in open(sys.argv[2])]
assert len(full) == 300 and len(top) == 300, (len(full), len(top))
active = 0
for f, t in zip(full, top):
    pairs = list(zip(f["values"], f["indices"]))
    assert pairs == sorted(pairs, key=lambda p: (-p[0], p[1])), pairs
    assert all(v > 0 for v in f["values"])
    assert len(set(f["indices"])) == len(f["indices"])
    assert f["l0"] == len(f["indices"]) and t["l0"] == f["l0"]
    assert t["indices"] == f["indices"][:3] and t["values"] == f["values"][:3]
    assert t["mse"] == f["mse"] and t["cosine"] == f["cosine"]
    active += f["l0"]
assert 3 <= active / 300 <= 30, active / 300   # the fixture aims at 10 per row
PY

# Written files are shared like the tools' other outputs (mkstemp's 0600 was a bug).
(umask 022 && "$sae" encode --model "$tmp/m" --activations "$tmp/a.safetensors" --quiet \
  --out "$tmp/mode.jsonl")
[ "$(stat -c %a "$tmp/mode.jsonl")" = 644 ] && ok || bad "--out mode $(stat -c %a "$tmp/mode.jsonl")"

# Flags are never taken for files or values: a typo is a usage error (2).
a=$tmp/a.safetensors
expect_rc 2 "a short flag after --activations" "$sae" encode --model "$tmp/m" --activations "$a" -q
expect_rc 2 "--model followed by a flag" "$sae" encode --model --activations "$a"
expect_rc 2 "a hex --threshold" "$sae" encode --model "$tmp/m" --activations "$a" --threshold 0x10
expect_rc 2 "a --top-k with a space" "$sae" encode --model "$tmp/m" --activations "$a" --top-k " 3"
expect_rc 0 "a negative --threshold" "$sae" encode --model "$tmp/m" --activations "$a" --threshold -0.5 --quiet
expect_rc 2 "merge with an unknown short flag" "$sae" merge --out "$tmp/x.db" "$tmp/s0.db" -v

# The output is never one of the inputs (it would be renamed over it).
cp "$a" "$tmp/in.safetensors"
expect_rc 2 "encode --out an input" "$sae" encode --model "$tmp/m" --activations "$tmp/in.safetensors" --out "$tmp/./in.safetensors"
cmp -s "$a" "$tmp/in.safetensors" && ok || bad "encode --out an input changed it"

# Training options that contradict each other are usage errors, found before
# any work; so is a --truth folder that cannot be used: no model folder appears.
expect_rc 2 "train --k without topk" "$sae" train --activations "$a" --out "$tmp/t" --k 3 --quiet
expect_rc 2 "train k above d_sae" "$sae" train --activations "$a" --out "$tmp/t" --arch topk --k 70 --d-sae 6 --quiet
expect_rc 2 "train --layers without the autoencoder" "$sae" train --activations "$a" --out "$tmp/t" --layers 32,2 --quiet
expect_rc 1 "train with a missing --truth" "$sae" train --activations "$a" --out "$tmp/t" --steps 5 --batch 8 --truth "$tmp/nope" --quiet
grep -q "nope" "$tmp/err" && [ ! -e "$tmp/t" ] && ok || bad "missing --truth: $(cat "$tmp/err"); $(ls "$tmp/t" 2>&1)"

# A run that diverges without overflowing still writes its model, but says so.
expect_rc 0 "train with a huge --lr" "$sae" train --activations "$a" --out "$tmp/div" --lr 1e6 --steps 40 --batch 8 --quiet
grep -q "warning: training ended with fvu .*diverged" "$tmp/err" && ok || bad "divergence not reported: $(cat "$tmp/err")"
expect_rc 0 "train normally" "$sae" train --activations "$a" --out "$tmp/fine" --steps 40 --batch 8 --quiet
[ ! -s "$tmp/err" ] && ok || bad "a normal run warned: $(cat "$tmp/err")"

# `sae encode --server`: the same lines from a saed over the binary protocol
# as --model gives on the same model (top-k and threshold too), the weights
# digest pinned, and exit 1 naming the address when no saed answers.
if [ -n "${SAED_BIN:-}" ]; then
  "$SAED_BIN" --model "$tmp/m" --listen 127.0.0.1:0 --max-request-rows 64 2>"$tmp/saed.log" &
  saed_pid=$!
  port=
  for _ in $(seq 300); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/saed.log")
    [ -n "$port" ] && break
    sleep 0.05
  done
  url=http://127.0.0.1:$port
  for opts in "" "--top-k 3" "--threshold 0.5" "--top-k 2 --threshold 0.25"; do
    # shellcheck disable=SC2086
    "$sae" encode --model "$tmp/m" --activations "$tmp/a.safetensors" --quiet $opts >"$tmp/local.jsonl"
    # shellcheck disable=SC2086
    expect_rc 0 "encode --server $opts" "$sae" encode --server "$url" --activations "$tmp/a.safetensors" --quiet $opts
    cmp -s "$tmp/out" "$tmp/local.jsonl" && [ -s "$tmp/out" ] && ok || bad "--server $opts differs from --model"
  done
  expect_rc 1 "encode --server, an SAE not served" "$sae" encode --server "$url" --sae nope --activations "$tmp/a.safetensors"
  grep -q "404" "$tmp/err" && ok || bad "--sae nope: $(cat "$tmp/err")"
  expect_rc 2 "encode --server with --metrics" "$sae" encode --server "$url" --activations "$tmp/a.safetensors" --metrics
  expect_rc 1 "encode --server, d_in mismatch" "$sae" encode --server "$url" --activations "$tmp/a16.safetensors"
  kill "$saed_pid"; wait "$saed_pid" 2>/dev/null
  expect_rc 1 "encode --server, nothing listening" "$sae" encode --server "$url" --retry-seconds 0.3 --activations "$tmp/a.safetensors"
  grep -q "cannot reach saed at 127.0.0.1:$port" "$tmp/err" && [ "$(wc -l <"$tmp/err")" = 1 ] && ok \
    || bad "unreachable: $(cat "$tmp/err")"
  [ ! -s "$tmp/out" ] && ok || bad "unreachable wrote output"
fi

# Every command's --help is generated from its option table; its synopsis is the
# one the README's "Using sae" block shows (spacing aside), and --help exits 0.
squeeze() { tr -s '[:space:]' ' ' | sed 's/^ //; s/ $//'; }
readme=$(sed -n '/^## Using `sae`/,/^## The web/p' "${SAE_SOURCE_ROOT:?}/README.md" | squeeze)
for c in info encode synth train index merge bench harvest; do
  expect_rc 0 "$c --help" "$sae" "$c" --help
  syn=$(sed -n '1,/^$/p' "$tmp/out" | sed '1s/^usage: //' | squeeze)
  case "$readme" in *"$syn"*) ok ;; *) bad "README lacks the synopsis of sae $c: $syn" ;; esac
  grep -q -- "^  --" "$tmp/out" || [ "$c" = info ] && ok || bad "$c --help lists no option"
done
# Usage errors say what is wrong with which option.
expect_rc 2 "a bad --top-k" "$sae" encode --model "$tmp/m" --activations "$a" --top-k 0
grep -q "sae encode: --top-k needs an integer in \[1, 4294967295\], not '0'" "$tmp/err" && ok || bad "--top-k 0: $(cat "$tmp/err")"
expect_rc 2 "encode without its required options" "$sae" encode
grep -q "sae encode: --activations is required" "$tmp/err" && ok || bad "required: $(cat "$tmp/err")"
expect_rc 2 "encode without --model or --server" "$sae" encode --activations "$a"
grep -q "sae encode: give exactly one of --model and --server" "$tmp/err" && ok || bad "model or server: $(cat "$tmp/err")"
expect_rc 2 "--activations with no file" "$sae" encode --model "$tmp/m" --activations --quiet
grep -q "activations needs at least one FILE" "$tmp/err" && ok || bad "empty list: $(cat "$tmp/err")"
expect_rc 2 "info with two folders" "$sae" info "$tmp/m" "$tmp/m2"
expect_rc 2 "bench --model with a shape" "$sae" bench --model "$tmp/m" --d-in 8
expect_rc 2 "nine --batch values" "$sae" bench --batch 1 --batch 2 --batch 3 --batch 4 --batch 5 --batch 6 --batch 7 --batch 8 --batch 9
grep -q "at most 8 --batch values" "$tmp/err" && ok || bad "repeat cap: $(cat "$tmp/err")"
expect_rc 2 "bench --compute without --model" "$sae" bench --compute f32
expect_rc 2 "encode --compute other than native|f32" "$sae" encode --model "$tmp/m" --activations "$a" --compute bf16
expect_rc 2 "encode --server with --compute" "$sae" encode --server http://127.0.0.1:9 --activations "$a" --compute f32

# Release layouts (core/sae/format*.c): a Gemma Scope params.npz folder and a
# dictionary_learning trainer folder from tests/fixture/formats, read by
# `sae info` and `sae encode` as a user would. Their numbers are checked in
# tests/unit/test_formats.c; here that the programs take them, that info
# names what the path and config say, and that encode's active features are
# the expected ones (no row of these two has a feature near its decision).
formats=${SAE_SOURCE_ROOT:?}/tests/fixture/formats
for case in gemmascope_res:gemma-2-2b:blocks.3.hook_resid_post:jumprelu \
            dl_gated:pythia-70m-deduped:blocks.3.hook_resid_post:gated; do
  IFS=: read -r name model hook arch <<<"$case"
  dir=$(python3 - "$formats/expect/$name.safetensors" "$tmp/$name.npy" <<'PY'
import json, struct, sys
raw = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n])
x = h["x"]
data = raw[8 + n + x["data_offsets"][0]:8 + n + x["data_offsets"][1]]
hdr = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d, %d), }" % tuple(x["shape"])
hdr += " " * (-(10 + len(hdr) + 1) % 64) + "\n"
open(sys.argv[2], "wb").write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr.encode() + data)
print(h["__metadata__"]["folder"])
PY
  )
  expect_rc 0 "info on $name" "$sae" info "$formats/$dir"
  python3 - "$tmp/out" "$model" "$hook" "$arch" <<'PY' && ok || bad "info on $name: $(cat "$tmp/out")"
import json, sys
s = json.load(open(sys.argv[1]))
assert (s["model_name"], s["hook_name"], s["architecture"]) == tuple(sys.argv[2:5]), s
PY
  expect_rc 0 "encode $name" "$sae" encode --model "$formats/$dir" --activations "$tmp/$name.npy" --quiet
  python3 - "$tmp/out" "$formats/expect/$name.safetensors" <<'PY' && ok || bad "encode $name: $(head -c 300 "$tmp/out")"
import json, struct, sys
raw = open(sys.argv[2], "rb").read()
n = struct.unpack("<Q", raw[:8])[0]
h = json.loads(raw[8:8 + n])
rows, d_sae = h["f"]["shape"]
a, b = h["f"]["data_offsets"]
f = struct.unpack("<%dd" % (rows * d_sae), raw[8 + n + a:8 + n + b])
lines = open(sys.argv[1]).read().splitlines()
assert len(lines) == rows, lines
for r, line in enumerate(lines):
    got = sorted(json.loads(line)["indices"])
    want = [j for j in range(d_sae) if f[r * d_sae + j] > 0]
    assert got == want, (r, got, want)
PY
done

echo "cli: $pass passed, $fail failed"
[ "$fail" = 0 ]
