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

// Shading strength of a token, 0..1, relative to `scale` (the feature's max).
export function shade(value, scale) {
  if (!(scale > 0) || !(value > 0)) return 0;
  return Math.min(1, value / scale);
}
