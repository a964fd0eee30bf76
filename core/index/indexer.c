/* indexer.c: the one-pass feature statistics, the neighbours, the build and
 * the merge of feature indexes (indexer.h). docs/INDEX.md is the long
 * explanation; the comments here say how the code carries it out. */
#include "index/indexer.h"

#include <cblas.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <xxhash.h>

#include "io/clock.h"
#include "io/activations.h"
#include "sae/model.h"
#include "io/rng.h"
#include "index/store.h"

/* ------------------------------------------------------------ histogram */

/* Float exponent-and-top-3-mantissa-bits codes of the histogram's range. */
#define HIST_CODE_LO ((127 + SAE_HIST_MIN_EXP) * SAE_HIST_PER_OCTAVE)
#define HIST_CODE_HI ((127 + SAE_HIST_MAX_EXP) * SAE_HIST_PER_OCTAVE)

int sae_hist_bin(float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    int code = (int)(bits >> 20); /* sign (0), 8 exponent bits, 3 mantissa bits */
    if (code < HIST_CODE_LO)
        return 0;
    if (code >= HIST_CODE_HI)
        return SAE_HIST_BINS - 1;
    return code - HIST_CODE_LO + 1;
}

double sae_hist_lo(int b)
{
    if (b <= 0)
        return 0.0;
    if (b >= SAE_HIST_BINS - 1)
        return ldexp(1.0, SAE_HIST_MAX_EXP);
    int k = b - 1;
    return ldexp(1.0 + (double)(k % SAE_HIST_PER_OCTAVE) / SAE_HIST_PER_OCTAVE,
                 SAE_HIST_MIN_EXP + k / SAE_HIST_PER_OCTAVE);
}

double sae_hist_hi(int b)
{
    if (b >= SAE_HIST_BINS - 1)
        return INFINITY;
    return sae_hist_lo(b + 1);
}

uint32_t sae_quantile_group(int b, float max, uint32_t q)
{
    if (b <= 0 || q <= 1)
        return 0;
    /* q*lo(b) and j*max (j < q <= 100) are exact in double: lo has 4
     * significant bits and max 24, so the floor below is exact too. */
    double lo = (double)q * sae_hist_lo(b), m = (double)max;
    if (lo >= (double)q * m)
        return q - 1;
    double j = floor(lo / m);
    while (j > 0 && j * m > lo)
        j--;
    while ((j + 1) * m <= lo)
        j++;
    return j >= q ? q - 1 : (uint32_t)j;
}

/* ------------------------------------------------------------ exact sum */

void sae_exact_sum_add(sae_exact_sum *s, float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    uint32_t e = (bits >> 23) & 0xff, frac = bits & 0x7fffff;
    if ((bits >> 31) || e == 0xff || (e == 0 && frac == 0))
        return; /* negative, zero or not finite: never an active value */
    uint64_t m = e ? (frac | 0x800000u) : frac;
    unsigned shift = e ? e : 1; /* v = m * 2^(shift - 150) */
    unsigned limb = shift / 64, off = shift % 64;
    unsigned __int128 add = (unsigned __int128)m << off;
    uint64_t lo = (uint64_t)add, hi = (uint64_t)(add >> 64);
    uint64_t old = s->limb[limb];
    s->limb[limb] = old + lo;
    uint64_t carry = hi + (s->limb[limb] < old);
    for (unsigned i = limb + 1; carry && i < SAE_EXACT_LIMBS; i++) {
        old = s->limb[i];
        s->limb[i] = old + carry;
        carry = s->limb[i] < old;
    }
}

void sae_exact_sum_merge(sae_exact_sum *s, const sae_exact_sum *o)
{
    uint64_t carry = 0;
    for (int i = 0; i < SAE_EXACT_LIMBS; i++) {
        uint64_t a = s->limb[i], t = a + o->limb[i];
        uint64_t c1 = t < a;
        s->limb[i] = t + carry;
        carry = c1 + (s->limb[i] < t);
    }
}

double sae_exact_sum_value(const sae_exact_sum *s)
{
    double r = 0.0;
    for (int i = SAE_EXACT_LIMBS - 1; i >= 0; i--)
        r += ldexp((double)s->limb[i], 64 * i - 150);
    return r;
}

/* ------------------------------------------------------------ settings */

void sae_index_settings_default(sae_index_settings *s)
{
    memset(s, 0, sizeof *s);
    s->top = 20;
    s->quantiles = 10;
    s->per_quantile = 5;
    s->context = 8;
    s->neighbours = 10;
    s->seed = 0;
    s->n_shards = 1;
    s->block_rows = 256;
}

int sae_index_settings_check(const sae_index_settings *s, sae_error *err)
{
    if (s->top > SAE_INDEX_MAX_TOP)
        return sae_error_set(err, SAE_EINVAL, "--top: at most %d", SAE_INDEX_MAX_TOP);
    if (s->quantiles > SAE_INDEX_MAX_QUANTILES)
        return sae_error_set(err, SAE_EINVAL, "--quantiles: at most %d", SAE_INDEX_MAX_QUANTILES);
    if (s->per_quantile > SAE_INDEX_MAX_PER_QUANTILE)
        return sae_error_set(err, SAE_EINVAL, "--per-quantile: at most %d",
                             SAE_INDEX_MAX_PER_QUANTILE);
    if (s->context > SAE_INDEX_MAX_CONTEXT)
        return sae_error_set(err, SAE_EINVAL, "--context: at most %d", SAE_INDEX_MAX_CONTEXT);
    if (s->neighbours > SAE_INDEX_MAX_NEIGHBOURS)
        return sae_error_set(err, SAE_EINVAL, "--neighbours: at most %d",
                             SAE_INDEX_MAX_NEIGHBOURS);
    if (s->n_shards == 0 || s->shard >= s->n_shards)
        return sae_error_set(err, SAE_EINVAL, "--shard: I/N needs 0 <= I < N");
    if (s->block_rows < 2 * s->context + 1)
        return sae_error_set(err, SAE_EINVAL, "block_rows %u is below 2*context+1",
                             s->block_rows);
    return 0;
}

void sae_shard_docs(size_t n_docs, uint32_t shard, uint32_t n_shards, size_t *doc_lo,
                    size_t *doc_hi)
{
    *doc_lo = (size_t)((unsigned __int128)n_docs * shard / n_shards);
    *doc_hi = (size_t)((unsigned __int128)n_docs * (shard + 1) / n_shards);
}

/* ------------------------------------------------------------ state */

#define NO_DOC UINT32_MAX

/* The hot per-feature fields, touched for every active value: one cache line. */
typedef struct fstate {
    uint32_t n_active;
    float max;              /* 0 until the first activation */
    uint32_t cur_doc;       /* the document being read for this feature, or NO_DOC */
    uint32_t cur_pos;       /* position of its max so far */
    float cur_max;
    uint16_t n_top;         /* top entries held (<= N) */
    uint16_t top_worst;     /* index of the weakest entry once n_top == N */
    uint16_t b_lo;          /* lowest live bin: lower bins are in the prefix sketch */
    uint8_t cur_captured;   /* the scratch window holds cur's window */
} fstate;

/* A top entry: the document and position of its max. Its window is in slot
 * (entry index) of the feature's window pool. */
typedef struct tentry {
    float value;
    uint32_t doc, pos;
} tentry;

/* A bottom-M sketch: n entries (unordered), worst = index of the largest
 * hash once full; bin = the histogram bin it holds (ring slots only). */
typedef struct skhdr {
    int16_t bin;
    uint8_t n, worst;
} skhdr;

/* A sampled token; its window is in the slot of its sketch position. */
typedef struct skentry {
    uint64_t hash;
    uint32_t doc, pos;
} skentry;

/* One encoded block kept for window lookups: CSR rows copied from the feed,
 * and each row's document and position (NO_DOC outside the indexed slice). */
typedef struct block {
    uint64_t row0;
    size_t n_rows, nnz;
    size_t rows_cap, nnz_cap;
    uint32_t *row_ptr;      /* (n_rows + 1) */
    uint32_t *idx;          /* (nnz) */
    float *val;             /* (nnz) */
    uint32_t *doc, *pos;    /* (n_rows) */
} block;

/* The indexer: settings, borrowed corpus layout, per-feature state carved
 * from a few large allocations, and the two most recent blocks with a
 * column (feature-major) view of them for window capture. */
struct sae_indexer {
    size_t d_sae;
    sae_index_settings set;
    const sae_tokens *tok;  /* borrowed */
    size_t doc_lo, doc_hi;
    uint64_t row_lo, row_hi;    /* rows indexed */
    uint64_t feed_lo, feed_hi;  /* rows fed: whole blocks */
    uint64_t next_feed;         /* row0 the next feed must have */
    uint64_t ready;             /* rows below this are processed */
    size_t doc_cursor;          /* document of the last row fed */
    uint64_t seed_mix;
    bool finished;

    uint32_t n, q, m, c, win;   /* N, Q, M, C, 2C+1 */
    uint32_t w;                 /* live ring bins per feature (0: no sampling) */
    uint32_t n_sk;              /* sketches per feature: prefix + ring (0: none) */
    uint32_t slots;             /* window slots per feature: N + 1 + n_sk*M */

    void *state;                /* one anonymous mapping carved into the arrays below */
    size_t state_len;
    fstate *st;                 /* (d_sae) */
    sae_exact_sum *sum;         /* (d_sae) */
    uint32_t *hist;             /* (d_sae, SAE_HIST_BINS) */
    tentry *top;                /* (d_sae, N) */
    skhdr *sk;                  /* (d_sae, n_sk): [0] prefix, [1 + b % w] bin b */
    skentry *ske;               /* (d_sae, n_sk, M) */
    float *acts;                /* (d_sae, slots, win): slot i value j is position pos-C+j */

    block blk[2];               /* blk[cur_blk] is the newest */
    int cur_blk;
    bool have_prev;
    uint32_t *col_start;        /* (d_sae + 1) CSC over prev+cur */
    uint32_t *col_row;          /* (nnz) rows relative to csc_base */
    float *col_val;             /* (nnz) */
    size_t col_cap;
    uint64_t csc_base;
};

/* Ring bins needed for Q groups: the most bins b <= t with q*lo(b) >= lo(t),
 * over all top bins t (a max in bin t keeps bins down to max/q live). */
static uint32_t live_bins(uint32_t q)
{
    uint32_t best = 1;
    for (int t = 1; t < SAE_HIST_BINS; t++) {
        double m = sae_hist_lo(t);
        uint32_t cnt = 0;
        for (int b = 1; b <= t; b++)
            if ((double)q * sae_hist_lo(b) >= m)
                cnt++;
        if (cnt > best)
            best = cnt;
    }
    return best;
}

/* Layout numbers for settings s: ring bins, sketches, slots. */
static void layout(const sae_index_settings *s, uint32_t *w, uint32_t *n_sk, uint32_t *slots)
{
    bool sampling = s->quantiles > 0 && s->per_quantile > 0;
    *w = sampling ? live_bins(s->quantiles) : 0;
    *n_sk = sampling ? *w + 1 : 0;
    *slots = s->top + 1 + *n_sk * s->per_quantile;
}

/* Adds count * size to *total with overflow checks; false on overflow. */
static bool add_bytes(size_t *total, size_t count, size_t size)
{
    size_t b;
    return !sae_mul_size(count, size, &b) && !sae_add_size(*total, b, total);
}

size_t sae_indexer_state_bytes(size_t d_sae, const sae_index_settings *s)
{
    uint32_t w, n_sk, slots;
    layout(s, &w, &n_sk, &slots);
    size_t per = sizeof(fstate) + sizeof(sae_exact_sum) + SAE_HIST_BINS * sizeof(uint32_t);
    size_t total = 0, x;
    if (!add_bytes(&per, s->top, sizeof(tentry)) || !add_bytes(&per, n_sk, sizeof(skhdr)) ||
        sae_mul_size(n_sk, s->per_quantile, &x) || !add_bytes(&per, x, sizeof(skentry)) ||
        sae_mul_size(slots, 2 * (size_t)s->context + 1, &x) ||
        !add_bytes(&per, x, sizeof(float)) || !add_bytes(&total, d_sae, per))
        return 0;
    return total;
}

/* Frees a kept block's buffers (not the struct). */
static void block_free(block *b)
{
    free(b->row_ptr);
    free(b->idx);
    free(b->val);
    free(b->doc);
    free(b->pos);
}

void sae_indexer_free(sae_indexer *ix)
{
    if (!ix)
        return;
    if (ix->state)
        munmap(ix->state, ix->state_len);
    block_free(&ix->blk[0]);
    block_free(&ix->blk[1]);
    free(ix->col_start);
    free(ix->col_row);
    free(ix->col_val);
    free(ix);
}

/* Reserves count*size bytes, 64-aligned, at *off in a region being laid out;
 * returns the offset or SIZE_MAX on overflow. */
static size_t carve(size_t *off, size_t count, size_t size)
{
    size_t b, at = (*off + 63) & ~(size_t)63;
    if (at < *off || sae_mul_size(count, size, &b) || sae_add_size(at, b, off))
        return SIZE_MAX;
    return at;
}

int sae_indexer_new(size_t d_sae, const sae_index_settings *s, const sae_tokens *tok,
                    size_t doc_lo, size_t doc_hi, sae_indexer **out, sae_error *err)
{
    int rc = sae_index_settings_check(s, err);
    if (rc)
        return rc;
    if (d_sae == 0 || d_sae > UINT32_MAX || doc_lo > doc_hi || doc_hi > tok->n_docs)
        return sae_error_set(err, SAE_EINVAL, "indexer: bad d_sae or document range");
    size_t bytes = sae_indexer_state_bytes(d_sae, s);
    if (!bytes)
        return sae_error_set(err, SAE_ENOMEM, "index state size overflows");
    sae_indexer *ix = calloc(1, sizeof *ix);
    if (!ix)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    ix->d_sae = d_sae;
    ix->set = *s;
    ix->tok = tok;
    ix->doc_lo = doc_lo;
    ix->doc_hi = doc_hi;
    ix->row_lo = tok->row_start[doc_lo];
    ix->row_hi = tok->row_start[doc_hi];
    uint64_t B = s->block_rows;
    ix->feed_lo = ix->row_lo / B * B;
    ix->feed_hi = ix->row_hi == ix->row_lo ? ix->feed_lo
                  : (ix->row_hi + B - 1) / B * B < tok->n_tokens ? (ix->row_hi + B - 1) / B * B
                                                                 : tok->n_tokens;
    if (ix->feed_hi < ix->feed_lo)
        ix->feed_hi = ix->feed_lo;
    ix->next_feed = ix->feed_lo;
    ix->ready = ix->row_lo;
    ix->doc_cursor = doc_lo;
    ix->seed_mix = sae_hash64(s->seed ^ 0x5341454953414d50ull);
    ix->n = s->top;
    ix->q = s->quantiles;
    ix->m = s->per_quantile;
    ix->c = s->context;
    ix->win = 2 * s->context + 1;
    layout(s, &ix->w, &ix->n_sk, &ix->slots);

    /* Every per-feature array in one zeroed anonymous mapping, on huge pages
     * where the kernel allows: the per-value updates touch a few arrays at
     * the feature's offset, and 4 KB pages would make most of them TLB
     * misses. */
    size_t len = 0, o_st, o_sum, o_hist, o_top, o_sk, o_ske, o_acts;
    o_st = carve(&len, d_sae, sizeof *ix->st);
    o_sum = carve(&len, d_sae, sizeof *ix->sum);
    o_hist = carve(&len, d_sae, SAE_HIST_BINS * sizeof *ix->hist);
    o_top = carve(&len, d_sae, (size_t)ix->n * sizeof *ix->top);
    o_sk = carve(&len, d_sae, (size_t)ix->n_sk * sizeof *ix->sk);
    o_ske = carve(&len, d_sae, (size_t)ix->n_sk * ix->m * sizeof *ix->ske);
    o_acts = carve(&len, d_sae, (size_t)ix->slots * ix->win * sizeof *ix->acts);
    void *map = MAP_FAILED;
    if (o_st != SIZE_MAX && o_sum != SIZE_MAX && o_hist != SIZE_MAX && o_top != SIZE_MAX &&
        o_sk != SIZE_MAX && o_ske != SIZE_MAX && o_acts != SIZE_MAX)
        map = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map != MAP_FAILED) {
        madvise(map, len, MADV_HUGEPAGE);
        ix->state = map;
        ix->state_len = len;
        char *base = map;
        ix->st = (fstate *)(base + o_st);
        ix->sum = (sae_exact_sum *)(base + o_sum);
        ix->hist = (uint32_t *)(base + o_hist);
        ix->top = (tentry *)(base + o_top);
        ix->sk = (skhdr *)(base + o_sk);
        ix->ske = (skentry *)(base + o_ske);
        ix->acts = (float *)(base + o_acts);
    }
    ix->col_start = calloc(d_sae + 1, sizeof *ix->col_start);
    if (!ix->state || !ix->col_start) {
        sae_indexer_free(ix);
        return sae_error_set(err, SAE_ENOMEM,
                             "out of memory for the index state (%.1f MB for d_sae %zu; lower "
                             "--top, --quantiles, --per-quantile or --context)",
                             bytes / 1e6, d_sae);
    }
    for (size_t f = 0; f < d_sae; f++) {
        ix->st[f].cur_doc = NO_DOC;
        ix->st[f].b_lo = 1;
    }
    *out = ix;
    return 0;
}

void sae_indexer_rows(const sae_indexer *ix, uint64_t *row0, uint64_t *row1)
{
    *row0 = ix->feed_lo;
    *row1 = ix->feed_hi;
}

uint64_t sae_indexer_tokens(const sae_indexer *ix)
{
    return ix->row_hi - ix->row_lo;
}

size_t sae_indexer_documents(const sae_indexer *ix)
{
    return ix->doc_hi - ix->doc_lo;
}

/* ------------------------------------------------------------ streaming */

/* Window slot `slot` of feature f. */
static float *slot_acts(const sae_indexer *ix, size_t f, size_t slot)
{
    return ix->acts + (f * ix->slots + slot) * ix->win;
}

/* The slot holding the window of the document being read. */
static size_t scratch_slot(const sae_indexer *ix)
{
    return ix->n;
}

/* The slot of entry i of sketch k (0 the prefix, 1.. the ring). */
static size_t sketch_slot(const sae_indexer *ix, size_t k, size_t i)
{
    return ix->n + 1 + k * ix->m + i;
}

/* Fills slot with feature f's activations on rows r-C .. r+C of document doc
 * (zero elsewhere). e is the entry of (f, r) in the column view: the window's
 * other values are its neighbours there. */
static void capture(sae_indexer *ix, size_t f, uint64_t r, size_t doc, size_t slot, uint32_t e)
{
    float *w = slot_acts(ix, f, slot);
    for (uint32_t i = 0; i < ix->win; i++)
        w[i] = 0.0f;
    int64_t c = ix->c, base = (int64_t)ix->csc_base;
    int64_t lo = (int64_t)r - c, hi = (int64_t)r + c;
    if (lo < (int64_t)ix->tok->row_start[doc])
        lo = (int64_t)ix->tok->row_start[doc];
    if (hi > (int64_t)ix->tok->row_start[doc + 1] - 1)
        hi = (int64_t)ix->tok->row_start[doc + 1] - 1;
    int64_t w0 = (int64_t)r - c - base; /* the local row of w[0] */
    w[c] = ix->col_val[e];
    for (uint32_t a = e; a > ix->col_start[f] && (int64_t)ix->col_row[a - 1] + base >= lo; a--)
        w[(int64_t)ix->col_row[a - 1] - w0] = ix->col_val[a - 1];
    for (uint32_t b = e + 1; b < ix->col_start[f + 1] && (int64_t)ix->col_row[b] + base <= hi; b++)
        w[(int64_t)ix->col_row[b] - w0] = ix->col_val[b];
}

/* True when entry a is a better top example than b: higher max, then lower
 * document. */
static bool top_better(const tentry *a, const tentry *b)
{
    return a->value > b->value || (a->value == b->value && a->doc < b->doc);
}

/* Whether a document whose max is v would enter feature f's top list now
 * (ties lose: every held document has a lower index). */
static bool top_qualifies(const sae_indexer *ix, size_t f, float v)
{
    const fstate *s = &ix->st[f];
    return s->n_top < ix->n || v > ix->top[f * ix->n + s->top_worst].value;
}

/* Recomputes the weakest top entry of f. */
static void top_find_worst(sae_indexer *ix, size_t f)
{
    tentry *t = ix->top + f * ix->n;
    uint16_t w = 0;
    for (uint16_t i = 1; i < ix->st[f].n_top; i++)
        if (top_better(&t[w], &t[i]))
            w = i;
    ix->st[f].top_worst = w;
}

/* The document cur of f is over: enter it in the top list if it qualified. */
static void top_flush(sae_indexer *ix, size_t f)
{
    fstate *s = &ix->st[f];
    if (s->cur_doc == NO_DOC || !s->cur_captured) {
        s->cur_doc = NO_DOC;
        return;
    }
    size_t i = s->n_top < ix->n ? s->n_top++ : s->top_worst;
    tentry *t = ix->top + f * ix->n + i;
    t->value = s->cur_max;
    t->doc = s->cur_doc;
    t->pos = s->cur_pos;
    memcpy(slot_acts(ix, f, i), slot_acts(ix, f, scratch_slot(ix)), ix->win * sizeof(float));
    if (s->n_top == ix->n)
        top_find_worst(ix, f);
    s->cur_doc = NO_DOC;
    s->cur_captured = 0;
}

/* The seeded sampling hash of (document, position): a bijection of the pair,
 * so hashes never tie. */
static uint64_t sample_hash(const sae_indexer *ix, uint32_t doc, uint32_t pos)
{
    return sae_hash64(((uint64_t)doc << 32 | pos) ^ ix->seed_mix);
}

/* Offers (hash, doc, pos) to sketch k of f. When taken, its window comes from
 * row r, column entry e_col (capture) or, if src_slot >= 0, is copied from
 * that slot. */
static void sketch_offer(sae_indexer *ix, size_t f, size_t k, int bin, uint64_t h,
                         uint32_t doc, uint32_t pos, uint64_t r, uint32_t e_col, long src_slot)
{
    skhdr *s = ix->sk + f * ix->n_sk + k;
    skentry *e = ix->ske + (f * ix->n_sk + k) * ix->m;
    size_t i;
    if (s->n < ix->m) {
        if (s->n == 0)
            s->bin = (int16_t)bin;
        i = s->n++;
    } else {
        if (h >= e[s->worst].hash)
            return;
        i = s->worst;
    }
    e[i].hash = h;
    e[i].doc = doc;
    e[i].pos = pos;
    if (src_slot >= 0)
        memcpy(slot_acts(ix, f, sketch_slot(ix, k, i)), slot_acts(ix, f, (size_t)src_slot),
               ix->win * sizeof(float));
    else
        capture(ix, f, r, doc, sketch_slot(ix, k, i), e_col);
    if (s->n == ix->m) {
        uint8_t w = 0;
        for (uint8_t j = 1; j < s->n; j++)
            if (e[j].hash > e[w].hash)
                w = j;
        s->worst = w;
    }
}

/* f's max rose to m: bins b with q*lo(b) < m can only end in group 0, so
 * their sketches merge into the prefix sketch and their ring slots free up. */
static void advance_live(sae_indexer *ix, size_t f, float m)
{
    fstate *st = &ix->st[f];
    uint32_t b = st->b_lo;
    while (b < SAE_HIST_BINS && (double)ix->q * sae_hist_lo((int)b) < (double)m) {
        size_t k = 1 + b % ix->w;
        skhdr *s = ix->sk + f * ix->n_sk + k;
        if (s->n && s->bin == (int16_t)b) {
            skentry *e = ix->ske + (f * ix->n_sk + k) * ix->m;
            for (size_t i = 0; i < s->n; i++)
                sketch_offer(ix, f, 0, -1, e[i].hash, e[i].doc, e[i].pos, 0, 0,
                             (long)sketch_slot(ix, k, i));
            s->n = 0;
        }
        b++;
    }
    st->b_lo = (uint16_t)b;
}

/* Updates every statistic of f for value v at row r (document doc, position
 * pos; column entry e). */
static void observe(sae_indexer *ix, size_t f, float v, uint64_t r, uint32_t doc, uint32_t pos,
                    uint32_t e)
{
    fstate *s = &ix->st[f];
    int bin = sae_hist_bin(v);
    s->n_active++;
    sae_exact_sum_add(&ix->sum[f], v);
    ix->hist[f * SAE_HIST_BINS + (size_t)bin]++;
    if (v > s->max) {
        s->max = v;
        if (ix->n_sk)
            advance_live(ix, f, v);
    }
    if (ix->n) {
        if (s->cur_doc != doc) {
            top_flush(ix, f);
            s->cur_doc = doc;
            s->cur_max = v;
            s->cur_pos = pos;
            s->cur_captured = 0;
            if (top_qualifies(ix, f, v)) {
                capture(ix, f, r, doc, scratch_slot(ix), e);
                s->cur_captured = 1;
            }
        } else if (v > s->cur_max) {
            s->cur_max = v;
            s->cur_pos = pos;
            if (top_qualifies(ix, f, v)) {
                capture(ix, f, r, doc, scratch_slot(ix), e);
                s->cur_captured = 1;
            }
        }
    }
    if (ix->n_sk) {
        size_t k = (uint32_t)bin < s->b_lo ? 0 : 1 + (size_t)bin % ix->w;
        sketch_offer(ix, f, k, k ? bin : -1, sample_hash(ix, doc, pos), doc, pos, r, e, -1);
    }
}

/* Copies a fed CSR block into b, growing its buffers, and notes each row's
 * document and position (ix->doc_cursor follows the rows in order). Refuses
 * feature indices >= d_sae and non-finite values, naming the row. */
static int block_copy(sae_indexer *ix, block *b, uint64_t row0, const sae_sparse *s,
                      sae_error *err)
{
    if (s->n_rows > b->rows_cap) {
        uint32_t *p = realloc(b->row_ptr, (s->n_rows + 1) * sizeof *p);
        if (p)
            b->row_ptr = p;
        uint32_t *d = p ? realloc(b->doc, s->n_rows * sizeof *d) : NULL;
        if (d)
            b->doc = d;
        uint32_t *q = d ? realloc(b->pos, s->n_rows * sizeof *q) : NULL;
        if (!q)
            return sae_error_set(err, SAE_ENOMEM, "out of memory");
        b->pos = q;
        b->rows_cap = s->n_rows;
    }
    if (s->nnz > b->nnz_cap) {
        uint32_t *i = realloc(b->idx, s->nnz * sizeof *i);
        if (i)
            b->idx = i;
        float *v = i ? realloc(b->val, s->nnz * sizeof *v) : NULL;
        if (!v)
            return sae_error_set(err, SAE_ENOMEM, "out of memory");
        b->val = v;
        b->nnz_cap = s->nnz;
    }
    b->row0 = row0;
    b->n_rows = s->n_rows;
    b->nnz = s->nnz;
    memcpy(b->row_ptr, s->row_ptr, (s->n_rows + 1) * sizeof *b->row_ptr);
    if (s->nnz) {
        memcpy(b->idx, s->idx, s->nnz * sizeof *b->idx);
        memcpy(b->val, s->val, s->nnz * sizeof *b->val);
    }
    const uint64_t *rs = ix->tok->row_start;
    for (size_t r = 0; r < s->n_rows; r++) {
        uint64_t row = row0 + r;
        for (uint32_t e = b->row_ptr[r]; e < b->row_ptr[r + 1]; e++) {
            if (b->idx[e] >= ix->d_sae)
                return sae_error_set(err, SAE_EINVAL, "row %" PRIu64 ": feature %u >= d_sae", row,
                                     b->idx[e]);
            if (!isfinite(b->val[e]))
                return sae_error_set(err, SAE_ERANGE,
                                     "row %" PRIu64 ": feature %u is not finite (activations too "
                                     "large for float32?)",
                                     row, b->idx[e]);
        }
        if (row < ix->row_lo || row >= ix->row_hi) {
            b->doc[r] = b->pos[r] = NO_DOC;
            continue;
        }
        while (rs[ix->doc_cursor + 1] <= row)
            ix->doc_cursor++;
        b->doc[r] = (uint32_t)ix->doc_cursor;
        b->pos[r] = (uint32_t)(row - rs[ix->doc_cursor]);
    }
    return 0;
}

/* Rebuilds the column view over the kept blocks (older first, so each
 * feature's rows come out sorted). Only active values (> 0) go in. */
static int build_csc(sae_indexer *ix, sae_error *err)
{
    block *cur = &ix->blk[ix->cur_blk], *prev = ix->have_prev ? &ix->blk[!ix->cur_blk] : NULL;
    size_t nnz = cur->nnz + (prev ? prev->nnz : 0);
    if (nnz > UINT32_MAX)
        return sae_error_set(err, SAE_ERANGE, "too many active values in one block");
    if (nnz > ix->col_cap) {
        uint32_t *r = realloc(ix->col_row, nnz * sizeof *r);
        if (r)
            ix->col_row = r;
        float *v = r ? realloc(ix->col_val, nnz * sizeof *v) : NULL;
        if (!v)
            return sae_error_set(err, SAE_ENOMEM, "out of memory");
        ix->col_val = v;
        ix->col_cap = nnz;
    }
    ix->csc_base = prev ? prev->row0 : cur->row0;
    uint32_t *cs = ix->col_start;
    memset(cs, 0, (ix->d_sae + 1) * sizeof *cs);
    for (int pass = 0; pass < 2; pass++) {
        const block *b = pass == 0 ? prev : cur;
        if (!b)
            continue;
        for (size_t e = 0; e < b->nnz; e++)
            cs[b->idx[e] + 1] += b->val[e] > 0;
    }
    for (size_t f = 0; f < ix->d_sae; f++)
        cs[f + 1] += cs[f];
    /* Fill using col_start[f] as the cursor, then shift back. */
    for (int pass = 0; pass < 2; pass++) {
        const block *b = pass == 0 ? prev : cur;
        if (!b)
            continue;
        for (size_t r = 0; r < b->n_rows; r++)
            for (uint32_t e = b->row_ptr[r]; e < b->row_ptr[r + 1]; e++) {
                if (!(b->val[e] > 0))
                    continue;
                uint32_t f = b->idx[e];
                uint32_t at = cs[f]++;
                ix->col_row[at] = (uint32_t)(b->row0 + r - ix->csc_base);
                ix->col_val[at] = b->val[e];
            }
    }
    for (size_t f = ix->d_sae; f > 0; f--)
        cs[f] = cs[f - 1];
    cs[0] = 0;
    return 0;
}

/* Processes rows [ix->ready, end) feature by feature: each feature's values
 * in row order (features are independent, so this is the same as row order)
 * while the per-feature arrays are walked once, in address order. Every
 * window the rows need is in the kept blocks. */
static void process_rows(sae_indexer *ix, uint64_t end)
{
    uint64_t base = ix->csc_base;
    uint32_t lo = (uint32_t)(ix->ready - base), hi = (uint32_t)(end - base);
    const block *cur = &ix->blk[ix->cur_blk], *prev = &ix->blk[!ix->cur_blk];
    uint32_t split = (uint32_t)(cur->row0 - base); /* local rows below it are prev's */
    for (size_t f = 0; f < ix->d_sae; f++) {
        uint32_t a = ix->col_start[f], b = ix->col_start[f + 1];
        while (a < b && ix->col_row[a] < lo)
            a++;
        for (uint32_t e = a; e < b && ix->col_row[e] < hi; e++) {
            uint32_t lr = ix->col_row[e];
            const block *bk = lr >= split ? cur : prev;
            size_t i = lr >= split ? lr - split : lr;
            observe(ix, f, ix->col_val[e], base + lr, bk->doc[i], bk->pos[i], e);
        }
    }
    ix->ready = end;
}

int sae_indexer_feed(sae_indexer *ix, uint64_t row0, const sae_sparse *rows, sae_error *err)
{
    uint64_t want = ix->feed_hi - ix->next_feed;
    if (want > ix->set.block_rows)
        want = ix->set.block_rows;
    if (ix->finished || row0 != ix->next_feed || rows->n_rows != want || want == 0)
        return sae_error_set(err, SAE_EINVAL,
                             "indexer: expected the block of %" PRIu64 " rows at row %" PRIu64,
                             want, ix->next_feed);
    bool first = ix->next_feed == ix->feed_lo;
    int nb = first ? 0 : !ix->cur_blk;
    int rc = block_copy(ix, &ix->blk[nb], row0, rows, err);
    if (rc)
        return rc;
    ix->cur_blk = nb;
    ix->have_prev = !first;
    ix->next_feed = row0 + rows->n_rows;
    if ((rc = build_csc(ix, err)))
        return rc;
    uint64_t end = ix->next_feed >= ix->c ? ix->next_feed - ix->c : 0;
    if (end > ix->row_hi)
        end = ix->row_hi;
    if (end > ix->ready)
        process_rows(ix, end);
    return 0;
}

int sae_indexer_finish(sae_indexer *ix, sae_error *err)
{
    if (ix->finished)
        return 0;
    if (ix->next_feed != ix->feed_hi)
        return sae_error_set(err, SAE_EINVAL, "indexer: rows %" PRIu64 "..%" PRIu64 " not fed",
                             ix->next_feed, ix->feed_hi);
    if (ix->row_hi > ix->ready)
        process_rows(ix, ix->row_hi);
    for (size_t f = 0; f < ix->d_sae && ix->n; f++)
        top_flush(ix, f);
    ix->finished = true;
    return 0;
}

/* ------------------------------------------------------------ picks */

/* A sampling candidate of one feature, wherever it comes from. */
typedef struct cand {
    uint64_t hash;
    uint32_t doc, pos;
    float value;
    int32_t bin;            /* histogram bin, -1 for the prefix */
    uint32_t src;           /* the caller's reference (slot, or shard/rank) */
} cand;

/* A chosen example: which candidate or top entry, its kind, rank and bins. */
typedef struct pick {
    sae_example_kind kind;
    uint32_t rank;
    uint32_t src;
    uint32_t doc, pos;
    float value;
    uint64_t hash;
    int32_t grp;
    bool has_bin;
    double bin_min, bin_max, bin_contains;
} pick;

/* Candidates by sampling hash (unique per token). */
static int cmp_cand_hash(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    return x->hash < y->hash ? -1 : x->hash > y->hash;
}

/* Candidates order for storage: bin, then hash. */
static int cmp_cand_bin_hash(const void *a, const void *b)
{
    const cand *x = a, *y = b;
    if (x->bin != y->bin)
        return x->bin < y->bin ? -1 : 1;
    return cmp_cand_hash(a, b);
}

/* Quantile picks order: group descending, value descending, document, position. */
static int cmp_pick_quantile(const void *a, const void *b)
{
    const pick *x = a, *y = b;
    if (x->grp != y->grp)
        return x->grp > y->grp ? -1 : 1;
    if (x->value != y->value)
        return x->value > y->value ? -1 : 1;
    if (x->doc != y->doc)
        return x->doc < y->doc ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

/* Top picks order: value descending, then document. */
static int cmp_pick_top(const void *a, const void *b)
{
    const pick *x = a, *y = b;
    if (x->value != y->value)
        return x->value > y->value ? -1 : 1;
    return x->doc < y->doc ? -1 : x->doc > y->doc;
}

/* Chooses the quantile samples of one feature: group g of Q over (0, max]
 * holds the bins sae_quantile_group maps to g (the prefix is group 0) and
 * gets the M candidates of smallest hash among those bins. Writes at most
 * Q*M picks into out (ranked) and returns how many. c is reordered. */
static size_t quantile_picks(uint32_t q, uint32_t m, float max, const uint64_t *hist,
                             uint64_t n_active, cand *c, size_t nc, pick *out)
{
    if (!q || !m || !n_active || !(max > 0))
        return 0;
    double gmin[SAE_INDEX_MAX_QUANTILES], gmax[SAE_INDEX_MAX_QUANTILES];
    uint64_t gcount[SAE_INDEX_MAX_QUANTILES] = {0};
    bool seen[SAE_INDEX_MAX_QUANTILES] = {false};
    for (int b = 0; b < SAE_HIST_BINS; b++) {
        uint32_t g = sae_quantile_group(b, max, q);
        double lo = sae_hist_lo(b), hi = sae_hist_hi(b);
        if (!seen[g]) {
            gmin[g] = lo;
            seen[g] = true;
        }
        gmax[g] = hi < max ? hi : max;
        gcount[g] += hist[b];
    }
    qsort(c, nc, sizeof *c, cmp_cand_hash);
    uint32_t taken[SAE_INDEX_MAX_QUANTILES] = {0};
    size_t n = 0;
    for (size_t i = 0; i < nc; i++) {
        uint32_t g = c[i].bin < 0 ? 0 : sae_quantile_group(c[i].bin, max, q);
        if (taken[g] >= m)
            continue;
        taken[g]++;
        pick *p = &out[n++];
        memset(p, 0, sizeof *p);
        p->kind = SAE_EX_QUANTILE;
        p->src = c[i].src;
        p->doc = c[i].doc;
        p->pos = c[i].pos;
        p->value = c[i].value;
        p->hash = c[i].hash;
        p->grp = (int32_t)g;
        p->has_bin = true;
        p->bin_min = gmin[g];
        p->bin_max = gmax[g];
        p->bin_contains = (double)gcount[g] / (double)n_active;
    }
    qsort(out, n, sizeof *out, cmp_pick_quantile);
    for (size_t i = 0; i < n; i++)
        out[i].rank = (uint32_t)i;
    return n;
}

/* ------------------------------------------------------------ interning */

/* Distinct token strings, each with a dense id in order of first sight;
 * open addressing over ids. Owns its buffers. */
typedef struct interner {
    char *bytes;
    size_t n_bytes, cap_bytes;
    uint64_t *off;          /* (n) */
    uint32_t *len;          /* (n) */
    size_t n, cap;
    uint32_t *table;        /* (table_cap) id + 1, 0 = empty */
    size_t table_cap;
} interner;

/* Frees every buffer of it and empties it. */
static void interner_free(interner *it)
{
    free(it->bytes);
    free(it->off);
    free(it->len);
    free(it->table);
    memset(it, 0, sizeof *it);
}

/* Doubles the table and reinserts every id. */
static int interner_rehash(interner *it)
{
    size_t cap = it->table_cap ? it->table_cap * 2 : 1024;
    uint32_t *t = calloc(cap, sizeof *t);
    if (!t)
        return -1;
    for (size_t id = 0; id < it->n; id++) {
        size_t h = (size_t)XXH3_64bits(it->bytes + it->off[id], it->len[id]) & (cap - 1);
        while (t[h])
            h = (h + 1) & (cap - 1);
        t[h] = (uint32_t)id + 1;
    }
    free(it->table);
    it->table = t;
    it->table_cap = cap;
    return 0;
}

/* The id of s (len bytes), adding it if new; -1 when out of memory. */
static int intern(interner *it, const char *s, size_t len, uint32_t *id)
{
    if ((it->n + 1) * 2 > it->table_cap && interner_rehash(it))
        return -1;
    size_t h = (size_t)XXH3_64bits(s, len) & (it->table_cap - 1);
    while (it->table[h]) {
        uint32_t i = it->table[h] - 1;
        if (it->len[i] == len && !memcmp(it->bytes + it->off[i], s, len)) {
            *id = i;
            return 0;
        }
        h = (h + 1) & (it->table_cap - 1);
    }
    if (len > UINT32_MAX || it->n >= UINT32_MAX - 1)
        return -1;
    if (it->n == it->cap) {
        size_t c = it->cap ? it->cap * 2 : 1024;
        uint64_t *o = realloc(it->off, c * sizeof *o);
        if (o)
            it->off = o;
        uint32_t *l = o ? realloc(it->len, c * sizeof *l) : NULL;
        if (!l)
            return -1;
        it->len = l;
        it->cap = c;
    }
    if (it->n_bytes + len > it->cap_bytes) {
        size_t c = it->cap_bytes ? it->cap_bytes : 65536;
        while (c < it->n_bytes + len)
            c *= 2;
        char *b = realloc(it->bytes, c);
        if (!b)
            return -1;
        it->bytes = b;
        it->cap_bytes = c;
    }
    if (len)
        memcpy(it->bytes + it->n_bytes, s, len);
    it->off[it->n] = it->n_bytes;
    it->len[it->n] = (uint32_t)len;
    it->n_bytes += len;
    it->table[h] = (uint32_t)it->n + 1;
    *id = (uint32_t)it->n++;
    return 0;
}

/* Bytewise order of two interned strings (a shorter prefix first). */
static int cmp_interned(const void *a, const void *b, void *ctx)
{
    const interner *it = ctx;
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    size_t lx = it->len[x], ly = it->len[y];
    int c = memcmp(it->bytes + it->off[x], it->bytes + it->off[y], lx < ly ? lx : ly);
    if (c)
        return c;
    return lx < ly ? -1 : lx > ly;
}

/* Writes the interned strings as the vocab table, ids in bytewise order of
 * the strings, and returns in *remap (owned by the caller) each interned
 * id's vocab id. */
static int write_vocab(interner *it, sae_store_writer *w, uint32_t **remap, sae_error *err)
{
    uint32_t *order = malloc((it->n ? it->n : 1) * sizeof *order);
    uint32_t *map = malloc((it->n ? it->n : 1) * sizeof *map);
    int rc = 0;
    if (!order || !map) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the vocabulary");
        goto out;
    }
    for (size_t i = 0; i < it->n; i++)
        order[i] = (uint32_t)i;
    qsort_r(order, it->n, sizeof *order, cmp_interned, it);
    for (size_t i = 0; i < it->n; i++) {
        map[order[i]] = (uint32_t)i;
        if ((rc = sae_store_put_vocab(w, (uint32_t)i, it->bytes + it->off[order[i]],
                                      it->len[order[i]], err)))
            goto out;
    }
    *remap = map;
    map = NULL;
out:
    free(order);
    free(map);
    return rc;
}

/* ------------------------------------------------------------ writing a build */

/* Window geometry of an example at position pos of a document of doc_len
 * tokens: [first, first+len) clipped to the document, and the offset of
 * `first` in a slot laid out from pos-C. */
static void window_of(uint32_t pos, uint64_t doc_len, uint32_t c, uint32_t *first,
                      uint32_t *len, uint32_t *skip)
{
    uint64_t lo = pos >= c ? pos - c : 0, hi = (uint64_t)pos + c + 1;
    if (hi > doc_len)
        hi = doc_len;
    *first = (uint32_t)lo;
    *len = (uint32_t)(hi - lo);
    *skip = (uint32_t)(lo + c - pos);
}

/* The examples one feature of the build stores: top (best first), quantile
 * picks and, in a shard, every sampling candidate. src is the window slot.
 * cbuf must hold n_sk*M, out N + n_sk*M + Q*M entries. Returns the count;
 * *n_top / *n_quant say how many of each. */
static size_t build_picks(const sae_indexer *ix, size_t f, cand *cbuf, pick *out,
                          uint32_t *n_top, uint32_t *n_quant)
{
    const fstate *s = &ix->st[f];
    size_t n = 0;
    for (uint16_t i = 0; i < s->n_top; i++) {
        const tentry *t = ix->top + f * ix->n + i;
        pick *p = &out[n++];
        memset(p, 0, sizeof *p);
        p->kind = SAE_EX_TOP;
        p->src = i;
        p->doc = t->doc;
        p->pos = t->pos;
        p->value = t->value;
    }
    qsort(out, n, sizeof *out, cmp_pick_top);
    for (size_t i = 0; i < n; i++)
        out[i].rank = (uint32_t)i;
    *n_top = (uint32_t)n;
    size_t nc = 0;
    for (size_t k = 0; k < ix->n_sk; k++) {
        const skhdr *h = ix->sk + f * ix->n_sk + k;
        const skentry *e = ix->ske + (f * ix->n_sk + k) * ix->m;
        for (size_t i = 0; i < h->n; i++) {
            cand *c = &cbuf[nc++];
            c->hash = e[i].hash;
            c->doc = e[i].doc;
            c->pos = e[i].pos;
            c->src = (uint32_t)sketch_slot(ix, k, i);
            c->value = slot_acts(ix, f, c->src)[ix->c];
            c->bin = k == 0 ? -1 : h->bin;
        }
    }
    uint64_t hist[SAE_HIST_BINS];
    for (int b = 0; b < SAE_HIST_BINS; b++)
        hist[b] = ix->hist[f * SAE_HIST_BINS + (size_t)b];
    size_t nq = quantile_picks(ix->q, ix->m, s->max, hist, s->n_active, cbuf, nc, out + n);
    *n_quant = (uint32_t)nq;
    n += nq;
    if (ix->set.is_shard) {
        qsort(cbuf, nc, sizeof *cbuf, cmp_cand_bin_hash);
        for (size_t i = 0; i < nc; i++) {
            pick *p = &out[n++];
            memset(p, 0, sizeof *p);
            p->kind = SAE_EX_CANDIDATE;
            p->rank = (uint32_t)i;
            p->src = cbuf[i].src;
            p->doc = cbuf[i].doc;
            p->pos = cbuf[i].pos;
            p->value = cbuf[i].value;
            p->hash = cbuf[i].hash;
            p->grp = cbuf[i].bin;
        }
    }
    return n;
}

/* A window whose tokens must be read: document, clipped window and where its
 * token ids go in the token pool. */
typedef struct need {
    uint32_t doc, first, len, skip;
    size_t at;              /* index into the token pool (a win-long record) */
} need;

/* Windows to read, by document (each document read once), then record. */
static int cmp_need(const void *a, const void *b)
{
    const need *x = a, *y = b;
    if (x->doc != y->doc)
        return x->doc < y->doc ? -1 : 1;
    return x->at < y->at ? -1 : x->at > y->at;
}

/* Fills a features-table row from the per-feature numbers. hist is the full
 * SAE_HIST_BINS array; the row borrows it (trimmed) and sum. */
static void feature_row(uint32_t f, uint64_t n_active, float max, const sae_exact_sum *sum,
                        double decoder_norm, uint64_t n_tokens, const uint64_t *hist,
                        uint32_t n_top, uint32_t n_quant, sae_store_feature_row *row)
{
    memset(row, 0, sizeof *row);
    row->index = f;
    row->n_active = n_active;
    row->density = n_tokens ? (double)n_active / (double)n_tokens : 0.0;
    row->max_activation = max;
    row->mean_activation = n_active ? sae_exact_sum_value(sum) / (double)n_active : 0.0;
    row->decoder_norm = decoder_norm;
    row->sum_exact = (const uint8_t *)sum->limb;
    int lo = 0, hi = SAE_HIST_BINS - 1;
    while (lo < SAE_HIST_BINS && !hist[lo])
        lo++;
    while (hi >= lo && !hist[hi])
        hi--;
    row->hist_first = lo < SAE_HIST_BINS ? (uint32_t)lo : 0;
    row->hist_n = lo <= hi ? (uint32_t)(hi - lo + 1) : 0;
    row->hist = hist + row->hist_first;
    row->n_top = n_top;
    row->n_quantile = n_quant;
}

/* Stores one feature's examples: rows[i] is picks[i]'s row, and the picks
 * come kind by kind (top, quantile, candidates), each run one table row. */
static int put_by_kind(sae_store_writer *w, uint32_t f, const pick *picks,
                       const sae_store_example_row *rows, size_t n, sae_error *err)
{
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i; j < n && picks[j].kind == picks[i].kind; j++)
            ;
        int rc = sae_store_put_examples(w, f, picks[i].kind, rows + i, j - i, err);
        if (rc)
            return rc;
    }
    return 0;
}

int sae_indexer_write(sae_indexer *ix, const float *dec_norm, sae_store_writer *w,
                      sae_error *err)
{
    if (!ix->finished)
        return sae_error_set(err, SAE_EINVAL, "indexer: write before finish");
    int rc = 0;
    size_t max_picks = (size_t)ix->n + (size_t)ix->n_sk * ix->m + (size_t)ix->q * ix->m;
    size_t d = ix->d_sae, n_need = 0, cap_need = 0, pool_n = 0;
    cand *cbuf = malloc(((size_t)ix->n_sk * ix->m + 1) * sizeof *cbuf);
    pick *picks = malloc((max_picks + 1) * sizeof *picks);
    sae_store_example_row *rows = malloc((max_picks + 1) * sizeof *rows);
    uint32_t *slotmap = NULL, *pool = NULL, *remap = NULL;
    need *needs = NULL;
    interner it = {0};
    sae_doc doc = {0};
    if (!cbuf || !picks || !rows || sae_mul_size(d, ix->slots, &pool_n) ||
        !(slotmap = malloc((pool_n ? pool_n : 1) * sizeof *slotmap))) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory writing the index");
        goto out;
    }
    memset(slotmap, 0xff, pool_n * sizeof *slotmap);
    /* 1. Which windows are stored: give each a record in the token pool. */
    size_t n_rec = 0;
    for (size_t f = 0; f < d; f++) {
        uint32_t nt, nq;
        size_t np = build_picks(ix, f, cbuf, picks, &nt, &nq);
        for (size_t i = 0; i < np; i++) {
            uint32_t *sm = &slotmap[f * ix->slots + picks[i].src];
            if (*sm != UINT32_MAX)
                continue;
            if (n_rec >= UINT32_MAX) {
                rc = sae_error_set(err, SAE_ERANGE, "too many examples");
                goto out;
            }
            *sm = (uint32_t)n_rec;
            if (n_need == cap_need) {
                size_t c = cap_need ? cap_need * 2 : 4096;
                need *p = c > SIZE_MAX / sizeof *p ? NULL : realloc(needs, c * sizeof *p);
                if (!p) {
                    rc = sae_error_set(err, SAE_ENOMEM, "out of memory writing the index");
                    goto out;
                }
                needs = p;
                cap_need = c;
            }
            need *nd = &needs[n_need++];
            uint64_t dl = ix->tok->row_start[picks[i].doc + 1] - ix->tok->row_start[picks[i].doc];
            nd->doc = picks[i].doc;
            window_of(picks[i].pos, dl, ix->c, &nd->first, &nd->len, &nd->skip);
            nd->at = n_rec++;
        }
    }
    size_t pool_len;
    if (sae_mul_size(n_rec ? n_rec : 1, ix->win, &pool_len) ||
        !(pool = calloc(pool_len, sizeof *pool))) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the example tokens");
        goto out;
    }
    /* 2. Read each referenced document once, in order; intern the tokens its
     * windows cover (each position once), then copy ids into the windows. */
    qsort(needs, n_need, sizeof *needs, cmp_need);
    for (size_t i = 0, j; i < n_need; i = j) {
        uint32_t dd = needs[i].doc, lo = UINT32_MAX, hi = 0;
        for (j = i; j < n_need && needs[j].doc == dd; j++) {
            lo = needs[j].first < lo ? needs[j].first : lo;
            hi = needs[j].first + needs[j].len > hi ? needs[j].first + needs[j].len : hi;
        }
        if ((rc = sae_tokens_read_doc(ix->tok, dd, &doc, err)) ||
            (rc = sae_store_put_document(w, dd, doc.id, err)))
            goto out;
        /* ids[p - lo] = 1 marks a covered position (only tokens of stored
         * windows enter the vocabulary), then holds its id. */
        uint32_t *ids = calloc((size_t)(hi - lo) + 1, sizeof *ids);
        bool oom = !ids;
        for (size_t k = i; !oom && k < j; k++)
            for (uint32_t p = 0; p < needs[k].len; p++)
                ids[needs[k].first - lo + p] = 1;
        for (uint32_t p = lo; !oom && p < hi; p++)
            if (ids[p - lo])
                oom = intern(&it, doc.tok[p], doc.tok_len[p], &ids[p - lo]) != 0;
        if (oom) {
            free(ids);
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the vocabulary");
            goto out;
        }
        for (size_t k = i; k < j; k++)
            memcpy(pool + needs[k].at * ix->win + needs[k].skip, ids + (needs[k].first - lo),
                   needs[k].len * sizeof *ids);
        free(ids);
        sae_doc_free(&doc);
    }
    /* 3. The vocabulary in bytewise order; renumber the pool. */
    if ((rc = write_vocab(&it, w, &remap, err)))
        goto out;
    for (size_t i = 0; i < n_need; i++) {
        uint32_t *p = pool + needs[i].at * ix->win + needs[i].skip;
        for (uint32_t j = 0; j < needs[i].len; j++)
            p[j] = remap[p[j]];
    }
    /* 4. Features and their examples. Each feature's picks are built again
     * rather than kept from step 1, which would hold d_sae x max_picks of them
     * at once; building them (a sort of a few dozen entries) is cheap next to
     * writing the feature's rows. */
    for (size_t f = 0; f < d; f++) {
        uint32_t nt, nq;
        size_t np = build_picks(ix, f, cbuf, picks, &nt, &nq);
        uint64_t hist[SAE_HIST_BINS];
        for (int b = 0; b < SAE_HIST_BINS; b++)
            hist[b] = ix->hist[f * SAE_HIST_BINS + (size_t)b];
        sae_store_feature_row row;
        feature_row((uint32_t)f, ix->st[f].n_active, ix->st[f].max, &ix->sum[f],
                    dec_norm ? dec_norm[f] : 0.0, ix->row_hi - ix->row_lo, hist, nt, nq, &row);
        if ((rc = sae_store_put_feature(w, &row, err)))
            goto out;
        for (size_t i = 0; i < np; i++) {
            const pick *p = &picks[i];
            uint64_t dl = ix->tok->row_start[p->doc + 1] - ix->tok->row_start[p->doc];
            uint32_t first, len, skip;
            window_of(p->pos, dl, ix->c, &first, &len, &skip);
            size_t rec = slotmap[f * ix->slots + p->src];
            rows[i] = (sae_store_example_row){
                .doc = p->doc, .first = first, .focus = p->pos, .len = len, .value = p->value,
                .hash = p->hash, .grp = p->grp, .has_bin = p->has_bin, .bin_min = p->bin_min,
                .bin_max = p->bin_max, .bin_contains = p->bin_contains,
                .tokens = pool + rec * ix->win + skip,
                .acts = slot_acts(ix, f, p->src) + skip,
            };
        }
        if ((rc = put_by_kind(w, (uint32_t)f, picks, rows, np, err)))
            goto out;
    }
out:
    sae_doc_free(&doc);
    interner_free(&it);
    free(cbuf);
    free(picks);
    free(rows);
    free(slotmap);
    free(pool);
    free(needs);
    free(remap);
    return rc;
}

/* ------------------------------------------------------------ neighbours */

/* Neighbour lists being built: idx/cos (d_sae, k) sorted best first, how many
 * each holds, and the cosine a newcomer must reach once a list is full. */
typedef struct nlists {
    size_t k;
    uint32_t *idx;
    float *cos;
    uint32_t *n;            /* (d_sae) */
    float *thr;             /* (d_sae) -inf until full */
} nlists;

/* Offers neighbour j with cosine v to feature i's list (cosine descending,
 * ties by index ascending). */
static void nl_offer(nlists *l, size_t i, uint32_t j, float v)
{
    uint32_t *ix = l->idx + i * l->k;
    float *cs = l->cos + i * l->k;
    size_t n = l->n[i], at;
    if (n == l->k) {
        at = n - 1;
        if (!(v > cs[at] || (v == cs[at] && j < ix[at])))
            return;
    } else {
        at = n++;
    }
    while (at > 0 && (v > cs[at - 1] || (v == cs[at - 1] && j < ix[at - 1]))) {
        cs[at] = cs[at - 1];
        ix[at] = ix[at - 1];
        at--;
    }
    cs[at] = v;
    ix[at] = j;
    l->n[i] = (uint32_t)n;
    if (n == l->k)
        l->thr[i] = cs[n - 1];
}

int sae_neighbours(const float *w_dec, const float *dec_norm, size_t d_sae, size_t d_in,
                   size_t k, uint32_t *idx, float *cos, sae_error *err)
{
    if (k == 0)
        return 0;
    if (k >= d_sae || d_in > INT32_MAX || d_sae > INT32_MAX)
        return sae_error_set(err, SAE_EINVAL, "neighbours: k %zu needs d_sae > k", k);
    size_t bs = d_sae < 1024 ? d_sae : 1024;
    int rc = 0;
    float *c = malloc(bs * bs * sizeof *c), *inv = malloc(d_sae * sizeof *inv);
    nlists l = {.k = k, .idx = idx, .cos = cos};
    l.n = calloc(d_sae, sizeof *l.n);
    l.thr = malloc(d_sae * sizeof *l.thr);
    if (!c || !inv || !l.n || !l.thr) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the neighbours");
        goto out;
    }
    for (size_t i = 0; i < d_sae; i++) {
        inv[i] = dec_norm[i] > 0 ? 1.0f / dec_norm[i] : 0.0f;
        l.thr[i] = -INFINITY;
    }
    /* Each pair of row blocks once (J >= I): C = W_I W_J^T, and every cosine
     * serves both of its features, so the two lists agree bit for bit. */
    for (size_t i0 = 0; i0 < d_sae; i0 += bs) {
        size_t ni = d_sae - i0 < bs ? d_sae - i0 : bs;
        for (size_t j0 = i0; j0 < d_sae; j0 += bs) {
            size_t nj = d_sae - j0 < bs ? d_sae - j0 : bs;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)ni, (int)nj, (int)d_in,
                        1.0f, w_dec + i0 * d_in, (int)d_in, w_dec + j0 * d_in, (int)d_in, 0.0f,
                        c, (int)nj);
            for (size_t i = 0; i < ni; i++) {
                size_t gi = i0 + i;
                const float *row = c + i * nj;
                for (size_t j = j0 == i0 ? i + 1 : 0; j < nj; j++) {
                    size_t gj = j0 + j;
                    float v = row[j] * inv[gi] * inv[gj];
                    if (isnan(v))
                        v = 0.0f;
                    v = v > 1.0f ? 1.0f : v < -1.0f ? -1.0f : v;
                    if (v >= l.thr[gi])
                        nl_offer(&l, gi, (uint32_t)gj, v);
                    if (v >= l.thr[gj])
                        nl_offer(&l, gj, (uint32_t)gi, v);
                }
            }
        }
    }
out:
    free(c);
    free(inv);
    free(l.n);
    free(l.thr);
    return rc;
}

/* ------------------------------------------------------------ build */

/* The streaming pass, in parallel: E encoder threads encode blocks
 * k = e, e + E, ... into a ring of 2E slots while the calling thread feeds
 * the slots to the indexer strictly in block order. The statistics
 * (single-threaded, about an eighth of the pass) so overlap the GEMMs and no
 * BLAS thread spins waiting for them; the result is exactly that of a serial
 * loop. E is the BLAS thread budget, at most STREAM_MAX_ENCODERS (each
 * encoder holds a workspace of B x d_sae floats, 25 MB at d_sae 24576) and
 * at most the number of blocks; each encoder's GEMMs run on budget / E BLAS
 * threads, so up to STREAM_MAX_ENCODERS threads every GEMM is single-threaded
 * and the statistics do not depend on the thread count. An error in a block
 * (a non-finite value, a failed read) is reported when the feeder reaches
 * it, so the first bad block in row order is the one named, whatever the
 * timing. */
#define STREAM_MAX_ENCODERS 8

/* One slot of the ring: a block's sparse rows, or the error encoding it. */
typedef struct stream_slot {
    sae_sparse sp;
    bool full;     /* encoded, not yet fed */
    int rc;        /* the encoder's error for this block */
    sae_error err;
} stream_slot;

/* The pass's shared state, guarded by mu: borrows the model and the
 * activations, owns the slot ring. */
typedef struct stream {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    const sae_model *m;
    const sae_acts *acts;
    uint64_t row0, row1;
    size_t B, n_enc, n_slots;
    stream_slot *slot; /* (n_slots) */
    bool stop;         /* the feeder is done (or failed): encoders return */
} stream;

/* One encoder thread's own buffers (owned) and its place in the stream. */
typedef struct encoder {
    stream *st;
    size_t e;          /* this encoder's number, 0 .. n_enc-1 */
    sae_workspace *ws;
    float *x;          /* (B, d_in) */
} encoder;

/* Reads rows [r, r + n) into x, refusing a non-finite value; drops their
 * mapped pages once read (keeps the RSS flat in corpus length). */
static int stream_read(const stream *st, uint64_t r, size_t n, float *x, sae_error *err)
{
    int rc = sae_acts_read(st->acts, (size_t)r, n, x, err);
    if (rc)
        return rc;
    size_t d_in = st->m->d_in;
    for (size_t i = 0; i < n * d_in; i++)
        if (!isfinite(x[i]))
            return sae_error_set(err, SAE_ERANGE,
                                 "activations row %" PRIu64 ": value %zu is not finite",
                                 r + i / d_in, i % d_in);
    sae_acts_release(st->acts, (size_t)r, n);
    return 0;
}

/* One encoder thread: its blocks, each into the slot the feeder has freed. */
static void *encoder_main(void *arg)
{
    encoder *en = arg;
    stream *st = en->st;
    sae_encode_opts opts = {0};
    for (uint64_t k = en->e;; k += st->n_enc) {
        if (k > (st->row1 - st->row0) / st->B)
            break;
        uint64_t r = st->row0 + k * st->B;
        if (r >= st->row1)
            break;
        size_t n = st->row1 - r < st->B ? (size_t)(st->row1 - r) : st->B;
        stream_slot *sl = &st->slot[k % st->n_slots];
        pthread_mutex_lock(&st->mu);
        while (sl->full && !st->stop)
            pthread_cond_wait(&st->cv, &st->mu);
        bool stop = st->stop;
        pthread_mutex_unlock(&st->mu);
        if (stop)
            break;
        sae_error err;
        sae_sparse_reset(&sl->sp);
        int rc = stream_read(st, r, n, en->x, &err);
        if (!rc)
            rc = sae_encode(st->m, en->ws, en->x, n, &opts, &sl->sp, NULL, NULL, &err);
        pthread_mutex_lock(&st->mu);
        sl->rc = rc;
        if (rc)
            sl->err = err;
        sl->full = true;
        pthread_cond_broadcast(&st->cv);
        pthread_mutex_unlock(&st->mu);
        if (rc)
            break;
    }
    return NULL;
}

/* The streaming pass over rows [row0, row1) of job->acts into ix. Starts
 * the encoder threads and sets OpenBLAS's process-wide thread count to
 * budget / E for the pass, restoring it on return. */
static int stream_rows(const sae_index_job *job, sae_indexer *ix, uint64_t row0, uint64_t row1,
                       size_t B, sae_error *err)
{
    const sae_model *m = job->model;
    int blas = sae_get_blas_threads();
    uint64_t n_blocks = (row1 - row0 + B - 1) / B;
    size_t n_enc = (size_t)blas < STREAM_MAX_ENCODERS ? (size_t)blas : STREAM_MAX_ENCODERS;
    if (n_enc > n_blocks)
        n_enc = n_blocks ? (size_t)n_blocks : 1;
    stream st = {.mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .m = m,
                 .acts = job->acts, .row0 = row0, .row1 = row1, .B = B, .n_enc = n_enc,
                 .n_slots = 2 * n_enc};
    encoder *en = calloc(n_enc, sizeof *en);
    pthread_t *th = calloc(n_enc, sizeof *th);
    st.slot = calloc(st.n_slots, sizeof *st.slot);
    size_t xn, started = 0;
    int rc = 0;
    if (!en || !th || !st.slot || sae_mul_size(B, m->d_in, &xn)) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the encode buffers");
        goto out;
    }
    for (size_t i = 0; i < st.n_slots; i++)
        sae_sparse_init(&st.slot[i].sp);
    for (size_t e = 0; e < n_enc; e++) {
        en[e] = (encoder){.st = &st, .e = e, .ws = sae_workspace_new(m, B),
                          .x = malloc(xn * sizeof(float))};
        if (!en[e].ws || !en[e].x) {
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the encode buffers");
            goto out;
        }
    }
    if (n_enc > 1)
        sae_set_blas_threads(blas / (int)n_enc);
    for (; started < n_enc; started++) {
        int e = pthread_create(&th[started], NULL, encoder_main, &en[started]);
        if (e) {
            rc = sae_error_set(err, SAE_ENOMEM, "cannot start encoding thread %zu of %zu: %s",
                               started + 1, n_enc, strerror(e));
            goto out;
        }
    }
    /* In block order, whichever encoder finishes first: the indexer's
     * statistics and samples are defined by row order. */
    for (uint64_t k = 0, r = row0; r < row1; k++, r += B) {
        stream_slot *sl = &st.slot[k % st.n_slots];
        pthread_mutex_lock(&st.mu);
        while (!sl->full)
            pthread_cond_wait(&st.cv, &st.mu);
        pthread_mutex_unlock(&st.mu);
        if (sl->rc) {
            if (err)
                *err = sl->err;
            rc = sl->rc;
            goto out;
        }
        if ((rc = sae_indexer_feed(ix, r, &sl->sp, err)))
            goto out;
        uint64_t fed = r + sl->sp.n_rows - row0;
        pthread_mutex_lock(&st.mu);
        sl->full = false;
        pthread_cond_broadcast(&st.cv);
        pthread_mutex_unlock(&st.mu);
        if (job->progress)
            job->progress(job->progress_ctx, fed, row1 - row0);
    }
out:
    pthread_mutex_lock(&st.mu);
    st.stop = true;
    pthread_cond_broadcast(&st.cv);
    pthread_mutex_unlock(&st.mu);
    for (size_t e = 0; e < started; e++)
        pthread_join(th[e], NULL);
    if (n_enc > 1)
        sae_set_blas_threads(blas);
    for (size_t e = 0; en && e < n_enc; e++) {
        sae_workspace_free(en[e].ws);
        free(en[e].x);
    }
    for (size_t i = 0; st.slot && i < st.n_slots; i++)
        sae_sparse_free(&st.slot[i].sp);
    free(st.slot);
    free(en);
    free(th);
    pthread_mutex_destroy(&st.mu);
    pthread_cond_destroy(&st.cv);
    return rc;
}

int sae_index_build(const sae_index_job *job, const char *out_path, sae_error *err)
{
    double t0 = sae_clock_s(), t1 = t0, t2 = t0;
    const sae_model *m = job->model;
    const sae_tokens *tok = job->tok;
    sae_index_settings set = job->set;
    int rc;
    sae_indexer *ix = NULL;
    sae_store_writer *w = NULL;
    float *nb_cos = NULL;
    uint32_t *nb_idx = NULL;
    if (sae_acts_dim(job->acts) != m->d_in) {
        return sae_error_set(err, SAE_EDIM,
                             "%s: activations have d_in %zu, the model's d_in is %zu",
                             sae_acts_first_path(job->acts), sae_acts_dim(job->acts), m->d_in);
    }
    if (sae_acts_rows(job->acts) != tok->n_tokens)
        return sae_error_set(err, SAE_EDIM,
                             "%s: the documents hold %" PRIu64 " tokens but the activations have "
                             "%zu rows",
                             tok->path, tok->n_tokens, sae_acts_rows(job->acts));
    if ((rc = sae_index_settings_check(&set, err)))
        return rc;
    size_t doc_lo, doc_hi;
    sae_shard_docs(tok->n_docs, set.shard, set.n_shards, &doc_lo, &doc_hi);
    if ((rc = sae_indexer_new(m->d_sae, &set, tok, doc_lo, doc_hi, &ix, err)))
        goto out;
    if ((rc = sae_store_writer_open(out_path, &w, err)))
        goto out;

    /* Neighbours first: they need only the weights. */
    size_t k = set.neighbours < m->d_sae ? set.neighbours : m->d_sae - 1;
    size_t nbn;
    if (sae_mul_size(m->d_sae, k ? k : 1, &nbn) || !(nb_idx = malloc(nbn * sizeof *nb_idx)) ||
        !(nb_cos = malloc(nbn * sizeof *nb_cos))) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the neighbours");
        goto out;
    }
    if ((rc = sae_neighbours(m->w_dec, m->dec_norm, m->d_sae, m->d_in, k, nb_idx, nb_cos, err)))
        goto out;
    for (size_t f = 0; f < m->d_sae; f++)
        if ((rc = sae_store_put_neighbours(w, (uint32_t)f, nb_idx + f * k, nb_cos + f * k, k,
                                           err)))
            goto out;

    t1 = sae_clock_s();

    /* One pass over the slice, in whole blocks. */
    uint64_t row0, row1;
    sae_indexer_rows(ix, &row0, &row1);
    if ((rc = stream_rows(job, ix, row0, row1, set.block_rows, err)))
        goto out;
    if ((rc = sae_indexer_finish(ix, err)))
        goto out;
    t2 = sae_clock_s();
    if ((rc = sae_indexer_write(ix, m->dec_norm, w, err)))
        goto out;

    /* Explanations and meta. */
    const sae_explanations *e = job->expl;
    for (size_t i = 0; e && i < e->n; i++) {
        const sae_explanation *xe = &e->items[i];
        if ((rc = sae_store_put_explanation(w, i + 1, xe->feature, xe->description, xe->has_score,
                                            xe->score, xe->source, xe->type_name, err)))
            goto out;
    }
    sae_store_info info;
    memset(&info, 0, sizeof info);
    memcpy(info.weights_digest, m->weights_digest, sizeof info.weights_digest);
    info.d_in = m->d_in;
    info.d_sae = m->d_sae;
    info.n_tokens = sae_indexer_tokens(ix);
    info.n_documents = sae_indexer_documents(ix);
    info.corpus_tokens = tok->n_tokens;
    info.corpus_documents = tok->n_docs;
    info.top = set.top;
    info.quantiles = set.quantiles;
    info.per_quantile = set.per_quantile;
    info.context = set.context;
    info.neighbours = set.neighbours;
    info.seed = set.seed;
    info.block_rows = set.block_rows;
    if (set.is_shard)
        snprintf(info.shard, sizeof info.shard, "%u/%u", set.shard, set.n_shards);
    snprintf(info.histogram, sizeof info.histogram, "%s", SAE_HIST_DEFINITION);
    memcpy(info.tokens_digest, tok->digest, sizeof info.tokens_digest);
    if (e)
        memcpy(info.explanations_digest, e->digest, sizeof info.explanations_digest);
    info.n_explanations = e ? e->n : 0;
    if ((rc = sae_store_put_info(w, &info, err)))
        goto out;
    rc = sae_store_writer_commit(w, err);
    w = NULL;
    if (!rc && job->timing) {
        job->timing->neighbours_s = t1 - t0;
        job->timing->stream_s = t2 - t1;
        job->timing->write_s = sae_clock_s() - t2;
    }
out:
    if (w)
        sae_store_writer_abort(w);
    sae_indexer_free(ix);
    free(nb_idx);
    free(nb_cos);
    return rc;
}

/* ------------------------------------------------------------ merge */

/* One shard being merged: its file, a connection, and per vocab id whether a
 * merged example uses it and its merged vocab id. */
typedef struct shard_in {
    const char *path;
    sae_store *s;
    sae_store_conn *c;
    uint32_t index;         /* I of I/N */
    uint8_t *used;          /* (vocab size) */
    uint32_t *map;          /* (vocab size) merged vocab id */
} shard_in;

/* The documents merged examples use: global index -> name. */
typedef struct docset {
    uint32_t *doc;          /* (cap) doc + 1, 0 empty */
    char **name;            /* (cap) owned */
    size_t n, cap;
} docset;

/* Frees the set and its names. */
static void docset_free(docset *d)
{
    for (size_t i = 0; i < d->cap; i++)
        free(d->name[i]);
    free(d->doc);
    free(d->name);
    memset(d, 0, sizeof *d);
}

/* Adds document doc with its name unless present; -1 out of memory. */
static int docset_add(docset *d, uint32_t doc, const char *name)
{
    if ((d->n + 1) * 2 > d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 1024;
        docset nd = {calloc(cap, sizeof *nd.doc), calloc(cap, sizeof *nd.name), d->n, cap};
        if (!nd.doc || !nd.name) {
            free(nd.doc);
            free(nd.name);
            return -1;
        }
        for (size_t i = 0; i < d->cap; i++)
            if (d->doc[i]) {
                size_t h = sae_hash64(d->doc[i] - 1) & (cap - 1);
                while (nd.doc[h])
                    h = (h + 1) & (cap - 1);
                nd.doc[h] = d->doc[i];
                nd.name[h] = d->name[i];
            }
        free(d->doc);
        free(d->name);
        *d = nd;
    }
    size_t h = sae_hash64(doc) & (d->cap - 1);
    while (d->doc[h]) {
        if (d->doc[h] == doc + 1)
            return 0;
        h = (h + 1) & (d->cap - 1);
    }
    if (!(d->name[h] = strdup(name)))
        return -1;
    d->doc[h] = doc + 1;
    d->n++;
    return 0;
}

/* Ascending uint64_t, for qsort. */
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Writes the document set in index order. */
static int docset_write(const docset *d, sae_store_writer *w, sae_error *err)
{
    uint64_t *order = malloc((d->n ? d->n : 1) * sizeof *order);
    if (!order)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    size_t n = 0;
    for (size_t i = 0; i < d->cap; i++)
        if (d->doc[i])
            order[n++] = (uint64_t)(d->doc[i] - 1) << 32 | i;
    qsort(order, n, sizeof *order, cmp_u64);
    int rc = 0;
    for (size_t i = 0; i < n && !rc; i++)
        rc = sae_store_put_document(w, (uint32_t)(order[i] >> 32),
                                    d->name[order[i] & 0xffffffffu], err);
    free(order);
    return rc;
}

/* Merge state for the feature being worked on: every shard's examples of it
 * and the flat list of them that picks refer to. */
typedef struct merge_ctx {
    shard_in *sh;
    size_t n;
    const sae_store_info *info;  /* shard 0's */
    uint64_t n_tokens;
    sae_store_examples *top, *cand; /* (n) */
    const sae_store_example **ex;  /* (cap_ex) */
    uint32_t *ex_shard;            /* (cap_ex) */
    size_t n_ex, cap_ex;
    cand *cands;                   /* (cap_ex) */
    pick *picks;                   /* (N + Q*M) */
    pick *tops;                    /* (cap_tops) every shard's top entries */
    sae_store_example_row *rows;   /* (N + Q*M) */
    size_t cap_tops;
    uint32_t *tokbuf;              /* (N + Q*M, 2C+1) merged vocab ids */
} merge_ctx;

/* Appends example e of shard s to the flat list; returns its index or -1. */
static long ex_push(merge_ctx *mc, const sae_store_example *e, uint32_t s)
{
    if (mc->n_ex == mc->cap_ex) {
        size_t c = mc->cap_ex ? mc->cap_ex * 2 : 256;
        const sae_store_example **a = realloc(mc->ex, c * sizeof *a);
        if (a)
            mc->ex = a;
        uint32_t *b = a ? realloc(mc->ex_shard, c * sizeof *b) : NULL;
        if (b)
            mc->ex_shard = b;
        cand *cc = b ? realloc(mc->cands, c * sizeof *cc) : NULL;
        if (!cc)
            return -1;
        mc->cands = cc;
        mc->cap_ex = c;
    }
    mc->ex[mc->n_ex] = e;
    mc->ex_shard[mc->n_ex] = s;
    return (long)mc->n_ex++;
}

/* Frees the examples read for the current feature. */
static void merge_release(merge_ctx *mc)
{
    for (size_t s = 0; s < mc->n; s++) {
        sae_store_examples_free(&mc->top[s]);
        sae_store_examples_free(&mc->cand[s]);
    }
    mc->n_ex = 0;
}

/* Merges feature f of every shard. With w NULL it only marks the vocab ids
 * and documents the merged examples use; otherwise it writes the feature and
 * its examples to w. */
static int merge_feature(merge_ctx *mc, uint32_t f, docset *docs, sae_store_writer *w,
                         sae_error *err)
{
    const sae_store_info *in = mc->info;
    int rc = 0;
    uint64_t n_active = 0;
    float max = 0;
    double decoder_norm = 0;
    sae_exact_sum sum;
    uint64_t hist[SAE_HIST_BINS] = {0};
    memset(&sum, 0, sizeof sum);
    size_t nc = 0, nt = 0;
    for (size_t s = 0; s < mc->n; s++) {
        sae_store_feature_raw raw;
        if ((rc = sae_store_get_feature_raw(mc->sh[s].c, f, &raw, err)))
            goto out;
        n_active += raw.f.n_active;
        if (raw.f.max_activation > max)
            max = (float)raw.f.max_activation;
        if (s == 0)
            decoder_norm = raw.f.decoder_norm;
        sae_exact_sum part;
        memcpy(part.limb, raw.sum_exact, sizeof part.limb);
        sae_exact_sum_merge(&sum, &part);
        for (size_t b = 0; b < raw.hist.n; b++)
            hist[raw.hist.first_bin + b] += raw.hist.counts[b];
        sae_store_feature_raw_free(&raw);
        if ((rc = sae_store_get_examples(mc->sh[s].c, f, SAE_EX_TOP, in->top, 0, &mc->top[s],
                                         err)) ||
            (rc = sae_store_get_examples(mc->sh[s].c, f, SAE_EX_CANDIDATE, UINT64_MAX, 0,
                                         &mc->cand[s], err)))
            goto out;
    }
    /* Top: the best N of the shards' top lists (documents never repeat). */
    for (size_t s = 0; s < mc->n; s++)
        for (size_t i = 0; i < mc->top[s].n; i++) {
            const sae_store_example *e = &mc->top[s].items[i];
            long at = ex_push(mc, e, (uint32_t)s);
            if (at < 0 || nt >= mc->cap_tops) {
                rc = sae_error_set(err, SAE_ENOMEM, "%s: feature %u: too many top examples",
                                   mc->sh[s].path, f);
                goto out;
            }
            mc->tops[nt++] = (pick){.kind = SAE_EX_TOP, .src = (uint32_t)at,
                                    .doc = e->doc_index, .pos = e->first + e->focus_index,
                                    .value = e->focus_value};
        }
    qsort(mc->tops, nt, sizeof *mc->tops, cmp_pick_top);
    if (nt > in->top)
        nt = in->top;
    for (size_t i = 0; i < nt; i++) {
        mc->picks[i] = mc->tops[i];
        mc->picks[i].rank = (uint32_t)i;
    }
    /* Quantile samples from the union of the shards' candidates. */
    for (size_t s = 0; s < mc->n; s++)
        for (size_t i = 0; i < mc->cand[s].n; i++) {
            const sae_store_example *e = &mc->cand[s].items[i];
            long at = ex_push(mc, e, (uint32_t)s);
            if (at < 0) {
                rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
                goto out;
            }
            if (e->grp < -1 || e->grp >= SAE_HIST_BINS) {
                rc = sae_error_set(err, SAE_EFORMAT, "%s: feature %u: candidate bin %d out of range",
                                   mc->sh[s].path, f, e->grp);
                goto out;
            }
            cand *c = &mc->cands[nc++];
            c->hash = e->hash;
            c->doc = e->doc_index;
            c->pos = e->first + e->focus_index;
            c->value = e->focus_value;
            c->bin = e->grp;
            c->src = (uint32_t)at;
        }
    size_t nq = quantile_picks(in->quantiles, in->per_quantile, max, hist, n_active, mc->cands,
                               nc, mc->picks + nt);
    size_t np = nt + nq;
    if (!w) {
        for (size_t i = 0; i < np; i++) {
            const sae_store_example *e = mc->ex[mc->picks[i].src];
            shard_in *sh = &mc->sh[mc->ex_shard[mc->picks[i].src]];
            for (size_t j = 0; j < e->n; j++)
                sh->used[e->token_ids[j]] = 1;
            if (docset_add(docs, e->doc_index, e->document)) {
                rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
                goto out;
            }
        }
        goto out;
    }
    sae_store_feature_row row;
    feature_row(f, n_active, max, &sum, decoder_norm, mc->n_tokens, hist, (uint32_t)nt,
                (uint32_t)nq, &row);
    if ((rc = sae_store_put_feature(w, &row, err)))
        goto out;
    size_t win = 2 * (size_t)in->context + 1;
    for (size_t i = 0; i < np; i++) {
        const pick *p = &mc->picks[i];
        const sae_store_example *e = mc->ex[p->src];
        const shard_in *sh = &mc->sh[mc->ex_shard[p->src]];
        if (e->n > win) {
            rc = sae_error_set(err, SAE_EFORMAT, "%s: feature %u: example window too long",
                               sh->path, f);
            goto out;
        }
        uint32_t *toks = mc->tokbuf + i * win;
        for (size_t j = 0; j < e->n; j++)
            toks[j] = sh->map[e->token_ids[j]];
        mc->rows[i] = (sae_store_example_row){
            .doc = e->doc_index, .first = e->first, .focus = e->first + e->focus_index,
            .len = (uint32_t)e->n, .value = e->focus_value,
            .hash = p->kind == SAE_EX_TOP ? 0 : p->hash, .grp = p->grp, .has_bin = p->has_bin,
            .bin_min = p->bin_min, .bin_max = p->bin_max, .bin_contains = p->bin_contains,
            .tokens = toks, .acts = e->values,
        };
    }
    rc = put_by_kind(w, f, mc->picks, mc->rows, np, err);
out:
    merge_release(mc);
    return rc;
}

/* The first build setting in which a and b differ, or NULL. */
static const char *settings_differ(const sae_store_info *a, const sae_store_info *b)
{
    if (strcmp(a->weights_digest, b->weights_digest))
        return "weights_digest";
    if (a->d_in != b->d_in || a->d_sae != b->d_sae)
        return "d_in/d_sae";
    if (a->corpus_tokens != b->corpus_tokens || a->corpus_documents != b->corpus_documents ||
        strcmp(a->tokens_digest, b->tokens_digest))
        return "tokens file";
    if (a->top != b->top)
        return "top";
    if (a->quantiles != b->quantiles)
        return "quantiles";
    if (a->per_quantile != b->per_quantile)
        return "per_quantile";
    if (a->context != b->context)
        return "context";
    if (a->neighbours != b->neighbours)
        return "neighbours";
    if (a->seed != b->seed)
        return "seed";
    if (a->block_rows != b->block_rows)
        return "block_rows";
    if (strcmp(a->histogram, b->histogram))
        return "histogram";
    if (strcmp(a->explanations_digest, b->explanations_digest) ||
        a->n_explanations != b->n_explanations)
        return "explanations";
    return NULL;
}

/* Parses "I/N" strictly; false unless 0 <= I < N. */
static bool parse_shard(const char *s, uint32_t *i, uint32_t *n)
{
    unsigned a, b;
    int used = 0;
    if (sscanf(s, "%u/%u%n", &a, &b, &used) != 2 || s[used] || b == 0 || a >= b ||
        *s < '0' || *s > '9')
        return false;
    *i = a;
    *n = b;
    return true;
}

int sae_merge_shards(const char *const *paths, size_t n, sae_store_writer *w, sae_error *err)
{
    int rc = 0;
    shard_in *sh = calloc(n ? n : 1, sizeof *sh);
    merge_ctx mc = {0};
    docset docs = {0};
    interner it = {0};
    uint32_t *remap = NULL;
    sae_store_explanations ex = {0};
    sae_store_neighbours nb = {0};
    if (!sh)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    if (n == 0) {
        rc = sae_error_set(err, SAE_EINVAL, "merge: no shard files given");
        goto out;
    }
    uint32_t n_shards = 0;
    for (size_t i = 0; i < n; i++) {
        sh[i].path = paths[i];
        if ((rc = sae_store_open(paths[i], &sh[i].s, err)))
            goto out;
        const sae_store_info *in = sae_store_get_info(sh[i].s);
        uint32_t si, sn;
        if (!parse_shard(in->shard, &si, &sn)) {
            rc = sae_error_set(err, SAE_EINVAL,
                               "%s: not a shard (built without --shard); merge takes the shard "
                               "files of one corpus",
                               paths[i]);
            goto out;
        }
        sae_index_settings chk = {.top = in->top, .quantiles = in->quantiles,
                                  .per_quantile = in->per_quantile, .context = in->context,
                                  .neighbours = in->neighbours, .shard = si, .n_shards = sn,
                                  .block_rows = in->block_rows};
        sae_error why;
        if (sae_index_settings_check(&chk, &why)) {
            rc = sae_error_set(err, SAE_EFORMAT, "%s: build settings out of range (%s)", paths[i],
                               why.msg);
            goto out;
        }
        if (i == 0)
            n_shards = sn;
        const char *what = i ? settings_differ(sae_store_get_info(sh[0].s), in) : NULL;
        if (what) {
            rc = sae_error_set(err, SAE_EINVAL, "%s: built with other %s than %s", paths[i], what,
                               paths[0]);
            goto out;
        }
        if (sn != n_shards) {
            rc = sae_error_set(err, SAE_EINVAL, "%s: shard %s of a %u-way split, %s is of %u",
                               paths[i], in->shard, sn, paths[0], n_shards);
            goto out;
        }
        sh[i].index = si;
        for (size_t j = 0; j < i; j++)
            if (sh[j].index == si) {
                rc = sae_error_set(err, SAE_EINVAL, "%s: shard %s given twice (also %s)", paths[i],
                                   in->shard, paths[j]);
                goto out;
            }
    }
    if (n != n_shards) {
        for (uint32_t s = 0; s < n_shards; s++) {
            bool found = false;
            for (size_t i = 0; i < n; i++)
                found |= sh[i].index == s;
            if (!found) {
                rc = sae_error_set(err, SAE_EINVAL, "merge: shard %u/%u is missing", s, n_shards);
                goto out;
            }
        }
    }
    /* Shard order (so shard 0's neighbours and explanations are copied). */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && sh[j].index < sh[j - 1].index; j--) {
            shard_in t = sh[j];
            sh[j] = sh[j - 1];
            sh[j - 1] = t;
        }
    sae_store_info info = *sae_store_get_info(sh[0].s);
    uint64_t n_tokens = 0, n_docs = 0;
    for (size_t i = 0; i < n; i++) {
        const sae_store_info *in = sae_store_get_info(sh[i].s);
        n_tokens += in->n_tokens;
        n_docs += in->n_documents;
        size_t nv = sae_store_vocab_size(sh[i].s);
        sh[i].used = calloc(nv ? nv : 1, 1);
        sh[i].map = calloc(nv ? nv : 1, sizeof *sh[i].map);
        if (!sh[i].used || !sh[i].map) {
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
            goto out;
        }
        if ((rc = sae_store_connect(sh[i].s, &sh[i].c, err)))
            goto out;
    }
    if (n_tokens != info.corpus_tokens || n_docs != info.corpus_documents) {
        rc = sae_error_set(err, SAE_EINVAL,
                           "merge: the shards hold %" PRIu64 " tokens in %" PRIu64
                           " documents, the corpus %" PRIu64 " in %" PRIu64,
                           n_tokens, n_docs, info.corpus_tokens, info.corpus_documents);
        goto out;
    }
    mc.sh = sh;
    mc.n = n;
    mc.info = sae_store_get_info(sh[0].s);
    mc.n_tokens = n_tokens;
    mc.top = calloc(n, sizeof *mc.top);
    mc.cand = calloc(n, sizeof *mc.cand);
    mc.picks = malloc(((size_t)info.top + (size_t)info.quantiles * info.per_quantile + 1) *
                      sizeof *mc.picks);
    size_t max_picks = (size_t)info.top + (size_t)info.quantiles * info.per_quantile + 1;
    mc.rows = malloc(max_picks * sizeof *mc.rows);
    mc.tokbuf = malloc(max_picks * (2 * (size_t)info.context + 1) * sizeof *mc.tokbuf);
    mc.cap_tops = n * (size_t)info.top;
    mc.tops = malloc((mc.cap_tops + 1) * sizeof *mc.tops);
    if (!mc.top || !mc.cand || !mc.picks || !mc.tokbuf || !mc.tops || !mc.rows) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    /* Pass 1: which tokens and documents the merged examples use. */
    for (uint64_t f = 0; f < info.d_sae; f++)
        if ((rc = merge_feature(&mc, (uint32_t)f, &docs, NULL, err)))
            goto out;
    for (size_t i = 0; i < n; i++)
        for (size_t v = 0; v < sae_store_vocab_size(sh[i].s); v++)
            if (sh[i].used[v]) {
                size_t len;
                const char *t = sae_store_token(sh[i].s, (uint32_t)v, &len);
                if (intern(&it, t, len, &sh[i].map[v])) {
                    rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the vocabulary");
                    goto out;
                }
            }
    if ((rc = write_vocab(&it, w, &remap, err)) || (rc = docset_write(&docs, w, err)))
        goto out;
    for (size_t i = 0; i < n; i++)
        for (size_t v = 0; v < sae_store_vocab_size(sh[i].s); v++)
            if (sh[i].used[v])
                sh[i].map[v] = remap[sh[i].map[v]];
    /* Pass 2: write. */
    for (uint64_t f = 0; f < info.d_sae; f++)
        if ((rc = merge_feature(&mc, (uint32_t)f, &docs, w, err)))
            goto out;
    for (uint64_t f = 0; f < info.d_sae; f++) {
        if ((rc = sae_store_get_neighbours(sh[0].c, f, &nb, err)))
            goto out;
        uint32_t *ni = malloc((nb.n ? nb.n : 1) * sizeof *ni);
        float *nc = malloc((nb.n ? nb.n : 1) * sizeof *nc);
        if (!ni || !nc) {
            free(ni);
            free(nc);
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
            goto out;
        }
        for (size_t j = 0; j < nb.n; j++) {
            ni[j] = nb.items[j].index;
            nc[j] = nb.items[j].cosine;
        }
        rc = sae_store_put_neighbours(w, (uint32_t)f, ni, nc, nb.n, err);
        free(ni);
        free(nc);
        sae_store_neighbours_free(&nb);
        if (rc)
            goto out;
    }
    if ((rc = sae_store_get_all_explanations(sh[0].c, &ex, err)))
        goto out;
    for (size_t i = 0; i < ex.n; i++) {
        const sae_store_explanation *e = &ex.items[i];
        if ((rc = sae_store_put_explanation(w, e->id, e->feature, e->description, e->has_score,
                                            e->score, e->source, e->type_name, err)))
            goto out;
    }
    info.shard[0] = '\0';
    info.n_tokens = n_tokens;
    info.n_documents = n_docs;
    rc = sae_store_put_info(w, &info, err);
out:
    sae_store_explanations_free(&ex);
    sae_store_neighbours_free(&nb);
    free(mc.top);
    free(mc.cand);
    free(mc.picks);
    free(mc.tops);
    free(mc.rows);
    free(mc.tokbuf);
    free(mc.ex);
    free(mc.ex_shard);
    free(mc.cands);
    docset_free(&docs);
    interner_free(&it);
    free(remap);
    for (size_t i = 0; i < n; i++) {
        sae_store_disconnect(sh[i].c);
        sae_store_close(sh[i].s);
        free(sh[i].used);
        free(sh[i].map);
    }
    free(sh);
    return rc;
}
