/* lm_ops.c: transformer kernels (lm_ops.h). The forms follow llm.c's
 * train_gpt2.c and Hugging Face's modeling_gpt2.py; sums run in double. */
#include "lm/lm_ops.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "sae/encode.h"

void sae_lm_op_linear(float *y, const float *x, const float *w, const float *b, size_t n,
                      size_t k, size_t m)
{
    sae_gemm_rows(w, false, k, m, x, n, y);
    if (b)
        for (size_t i = 0; i < n; i++)
            sae_lm_op_add(y + i * m, b, m);
}

void sae_lm_op_layernorm(float *x_hat, const float *x, size_t n, size_t d, double eps)
{
    for (size_t i = 0; i < n; i++) {
        const float *r = x + i * d;
        float *o = x_hat + i * d;
        double s = 0;
        for (size_t j = 0; j < d; j++)
            s += r[j];
        double mean = s / (double)d, v = 0;
        for (size_t j = 0; j < d; j++) {
            double c = r[j] - mean;
            v += c * c;
        }
        double inv = 1.0 / sqrt(v / (double)d + eps);
        for (size_t j = 0; j < d; j++)
            o[j] = (float)((r[j] - mean) * inv);
    }
}

void sae_lm_op_affine(float *x, const float *w, const float *b, size_t n, size_t d)
{
    for (size_t i = 0; i < n; i++) {
        float *r = x + i * d;
        for (size_t j = 0; j < d; j++)
            r[j] = r[j] * w[j] + (b ? b[j] : 0.0f);
    }
}

void sae_lm_op_add(float *x, const float *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] += a[i];
}

/* 0.5 (1 + tanh(u)) is the logistic function of 2u, and expf is several
 * times cheaper than tanhf; for large negative u, expf overflows to inf and
 * the result is -0, as it should be. */
void sae_lm_op_gelu_tanh(float *x, size_t n)
{
    const float c2 = 2.0f * 0.7978845608028654f; /* 2 sqrt(2 / pi) */
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = v / (1.0f + expf(-c2 * (v + 0.044715f * v * v * v)));
    }
}

void sae_lm_op_gelu_erf(float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 0.5f * x[i] * (1.0f + erff(x[i] * 0.70710678118654752f));
}

void sae_lm_op_attend(float *z, size_t ldz, const float *q, const float *k, const float *v,
                      size_t ld, size_t t, size_t d_head, float scale, float *att)
{
    int ti = (int)t, dh = (int)d_head, l = (int)ld;
    /* att = scale · q kᵀ; the upper triangle is computed and then masked */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ti, ti, dh, scale, q, l, k, l, 0.0f,
                att, ti);
    for (size_t i = 0; i < t; i++) {
        float *r = att + i * t;
        float mx = r[0];
        for (size_t j = 1; j <= i; j++)
            mx = r[j] > mx ? r[j] : mx;
        double s = 0;
        for (size_t j = 0; j <= i; j++) {
            r[j] = expf(r[j] - mx);
            s += r[j];
        }
        float inv = (float)(1.0 / s);
        for (size_t j = 0; j <= i; j++)
            r[j] *= inv;
        memset(r + i + 1, 0, (t - i - 1) * sizeof *r);
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ti, dh, ti, 1.0f, att, ti, v, l, 0.0f,
                z, (int)ldz);
}
