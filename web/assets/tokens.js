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
export function tokenLine(ex, scale) {
  const tokens = Array.isArray(ex.tokens) ? ex.tokens : [];
  const values = Array.isArray(ex.values) ? ex.values : [];
  let maxAt = Number.isInteger(ex.max_token_index) ? ex.max_token_index : -1;
  if (maxAt < 0 || maxAt >= tokens.length) {
    maxAt = values.reduce((best, v, i) => (v > (values[best] ?? -Infinity) ? i : best), 0);
  }
  const line = h('p', {
    class: 'tokens', role: 'group', onkeydown: move,
    'aria-label': `Tokens of document ${ex.document ?? '?'}; arrow keys move between tokens`,
  });
  tokens.forEach((tok, i) => {
    const v = typeof values[i] === 'number' ? values[i] : 0;
    const a = shade(v, scale);
    const isMax = i === maxAt;
    const span = h('span', {
      class: `tok${a > 0 ? ' on' : ''}${a > 0.55 ? ' hot' : ''}${isMax ? ' max' : ''}`,
      tabindex: isMax ? '0' : '-1',
      role: 'img', 'aria-roledescription': 'token',
      'aria-label': `${JSON.stringify(tok)}: ${fmtNum(v)}${isMax ? ' (max)' : ''}`,
      'data-tip': `${fmtNum(v)}${isMax ? ' max' : ''}`,
      'data-value': v,
    }, displayToken(tok));
    if (a > 0) span.style.setProperty('--a', a.toFixed(3));
    line.append(span);
  });
  return line;
}
