// The browser tells the truth (issue 20): dead and weakly explained features
// are marked in the list, on their page and among neighbours; scores are
// shown to three decimals; a feature page costs at most 4 API requests.
// Every expectation is computed from the public API fetched here.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BASE, VIEWPORTS, apiGet, apiPost, apiRequests, assertClean, closePage, launchBrowser, openPage, settled } from './harness.mjs';
import { loadWebModule } from './load-module.mjs';

const { WEAK_SCORE, bestExplanation, featureLabel, fmtDensity, fmtInt, fmtNum, fmtScore, isDead } = await loadWebModule('format.js');

let browser;
let hasIndex;
before(async () => {
  browser = await launchBrowser();
  const model = await apiGet('/v1/model');
  hasIndex = model.index !== null && model.index !== undefined;
});
after(async () => { await browser?.close(); });

const vp = VIEWPORTS[0];

describe('dead and weak features', () => {
  test('the list marks dead features, shows scores to 3 decimals, mutes weak labels and can hide the dead', async (t) => {
    if (!hasIndex) return t.skip('no index');
    const { features } = await apiGet('/v1/features?sort=density&order=asc&limit=50&offset=0');
    const page = await openPage(browser, vp);
    await page.goto(`${BASE}/?sort=density&order=asc`);
    await settled(page, 'table.features tbody tr');
    const rows = await page.$$eval('table.features tbody tr', (trs) => trs.map((tr) => ({
      index: Number(tr.dataset.index), dead: !!tr.querySelector('.badge.dead'),
      weak: tr.querySelector('td.label').classList.contains('weak'),
      score: tr.querySelector('td.score').textContent, scorer: tr.querySelector('td.score').title,
      maxact: tr.querySelector('td.maxact').textContent,
      n: tr.querySelector('td.spark .spark-n')?.textContent,
    })));
    assert.deepEqual(rows.map((r) => r.index), features.map((f) => f.index));
    let nDead = 0;
    rows.forEach((r, k) => {
      const f = features[k];
      const best = bestExplanation(f);
      assert.equal(r.dead, f.n_active === 0, `#${f.index}: dead badge iff n_active is 0`);
      assert.equal(r.n, fmtInt(f.n_active), `#${f.index}: token count beside the sparkline`);
      if (r.dead) { nDead++; assert.equal(r.maxact, '—', `#${f.index}: no max for a dead feature`); }
      assert.equal(r.score, typeof best?.score === 'number' ? best.score.toFixed(3) : '—', `#${f.index}: score`);
      if (best?.source) assert.equal(r.scorer, `scored by ${best.source}`, `#${f.index}: scorer named`);
      const weak = f.n_active === 0 || (typeof best?.score === 'number' && best.score < WEAK_SCORE);
      assert.equal(r.weak, weak, `#${f.index}: label muted iff dead or scored under ${WEAK_SCORE}`);
    });
    assert.ok(nDead > 0, 'the demo index has dead features, lowest density first');
    assert.match(await page.innerText('#results-count'), new RegExp(`${nDead} dead on this page`));
    // A muted label is visibly lighter than a normal one.
    const colours = await page.$$eval('td.label a', (as) => [...new Set(as.map((a) => getComputedStyle(a).color))]);
    assert.ok(colours.length >= 2 || rows.every((r) => r.weak), 'muted labels have their own colour');

    // Hide dead and sort by score act on the whole list (the API filters and
    // sorts), not on the rows of one page.
    await page.check('#hide-dead');
    await listDrawn(page, /alive=1/);
    const live = await apiGet('/v1/features?sort=density&order=asc&limit=50&offset=0&alive=1');
    assert.deepEqual(await rowIndices(page), live.features.map((f) => f.index), 'hide dead lists the live features');
    assert.ok(live.features.every((f) => !isDead(f)) && live.total < (await apiGet('/v1/model')).d_sae);
    assert.match(await page.innerText('#results-count'), new RegExp(`^${fmtInt(live.total)} features · dead features hidden`));
    assert.equal(await page.$$eval('table.features tbody tr.dead', (trs) => trs.length), 0);

    await page.click('th.score button');
    await listDrawn(page, /sort=score&order=desc/);
    const byScore = await apiGet('/v1/features?sort=score&order=desc&limit=50&offset=0&alive=1');
    assert.deepEqual(await rowIndices(page), byScore.features.map((f) => f.index), 'sorted by score over the whole list');
    const scores = await page.$$eval('table.features tbody tr td.score', (tds) => tds.map((td) => td.textContent));
    const nums = scores.map((x) => (x === '—' ? -1 : Number(x)));
    assert.deepEqual(nums, nums.slice().sort((a, b) => b - a), 'scores descend');
    const first = bestExplanation(byScore.features[0]); // none in an index without explanations
    assert.equal(nums[0], first ? Number(fmtScore(first.score)) : -1);
    assert.equal(await page.getAttribute('th.score', 'aria-sort'), 'descending');
    assert.equal(await page.inputValue('#feature-sort'), 'score:desc');
    // Only the result count is announced.
    assert.deepEqual(await page.$$eval('[aria-live]', (els) => els.map((e) => e.id)), ['results-count']);
    assertClean(page);
    await closePage(page);
  });

  test('a dead feature page says dead and shows — for undefined statistics', async (t) => {
    if (!hasIndex) return t.skip('no index');
    const { features } = await apiGet('/v1/features?sort=density&order=asc&limit=5&offset=0');
    const f = features.find(isDead);
    if (!f) return t.skip('no dead feature');
    const page = await openPage(browser, vp);
    await page.goto(`${BASE}/features/${f.index}`);
    await settled(page, 'dl.stats');
    assert.ok(await page.$('.feature-label-line .badge.dead'), 'dead badge by the label');
    assert.equal(await page.innerText('[data-stat="mean_activation"]'), '—');
    assert.equal(await page.innerText('[data-stat="max_activation"]'), '—');
    assert.ok(await page.$eval('.feature-label', (el) => el.classList.contains('weak')), 'the label is muted');
    await closePage(page);
  });

  test('a feature page labels and marks its neighbours in at most 4 API requests', async (t) => {
    if (!hasIndex) return t.skip('no index');
    // A feature with a dead neighbour if there is one, else any with neighbours.
    const { features } = await apiGet('/v1/features?sort=density&order=desc&limit=40&offset=0');
    let f = null;
    for (const g of features) {
      const full = await apiGet(`/v1/features/${g.index}`);
      if (!f && full.neighbours?.length) f = full;
      if (full.neighbours?.some((nb) => nb.density === 0)) { f = full; break; }
    }
    assert.ok(f, 'a feature with neighbours');
    const page = await openPage(browser, vp);
    await page.goto(`${BASE}/features/${f.index}`);
    await settled(page, 'dl.stats');
    await page.waitForSelector('.quantiles details.qbin, .quantiles .state-empty');
    await page.waitForLoadState('networkidle');
    const asked = apiRequests(page);
    assert.ok(asked.length <= 4, `at most 4 API requests, made ${asked.length}: ${asked.join(' ')}`);
    const nbs = await page.$$eval('ol.neighbours li', (lis) => lis.map((li) => ({
      label: li.querySelector('.nb-label').textContent, dead: !!li.querySelector('.badge.dead') })));
    assert.equal(nbs.length, f.neighbours.length);
    for (let k = 0; k < nbs.length; k++) {
      const g = await apiGet(`/v1/features/${f.neighbours[k].index}`);
      assert.equal(nbs[k].label, featureLabel(g) ?? '(no explanation)', `label of neighbour #${g.index}`);
      assert.equal(nbs[k].dead, isDead(g), `dead badge of neighbour #${g.index}`);
    }
    // The best explanation's score, 3 decimals, with its scorer.
    const best = bestExplanation(f);
    if (typeof best?.score === 'number') {
      const line = await page.innerText('.feature-label-line');
      assert.ok(line.includes(`score ${fmtScore(best.score)}`), `score on the page: ${line}`);
      if (best.source) assert.ok(line.includes(`scored by ${best.source}`), 'scorer named');
    }
    assertClean(page);
    await closePage(page);
  });

  test('feature 0 has no "‹ #–"', async (t) => {
    if (!hasIndex) return t.skip('no index');
    const page = await openPage(browser, vp);
    await page.goto(`${BASE}/features/0`);
    await settled(page, 'dl.stats');
    const text = await page.innerText('nav.prevnext');
    assert.ok(!text.includes('#–'), `prev/next reads ${text}`);
    await closePage(page);
  });
});

// Waits until the list has been drawn again at an address matching `url`.
async function listDrawn(page, url) {
  await page.waitForURL(url);
  await page.waitForFunction(() => document.querySelector('section.results')?.getAttribute('aria-busy') === 'false');
  await page.waitForSelector('table.features tbody tr');
}

// The feature indices of the list's rows, in order.
function rowIndices(page) {
  return page.$$eval('table.features tbody tr', (trs) => trs.map((tr) => Number(tr.dataset.index)));
}

describe('whole-list filters', () => {
  test('hide dead pages through live features only, across pages and Back', async (t) => {
    if (!hasIndex) return t.skip('no index');
    const live = await apiGet('/v1/features?sort=index&order=asc&limit=50&offset=0&alive=1');
    const all = await apiGet('/v1/features?sort=index&order=asc&limit=50&offset=0');
    if (live.total === all.total) return t.skip('no dead feature');
    if (live.total <= 50) return t.skip('one page of live features');
    const page = await openPage(browser, vp);
    await page.goto(`${BASE}/`);
    await settled(page, 'table.features tbody tr');
    await page.check('#hide-dead');
    await listDrawn(page, /alive=1/);
    assert.deepEqual(await rowIndices(page), live.features.map((f) => f.index));
    await page.click('[data-pager="next"]');
    await listDrawn(page, /offset=50/);
    const second = await apiGet('/v1/features?sort=index&order=asc&limit=50&offset=50&alive=1');
    assert.deepEqual(await rowIndices(page), second.features.map((f) => f.index), 'page 2 holds the next live features');
    assert.equal(await page.$$eval('table.features tbody tr.dead', (trs) => trs.length), 0, 'no dead row on page 2');
    assert.ok(await page.isChecked('#hide-dead'), 'the filter stays on across pages');
    // The pager counts live features only.
    assert.match(await page.innerText('#results-count'), new RegExp(`^${fmtInt(live.total)} features`));
    await page.goBack();
    await listDrawn(page, /alive=1(?!.*offset)/);
    assert.deepEqual(await rowIndices(page), live.features.map((f) => f.index), 'Back: the first live page');
    await page.uncheck('#hide-dead');
    await listDrawn(page, (u) => !u.search.includes('alive'));
    assert.deepEqual(await rowIndices(page), all.features.map((f) => f.index), 'unchecked: every feature again');
    assertClean(page);
    await closePage(page);
  });
});

// WCAG contrast of two [r, g, b] colours (0..255).
function contrast(a, b) {
  const lum = (c) => {
    const [r, g, bl] = c.map((x) => { const v = x / 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [x, y] = [lum(a), lum(b)].sort((p, q) => q - p);
  return (x + 0.05) / (y + 0.05);
}

describe('honest scales', () => {
  for (const colorScheme of ['light', 'dark']) {
    test(`token shading (${colorScheme}): every value above 0 is visibly shaded, more for more`, async (t) => {
      if (!hasIndex) return t.skip('no index');
      const { features } = await apiGet('/v1/features?sort=density&order=desc&limit=1&offset=0');
      const page = await openPage(browser, vp, { colorScheme });
      await page.goto(`${BASE}/features/${features[0].index}`);
      await settled(page, 'ol.examples.top .tok');
      await page.waitForSelector('.quantiles details.qbin, .quantiles .state-empty');
      const toks = await page.evaluate(() => {
        const rgb = (s) => s.match(/[\d.]+/g).map(Number);
        const bg = rgb(getComputedStyle(document.body).backgroundColor);
        return [...document.querySelectorAll('.tok')].map((el) => {
          const c = rgb(getComputedStyle(el).backgroundColor);
          const a = c.length > 3 ? c[3] : (getComputedStyle(el).backgroundColor.startsWith('rgba') ? 0 : 1);
          return { v: Number(el.dataset.value), c: c.slice(0, 3).map((x, k) => x * a + bg[k] * (1 - a)), bg, a };
        });
      });
      const on = toks.filter((x) => x.v > 0);
      assert.ok(on.length > 0, 'some tokens are active');
      const cs = on.map((x) => contrast(x.c, x.bg));
      const least = Math.min(...cs);
      t.diagnostic(`${colorScheme}: least shading contrast against the page ${least.toFixed(2)}:1 over ${on.length} active tokens`);
      assert.ok(least >= 1.25, `the faintest active token has ${least.toFixed(2)}:1 against the page`);
      for (const x of toks.filter((y) => !(y.v > 0))) assert.ok(contrast(x.c, x.bg) < 1.01, 'inactive tokens are unshaded');
      const byV = on.slice().sort((p, q) => p.v - q.v);
      for (let k = 1; k < byV.length; k++) assert.ok(byV[k].a >= byV[k - 1].a - 1e-6, 'shading grows with the value');
      await closePage(page);
    });
  }
});

describe('the encode page', () => {
  test('scales each bar to its feature\'s max in the index and warns of a poor reconstruction', async (t) => {
    const model = await apiGet('/v1/model');
    const input = Array.from({ length: model.d_in }, (_, k) => 2 * Math.sin(k * 1.7));
    let r;
    try {
      r = (await apiFetchEncode(input)).results[0];
    } catch {
      return t.skip('no index');
    }
    assert.ok(r.fvu > 1 || r.cosine < 0.5, `this input is reconstructed poorly (fvu ${r.fvu}, cosine ${r.cosine})`);
    const page = await openPage(browser, vp);
    await page.goto(`${BASE}/encode`);
    await settled(page, '#encode-input');
    await page.fill('#encode-input', JSON.stringify(input));
    await page.click('form.encode-form button[type="submit"]');
    await settled(page, '.encode-result dl.metrics');
    const warned = await page.$$eval('.encode-result .warn p', (ps) => ps.map((p) => p.textContent));
    assert.equal(warned.some((w) => w.startsWith('FVU')), r.fvu > 1, 'FVU warning');
    assert.equal(warned.some((w) => w.startsWith('Cosine')), r.cosine < 0.5, 'cosine warning');
    const pcts = await page.$$eval('li.bar-row .bar-pct', (ss) => ss.map((x) => x.textContent));
    assert.equal(pcts.length, Math.min(50, r.indices.length), 'every bar says its share of the max');
    const f0 = r.features[0];
    assert.equal(pcts[0], `${fmtNum((Math.max(0, r.values[0]) / f0.max_activation) * 100, 3)}% of max`);
    assertClean(page);
    await closePage(page);
  });
});

function apiFetchEncode(input) {
  return apiPost('/v1/encode', { input, include: ['metrics', 'features'] });
}

describe('page not found', () => {
  test('a browser gets an HTML "page not found" for an unknown path; API paths keep JSON 404s', async () => {
    const page = await openPage(browser, vp);
    const res = await page.goto(`${BASE}/nope`);
    assert.equal(res.status(), 404);
    assert.match(res.headers()['content-type'], /^text\/html/);
    assert.equal(await page.innerText('h1'), 'Page not found');
    assert.equal(await page.getAttribute('main a', 'href'), '/');
    await closePage(page);
    for (const path of ['/v1/nope', '/nope']) {
      const r = await fetch(BASE + path, { headers: { Accept: path === '/nope' ? 'application/json' : 'text/html' } });
      assert.equal(r.status, 404, path);
      assert.equal((await r.json()).error.code, 'not_found', `${path}: a JSON error`);
    }
  });
});

describe('the model page', () => {
  test('summarises every feature: dead count and density percentiles', async (t) => {
    if (!hasIndex) return t.skip('no index');
    const model = await apiGet('/v1/model');
    const all = [];
    while (all.length < model.d_sae) {
      const { features } = await apiGet(`/v1/features?sort=density&order=asc&limit=500&offset=${all.length}`);
      if (!features.length) break;
      all.push(...features);
    }
    const dead = all.filter(isDead).length;
    const page = await openPage(browser, vp);
    await page.goto(`${BASE}/model`);
    await settled(page, 'dd[data-key="dead"]');
    assert.equal(await page.innerText('dd[data-key="dead"]'),
      `${fmtInt(dead)} of ${fmtInt(model.d_sae)} (${fmtNum((dead / model.d_sae) * 100, 3)}%)`);
    assert.equal(await page.innerText('dd[data-key="density_p50"]'), fmtDensity(all[Math.floor(0.5 * model.d_sae)].density));
    assertClean(page);
    await closePage(page);
  });
});
