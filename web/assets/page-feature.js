// One feature (/features/{i}, or /saes/{id}/features/{i}: a deep link): label
// and explanations, statistics, the activation histogram, top and quantile
// examples with shaded tokens, decoder-cosine neighbours, the logit tables and
// their histogram (when the index has them), and links to the previous and
// next feature. Every link and request stays in the page's SAE (ctx.href,
// ctx.apiPath): a feature's neighbours are features of its own SAE.

import { ApiError, api, getModel, isNoIndex, mapLimit } from './api.js';
import { histogramPlot, histogramTable } from './charts.js';
import { DEAD_NOTE, deadBadge, emptyState, errorState, fill, h, loadingState, pageHeading, s } from './dom.js';
import {
  CLIP_HI, CLIP_LO, bestExplanation, byScore, clippedRange, displayToken, featureLabel, fmtCount, fmtDensity, fmtInt, fmtNum, fmtScore, histogramRange, isDead, isWeak,
  scorerOf,
} from './format.js';
import { SHOWN_CONTEXT, exampleMarks, exampleTokens, posLabel } from './tokens.js';

const MORE = 20; // examples fetched per "show more"
const QUANTILE_PAGE = 100;

// How much of the activations a quantile bin holds: a fraction (0..1) reads
// as a percentage, a whole number as a token count.
export function fmtBinContains(x) {
  if (typeof x !== 'number' || !Number.isFinite(x)) return null;
  if (Number.isInteger(x) && x > 1) return `${fmtInt(x)} tokens`;
  return `${fmtNum(x * 100, 3)}% of activations`;
}

// One statistic: its name, its value, and a visible note saying what the
// number is over (no meaning kept in a hover title: touch users cannot hover).
function stat(name, key, value, note) {
  return h('div', { class: 'stat' }, h('dt', {}, name),
    h('dd', { 'data-stat': key }, value),
    note ? h('dd', { class: 'stat-note', 'data-stat-note': key }, note) : null);
}

// "3,670 of 44,635 tokens": where the feature is active, out of the tokens
// the index covers (n_tokens of the feature reply, else the model's index
// summary); null when neither count is known.
export function activeOf(f, model) {
  const N = Number.isInteger(f.n_tokens) && f.n_tokens > 0 ? f.n_tokens : model?.index?.n_tokens;
  if (!Number.isInteger(f.n_active)) return null;
  return Number.isInteger(N) && N > 0 ? `${fmtInt(f.n_active)} of ${fmtInt(N)} tokens` : fmtCount(f.n_active, 'active token');
}

// The browser path of example `rank` (0-based, as the API numbers it) of
// kind top or quantile: the example in its document.
export function examplePath(i, kind, rank) {
  return `/features/${i}/examples/${kind}/${rank}`;
}

// One example: its document, the value of the token it was picked for (a
// quantile example's sampled token lies in its bin; the window's max may
// not) and, when that is not the max, the max too, each at its document
// position; its tokens (±SHOWN_CONTEXT, expandable to the stored window);
// and a link to the example in its document.
function example(ex, scale, kind, rank, ref) {
  const { markAt, maxAt } = exampleMarks(ex);
  const picked = markAt !== maxAt && typeof ex.values?.[markAt] === 'number';
  const value = picked
    ? h('span', { class: 'picked' }, 'sampled ', h('strong', {}, fmtNum(ex.values[markAt])),
      ` at ${posLabel(ex, markAt)} · max ${fmtNum(ex.max_value)} at ${posLabel(ex, maxAt)}`)
    : h('span', {}, 'max ', h('strong', {}, fmtNum(ex.max_value)), ` at ${posLabel(ex, maxAt)}`);
  return h('li', { class: 'example', 'data-kind': kind, 'data-rank': rank },
    h('p', { class: 'example-meta' },
      h('span', {}, 'document ', h('code', { class: 'doc' }, String(ex.document ?? '?'))), value,
      Number.isInteger(rank)
        ? h('a', { class: 'in-document', href: ref.href(examplePath(ref.i, kind, rank)) }, 'Open in document')
        : null),
    exampleTokens(ex, scale));
}

// What the examples show, above the top examples: the shading, the marks,
// how to read a value, and how much of each window is shown and stored.
function examplesHint(model) {
  const stored = model?.index?.build?.context;
  return h('p', { class: 'muted hint' },
    'Shading is relative to the feature\'s max activation; the token an example stands for (its max; in a quantile example, the token sampled into the bin) is underlined. ',
    'Hover or tap a token, or Tab to an example and use the arrow keys, to read its value. ',
    `Each example shows ${SHOWN_CONTEXT} tokens either side of that token`,
    Number.isInteger(stored) && stored > SHOWN_CONTEXT ? `; Expand shows all the index stored (${stored} either side). ` : '. ',
    'Positions are document positions (token 0 is the document\'s first).');
}

// Section with a heading; `id` makes it a skip target.
function section(id, title, ...body) {
  return h('section', { class: `panel ${id}`, 'aria-labelledby': `${id}-h` },
    h('h2', { id: `${id}-h` }, title), ...body);
}

function prevNext(i, dSae, ctx) {
  const link = (j, rel, text) => (j >= 0 && (dSae == null || j < dSae)
    ? h('a', { href: ctx.href(`/features/${j}`), rel, class: 'button', 'data-nav-rel': rel }, text)
    : h('span', { class: 'button disabled', 'aria-disabled': 'true' }, text));
  return h('nav', { class: 'prevnext', 'aria-label': 'Neighbouring indices' },
    link(i - 1, 'prev', i > 0 ? `‹ #${i - 1}` : '‹ Previous'),
    link(i + 1, 'next', `#${i + 1} ›`));
}

function histogramFigure(f) {
  const range = histogramRange(f.histogram?.counts);
  if (!range) {
    return emptyState('No activations recorded',
      h('p', {}, 'This feature was never active on the indexed corpus, so its histogram is empty.'));
  }
  const plotBox = h('div', { class: 'plot' });
  const n = f.histogram.counts.length;
  const clip = clippedRange(f.histogram.counts);
  const total = f.histogram.counts.reduce((a, b) => a + (b > 0 ? b : 0), 0);
  const out = [];
  if (clip.below) out.push(`${fmtCount(clip.below, 'token')} below ${fmtNum(f.histogram.edges?.[clip.lo], 3)}`);
  if (clip.above) out.push(`${fmtCount(clip.above, 'token')} above ${fmtNum(f.histogram.edges?.[clip.hi + 1], 3)} (up to the max, ${fmtNum(f.max_activation)})`);
  const fig = h('figure', { class: 'hist' }, plotBox,
    h('figcaption', {}, `Activation histogram over the ${fmtCount(total, 'token')} where the feature is active` +
      `: the ${CLIP_LO}th to ${CLIP_HI}th percentile, bins ${clip.lo}–${clip.hi} of ${n}` +
      (out.length ? `; not drawn: ${out.join(', ')}` : '') + '. Bar heights are token counts.'),
    h('details', { class: 'bins-table' }, h('summary', {}, 'Show the bins as a table'), histogramTable(f.histogram)));
  let drawnWidth = 0;
  const draw = () => {
    const w = Math.floor(plotBox.clientWidth);
    if (w <= 0 || Math.abs(w - drawnWidth) < 8) return;
    drawnWidth = w;
    fill(plotBox, histogramPlot(f.histogram, w));
  };
  new ResizeObserver(draw).observe(plotBox);
  return fig;
}

// One logit table: the tokens the feature's decoder direction promotes
// (pos) or suppresses (neg) through the unembedding, with W_dec[i] . W_U.
function logitTable(rows, kind, caption) {
  return h('table', { class: `logits ${kind}` },
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Token'), h('th', { scope: 'col' }, 'Logit'))),
    h('tbody', {}, (rows || []).map((r) => h('tr', { 'data-token-id': String(r.id) },
      h('td', {}, h('code', { class: 'tok-str' }, displayToken(r.token)), h('span', { class: 'tok-id muted' }, ` id ${r.id}`)),
      h('td', { class: 'num' }, fmtNum(r.value))))));
}

// The histogram of all V logits: one bar per bin, bars left of 0 in the
// negative colour.
function logitHistogram(hist) {
  const heights = hist?.bar_heights || [];
  const values = hist?.bar_values || [];
  const W = 300, H = 90, n = heights.length, top = Math.max(1, ...heights);
  const bw = n ? W / n : W;
  const svg = s('svg', { class: 'logit-hist', viewBox: `0 0 ${W} ${H + 14}`, role: 'img',
    'aria-label': `Histogram of the logits over ${fmtInt(heights.reduce((a, b) => a + b, 0))} tokens, from ${fmtNum(hist?.min)} to ${fmtNum(hist?.max)}` });
  heights.forEach((c, k) => {
    const bh = c ? Math.max(1, (c / top) * H) : 0;
    svg.append(s('rect', { x: k * bw, width: Math.max(0.5, bw - 0.5), y: H - bh, height: bh,
      class: values[k] < 0 ? 'neg' : 'pos' }, s('title', {}, `${fmtNum(values[k])}: ${fmtInt(c)} tokens`)));
  });
  svg.append(s('text', { x: 0, y: H + 12, class: 'tick' }, fmtNum(hist?.min)));
  svg.append(s('text', { x: W, y: H + 12, class: 'tick', 'text-anchor': 'end' }, fmtNum(hist?.max)));
  return svg;
}

// The bars of the logit histogram as a table (what each bar's hover title
// says, reachable without hovering).
function logitBarsTable(hist) {
  const heights = hist?.bar_heights || [];
  const values = hist?.bar_values || [];
  if (!heights.length) return null;
  return h('details', { class: 'bins-table' }, h('summary', {}, 'Show the bars as a table'),
    h('table', { class: 'bins' },
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'logit (bar centre)'), h('th', { scope: 'col', class: 'num' }, 'tokens'))),
      h('tbody', {}, heights.map((c, k) => h('tr', {}, h('td', {}, fmtNum(values[k])), h('td', { class: 'num' }, fmtInt(c)))))));
}

function logits(f) {
  const l = f.logits;
  if (!l) {
    return emptyState('Logit tables not computed',
      h('p', {}, 'Build the index with ', h('code', {}, 'sae index --unembed SOURCE --vocab FILE'),
        ', or add them to this one with ', h('code', {}, 'sae index --upgrade'), '.'));
  }
  return h('div', { class: 'logits-box' },
    h('div', { class: 'logit-tables' },
      logitTable(l.neg, 'neg', 'Negative logits'),
      logitTable(l.pos, 'pos', 'Positive logits')),
    h('figure', { class: 'logit-figure' }, logitHistogram(l.histogram),
      h('figcaption', {}, 'W_dec[i] · W_U over the whole vocabulary: bars count tokens, negative ones in the negative colour'),
      logitBarsTable(l.histogram)));
}

function explanations(f) {
  const list = byScore((Array.isArray(f.explanations) ? f.explanations : []).filter((e) => e && e.description));
  if (!list.length) {
    return emptyState('No explanations yet',
      h('p', {}, 'Explanations come from ', h('code', {}, 'sae index --explanations FILE'), '.'));
  }
  return h('ol', { class: 'explanations' }, list.map((e) => h('li', {},
    h('p', { class: 'desc' }, e.description),
    h('p', { class: 'muted meta' },
      h('span', { 'data-field': 'score' }, typeof e.score === 'number' ? `score ${fmtScore(e.score)}` : 'no score'),
      scorerOf(e) ? [' · ', h('span', { 'data-field': 'source' }, `${typeof e.score === 'number' ? 'scored by' : 'source'} ${scorerOf(e)}`)] : null,
      isWeak(e) ? [' · ', h('span', { class: 'weak-note' }, 'weak')] : null))));
}

function neighbours(f, ctx) {
  const list = Array.isArray(f.neighbours) ? f.neighbours : [];
  if (!list.length) return emptyState('No neighbours recorded');
  const need = [];
  const items = list.map((nb) => {
    const label = h('span', { class: 'nb-label muted' }, '');
    const badge = h('span', { class: 'nb-badge' });
    const show = (text, dead) => {
      label.textContent = text ?? '(no explanation)';
      label.classList.toggle('weak', dead);
      fill(badge, dead ? [' ', deadBadge()] : null);
    };
    // saed labels the neighbours of GET /v1/features/{i} (label, density).
    if ('label' in nb) show(nb.label, nb.density === 0);
    else need.push({ nb, show });
    return h('li', { 'data-index': nb.index },
      h('a', { href: ctx.href(`/features/${nb.index}`) }, `#${nb.index}`), ' ', label, badge,
      h('span', { class: 'num cos' }, `cos ${fmtNum(nb.cosine, 3)}`));
  });
  // An older saed: labels from each neighbour's own record; a failure leaves the link bare.
  mapLimit(need, 4, async ({ nb, show }) => {
    try {
      const g = await api(ctx.apiPath(`/features/${nb.index}`), { signal: ctx.signal });
      show(featureLabel(g), isDead(g));
    } catch {
      /* leave it bare */
    }
  });
  const anyDead = list.some((nb) => nb.density === 0);
  return h('div', {}, h('p', { class: 'muted caption' }, 'cos: the cosine of the two features\' decoder directions.',
    anyDead ? ` dead: ${DEAD_NOTE}.` : ''),
  h('ol', { class: 'neighbours' }, items));
}

async function topExamples(f, i, scale, ctx) {
  const { signal } = ctx;
  let first = f.top_examples;
  if (!Array.isArray(first)) {
    // Not in the record: read the first page from the examples route instead.
    first = (await api(ctx.apiPath(`/features/${i}/examples?kind=top&limit=${MORE}&offset=0`), { signal })).examples || [];
  }
  if (!first.length) {
    return emptyState('No examples recorded',
      h('p', {}, 'The feature never fired on the indexed corpus.'));
  }
  const ref = { i, href: ctx.href };
  const list = h('ol', { class: 'examples top' }, first.map((ex, r) => example(ex, scale, 'top', r, ref)));
  const note = h('p', { class: 'muted', role: 'status' });
  const more = h('button', { type: 'button', class: 'more' }, 'Show more top examples');
  more.addEventListener('click', async () => {
    more.disabled = true;
    note.textContent = 'Loading…';
    try {
      const shown = list.children.length;
      const data = await api(ctx.apiPath(`/features/${i}/examples?kind=top&limit=${MORE}&offset=${shown}`), { signal });
      const got = Array.isArray(data.examples) ? data.examples : [];
      const firstNew = got.length ? example(got[0], scale, 'top', shown, ref) : null;
      if (firstNew) list.append(firstNew, ...got.slice(1).map((ex, k) => example(ex, scale, 'top', shown + 1 + k, ref)));
      const now = list.children.length;
      note.textContent = typeof data.total === 'number' ? `Showing ${now} of ${fmtInt(data.total)}.` : '';
      if (got.length < MORE || (typeof data.total === 'number' && now >= data.total)) more.remove();
      else more.disabled = false;
      firstNew?.querySelector('.tok[tabindex="0"]')?.focus();
    } catch (e) {
      if (e.name === 'AbortError') return;
      note.textContent = `Could not load more: ${e.message}`;
      more.disabled = false;
    }
  });
  return h('div', {}, list, h('div', { class: 'more-row' }, more, note));
}

// Quantile examples grouped by their bin, highest activations first.
async function quantiles(box, i, scale, ctx) {
  const { signal } = ctx;
  fill(box, loadingState('Loading quantile examples…'));
  let all = [];
  let total = 0;
  try {
    do {
      const data = await api(ctx.apiPath(`/features/${i}/examples?kind=quantile&limit=${QUANTILE_PAGE}&offset=${all.length}`), { signal });
      const got = Array.isArray(data.examples) ? data.examples : [];
      all = all.concat(got);
      total = typeof data.total === 'number' ? data.total : all.length;
      if (!got.length) break;
    } while (all.length < total && all.length < 1000);
  } catch (e) {
    if (e.name === 'AbortError') return;
    fill(box, errorState(e, () => quantiles(box, i, scale, ctx), 'Could not load quantile examples'));
    return;
  }
  if (!all.length) {
    fill(box, emptyState('No quantile examples recorded'));
    return;
  }
  // Each example keeps its rank (its place in the API's order) for its link.
  const groups = new Map();
  all.forEach((ex, rank) => {
    const key = `${ex.bin_min}|${ex.bin_max}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push({ ex, rank });
  });
  const ordered = [...groups.values()].sort((a, b) => (b[0].ex.bin_min ?? 0) - (a[0].ex.bin_min ?? 0));
  const ref = { i, href: ctx.href };
  fill(box, ...ordered.map((exs, k) => {
    const b = exs[0].ex;
    const contains = fmtBinContains(b.bin_contains);
    return h('details', { class: 'qbin', open: k < 3, 'data-bin-min': b.bin_min, 'data-bin-max': b.bin_max },
      h('summary', {},
        h('span', { class: 'qbin-range' }, `Activation ${fmtNum(b.bin_min, 3)} – ${fmtNum(b.bin_max, 3)}`),
        h('span', { class: 'muted' }, ` · ${exs.length} example${exs.length === 1 ? '' : 's'}`,
          contains ? ` · bin holds ${contains}` : '')),
      h('ol', { class: 'examples' }, exs.map(({ ex, rank }) => example(ex, scale, 'quantile', rank, ref))));
  }));
}

// The box to test feature i on your own text (with saed --lm): the text
// goes to POST .../encode_text and comes back tokenized, shaded by feature i
// relative to `scale` as the examples are, with its largest value here.
function textBox(i, scale, ctx, lm) {
  const area = h('textarea', { id: 'try-text-input', rows: 3, 'aria-describedby': 'try-text-error',
    placeholder: 'Type or paste some text' });
  const error = h('p', { class: 'field-error', id: 'try-text-error', role: 'alert', hidden: true });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Run');
  const out = h('div', { class: 'try-text-result' });
  // Only this line is announced (aria-live), not the tokens above it.
  const status = h('p', { class: 'muted try-text-max', 'aria-live': 'polite' });
  const showError = (msg) => {
    error.textContent = msg;
    error.hidden = !msg;
  };
  const form = h('form', { class: 'encode-form try-text-form', novalidate: true },
    h('div', { class: 'field' }, h('label', { for: 'try-text-input' }, `Text to run feature ${i} on`), area, error),
    h('div', { class: 'row' }, h('div', { class: 'field end' }, submit),
      h('p', { class: 'muted' }, h('a', { href: ctx.href(`/text?feature=${i}`) }, 'All features on a text'))));
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    showError('');
    if (!area.value) {
      showError('Type some text first.');
      area.focus();
      return;
    }
    submit.disabled = true;
    status.textContent = '';
    fill(out, loadingState('Running…'));
    // page-text.js loads when the box is first used: most visits never use
    // it, and every module the page imports statically is one more file on
    // its first load (index.html preloads the ones it needs).
    let textError = (err) => `The text could not be run: ${err.message}`;
    try {
      const text = await import('./page-text.js');
      textError = text.textError;
      const { encodeText, shadedTokens, valuesOf } = text;
      const reply = await encodeText(ctx, area.value);
      const values = valuesOf(reply, i);
      const top = Math.max(0, ...values);
      const at = values.indexOf(top);
      fill(out, shadedTokens(reply, i, scale));
      status.textContent = top > 0
        ? `Largest value here: ${fmtNum(top)}, on ${JSON.stringify(reply.tokens[at].text)}${scale > 0 ? ` (${fmtNum((top / scale) * 100, 3)}% of its max)` : ''}.`
        : `Feature ${i} is not active on any of these ${fmtInt(values.length)} tokens.`;
    } catch (err) {
      if (err.name === 'AbortError') return;
      fill(out);
      showError(textError(err, lm));
      area.focus();
    } finally {
      submit.disabled = false;
    }
  });
  return h('div', {}, form, out, status);
}

export async function render(main, ctx) {
  // Beyond 2^53 a Number would print another index; such a feature cannot exist anyway.
  const i = ctx.params[0].length > 15 ? Number.MAX_SAFE_INTEGER : Number(ctx.params[0]);
  const where = ctx.scope ? ` · ${ctx.scope}` : '';
  document.title = `Feature ${i}${where} · saed`;
  fill(main, pageHeading(`Feature ${i}`), loadingState('Loading feature…'));
  const [model, f] = await Promise.all([
    getModel(ctx.scope).catch(() => null),
    api(ctx.apiPath(`/features/${i}`), { signal: ctx.signal }).catch((e) => e),
  ]);
  ctx.signal.throwIfAborted(); // the model may have come after another page took <main>
  if (f instanceof Error) {
    if (f.name === 'AbortError') throw f;
    if (isNoIndex(f)) {
      fill(main, pageHeading(`Feature ${i}`), emptyState('No feature index is loaded',
        h('p', {}, 'Start saed with ', h('code', {}, '--index FILE.db'), ' (built by ', h('code', {}, 'sae index'),
          ') to see statistics and examples. The ', h('a', { href: ctx.href(`/encode?feature=${i}`) }, 'encoder'),
          ' still works.')));
    } else if (f instanceof ApiError && f.status === 404) {
      const dSae = model?.d_sae;
      fill(main, pageHeading(`Feature ${i}`), emptyState('No such feature',
        h('p', {}, dSae ? `This SAE has ${fmtInt(dSae)} features, numbered 0 to ${fmtInt(dSae - 1)}. ` : '',
          h('a', { href: ctx.href('/') }, 'Browse the feature list'), '.')));
    } else {
      fill(main, pageHeading(`Feature ${i}`), errorState(f, () => render(main, ctx), 'Could not load the feature'));
    }
    return null;
  }

  const label = featureLabel(f);
  const best = bestExplanation(f);
  const dead = isDead(f);
  if (label) document.title = `#${i} ${label}${where} · saed`;
  // Shading is relative to the feature's max, so examples compare across the page.
  const scale = f.max_activation > 0 ? f.max_activation : Math.max(0, ...(f.top_examples || []).map((e) => e.max_value || 0));
  const top = await topExamples(f, i, scale, ctx).catch((e) => {
    if (e.name === 'AbortError') throw e;
    return errorState(e, null, 'Could not load the top examples');
  });
  const qbox = h('div', { class: 'quantiles' });
  // Gone to another page meanwhile (Back): that page owns <main> now.
  ctx.signal.throwIfAborted();

  fill(main,
    h('div', { class: 'feature-head' },
      h('div', {},
        h('p', { class: 'crumbs' },
          h('a', { href: ctx.href('/') }, ctx.scope ? `Features of ${ctx.scope}` : 'Features'), ' / ', `#${i}`),
        pageHeading(`Feature ${i}`),
        h('p', { class: 'feature-label-line' },
          h('span', { class: `feature-label${label ? '' : ' muted'}${dead || isWeak(best) ? ' weak' : ''}` }, label ?? 'No explanation yet'),
          dead ? [' ', deadBadge(), h('span', { class: 'muted dead-note' }, ` ${DEAD_NOTE}`)] : null,
          best && typeof best.score === 'number'
            ? h('span', { class: 'muted label-score' }, ` · score ${fmtScore(best.score)}${scorerOf(best) ? `, scored by ${scorerOf(best)}` : ''}`)
            : null)),
      prevNext(i, model?.d_sae, ctx)),
    h('dl', { class: 'stats' },
      stat('Density', 'density', fmtDensity(f.density), activeOf(f, model) ?? 'fraction of the indexed tokens'),
      stat('Max activation', 'max_activation', dead ? '—' : fmtNum(f.max_activation), 'over the indexed tokens'),
      stat('Mean activation', 'mean_activation', dead ? '—' : fmtNum(f.mean_activation), 'over the active tokens'),
      stat('Decoder norm', 'decoder_norm', fmtNum(f.decoder_norm), 'length of W_dec[i]')),
    h('div', { class: 'feature-grid' },
      section('histogram', 'Activations', histogramFigure(f)),
      h('div', { class: 'side' },
        section('explanations', 'Explanations', explanations(f)),
        section('neighbours', 'Nearest by decoder cosine', neighbours(f, ctx)))),
    section('logits', 'Logits', logits(f)),
    section('top', 'Top activating examples',
      examplesHint(model),
      top),
    section('quantile', 'Examples by activation quantile', qbox),
    model?.lm?.reads_hook ? section('try-text', 'Test on your own text', textBox(i, scale, ctx, model.lm)) : null,
    h('p', { class: 'muted api-links' }, 'Same data from the API: ', h('code', {}, `GET ${ctx.apiPath(`/features/${i}`)}`),
      ' · ', h('a', { href: ctx.href(`/encode?feature=${i}`) }, 'Encode this feature\'s decoder direction')));
  quantiles(qbox, i, scale, ctx);
  return null;
}
