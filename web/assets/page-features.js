// The feature list of one SAE (/, or /saes/{id}): full-text search over
// explanations, sorting, hiding dead features, paging, all done by the API
// over the whole list. The state lives in the URL
// (?q=&sort=&order=&alive=&offset=) so a list can be shared and Back works;
// typing replaces the history entry instead of adding one. With several indexed
// SAEs a search offers the same words across the release (/search).

import { api, getSaes, isNoIndex } from './api.js';
import { sparkline } from './charts.js';
import { DEAD_NOTE, deadBadge, emptyState, errorState, fill, h, loadingState, pageHeading, pager } from './dom.js';
import {
  WEAK_SCORE, bestExplanation, featureLabel, fmtDensity, fmtInt, fmtNum, fmtScore, isDead, isWeak, prefixQuery, scorerOf,
} from './format.js';
import { navigate } from './router.js';

export const PAGE_SIZE = 50;

// Set by the pager so that, when the next page has loaded, focus moves to the
// result count instead of being lost with the replaced buttons.
let focusAfterLoad = false;

// The choices of the sort select: value -> [API sort, API order, label].
export const SORTS = {
  'relevance:asc': ['relevance', 'asc', 'Best match'],
  'index:asc': ['index', 'asc', 'Index'],
  'density:desc': ['density', 'desc', 'Density, highest first'],
  'density:asc': ['density', 'asc', 'Density, lowest first'],
  'max_activation:desc': ['max_activation', 'desc', 'Max activation, highest first'],
  'max_activation:asc': ['max_activation', 'asc', 'Max activation, lowest first'],
  'score:desc': ['score', 'desc', 'Score, highest first'],
  'score:asc': ['score', 'asc', 'Score, lowest first'],
};

// The order a list has when the URL names none: best match when searching
// (as the API), index otherwise.
const defaultSort = (q) => (q ? 'relevance:asc' : 'index:asc');

// The list state a URL query describes. "Best match" needs a search: without
// one it is index order. alive: dead features hidden (alive=1).
function stateOf(query) {
  const q = (query.get('q') || '').trim();
  const sort = query.get('sort');
  const sortKey = sort
    ? `${sort}:${query.get('order') || (sort === 'index' || sort === 'relevance' ? 'asc' : 'desc')}`
    : defaultSort(q);
  const offset = Number.parseInt(query.get('offset') || '0', 10);
  return {
    q,
    sortKey: SORTS[sortKey] && (q || sortKey !== 'relevance:asc') ? sortKey : defaultSort(q),
    offset: Number.isFinite(offset) && offset > 0 ? offset : 0,
    alive: query.get('alive') === '1',
  };
}

// The page URL of a state (defaults left out), unprefixed: ctx.href puts it
// in the page's SAE.
function hrefOf(st) {
  const p = new URLSearchParams();
  if (st.q) p.set('q', st.q);
  if (st.sortKey !== defaultSort(st.q)) {
    const [sort, order] = SORTS[st.sortKey];
    p.set('sort', sort);
    p.set('order', order);
  }
  if (st.alive) p.set('alive', '1');
  if (st.offset) p.set('offset', String(st.offset));
  const qs = p.toString();
  return qs ? `/?${qs}` : '/';
}

// The API request of a state, unprefixed (ctx.apiPath puts it in the page's
// SAE): its order always named, so that what the select shows is what the
// rows are in. Without a query string, this is the request saed preloads
// with the page (server/static_get.c: preload_links).
export function apiPathOf(st) {
  const p = new URLSearchParams();
  if (st.q) p.set('q', prefixQuery(st.q));
  const [sort, order] = SORTS[st.sortKey];
  p.set('sort', sort);
  p.set('order', order);
  p.set('limit', String(PAGE_SIZE));
  p.set('offset', String(st.offset));
  if (st.alive) p.set('alive', '1');
  return `/features?${p}`;
}

// Why there is no list and how to get one: saed started without an index, or
// (an SAE named in the address) that SAE has none.
function noIndexWhy(scope) {
  return scope
    ? [`SAE ${scope} has no index. Build one with `, h('code', {}, 'sae index'), ' and restart saed with ',
      h('code', {}, `--index ${scope}=FILE.db`)]
    : ['This saed was started without ', h('code', {}, '--index'), '. Build one with ', h('code', {}, 'sae index'),
      ' and restart saed with ', h('code', {}, '--index FILE.db')];
}

// What the columns mean, said in words under the table (touch screens cannot
// hover a title): who scored the labels on this page, the weak-score
// threshold, what "dead" means, how many tokens the densities are of, and what the number
// beside each sparkline counts.
function tableNote(list) {
  const scorers = new Map(); // source -> rows on this page scored by it
  for (const f of list) {
    const s = scorerOf(bestExplanation(f));
    if (s) scorers.set(s, (scorers.get(s) || 0) + 1);
  }
  const live = list.find((f) => typeof f.n_active === 'number' && f.density > 0);
  const n = live ? Math.round(live.n_active / live.density) : null;
  return h('p', { class: 'table-note muted' },
    'Score: the label\'s explanation score',
    scorers.size ? ` (${[...scorers].map(([s, k]) => `${fmtInt(k)} scored by ${s}`).join('; ')})` : '',
    `; labels under ${WEAK_SCORE} are muted.`, h('br'),
    `Density: the share of ${n ? `the index's ${fmtInt(n)} tokens` : 'the indexed tokens'} on which the feature is active.`, h('br'),
    'Tokens: the activation histogram, each on its own scale, over its number of active tokens.',
    list.some(isDead) ? [h('br'), `Dead: ${DEAD_NOTE}.`] : null);
}

function row(f, ctx) {
  const label = featureLabel(f);
  const best = bestExplanation(f);
  const dead = isDead(f);
  const href = ctx.href(`/features/${f.index}`);
  const weak = dead || isWeak(best);
  const scorer = scorerOf(best);
  return h('tr', { 'data-index': f.index, class: dead ? 'dead' : null },
    h('td', { class: 'num idx' }, h('a', { href, tabindex: '-1', 'aria-hidden': 'true' }, String(f.index))),
    h('td', { class: `label${weak ? ' weak' : ''}` }, h('a', { href },
      label ? label : h('span', { class: 'muted' }, `Feature ${f.index} (no explanation)`)),
    label ? h('span', { class: 'sr-only' }, ` (feature ${f.index})`) : null,
    dead ? [' ', deadBadge()] : null),
    h('td', { class: 'num score', title: scorer ? `scored by ${scorer}` : null }, fmtScore(best?.score)),
    h('td', { class: 'num density' }, fmtDensity(f.density)),
    h('td', { class: 'num maxact' }, dead ? '—' : fmtNum(f.max_activation)),
    // Each sparkline has its own height scale, so its token count stands beside it.
    h('td', { class: 'spark' }, sparkline(f.histogram),
      typeof f.n_active === 'number' ? h('span', { class: 'spark-n' }, fmtInt(f.n_active)) : null));
}

export async function render(main, ctx) {
  document.title = 'Features · saed';
  let st = stateOf(ctx.query);
  const search = h('input', {
    id: 'feature-search', type: 'search', name: 'q', value: st.q, autocomplete: 'off',
    placeholder: 'e.g. punctuation, French, numbers', 'aria-describedby': 'search-hint',
  });
  const sort = h('select', { id: 'feature-sort', name: 'sort' },
    Object.entries(SORTS).map(([v, [, , label]]) => h('option', { value: v, selected: v === st.sortKey }, label)));
  // "Best match" only means something for a search.
  const bestMatch = () => { sort.querySelector('option[value="relevance:asc"]').disabled = !st.q; };
  bestMatch();
  const hideBox = h('input', { id: 'hide-dead', type: 'checkbox', checked: st.alive });
  const results = h('section', { class: 'results', 'aria-busy': 'true' });
  const status = h('p', { class: 'results-count', id: 'results-count', tabindex: '-1', 'aria-live': 'polite' });
  const deadNote = h('span', { class: 'dead-note' });
  const elsewhere = h('p', { class: 'release-search', hidden: true });
  const form = h('form', { class: 'controls', role: 'search', onsubmit: (e) => { e.preventDefault(); apply(false); } },
    h('div', { class: 'field grow' }, h('label', { for: 'feature-search' }, 'Search explanations'), search,
      h('span', { id: 'search-hint', class: 'hint' },
        'Full-text search of the explanations; results update as you type.')),
    h('div', { class: 'field' }, h('label', { for: 'feature-sort' }, 'Sort by'), sort),
    h('div', { class: 'field check' }, h('label', { for: 'hide-dead' }, hideBox, ' Hide dead features')));
  // Hiding the dead asks the API for live features only: a new list, from its first page.
  hideBox.addEventListener('change', () => apply(false));
  fill(main, pageHeading('Features'), form, status, elsewhere, results);

  // With several indexed SAEs, a search links to the same words across all of them.
  let indexed = 0;
  getSaes().then((l) => {
    indexed = l.filter((x) => x.has_index !== false).length;
    offerRelease();
  }, () => { /* no list: no link */ });
  function offerRelease() {
    elsewhere.hidden = !(st.q && indexed > 1);
    if (elsewhere.hidden) return;
    fill(elsewhere, h('a', { href: `/search?${new URLSearchParams({ q: st.q })}` },
      `Search all ${fmtInt(indexed)} SAEs for “${st.q}”`));
  }

  let timer = null;
  function apply(replace) {
    clearTimeout(timer);
    const next = { q: search.value.trim(), sortKey: sort.value, offset: 0, alive: hideBox.checked };
    // Starting or clearing a search takes the order that goes with it, unless
    // another was chosen: best match while searching, index otherwise.
    if (!st.q !== !next.q && next.sortKey === defaultSort(st.q)) next.sortKey = defaultSort(next.q);
    if (next.q === st.q && next.sortKey === st.sortKey && next.alive === st.alive && !replace) next.offset = st.offset;
    navigate(ctx.href(hrefOf(next)), { replace });
  }
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => apply(true), 300);
  });
  sort.addEventListener('change', () => apply(false));

  async function load(signal) {
    results.setAttribute('aria-busy', 'true');
    status.textContent = '';
    offerRelease();
    fill(results, loadingState(st.q ? `Searching for “${st.q}”…` : 'Loading features…'));
    let data;
    try {
      data = await api(ctx.apiPath(apiPathOf(st)), { signal });
    } catch (e) {
      if (e.name === 'AbortError') return;
      results.setAttribute('aria-busy', 'false');
      if (isNoIndex(e)) {
        form.hidden = true; // nothing to search or sort
        fill(results, emptyState('No feature index is loaded',
          h('p', {}, ...noIndexWhy(ctx.scope), ' to browse features. ',
            h('a', { href: ctx.href('/encode') }, 'Encoding'), ' works without an index.')));
      } else {
        fill(results, errorState(e, () => load(signal), 'Could not load features'));
      }
      return;
    }
    results.setAttribute('aria-busy', 'false');
    const list = Array.isArray(data.features) ? data.features : [];
    const total = typeof data.total === 'number' ? data.total : list.length;
    if (!list.length) {
      status.textContent = '';
      if (st.offset > 0 && total > 0) {
        fill(results, emptyState('No features on this page',
          h('p', {}, h('a', { href: ctx.href(hrefOf({ ...st, offset: 0 })) }, 'Back to the first page'), '.')));
      } else if (st.q) {
        fill(results, emptyState(`No explanation matches “${st.q}”`,
          h('p', {}, 'Try fewer or other words, or ', h('a', { href: ctx.href('/') }, 'list every feature'), '.')));
      } else {
        fill(results, emptyState('The index holds no features'));
      }
      return;
    }
    fill(status, st.q
      ? `${fmtInt(total)} feature${total === 1 ? ' matches' : 's match'} “${st.q}”`
      : `${fmtInt(total)} features`, deadNote);
    const deadOnPage = list.filter(isDead).length;
    deadNote.textContent = st.alive ? ' · dead features hidden'
      : deadOnPage ? ` · ${fmtInt(deadOnPage)} dead on this page` : '';
    const byScore = st.sortKey.startsWith('score:') ? st.sortKey : null;
    const table = h('table', { class: 'features' },
      h('caption', { class: 'sr-only' }, `Features ${st.offset + 1} to ${st.offset + list.length} of ${total}`),
      h('thead', {}, h('tr', {},
        h('th', { scope: 'col', class: 'num idx' }, '#'),
        h('th', { scope: 'col' }, 'Label'),
        h('th', { scope: 'col', class: 'num score',
          'aria-sort': byScore ? (byScore === 'score:desc' ? 'descending' : 'ascending') : 'none' },
        h('button', { type: 'button', class: 'th-sort', 'aria-label': 'Score: sort the whole list by score' }, 'Score')),
        h('th', { scope: 'col', class: 'num density' }, 'Density'),
        h('th', { scope: 'col', class: 'num maxact' }, 'Max act.'),
        h('th', { scope: 'col', class: 'spark' }, h('span', { 'aria-hidden': 'true' }, 'Tokens')))),
      h('tbody', {}, list.map((f) => row(f, ctx))));
    // The Score header sorts the whole list by score, best first; again, worst first.
    table.querySelector('.th-sort').addEventListener('click', () => {
      sort.value = byScore === 'score:desc' ? 'score:asc' : 'score:desc';
      apply(false);
    });
    fill(results, h('div', { class: 'table-wrap' }, table), tableNote(list),
      total > PAGE_SIZE || st.offset > 0 ? pager(st.offset, total, list.length, PAGE_SIZE, (offset) => {
        focusAfterLoad = true;
        navigate(ctx.href(hrefOf({ ...st, offset })));
      }) : null);
    if (focusAfterLoad) {
      focusAfterLoad = false;
      status.focus();
      status.scrollIntoView({ block: 'nearest' });
    }
  }

  // The view is returned at once (typing during the first load must update
  // it, not draw the page again); `ready` and update's promise settle when the
  // rows are drawn, for the router to restore a scroll position (Back).
  return {
    ready: load(ctx.signal),
    update(next) {
      st = stateOf(next.query);
      if (document.activeElement !== search) search.value = st.q;
      sort.value = st.sortKey;
      hideBox.checked = st.alive;
      bestMatch();
      return load(next.signal);
    },
  };
}
