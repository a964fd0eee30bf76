// First-render times of the feature list and a feature page, in headless
// Chromium, at localhost and with 40 ms of added round-trip time (Chromium's
// network emulation). usage: SAED_BASE=URL node timing.mjs [FEATURE] [RUNS]
// Prints median ms from navigation start to the first rows / the histogram,
// and the page's API request count. For docs/WEB.md ("Loading").
import { chromium } from 'playwright-core';

const BASE = process.env.SAED_BASE;
const feature = process.argv[2] || '46';
const runs = Number(process.argv[3] || 7);
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium', args: ['--no-sandbox'] });
const median = (xs) => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const rtt of [0, 40]) {
  for (const [name, path, sel] of [['list', '/', 'table.features tbody tr'], ['feature', `/features/${feature}`, 'svg.histogram rect.bar']]) {
    const times = [];
    let api = 0;
    for (let k = 0; k < runs; k++) {
      const ctx = await browser.newContext();
      const page = await ctx.newPage();
      const cdp = await ctx.newCDPSession(page);
      await cdp.send('Network.enable');
      if (rtt) await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: rtt, downloadThroughput: -1, uploadThroughput: -1 });
      let n = 0;
      page.on('request', (r) => { if (new URL(r.url()).pathname.startsWith('/v1/')) n++; });
      await page.goto(BASE + path, { waitUntil: 'commit' });
      await page.waitForSelector(sel);
      times.push(await page.evaluate(() => performance.now()));
      await page.waitForLoadState('networkidle');
      api = n;
      await ctx.close();
    }
    console.log(`${name}\trtt ${rtt} ms\tfirst render ${median(times).toFixed(0)} ms\tAPI requests ${api}`);
  }
}
await browser.close();
