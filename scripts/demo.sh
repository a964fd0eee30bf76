#!/usr/bin/env bash
# The README's main command. Installs what is missing, builds everything, then
# runs the whole pipeline on synthetic data with known answers:
#   sae synth  -> activations over real text with 68 planted, labelled features
#   sae train  -> a standard SAE, each latent labelled by the planted feature it matches
#                 (or "dead", "unmatched (cos ...)": docs/TRAINING.md, "Labelling latents")
#   sae index  -> the SQLite feature index, with those labels as explanations
#   saed       -> the daemon and web browser on http://127.0.0.1:8080
# A second run reuses what is already built (delete demo/ to start over).
# usage: scripts/demo.sh [--listen HOST:PORT] [--no-serve]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
pid=
# Any step that fails says so (its own error is above it; logged has named
# its command already) and stops the daemon.
on_error() {
  case "$2" in logged\ *|return\ *) ;; *) echo "demo: failed (exit $1): $2" >&2 ;; esac
  [ -z "$pid" ] || kill -TERM "$pid" 2>/dev/null
}
trap 'on_error $? "$BASH_COMMAND"' ERR
listen=127.0.0.1:8080
serve=1
while [ $# -gt 0 ]; do
  case "$1" in
    --listen) listen=$2; shift 2 ;;
    --no-serve) serve=0; shift ;;
    *) echo "usage: scripts/demo.sh [--listen HOST:PORT] [--no-serve]" >&2; exit 2 ;;
  esac
done
scripts/deps.sh build

t0=$(date +%s)
# Quiet while the build goes well; meson's or ninja's whole output when it does not.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if [ ! -f build/build.ninja ]; then
  logged "$log" meson setup build --buildtype=release
fi
logged "$log" ninja -C build
SAE=build/cli/sae
SAED=build/server/saed
out=demo
mkdir -p "$out"

step() { printf '\n== %s\n' "$*"; }

step "sae synth: tokens of the Debian license texts, 68 planted features in 256 dims"
if [ ! -f "$out/synth/truth.jsonl" ]; then
  "$SAE" synth --out "$out/synth" --seed 1
else
  echo "(reusing $out/synth)"
fi

step "sae train: a standard SAE (d_sae 256) by hand-derived gradients"
if [ ! -f "$out/model/explanations.jsonl" ]; then
  "$SAE" train --activations "$out/synth/activations.safetensors" --out "$out/model" \
    --d-sae 256 --seed 1 --truth "$out/synth"
else
  echo "(reusing $out/model)"
fi
"$SAE" info "$out/model"

# Windows of 32 tokens either side of each example's token: the browser shows
# 8 and expands to all 32 (about twice the index of the default 8).
context=32
step "sae index: statistics, examples (±$context tokens), neighbours, planted labels as explanations"
if [ ! -f "$out/index.db" ] || [ "$(cat "$out/index.context" 2>/dev/null)" != "$context" ]; then
  "$SAE" index --model "$out/model" --activations "$out/synth/activations.safetensors" \
    --tokens "$out/synth/tokens.jsonl" --explanations "$out/model/explanations.jsonl" \
    --context "$context" --out "$out/index.db"
  echo "$context" >"$out/index.context"
else
  echo "(reusing $out/index.db)"
fi

step "sae encode: the features of the first 3 tokens (top 5 each)"
("$SAE" encode --model "$out/model" --activations "$out/synth/activations.safetensors" \
  --top-k 5 --quiet || true) | head -n 3

printf '\nbuilt in %ss: %s/synth (data), %s/model (SAE), %s/index.db (index)\n' \
  "$(( $(date +%s) - t0 ))" "$out" "$out" "$out"
[ "$serve" = 1 ] || exit 0

step "saed on http://$listen"
"$SAED" --model "$out/model" --index "$out/index.db" --listen "$listen" --quiet &
pid=$!
trap 'kill -TERM $pid 2>/dev/null; wait $pid || true; exit 0' INT TERM
until curl -fs "http://$listen/v1/health" >/dev/null 2>&1; do
  kill -0 $pid 2>/dev/null || { echo "demo: saed did not start (its error is above)" >&2; exit 1; }
  sleep 0.1
done
echo "GET /v1/features?q=pronoun&limit=3&sort=density&order=desc:"
body=$(curl -fsS "http://$listen/v1/features?q=pronoun&limit=3&sort=density&order=desc")
printf '%s ...\n' "${body:0:600}"
cat <<EOT

Look at:   http://$listen/            the feature browser (search "negation", open a feature)
           http://$listen/encode      encode a vector or a feature's decoder direction
           http://$listen/openapi.json
Try:       curl -s http://$listen/v1/features/0 | head -c 400
saed is running (pid $pid); Ctrl-C stops it.
EOT
wait $pid
