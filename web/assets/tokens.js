// An example's tokens, each shaded by the feature's activation on it. Each
// token shows its value on hover and on focus (a tap focuses it); the example
// is one Tab stop and the arrow keys move between its tokens (a roving
// tabindex), so keyboard users are not made to Tab through every token of
// every example. The feature page shows SHOWN_CONTEXT tokens either side of
// the marked one, with a button to show all the index stored.

import { h } from './dom.js';
import { displayToken, fmtInt, fmtNum, shade } from './format.js';

function move(e) {
  const toks = [...e.currentTarget.querySelectorAll('.tok')];
  const at = toks.indexOf(document.activeElement);
  if (at < 0) return;
  let to = at;
  if (e.key === 'ArrowRight' || e.key === 'ArrowDown') to = Math.min(toks.length - 1, at + 1);
  else if (e.key === 'ArrowLeft' || e.key === 'ArrowUp') to = Math.max(0, at - 1);
  else if (e.key === 'Home') to = 0;
  else if (e.key === 'End') to = toks.length - 1;
  else return;
  e.preventDefault();
  toks[at].tabIndex = -1;
  toks[to].tabIndex = 0;
  toks[to].focus();
}

// Where an example's marks go: markAt is the token it was picked for
// (focus_index), maxAt its largest value (max_token_index); each falls back
// on the other, then on the largest value, when the API leaves it out.
export function exampleMarks(ex) {
  const n = Array.isArray(ex.tokens) ? ex.tokens.length : 0;
  const values = Array.isArray(ex.values) ? ex.values : [];
  const ok = (k) => Number.isInteger(k) && k >= 0 && k < n;
  const maxAt = ok(ex.max_token_index) ? ex.max_token_index
    : values.reduce((best, v, i) => (v > (values[best] ?? -Infinity) ? i : best), 0);
  return { markAt: ok(ex.focus_index) ? ex.focus_index : maxAt, maxAt };
}

// Tokens either side of the marked token shown before "expand" (the index may
// store more: sae index --context).
export const SHOWN_CONTEXT = 8;

// The document position of window token k, or null when the API gives no
// token_offset (an older saed).
export function docPos(ex, k) {
  return Number.isInteger(ex.token_offset) ? ex.token_offset + k : null;
}

// "document token 1,234", or "window token 7" when the document position is
// unknown: a position always says which it is.
export function posLabel(ex, k) {
  const d = docPos(ex, k);
  return d === null ? `window token ${k}` : `document token ${fmtInt(d)}`;
}

// The part of the window shown by default: SHOWN_CONTEXT tokens either side
// of the marked token, as [from, to).
export function shownRange(ex, context = SHOWN_CONTEXT) {
  const n = Array.isArray(ex.tokens) ? ex.tokens.length : 0;
  const { markAt } = exampleMarks(ex);
  return { from: Math.max(0, markAt - context), to: Math.min(n, markAt + context + 1) };
}

// "…" for the stored tokens a shortened line leaves out (the expand button
// says how many; the dots only show that the line goes on).
function elided() {
  return h('span', { class: 'elided', 'aria-hidden': 'true' }, '…');
}

// The tokens of `ex` (an example object of the API, or a span of a document:
// anything with tokens, values and optionally focus_index, max_token_index,
// token_offset) shaded relative to `scale`: tokens from..to-1 of it (all by
// default), with "…" where stored tokens are left out. `marks` (window index
// -> { note, other }) replaces the example's own marks: the document page
// marks the focus of every example in a span, `other` for those of other
// examples.
export function tokenLine(ex, scale, { from = 0, to = null, marks = null } = {}) {
  const tokens = Array.isArray(ex.tokens) ? ex.tokens : [];
  const values = Array.isArray(ex.values) ? ex.values : [];
  const end = to === null ? tokens.length : Math.min(to, tokens.length);
  const { markAt, maxAt } = exampleMarks(ex);
  // The marked token is the one the example stands for: its max for a top
  // example, the token sampled into the bin for a quantile one.
  const markName = markAt === maxAt ? 'max' : 'sampled';
  const line = h('p', {
    class: 'tokens', role: 'group', onkeydown: move,
    'aria-label': `Tokens of document ${ex.document ?? '?'}${from > 0 || end < tokens.length ? ', part of the stored window' : ''}; arrow keys move between tokens`,
    'data-from': from, 'data-to': end,
  });
  if (from > 0) line.append(elided());
  const mine = marks ?? new Map([[maxAt, { note: 'max' }], [markAt, { note: markName }]]);
  const first = [...mine.entries()].find(([k, m]) => !m.other && k >= from && k < end)?.[0];
  const focusAt = first ?? from;
  for (let i = from; i < end; i++) {
    const tok = tokens[i];
    const v = typeof values[i] === 'number' ? values[i] : 0;
    const a = shade(v, scale);
    const m = mine.get(i);
    const isMark = m && (marks ? true : i === markAt);
    const note = m?.note ?? '';
    const pos = docPos(ex, i);
    const span = h('span', {
      class: `tok${a > 0 ? ' on' : ''}${a > 0.55 ? ' hot' : ''}${isMark ? ' mark' : ''}${m?.other ? ' other' : ''}`,
      tabindex: i === focusAt ? '0' : '-1',
      role: 'img', 'aria-roledescription': 'token',
      'aria-label': `${JSON.stringify(tok)}: ${fmtNum(v)}${note ? ` (${note})` : ''}`,
      'data-tip': `${fmtNum(v)}${note ? ` ${note}` : ''}`,
      'data-value': v,
      'data-pos': pos ?? i,
    }, displayToken(tok));
    if (a > 0) span.style.setProperty('--a', a.toFixed(3));
    line.append(span);
  }
  if (end < tokens.length) line.append(elided());
  return line;
}

// An example's tokens as the feature page shows them: SHOWN_CONTEXT tokens
// either side of the marked one and, when the index stored more, a button
// that shows the whole stored window (and back). Keyboard focus stays on the
// button; the token line is replaced in place.
export function exampleTokens(ex, scale) {
  const n = Array.isArray(ex.tokens) ? ex.tokens.length : 0;
  const short = shownRange(ex);
  let line = tokenLine(ex, scale, short);
  if (short.from === 0 && short.to === n) return line;
  const hidden = n - (short.to - short.from);
  const box = h('div', { class: 'example-tokens' }, line);
  const button = h('button', { type: 'button', class: 'expand', 'aria-expanded': 'false' },
    `Expand: all ${fmtInt(n)} stored tokens (+${fmtInt(hidden)})`);
  button.addEventListener('click', () => {
    const open = button.getAttribute('aria-expanded') !== 'true';
    const next = tokenLine(ex, scale, open ? {} : short);
    line.replaceWith(next);
    line = next;
    button.setAttribute('aria-expanded', String(open));
    button.textContent = open ? `Collapse to ±${SHOWN_CONTEXT} tokens` : `Expand: all ${fmtInt(n)} stored tokens (+${fmtInt(hidden)})`;
  });
  box.append(button);
  return box;
}
