/* lm_ops.h: the kernels a transformer block is made of, shared by the
 * families, and the team of threads their non-BLAS work is split across.
 * Row-major float arrays, rows of tokens; shapes in each comment. Matrix
 * products go through BLAS (sae_gemm_rows, the house's one GEMM helper, or
 * cblas_sgemm where attention's strided heads need it) on the calling
 * thread, threaded by OpenBLAS; the rest (LayerNorm, GELU, the adds, the
 * softmax) runs on the team between those calls, so the two never compete
 * for the cores. Each output row is computed whole by one thread, so the
 * values do not depend on the team's size. */
#ifndef SAE_LM_OPS_H
#define SAE_LM_OPS_H

#include <stddef.h>

#include "lm/lm_types.h"

/* Threads that split a kernel's rows: the calling thread and up to
 * size - 1 workers, started on demand and asleep between kernels. */
typedef struct sae_lm_team sae_lm_team;

/* A team of one (the caller); NULL when out of memory. */
sae_lm_team *sae_lm_team_new(void);

/* Joins the workers and frees t. NULL is a no-op. */
void sae_lm_team_free(sae_lm_team *t);

/* Asks for n threads (the caller counts; n < 1 counts as 1), starting
 * workers as needed; returns how many the team has now (fewer when a
 * thread cannot start). */
size_t sae_lm_team_resize(sae_lm_team *t, size_t n);

/* A share of a kernel: items [lo, hi) of its ctx. */
typedef void (*sae_lm_team_fn)(void *ctx, size_t lo, size_t hi);

/* Runs fn over items [0, n), cut into a few contiguous ranges per thread
 * that the caller and the workers claim in turn (whoever is free takes the
 * next), and returns when all are done. work is the kernel's cost in
 * element operations: below a threshold, or with t NULL, the caller runs
 * everything. */
void sae_lm_team_run(sae_lm_team *t, size_t n, size_t work, sae_lm_team_fn fn, void *ctx);

/* y (n, m) = x (n, k) · w (k, m) + b (m); b may be NULL. */
void sae_lm_op_linear(sae_lm_team *t, float *y, const float *x, const float *w, const float *b,
                      size_t n, size_t k, size_t m);

/* x_hat (n, d) = (x - mean) / sqrt(var + eps) row by row, var the biased
 * variance: LayerNorm before its affine (TransformerLens' LayerNormPre). */
void sae_lm_op_layernorm(sae_lm_team *t, float *x_hat, const float *x, size_t n, size_t d,
                         double eps);

/* x (n, d) = x * w + b in place; b may be NULL. */
void sae_lm_op_affine(sae_lm_team *t, float *x, const float *w, const float *b, size_t n,
                      size_t d);

/* x (n) += a (n). */
void sae_lm_op_add(sae_lm_team *t, float *x, const float *a, size_t n);

/* GELU in place over n values: the tanh approximation (HF gelu_new and
 * gelu_pytorch_tanh, TransformerLens gelu_new), or the exact erf form (gelu). */
void sae_lm_op_gelu_tanh(sae_lm_team *t, float *x, size_t n);
void sae_lm_op_gelu_erf(sae_lm_team *t, float *x, size_t n);

/* Query rows per panel of sae_lm_op_attend. */
#define SAE_LM_ATT_PANEL 128

/* Floats of scratch sae_lm_op_attend needs for n_head heads over
 * sequences of up to max_t tokens in panels of SAE_LM_ATT_PANEL rows. */
size_t sae_lm_op_attend_floats(size_t n_head, size_t max_t);

/* Causal self-attention of n_head heads over one sequence of t tokens: for
 * head h, z_h (t, d_head) = softmax(scale · q_h k_hᵀ, masked to j <= i) · v_h,
 * where q_h is the d_head columns from h · d_head of q (row stride ld), k_h
 * and v_h alike, z_h those of z (row stride ldz). The query rows go in
 * panels of `panel` rows; a panel ending at row r only scores keys below r,
 * so the masked triangle is skipped but for each panel's own diagonal
 * block. Per panel: each head's q kᵀ (cblas_sgemm), the softmax rows split
 * across t's team, each head's att · v. att is (n_head, panel, t) scratch. */
void sae_lm_op_attend(sae_lm_team *tm, float *z, size_t ldz, const float *q, const float *k,
                      const float *v, size_t ld, size_t t, size_t n_head, size_t d_head,
                      float scale, size_t panel, float *att);

/* Calls add for the matrix products sae_lm_op_attend makes over a sequence
 * of t tokens, each shape count times (for sae_lm_gemm_shapes). */
void sae_lm_op_attend_shapes(size_t t, size_t d_head, size_t count,
                             void (*add)(void *ctx, const sae_lm_gemm *g), void *ctx);

#endif
