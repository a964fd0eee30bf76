/* lm_ops.h: the kernels a transformer block is made of, shared by the
 * families. Row-major float arrays, rows of tokens; shapes in each comment.
 * Matrix products go through BLAS (sae_gemm_rows, the house's one GEMM
 * helper, or cblas_sgemm where attention's strided heads need it). */
#ifndef SAE_LM_OPS_H
#define SAE_LM_OPS_H

#include <stddef.h>

/* y (n, m) = x (n, k) · w (k, m) + b (m); b may be NULL. */
void sae_lm_op_linear(float *y, const float *x, const float *w, const float *b, size_t n,
                      size_t k, size_t m);

/* x_hat (n, d) = (x - mean) / sqrt(var + eps) row by row, var the biased
 * variance: LayerNorm before its affine (TransformerLens' LayerNormPre). */
void sae_lm_op_layernorm(float *x_hat, const float *x, size_t n, size_t d, double eps);

/* x (n, d) = x * w + b in place; b may be NULL. */
void sae_lm_op_affine(float *x, const float *w, const float *b, size_t n, size_t d);

/* x (n) += a (n). */
void sae_lm_op_add(float *x, const float *a, size_t n);

/* GELU in place over n values: the tanh approximation (HF gelu_new and
 * gelu_pytorch_tanh, TransformerLens gelu_new), or the exact erf form (gelu). */
void sae_lm_op_gelu_tanh(float *x, size_t n);
void sae_lm_op_gelu_erf(float *x, size_t n);

/* One head of causal self-attention over one sequence of t tokens:
 * z (t, d_head; row stride ldz) = softmax(scale · q kᵀ, masked to j <= i) · v,
 * q, k, v (t, d_head) with row stride ld. att is (t, t) scratch. */
void sae_lm_op_attend(float *z, size_t ldz, const float *q, const float *k, const float *v,
                      size_t ld, size_t t, size_t d_head, float scale, float *att);

#endif
