// Tiny DOM builders. Text always goes in through text nodes (never innerHTML),
// so data from the API cannot inject markup.

import { fmtInt } from './format.js';

function apply(node, attrs) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.setAttribute('class', v);
    else if (k === 'text') node.textContent = v;
    else if (k.startsWith('on') && typeof v === 'function') node.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  return node;
}

function append(node, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

// h('a', {href: '/x', class: 'y'}, 'text', child...) builds an HTML element.
export function h(tag, attrs, ...children) {
  return append(apply(document.createElement(tag), attrs), children);
}

const SVG = 'http://www.w3.org/2000/svg';

// s('rect', {x: 1}) builds an SVG element.
export function s(tag, attrs, ...children) {
  return append(apply(document.createElementNS(SVG, tag), attrs), children);
}

// The states every page shows instead of leaving a blank area.
export function loadingState(what = 'Loading…') {
  return h('p', { class: 'state state-loading', role: 'status' }, what);
}

export function emptyState(title, ...body) {
  return h('div', { class: 'state state-empty' }, h('p', { class: 'state-title' }, title), ...body);
}

// An error box naming the API's error code; `retry` adds a Retry button.
export function errorState(err, retry, title = 'Something went wrong') {
  const box = h('div', { class: 'state state-error', role: 'alert' },
    h('p', { class: 'state-title' }, title),
    h('p', {}, err?.message || String(err)),
    err?.code ? h('p', { class: 'muted' }, 'code: ', h('code', {}, err.code),
      err.status ? ` · HTTP ${err.status}` : '') : null);
  if (retry) box.append(h('button', { type: 'button', onclick: retry }, 'Retry'));
  return box;
}

// A heading that navigation moves focus to (tabindex -1: focusable by script only).
export function pageHeading(text) {
  return h('h1', { tabindex: '-1' }, text);
}

// Replaces the children of `node`, skipping null/false (unlike replaceChildren,
// which would print them as text) so conditional parts can be written inline.
export function fill(node, ...children) {
  node.replaceChildren();
  return append(node, children);
}

// The pager under a paged list: Previous, "51–100 of 230 · page 2 of 5",
// Next. `go(offset)` shows the list from `offset`.
export function pager(offset, total, shown, pageSize, go) {
  const from = total ? offset + 1 : 0;
  const to = offset + shown;
  const pages = Math.max(1, Math.ceil(total / pageSize));
  const page = Math.floor(offset / pageSize) + 1;
  return h('nav', { class: 'pager', 'aria-label': 'Pages of results' },
    h('button', { type: 'button', 'data-pager': 'prev', disabled: offset === 0, onclick: () => go(Math.max(0, offset - pageSize)) }, '‹ Previous'),
    h('span', { class: 'pager-pos' }, `${fmtInt(from)}–${fmtInt(to)} of ${fmtInt(total)} · page ${fmtInt(page)} of ${fmtInt(pages)}`),
    h('button', { type: 'button', 'data-pager': 'next', disabled: to >= total, onclick: () => go(offset + pageSize) }, 'Next ›'));
}

// What the "dead" badge means, said beside it or in a caption of the page.
export const DEAD_NOTE = 'never active on the indexed corpus';

// The "dead" badge of a feature that never fired on the indexed corpus; its
// title repeats DEAD_NOTE, which every page with a badge also shows as text.
export function deadBadge() {
  return h('span', { class: 'badge dead', title: DEAD_NOTE }, 'dead');
}
