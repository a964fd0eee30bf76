// What is loaded: the SAE (architecture, dimensions, dtype, digest, source
// model and hook) and the feature index summary (corpus size, build settings),
// straight from GET /v1/model.

import { api } from './api.js';
import { emptyState, errorState, fill, h, pageHeading } from './dom.js';
import { fmtInt, fmtNum } from './format.js';

const MODEL_FIELDS = [
  ['architecture', 'Architecture'],
  ['d_in', 'd_in (input width)'],
  ['d_sae', 'd_sae (features)'],
  ['dtype', 'Weights dtype'],
  ['model_name', 'Model'],
  ['hook_name', 'Hook'],
  ['weights_digest', 'Weights digest (XXH3-128)'],
];

function value(v) {
  if (v === null || v === undefined || v === '') return h('span', { class: 'muted' }, '—');
  if (typeof v === 'number') return Number.isInteger(v) ? fmtInt(v) : fmtNum(v, 6);
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (Array.isArray(v)) {
    if (v.every((x) => typeof x !== 'object' || x === null)) return v.map((x) => String(x)).join(', ');
    return h('ol', { class: 'plain' }, v.map((x) => h('li', {}, value(x))));
  }
  if (typeof v === 'object') return kv(v);
  return String(v);
}

// An object's keys and values as a description list, nested objects nested.
function kv(obj, known = []) {
  const names = new Map(known);
  const keys = [...known.map(([k]) => k).filter((k) => k in obj), ...Object.keys(obj).filter((k) => !names.has(k))];
  return h('dl', { class: 'kv' }, keys.map((k) => h('div', { class: 'kv-row' },
    h('dt', {}, names.get(k) ?? k.replace(/_/g, ' ')),
    h('dd', { 'data-key': k, class: /digest/.test(k) ? 'mono' : null }, value(obj[k])))));
}

export async function render(main, ctx) {
  document.title = 'Model · saed';
  let m;
  try {
    m = await api('/v1/model', { signal: ctx.signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    fill(main, pageHeading('Model'), errorState(e, () => render(main, ctx), 'Could not load the model description'));
    return null;
  }
  const rest = Object.fromEntries(Object.entries(m).filter(([k]) => k !== 'index'));
  fill(main, pageHeading('Model'),
    h('section', { class: 'panel', 'aria-labelledby': 'sae-h' }, h('h2', { id: 'sae-h' }, 'Sparse autoencoder'),
      kv(rest, MODEL_FIELDS)),
    h('section', { class: 'panel', 'aria-labelledby': 'index-h' }, h('h2', { id: 'index-h' }, 'Feature index'),
      m.index && typeof m.index === 'object'
        ? kv(m.index)
        : emptyState('No feature index is loaded',
          h('p', {}, 'Feature pages need one: build it with ', h('code', {}, 'sae index'),
            ' and start saed with ', h('code', {}, '--index FILE.db'), '.'))),
    h('p', { class: 'muted api-links' }, 'Machine-readable: ', h('code', {}, 'GET /v1/model'), ' · ',
      h('a', { href: '/openapi.json', 'data-external': '' }, 'OpenAPI description')));
  return null;
}
