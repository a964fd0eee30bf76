// Issue 20 on every page, as a researcher meets it: only a short status line
// is a live region (point 5), nothing is said only in a hover title (point 3),
// and no undefined statistic shows as NaN, undefined, null, Infinity or
// "0.5 tokens" (point 1). Each page is audited by harness.mjs's auditPage
// once it has drawn: the list (index order, and densest-last so dead features
// come first), a live and a dead feature, an example in its document, the
// encode page with a result, the model page, a feature with a dead
// neighbour, the search over every SAE (with
// several), and the pages of an SAE without an index. text.test.mjs audits
// the Try text page and the feature page's text box the same way.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BASE, VIEWPORTS, apiGet, assertClean, auditPage, closePage, launchBrowser, openPage, settled } from './harness.mjs';

let browser;
let model; // GET /v1/model
let saes; // GET /v1/saes
const pages = []; // { name, path, ready, allow? }

before(async () => {
  browser = await launchBrowser();
  model = await apiGet('/v1/model');
  ({ saes } = await apiGet('/v1/saes'));
  // Without an index the list's 404 no_index is expected (it says so on the page).
  const noIndex = model.index ? [] : [/HTTP 404 .*\/v1\/features/];
  pages.push({ name: 'list', path: '/', ready: 'table.features tbody tr, .state-empty', allow: noIndex });
  pages.push({ name: 'encode (empty)', path: '/encode', ready: '#encode-input' });
  pages.push({ name: 'model', path: '/model', ready: 'dl.kv', allow: noIndex });
  if (!model.index) {
    pages.push({ name: 'feature 0 (no index)', path: '/features/0', ready: '.state-empty', allow: noIndex });
    pages.push({ name: 'encode feature 0 (no index: the direction is refused)', path: '/encode?feature=0', ready: '#encode-input-error:not([hidden])', allow: noIndex });
  }
  if (model.index) {
    pages.push({ name: 'list, sparsest first', path: '/?sort=density&order=asc', ready: 'table.features tbody tr' });
    const { features } = await apiGet('/v1/features?sort=max_activation&order=desc&limit=1');
    const live = features[0].index;
    pages.push({ name: `live feature ${live}`, path: `/features/${live}`, ready: 'li.example' });
    pages.push({ name: `encode feature ${live}`, path: `/encode?feature=${live}`, ready: '.encode-result dl.metrics' });
    pages.push({ name: `top example of ${live}`, path: `/features/${live}/examples/top/0`, ready: 'section.span' });
    const { features: [sparsest] } = await apiGet('/v1/features?sort=density&order=asc&limit=1');
    if (sparsest.n_active === 0) pages.push({ name: `dead feature ${sparsest.index}`, path: `/features/${sparsest.index}`, ready: '.feature-label-line' });
    const { features: [unexplained] } = await apiGet('/v1/features?limit=1');
    if (!unexplained.explanations?.length) pages.push({ name: `feature ${unexplained.index} without explanations`, path: `/features/${unexplained.index}`, ready: 'dl.stats' });
    pages.push({ name: 'feature 0', path: '/features/0', ready: 'dl.stats' });
    // A live feature with a dead neighbour (badges in the neighbour list), among the first 64.
    for (let i = 0; i < Math.min(64, model.d_sae); i++) {
      const f = await apiGet(`/v1/features/${i}`);
      if (f.n_active > 0 && f.neighbours?.some((n) => n.density === 0)) {
        pages.push({ name: `feature ${i}, with a dead neighbour`, path: `/features/${i}`, ready: 'li.example' });
        break;
      }
    }
  }
  if (saes.length > 1 && model.index) {
    // A word of the strongest feature's label, so that the search finds something.
    const { features: [f] } = await apiGet('/v1/features?sort=max_activation&order=desc&limit=1');
    const word = (f.label || '').match(/[A-Za-z]{3,}/)?.[0];
    if (word) pages.push({ name: `search all for "${word}"`, path: `/search?q=${word}`, ready: 'table.features tbody tr' });
  }
  if (saes.length > 1) {
    const bare = saes.find((s) => !s.has_index);
    if (bare) {
      const allow = [new RegExp(`HTTP 404 .*/v1/saes/${bare.id.replace(/\./g, '\\.')}/`)];
      pages.push({ name: `list of ${bare.id} (no index)`, path: `/saes/${bare.id}`, ready: '.state-empty', allow });
      pages.push({ name: `feature of ${bare.id} (no index)`, path: `/saes/${bare.id}/features/0`, ready: '.state-empty', allow });
      pages.push({ name: `model of ${bare.id} (no index)`, path: `/saes/${bare.id}/model`, ready: 'dl.kv', allow });
    }
  }
});
after(async () => { await browser?.close(); });

describe('every page tells the truth', () => {
  test('live regions, hover titles and undefined values on every page, light and phone', async (t) => {
    const found = {}; // "page (path) at width" -> its problems, each once
    for (const vp of VIEWPORTS) {
      for (const p of pages) {
        const page = await openPage(browser, vp);
        await page.goto(BASE + p.path);
        await settled(page, p.ready);
        const problems = [...new Set(await auditPage(page))];
        t.diagnostic(`${p.name} at ${vp.name}: ${problems.length} problems`);
        if (problems.length) found[`${p.name} (${p.path}) at ${vp.width}px`] = problems;
        assertClean(page, p.allow); // an SAE without an index: its 404 no_index is expected
        await closePage(page);
      }
    }
    assert.deepEqual(found, {}, 'pages that break issue 20');
  });
});
