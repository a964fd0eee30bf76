// Entry point: registers the pages and keeps the header in step with the page:
// with one SAE it names the loaded model; with several it holds the SAE
// picker (model -> hook -> width) and the release search, and the navigation
// links stay in the SAE being browsed.

import { getModel, getSaes } from './api.js';
import { h } from './dom.js';
import { fmtInt } from './format.js';
import { defaultSae, pagePath, pickIn, pickerTree, placeOf } from './release.js';
import { navigate, onPage, route, start } from './router.js';

route('features', /^\/$/, () => import('./page-features.js'));
route('feature', /^\/features\/(\d+)\/?$/, () => import('./page-feature.js'));
route('example', /^\/features\/(\d+)\/examples\/(top|quantile)\/(\d+)\/?$/, () => import('./page-example.js'));
route('encode', /^\/encode\/?$/, () => import('./page-encode.js'));
route('model', /^\/model\/?$/, () => import('./page-model.js'));
route('text', /^\/text\/?$/, () => import('./page-text.js'));
route('search', /^\/search\/?$/, () => import('./page-search.js'), { scoped: false });

const picker = document.getElementById('sae-picker');
const selects = {
  model: document.getElementById('pick-model'),
  hook: document.getElementById('pick-hook'),
  width: document.getElementById('pick-width'),
};
let shown = null; // { scope, name }: the page the header is for
let drawnFor; // the scope the header was drawn for (undefined: not drawn yet)

// The address the picker leads to in SAE `id`: the same kind of page (the
// feature list keeps its search; a feature page goes to the new SAE's list,
// since feature i of another SAE is another feature).
function sameKindOfPage(id, saes) {
  const scope = id === defaultSae(saes)?.id ? null : id;
  const rest = { encode: '/encode', text: '/text', model: '/model' }[shown?.name];
  if (rest) return pagePath(scope, rest);
  return pagePath(scope, shown?.name === 'features' ? `/${location.search}` : '/');
}

function options(select, items, chosen) {
  select.replaceChildren(...items.map(([value, text]) => h('option', { value, selected: value === chosen }, text)));
  select.value = chosen;
}

// Sets the three selects to SAE `id`'s place in the tree.
function drawPicker(tree, id) {
  const at = placeOf(tree, id) || { model: tree[0].model, hook: tree[0].hooks[0].hook };
  const model = tree.find((m) => m.model === at.model);
  const hook = model.hooks.find((x) => x.hook === at.hook);
  options(selects.model, tree.map((m) => [m.model, m.model]), at.model);
  options(selects.hook, model.hooks.map((x) => [x.hook, x.hook]), at.hook);
  options(selects.width, hook.saes.map((s) => [s.id, s.label]), id);
}

async function drawHeader({ name, scope }) {
  shown = { name, scope };
  if (drawnFor === scope) return;
  const saes = await getSaes().catch(() => null); // without it (no key yet), drawn again on the next page
  if (shown.scope !== scope) return; // navigated on meanwhile
  if (saes) drawnFor = scope;
  const many = saes && saes.length > 1;
  for (const [page, rest] of [['features', '/'], ['encode', '/encode'], ['text', '/text'], ['model', '/model']]) {
    document.querySelector(`a[data-nav="${page}"]`).setAttribute('href', pagePath(scope, rest));
  }
  document.querySelector('a[data-nav="search"]').parentElement.hidden = !many;
  picker.hidden = !many;
  document.getElementById('model-line').hidden = Boolean(many);
  if (many) {
    const tree = pickerTree(saes);
    const id = scope ?? defaultSae(saes).id;
    picker.dataset.sae = id;
    drawPicker(tree, id);
    return;
  }
  const m = await getModel(scope).catch(() => null); // the page itself shows any error
  if (m && shown.scope === scope) {
    const parts = [m.model_name, m.hook_name, `${fmtInt(m.d_sae)} features`].filter(Boolean);
    document.getElementById('model-line').textContent = parts.join(' · ');
  }
}

// A changed level picks the SAE it leads to (as wide as the current one where
// the new hook has that width) and goes to the same kind of page there.
picker.addEventListener('change', async (e) => {
  const saes = await getSaes();
  const tree = pickerTree(saes);
  const from = saes.find((s) => s.id === picker.dataset.sae);
  // A new model keeps the hook where it has one of that name.
  const id = e.target === selects.width ? selects.width.value
    : pickIn(tree, selects.model.value, selects.hook.value, from);
  navigate(sameKindOfPage(id, saes));
});
picker.addEventListener('submit', (e) => e.preventDefault());

// "Try text" is shown when the page's SAE can read text (/v1/model's lm);
// nothing is asked about an SAE that saed does not serve.
let textLinkFor = 0; // the latest page's turn: an older answer arriving late gives way
async function drawTextLink({ scope }) {
  const me = ++textLinkFor;
  const saes = scope === null ? null : await getSaes().catch(() => null);
  const known = !saes || saes.some((x) => x.id === scope);
  const m = known ? await getModel(scope).catch(() => null) : null;
  if (me === textLinkFor) document.querySelector('a[data-nav="text"]').parentElement.hidden = !m?.lm?.reads_hook;
}

onPage(drawHeader);
onPage(drawTextLink);
start();
