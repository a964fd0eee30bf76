// Number and token formatting shared by every page. Pure functions, no DOM:
// the browser test imports this file too, so what it expects on screen is
// computed exactly the way the page computes it.

// Removes trailing zeros of a fixed-point string: "12.30" -> "12.3", "1.000" -> "1".
function trimZeros(s) {
  if (!s.includes('.') || s.includes('e')) return s;
  return s.replace(/0+$/, '').replace(/\.$/, '');
}

// A measurement with `sig` significant digits, plain below a million and at or
// above 0.001, exponent form outside that range. Missing values read "—".
export function fmtNum(x, sig = 4) {
  if (typeof x !== 'number' || Number.isNaN(x)) return '—';
  if (!Number.isFinite(x)) return x > 0 ? '∞' : '-∞';
  if (x === 0) return '0';
  const a = Math.abs(x);
  if (a >= 10 ** sig && a < 1e6) return String(Math.round(x));
  if (a >= 1e-3 && a < 1e6) return trimZeros(x.toPrecision(sig));
  const [m, e] = x.toExponential(sig - 1).split('e');
  return `${trimZeros(m)}e${Number(e)}`;
}

// A fraction of tokens shown as a percentage with three significant digits.
export function fmtDensity(d) {
  if (typeof d !== 'number' || !Number.isFinite(d)) return '—';
  if (d === 0) return '0%';
  return `${fmtNum(d * 100, 3)}%`;
}

// An integer with thousands separators (locale-independent, so tests agree).
export function fmtInt(n) {
  if (typeof n !== 'number' || !Number.isFinite(n)) return '—';
  const s = String(Math.trunc(Math.abs(n))).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
  return n < 0 ? `-${s}` : s;
}

// Explanations best first: by score descending, unscored last, the API's order
// among equals (as featureLabel picks the first of equals).
export function byScore(explanations) {
  return explanations.map((e, k) => [e, k])
    .sort(([a, i], [b, j]) => scoreOf(b) - scoreOf(a) || i - j)
    .map(([e]) => e);
}

// "1 token", "2 tokens": a count with its noun, singular for one.
export function fmtCount(n, noun) {
  return `${fmtInt(n)} ${noun}${n === 1 ? '' : 's'}`;
}

function scoreOf(e) {
  return typeof e.score === 'number' && Number.isFinite(e.score) ? e.score : -Infinity;
}

// The label of a feature: the description of its best-scored explanation
// (the first of equals), or null when it has none.
export function featureLabel(feature) {
  const list = Array.isArray(feature?.explanations) ? feature.explanations : [];
  let best = null;
  for (const e of list) {
    if (!e || typeof e.description !== 'string' || !e.description.trim()) continue;
    if (best === null || scoreOf(e) > scoreOf(best)) best = e;
  }
  return best ? best.description : null;
}

// How a token is drawn: spaces stay spaces (the page keeps them with
// white-space: pre-wrap), a newline shows as ↵ and then breaks the line, a tab
// as ⇥, other control characters as their Unicode control pictures, and an
// empty token as ∅ so it can still be seen and hovered.
export function displayToken(tok) {
  if (typeof tok !== 'string') return '∅';
  if (tok === '') return '∅';
  let out = '';
  for (const ch of tok) {
    const c = ch.codePointAt(0);
    if (ch === '\n') out += '↵\n';
    else if (ch === '\t') out += '⇥';
    else if (ch === '\r') out += '␍';
    else if (c < 0x20) out += String.fromCodePoint(0x2400 + c);
    else if (c === 0x7f) out += '␡';
    else out += ch;
  }
  return out;
}

// The bins a histogram plot shows: from the first to the last non-empty bin
// (empty bins inside stay), or null when every bin is empty.
export function histogramRange(counts) {
  if (!Array.isArray(counts)) return null;
  let lo = -1;
  let hi = -1;
  counts.forEach((c, i) => {
    if (c > 0) {
      if (lo < 0) lo = i;
      hi = i;
    }
  });
  return lo < 0 ? null : [lo, hi];
}

// Shading strength of a token, 0..1, relative to `scale` (the feature's max):
// the square root of value / scale, so that small values stay visible (a
// linear ramp leaves everything under a tenth of the max near white); 0 for
// a value of 0 or less. style.css adds a visible minimum (--tok-min) to any
// strength above 0.
export function shade(value, scale) {
  if (!(scale > 0) || !(value > 0)) return 0;
  return Math.min(1, Math.sqrt(value / scale));
}

// Edge k of a histogram of `nBins` bins. `edges` holds nBins + 1 bounds, or
// only the nBins lower bounds when the last bin is open (its top is ∞, which
// JSON cannot carry).
export function edgeAt(edges, nBins, k) {
  if (k < edges.length) return edges[k];
  return k === nBins ? Infinity : NaN;
}

// How plain a number reads on the axis: its significant digits as printed
// (0.5 and 2 have one, 0.125 three), powers of two counting a little less so a
// log axis gets ticks at whole octaves. Ticks prefer the plainest edges.
function digits(v) {
  const d = fmtNum(v, 3).replace(/^-/, '').replace(/e.*$/, '').replace('.', '').replace(/^0+/, '').replace(/0+$/, '').length;
  return Number.isInteger(Math.log2(Math.abs(v))) ? d - 0.5 : d;
}

// The width of one character of an axis label, an upper bound: the labels are
// 11 px digits, and DejaVu Sans (the widest of the fonts style.css names) draws
// a digit 0.636 em = 7.0 px wide.
export const TICK_CHAR_PX = 7;

// How far the label of tick k reaches to the right and to the left of it: the
// first label starts at its tick and the last ends at its tick (charts.js
// anchors them so), the others are centred.
export function tickReach(edges, nBins, lo, n, k) {
  const w = fmtNum(edgeAt(edges, nBins, lo + k), 3).length * TICK_CHAR_PX;
  return { right: k === 0 ? w : k === n ? 0 : w / 2, left: k === n ? w : k === 0 ? 0 : w / 2 };
}

// Which of the n + 1 edges of the shown bins get a tick label: both ends, and
// about `want` - 1 between them, each the roundest edge within half a step of
// its even spacing, and far enough from its neighbours that the labels (as
// wide as tickReach says, 8 px apart) cannot overprint.
export function tickPositions(edges, nBins, lo, n, want, pxPerBin) {
  const at = [0];
  const step = n / want;
  const clear = (a, b) => (b - a) * pxPerBin >=
    tickReach(edges, nBins, lo, n, a).right + tickReach(edges, nBins, lo, n, b).left + 8;
  for (let t = 1; t < want; t++) {
    const target = t * step;
    let best = -1;
    for (let k = Math.max(1, Math.ceil(target - step / 2)); k <= Math.min(n - 1, Math.floor(target + step / 2)); k++) {
      const v = edgeAt(edges, nBins, lo + k);
      if (!Number.isFinite(v)) continue;
      if (best < 0 || digits(v) < digits(edgeAt(edges, nBins, lo + best)) ||
          (digits(v) === digits(edgeAt(edges, nBins, lo + best)) && Math.abs(k - target) < Math.abs(best - target))) best = k;
    }
    if (best > 0 && clear(at[at.length - 1], best) && clear(best, n)) at.push(best);
  }
  at.push(n);
  return at;
}

// A search as sent to the API: the last word is a prefix ("nega" finds
// "negation"), so results follow the typing.
export function prefixQuery(q) {
  return /[\p{L}\p{N}]$/u.test(q) ? `${q}*` : q;
}

// Below this explanation score a label is shown muted: the scorer found the
// explanation a poor predictor of where the feature fires (docs/WEB.md).
export const WEAK_SCORE = 0.3;

// The explanation a feature's label comes from (featureLabel's rule), or null.
export function bestExplanation(feature) {
  const list = Array.isArray(feature?.explanations) ? feature.explanations : [];
  let best = null;
  for (const e of list) {
    if (!e || typeof e.description !== 'string' || !e.description.trim()) continue;
    if (best === null || scoreOf(e) > scoreOf(best)) best = e;
  }
  return best;
}

// Whether a feature never fired on the indexed corpus (n_active 0, or
// density 0 where the record has no count).
export function isDead(f) {
  if (typeof f?.n_active === 'number') return f.n_active === 0;
  return f?.density === 0;
}

// An explanation score to three decimals ("0.998", never "1" for 0.9998);
// "—" when there is none.
export function fmtScore(x) {
  return typeof x === 'number' && Number.isFinite(x) ? x.toFixed(3) : '—';
}

// Whether a label should be muted: its explanation scored below WEAK_SCORE.
export function isWeak(e) {
  return typeof e?.score === 'number' && e.score < WEAK_SCORE;
}

// Who scored an explanation, from its source ("scored by gpt-4o"), or null.
export function scorerOf(e) {
  const src = typeof e?.source === 'string' ? e.source.trim() : '';
  return src ? src : null;
}

// The histogram plot shows the bins holding the CLIP_LO-th to CLIP_HI-th
// percentile of the active tokens; the tokens outside are counted, not drawn,
// so one outlier cannot stretch the axis until most of the plot is empty.
export const CLIP_LO = 0.5;
export const CLIP_HI = 99.5;

// The bins a histogram plot draws: { lo, hi, below, above } with lo..hi the
// bins of the CLIP_LO..CLIP_HI percentiles (within histogramRange) and below /
// above the tokens left out on each side; null when every bin is empty.
export function clippedRange(counts) {
  const range = histogramRange(counts);
  if (!range) return null;
  const total = counts.reduce((a, b) => a + (b > 0 ? b : 0), 0);
  const loRank = Math.floor((CLIP_LO / 100) * total); // 0-based rank of the lowest token kept
  const hiRank = Math.max(loRank, Math.ceil((CLIP_HI / 100) * total) - 1);
  let lo = range[0];
  let hi = range[1];
  let seen = 0;
  for (let i = range[0]; i <= range[1]; i++) {
    const c = counts[i] > 0 ? counts[i] : 0;
    if (seen + c > loRank) { lo = i; break; }
    seen += c;
  }
  const below = seen;
  seen = 0;
  for (let i = range[0]; i <= range[1]; i++) {
    seen += counts[i] > 0 ? counts[i] : 0;
    if (seen > hiRank) { hi = i; break; }
  }
  const above = total - seen;
  return { lo, hi, below, above };
}

// Round axis values (1, 2 and 5 × 10^k, or only 10^k when those are too
// many) between a and b (a > 0 on a log axis), at most `max` of them.
export function roundValues(a, b, max, log) {
  if (!(b > a)) return [];
  for (const mults of (log ? [[1, 2, 5], [1]] : [[1, 2, 5]])) {
    const out = [];
    if (log) {
      for (let e = Math.floor(Math.log10(a)) - 1; e <= Math.ceil(Math.log10(b)); e++) {
        for (const m of mults) {
          const v = Number((m * 10 ** e).toPrecision(12));
          if (v >= a && v <= b) out.push(v);
        }
      }
    } else {
      const raw = (b - a) / Math.max(1, max);
      const mag = 10 ** Math.floor(Math.log10(raw));
      const step = [1, 2, 5, 10].map((m) => m * mag).find((st) => st >= raw);
      for (let v = Math.ceil(a / step) * step; v <= b + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
    }
    if (out.length <= max || mults.length === 1) return out.length > max ? thin(out, max) : out;
  }
  return [];
}

function thin(list, max) {
  const every = Math.ceil(list.length / max);
  return list.filter((_, k) => k % every === 0);
}
