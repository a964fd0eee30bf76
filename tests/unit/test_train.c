/* test_train.c: `sae train`'s numeric core and training loop.
 *
 * Fast suite ("train", run under ASan too):
 *   - every parameter gradient of every architecture (standard, topk,
 *     autoencoder) against central finite differences of the loss, both from
 *     the double instance of the training code (relative error < 1e-4);
 *   - the loss itself against an independent naive forward pass here;
 *   - the float instance (what training runs) against the double one;
 *   - same seed, one BLAS thread: byte-identical weights; another seed: not;
 *   - bad data refused with the file and row named;
 *   - the saved folder loads with sae_model_load and holds the trained weights.
 * Slow suite ("train_slow", `test_train slow`): ground-truth recovery on g
 * random unit directions in d dims, each active with probability p and a
 * coefficient uniform in [0, 1]: MMCS >= 0.98 with default settings at
 * d_sae = g and 2g, on two seeds. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sae/autoencoder.h"
#include "fixture.h"
#include "sae/model.h"
#include "io/rng.h"
#include "reference.h"
#include "io/safetensors.h"
#include "train/train.h"
#include "unit.h"

void openblas_set_num_threads(int n);

/* ---- an independent forward pass (plain loops, double) ---- */

/* The loss of flat params on x (n, d_in), computed directly from the
 * definitions in train.h, sharing no code with layers.h. */
static double naive_loss(const sae_train_shape *s, const double *p, const double *x, size_t n,
                         double l1)
{
    size_t d_in = s->d_in;
    double total = 0;
    if (s->arch != SAE_ARCH_AUTOENCODER) {
        size_t d_sae = s->d_sae;
        const double *w_enc = p, *b_enc = w_enc + d_in * d_sae, *w_dec = b_enc + d_sae,
                     *b_dec = w_dec + d_sae * d_in;
        double *f = malloc(d_sae * sizeof *f);
        for (size_t r = 0; r < n; r++) {
            const double *xr = x + r * d_in;
            for (size_t i = 0; i < d_sae; i++) {
                double pre = b_enc[i];
                for (size_t j = 0; j < d_in; j++)
                    pre += (xr[j] - b_dec[j]) * w_enc[j * d_sae + i];
                f[i] = pre;
            }
            if (s->arch == SAE_ARCH_TOPK) {
                /* keep the k largest: a value survives when fewer than k beat it */
                double *kept = malloc(d_sae * sizeof *kept);
                for (size_t i = 0; i < d_sae; i++) {
                    size_t beaten = 0;
                    for (size_t q = 0; q < d_sae; q++)
                        beaten += f[q] > f[i];
                    kept[i] = beaten < s->k ? f[i] : 0;
                }
                memcpy(f, kept, d_sae * sizeof *f);
                free(kept);
            }
            for (size_t i = 0; i < d_sae; i++)
                f[i] = f[i] > 0 ? f[i] : 0;
            for (size_t j = 0; j < d_in; j++) {
                double xh = b_dec[j];
                for (size_t i = 0; i < d_sae; i++)
                    xh += f[i] * w_dec[i * d_in + j];
                total += (xr[j] - xh) * (xr[j] - xh);
            }
            if (s->arch == SAE_ARCH_STANDARD)
                for (size_t i = 0; i < d_sae; i++) {
                    double nn = 0;
                    for (size_t j = 0; j < d_in; j++)
                        nn += w_dec[i * d_in + j] * w_dec[i * d_in + j];
                    total += l1 * f[i] * sqrt(nn);
                }
        }
        free(f);
        return total / n;
    }
    size_t dims[2 * SAE_AE_MAX_LAYERS], nl = 0;
    for (size_t i = 0; i < s->n_layers; i++)
        dims[nl++] = s->layers[i];
    for (size_t i = s->n_layers - 1; i-- > 0;)
        dims[nl++] = s->layers[i];
    size_t n_lin = nl - 1;
    double *h = malloc(64 * sizeof *h), *o = malloc(64 * sizeof *o);
    for (size_t r = 0; r < n; r++) {
        memcpy(h, x + r * d_in, d_in * sizeof *h);
        const double *q = p;
        for (size_t l = 0; l < n_lin; l++) {
            const double *w = q, *b = q + dims[l] * dims[l + 1];
            for (size_t c = 0; c < dims[l + 1]; c++) {
                double v = b[c];
                for (size_t i = 0; i < dims[l]; i++)
                    v += h[i] * w[i * dims[l + 1] + c];
                o[c] = (l + 1 < n_lin && v < 0) ? 0 : v;
            }
            memcpy(h, o, dims[l + 1] * sizeof *h);
            q = b + dims[l + 1];
        }
        for (size_t j = 0; j < d_in; j++)
            total += (x[r * d_in + j] - h[j]) * (x[r * d_in + j] - h[j]);
    }
    free(h);
    free(o);
    return total / n;
}

/* Fills v (n) with normal draws times sd. */
static void normals(double *v, size_t n, double sd, sae_rng *r)
{
    for (size_t i = 0; i < n; i++)
        v[i] = sd * sae_rng_normal(r);
}

/* The gradient check: analytic gradient (double instance) against central
 * differences of the same loss, every parameter; the loss against naive_loss;
 * the float instance against the double one. Returns the worst relative error. */
static double grad_check(const sae_train_shape *s, double l1, size_t n, uint64_t seed)
{
    sae_error err;
    size_t np = sae_train_n_params(s);
    double *p = malloc(np * sizeof *p), *g = malloc(np * sizeof *g);
    double *x = malloc(n * s->d_in * sizeof *x);
    sae_rng r;
    sae_rng_seed(&r, seed);
    normals(p, np, 0.5, &r);
    normals(x, n * s->d_in, 1.0, &r);
    double loss;
    ck_assert_int_eq(sae_train_loss_grad_f64(s, p, x, n, l1, &loss, g, &err), 0);
    double ref = naive_loss(s, p, x, n, l1);
    ck_assert_msg(fabs(loss - ref) <= 1e-12 * fabs(ref), "loss %.17g, naive %.17g", loss, ref);

    double *scratch = malloc(np * sizeof *scratch), worst = 0;
    size_t nonzero = 0;
    const double h = 1e-6;
    for (size_t i = 0; i < np; i++) {
        double keep = p[i], lp, lm;
        p[i] = keep + h;
        ck_assert_int_eq(sae_train_loss_grad_f64(s, p, x, n, l1, &lp, scratch, &err), 0);
        p[i] = keep - h;
        ck_assert_int_eq(sae_train_loss_grad_f64(s, p, x, n, l1, &lm, scratch, &err), 0);
        p[i] = keep;
        double num = (lp - lm) / (2 * h), ana = g[i];
        double scale = fmax(fabs(num), fabs(ana));
        if (scale < 1e-7) {
            ck_assert_msg(fabs(num - ana) < 1e-9, "param %zu: analytic %g numeric %g", i, ana,
                          num);
            continue;
        }
        nonzero++;
        double rel = fabs(num - ana) / scale;
        ck_assert_msg(rel < 1e-4, "%s param %zu: analytic %.10g numeric %.10g (rel %.3g)",
                      sae_arch_name(s->arch), i, ana, num, rel);
        if (rel > worst)
            worst = rel;
    }
    /* a check that compares zeros with zeros proves nothing */
    ck_assert_msg(nonzero > np / 2, "only %zu of %zu gradients nonzero", nonzero, np);

    /* the float instance, which training runs, agrees with the double one */
    float *pf = malloc(np * sizeof *pf), *gf = malloc(np * sizeof *gf);
    float *xf = malloc(n * s->d_in * sizeof *xf);
    for (size_t i = 0; i < np; i++)
        pf[i] = (float)p[i];
    for (size_t i = 0; i < n * s->d_in; i++)
        xf[i] = (float)x[i];
    double lossf;
    ck_assert_int_eq(sae_train_loss_grad_f32(s, pf, xf, n, l1, &lossf, gf, &err), 0);
    ck_assert_msg(fabs(lossf - loss) <= 1e-4 * fabs(loss), "f32 loss %g vs f64 %g", lossf,
                  loss);
    double gn = 0, dn = 0;
    for (size_t i = 0; i < np; i++) {
        gn += g[i] * g[i];
        dn += (gf[i] - g[i]) * (gf[i] - g[i]);
    }
    ck_assert_msg(sqrt(dn) <= 1e-4 * sqrt(gn), "f32 gradient off by %g of %g", sqrt(dn),
                  sqrt(gn));
    free(pf);
    free(gf);
    free(xf);
    free(scratch);
    free(p);
    free(g);
    free(x);
    return worst;
}

START_TEST(test_grad_standard)
{
    sae_train_shape s = {.arch = SAE_ARCH_STANDARD, .d_in = 5, .d_sae = 7};
    double worst = grad_check(&s, 0.7, 6, 11);
    fprintf(stderr, "gradcheck standard: %zu params, worst rel err %.2e\n",
            sae_train_n_params(&s), worst);
}
END_TEST

START_TEST(test_grad_topk)
{
    sae_train_shape s = {.arch = SAE_ARCH_TOPK, .d_in = 5, .d_sae = 8, .k = 3};
    double worst = grad_check(&s, 0, 6, 12);
    fprintf(stderr, "gradcheck topk: %zu params, worst rel err %.2e\n", sae_train_n_params(&s),
            worst);
}
END_TEST

START_TEST(test_grad_autoencoder)
{
    sae_train_shape s = {.arch = SAE_ARCH_AUTOENCODER, .d_in = 6, .d_sae = 2, .n_layers = 4,
                         .layers = {6, 5, 3, 2}};
    double worst = grad_check(&s, 0, 7, 13);
    fprintf(stderr, "gradcheck autoencoder 6,5,3,2: %zu params, worst rel err %.2e\n",
            sae_train_n_params(&s), worst);
}
END_TEST

/* ---- training runs on small in-memory data ---- */

/* n rows of sparse combinations of g random unit directions in d dims (each
 * active with probability p, coefficient uniform in [0, 1]); the directions
 * go to truth (g, d) when not NULL. */
static float *sparse_data(size_t n, size_t d, size_t g, double p, uint64_t seed, float *truth)
{
    sae_rng r;
    sae_rng_seed(&r, seed);
    float *dirs = truth ? truth : malloc(g * d * sizeof *dirs);
    for (size_t t = 0; t < g; t++) {
        double s = 0;
        for (size_t j = 0; j < d; j++) {
            dirs[t * d + j] = (float)sae_rng_normal(&r);
            s += (double)dirs[t * d + j] * dirs[t * d + j];
        }
        for (size_t j = 0; j < d; j++)
            dirs[t * d + j] = (float)(dirs[t * d + j] / sqrt(s));
    }
    float *x = calloc(n * d, sizeof *x);
    for (size_t i = 0; i < n; i++)
        for (size_t t = 0; t < g; t++)
            if (sae_rng_uniform(&r) < p) {
                float c = (float)sae_rng_uniform(&r);
                for (size_t j = 0; j < d; j++)
                    x[i * d + j] += c * dirs[t * d + j];
            }
    if (!truth)
        free(dirs);
    return x;
}

/* Trains on x with o; returns the trainer (caller frees). */
static sae_trainer *train_on(const float *x, size_t n, size_t d, const sae_train_opts *o,
                             sae_train_data **data)
{
    sae_error err;
    sae_trainer *t = NULL;
    ck_assert_int_eq(sae_train_data_memory(x, n, d, "mem", data, &err), 0);
    ck_assert_msg(sae_trainer_new(o, *data, &t, &err) == 0, "%s", err.msg);
    ck_assert_msg(sae_trainer_run(t, NULL, NULL, &err) == 0, "%s", err.msg);
    return t;
}

START_TEST(test_deterministic)
{
    openblas_set_num_threads(1);
    size_t n = 3000, d = 16;
    float *x = sparse_data(n, d, 24, 0.1, 5, NULL);
    sae_arch archs[3] = {SAE_ARCH_STANDARD, SAE_ARCH_TOPK, SAE_ARCH_AUTOENCODER};
    for (int a = 0; a < 3; a++) {
        sae_train_opts o;
        sae_train_opts_init(&o);
        o.arch = archs[a];
        o.d_sae = a == 2 ? 4 : 32;
        o.k = a == 1 ? 4 : 0;
        if (a == 2) {
            o.n_layers = 3;
            o.layers[0] = d, o.layers[1] = 8, o.layers[2] = 4;
        }
        o.batch = 256;
        o.steps = 60;
        o.l1 = 1;
        o.seed = 42;
        sae_train_data *d1, *d2, *d3;
        sae_trainer *t1 = train_on(x, n, d, &o, &d1);
        sae_trainer *t2 = train_on(x, n, d, &o, &d2);
        o.seed = 43;
        sae_trainer *t3 = train_on(x, n, d, &o, &d3);
        sae_train_shape s;
        const float *p1 = sae_trainer_params(t1, &s), *p2 = sae_trainer_params(t2, NULL),
                    *p3 = sae_trainer_params(t3, NULL);
        size_t np = sae_train_n_params(&s);
        ck_assert_msg(memcmp(p1, p2, np * sizeof *p1) == 0, "%s: same seed, other weights",
                      sae_arch_name(archs[a]));
        ck_assert_msg(memcmp(p1, p3, np * sizeof *p1) != 0, "%s: seed ignored",
                      sae_arch_name(archs[a]));
        /* training did something: the error fell below the data's variance (a
         * 4-wide bottleneck cannot hold 24 directions, so only the SAEs go far) */
        double fvu = sae_trainer_last(t1)->fvu;
        ck_assert_msg(fvu < (a == 2 ? 0.95 : 0.6), "%s: fvu %g after training",
                      sae_arch_name(archs[a]), fvu);
        sae_trainer_free(t1);
        sae_trainer_free(t2);
        sae_trainer_free(t3);
        sae_train_data_free(d1);
        sae_train_data_free(d2);
        sae_train_data_free(d3);
    }
    free(x);
}
END_TEST

START_TEST(test_streaming)
{
    /* a corpus larger than the shuffle buffer (1 MiB = 512 rows of 512 floats)
     * is served block by block: it trains, deterministically */
    openblas_set_num_threads(1);
    size_t n = 3000, d = 512;
    float *x = sparse_data(n, d, 40, 0.05, 8, NULL);
    sae_train_opts o;
    sae_train_opts_init(&o);
    o.d_sae = 64;
    o.batch = 100;
    o.steps = 90; /* three passes */
    o.shuffle_mib = 1;
    o.seed = 3;
    sae_train_data *d1, *d2;
    sae_trainer *t1 = train_on(x, n, d, &o, &d1);
    sae_trainer *t2 = train_on(x, n, d, &o, &d2);
    sae_train_shape s;
    const float *p1 = sae_trainer_params(t1, &s), *p2 = sae_trainer_params(t2, NULL);
    ck_assert(memcmp(p1, p2, sae_train_n_params(&s) * sizeof *p1) == 0);
    ck_assert_uint_eq(sae_trainer_last(t1)->rows, 9000);
    ck_assert_msg(sae_trainer_last(t1)->fvu < 0.9, "fvu %g", sae_trainer_last(t1)->fvu);
    sae_trainer_free(t1);
    sae_trainer_free(t2);
    sae_train_data_free(d1);
    sae_train_data_free(d2);
    free(x);
}
END_TEST

START_TEST(test_scaling_and_init)
{
    /* E‖s·x‖ = √d_in over the corpus, and b_dec starts at the scaled mean */
    size_t n = 500, d = 8;
    float *x = malloc(n * d * sizeof *x);
    sae_rng r;
    sae_rng_seed(&r, 3);
    double norm_sum = 0, mean0 = 0;
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (size_t j = 0; j < d; j++) {
            x[i * d + j] = (float)(3.0 + 2.0 * sae_rng_normal(&r));
            s += (double)x[i * d + j] * x[i * d + j];
        }
        norm_sum += sqrt(s);
        mean0 += x[i * d];
    }
    sae_train_opts o;
    sae_train_opts_init(&o);
    o.batch = 64;
    o.steps = 1;
    sae_error err;
    sae_train_data *data;
    sae_trainer *t;
    ck_assert_int_eq(sae_train_data_memory(x, n, d, "mem", &data, &err), 0);
    ck_assert_int_eq(sae_trainer_new(&o, data, &t, &err), 0);
    double want = sqrt((double)d) / (norm_sum / n);
    ck_assert_msg(fabs(sae_trainer_scale(t) - want) < 1e-9 * want, "scale %g want %g",
                  sae_trainer_scale(t), want);
    sae_train_shape s;
    const float *p = sae_trainer_params(t, &s);
    ck_assert_uint_eq(s.d_sae, 4 * d); /* default expansion */
    const float *b_dec = p + 2 * s.d_in * s.d_sae + s.d_sae;
    ck_assert_msg(fabs(b_dec[0] - mean0 / n * want) < 1e-4, "b_dec[0] %g", b_dec[0]);
    /* W_dec = W_encᵀ with rows of the initial norm */
    const float *w_enc = p, *w_dec = p + s.d_in * s.d_sae + s.d_sae;
    for (size_t i = 0; i < s.d_sae; i++) {
        double nn = 0;
        for (size_t j = 0; j < d; j++) {
            ck_assert(w_dec[i * d + j] == w_enc[j * s.d_sae + i]);
            nn += (double)w_dec[i * d + j] * w_dec[i * d + j];
        }
        ck_assert_msg(fabs(sqrt(nn) - sae_trainer_opts(t)->init_norm) < 1e-5, "row %zu", i);
    }
    sae_trainer_free(t);
    sae_train_data_free(data);
    free(x);
}
END_TEST

START_TEST(test_bad_memory_data)
{
    size_t n = 40, d = 4;
    float *x = calloc(n * d, sizeof *x);
    for (size_t i = 0; i < n * d; i++)
        x[i] = (float)(i % 7) - 3;
    sae_train_opts o;
    sae_train_opts_init(&o);
    o.steps = 2;
    o.batch = 8;
    sae_error err;
    sae_train_data *data;
    sae_trainer *t = NULL;
    /* no rows */
    ck_assert_int_eq(sae_train_data_memory(x, 0, d, "empty.npy", &data, &err), 0);
    ck_assert_int_ne(sae_trainer_new(&o, data, &t, &err), 0);
    ck_assert_msg(strstr(err.msg, "empty.npy") && strstr(err.msg, "no rows"), "%s", err.msg);
    sae_train_data_free(data);
    /* a NaN in row 17 */
    x[17 * d + 2] = NAN;
    ck_assert_int_eq(sae_train_data_memory(x, n, d, "acts.npy", &data, &err), 0);
    ck_assert_int_ne(sae_trainer_new(&o, data, &t, &err), 0);
    ck_assert_msg(strstr(err.msg, "acts.npy: row 17 ") && strstr(err.msg, "column 2"), "%s",
                  err.msg);
    sae_train_data_free(data);
    /* an infinity */
    x[17 * d + 2] = INFINITY;
    ck_assert_int_eq(sae_train_data_memory(x, n, d, "acts.npy", &data, &err), 0);
    ck_assert_int_ne(sae_trainer_new(&o, data, &t, &err), 0);
    ck_assert_msg(strstr(err.msg, "row 17 "), "%s", err.msg);
    sae_train_data_free(data);
    /* all zero */
    memset(x, 0, n * d * sizeof *x);
    ck_assert_int_eq(sae_train_data_memory(x, n, d, "zeros.npy", &data, &err), 0);
    ck_assert_int_ne(sae_trainer_new(&o, data, &t, &err), 0);
    ck_assert_msg(strstr(err.msg, "zeros.npy") && strstr(err.msg, "zero"), "%s", err.msg);
    sae_train_data_free(data);
    /* settings that cannot work */
    for (size_t i = 0; i < n * d; i++)
        x[i] = (float)(i % 5);
    ck_assert_int_eq(sae_train_data_memory(x, n, d, "acts.npy", &data, &err), 0);
    o.arch = SAE_ARCH_TOPK;
    o.d_sae = 8;
    o.k = 9;
    ck_assert_int_ne(sae_trainer_new(&o, data, &t, &err), 0);
    ck_assert_msg(strstr(err.msg, "k must"), "%s", err.msg);
    o.arch = SAE_ARCH_AUTOENCODER;
    o.k = 0;
    o.d_sae = 0;
    o.n_layers = 2;
    o.layers[0] = d + 1, o.layers[1] = 2;
    ck_assert_int_ne(sae_trainer_new(&o, data, &t, &err), 0);
    ck_assert_msg(strstr(err.msg, "first width must be d_in"), "%s", err.msg);
    sae_train_data_free(data);
    free(x);
}
END_TEST

/* Writes x (n, d) as an activations file at path. */
static void write_acts(const char *path, const float *x, size_t n, size_t d)
{
    sae_st_writer *w = sae_st_writer_new();
    uint64_t shape[2] = {n, d};
    ck_assert_int_eq(sae_st_writer_add(w, "activations", SAE_DT_F32, 2, shape, x), 0);
    sae_error err;
    ck_assert_msg(sae_st_writer_save(w, path, &err) == 0, "%s", err.msg);
    sae_st_writer_free(w);
}

START_TEST(test_bad_files)
{
    char *dir = sae_fixture_tmpdir("train-bad");
    char a[512], b[512], c[512];
    snprintf(a, sizeof a, "%s/a.safetensors", dir);
    snprintf(b, sizeof b, "%s/b.safetensors", dir);
    snprintf(c, sizeof c, "%s/c.safetensors", dir);
    size_t d = 4;
    float x[20 * 4];
    for (size_t i = 0; i < 20 * d; i++)
        x[i] = (float)(i % 9) - 4;
    write_acts(a, x, 20, d);
    x[3 * d + 1] = NAN;
    write_acts(b, x, 10, d);
    write_acts(c, x, 10, d + 1);
    sae_error err;
    sae_train_data *data = NULL;
    sae_trainer *t = NULL;
    sae_train_opts o;
    sae_train_opts_init(&o);
    o.steps = 2;
    o.batch = 8;
    /* the NaN is row 3 of the second file (row 23 of the corpus) */
    const char *ab[2] = {a, b};
    ck_assert_msg(sae_train_data_open(ab, 2, &data, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(sae_train_data_rows(data), 30);
    ck_assert_int_ne(sae_trainer_new(&o, data, &t, &err), 0);
    ck_assert_msg(strstr(err.msg, b) && strstr(err.msg, "row 3 "), "%s", err.msg);
    sae_train_data_free(data);
    /* files of different widths */
    const char *ac[2] = {a, c};
    ck_assert_int_ne(sae_train_data_open(ac, 2, &data, &err), 0);
    ck_assert_msg(strlen(err.msg) > 0, "no message");
    /* a missing file is named */
    char missing[600];
    snprintf(missing, sizeof missing, "%s/missing.safetensors", dir);
    const char *m[1] = {missing};
    ck_assert_int_ne(sae_train_data_open(m, 1, &data, &err), 0);
    ck_assert_msg(strstr(err.msg, "missing.safetensors"), "%s", err.msg);
    sae_fixture_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(test_save_load)
{
    size_t n = 2000, d = 12;
    float *x = sparse_data(n, d, 16, 0.15, 9, NULL);
    char *dir = sae_fixture_tmpdir("train-save");
    sae_arch archs[2] = {SAE_ARCH_STANDARD, SAE_ARCH_TOPK};
    for (int a = 0; a < 2; a++) {
        sae_train_opts o;
        sae_train_opts_init(&o);
        o.arch = archs[a];
        o.d_sae = 24;
        o.k = a ? 3 : 0;
        o.steps = 30;
        o.batch = 128;
        snprintf(o.model_name, sizeof o.model_name, "unit-model");
        sae_train_data *data;
        sae_trainer *t = train_on(x, n, d, &o, &data);
        char out[600];
        snprintf(out, sizeof out, "%s/%s", dir, sae_arch_name(archs[a]));
        sae_error err;
        const char *src[1] = {"mem.safetensors"};
        ck_assert_msg(sae_trainer_save(t, out, src, 1, &err) == 0, "%s", err.msg);
        sae_model *m = NULL;
        sae_model_warnings warn;
        ck_assert_msg(sae_model_load(out, &m, &warn, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(m->arch, archs[a]);
        ck_assert_uint_eq(m->d_in, d);
        ck_assert_uint_eq(m->d_sae, 24);
        if (a)
            ck_assert_uint_eq(m->k, 3);
        ck_assert(m->apply_b_dec_to_input);
        ck_assert(!m->rescale_acts_by_decoder_norm);
        /* the scale is folded in as SAELens folds it: nothing to normalise */
        ck_assert_int_eq(m->norm, SAE_NORM_NONE);
        ck_assert_uint_eq(warn.n, 0);
        ck_assert_str_eq(m->model_name, "unit-model");
        ck_assert_str_eq(m->hook_name, "hook_synth");
        sae_train_shape s;
        const float *p = sae_trainer_params(t, &s);
        double sc = sae_trainer_scale(t);
        ck_assert(fabs(sc - 1) > 0.1); /* else a missing fold would not show */
        for (size_t i = 0; i < d * 24; i++) {
            ck_assert(m->w_enc[i] == (float)((double)p[i] * sc));
            ck_assert(m->w_dec[i] == (float)((double)sae_trainer_w_dec(t)[i] / sc));
        }
        ck_assert(memcmp(m->b_enc, p + d * 24, 24 * sizeof(float)) == 0);
        for (size_t j = 0; j < d; j++)
            ck_assert(m->b_dec[j] == (float)((double)p[2 * d * 24 + 24 + j] / sc));
        /* SAELens reading only the keys it reads: sae_lens_version >= 6 under
         * metadata, normalize_activations none, no norm_scaling_factor */
        char cfgp[700];
        snprintf(cfgp, sizeof cfgp, "%s/cfg.json", out);
        json_error_t je;
        json_t *cfg = json_load_file(cfgp, 0, &je);
        ck_assert_ptr_nonnull(cfg);
        ck_assert_str_eq(json_string_value(json_object_get(cfg, "normalize_activations")), "none");
        ck_assert_ptr_null(json_object_get(cfg, "norm_scaling_factor"));
        ck_assert_str_eq(json_string_value(json_object_get(json_object_get(cfg, "metadata"),
                                                           "sae_lens_version")),
                         "6.0.0");
        json_decref(cfg);
        /* SAELens's formula (the double-precision oracle) on only those keys
         * encodes raw rows as the trained SAE, unfolded, encodes them scaled
         * by s: the same active features with the same values. */
        sae_model_spec us = {.d_in = d, .d_sae = 24, .arch = archs[a], .k = o.k,
                             .apply_b_dec_to_input = true,
                             .norm = SAE_NORM_EXPECTED_AVERAGE_ONLY_IN,
                             .norm_scaling_factor = (float)sc, .w_enc = p, .b_enc = p + d * 24,
                             .w_dec = sae_trainer_w_dec(t), .b_dec = p + 2 * d * 24 + 24};
        sae_model *unfolded = NULL;
        ck_assert_msg(sae_model_from_spec(&us, &unfolded, &err) == 0, "%s", err.msg);
        size_t compared = 0, active = 0;
        for (size_t r = 0; r < 40; r++) {
            double f1[24], f2[24], m1[24], m2[24];
            sae_ref_encode_row(m, x + r * d, f1, m1);
            sae_ref_encode_row(unfolded, x + r * d, f2, m2);
            for (size_t j = 0; j < 24; j++) {
                if (fabs(m2[j]) < 1e-4 * (1 + fabs(f2[j])))
                    continue; /* float rounding of the fold may flip it */
                compared++;
                active += f2[j] > 0;
                ck_assert_msg((f1[j] > 0) == (f2[j] > 0), "row %zu feature %zu", r, j);
                ck_assert_msg(fabs(f1[j] - f2[j]) <= 1e-5 * (1 + fabs(f2[j])),
                              "row %zu feature %zu: %g vs %g", r, j, f1[j], f2[j]);
            }
        }
        ck_assert(compared > 40 * 20 && active > 40);
        sae_model_free(unfolded);
        sae_model_free(m);
        sae_trainer_free(t);
        sae_train_data_free(data);
    }
    sae_fixture_rmtree(dir);
    free(dir);
    free(x);
}
END_TEST

START_TEST(test_autoencoder_save_encode)
{
    size_t n = 2000, d = 10;
    float *x = sparse_data(n, d, 3, 0.5, 21, NULL); /* rank 3: the bottleneck can hold it */
    for (size_t i = 0; i < n * d; i++)
        x[i] = 5 * x[i] + 1; /* a scale far from 1, so a missing fold shows */
    sae_train_opts o;
    sae_train_opts_init(&o);
    o.arch = SAE_ARCH_AUTOENCODER;
    o.n_layers = 3;
    o.layers[0] = d, o.layers[1] = 7, o.layers[2] = 5;
    o.steps = 1000;
    o.batch = 128;
    sae_train_data *data;
    sae_trainer *t = train_on(x, n, d, &o, &data);
    char *dir = sae_fixture_tmpdir("train-ae");
    sae_error err;
    ck_assert_msg(sae_trainer_save(t, dir, NULL, 0, &err) == 0, "%s", err.msg);
    sae_model *m = NULL;
    ck_assert_msg(sae_model_load(dir, &m, NULL, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(m->arch, SAE_ARCH_AUTOENCODER);
    ck_assert_uint_eq(m->d_in, d);
    ck_assert_uint_eq(m->d_sae, 5);
    /* codes from the saved model on raw rows = the trained net's bottleneck on
     * scaled rows, computed here by hand */
    size_t rows = 5;
    float codes[5 * 5];
    ck_assert_msg(sae_ae_encode(m->ae, x, rows, codes, &err) == 0, "%s", err.msg);
    sae_train_shape s;
    const float *p = sae_trainer_params(t, &s);
    double scale = sae_trainer_scale(t);
    const float *w0 = p, *b0 = w0 + d * 7, *w1 = b0 + 7, *b1 = w1 + 7 * 5;
    int nonzero = 0;
    for (size_t r = 0; r < rows; r++) {
        double h[7];
        for (size_t c = 0; c < 7; c++) {
            double v = b0[c];
            for (size_t j = 0; j < d; j++)
                v += scale * x[r * d + j] * w0[j * 7 + c];
            h[c] = v > 0 ? v : 0;
        }
        for (size_t c = 0; c < 5; c++) {
            double v = b1[c];
            for (size_t j = 0; j < 7; j++)
                v += h[j] * w1[j * 5 + c];
            v = v > 0 ? v : 0;
            nonzero += v > 0;
            ck_assert_msg(fabs(codes[r * 5 + c] - v) <= 1e-4 * (1 + fabs(v)),
                          "row %zu code %zu: %g vs %g", r, c, codes[r * 5 + c], v);
        }
    }
    ck_assert_msg(nonzero > 0, "all codes zero");
    /* and the trained net reconstructs: its fvu is well under 1 */
    ck_assert_msg(sae_trainer_last(t)->fvu < 0.05, "fvu %g", sae_trainer_last(t)->fvu);
    sae_model_free(m);
    sae_trainer_free(t);
    sae_train_data_free(data);
    sae_fixture_rmtree(dir);
    free(dir);
    free(x);
}
END_TEST

/* ---- ground truth (slow suite) ---- */

/* Mean over truth rows (g, d) of the best cosine with a row of w_dec (m, d). */
static double mmcs(const float *w_dec, size_t m, const float *truth, size_t g, size_t d)
{
    double total = 0;
    for (size_t t = 0; t < g; t++) {
        double best = -1;
        for (size_t i = 0; i < m; i++) {
            double dot = 0, nn = 0;
            for (size_t j = 0; j < d; j++) {
                dot += (double)w_dec[i * d + j] * truth[t * d + j];
                nn += (double)w_dec[i * d + j] * w_dec[i * d + j];
            }
            double c = nn > 0 ? dot / sqrt(nn) : 0;
            best = c > best ? c : best;
        }
        total += best;
    }
    return total / g;
}

/* Trains a default-settings standard SAE of d_sae latents on the issue's
 * generator (g 256, d 64, p 0.02, 100k rows) drawn from seed, and asserts
 * MMCS >= 0.98, printing steps and seconds. */
static void recovery(size_t d_sae, uint64_t seed)
{
    size_t g = 256, d = 64, n = 100000;
    float *truth = malloc(g * d * sizeof *truth);
    float *x = sparse_data(n, d, g, 0.02, seed, truth);
    sae_train_opts o;
    sae_train_opts_init(&o);
    o.d_sae = d_sae;
    o.seed = seed;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_t c0 = clock();
    sae_train_data *data;
    sae_trainer *t = train_on(x, n, d, &o, &data);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    double cpu = (double)(clock() - c0) / CLOCKS_PER_SEC;
    double score = mmcs(sae_trainer_w_dec(t), d_sae, truth, g, d);
    const sae_train_stats *st = sae_trainer_last(t);
    const sae_train_opts *ro = sae_trainer_opts(t);
    fprintf(stderr,
            "recovery g=%zu d=%zu d_sae=%zu seed=%llu: MMCS %.4f, %zu steps x %zu rows, "
            "%.1f s wall (%.1f s cpu), l0 %.2f, fvu %.4f, dead %zu, resampled %zu\n",
            g, d, d_sae, (unsigned long long)seed, score, ro->steps, ro->batch, secs, cpu, st->l0,
            st->fvu, st->dead, st->resampled);
    ck_assert_msg(score >= 0.98, "MMCS %.4f < 0.98 at d_sae %zu seed %llu", score, d_sae,
                  (unsigned long long)seed);
    sae_trainer_free(t);
    sae_train_data_free(data);
    free(x);
    free(truth);
}

START_TEST(test_recovery_g)
{
    recovery(256, 1);
}
END_TEST

START_TEST(test_recovery_2g)
{
    recovery(512, 2);
}
END_TEST

static Suite *fast_suite(void)
{
    Suite *s = suite_create("train");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_grad_standard);
    tcase_add_test(tc, test_grad_topk);
    tcase_add_test(tc, test_grad_autoencoder);
    tcase_add_test(tc, test_scaling_and_init);
    tcase_add_test(tc, test_deterministic);
    tcase_add_test(tc, test_streaming);
    tcase_add_test(tc, test_bad_memory_data);
    tcase_add_test(tc, test_bad_files);
    tcase_add_test(tc, test_save_load);
    tcase_add_test(tc, test_autoencoder_save_encode);
    suite_add_tcase(s, tc);
    return s;
}

static Suite *slow_suite(void)
{
    Suite *s = suite_create("train_slow");
    TCase *tc = tcase_create("recovery");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_recovery_g);
    tcase_add_test(tc, test_recovery_2g);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    bool slow = argc > 1 && !strcmp(argv[1], "slow");
    return unit_run(slow ? slow_suite() : fast_suite());
}
