// The SAEs of a release (GET /v1/saes) as the picker shows them, and the
// SAE-scoped addresses of pages and API routes. Pure: no DOM, no imports
// (tests/web/release.test.mjs loads it into Node).
//
// A scope is an SAE id, or null for the unprefixed addresses, which mean the
// default SAE (CONTRACT section 7): /features/3 and /v1/features/3 are the
// default SAE's; /saes/{id}/features/3 and /v1/saes/{id}/features/3 are SAE
// id's.

const collator = new Intl.Collator('en', { numeric: true, sensitivity: 'base' });

// Orders names as people number layers: blocks.2 before blocks.10.
const naturalCompare = (a, b) => collator.compare(a, b) || (a < b ? -1 : a > b ? 1 : 0);

// What the picker shows for a missing model or hook name.
const NO_MODEL = '(unnamed model)';
const NO_HOOK = '(no hook name)';

// The page address of `rest` ("/", "/?q=x", "/features/3", "/encode") in
// `scope`: unchanged for null, else under /saes/{id} (the feature list is
// /saes/{id} itself).
export function pagePath(scope, rest = '/') {
  if (scope === null || scope === undefined) return rest;
  const base = `/saes/${encodeURIComponent(scope)}`;
  if (rest === '/' || rest === '') return base;
  return rest.startsWith('/?') ? base + rest.slice(1) : base + rest;
}

// The API address of `rest` ("/features/3", "/encode", "/model") in `scope`.
export function apiPath(scope, rest) {
  return scope === null || scope === undefined ? `/v1${rest}` : `/v1/saes/${encodeURIComponent(scope)}${rest}`;
}

// Splits a page address into its scope and the unprefixed rest:
// "/saes/a.b/features/3" -> { scope: "a.b", rest: "/features/3" }; a
// malformed id (an escape that does not decode) is kept as written.
export function splitScope(pathname) {
  const m = /^\/saes\/([^/]+)(\/.*)?$/.exec(pathname);
  if (!m) return { scope: null, rest: pathname };
  let scope = m[1];
  try {
    scope = decodeURIComponent(scope);
  } catch {
    /* keep it raw: no SAE will have this id, and the page says so */
  }
  return { scope, rest: m[2] && m[2] !== '/' ? m[2] : '/' };
}

// The default SAE of a /v1/saes list: the one marked default, else the first.
export function defaultSae(saes) {
  return saes.find((s) => s.default) || saes[0] || null;
}

// How the picker names a width: "16,384 features"; "(layer_12.…)" style
// suffixes are added by pickerTree where two SAEs of a hook share a width.
export function widthLabel(dSae) {
  return Number.isInteger(dSae) ? `${dSae.toLocaleString('en-US')} features` : 'width unknown';
}

// What tells apart ids that share everything else: each id without the
// longest run of dot-separated parts the ids all start with
// ("l12.w16k.l0_82", "l12.w16k.l0_41" -> "l0_82", "l0_41").
export function distinctTails(ids) {
  if (ids.length < 2) return ids.slice();
  const parts = ids.map((id) => id.split('.'));
  let common = 0;
  while (parts.every((p) => common < p.length - 1 && p[common] === parts[0][common])) common++;
  return parts.map((p) => p.slice(common).join('.'));
}

// The picker's three levels: models (in name order), each model's hooks (in
// natural order, so layer 2 comes before layer 10), each hook's SAEs by
// width, narrowest first. Every SAE appears once, with the label of its
// width option: "16,384 features", plus what tells it apart where a hook has
// two of one width, plus "no index" where it has none.
// Returns [{ model, hooks: [{ hook, saes: [{ id, label, sae }] }] }].
export function pickerTree(saes) {
  const models = new Map();
  for (const sae of saes) {
    const model = sae.model_name || NO_MODEL;
    const hook = sae.hook_name || NO_HOOK;
    if (!models.has(model)) models.set(model, new Map());
    const hooks = models.get(model);
    if (!hooks.has(hook)) hooks.set(hook, []);
    hooks.get(hook).push(sae);
  }
  return [...models.keys()].sort(naturalCompare).map((model) => {
    const hooks = models.get(model);
    return {
      model,
      hooks: [...hooks.keys()].sort(naturalCompare).map((hook) => {
        const list = hooks.get(hook).slice()
          .sort((a, b) => (a.d_sae ?? Infinity) - (b.d_sae ?? Infinity) || naturalCompare(a.id, b.id));
        const byWidth = new Map();
        for (const s of list) {
          if (!byWidth.has(s.d_sae)) byWidth.set(s.d_sae, []);
          byWidth.get(s.d_sae).push(s);
        }
        const tails = new Map();
        for (const group of byWidth.values()) {
          distinctTails(group.map((s) => s.id)).forEach((t, k) => { if (group.length > 1) tails.set(group[k].id, t); });
        }
        return {
          hook,
          saes: list.map((s) => ({
            id: s.id,
            sae: s,
            label: [widthLabel(s.d_sae), tails.has(s.id) ? ` (${tails.get(s.id)})` : '',
              s.has_index === false ? ' · no index' : ''].join(''),
          })),
        };
      }),
    };
  });
}

// Where in the tree an SAE sits: { model, hook } or null.
export function placeOf(tree, id) {
  for (const m of tree) {
    for (const hk of m.hooks) if (hk.saes.some((s) => s.id === id)) return { model: m.model, hook: hk.hook };
  }
  return null;
}

// The SAE a changed picker level leads to: in `model` and `hook` (the hook's
// first when `hook` is not one of the model's), the one as wide as `from`
// when there is one, else the narrowest.
export function pickIn(tree, model, hook, from) {
  const m = tree.find((x) => x.model === model) || tree[0];
  if (!m) return null;
  const hk = m.hooks.find((x) => x.hook === hook) || m.hooks[0];
  const same = from ? hk.saes.find((s) => s.sae.d_sae === from.d_sae) : null;
  return (same || hk.saes[0]).id;
}

// A short name of an SAE for lists: "model · hook · 16,384 features".
export function saeSummary(sae) {
  return [sae.model_name, sae.hook_name, widthLabel(sae.d_sae)].filter(Boolean).join(' · ');
}
