// Search across the release (/search?q=&offset=): the explanations of every
// indexed SAE at once, GET /v1/search, best match first. Each result names its
// SAE (id, hook and width) and links to the feature's page in that SAE. The
// state lives in the URL as on the feature list; typing replaces the history
// entry.

import { api, getSaes } from './api.js';
import { emptyState, errorState, fill, h, loadingState, pageHeading, pager } from './dom.js';
import { fmtInt, fmtNum, prefixQuery } from './format.js';
import { defaultSae, pagePath, saeSummary } from './release.js';
import { navigate } from './router.js';

export const PAGE_SIZE = 50;

function stateOf(query) {
  const offset = Number.parseInt(query.get('offset') || '0', 10);
  return { q: (query.get('q') || '').trim(), offset: Number.isFinite(offset) && offset > 0 ? offset : 0 };
}

function hrefOf(st) {
  const p = new URLSearchParams();
  if (st.q) p.set('q', st.q);
  if (st.offset) p.set('offset', String(st.offset));
  const qs = p.toString();
  return qs ? `/search?${qs}` : '/search';
}

// The API request of a state (the last word a prefix, as on the feature list).
export function apiPathOf(st) {
  const p = new URLSearchParams({ q: prefixQuery(st.q), limit: String(PAGE_SIZE), offset: String(st.offset) });
  return `/v1/search?${p}`;
}

// One result: its SAE (linking to the SAE's list), the feature and its
// description (linking to the feature's page in that SAE), the score.
function row(r, byId, dflt) {
  const sae = byId.get(r.sae);
  const scope = r.sae === dflt ? null : r.sae;
  const href = pagePath(scope, `/features/${r.feature}`);
  return h('tr', { 'data-sae': r.sae, 'data-index': r.feature },
    h('td', { class: 'sae' }, h('a', { href: pagePath(scope, '/') }, r.sae),
      sae ? h('span', { class: 'sae-what muted' }, saeSummary(sae)) : null),
    h('td', { class: 'num idx' }, h('a', { href, tabindex: '-1', 'aria-hidden': 'true' }, String(r.feature))),
    h('td', { class: 'label' }, h('a', { href }, r.description || `Feature ${r.feature}`),
      h('span', { class: 'sr-only' }, ` (feature ${r.feature} of ${r.sae})`)),
    h('td', { class: 'num score' }, fmtNum(r.score, 3)));
}

export async function render(main, ctx) {
  document.title = 'Search all SAEs · saed';
  let st = stateOf(ctx.query);
  const search = h('input', {
    id: 'release-search', type: 'search', name: 'q', value: st.q, autocomplete: 'off',
    placeholder: 'e.g. punctuation, French, numbers', 'aria-describedby': 'release-hint',
  });
  const hint = h('span', { id: 'release-hint', class: 'hint' },
    'Full-text search of the explanations of every indexed SAE; results update as you type.');
  const status = h('p', { class: 'results-count', id: 'results-count', tabindex: '-1', 'aria-live': 'polite' });
  const results = h('section', { class: 'results', 'aria-busy': 'true' });
  const form = h('form', { class: 'controls', role: 'search', onsubmit: (e) => { e.preventDefault(); apply(false); } },
    h('div', { class: 'field grow' }, h('label', { for: 'release-search' }, 'Search explanations in every SAE'),
      search, hint));
  fill(main, pageHeading('Search all SAEs'), form, status, results);
  let focusAfterLoad = false;

  let timer = null;
  function apply(replace) {
    clearTimeout(timer);
    const q = search.value.trim();
    navigate(hrefOf({ q, offset: q === st.q ? st.offset : 0 }), { replace });
  }
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => apply(true), 300);
  });

  async function load(signal) {
    status.textContent = '';
    if (!st.q) {
      results.setAttribute('aria-busy', 'false');
      fill(results, emptyState('Type a word to search',
        h('p', {}, 'Finds the features of every SAE whose explanations match, best match first.')));
      return;
    }
    results.setAttribute('aria-busy', 'true');
    fill(results, loadingState(`Searching every SAE for “${st.q}”…`));
    let data;
    let saes;
    try {
      [data, saes] = await Promise.all([api(apiPathOf(st), { signal }), getSaes()]);
    } catch (e) {
      if (e.name === 'AbortError') return;
      results.setAttribute('aria-busy', 'false');
      fill(results, errorState(e, () => load(signal), 'Could not search'));
      return;
    }
    results.setAttribute('aria-busy', 'false');
    const list = Array.isArray(data.results) ? data.results : [];
    const total = typeof data.total === 'number' ? data.total : list.length;
    if (!list.length) {
      fill(results, st.offset > 0 && total > 0
        ? emptyState('No results on this page', h('p', {}, h('a', { href: hrefOf({ ...st, offset: 0 }) }, 'Back to the first page'), '.'))
        : emptyState(`No explanation in any SAE matches “${st.q}”`, h('p', {}, 'Try fewer or other words.')));
      return;
    }
    const bySae = new Set(list.map((r) => r.sae)).size;
    status.textContent = `${fmtInt(total)} feature${total === 1 ? ' matches' : 's match'} “${st.q}”` +
      ` (this page: ${fmtInt(bySae)} SAE${bySae === 1 ? '' : 's'})`;
    const byId = new Map(saes.map((x) => [x.id, x]));
    const dflt = defaultSae(saes)?.id;
    const table = h('table', { class: 'features search-results' },
      h('caption', { class: 'sr-only' }, `Results ${st.offset + 1} to ${st.offset + list.length} of ${total}`),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', class: 'sae' }, 'SAE'),
        h('th', { scope: 'col', class: 'num idx' }, '#'),
        h('th', { scope: 'col' }, 'Description'),
        h('th', { scope: 'col', class: 'num score' }, 'Relevance'))),
      h('tbody', {}, list.map((r) => row(r, byId, dflt))));
    // Said in words, not in a hover title (touch screens cannot hover).
    fill(results, h('div', { class: 'table-wrap' }, table),
      h('p', { class: 'table-note muted' }, 'Relevance: how well a description matches the words (FTS5 bm25), higher is better; it is not the explanation\'s score.'),
      total > PAGE_SIZE || st.offset > 0 ? pager(st.offset, total, list.length, PAGE_SIZE, (offset) => {
        focusAfterLoad = true;
        navigate(hrefOf({ ...st, offset }));
      }) : null);
    if (focusAfterLoad) {
      focusAfterLoad = false;
      status.focus();
    }
  }

  return {
    ready: load(ctx.signal),
    update(next) {
      st = stateOf(next.query);
      if (document.activeElement !== search) search.value = st.q;
      return load(next.signal);
    },
  };
}
