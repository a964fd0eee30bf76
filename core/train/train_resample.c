/* train_resample.c: dead and duplicate latents of an SAE in training: when
 * each latent last fired and how much it carried, and their resampling
 * towards the residuals of high-error rows (train.h, docs/TRAINING.md). */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "train/train_int.h"

/* Marks (mark[i] = 1) every latent whose decoder row has cosine >= o.dup_cos
 * with the row of a latent used more since the last check (usage: Σ f);
 * such a latent duplicates another and is free for a missing feature. The
 * cosines come block by block from one sgemm of the unit rows. Returns how
 * many it marked. */
static size_t mark_redundant(sae_trainer *t, uint8_t *mark)
{
    const sae_train_shape *s = &t->shape;
    size_t d_in = s->d_in, d_sae = s->d_sae, block = 256, n = 0;
    float *unit = malloc(d_sae * d_in * sizeof *unit);
    float *cos = malloc(block * d_sae * sizeof *cos);
    if (!unit || !cos)
        goto out; /* resampling is an optimisation; training goes on without it */
    for (size_t i = 0; i < d_sae; i++) {
        float nr = t->a.dec_norm[i], inv = nr > 0 ? 1 / nr : 0;
        for (size_t j = 0; j < d_in; j++)
            unit[i * d_in + j] = t->p.w_dec[i * d_in + j] * inv;
    }
    float thr = (float)t->o.dup_cos;
    for (size_t i0 = 0; i0 < d_sae; i0 += block) {
        size_t nb = d_sae - i0 < block ? d_sae - i0 : block;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)d_sae, (int)d_in, 1,
                    unit + i0 * d_in, (int)d_in, unit, (int)d_in, 0, cos, (int)d_sae);
        for (size_t r = 0; r < nb; r++) {
            size_t i = i0 + r;
            for (size_t j = 0; j < d_sae && !mark[i]; j++) {
                if (j == i || cos[r * d_sae + j] < thr)
                    continue;
                if (t->usage[j] > t->usage[i] || (t->usage[j] == t->usage[i] && j < i)) {
                    mark[i] = 1;
                    n++;
                }
            }
        }
    }
out:
    free(unit);
    free(cos);
    return n;
}

/* Re-initialises every marked latent towards the residual of a batch row
 * drawn with probability proportional to its squared error, as Anthropic's
 * "Towards Monosemanticity" does for dead latents: decoder row = the
 * residual's direction at the mean norm of the unmarked rows, encoder column
 * = that direction at 0.2 of the unmarked columns' mean norm, b_enc 0; the
 * Adam moments and this step's gradients of all three are zeroed. Called
 * right after a step, while a->xhat holds dL/dx̂ = (2/B)(x̂ − x). Returns how
 * many were resampled. */
static size_t resample_marked(sae_trainer *t, const uint8_t *mark, size_t rows_seen)
{
    const sae_train_shape *s = &t->shape;
    size_t d_in = s->d_in, d_sae = s->d_sae, B = t->o.batch;
    size_t n_live = 0;
    double dec_live = 0, enc_live = 0;
    for (size_t i = 0; i < d_sae; i++) {
        if (mark[i])
            continue;
        n_live++;
        dec_live += t->a.dec_norm[i];
        double e = 0;
        for (size_t j = 0; j < d_in; j++)
            e += (double)t->p.w_enc[j * d_sae + i] * t->p.w_enc[j * d_sae + i];
        enc_live += sqrt(e);
    }
    dec_live = n_live ? dec_live / n_live : t->o.init_norm;
    enc_live = n_live ? enc_live / n_live : t->o.init_norm;
    /* cumulative squared errors of the batch rows */
    double *cum = malloc(B * sizeof *cum);
    if (!cum)
        return 0; /* resampling is an optimisation; training goes on without it */
    double total = 0;
    for (size_t r = 0; r < B; r++) {
        double e = 0;
        for (size_t j = 0; j < d_in; j++)
            e += (double)t->a.xhat[r * d_in + j] * t->a.xhat[r * d_in + j];
        total += e;
        cum[r] = total;
    }
    size_t done = 0;
    for (size_t i = 0; i < d_sae && total > 0; i++) {
        if (!mark[i])
            continue;
        double u = sae_rng_uniform(&t->rng) * total;
        size_t lo = 0, hi = B - 1;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (cum[mid] > u)
                hi = mid;
            else
                lo = mid + 1;
        }
        const float *res = t->a.xhat + lo * d_in; /* ∝ x̂ − x: the residual's negative */
        double n2 = 0;
        for (size_t j = 0; j < d_in; j++)
            n2 += (double)res[j] * res[j];
        if (!(n2 > 0))
            continue;
        float inv = (float)(-1.0 / sqrt(n2));
        float *wd = t->p.w_dec + i * d_in;
        for (size_t j = 0; j < d_in; j++) {
            float dir = res[j] * inv;
            size_t e = j * d_sae + i, dj = i * d_in + j;
            wd[j] = dir * (float)dec_live;
            t->p.w_enc[e] = dir * (float)(0.2 * enc_live);
            t->m.w_dec[dj] = t->v.w_dec[dj] = t->g.w_dec[dj] = 0;
            t->m.w_enc[e] = t->v.w_enc[e] = t->g.w_enc[e] = 0;
        }
        t->p.b_enc[i] = 0;
        t->m.b_enc[i] = t->v.b_enc[i] = t->g.b_enc[i] = 0;
        t->last_fired[i] = rows_seen;
        done++;
    }
    free(cum);
    return done;
}

size_t train_latents_update(sae_trainer *t, size_t step, size_t rows, size_t *resampled)
{
    const sae_train_opts *o = &t->o;
    size_t d_sae = t->shape.d_sae, dead = 0;
    size_t resample_until = (size_t)(0.6 * (double)o->steps);
    for (size_t i = 0; i < d_sae; i++) {
        if (t->a.colsum[i] > 0)
            t->last_fired[i] = rows;
        dead += rows - t->last_fired[i] >= o->dead_window;
    }
    for (size_t i = 0; i < d_sae; i++)
        t->usage[i] += t->a.colsum[i];
    if (!o->resample || step >= resample_until || rows - t->last_resample < o->dead_window)
        return dead;
    memset(t->mark, 0, d_sae);
    size_t n_mark = 0;
    for (size_t i = 0; i < d_sae; i++)
        if (rows - t->last_fired[i] >= o->dead_window)
            t->mark[i] = 1, n_mark++;
    if (o->dup_cos < 1)
        n_mark += mark_redundant(t, t->mark);
    if (n_mark) {
        *resampled += resample_marked(t, t->mark, rows);
        dead = 0;
        for (size_t i = 0; i < d_sae; i++)
            dead += rows - t->last_fired[i] >= o->dead_window;
    }
    memset(t->usage, 0, d_sae * sizeof *t->usage);
    t->last_resample = rows;
    return dead;
}
