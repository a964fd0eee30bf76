/* reference.c: the naive double-precision oracle (reference.h).
 *
 * Every formula is written out as the CONTRACT states it, one loop at a time,
 * so a reader can check it against the text. Nothing here is shared with the
 * fast kernels in encode.c. */
#include "reference.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* One row's normalisation in double: x_n = (x − shift)·in, y ↦ y·out + shift. */
typedef struct ref_norm {
    double shift, in, out;
} ref_norm;

/* CONTRACT 2, "Input normalisation", for one row x (d_in). */
static ref_norm ref_norm_of(const sae_model *m, const float *x)
{
    size_t n = m->d_in;
    ref_norm r = {0.0, 1.0, 1.0};
    if (m->norm == SAE_NORM_CONSTANT_NORM_RESCALE) {
        double sq = 0.0;
        for (size_t i = 0; i < n; i++)
            sq += (double)x[i] * (double)x[i];
        double len = sqrt(sq);
        double c = len == 0.0 ? 1.0 : sqrt((double)n) / len; /* zero row: c = 1 */
        r.in = c;
        r.out = 1.0 / c;
    } else if (m->norm == SAE_NORM_LAYER_NORM) {
        double mu = 0.0;
        for (size_t i = 0; i < n; i++)
            mu += (double)x[i];
        mu /= (double)n;
        double var = 0.0;
        for (size_t i = 0; i < n; i++)
            var += ((double)x[i] - mu) * ((double)x[i] - mu);
        double sigma = n > 1 ? sqrt(var / (double)(n - 1)) : 0.0;
        r.shift = mu;
        r.in = 1.0 / (sigma + 1e-5);
        r.out = sigma;
    } else if (m->norm == SAE_NORM_EXPECTED_AVERAGE_ONLY_IN) {
        r.in = (double)m->norm_scaling_factor;
        r.out = 1.0 / (double)m->norm_scaling_factor;
    }
    return r;
}

/* A 16-bit weight's value, decoded here from its bits as IEEE 754 binary16
 * or bfloat16 define them (not through the library's converters). */
static double ref_half(sae_dtype dt, uint16_t h)
{
    if (dt == SAE_DT_BF16) {
        uint32_t u = (uint32_t)h << 16;
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    int e = (h >> 10) & 31, man = h & 1023;
    double v = e ? ldexp(1024 + man, e - 25) : ldexp(man, -24);
    return h & 0x8000 ? -v : v; /* finite: the loader refuses inf and NaN */
}

/* W_dec[i][j], whatever the model keeps. */
static double ref_w_dec(const sae_model *m, size_t i, size_t j)
{
    size_t at = i * m->d_out + j;
    return m->w_dec_h ? ref_half(m->w_dtype, m->w_dec_h[at]) : m->w_dec[at];
}

/* ||W_dec,i|| (a row of d_out), recomputed here rather than taken from
 * m->dec_norm. */
static double ref_dec_norm(const sae_model *m, size_t i)
{
    double s = 0.0;
    for (size_t j = 0; j < m->d_out; j++) {
        double w = ref_w_dec(m, i, j);
        s += w * w;
    }
    return sqrt(s);
}

/* W_enc[i][j] in the (d_in, d_sae) sense whatever the stored layout. */
static double ref_w_enc(const sae_model *m, size_t i, size_t j)
{
    size_t at = m->w_enc_t ? j * m->d_in + i : i * m->d_sae + j;
    return m->w_enc_h ? ref_half(m->w_dtype, m->w_enc_h[at]) : m->w_enc[at];
}

/* x' (d_in) = norm(x) − b_dec·[apply_b_dec_to_input], the encoder's input. */
static void ref_input(const sae_model *m, const float *x, double *xp)
{
    ref_norm nr = ref_norm_of(m, x);
    for (size_t i = 0; i < m->d_in; i++) {
        xp[i] = ((double)x[i] - nr.shift) * nr.in;
        if (m->apply_b_dec_to_input)
            xp[i] -= (double)m->b_dec[i];
    }
}

void sae_ref_abs_dot(const sae_model *m, const float *x, double *s)
{
    double *xp = malloc(m->d_in * sizeof *xp);
    if (!xp)
        abort();
    ref_input(m, x, xp);
    for (size_t j = 0; j < m->d_sae; j++) {
        double a = 0.0;
        for (size_t i = 0; i < m->d_in; i++)
            a += fabs(xp[i] * ref_w_enc(m, i, j));
        s[j] = a;
    }
    free(xp);
}

void sae_ref_encode_row(const sae_model *m, const float *x, double *f, double *margin)
{
    size_t d_in = m->d_in, d_sae = m->d_sae;
    if (m->arch == SAE_ARCH_AUTOENCODER)
        return;
    double *xp = malloc(d_in * sizeof *xp);
    double *v = malloc(d_sae * sizeof *v);
    if (!xp || !v)
        abort(); /* a test oracle: running out of memory here is a broken test machine */

    ref_input(m, x, xp);

    for (size_t j = 0; j < d_sae; j++) {
        double dot = 0.0;
        for (size_t i = 0; i < d_in; i++)
            dot += xp[i] * ref_w_enc(m, i, j);
        switch (m->arch) {
        case SAE_ARCH_STANDARD: {
            double pre = dot + m->b_enc[j];
            f[j] = pre > 0.0 ? pre : 0.0;
            if (margin)
                margin[j] = pre;
            break;
        }
        case SAE_ARCH_JUMPRELU: {
            double pre = dot + m->b_enc[j];
            double thr = m->threshold[j];
            f[j] = (pre > 0.0 ? pre : 0.0) * (pre > thr ? 1.0 : 0.0);
            if (margin)
                margin[j] = fmin(pre - thr, pre);
            break;
        }
        case SAE_ARCH_GATED: {
            double gate = dot + m->b_gate[j];
            double mdot = 0.0;
            for (size_t i = 0; i < d_in; i++)
                mdot += xp[i] * (ref_w_enc(m, i, j) * (double)m->exp_r_mag[j]);
            double mag = mdot + m->b_mag[j];
            f[j] = (gate > 0.0 ? 1.0 : 0.0) * (mag > 0.0 ? mag : 0.0);
            if (margin)
                margin[j] = fmin(gate, mag);
            break;
        }
        case SAE_ARCH_TOPK: {
            double pre = dot + m->b_enc[j];
            if (m->rescale_acts_by_decoder_norm)
                pre *= ref_dec_norm(m, j);
            v[j] = pre;
            break;
        }
        case SAE_ARCH_AUTOENCODER:
            break;
        }
    }

    if (m->arch == SAE_ARCH_TOPK && m->signed_topk) {
        /* The 2024 EleutherAI sae with signed: true (sae/sae.py at 9f37f17^,
         * pre_acts and select_topk): pre = (x − b_dec)·W_encᵀ + b_enc with
         * no ReLU; idx = topk(|pre|, k); the values pre[idx] keep their
         * signs. Picked one at a time by |pre|, lower index first on ties. */
        char *taken = calloc(d_sae, 1);
        if (!taken)
            abort();
        double kth = 0.0, next = 0.0;
        for (size_t j = 0; j < d_sae; j++)
            f[j] = 0.0;
        for (size_t r = 0; r <= m->k && r < d_sae; r++) {
            size_t best = d_sae;
            for (size_t j = 0; j < d_sae; j++)
                if (!taken[j] && (best == d_sae || fabs(v[j]) > fabs(v[best])))
                    best = j;
            if (r == m->k) {
                next = fabs(v[best]);
                break;
            }
            taken[best] = 1;
            kth = fabs(v[best]);
            f[best] = v[best];
        }
        double t = m->k < d_sae ? (kth + next) / 2.0 : -INFINITY;
        if (margin)
            for (size_t j = 0; j < d_sae; j++)
                margin[j] = fmin(fabs(v[j]) - t, fabs(v[j]));
        free(taken);
    } else if (m->arch == SAE_ARCH_TOPK) {
        /* Pick the k largest one at a time; among equal values the lower index
         * is taken first because the scan keeps the first maximum it sees. */
        char *taken = calloc(d_sae, 1);
        if (!taken)
            abort();
        double kth = 0.0, next = -INFINITY;
        for (size_t j = 0; j < d_sae; j++)
            f[j] = 0.0;
        for (size_t r = 0; r <= m->k && r < d_sae; r++) {
            size_t best = d_sae;
            for (size_t j = 0; j < d_sae; j++)
                if (!taken[j] && (best == d_sae || v[j] > v[best]))
                    best = j;
            if (r == m->k) {
                next = v[best];
                break;
            }
            taken[best] = 1;
            kth = v[best];
            f[best] = v[best] > 0.0 ? v[best] : 0.0;
        }
        double t = m->k < d_sae ? (kth + next) / 2.0 : -INFINITY;
        if (margin)
            for (size_t j = 0; j < d_sae; j++)
                margin[j] = fmin(v[j] - t, v[j]);
        free(taken);
    }
    free(xp);
    free(v);
}

/* f'·W_dec + b_dec into y (d_out), from dense f. SAELens <= 5 (sae.py
 * decode) multiplied f by the finetuning scaling factor first:
 * (f ⊙ s)·W_dec + b_dec. A transcoder's W_dec is (d_sae, d_out). */
static void ref_decode_dense(const sae_model *m, const double *f, double *y)
{
    for (size_t j = 0; j < m->d_out; j++)
        y[j] = m->b_dec[j];
    for (size_t i = 0; i < m->d_sae; i++) {
        if (f[i] == 0.0)
            continue;
        double c = f[i];
        if (m->dec_scale)
            c *= (double)m->dec_scale[i];
        if (m->arch == SAE_ARCH_TOPK && m->rescale_acts_by_decoder_norm) {
            double nrm = ref_dec_norm(m, i);
            c = nrm > 0.0 ? c / nrm : 0.0; /* a zero decoder row adds nothing */
        }
        for (size_t j = 0; j < m->d_out; j++)
            y[j] += c * ref_w_dec(m, i, j);
    }
}

void sae_ref_reconstruct_row(const sae_model *m, const float *x, const double *f, double *xhat)
{
    ref_decode_dense(m, f, xhat);
    ref_norm nr = ref_norm_of(m, x);
    for (size_t j = 0; j < m->d_in; j++)
        xhat[j] = xhat[j] * nr.out + nr.shift;
}

void sae_ref_decode_sparse(const sae_model *m, const uint32_t *idx, const float *val, size_t nnz,
                           double *out)
{
    double *f = calloc(m->d_sae, sizeof *f);
    if (!f)
        abort();
    for (size_t t = 0; t < nnz; t++)
        f[idx[t]] += val[t];
    ref_decode_dense(m, f, out);
    if (m->norm == SAE_NORM_EXPECTED_AVERAGE_ONLY_IN)
        for (size_t j = 0; j < m->d_out; j++)
            out[j] /= (double)m->norm_scaling_factor;
    free(f);
}

void sae_ref_metrics(const float *x, const double *xhat, size_t d_in, double *mse, double *fvu,
                     double *cosine)
{
    double mean = 0.0;
    for (size_t j = 0; j < d_in; j++)
        mean += x[j];
    mean /= (double)d_in;
    double num = 0.0, den = 0.0;
    for (size_t j = 0; j < d_in; j++) {
        num += ((double)x[j] - xhat[j]) * ((double)x[j] - xhat[j]);
        den += ((double)x[j] - mean) * ((double)x[j] - mean);
    }
    *mse = num / (double)d_in;
    if (den == 0.0)
        *fvu = num == 0.0 ? 0.0 : 1.0;
    else
        *fvu = num / den;
    double xx = 0.0, hh = 0.0, xh = 0.0;
    for (size_t j = 0; j < d_in; j++) {
        xx += (double)x[j] * x[j];
        hh += xhat[j] * xhat[j];
        xh += (double)x[j] * xhat[j];
    }
    *cosine = xx == 0.0 || hh == 0.0 ? 0.0 : xh / sqrt(xx * hh);
}

size_t sae_ref_sparse(const double *f, size_t d_sae, uint32_t *idx, double *val)
{
    size_t n = 0;
    for (size_t j = 0; j < d_sae; j++) {
        if (f[j] == 0.0)
            continue;
        /* insertion: move later-ranked entries right */
        size_t at = n;
        while (at > 0 && (val[at - 1] < f[j] || (val[at - 1] == f[j] && idx[at - 1] > j))) {
            val[at] = val[at - 1];
            idx[at] = idx[at - 1];
            at--;
        }
        val[at] = f[j];
        idx[at] = (uint32_t)j;
        n++;
    }
    return n;
}
