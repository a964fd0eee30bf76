// How saed serves web/: the page paths (those of one SAE under /saes/{id}
// too, whatever the id) answer index.html (its asset addresses versioned,
// its early fetches added), every asset comes
// back byte for byte with its content type and an ETag that revalidates to
// 304, and no path climbs out of web/. Requests go raw (node:http), so paths
// with ".." reach saed as written. No API key is sent: the browser's static
// files stay open when one is configured (CONTRACT section 5).
//
// Environment: as harness.mjs says.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { test } from 'node:test';
import { rawGet as get } from './harness.mjs';
import { WEB_ASSETS } from './load-module.mjs';

const INDEX = readFileSync(new URL('../../web/index.html', import.meta.url));

// A page as web/index.html has it: saed versions its asset addresses and puts
// the early fetches at <!--saed:preload--> (loading.test.mjs checks both).
function asWritten(body) {
  return body.toString().replace(/"\/assets\/v-[0-9a-f]{16}\//g, '"/assets/')
    .replace(/<link rel="preload" as="fetch" crossorigin href="[^"]*">\n/g, '');
}

const TYPES = { js: /^(text|application)\/javascript\b/, css: /^text\/css\b/, svg: /^image\/svg\+xml\b/, html: /^text\/html\b/ };

test('the page paths all answer web/index.html as text/html', async () => {
  for (const path of ['/', '/features/0', '/features/12', '/encode', '/model', '/features/12/', '/encode/',
    '/model/', '/search', '/search/', '/saes/a.b', '/saes/a.b/', '/saes/a.b/features/12', '/saes/a.b/encode',
    '/saes/a.b/model/']) {
    const r = await get(path);
    assert.equal(r.status, 200, `${path}: status`);
    assert.match(r.headers['content-type'] || '', TYPES.html, `${path}: content type`);
    assert.equal(asWritten(r.body), INDEX.toString().replace('<!--saed:preload-->', ''), `${path}: the body is web/index.html`);
  }
  // Only the pages take a trailing slash; the API's paths are exact.
  for (const path of ['/v1/health/', '/features/12//', '/assets/app.js/', '/saes', '/saes/', '/saes/a/search',
    '/saes/a/b']) {
    assert.equal((await get(path)).status, 404, `${path}: status`);
  }
});

test('every file under web/assets is served as it is, typed, with a revalidating ETag', async () => {
  const names = readdirSync(WEB_ASSETS).filter((n) => !n.startsWith('.'));
  assert.ok(names.includes('app.js') && names.includes('style.css'));
  for (const name of names) {
    const path = `/assets/${name}`;
    const r = await get(path);
    assert.equal(r.status, 200, `${path}: status`);
    const ext = name.split('.').pop();
    if (TYPES[ext]) assert.match(r.headers['content-type'] || '', TYPES[ext], `${path}: content type`);
    assert.ok(r.body.equals(readFileSync(WEB_ASSETS + name)), `${path}: body`);
    const etag = r.headers.etag;
    assert.ok(etag, `${path}: ETag`);
    const again = await get(path, { 'If-None-Match': etag });
    assert.equal(again.status, 304, `${path}: If-None-Match answers 304`);
    assert.equal(again.body.length, 0, `${path}: a 304 has no body`);
  }
});

test('no path climbs out of web/', async () => {
  const outside = readFileSync(new URL('../../meson.build', import.meta.url));
  for (const path of ['/assets/../../meson.build', '/assets/%2e%2e/%2e%2e/meson.build', '/assets/..%2f..%2fmeson.build',
    '/../meson.build', '/assets/../index.html/../../meson.build', '/assets/%2e%2e%2f%2e%2e%2fmeson.build',
    '/assets/..\\..\\meson.build', '/assets/../../../../../../etc/passwd', '/assets/%00app.js', '/assets/']) {
    const r = await get(path);
    assert.ok(r.status >= 400 && r.status < 500, `${path}: a 4xx, not ${r.status}`);
    assert.ok(!r.body.includes(outside.subarray(0, 64)) && !/root:.*:0:0:/.test(r.body.toString()), `${path}: no file from outside`);
  }
});
