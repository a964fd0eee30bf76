/* index_dash.c: logit tables, neuron alignment and correlated neurons, and
 * their writing to the store, for a build or an upgrade (dashboards.h). */
#include "index/dashboards.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "index/index_internal.h"
#include "index/tokens.h"
#include "io/activations.h"
#include "sae/model.h"

/* Inserts (id, v) into the k-best list ids/vals (n held, best first) when it
 * beats the worst: larger values first when desc, smaller otherwise; an
 * equal value never displaces (so ties keep the lower id, seen first). */
static void keep_best(uint32_t *ids, float *vals, size_t *n, size_t k, uint32_t id, float v,
                      bool desc)
{
    if (*n == k && !(desc ? v > vals[k - 1] : v < vals[k - 1]))
        return;
    size_t i = *n < k ? (*n)++ : k - 1;
    while (i > 0 && (desc ? v > vals[i - 1] : v < vals[i - 1])) {
        ids[i] = ids[i - 1];
        vals[i] = vals[i - 1];
        i--;
    }
    ids[i] = id;
    vals[i] = v;
}

void sae_logit_table_row(const float *y, size_t V, sae_logit_table *t)
{
    memset(t, 0, sizeof *t);
    size_t k = V < SAE_LOGIT_ROWS ? V : SAE_LOGIT_ROWS;
    float lo = y[0], hi = y[0];
    for (size_t v = 0; v < V; v++) {
        float x = y[v];
        if (t->n_pos < k || x > t->pos_values[k - 1])
            keep_best(t->pos_ids, t->pos_values, &t->n_pos, k, (uint32_t)v, x, true);
        if (t->n_neg < k || x < t->neg_values[k - 1])
            keep_best(t->neg_ids, t->neg_values, &t->n_neg, k, (uint32_t)v, x, false);
        lo = x < lo ? x : lo;
        hi = x > hi ? x : hi;
    }
    double a = lo, b = hi;
    if (a == b) {
        a -= 1;
        b += 1;
    }
    t->hist_min = a;
    t->hist_max = b;
    double scale = SAE_LOGIT_BINS / (b - a);
    for (size_t v = 0; v < V; v++) {
        double p = ((double)y[v] - a) * scale;
        size_t bin = p <= 0 ? 0 : (size_t)p;
        t->hist[bin >= SAE_LOGIT_BINS ? SAE_LOGIT_BINS - 1 : bin]++;
    }
}

size_t sae_logit_block_rows(size_t n_vocab)
{
    size_t r = SAE_LOGIT_BLOCK_BYTES / 4 / (n_vocab ? n_vocab : 1);
    return r ? r : 1;
}

int sae_logit_tables(const float *w_dec, size_t d_sae, size_t d_in, const float *w_u,
                     size_t n_vocab, size_t block_rows, sae_logit_table *out, sae_error *err)
{
    if (n_vocab > INT32_MAX || d_in > INT32_MAX)
        return sae_error_set(err, SAE_EDIM, "W_U too large (%zu x %zu)", d_in, n_vocab);
    size_t R = block_rows ? block_rows : sae_logit_block_rows(n_vocab);
    if (R > d_sae)
        R = d_sae;
    float *y = malloc(R * n_vocab * sizeof *y); /* (R, V) */
    if (!y)
        return sae_error_set(err, SAE_ENOMEM, "out of memory for a logits block (%zu x %zu)", R,
                             n_vocab);
    for (size_t f0 = 0; f0 < d_sae; f0 += R) {
        size_t r = d_sae - f0 < R ? d_sae - f0 : R;
        sae_gemm_rows(w_u, false, d_in, n_vocab, w_dec + f0 * d_in, r, y);
        for (size_t i = 0; i < r; i++)
            sae_logit_table_row(y + i * n_vocab, n_vocab, &out[f0 + i]);
    }
    free(y);
    return 0;
}

void sae_neuron_alignment(const float *w, size_t d_in, uint32_t *idx, float *val, float *l1,
                          size_t *n)
{
    size_t k = d_in < SAE_NEURON_ROWS ? d_in : SAE_NEURON_ROWS, got = 0;
    double norm = 0;
    for (size_t j = 0; j < d_in; j++) {
        norm += fabs((double)w[j]);
        keep_best(idx, val, &got, k, (uint32_t)j, w[j], true);
    }
    for (size_t i = 0; i < got; i++)
        l1[i] = norm > 0 ? (float)(fabs((double)val[i]) / norm) : 0.0f;
    *n = got;
}

/* Running sums over the corpus for Pearson's r of feature f and dimension j
 * (SAEDashboard's RollingCorrCoef): n rows, sums of x_j, x_j^2, f, f^2 and
 * of f x_j. Owns its arrays. */
struct sae_corr {
    size_t d_sae, d_in;
    uint64_t n;
    double *x_sum, *x2_sum;     /* (d_in) */
    double *f_sum, *f2_sum;     /* (d_sae) */
    double *xy;                 /* (d_sae, d_in) */
};

int sae_corr_new(size_t d_sae, size_t d_in, sae_corr **out, sae_error *err)
{
    size_t cells;
    sae_corr *c = calloc(1, sizeof *c);
    if (!c || sae_mul_size(d_sae, d_in, &cells) ||
        !(c->xy = calloc(cells, sizeof *c->xy)) || !(c->x_sum = calloc(d_in, sizeof(double))) ||
        !(c->x2_sum = calloc(d_in, sizeof(double))) ||
        !(c->f_sum = calloc(d_sae, sizeof(double))) ||
        !(c->f2_sum = calloc(d_sae, sizeof(double)))) {
        sae_corr_free(c);
        return sae_error_set(err, SAE_ENOMEM,
                             "out of memory for --correlations (d_sae %zu x d_in %zu doubles, "
                             "%.0f MB)",
                             d_sae, d_in, (double)d_sae * (double)d_in * 8 / 1e6);
    }
    c->d_sae = d_sae;
    c->d_in = d_in;
    *out = c;
    return 0;
}

void sae_corr_free(sae_corr *c)
{
    if (!c)
        return;
    free(c->x_sum);
    free(c->x2_sum);
    free(c->f_sum);
    free(c->f2_sum);
    free(c->xy);
    free(c);
}

void sae_corr_feed(sae_corr *c, const float *x, const sae_sparse *rows)
{
    size_t d = c->d_in;
    for (size_t r = 0; r < rows->n_rows; r++) {
        const float *xr = x + r * d;
        for (size_t j = 0; j < d; j++) {
            c->x_sum[j] += xr[j];
            c->x2_sum[j] += (double)xr[j] * xr[j];
        }
        /* Inactive features contribute 0 to every sum but n. */
        for (uint32_t e = rows->row_ptr[r]; e < rows->row_ptr[r + 1]; e++) {
            uint32_t f = rows->idx[e];
            double v = rows->val[e];
            c->f_sum[f] += v;
            c->f2_sum[f] += v * v;
            double *acc = c->xy + (size_t)f * d;
            for (size_t j = 0; j < d; j++)
                acc[j] += v * xr[j];
        }
    }
    c->n += rows->n_rows;
}

void sae_corr_top(const sae_corr *c, size_t f, uint32_t *idx, float *pearson, float *cossim,
                  size_t *n)
{
    size_t d = c->d_in, k = d < SAE_NEURON_ROWS ? d : SAE_NEURON_ROWS, got = 0;
    double N = (double)c->n, fs = c->f_sum[f], f2 = c->f2_sum[f];
    const double *xy = c->xy + f * d;
    for (size_t j = 0; j < d; j++) {
        double num = N * xy[j] - fs * c->x_sum[j];
        double den = sqrt((N * f2 - fs * fs) * (N * c->x2_sum[j] - c->x_sum[j] * c->x_sum[j]));
        keep_best(idx, pearson, &got, k, (uint32_t)j, (float)(num / (den + 1e-6)), true);
    }
    for (size_t i = 0; i < got; i++) {
        size_t j = idx[i];
        cossim[i] = (float)(xy[j] / (sqrt(f2 * c->x2_sum[j]) + 1e-6));
    }
    *n = got;
}

/* The logit tables of m's features under dj, and the token strings they
 * name, written to w; w_dec is m's W_dec as F32 (borrowed). */
static int write_logits(const sae_model *m, const float *w_dec, const sae_dash_job *dj,
                        sae_store_writer *w, sae_error *err)
{
    sae_logit_table *t = malloc(m->d_sae * sizeof *t);
    uint8_t *seen = calloc(dj->n_vocab, 1);
    int rc = 0;
    if (!t || !seen) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the logit tables");
        goto out;
    }
    if ((rc = sae_logit_tables(w_dec, m->d_sae, m->d_out, dj->w_u, dj->n_vocab, 0, t, err)))
        goto out;
    for (size_t f = 0; f < m->d_sae && !rc; f++) {
        const sae_logit_table *x = &t[f];
        sae_store_logits_row row = {
            .n_pos = x->n_pos, .n_neg = x->n_neg, .pos_ids = x->pos_ids, .neg_ids = x->neg_ids,
            .pos_values = x->pos_values, .neg_values = x->neg_values, .hist_min = x->hist_min,
            .hist_max = x->hist_max, .hist = x->hist,
        };
        rc = sae_store_put_logits(w, (uint32_t)f, &row, err);
        for (size_t i = 0; i < x->n_pos; i++)
            seen[x->pos_ids[i]] = 1;
        for (size_t i = 0; i < x->n_neg; i++)
            seen[x->neg_ids[i]] = 1;
    }
    for (size_t v = 0; v < dj->n_vocab && !rc; v++) {
        if (!seen[v])
            continue;
        size_t len;
        const char *s = dj->token(dj->token_ctx, (uint32_t)v, &len);
        rc = sae_store_put_logit_token(w, (uint32_t)v, s, len, err);
    }
out:
    free(t);
    free(seen);
    return rc;
}

int sae_dash_write(const sae_model *m, const sae_dash_job *dj, const sae_corr *corr,
                   const sae_act_bars *bars, sae_store_writer *w, sae_error *err)
{
    if (dj->w_u && dj->d_model != m->d_out)
        return sae_error_set(err, SAE_EDIM,
                             "--unembed: W_U has d_model %zu, the SAE's decoder writes %zu",
                             dj->d_model, m->d_out);
    /* W_dec as F32: the model's own, or a widening of 16-bit weights */
    const float *w_dec;
    float *wide = NULL;
    int rc = sae_model_w_dec_f32(m, &w_dec, &wide, err);
    if (!rc)
        rc = sae_store_writer_dashboards(w, err);
    if (!rc && dj->w_u)
        rc = write_logits(m, w_dec, dj, w, err);
    if (!rc && bars)
        rc = sae_act_bars_write(bars, w, err);
    for (size_t f = 0; f < m->d_sae && !rc; f++) {
        uint32_t idx[SAE_NEURON_ROWS];
        float a[SAE_NEURON_ROWS], b[SAE_NEURON_ROWS];
        size_t n;
        sae_neuron_alignment(w_dec + f * m->d_out, m->d_out, idx, a, b, &n);
        rc = sae_store_put_neuron_table(w, (uint32_t)f, SAE_NEURON_ALIGNMENT, idx, a, b, n, err);
        if (!rc && corr) {
            sae_corr_top(corr, f, idx, a, b, &n);
            rc = sae_store_put_neuron_table(w, (uint32_t)f, SAE_NEURON_CORRELATED, idx, a, b, n,
                                            err);
        }
    }
    free(wide);
    return rc;
}

/* Checks that dj's corpus is the one the index (info, at path) was built
 * from: a whole corpus, the same tokens file, as many activation rows. */
static int upgrade_check_corpus(const char *path, const sae_store_info *info,
                                const sae_dash_job *dj, sae_error *err)
{
    if (info->shard[0])
        return sae_error_set(err, SAE_EINVAL,
                             "%s: a --shard index: merge the shards, then upgrade the merged "
                             "index", path);
    if (!info->block_rows)
        return sae_error_set(err, SAE_EFORMAT, "%s: the index names no block_rows", path);
    if (!dj->acts || !dj->tok)
        return sae_error_set(err, SAE_EINVAL,
                             "%s: --neuronpedia-hist reads the corpus: give its --activations "
                             "and --tokens", path);
    if (strcmp(dj->tok->digest, info->tokens_digest))
        return sae_error_set(err, SAE_EINVAL, "%s: built from another tokens file than %s", path,
                             dj->tok->path);
    if (sae_acts_rows(dj->acts) != info->n_tokens || info->n_tokens != info->corpus_tokens)
        return sae_error_set(err, SAE_EDIM,
                             "%s: the index holds %" PRIu64 " tokens but the activations have "
                             "%zu rows", path, info->n_tokens, sae_acts_rows(dj->acts));
    return 0;
}

int sae_index_upgrade(const sae_model *m, const char *path, const sae_dash_job *dj,
                      sae_error *err)
{
    sae_store *s = NULL;
    sae_store_writer *w = NULL;
    sae_act_bars *bars = NULL;
    if (dj->correlations)
        return sae_error_set(err, SAE_EINVAL,
                             "%s: --correlations needs the corpus: rebuild the index with it",
                             path);
    int rc = sae_store_open(path, &s, err);
    if (rc)
        return rc;
    rc = sae_store_check_model(s, m->weights_digest, m->d_in, m->d_sae, err);
    sae_index_job job = {.model = m, .acts = dj->acts, .tok = dj->tok,
                         .progress = dj->progress, .progress_ctx = dj->progress_ctx};
    if (!rc && dj->act_bars) {
        const sae_store_info *info = sae_store_get_info(s);
        job.set.block_rows = info->block_rows; /* the build's blocks: the same encode */
        rc = upgrade_check_corpus(path, info, dj, err);
    }
    sae_store_close(s);
    if (rc)
        return rc;
    /* The corpus passes before the copy: nothing is written until they end. */
    if (dj->act_bars &&
        ((rc = sae_act_bars_new(m->d_sae, &bars, err)) ||
         (rc = sae_ix_act_bars_passes(&job, bars, false, 0, sae_acts_rows(dj->acts), err))))
        goto out;
    if ((rc = sae_store_writer_open_copy(path, path, &w, err)))
        goto out;
    if ((rc = sae_dash_write(m, dj, NULL, bars, w, err))) {
        sae_store_writer_abort(w);
        goto out;
    }
    rc = sae_store_writer_commit(w, err);
out:
    sae_act_bars_free(bars);
    return rc;
}
