// One example in its document (/features/{i}/examples/{kind}/{rank}, or under
// /saes/{id}): the example's whole stored window, its document's name and
// positions, and every other window of the same feature that the index
// stored from that document (top and quantile), merged by position, with
// the gaps between them said in tokens. saed holds no corpus, so the page
// shows what the index knows of the document, and says so. Links go to the
// neighbouring examples of the same kind and back to the feature.

import { ApiError, api, isNoIndex } from './api.js';
import { emptyState, errorState, fill, h, loadingState, pageHeading } from './dom.js';
import { featureLabel, fmtCount, fmtInt, fmtNum } from './format.js';
import { examplePath } from './page-feature.js';
import { docPos, exampleMarks, posLabel, tokenLine } from './tokens.js';

const KIND_NAME = { top: 'Top example', quantile: 'Quantile example' };

// "top example 3" (1-based, as people count; the address keeps the API's 0-based rank).
function exampleName(kind, rank) {
  return `${kind === 'top' ? 'top' : 'quantile'} example ${fmtInt(rank + 1)}`;
}

// "document tokens 28–92" (or window tokens, when the API gives no offset).
function rangeLabel(ex, n) {
  const a = docPos(ex, 0);
  return a === null ? `window tokens 0–${fmtInt(n - 1)}` : `document tokens ${fmtInt(a)}–${fmtInt(a + n - 1)}`;
}

// A definition list of what is known of the example and its document.
function facts(d) {
  const ex = d.example;
  const { markAt, maxAt } = exampleMarks(ex);
  const n = ex.tokens?.length ?? 0;
  const row = (name, key, ...value) => [h('dt', {}, name), h('dd', { 'data-fact': key }, ...value)];
  return h('dl', { class: 'facts' },
    row('Document', 'document', h('code', { class: 'doc' }, String(d.document?.name ?? ex.document ?? '?')),
      Number.isInteger(d.document?.index) ? ` (document ${fmtInt(d.document.index)} of the tokens file, counting from 0)` : ''),
    row('Window', 'window', n ? rangeLabel(ex, n) : '—', ` · ${fmtCount(n, 'token')}`,
      Number.isInteger(d.context) ? ` (the index stores ${d.context} tokens either side of an example's token, fewer at a document's ends)` : ''),
    row(markAt === maxAt ? 'Max' : 'Sampled', 'focus', h('strong', {}, fmtNum(ex.values?.[markAt])), ` at ${posLabel(ex, markAt)}`),
    markAt !== maxAt ? row('Max in the window', 'max', h('strong', {}, fmtNum(ex.max_value)), ` at ${posLabel(ex, maxAt)}`) : null,
    typeof ex.bin_min === 'number'
      ? row('Quantile bin', 'bin', `activation ${fmtNum(ex.bin_min, 3)} – ${fmtNum(ex.bin_max, 3)}`) : null);
}

// One merged span of the document: its position range and its tokens, with
// every stored example's token marked (this example's as the page's mark),
// and the examples it holds as links.
function spanBlock(d, span, scale, ref) {
  const n = span.tokens?.length ?? 0;
  const off = span.token_offset;
  const marks = new Map();
  const here = [];
  for (const e of span.examples || []) {
    const mine = e.kind === d.kind && e.rank === d.rank;
    const k = e.position - off;
    if (k >= 0 && k < n && (mine || !marks.get(k) || marks.get(k).other)) {
      marks.set(k, mine ? { note: 'this example' } : { note: exampleName(e.kind, e.rank), other: true });
    }
    here.push(mine
      ? h('li', { class: 'this' }, h('strong', {}, `This ${exampleName(e.kind, e.rank)}`), ` at document token ${fmtInt(e.position)} (${fmtNum(e.value)})`)
      : h('li', {}, h('a', { href: ref.href(examplePath(d.feature, e.kind, e.rank)) }, exampleName(e.kind, e.rank)),
        ` at document token ${fmtInt(e.position)} (${fmtNum(e.value)})`));
  }
  const view = { tokens: span.tokens, values: span.values, token_offset: off, document: d.document?.name };
  return h('section', { class: 'span', 'data-offset': off, 'data-length': n, 'aria-label': `Document tokens ${off} to ${off + n - 1}` },
    h('p', { class: 'span-range muted' }, `Document tokens ${fmtInt(off)}–${fmtInt(off + n - 1)}`),
    tokenLine(view, scale, { marks }),
    h('ul', { class: 'span-examples' }, here));
}

// "123 tokens the index does not hold": between spans, and before the first.
function gap(tokens, where) {
  return h('p', { class: 'gap muted', 'data-gap': tokens }, `… ${fmtCount(tokens, 'token')} ${where} not stored in the index …`);
}

function documentView(d, scale, ref) {
  const spans = Array.isArray(d.spans) ? d.spans : [];
  const out = [];
  let end = 0;
  spans.forEach((sp, k) => {
    const before = sp.token_offset - end;
    if (before > 0) out.push(gap(before, k ? 'between these windows' : 'before this window'));
    out.push(spanBlock(d, sp, scale, ref));
    end = sp.token_offset + (sp.tokens?.length ?? 0);
  });
  out.push(h('p', { class: 'gap muted' }, '… the rest of the document (if any) is not stored in the index.'));
  return out;
}

export async function render(main, ctx) {
  const [pi, kind, pr] = ctx.params;
  const i = pi.length > 15 ? Number.MAX_SAFE_INTEGER : Number(pi);
  const rank = pr.length > 10 ? Number.MAX_SAFE_INTEGER : Number(pr);
  const name = `${KIND_NAME[kind]} ${fmtInt(rank + 1)} of feature ${i}`;
  const where = ctx.scope ? ` · ${ctx.scope}` : '';
  document.title = `${name}${where} · saed`;
  fill(main, pageHeading(name), loadingState('Loading the example…'));
  const [d, f] = await Promise.all([
    api(ctx.apiPath(`/features/${i}/examples/${kind}/${rank}`), { signal: ctx.signal }).catch((e) => e),
    api(ctx.apiPath(`/features/${i}`), { signal: ctx.signal }).catch(() => null),
  ]);
  ctx.signal.throwIfAborted();
  const back = h('a', { href: ctx.href(`/features/${i}`) }, `Feature ${i}`);
  if (d instanceof Error) {
    if (d.name === 'AbortError') throw d;
    if (isNoIndex(d)) {
      fill(main, pageHeading(name), emptyState('No feature index is loaded',
        h('p', {}, 'Examples come from the index saed is started with (', h('code', {}, '--index FILE.db'), ').')));
    } else if (d instanceof ApiError && d.status === 404) {
      fill(main, pageHeading(name), emptyState('No such example',
        h('p', {}, d.message, '. ', back, ' lists the examples the index has.')));
    } else {
      fill(main, pageHeading(name), errorState(d, () => render(main, ctx), 'Could not load the example'));
    }
    return null;
  }
  const label = f ? featureLabel(f) : null;
  const total = kind === 'top' ? f?.n_top_examples : f?.n_quantile_examples;
  // Shading relative to the feature's max, as on the feature page.
  const scale = f?.max_activation > 0 ? f.max_activation : Math.max(0, d.example?.max_value ?? 0);
  const ref = { href: ctx.href };
  const step = (r, rel, text) => (r >= 0 && (!Number.isInteger(total) || r < total)
    ? h('a', { href: ctx.href(examplePath(i, kind, r)), rel, class: 'button', 'data-nav-rel': rel }, text)
    : h('span', { class: 'button disabled', 'aria-disabled': 'true' }, text));
  fill(main,
    h('div', { class: 'feature-head' },
      h('div', {},
        h('p', { class: 'crumbs' },
          h('a', { href: ctx.href('/') }, ctx.scope ? `Features of ${ctx.scope}` : 'Features'), ' / ',
          h('a', { href: ctx.href(`/features/${i}`) }, `#${i}`), ' / ', exampleName(kind, rank)),
        pageHeading(name),
        label ? h('p', { class: 'feature-label-line' }, h('span', { class: 'feature-label' }, label)) : null),
      h('nav', { class: 'prevnext', 'aria-label': `Neighbouring ${kind} examples` },
        step(rank - 1, 'prev', rank > 0 ? `‹ ${exampleName(kind, rank - 1)}` : '‹ Previous'),
        step(rank + 1, 'next', `${exampleName(kind, rank + 1)} ›`))),
    Number.isInteger(total) ? h('p', { class: 'muted' }, `${KIND_NAME[kind]} ${fmtInt(rank + 1)} of ${fmtInt(total)}.`) : null,
    h('section', { class: 'panel example-window', 'aria-labelledby': 'window-h' },
      h('h2', { id: 'window-h' }, 'The stored window'),
      facts(d),
      tokenLine({ ...d.example, document: d.document?.name ?? d.example?.document }, scale)),
    h('section', { class: 'panel in-document', 'aria-labelledby': 'doc-h' },
      h('h2', { id: 'doc-h' }, 'In its document'),
      h('p', { class: 'muted hint' },
        `saed holds no corpus: these are the windows the index stored from this document for feature ${i} `,
        '(its top and quantile examples), merged where they overlap. Each example\'s token is underlined; this example\'s is bold. ',
        'Other features\' windows from the document are not shown.'),
      ...documentView({ ...d, feature: i }, scale, ref)),
    h('p', { class: 'muted api-links' }, 'Same data from the API: ',
      h('code', {}, `GET ${ctx.apiPath(`/features/${i}/examples/${kind}/${rank}`)}`), ' · ', back));
  return null;
}
