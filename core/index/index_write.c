/* index_write.c: a finished indexer written to the store: the examples'
 * tokens read again from the tokens file (each document once), the
 * vocabulary they use, then every feature with its examples (indexer.h). */
#include "index/index_internal.h"

#include <stdlib.h>
#include <string.h>

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
void sae_ix_feature_row(uint32_t f, uint64_t n_active, float max, const sae_exact_sum *sum,
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
int sae_ix_put_examples(sae_store_writer *w, uint32_t f, const pick *picks,
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

/* A write in progress: the scratch for one feature's picks and rows, the
 * record in the token pool of every stored window, and the vocabulary the
 * windows use. Owns all but ix. */
typedef struct write_ctx {
    const sae_indexer *ix;
    cand *cbuf;                    /* (n_sk*M + 1) */
    pick *picks;                   /* (max picks + 1) */
    sae_store_example_row *rows;   /* (max picks + 1) */
    uint32_t *slotmap;             /* (d_sae, slots) record of each stored slot, or UINT32_MAX */
    need *needs;                   /* (cap_need) a record's window, to read */
    size_t n_need, cap_need;
    size_t n_rec;                  /* records: the stored windows */
    uint32_t *pool;                /* (n_rec, 2C+1) each record's token ids */
    interner vocab;
} write_ctx;

/* Frees what wc holds. */
static void write_free(write_ctx *wc)
{
    sae_ix_interner_free(&wc->vocab);
    free(wc->cbuf);
    free(wc->picks);
    free(wc->rows);
    free(wc->slotmap);
    free(wc->pool);
    free(wc->needs);
}

/* The per-feature scratch and the slot map (every slot unstored). */
static int write_alloc(write_ctx *wc, sae_error *err)
{
    const sae_indexer *ix = wc->ix;
    size_t max_picks = (size_t)ix->n + (size_t)ix->n_sk * ix->m + (size_t)ix->q * ix->m;
    size_t pool_n = 0;
    wc->cbuf = malloc(((size_t)ix->n_sk * ix->m + 1) * sizeof *wc->cbuf);
    wc->picks = malloc((max_picks + 1) * sizeof *wc->picks);
    wc->rows = malloc((max_picks + 1) * sizeof *wc->rows);
    if (!wc->cbuf || !wc->picks || !wc->rows || sae_mul_size(ix->d_sae, ix->slots, &pool_n) ||
        !(wc->slotmap = malloc((pool_n ? pool_n : 1) * sizeof *wc->slotmap)))
        return sae_error_set(err, SAE_ENOMEM, "out of memory writing the index");
    memset(wc->slotmap, 0xff, pool_n * sizeof *wc->slotmap);
    return 0;
}

/* Gives pick p of feature f a record unless its slot has one, noting the
 * window to read for it. */
static int plan_window(write_ctx *wc, size_t f, const pick *p, sae_error *err)
{
    const sae_indexer *ix = wc->ix;
    uint32_t *sm = &wc->slotmap[f * ix->slots + p->src];
    if (*sm != UINT32_MAX)
        return 0;
    if (wc->n_rec >= UINT32_MAX)
        return sae_error_set(err, SAE_ERANGE, "too many examples");
    *sm = (uint32_t)wc->n_rec;
    if (wc->n_need == wc->cap_need) {
        size_t c = wc->cap_need ? wc->cap_need * 2 : 4096;
        need *n = c > SIZE_MAX / sizeof *n ? NULL : realloc(wc->needs, c * sizeof *n);
        if (!n)
            return sae_error_set(err, SAE_ENOMEM, "out of memory writing the index");
        wc->needs = n;
        wc->cap_need = c;
    }
    need *nd = &wc->needs[wc->n_need++];
    uint64_t dl = ix->tok->row_start[p->doc + 1] - ix->tok->row_start[p->doc];
    nd->doc = p->doc;
    window_of(p->pos, dl, ix->c, &nd->first, &nd->len, &nd->skip);
    nd->at = wc->n_rec++;
    return 0;
}

/* Step 1: which windows are stored. Each gets a record in the token pool. */
static int plan_windows(write_ctx *wc, sae_error *err)
{
    const sae_indexer *ix = wc->ix;
    int rc;
    for (size_t f = 0; f < ix->d_sae; f++) {
        uint32_t nt, nq;
        size_t np = sae_ix_build_picks(ix, f, wc->cbuf, wc->picks, &nt, &nq);
        for (size_t i = 0; i < np; i++)
            if ((rc = plan_window(wc, f, &wc->picks[i], err)))
                return rc;
    }
    size_t pool_len;
    if (sae_mul_size(wc->n_rec ? wc->n_rec : 1, ix->win, &pool_len) ||
        !(wc->pool = calloc(pool_len, sizeof *wc->pool)))
        return sae_error_set(err, SAE_ENOMEM, "out of memory for the example tokens");
    return 0;
}

/* Reads document d, the one of the windows needs[i..j), and writes its id;
 * interns the tokens those windows cover (each position once: only tokens of
 * stored windows enter the vocabulary) and puts their ids in the pool. */
static int read_document(write_ctx *wc, size_t i, size_t j, sae_store_writer *w,
                         sae_error *err)
{
    const need *nd = wc->needs;
    uint32_t d = nd[i].doc, lo = UINT32_MAX, hi = 0;
    for (size_t k = i; k < j; k++) {
        lo = nd[k].first < lo ? nd[k].first : lo;
        hi = nd[k].first + nd[k].len > hi ? nd[k].first + nd[k].len : hi;
    }
    sae_doc doc = {0};
    int rc;
    if ((rc = sae_tokens_read_doc(wc->ix->tok, d, &doc, err)) ||
        (rc = sae_store_put_document(w, d, doc.id, err))) {
        sae_doc_free(&doc);
        return rc;
    }
    /* ids[p - lo] = 1 marks a covered position, then holds its id. */
    uint32_t *ids = calloc((size_t)(hi - lo) + 1, sizeof *ids);
    bool oom = !ids;
    for (size_t k = i; !oom && k < j; k++)
        for (uint32_t p = 0; p < nd[k].len; p++)
            ids[nd[k].first - lo + p] = 1;
    for (uint32_t p = lo; !oom && p < hi; p++)
        if (ids[p - lo])
            oom = sae_ix_intern(&wc->vocab, doc.tok[p], doc.tok_len[p], &ids[p - lo]) != 0;
    for (size_t k = i; !oom && k < j; k++)
        memcpy(wc->pool + nd[k].at * wc->ix->win + nd[k].skip, ids + (nd[k].first - lo),
               nd[k].len * sizeof *ids);
    free(ids);
    sae_doc_free(&doc);
    return oom ? sae_error_set(err, SAE_ENOMEM, "out of memory for the vocabulary") : 0;
}

/* Step 2: reads each referenced document once, in order, filling the pool
 * with interned ids. */
static int read_documents(write_ctx *wc, sae_store_writer *w, sae_error *err)
{
    qsort(wc->needs, wc->n_need, sizeof *wc->needs, cmp_need);
    int rc = 0;
    for (size_t i = 0, j; i < wc->n_need && !rc; i = j) {
        for (j = i; j < wc->n_need && wc->needs[j].doc == wc->needs[i].doc; j++)
            ;
        rc = read_document(wc, i, j, w, err);
    }
    return rc;
}

/* Step 3: the vocabulary in bytewise order; the pool renumbered to it. */
static int write_vocab(write_ctx *wc, sae_store_writer *w, sae_error *err)
{
    uint32_t *remap = NULL;
    int rc = sae_ix_write_vocab(&wc->vocab, w, &remap, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < wc->n_need; i++) {
        uint32_t *p = wc->pool + wc->needs[i].at * wc->ix->win + wc->needs[i].skip;
        for (uint32_t j = 0; j < wc->needs[i].len; j++)
            p[j] = remap[p[j]];
    }
    free(remap);
    return 0;
}

/* Writes feature f's row and its examples. Its picks are built again rather
 * than kept from step 1, which would hold d_sae x max picks of them at once;
 * building them (a sort of a few dozen entries) is cheap next to writing the
 * feature's rows. */
static int write_feature(write_ctx *wc, size_t f, const float *dec_norm, sae_store_writer *w,
                         sae_error *err)
{
    const sae_indexer *ix = wc->ix;
    uint32_t nt, nq, gf = ix->set.feat_lo + (uint32_t)f; /* f of a --features range */
    size_t np = sae_ix_build_picks(ix, f, wc->cbuf, wc->picks, &nt, &nq);
    uint64_t hist[SAE_HIST_BINS];
    for (int b = 0; b < SAE_HIST_BINS; b++)
        hist[b] = ix->hist[f * SAE_HIST_BINS + (size_t)b];
    sae_store_feature_row row;
    sae_ix_feature_row(gf, ix->st[f].n_active, ix->st[f].max, &ix->sum[f],
                       dec_norm ? dec_norm[gf] : 0.0, ix->row_hi - ix->row_lo, hist, nt, nq, &row);
    int rc = sae_store_put_feature(w, &row, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < np; i++) {
        const pick *p = &wc->picks[i];
        uint64_t dl = ix->tok->row_start[p->doc + 1] - ix->tok->row_start[p->doc];
        uint32_t first, len, skip;
        window_of(p->pos, dl, ix->c, &first, &len, &skip);
        size_t rec = wc->slotmap[f * ix->slots + p->src];
        wc->rows[i] = (sae_store_example_row){
            .doc = p->doc, .first = first, .focus = p->pos, .len = len, .value = p->value,
            .hash = p->hash, .grp = p->grp, .has_bin = p->has_bin, .bin_min = p->bin_min,
            .bin_max = p->bin_max, .bin_contains = p->bin_contains,
            .tokens = wc->pool + rec * ix->win + skip,
            .acts = slot_acts(ix, f, p->src) + skip,
        };
    }
    return sae_ix_put_examples(w, gf, wc->picks, wc->rows, np, err);
}

int sae_indexer_write(sae_indexer *ix, const float *dec_norm, sae_store_writer *w,
                      sae_error *err)
{
    if (!ix->finished)
        return sae_error_set(err, SAE_EINVAL, "indexer: write before finish");
    write_ctx wc = {.ix = ix};
    int rc = write_alloc(&wc, err);
    if (!rc)
        rc = plan_windows(&wc, err);
    if (!rc)
        rc = read_documents(&wc, w, err);
    if (!rc)
        rc = write_vocab(&wc, w, err);
    for (size_t f = 0; !rc && f < ix->d_sae; f++)
        rc = write_feature(&wc, f, dec_norm, w, err);
    write_free(&wc);
    return rc;
}
