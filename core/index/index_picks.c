/* index_picks.c: which examples a feature keeps: the top list in rank order,
 * the quantile samples chosen from the sketches' candidates, and, in a shard,
 * the candidates themselves for the merge (index_internal.h). The merge
 * chooses from the shards' examples with the same functions, so a merged
 * index picks what one build would. */
#include "index/index_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

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
int sae_ix_cmp_pick_top(const void *a, const void *b)
{
    const pick *x = a, *y = b;
    if (x->value != y->value)
        return x->value > y->value ? -1 : 1;
    return x->doc < y->doc ? -1 : x->doc > y->doc;
}

/* Chooses the quantile samples of one feature (index_internal.h). */
size_t sae_ix_quantile_picks(uint32_t q, uint32_t m, float max, const uint64_t *hist,
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

/* The examples of feature f of a finished indexer (index_internal.h). */
size_t sae_ix_build_picks(const sae_indexer *ix, size_t f, cand *cbuf, pick *out,
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
    qsort(out, n, sizeof *out, sae_ix_cmp_pick_top);
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
    size_t nq = sae_ix_quantile_picks(ix->q, ix->m, s->max, hist, s->n_active, cbuf, nc, out + n);
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

