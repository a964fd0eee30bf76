// Issue 20 on every page, as a researcher meets it: only a short status line
// is a live region (point 5), nothing is said only in a hover title (point 3),
// and no undefined statistic shows as NaN, undefined, null, Infinity or
// "0.5 tokens" (point 1). Each page is audited by harness.mjs's auditPage
// once it has drawn: the list (index order, and densest-last so dead features
// come first), a live and a dead feature, an example in its document, the
// encode page with a result, the model page, the search over every SAE (with
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
  pages.push({ name: 'list', path: '/', ready: 'table.features tbody tr, .state-empty' });
  pages.push({ name: 'encode (empty)', path: '/encode', ready: '#encode-input' });
  pages.push({ name: 'model', path: '/model', ready: 'dl.kv' });
  if (model.index) {
    pages.push({ name: 'list, sparsest first', path: '/?sort=density&order=asc', ready: 'table.features tbody tr' });
    const { features } = await apiGet('/v1/features?sort=max_activation&order=desc&limit=1');
    const live = features[0].index;
    pages.push({ name: `live feature ${live}`, path: `/features/${live}`, ready: 'li.example' });
    pages.push({ name: `top example of ${live}`, path: `/features/${live}/examples/top/0`, ready: 'section.span' });
    pages.push({ name: `encode feature ${live}`, path: `/encode?feature=${live}`, ready: '.encode-result dl.metrics' });
    const { features: [sparsest] } = await apiGet('/v1/features?sort=density&order=asc&limit=1');
    if (sparsest.n_active === 0) pages.push({ name: `dead feature ${sparsest.index}`, path: `/features/${sparsest.index}`, ready: '.feature-label-line' });
    const { features: [unexplained] } = await apiGet('/v1/features?limit=1');
    if (!unexplained.explanations?.length) pages.push({ name: `feature ${unexplained.index} without explanations`, path: `/features/${unexplained.index}`, ready: 'dl.stats' });
    pages.push({ name: 'feature 0', path: '/features/0', ready: 'dl.stats' });
  }
  if (saes.length > 1) {
    pages.push({ name: 'search all', path: '/search?q=synth', ready: 'table.features tbody tr, .state-empty' });
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
