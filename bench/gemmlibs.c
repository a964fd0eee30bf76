/* gemmlibs.c: the encoder product y = x · W_enc on the libraries that could
 * run it, in one run, for docs/PERFORMANCE.md ("BF16: oneDNN against
 * core/sae/kernel.c"). Built only when oneDNN (libdnnl-dev) is found; neither
 * sae nor saed links it.
 *
 *   gemmlibs [--d-in N] [--d-sae N] [--batch N ...] [--seconds S] [--threads N]
 *
 * W (d_in, d_sae) row-major, as SAELens stores W_enc, uniform random with
 * unit expected column norm; x standard normal. Contenders, each on one
 * thread by default (OpenBLAS, oneDNN's OpenMP and the kernel alike):
 *   openblas-f32        cblas_sgemv (1 row) / cblas_sgemm on F32 W
 *   onednn-f32          oneDNN matmul f32 x f32 -> f32 on the same W, plain
 *                       layout (weights used in place, as the mapping is)
 *   onednn-f32-packed   the same with weights in oneDNN's own layout
 *                       (reordered once, untimed: a second copy of W)
 *   avx512-bf16         sae_gemm_half on W rounded to bf16 (kernel.c)
 *   onednn-bf16         oneDNN matmul bf16 x bf16 -> f32, plain layout; the
 *                       F32 input is rounded to bf16 inside the timing, as
 *                       the kernel does it inside its own
 *   onednn-bf16-packed  the same with weights in oneDNN's layout
 * Rounds alternate the contenders so all see the same machine; per
 * contender: median wall seconds per call, rows/s from it, and rows per
 * CPU-second of the process over all its calls. Each result is checked,
 * on up to 16 rows and every column, against a double-precision reference on
 * its own weights (F32 W, or the bf16 W widened) within the bound of
 * kernel.h: (e + γ_n(1 + e))·S_j + n·2⁻¹²⁶·(1 + max|W|), e = 2⁻⁸ when the
 * input was rounded to bf16, else 0. The largest error / bound is printed
 * ("ok" when ≤ 1). */
#include <cblas.h>
#include <math.h>
#include <oneapi/dnnl/dnnl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "io/clock.h"
#include "io/dtype.h"
#include "io/rng.h"
#include "sae/encode.h"
#include "sae/kernel.h"

#define MAX_BATCHES 8
#define MAX_ROUNDS 4000
#define MIN_ROUNDS 3
#define CHECK_ROWS 16

enum { C_BLAS, C_DNNL_F32, C_DNNL_F32_P, C_BF16, C_DNNL_BF16, C_DNNL_BF16_P, N_CONT };
static const char *const cont_name[N_CONT] = {"openblas-f32", "onednn-f32", "onednn-f32-packed",
                                              "avx512-bf16", "onednn-bf16",
                                              "onednn-bf16-packed"};

/* Stops with a message when a oneDNN call fails. */
#define DN(call)                                                                                 \
    do {                                                                                         \
        dnnl_status_t s_ = (call);                                                               \
        if (s_ != dnnl_success) {                                                                \
            fprintf(stderr, "gemmlibs: %s failed (%d)\n", #call, (int)s_);                      \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

/* Process CPU seconds (all threads, oneDNN's OpenMP ones included). */
static double cpu_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Malloc or stop. 64-byte aligned. */
static void *xalloc(size_t n)
{
    void *p = aligned_alloc(64, (n + 63) / 64 * 64);
    if (!p) {
        fprintf(stderr, "gemmlibs: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return p;
}

/* One oneDNN matmul of (rows, d_in) x (d_in, d_sae) -> f32 in data type dt,
 * weights plain (row-major) or in the layout oneDNN prefers (packed, then
 * reordered once from w here). Owns its primitive and memories. */
typedef struct dn_mm {
    dnnl_primitive_t mm;
    dnnl_memory_t src, wei, dst;
    void *wei_packed; /* owned when packed */
    char impl[96];    /* oneDNN's name for the implementation it chose */
} dn_mm;

/* Builds m over the caller's src (rows, d_in), w (d_in, d_sae) and dst
 * (rows, d_sae) buffers, which it borrows. */
static void dn_mm_init(dn_mm *m, dnnl_engine_t eng, dnnl_stream_t st, dnnl_data_type_t dt,
                       bool packed, size_t rows, size_t d_in, size_t d_sae, void *src, void *w,
                       float *dst)
{
    memset(m, 0, sizeof *m);
    dnnl_dims_t sd = {(dnnl_dim_t)rows, (dnnl_dim_t)d_in}, wd = {(dnnl_dim_t)d_in, (dnnl_dim_t)d_sae},
                dd = {(dnnl_dim_t)rows, (dnnl_dim_t)d_sae};
    dnnl_memory_desc_t smd, wmd, wplain, dmd;
    DN(dnnl_memory_desc_init_by_tag(&smd, 2, sd, dt, dnnl_ab));
    DN(dnnl_memory_desc_init_by_tag(&wmd, 2, wd, dt, packed ? dnnl_format_tag_any : dnnl_ab));
    DN(dnnl_memory_desc_init_by_tag(&wplain, 2, wd, dt, dnnl_ab));
    DN(dnnl_memory_desc_init_by_tag(&dmd, 2, dd, dnnl_f32, dnnl_ab));
    dnnl_matmul_desc_t md;
    DN(dnnl_matmul_desc_init(&md, &smd, &wmd, NULL, &dmd));
    dnnl_primitive_desc_t pd;
    DN(dnnl_primitive_desc_create(&pd, &md, NULL, eng, NULL));
    const char *impl = NULL;
    DN(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
    snprintf(m->impl, sizeof m->impl, "%s", impl ? impl : "?");
    const dnnl_memory_desc_t *w_want = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    DN(dnnl_memory_create(&m->src, &smd, eng, src));
    DN(dnnl_memory_create(&m->dst, &dmd, eng, dst));
    if (packed) {
        m->wei_packed = xalloc(dnnl_memory_desc_get_size(w_want));
        DN(dnnl_memory_create(&m->wei, w_want, eng, m->wei_packed));
        dnnl_memory_t plain;
        DN(dnnl_memory_create(&plain, &wplain, eng, w));
        dnnl_primitive_desc_t rpd;
        DN(dnnl_reorder_primitive_desc_create(&rpd, &wplain, eng, w_want, eng, NULL));
        dnnl_primitive_t r;
        DN(dnnl_primitive_create(&r, rpd));
        dnnl_exec_arg_t a[2] = {{DNNL_ARG_FROM, plain}, {DNNL_ARG_TO, m->wei}};
        DN(dnnl_primitive_execute(r, st, 2, a));
        DN(dnnl_stream_wait(st));
        dnnl_primitive_destroy(r);
        dnnl_primitive_desc_destroy(rpd);
        dnnl_memory_destroy(plain);
    } else {
        DN(dnnl_memory_create(&m->wei, &wplain, eng, w));
    }
    DN(dnnl_primitive_create(&m->mm, pd));
    dnnl_primitive_desc_destroy(pd);
}

/* Runs m once and waits for it. */
static void dn_mm_run(const dn_mm *m, dnnl_stream_t st)
{
    dnnl_exec_arg_t a[3] = {{DNNL_ARG_SRC, m->src}, {DNNL_ARG_WEIGHTS, m->wei},
                            {DNNL_ARG_DST, m->dst}};
    DN(dnnl_primitive_execute(m->mm, st, 3, a));
    DN(dnnl_stream_wait(st));
}

/* Frees what m owns (the caller's buffers stay). */
static void dn_mm_free(dn_mm *m)
{
    dnnl_primitive_destroy(m->mm);
    dnnl_memory_destroy(m->src);
    dnnl_memory_destroy(m->wei);
    dnnl_memory_destroy(m->dst);
    free(m->wei_packed);
}

/* The largest |y − ref| / bound over the first min(rows, CHECK_ROWS) rows,
 * ref and the bound in double from x (F32) and w (F32 values: the weights
 * the contender ran on); e is the input rounding (2⁻⁸ or 0). */
static double check(const float *y, const float *x, const float *w, size_t rows, size_t d_in,
                    size_t d_sae, double e, double max_w, double *ref, double *s)
{
    size_t n = rows < CHECK_ROWS ? rows : CHECK_ROWS;
    double u = 0x1.0p-24, gam = (double)d_in * u / (1 - (double)d_in * u), worst = 0;
    for (size_t r = 0; r < n; r++) {
        memset(ref, 0, d_sae * sizeof *ref);
        memset(s, 0, d_sae * sizeof *s);
        for (size_t k = 0; k < d_in; k++) {
            double xk = x[r * d_in + k];
            const float *wk = w + k * d_sae;
            for (size_t j = 0; j < d_sae; j++) {
                ref[j] += xk * wk[j];
                s[j] += fabs(xk * wk[j]);
            }
        }
        for (size_t j = 0; j < d_sae; j++) {
            double b = (e + gam * (1 + e)) * s[j] + (double)d_in * 0x1.0p-126 * (1 + max_w);
            double q = fabs((double)y[r * d_sae + j] - ref[j]) / b;
            worst = q > worst ? q : worst;
        }
    }
    return worst;
}

/* qsort's order of doubles, ascending. */
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sets OMP_NUM_THREADS to `threads` and runs this program again when it is
 * not already so: libgomp reads it once, when it is loaded. */
static void pin_omp(int threads, char **argv)
{
    char want[16];
    snprintf(want, sizeof want, "%d", threads);
    const char *have = getenv("OMP_NUM_THREADS");
    if (have && !strcmp(have, want))
        return;
    setenv("OMP_NUM_THREADS", want, 1);
    execv("/proc/self/exe", argv);
    perror("gemmlibs: execv");
    exit(1);
}

/* Reads the flags, makes W and x, then per batch size builds the oneDNN
 * primitives, runs the rounds and prints one line per contender. */
int main(int argc, char **argv)
{
    size_t d_in = 768, d_sae = 24576, batches[MAX_BATCHES], n_batches = 0;
    double seconds = 2;
    int threads = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v) {
            fprintf(stderr, "usage: gemmlibs [--d-in N] [--d-sae N] [--batch N ...] "
                            "[--seconds S] [--threads N]\n");
            return 2;
        }
        if (!strcmp(a, "--d-in"))
            d_in = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--d-sae"))
            d_sae = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--batch") && n_batches < MAX_BATCHES)
            batches[n_batches++] = strtoul(v, NULL, 10);
        else if (!strcmp(a, "--seconds"))
            seconds = strtod(v, NULL);
        else if (!strcmp(a, "--threads"))
            threads = atoi(v);
        else {
            fprintf(stderr, "gemmlibs: unknown option '%s'\n", a);
            return 2;
        }
        i++;
    }
    if (!n_batches) {
        batches[0] = 1, batches[1] = 256;
        n_batches = 2;
    }
    if (!d_in || !d_sae || threads < 1 || seconds <= 0) {
        fprintf(stderr, "gemmlibs: bad shape, thread count or seconds\n");
        return 2;
    }
    pin_omp(threads, argv);
    sae_set_blas_threads(threads);
    sae_kernel kern = sae_kernel_pick(SAE_DT_BF16);
    if (kern != SAE_KERNEL_AVX512_BF16)
        fprintf(stderr, "gemmlibs: this CPU runs %s, not avx512-bf16; timing that instead\n",
                sae_kernel_name(kern));

    size_t max_b = 0;
    for (size_t i = 0; i < n_batches; i++)
        max_b = batches[i] > max_b ? batches[i] : max_b;
    size_t wn = d_in * d_sae;
    float *w = xalloc(wn * 4), *w16f = xalloc(wn * 4);
    uint16_t *w16 = xalloc(wn * 2);
    float *x = xalloc(max_b * d_in * 4), *y[N_CONT];
    uint16_t *x16 = xalloc(max_b * d_in * 2);
    double *ref = xalloc(d_sae * 8), *sabs = xalloc(d_sae * 8);
    for (int c = 0; c < N_CONT; c++)
        y[c] = xalloc(max_b * d_sae * 4);
    sae_rng r;
    sae_rng_seed(&r, 17);
    double amp = sqrt(3.0 / (double)d_in), max_w = 0;
    for (size_t i = 0; i < wn; i++) {
        w[i] = (float)(((double)(sae_rng_next(&r) >> 11) * 0x1.0p-53 * 2.0 - 1.0) * amp);
        w16[i] = sae_f32_to_bf16(w[i]);
        max_w = fmax(max_w, fabs(w[i]));
    }
    sae_half_widen(SAE_DT_BF16, w16, w16f, wn);
    for (size_t i = 0; i < max_b * d_in; i++)
        x[i] = (float)sae_rng_normal(&r);

    dnnl_engine_t eng;
    dnnl_stream_t st;
    DN(dnnl_engine_create(&eng, dnnl_cpu, 0));
    DN(dnnl_stream_create(&st, eng, dnnl_stream_default_flags));
    const dnnl_version_t *ver = dnnl_version();
    printf("gemmlibs: d_in %zu x d_sae %zu, %d thread(s); oneDNN %d.%d.%d (ISA %d), "
           "bf16 kernel %s, OPENBLAS_CORETYPE=%s\n",
           d_in, d_sae, threads, ver->major, ver->minor, ver->patch,
           (int)dnnl_get_effective_cpu_isa(), sae_kernel_name(kern),
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "(unset)");

    for (size_t bi = 0; bi < n_batches; bi++) {
        size_t rows = batches[bi];
        dn_mm mm[N_CONT];
        dn_mm_init(&mm[C_DNNL_F32], eng, st, dnnl_f32, false, rows, d_in, d_sae, x, w,
                   y[C_DNNL_F32]);
        dn_mm_init(&mm[C_DNNL_F32_P], eng, st, dnnl_f32, true, rows, d_in, d_sae, x, w,
                   y[C_DNNL_F32_P]);
        dn_mm_init(&mm[C_DNNL_BF16], eng, st, dnnl_bf16, false, rows, d_in, d_sae, x16, w16,
                   y[C_DNNL_BF16]);
        dn_mm_init(&mm[C_DNNL_BF16_P], eng, st, dnnl_bf16, true, rows, d_in, d_sae, x16, w16,
                   y[C_DNNL_BF16_P]);
        void *scratch = xalloc(sae_gemm_half_scratch(kern, rows, d_in) + 64);
        static double wall[N_CONT][MAX_ROUNDS];
        double cpu[N_CONT] = {0}, t_end = sae_clock_s() + seconds;
        size_t rounds = 0;
        while (rounds < MAX_ROUNDS && (rounds < MIN_ROUNDS || sae_clock_s() < t_end)) {
            for (int c = 0; c < N_CONT; c++) {
                double c0 = cpu_s(), t0 = sae_clock_s();
                switch (c) {
                case C_BLAS:
                    if (rows == 1)
                        cblas_sgemv(CblasRowMajor, CblasTrans, (int)d_in, (int)d_sae, 1.0f, w,
                                    (int)d_sae, x, 1, 0.0f, y[c], 1);
                    else
                        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows,
                                    (int)d_sae, (int)d_in, 1.0f, x, (int)d_in, w, (int)d_sae,
                                    0.0f, y[c], (int)d_sae);
                    break;
                case C_BF16:
                    sae_gemm_half(kern, SAE_DT_BF16, w16, false, d_in, d_sae, x, rows, y[c],
                                  scratch, threads);
                    break;
                case C_DNNL_BF16:
                case C_DNNL_BF16_P:
                    for (size_t i = 0; i < rows * d_in; i++)
                        x16[i] = sae_f32_to_bf16(x[i]);
                    dn_mm_run(&mm[c], st);
                    break;
                default:
                    dn_mm_run(&mm[c], st);
                }
                wall[c][rounds] = sae_clock_s() - t0;
                cpu[c] += cpu_s() - c0;
            }
            rounds++;
        }
        printf("\nbatch %zu (%zu rounds)\n%-20s %12s %14s %10s %10s  %s\n", rows, rounds,
               "contender", "rows/s wall", "rows/CPU-s", "x blas", "err/bound", "oneDNN impl");
        double base_wall = 0, base_cpu = 0;
        for (int c = 0; c < N_CONT; c++) {
            qsort(wall[c], rounds, sizeof(double), cmp_double);
            double med = wall[c][rounds / 2], rw = (double)rows / med,
                   rc = (double)(rows * rounds) / cpu[c];
            if (c == C_BLAS)
                base_wall = rw, base_cpu = rc;
            bool bf = c >= C_BF16;
            double e = (c == C_DNNL_BF16 || c == C_DNNL_BF16_P ||
                        sae_kernel_input_eps(kern) > 0) && bf ? 0x1.0p-8 : 0;
            double q = check(y[c], x, bf ? w16f : w, rows, d_in, d_sae, e, max_w, ref, sabs);
            printf("%-20s %12.0f %14.0f %5.2f/%-4.2f %7.3g %s  %s\n", cont_name[c], rw, rc,
                   rw / base_wall, rc / base_cpu, q, q <= 1 ? "ok" : "OVER",
                   c == C_BLAS || c == C_BF16 ? "" : mm[c].impl);
        }
        fflush(stdout);
        free(scratch);
        for (int c = 0; c < N_CONT; c++)
            if (c != C_BLAS && c != C_BF16)
                dn_mm_free(&mm[c]);
    }
    dnnl_stream_destroy(st);
    dnnl_engine_destroy(eng);
    return 0;
}
