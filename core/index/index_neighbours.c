/* index_neighbours.c: every feature's decoder-cosine neighbours, blockwise
 * over pairs of row blocks, never a d_sae x d_sae matrix (indexer.h). */
#include "index/indexer.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>

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

