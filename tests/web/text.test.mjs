// Text in the browser (docs/WEB.md "Try text"): the "Try text" page and the
// feature page's text box, against a saed of its own started with the small
// GPT-2 fixture (tests/fixture/lm/gpt2_text_v300, n_ctx 16) as its language
// model and an SAE on its blocks.1.hook_resid_pre, indexed over made-up
// activations so that feature pages exist. What each token shows is checked
// against POST /v1/encode_text itself: the tokens decoded exactly, the
// shading by the chosen feature, the links to feature pages, the feature
// page's box, and the message for a text too long. The nav link shows only
// where /v1/model has an lm (checked against SAED_BASE's saed too).
//
// Environment: as harness.mjs says, plus SAED_BIN (tests/web/run.sh --saed
// sets it): the saed binary, whose build folder has cli/sae and
// tests/mkfixture. Without it the file is skipped.

import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  BASE, KEY, SHOTS, VIEWPORTS, assertClean, auditPage, closePage, launchBrowser, noSideways, openPage, settled, shoot,
} from './harness.mjs';

const BIN = process.env.SAED_BIN || '';
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const LM = join(ROOT, 'tests/fixture/lm/gpt2_text_v300');
const TEXT = 'Hello there, the cat'; // under 16 tokens with the BOS
const LONG = 'the cat is on the mat with a hat and more of the same words again and again';
const vp = VIEWPORTS[0];

let browser, saed, base, tmp;

function freePort() {
  return new Promise((ok) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => ok(port));
    });
  });
}

// Fetches path from the text saed; JSON, or throws on an error status.
async function textApi(path, body) {
  const headers = { Accept: 'application/json' };
  if (KEY) headers.Authorization = `Bearer ${KEY}`;
  if (body) headers['Content-Type'] = 'application/json';
  const res = await fetch(base + path, body ? { method: 'POST', body: JSON.stringify(body), headers } : { headers });
  const out = await res.json();
  if (!res.ok) throw new Error(`${path}: ${res.status} ${JSON.stringify(out)}`);
  return out;
}

// Feature i's value on each token of an encode_text reply (0 where inactive).
const valuesOf = (reply, i) => reply.results.map((r) => {
  const k = r.indices.indexOf(i);
  return k < 0 ? 0 : r.values[k];
});

// The feature most often active over the reply's tokens.
function busiest(reply) {
  const n = new Map();
  for (const r of reply.results) for (const i of r.indices) n.set(i, (n.get(i) || 0) + 1);
  return [...n.entries()].sort((a, b) => b[1] - a[1] || a[0] - b[0])[0][0];
}

// The shaded tokens on the page: text (from the aria-label, which quotes it
// as JSON), value and whether they are shaded.
function readTokens(page, within) {
  return page.$$eval(`${within} .tokens .tok`, (els) => els.map((el) => ({
    text: JSON.parse(el.getAttribute('aria-label').replace(/: [^:]*$/, '')),
    value: Number(el.dataset.value),
    on: el.classList.contains('on'),
  })));
}

// Types text into the form's textarea and runs it; waits for the tokens or the error.
async function runText(page, area, text, done) {
  await page.fill(area, text);
  await page.click(`${area} >> xpath=ancestor::form//button[@type="submit"]`);
  await page.waitForSelector(done, { state: 'visible' });
}

function checkShading(got, reply, i) {
  const want = valuesOf(reply, i);
  assert.equal(got.length, reply.tokens.length, 'one shaded token per token');
  got.forEach((t, k) => {
    assert.equal(t.text, reply.tokens[k].text, `token ${k} reads as the API's`);
    assert.ok(Math.abs(t.value - want[k]) <= 1e-6 * Math.max(1, Math.abs(want[k])), `token ${k}: ${t.value}, want ${want[k]}`);
    assert.equal(t.on, want[k] > 0, `token ${k} shaded exactly when feature ${i} is active`);
  });
}

describe('Try text', { skip: BIN ? false : 'SAED_BIN not set (tests/web/run.sh --saed sets it)' }, () => {
  let reply, feature;

  before(async () => {
    const build = dirname(dirname(resolve(BIN)));
    tmp = mkdtempSync(join(tmpdir(), 'saed-text-'));
    const rows = 480;
    execFileSync(join(build, 'tests/mkfixture'), ['--out', join(tmp, 'sae'), '--d-in', '32', '--d-sae', '64',
      '--target-l0', '8', '--seed', '5', '--hook-name', 'blocks.1.hook_resid_pre', '--model-name', 'gpt2-text-fixture',
      '--activations', join(tmp, 'acts.safetensors'), '--rows', String(rows)]);
    const words = ['the', ' cat', ' sat', ' on', ' a', ' mat', ',', ' and', ' then', ' left', '.', ' Hello'];
    const docs = [];
    for (let d = 0; d < rows / 24; d++) {
      docs.push(JSON.stringify({ id: `doc${d}`, tokens: Array.from({ length: 24 }, (_, k) => words[(d * 7 + k * 5) % words.length]) }));
    }
    writeFileSync(join(tmp, 'tokens.jsonl'), `${docs.join('\n')}\n`);
    execFileSync(join(build, 'cli/sae'), ['index', '--model', join(tmp, 'sae'), '--activations', join(tmp, 'acts.safetensors'),
      '--tokens', join(tmp, 'tokens.jsonl'), '--out', join(tmp, 'index.db'), '--quiet']);
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    saed = spawn(BIN, ['--model', join(tmp, 'sae'), '--index', join(tmp, 'index.db'), '--lm', LM,
      '--listen', `127.0.0.1:${port}`, '--quiet'], { stdio: ['ignore', 'ignore', 'inherit'], env: { ...process.env, SAED_API_KEY: KEY } });
    for (let k = 0; k < 150; k++) {
      if (await fetch(`${base}/v1/health`).then((r) => r.ok, () => false)) break;
      await new Promise((ok) => setTimeout(ok, 200));
    }
    reply = await textApi('/v1/encode_text', { text: TEXT });
    feature = busiest(reply);
    browser = await launchBrowser();
  });

  after(async () => {
    await browser?.close();
    if (saed) {
      saed.kill('SIGTERM');
      await new Promise((ok) => saed.once('exit', ok));
    }
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  test('the nav link shows only where /v1/model has an lm', async () => {
    const page = await openPage(browser, vp);
    await page.goto(`${base}/`);
    await page.waitForSelector('a[data-nav="text"]', { state: 'visible' });
    await page.click('a[data-nav="text"]');
    await settled(page, '#text-input');
    assert.equal(new URL(page.url()).pathname, '/text');
    const m = await fetch(`${BASE}/v1/model`, { headers: KEY ? { Authorization: `Bearer ${KEY}` } : {} }).then((r) => r.json());
    if (!m.lm) {
      await page.goto(`${BASE}/`);
      await settled(page, 'table.features, .state-empty');
      await page.waitForLoadState('networkidle');
      assert.equal(await page.isVisible('a[data-nav="text"]'), false, 'no Try text link without --lm');
    }
    assertClean(page);
    await closePage(page);
  });

  test('the tokens, decoded exactly, shaded by the chosen feature, with their top features', async () => {
    const page = await openPage(browser, vp);
    await page.goto(`${base}/text?feature=${feature}`);
    await settled(page, '#text-input');
    await runText(page, '#text-input', TEXT, '.text-result .tokens');
    const got = await readTokens(page, '.text-result');
    checkShading(got, reply, feature);
    // Every byte of the text is in the tokens, in order (the BOS first).
    const texts = reply.tokens.map((t) => t.text);
    assert.equal(texts[0], '<|endoftext|>');
    assert.equal(texts.slice(1).join(''), TEXT);
    assert.deepEqual(await page.$$eval('table.token-features tbody tr td:nth-child(2)', (tds) => tds.map((td) => Number(td.textContent))),
      reply.tokens.map((t) => t.id), 'the token ids');
    // Each token's strongest features link to their pages, largest first.
    const links = await page.$$eval('table.token-features tbody tr', (trs) => trs.map((tr) =>
      [...tr.querySelectorAll('td.top-features a')].map((a) => [Number(a.dataset.index), a.getAttribute('href')])));
    reply.results.forEach((r, k) => {
      const want = r.indices.map((i, j) => [i, r.values[j]]).sort((a, b) => b[1] - a[1]).slice(0, 5).map(([i]) => [i, `/features/${i}`]);
      assert.deepEqual(links[k], want, `token ${k}'s top features`);
    });
    assert.equal(await page.textContent('.shade-feature'), `#${feature}`);
    assert.match(await page.textContent('#text-status'), new RegExp(`^${reply.tokens.length} tokens, shaded by feature ${feature}\\.$`));
    assert.deepEqual(await auditPage(page), [], 'issue 20: only a status line is live, no hover-only title, no undefined value');
    await noSideways(page, vp);
    if (SHOTS) await shoot(page, 'text', vp);

    // Another feature shades the same text without running it again.
    const other = reply.results.flatMap((r) => r.indices).find((i) => i !== feature);
    await page.fill('#text-feature', String(other));
    await page.press('#text-feature', 'Tab'); // leaving the field fires its change
    await page.waitForSelector(`.text-result .tokens[data-feature="${other}"]`);
    checkShading(await readTokens(page, '.text-result'), reply, other);

    // A top feature's link opens its page.
    const first = links.find((l) => l.length)[0][0];
    await page.click(`table.token-features td.top-features a[data-index="${first}"] >> nth=0`);
    await settled(page, '.feature-head');
    assert.equal(new URL(page.url()).pathname, `/features/${first}`);
    assertClean(page);
    await closePage(page);
  });

  test('under /saes/{id}/text it is that SAE\'s', async () => {
    const { saes } = await textApi('/v1/saes');
    const id = saes[0].id;
    const page = await openPage(browser, vp);
    const asked = [];
    page.on('request', (r) => { if (r.url().includes('encode_text')) asked.push(new URL(r.url()).pathname); });
    await page.goto(`${base}/saes/${id}/text`);
    await settled(page, '#text-input');
    await runText(page, '#text-input', TEXT, '.text-result .tokens');
    assert.deepEqual(asked, [`/v1/saes/${id}/encode_text`]);
    assert.ok((await page.getAttribute('table.token-features td.top-features a', 'href')).startsWith(`/saes/${id}/features/`));
    assertClean(page);
    await closePage(page);
  });

  test('a text too long or empty says so', async () => {
    const page = await openPage(browser, vp);
    await page.goto(`${base}/text`);
    await settled(page, '#text-input');
    await runText(page, '#text-input', LONG, '#text-error');
    const msg = await page.textContent('#text-error');
    assert.match(msg, /too long/);
    assert.match(msg, /at most 16 tokens/);
    assert.equal(await page.$('.text-result .tokens'), null, 'no tokens drawn for a refused text');
    await page.fill('#text-input', '');
    await page.click('.text-form button[type="submit"]');
    assert.match(await page.textContent('#text-error'), /Type some text first/);
    assertClean(page, [/HTTP 422 .*\/encode_text/]);
    await closePage(page);
  });

  test('the feature page\'s box runs that feature on your text', async () => {
    const page = await openPage(browser, vp);
    await page.goto(`${base}/features/${feature}`);
    await settled(page, '#try-text-input');
    await runText(page, '#try-text-input', TEXT, '.try-text-result .tokens');
    const got = await readTokens(page, '.try-text-result');
    checkShading(got, reply, feature);
    const top = Math.max(...valuesOf(reply, feature));
    assert.match(await page.textContent('.try-text-max'), new RegExp(`Largest value here: .*${JSON.stringify(reply.tokens[valuesOf(reply, feature).indexOf(top)].text).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));
    assert.deepEqual(await auditPage(page), [], 'issue 20: only a status line is live, no hover-only title, no undefined value');
    await runText(page, '#try-text-input', LONG, '#try-text-error');
    assert.match(await page.textContent('#try-text-error'), /too long/);
    assertClean(page, [/HTTP 422 .*\/encode_text/]);
    await closePage(page);
  });
});
