#!/usr/bin/env bash
# The GPT-2 tokenizer comparison (meson test bpe_gpt2):
#   tests/lm/tokenizer/run.sh BPE_COMPARE OUT_DIR
# installs gpt-tokenizer from package-lock.json (npm ci) when missing, writes
# GPT-2's vocabulary, a corpus and its reference ids into OUT_DIR
# (reference.mjs), and checks core/lm/bpe against them (BPE_COMPARE).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
compare=${1:?usage: run.sh BPE_COMPARE OUT_DIR}
out=${2:?usage: run.sh BPE_COMPARE OUT_DIR}
if [ ! -d "$here/node_modules/gpt-tokenizer" ] ||
   [ "$here/package-lock.json" -nt "$here/node_modules/.package-lock.json" ]; then
  echo "bpe_gpt2: npm ci in tests/lm/tokenizer" >&2
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >&2)
fi
rm -rf "$out"
node "$here/reference.mjs" "$out"
"$compare" "$out"
