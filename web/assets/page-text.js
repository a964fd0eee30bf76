// Try text: paste text, see it tokenized by the language model saed runs
// (saed --lm DIR) and each token's features, from POST /v1/encode_text. The
// tokens are shaded by one chosen feature (tokens.js, as the feature page's
// examples); a table lists each token's strongest features, linking to their
// pages. /text?feature=i shades by feature i. Under /saes/{id}/text all of it
// is SAE id's. Also exports what the feature page's own text box uses.

import { api, getModel } from './api.js';
import { emptyState, errorState, fill, h, loadingState, pageHeading } from './dom.js';
import { displayToken, featureLabel, fmtInt, fmtNum } from './format.js';
import { tokenLine } from './tokens.js';

export const TOP_SHOWN = 5; // features listed per token

// POSTs one text to the page's SAE and returns { tokens, results }: the
// tokens' texts and ids, and each token's features sorted by value, largest
// first. All active features come back (no top_k), so that any feature's
// value on any token is known.
export async function encodeText(ctx, text) {
  const r = await api(ctx.apiPath('/encode_text'), { method: 'POST', body: { text }, signal: ctx.signal });
  const tokens = Array.isArray(r.tokens) ? r.tokens : [];
  const results = (Array.isArray(r.results) ? r.results : []).map((x) => {
    const idx = Array.isArray(x.indices) ? x.indices : [];
    const val = Array.isArray(x.values) ? x.values : [];
    return idx.map((i, k) => ({ index: i, value: val[k] })).sort((a, b) => b.value - a.value);
  });
  return { tokens, results };
}

// Feature i's value on each token (0 where it is not active).
export function valuesOf(reply, i) {
  return reply.results.map((fs) => fs.find((f) => f.index === i)?.value ?? 0);
}

// The tokens shaded by feature i, relative to `scale` (the feature's max
// activation on the indexed corpus, or else its largest value here).
export function shadedTokens(reply, i, scale) {
  const values = valuesOf(reply, i);
  const top = Math.max(0, ...values);
  const line = tokenLine({ tokens: reply.tokens.map((t) => t.text), values, document: 'your text' },
    scale > 0 ? scale : top);
  line.dataset.feature = String(i);
  return line;
}

// A message for a text saed refused (text_too_long, empty_text, ...) that
// says what to do; the API's own message for anything else.
export function textError(e, lm) {
  if (e?.code === 'text_too_long') {
    return `This text is too long for the language model: ${e.message}. It reads at most ${fmtInt(lm?.n_ctx ?? 0)} tokens at a time${lm?.prepend_bos ? ', the BOS token included' : ''}; shorten the text.`;
  }
  if (e?.code === 'empty_text') return 'The text has no tokens: type some text first.';
  if (e?.code === 'no_lm') return 'This saed has no language model (start it with --lm DIR).';
  return e?.message || String(e);
}

// The feature with the largest value anywhere in the text, or null.
function strongest(reply) {
  let best = null;
  for (const fs of reply.results) if (fs[0] && (!best || fs[0].value > best.value)) best = fs[0];
  return best ? best.index : null;
}

// One row per token: its text, id and strongest features, each a link to
// its page with its value.
function featureTable(reply, ctx) {
  return h('table', { class: 'features token-features' },
    h('caption', { class: 'sr-only' }, 'Each token and its strongest features'),
    h('thead', {}, h('tr', {},
      h('th', { scope: 'col' }, 'Token'), h('th', { scope: 'col', class: 'num' }, 'Id'),
      h('th', { scope: 'col' }, `Top ${TOP_SHOWN} features`))),
    h('tbody', {}, reply.tokens.map((t, k) => h('tr', { 'data-token': k },
      h('td', {}, h('code', { class: 'tok-str' }, displayToken(t.text))),
      h('td', { class: 'num' }, String(t.id)),
      h('td', { class: 'top-features' }, reply.results[k].slice(0, TOP_SHOWN).map((f, j) => [
        j ? ' · ' : null,
        h('a', { href: ctx.href(`/features/${f.index}`), 'data-index': f.index }, `#${f.index}`),
        ' ', h('span', { class: 'num muted' }, fmtNum(f.value)),
      ]), reply.results[k].length ? null : h('span', { class: 'muted' }, 'none active'))))));
}

export async function render(main, ctx) {
  document.title = 'Try text · saed';
  const model = await getModel(ctx.scope).catch(() => null);
  ctx.signal.throwIfAborted(); // another page took <main> meanwhile
  const lm = model?.lm;
  if (model && (!lm || !lm.reads_hook)) {
    fill(main, pageHeading('Try text'), emptyState(lm ? 'This SAE cannot read text here' : 'No language model is loaded',
      h('p', {}, lm
        ? `Its hook (${model.hook_name || 'none'}) is not one the language model exposes at ${fmtInt(model.d_in)} wide.`
        : ['Start saed with ', h('code', {}, '--lm DIR'), ' (a GPT-2 checkpoint folder with its tokenizer) to encode text.'])));
    return null;
  }
  const area = h('textarea', { id: 'text-input', name: 'text', rows: 4, 'aria-describedby': 'text-hint text-error',
    placeholder: 'Type or paste some text' });
  const feature = h('input', { id: 'text-feature', type: 'number', min: 0, step: 1, inputmode: 'numeric',
    max: model?.d_sae ? model.d_sae - 1 : null, value: ctx.query.get('feature') ?? '' });
  const error = h('p', { class: 'field-error', id: 'text-error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Run');
  // Only this line is announced (aria-live), not the tokens and table under it.
  const status = h('p', { class: 'results-count', id: 'text-status', 'aria-live': 'polite' });
  const result = h('section', { class: 'text-result', 'aria-labelledby': 'text-result-h' },
    h('h2', { id: 'text-result-h', class: 'sr-only' }, 'Result'),
    emptyState('Nothing run yet', h('p', {}, 'Type some text and press Run to see its tokens and their features.')));
  const form = h('form', { class: 'encode-form text-form', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'text-input' }, 'Text'), area,
      h('span', { class: 'hint', id: 'text-hint' },
        lm ? `Tokenized by the ${lm.model_type} tokenizer; at most ${fmtInt(lm.n_ctx)} tokens${lm.prepend_bos ? ', the BOS token first' : ''}.` : ''),
      error),
    h('div', { class: 'row' },
      h('div', { class: 'field' }, h('label', { for: 'text-feature' }, 'Shade by feature (empty: the strongest)'), feature),
      h('div', { class: 'field end' }, submit)));
  fill(main, pageHeading('Try text'),
    h('p', { class: 'lede' }, 'Run the language model and the SAE on your own text: ', h('code', {}, `POST ${ctx.apiPath('/encode_text')}`), '.'),
    form, status, result);

  let reply = null;
  const showError = (msg) => {
    error.textContent = msg;
    error.hidden = !msg;
    area.setAttribute('aria-invalid', msg ? 'true' : 'false');
  };

  // Draws the reply shaded by feature i (the strongest when i is null).
  let drawing = 0; // the latest draw; an older one whose label came late gives way
  async function draw(i) {
    const me = ++drawing;
    const by = i ?? strongest(reply);
    const head = h('h2', { id: 'text-result-h' }, `${fmtInt(reply.tokens.length)} tokens`);
    if (by === null) {
      status.textContent = `${fmtInt(reply.tokens.length)} tokens; no feature is active.`;
      fill(result, head, emptyState('No feature is active on this text'), featureTable(reply, ctx));
      return;
    }
    feature.value = String(by);
    // The feature's label and max from the index, when there is one.
    const f = model?.index ? await api(ctx.apiPath(`/features/${by}`), { signal: ctx.signal }).catch(() => null) : null;
    const label = f ? featureLabel(f) : null;
    if (me !== drawing) return;
    status.textContent = `${fmtInt(reply.tokens.length)} tokens, shaded by feature ${by}.`;
    fill(result, head,
      h('p', { class: 'shade-note' }, 'Shaded by ', h('a', { href: ctx.href(`/features/${by}`), class: 'shade-feature' }, `#${by}`),
        label ? ` ${label}` : '',
        h('span', { class: 'muted' }, f?.max_activation > 0 ? ', relative to its max activation' : ', relative to its largest value here',
          '. Hover a token, or Tab to the text and use the arrow keys, to read its value.')),
      shadedTokens(reply, by, f?.max_activation),
      h('h3', {}, 'Each token\'s strongest features'),
      featureTable(reply, ctx));
  }

  async function run(text) {
    showError('');
    const k = feature.value === '' ? null : Number(feature.value);
    if (k !== null && !(Number.isInteger(k) && k >= 0 && (!model?.d_sae || k < model.d_sae))) {
      showError(model?.d_sae ? `The feature must be between 0 and ${fmtInt(model.d_sae - 1)}.` : 'The feature must be a whole number ≥ 0.');
      feature.focus();
      return;
    }
    submit.disabled = true;
    result.setAttribute('aria-busy', 'true');
    status.textContent = '';
    fill(result, loadingState('Running…'));
    try {
      reply = await encodeText(ctx, text);
    } catch (e) {
      if (e.name === 'AbortError') return;
      reply = null;
      const refused = e.status === 422 || e.status === 413;
      if (refused) showError(textError(e, lm));
      fill(result, refused ? null : errorState(e, () => run(text), 'Could not run the text'));
      if (refused) area.focus();
      return;
    } finally {
      submit.disabled = false;
      result.setAttribute('aria-busy', 'false');
    }
    history.replaceState({ ...history.state, text }, '', location.href);
    await draw(k);
  }

  // Another feature shades the text already run without running it again.
  feature.addEventListener('change', () => {
    const k = Number(feature.value);
    if (reply && feature.value !== '' && Number.isInteger(k) && k >= 0 && (!model?.d_sae || k < model.d_sae)) {
      showError('');
      draw(k);
    }
  });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    if (!area.value) {
      showError('Type some text first.');
      area.focus();
      return;
    }
    run(area.value);
  });
  // What the page was left with (Back).
  const kept = history.state?.text;
  if (typeof kept === 'string' && kept) {
    area.value = kept;
    return { ready: run(kept) };
  }
  return null;
}
