// The formatting rules the pages print numbers and tokens with (web/assets/format.js),
// against hand-written expectations: the browser test compares page text with
// these functions, so they must be right on their own.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadWebModule } from './load-module.mjs';

const f = await loadWebModule('format.js');

test('fmtNum: four significant digits, trailing zeros dropped, exponents outside [1e-3, 1e6)', () => {
  assert.equal(f.fmtNum(0), '0');
  assert.equal(f.fmtNum(1), '1');
  assert.equal(f.fmtNum(12.3456), '12.35');
  assert.equal(f.fmtNum(-0.5), '-0.5');
  assert.equal(f.fmtNum(0.001234567), '0.001235');
  assert.equal(f.fmtNum(0.000123), '1.23e-4');
  assert.equal(f.fmtNum(12345.6), '12346');
  assert.equal(f.fmtNum(2.5e7), '2.5e7');
  assert.equal(f.fmtNum(3.14159, 3), '3.14');
  assert.equal(f.fmtNum(null), '—');
  assert.equal(f.fmtNum(Infinity), '∞');
});

test('fmtDensity: a percentage with three significant digits', () => {
  assert.equal(f.fmtDensity(0), '0%');
  assert.equal(f.fmtDensity(1), '100%');
  assert.equal(f.fmtDensity(0.001234), '0.123%');
  assert.equal(f.fmtDensity(0.5), '50%');
  assert.equal(f.fmtDensity(1.5e-7), '1.5e-5%');
  assert.equal(f.fmtDensity(undefined), '—');
});

test('fmtInt: thousands separators, whatever the locale', () => {
  assert.equal(f.fmtInt(0), '0');
  assert.equal(f.fmtInt(999), '999');
  assert.equal(f.fmtInt(1234567), '1,234,567');
  assert.equal(f.fmtInt(-4096), '-4,096');
});

test('featureLabel: the best-scored explanation, the first of equals, null without one', () => {
  assert.equal(f.featureLabel({ explanations: [] }), null);
  assert.equal(f.featureLabel({}), null);
  assert.equal(f.featureLabel({ explanations: [{ description: 'a', score: 0.2 }, { description: 'b', score: 0.9 }] }), 'b');
  assert.equal(f.featureLabel({ explanations: [{ description: 'a', score: 0.5 }, { description: 'b', score: 0.5 }] }), 'a');
  assert.equal(f.featureLabel({ explanations: [{ description: 'a' }, { description: 'b', score: 0 }] }), 'b');
  assert.equal(f.featureLabel({ explanations: [{ description: '  ', score: 1 }, { description: 'x', score: null }] }), 'x');
});

test('displayToken: spaces kept, newline as ↵ then a break, controls as pictures, empty as ∅', () => {
  assert.equal(f.displayToken(' cat'), ' cat');
  assert.equal(f.displayToken('\n'), '↵\n');
  assert.equal(f.displayToken('a\tb'), 'a⇥b');
  assert.equal(f.displayToken('\u0000'), '␀');
  assert.equal(f.displayToken('\r\n'), '␍↵\n');
  assert.equal(f.displayToken(''), '∅');
  assert.equal(f.displayToken('héllo 😀'), 'héllo 😀');
  assert.equal(f.displayToken('<b>&amp;'), '<b>&amp;');
});

test('histogramRange: first to last non-empty bin', () => {
  assert.equal(f.histogramRange([0, 0, 0]), null);
  assert.deepEqual(f.histogramRange([0, 3, 0, 1, 0]), [1, 3]);
  assert.deepEqual(f.histogramRange([5]), [0, 0]);
});

test('shade: square root of value over scale, clamped to 0..1', () => {
  assert.equal(f.shade(1, 4), 0.5);
  assert.ok(f.shade(0.01, 4) > 0.04, 'a small value keeps a visible strength');
  assert.equal(f.shade(8, 4), 1);
  assert.equal(f.shade(-1, 4), 0);
  assert.equal(f.shade(1, 0), 0);
});

// saed's 258 histogram edges (docs/INDEX.md): 0, then 2^e·(1 + k/8) for e = −16..15,
// k = 0..7, then 2^16; the open last bin's top is left out, as the API does.
function saedEdges() {
  const e = [0];
  for (let x = -16; x < 16; x++) for (let k = 0; k < 8; k++) e.push(2 ** x * (1 + k / 8));
  e.push(2 ** 16);
  return e;
}

test('tickPositions: both ends, and labels that never overprint at TICK_CHAR_PX a character', () => {
  const edges = saedEdges();
  const nBins = edges.length; // 258 bins, 258 lower edges
  let checked = 0;
  for (let lo = 0; lo < nBins - 2; lo += 7) {
    for (let hi = lo + 1; hi < nBins; hi += 11) {
      const n = hi - lo + 1;
      for (const [width, want] of [[330, 3], [700, 6], [1200, 6]]) {
        const px = width / n;
        const at = f.tickPositions(edges, nBins, lo, n, want, px);
        assert.equal(at[0], 0);
        assert.equal(at[at.length - 1], n);
        for (let k = 1; k < at.length; k++) {
          // Written out here rather than through tickReach: the first label is
          // anchored at its start, the last at its end, the others centred.
          const wa = f.fmtNum(f.edgeAt(edges, nBins, lo + at[k - 1]), 3).length * f.TICK_CHAR_PX;
          const wb = f.fmtNum(f.edgeAt(edges, nBins, lo + at[k]), 3).length * f.TICK_CHAR_PX;
          const ra = at[k - 1] === 0 ? wa : wa / 2, lb = at[k] === n ? wb : wb / 2;
          // The two ends are always labelled, even when the range is too narrow to
          // keep them apart; every tick between them keeps clear of its neighbours.
          if (at.length > 2) {
            assert.ok((at[k] - at[k - 1]) * px >= ra + lb + 8,
              `bins ${lo}..${hi} at ${width} px: ticks ${at[k - 1]} and ${at[k]} overprint`);
          }
        }
        checked++;
      }
    }
  }
  assert.ok(checked > 500, `${checked} layouts checked`);
});

test('byScore: best score first, unscored last, ties in the order given', () => {
  const e = [{ d: 'a' }, { d: 'b', score: 0.2 }, { d: 'c', score: 0.9 }, { d: 'd', score: 0.2 }, { d: 'e', score: null }];
  assert.deepEqual(f.byScore(e).map((x) => x.d), ['c', 'b', 'd', 'a', 'e']);
  assert.deepEqual(f.byScore([]), []);
});

test('prefixQuery: the last word of a search becomes a prefix, unless it ends in punctuation', () => {
  assert.equal(f.prefixQuery('nega'), 'nega*');
  assert.equal(f.prefixQuery('French quot'), 'French quot*');
  assert.equal(f.prefixQuery('"exact phrase"'), '"exact phrase"');
  assert.equal(f.prefixQuery('numbers*'), 'numbers*');
  assert.equal(f.prefixQuery('café'), 'café*');
});
