// What the browser tests share: the saed under test and its API, a headless
// Chromium, pages that record every console error, uncaught exception and
// error reply, and the checks and screenshots made of a page.
//
// Environment (tests/web/run.sh sets it):
//   SAED_BASE         base URL of a running saed, e.g. http://127.0.0.1:8080 (required)
//   SAED_API_KEY      the API key, when saed has one
//   SAED_SCREENSHOTS  a folder: write a PNG of each page at both widths there
//   CHROMIUM_PATH     the browser (default /usr/bin/chromium)

import assert from 'node:assert/strict';
import http from 'node:http';
import { chromium } from 'playwright-core';

export const BASE = (process.env.SAED_BASE || '').replace(/\/$/, '');
export const KEY = process.env.SAED_API_KEY || '';
export const SHOTS = process.env.SAED_SCREENSHOTS || '';
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
if (!BASE) throw new Error('set SAED_BASE to the base URL of a running saed (see tests/web/run.sh)');

export const VIEWPORTS = [
  { name: '1280', width: 1280, height: 800 },
  { name: '390', width: 390, height: 844 },
];
const TIMEOUT = 30000;

export async function apiFetch(path, init = {}) {
  const headers = { Accept: 'application/json', ...(init.headers || {}) };
  if (KEY) headers.Authorization = `Bearer ${KEY}`;
  const res = await fetch(BASE + path, { ...init, headers });
  const text = await res.text();
  if (!res.ok) throw new Error(`${init.method || 'GET'} ${path}: HTTP ${res.status}: ${text.slice(0, 300)}`);
  return JSON.parse(text);
}
export const apiGet = (path) => apiFetch(path);

// A GET sent raw (node:http): the path reaches saed as written (".." and
// escapes kept), nothing is decoded for us, and only `headers` are sent.
export function rawGet(path, headers = {}) {
  const base = new URL(BASE);
  return new Promise((resolve, reject) => {
    const req = http.request({ host: base.hostname, port: base.port, path, method: 'GET', headers }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks) }));
    });
    req.on('error', reject);
    req.end();
  });
}
export const apiPost = (path, body) => apiFetch(path, {
  method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' },
});

// The decoder direction from a /vector reply (a bare array or wrapped in an object).
export function vectorOf(reply) {
  if (Array.isArray(reply)) return reply;
  for (const k of ['vector', 'values', 'decoder', 'direction', 'data']) if (Array.isArray(reply?.[k])) return reply[k];
  throw new Error(`no array in the /vector reply: ${JSON.stringify(reply).slice(0, 200)}`);
}

// Headless Chromium as every test file launches it.
export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage'],
  });
}

const problems = new WeakMap(); // page -> console errors, page errors, failed requests
const requests = new WeakMap(); // page -> the paths (with query) of its /v1/ requests, in order

// A page in a fresh context at `vp`, with the API key (when there is one)
// already in sessionStorage, and its console errors, failed requests and API
// requests kept.
export async function openPage(browser, vp, { withKey = true, colorScheme = 'light' } = {}) {
  const context = await browser.newContext({ viewport: { width: vp.width, height: vp.height }, colorScheme });
  if (KEY && withKey) await context.addInitScript((k) => sessionStorage.setItem('saed.apiKey', k), KEY);
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  const seen = [];
  problems.set(page, seen);
  // Error replies are kept with their URL below; Chromium's console line for them names none.
  page.on('console', (m) => {
    if (m.type() === 'error' && !/^Failed to load resource: the server responded/.test(m.text())) seen.push(`console: ${m.text()}`);
  });
  page.on('pageerror', (e) => seen.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => seen.push(`request failed: ${r.url()} ${r.failure()?.errorText}`));
  page.on('response', (r) => { if (r.status() >= 400) seen.push(`HTTP ${r.status()} ${r.url()}`); });
  const asked = [];
  requests.set(page, asked);
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.pathname.startsWith('/v1/')) asked.push(u.pathname + u.search);
  });
  return page;
}

// The API requests a page made so far (paths with their query); `clear`
// forgets them, to look at what comes next.
export function apiRequests(page, { clear = false } = {}) {
  const asked = requests.get(page);
  const out = asked.slice();
  if (clear) asked.length = 0;
  return out;
}

// Fails on console errors, uncaught exceptions or error replies (except `allow`).
export function assertClean(page, allow = []) {
  const bad = problems.get(page).filter((p) => !allow.some((re) => re.test(p)));
  assert.deepEqual(bad, [], 'the page logged errors or got error replies');
}

export async function closePage(page) {
  await page.context().close();
}

// Waits until a page has drawn its content, failing at once on an error box.
export async function settled(page, selector) {
  const which = await page.waitForSelector(`${selector}, .state-error`, { state: 'attached' });
  if (await which.evaluate((el) => el.classList.contains('state-error'))) {
    assert.fail(`the page shows an error: ${await which.innerText()}`);
  }
  await page.waitForLoadState('networkidle');
}

export async function noSideways(page, vp) {
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= vp.width + 1, `the page scrolls sideways at ${vp.width}px (content is ${wide}px wide)`);
}

export async function shoot(page, name, vp) {
  if (!SHOTS) return;
  const height = await page.evaluate(() => document.documentElement.scrollHeight);
  await page.screenshot({
    path: `${SHOTS}/${name}-${vp.name}.png`, fullPage: true,
    clip: { x: 0, y: 0, width: vp.width, height: Math.min(height, 2600) },
  });
}

// What issue 20 asks of every page, read from its DOM once it has drawn:
//   live:   each live region (aria-live, role status or alert) is a short
//           line of status, not a container of results (no table, list,
//           term list, figure or tokens; at most 300 characters);
//   titles: each title attribute's text is also visible on the page
//           (innerText outside .sr-only), so touch users can read it;
//   words:  the visible text has no NaN, undefined, null, Infinity,
//           [object Object] or a fractional count of tokens ("0.5 tokens").
// Returns the problems found, as strings, for assert.deepEqual(…, []).
export async function auditPage(page) {
  return page.evaluate(() => {
    const out = [];
    const visible = (root) => {
      const c = root.cloneNode(true);
      for (const x of c.querySelectorAll('.sr-only, script, style, template, [hidden]')) x.remove();
      return c;
    };
    // innerText needs layout: measure the clone where the original sits.
    const holder = document.createElement('div');
    holder.style.cssText = 'position:absolute;left:-99999px;top:0;width:1200px';
    const shown = visible(document.body);
    holder.append(...shown.childNodes);
    document.body.append(holder);
    // Closed <details> stay closed in the clone, so their text is not counted.
    const text = holder.innerText;
    holder.remove();
    const lower = text.replace(/\s+/g, ' ').toLowerCase();
    for (const el of document.querySelectorAll('[aria-live]:not([aria-live="off"]), [role="status"], [role="alert"], [role="log"]')) {
      const what = `${el.tagName.toLowerCase()}${el.id ? `#${el.id}` : ''}.${[...el.classList].join('.')}`;
      const inner = el.querySelector('table, ul, ol, li, dl, svg, section, article, .tok, textarea, input');
      const len = el.textContent.trim().length;
      if (inner) out.push(`live: ${what} holds a ${inner.tagName.toLowerCase()}`);
      if (len > 300) out.push(`live: ${what} holds ${len} characters`);
    }
    for (const el of document.querySelectorAll('[title]')) {
      if (!el.getClientRects().length) continue; // not drawn (display: none): nobody can hover it either
      const t = el.getAttribute('title').replace(/\s+/g, ' ').trim();
      if (t && !lower.includes(t.toLowerCase())) out.push(`title only on hover: ${el.tagName.toLowerCase()}.${[...el.classList].join('.')} "${t}"`);
    }
    const bad = text.match(/\b(?:NaN|undefined|null|-?Infinity)\b|\[object \w+\]|(?<![\d.])\d+\.\d+ tokens?\b/g);
    if (bad) out.push(...new Set(bad.map((b) => `words: "${b}" in the visible text`)));
    return out;
  });
}
