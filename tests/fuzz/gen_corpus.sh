#!/usr/bin/env bash
# Rewrites the generated seed corpora (binary seeds and the index seed), so
# every committed seed can be traced to the code that made it:
#
#   tests/fuzz/gen_corpus.sh GEN_CORPUS SAE MKFIXTURE
#
# GEN_CORPUS is build-fuzz/fuzz/gen_corpus (tests/fuzz/gen_corpus.c): the
# safetensors, npy, cfg and binary_body seeds. The index seed is a real index
# built by `sae index` from a fixture model (d_in 8, d_sae 16), 12 short
# documents and two explanations: small enough for the fuzzer to mutate.
# The npz and torchpt seeds are the reader fixtures (tests/fixture/readers/,
# written by numpy and torch through gen.py there), copied. The text seeds
# (JSON bodies, JSON Lines) are written by hand and are not touched here.
# Output is deterministic (fixed seeds).
set -euo pipefail
[[ $# -eq 3 ]] || { echo "usage: gen_corpus.sh GEN_CORPUS SAE MKFIXTURE" >&2; exit 2; }
gen=$(realpath "$1"); sae=$(realpath "$2"); mkfixture=$(realpath "$3")
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

rm -rf corpus/safetensors corpus/npy corpus/cfg corpus/binary_body corpus/index
SAE_FUZZ_TMP="$tmp" "$gen" corpus

"$mkfixture" --out "$tmp/model" --arch standard --d-in 8 --d-sae 16 --target-l0 4 --seed 5 \
  --activations "$tmp/acts.npy" --rows 48 >/dev/null
words=(The cat sat on the mat and a dog ran by " é" "\\u00ff")
: >"$tmp/tokens.jsonl"
for d in $(seq 0 11); do
  line="{\"id\": \"doc$d\", \"tokens\": ["
  for t in 0 1 2 3; do
    ((t)) && line+=", "
    line+="\"${words[$(((d + t) % ${#words[@]}))]}\""
  done
  echo "$line]}" >>"$tmp/tokens.jsonl"
done
cat >"$tmp/expl.jsonl" <<'JSONL'
{"index": 3, "description": "cats and mats", "score": 0.8, "source": "fuzz"}
{"index": "5", "description": "dogs", "typeName": "oai_token-act-pair", "explanationModelName": "m", "scoreV1": 0.5}
JSONL
mkdir -p corpus/index
"$sae" index --model "$tmp/model" --activations "$tmp/acts.npy" --tokens "$tmp/tokens.jsonl" \
  --explanations "$tmp/expl.jsonl" --out corpus/index/small_index.db --top 3 --quantiles 2 \
  --per-quantile 2 --context 2 --neighbours 2 --quiet
mv corpus/index/small_index.db corpus/index/small_index  # *.db is git-ignored
rm -rf corpus/npz corpus/torchpt
mkdir -p corpus/npz corpus/torchpt
cp ../fixture/readers/*.npz corpus/npz/
cp ../fixture/readers/*.pt corpus/torchpt/
# The members the targets wrap in a zip themselves (fuzz_npz.c,
# fuzz_torchpt.c): each .npy of the npz fixtures, each data.pkl of the .pt.
python3 - <<'PY'
import glob, os, zipfile
for kind, pattern, want in (("npz", "*.npz", ".npy"), ("torchpt", "*.pt", "/data.pkl")):
    for path in sorted(glob.glob("../fixture/readers/" + pattern)):
        try:
            z = zipfile.ZipFile(path)
        except zipfile.BadZipFile:
            continue
        with z:
            for info in z.infolist():
                if not info.filename.endswith(want):
                    continue
                try:
                    data = z.read(info)
                except Exception:  # the CRC and size fixtures
                    continue
                base = os.path.basename(path).rsplit(".", 1)[0]
                member = info.filename.replace("/", "_")
                with open("corpus/%s/%s.%s" % (kind, base, member), "wb") as f:
                    f.write(data)
PY
echo "gen_corpus: wrote $(find corpus -type f | wc -l) seeds" >&2
