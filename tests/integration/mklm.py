#!/usr/bin/env python3
"""mklm.py OUT D V KIND: a tiny language-model checkpoint for the logit-table
tests (dashboards.sh): KIND gpt2 (wte.weight tied, ln_f), llama (lm_head in
one shard, model.norm in another), gemma (tied embed_tokens, RMSNorm 1 + w)
or wu (a safetensors file OUT/W_U.safetensors holding W_U (D, V)); and
OUT/vocab.json whose tokens carry GPT-2's byte-level marks."""
import json, random, struct, sys
def write_st(path, tensors):
    hdr, off, blobs = {}, 0, []
    for name, (shape, vals) in tensors.items():
        b = struct.pack('<%df' % len(vals), *vals)
        hdr[name] = {"dtype": "F32", "shape": shape, "data_offsets": [off, off + len(b)]}
        off += len(b); blobs.append(b)
    h = json.dumps(hdr).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h))); f.write(h)
        for b in blobs: f.write(b)
out, d, V, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
import os
os.makedirs(out, exist_ok=True)
rng = random.Random(7)
E = [rng.gauss(0, 1) for _ in range(V * d)]
w = [rng.uniform(0.5, 1.5) for _ in range(d)]
b = [rng.gauss(0, 0.1) for _ in range(d)]
if kind == 'gpt2':
    json.dump({"model_type": "gpt2"}, open(out + '/config.json', 'w'))
    write_st(out + '/model.safetensors', {"wte.weight": ([V, d], E), "ln_f.weight": ([d], w), "ln_f.bias": ([d], b)})
elif kind == 'llama':
    json.dump({"model_type": "llama", "tie_word_embeddings": False}, open(out + '/config.json', 'w'))
    write_st(out + '/model-00001-of-00002.safetensors', {"lm_head.weight": ([V, d], E)})
    write_st(out + '/model-00002-of-00002.safetensors', {"model.norm.weight": ([d], w), "model.embed_tokens.weight": ([V, d], [0.0]*(V*d))})
elif kind == 'wu':
    write_st(out + '/W_U.safetensors', {"W_U": ([d, V], E)})
elif kind == 'gemma':
    json.dump({"model_type": "gemma2"}, open(out + '/config.json', 'w'))
    write_st(out + '/model.safetensors', {"model.embed_tokens.weight": ([V, d], E), "model.norm.weight": ([d], w)})
vocab = {}
for i in range(V):
    vocab[("Ġtok%d" % i) if i % 3 == 0 else ("tokĊ%d" % i) if i % 3 == 1 else ("âĢĶ%d" % i)] = i
json.dump(vocab, open(out + '/vocab.json', 'w'))
