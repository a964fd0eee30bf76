/* index_bars.c: SAEDashboard's activation histogram, exact (dashboards.h,
 * "SAEDashboard's activation histogram"): each feature's range over one pass
 * of the encoded corpus, its 50 bars over another, written to act_bars. */
#include "index/dashboards.h"

#include <stdlib.h>

#include "index/index_hist.h"

/* The accumulator: per feature the count, min and max of its active values
 * and its bars (all owned). */
struct sae_act_bars {
    size_t d_sae;
    bool binning;       /* the range is fixed, values go to the bars */
    uint64_t *n;        /* (d_sae) active values seen in the range phase */
    float *lo, *hi;     /* (d_sae) */
    uint64_t *bars;     /* (d_sae, SAE_ACT_BARS) */
};

int sae_act_bars_new(size_t d_sae, sae_act_bars **out, sae_error *err)
{
    sae_act_bars *b = calloc(1, sizeof *b);
    size_t nb;
    if (b && !sae_mul_size(d_sae, SAE_ACT_BARS, &nb)) {
        b->d_sae = d_sae;
        b->n = calloc(d_sae ? d_sae : 1, sizeof *b->n);
        b->lo = calloc(d_sae ? d_sae : 1, sizeof *b->lo);
        b->hi = calloc(d_sae ? d_sae : 1, sizeof *b->hi);
        b->bars = calloc(nb ? nb : 1, sizeof *b->bars);
        if (b->n && b->lo && b->hi && b->bars) {
            *out = b;
            return 0;
        }
    }
    sae_act_bars_free(b);
    return sae_error_set(err, SAE_ENOMEM,
                         "out of memory for the activation bars (%zu features x %d bars, "
                         "%.0f MB)",
                         d_sae, SAE_ACT_BARS, (double)d_sae * SAE_ACT_BARS * 8 / 1e6);
}

void sae_act_bars_free(sae_act_bars *b)
{
    if (!b)
        return;
    free(b->n);
    free(b->lo);
    free(b->hi);
    free(b->bars);
    free(b);
}

void sae_act_bars_feed(sae_act_bars *b, const sae_sparse *rows)
{
    size_t nnz = rows->n_rows ? rows->row_ptr[rows->n_rows] : 0;
    for (size_t e = 0; e < nnz; e++) {
        uint32_t f = rows->idx[e];
        float v = rows->val[e];
        if (!(v > 0) || f >= b->d_sae)
            continue; /* SAEDashboard's data: the activations > 0 */
        if (b->binning) {
            if (v >= b->lo[f] && v <= b->hi[f]) /* always, fed the same rows twice */
                b->bars[(size_t)f * SAE_ACT_BARS + sae_np_bar(v, b->lo[f], b->hi[f])]++;
        } else if (b->n[f]++ == 0) {
            b->lo[f] = b->hi[f] = v;
        } else {
            b->lo[f] = v < b->lo[f] ? v : b->lo[f];
            b->hi[f] = v > b->hi[f] ? v : b->hi[f];
        }
    }
}

void sae_act_bars_start_bins(sae_act_bars *b)
{
    b->binning = true;
}

int sae_act_bars_write(const sae_act_bars *b, sae_store_writer *w, sae_error *err)
{
    int rc = 0;
    for (size_t f = 0; f < b->d_sae && !rc; f++)
        rc = sae_store_put_act_bars(w, (uint32_t)f, b->lo[f], b->hi[f],
                                    b->bars + f * SAE_ACT_BARS, b->n[f] ? SAE_ACT_BARS : 0, err);
    return rc;
}
