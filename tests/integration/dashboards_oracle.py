#!/usr/bin/env python3
"""dashboards_oracle.py KIND LM_DIR SAE_DIR INDEX.db [ACTS ENC.jsonl]: checks an
index's dashboards tables against a brute-force double-precision oracle:
W_U composed from the checkpoint as TransformerLens' defaults do (docs/INDEX.md),
every feature's logits W_dec[i] . W_U, its top and bottom 10 tokens, the 50-bin
histogram, the neuron alignment, and (given the activations and `sae encode`'s
output) the correlated neurons. Prints one line per failure, exits 1 on any."""
import json, math, sqlite3, struct, sys

def read_st(path):
    with open(path, 'rb') as f:
        n = struct.unpack('<Q', f.read(8))[0]
        hdr = json.loads(f.read(n))
        data = f.read()
    out = {}
    for k, v in hdr.items():
        if k == '__metadata__':
            continue
        assert v['dtype'] == 'F32', (path, k, v['dtype'])
        a, b = v['data_offsets']
        out[k] = (v['shape'], struct.unpack('<%df' % ((b - a) // 4), data[a:b]))
    return out

def shards(d):
    import os
    t = {}
    for n in sorted(os.listdir(d)):
        if n.endswith('.safetensors'):
            t.update(read_st(d + '/' + n))
    return t

def compose(kind, d):
    """W_U as rows (d_model lists of V doubles)."""
    if kind == 'wu':
        (dm, V), w = read_st(d + '/W_U.safetensors')['W_U']
        return [list(w[j * V:(j + 1) * V]) for j in range(dm)]
    t = shards(d)
    if kind == 'gpt2':
        (V, dm), E = t['wte.weight']
        s = t['ln_f.weight'][1]
    elif kind == 'llama':
        (V, dm), E = t['lm_head.weight']
        s = t['model.norm.weight'][1]
    else:
        (V, dm), E = t['model.embed_tokens.weight']
        s = [1.0 + x for x in t['model.norm.weight'][1]]
    W = [[s[j] * E[v * dm + j] for v in range(V)] for j in range(dm)]
    if kind == 'gpt2':  # fold_ln's centring of the writing weights: mean over d_model
        for v in range(V):
            m = sum(W[j][v] for j in range(dm)) / dm
            for j in range(dm):
                W[j][v] -= m
    for j in range(dm):  # center_unembed: mean over the vocabulary
        m = sum(W[j]) / V
        W[j] = [x - m for x in W[j]]
    return W

def blob(b, fmt):
    return list(struct.unpack('<%d%s' % (len(b) // 4, fmt), b))

bad = []
def check(cond, what):
    if not cond:
        bad.append(what)

kind, lm, sae, db = sys.argv[1:5]
(d_sae, d_in), wdec = read_st(sae + '/sae_weights.safetensors')['W_dec']
W = compose(kind, lm)
V = len(W[0])
con = sqlite3.connect(db)
rows = {r[0]: r[1:] for r in con.execute('SELECT feature, pos_ids, pos_values, neg_ids, '
                                          'neg_values, hist_min, hist_max, hist FROM logits')}
toks = dict(con.execute('SELECT id, token FROM logit_tokens'))
vocab = {i: t for t, i in json.load(open(lm + '/vocab.json')).items()}
check(len(rows) == d_sae, 'logits rows %d, d_sae %d' % (len(rows), d_sae))
near_edges = 0
for f in range(d_sae):
    w = wdec[f * d_in:(f + 1) * d_in]
    y = [sum(w[j] * W[j][v] for j in range(d_in)) for v in range(V)]
    order = sorted(range(V), key=lambda v: (-y[v], v))
    pid, pv, nid, nv, lo, hi, hist = rows[f]
    pid, pv, nid, nv, hist = (blob(pid, 'I'), blob(pv, 'f'), blob(nid, 'I'), blob(nv, 'f'),
                              blob(hist, 'I'))
    for got_ids, got_vals, want in ((pid, pv, order[:10]), (nid, nv, order[::-1][:10])):
        check(len(got_ids) == min(10, V), 'feature %d: %d rows' % (f, len(got_ids)))
        for g, gv, w_ in zip(got_ids, got_vals, want):
            # a float32 product may swap two tokens whose values differ by less than 1e-5
            check(g == w_ or abs(y[g] - y[w_]) < 1e-5, 'feature %d: token %d, oracle %d' % (f, g, w_))
            check(abs(gv - y[g]) <= 1e-4 * (1 + abs(y[g])), 'feature %d: value %g, oracle %g' % (f, gv, y[g]))
        check(toks.get(got_ids[0]) == vocab[got_ids[0]].replace('Ġ', ' ').replace('Ċ', '\n')
              .replace('âĢĶ', '—'), 'feature %d: token string %r' % (f, toks.get(got_ids[0])))
    mn, mx = min(y), max(y)
    check(abs(lo - mn) <= 1e-4 * (1 + abs(mn)) and abs(hi - mx) <= 1e-4 * (1 + abs(mx)),
          'feature %d: histogram range %g..%g, oracle %g..%g' % (f, lo, hi, mn, mx))
    want = [0] * 50
    for x in y:
        p = (x - mn) / (mx - mn) * 50
        want[min(int(p), 49)] += 1
        near_edges += abs(p - round(p)) < 1e-3 and 0 < round(p) < 50
    check(sum(hist) == V, 'feature %d: histogram holds %d of %d' % (f, sum(hist), V))
    diff = sum(abs(a - b) for a, b in zip(hist, want))
    check(diff <= 2 * near_edges, 'feature %d: histogram %s, oracle %s' % (f, hist, want))
    # neuron alignment
    al = con.execute('SELECT indices, value_list, extra FROM neuron_tables WHERE id = ?',
                     (2 * f,)).fetchone()
    top = sorted(range(d_in), key=lambda j: (-w[j], j))[:3]
    l1 = sum(abs(x) for x in w)
    check(al is not None and blob(al[0], 'I') == top, 'feature %d: alignment %s, oracle %s' %
          (f, al and blob(al[0], 'I'), top))
    if al:
        for v_, e_, j in zip(blob(al[1], 'f'), blob(al[2], 'f'), top):
            check(abs(v_ - w[j]) < 1e-7 and abs(e_ - abs(w[j]) / l1) < 1e-6,
                  'feature %d: alignment values' % f)

if len(sys.argv) > 6:
    (n, _), x = read_st(sys.argv[5])[next(iter(read_st(sys.argv[5])))]
    enc = [json.loads(l) for l in open(sys.argv[6])]
    feats = [[0.0] * d_sae for _ in range(n)]
    for r, e in enumerate(enc):
        for i, v in zip(e['indices'], e['values']):
            feats[r][i] = v
    for f in range(d_sae):
        co = con.execute('SELECT indices, value_list, extra FROM neuron_tables WHERE id = ?',
                         (2 * f + 1,)).fetchone()
        fs = [feats[r][f] for r in range(n)]
        sf, sf2 = sum(fs), sum(v * v for v in fs)
        pear, cos = [], []
        for j in range(d_in):
            xs = [x[r * d_in + j] for r in range(n)]
            sx, sx2, sxy = sum(xs), sum(v * v for v in xs), sum(a * b for a, b in zip(fs, xs))
            den = math.sqrt(max(0.0, (n * sf2 - sf * sf) * (n * sx2 - sx * sx)))
            pear.append((n * sxy - sf * sx) / (den + 1e-6))
            cos.append(sxy / (math.sqrt(sf2 * sx2) + 1e-6))
        top = sorted(range(d_in), key=lambda j: (-pear[j], j))[:3]
        got = blob(co[0], 'I') if co else None
        check(co is not None and all(g == t or abs(pear[g] - pear[t]) < 1e-4 for g, t in zip(got, top)),
              'feature %d: correlated %s, oracle %s' % (f, got, top))
        if co:
            for g, p_, c_ in zip(got, blob(co[1], 'f'), blob(co[2], 'f')):
                check(abs(p_ - pear[g]) < 1e-4 and abs(c_ - cos[g]) < 1e-4,
                      'feature %d: pearson %g / %g, cosine %g / %g' % (f, p_, pear[g], c_, cos[g]))
for b in bad[:20]:
    print('oracle:', b)
sys.exit(1 if bad else 0)
