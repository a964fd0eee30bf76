/* bpe.c: encoding text to ids and decoding ids to bytes (bpe.h), GPT-2's
 * pre-tokenization rule written out by hand, and the merge loop. The tables
 * come from bpe_load.c. */
#include "lm/bpe.h"

#include <stdlib.h>
#include <string.h>

#include "io/rng.h"
#include "lm/bpe_internal.h"
#include "lm/unicode_classes.h"

void sae_bpe_byte_map(uint16_t b2u[256])
{
    /* Printable Latin-1 bytes stand for themselves; the others, in byte order,
     * for U+0100 on. */
    unsigned next = 256;
    for (unsigned b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
        b2u[b] = (uint16_t)(printable ? b : next++);
    }
}

const struct bpe_merge *sae_bpe_merge_find(const sae_bpe *t, int32_t left, int32_t right)
{
    uint64_t pair = (uint64_t)(uint32_t)left << 32 | (uint32_t)right;
    size_t mask = t->merges_cap - 1;
    for (size_t i = sae_hash64(pair) & mask;; i = (i + 1) & mask) {
        const struct bpe_merge *m = &t->merges[i];
        if (m->id < 0)
            return NULL;
        if (m->pair == pair)
            return m;
    }
}

/* ---- pre-tokenization ---------------------------------------------------- */

/* The class of a code point: ASCII from a switch, the rest by binary search
 * over the generated ranges. */
static int cp_class(uint32_t cp)
{
    if (cp < 0x80) {
        if ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z')
            return SAE_UNICODE_LETTER;
        if (cp >= '0' && cp <= '9')
            return SAE_UNICODE_NUMBER;
        if (cp == ' ' || (cp >= '\t' && cp <= '\r'))
            return SAE_UNICODE_SPACE;
        return SAE_UNICODE_OTHER;
    }
    unsigned lo = 0, hi = sae_unicode_nranges;
    while (lo < hi) {
        unsigned mid = lo + (hi - lo) / 2;
        if (cp > sae_unicode_ranges[mid].hi)
            lo = mid + 1;
        else if (cp < sae_unicode_ranges[mid].lo)
            hi = mid;
        else
            return sae_unicode_ranges[mid].cls;
    }
    return SAE_UNICODE_OTHER;
}

/* Reads the character at s[i] (i < len): returns its length in bytes and
 * stores its class. A byte that does not start a valid UTF-8 sequence
 * (overlong, surrogate, past U+10FFFF, cut short) is a character of one byte
 * and class other, as Python's surrogateescape would read it. */
static size_t next_char(const uint8_t *s, size_t len, size_t i, int *cls)
{
    uint8_t c = s[i];
    if (c < 0x80) {
        *cls = cp_class(c);
        return 1;
    }
    size_t n;
    uint32_t cp, min;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2, cp = c & 0x1F, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3, cp = c & 0x0F, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4, cp = c & 0x07, min = 0x10000;
    } else {
        *cls = SAE_UNICODE_OTHER;
        return 1;
    }
    if (len - i < n) {
        *cls = SAE_UNICODE_OTHER;
        return 1;
    }
    for (size_t k = 1; k < n; k++) {
        if ((s[i + k] & 0xC0) != 0x80) {
            *cls = SAE_UNICODE_OTHER;
            return 1;
        }
        cp = cp << 6 | (s[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        *cls = SAE_UNICODE_OTHER;
        return 1;
    }
    *cls = cp_class(cp);
    return n;
}

/* The end of the run of characters of class cls that starts at i. */
static size_t run_end(const uint8_t *s, size_t len, size_t i, int cls)
{
    while (i < len) {
        int c;
        size_t n = next_char(s, len, i, &c);
        if (c != cls)
            break;
        i += n;
    }
    return i;
}

/* The end of the pre-token that starts at s[i] (i < len): the match of GPT-2's
 * pattern there, its alternatives tried in order:
 *   's|'t|'re|'ve|'m|'ll|'d          a contraction (ASCII, case as written)
 *   ' ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+'   a run of one class, after at most one ' '
 *   \s+(?!\S)                        white space, less its last character when
 *                                    something other than space follows
 *   \s+                              a single white space character before it
 * Every character is a letter, a number, white space or other, so some
 * alternative always matches and the pre-tokens cover the text. */
static size_t pretoken_end(const uint8_t *s, size_t len, size_t i)
{
    if (s[i] == '\'' && i + 1 < len) {
        uint8_t a = s[i + 1], b = i + 2 < len ? s[i + 2] : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd')
            return i + 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l'))
            return i + 3;
    }
    int cls;
    size_t n = next_char(s, len, i, &cls);
    if (s[i] == ' ' && i + 1 < len) {
        int next;
        next_char(s, len, i + 1, &next);
        if (next != SAE_UNICODE_SPACE)
            return run_end(s, len, i + 1, next);
    }
    if (cls != SAE_UNICODE_SPACE)
        return run_end(s, len, i + n, cls);
    /* White space: find the run and the start of its last character. */
    size_t last = i, end = i + n;
    while (end < len) {
        int c;
        size_t m = next_char(s, len, end, &c);
        if (c != SAE_UNICODE_SPACE)
            break;
        last = end;
        end += m;
    }
    if (end == len || last == i)
        return end;
    return last;
}

/* ---- the merge loop -------------------------------------------------------- */

/* One symbol of a word being merged: a token id and its live neighbours. */
struct sym {
    int32_t id;
    int32_t prev, next; /* -1 at the ends */
};

/* A candidate merge: the pair starting at symbol pos, of this rank. */
struct cand {
    uint32_t rank;
    uint32_t pos;
    int32_t left, right; /* the ids it was made for; stale when they changed */
};

/* Working memory of one encode call, grown to the longest pre-token. */
struct scratch {
    struct sym *syms;
    struct cand *heap, *deferred;
    size_t cap;            /* symbols; the heap and deferred hold 3 * cap */
    size_t n_heap, n_deferred;
};

static int cand_less(const struct cand *a, const struct cand *b)
{
    return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos;
}

static void heap_push(struct scratch *w, struct cand c)
{
    size_t i = w->n_heap++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &w->heap[p]))
            break;
        w->heap[i] = w->heap[p];
        i = p;
    }
    w->heap[i] = c;
}

static struct cand heap_pop(struct scratch *w)
{
    struct cand top = w->heap[0], last = w->heap[--w->n_heap];
    size_t i = 0, n = w->n_heap;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && cand_less(&w->heap[c + 1], &w->heap[c]))
            c++;
        if (!cand_less(&w->heap[c], &last))
            break;
        w->heap[i] = w->heap[c];
        i = c;
    }
    if (n > 0)
        w->heap[i] = last;
    return top;
}

/* Records the pair starting at symbol pos as a candidate, if it has a rank.
 * A pair ranked below the pass under way (current) waits until that pass
 * ends: encoder.py merges every occurrence of one pair before it looks for
 * the next best. */
static void consider(const sae_bpe *t, struct scratch *w, int32_t pos, uint32_t current)
{
    if (pos < 0 || w->syms[pos].next < 0)
        return;
    int32_t next = w->syms[pos].next;
    const struct bpe_merge *m = sae_bpe_merge_find(t, w->syms[pos].id, w->syms[next].id);
    if (!m)
        return;
    struct cand c = {m->rank, (uint32_t)pos, w->syms[pos].id, w->syms[next].id};
    if (m->rank < current)
        w->deferred[w->n_deferred++] = c;
    else
        heap_push(w, c);
}

static int scratch_reserve(struct scratch *w, size_t n)
{
    if (n <= w->cap)
        return 0;
    size_t cap = w->cap ? w->cap : 64;
    while (cap < n)
        cap *= 2;
    struct sym *s = realloc(w->syms, cap * sizeof *s);
    if (!s)
        return -1;
    w->syms = s;
    struct cand *h = realloc(w->heap, 3 * cap * sizeof *h);
    if (!h)
        return -1;
    w->heap = h;
    struct cand *d = realloc(w->deferred, 3 * cap * sizeof *d);
    if (!d)
        return -1;
    w->deferred = d;
    w->cap = cap;
    return 0;
}

/* Appends the ids of one pre-token s[0 .. n) to out (room for n more). Each
 * merge removes a symbol and adds at most two candidates, so the heap and the
 * deferred list never hold more than 3n. */
static void bpe_word(const sae_bpe *t, struct scratch *w, const uint8_t *s, size_t n,
                     int32_t *out, size_t *n_out)
{
    if (n == 1) {
        out[(*n_out)++] = t->byte_id[s[0]];
        return;
    }
    for (size_t i = 0; i < n; i++)
        w->syms[i] = (struct sym){t->byte_id[s[i]], (int32_t)i - 1, i + 1 < n ? (int32_t)i + 1 : -1};
    w->n_heap = w->n_deferred = 0;
    for (size_t i = 0; i + 1 < n; i++)
        consider(t, w, (int32_t)i, 0);
    uint32_t current = 0;
    while (w->n_heap > 0) {
        if (w->n_deferred > 0 && w->heap[0].rank != current) {
            for (size_t k = 0; k < w->n_deferred; k++)
                heap_push(w, w->deferred[k]);
            w->n_deferred = 0;
        }
        struct cand c = heap_pop(w);
        current = c.rank;
        struct sym *a = &w->syms[c.pos];
        if (a->id != c.left || a->next < 0 || w->syms[a->next].id != c.right)
            continue; /* stale: one side was merged since */
        struct sym *b = &w->syms[a->next];
        a->id = sae_bpe_merge_find(t, c.left, c.right)->id;
        a->next = b->next;
        b->id = -1; /* dead: no candidate starting here is valid any more */
        if (b->next >= 0)
            w->syms[b->next].prev = (int32_t)c.pos;
        consider(t, w, a->prev, current);
        consider(t, w, (int32_t)c.pos, current);
        if (w->n_heap == 0 && w->n_deferred > 0) {
            for (size_t k = 0; k < w->n_deferred; k++)
                heap_push(w, w->deferred[k]);
            w->n_deferred = 0;
        }
    }
    for (int32_t i = 0; i >= 0; i = w->syms[i].next)
        out[(*n_out)++] = w->syms[i].id;
}

/* Appends the ids of s[0 .. n), text without special tokens, to out. */
static int encode_ordinary(const sae_bpe *t, struct scratch *w, const uint8_t *s, size_t n,
                           int32_t *out, size_t *n_out)
{
    for (size_t i = 0; i < n;) {
        size_t end = pretoken_end(s, n, i);
        if (scratch_reserve(w, end - i) != 0)
            return -1;
        bpe_word(t, w, s + i, end - i, out, n_out);
        i = end;
    }
    return 0;
}

/* The added token that starts at s[i], longest first, or -1. */
static int32_t added_at(const sae_bpe *t, const uint8_t *s, size_t len, size_t i)
{
    if (!t->added_first[s[i]])
        return -1;
    for (size_t k = 0; k < t->n_added; k++) {
        int32_t id = t->added[k];
        size_t n = t->tok_len[id];
        if (n <= len - i && memcmp(s + i, t->bytes + t->tok_off[id], n) == 0)
            return id;
    }
    return -1;
}

int sae_bpe_encode(const sae_bpe *t, const char *text, size_t len, unsigned flags,
                   int32_t **ids, size_t *n, sae_error *err)
{
    if ((flags & SAE_BPE_BOS) && t->bos < 0)
        return sae_error_set(err, SAE_EINVAL,
                             "prepend_bos: the tokenizer has no BOS token (no bos_token, no "
                             "<|endoftext|>)");
    size_t cap;
    if (sae_add_size(len, 1, &cap) != 0 || sae_mul_size(cap, sizeof(int32_t), &cap) != 0)
        return sae_error_set(err, SAE_ENOMEM, "encode: a text of %zu bytes is too long", len);
    int32_t *out = malloc(cap);
    struct scratch w = {0};
    if (!out)
        goto oom;
    size_t n_out = 0;
    if (flags & SAE_BPE_BOS)
        out[n_out++] = t->bos;
    const uint8_t *s = (const uint8_t *)text;
    size_t start = 0;
    if ((flags & SAE_BPE_SPECIAL) && t->n_added > 0) {
        for (size_t i = 0; i < len;) {
            int32_t id = added_at(t, s, len, i);
            if (id < 0) {
                i++;
                continue;
            }
            if (encode_ordinary(t, &w, s + start, i - start, out, &n_out) != 0)
                goto oom;
            out[n_out++] = id;
            i += t->tok_len[id];
            start = i;
        }
    }
    if (encode_ordinary(t, &w, s + start, len - start, out, &n_out) != 0)
        goto oom;
    free(w.syms);
    free(w.heap);
    free(w.deferred);
    *ids = out;
    *n = n_out;
    return 0;
oom:
    free(out);
    free(w.syms);
    free(w.heap);
    free(w.deferred);
    return sae_error_set(err, SAE_ENOMEM, "encode: out of memory for a text of %zu bytes", len);
}

int sae_bpe_decode(const sae_bpe *t, const int32_t *ids, size_t n, char **text, size_t *len,
                   sae_error *err)
{
    size_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (ids[i] < 0 || (size_t)ids[i] >= t->n_ids || t->tok_len[ids[i]] == BPE_NO_TOKEN)
            return sae_error_set(err, SAE_EINVAL, "decode: id %ld (position %zu) is no token",
                                 (long)ids[i], i);
        if (sae_add_size(total, t->tok_len[ids[i]], &total) != 0)
            return sae_error_set(err, SAE_ENOMEM, "decode: %zu ids make too long a text", n);
    }
    char *out = malloc(total + 1);
    if (!out)
        return sae_error_set(err, SAE_ENOMEM, "decode: out of memory for %zu bytes", total);
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        memcpy(out + at, t->bytes + t->tok_off[ids[i]], t->tok_len[ids[i]]);
        at += t->tok_len[ids[i]];
    }
    out[at] = '\0';
    *text = out;
    *len = at;
    return 0;
}

const char *sae_bpe_token(const sae_bpe *t, int32_t id, size_t *len)
{
    if (id < 0 || (size_t)id >= t->n_ids || t->tok_len[id] == BPE_NO_TOKEN)
        return NULL;
    *len = t->tok_len[id];
    return t->bytes + t->tok_off[id];
}

int32_t sae_bpe_bos(const sae_bpe *t)
{
    return t->bos;
}

int sae_bpe_set_bos(sae_bpe *t, int32_t id, sae_error *err)
{
    size_t len;
    if (id != -1 && !sae_bpe_token(t, id, &len))
        return sae_error_set(err, SAE_EINVAL, "bos: id %ld is no token", (long)id);
    t->bos = id;
    return 0;
}

size_t sae_bpe_vocab_size(const sae_bpe *t)
{
    return t->n_ids;
}
