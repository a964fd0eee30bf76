#!/usr/bin/env bash
# The run behind docs/PERFORMANCE.md's "Training" section.
#
# 1. Speed: `sae train --bench` at d_in 768 x d_sae 24576, batch 4096: the
#    seconds of a full training step (forward, backward, Adam) against raw
#    cblas_sgemm of the same five products (encoder and decoder forward,
#    dW_dec, dL/df, dW_enc) timed right after it in the same process; the
#    ratio is training tokens/s over sgemm tokens/s.
# 2. If python3 can import torch: the same step as an equivalent PyTorch loop
#    (bench/train_torch.py), tokens/s on the same threads.
# 3. Recovery side by side: both trainers on the issue's generator (g = 256
#    directions in d = 64, p = 0.02, 100k rows) at d_sae 256 with this
#    project's default settings, MMCS and seconds of each, one thread each
#    (the shapes are small; PyTorch's OpenMP threads stall on a loaded
#    machine).
# Waits (up to WAIT seconds, default 600) for the 1-minute load average to drop
# under 0.5 and says so if it never does.
#
#   bench/train.sh [BUILD_DIR]     STEPS=4 THREADS=2 SKIP_TORCH=1
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-release}
steps=${STEPS:-4}
threads=${THREADS:-$(nproc)}

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" --buildtype=release >/dev/null
fi
ninja -C "$build" cli/sae >/dev/null

. bench/lib.sh
wait_quiet train.sh
machine_header
echo "BLAS threads: $threads"

echo "== sae train --bench (d_in 768, d_sae 24576, batch 4096, $steps steps)"
"$build/cli/sae" train --bench --d-in 768 --d-sae 24576 --batch 4096 --steps "$steps" \
  --threads "$threads" --quiet

# Debian's python3-torch lives in /usr/bin/python3's packages; a python3 from
# elsewhere first on PATH may not see it.
py=${PYTHON:-python3}
if ! "$py" -c 'import torch' 2>/dev/null && /usr/bin/python3 -c 'import torch' 2>/dev/null; then
  py=/usr/bin/python3
fi
have_torch=0
if [ -z "${SKIP_TORCH:-}" ] && "$py" -c 'import torch' 2>/dev/null; then
  have_torch=1
  echo "== PyTorch $("$py" -c 'import torch; print(torch.__version__)'), same step"
  "$py" bench/train_torch.py speed --d-in 768 --d-sae 24576 --batch 4096 --steps "$steps" \
    --threads "$threads"
else
  echo "== PyTorch: not installed (apt-get install -y python3-torch), comparison skipped"
fi

echo "== recovery on the test generator (g 256, d 64, p 0.02, 100k rows), d_sae 256"
work=$(mktemp -d /tmp/saed-bench-train.XXXXXX)
trap 'rm -rf "$work"' EXIT
"$py" bench/train_torch.py gen --out "$work/gen.npy" --truth "$work/truth.npy" --seed 1
python3 - "$work" <<'PY'
# truth.npy -> a `sae synth`-style truth folder so `sae train --truth` can score
import struct, sys, json
work = sys.argv[1]
raw = open(f"{work}/truth.npy", "rb").read()
hlen = struct.unpack("<H", raw[8:10])[0]
data = raw[10 + hlen:]
g, d = 256, 64
hdr = json.dumps({"directions": {"dtype": "F32", "shape": [g, d], "data_offsets": [0, len(data)]}})
hdr += " " * ((8 - len(hdr) % 8) % 8)
with open(f"{work}/truth.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(hdr)) + hdr.encode() + data)
with open(f"{work}/truth.jsonl", "w") as f:
    for i in range(g):
        f.write(json.dumps({"index": i, "label": f"direction {i}"}) + "\n")
PY
start=$(date +%s.%N)
"$build/cli/sae" train --activations "$work/gen.npy" --out "$work/model" --d-sae 256 \
  --threads 1 --truth "$work" --quiet
end=$(date +%s.%N)
echo "sae train: $(echo "$end - $start" | bc) s wall, $(python3 -c "import json; c=json.load(open('$work/model/cfg.json')); print(c['training']['steps'], 'steps x', c['training']['batch'])")"
if [ "$have_torch" = 1 ]; then
  "$py" bench/train_torch.py recover --data "$work/gen.npy" --truth "$work/truth.npy" \
    --d-sae 256 --threads 1
fi
