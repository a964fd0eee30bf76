// reference.mjs: GPT-2's tokenizer files and reference token ids from an independent
// implementation, for core/lm/bpe's comparison test (run.sh).
//
//   node reference.mjs OUT_DIR
//   node reference.mjs --small N OUT_DIR    only tokenizer.json, with GPT-2's first N merges
//                                           (tests/fuzz/bpe/tokenizer.json has N = 1000)
//
// writes into OUT_DIR:
//   tokenizer.json, vocab.json, merges.txt   GPT-2's vocabulary (r50k_base, 50257 ids) in
//                                            HF's and in openai/gpt-2's form
//   docs/NNNN.txt, docs/NNNN.ids             a document and the ids gpt-tokenizer gives it
//                                            (int32 little-endian)
//   manifest.tsv                             NNNN, mode, what the document is
//
// gpt-tokenizer ships GPT-2's vocabulary as tiktoken does: each token's bytes with its rank
// (= id), no merges list. merges.txt is recovered from the ranks the standard way: the merge
// that makes token r is the pair BPE reaches on r's bytes using only ranks below r.
//
// Modes: "ordinary" (added tokens are text), "special" (<|endoftext|> matched), and
// "whitespace". JavaScript's \s is not GPT-2's: the Python `regex` module (and HF's Oniguruma)
// read \s as Unicode White_Space, which has U+0085 and lacks U+FEFF; JavaScript's \s is the
// reverse at these two code points only (core/lm/unicode_gen.mjs checks it). The
// ordinary and special documents hold neither; the "whitespace" documents, which do, are
// encoded by gpt-tokenizer's own BPE core with \s written as \p{White_Space}.
import { mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import ranks from 'gpt-tokenizer/esm/bpeRanks/r50k_base';
import { BytePairEncodingCore } from 'gpt-tokenizer/esm/BytePairEncodingCore';
import gpt2 from 'gpt-tokenizer/esm/encoding/r50k_base';

const args = process.argv.slice(2);
const small = args[0] === '--small' ? Number(args[1]) : 0;
const out = small ? args[2] : args[0];
if (!out || (args[0] === '--small' && !(small > 0))) {
  console.error('usage: node reference.mjs [--small N] OUT_DIR');
  process.exit(2);
}
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
const EOT = '<|endoftext|>';
const EOT_ID = 50256;

// ---- the vocabulary ----------------------------------------------------------------------
const enc = new TextEncoder();
const tokens = ranks.map((v) => (typeof v === 'string' ? enc.encode(v) : Uint8Array.from(v)));
if (tokens.length !== EOT_ID) throw new Error(`r50k_base has ${tokens.length} ranks, not ${EOT_ID}`);
const key = (b) => Buffer.from(b).toString('latin1');
const rankOf = new Map(tokens.map((b, r) => [key(b), r]));
for (let r = 0; r < 256; r++)
  if (tokens[r].length !== 1) throw new Error(`rank ${r} is not a single byte`);

// GPT-2's bytes_to_unicode().
const b2u = [];
{
  let next = 256;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || b >= 0xae;
    b2u[b] = String.fromCodePoint(printable ? b : next++);
  }
}
const show = (b) => Array.from(b, (x) => b2u[x]).join('');

// The merge that makes rank r: BPE on r's bytes with ranks below r until two parts remain.
function mergeOf(r) {
  let parts = Array.from(tokens[r], (x) => Uint8Array.of(x));
  for (;;) {
    let best = -1, bestRank = r;
    for (let i = 0; i + 1 < parts.length; i++) {
      const m = rankOf.get(key(parts[i]) + key(parts[i + 1]));
      if (m !== undefined && m < bestRank) { bestRank = m; best = i; }
    }
    if (best < 0) break;
    const joined = new Uint8Array(parts[best].length + parts[best + 1].length);
    joined.set(parts[best]);
    joined.set(parts[best + 1], parts[best].length);
    parts.splice(best, 2, joined);
  }
  if (parts.length !== 2) throw new Error(`rank ${r}: no single merge makes it (${parts.length} parts)`);
  return parts;
}
const merges = [];
for (let r = 256; r < tokens.length; r++) merges.push(mergeOf(r).map(show).join(' '));

if (small) merges.length = small;
const vocab = {};
tokens.slice(0, small ? 256 + small : tokens.length).forEach((b, r) => { vocab[show(b)] = r; });
vocab[EOT] = EOT_ID;
mkdirSync(join(out, 'docs'), { recursive: true });
if (!small) {
  writeFileSync(join(out, 'vocab.json'), JSON.stringify(vocab));
  writeFileSync(join(out, 'merges.txt'), '#version: 0.2\n' + merges.join('\n') + '\n');
}
writeFileSync(join(out, 'tokenizer.json'), JSON.stringify({
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: [{ id: EOT_ID, content: EOT, single_word: false, lstrip: false, rstrip: false,
    normalized: true, special: true }],
  normalizer: null,
  pre_tokenizer: { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true },
  post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
  decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
  model: { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '',
    end_of_word_suffix: '', fuse_unk: false, byte_fallback: false, vocab,
    merges: merges.map((m, i) => (i % 2 ? m.split(' ') : m)) }, // both forms HF writes
}));
if (small) process.exit(0);

// ---- the corpus --------------------------------------------------------------------------
const docs = []; // [mode, what, text]
const add = (mode, what, text) => docs.push([mode, what, text]);
const clean = (s) => s.replace(/[\u0085\ufeff]/gu, ' ');

// Text on this machine: Debian's license texts, this repository's C and JavaScript.
const lic = '/usr/share/common-licenses';
for (const f of readdirSync(lic).sort()) {
  const p = join(lic, f);
  if (statSync(p).isFile()) add('ordinary', p, clean(readFileSync(p, 'utf8')));
}
function walk(dir, exts, acc) {
  for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => (a.name < b.name ? -1 : 1))) {
    if (e.name === 'node_modules' || e.name.startsWith('.') || e.name.startsWith('build')) continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, exts, acc);
    else if (exts.some((x) => e.name.endsWith(x))) acc.push(p);
  }
  return acc;
}
for (const p of walk(join(root, 'core'), ['.c', '.h'], []).concat(
  walk(join(root, 'server'), ['.c', '.h'], []), walk(join(root, 'cli'), ['.c', '.h'], []),
  walk(join(root, 'web'), ['.js'], []), walk(join(root, 'tests'), ['.mjs'], [])))
  add('ordinary', relative(root, p), clean(readFileSync(p, 'utf8')));

// Generated text, from a seeded generator (mulberry32) so every run makes the same.
let seed = 16;
function rand() {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}
const pick = (a) => a[Math.floor(rand() * a.length)];
const between = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));
const cp = (lo, hi) => String.fromCodePoint(between(lo, hi));

// Scripts: letters (and the marks, digits and numbers that go with them).
const scripts = {
  greek: [[0x391, 0x3a9], [0x3b1, 0x3c9], [0x1f00, 0x1f15]],
  cyrillic: [[0x410, 0x44f], [0x400, 0x40f], [0x483, 0x487]],
  armenian: [[0x531, 0x556], [0x561, 0x587]],
  hebrew: [[0x5d0, 0x5ea], [0x591, 0x5bd]],
  arabic: [[0x621, 0x64a], [0x64b, 0x652], [0x660, 0x669], [0x6f0, 0x6f9]],
  devanagari: [[0x905, 0x939], [0x93e, 0x94d], [0x966, 0x96f], [0x900, 0x903]],
  bengali: [[0x985, 0x9b9], [0x9be, 0x9cc], [0x9e6, 0x9ef]],
  tamil: [[0xb85, 0xbb9], [0xbbe, 0xbcd], [0xbe6, 0xbf2]],
  thai: [[0xe01, 0xe30], [0xe31, 0xe3a], [0xe50, 0xe59]],
  georgian: [[0x10d0, 0x10fa]],
  ethiopic: [[0x1200, 0x1248], [0x1369, 0x137c]],
  hangul: [[0xac00, 0xd7a3], [0x1100, 0x1112]],
  kana: [[0x3041, 0x3096], [0x30a1, 0x30fa], [0x3099, 0x309c]],
  cjk: [[0x4e00, 0x9fff], [0x3400, 0x4dbf], [0x20000, 0x2a6df], [0x3007, 0x3007]],
  numbers: [[0x2160, 0x2188], [0xbc, 0xbe], [0xb2, 0xb3], [0x2460, 0x249b], [0xff10, 0xff19],
    [0x1d7ce, 0x1d7ff], [0x10107, 0x10133]],
  math: [[0x1d400, 0x1d6a5], [0x2200, 0x22ff], [0x1d6a8, 0x1d7c9]],
  latin: [[0x41, 0x5a], [0x61, 0x7a], [0xc0, 0x24f], [0x300, 0x36f], [0x1e00, 0x1eff],
    [0xff21, 0xff5a]],
  newer: [[0x11f00, 0x11f59], [0x1e4d0, 0x1e4f9], [0x31350, 0x323af], [0x2ebf0, 0x2ee5d],
    [0x16d40, 0x16d79], [0x1e5d0, 0x1e5fa], [0x105c0, 0x105f3]],
};
const punct = ['.', ',', '!', '?', ';', ':', '"', '\'', '(', ')', '«', '»', '—', '–', '…', '、',
  '。', '，', '؟', '،', '।', '॥', '·', '¿', '¡', '“', '”', '‘', '’', '-', '/', '*', '#', '@'];
const spaces = [' ', ' ', ' ', ' ', '  ', '   ', '\t', '\n', '\r\n', '\u00a0', '\u2028', '\u2029',
  '\u3000', '\u2003', '\u2009', '\u202f', '\u205f', '\u1680', '\v', '\f', '\n\n', ' \n', '\t\t ',
  '\u00a0 ', ' \u00a0', '      '];
function scriptText(ranges, words) {
  let s = '';
  for (let w = 0; w < words; w++) {
    const n = between(1, 12);
    for (let i = 0; i < n; i++) s += cp(...pick(ranges));
    s += rand() < 0.15 ? pick(punct) : '';
    s += rand() < 0.85 ? ' ' : pick(spaces);
  }
  return s;
}
for (const [name, ranges] of Object.entries(scripts))
  add('ordinary', `generated ${name} text`, scriptText(ranges, 3000));
const mixed = Object.values(scripts);
for (let d = 0; d < 3; d++) {
  let s = '';
  for (let k = 0; k < 300; k++) s += scriptText(pick(mixed), between(1, 20)) + pick(spaces);
  add('ordinary', `generated mixed scripts ${d}`, s);
}

// Emoji: single, with skin tones, ZWJ families, flags, keycaps, variation selectors.
const emoji = () => {
  switch (between(0, 6)) {
    case 0: return cp(0x1f600, 0x1f64f);
    case 1: return cp(0x1f300, 0x1f5ff) + (rand() < 0.5 ? '\ufe0f' : '');
    case 2: return cp(0x1f44a, 0x1f450) + cp(0x1f3fb, 0x1f3ff);
    case 3: return ['👨', '👩', '👧', '👦'].slice(0, between(2, 4)).join('\u200d');
    case 4: return cp(0x1f1e6, 0x1f1ff) + cp(0x1f1e6, 0x1f1ff);
    case 5: return cp(0x30, 0x39) + '\ufe0f\u20e3';
    default: return cp(0x1f900, 0x1f9ff) + (rand() < 0.3 ? '\u200d' + cp(0x2640, 0x2642) : '');
  }
};
for (let d = 0; d < 3; d++) {
  let s = '';
  for (let k = 0; k < 4000; k++)
    s += (rand() < 0.3 ? scriptText(scripts.latin, 1) : '') + emoji() + (rand() < 0.5 ? ' ' : pick(spaces));
  add('ordinary', `generated emoji ${d}`, s);
}

// Odd white space and contractions: fragments that stress the pre-tokenization rule.
const fragments = ['don\'t', 'DON\'T', 'it\'s', 'IT\'S', 'we\'re', 'they\'ve', 'I\'m', 'you\'ll',
  'he\'d', '\'s', '\'t', '\'re', '\'ve', '\'m', '\'ll', '\'d', '\'', '\'\'', '\'x', 'o\'clock',
  'rock\'n\'roll', 'it’s', ' \'s', '\'S', '\'LL', '\'\'s', 'x\'\'re', 'hello', 'World', '42',
  '3.14', '1,000,000', 'x²', '½', 'ⅻ', 'naïve', 'cafe\u0301', '$', '$$', '&&', '->', '...', '\u0000',
  '\u0001', '\u001c', '\u001d', '\u001e', '\u001f', '\u007f', '\u00ad', '\u200b', '\u200d', '\u2060',
  '\ud7ff', '\ue000', '\uffff', '\u{10ffff}', '\u{e0001}', 'a1b2', '_x_', '__init__', '#include',
  '\\n', '\\t'];
for (let d = 0; d < 5; d++) {
  let s = rand() < 0.5 ? pick(spaces) : '';
  for (let k = 0; k < 12000; k++) {
    s += pick(fragments);
    const r = rand();
    if (r < 0.4) s += ' ';
    else if (r < 0.7) s += pick(spaces);
    else if (r < 0.8) s += ' '.repeat(between(2, 12));
    else if (r < 0.9) s += pick(spaces) + pick(spaces);
  }
  s += pick(spaces).repeat(between(0, 3));
  add('ordinary', `generated whitespace and contractions ${d}`, s);
}

// Code points drawn from all of Unicode (no surrogates), spaced: every class table entry
// gets exercised, the newest letters too.
for (let d = 0; d < 2; d++) {
  let s = '';
  for (let k = 0; k < 30000; k++) {
    let c;
    do c = d % 2 ? between(0, 0x10ffff) : between(0, 0x2ffff);
    while ((c >= 0xd800 && c <= 0xdfff) || c === 0x85 || c === 0xfeff);
    s += String.fromCodePoint(c) + (rand() < 0.2 ? pick(spaces) : '');
  }
  add('ordinary', `generated random code points ${d}`, s);
}

// Special tokens: the same texts with and without matching <|endoftext|>.
const eot = [];
for (let d = 0; d < 2; d++) {
  let s = '';
  for (let k = 0; k < 400; k++) {
    s += scriptText(pick(mixed), between(1, 30));
    s += pick([EOT, EOT + EOT, ' ' + EOT + ' ', '\n' + EOT + '\n', '<|endoftext', 'endoftext|>',
      '<|' + EOT + '|>', EOT + '\'s', '  ' + EOT]);
  }
  eot.push(s);
}
eot.forEach((s, d) => { add('ordinary', `generated text with ${EOT}, as text ${d}`, s); });
eot.forEach((s, d) => { add('special', `generated text with ${EOT}, matched ${d}`, s); });

// U+0085 and U+FEFF, against the White_Space reading of \s.
for (let d = 0; d < 3; d++) {
  let s = '';
  for (let k = 0; k < 3000; k++)
    s += pick(fragments.concat(['\u0085', '\ufeff', '\u0085\u0085', '\ufeff\ufeff', ' \u0085',
      '\u0085 ', ' \ufeff', '\ufeff '])) + pick([' ', '', '\u0085', '\ufeff', pick(spaces)]);
  add('whitespace', `generated U+0085 and U+FEFF ${d}`, s);
}

// ---- the reference ids -------------------------------------------------------------------
const splitWS = new RegExp(
  String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+`,
  'gu');
const ws = new BytePairEncodingCore({ bytePairRankDecoder: ranks, tokenSplitRegex: splitWS,
  specialTokensEncoder: new Map([[EOT, EOT_ID]]) });

let manifest = '', bytes = 0, ids = 0;
const t0 = process.hrtime.bigint();
docs.forEach(([mode, what, text], i) => {
  if (mode !== 'whitespace' && /[\u0085\ufeff]/u.test(text)) throw new Error(`${what}: holds U+0085 or U+FEFF`);
  let got;
  if (mode === 'ordinary') got = gpt2.encode(text, { disallowedSpecial: new Set() });
  else if (mode === 'special') {
    // gpt-tokenizer 4.0.0 finds an allowed special token only at the start of the text or
    // right after another (its search regex is sticky), so the split at <|endoftext|> is
    // done here, as tiktoken's encode does it: ordinary text between the matches.
    got = [];
    text.split(EOT).forEach((piece, k) => {
      if (k > 0) got.push(EOT_ID);
      got.push(...gpt2.encode(piece, { disallowedSpecial: new Set() }));
    });
  }
  else got = ws.encodeNative(text, new Set());
  const name = String(i).padStart(4, '0');
  const buf = Buffer.from(text, 'utf8');
  writeFileSync(join(out, 'docs', name + '.txt'), buf);
  writeFileSync(join(out, 'docs', name + '.ids'), Buffer.from(Int32Array.from(got).buffer));
  manifest += `${name}\t${mode}\t${what}\n`;
  bytes += buf.length;
  ids += got.length;
});
const secs = Number(process.hrtime.bigint() - t0) / 1e9;
writeFileSync(join(out, 'manifest.tsv'), manifest);
console.log(`reference: ${docs.length} documents, ${bytes} bytes, ${ids} ids ` +
  `(gpt-tokenizer ${JSON.parse(readFileSync(join(here, 'node_modules/gpt-tokenizer/package.json'))).version}, ` +
  `${(ids / secs / 1e6).toFixed(2)} M tokens/s with writing)`);
