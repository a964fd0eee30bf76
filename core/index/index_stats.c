/* index_stats.c: the indexer's settings, its per-feature state and what one
 * active value does to it: count, exact sum, max, histogram, the top list and
 * the sampling sketches, each example's window captured on the spot
 * (indexer.h, index_internal.h). */
#include "index/index_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "io/rng.h"

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
    if ((s->feat_lo || s->feat_hi) && s->feat_lo >= s->feat_hi)
        return sae_error_set(err, SAE_EINVAL, "--features: A:B needs A < B");
    if (s->block_rows < 2 * s->context + 1)
        return sae_error_set(err, SAE_EINVAL, "block_rows %u is below 2*context+1",
                             s->block_rows);
    return 0;
}

uint32_t sae_index_passes(size_t d_sae, const sae_index_settings *s, uint64_t max_state_bytes)
{
    size_t per = sae_indexer_state_bytes(1, s);
    if (!max_state_bytes || !per || d_sae == 0)
        return 1;
    uint64_t fit = max_state_bytes / per; /* features a pass may hold */
    if (fit == 0)
        fit = 1;
    uint64_t p = (d_sae + fit - 1) / fit;
    return p > UINT32_MAX ? UINT32_MAX : (uint32_t)p;
}

void sae_shard_docs(size_t n_docs, uint32_t shard, uint32_t n_shards, size_t *doc_lo,
                    size_t *doc_hi)
{
    *doc_lo = (size_t)((unsigned __int128)n_docs * shard / n_shards);
    *doc_hi = (size_t)((unsigned __int128)n_docs * (shard + 1) / n_shards);
}

/* ------------------------------------------------------------ state */

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

/* ------------------------------------------------------------ one value */

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

/* The document cur of f is over (index_internal.h). */
void sae_ix_top_flush(sae_indexer *ix, size_t f)
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

/* Every statistic of f for one value (index_internal.h). */
void sae_ix_observe(sae_indexer *ix, size_t f, float v, uint64_t r, uint32_t doc, uint32_t pos,
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
            sae_ix_top_flush(ix, f);
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

