// What is loaded: the SAE (architecture, dimensions, dtype, digest, source
// model and hook) and the feature index summary (corpus size, build settings),
// straight from GET /v1/model (or /v1/saes/{id}/model); with several SAEs,
// every SAE saed serves (GET /v1/saes), each linking to its own pages.

import { api, getSaes } from './api.js';
import { emptyState, errorState, fill, h, pageHeading } from './dom.js';
import { fmtDensity, fmtInt, fmtNum, isDead } from './format.js';
import { defaultSae, pagePath } from './release.js';

const MODEL_FIELDS = [
  ['id', 'SAE id'],
  ['architecture', 'Architecture'],
  ['d_in', 'd_in (input width)'],
  ['d_sae', 'd_sae (features)'],
  ['dtype', 'Weights dtype'],
  ['model_name', 'Model'],
  ['hook_name', 'Hook'],
  ['weights_digest', 'Weights digest (XXH3-128)'],
];

// Human names of the index summary's keys (others: their words, spaced).
const INDEX_FIELDS = [
  ['n_features', 'Features'],
  ['n_tokens', 'Tokens indexed'],
  ['n_documents', 'Documents indexed'],
  ['corpus_tokens', 'Corpus tokens'],
  ['corpus_documents', 'Corpus documents'],
  ['n_explanations', 'Explanations'],
  ['d_in', 'd_in (input width)'],
  ['d_sae', 'd_sae (features)'],
  ['schema_version', 'Index schema version'],
  ['file_digest', 'Index file digest'],
  ['weights_digest', 'Weights digest (XXH3-128)'],
  ['tokens_digest', 'Tokens digest'],
  ['explanations_digest', 'Explanations digest'],
  ['shard', 'Shard'],
  ['build', 'Build settings'],
  ['top', 'Top examples per feature'],
  ['quantiles', 'Quantile bins'],
  ['per_quantile', 'Examples per quantile bin'],
  ['context', 'Context (tokens each side)'],
  ['neighbours', 'Decoder-cosine neighbours'],
  ['seed', 'Seed'],
  ['block_rows', 'Rows per block'],
  ['histogram', 'Histogram bins'],
  ['kernel', 'Encode kernel'],
  ['source_id', 'Source id'],
  ['normalize_activations', 'Activation normalisation'],
  ['apply_b_dec_to_input', 'Subtract b_dec from the input'],
  ['rescale_acts_by_decoder_norm', 'Rescale activations by decoder norm'],
  ['decode_space', 'Decode space'],
  ['neuronpedia_id', 'Neuronpedia id'],
  ['d_out', 'd_out (output width)'],
  ['transcoder', 'Transcoder'],
  ['hook_name_out', 'Output hook'],
  ['skip_connection', 'Skip connection'],
  ['signed', 'Signed activations'],
  ['finetuning_scaling_factor', 'Fine-tuning scaling factor'],
  ['sparsify', 'Sparsify format'],
  ['generation', 'Reload generation'],
];
const HUMAN = new Map(INDEX_FIELDS);
// Server-side file paths say nothing to a reader and are not shown.
const HIDDEN = new Set(['path']);

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
  const keys = [...known.map(([k]) => k).filter((k) => k in obj), ...Object.keys(obj).filter((k) => !names.has(k))]
    .filter((k) => !HIDDEN.has(k));
  return h('dl', { class: 'kv' }, keys.map((k) => h('div', { class: 'kv-row' },
    h('dt', {}, names.get(k) ?? HUMAN.get(k) ?? (k.charAt(0).toUpperCase() + k.slice(1).replace(/_/g, ' '))),
    h('dd', { 'data-key': k, class: /digest/.test(k) ? 'mono' : null }, value(obj[k])))));
}

// The SAEs of this saed as a table, the one shown marked; null for one SAE.
function saesTable(saes, shownId) {
  if (saes.length < 2) return null;
  const dflt = defaultSae(saes)?.id;
  return h('section', { class: 'panel', 'aria-labelledby': 'saes-h' },
    h('h2', { id: 'saes-h' }, `SAEs served (${fmtInt(saes.length)})`),
    h('div', { class: 'table-wrap' }, h('table', { class: 'saes' },
      h('thead', {}, h('tr', {}, ['Id', 'Model', 'Hook', 'd_sae', 'Architecture', 'Index']
        .map((t, k) => h('th', { scope: 'col', class: k === 3 ? 'num' : null }, t)))),
      h('tbody', {}, saes.map((x) => h('tr', { 'data-sae': x.id, 'aria-current': x.id === shownId ? 'true' : null },
        h('td', {}, h('a', { href: pagePath(x.id === dflt ? null : x.id, '/model') }, x.id),
          x.id === dflt ? h('span', { class: 'muted' }, ' (default)') : null),
        h('td', {}, x.model_name || '—'), h('td', {}, x.hook_name || '—'),
        h('td', { class: 'num' }, fmtInt(x.d_sae)), h('td', {}, x.architecture || '—'),
        h('td', {}, x.has_index ? 'yes' : 'no')))))),
    h('p', { class: 'muted api-links' }, 'Machine-readable: ', h('code', {}, 'GET /v1/saes')));
}

// The density at rank k (0-based) of the n features in density order,
// lowest first, read from the nearer end: the API walks `offset` rows, and
// ties change which feature sits at a rank, never its density.
function densityAtRank(ctx, n, k) {
  const desc = k >= n / 2;
  const path = `/features?sort=density&order=${desc ? 'desc' : 'asc'}&limit=1&offset=${desc ? n - 1 - k : k}`;
  return api(ctx.apiPath(path), { signal: ctx.signal }).then((r) => r.features?.[0]?.density);
}

// The SAE-wide summary: how many features are dead (n less the live-only
// list's total: one request, an index count) and the density at the 10th,
// 50th and 90th percentile and the max.
async function summary(box, ctx, n) {
  try {
    const pct = [10, 50, 90];
    const [live, ...at] = await Promise.all([
      api(ctx.apiPath('/features?alive=1&limit=1'), { signal: ctx.signal }),
      ...[...pct.map((p) => Math.min(n - 1, Math.floor((p / 100) * n))), n - 1].map((k) => densityAtRank(ctx, n, k)),
    ]);
    const dead = n - live.total;
    fill(box, h('dl', { class: 'kv summary' },
      h('div', { class: 'kv-row' }, h('dt', {}, 'Dead features (never active)'),
        h('dd', { 'data-key': 'dead' }, `${fmtInt(dead)} of ${fmtInt(n)} (${fmtNum((dead / n) * 100, 3)}%)`)),
      pct.map((p, k) => h('div', { class: 'kv-row' }, h('dt', {}, `Density, ${p}th percentile`),
        h('dd', { 'data-key': `density_p${p}` }, fmtDensity(at[k])))),
      h('div', { class: 'kv-row' }, h('dt', {}, 'Density, highest'), h('dd', { 'data-key': 'density_max' }, fmtDensity(at[3])))));
  } catch (e) {
    if (e.name === 'AbortError') return;
    fill(box, h('p', { class: 'muted' }, `Could not summarise the features: ${e.message}`));
  }
}

export async function render(main, ctx) {
  document.title = ctx.scope ? `Model · ${ctx.scope} · saed` : 'Model · saed';
  let m;
  try {
    m = await api(ctx.apiPath('/model'), { signal: ctx.signal });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    fill(main, pageHeading('Model'), errorState(e, () => render(main, ctx), 'Could not load the model description'));
    return null;
  }
  const saes = await getSaes().catch(() => []);
  ctx.signal.throwIfAborted(); // another page took <main> meanwhile
  const rest = Object.fromEntries(Object.entries(m).filter(([k]) => k !== 'index'));
  const shownId = ctx.scope ?? defaultSae(saes)?.id;
  if (saes.length > 1 && shownId) rest.id = shownId;
  const sumBox = h('div', { class: 'feature-summary' }, h('p', { class: 'muted' }, 'Counting dead features…'));
  fill(main, pageHeading('Model'),
    h('section', { class: 'panel', 'aria-labelledby': 'sae-h' }, h('h2', { id: 'sae-h' }, 'Sparse autoencoder'),
      kv(rest, MODEL_FIELDS)),
    h('section', { class: 'panel', 'aria-labelledby': 'index-h' }, h('h2', { id: 'index-h' }, 'Feature index'),
      m.index && typeof m.index === 'object'
        ? kv(m.index)
        : emptyState('No feature index is loaded',
          h('p', {}, 'Feature pages need one: build it with ', h('code', {}, 'sae index'),
            ' and start saed with ', h('code', {}, ctx.scope ? `--index ${ctx.scope}=FILE.db` : '--index FILE.db'), '.'))),
    m.index && typeof m.index === 'object' && m.d_sae > 0
      ? h('section', { class: 'panel', 'aria-labelledby': 'summary-h' }, h('h2', { id: 'summary-h' }, 'All features'), sumBox)
      : null,
    saesTable(saes, shownId),
    h('p', { class: 'muted api-links' }, 'Machine-readable: ', h('code', {}, `GET ${ctx.apiPath('/model')}`), ' · ',
      h('a', { href: '/openapi.json', 'data-external': '' }, 'OpenAPI description')));
  if (m.index && typeof m.index === 'object' && m.d_sae > 0) await summary(sumBox, ctx, m.d_sae);
  return null;
}
