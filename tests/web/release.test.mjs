// The SAE picker's grouping and the SAE-scoped addresses (web/assets/release.js)
// against hand-written expectations: the browser test (saes.test.mjs) reads
// the picker through these functions, so they must be right on their own.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { loadWebModule } from './load-module.mjs';

const r = await loadWebModule('release.js');

// A release as GET /v1/saes lists it, in serving order (not the picker's).
const sae = (id, model_name, hook_name, d_sae, extra = {}) => ({ id, model_name, hook_name, d_sae, has_index: true, ...extra });
const RELEASE = [
  sae('l10.w16k', 'gemma-2-2b', 'blocks.10.hook_resid_post', 16384, { default: true }),
  sae('l2.w65k', 'gemma-2-2b', 'blocks.2.hook_resid_post', 65536),
  sae('l2.w16k.l0_82', 'gemma-2-2b', 'blocks.2.hook_resid_post', 16384),
  sae('l2.w16k.l0_41', 'gemma-2-2b', 'blocks.2.hook_resid_post', 16384, { has_index: false }),
  sae('gpt2.8', 'gpt2-small', 'blocks.8.hook_resid_pre', 24576),
  sae('anon', null, null, 512),
];

test('pagePath and apiPath: unprefixed for the default SAE, under /saes/{id} and /v1/saes/{id} otherwise', () => {
  assert.equal(r.pagePath(null, '/'), '/');
  assert.equal(r.pagePath(null, '/features/3'), '/features/3');
  assert.equal(r.pagePath('a.b', '/'), '/saes/a.b');
  assert.equal(r.pagePath('a.b', ''), '/saes/a.b');
  assert.equal(r.pagePath('a.b', '/?q=x&sort=index'), '/saes/a.b?q=x&sort=index');
  assert.equal(r.pagePath('a.b', '/features/3'), '/saes/a.b/features/3');
  assert.equal(r.pagePath('a_b-1', '/encode?feature=2'), '/saes/a_b-1/encode?feature=2');
  assert.equal(r.apiPath(null, '/features/3'), '/v1/features/3');
  assert.equal(r.apiPath('a.b', '/features?q=x'), '/v1/saes/a.b/features?q=x');
  assert.equal(r.apiPath('a.b', '/encode'), '/v1/saes/a.b/encode');
});

test('splitScope: the SAE of a page address and the page within it', () => {
  assert.deepEqual(r.splitScope('/'), { scope: null, rest: '/' });
  assert.deepEqual(r.splitScope('/features/3'), { scope: null, rest: '/features/3' });
  assert.deepEqual(r.splitScope('/saes/a.b'), { scope: 'a.b', rest: '/' });
  assert.deepEqual(r.splitScope('/saes/a.b/'), { scope: 'a.b', rest: '/' });
  assert.deepEqual(r.splitScope('/saes/a.b/features/3'), { scope: 'a.b', rest: '/features/3' });
  assert.deepEqual(r.splitScope('/saes/x%41/model'), { scope: 'xA', rest: '/model' });
  assert.deepEqual(r.splitScope('/saes/%E0%A4/encode'), { scope: '%E0%A4', rest: '/encode' });
  assert.deepEqual(r.splitScope('/saes/'), { scope: null, rest: '/saes/' });
  for (const [scope, rest] of [['l2.w16k', '/features/12'], ['x', '/'], ['y', '/encode']]) {
    assert.deepEqual(r.splitScope(r.pagePath(scope, rest)), { scope, rest }, 'pagePath and splitScope agree');
  }
});

test('pickerTree: models by name, hooks in layer order, widths narrowest first, every SAE once', () => {
  const tree = r.pickerTree(RELEASE);
  assert.deepEqual(tree.map((m) => m.model), ['(unnamed model)', 'gemma-2-2b', 'gpt2-small']);
  const gemma = tree[1];
  assert.deepEqual(gemma.hooks.map((x) => x.hook), ['blocks.2.hook_resid_post', 'blocks.10.hook_resid_post'],
    'layer 2 before layer 10');
  assert.deepEqual(gemma.hooks[0].saes.map((x) => [x.id, x.label]), [
    ['l2.w16k.l0_41', '16,384 features (l0_41) · no index'],
    ['l2.w16k.l0_82', '16,384 features (l0_82)'],
    ['l2.w65k', '65,536 features'],
  ]);
  assert.deepEqual(gemma.hooks[1].saes.map((x) => [x.id, x.label]), [['l10.w16k', '16,384 features']]);
  assert.deepEqual(tree[0].hooks.map((x) => x.hook), ['(no hook name)']);
  const ids = tree.flatMap((m) => m.hooks.flatMap((x) => x.saes.map((s) => s.id)));
  assert.deepEqual([...ids].sort(), RELEASE.map((s) => s.id).sort(), 'every SAE once');
});

test('distinctTails: what tells apart ids that share a width', () => {
  assert.deepEqual(r.distinctTails(['a.b.c', 'a.b.d']), ['c', 'd']);
  assert.deepEqual(r.distinctTails(['a.x.c', 'a.y.c']), ['x.c', 'y.c']);
  assert.deepEqual(r.distinctTails(['a', 'b']), ['a', 'b']);
  assert.deepEqual(r.distinctTails(['a.b', 'a.b.c']), ['b', 'b.c'], 'never an empty tail');
  assert.deepEqual(r.distinctTails(['only']), ['only']);
});

test('placeOf and pickIn: where an SAE sits; a new hook keeps the width where it can', () => {
  const tree = r.pickerTree(RELEASE);
  assert.deepEqual(r.placeOf(tree, 'l2.w65k'), { model: 'gemma-2-2b', hook: 'blocks.2.hook_resid_post' });
  assert.equal(r.placeOf(tree, 'nope'), null);
  const from = RELEASE[0]; // l10.w16k, 16384 wide
  assert.equal(r.pickIn(tree, 'gemma-2-2b', 'blocks.2.hook_resid_post', from), 'l2.w16k.l0_41', 'same width');
  assert.equal(r.pickIn(tree, 'gemma-2-2b', 'blocks.2.hook_resid_post', RELEASE[1]), 'l2.w65k', 'same width');
  assert.equal(r.pickIn(tree, 'gemma-2-2b', 'blocks.10.hook_resid_post', RELEASE[1]), 'l10.w16k', 'narrowest when none as wide');
  assert.equal(r.pickIn(tree, 'gpt2-small', 'blocks.2.hook_resid_post', from), 'gpt2.8', 'the model\'s first hook when it lacks this one');
});

test('defaultSae, widthLabel and saeSummary', () => {
  assert.equal(r.defaultSae(RELEASE).id, 'l10.w16k');
  assert.equal(r.defaultSae(RELEASE.slice(1)).id, 'l2.w65k', 'the first when none is marked');
  assert.equal(r.defaultSae([]), null);
  assert.equal(r.widthLabel(1048576), '1,048,576 features');
  assert.equal(r.widthLabel(undefined), 'width unknown');
  assert.equal(r.saeSummary(RELEASE[4]), 'gpt2-small · blocks.8.hook_resid_pre · 24,576 features');
  assert.equal(r.saeSummary(RELEASE[5]), '512 features');
});
