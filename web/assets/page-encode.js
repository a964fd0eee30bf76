// Encode: a pasted vector (JSON array of d_in numbers), or a feature's decoder
// direction from /v1/features/{i}/vector, sent to POST /v1/encode. Shows the
// active features as bars with their labels (links to their pages) and the
// reconstruction's l0, mse, fvu and cosine. /encode?feature=i encodes feature
// i's direction straight away. Under /saes/{id}/encode all of it is SAE id's.

import { ApiError, api, getModel, isNoIndex, mapLimit } from './api.js';
import { emptyState, errorState, fill, h, loadingState, pageHeading } from './dom.js';
import { featureLabel, fmtDensity, fmtInt, fmtNum } from './format.js';

export const BARS_SHOWN = 50; // bars drawn before "show all"

// Reads a vector from the textarea text: a JSON array of finite numbers (or a
// one-row array of arrays), or numbers separated by spaces, tabs or commas
// with or without brackets, as numpy and spreadsheets print them. Returns
// {vector} or {error}.
export function parseVector(text, dIn) {
  const manyRows = (n) => ({ error: `This is ${fmtInt(n)} rows; the page encodes one. (POST /v1/encode takes many.)` });
  let v;
  try {
    v = JSON.parse(text);
  } catch (e) {
    // As numpy prints: "[0.1 0.2]", "[[0.1 0.2]]", rows as "[[1 2]\n [3 4]]".
    const t = text.trim();
    const rows = t.match(/\[[^[\]]*\]/g) || [];
    if (/^\[\s*\[/.test(t) && rows.length > 1) return manyRows(rows.length);
    const one = /^\[\s*\[[^[\]]*\]\s*\]$/.test(t) ? rows[0] : t;
    const bare = /^\[[^[\]]*\]$/.test(one) ? one.slice(1, -1) : one;
    const words = bare.split(/[\s,]+/).filter(Boolean);
    const decimal = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i; // no hex, no "Infinity"
    if (!words.length || !words.every((w) => decimal.test(w))) {
      return { error: `Not a JSON array nor a list of numbers: ${e.message}` };
    }
    v = words.map(Number);
  }
  if (Array.isArray(v) && v.length === 1 && Array.isArray(v[0])) v = v[0];
  if (Array.isArray(v) && v.length > 1 && v.every(Array.isArray)) return manyRows(v.length);
  if (!Array.isArray(v)) return { error: 'Expected a JSON array of numbers, like [0.1, -2, 3.5].' };
  if (!v.length) return { error: 'The array is empty.' };
  const bad = v.findIndex((x) => typeof x !== 'number' || !Number.isFinite(x));
  if (bad >= 0) return { error: `Element ${bad} is not a finite number.` };
  if (dIn && v.length !== dIn) return { error: `The model expects ${fmtInt(dIn)} numbers (d_in); this array has ${fmtInt(v.length)}.` };
  return { vector: v };
}

// The decoder direction from a /vector reply, whichever way it is wrapped.
function vectorOf(reply) {
  if (Array.isArray(reply)) return reply;
  for (const k of ['vector', 'values', 'decoder', 'direction', 'data']) {
    if (Array.isArray(reply?.[k])) return reply[k];
  }
  return null;
}

// Labels by feature index from an encode result's "features", whether it is a
// list of {index, label, density}, a list aligned with indices, or an object
// keyed by index.
function labelsOf(result) {
  const out = new Map();
  const fs = result.features;
  if (Array.isArray(fs)) {
    fs.forEach((f, k) => {
      if (!f || typeof f !== 'object') return;
      const idx = Number.isInteger(f.index) ? f.index : result.indices?.[k];
      out.set(idx, { label: typeof f.label === 'string' ? f.label : null, density: f.density, max: f.max_activation });
    });
  } else if (fs && typeof fs === 'object') {
    for (const [k, f] of Object.entries(fs)) {
      out.set(Number(k), { label: typeof f?.label === 'string' ? f.label : null, density: f?.density, max: f?.max_activation });
    }
  }
  return out;
}

// One metric of the reconstruction: its name, value and, visible under
// them, what it is (not a hover title: touch screens cannot hover).
function metric(name, key, value, note) {
  return h('div', { class: 'stat' }, h('dt', {}, name), h('dd', { 'data-metric': key }, value),
    h('dd', { class: 'stat-note', 'data-stat-note': key }, note));
}

// A bar's length in percent: the value over the feature's max in the index
// when known, else over the reply's largest value.
export function barPercent(v, max, top) {
  const x = Math.max(0, v);
  return max > 0 ? (x / max) * 100 : (x / top) * 100;
}

// Cosine of input and reconstruction below this is called low.
export const LOW_COSINE = 0.5;

// Warnings about a reconstruction that explains the input poorly.
function quality(r) {
  const out = [];
  if (typeof r.fvu === 'number' && r.fvu > 1) {
    out.push(`FVU is ${fmtNum(r.fvu)} (above 1): the reconstruction is further from the input than the input's own mean, so these features describe it poorly.`);
  }
  if (typeof r.cosine === 'number' && r.cosine < LOW_COSINE) {
    out.push(`Cosine of input and reconstruction is ${fmtNum(r.cosine)} (below ${LOW_COSINE}): the SAE reconstructs little of this input.`);
  }
  return out.length ? h('div', { class: 'warn', role: 'note' }, out.map((t) => h('p', {}, t))) : null;
}

function bars(result, known, ctx, withLabels) {
  const idx = Array.isArray(result.indices) ? result.indices : [];
  const vals = Array.isArray(result.values) ? result.values : [];
  if (!idx.length) {
    return emptyState('No feature is active',
      h('p', {}, 'Every feature is zero on this input (or below the threshold you set).'));
  }
  const top = Math.max(...vals.filter((v) => v > 0), 0) || 1;
  const list = h('ol', { class: 'bars' });
  const pending = [];
  const addRow = (k) => {
    const i = idx[k];
    const info = known.get(i) || {};
    const label = h('span', { class: `bar-label${info.label ? '' : ' muted'}` },
      info.label ?? (withLabels ? '…' : ''));
    if (!info.label && withLabels) pending.push({ i, label });
    const bar = h('span', { class: 'bar-track', 'aria-hidden': 'true' }, h('span', { class: 'bar-fill' }));
    // With the index, a bar is the value as a share of the feature's own max
    // on the indexed corpus (over 100% is capped, and said); without it, of
    // the reply's largest value.
    const pct = barPercent(vals[k], info.max, top);
    bar.firstChild.style.setProperty('--w', `${Math.max(0.5, Math.min(100, pct)).toFixed(2)}%`);
    list.append(h('li', { class: 'bar-row', 'data-index': i },
      h('a', { href: ctx.href(`/features/${i}`), class: 'bar-name' }, h('span', { class: 'bar-idx' }, `#${i}`), ' ', label),
      bar,
      h('span', { class: 'num bar-value', 'data-value': vals[k] }, fmtNum(vals[k])),
      info.max > 0 ? h('span', { class: 'num bar-pct' }, `${fmtNum(pct, 3)}% of max`) : null,
      info.density !== undefined ? h('span', { class: 'num bar-density muted' }, fmtDensity(info.density)) : null));
  };
  for (let k = 0; k < Math.min(idx.length, BARS_SHOWN); k++) addRow(k);
  const fill = () => {
    // Labels the reply did not carry come from each feature's own record.
    const todo = pending.splice(0);
    mapLimit(todo, 4, async ({ i, label }) => {
      try {
        const f = await api(ctx.apiPath(`/features/${i}`), { signal: ctx.signal });
        const text = featureLabel(f);
        label.textContent = text ?? '(no explanation)';
        if (text) label.classList.remove('muted');
      } catch {
        label.textContent = '(no label)';
      }
    });
  };
  fill();
  const out = [h('div', { class: 'bar-row bar-head', 'aria-hidden': 'true' },
    h('span', {}, 'Feature'), h('span', {}, ''), h('span', { class: 'num' }, 'Activation'),
    [...known.values()].some((x) => x.max > 0) ? h('span', { class: 'num bar-pct' }, 'of its max') : null,
    known.size ? h('span', { class: 'num bar-density' }, 'Density') : null), list];
  if (idx.length > BARS_SHOWN) {
    const all = h('button', { type: 'button' }, `Show all ${fmtInt(idx.length)} active features`);
    all.addEventListener('click', () => {
      for (let k = BARS_SHOWN; k < idx.length; k++) addRow(k);
      fill();
      all.remove();
      list.children[BARS_SHOWN]?.querySelector('a')?.focus();
    });
    out.push(all);
  }
  return h('div', {}, ...out);
}

export async function render(main, ctx) {
  document.title = 'Encode · saed';
  const model = await getModel(ctx.scope).catch(() => null);
  ctx.signal.throwIfAborted(); // another page took <main> meanwhile
  const dIn = model?.d_in;
  const area = h('textarea', {
    id: 'encode-input', name: 'input', rows: 6, spellcheck: 'false', 'aria-describedby': 'encode-input-hint encode-input-error',
    placeholder: dIn ? `[${Array.from({ length: Math.min(dIn, 4) }, (_, k) => (k * 0.25).toFixed(2)).join(', ')}${dIn > 4 ? ', …' : ''}]` : '[0.1, -0.2, …]',
  });
  const areaError = h('p', { class: 'field-error', id: 'encode-input-error', role: 'alert', hidden: true });
  const featureInput = h('input', {
    id: 'encode-feature', type: 'number', min: 0, max: model?.d_sae ? model.d_sae - 1 : null, step: 1, inputmode: 'numeric',
    value: ctx.query.get('feature') ?? '',
  });
  const topK = h('input', { id: 'encode-topk', type: 'number', min: 1, step: 1, inputmode: 'numeric', value: ctx.query.get('top_k') ?? '' });
  // Only this line is announced (aria-live), not the result under it.
  const status = h('p', { class: 'results-count', id: 'encode-status', 'aria-live': 'polite' });
  const result = h('section', { class: 'encode-result', 'aria-labelledby': 'encode-result-h' },
    h('h2', { id: 'encode-result-h', class: 'sr-only' }, 'Result'),
    emptyState('Nothing encoded yet', h('p', {}, 'Paste a vector and press Encode, or load a feature\'s decoder direction.')));
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Encode');
  const loadBtn = h('button', { type: 'button', id: 'encode-load' }, 'Use decoder direction');

  const form = h('form', { class: 'encode-form', novalidate: true },
    h('div', { class: 'field' },
      h('label', { for: 'encode-input' }, 'Input vector'),
      area,
      h('span', { class: 'hint', id: 'encode-input-hint' },
        dIn ? `A JSON array of ${fmtInt(dIn)} numbers (d_in) in the model's input space.` : 'A JSON array of d_in numbers.'),
      areaError),
    h('div', { class: 'row' },
      h('div', { class: 'field' }, h('label', { for: 'encode-feature' }, 'Feature index'),
        h('div', { class: 'inline' }, featureInput, loadBtn)),
      h('div', { class: 'field' }, h('label', { for: 'encode-topk' }, 'Top k (optional)'), topK),
      h('div', { class: 'field end' }, submit)));

  fill(main, pageHeading('Encode'),
    h('p', { class: 'lede' }, 'Run the SAE encoder on one activation vector: ', h('code', {}, `POST ${ctx.apiPath('/encode')}`), '.'),
    form, status, result);

  function showError(msg) {
    areaError.textContent = msg;
    areaError.hidden = !msg;
    area.setAttribute('aria-invalid', msg ? 'true' : 'false');
  }

  // An input that cannot be encoded: says why, focuses the field at fault and
  // clears the result, which would otherwise read as this input's.
  function refuse(msg, field) {
    showError(msg);
    status.textContent = '';
    fill(result, h('h2', { id: 'encode-result-h', class: 'sr-only' }, 'Result'));
    field.focus();
  }

  async function encode(vector) {
    // Labels come from the index: not asked for when saed said it has none.
    let withLabels = model ? Boolean(model.index) : true;
    const body = { input: vector, include: withLabels ? ['metrics', 'features'] : ['metrics'] };
    const k = Number(topK.value);
    if (topK.value !== '' && !(Number.isInteger(k) && k > 0)) {
      refuse('Top k must be a whole number of at least 1.', topK);
      return;
    }
    if (topK.value !== '') body.top_k = k;
    result.setAttribute('aria-busy', 'true');
    status.textContent = '';
    fill(result, loadingState('Encoding…'));
    submit.disabled = true;
    let reply;
    try {
      try {
        reply = await api(ctx.apiPath('/encode'), { method: 'POST', body, signal: ctx.signal });
      } catch (e) {
        // Labels need an index; without one saed refuses "features", so ask again without it.
        if (!isNoIndex(e)) throw e;
        body.include = ['metrics'];
        withLabels = false;
        reply = await api(ctx.apiPath('/encode'), { method: 'POST', body, signal: ctx.signal });
      }
    } catch (e) {
      if (e.name === 'AbortError') return;
      status.textContent = 'Could not encode.';
      fill(result, errorState(e, () => encode(vector), 'Could not encode'));
      return;
    } finally {
      submit.disabled = false;
      result.setAttribute('aria-busy', 'false');
    }
    const r = reply.results?.[0];
    if (!r) {
      fill(result, errorState(new ApiError(200, 'bad_reply', 'The reply has no result.')));
      return;
    }
    // Kept in this history entry, so that Back from a feature opened from the
    // bars finds the page as it was left.
    history.replaceState({ ...history.state, encode: { input: area.value, topK: topK.value } }, '',
      location.href);
    const n = Array.isArray(r.indices) ? r.indices.length : 0;
    const warned = quality(r);
    status.textContent = `Encoded: ${fmtInt(r.l0)} active feature${r.l0 === 1 ? '' : 's'}${warned ? '; the reconstruction is poor (see the warning)' : ''}.`;
    fill(result,
      h('h2', { id: 'encode-result-h' }, 'Active features'),
      h('dl', { class: 'stats metrics' },
        metric('l0', 'l0', fmtInt(r.l0), 'number of active features (whole SAE output)'),
        metric('mse', 'mse', fmtNum(r.mse), 'mean squared error of the reconstruction'),
        metric('fvu', 'fvu', fmtNum(r.fvu), 'fraction of variance unexplained'),
        metric('cosine', 'cosine', fmtNum(r.cosine), 'cosine of input and reconstruction')),
      warned,
      n < r.l0 ? h('p', { class: 'muted' }, `Showing the ${fmtInt(n)} largest of ${fmtInt(r.l0)} active features.`) : null,
      bars(r, labelsOf(r), ctx, withLabels));
  }

  async function loadDirection(i, { run }) {
    showError('');
    if (!Number.isInteger(i) || i < 0 || (model?.d_sae && i >= model.d_sae)) {
      showError(model?.d_sae ? `Feature index must be between 0 and ${fmtInt(model.d_sae - 1)}.` : 'Feature index must be a whole number ≥ 0.');
      featureInput.focus();
      return;
    }
    loadBtn.disabled = true;
    try {
      const v = vectorOf(await api(ctx.apiPath(`/features/${i}/vector`), { signal: ctx.signal }));
      if (!v) throw new ApiError(200, 'bad_reply', 'The vector reply holds no array.');
      // The address names the feature so the result can be shared; no re-render needed.
      history.replaceState(history.state, '', ctx.href(`/encode?feature=${i}`));
      area.value = JSON.stringify(v);
      if (run) await encode(v);
    } catch (e) {
      if (e.name === 'AbortError') return;
      showError(`Could not load the decoder direction of feature ${i}: ${e.message}`);
    } finally {
      loadBtn.disabled = false;
    }
  }

  loadBtn.addEventListener('click', () => {
    const i = Number(featureInput.value);
    loadDirection(featureInput.value === '' ? NaN : i, { run: true });
  });
  featureInput.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') {
      e.preventDefault();
      loadBtn.click();
    }
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const { vector, error } = parseVector(area.value, dIn);
    if (error) {
      refuse(area.value.trim() ? error : 'Paste a vector first.', area);
      return;
    }
    showError('');
    encode(vector);
  });

  // What the page was left with (Back), else the feature the address names;
  // `ready` settles once its result is drawn (router.js restores the scroll).
  const first = ctx.query.get('feature');
  const saved = history.state?.encode;
  let ready = null;
  if (saved && typeof saved.input === 'string') {
    area.value = saved.input;
    topK.value = saved.topK ?? '';
    const { vector } = parseVector(saved.input, dIn);
    if (vector) ready = encode(vector);
  } else if (first !== null && first !== '') {
    ready = loadDirection(Number(first), { run: true });
  }
  return { ready };
}
