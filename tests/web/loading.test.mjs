// How the browser loads (issue 20, docs/WEB.md "Loading"): saed sends the page
// with every asset address under /assets/v-VERSION/, where files are cached
// for a year as immutable and come gzip-compressed when accepted; the old
// /assets/NAME keeps working and is revalidated; the page carries preloads
// of its first API requests, which the scripts then use instead of asking
// again; a second visit fetches no asset at all.
//
// Environment: as harness.mjs says.

import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { after, before, describe, test } from 'node:test';
import {
  BASE, KEY, VIEWPORTS, apiGet, assertClean, closePage, launchBrowser, openPage, rawGet as get, settled,
} from './harness.mjs';
import { WEB_ASSETS } from './load-module.mjs';

const IMMUTABLE = 'public, max-age=31536000, immutable';

// The decoded body of a reply.
const bodyOf = (r) => (r.headers['content-encoding'] === 'gzip' ? gunzipSync(r.body) : r.body);

// The asset version a page is sent with, from its stylesheet's address.
async function versionOf(path = '/') {
  const html = bodyOf(await get(path)).toString();
  const m = /href="\/assets\/v-([0-9a-f]{16})\/style\.css"/.exec(html);
  assert.ok(m, `${path}: the stylesheet under /assets/v-VERSION/`);
  return m[1];
}

// The hrefs of a page's <link rel="preload" as="fetch">.
function preloadsOf(html) {
  return [...html.matchAll(/<link rel="preload" as="fetch" crossorigin href="([^"]+)">/g)].map((m) => m[1]);
}

let browser;
let saes;
before(async () => {
  browser = await launchBrowser();
  saes = (await apiGet('/v1/saes')).saes;
});
after(async () => { await browser?.close(); });

describe('static files', () => {
  test('the page names every asset under one version, and is itself revalidated', async () => {
    const r = await get('/features/3');
    assert.equal(r.status, 200);
    assert.equal(r.headers['cache-control'], 'no-cache');
    assert.match(r.headers['content-security-policy'] || '', /default-src 'self'/);
    const html = r.body.toString();
    const version = await versionOf();
    const source = readFileSync(new URL('../../web/index.html', import.meta.url), 'utf8');
    const written = source.match(/"\/assets\/[^"]+"/g);
    const sent = html.match(/"\/assets\/[^"]+"/g);
    assert.deepEqual(sent, written.map((a) => a.replace('"/assets/', `"/assets/v-${version}/`)), 'each address versioned');
    assert.ok(!/<script(?![^>]*\bsrc=)[^>]*>/.test(html), 'no inline script (the CSP forbids it)');
    // Revalidation by ETag.
    assert.ok(r.headers.etag && !r.headers.etag.startsWith('W/'));
    assert.equal((await get('/features/3', { 'If-None-Match': r.headers.etag })).status, 304);
    // Compressed when accepted.
    const z = await get('/features/3', { 'Accept-Encoding': 'gzip, deflate' });
    assert.equal(z.headers['content-encoding'], 'gzip');
    assert.ok(z.headers.vary?.includes('Accept-Encoding'));
    assert.equal(gunzipSync(z.body).toString(), html);
  });

  test('a versioned asset is immutable for a year, strong-tagged, gzipped when accepted', async () => {
    const version = await versionOf();
    const names = readdirSync(WEB_ASSETS).filter((n) => !n.startsWith('.'));
    for (const name of names) {
      const want = readFileSync(WEB_ASSETS + name);
      const path = `/assets/v-${version}/${name}`;
      const plain = await get(path);
      assert.equal(plain.status, 200, path);
      assert.equal(plain.headers['cache-control'], IMMUTABLE, `${path}: Cache-Control`);
      assert.ok(plain.body.equals(want), `${path}: the file as it is`);
      assert.ok(/^"[0-9a-f]{16}"$/.test(plain.headers.etag), `${path}: strong ETag ${plain.headers.etag}`);
      assert.equal(plain.headers['content-encoding'], undefined, `${path}: identity without Accept-Encoding`);
      const z = await get(path, { 'Accept-Encoding': 'gzip' });
      if (/\.(js|css|svg)$/.test(name) && want.length > 1024) {
        assert.equal(z.headers['content-encoding'], 'gzip', `${path}: gzip`);
        assert.ok(z.body.length < want.length, `${path}: smaller gzipped`);
        assert.ok(z.headers.vary?.includes('Accept-Encoding'), `${path}: Vary`);
        assert.notEqual(z.headers.etag, plain.headers.etag, `${path}: the gzip form has its own ETag`);
      }
      assert.ok(bodyOf(z).equals(want), `${path}: gzip decodes to the file`);
      assert.equal((await get(path, { 'If-None-Match': z.headers.etag, 'Accept-Encoding': 'gzip' })).status, 304,
        `${path}: revalidates`);
    }
  });

  test('an old or no version still serves the file, revalidated', async () => {
    const want = readFileSync(`${WEB_ASSETS}app.js`);
    for (const path of ['/assets/app.js', '/assets/v-0123456789abcdef/app.js', '/assets/v-old/app.js']) {
      const r = await get(path);
      assert.equal(r.status, 200, path);
      assert.equal(r.headers['cache-control'], 'no-cache', `${path}: Cache-Control`);
      assert.ok(r.body.equals(want), `${path}: body`);
    }
    for (const path of ['/assets/x-1/app.js', '/assets/v-1/../app.js', '/assets/v-1/%2e%2e/index.html',
      '/assets/v-1/.hidden', '/assets/v-1/', '/assets/v-1/a/app.js']) {
      assert.equal((await get(path)).status, 404, path);
    }
  });
});

// Opens `path` in a fresh context (or in `context`) and returns the page
// with the network requests that reached saed (CDP: cache hits left out), as
// paths. strip: the page arrives without its early fetches (as if saed sent
// none), to see what the scripts ask for themselves.
async function visit(path, { context = null, strip = false } = {}) {
  const page = context ? await context.newPage() : await openPage(browser, VIEWPORTS[0]);
  if (strip) {
    await page.route(BASE + path, async (route) => {
      const r = await route.fetch();
      const body = (await r.text()).replace(/<link rel="preload" as="fetch"[^>]*>\n/g, '');
      await route.fulfill({ response: r, body });
    });
  }
  const cdp = await page.context().newCDPSession(page);
  await cdp.send('Network.enable');
  const net = [];
  const cached = new Set();
  cdp.on('Network.requestServedFromCache', (e) => cached.add(e.requestId));
  cdp.on('Network.responseReceived', (e) => {
    if (cached.has(e.requestId) || e.response.fromDiskCache) return;
    const u = new URL(e.response.url);
    net.push(u.pathname + u.search);
  });
  return { page, net, go: () => page.goto(BASE + path) };
}

describe('requests', () => {
  const pages = () => {
    const out = [['list', '/', 'table.features tbody tr'], ['feature', '/features/3', 'dl.stats']];
    const other = saes.find((s) => !s.default && s.has_index !== false);
    if (other) {
      out.push(['list of another SAE', `/saes/${other.id}`, 'table.features tbody tr']);
      out.push(['feature of another SAE', `/saes/${other.id}/features/3`, 'dl.stats']);
    }
    return out;
  };

  test('each API request is made once: the early fetches are used, not repeated', async (t) => {
    const model = await apiGet('/v1/model');
    if (model.index === null || model.index === undefined) return t.skip('no index');
    for (const [name, path, sel] of pages()) {
      const html = bodyOf(await get(path)).toString();
      const preloads = preloadsOf(html);
      if (KEY) {
        assert.deepEqual(preloads, [], `${name}: no early fetch when an API key is needed`);
      } else {
        assert.ok(preloads.length >= 2, `${name}: early fetches ${preloads}`);
        assert.ok(preloads.includes('/v1/saes'), `${name}: the SAE list is fetched early`);
      }
      const { page, net, go } = await visit(path);
      await go();
      await settled(page, sel);
      const api = net.filter((p) => p.startsWith('/v1/'));
      const twice = api.filter((p, k) => api.indexOf(p) !== k);
      assert.deepEqual(twice, [], `${name}: API requests made twice: ${api.join(' ')}`);
      for (const p of preloads) assert.ok(api.includes(p), `${name}: the early fetch of ${p} was made`);
      // What the scripts ask for on their own: the same requests, so every
      // early fetch was one of them and was used rather than repeated.
      const own = await visit(path, { strip: true });
      await own.go();
      await settled(own.page, sel);
      const ownApi = own.net.filter((p) => p.startsWith('/v1/'));
      assert.deepEqual(api.slice().sort(), ownApi.slice().sort(), `${name}: the same API requests as without early fetches`);
      await closePage(own.page);
      const assets = net.filter((p) => p.startsWith('/assets/'));
      assert.ok(assets.length > 0 && assets.every((p) => /^\/assets\/v-[0-9a-f]{16}\//.test(p)),
        `${name}: every asset from the versioned prefix: ${assets.join(' ')}`);
      assert.ok(api.length <= 4, `${name}: at most 4 API requests, made ${api.length}: ${api.join(' ')}`);
      assertClean(page);
      await closePage(page);
    }
  });

  test('a page that does not preload (a query in the address) asks as before', async (t) => {
    const model = await apiGet('/v1/model');
    if (model.index === null || model.index === undefined) return t.skip('no index');
    const html = bodyOf(await get('/?sort=density&order=desc')).toString();
    assert.deepEqual(preloadsOf(html), [], 'no early fetch for a list with a query');
    assert.deepEqual(preloadsOf(bodyOf(await get('/features/03')).toString()).filter((p) => p.includes('/features/')), [],
      'none for an index not written as the page requests it');
    assert.deepEqual(preloadsOf(bodyOf(await get('/saes/no-such-sae/features/3')).toString()), [],
      'none for an SAE that is not served');
  });

  test('a second visit fetches no asset: the versioned files come from the cache', async (t) => {
    const model = await apiGet('/v1/model');
    if (model.index === null || model.index === undefined) return t.skip('no index');
    const first = await visit('/');
    await first.go();
    await settled(first.page, 'table.features tbody tr');
    const context = first.page.context();
    await first.page.close();
    const second = await visit('/features/3', { context });
    await second.go();
    await settled(second.page, 'dl.stats');
    const assets = second.net.filter((p) => p.startsWith('/assets/'));
    // The feature page's modules were modulepreloaded by the list.
    assert.deepEqual(assets, [], `assets fetched again: ${assets.join(' ')}`);
    const html = second.net.filter((p) => !p.startsWith('/assets/') && !p.startsWith('/v1/'));
    assert.deepEqual(html, ['/features/3'], 'only the page itself and its API requests reached saed');
    await context.close();
  });
});
