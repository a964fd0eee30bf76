// The web feature browser in a real headless Chromium against a real saed.
// Every number the pages show is checked against the same public API
// (CONTRACT section 5) fetched here: a page that drops a row, shows another
// feature's label, loses a histogram bin or shades the wrong token fails.
//
// With several SAEs these are the default SAE's pages at the unprefixed
// addresses, which must work as with one (saes.test.mjs checks the rest).
//
// Environment: as harness.mjs says; with SAED_API_KEY the key prompt is
// tested too.

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import {
  BASE, KEY, SHOTS, VIEWPORTS, apiGet, apiPost, assertClean, closePage, launchBrowser, noSideways, openPage, settled,
  shoot, vectorOf,
} from './harness.mjs';
import { loadWebModule } from './load-module.mjs';

const fmt = await loadWebModule('format.js');
const { displayToken, featureLabel, fmtDensity, fmtInt, fmtNum, fmtScore, histogramRange, isDead } = fmt;

const PAGE_SIZE = 50; // rows per page of the feature list (web/assets/page-features.js)
const BARS_SHOWN = 50; // encode bars drawn before "show all" (web/assets/page-encode.js)

// A feature's decoder direction, or null when saed does not serve it (no index).
async function tryVector(i) {
  try {
    return vectorOf(await apiGet(`/v1/features/${i}/vector`));
  } catch {
    return null;
  }
}

// POST /v1/encode as the page sends it: labels asked for, and asked again
// without them when saed answers no_index. Returns the result row and the
// error replies the page is expected to have seen on the way.
async function encodeLikeThePage(input) {
  try {
    return { r: (await apiPost('/v1/encode', { input, include: ['metrics', 'features'] })).results[0], allow: [] };
  } catch (e) {
    if (!/"no_index"/.test(e.message)) throw e;
    return { r: (await apiPost('/v1/encode', { input, include: ['metrics'] })).results[0], allow: [/HTTP 404 .*\/v1\/encode$/] };
  }
}

// Parses a number as the pages print it ("0.123%", "1.5e-4", "12,345").
function parseShown(text) {
  return Number.parseFloat(text.replace(/,/g, '').replace('%', ''));
}

function near(shown, actual, rel, what) {
  const tol = Math.max(Math.abs(actual) * rel, 1e-12);
  assert.ok(Math.abs(shown - actual) <= tol, `${what}: page shows ${shown}, API says ${actual}`);
}

let browser;
let model;
let hasIndex;
let feature; // the feature the deep-link tests open, with its full record

// A fresh page at `vp` (harness.mjs).
const newPage = (vp, opts) => openPage(browser, vp, opts);

before(async () => {
  browser = await launchBrowser();
  model = await apiGet('/v1/model');
  hasIndex = model.index !== null && model.index !== undefined;
  if (hasIndex) {
    // The densest features surely have examples; prefer one with an explanation.
    const { features } = await apiGet('/v1/features?sort=density&order=desc&limit=50&offset=0');
    assert.ok(features.length > 0, 'the index lists no features');
    const pick = features.find((f) => featureLabel(f) && f.density > 0) || features[0];
    feature = await apiGet(`/v1/features/${pick.index}`);
  }
  if (SHOTS) mkdirSync(SHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
});

// The list rows as the page shows them.
function readRows(page) {
  return page.$$eval('table.features tbody tr', (trs) => trs.map((tr) => ({
    index: Number(tr.dataset.index),
    label: tr.querySelector('td.label a').textContent,
    density: tr.querySelector('td.density').textContent,
    maxact: tr.querySelector('td.maxact').textContent,
    spark: tr.querySelectorAll('td.spark svg rect').length,
  })));
}

function expectRows(rows, features, what) {
  assert.deepEqual(rows.map((r) => r.index), features.map((f) => f.index), `${what}: feature indices`);
  rows.forEach((r, k) => {
    const f = features[k];
    const label = featureLabel(f);
    assert.equal(r.label, label ?? `Feature ${f.index} (no explanation)`, `${what}: label of #${f.index}`);
    assert.equal(r.density, fmtDensity(f.density), `${what}: density of #${f.index}`);
    if (f.density > 0) near(parseShown(r.density) / 100, f.density, 0.006, `${what}: density of #${f.index}`);
    assert.equal(r.maxact, isDead(f) ? '—' : fmtNum(f.max_activation), `${what}: max activation of #${f.index}`);
    const range = histogramRange(f.histogram?.counts);
    assert.equal(r.spark, range ? range[1] - range[0] + 1 : 0, `${what}: sparkline bars of #${f.index}`);
  });
}

async function waitForRows(page, expected) {
  await page.waitForFunction((want) => {
    const ids = [...document.querySelectorAll('table.features tbody tr')].map((tr) => tr.dataset.index).join(',');
    return ids === want && document.querySelector('.results')?.getAttribute('aria-busy') === 'false';
  }, expected.map((f) => f.index).join(','));
}

describe('the feature browser', () => {
  if (KEY) {
    test('asks for the API key on 401, rejects a wrong one, then loads with the right one', async () => {
      const vp = VIEWPORTS[0];
      const page = await newPage(vp, { withKey: false });
      await page.goto(`${BASE}/`);
      await page.waitForSelector('#auth-dialog[open]');
      await page.fill('#auth-key', `${KEY}-wrong`);
      await page.click('#auth-form button[value="ok"]');
      await page.waitForSelector('#auth-dialog[open] #auth-error:not([hidden])');
      await page.fill('#auth-key', KEY);
      await page.click('#auth-form button[value="ok"]');
      await settled(page, hasIndex ? 'table.features tbody tr' : '.state-empty');
      assert.equal(await page.evaluate(() => sessionStorage.getItem('saed.apiKey')), KEY);
      assertClean(page, hasIndex ? [/HTTP 401 /] : [/HTTP 401 /, /HTTP 404 .*\/v1\/features/]);
      await closePage(page);
    });
  }

  for (const vp of VIEWPORTS) {
    describe(`at ${vp.width}×${vp.height}`, () => {
      test('/ lists the features exactly as GET /v1/features does', async (t) => {
        const page = await newPage(vp);
        await page.goto(`${BASE}/`);
        if (!hasIndex) {
          await settled(page, '.state-empty');
          assert.match(await page.innerText('main'), /No feature index is loaded/);
          await shoot(page, 'features', vp);
          assertClean(page, [/HTTP 404 .*\/v1\/features/]);
          await closePage(page);
          t.skip('saed has no index: checked the empty state only');
          return;
        }
        await settled(page, 'table.features tbody tr');
        const expected = await apiGet(`/v1/features?sort=index&order=asc&limit=${PAGE_SIZE}&offset=0`);
        expectRows(await readRows(page), expected.features, '/');
        assert.match(await page.innerText('#results-count'), new RegExp(fmtInt(expected.total)));
        assert.equal(await page.getAttribute('a[data-nav="features"]', 'aria-current'), 'page');
        await noSideways(page, vp);
        await shoot(page, 'features', vp);
        assertClean(page);
        await closePage(page);
      });

      test('/features/{i} (a deep link) shows the feature as GET /v1/features/{i} does', async (t) => {
        if (!hasIndex) {
          const page = await newPage(vp);
          await page.goto(`${BASE}/features/0`);
          await settled(page, '.state-empty');
          assert.match(await page.innerText('main'), /No feature index is loaded/);
          assertClean(page, [/HTTP 404 .*\/v1\/features/]);
          await closePage(page);
          t.skip('saed has no index: checked the empty state only');
          return;
        }
        const f = feature;
        const i = f.index;
        const page = await newPage(vp);
        await page.goto(`${BASE}/features/${i}`);
        await settled(page, 'dl.stats');
        await page.waitForSelector('.quantiles details.qbin, .quantiles .state-empty');
        await page.waitForLoadState('networkidle');

        assert.equal(await page.innerText('main h1'), `Feature ${i}`);
        const label = featureLabel(f);
        assert.equal(await page.innerText('.feature-label'), label ?? 'No explanation yet');

        // Statistics: the page's text is the API's number, formatted, and reads back as it.
        const stats = { density: fmtDensity(f.density), max_activation: fmtNum(f.max_activation),
          mean_activation: fmtNum(f.mean_activation), decoder_norm: fmtNum(f.decoder_norm) };
        for (const [k, want] of Object.entries(stats)) {
          const shown = await page.innerText(`[data-stat="${k}"]`);
          assert.equal(shown, want, `${k}`);
          const actual = k === 'density' ? f.density * 100 : f[k];
          if (actual) near(parseShown(shown), actual, 0.006, k);
        }

        // Explanations, all of them, best score first, with score and source.
        const ex = (f.explanations || []).filter((e) => e && e.description).map((e, k) => [e, k])
          .sort(([a, i], [b, j]) => ((typeof b.score === 'number' ? b.score : -Infinity) -
            (typeof a.score === 'number' ? a.score : -Infinity)) || i - j).map(([e]) => e);
        const shownEx = await page.$$eval('ol.explanations li', (lis) => lis.map((li) => ({
          d: li.querySelector('.desc').textContent, meta: li.querySelector('.meta').textContent })));
        assert.deepEqual(shownEx.map((e) => e.d), ex.map((e) => e.description), 'explanations');
        shownEx.forEach((e, k) => {
          const score = typeof ex[k].score === 'number' ? `score ${fmtScore(ex[k].score)}` : 'no score';
          assert.ok(e.meta.startsWith(score), `score of explanation ${k}: ${e.meta}`);
          if (ex[k].source) assert.ok(e.meta.includes(ex[k].source), `source of explanation ${k}`);
        });

        // Histogram: one bar per bin of the 0.5th to 99.5th percentile, the
        // tokens outside counted and named; no count lost.
        const counts = f.histogram.counts;
        const clip = fmt.clippedRange(counts);
        const bars = await page.$$eval('svg.histogram rect.bar', (rs) => rs.map((r) => ({
          count: Number(r.dataset.count), height: Number(r.getAttribute('height')) })));
        assert.equal(bars.length, clip.hi - clip.lo + 1, 'histogram bars');
        const [below, above] = await page.$eval('svg.histogram', (el) => [Number(el.dataset.below), Number(el.dataset.above)]);
        assert.equal(bars.reduce((a, b) => a + b.count, 0) + below + above, counts.reduce((a, b) => a + b, 0), 'tokens in the histogram');
        assert.deepEqual(bars.map((b) => b.count), counts.slice(clip.lo, clip.hi + 1), 'bar counts in bin order');
        const caption = await page.innerText('figure.hist figcaption');
        assert.match(caption, /0\.5th to 99\.5th percentile/, 'the clip is stated');
        if (above) assert.ok(caption.includes(`${fmtInt(above)} token${above === 1 ? '' : 's'} above`), `outliers above noted: ${caption}`);
        if (below) assert.ok(caption.includes(`${fmtInt(below)} token${below === 1 ? '' : 's'} below`), `outliers below noted: ${caption}`);
        const tallest = bars.reduce((a, b) => (b.height > a.height ? b : a));
        assert.equal(tallest.count, Math.max(...counts.slice(clip.lo, clip.hi + 1)), 'the tallest bar is the fullest bin');
        const axisTitles = await page.$$eval('svg.histogram .axis-title', (ts) => ts.map((x) => x.textContent));
        assert.equal(axisTitles.length, 2, 'two axis titles');
        assert.match(axisTitles[1], /^activation( \(log scale\))?$/, 'the x axis is titled');
        assert.equal(axisTitles[0], 'tokens', 'the y axis is titled');
        // Round ticks: 1, 2 or 5 × 10^k; whole-number counts.
        const xTicks = await page.$$eval('svg.histogram .x-axis text[data-tick]', (ts) => ts.map((x) => Number(x.dataset.tick)));
        assert.ok(xTicks.length >= 2, `the activation axis has tick labels: ${xTicks}`);
        for (const v of xTicks) {
          const mant = Number((v / 10 ** Math.floor(Math.log10(v) + 1e-9)).toPrecision(6));
          assert.ok([1, 2, 5].includes(mant) || Number.isInteger(v / (10 ** Math.floor(Math.log10(v)))), `round tick ${v}`);
        }
        const yTicks = await page.$$eval('svg.histogram .y-axis text:not(.axis-title)', (ts) => ts.map((x) => x.textContent));
        for (const t of yTicks) assert.match(t, /^\d+$/, `whole-number count tick ${t}`);
        const boxes = await page.$$eval('svg.histogram .x-axis text:not(.axis-title)', (ts) => ts.map((x) => {
          const b = x.getBoundingClientRect();
          return [b.left, b.right];
        }));
        for (let k = 1; k < boxes.length; k++) {
          assert.ok(boxes[k - 1][1] <= boxes[k][0], `tick labels ${xTicks[k - 1]} and ${xTicks[k]} do not overprint`);
        }

        // Top examples: the API's tokens, in order, each carrying its value; the max token marked.
        const top = f.top_examples || [];
        const shownTop = await page.$$eval('li.example[data-kind="top"]', (lis) => lis.map((li) => ({
          doc: li.querySelector('code.doc').textContent,
          toks: [...li.querySelectorAll('.tok')].map((s) => ({ text: s.textContent, value: Number(s.dataset.value),
            label: s.getAttribute('aria-label'), max: s.classList.contains('mark'), tab: s.tabIndex })),
        })));
        assert.equal(shownTop.length, top.length, 'top examples shown');
        assert.ok(top.length > 0, 'the chosen feature has top examples');
        shownTop.forEach((s, k) => {
          const e = top[k];
          assert.equal(s.doc, String(e.document), `document of top example ${k}`);
          assert.deepEqual(s.toks.map((x) => x.text), e.tokens.map(displayToken), `tokens of top example ${k}`);
          assert.deepEqual(s.toks.map((x) => x.value), e.values, `values of top example ${k}`);
          assert.deepEqual(s.toks.map((x, j) => (x.max ? j : -1)).filter((j) => j >= 0), [e.max_token_index],
            `max token of top example ${k}`);
          s.toks.forEach((x, j) => assert.ok(x.label.includes(fmtNum(e.values[j])), `aria-label of token ${j}`));
          assert.equal(s.toks.filter((x) => x.tab === 0).length, 1, 'one Tab stop per example');
        });
        const plainTokens = top.flatMap((e) => e.tokens).filter((x) => !/[\u0000-\u001f\u007f]/.test(x) && x !== '');
        const shownPlain = shownTop.flatMap((s, k) => s.toks.filter((_, j) => {
          const x = top[k].tokens[j];
          return !/[\u0000-\u001f\u007f]/.test(x) && x !== '';
        }).map((x) => x.text));
        assert.deepEqual(shownPlain, plainTokens, 'tokens without control characters are shown verbatim');

        // Quantile examples grouped by bin, every example of the API present.
        let quant = [];
        for (let total = 1; quant.length < total;) {
          const r = await apiGet(`/v1/features/${i}/examples?kind=quantile&limit=100&offset=${quant.length}`);
          quant = quant.concat(r.examples);
          total = r.total;
          if (!r.examples.length) break;
        }
        const bins = new Map();
        for (const e of quant) bins.set(`${e.bin_min}|${e.bin_max}`, (bins.get(`${e.bin_min}|${e.bin_max}`) || 0) + 1);
        const groups = await page.$$eval('details.qbin', (ds) => ds.map((d) => ({
          key: `${Number(d.dataset.binMin)}|${Number(d.dataset.binMax)}`, n: d.querySelectorAll('li.example').length })));
        assert.equal(groups.length, bins.size, 'quantile groups');
        for (const g of groups) assert.equal(g.n, bins.get(g.key), `examples in quantile bin ${g.key}`);
        const mins = groups.map((g) => Number(g.key.split('|')[0]));
        assert.deepEqual(mins, [...mins].sort((a, b) => b - a), 'quantile bins highest first');
        assert.ok(quant.length > 0, 'the chosen feature has quantile examples');
        // Each quantile example marks the token it was sampled for (focus_index),
        // whose value lies in its bin, not the window's max.
        const marked = await page.$$eval('li.example[data-kind="quantile"]', (lis) => lis.map((li) => {
          const toks = [...li.querySelectorAll('.tok')];
          const at = toks.findIndex((x) => x.classList.contains('mark'));
          return `${li.querySelector('code.doc').textContent}@${at}`;
        }));
        assert.deepEqual([...marked].sort(), quant.map((e) => `${e.document}@${e.focus_index}`).sort(),
          'the marked token of each quantile example is its focus_index');
        for (const e of quant) {
          assert.ok(e.values[e.focus_index] >= e.bin_min && e.values[e.focus_index] <= e.bin_max,
            `the sampled token of document ${e.document} lies in its bin`);
        }

        // Logit tables and their histogram as GET /v1/features/{i} gives them, or
        // the "not computed" state for an index built without --unembed.
        if (f.logits) {
          for (const kind of ['pos', 'neg']) {
            const shown = await page.$$eval(`table.logits.${kind} tbody tr`, (trs) => trs.map((tr) => ({
              id: Number(tr.dataset.tokenId),
              token: tr.querySelector('code.tok-str').textContent,
              value: tr.querySelector('td.num').textContent,
            })));
            assert.deepEqual(shown, f.logits[kind].map((r) => ({ id: r.id, token: displayToken(r.token), value: fmtNum(r.value) })),
              `the ${kind} logit table`);
          }
          const bars = await page.$$eval('svg.logit-hist rect', (rs) => rs.map((r) => r.getAttribute('class')));
          assert.equal(bars.length, f.logits.histogram.bar_heights.length, 'one bar per logit bin');
          assert.deepEqual(bars, f.logits.histogram.bar_values.map((v) => (v < 0 ? 'neg' : 'pos')), 'bar colours by sign');
        } else {
          assert.match(await page.innerText('section.logits'), /not computed/, 'the logits section says they are not computed');
        }

        // Neighbours as links, in the API's order; previous and next feature.
        const nbs = await page.$$eval('ol.neighbours li a', (as) => as.map((a) => a.getAttribute('href')));
        assert.deepEqual(nbs, (f.neighbours || []).map((n) => `/features/${n.index}`), 'neighbour links');
        if (i > 0) assert.equal(await page.getAttribute('a[rel="prev"]', 'href'), `/features/${i - 1}`);
        if (i + 1 < model.d_sae) assert.equal(await page.getAttribute('a[rel="next"]', 'href'), `/features/${i + 1}`);

        await noSideways(page, vp);
        await shoot(page, 'feature', vp);
        assertClean(page);
        await closePage(page);
      });

      test('/encode with a submitted vector shows the bars and metrics of POST /v1/encode', async () => {
        const page = await newPage(vp);
        // A mix of two decoder directions, so several features can be active
        // (a fixed wave when saed serves no decoder directions without an index).
        const a = hasIndex ? feature.index : 0;
        const va = await tryVector(a);
        const vb = await tryVector((a + 1) % model.d_sae);
        const input = va && vb ? va.map((x, k) => 3 * x + 1.5 * vb[k])
          : Array.from({ length: model.d_in }, (_, k) => 2 * Math.sin(k * 1.7));
        assert.equal(input.length, model.d_in, 'the test vector has d_in numbers');
        const { r, allow } = await encodeLikeThePage(input);

        await page.goto(`${BASE}/encode`);
        await settled(page, '#encode-input');
        await page.fill('#encode-input', JSON.stringify(input));
        await page.click('form.encode-form button[type="submit"]');
        await settled(page, '.encode-result dl.metrics');

        const metrics = await page.$$eval('[data-metric]', (ds) => Object.fromEntries(ds.map((d) => [d.dataset.metric, d.textContent])));
        assert.deepEqual(metrics, { l0: fmtInt(r.l0), mse: fmtNum(r.mse), fvu: fmtNum(r.fvu), cosine: fmtNum(r.cosine) });
        near(parseShown(metrics.cosine), r.cosine, 0.001, 'cosine');
        const rows = await page.$$eval('li.bar-row', (lis) => lis.map((li) => ({
          index: Number(li.dataset.index), href: li.querySelector('a').getAttribute('href'),
          value: li.querySelector('.bar-value').textContent,
          width: Number.parseFloat(li.querySelector('.bar-fill').style.getPropertyValue('--w')) })));
        const n = Math.min(r.indices.length, BARS_SHOWN);
        assert.ok(r.indices.length > 0, 'the test vector activates some feature');
        assert.deepEqual(rows.map((x) => x.index), r.indices.slice(0, n), 'bar indices are the reply\'s, in order');
        assert.deepEqual(rows.map((x) => x.value), r.values.slice(0, n).map((v) => fmtNum(v)), 'bar values');
        rows.forEach((x) => assert.equal(x.href, `/features/${x.index}`));
        // A bar is its value as a share of its feature's max in the index, or
        // without the index of the reply's largest value.
        const maxOf = new Map((Array.isArray(r.features) ? r.features : []).map((x, k) => [x.index ?? r.indices[k], x.max_activation]));
        rows.forEach((x, k) => {
          const m = maxOf.get(x.index);
          const pct = m > 0 ? (Math.max(0, r.values[k]) / m) * 100 : (Math.max(0, r.values[k]) / Math.max(...r.values)) * 100;
          near(x.width, Math.max(0.5, Math.min(100, pct)), 1e-3, `bar width of #${x.index}`);
        });
        const warned = await page.$$eval('.encode-result .warn p', (ps) => ps.map((p) => p.textContent));
        assert.equal(warned.some((w) => w.startsWith('FVU')), r.fvu > 1, 'FVU warning iff fvu > 1');
        assert.equal(warned.some((w) => w.startsWith('Cosine')), r.cosine < 0.5, 'cosine warning iff cosine < 0.5');

        if (hasIndex && !allow.length) {
          // Labels: from the reply when it carries them, else from each feature's record.
          await page.waitForFunction(() => ![...document.querySelectorAll('.bar-label')].some((l) => l.textContent === '…'));
          const labels = await page.$$eval('li.bar-row .bar-label', (ls) => ls.map((l) => l.textContent));
          const fromReply = new Map((Array.isArray(r.features) ? r.features : [])
            .map((x, k) => [Number.isInteger(x?.index) ? x.index : r.indices[k], x?.label]));
          for (let k = 0; k < Math.min(5, n); k++) {
            const idx = r.indices[k];
            let want = fromReply.get(idx);
            if (typeof want !== 'string') want = featureLabel(await apiGet(`/v1/features/${idx}`)) ?? '(no explanation)';
            assert.equal(labels[k], want, `label of bar #${idx}`);
          }
        }
        await page.waitForLoadState('networkidle');
        await noSideways(page, vp);
        await shoot(page, 'encode', vp);
        assertClean(page, allow);
        await closePage(page);
      });

      test('/model shows GET /v1/model', async () => {
        const page = await newPage(vp);
        await page.goto(`${BASE}/model`);
        await settled(page, 'dl.kv');
        for (const k of ['d_in', 'd_sae']) {
          assert.equal(await page.innerText(`main > section:first-of-type > dl.kv > .kv-row > dd[data-key="${k}"]`), fmtInt(model[k]), k);
        }
        for (const k of ['architecture', 'dtype', 'weights_digest', 'model_name', 'hook_name']) {
          if (typeof model[k] === 'string' && model[k]) {
            assert.equal(await page.innerText(`main > section:first-of-type > dl.kv > .kv-row > dd[data-key="${k}"]`), model[k], k);
          }
        }
        if (hasIndex) {
          const keys = await page.$$eval('main > section:nth-of-type(2) > dl.kv > .kv-row > dd', (ds) => ds.map((d) => d.dataset.key));
          assert.deepEqual(keys, Object.keys(model.index).filter((k) => k !== 'path'), 'index summary keys, no server path');
          const text = await page.innerText('main');
          if (model.index.path) assert.ok(!text.includes(model.index.path), 'the index path is not shown');
          assert.ok(!/\b[a-z]+_[a-z_]+\b/.test(await page.$$eval('dt', (ds) => ds.map((d) => d.textContent).join(' ').replace(/d_(in|sae|out)|[Wb]_\w+/g, ''))),
            'no snake_case labels');
        } else {
          assert.match(await page.innerText('main'), /No feature index is loaded/);
        }
        await noSideways(page, vp);
        await shoot(page, 'model', vp);
        assertClean(page);
        await closePage(page);
      });
    });
  }

  describe('interaction at 1280×800', () => {
    const vp = VIEWPORTS[0];

    test('sorting, searching and paging the list follow the API', async (t) => {
      if (!hasIndex) return t.skip('saed has no index');
      const page = await newPage(vp);
      await page.goto(`${BASE}/`);
      await settled(page, 'table.features tbody tr');

      await page.selectOption('#feature-sort', 'density:desc');
      await page.waitForURL(/[?&]sort=density&order=desc/);
      const byDensity = await apiGet(`/v1/features?sort=density&order=desc&limit=${PAGE_SIZE}&offset=0`);
      const ds = byDensity.features.map((f) => f.density);
      assert.deepEqual(ds, [...ds].sort((x, y) => y - x), 'the API sorts by density');
      await waitForRows(page, byDensity.features);
      expectRows(await readRows(page), byDensity.features, 'sorted by density');

      if (byDensity.total > PAGE_SIZE) {
        await page.click('button[data-pager="next"]');
        await page.waitForURL(/[?&]offset=50/);
        const second = await apiGet(`/v1/features?sort=density&order=desc&limit=${PAGE_SIZE}&offset=${PAGE_SIZE}`);
        await waitForRows(page, second.features);
        expectRows(await readRows(page), second.features, 'second page');
        assert.equal(await page.evaluate(() => document.activeElement?.id), 'results-count', 'focus follows to the results');
        await page.goBack();
        await waitForRows(page, byDensity.features);
      } else {
        t.diagnostic(`only ${byDensity.total} features: paging not exercised`);
      }

      await page.selectOption('#feature-sort', 'index:asc');
      const word = (() => {
        for (const f of byDensity.features) {
          const m = (featureLabel(f) || '').match(/[A-Za-z]{4,}/);
          if (m) return m[0].toLowerCase();
        }
        return null;
      })();
      if (word) {
        // Typing part of a word already finds it (its last word is a prefix),
        // best match first, and the select says so.
        const part = word.slice(0, 3);
        await page.fill('#feature-search', part);
        await page.waitForURL(new RegExp(`[?&]q=${part}(&|$)`));
        const partial = await apiGet(`/v1/features?q=${encodeURIComponent(`${part}*`)}&sort=relevance&limit=${PAGE_SIZE}&offset=0`);
        assert.ok(partial.total > 0, `the API finds words starting "${part}"`);
        await waitForRows(page, partial.features);
        expectRows(await readRows(page), partial.features, `search "${part}"`);
        assert.equal(await page.inputValue('#feature-sort'), 'relevance:asc', 'a search is ordered by best match');

        await page.fill('#feature-search', word);
        await page.waitForURL(new RegExp(`[?&]q=${word}(&|$)`));
        const found = await apiGet(`/v1/features?q=${encodeURIComponent(`${word}*`)}&sort=relevance&limit=${PAGE_SIZE}&offset=0`);
        assert.ok(found.total > 0, `the API finds "${word}"`);
        await waitForRows(page, found.features);
        expectRows(await readRows(page), found.features, `search "${word}"`);
        assert.match(await page.innerText('#results-count'), new RegExp(`${fmtInt(found.total)} features? match`));
        assert.equal(await page.evaluate(() => document.activeElement?.id), 'feature-search', 'typing keeps focus');

        // Index order can be asked for while searching, and is what comes back.
        await page.selectOption('#feature-sort', 'index:asc');
        await page.waitForURL(/[?&]sort=index/);
        const byIndex = await apiGet(`/v1/features?q=${encodeURIComponent(`${word}*`)}&sort=index&limit=${PAGE_SIZE}&offset=0`);
        await waitForRows(page, byIndex.features);
        expectRows(await readRows(page), byIndex.features, `search "${word}" by index`);
      } else {
        t.diagnostic('no feature on the first page has an explanation: search not exercised');
      }

      await page.fill('#feature-search', 'qqzzxxnotaword');
      await page.waitForSelector('.results .state-empty');
      assert.match(await page.innerText('.results'), /No explanation matches/);
      assertClean(page);
      await closePage(page);
    });

    test('tokens can be read with the keyboard alone, and links navigate in place', async (t) => {
      if (!hasIndex) return t.skip('saed has no index');
      const page = await newPage(vp);
      const e = feature.top_examples[0];
      await page.goto(`${BASE}/features/${feature.index}`);
      await settled(page, 'li.example');

      // Tab from the top of the page until focus reaches the first example's max token.
      let reached = false;
      for (let k = 0; k < 200 && !reached; k++) {
        await page.keyboard.press('Tab');
        reached = await page.evaluate(() => document.activeElement?.classList.contains('tok'));
      }
      assert.ok(reached, 'Tab reaches the tokens');
      const at = await page.evaluate(() => [...document.activeElement.parentNode.children].indexOf(document.activeElement));
      assert.equal(at, e.max_token_index, 'the example\'s Tab stop is its max token');
      const tip = await page.evaluate(() => getComputedStyle(document.activeElement, '::after').content);
      assert.equal(tip, JSON.stringify(`${fmtNum(e.values[at])} max`), 'focus shows the value');
      if (e.tokens.length > 1) {
        const to = at + 1 < e.tokens.length ? at + 1 : at - 1;
        await page.keyboard.press(to > at ? 'ArrowRight' : 'ArrowLeft');
        const now = await page.evaluate(() => ({
          i: [...document.activeElement.parentNode.children].indexOf(document.activeElement),
          label: document.activeElement.getAttribute('aria-label'),
          tip: getComputedStyle(document.activeElement, '::after').content,
        }));
        assert.equal(now.i, to, 'arrow keys move between tokens');
        assert.equal(now.label, `${JSON.stringify(e.tokens[to])}: ${fmtNum(e.values[to])}`);
        assert.equal(now.tip, JSON.stringify(fmtNum(e.values[to])));
      }

      // A neighbour link changes the page without a reload; Back returns.
      const nb = feature.neighbours?.[0];
      if (nb) {
        await page.evaluate(() => { window.__noReload = true; });
        await page.click(`ol.neighbours a[href="/features/${nb.index}"]`);
        await page.waitForURL(`${BASE}/features/${nb.index}`);
        await page.waitForFunction((j) => document.querySelector('main h1')?.textContent === `Feature ${j}`, nb.index);
        assert.equal(await page.evaluate(() => window.__noReload), true, 'navigated without a reload');
        // Once the page has drawn, focus is on its heading (a screen reader reads where it is).
        await page.waitForSelector('dl.stats');
        await page.waitForFunction(() => document.activeElement?.tagName === 'H1', null, { timeout: 5000 });
        await page.goBack();
        await page.waitForFunction((j) => document.querySelector('main h1')?.textContent === `Feature ${j}`, feature.index);
      }
      // Navigating in place aborts the page's requests still in flight (router.js's
      // AbortController): Chromium reports those as ERR_ABORTED, by design, not as errors.
      assertClean(page, [/^request failed: .* net::ERR_ABORTED$/]);
      await closePage(page);
    });

    test('Back from a feature returns the list to where it was scrolled', async (t) => {
      if (!hasIndex) return t.skip('saed has no index');
      const page = await newPage(vp);
      await page.goto(`${BASE}/`);
      await settled(page, 'table.features tbody tr');
      const rows = await page.$$('table.features tbody tr a[href^="/features/"]');
      if (rows.length < 30) return t.skip(`only ${rows.length} rows: the list does not scroll`);
      const link = rows[rows.length - 5];
      await link.scrollIntoViewIfNeeded();
      const y = await page.evaluate(() => window.scrollY);
      assert.ok(y > 200, `the list scrolled (${y} px)`);
      const href = await link.getAttribute('href');
      await link.click();
      await page.waitForURL(`${BASE}${href}`);
      await page.waitForSelector('dl.stats');
      await page.goBack();
      await settled(page, 'table.features tbody tr');
      await page.waitForFunction((want) => Math.abs(window.scrollY - want) <= 2, y, { timeout: 5000 })
        .catch(() => {});
      assert.ok(Math.abs(await page.evaluate(() => window.scrollY) - y) <= 2,
        `Back restores the scroll position (${y} px)`);
      // Between two pages of the list (the same view, updated in place) too.
      if (await page.$('button[data-pager="next"]')) {
        await page.click('button[data-pager="next"]');
        await page.waitForURL(/[?&]offset=50/);
        await settled(page, 'table.features tbody tr');
        await page.goBack();
        await page.waitForURL((u) => !/offset=/.test(u.search));
        await page.waitForFunction((want) => Math.abs(window.scrollY - want) <= 2, y, { timeout: 5000 })
          .catch(() => {});
        assert.ok(Math.abs(await page.evaluate(() => window.scrollY) - y) <= 2,
          `Back from the next page restores the scroll position (${y} px)`);
      }
      assertClean(page, [/^request failed: .* net::ERR_ABORTED$/]);
      await closePage(page);
    });

    test('"Show more top examples" appends the next page of GET /v1/features/{i}/examples?kind=top', async (t) => {
      if (!hasIndex) return t.skip('saed has no index');
      const i = feature.index;
      const shown = feature.top_examples.length;
      const next = await apiGet(`/v1/features/${i}/examples?kind=top&limit=20&offset=${shown}`);
      const page = await newPage(vp);
      await page.goto(`${BASE}/features/${i}`);
      await settled(page, 'li.example');
      await page.click('button.more');
      await page.waitForFunction((n) => document.querySelectorAll('li.example[data-kind="top"]').length === n ||
        !document.querySelector('button.more'), shown + next.examples.length);
      const docs = await page.$$eval('li.example[data-kind="top"] code.doc', (cs) => cs.map((c) => c.textContent));
      assert.deepEqual(docs.slice(shown), next.examples.map((e) => String(e.document)), 'appended examples');
      const toks = await page.$$eval('li.example[data-kind="top"]', (lis) => lis.map((li) => [...li.querySelectorAll('.tok')].map((s) => s.textContent)));
      next.examples.forEach((e, k) => assert.deepEqual(toks[shown + k], e.tokens.map(displayToken), `tokens of appended example ${k}`));
      if (shown + next.examples.length >= next.total) assert.equal(await page.$('button.more'), null, 'the button goes once all are shown');
      else assert.match(await page.innerText('.more-row'), new RegExp(`Showing ${shown + next.examples.length} of ${fmtInt(next.total)}`));
      assertClean(page);
      await closePage(page);
    });

    test('an unknown feature and a bad vector get designed error states', async () => {
      const page = await newPage(vp);
      const outside = model.d_sae + 5;
      const res = await page.goto(`${BASE}/features/${outside}`);
      if (!/^text\/html/.test(res.headers()['content-type'] || '')) {
        // saed may refuse the page path itself for an index out of range; the
        // browser must still handle one reached from inside the app.
        assert.equal(res.status(), 404, `GET /features/${outside}`);
        await page.goto(`${BASE}/`);
        await page.waitForSelector('main h1');
        await page.evaluate((n) => {
          history.pushState(null, '', `/features/${n}`);
          dispatchEvent(new PopStateEvent('popstate'));
        }, outside);
      }
      await page.waitForSelector('.state-empty');
      assert.match(await page.innerText('main'), hasIndex ? /No such feature/ : /No feature index is loaded/);
      assertClean(page, [/HTTP 404 .*\/v1\/features/, new RegExp(`HTTP 404 .*/features/${outside}$`)]);

      await page.goto(`${BASE}/encode`);
      await settled(page, '#encode-input');
      await page.fill('#encode-input', '[1, 2');
      await page.click('form.encode-form button[type="submit"]');
      await page.waitForSelector('#encode-input-error:not([hidden])');
      assert.match(await page.innerText('#encode-input-error'), /Not a JSON array nor a list of numbers/);
      await page.fill('#encode-input', '[[1, 2], [3, 4]]');
      await page.click('form.encode-form button[type="submit"]');
      await page.waitForFunction(() => /rows/.test(document.querySelector('#encode-input-error').textContent));
      assert.match(await page.innerText('#encode-input-error'), /This is 2 rows; the page encodes one/);
      await page.fill('#encode-input', '[1, 2, 3]');
      await page.click('form.encode-form button[type="submit"]');
      await page.waitForFunction(() => /expects/.test(document.querySelector('#encode-input-error').textContent));
      assert.match(await page.innerText('#encode-input-error'), new RegExp(`expects ${fmtInt(model.d_in)} numbers`));
      assert.equal(await page.getAttribute('#encode-input', 'aria-invalid'), 'true');

      // numpy's printing ("[0.1 0.2 ...]", spaces) is read too; a bad input
      // afterwards clears the result it would otherwise seem to have.
      const row = Array.from({ length: model.d_in }, (_, j) => ((j % 7) - 3) / 4);
      await page.fill('#encode-input', `[${row.join('  ')}]`);
      await page.click('form.encode-form button[type="submit"]');
      await page.waitForSelector('.encode-result dl.metrics');
      assert.equal(await page.isHidden('#encode-input-error'), true, 'a numpy-printed row is taken');
      await page.fill('#encode-topk', '0');
      await page.click('form.encode-form button[type="submit"]');
      await page.waitForFunction(() => /Top k/.test(document.querySelector('#encode-input-error').textContent));
      assert.equal(await page.$('.encode-result dl.metrics'), null, 'no result left from the previous input');
      await closePage(page);
    });

    test('/encode?feature=i loads the decoder direction and encodes it', async (t) => {
      const i = hasIndex ? feature.index : 0;
      const v = await tryVector(i);
      if (!v) return t.skip(`GET /v1/features/${i}/vector does not answer here`);
      const page = await newPage(vp);
      await page.goto(`${BASE}/encode?feature=${i}`);
      await settled(page, '.encode-result dl.metrics');
      const shown = JSON.parse(await page.inputValue('#encode-input'));
      assert.deepEqual(shown, v, 'the textarea holds the decoder direction');
      const { r, allow } = await encodeLikeThePage(v);
      const idx = await page.$$eval('li.bar-row', (lis) => lis.map((li) => Number(li.dataset.index)));
      assert.deepEqual(idx, r.indices.slice(0, BARS_SHOWN));
      await page.waitForLoadState('networkidle');

      // A bar's feature, then Back: the page is as it was left, input and result.
      if (hasIndex && idx.length) {
        await page.click('li.bar-row a');
        // The feature's statistics, not the encode page's metrics (also a dl.stats).
        await page.waitForURL(/\/features\/\d+$/);
        await page.waitForSelector('dl.stats:not(.metrics)');
        await page.goBack();
        await settled(page, '.encode-result dl.metrics');
        assert.deepEqual(JSON.parse(await page.inputValue('#encode-input')), v, 'Back keeps the input');
        assert.deepEqual(await page.$$eval('li.bar-row', (lis) => lis.map((li) => Number(li.dataset.index))), idx,
          'Back shows the same result');
      }
      assertClean(page, [...allow, /^request failed: .* net::ERR_ABORTED$/]);
      await closePage(page);
    });
  });

  if (SHOTS) {
    test('dark colour scheme screenshot of a feature', async (t) => {
      if (!hasIndex) return t.skip('saed has no index');
      const vp = VIEWPORTS[0];
      const page = await newPage(vp, { colorScheme: 'dark' });
      await page.goto(`${BASE}/features/${feature.index}`);
      await settled(page, 'dl.stats');
      await page.waitForSelector('.quantiles details.qbin, .quantiles .state-empty');
      await page.waitForLoadState('networkidle');
      await shoot(page, 'feature-dark', vp);
      assertClean(page);
      await closePage(page);
    });
  }
});

