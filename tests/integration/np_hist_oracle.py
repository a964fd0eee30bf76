#!/usr/bin/env python3
"""np_hist_oracle.py INDEX.db ENC.jsonl [FEATURE NP.json ...]: checks an index's
act_bars table (`sae index --neuronpedia-hist`) against SAEDashboard's
freq_hist_data computed by brute force from `sae encode`'s output (the same
encoded activations), and the Neuronpedia JSON files given (saed's route or
an export's feature objects) against it.

SAEDashboard (ActsHistogramData.from_data over feat_acts[feat_acts > 0]):
  heights = torch.histc(data, bins=50): 50 equal bins over [min, max], a
  value at max in the last; values = round(linspace(min, max, 51)[:-1] +
  (max - min) / 100, 5). Two oracles for the heights: exact rational
  arithmetic (must agree but for values within float rounding of an edge,
  counted), and torch's float32 arithmetic emulated step by step (must agree
  bar for bar). Values: within 1e-5 of the exact centre, and equal to torch's
  float32 linspace (its CPU kernel: 8-float vectors, the last 3 scalar).
Prints one line per failure and a summary, exits 1 on any."""
import json, sqlite3, struct, sys
from fractions import Fraction

BARS = 50

def f32(x):
    return struct.unpack('<f', struct.pack('<f', x))[0]

def heights_exact(data, lo, hi):
    """(heights, values near an edge) in exact arithmetic."""
    h, near = [0] * BARS, 0
    L, R = (Fraction(lo), Fraction(hi)) if lo != hi else (Fraction(lo) - 1, Fraction(hi) + 1)
    for v in data:
        q = (Fraction(v) - L) * BARS / (R - L)
        k = min(int(q), BARS - 1)
        h[k] += 1
        if abs(q - round(q)) < Fraction(1, 10 ** 5) and 0 < round(q) < BARS:
            near += 1
    return h, near

def heights_torch(data, lo, hi):
    """torch.histc(data, bins=50) on the CPU: edges held as float32, the bin
    (v - left) * 50 / (right - left) in float32, truncated."""
    L, R = (lo, hi) if lo != hi else (f32(lo - 1.0), f32(hi + 1.0))
    h = [0] * BARS
    for v in data:
        q = f32(f32(f32(v - L) * BARS) / f32(R - L))
        k = int(q)
        h[BARS - 1 if k >= BARS else k] += 1
    return h

def values_torch(lo, hi):
    steps, half, lanes = BARS + 1, (BARS + 1) // 2, 8
    step = f32(f32(hi - lo) / (steps - 1))
    edges = []
    vec_end = steps - steps % (2 * lanes)
    for i in range(steps):
        first = i - i % lanes if i < vec_end else i
        base = f32(lo + f32(step * first)) if first < half else f32(hi - f32(step * (steps - 1 - first)))
        edges.append(f32(base + f32((i - first) * step)))
    half_bin = f32((hi - lo) / BARS / 2)
    return [round(f32(e + half_bin), 5) for e in edges[:-1]]

db, enc = sys.argv[1], sys.argv[2]
con = sqlite3.connect(db)
rows = {r[0]: r[1:] for r in con.execute('SELECT feature, act_min, act_max, heights FROM act_bars')}
feats = {r[0]: r[1:] for r in con.execute('SELECT idx, n_active, max_activation FROM features')}
acts = {f: [] for f in feats}
for line in open(enc):
    e = json.loads(line)
    for i, v in zip(e['indices'], e['values']):
        if v > 0:
            acts[i].append(f32(v))
bad, near_total, want = [], 0, {}
def check(cond, what):
    if not cond:
        bad.append(what)
check(len(rows) == len(feats), 'act_bars rows %d, features %d' % (len(rows), len(feats)))
for f, data in acts.items():
    r = rows.get(f)
    if r is None:
        continue
    lo_s, hi_s, blob = r
    got = list(struct.unpack('<%dQ' % (len(blob) // 8), blob))
    check(len(data) == feats[f][0], 'feature %d: %d activations > 0, n_active %d' % (f, len(data), feats[f][0]))
    if not data:
        check(got == [], 'feature %d never fired but has bars %s' % (f, got))
        want[f] = ([], [])
        continue
    lo, hi = min(data), max(data)
    check(lo_s == lo and hi_s == hi and hi == f32(feats[f][1]),
          'feature %d: range [%r, %r], oracle [%r, %r], max_activation %r' % (f, lo_s, hi_s, lo, hi, feats[f][1]))
    ex, near = heights_exact(data, lo, hi)
    near_total += near
    th = heights_torch(data, lo, hi)
    check(got == th, 'feature %d: bars %s, torch.histc %s' % (f, got, th))
    check(sum(abs(a - b) for a, b in zip(got, ex)) <= 2 * near,
          'feature %d: bars %s, exact %s (%d near an edge)' % (f, got, ex, near))
    vals = values_torch(lo, hi)
    w = (Fraction(hi) - Fraction(lo)) / BARS
    check(all(abs(float(Fraction(lo) + (j + Fraction(1, 2)) * w) - v) <= 1.01e-5 for j, v in enumerate(vals)),
          'feature %d: values %s off the centres' % (f, vals[:3]))
    want[f] = (th, vals)
args = sys.argv[3:]
for k in range(0, len(args), 2):
    f, doc = int(args[k]), json.load(open(args[k + 1]))
    h, v = want.get(f, (None, None))
    check(doc['freq_hist_data_bar_heights'] == h,
          '%s: feature %d heights %s, oracle %s' % (args[k + 1], f, doc['freq_hist_data_bar_heights'], h))
    check(doc['freq_hist_data_bar_values'] == v,
          '%s: feature %d values %s, oracle %s' % (args[k + 1], f, doc['freq_hist_data_bar_values'][:4], (v or [])[:4]))
for b in bad[:20]:
    print('oracle:', b)
print('np_hist_oracle: %d features, %d values within 1e-5 of an edge, %d failures' % (len(rows), near_total, len(bad)))
sys.exit(1 if bad else 0)
