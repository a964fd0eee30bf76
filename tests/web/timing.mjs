// First-render times of the feature list and a feature page, in headless
// Chromium, at localhost and with 40 ms of added round-trip time (Chromium's
// network emulation, CDP Network.emulateNetworkConditions: every request that
// reaches the network waits 40 ms; one served from the HTTP cache does not),
// on a cold cache (a fresh browser context per load) and a warm one (the
// same context, loaded once untimed before).
//
// usage: SAED_BASE=URL [RTTS=0,40] node timing.mjs [FEATURE] [RUNS]
// (RTTS: the round-trip times to add, ms, comma-separated)
//
// Prints, per page, round-trip time and cache, the median ms from navigation
// start to the first rows of the list / the first bar of the feature's
// histogram (recorded in the page by a MutationObserver, so no polling delay
// is counted), the median ms at which the page's data (its first
// /v1/features request, from Resource Timing) was asked for, the page's
// requests that reached saed (all, and API ones) and the transferred bytes.
// For docs/WEB.md ("Loading").
import { chromium } from 'playwright-core';

const BASE = process.env.SAED_BASE;
if (!BASE) throw new Error('set SAED_BASE to the base URL of a running saed');
const feature = process.argv[2] || '46';
const runs = Number(process.argv[3] || 7);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium', args: ['--no-sandbox', '--disable-gpu'],
});
const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];

// Records in window.__firstRender the performance.now() at which `sel` first matches.
function watch(sel) {
  const seen = () => {
    if (window.__firstRender === undefined && document.querySelector(sel)) window.__firstRender = performance.now();
  };
  new MutationObserver(seen).observe(document, { childList: true, subtree: true });
}

// One timed load of `path` in context `ctx` at `rtt` ms: first render (ms),
// when the data was asked for (ms), requests that reached the server, API
// requests among them, bytes received.
async function load(ctx, path, sel, rtt) {
  const page = await ctx.newPage();
  await page.addInitScript(watch, sel);
  const cdp = await ctx.newCDPSession(page);
  await cdp.send('Network.enable');
  await cdp.send('Network.setCacheDisabled', { cacheDisabled: false });
  if (rtt) {
    await cdp.send('Network.emulateNetworkConditions', {
      offline: false, latency: rtt, downloadThroughput: -1, uploadThroughput: -1,
    });
  }
  let net = 0, api = 0, bytes = 0;
  const fromCache = new Set();
  cdp.on('Network.requestServedFromCache', (e) => fromCache.add(e.requestId));
  cdp.on('Network.loadingFinished', (e) => { bytes += e.encodedDataLength; });
  cdp.on('Network.responseReceived', (e) => {
    if (fromCache.has(e.requestId) || e.response.fromDiskCache || e.response.fromPrefetchCache) return;
    net++;
    if (new URL(e.response.url).pathname.startsWith('/v1/')) api++;
  });
  await page.goto(BASE + path, { waitUntil: 'commit' });
  await page.waitForFunction(() => window.__firstRender !== undefined);
  const t = await page.evaluate(() => window.__firstRender);
  await page.waitForLoadState('networkidle');
  const asked = await page.evaluate(() => Math.min(...performance.getEntriesByType('resource')
    .filter((e) => new URL(e.name).pathname.startsWith('/v1/features')).map((e) => e.startTime)));
  await page.close();
  return { t, asked, net, api, bytes };
}

console.log('page\tRTT\tcache\tfirst render (median ms)\tdata asked at (median ms)\trequests to saed (API)\tKB received');
for (const rtt of (process.env.RTTS || '0,40').split(',').map(Number)) {
  for (const [name, path, sel] of [['list', '/', 'table.features tbody tr'],
    ['feature', `/features/${feature}`, 'svg.histogram rect.bar']]) {
    for (const cache of ['cold', 'warm']) {
      const out = [];
      let ctx = cache === 'warm' ? await browser.newContext() : null;
      if (ctx) await load(ctx, path, sel, rtt); // fills the cache
      for (let k = 0; k < runs; k++) {
        if (cache === 'cold') ctx = await browser.newContext();
        out.push(await load(ctx, path, sel, rtt));
        if (cache === 'cold') await ctx.close();
      }
      if (cache === 'warm') await ctx.close();
      const last = out[out.length - 1];
      const ms = (key) => median(out.map((o) => o[key])).toFixed(0);
      console.log(`${name}\t${rtt} ms\t${cache}\t${ms('t')}\t${ms('asked')}\t${last.net} (${last.api})\t${(last.bytes / 1024).toFixed(1)}`);
    }
  }
}
await browser.close();
