#!/bin/sh
# bench/many_saes.sh BUILD_DIR [N]: issue 14's memory figures. Makes N (16)
# SAEs of 768 x 16384 F32 (one written by mkfixture, the rest copies: ~100 MB
# each), starts `saed --release` over them, and prints the time to healthy,
# saed's RssAnon after one encode on each SAE, and the mapped weights.
set -eu
B=${1:?build dir}; N=${2:-16}
W=$(mktemp -d /tmp/many_saes.XXXXXX)
PID=; trap '[ -n "$PID" ] && kill $PID; rm -rf "$W"' EXIT
"$B/tests/mkfixture" --out "$W/rel/layer_0/width_16k" --d-in 768 --d-sae 16384 \
  --target-l0 32 --activations "$W/x.safetensors" --rows 1 >/dev/null
i=1
while [ $i -lt "$N" ]; do
  cp -r "$W/rel/layer_0" "$W/rel/layer_$i"; i=$((i + 1))
done
python3 -c "
import struct,json,sys
b=open('$W/x.safetensors','rb').read(); n=struct.unpack('<Q',b[:8])[0]; h=json.loads(b[8:8+n])
k=[k for k in h if k!='__metadata__'][0]; a,e=h[k]['data_offsets']
v=struct.unpack('<768f',b[8+n+a:8+n+a+3072]); open('$W/body.json','w').write(json.dumps({'input':v}))"
PORT=18$(($$ % 900 + 100))
T0=$(date +%s.%N)
"$B/server/saed" --release "$W/rel" --listen 127.0.0.1:$PORT --quiet 2>"$W/log" & PID=$!
until curl -sf localhost:$PORT/v1/health >/dev/null; do sleep 0.05; done
T1=$(date +%s.%N)
for id in $(curl -s localhost:$PORT/v1/saes | python3 -c "import json,sys;print(' '.join(s['id'] for s in json.load(sys.stdin)['saes']))"); do
  curl -sf -H 'Content-Type: application/json' --data-binary @"$W/body.json" \
    localhost:$PORT/v1/saes/$id/encode >/dev/null
done
echo "saes: $N of 768 x 16384 F32, $(du -sh "$W/rel" | cut -f1) of weights"
echo "healthy after: $(echo "$T1 - $T0" | bc) s"
grep -E 'VmRSS|RssAnon|RssFile' /proc/$PID/status
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
