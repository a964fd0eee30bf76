// An example's tokens, each shaded by the feature's activation on it. Each
// token shows its value on hover and on focus; the example is one Tab stop
// and the arrow keys move between its tokens (a roving tabindex), so keyboard
// users are not made to Tab through every token of every example.

import { h } from './dom.js';
import { displayToken, fmtNum, shade } from './format.js';

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

// The tokens of `ex` (an example object of the API) shaded relative to `scale`.
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

export function tokenLine(ex, scale) {
  const tokens = Array.isArray(ex.tokens) ? ex.tokens : [];
  const values = Array.isArray(ex.values) ? ex.values : [];
  const { markAt, maxAt } = exampleMarks(ex);
  // The marked token is the one the example stands for: its max for a top
  // example, the token sampled into the bin for a quantile one.
  const markName = markAt === maxAt ? 'max' : 'sampled';
  const line = h('p', {
    class: 'tokens', role: 'group', onkeydown: move,
    'aria-label': `Tokens of document ${ex.document ?? '?'}; arrow keys move between tokens`,
  });
  tokens.forEach((tok, i) => {
    const v = typeof values[i] === 'number' ? values[i] : 0;
    const a = shade(v, scale);
    const isMark = i === markAt;
    const note = isMark ? markName : (i === maxAt ? 'max' : '');
    const span = h('span', {
      class: `tok${a > 0 ? ' on' : ''}${a > 0.55 ? ' hot' : ''}${isMark ? ' mark' : ''}`,
      tabindex: isMark ? '0' : '-1',
      role: 'img', 'aria-roledescription': 'token',
      'aria-label': `${JSON.stringify(tok)}: ${fmtNum(v)}${note ? ` (${note})` : ''}`,
      'data-tip': `${fmtNum(v)}${note ? ` ${note}` : ''}`,
      'data-value': v,
    }, displayToken(tok));
    if (a > 0) span.style.setProperty('--a', a.toFixed(3));
    line.append(span);
  });
  return line;
}
