/* train_loop.c: the trainer of `sae train`: shapes, options and their
 * defaults, the data check and scale, initialisation, Adam with warm-up and
 * decay, and the steps. The forward and backward passes are in layers.h,
 * instantiated below for float and double; the rows come from train_data.c,
 * dead latents are resampled by train_resample.c and the folder is written by
 * train_save.c. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/clock.h"
#include "io/rng.h"
#include "train/train_int.h"

/* Batch sums the layer code adds to (a plain struct, the same for both types). */
typedef struct train_batch_stats {
    double sse; /* Σ‖x − x̂‖² */
    double l1;  /* Σ_b Σ_i f_bi ‖W_dec,i‖ */
    double l0;  /* Σ_b #{i : f_bi > 0} */
} train_batch_stats;


/* Widths of the autoencoder's layers, down then up: dims[0..n_lin]; returns
 * n_lin, the number of linear layers (2·(n_layers − 1)). */
size_t train_ae_dims(const sae_train_shape *s, size_t *dims)
{
    size_t n = s->n_layers, k = 0;
    for (size_t i = 0; i < n; i++)
        dims[k++] = s->layers[i];
    for (size_t i = n - 1; i-- > 0;)
        dims[k++] = s->layers[i];
    return k - 1;
}

/* The per-row loops of layers.h are simple enough to vectorize, but
 * GCC does not vectorize at -O2 (the debugoptimized build); ask for it on
 * those functions. Clang vectorizes at -O2 already. */
#if defined(__GNUC__) && !defined(__clang__)
#define TL_VEC __attribute__((optimize("tree-vectorize", "vect-cost-model=dynamic")))
#else
#define TL_VEC
#endif

/* float: the types came with train_int.h */
#define TL_FUNCS_ONLY
#define TL_REAL float
#define TL_SFX f32
#define TL_GEMM cblas_sgemm
#define TL_GEMV cblas_sgemv
#include "train/layers.h"
#undef TL_REAL
#undef TL_SFX
#undef TL_GEMM
#undef TL_GEMV
#undef TL_FUNCS_ONLY

#define TL_REAL double
#define TL_SFX f64
#define TL_GEMM cblas_dgemm
#define TL_GEMV cblas_dgemv
#include "train/layers.h"
#undef TL_REAL
#undef TL_SFX
#undef TL_GEMM
#undef TL_GEMV

/* ---- shapes ---- */

int sae_train_shape_check(const sae_train_shape *s, sae_error *err)
{
    if (s->arch != SAE_ARCH_STANDARD && s->arch != SAE_ARCH_TOPK &&
        s->arch != SAE_ARCH_AUTOENCODER)
        return sae_error_set(err, SAE_EINVAL, "architecture %s cannot be trained",
                             sae_arch_name(s->arch));
    if (!s->d_in || !s->d_sae)
        return sae_error_set(err, SAE_EINVAL, "d_in and d_sae must be at least 1");
    if (s->d_in > INT32_MAX || s->d_sae > INT32_MAX)
        return sae_error_set(err, SAE_EINVAL, "d_in and d_sae must be below 2^31");
    if (s->arch == SAE_ARCH_TOPK && (s->k < 1 || s->k > s->d_sae))
        return sae_error_set(err, SAE_EINVAL, "k must lie in [1, d_sae = %zu], got %zu",
                             s->d_sae, s->k);
    size_t n = 0, t;
    if (s->arch == SAE_ARCH_AUTOENCODER) {
        if (s->n_layers < 2 || s->n_layers > SAE_AE_MAX_LAYERS)
            return sae_error_set(err, SAE_EINVAL,
                                 "layers: need 2 to %d widths (d_in first, bottleneck last)",
                                 SAE_AE_MAX_LAYERS);
        if (s->layers[0] != s->d_in)
            return sae_error_set(err, SAE_EINVAL,
                                 "layers: the first width must be d_in = %zu, got %zu", s->d_in,
                                 s->layers[0]);
        if (s->layers[s->n_layers - 1] != s->d_sae)
            return sae_error_set(err, SAE_EINVAL, "layers: the last width must be d_sae");
        for (size_t i = 0; i < s->n_layers; i++)
            if (!s->layers[i] || s->layers[i] > INT32_MAX)
                return sae_error_set(err, SAE_EINVAL, "layers: width %zu out of range", i);
    }
    if (s->arch != SAE_ARCH_AUTOENCODER) {
        if (sae_mul_size(s->d_in, s->d_sae, &t) || sae_mul_size(t, 2, &n) ||
            sae_add_size(n, s->d_in + s->d_sae, &n))
            return sae_error_set(err, SAE_ENOMEM, "d_in x d_sae overflows");
    } else {
        size_t dims[SAE_AE_MAX_LINEAR + 1], n_lin = train_ae_dims(s, dims);
        for (size_t l = 0; l < n_lin; l++)
            if (sae_mul_size(dims[l], dims[l + 1], &t) || sae_add_size(n, t, &n) ||
                sae_add_size(n, dims[l + 1], &n))
                return sae_error_set(err, SAE_ENOMEM, "layer sizes overflow");
    }
    /* Adam keeps four copies and BLAS takes int dimensions */
    if (n > SIZE_MAX / 4 / sizeof(double))
        return sae_error_set(err, SAE_ENOMEM, "model too large");
    return 0;
}

size_t sae_train_n_params(const sae_train_shape *s)
{
    if (s->arch != SAE_ARCH_AUTOENCODER)
        return 2 * s->d_in * s->d_sae + s->d_in + s->d_sae;
    size_t dims[SAE_AE_MAX_LINEAR + 1], n_lin = train_ae_dims(s, dims), n = 0;
    for (size_t l = 0; l < n_lin; l++)
        n += dims[l] * dims[l + 1] + dims[l + 1];
    return n;
}

/* ---- the gradient-check entry points ---- */

int sae_train_loss_grad_f64(const sae_train_shape *s, const double *params, const double *x,
                            size_t n, double l1_coeff, double *loss, double *grad,
                            sae_error *err)
{
    int rc = sae_train_shape_check(s, err);
    if (rc)
        return rc;
    if (!n)
        return sae_error_set(err, SAE_EINVAL, "no rows");
    size_t count = acts_count_f64(s, n);
    double *buf = count ? malloc(count * sizeof *buf) : NULL;
    if (!buf)
        return sae_error_set(err, SAE_ENOMEM, "out of memory for activations");
    tensors_f64 p, g;
    acts_f64 a;
    tensors_carve_f64(s, (double *)params, &p); /* only read */
    tensors_carve_f64(s, grad, &g);
    acts_carve_f64(s, n, buf, &a);
    train_batch_stats st = {0};
    *loss = s->arch == SAE_ARCH_AUTOENCODER ? ae_step_f64(s, &p, &g, &a, x, n, &st)
                                            : sae_step_f64(s, &p, &g, &a, x, n, l1_coeff, &st);
    free(buf);
    return 0;
}

int sae_train_loss_grad_f32(const sae_train_shape *s, const float *params, const float *x,
                            size_t n, double l1_coeff, double *loss, float *grad,
                            sae_error *err)
{
    int rc = sae_train_shape_check(s, err);
    if (rc)
        return rc;
    if (!n)
        return sae_error_set(err, SAE_EINVAL, "no rows");
    size_t count = acts_count_f32(s, n);
    float *buf = count ? malloc(count * sizeof *buf) : NULL;
    if (!buf)
        return sae_error_set(err, SAE_ENOMEM, "out of memory for activations");
    tensors_f32 p, g;
    acts_f32 a;
    tensors_carve_f32(s, (float *)params, &p); /* only read */
    tensors_carve_f32(s, grad, &g);
    acts_carve_f32(s, n, buf, &a);
    train_batch_stats st = {0};
    *loss = s->arch == SAE_ARCH_AUTOENCODER ? ae_step_f32(s, &p, &g, &a, x, n, &st)
                                            : sae_step_f32(s, &p, &g, &a, x, n, l1_coeff, &st);
    free(buf);
    return 0;
}

/* ---- the trainer ---- */
void sae_train_opts_init(sae_train_opts *o)
{
    memset(o, 0, sizeof *o);
    o->arch = SAE_ARCH_STANDARD;
    o->l1 = -1;
    o->decay_frac = -1;
    o->l1_warmup_frac = -1;
    o->resample = -1;
}

/* Default number of steps: 20 passes over the corpus, at least 2000 steps
 * (small corpora) and at most 50,000 (large ones). */
static size_t default_steps(size_t n_rows, size_t batch)
{
    double steps = 20.0 * (double)n_rows / (double)batch;
    if (steps < 2000)
        steps = 2000;
    if (steps > 50000)
        steps = 50000;
    return (size_t)steps;
}

/* Fills every "default" field of o from the data's size, and s from o.
 * Idempotent: resolved options resolve to themselves. */
static int resolve_opts(sae_train_opts *o, const sae_train_data *d, sae_train_shape *s,
                        sae_error *err)
{
    size_t d_in = d->d_in;
    memset(s, 0, sizeof *s);
    s->arch = o->arch;
    s->d_in = d_in;
    if (o->arch == SAE_ARCH_AUTOENCODER) {
        if (!o->n_layers) {
            o->n_layers = 3;
            o->layers[0] = d_in;
            o->layers[1] = d_in / 2 ? d_in / 2 : 1;
            o->layers[2] = d_in / 4 ? d_in / 4 : 1;
        }
        if (o->n_layers > SAE_AE_MAX_LAYERS)
            return sae_error_set(err, SAE_EINVAL, "layers: at most %d widths",
                                 SAE_AE_MAX_LAYERS);
        if (o->d_sae && o->d_sae != o->layers[o->n_layers - 1])
            return sae_error_set(err, SAE_EINVAL,
                                 "d_sae %zu differs from the bottleneck width %zu", o->d_sae,
                                 o->layers[o->n_layers - 1]);
        o->d_sae = o->layers[o->n_layers - 1];
        s->n_layers = o->n_layers;
        memcpy(s->layers, o->layers, sizeof s->layers);
    } else {
        if (o->n_layers)
            return sae_error_set(err, SAE_EINVAL, "layers apply to the autoencoder only");
        if (!o->d_sae)
            o->d_sae = 4 * d_in;
        if (o->arch == SAE_ARCH_TOPK && !o->k)
            o->k = o->d_sae / 2 < 32 ? (o->d_sae / 2 ? o->d_sae / 2 : 1) : 32;
    }
    if (o->arch != SAE_ARCH_TOPK && o->k && o->arch != SAE_ARCH_AUTOENCODER)
        return sae_error_set(err, SAE_EINVAL, "k applies to topk only");
    s->d_sae = o->d_sae;
    s->k = o->k;
    int rc = sae_train_shape_check(s, err);
    if (rc)
        return rc;
    if (o->l1 < 0)
        o->l1 = 1.0;
    if (!o->lr)
        o->lr = 4e-3;
    if (!o->batch)
        o->batch = 1024;
    if (o->batch > INT32_MAX)
        return sae_error_set(err, SAE_EINVAL, "batch must be below 2^31");
    if (!o->steps)
        o->steps = default_steps(d->n_rows, o->batch);
    if (!o->lr_warmup)
        o->lr_warmup = o->steps / 20 < 1000 ? o->steps / 20 : 1000;
    if (o->decay_frac < 0)
        o->decay_frac = 0.2;
    if (o->decay_frac > 1)
        return sae_error_set(err, SAE_EINVAL, "decay fraction must lie in [0, 1]");
    if (o->l1_warmup_frac < 0)
        o->l1_warmup_frac = 0.05;
    if (o->l1_warmup_frac > 1)
        return sae_error_set(err, SAE_EINVAL, "l1 warm-up fraction must lie in [0, 1]");
    if (!o->init_norm)
        o->init_norm = 0.1;
    if (!o->dead_window)
        o->dead_window = d->n_rows < 1000000 ? d->n_rows : 1000000;
    if (o->resample < 0)
        o->resample = 1;
    if (o->dup_cos <= 0)
        o->dup_cos = 0.8;
    if (o->dup_cos > 1)
        return sae_error_set(err, SAE_EINVAL, "duplicate cosine must lie in (0, 1]");
    if (!o->log_every)
        o->log_every = o->steps / 100 ? o->steps / 100 : 1;
    if (!o->shuffle_mib)
        o->shuffle_mib = 1024;
    if (!o->model_name[0])
        snprintf(o->model_name, sizeof o->model_name, "synthetic");
    if (!o->hook_name[0])
        snprintf(o->hook_name, sizeof o->hook_name, "hook_synth");
    return 0;
}

/* Reads the whole corpus once: refuses a non-finite value (naming the file
 * and row), and computes the mean row norm and the mean row (unscaled). */
static int check_data(const sae_train_data *d, double *mean_norm, double *mean, sae_error *err)
{
    size_t block = 8192, d_in = d->d_in;
    float *buf = malloc(block * d_in * sizeof *buf);
    int rc = 0;
    if (!buf)
        return sae_error_set(err, SAE_ENOMEM, "out of memory reading the activations");
    double norm_sum = 0;
    memset(mean, 0, d_in * sizeof *mean);
    for (size_t r0 = 0; r0 < d->n_rows; r0 += block) {
        size_t n = d->n_rows - r0 < block ? d->n_rows - r0 : block;
        if ((rc = train_data_read(d, r0, n, buf, err)))
            goto out;
        for (size_t r = 0; r < n; r++) {
            const float *row = buf + r * d_in;
            double s = 0;
            for (size_t j = 0; j < d_in; j++) {
                if (!isfinite(row[j])) {
                    size_t local;
                    const char *file = train_data_locate(d, r0 + r, &local);
                    rc = sae_error_set(err, SAE_ERANGE,
                                       "%s: row %zu has a non-finite value (%g) in column %zu",
                                       file, local, (double)row[j], j);
                    goto out;
                }
                s += (double)row[j] * row[j];
                mean[j] += row[j];
            }
            norm_sum += sqrt(s);
        }
    }
    for (size_t j = 0; j < d_in; j++)
        mean[j] /= (double)d->n_rows;
    *mean_norm = norm_sum / (double)d->n_rows;
out:
    free(buf);
    return rc;
}

/* Draws a random unit vector of length n into v. */
static void random_direction(float *v, size_t n, sae_rng *r)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) {
        v[i] = (float)sae_rng_normal(r);
        s += (double)v[i] * v[i];
    }
    float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0;
    for (size_t i = 0; i < n; i++)
        v[i] *= inv;
}

/* Initial parameters: see train.h. */
static void init_params(sae_trainer *t)
{
    const sae_train_shape *s = &t->shape;
    memset(t->params, 0, t->n_params * sizeof *t->params);
    if (s->arch != SAE_ARCH_AUTOENCODER) {
        size_t d_in = s->d_in, d_sae = s->d_sae;
        for (size_t i = 0; i < d_sae; i++) {
            float *row = t->p.w_dec + i * d_in;
            random_direction(row, d_in, &t->rng);
            for (size_t j = 0; j < d_in; j++) {
                row[j] *= (float)t->o.init_norm;
                t->p.w_enc[j * d_sae + i] = row[j];
            }
        }
        for (size_t j = 0; j < d_in; j++)
            t->p.b_dec[j] = t->mean[j];
        return;
    }
    size_t dims[SAE_AE_MAX_LINEAR + 1], n_lin = train_ae_dims(s, dims);
    for (size_t l = 0; l < n_lin; l++) {
        /* He initialisation ahead of a ReLU, 1/√fan_in for the linear output */
        double sd = sqrt((l + 1 < n_lin ? 2.0 : 1.0) / (double)dims[l]);
        for (size_t i = 0; i < dims[l] * dims[l + 1]; i++)
            t->p.w[l][i] = (float)(sd * sae_rng_normal(&t->rng));
    }
    /* the output starts at the data's mean, as an SAE's b_dec does */
    for (size_t j = 0; j < s->d_in; j++)
        t->p.b[n_lin - 1][j] = t->mean[j];
}

int sae_train_opts_resolve(sae_train_opts *o, const sae_train_data *data, sae_error *err)
{
    sae_train_shape s;
    return resolve_opts(o, data, &s, err);
}

int sae_trainer_new(const sae_train_opts *opts, sae_train_data *data, sae_trainer **out,
                    sae_error *err)
{
    sae_trainer *t = calloc(1, sizeof *t);
    double *mean = NULL;
    int rc = 0;
    if (!t)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    t->o = *opts;
    t->data = data;
    if (!data->n_rows) {
        rc = sae_error_set(err, SAE_EINVAL, "%s: no rows to train on", data->names[0]);
        goto out;
    }
    if ((rc = resolve_opts(&t->o, data, &t->shape, err)))
        goto out;
    sae_rng_seed(&t->rng, t->o.seed);

    /* the data: finite, nonzero, and its scale */
    size_t d_in = data->d_in, d_sae = t->shape.d_sae;
    double mean_norm = 0;
    if (!(mean = malloc(d_in * sizeof *mean))) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = check_data(data, &mean_norm, mean, err)))
        goto out;
    if (!(mean_norm > 0)) {
        rc = sae_error_set(err, SAE_EINVAL, "%s: every row is zero", data->names[0]);
        goto out;
    }
    t->scale = sqrt((double)d_in) / mean_norm;

    /* one allocation for params, grads and Adam's moments */
    t->n_params = sae_train_n_params(&t->shape);
    t->mem = calloc(4 * t->n_params, sizeof *t->mem);
    size_t n_act = acts_count_f32(&t->shape, t->o.batch);
    t->act_mem = n_act ? malloc(n_act * sizeof *t->act_mem) : NULL;
    t->x = malloc(t->o.batch * d_in * sizeof *t->x);
    t->mean = malloc(d_in * sizeof *t->mean);
    t->last_fired = calloc(d_sae, sizeof *t->last_fired);
    t->usage = calloc(d_sae, sizeof *t->usage);
    t->mark = calloc(d_sae, sizeof *t->mark);
    if (!t->mem || !t->act_mem || !t->x || !t->mean || !t->last_fired || !t->usage ||
        !t->mark) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory for a model of %zu parameters",
                           t->n_params);
        goto out;
    }
    t->params = t->mem;
    t->grads = t->params + t->n_params;
    t->adam_m = t->grads + t->n_params;
    t->adam_v = t->adam_m + t->n_params;
    tensors_carve_f32(&t->shape, t->params, &t->p);
    tensors_carve_f32(&t->shape, t->grads, &t->g);
    tensors_carve_f32(&t->shape, t->adam_m, &t->m);
    tensors_carve_f32(&t->shape, t->adam_v, &t->v);
    acts_carve_f32(&t->shape, t->o.batch, t->act_mem, &t->a);
    for (size_t j = 0; j < d_in; j++)
        t->mean[j] = (float)(mean[j] * t->scale);
    init_params(t);
    rc = train_shuffler_init(&t->sh, data, (float)t->scale, t->o.shuffle_mib, t->o.batch,
                             t->o.seed, err);
out:
    free(mean);
    if (rc) {
        sae_trainer_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void sae_trainer_free(sae_trainer *t)
{
    if (!t)
        return;
    train_shuffler_free(&t->sh);
    free(t->mem);
    free(t->act_mem);
    free(t->x);
    free(t->mean);
    free(t->last_fired);
    free(t->usage);
    free(t->mark);
    free(t);
}

const sae_train_opts *sae_trainer_opts(const sae_trainer *t)
{
    return &t->o;
}

double sae_trainer_scale(const sae_trainer *t)
{
    return t->scale;
}

const sae_train_stats *sae_trainer_last(const sae_trainer *t)
{
    return &t->last;
}

const float *sae_trainer_w_dec(const sae_trainer *t)
{
    return t->shape.arch == SAE_ARCH_AUTOENCODER ? NULL : t->p.w_dec;
}

const float *sae_trainer_params(const sae_trainer *t, sae_train_shape *shape)
{
    if (shape)
        *shape = t->shape;
    return t->params;
}

/* Learning rate at step (0-based): linear warm-up, flat, linear decay to 0. */
static double lr_at(const sae_train_opts *o, size_t step)
{
    double lr = o->lr;
    if (o->lr_warmup && step < o->lr_warmup)
        lr *= (double)(step + 1) / (double)o->lr_warmup;
    size_t decay = (size_t)(o->decay_frac * (double)o->steps);
    if (decay && step >= o->steps - decay)
        lr *= (double)(o->steps - step) / (double)decay;
    return lr;
}

/* λ at step (0-based): linear warm-up from 0. */
static double l1_at(const sae_train_opts *o, size_t step)
{
    size_t warm = (size_t)(o->l1_warmup_frac * (double)o->steps);
    if (warm && step < warm)
        return o->l1 * (double)(step + 1) / (double)warm;
    return o->l1;
}

/* One Adam update of every parameter (t_step 1-based). */
static void adam_update(sae_trainer *t, double lr, size_t t_step)
{
    const float b1 = 0.9f, b2 = 0.999f, eps = 1e-8f;
    double c1 = 1.0 - pow(b1, (double)t_step), c2 = 1.0 - pow(b2, (double)t_step);
    float step_size = (float)(lr / c1), inv_c2 = (float)(1.0 / c2);
    float *p = t->params, *g = t->grads, *m = t->adam_m, *v = t->adam_v;
    for (size_t i = 0; i < t->n_params; i++) {
        m[i] = b1 * m[i] + (1 - b1) * g[i];
        v[i] = b2 * v[i] + (1 - b2) * g[i] * g[i];
        p[i] -= step_size * m[i] / (sqrtf(v[i] * inv_c2) + eps);
    }
}

/* Σ‖x − x̄‖² of the batch (x̄ its mean row), for the FVU. */
static double batch_variance(const float *x, size_t B, size_t d)
{
    double total = 0;
    for (size_t j = 0; j < d; j++) {
        double s = 0, s2 = 0;
        for (size_t r = 0; r < B; r++) {
            double v = x[r * d + j];
            s += v;
            s2 += v * v;
        }
        total += s2 - s * s / (double)B;
    }
    return total;
}

int sae_trainer_run(sae_trainer *t, sae_train_cb cb, void *ctx, sae_error *err)
{
    if (t->ran)
        return sae_error_set(err, SAE_EINVAL, "this trainer has already run");
    t->ran = true;
    const sae_train_opts *o = &t->o;
    const sae_train_shape *s = &t->shape;
    size_t B = o->batch, d_in = s->d_in, rows = 0, resampled = 0;
    bool is_sae = s->arch != SAE_ARCH_AUTOENCODER;
    double t0 = sae_clock_s();
    train_batch_stats win = {0};
    double win_loss = 0, win_var = 0;
    size_t win_steps = 0, win_rows = 0;
    for (size_t step = 0; step < o->steps; step++) {
        int rc = train_shuffler_next(&t->sh, t->x, B, err);
        if (rc)
            return rc;
        double lr = lr_at(o, step), lam = l1_at(o, step), loss;
        if (is_sae)
            loss = sae_step_f32(s, &t->p, &t->g, &t->a, t->x, B, lam, &win);
        else
            loss = ae_step_f32(s, &t->p, &t->g, &t->a, t->x, B, &win);
        if (!isfinite(loss))
            return sae_error_set(err, SAE_ERANGE,
                                 "training diverged at step %zu (loss %g): lower --lr", step + 1,
                                 loss);
        rows += B;
        size_t dead = is_sae ? train_latents_update(t, step, rows, &resampled) : 0;
        adam_update(t, lr, step + 1);
        win_loss += loss;
        win_var += batch_variance(t->x, B, d_in);
        win_steps++;
        win_rows += B;

        sae_train_stats *st = &t->last;
        st->step = step + 1;
        st->steps = o->steps;
        st->rows = rows;
        st->dead = dead;
        st->resampled = resampled;
        st->lr = lr;
        st->l1_coeff = is_sae && s->arch == SAE_ARCH_STANDARD ? lam : 0;
        st->seconds = sae_clock_s() - t0;
        st->logged = (step + 1) % o->log_every == 0 || step + 1 == o->steps;
        if (st->logged) {
            st->loss = win_loss / (double)win_steps;
            st->mse = win.sse / ((double)win_rows * (double)d_in);
            st->l1 = win.l1 / (double)win_rows;
            st->l0 = win.l0 / (double)win_rows;
            st->fvu = win_var > 0 ? win.sse / win_var : 0;
            memset(&win, 0, sizeof win);
            win_loss = win_var = 0;
            win_steps = win_rows = 0;
        }
        if (cb)
            cb(ctx, st);
    }
    t->seconds = t->last.seconds;
    return 0;
}
