// Context (issue 20, point 3): examples show ±8 tokens with an Expand button
// up to the window the index stored (sae index --context); each example links
// to a page of it in its document (the feature's stored windows there,
// merged by position); positions are document positions; statistics say
// "n of N tokens"; nothing is said only in a hover title. Every expectation
// is computed from the public API fetched here.

import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BASE, VIEWPORTS, apiGet, apiRequests, assertClean, closePage, launchBrowser, noSideways, openPage, settled, shoot } from './harness.mjs';
import { loadWebModule } from './load-module.mjs';

const { displayToken, fmtInt, fmtNum } = await loadWebModule('format.js');

const SHOWN = 8; // tokens either side of the marked one before Expand (web/assets/tokens.js)

let browser;
let model; // GET /v1/model
let feature; // a feature of the default SAE with top and quantile examples
let wide; // { page, api, context }: an indexed SAE whose windows are wider than ±SHOWN, or null

before(async () => {
  browser = await launchBrowser();
  model = await apiGet('/v1/model');
  if (!model.index) return;
  const { features } = await apiGet('/v1/features?sort=max_activation&order=desc&limit=20');
  for (const f of features) {
    const g = await apiGet(`/v1/features/${f.index}`);
    if (g.n_top_examples > 1 && g.n_quantile_examples > 0) { feature = g; break; }
  }
  const { saes } = await apiGet('/v1/saes');
  wide = null;
  for (const s of saes.filter((x) => x.has_index)) {
    const m = await apiGet(`/v1/saes/${s.id}/model`);
    if (m.index?.build?.context > SHOWN) {
      wide = { page: s.default ? '' : `/saes/${s.id}`, api: `/v1/saes/${s.id}`, context: m.index.build.context };
      break;
    }
  }
});
after(async () => { await browser?.close(); });

const vp = VIEWPORTS[0];

// The token texts, values and marks of a token line.
function readLine(el) {
  return el.$$eval('.tok', (ts) => ts.map((t) => ({
    text: t.textContent, value: Number(t.dataset.value), pos: Number(t.dataset.pos),
    mark: t.classList.contains('mark') && !t.classList.contains('other'), other: t.classList.contains('other'),
  })));
}

describe('statistics and captions', () => {
  test('density says n of N tokens, and every hover title is also visible text', async (t) => {
    if (!feature) return t.skip('no index, or no feature with examples');
    assert.equal(feature.n_tokens, model.index.n_tokens, 'the feature reply carries the index\'s token count');
    const page = await openPage(browser, vp);
    await page.goto(`${BASE}/features/${feature.index}`);
    await settled(page, 'li.example');
    assert.equal(await page.innerText('[data-stat-note="density"]'),
      `${fmtInt(feature.n_active)} of ${fmtInt(model.index.n_tokens)} tokens`);
    for (const k of ['max_activation', 'mean_activation', 'decoder_norm']) {
      assert.ok((await page.innerText(`[data-stat-note="${k}"]`)).length > 0, `${k} has a visible note`);
    }
    // No meaning only in a title attribute: each one's text is on the page.
    const hidden = await page.$$eval('main [title]', (els) => {
      const text = document.querySelector('main').innerText.toLowerCase();
      return els.map((e) => e.getAttribute('title')).filter((x) => !text.includes(x.toLowerCase()));
    });
    assert.deepEqual(hidden, [], 'titles whose text is not also visible');
    // The histogram's bars (hover titles in the SVG) are all in the table.
    const bars = await page.$$eval('svg.histogram rect.bar', (rs) => rs.length);
    const rows = await page.$$eval('details.bins-table table.bins tbody tr', (rs) => rs.length);
    assert.ok(rows >= bars && bars > 0, `the bins table has a row per bar (${rows} rows, ${bars} bars)`);
    if (feature.logits) {
      const lrows = await page.$$eval('.logit-figure table.bins tbody tr', (rs) => rs.length);
      assert.equal(lrows, feature.logits.histogram.bar_heights.length, 'a row per logit bar');
      const ids = await page.$$eval('table.logits.pos .tok-id', (xs) => xs.map((x) => x.textContent.trim()));
      assert.deepEqual(ids, feature.logits.pos.map((r) => `id ${r.id}`), 'token ids are visible');
    }
    assertClean(page);
    await closePage(page);
  });

  test('a dead feature says so in words and shows 0 of N tokens', async (t) => {
    if (!model.index) return t.skip('no index');
    const { features } = await apiGet('/v1/features?sort=density&order=asc&limit=1');
    if (!features.length || features[0].n_active !== 0) return t.skip('no dead feature');
    const page = await openPage(browser, vp);
    await page.goto(`${BASE}/features/${features[0].index}`);
    await settled(page, '.feature-label-line');
    assert.match(await page.innerText('.feature-label-line'), /never active on the indexed corpus/);
    assert.equal(await page.innerText('[data-stat-note="density"]'), `0 of ${fmtInt(model.index.n_tokens)} tokens`);
    assertClean(page);
    await closePage(page);
  });
});

describe('examples in context', () => {
  test('positions are document positions, and each example links to its page', async (t) => {
    if (!feature) return t.skip('no index, or no feature with examples');
    const i = feature.index;
    const page = await openPage(browser, vp);
    await page.goto(`${BASE}/features/${i}`);
    await settled(page, 'details.qbin li.example');
    const top = feature.top_examples;
    const shown = await page.$$eval('li.example[data-kind="top"]', (lis) => lis.map((li) => ({
      meta: li.querySelector('.example-meta').textContent, rank: Number(li.dataset.rank),
      href: li.querySelector('a.in-document')?.getAttribute('href'),
    })));
    assert.equal(shown.length, top.length);
    shown.forEach((s, k) => {
      const e = top[k];
      assert.equal(s.rank, k);
      assert.ok(s.meta.includes(`max ${fmtNum(e.max_value)} at document token ${fmtInt(e.token_offset + e.max_token_index)}`),
        `top example ${k} gives its max at a document position: ${s.meta}`);
      assert.doesNotMatch(s.meta, /\bat token\b/, 'no unlabelled position');
      assert.equal(s.href, `/features/${i}/examples/top/${k}`);
    });
    // Quantile examples keep their API rank, whatever bin they are grouped in.
    const quant = (await apiGet(`/v1/features/${i}/examples?kind=quantile&limit=500`)).examples;
    const qs = await page.$$eval('li.example[data-kind="quantile"]', (lis) => lis.map((li) => ({
      rank: Number(li.dataset.rank), doc: li.querySelector('code.doc').textContent, meta: li.querySelector('.example-meta').textContent,
      href: li.querySelector('a.in-document').getAttribute('href'),
    })));
    assert.equal(qs.length, quant.length);
    for (const q of qs) {
      const e = quant[q.rank];
      assert.equal(q.doc, e.document, `quantile example ${q.rank}: its document`);
      assert.equal(q.href, `/features/${i}/examples/quantile/${q.rank}`);
      const at = fmtInt(e.token_offset + e.focus_index);
      assert.ok(q.meta.includes(`at document token ${at}`), `quantile example ${q.rank} at document token ${at}: ${q.meta}`);
    }

    // The link opens the example in its document, without a reload.
    await page.evaluate(() => { window.__kept = true; });
    apiRequests(page, { clear: true });
    await page.click('li.example[data-kind="top"][data-rank="0"] a.in-document');
    await settled(page, 'section.span');
    assert.equal(new URL(page.url()).pathname, `/features/${i}/examples/top/0`);
    assert.ok(await page.evaluate(() => window.__kept), 'client-side navigation');
    const d = await apiGet(`/v1/features/${i}/examples/top/0`);
    assert.ok(apiRequests(page).includes(`/v1/features/${i}/examples/top/0`));
    assert.ok(apiRequests(page).length <= 4, `at most 4 API requests: ${apiRequests(page).join(', ')}`);
    await checkExamplePage(page, d, '');
    // Next goes to rank 1.
    await page.click('a[data-nav-rel="next"]');
    await page.waitForURL(`${BASE}/features/${i}/examples/top/1`);
    await settled(page, 'section.span');
    await checkExamplePage(page, await apiGet(`/v1/features/${i}/examples/top/1`), '');
    assertClean(page);
    await closePage(page);
  });

  test('a quantile example\'s page, opened directly, at both widths', async (t) => {
    if (!feature) return t.skip('no index, or no feature with examples');
    const i = feature.index;
    const rank = feature.n_quantile_examples - 1;
    const d = await apiGet(`/v1/features/${i}/examples/quantile/${rank}`);
    for (const v of VIEWPORTS) {
      const page = await openPage(browser, v);
      await page.goto(`${BASE}/features/${i}/examples/quantile/${rank}`);
      await settled(page, 'section.span');
      await checkExamplePage(page, d, '');
      assert.match(await page.innerText('[data-fact="bin"]'), new RegExp(`${fmtNum(d.example.bin_min, 3)} – ${fmtNum(d.example.bin_max, 3)}`));
      await noSideways(page, v);
      assertClean(page);
      await closePage(page);
    }
  });

  test('an example past the last says there is no such example', async (t) => {
    if (!feature) return t.skip('no index, or no feature with examples');
    const page = await openPage(browser, vp);
    await page.goto(`${BASE}/features/${feature.index}/examples/top/${feature.n_top_examples}`);
    await page.waitForSelector('.state-empty');
    assert.match(await page.innerText('main'), /No such example/);
    assert.match(await page.innerText('main'), new RegExp(`has ${feature.n_top_examples} top examples`));
    assertClean(page, [/HTTP 404 .*\/examples\/top\//]);
    await closePage(page);
  });

  test('examples show ±8 tokens and Expand shows the whole stored window', async (t) => {
    if (!feature) return t.skip('no index, or no feature with examples');
    // Windows of at most 2·8+1 tokens are shown whole, without a button.
    const page = await openPage(browser, vp);
    await page.goto(`${BASE}/features/${feature.index}`);
    await settled(page, 'li.example');
    const plain = await page.$$eval('li.example[data-kind="top"]', (lis) => lis.map((li) => ({
      n: li.querySelectorAll('.tok').length, button: !!li.querySelector('button.expand'),
    })));
    plain.forEach((p, k) => {
      const n = feature.top_examples[k].tokens.length;
      assert.equal(p.button, n > 2 * SHOWN + 1, `top example ${k}: a button iff the window is wider than ±${SHOWN}`);
      if (n <= 2 * SHOWN + 1) assert.equal(p.n, n, `top example ${k} shown whole`);
    });
    await closePage(page);

    if (!wide) return t.skip(`no SAE here has an index built with --context over ${SHOWN} (the web stage's second run has one)`);
    const { features } = await apiGet(`${wide.api}/features?sort=max_activation&order=desc&limit=1`);
    const f = await apiGet(`${wide.api}/features/${features[0].index}`);
    const k = f.top_examples.findIndex((e) => e.tokens.length > 2 * SHOWN + 1);
    assert.ok(k >= 0, `a window wider than ±${SHOWN} in an index built with --context ${wide.context}`);
    const e = f.top_examples[k];
    const p2 = await openPage(browser, vp);
    await p2.goto(`${BASE}${wide.page}/features/${f.index}`);
    await settled(p2, 'li.example');
    assert.match(await p2.innerText('section.top .hint'), new RegExp(`all the index stored \\(${wide.context} either side\\)`));
    const li = await p2.$(`li.example[data-kind="top"][data-rank="${k}"]`);
    const from = Math.max(0, e.focus_index - SHOWN);
    const to = Math.min(e.tokens.length, e.focus_index + SHOWN + 1);
    let toks = await readLine(li);
    assert.deepEqual(toks.map((x) => x.text), e.tokens.slice(from, to).map(displayToken), 'collapsed: ±8 around the marked token');
    assert.deepEqual(toks.map((x) => x.pos), e.tokens.slice(from, to).map((_, j) => e.token_offset + from + j), 'document positions');
    assert.equal(toks.findIndex((x) => x.mark), e.focus_index - from, 'the marked token is the focus');
    assert.equal(await li.$$eval('.elided', (xs) => xs.length), (from > 0) + (to < e.tokens.length), '… where tokens are left out');
    const button = await li.$('button.expand');
    assert.equal(await button.getAttribute('aria-expanded'), 'false');
    assert.match(await button.innerText(), new RegExp(`all ${e.tokens.length} stored tokens`));
    await button.click();
    assert.equal(await button.getAttribute('aria-expanded'), 'true');
    toks = await readLine(li);
    assert.deepEqual(toks.map((x) => x.text), e.tokens.map(displayToken), 'expanded: the whole stored window');
    assert.deepEqual(toks.map((x) => x.value), e.values);
    assert.equal(await li.$$eval('.elided', (xs) => xs.length), 0);
    assert.ok(await button.evaluate((b) => b === document.activeElement), 'focus stays on the button');
    await button.click();
    assert.equal((await readLine(li)).length, to - from, 'collapses again');
    assertClean(p2);
    await closePage(p2);
    // The example in its document, wide windows merged (docs/screenshots: example-*.png).
    const d = await apiGet(`${wide.api}/features/${f.index}/examples/top/${k}`);
    for (const v of VIEWPORTS) {
      const p3 = await openPage(browser, v);
      await p3.goto(`${BASE}${wide.page}/features/${f.index}/examples/top/${k}`);
      await settled(p3, 'section.span');
      await checkExamplePage(p3, d, wide.page);
      await noSideways(p3, v);
      await shoot(p3, 'example', v);
      assertClean(p3);
      await closePage(p3);
    }
  });
});

// Checks an example page against its API reply d: the facts, the stored
// window, and each merged span of the document with its marks, gaps and links.
async function checkExamplePage(page, d, prefix) {
  const ex = d.example;
  assert.match(await page.innerText('[data-fact="document"]'), new RegExp(`^${d.document.name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} \\(document ${fmtInt(d.document.index)}`));
  const n = ex.tokens.length;
  assert.equal(await page.innerText('[data-fact="window"]'),
    `document tokens ${fmtInt(ex.token_offset)}–${fmtInt(ex.token_offset + n - 1)} · ${n} tokens (the index stores ${d.context} tokens either side of an example's token, fewer at a document's ends)`);
  assert.match(await page.innerText('[data-fact="focus"]'), new RegExp(`at document token ${fmtInt(ex.token_offset + ex.focus_index)}$`));
  const win = await readLine(await page.$('.example-window'));
  assert.deepEqual(win.map((x) => x.text), ex.tokens.map(displayToken), 'the whole stored window');
  const spans = await page.$$('section.span');
  assert.equal(spans.length, d.spans.length, 'a block per merged span');
  let end = 0;
  const gaps = await page.$$eval('p.gap[data-gap]', (ps) => ps.map((p) => Number(p.dataset.gap)));
  const want = [];
  for (let k = 0; k < spans.length; k++) {
    const sp = d.spans[k];
    if (sp.token_offset > end) want.push(sp.token_offset - end);
    end = sp.token_offset + sp.tokens.length;
    const toks = await readLine(spans[k]);
    assert.deepEqual(toks.map((x) => x.text), sp.tokens.map(displayToken), `span ${k}: tokens`);
    assert.deepEqual(toks.map((x) => x.pos), sp.tokens.map((_, j) => sp.token_offset + j), `span ${k}: document positions`);
    const mine = sp.examples.find((e) => e.kind === d.kind && e.rank === d.rank);
    assert.deepEqual(toks.flatMap((x, j) => (x.mark ? [sp.token_offset + j] : [])), mine ? [mine.position] : [],
      `span ${k}: this example's token marked`);
    const others = [...new Set(sp.examples.filter((e) => e !== mine && e.position !== mine?.position).map((e) => e.position))].sort((a, b) => a - b);
    assert.deepEqual(toks.flatMap((x, j) => (x.other ? [sp.token_offset + j] : [])), others, `span ${k}: other examples' tokens marked`);
    const links = await spans[k].$$eval('ul.span-examples a', (as) => as.map((a) => a.getAttribute('href')));
    assert.deepEqual(links, sp.examples.filter((e) => e !== mine).map((e) => `${prefix}/features/${d.feature}/examples/${e.kind}/${e.rank}`),
      `span ${k}: links to the other examples`);
  }
  assert.deepEqual(gaps, want, 'the gaps between spans, in tokens');
}
