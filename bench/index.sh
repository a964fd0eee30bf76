#!/usr/bin/env bash
# The run behind docs/PERFORMANCE.md's "Indexing" section: `sae index` on a
# d_in 768 x d_sae 24576 fixture model (about 64 features per token) over
# corpora of SIZES tokens (default 50000 and 200000), each against raw
# cblas_sgemm on the same model and block size (`sae bench --batch 256`),
# measured right after it in the same run, plus wall time and peak RSS.
# Waits (up to WAIT seconds, default 600) for the 1-minute load average to
# drop under 0.5, and says so if it never does.
#
#   bench/index.sh [BUILD_DIR]          SIZES="50000 200000" KEEP=1 to keep files
set -euo pipefail
cd "$(dirname "$0")/.."
. bench/lib.sh
build=${1:-build-release}
sizes=${SIZES:-"50000 200000"}

if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" --buildtype=release >/dev/null
fi
ninja -C "$build" cli/sae tests/mkfixture >/dev/null

work=$(mktemp -d /tmp/saed-bench-index.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT

# Inputs: the model, and per size an activations file and a tokens file of
# documents of 128..1024 tokens drawn from a 50k-word Zipf vocabulary.
"$build/tests/mkfixture" --out "$work/model" --d-in 768 --d-sae 24576 --target-l0 64 --seed 1
for n in $sizes; do
  "$build/tests/mkfixture" --out "$work/model" --d-in 768 --d-sae 24576 --target-l0 64 --seed 1 \
    --activations "$work/acts-$n.safetensors" --rows "$n" --act-seed "$n" >/dev/null
  zipf_tokens "$n" "$work/tokens-$n.jsonl"
done

# The inputs just written are still being flushed to disk; writeback during a
# measured run would be charged to it.
sync

wait_quiet index.sh

machine_header
# Raw sgemm rows/s on the model's shape at the index's block size, measured
# just before and just after each index run (the ratio uses their mean; two
# far-apart figures mean the machine's load changed during the run).
sgemm() {
  "$build/cli/sae" bench --model "$work/model" --batch 256 --seconds 5 --json --quiet |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["batches"][0]["raw_rows_per_s"])'
}
printf "%-8s %9s %11s %19s %7s %9s  %s\n" tokens wall_s tokens_per_s "sgemm_rows_s(b/a)" ratio \
  peak_MB phases
for n in $sizes; do
  sync
  before=$(sgemm)
  /usr/bin/time -f "%e %M" -o "$work/time-$n" \
    "$build/cli/sae" index --model "$work/model" --activations "$work/acts-$n.safetensors" \
      --tokens "$work/tokens-$n.jsonl" --out "$work/index-$n.db" 2>"$work/log-$n"
  after=$(sgemm)
  read -r wall rss_kb <"$work/time-$n"
  phases=$(sed -n 's/^index: wrote [^(]*(\(.*\))$/\1/p' "$work/log-$n")
  awk -v n="$n" -v w="$wall" -v b="$before" -v a="$after" -v rss="$rss_kb" -v ph="$phases" 'BEGIN {
    raw = (b + a) / 2
    printf "%-8d %9.1f %11.0f %9.0f/%-9.0f %7.3f %9.0f  %s\n", n, w, n / w, b, a, n / w / raw,
      rss / 1024, ph }'
done
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
ls -l "$work"/index-*.db | awk '{ print "index file:", $NF, $5 " bytes" }'
