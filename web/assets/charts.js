// SVG charts: the activation histogram with labelled axes, and the row sparkline.
// Both draw one rect per bin over histogramRange(counts) (first to last
// non-empty bin), each bar as wide as the others whatever the bin edges are,
// so fixed bins of any spacing (linear or logarithmic) read the same way.

import { h, s } from './dom.js';
import { clippedRange, edgeAt, fmtCount, fmtInt, fmtNum, histogramRange, roundValues } from './format.js';

// Round tick values covering 0..max: about `want` steps of 1, 2 or 5 × 10^k.
// With `whole`, steps are whole numbers (token counts: no "0.5 tokens").
export function niceTicks(max, want = 4, whole = false) {
  if (!(max > 0)) return [0, 1];
  const raw = max / want;
  const mag = 10 ** Math.floor(Math.log10(raw));
  let step = [1, 2, 5, 10].map((m) => m * mag).find((st) => st >= raw);
  if (whole) step = Math.max(1, Math.round(step));
  const ticks = [];
  for (let v = 0; v < max + step * 0.999; v += step) ticks.push(Number(v.toPrecision(12)));
  return ticks;
}

function binLabel(edges, i, nBins = edges.length - 1) {
  if (edges.length <= i) return `bin ${i}`;
  return `${fmtNum(edges[i], 3)} – ${fmtNum(edgeAt(edges, nBins, i + 1), 3)}`;
}

// Whether bins lo..hi grow in width (fixed bins spaced by ratio, as saed's
// index uses), so equal-width bars make the axis logarithmic.
function geometric(edges, nBins, lo, hi) {
  const w = [];
  for (let i = lo; i <= hi; i++) {
    const d = edgeAt(edges, nBins, i + 1) - edgeAt(edges, nBins, i);
    if (Number.isFinite(d) && d > 0) w.push(d);
  }
  return w.length > 1 && Math.max(...w) > 2.5 * Math.min(...w);
}

// The histogram of a feature's activations as an SVG figure, `width` CSS
// pixels wide. Bars carry data-count and a <title> with their range.
export function histogramPlot(hist, width) {
  const counts = Array.isArray(hist?.counts) ? hist.counts : [];
  const edges = Array.isArray(hist?.edges) ? hist.edges : [];
  const clip = clippedRange(counts);
  if (!clip) return null;
  const { lo, hi } = clip;
  const n = hi - lo + 1;
  const label = (i) => binLabel(edges, i, counts.length);
  const narrow = width < 480;
  const height = narrow ? 200 : 260;
  const m = { top: 12, right: 14, bottom: 46, left: narrow ? 48 : 60 };
  const pw = Math.max(40, width - m.left - m.right);
  const ph = height - m.top - m.bottom;
  const max = Math.max(...counts.slice(lo, hi + 1));
  const yt = niceTicks(max, 4, true);
  const ymax = yt[yt.length - 1];
  const bw = pw / n;
  const gap = bw > 4 ? 1 : 0;
  const y = (c) => m.top + ph - (c / ymax) * ph;
  const svg = s('svg', {
    class: 'histogram', width, height, viewBox: `0 0 ${width} ${height}`,
    role: 'img', 'aria-labelledby': 'hist-title', 'data-below': clip.below, 'data-above': clip.above,
  }, s('title', { id: 'hist-title' },
    `Histogram of activations: ${fmtCount(n, 'bin')} from ${label(lo).split(' – ')[0]} to ` +
    `${label(hi).split(' – ')[1] ?? ''}, at most ${fmtCount(max, 'token')} in a bin`));

  const grid = s('g', { class: 'axis y-axis' });
  for (const t of yt) {
    grid.append(s('line', { x1: m.left, x2: m.left + pw, y1: y(t), y2: y(t), class: 'gridline' }),
      s('text', { x: m.left - 6, y: y(t), dy: '0.32em', 'text-anchor': 'end' }, fmtNum(t, 3)));
  }
  grid.append(s('text', {
    class: 'axis-title', transform: `translate(12 ${m.top + ph / 2}) rotate(-90)`, 'text-anchor': 'middle',
  }, 'tokens'));
  svg.append(grid);

  const bars = s('g', { class: 'bars' });
  for (let i = lo; i <= hi; i++) {
    const c = counts[i];
    const top = c > 0 ? Math.min(y(c), m.top + ph - 1) : m.top + ph;
    bars.append(s('rect', {
      class: 'bar', x: m.left + (i - lo) * bw + gap / 2, width: Math.max(0.5, bw - gap),
      y: top, height: m.top + ph - top, 'data-count': c, 'data-bin': i,
    }, s('title', {}, `${label(i)}: ${fmtCount(c, 'token')}`)));
  }
  svg.append(bars);

  const xa = s('g', { class: 'axis x-axis' },
    s('line', { x1: m.left, x2: m.left + pw, y1: m.top + ph, y2: m.top + ph, class: 'baseline' }));
  // Ticks at round values, placed inside their bin (log or linear within it).
  if (edges.length >= counts.length) {
    const log = geometric(edges, counts.length, lo, hi);
    const a = edgeAt(edges, counts.length, lo);
    const bTop = edgeAt(edges, counts.length, hi + 1);
    const b = Number.isFinite(bTop) ? bTop : edgeAt(edges, counts.length, hi);
    const posOf = (v) => {
      for (let i = lo; i <= hi; i++) {
        const e0 = edgeAt(edges, counts.length, i);
        const e1 = edgeAt(edges, counts.length, i + 1);
        if (v >= e0 && (v < e1 || (i === hi && v <= e1))) {
          const f = !Number.isFinite(e1) ? 0 : log && e0 > 0 ? Math.log(v / e0) / Math.log(e1 / e0) : (v - e0) / (e1 - e0);
          return i - lo + f;
        }
      }
      return null;
    };
    let lastRight = -Infinity;
    for (const v of roundValues(log && a <= 0 ? b / 1e6 : a, b, narrow ? 4 : 7, log && a > 0)) {
      const k = posOf(v);
      if (k === null) continue;
      const x = m.left + k * bw;
      const text = fmtNum(v, 3);
      const w = text.length * 7;
      if (x - w / 2 < lastRight + 6 || x + w / 2 > width) continue;
      lastRight = x + w / 2;
      xa.append(s('line', { x1: x, x2: x, y1: m.top + ph, y2: m.top + ph + 4, class: 'tick' }),
        s('text', { x, y: m.top + ph + 16, 'text-anchor': 'middle', 'data-tick': v }, text));
    }
  }
  xa.append(s('text', { class: 'axis-title', x: m.left + pw / 2, y: height - 6, 'text-anchor': 'middle' },
    geometric(edges, counts.length, lo, hi) ? 'activation (log scale)' : 'activation'));
  svg.append(xa);
  return svg;
}

// The bins of a histogram as a table, for screen readers and exact numbers.
export function histogramTable(hist) {
  const counts = Array.isArray(hist?.counts) ? hist.counts : [];
  const edges = Array.isArray(hist?.edges) ? hist.edges : [];
  const range = histogramRange(counts);
  if (!range) return null;
  const rows = [];
  for (let i = range[0]; i <= range[1]; i++) {
    rows.push(h('tr', {}, h('td', {}, binLabel(edges, i, counts.length)), h('td', { class: 'num' }, fmtInt(counts[i]))));
  }
  return h('table', { class: 'bins' },
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'activation'), h('th', { scope: 'col', class: 'num' }, 'tokens'))),
    h('tbody', {}, rows));
}

// A small bar sparkline of a histogram (decorative: the row gives the numbers).
export function sparkline(hist, width = 96, height = 22) {
  const counts = Array.isArray(hist?.counts) ? hist.counts : [];
  const range = histogramRange(counts);
  const svg = s('svg', {
    class: 'sparkline', width, height, viewBox: `0 0 ${width} ${height}`, 'aria-hidden': 'true', focusable: 'false',
  });
  if (!range) {
    svg.append(s('line', { x1: 0, x2: width, y1: height - 0.5, y2: height - 0.5, class: 'baseline' }));
    return svg;
  }
  const [lo, hi] = range;
  const n = hi - lo + 1;
  const max = Math.max(...counts.slice(lo, hi + 1));
  const bw = width / n;
  for (let i = lo; i <= hi; i++) {
    const bh = counts[i] > 0 ? Math.max(1, (counts[i] / max) * height) : 0;
    svg.append(s('rect', { x: (i - lo) * bw, width: Math.max(0.5, bw - (bw > 3 ? 0.5 : 0)), y: height - bh, height: bh }));
  }
  return svg;
}
