/* lmbench.c: core/lm's forward pass against the BLAS bound of its matrix
 * products (bench/lm.sh runs it for docs/PERFORMANCE.md).
 *
 *   lmbench [--lm DIR | --write DIR] [--batch N_SEQxSEQ_LEN ...] [--seconds S]
 *           [--threads N]
 *
 * Without --lm it writes a GPT-2-small-shaped checkpoint of random F32
 * weights (12 layers, d_model 768, 12 heads, vocab 50257, 1024 positions:
 * 498 MB) into a temporary folder with core/io's safetensors writer, and
 * removes it at the end; --write DIR writes it into DIR (made if missing)
 * and keeps it there, for --lm DIR in later runs. For each batch shape it times, alternately so both
 * see the same machine, the forward pass through every block
 * (ln_final.hook_normalized) and the same cblas_sgemm calls alone
 * (sae_lm_gemm_shapes: every shape, as many times, with a distinct B matrix
 * per call as the pass reads a distinct weight matrix per block), and prints
 * the medians, tokens/s and the ratio sgemm / forward. */
#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/clock.h"
#include "io/rng.h"
#include "io/safetensors.h"
#include "lm/lm.h"
#include "sae/encode.h"

#define MAX_BATCHES 8
#define MAX_SHAPES 64
#define MIN_ROUNDS 3

/* One batch shape to measure. */
typedef struct shape {
    size_t n_seq, seq_len;
} shape;

/* Fills a (n) uniform in [-amp, amp]. */
static void fill(sae_rng *r, float *a, size_t n, double amp)
{
    for (size_t i = 0; i < n; i++)
        a[i] = (float)(((double)(sae_rng_next(r) >> 11) * 0x1.0p-53 * 2.0 - 1.0) * amp);
}

/* Writes a random GPT-2-small checkpoint into dir (config.json and
 * model.safetensors). Weights have GPT-2's init scale (0.02; LayerNorm
 * weights 1, biases 0) so activations stay in a realistic range. */
static int write_gpt2_small(const char *dir, sae_error *err)
{
    const size_t L = 12, C = 768, V = 50257, P = 1024, M = 4 * C;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_t *cfg = json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:f, s:s}", "model_type", "gpt2",
                            "n_embd", (int)C, "n_head", 12, "n_layer", (int)L, "n_positions",
                            (int)P, "vocab_size", (int)V, "layer_norm_epsilon", 1e-5,
                            "activation_function", "gelu_new");
    if (!cfg || json_dump_file(cfg, path, JSON_INDENT(2)))
        return sae_error_set(err, SAE_EIO, "%s: cannot write", path);
    json_decref(cfg);

    /* One buffer of random values serves every tensor (the writer borrows
     * it): the largest tensor is wte. */
    size_t big = V * C;
    float *rnd = malloc(big * sizeof *rnd), *ones = malloc(M * sizeof *ones);
    float *zeros = calloc(M, sizeof *zeros);
    sae_st_writer *w = sae_st_writer_new();
    int rc = 0;
    if (!rnd || !ones || !zeros || !w) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for the random checkpoint");
        goto out;
    }
    sae_rng r;
    sae_rng_seed(&r, 7);
    fill(&r, rnd, big, 0.02 * 1.7320508); /* uniform with standard deviation 0.02 */
    for (size_t i = 0; i < M; i++)
        ones[i] = 1.0f;
    const struct {
        const char *name;
        size_t d0, d1; /* d1 0: 1-D */
        const float *data;
    } t[] = {
        {"ln_1.weight", C, 0, ones},        {"ln_1.bias", C, 0, zeros},
        {"attn.c_attn.weight", C, 3 * C, rnd}, {"attn.c_attn.bias", 3 * C, 0, zeros},
        {"attn.c_proj.weight", C, C, rnd},  {"attn.c_proj.bias", C, 0, zeros},
        {"ln_2.weight", C, 0, ones},        {"ln_2.bias", C, 0, zeros},
        {"mlp.c_fc.weight", C, M, rnd},     {"mlp.c_fc.bias", M, 0, zeros},
        {"mlp.c_proj.weight", M, C, rnd},   {"mlp.c_proj.bias", C, 0, zeros},
    };
    uint64_t s2[2] = {V, C};
    rc |= sae_st_writer_add_f32_ref(w, "wte.weight", SAE_DT_F32, 2, s2, rnd);
    s2[0] = P;
    rc |= sae_st_writer_add_f32_ref(w, "wpe.weight", SAE_DT_F32, 2, s2, rnd + 3);
    for (size_t l = 0; l < L; l++)
        for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
            char name[64];
            snprintf(name, sizeof name, "h.%zu.%s", l, t[i].name);
            uint64_t shape[2] = {t[i].d0, t[i].d1};
            /* each matrix starts elsewhere in the random buffer */
            const float *data =
                t[i].d1 ? rnd + (l * 1000003 + i * 7919) % (big - t[i].d0 * t[i].d1) : t[i].data;
            rc |= sae_st_writer_add_f32_ref(w, name, SAE_DT_F32, t[i].d1 ? 2 : 1, shape, data);
        }
    uint64_t s1[1] = {C};
    rc |= sae_st_writer_add_f32_ref(w, "ln_f.weight", SAE_DT_F32, 1, s1, ones);
    rc |= sae_st_writer_add_f32_ref(w, "ln_f.bias", SAE_DT_F32, 1, s1, zeros);
    if (rc) {
        rc = sae_error_set(err, SAE_EINVAL, "cannot queue the random checkpoint's tensors");
        goto out;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    rc = sae_st_writer_save(w, path, err);
out:
    sae_st_writer_free(w);
    free(rnd);
    free(ones);
    free(zeros);
    return rc;
}

/* The raw products of one batch shape: A, C per shape, a distinct B per call. */
typedef struct raw {
    sae_lm_gemm g[MAX_SHAPES];
    size_t n;
    float *a[MAX_SHAPES], *c[MAX_SHAPES], **b[MAX_SHAPES];
} raw;

static int raw_init(raw *rw, const sae_lm *lm, const sae_lm_batch *bt, sae_rng *r)
{
    memset(rw, 0, sizeof *rw);
    rw->n = sae_lm_gemm_shapes(lm, bt, rw->g, MAX_SHAPES);
    if (rw->n == 0 || rw->n > MAX_SHAPES)
        return -1;
    for (size_t i = 0; i < rw->n; i++) {
        const sae_lm_gemm *g = &rw->g[i];
        rw->a[i] = malloc(g->m * g->k * sizeof(float));
        rw->c[i] = malloc(g->m * g->n * sizeof(float));
        rw->b[i] = calloc(g->count, sizeof(float *));
        if (!rw->a[i] || !rw->c[i] || !rw->b[i])
            return -1;
        fill(r, rw->a[i], g->m * g->k, 1.0);
        for (size_t j = 0; j < g->count; j++) {
            if (!(rw->b[i][j] = malloc(g->k * g->n * sizeof(float))))
                return -1;
            fill(r, rw->b[i][j], g->k * g->n, 0.05);
        }
    }
    return 0;
}

static void raw_free(raw *rw)
{
    for (size_t i = 0; i < rw->n && i < MAX_SHAPES; i++) {
        for (size_t j = 0; rw->b[i] && j < rw->g[i].count; j++)
            free(rw->b[i][j]);
        free(rw->a[i]);
        free(rw->b[i]);
        free(rw->c[i]);
    }
}

/* Every product once: the pass's BLAS work alone. Returns its FLOPs. */
static double raw_run(const raw *rw)
{
    double flops = 0;
    for (size_t i = 0; i < rw->n; i++) {
        const sae_lm_gemm *g = &rw->g[i];
        for (size_t j = 0; j < g->count; j++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, g->b_trans ? CblasTrans : CblasNoTrans,
                        (int)g->m, (int)g->n, (int)g->k, 1.0f, rw->a[i], (int)g->k, rw->b[i][j],
                        g->b_trans ? (int)g->k : (int)g->n, 0.0f, rw->c[i], (int)g->n);
        flops += 2.0 * (double)g->m * (double)g->n * (double)g->k * (double)g->count;
    }
    return flops;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Parses "4x128" into s. */
static int parse_shape(const char *v, shape *s)
{
    char *end;
    errno = 0;
    unsigned long a = strtoul(v, &end, 10);
    if (errno || end == v || *end != 'x')
        return -1;
    const char *rest = end + 1;
    unsigned long b = strtoul(rest, &end, 10);
    if (errno || end == rest || *end || a == 0 || b == 0 || a > 4096 || b > 65536)
        return -1;
    s->n_seq = a;
    s->seq_len = b;
    return 0;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *write_dir = NULL;
    shape shapes[MAX_BATCHES];
    size_t n_shapes = 0;
    double seconds = 10;
    long threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(argv[i], "--lm") == 0 && v)
            dir = v;
        else if (strcmp(argv[i], "--write") == 0 && v)
            write_dir = v;
        else if (strcmp(argv[i], "--batch") == 0 && v && n_shapes < MAX_BATCHES &&
                 parse_shape(v, &shapes[n_shapes]) == 0)
            n_shapes++;
        else if (strcmp(argv[i], "--seconds") == 0 && v && (seconds = atof(v)) > 0)
            ;
        else if (strcmp(argv[i], "--threads") == 0 && v && (threads = atol(v)) > 0)
            ;
        else {
            fprintf(stderr, "usage: lmbench [--lm DIR | --write DIR] "
                            "[--batch N_SEQxSEQ_LEN ...] [--seconds S] [--threads N]\n");
            return 2;
        }
        i++;
    }
    if (n_shapes == 0) {
        shapes[n_shapes++] = (shape){4, 128};
        shapes[n_shapes++] = (shape){1, 512};
        shapes[n_shapes++] = (shape){2, 1024};
    }
    if (threads)
        sae_set_blas_threads((int)threads);

    sae_error err;
    char tmp[] = "/tmp/lmbench-XXXXXX";
    bool made = false;
    int rc = 1;
    sae_lm *lm = NULL;
    if (write_dir && !dir) {
        if (mkdir(write_dir, 0777) && errno != EEXIST) {
            perror("lmbench: mkdir");
            return 1;
        }
        dir = write_dir;
        fprintf(stderr, "lmbench: writing a random GPT-2-small checkpoint to %s\n", dir);
        if (write_gpt2_small(dir, &err))
            goto fail;
    }
    if (!dir) {
        if (!mkdtemp(tmp)) {
            perror("lmbench: mkdtemp");
            return 1;
        }
        made = true;
        dir = tmp;
        fprintf(stderr, "lmbench: writing a random GPT-2-small checkpoint to %s\n", dir);
        if (write_gpt2_small(dir, &err))
            goto fail;
    }
    if (sae_lm_load(dir, &lm, &err))
        goto fail;
    const sae_lm_config *c = sae_lm_config_of(lm);
    printf("model: %s (%s, %zu layers, d_model %zu, %zu heads, d_mlp %zu, %s)\n", dir, c->family,
           c->n_layer, c->d_model, c->n_head, c->d_mlp, c->dtype);
    printf("BLAS threads: %d; up to %.0f s a batch shape\n", sae_get_blas_threads(), seconds);
    printf("%-10s %7s %12s %12s %10s %10s %8s\n", "batch", "tokens", "forward_ms", "sgemm_ms",
           "tokens/s", "GFLOP/s", "ratio");
    sae_lm_hook h;
    sae_lm_hook_parse("ln_final.hook_normalized", &h, &err);
    sae_rng r;
    sae_rng_seed(&r, 3);
    for (size_t s = 0; s < n_shapes; s++) {
        size_t n = shapes[s].n_seq * shapes[s].seq_len;
        sae_lm_batch bt = {.n_seq = shapes[s].n_seq, .seq_len = shapes[s].seq_len};
        uint32_t *ids = malloc(n * sizeof *ids);
        float *out = malloc(n * c->d_model * sizeof *out);
        sae_lm_ws *ws = sae_lm_ws_new(lm, n);
        raw rw;
        if (!ids || !out || !ws || raw_init(&rw, lm, &bt, &r)) {
            fprintf(stderr, "lmbench: out of memory for batch %zux%zu\n", bt.n_seq, bt.seq_len);
            free(ids);
            free(out);
            sae_lm_ws_free(ws);
            goto fail_quiet;
        }
        for (size_t t = 0; t < n; t++)
            ids[t] = (uint32_t)(sae_rng_next(&r) % c->vocab);
        bt.ids = ids;
        double fw[1000], rs[1000], flops = 0;
        size_t rounds = 0;
        double t_end = sae_clock_s() + seconds;
        /* one untimed round each: page faults and BLAS's thread start-up */
        sae_lm_forward(lm, ws, &bt, &h, 1, &out, NULL, &err);
        raw_run(&rw);
        while (rounds < 1000 && (rounds < MIN_ROUNDS || sae_clock_s() < t_end)) {
            double t0 = sae_clock_s();
            if (sae_lm_forward(lm, ws, &bt, &h, 1, &out, NULL, &err))
                goto fail;
            double t1 = sae_clock_s();
            flops = raw_run(&rw);
            double t2 = sae_clock_s();
            fw[rounds] = t1 - t0;
            rs[rounds] = t2 - t1;
            rounds++;
        }
        qsort(fw, rounds, sizeof *fw, cmp_double);
        qsort(rs, rounds, sizeof *rs, cmp_double);
        double f = fw[rounds / 2], g = rs[rounds / 2];
        char name[32];
        snprintf(name, sizeof name, "%zux%zu", bt.n_seq, bt.seq_len);
        printf("%-10s %7zu %12.1f %12.1f %10.0f %10.1f %8.2f\n", name, n, f * 1e3, g * 1e3,
               (double)n / f, flops / g * 1e-9, g / f);
        fflush(stdout);
        raw_free(&rw);
        sae_lm_ws_free(ws);
        free(ids);
        free(out);
    }
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "lmbench: error: %s\n", err.msg);
fail_quiet:
    rc = 1;
out:
    sae_lm_free(lm);
    if (made) {
        char path[4096];
        snprintf(path, sizeof path, "%s/model.safetensors", tmp);
        unlink(path);
        snprintf(path, sizeof path, "%s/config.json", tmp);
        unlink(path);
        rmdir(tmp);
    }
    return rc;
}
