/* kernel.c: products over 16-bit weights (kernel.h).
 *
 * The x86 kernels are compiled with target attributes, so the library still
 * runs on a CPU without AVX-512 or AVX2: sae_kernel_pick asks the CPU at run
 * time and only the kernel it names is ever called.
 *
 * avx512-bf16, W stored (d_in, d_sae). vdpbf16ps multiplies pairs of bf16
 * that sit side by side in a 32-bit lane, but in this layout the two weights
 * of a pair (rows k and k+1 of one column) are d_sae apart. Rather than keep a
 * repacked copy of W_enc (the mapping is the copy), each 32-column tile of
 * rows k and k+1 is interleaved in registers (vpunpcklwd/vpunpckhwd), which
 * permutes the columns within the tile; the permutation is undone once per
 * tile at the store (vpermt2ps). The input is rounded to bf16 and paired once
 * per call (pack_pairs), so a row's pair is one 32-bit broadcast. A tile of 6
 * rows × 64 columns holds 24 accumulators; the interleaved panel is shared by
 * every row tile. One row (batch 1) reads W once and is bound by memory bandwidth: it
 * takes 4 tiles (256 contiguous bytes of each weight row) at a time and
 * prefetches 16 rows ahead, since consecutive weight rows are a page apart.
 *
 * W stored (d_sae, d_in) (sparsify's encoder.weight): each output is a dot
 * product of contiguous pairs, 4 rows × 4 features per tile, summed
 * horizontally at the end. */
#include "sae/kernel.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#include <immintrin.h>
#define SAE_X86 1
#endif

const char *sae_kernel_name(sae_kernel k)
{
    switch (k) {
    case SAE_KERNEL_BLAS_F32: return "openblas-f32";
    case SAE_KERNEL_AVX512_BF16: return "avx512-bf16";
    case SAE_KERNEL_AVX2_BF16: return "avx2-bf16";
    case SAE_KERNEL_AVX2_F16: return "avx2-f16c";
    case SAE_KERNEL_C_HALF: return "c-half";
    }
    return "?";
}

#ifdef SAE_X86
/* F16C from CPUID leaf 1, ECX bit 29 (clang 14's __builtin_cpu_supports does
 * not know it either). */
static bool cpu_has_f16c(void)
{
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}

/* AVX512-BF16 from CPUID leaf 7, subleaf 1, EAX bit 5 (asked directly:
 * clang 14's __builtin_cpu_supports does not know it), with the OS saving
 * the AVX-512 state (XCR0 bits 1, 2, 5, 6, 7). */
static bool cpu_has_avx512_bf16(void)
{
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 1, &a, &b, &c, &d) || !(a & (1u << 5)))
        return false;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) /* OSXSAVE */
        return false;
    unsigned lo, hi;
    __asm__("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (lo & 0xe6u) == 0xe6u;
}
#endif

sae_kernel sae_kernel_pick_capped(sae_dtype dt, bool allow_avx512, bool allow_avx2)
{
    if (dt != SAE_DT_BF16 && dt != SAE_DT_F16)
        return SAE_KERNEL_BLAS_F32;
#ifdef SAE_X86
    __builtin_cpu_init();
    bool avx2 = allow_avx2 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    if (dt == SAE_DT_BF16) {
        if (allow_avx512 && avx2 && __builtin_cpu_supports("avx512f") &&
            __builtin_cpu_supports("avx512bw") && cpu_has_avx512_bf16())
            return SAE_KERNEL_AVX512_BF16;
        if (avx2)
            return SAE_KERNEL_AVX2_BF16;
    } else if (avx2 && cpu_has_f16c()) {
        return SAE_KERNEL_AVX2_F16;
    }
#else
    (void)allow_avx512;
    (void)allow_avx2;
#endif
    return SAE_KERNEL_C_HALF;
}

sae_kernel sae_kernel_pick(sae_dtype dt)
{
    const char *cap = getenv("SAE_KERNEL");
    bool c_only = cap && strcmp(cap, "c") == 0;
    bool no512 = c_only || (cap && strcmp(cap, "avx2") == 0);
    return sae_kernel_pick_capped(dt, !no512, !c_only);
}

double sae_kernel_input_eps(sae_kernel k)
{
    return k == SAE_KERNEL_AVX512_BF16 ? 0x1p-8 : 0.0;
}

/* Pairs per row of the packed input: d_in rounded up to even, halved. */
static size_t pairs_of(size_t d_in)
{
    return (d_in + 1) / 2;
}

size_t sae_gemm_half_scratch(sae_kernel k, size_t rows, size_t d_in)
{
    if (k != SAE_KERNEL_AVX512_BF16)
        return 0;
    return (rows * pairs_of(d_in) * sizeof(uint32_t) + 63) / 64 * 64;
}

/* The exact F32 value of one 16-bit weight. */
static inline float widen1(sae_dtype dt, uint16_t h)
{
    return dt == SAE_DT_BF16 ? sae_bf16_to_f32(h) : sae_f16_to_f32(h);
}

/* One call's product, or the part of it one thread computes: output columns
 * [j0, j1) of every row. */
typedef struct half_job {
    sae_kernel k;
    const uint16_t *w; /* (d_in, d_sae), or (d_sae, d_in) when w_t */
    bool w_t;
    size_t d_in, d_sae;
    const float *x;     /* (rows, d_in) */
    const uint32_t *xp; /* (rows, pairs_of(d_in)) the input as bf16 pairs, avx512-bf16 only */
    size_t rows;
    float *y; /* (rows, d_sae) */
    size_t j0, j1;
} half_job;

/* ---- plain C: every kernel's tails, and CPUs without AVX2 ---- */

/* Columns [j0, j1) of y = x · W in F32 from exactly widened weights. */
static void c_columns(const half_job *jb, sae_dtype dt, size_t j0, size_t j1)
{
    size_t d_in = jb->d_in, ds = jb->d_sae;
    for (size_t r = 0; r < jb->rows; r++) {
        const float *xr = jb->x + r * d_in;
        float *yr = jb->y + r * ds;
        if (jb->w_t) {
            for (size_t j = j0; j < j1; j++) {
                const uint16_t *wj = jb->w + j * d_in;
                float s = 0;
                for (size_t k = 0; k < d_in; k++)
                    s += xr[k] * widen1(dt, wj[k]);
                yr[j] = s;
            }
            continue;
        }
        for (size_t j = j0; j < j1; j++)
            yr[j] = 0;
        for (size_t k = 0; k < d_in; k++) {
            const uint16_t *wk = jb->w + k * ds;
            for (size_t j = j0; j < j1; j++)
                yr[j] += xr[k] * widen1(dt, wk[j]);
        }
    }
}

#ifdef SAE_X86

/* ---- AVX-512 BF16 ---- */

#define T512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,fma")))
#define INLINE512 static inline __attribute__((always_inline, target("avx512f,avx512bw,avx512vl,avx512bf16,fma")))

/* Rounds the rows of x to bf16 (nearest even) and pairs them: xp[r][p] holds
 * x[r][2p] in its low half and x[r][2p+1] (0 past d_in) in its high half. */
T512 static void pack_pairs(const float *x, size_t rows, size_t d_in, uint32_t *xp)
{
    size_t np = pairs_of(d_in);
    for (size_t r = 0; r < rows; r++) {
        const float *xr = x + r * d_in;
        uint32_t *o = xp + r * np;
        size_t p = 0;
        for (; 2 * p + 32 <= d_in; p += 16) {
            __m512 a = _mm512_loadu_ps(xr + 2 * p), b = _mm512_loadu_ps(xr + 2 * p + 16);
            /* cvtne2ps_pbh(b, a): a's 16 values in the low 256 bits, b's in the
             * high, so pairs (2p, 2p+1) land in one 32-bit lane each. */
            __m512bh h = _mm512_cvtne2ps_pbh(b, a);
            _mm512_storeu_si512(o + p, (__m512i)h);
        }
        for (; p < np; p++) {
            uint32_t lo = sae_f32_to_bf16(xr[2 * p]);
            uint32_t hi = 2 * p + 1 < d_in ? sae_f32_to_bf16(xr[2 * p + 1]) : 0;
            o[p] = lo | hi << 16;
        }
    }
}

/* Where each of the 32 columns of a tile ended up after the interleave:
 * column 8i+t (t < 4) is lane 4i+t of the "lo" accumulator, column 8i+4+t
 * lane 4i+t of the "hi" one (vpermt2ps numbers hi's lanes 16..31). */
static const int32_t unperm[32] = {0,  1,  2,  3,  16, 17, 18, 19, 4,  5,  6,  7,  20, 21, 22, 23,
                                   8,  9,  10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31};

/* Interleaves rows 2p and 2p+1 of one 32-column tile of W into the pairs
 * vdpbf16ps multiplies (lo: columns 8i..8i+3 of each 128-bit lane, hi:
 * 8i+4..8i+7); cm masks the columns that exist, a missing row 2p+1 is 0. */
INLINE512 void bf16_pair_rows(const uint16_t *w0, size_t ldw, bool pair, __mmask32 cm,
                              __m512bh *lo, __m512bh *hi)
{
    __m512i a = _mm512_maskz_loadu_epi16(cm, w0);
    __m512i b = pair ? _mm512_maskz_loadu_epi16(cm, w0 + ldw) : _mm512_setzero_si512();
    *lo = (__m512bh)_mm512_unpacklo_epi16(a, b);
    *hi = (__m512bh)_mm512_unpackhi_epi16(a, b);
}

/* Stores the two accumulators of one row of a tile as its 32 columns in
 * order (the first n of them). */
INLINE512 void bf16_store(__m512 lo, __m512 hi, __mmask32 cm, float *o)
{
    __m512i i0 = _mm512_loadu_si512(unperm), i1 = _mm512_loadu_si512(unperm + 16);
    _mm512_mask_storeu_ps(o, (__mmask16)cm, _mm512_permutex2var_ps(lo, i0, hi));
    _mm512_mask_storeu_ps(o + 16, (__mmask16)(cm >> 16), _mm512_permutex2var_ps(lo, i1, hi));
}

/* R rows of one 64-column tile (two 32-column halves) from its packed panel
 * (np pairs of lo0, hi0, lo1, hi1: 64 bf16 each, contiguous): 4R
 * accumulators, the four pair vectors shared by the R rows, so a pair step
 * is 4 vector loads and R broadcasts for 4R vdpbf16ps. R is a constant at
 * every call, so they stay in registers. cm[h] masks the columns of half h
 * that exist. */
INLINE512 void bf16_tile(const __m512bh *panel, size_t np, const uint32_t *xp, size_t ldx,
                         const int R, const __mmask32 *cm, float *y, size_t ldy)
{
    __m512 acc[6][4];
    _Pragma("GCC unroll 6")
    for (int r = 0; r < R; r++)
        acc[r][0] = acc[r][1] = acc[r][2] = acc[r][3] = _mm512_setzero_ps();
    for (size_t p = 0; p < np; p++) {
        __m512bh w0 = panel[4 * p], w1 = panel[4 * p + 1], w2 = panel[4 * p + 2],
                 w3 = panel[4 * p + 3];
        _Pragma("GCC unroll 6")
        for (int r = 0; r < R; r++) {
            __m512bh xb = (__m512bh)_mm512_set1_epi32((int)xp[r * ldx + p]);
            acc[r][0] = _mm512_dpbf16_ps(acc[r][0], w0, xb);
            acc[r][1] = _mm512_dpbf16_ps(acc[r][1], w1, xb);
            acc[r][2] = _mm512_dpbf16_ps(acc[r][2], w2, xb);
            acc[r][3] = _mm512_dpbf16_ps(acc[r][3], w3, xb);
        }
    }
    _Pragma("GCC unroll 6")
    for (int r = 0; r < R; r++) {
        bf16_store(acc[r][0], acc[r][1], cm[0], y + r * ldy);
        if (cm[1])
            bf16_store(acc[r][2], acc[r][3], cm[1], y + r * ldy + 32);
    }
}

/* The mask of the first n (<= 32) of 32 lanes. */
static inline __mmask32 first_lanes(size_t n)
{
    return n >= 32 ? (__mmask32)~0u : (__mmask32)((1u << n) - 1);
}

/* Columns per chunk of the one-row product: its accumulators (2 vectors a
 * tile) stay in L1 while the weight rows stream through. */
#define GEMV_COLS 8192

/* One row, columns [j0, j1), W (d_in, d_sae). Reading W once is the whole
 * cost, so it is read in order: for each pair of weight rows, GEMV_COLS
 * contiguous columns of both, accumulating into acc (in L1), which the
 * hardware prefetcher follows; a tile at a time would jump a page per row. */
T512 static void bf16_gemv(const half_job *jb)
{
    __m512 acc[GEMV_COLS / 16];
    size_t ld = jb->d_sae, np = pairs_of(jb->d_in);
    for (size_t j = jb->j0; j < jb->j1; j += GEMV_COLS) {
        size_t n = jb->j1 - j < GEMV_COLS ? jb->j1 - j : GEMV_COLS, nt = (n + 31) / 32;
        for (size_t t = 0; t < 2 * nt; t++)
            acc[t] = _mm512_setzero_ps();
        size_t p = 0;
        /* Four pairs (eight weight rows, eight streams) a pass: a quarter
         * of the accumulator traffic, and enough reads in flight to keep
         * the memory busy (one pair a pass reaches half the bandwidth). */
        for (; p + 4 <= np && 2 * p + 7 < jb->d_in; p += 4) {
            const uint16_t *w0 = jb->w + 2 * p * ld + j;
            __m512bh xq[4];
            for (int q = 0; q < 4; q++)
                xq[q] = (__m512bh)_mm512_set1_epi32((int)jb->xp[p + q]);
            for (size_t t = 0; t < nt; t++) {
                __mmask32 cm = first_lanes(n - 32 * t);
                __m512 a0 = acc[2 * t], a1 = acc[2 * t + 1];
                _Pragma("GCC unroll 4")
                for (int q = 0; q < 4; q++) {
                    __m512bh lo, hi;
                    bf16_pair_rows(w0 + 2 * q * ld + 32 * t, ld, true, cm, &lo, &hi);
                    a0 = _mm512_dpbf16_ps(a0, lo, xq[q]);
                    a1 = _mm512_dpbf16_ps(a1, hi, xq[q]);
                }
                acc[2 * t] = a0;
                acc[2 * t + 1] = a1;
            }
        }
        for (; p < np; p++) {
            const uint16_t *w0 = jb->w + 2 * p * ld + j;
            bool pair = 2 * p + 1 < jb->d_in;
            __m512bh xa = (__m512bh)_mm512_set1_epi32((int)jb->xp[p]);
            for (size_t t = 0; t < nt; t++) {
                __m512bh lo, hi;
                bf16_pair_rows(w0 + 32 * t, ld, pair, first_lanes(n - 32 * t), &lo, &hi);
                acc[2 * t] = _mm512_dpbf16_ps(acc[2 * t], lo, xa);
                acc[2 * t + 1] = _mm512_dpbf16_ps(acc[2 * t + 1], hi, xa);
            }
        }
        for (size_t t = 0; t < nt; t++)
            bf16_store(acc[2 * t], acc[2 * t + 1], first_lanes(n - 32 * t), jb->y + j + 32 * t);
    }
}

/* Columns [j0, j1) of every row, W (d_in, d_sae). One row: bf16_gemv. More:
 * per 64-column tile, its pairs are interleaved once into a contiguous
 * panel (the rows of W are a page apart, the panel is read sequentially
 * from L1/L2 by every row tile), then rows go 6 at a time (24 accumulators),
 * the tail rows in one smaller tile. Six rows by 64 columns rather than
 * twelve by 32: 10 loads per 24 vdpbf16ps instead of 14 (bench/gemmlibs
 * measured it). Without memory for the panel, the rows go one by one
 * through bf16_gemv. */
T512 static void bf16_columns(const half_job *jb)
{
    if (jb->rows == 1) {
        bf16_gemv(jb);
        return;
    }
    size_t ld = jb->d_sae, np = pairs_of(jb->d_in);
    __m512bh *panel = aligned_alloc(64, np * 4 * sizeof *panel);
    if (!panel) {
        half_job one = *jb;
        one.rows = 1;
        for (size_t r = 0; r < jb->rows; r++, one.xp += np, one.y += ld)
            bf16_gemv(&one);
        return;
    }
    for (size_t j = jb->j0; j < jb->j1; j += 64) {
        /* the second half may be partial or absent (then all zeros) */
        __mmask32 cm[2] = {first_lanes(jb->j1 - j),
                           jb->j1 - j > 32 ? first_lanes(jb->j1 - j - 32) : 0};
        for (size_t p = 0; p < np; p++) {
            const uint16_t *w0 = jb->w + 2 * p * ld + j;
            bool pair = 2 * p + 1 < jb->d_in;
            bf16_pair_rows(w0, ld, pair, cm[0], &panel[4 * p], &panel[4 * p + 1]);
            if (cm[1])
                bf16_pair_rows(w0 + 32, ld, pair, cm[1], &panel[4 * p + 2], &panel[4 * p + 3]);
            else
                panel[4 * p + 2] = panel[4 * p + 3] = (__m512bh)_mm512_setzero_si512();
        }
        size_t r = 0;
        for (; r + 6 <= jb->rows; r += 6)
            bf16_tile(panel, np, jb->xp + r * np, np, 6, cm, jb->y + r * ld + j, ld);
        const uint32_t *xr = jb->xp + r * np;
        float *yr = jb->y + r * ld + j;
        switch (jb->rows - r) {
        case 5: bf16_tile(panel, np, xr, np, 5, cm, yr, ld); break;
        case 4: bf16_tile(panel, np, xr, np, 4, cm, yr, ld); break;
        case 3: bf16_tile(panel, np, xr, np, 3, cm, yr, ld); break;
        case 2: bf16_tile(panel, np, xr, np, 2, cm, yr, ld); break;
        case 1: bf16_tile(panel, np, xr, np, 1, cm, yr, ld); break;
        default: break;
        }
    }
    free(panel);
}

/* R rows × F features of W stored (d_sae, d_in): dot products of the packed
 * input with each feature's contiguous weights, 32 bf16 per step. */
INLINE512 void bf16_dot_tile(const uint16_t *w, size_t d_in, const uint32_t *xp, size_t ldx,
                             const int R, const int F, float *y, size_t ldy)
{
    __m512 acc[4][4];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 8")
        for (int f = 0; f < F; f++)
            acc[r][f] = _mm512_setzero_ps();
    for (size_t k = 0; k < d_in; k += 32) {
        size_t left = d_in - k;
        __mmask32 mw = first_lanes(left);
        __mmask16 mx = (__mmask16)(left >= 32 ? 0xffffu : (1u << ((left + 1) / 2)) - 1);
        __m512bh wv[4], xv[4];
        _Pragma("GCC unroll 8")
        for (int f = 0; f < F; f++)
            wv[f] = (__m512bh)_mm512_maskz_loadu_epi16(mw, w + f * d_in + k);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++)
            xv[r] = (__m512bh)_mm512_maskz_loadu_epi32(mx, xp + r * ldx + k / 2);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++)
            _Pragma("GCC unroll 8")
            for (int f = 0; f < F; f++)
                acc[r][f] = _mm512_dpbf16_ps(acc[r][f], wv[f], xv[r]);
    }
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; r++)
        _Pragma("GCC unroll 8")
        for (int f = 0; f < F; f++)
            y[r * ldy + f] = _mm512_reduce_add_ps(acc[r][f]);
}

/* Columns [j0, j1) of every row, W (d_sae, d_in). */
T512 static void bf16_dots(const half_job *jb)
{
    size_t np = pairs_of(jb->d_in), ld = jb->d_sae, d_in = jb->d_in;
    for (size_t j = jb->j0; j < jb->j1; j += 4) {
        const uint16_t *wj = jb->w + j * d_in;
        size_t nf = jb->j1 - j < 4 ? jb->j1 - j : 4;
        for (size_t r = 0; r < jb->rows; r += 4) {
            size_t nr = jb->rows - r < 4 ? jb->rows - r : 4;
            const uint32_t *xr = jb->xp + r * np;
            float *yr = jb->y + r * ld + j;
            if (nr == 4 && nf == 4)
                bf16_dot_tile(wj, d_in, xr, np, 4, 4, yr, ld);
            else
                _Pragma("GCC unroll 8")
                for (size_t a = 0; a < nr; a++)
                    _Pragma("GCC unroll 8")
                    for (size_t f = 0; f < nf; f++)
                        bf16_dot_tile(wj + f * d_in, d_in, xr + a * np, np, 1, 1, yr + a * ld + f,
                                      ld);
        }
    }
}

/* ---- AVX2: widen to F32, FMA ---- */

#define INLINE2 static inline __attribute__((always_inline, target("avx2,fma,f16c")))
#define T2 __attribute__((target("avx2,fma,f16c")))

/* Eight 16-bit weights of dtype dt widened exactly to F32. */
INLINE2 __m256 widen8(sae_dtype dt, const uint16_t *p)
{
    __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (dt == SAE_DT_F16)
        return _mm256_cvtph_ps(h);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

/* R rows × 16 columns, W (d_in, d_sae): per weight row, 16 weights widened
 * once and used by the R rows. */
INLINE2 void avx2_tile(sae_dtype dt, const uint16_t *w, size_t ldw, size_t d_in, const float *x,
                       size_t ldx, const int R, float *y, size_t ldy)
{
    __m256 acc[6][2];
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; r++)
        acc[r][0] = acc[r][1] = _mm256_setzero_ps();
    for (size_t k = 0; k < d_in; k++) {
        const uint16_t *wk = w + k * ldw;
        __m256 w0 = widen8(dt, wk), w1 = widen8(dt, wk + 8);
        _Pragma("GCC unroll 8")
        for (int r = 0; r < R; r++) {
            __m256 xb = _mm256_broadcast_ss(x + r * ldx + k);
            acc[r][0] = _mm256_fmadd_ps(xb, w0, acc[r][0]);
            acc[r][1] = _mm256_fmadd_ps(xb, w1, acc[r][1]);
        }
    }
    _Pragma("GCC unroll 8")
    for (int r = 0; r < R; r++) {
        _mm256_storeu_ps(y + r * ldy, acc[r][0]);
        _mm256_storeu_ps(y + r * ldy + 8, acc[r][1]);
    }
}

/* Columns [j0, j1) of every row, W (d_in, d_sae), for one dtype: 16-column
 * tiles of 6 rows, the last < 16 columns in plain C. */
INLINE2 void avx2_columns_dt(const half_job *jb, sae_dtype dt)
{
    size_t ld = jb->d_sae, d_in = jb->d_in, j = jb->j0;
    for (; j + 16 <= jb->j1; j += 16) {
        size_t r = 0;
        for (; r + 6 <= jb->rows; r += 6)
            avx2_tile(dt, jb->w + j, ld, d_in, jb->x + r * d_in, d_in, 6, jb->y + r * ld + j, ld);
        for (; r < jb->rows; r++)
            avx2_tile(dt, jb->w + j, ld, d_in, jb->x + r * d_in, d_in, 1, jb->y + r * ld + j, ld);
    }
    if (j < jb->j1)
        c_columns(jb, dt, j, jb->j1);
}

/* The sum of a vector's 8 lanes. */
INLINE2 float hsum8(__m256 v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* Columns [j0, j1) of every row, W (d_sae, d_in): 4 features × 3 rows of
 * dot products over 8 inputs a step; the last < 8 inputs in scalar. */
INLINE2 void avx2_dots_dt(const half_job *jb, sae_dtype dt)
{
    size_t ld = jb->d_sae, d_in = jb->d_in, k8 = d_in / 8 * 8;
    for (size_t j = jb->j0; j < jb->j1; j += 4) {
        size_t nf = jb->j1 - j < 4 ? jb->j1 - j : 4;
        for (size_t r = 0; r < jb->rows; r += 3) {
            size_t nr = jb->rows - r < 3 ? jb->rows - r : 3;
            __m256 acc[3][4];
            _Pragma("GCC unroll 8")
            for (size_t a = 0; a < 3; a++)
                _Pragma("GCC unroll 8")
                for (size_t f = 0; f < 4; f++)
                    acc[a][f] = _mm256_setzero_ps();
            for (size_t k = 0; k < k8; k += 8) {
                __m256 wv[4], xv[3];
                _Pragma("GCC unroll 8")
                for (size_t f = 0; f < 4; f++)
                    wv[f] = f < nf ? widen8(dt, jb->w + (j + f) * d_in + k) : _mm256_setzero_ps();
                _Pragma("GCC unroll 8")
                for (size_t a = 0; a < 3; a++)
                    xv[a] = a < nr ? _mm256_loadu_ps(jb->x + (r + a) * d_in + k)
                                   : _mm256_setzero_ps();
                _Pragma("GCC unroll 8")
                for (size_t a = 0; a < 3; a++)
                    _Pragma("GCC unroll 8")
                    for (size_t f = 0; f < 4; f++)
                        acc[a][f] = _mm256_fmadd_ps(xv[a], wv[f], acc[a][f]);
            }
            _Pragma("GCC unroll 8")
            for (size_t a = 0; a < nr; a++)
                _Pragma("GCC unroll 8")
                for (size_t f = 0; f < nf; f++) {
                    float s = hsum8(acc[a][f]);
                    const uint16_t *wj = jb->w + (j + f) * d_in;
                    for (size_t k = k8; k < d_in; k++)
                        s += jb->x[(r + a) * d_in + k] * widen1(dt, wj[k]);
                    jb->y[(r + a) * ld + j + f] = s;
                }
        }
    }
}

T2 static void avx2_run(const half_job *jb, sae_dtype dt)
{
    if (dt == SAE_DT_F16)
        jb->w_t ? avx2_dots_dt(jb, SAE_DT_F16) : avx2_columns_dt(jb, SAE_DT_F16);
    else
        jb->w_t ? avx2_dots_dt(jb, SAE_DT_BF16) : avx2_columns_dt(jb, SAE_DT_BF16);
}

#endif /* SAE_X86 */

/* The dtype kernel k reads. */
static sae_dtype kernel_dtype(sae_kernel k, sae_dtype c_dt)
{
    switch (k) {
    case SAE_KERNEL_AVX2_F16: return SAE_DT_F16;
    case SAE_KERNEL_AVX512_BF16:
    case SAE_KERNEL_AVX2_BF16: return SAE_DT_BF16;
    default: return c_dt;
    }
}

/* Runs one job (one thread's columns) on its kernel. */
static void job_run(const half_job *jb, sae_dtype dt)
{
#ifdef SAE_X86
    switch (jb->k) {
    case SAE_KERNEL_AVX512_BF16:
        jb->w_t ? bf16_dots(jb) : bf16_columns(jb);
        return;
    case SAE_KERNEL_AVX2_BF16:
    case SAE_KERNEL_AVX2_F16:
        avx2_run(jb, kernel_dtype(jb->k, dt));
        return;
    default:
        break;
    }
#endif
    c_columns(jb, dt, jb->j0, jb->j1);
}

/* A thread's job and the dtype for the plain C kernel. */
typedef struct half_thread {
    half_job job;
    sae_dtype dt;
    pthread_t tid;
} half_thread;

static void *half_thread_main(void *arg)
{
    half_thread *t = arg;
    job_run(&t->job, t->dt);
    return NULL;
}

/* Products smaller than this many multiply-adds are not worth a thread. */
#define HALF_THREAD_MIN_MACS ((size_t)1 << 22)
#define HALF_MAX_THREADS 64

void sae_gemm_half(sae_kernel k, sae_dtype dt, const uint16_t *w, bool w_t, size_t d_in,
                   size_t d_sae, const float *x, size_t rows, float *y, void *scratch,
                   int threads)
{
    sae_gemm_half_cols(k, dt, w, w_t, d_in, d_sae, x, rows, y, scratch, threads, 0, d_sae);
}

/* Why a column range has the full product's bits. Every kernel computes each
 * output column on its own, in an order that depends only on d_in: the
 * avx512-bf16 tiles and its one-row chunks sum the pairs of one column in
 * one lane (which lane, and which tile or chunk, does not change the sum);
 * the dot-product kernels (w_t) reduce each feature alone; plain C sums k in
 * order. The one exception is avx2's layout (d_in, d_sae): whole 16-column
 * tiles use FMA, the columns after the last whole tile plain C (a multiply
 * and an add, rounded twice). A range starting on a 16-column boundary, ending
 * on one or at d_sae, split over threads on 32-column boundaries from its
 * start, puts every column on the path the whole product takes: the range is
 * widened to SAE_HALF_COL_ALIGN (64, the avx512-bf16 panel, so its tiles are
 * the full product's too). Thread count and split only choose which thread
 * computes a column, never how. */
void sae_gemm_half_cols(sae_kernel k, sae_dtype dt, const uint16_t *w, bool w_t, size_t d_in,
                        size_t d_sae, const float *x, size_t rows, float *y, void *scratch,
                        int threads, size_t j0, size_t j1)
{
    size_t a = j0 - j0 % SAE_HALF_COL_ALIGN;
    size_t b = j1 + (SAE_HALF_COL_ALIGN - j1 % SAE_HALF_COL_ALIGN) % SAE_HALF_COL_ALIGN;
    if (b > d_sae)
        b = d_sae;
    half_job base = {.k = k, .w = w, .w_t = w_t, .d_in = d_in, .d_sae = d_sae, .x = x,
                     .rows = rows, .y = y, .j0 = a, .j1 = b};
    dt = kernel_dtype(k, dt);
#ifdef SAE_X86
    if (k == SAE_KERNEL_AVX512_BF16) {
        pack_pairs(x, rows, d_in, scratch);
        base.xp = scratch;
    }
#else
    (void)scratch;
#endif
    if (a >= b)
        return;
    if (threads > HALF_MAX_THREADS)
        threads = HALF_MAX_THREADS;
    size_t tiles = (b - a + 31) / 32;
    if ((size_t)threads > tiles)
        threads = (int)tiles;
    if (threads < 2 || rows * d_in * (b - a) < HALF_THREAD_MIN_MACS) {
        job_run(&base, dt);
        return;
    }
    /* Column ranges in whole 32-column tiles from a; the first is this
     * thread's. */
    half_thread t[HALF_MAX_THREADS];
    for (int i = 0; i < threads; i++) {
        t[i].job = base;
        t[i].dt = dt;
        t[i].job.j0 = a + tiles * (size_t)i / (size_t)threads * 32;
        size_t e = a + tiles * (size_t)(i + 1) / (size_t)threads * 32;
        t[i].job.j1 = e < b ? e : b;
    }
    int started = 1; /* threads running a range, this one included */
    while (started < threads &&
           pthread_create(&t[started].tid, NULL, half_thread_main, &t[started]) == 0)
        started++;
    /* The ranges of threads that could not start are done here. */
    for (int i = started; i < threads; i++)
        job_run(&t[i].job, dt);
    job_run(&t[0].job, dt);
    for (int i = 1; i < started; i++)
        pthread_join(t[i].tid, NULL);
}

void sae_half_widen(sae_dtype dt, const uint16_t *w, float *out, size_t n)
{
    if (dt == SAE_DT_BF16)
        for (size_t j = 0; j < n; j++)
            out[j] = sae_bf16_to_f32(w[j]);
    else
        sae_convert_to_f32(dt, w, n, out);
}

void sae_half_axpy(sae_dtype dt, const uint16_t *w, float c, float *out, size_t n)
{
    if (dt == SAE_DT_BF16) {
        for (size_t j = 0; j < n; j++)
            out[j] += c * sae_bf16_to_f32(w[j]);
        return;
    }
    float buf[256];
    for (size_t a = 0; a < n; a += 256) {
        size_t m = n - a < 256 ? n - a : 256;
        sae_convert_to_f32(dt, w + a, m, buf);
        for (size_t j = 0; j < m; j++)
            out[a + j] += c * buf[j];
    }
}
