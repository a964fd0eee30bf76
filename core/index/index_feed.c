/* index_feed.c: the blocks fed to the indexer in row order: the two most
 * recent kept with a column (feature-major) view of them, so every row's
 * context window is at hand when its values are observed (indexer.h,
 * index_internal.h). */
#include "index/index_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

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
            sae_ix_observe(ix, f, ix->col_val[e], base + lr, bk->doc[i], bk->pos[i], e);
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
        sae_ix_top_flush(ix, f);
    ix->finished = true;
    return 0;
}

