/* encode.h: the fast encode and decode kernels.
 *
 * Encoding runs block by block: one cblas_sgemm (cblas_sgemv for a single row)
 * per block of rows into the workspace's dense (block_rows, d_sae) buffer, then
 * one fused pass per row applies bias, activation and threshold/top-k and
 * appends the row's sparse list to the output. Only one block's dense output is
 * alive at a time. The naive double-precision oracle is in reference.h. */
#ifndef SAE_ENCODE_H
#define SAE_ENCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/error.h"
#include "sae/model.h"

/* Sparse rows in CSR form. Within a row, values descending, ties by index
 * ascending (CONTRACT section 5). Row r is idx/val[row_ptr[r] .. row_ptr[r+1]). */
typedef struct sae_sparse {
    size_t n_rows, nnz;
    size_t rows_cap, cap;   /* capacities of row_ptr (minus one) and idx/val */
    uint32_t *row_ptr;      /* (n_rows + 1) */
    uint32_t *idx;          /* (nnz) */
    float *val;             /* (nnz) */
} sae_sparse;

void sae_sparse_init(sae_sparse *s);
void sae_sparse_free(sae_sparse *s);
/* Empties s, keeping its buffers. */
void sae_sparse_reset(sae_sparse *s);
/* Appends one row (copied as given; the caller orders it). */
int sae_sparse_push_row(sae_sparse *s, const uint32_t *idx, const float *val, size_t n,
                        sae_error *err);

/* Per-row normalisation (CONTRACT section 2): x_n = (x - shift) * in_scale;
 * an output y in the normalised space maps back as y * out_scale + shift.
 * Edge cases the contract leaves open: constant_norm_rescale of a zero row
 * uses c = 1 (the row is left as it is); layer_norm with d_in = 1 takes
 * sigma = 0 (the unbiased estimate is undefined). */
typedef struct sae_row_norm {
    double shift, in_scale, out_scale;
} sae_row_norm;
void sae_row_norm_compute(const sae_model *m, const float *x, sae_row_norm *out);

typedef struct sae_encode_opts {
    size_t top_k;           /* 0: return all active features */
    bool has_threshold;
    float threshold;        /* return only values > threshold */
} sae_encode_opts;

/* Per-row figures, always from the full SAE output (options only filter the
 * returned list). mse, fvu and cosine are in the input space (CONTRACT 5). */
typedef struct sae_row_metrics {
    uint32_t l0;
    double mse, fvu, cosine;
} sae_row_metrics;

/* mse, fvu (Σ(x−x̂)²/Σ(x−x̄)², x̄ the row mean) and cosine of x and xhat.
 * A constant row has Σ(x−x̄)² = 0: its fvu is 0 when x̂ = x exactly and 1
 * otherwise (finite, so it stays valid JSON). cosine is 0 when either norm is
 * 0. l0 is left to the caller. */
void sae_metrics_row(const float *x, const float *xhat, size_t d_in, sae_row_metrics *out);

/* Rows per GEMM when a workspace is made with block_rows 0. */
#define SAE_ENCODE_DEFAULT_BLOCK_ROWS 256

/* Scratch buffers for one thread. block_rows 0 picks the default (256).
 * Returns NULL when out of memory (or the sizes overflow). A workspace
 * serves any model no wider than the one it was made for (d_in and d_sae at
 * most its own), so one per thread can serve several SAEs. */
typedef struct sae_workspace sae_workspace;
sae_workspace *sae_workspace_new(const sae_model *m, size_t block_rows);
/* The same, for models of at most d_in inputs and d_sae features. */
sae_workspace *sae_workspace_new_dims(size_t d_in, size_t d_sae, size_t block_rows);
/* Whether ws can encode with m (m no wider than ws was made for). */
bool sae_workspace_fits(const sae_workspace *ws, const sae_model *m);
void sae_workspace_free(sae_workspace *ws);

/* Encodes rows x (n, d_in), appending n rows to out. metrics (n) and recon
 * (n, d_in, in the input space) are filled when not NULL; a transcoder
 * refuses them (SAE_EINVAL: its decoder does not reconstruct the input). x
 * must be finite (the caller validates input); a row that is not finite once normalised, or
 * whose pre-activations are not, fails the call with SAE_ERANGE and a message
 * beginning "row N:" (N counted from 0 in x), nothing appended. */
int sae_encode(const sae_model *m, sae_workspace *ws, const float *x, size_t n,
               const sae_encode_opts *opt, sae_sparse *out, sae_row_metrics *metrics,
               float *recon, sae_error *err);

/* Whether m's features are independent of one another (standard, JumpReLU,
 * gated): each one's activation needs only its own column of W_enc. TopK
 * ranks every pre-activation; an autoencoder does not use sae_encode. */
bool sae_encode_cols_independent(const sae_model *m);

/* Encodes rows x (n, d_in) as sae_encode does (no options, metrics or
 * reconstruction), appending n rows that hold only the features [lo, hi),
 * renumbered from 0, in the same order and with the same values as in
 * sae_encode's rows. When m's features are independent the product covers
 * only those columns of W_enc (about (hi - lo) / d_sae of the work; only
 * their pre-activations are checked finite), each value with the full
 * product's bits: F32 through OpenBLAS on a block widened to 96-column
 * boundaries and to at least 2^21 multiply-adds (bit-identical with
 * single-threaded BLAS, as the indexer runs it), F16/BF16 through
 * sae_gemm_half_cols (kernel.h) at any thread count. TopK encodes the whole
 * row and keeps the range. */
int sae_encode_cols(const sae_model *m, sae_workspace *ws, const float *x, size_t n,
                    uint32_t lo, uint32_t hi, sae_sparse *out, sae_error *err);

/* x̂ = f'·W_dec + b_dec for one sparse row, in the normalised space; f' as the
 * contract says (divided by decoder norms for topk with rescaling; a feature
 * whose decoder row is all zero contributes nothing rather than f/0). Costs
 * O(nnz * d_in). Indices must be < d_sae. */
void sae_decode_row(const sae_model *m, const uint32_t *idx, const float *val, size_t nnz,
                    float *out);

/* True when /v1/decode answers in the normalised space (layer_norm and
 * constant_norm_rescale depend on the original row). */
bool sae_decode_is_normalised(const sae_model *m);

/* Decodes every row of f into out (n_rows, d_in) in the space the contract
 * gives (input space for none / expected_average_only_in). Validates indices
 * (< d_sae) and values (finite); error names the row and position. */
int sae_decode(const sae_model *m, const sae_sparse *f, float *out, sae_error *err);

/* y (rows, d_sae) = x (rows, d_in) · W: the one encoder-shaped product of the
 * house, used by sae_encode and timed raw by `sae bench` and bench/loadgen so
 * their baselines are the very BLAS call the encoder makes. W is stored
 * row-major (d_in, d_sae), or (d_sae, d_in) when w_t (sparsify's
 * encoder.weight, used transposed in place). One row is one cblas_sgemv,
 * more rows one cblas_sgemm, with alpha 1 and beta 0 (y is overwritten).
 * Borrows everything; d_in and d_sae must fit in an int. */
void sae_gemm_rows(const float *w, bool w_t, size_t d_in, size_t d_sae, const float *x,
                   size_t rows, float *y);

/* Bounds OpenBLAS's threads (containers' CPU quotas are not seen by it).
 * The setting is process-wide. */
void sae_set_blas_threads(int n);

/* OpenBLAS's current thread count (at least 1). */
int sae_get_blas_threads(void);

#endif
