/* kernel.h: the encoder-shaped products over 16-bit weights, and which
 * kernel runs them.
 *
 * A model whose W_enc and W_dec are F16 or BF16 keeps them as the file holds
 * them (model.h); its encoder product y = x · W_enc then runs on one of the
 * kernels below, chosen once at load from what the CPU has:
 *   avx512-bf16  BF16 weights, vdpbf16ps: the input is rounded to bf16 too
 *                (round to nearest even), each pair of products is summed in
 *                F32 with denormals flushed, as the instruction does.
 *   avx2-bf16    BF16 weights widened exactly (a 16-bit shift) and multiplied
 *                in F32 by FMA; the input stays F32.
 *   avx2-f16c    F16 weights widened exactly by vcvtph2ps, F32 FMA.
 *   c-half       the same in plain C, for CPUs without AVX2/F16C.
 * An F32 model uses OpenBLAS ("openblas-f32", sae_gemm_rows in encode.h).
 *
 * The error of each kernel, stated for one output y_j = Σ_k x_k·W_kj with
 * S_j = Σ_k |x_k·W_kj| and n = d_in (docs/PERFORMANCE.md, "Accuracy"):
 *   |y_j − exact| ≤ (e_in + γ_n·(1 + e_in))·S_j + n·2⁻¹²⁶·(1 + max|W|)
 * where e_in = 2⁻⁸ when the input is rounded to bf16 (avx512-bf16) and 0
 * otherwise, and γ_n = n·u/(1 − n·u), u = 2⁻²⁴, is the F32 accumulation term;
 * the last term covers flushed denormals. sae_kernel_input_eps gives e_in. */
#ifndef SAE_KERNEL_H
#define SAE_KERNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/dtype.h"

typedef enum sae_kernel {
    SAE_KERNEL_BLAS_F32,    /* F32 weights through OpenBLAS */
    SAE_KERNEL_AVX512_BF16, /* BF16 weights, vdpbf16ps */
    SAE_KERNEL_AVX2_BF16,   /* BF16 weights, shift to F32, FMA */
    SAE_KERNEL_AVX2_F16,    /* F16 weights, vcvtph2ps, FMA */
    SAE_KERNEL_C_HALF,      /* F16 or BF16 weights, plain C */
} sae_kernel;

/* The kernel's name as /v1/model and `sae bench` report it ("avx512-bf16"). */
const char *sae_kernel_name(sae_kernel k);

/* The kernel for weights of dtype dt on this CPU: F32 (and F64, converted at
 * load) take OpenBLAS; BF16 takes avx512-bf16 when the CPU has AVX512-BF16,
 * else avx2-bf16 when it has AVX2 and FMA, else c-half; F16 takes avx2-f16c
 * when it has AVX2, FMA and F16C, else c-half. The environment variable
 * SAE_KERNEL=avx2 (or =c) caps the choice below AVX-512 (or at plain C),
 * for tests and for comparing kernels on one machine. */
sae_kernel sae_kernel_pick(sae_dtype dt);

/* Like sae_kernel_pick, capped at avx2 (avx2 true) or plain C: what a CPU
 * without AVX-512 (or without AVX2) would run. */
sae_kernel sae_kernel_pick_capped(sae_dtype dt, bool allow_avx512, bool allow_avx2);

/* The relative error of the input rounding of kernel k: 2⁻⁸ for
 * avx512-bf16, 0 for the others. */
double sae_kernel_input_eps(sae_kernel k);

/* Bytes of scratch sae_gemm_half needs for `rows` rows of d_in (the input
 * rounded to bf16 and paired); 0 when the kernel needs none. */
size_t sae_gemm_half_scratch(sae_kernel k, size_t rows, size_t d_in);

/* y (rows, d_sae) = x (rows, d_in) · W, W 16-bit of dtype dt (F16 or BF16;
 * the one k was picked for), stored row-major (d_in, d_sae), or (d_sae, d_in) when w_t.
 * scratch holds sae_gemm_half_scratch(k, rows, d_in) bytes, 64-byte aligned.
 * threads > 1 splits the columns of large products over that many threads.
 * y is overwritten. Borrows everything. */
void sae_gemm_half(sae_kernel k, sae_dtype dt, const uint16_t *w, bool w_t, size_t d_in,
                   size_t d_sae, const float *x, size_t rows, float *y, void *scratch,
                   int threads);

/* The column alignment of sae_gemm_half_cols: a multiple of every kernel's
 * column tile (16 for avx2, 64 for avx512-bf16). */
#define SAE_HALF_COL_ALIGN 64

/* Columns [j0, j1) of sae_gemm_half's product, each with the very bits
 * sae_gemm_half gives it: the range is widened to SAE_HALF_COL_ALIGN
 * boundaries (or to d_sae), and the columns of that widened range are
 * written into y, still (rows, d_sae); the others are left as they were.
 * Costs about (j1 - j0) / d_sae of the whole product. j0 <= j1 <= d_sae. */
void sae_gemm_half_cols(sae_kernel k, sae_dtype dt, const uint16_t *w, bool w_t, size_t d_in,
                        size_t d_sae, const float *x, size_t rows, float *y, void *scratch,
                        int threads, size_t j0, size_t j1);

/* out (n) += c · w (n 16-bit values of dtype dt): one decoder row. */
void sae_half_axpy(sae_dtype dt, const uint16_t *w, float c, float *out, size_t n);

/* out (n) = w (n 16-bit values of dtype dt) widened exactly to F32. */
void sae_half_widen(sae_dtype dt, const uint16_t *w, float *out, size_t n);

#endif
