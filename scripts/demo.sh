#!/usr/bin/env bash
# The README's main command: installs what is missing, builds everything, and
# runs the demo pipeline: sae bench on a small model, then a fixture model
# through sae info and sae encode.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh build

meson setup build --buildtype=release >/dev/null 2>&1 || meson setup build --buildtype=release --reconfigure >/dev/null
ninja -C build >/dev/null
SAE=build/cli/sae
out=demo
mkdir -p "$out"

echo "== sae bench (small model: d_in 256 x d_sae 4096, 32 features per row)"
"$SAE" bench --quick

echo "== fixture model written by the project's own fixture writer"
[ -f "$out/fixture/cfg.json" ] ||
  build/tests/mkfixture --out "$out/fixture" --arch standard --d-in 64 --d-sae 512 --target-l0 12 \
    --seed 7 --activations "$out/fixture-acts.safetensors" --rows 4
"$SAE" info "$out/fixture"

echo "== sae encode: the features of 4 rows"
"$SAE" encode --model "$out/fixture" --activations "$out/fixture-acts.safetensors" --top-k 8
