/* wide.c: the figures of docs/PERFORMANCE.md's "The widest SAEs", for SAEs
 * too wide for `sae bench`'s random F32 model (it holds W_enc and W_dec in
 * F32: 19 GB at 1M features).
 *   wide encode D_IN D_SAE [BATCH]   BF16 weights (one buffer serves as W_enc and
 *       W_dec), topk (k 64) and jumprelu (about 64 firing): sae_encode at
 *       batch 1 and BATCH (256) against cblas_sgemv/sgemm of a column slice of the
 *       same shape in F32, scaled to d_sae (GEMM time is linear in columns).
 *   wide model D_IN D_SAE DIR [L0]   writes DIR, a SAELens folder of a BF16
 *       JumpReLU SAE (W_enc and W_dec uniform with variance 1/d_in, so a
 *       standard-normal row's pre-activations are about N(0, 1); b_enc and
 *       b_dec zero; the threshold P(N(0, 1) > t) = L0/d_sae, L0 64 unless
 *       given) a chunk at a time, for bench/wide.sh: a 1M-feature model
 *       without 19 GB of F32 in memory (mkfixture draws it all in F32).
 *   wide neighbours D_IN D_SAE   clustered rows (decoder-like: each row a
 *       random centre of D_SAE/32 plus noise of the same norm): approximate
 *       neighbours with recall@10 on the 1000-feature sample, and the exact
 *       sample's time scaled to a full exact build.
 * Not a test: built on demand (ninja -C build tests/perf/wide). */
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fixture.h"
#include "index/indexer.h"
#include "io/clock.h"
#include "io/rng.h"
#include "sae/encode.h"
#include "sae/model.h"

/* F32 to BF16, rounding to nearest even. */
static uint16_t to_bf16(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}

/* Seconds for one call of sae_encode on n rows (the best of reps). */
static double time_encode(const sae_model *m, sae_workspace *ws, const float *x, size_t n,
                          int reps, size_t *nnz)
{
    double best = INFINITY;
    sae_sparse out = {0};
    sae_error err;
    for (int r = 0; r < reps; r++) {
        sae_sparse_reset(&out);
        double t0 = sae_clock_s();
        if (sae_encode(m, ws, x, n, NULL, &out, NULL, NULL, &err)) {
            fprintf(stderr, "wide: %s\n", err.msg);
            exit(1);
        }
        double t = sae_clock_s() - t0;
        best = t < best ? t : best;
    }
    *nnz = out.nnz;
    sae_sparse_free(&out);
    return best;
}

/* Seconds for the F32 GEMM of n rows against d_in x cols (best of reps). */
static double time_gemm(const float *w, const float *x, float *y, size_t d_in, size_t cols,
                        size_t n, int reps)
{
    double best = INFINITY;
    for (int r = 0; r < reps; r++) {
        double t0 = sae_clock_s();
        if (n == 1)
            cblas_sgemv(CblasRowMajor, CblasTrans, (int)d_in, (int)cols, 1.0f, w, (int)cols, x, 1,
                        0.0f, y, 1);
        else
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)n, (int)cols, (int)d_in,
                        1.0f, x, (int)d_in, w, (int)cols, 0.0f, y, (int)cols);
        double t = sae_clock_s() - t0;
        best = t < best ? t : best;
    }
    return best;
}

/* The encode figures (see the top of the file). */
static int bench_encode(size_t d_in, size_t d_sae, size_t batch)
{
    const size_t slice = d_sae < 131072 ? d_sae : 131072;
    sae_rng r;
    sae_rng_seed(&r, 19);
    uint16_t *wh = malloc(d_in * d_sae * sizeof *wh);
    float *b = calloc(d_sae, sizeof *b), *bd = calloc(d_in, sizeof *bd);
    float *thr = malloc(d_sae * sizeof *thr), *x = malloc(batch * d_in * sizeof *x);
    float *wf = malloc(d_in * slice * sizeof *wf), *y = malloc(batch * slice * sizeof *y);
    if (!wh || !b || !bd || !thr || !x || !wf || !y)
        return fprintf(stderr, "wide: out of memory\n"), 1;
    double amp = sqrt(3.0 / (double)d_in);
    for (size_t i = 0; i < d_in * d_sae; i++)
        wh[i] = to_bf16((float)((2 * sae_rng_uniform(&r) - 1) * amp));
    for (size_t i = 0; i < d_in * slice; i++)
        wf[i] = (float)((2 * sae_rng_uniform(&r) - 1) * amp);
    for (size_t i = 0; i < batch * d_in; i++)
        x[i] = (float)sae_rng_normal(&r);
    /* pre ~ N(0, 1): a threshold at the 1 - 64/d_sae quantile fires ~64. */
    float t64 = (float)sqrt(2.0 * log((double)d_sae / 64.0));
    for (size_t j = 0; j < d_sae; j++)
        thr[j] = t64;
    double t_gemv = time_gemm(wf, x, y, d_in, slice, 1, 3) * (double)d_sae / (double)slice;
    double t_gemm = time_gemm(wf, x, y, d_in, slice, batch, 1) * (double)d_sae / (double)slice;
    printf("d_in %zu d_sae %zu BF16 weights; F32 bound from a %zu-column slice, scaled\n", d_in,
           d_sae, slice);
    printf("sgemv batch 1: %.3f s   sgemm batch %zu: %.2f s (%.0f rows/s)\n", t_gemv, batch,
           t_gemm, batch / t_gemm);
    const char *names[] = {"topk k=64", "jumprelu ~64"};
    for (int a = 0; a < 2; a++) {
        sae_model_spec s = {.d_in = d_in, .d_sae = d_sae, .apply_b_dec_to_input = true,
                            .norm = SAE_NORM_NONE, .b_enc = b, .b_dec = bd, .w_enc_h = wh,
                            .w_dec_h = wh, .w_dtype = SAE_DT_BF16};
        s.arch = a == 0 ? SAE_ARCH_TOPK : SAE_ARCH_JUMPRELU;
        s.k = 64;
        s.threshold = thr;
        sae_model *m;
        sae_error err;
        if (sae_model_from_spec(&s, &m, &err))
            return fprintf(stderr, "wide: %s\n", err.msg), 1;
        sae_workspace *ws = sae_workspace_new(m, 0);
        size_t nnz1, nnz;
        double e1 = time_encode(m, ws, x, 1, 3, &nnz1);
        double eb = time_encode(m, ws, x, batch, 1, &nnz);
        printf("%-13s batch 1: %.3f s (%.2f x sgemv, l0 %zu)   batch %zu: %.2f s, %.0f rows/s "
               "(%.2f x sgemm; l0 %.1f)\n", names[a], e1, e1 / t_gemv, nnz1, batch, eb,
               batch / eb, eb / t_gemm, (double)nnz / batch);
        sae_workspace_free(ws);
        sae_model_free(m);
    }
    free(wh); free(b); free(bd); free(thr); free(x); free(wf); free(y);
    return 0;
}

/* Writes n BF16 values to f: uniform in (-amp, amp) from r, or all v when
 * amp is 0. Returns 0 or -1. */
static int write_bf16(FILE *f, sae_rng *r, size_t n, double amp, float v)
{
    enum { CHUNK = 1 << 20 };
    static uint16_t buf[CHUNK];
    for (size_t done = 0; done < n;) {
        size_t m = n - done < CHUNK ? n - done : CHUNK;
        for (size_t i = 0; i < m; i++)
            buf[i] = to_bf16(amp > 0 ? (float)((2 * sae_rng_uniform(r) - 1) * amp) : v);
        if (fwrite(buf, sizeof *buf, m, f) != m)
            return -1;
        done += m;
    }
    return 0;
}

/* The model (see the top of the file): cfg.json, then sae_weights.safetensors
 * with its tensors in name order, each written as it is drawn. */
static int write_model(size_t d_in, size_t d_sae, const char *dir, double l0)
{
    char path[4096];
    if (mkdir(dir, 0755) && errno != EEXIST)
        return fprintf(stderr, "wide: %s: %s\n", dir, strerror(errno)), 1;
    snprintf(path, sizeof path, "%s/cfg.json", dir);
    FILE *f = fopen(path, "w");
    if (!f)
        return fprintf(stderr, "wide: %s: %s\n", path, strerror(errno)), 1;
    fprintf(f,
            "{\"architecture\": \"jumprelu\", \"d_in\": %zu, \"d_sae\": %zu, "
            "\"dtype\": \"bfloat16\", \"device\": \"cpu\", \"apply_b_dec_to_input\": true, "
            "\"normalize_activations\": \"none\", \"reshape_activations\": \"none\", "
            "\"metadata\": {\"model_name\": \"wide-model\", "
            "\"hook_name\": \"blocks.0.hook_resid_post\", \"sae_lens_version\": \"6.5.1\"}}\n",
            d_in, d_sae);
    if (fclose(f))
        return fprintf(stderr, "wide: %s: cannot write\n", path), 1;
    /* name, shape, count */
    const struct {
        const char *name;
        size_t rows, cols;
    } t[] = {{"W_dec", d_sae, d_in}, {"W_enc", d_in, d_sae}, {"b_dec", d_in, 0},
             {"b_enc", d_sae, 0},    {"threshold", d_sae, 0}};
    char head[1024];
    size_t len = (size_t)snprintf(head, sizeof head, "{\"__metadata__\":{\"format\":\"pt\"}");
    size_t off = 0;
    for (int i = 0; i < 5; i++) {
        size_t n = t[i].rows * (t[i].cols ? t[i].cols : 1) * 2;
        if (t[i].cols)
            len += (size_t)snprintf(head + len, sizeof head - len,
                                    ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[%zu,%zu],"
                                    "\"data_offsets\":[%zu,%zu]}",
                                    t[i].name, t[i].rows, t[i].cols, off, off + n);
        else
            len += (size_t)snprintf(head + len, sizeof head - len,
                                    ",\"%s\":{\"dtype\":\"BF16\",\"shape\":[%zu],"
                                    "\"data_offsets\":[%zu,%zu]}",
                                    t[i].name, t[i].rows, off, off + n);
        off += n;
    }
    head[len++] = '}';
    while ((8 + len) % 8) /* data 8-byte aligned, as the Python writer pads */
        head[len++] = ' ';
    snprintf(path, sizeof path, "%s/sae_weights.safetensors", dir);
    if (!(f = fopen(path, "wb")))
        return fprintf(stderr, "wide: %s: %s\n", path, strerror(errno)), 1;
    uint64_t hl = len; /* little-endian on x86 */
    sae_rng r;
    sae_rng_seed(&r, 19);
    double amp = sqrt(3.0 / (double)d_in);
    float thr = (float)sae_fixture_normal_upper_quantile(l0 / (double)d_sae);
    int bad = fwrite(&hl, 8, 1, f) != 1 || fwrite(head, 1, len, f) != len ||
              write_bf16(f, &r, d_sae * d_in, amp, 0) || write_bf16(f, &r, d_in * d_sae, amp, 0) ||
              write_bf16(f, &r, d_in, 0, 0) || write_bf16(f, &r, d_sae, 0, 0) ||
              write_bf16(f, &r, d_sae, 0, thr);
    if (fclose(f) || bad)
        return fprintf(stderr, "wide: %s: cannot write\n", path), 1;
    printf("wrote %s: BF16 jumprelu %zu x %zu, threshold %.4f (about %.0f firing)\n", dir, d_in,
           d_sae, (double)thr, l0);
    return 0;
}

/* The neighbour figures (see the top of the file). */
static int bench_neighbours(size_t d_in, size_t d_sae)
{
    size_t n_c = d_sae / 32 ? d_sae / 32 : 1, k = 10;
    float *w = malloc(d_in * d_sae * sizeof *w), *norm = malloc(d_sae * sizeof *norm);
    float *c = malloc(n_c * d_in * sizeof *c), *cs = malloc(d_sae * k * sizeof *cs);
    uint32_t *idx = malloc(d_sae * k * sizeof *idx);
    if (!w || !norm || !c || !cs || !idx)
        return fprintf(stderr, "wide: out of memory\n"), 1;
    sae_rng r;
    sae_rng_seed(&r, 19);
    for (size_t i = 0; i < n_c * d_in; i++)
        c[i] = (float)sae_rng_normal(&r);
    for (size_t i = 0; i < d_sae; i++) {
        const float *ci = c + sae_rng_below(&r, n_c) * d_in;
        double s = 0;
        for (size_t j = 0; j < d_in; j++) {
            float v = ci[j] + (float)sae_rng_normal(&r);
            w[i * d_in + j] = v;
            s += (double)v * v;
        }
        norm[i] = (float)sqrt(s);
    }
    free(c);
    sae_nb_report rep;
    sae_error err;
    if (sae_neighbours_by(w, norm, d_sae, d_in, k, SAE_NB_APPROX, 0, idx, cs, &rep, &err))
        return fprintf(stderr, "wide: %s\n", err.msg), 1;
    double exact = rep.recall_s * (double)d_sae / (double)rep.sampled / 2;
    printf("neighbours d_in %zu d_sae %zu: approx %.1f s, recall@10 %.4f on %zu sampled "
           "(exact sample %.1f s; a full exact build ~%.0f s, %.1f x approx)\n", d_in, d_sae,
           rep.approx_s, rep.recall, rep.sampled, rep.recall_s, exact, exact / rep.approx_s);
    free(w); free(norm); free(cs); free(idx);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc >= 5 && strcmp(argv[1], "model") == 0)
        return write_model(strtoull(argv[2], NULL, 10), strtoull(argv[3], NULL, 10), argv[4],
                           argc > 5 ? strtod(argv[5], NULL) : 64);
    if (argc != 4 && argc != 5)
        return fprintf(stderr, "usage: wide encode|neighbours D_IN D_SAE [BATCH]\n"
                               "       wide model D_IN D_SAE DIR [L0]\n"), 2;
    size_t d_in = strtoull(argv[2], NULL, 10), d_sae = strtoull(argv[3], NULL, 10);
    size_t batch = argc == 5 ? strtoull(argv[4], NULL, 10) : 256;
    if (strcmp(argv[1], "encode") == 0)
        return bench_encode(d_in, d_sae, batch ? batch : 1);
    return bench_neighbours(d_in, d_sae);
}
