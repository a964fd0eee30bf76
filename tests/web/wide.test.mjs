// The browser on a very wide SAE (issue 19 point 4): the feature list, its
// pages, sorts, live-only filter and search, the model page's density
// percentiles and a feature page's histogram, against a saed of its own over
// the 1,048,576-feature index bench/features_wide.sh builds. Each step is
// checked for what it draws (rows, the total, the order the API gives, the
// histogram's bars) and timed from the action to the drawn page; the times
// go to the test's log only (no timing is asserted: the machine is shared),
// with the longest main-thread task Chromium reported while they ran.
// Screenshots of the list and the feature page go to SAED_WIDE (and to
// SAED_SCREENSHOTS when set, as wide-features / wide-feature).
//
// Environment: as harness.mjs says, plus SAED_BIN (tests/web/run.sh --saed
// sets it) and SAED_WIDE, a folder holding model/ and index.db (the DIR of
// bench/features_wide.sh). Without both the file is skipped. SAED_WIDE_MIN
// (default 1048576) is the width the index must have: lower it to try the
// test on a narrower one.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import {
  KEY, VIEWPORTS, assertClean, closePage, launchBrowser, openPage, settled, shoot,
} from './harness.mjs';

const BIN = process.env.SAED_BIN || '';
const WIDE = process.env.SAED_WIDE || '';
const MIN = Number(process.env.SAED_WIDE_MIN || 1048576);
const vp = VIEWPORTS[0];
const times = [];

let browser, saed, base;

function freePort() {
  return new Promise((ok) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

// GET path from the wide saed as JSON, or throws.
async function wideApi(path) {
  const headers = { Accept: 'application/json' };
  if (KEY) headers.Authorization = `Bearer ${KEY}`;
  const res = await fetch(base + path, { headers });
  const out = await res.json();
  if (!res.ok) throw new Error(`${path}: ${res.status} ${JSON.stringify(out)}`);
  return out;
}

// Runs act, then settle (what the action draws); logs and keeps the
// milliseconds in between.
async function timed(page, what, act, settle) {
  const t0 = Date.now();
  await act();
  await settle();
  const ms = Date.now() - t0;
  times.push([what, ms]);
  console.log(`wide: ${what}: ${ms} ms`);
  return ms;
}

// The list's drawn rows, as feature indices (the # column).
const rowIndices = (page) => page.$$eval('table.features tbody tr td.idx',
  (tds) => tds.map((td) => Number(td.textContent.replace(/[^0-9]/g, ''))));

// Waits for the list's rows from a finished load (the page marks the
// results busy from the navigation until they are drawn).
async function listDrawn(page) {
  await page.waitForSelector('section.results[aria-busy="false"] table.features tbody tr');
}

describe('a 1,048,576-feature index in the browser', { skip: !(BIN && WIDE && existsSync(join(WIDE, 'index.db'))) && 'set SAED_WIDE (bench/features_wide.sh DIR) and SAED_BIN' }, () => {
  let d = 0;
  before(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    saed = spawn(BIN, ['--model', join(WIDE, 'model'), '--index', join(WIDE, 'index.db'),
      '--listen', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, SAED_API_KEY: KEY } });
    let log = '';
    saed.stderr.on('data', (b) => { log += b; });
    const t0 = Date.now();
    for (let i = 0; i < 1200; i++) {
      try {
        if ((await fetch(`${base}/v1/health`)).ok) break;
      } catch { /* not up yet */ }
      if (saed.exitCode !== null) throw new Error(`saed exited: ${log}`);
      await new Promise((ok) => setTimeout(ok, 100));
    }
    console.log(`wide: saed up in ${Date.now() - t0} ms`);
    d = (await wideApi('/v1/model')).d_sae;
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    saed?.kill();
    console.log(`wide: times (ms): ${JSON.stringify(Object.fromEntries(times))}`);
  });

  test('the list pages, sorts, hides the dead and searches at a million rows', async () => {
    assert.ok(d >= MIN, `the index is ${d} features wide, want ${MIN} or more`);
    const page = await openPage(browser, vp);
    // The page records its longest main-thread tasks from the start.
    await page.addInitScript(() => {
      window.__longest = 0;
      new PerformanceObserver((l) => {
        for (const e of l.getEntries()) window.__longest = Math.max(window.__longest, e.duration);
      }).observe({ type: 'longtask', buffered: true });
    });
    await timed(page, 'first page', () => page.goto(`${base}/`), () => listDrawn(page));
    assert.deepEqual(await rowIndices(page), [...Array(50).keys()], 'index order, first page');
    assert.match(await page.innerText('#results-count'), new RegExp(`${d.toLocaleString('en-US')} features`));

    // The last page, through the URL the pager writes.
    await timed(page, 'last page (offset d - 50)', () => page.goto(`${base}/?offset=${d - 50}`), () => listDrawn(page));
    assert.deepEqual(await rowIndices(page), Array.from({ length: 50 }, (_, k) => d - 50 + k), 'the last 50 features');
    // Next from the middle: one pager click.
    await page.goto(`${base}/?offset=${Math.floor(d / 2)}`);
    await listDrawn(page);
    await timed(page, 'Next from offset d/2', () => page.click('button[data-pager="next"]'),
      () => page.waitForFunction((o) => location.search.includes(`offset=${o}`), Math.floor(d / 2) + 50).then(() => listDrawn(page)));
    assert.equal((await rowIndices(page))[0], Math.floor(d / 2) + 50);

    // Every sort of the select, and the Score header, each the API's order.
    await page.goto(`${base}/`);
    await listDrawn(page);
    for (const key of ['score:desc', 'score:asc', 'density:desc', 'density:asc', 'max_activation:desc', 'max_activation:asc']) {
      const [sort, order] = key.split(':');
      await timed(page, `sort ${key}`, () => page.selectOption('#feature-sort', key),
        () => page.waitForFunction((s) => location.search.includes(`sort=${s}`), sort).then(() => listDrawn(page)));
      const want = (await wideApi(`/v1/features?sort=${sort}&order=${order}&limit=50`)).features.map((f) => f.index);
      assert.deepEqual(await rowIndices(page), want, `rows sorted ${key}`);
    }
    const want = (await wideApi('/v1/features?sort=score&order=desc&alive=1&limit=50'));
    await page.selectOption('#feature-sort', 'score:desc');
    await page.waitForFunction(() => location.search.includes('order=desc'));
    await listDrawn(page);
    await timed(page, 'hide dead (alive=1), by score', () => page.check('#hide-dead'), () => page.waitForFunction(() => location.search.includes('alive=1')).then(() => listDrawn(page)));
    assert.deepEqual(await rowIndices(page), want.features.map((f) => f.index), 'live features by score');
    assert.match(await page.innerText('#results-count'), new RegExp(want.total.toLocaleString('en-US')));

    // Search as the user types (the list follows 300 ms after the last key).
    await page.goto(`${base}/`);
    await listDrawn(page);
    await timed(page, 'search "zebra" typed (300 ms debounce included)', () => page.fill('#feature-search', 'zebra'),
      () => page.waitForFunction(() => location.search.includes('q=zebra')).then(() => listDrawn(page)));
    const hits = await wideApi('/v1/features?q=zebra&limit=50');
    assert.deepEqual(await rowIndices(page), hits.features.map((f) => f.index), 'the search results');
    await timed(page, 'search "cats" typed', () => page.fill('#feature-search', 'cats'),
      () => page.waitForFunction(() => location.search.includes('q=cats')).then(() => listDrawn(page)));
    assert.ok((await rowIndices(page)).length === 50, 'a common word fills a page');
    await page.goto(`${base}/?sort=score&order=desc`);
    await listDrawn(page);
    const longest = await page.evaluate(() => window.__longest);
    console.log(`wide: longest main-thread task on the list: ${longest ? `${Math.round(longest)} ms` : 'none over 50 ms'}`);
    await shoot(page, 'wide-features', vp);
    await page.screenshot({ path: join(WIDE, 'wide-features-1280.png') });
    assertClean(page);
    await closePage(page);
  });

  test('the model page and a feature page with its histogram', async () => {
    const page = await openPage(browser, vp);
    await timed(page, 'model page, dead count and density percentiles', () => page.goto(`${base}/model`),
      () => page.waitForFunction(() => /\d/.test(document.querySelector('[data-key="density_max"]')?.textContent || '')));
    const { total: alive } = await wideApi('/v1/features?alive=1&limit=1');
    assert.match(await page.innerText('dd[data-key="dead"]'), new RegExp(`^${(d - alive).toLocaleString('en-US')} of `));
    // A live feature from the middle of the live ones, by density.
    const f = (await wideApi(`/v1/features?alive=1&sort=density&order=desc&limit=1&offset=${Math.floor(alive / 2)}`)).features[0];
    assert.ok(f.n_active > 0, 'a live feature');
    await timed(page, `feature ${f.index} page with its histogram`, () => page.goto(`${base}/features/${f.index}`),
      () => settled(page, 'svg.histogram rect.bar'));
    const bars = await page.$$eval('svg.histogram rect.bar', (rs) => rs.length);
    assert.ok(bars > 0, 'the histogram has bars');
    await shoot(page, 'wide-feature', vp);
    await page.screenshot({ path: join(WIDE, 'wide-feature-1280.png'), fullPage: true });
    assertClean(page);
    await closePage(page);
  });
});
