// Many SAEs in one saed, in the browser (CONTRACT section 7, docs/WEB.md "Many
// SAEs"): the SAE picker (model -> hook -> width) as GET /v1/saes groups the
// SAEs, pages under /saes/{id} that read and link only SAE id (a feature's
// neighbours are features of its own SAE), the release search of GET
// /v1/search naming each result's SAE, and an unknown id. Against a saed with
// one SAE it checks that the header is as it was: the model line, no picker.
//
// Environment: as harness.mjs says. The many-SAE checks want the default SAE
// and at least one other SAE indexed (tests/web/run.sh's usage shows how
// scripts/test.sh serves such a release).

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import {
  BASE, SHOTS, VIEWPORTS, apiGet, apiPost, apiRequests, assertClean, closePage, launchBrowser, noSideways, openPage,
  settled, shoot, vectorOf,
} from './harness.mjs';
import { loadWebModule } from './load-module.mjs';

const { featureLabel, fmtDensity, fmtInt, fmtNum, prefixQuery } = await loadWebModule('format.js');
const rel = await loadWebModule('release.js');

const PAGE_SIZE = 50; // rows of the feature list and of the release search

let browser;
let saes; // GET /v1/saes
let dflt; // the default SAE
let other; // an indexed SAE other than the default
let noIndex; // an SAE without an index, or undefined
let word; // a word of one of other's explanations

const newPage = (vp, opts) => openPage(browser, vp, opts);
const scopeOf = (id) => (id === dflt.id ? null : id); // how the browser addresses SAE id

// Every API request a page made is SAE id's (or the SAE list itself).
function assertScoped(page, id, what) {
  const stray = apiRequests(page).filter((p) => !p.startsWith(`/v1/saes/${id}/`) && !/^\/v1\/saes(\?|$)/.test(p));
  assert.deepEqual(stray, [], `${what}: requests outside SAE ${id}`);
}

// The rows of a table of features as the page shows them.
function readRows(page) {
  return page.$$eval('table.features tbody tr', (trs) => trs.map((tr) => ({
    sae: tr.dataset.sae ?? null,
    index: Number(tr.dataset.index),
    label: tr.querySelector('td.label a').textContent,
    href: tr.querySelector('td.label a').getAttribute('href'),
  })));
}

async function waitForRows(page, want) {
  await page.waitForFunction((ids) => {
    const shown = [...document.querySelectorAll('table.features tbody tr')].map((tr) => tr.dataset.index).join(',');
    return shown === ids && document.querySelector('.results')?.getAttribute('aria-busy') === 'false';
  }, want.join(','));
}

// Walks the picker to SAE `target`, a level at a time, each change waited for
// (the picker names the SAE it shows in data-sae once the page moved there).
async function pickSae(page, target) {
  const tree = rel.pickerTree(saes);
  const at = rel.placeOf(tree, target.id);
  for (const level of ['model', 'hook', 'width']) {
    const value = { model: at.model, hook: at.hook, width: target.id }[level];
    if (await page.inputValue(`#pick-${level}`) === value) continue;
    const picked = await page.getAttribute('#sae-picker', 'data-sae');
    const now = saes.find((x) => x.id === picked);
    const to = level === 'width' ? value
      : rel.pickIn(tree, level === 'model' ? value : at.model, level === 'hook' ? value : await page.inputValue('#pick-hook'), now);
    await page.selectOption(`#pick-${level}`, value);
    await page.waitForSelector(`#sae-picker[data-sae="${to}"]`, { state: 'attached' });
  }
}

// What the picker's selects hold: [value, text] of each option, and the value chosen.
function readPicker(page) {
  return page.$$eval('#sae-picker select', (ss) => Object.fromEntries(ss.map((s) => [s.id.replace('pick-', ''), {
    value: s.value, options: [...s.options].map((o) => [o.value, o.textContent]),
  }])));
}

before(async () => {
  browser = await launchBrowser();
  saes = (await apiGet('/v1/saes')).saes;
  assert.ok(saes.length > 0, 'GET /v1/saes lists no SAE');
  dflt = rel.defaultSae(saes);
  other = saes.find((s) => s.id !== dflt.id && s.has_index);
  noIndex = saes.find((s) => !s.has_index);
  if (other) {
    const { features } = await apiGet(`/v1/saes/${other.id}/features?sort=density&order=desc&limit=50&offset=0`);
    for (const f of features) {
      const m = (featureLabel(f) || '').match(/[A-Za-z]{5,}/);
      if (m) {
        word = m[0].toLowerCase();
        break;
      }
    }
  }
  if (SHOTS) mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
});

describe('one SAE', () => {
  test('the header names the model as before: no picker, no release search', async (t) => {
    if (saes.length > 1) return t.skip(`saed serves ${saes.length} SAEs`);
    const page = await newPage(VIEWPORTS[0]);
    await page.goto(`${BASE}/`);
    await page.waitForFunction(() => document.getElementById('model-line').textContent !== '');
    const m = await apiGet('/v1/model');
    assert.equal(await page.innerText('#model-line'),
      [m.model_name, m.hook_name, `${fmtInt(m.d_sae)} features`].filter(Boolean).join(' · '));
    assert.equal(await page.isHidden('#sae-picker'), true, 'no picker');
    assert.equal(await page.isHidden('a[data-nav="search"]'), true, 'no release search link');
    assert.equal(await page.getAttribute('a[data-nav="encode"]', 'href'), '/encode');
    await closePage(page);
  });
});

describe('many SAEs', () => {
  const many = (t) => {
    if (saes.length < 2) return t.skip('saed serves one SAE') || false;
    if (!other) return t.skip('no indexed SAE besides the default') || false;
    return true;
  };

  for (const vp of VIEWPORTS) {
    test(`at ${vp.width}: the picker groups GET /v1/saes by model, hook and width, at the default SAE`, async (t) => {
      if (!many(t)) return;
      const page = await newPage(vp);
      await page.goto(`${BASE}/`);
      await settled(page, 'table.features tbody tr');
      await page.waitForSelector('#sae-picker:not([hidden])');
      const byName = (a, b) => a.localeCompare(b, 'en', { numeric: true });
      const model = dflt.model_name || '(unnamed model)';
      const hook = dflt.hook_name || '(no hook name)';
      const shown = await readPicker(page);
      assert.deepEqual(shown.model.options.map(([v]) => v),
        [...new Set(saes.map((s) => s.model_name || '(unnamed model)'))].sort(byName), 'models');
      assert.deepEqual(shown.hook.options.map(([v]) => v),
        [...new Set(saes.filter((s) => (s.model_name || '(unnamed model)') === model).map((s) => s.hook_name || '(no hook name)'))]
          .sort(byName), 'hooks of the default SAE\'s model');
      const widths = saes.filter((s) => (s.model_name || '(unnamed model)') === model && (s.hook_name || '(no hook name)') === hook)
        .sort((a, b) => a.d_sae - b.d_sae || byName(a.id, b.id));
      assert.deepEqual(shown.width.options.map(([v]) => v), widths.map((s) => s.id), 'SAEs of the hook, narrowest first');
      shown.width.options.forEach(([id, text]) => {
        const s = saes.find((x) => x.id === id);
        assert.ok(text.startsWith(`${fmtInt(s.d_sae)} features`), `width label of ${id}: ${text}`);
        assert.equal(text.endsWith(' · no index'), !s.has_index, `width label of ${id} says whether it has an index`);
      });
      assert.deepEqual([shown.model.value, shown.hook.value, shown.width.value], [model, hook, dflt.id]);
      assert.equal(await page.isHidden('#model-line'), true, 'the picker replaces the model line');
      assert.equal(await page.isVisible('a[data-nav="search"]'), true, 'the release search is offered');
      await noSideways(page, vp);
      assertClean(page);
      await closePage(page);
    });
  }

  test('choosing a width or a hook goes to that SAE\'s list under /saes/{id}, keeping the search', async (t) => {
    if (!many(t)) return;
    if (!word) return t.skip(`no explanation of ${other.id} has a word to search for`);
    const page = await newPage(VIEWPORTS[0]);
    await page.goto(`${BASE}/?q=${word}`);
    await settled(page, 'table.features tbody tr');
    await page.waitForSelector('#sae-picker:not([hidden])');
    const indexed = saes.filter((s) => s.has_index).length;
    assert.equal(await page.innerText('.release-search a'), `Search all ${fmtInt(indexed)} SAEs for “${word}”`);
    assert.equal(await page.getAttribute('.release-search a', 'href'), `/search?q=${word}`);

    // To `other` through the levels that differ.
    apiRequests(page, { clear: true });
    await pickSae(page, other);
    await page.waitForURL(`${BASE}/saes/${other.id}?q=${word}`);
    const found = await apiGet(`/v1/saes/${other.id}/features?q=${encodeURIComponent(prefixQuery(word))}&sort=relevance&order=asc&limit=${PAGE_SIZE}&offset=0`);
    assert.ok(found.total > 0, `${other.id} finds "${word}"`);
    await waitForRows(page, found.features.map((f) => f.index));
    const rows = await readRows(page);
    assert.deepEqual(rows.map((r) => r.label), found.features.map((f) => featureLabel(f) ?? `Feature ${f.index} (no explanation)`));
    assert.deepEqual(rows.map((r) => r.href), found.features.map((f) => `/saes/${other.id}/features/${f.index}`),
      'rows link to features of this SAE');
    assert.equal(await page.inputValue('#pick-width'), other.id, 'the picker shows the SAE');
    for (const [nav, rest] of [['features', ''], ['encode', '/encode'], ['model', '/model']]) {
      assert.equal(await page.getAttribute(`a[data-nav="${nav}"]`, 'href'), `/saes/${other.id}${rest}`, `${nav} link`);
    }
    await page.waitForLoadState('networkidle');
    // On the way (other SAEs' lists, perhaps) and there, nothing asked of the default SAE.
    assert.deepEqual(apiRequests(page).filter((x) => !x.startsWith('/v1/saes')), [], 'requests outside /v1/saes/{id}/');
    assert.ok(apiRequests(page).some((x) => x.startsWith(`/v1/saes/${other.id}/features?`)), 'the list is read from the SAE');

    // An SAE without an index: its own "no index" state, which says how to give it one.
    if (noIndex) {
      await pickSae(page, noIndex);
      await page.waitForURL(`${BASE}/saes/${noIndex.id}?q=${word}`);
      await page.waitForSelector('.results .state-empty');
      const id = noIndex.id.replace(/\./g, '\\.');
      assert.match(await page.innerText('.results'), new RegExp(`SAE ${id} has no index`));
      assert.match(await page.innerText('.results'), new RegExp(`--index ${id}=FILE\\.db`));
    } else {
      t.diagnostic('every SAE has an index: the state of one without not exercised');
    }

    // Back to the default SAE: the unprefixed address again.
    await pickSae(page, dflt);
    await page.waitForURL(`${BASE}/?q=${word}`);
    await waitForRows(page, (await apiGet(`/v1/features?q=${encodeURIComponent(prefixQuery(word))}&sort=relevance&order=asc&limit=${PAGE_SIZE}&offset=0`))
      .features.map((f) => f.index));
    await page.waitForLoadState('networkidle');
    const allow = saes.filter((x) => !x.has_index).map((x) => new RegExp(`HTTP 404 .*/v1/saes/${x.id}/features`));
    assertClean(page, [...allow, /^request failed: .* net::ERR_ABORTED$/]);
    await closePage(page);
  });

  for (const vp of VIEWPORTS) {
    test(`at ${vp.width}: /saes/{id}/features/{i} reads SAE id and links the feature's neighbours within it`, async (t) => {
      if (!many(t)) return;
      const { features } = await apiGet(`/v1/saes/${other.id}/features?sort=density&order=desc&limit=20&offset=0`);
      const pick = features.find((f) => featureLabel(f) && f.density > 0) || features[0];
      const f = await apiGet(`/v1/saes/${other.id}/features/${pick.index}`);
      const i = f.index;
      const page = await newPage(vp);
      await page.goto(`${BASE}/saes/${other.id}/features/${i}`);
      await settled(page, 'dl.stats');
      await page.waitForSelector('.quantiles details.qbin, .quantiles .state-empty');
      await page.waitForFunction(() => ![...document.querySelectorAll('.nb-label')].some((l) => l.textContent === ''));
      await page.waitForLoadState('networkidle');

      assert.equal(await page.innerText('main h1'), `Feature ${i}`);
      assert.equal(await page.innerText('.feature-label'), featureLabel(f) ?? 'No explanation yet');
      assert.equal(await page.innerText('[data-stat="density"]'), fmtDensity(f.density));
      assert.equal(await page.innerText('[data-stat="max_activation"]'), fmtNum(f.max_activation));
      assert.equal(await page.innerText('[data-stat="decoder_norm"]'), fmtNum(f.decoder_norm));
      const nbs = await page.$$eval('ol.neighbours li', (lis) => lis.map((li) => ({
        href: li.querySelector('a').getAttribute('href'), label: li.querySelector('.nb-label').textContent })));
      assert.ok((f.neighbours || []).length > 0, 'the feature has neighbours');
      assert.deepEqual(nbs.map((n) => n.href), f.neighbours.map((n) => `/saes/${other.id}/features/${n.index}`),
        'neighbour links stay in the SAE');
      for (let k = 0; k < Math.min(3, nbs.length); k++) {
        const g = await apiGet(`/v1/saes/${other.id}/features/${f.neighbours[k].index}`);
        assert.equal(nbs[k].label, featureLabel(g) ?? '(no explanation)', `label of neighbour #${g.index}, from this SAE`);
      }
      if (i > 0) assert.equal(await page.getAttribute('a[rel="prev"]', 'href'), `/saes/${other.id}/features/${i - 1}`);
      if (i + 1 < other.d_sae) assert.equal(await page.getAttribute('a[rel="next"]', 'href'), `/saes/${other.id}/features/${i + 1}`);
      assert.equal(await page.getAttribute('.crumbs a', 'href'), `/saes/${other.id}`);
      assert.equal(await page.getAttribute('.api-links a', 'href'), `/saes/${other.id}/encode?feature=${i}`);
      assert.equal(await page.inputValue('#pick-width'), other.id, 'the picker shows the SAE');
      assertScoped(page, other.id, 'the feature page');
      await noSideways(page, vp);
      await shoot(page, 'feature-sae', vp);

      // A neighbour opens in place, in the same SAE.
      const nb = f.neighbours[0];
      const g = await apiGet(`/v1/saes/${other.id}/features/${nb.index}`);
      await page.click(`ol.neighbours a[href="/saes/${other.id}/features/${nb.index}"]`);
      await page.waitForURL(`${BASE}/saes/${other.id}/features/${nb.index}`);
      await page.waitForFunction((j) => document.querySelector('main h1')?.textContent === `Feature ${j}`, nb.index);
      await settled(page, 'dl.stats');
      assert.equal(await page.innerText('.feature-label'), featureLabel(g) ?? 'No explanation yet');
      assert.equal(await page.innerText('[data-stat="density"]'), fmtDensity(g.density));
      assertScoped(page, other.id, 'the neighbour\'s page');
      assertClean(page, [/^request failed: .* net::ERR_ABORTED$/]);
      await closePage(page);
    });
  }

  test('/saes/{id}/encode?feature=i encodes feature i\'s direction with SAE id', async (t) => {
    if (!many(t)) return;
    const i = (await apiGet(`/v1/saes/${other.id}/features?sort=density&order=desc&limit=1&offset=0`)).features[0].index;
    const v = vectorOf(await apiGet(`/v1/saes/${other.id}/features/${i}/vector`));
    const r = (await apiPost(`/v1/saes/${other.id}/encode`, { input: v, include: ['metrics', 'features'] })).results[0];
    const page = await newPage(VIEWPORTS[0]);
    await page.goto(`${BASE}/saes/${other.id}/encode?feature=${i}`);
    await settled(page, '.encode-result dl.metrics');
    assert.deepEqual(JSON.parse(await page.inputValue('#encode-input')), v, 'the direction of this SAE\'s feature');
    const bars = await page.$$eval('li.bar-row', (lis) => lis.map((li) => ({
      index: Number(li.dataset.index), href: li.querySelector('a').getAttribute('href') })));
    assert.deepEqual(bars.map((b) => b.index), r.indices.slice(0, 50), 'the bars are this SAE\'s encoding');
    bars.forEach((b) => assert.equal(b.href, `/saes/${other.id}/features/${b.index}`));
    assert.equal(await page.innerText('[data-metric="l0"]'), fmtInt(r.l0));
    assert.match(await page.innerText('.lede'), new RegExp(`POST /v1/saes/${other.id.replace(/\./g, '\\.')}/encode`));
    assertScoped(page, other.id, 'the encode page');
    assertClean(page);
    await closePage(page);
  });

  test('/saes/{id}/model describes SAE id and lists every SAE, each linking to its model page', async (t) => {
    if (!many(t)) return;
    const page = await newPage(VIEWPORTS[0]);
    await page.goto(`${BASE}/saes/${other.id}/model`);
    await settled(page, 'table.saes');
    assert.equal(await page.innerText('main > section:first-of-type dd[data-key="id"]'), other.id);
    assert.equal(await page.innerText('main > section:first-of-type dd[data-key="d_sae"]'), fmtInt(other.d_sae));
    assert.equal(await page.innerText('main > section:first-of-type dd[data-key="weights_digest"]'), other.weights_digest);
    const rows = await page.$$eval('table.saes tbody tr', (trs) => trs.map((tr) => ({
      id: tr.dataset.sae, href: tr.querySelector('a').getAttribute('href'), current: tr.getAttribute('aria-current') })));
    assert.deepEqual(rows.map((r) => r.id), saes.map((s) => s.id), 'every SAE, in serving order');
    assert.deepEqual(rows.map((r) => r.href), saes.map((s) => rel.pagePath(scopeOf(s.id), '/model')));
    assert.deepEqual(rows.filter((r) => r.current).map((r) => r.id), [other.id], 'the SAE shown is marked');
    assertScoped(page, other.id, 'the model page');
    assertClean(page);
    await closePage(page);
  });

  for (const vp of VIEWPORTS) {
    test(`at ${vp.width}: /search finds features across the release as GET /v1/search does, naming each one's SAE`, async (t) => {
      if (!many(t)) return;
      if (!word) return t.skip(`no explanation of ${other.id} has a word to search for`);
      const page = await newPage(vp);
      await page.goto(`${BASE}/`);
      await settled(page, 'table.features tbody tr');
      await page.click('a[data-nav="search"]');
      await page.waitForURL(`${BASE}/search`);
      await page.waitForSelector('#release-search');
      assert.equal(await page.getAttribute('a[data-nav="search"]', 'aria-current'), 'page');
      await page.fill('#release-search', word);
      await page.waitForURL(`${BASE}/search?q=${word}`);
      const want = await apiGet(`/v1/search?q=${encodeURIComponent(prefixQuery(word))}&limit=${PAGE_SIZE}&offset=0`);
      assert.ok(want.results.length > 0, `GET /v1/search finds "${word}"`);
      const inSaes = new Set(want.results.map((r) => r.sae));
      if (inSaes.size < 2) t.diagnostic(`"${word}" matches in one SAE only`);
      await waitForRows(page, want.results.map((r) => r.feature));
      const rows = await readRows(page);
      assert.deepEqual(rows.map((r) => [r.sae, r.index]), want.results.map((r) => [r.sae, r.feature]), 'results in the API\'s order');
      assert.deepEqual(rows.map((r) => r.label), want.results.map((r) => r.description), 'descriptions');
      assert.deepEqual(rows.map((r) => r.href), want.results.map((r) => rel.pagePath(scopeOf(r.sae), `/features/${r.feature}`)),
        'each result links to its feature in its SAE');
      const named = await page.$$eval('table.features tbody tr', (trs) => trs.map((tr) => ({
        sae: tr.querySelector('td.sae a').textContent, href: tr.querySelector('td.sae a').getAttribute('href'),
        what: tr.querySelector('td.sae .sae-what').textContent, score: tr.querySelector('td.score').textContent })));
      named.forEach((n, k) => {
        const r = want.results[k];
        const s = saes.find((x) => x.id === r.sae);
        assert.equal(n.sae, r.sae, `result ${k} names its SAE`);
        assert.equal(n.href, rel.pagePath(scopeOf(r.sae), '/'));
        assert.equal(n.what, rel.saeSummary(s));
        assert.equal(n.score, fmtNum(r.score, 3));
      });
      assert.match(await page.innerText('#results-count'), new RegExp(`^${fmtInt(want.total)} features? match`));
      await noSideways(page, vp);
      await shoot(page, 'search', vp);

      // A result of the other SAE opens its page there.
      const hit = want.results.find((r) => r.sae === other.id);
      if (hit) {
        await page.click(`tr[data-sae="${other.id}"][data-index="${hit.feature}"] td.label a`);
        await page.waitForURL(`${BASE}/saes/${other.id}/features/${hit.feature}`);
        await settled(page, 'dl.stats');
        assert.equal(await page.innerText('.feature-label'), hit.description);
        assert.equal(await page.inputValue('#pick-width'), other.id);
      }
      assertClean(page, [/^request failed: .* net::ERR_ABORTED$/]);
      await closePage(page);
    });
  }

  test('an address under /saes/{id} with an unknown id says so and lists the SAEs', async (t) => {
    if (!many(t)) return;
    const page = await newPage(VIEWPORTS[0]);
    await page.goto(`${BASE}/saes/no-such-sae/features/1`);
    await page.waitForSelector('main .state-empty');
    assert.equal(await page.innerText('main h1'), 'No such SAE');
    assert.match(await page.innerText('main'), /No SAE has the id “no-such-sae”/);
    const links = await page.$$eval('ul.sae-links a', (as) => as.map((a) => a.getAttribute('href')));
    assert.deepEqual(links, saes.map((s) => rel.pagePath(scopeOf(s.id), '/')));
    assert.deepEqual(apiRequests(page).filter((p) => p.includes('no-such-sae')), [], 'nothing asked of an SAE that is not there');
    assertClean(page);
    await closePage(page);
  });

  test('the unprefixed pages are the default SAE\'s, as /saes/{default}/ addresses are', async (t) => {
    if (!many(t)) return;
    const { features } = await apiGet('/v1/features?sort=density&order=desc&limit=1&offset=0');
    const f = await apiGet(`/v1/saes/${dflt.id}/features/${features[0].index}`);
    const page = await newPage(VIEWPORTS[0]);
    for (const [path, api] of [[`/features/${f.index}`, `/v1/features/${f.index}`],
      [`/saes/${dflt.id}/features/${f.index}`, `/v1/saes/${dflt.id}/features/${f.index}`]]) {
      apiRequests(page, { clear: true });
      await page.goto(`${BASE}${path}`);
      await settled(page, 'dl.stats');
      assert.equal(await page.innerText('.feature-label'), featureLabel(f) ?? 'No explanation yet', path);
      assert.equal(await page.innerText('[data-stat="density"]'), fmtDensity(f.density), path);
      assert.ok(apiRequests(page).includes(api), `${path} reads ${api}`);
      await page.waitForSelector('#sae-picker:not([hidden])');
      assert.equal(await page.inputValue('#pick-width'), dflt.id, `${path}: the picker shows the default SAE`);
    }
    assert.equal(await page.getAttribute('ol.neighbours a', 'href'), `/saes/${dflt.id}/features/${f.neighbours[0].index}`,
      'an explicit /saes/{default} address keeps its prefix');
    assertClean(page);
    await closePage(page);
  });
});
