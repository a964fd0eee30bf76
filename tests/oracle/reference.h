/* reference.h: the naive double-precision oracle for encode.h.
 *
 * Plain loops straight from the CONTRACT (section 2 and 5) formulas, in
 * double, no BLAS, sharing no code with encode.c. Slow on purpose: it exists
 * so the fast kernels (and the daemon's answers) can be checked against
 * something a reader can verify line by line. All functions only read the
 * model; x, f and outputs are caller-owned arrays of the stated shapes. */
#ifndef SAE_REFERENCE_H
#define SAE_REFERENCE_H

#include <stddef.h>
#include <stdint.h>

#include "sae/model.h"

/* Encodes one row x (d_in) into the dense activations f (d_sae).
 * margin (d_sae, or NULL) receives, per feature, a signed distance to the
 * decision that makes it active: > 0 active, <= 0 inactive, and a small
 * |margin| means float rounding may flip the decision. It is the minimum over
 * the feature's conditions:
 *   standard  pre                          (pre = x'·W_enc + b_enc)
 *   jumprelu  min(pre − threshold, pre)
 *   gated     min(x'·W_enc + b_gate, x'·(W_enc ⊙ exp(r_mag)) + b_mag)
 *   topk      min(v − t, v), v the (rescaled) pre, t the midpoint of the k-th
 *             and (k+1)-th largest v (t = −inf when k = d_sae); exact ties
 *             between the k-th and (k+1)-th give margin 0.
 *   signed    topk with v = |pre| and f = pre (signs kept, no ReLU).
 * Not for the autoencoder architecture (f is left untouched then). */
void sae_ref_encode_row(const sae_model *m, const float *x, double *f, double *margin);

/* s (d_sae) = Σ_k |x'_k·W_enc[k][j]| for row x, x' the encoder's input as
 * sae_ref_encode_row forms it: the scale of the 16-bit kernels' error bound
 * (kernel.h). */
void sae_ref_abs_dot(const sae_model *m, const float *x, double *s);

/* The reconstruction of row x from its dense activations f (d_sae) into xhat
 * (d_in), in the input space: x̂ = f'·W_dec + b_dec, then the inverse of x's
 * normalisation; f' = f ⊙ scaling_factor when the model has one. Not for a
 * transcoder (its decoder does not reconstruct x). */
void sae_ref_reconstruct_row(const sae_model *m, const float *x, const double *f, double *xhat);

/* Decodes one sparse row (nnz pairs, indices < d_sae) into out (d_out) in the
 * space /v1/decode answers in: input space for none and
 * expected_average_only_in, normalised space for layer_norm and
 * constant_norm_rescale; a transcoder's output as SAELens' Transcoder.decode
 * gives it (f·W_dec + b_dec, no inverse normalisation). */
void sae_ref_decode_sparse(const sae_model *m, const uint32_t *idx, const float *val, size_t nnz,
                           double *out);

/* Metrics of a row x against xhat (both d_in, input space):
 * mse = Σ(x−x̂)²/d_in; fvu = Σ(x−x̂)²/Σ(x−x̄)², and when Σ(x−x̄)² = 0,
 * fvu = 0 if Σ(x−x̂)² = 0 else 1; cosine of x and x̂, 0 when either norm is 0. */
void sae_ref_metrics(const float *x, const double *xhat, size_t d_in, double *mse, double *fvu,
                     double *cosine);

/* Lists the nonzero entries of f (d_sae) in the contract's order (values
 * descending, ties by index ascending) into idx/val (each d_sae long);
 * returns how many. */
size_t sae_ref_sparse(const double *f, size_t d_sae, uint32_t *idx, double *val);

#endif
