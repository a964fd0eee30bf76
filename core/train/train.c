/* train.c: the training loop of `sae train`: data checking and shuffling,
 * initialisation, Adam with warm-up and decay, dead-latent tracking and
 * resampling, and saving the SAELens-layout folder. The forward and backward
 * passes are in train_layers.h, instantiated below for float and double. */
#include "train/train.h"

#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "io/clock.h"
#include "io/activations.h"
#include "io/outfile.h"
#include "io/rng.h"
#include "io/safetensors.h"

/* Batch sums the layer code adds to (a plain struct, the same for both types). */
typedef struct train_batch_stats {
    double sse; /* Σ‖x − x̂‖² */
    double l1;  /* Σ_b Σ_i f_bi ‖W_dec,i‖ */
    double l0;  /* Σ_b #{i : f_bi > 0} */
} train_batch_stats;

/* Widths of the autoencoder's layers, down then up: dims[0..n_lin]; returns
 * n_lin, the number of linear layers (2·(n_layers − 1)). */
static size_t ae_dims(const sae_train_shape *s, size_t *dims)
{
    size_t n = s->n_layers, k = 0;
    for (size_t i = 0; i < n; i++)
        dims[k++] = s->layers[i];
    for (size_t i = n - 1; i-- > 0;)
        dims[k++] = s->layers[i];
    return k - 1;
}

/* The per-row loops of train_layers.h are simple enough to vectorize, but
 * GCC does not vectorize at -O2 (the debugoptimized build); ask for it on
 * those functions. Clang vectorizes at -O2 already. */
#if defined(__GNUC__) && !defined(__clang__)
#define TL_VEC __attribute__((optimize("tree-vectorize", "vect-cost-model=dynamic")))
#else
#define TL_VEC
#endif

#define TL_REAL float
#define TL_SFX f32
#define TL_GEMM cblas_sgemm
#define TL_GEMV cblas_sgemv
#include "train/layers.h"
#undef TL_REAL
#undef TL_SFX
#undef TL_GEMM
#undef TL_GEMV

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
        size_t dims[SAE_AE_MAX_LINEAR + 1], n_lin = ae_dims(s, dims);
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
    size_t dims[SAE_AE_MAX_LINEAR + 1], n_lin = ae_dims(s, dims), n = 0;
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

/* ---- data ---- */

/* A corpus of rows: activation files opened as one sae_acts (with each file's
 * first row remembered, for messages), or a borrowed array. */
struct sae_train_data {
    size_t n_rows, d_in;
    const float *mem;  /* (n_rows, d_in) borrowed, or NULL */
    sae_acts *acts;    /* owned, or NULL */
    size_t n_files;
    char **names;      /* (n_files) owned: file paths, or the array's name */
    size_t *row0;      /* (n_files + 1) first row of each file, then n_rows */
};

void sae_train_data_free(sae_train_data *d)
{
    if (!d)
        return;
    if (d->acts)
        sae_acts_free(d->acts);
    for (size_t i = 0; i < d->n_files; i++)
        free(d->names[i]);
    free(d->names);
    free(d->row0);
    free(d);
}

/* Allocates a data object with room for n names; on failure returns NULL. */
static sae_train_data *data_alloc(size_t n)
{
    sae_train_data *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->names = calloc(n, sizeof *d->names);
    d->row0 = calloc(n + 1, sizeof *d->row0);
    if (!d->names || !d->row0) {
        free(d->names);
        free(d->row0);
        free(d);
        return NULL;
    }
    return d;
}

int sae_train_data_open(const char *const *paths, size_t n_paths, sae_train_data **out,
                        sae_error *err)
{
    if (!n_paths)
        return sae_error_set(err, SAE_EINVAL, "no activation files given");
    sae_train_data *d = data_alloc(n_paths);
    int rc = 0;
    if (!d)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    d->n_files = n_paths;
    /* each file alone first, for its row count, so a bad row can be named by
     * file and row within it */
    for (size_t i = 0; i < n_paths; i++) {
        sae_acts *one = NULL;
        if ((rc = sae_acts_open(&paths[i], 1, &one, err)))
            goto out;
        d->row0[i + 1] = d->row0[i] + sae_acts_rows(one);
        sae_acts_free(one);
        if (!(d->names[i] = strdup(paths[i]))) {
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
            goto out;
        }
    }
    if ((rc = sae_acts_open(paths, n_paths, &d->acts, err)))
        goto out;
    d->n_rows = sae_acts_rows(d->acts);
    d->d_in = sae_acts_dim(d->acts);
    if (d->n_rows != d->row0[n_paths]) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: row counts changed while opening", paths[0]);
        goto out;
    }
out:
    if (rc) {
        sae_train_data_free(d);
        return rc;
    }
    *out = d;
    return 0;
}

int sae_train_data_memory(const float *rows, size_t n, size_t d_in, const char *name,
                          sae_train_data **out, sae_error *err)
{
    sae_train_data *d = data_alloc(1);
    if (!d || !(d->names[0] = strdup(name ? name : "(memory)"))) {
        sae_train_data_free(d);
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    }
    d->n_files = 1;
    d->mem = rows;
    d->n_rows = n;
    d->d_in = d_in;
    d->row0[1] = n;
    *out = d;
    return 0;
}

size_t sae_train_data_rows(const sae_train_data *d)
{
    return d->n_rows;
}

size_t sae_train_data_dim(const sae_train_data *d)
{
    return d->d_in;
}

/* Copies rows [row0, row0 + n) into dst (n, d_in). */
static int data_read(const sae_train_data *d, size_t row0, size_t n, float *dst, sae_error *err)
{
    if (d->mem) {
        memcpy(dst, d->mem + row0 * d->d_in, n * d->d_in * sizeof *dst);
        return 0;
    }
    return sae_acts_read(d->acts, row0, n, dst, err);
}

/* The file holding corpus row `row`, and the row's index within it. */
static const char *data_locate(const sae_train_data *d, size_t row, size_t *local)
{
    size_t f = 0;
    while (f + 1 < d->n_files && row >= d->row0[f + 1])
        f++;
    *local = row - d->row0[f];
    return d->names[f];
}

/* ---- shuffling ---- */

/* Serves rows in a seeded random order from a buffer of scaled rows. When the
 * corpus fits the buffer it is read once and re-permuted every epoch;
 * otherwise blocks of block_rows are drawn in a random order each epoch, as
 * many as fit, and the buffer's rows permuted. */
typedef struct shuffler {
    const sae_train_data *data; /* borrowed */
    float scale;
    size_t d_in;
    size_t cap;                 /* buffer capacity in rows */
    float *buf;                 /* (cap, d_in) scaled rows, owned */
    uint32_t *perm;             /* (cap) serving order, owned */
    size_t n_buf, pos;          /* rows in the buffer; next position in perm */
    bool whole, loaded;         /* the corpus fits; it has been read */
    size_t block_rows, n_blocks;
    size_t *blocks;             /* (n_blocks) this epoch's block order, owned */
    size_t next_block;
    sae_rng rng;
} shuffler;

/* Fisher-Yates shuffles of v[0..n) from r. */
static void shuffle_u32(uint32_t *v, size_t n, sae_rng *r)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = sae_rng_below(r, i);
        uint32_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* The same for block indices. */
static void shuffle_size(size_t *v, size_t n, sae_rng *r)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = sae_rng_below(r, i);
        size_t t = v[i - 1];
        v[i - 1] = v[j];
        v[j] = t;
    }
}

/* Sizes the buffer for budget_mib (at least min_rows rows, the whole corpus
 * when it fits) and allocates it; sh owns its buffers afterwards, even on
 * failure (shuffler_free releases them). */
static int shuffler_init(shuffler *sh, const sae_train_data *data, float scale, size_t budget_mib,
                         size_t min_rows, uint64_t seed, sae_error *err)
{
    memset(sh, 0, sizeof *sh);
    sh->data = data;
    sh->scale = scale;
    sh->d_in = data->d_in;
    sae_rng_seed(&sh->rng, seed ^ 0x5368756666ull);
    size_t budget_rows = budget_mib * (size_t)1 << 20;
    budget_rows /= sizeof(float) * sh->d_in;
    if (budget_rows < min_rows)
        budget_rows = min_rows;
    if (budget_rows > UINT32_MAX)
        budget_rows = UINT32_MAX;
    sh->whole = data->n_rows <= budget_rows;
    sh->cap = sh->whole ? data->n_rows : budget_rows;
    sh->block_rows = sh->whole ? data->n_rows : (sh->cap / 8 > 4096 ? 4096 : sh->cap / 8 + 1);
    sh->n_blocks = (data->n_rows + sh->block_rows - 1) / sh->block_rows;
    size_t bytes;
    if (sae_mul_size(sh->cap, sh->d_in * sizeof(float), &bytes))
        return sae_error_set(err, SAE_ENOMEM, "shuffle buffer size overflows");
    sh->buf = malloc(bytes);
    sh->perm = malloc(sh->cap * sizeof *sh->perm);
    sh->blocks = malloc(sh->n_blocks * sizeof *sh->blocks);
    if (!sh->buf || !sh->perm || !sh->blocks)
        return sae_error_set(err, SAE_ENOMEM, "out of memory for the shuffle buffer (%zu rows)",
                             sh->cap);
    for (size_t i = 0; i < sh->n_blocks; i++)
        sh->blocks[i] = i;
    sh->next_block = sh->n_blocks; /* start an epoch at the first refill */
    return 0;
}

/* Releases sh's buffers (not the data it borrows). */
static void shuffler_free(shuffler *sh)
{
    free(sh->buf);
    free(sh->perm);
    free(sh->blocks);
}

/* Reads rows [row0, row0+n) into the buffer at position at, scaled. */
static int shuffler_load(shuffler *sh, size_t row0, size_t n, size_t at, sae_error *err)
{
    float *dst = sh->buf + at * sh->d_in;
    int rc = data_read(sh->data, row0, n, dst, err);
    if (rc)
        return rc;
    for (size_t i = 0; i < n * sh->d_in; i++)
        dst[i] *= sh->scale;
    return 0;
}

/* Refills the buffer and draws a fresh serving order. */
static int shuffler_refill(shuffler *sh, sae_error *err)
{
    int rc;
    if (sh->whole) {
        if (!sh->loaded) {
            for (size_t r = 0; r < sh->data->n_rows; r += 65536) {
                size_t n = sh->data->n_rows - r < 65536 ? sh->data->n_rows - r : 65536;
                if ((rc = shuffler_load(sh, r, n, r, err)))
                    return rc;
            }
            sh->loaded = true;
        }
        sh->n_buf = sh->data->n_rows;
    } else {
        sh->n_buf = 0;
        while (sh->n_buf + sh->block_rows <= sh->cap) {
            if (sh->next_block == sh->n_blocks) {
                shuffle_size(sh->blocks, sh->n_blocks, &sh->rng);
                sh->next_block = 0;
            }
            size_t b = sh->blocks[sh->next_block++];
            size_t row0 = b * sh->block_rows;
            size_t n = sh->data->n_rows - row0 < sh->block_rows ? sh->data->n_rows - row0
                                                                : sh->block_rows;
            if ((rc = shuffler_load(sh, row0, n, sh->n_buf, err)))
                return rc;
            sh->n_buf += n;
        }
    }
    for (size_t i = 0; i < sh->n_buf; i++)
        sh->perm[i] = (uint32_t)i;
    shuffle_u32(sh->perm, sh->n_buf, &sh->rng);
    sh->pos = 0;
    return 0;
}

/* Copies the next n rows into x (n, d_in). */
static int shuffler_next(shuffler *sh, float *x, size_t n, sae_error *err)
{
    for (size_t i = 0; i < n; i++) {
        if (sh->pos == sh->n_buf) {
            int rc = shuffler_refill(sh, err);
            if (rc)
                return rc;
        }
        memcpy(x + i * sh->d_in, sh->buf + (size_t)sh->perm[sh->pos++] * sh->d_in,
               sh->d_in * sizeof *x);
    }
    return 0;
}

/* ---- the trainer ---- */

struct sae_trainer {
    sae_train_opts o;        /* resolved */
    sae_train_shape shape;
    sae_train_data *data;    /* borrowed */
    double scale;            /* inputs are trained on as scale·x */
    size_t n_params;
    float *mem;              /* owned: params | grads | Adam m | Adam v, n_params each */
    float *params, *grads, *adam_m, *adam_v;
    tensors_f32 p, g, m, v;  /* named views of the four */
    float *act_mem;          /* owned: the activation buffers */
    acts_f32 a;
    float *x;                /* (batch, d_in) owned: the current batch */
    float *mean;             /* (d_in) owned: the scaled data mean */
    size_t *last_fired;      /* (d_sae) owned: rows seen when each latent last fired */
    double *usage;           /* (d_sae) owned: Σ f of each latent since the last check */
    uint8_t *mark;           /* (d_sae) owned: latents to resample at a check */
    shuffler sh;
    sae_rng rng;
    bool ran;
    double seconds;
    sae_train_stats last;
};

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
        if ((rc = data_read(d, r0, n, buf, err)))
            goto out;
        for (size_t r = 0; r < n; r++) {
            const float *row = buf + r * d_in;
            double s = 0;
            for (size_t j = 0; j < d_in; j++) {
                if (!isfinite(row[j])) {
                    size_t local;
                    const char *file = data_locate(d, r0 + r, &local);
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
    size_t dims[SAE_AE_MAX_LINEAR + 1], n_lin = ae_dims(s, dims);
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
    rc = shuffler_init(&t->sh, data, (float)t->scale, t->o.shuffle_mib, t->o.batch,
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
    shuffler_free(&t->sh);
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

/* Marks (mark[i] = 1) every latent whose decoder row has cosine >= o.dup_cos
 * with the row of a latent used more since the last check (usage: Σ f);
 * such a latent duplicates another and is free for a missing feature. The
 * cosines come block by block from one sgemm of the unit rows. Returns how
 * many it marked. */
static size_t mark_redundant(sae_trainer *t, uint8_t *mark)
{
    const sae_train_shape *s = &t->shape;
    size_t d_in = s->d_in, d_sae = s->d_sae, block = 256, n = 0;
    float *unit = malloc(d_sae * d_in * sizeof *unit);
    float *cos = malloc(block * d_sae * sizeof *cos);
    if (!unit || !cos)
        goto out; /* resampling is an optimisation; training goes on without it */
    for (size_t i = 0; i < d_sae; i++) {
        float nr = t->a.dec_norm[i], inv = nr > 0 ? 1 / nr : 0;
        for (size_t j = 0; j < d_in; j++)
            unit[i * d_in + j] = t->p.w_dec[i * d_in + j] * inv;
    }
    float thr = (float)t->o.dup_cos;
    for (size_t i0 = 0; i0 < d_sae; i0 += block) {
        size_t nb = d_sae - i0 < block ? d_sae - i0 : block;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)d_sae, (int)d_in, 1,
                    unit + i0 * d_in, (int)d_in, unit, (int)d_in, 0, cos, (int)d_sae);
        for (size_t r = 0; r < nb; r++) {
            size_t i = i0 + r;
            for (size_t j = 0; j < d_sae && !mark[i]; j++) {
                if (j == i || cos[r * d_sae + j] < thr)
                    continue;
                if (t->usage[j] > t->usage[i] || (t->usage[j] == t->usage[i] && j < i)) {
                    mark[i] = 1;
                    n++;
                }
            }
        }
    }
out:
    free(unit);
    free(cos);
    return n;
}

/* Re-initialises every marked latent towards the residual of a batch row
 * drawn with probability proportional to its squared error, as Anthropic's
 * "Towards Monosemanticity" does for dead latents: decoder row = the
 * residual's direction at the mean norm of the unmarked rows, encoder column
 * = that direction at 0.2 of the unmarked columns' mean norm, b_enc 0; the
 * Adam moments and this step's gradients of all three are zeroed. Called
 * right after a step, while a->xhat holds dL/dx̂ = (2/B)(x̂ − x). Returns how
 * many were resampled. */
static size_t resample_marked(sae_trainer *t, const uint8_t *mark, size_t rows_seen)
{
    const sae_train_shape *s = &t->shape;
    size_t d_in = s->d_in, d_sae = s->d_sae, B = t->o.batch;
    size_t n_live = 0;
    double dec_live = 0, enc_live = 0;
    for (size_t i = 0; i < d_sae; i++) {
        if (mark[i])
            continue;
        n_live++;
        dec_live += t->a.dec_norm[i];
        double e = 0;
        for (size_t j = 0; j < d_in; j++)
            e += (double)t->p.w_enc[j * d_sae + i] * t->p.w_enc[j * d_sae + i];
        enc_live += sqrt(e);
    }
    dec_live = n_live ? dec_live / n_live : t->o.init_norm;
    enc_live = n_live ? enc_live / n_live : t->o.init_norm;
    /* cumulative squared errors of the batch rows */
    double *cum = malloc(B * sizeof *cum);
    if (!cum)
        return 0; /* resampling is an optimisation; training goes on without it */
    double total = 0;
    for (size_t r = 0; r < B; r++) {
        double e = 0;
        for (size_t j = 0; j < d_in; j++)
            e += (double)t->a.xhat[r * d_in + j] * t->a.xhat[r * d_in + j];
        total += e;
        cum[r] = total;
    }
    size_t done = 0;
    for (size_t i = 0; i < d_sae && total > 0; i++) {
        if (!mark[i])
            continue;
        double u = sae_rng_uniform(&t->rng) * total;
        size_t lo = 0, hi = B - 1;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (cum[mid] > u)
                hi = mid;
            else
                lo = mid + 1;
        }
        const float *res = t->a.xhat + lo * d_in; /* ∝ x̂ − x: the residual's negative */
        double n2 = 0;
        for (size_t j = 0; j < d_in; j++)
            n2 += (double)res[j] * res[j];
        if (!(n2 > 0))
            continue;
        float inv = (float)(-1.0 / sqrt(n2));
        float *wd = t->p.w_dec + i * d_in;
        for (size_t j = 0; j < d_in; j++) {
            float dir = res[j] * inv;
            size_t e = j * d_sae + i, dj = i * d_in + j;
            wd[j] = dir * (float)dec_live;
            t->p.w_enc[e] = dir * (float)(0.2 * enc_live);
            t->m.w_dec[dj] = t->v.w_dec[dj] = t->g.w_dec[dj] = 0;
            t->m.w_enc[e] = t->v.w_enc[e] = t->g.w_enc[e] = 0;
        }
        t->p.b_enc[i] = 0;
        t->m.b_enc[i] = t->v.b_enc[i] = t->g.b_enc[i] = 0;
        t->last_fired[i] = rows_seen;
        done++;
    }
    free(cum);
    return done;
}

int sae_trainer_run(sae_trainer *t, sae_train_cb cb, void *ctx, sae_error *err)
{
    if (t->ran)
        return sae_error_set(err, SAE_EINVAL, "this trainer has already run");
    t->ran = true;
    const sae_train_opts *o = &t->o;
    const sae_train_shape *s = &t->shape;
    size_t B = o->batch, d_in = s->d_in, rows = 0, resampled = 0;
    size_t last_resample = 0;
    bool is_sae = s->arch != SAE_ARCH_AUTOENCODER;
    size_t resample_until = (size_t)(0.6 * (double)o->steps);
    double t0 = sae_clock_s();
    train_batch_stats win = {0};
    double win_loss = 0, win_var = 0;
    size_t win_steps = 0, win_rows = 0;
    for (size_t step = 0; step < o->steps; step++) {
        int rc = shuffler_next(&t->sh, t->x, B, err);
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
        size_t dead = 0;
        if (is_sae) {
            for (size_t i = 0; i < s->d_sae; i++) {
                if (t->a.colsum[i] > 0)
                    t->last_fired[i] = rows;
                dead += rows - t->last_fired[i] >= o->dead_window;
            }
            for (size_t i = 0; i < s->d_sae; i++)
                t->usage[i] += t->a.colsum[i];
            if (o->resample && step < resample_until && rows - last_resample >= o->dead_window) {
                memset(t->mark, 0, s->d_sae);
                size_t n_mark = 0;
                for (size_t i = 0; i < s->d_sae; i++)
                    if (rows - t->last_fired[i] >= o->dead_window)
                        t->mark[i] = 1, n_mark++;
                if (o->dup_cos < 1)
                    n_mark += mark_redundant(t, t->mark);
                if (n_mark) {
                    size_t n = resample_marked(t, t->mark, rows);
                    resampled += n;
                    dead = 0;
                    for (size_t i = 0; i < s->d_sae; i++)
                        dead += rows - t->last_fired[i] >= o->dead_window;
                }
                memset(t->usage, 0, s->d_sae * sizeof *t->usage);
                last_resample = rows;
            }
        }
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

/* ---- saving ---- */

/* Writes text to path through an outfile (temporary file + rename). */
static int write_text_atomic(const char *path, const char *text, sae_error *err)
{
    sae_outfile out;
    int rc = sae_outfile_open(&out, path, err);
    if (rc)
        return rc;
    fputs(text, out.fp); /* a failed write is seen by commit */
    return sae_outfile_commit(&out, err);
}

/* The "training" section of cfg.json. */
static json_t *training_json(const sae_trainer *t, const char *const *sources, size_t n_sources)
{
    const sae_train_opts *o = &t->o;
    json_t *j = json_object();
    json_t *src = json_array();
    for (size_t i = 0; i < n_sources; i++)
        json_array_append_new(src, json_string(sources[i]));
    json_object_set_new(j, "activations", src);
    json_object_set_new(j, "rows", json_integer((json_int_t)t->data->n_rows));
    json_object_set_new(j, "steps", json_integer((json_int_t)o->steps));
    json_object_set_new(j, "batch", json_integer((json_int_t)o->batch));
    json_object_set_new(j, "lr", json_real(o->lr));
    json_object_set_new(j, "lr_warmup_steps", json_integer((json_int_t)o->lr_warmup));
    json_object_set_new(j, "lr_decay_fraction", json_real(o->decay_frac));
    if (o->arch == SAE_ARCH_STANDARD) {
        json_object_set_new(j, "l1_coefficient", json_real(o->l1));
        json_object_set_new(j, "l1_warmup_fraction", json_real(o->l1_warmup_frac));
    }
    if (o->arch != SAE_ARCH_AUTOENCODER) {
        json_object_set_new(j, "init_decoder_norm", json_real(o->init_norm));
        json_object_set_new(j, "dead_window_rows", json_integer((json_int_t)o->dead_window));
        json_object_set_new(j, "resample", json_boolean(o->resample));
        json_object_set_new(j, "resample_duplicate_cosine", json_real(o->dup_cos));
    }
    json_object_set_new(j, "optimizer", json_string("adam(0.9, 0.999, 1e-8)"));
    json_object_set_new(j, "seed", json_integer((json_int_t)o->seed));
    json_object_set_new(j, "seconds", json_real(t->seconds));
    const sae_train_stats *st = &t->last;
    json_object_set_new(j, "rows_seen", json_integer((json_int_t)st->rows));
    json_object_set_new(j, "final_mse", json_real(st->mse));
    json_object_set_new(j, "final_fvu", json_real(st->fvu));
    json_object_set_new(j, "final_l0", json_real(st->l0));
    json_object_set_new(j, "final_dead", json_integer((json_int_t)st->dead));
    json_object_set_new(j, "resampled", json_integer((json_int_t)st->resampled));
    return j;
}

/* Adds the autoencoder's layers, with the input scale folded into the first
 * layer (W_0·s) and undone on the last (W_L/s, b_L/s). */
static int add_ae_tensors(const sae_trainer *t, sae_st_writer *w, sae_error *err)
{
    const sae_train_shape *s = &t->shape;
    size_t dims[SAE_AE_MAX_LINEAR + 1], n_lin = ae_dims(s, dims);
    for (size_t l = 0; l < n_lin; l++) {
        size_t nw = dims[l] * dims[l + 1];
        float *wbuf = malloc(nw * sizeof *wbuf), *bbuf = malloc(dims[l + 1] * sizeof *bbuf);
        int rc = 0;
        if (!wbuf || !bbuf) {
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
            goto next;
        }
        double wf = 1, bf = 1;
        if (l == 0)
            wf *= t->scale;
        if (l + 1 == n_lin)
            wf /= t->scale, bf /= t->scale;
        for (size_t i = 0; i < nw; i++)
            wbuf[i] = (float)(t->p.w[l][i] * wf);
        for (size_t i = 0; i < dims[l + 1]; i++)
            bbuf[i] = (float)(t->p.b[l][i] * bf);
        char wn[32], bn[32];
        snprintf(wn, sizeof wn, "W_%zu", l);
        snprintf(bn, sizeof bn, "b_%zu", l);
        uint64_t ws[2] = {dims[l], dims[l + 1]}, bs[1] = {dims[l + 1]};
        if (sae_st_writer_add(w, wn, SAE_DT_F32, 2, ws, wbuf) ||
            sae_st_writer_add(w, bn, SAE_DT_F32, 1, bs, bbuf))
            rc = sae_error_set(err, SAE_ENOMEM, "adding %s to the weights file", wn);
    next:
        free(wbuf);
        free(bbuf);
        if (rc)
            return rc;
    }
    return 0;
}

int sae_trainer_save(const sae_trainer *t, const char *dir, const char *const *sources,
                     size_t n_sources, sae_error *err)
{
    const sae_train_shape *s = &t->shape;
    const sae_train_opts *o = &t->o;
    sae_st_writer *w = NULL;
    json_t *cfg = NULL;
    char *text = NULL, *path = NULL;
    int rc = 0;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return sae_error_set(err, SAE_EIO, "%s: %s", dir, strerror(errno));
    size_t plen = strlen(dir) + 32;
    if (!(path = malloc(plen)) || !(w = sae_st_writer_new())) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    bool ae = s->arch == SAE_ARCH_AUTOENCODER;
    if (ae) {
        if ((rc = add_ae_tensors(t, w, err)))
            goto out;
    } else {
        uint64_t we[2] = {s->d_in, s->d_sae}, be[1] = {s->d_sae};
        uint64_t wd[2] = {s->d_sae, s->d_in}, bd[1] = {s->d_in};
        if (sae_st_writer_add(w, "W_enc", SAE_DT_F32, 2, we, t->p.w_enc) ||
            sae_st_writer_add(w, "b_enc", SAE_DT_F32, 1, be, t->p.b_enc) ||
            sae_st_writer_add(w, "W_dec", SAE_DT_F32, 2, wd, t->p.w_dec) ||
            sae_st_writer_add(w, "b_dec", SAE_DT_F32, 1, bd, t->p.b_dec)) {
            rc = sae_error_set(err, SAE_ENOMEM, "adding tensors to the weights file");
            goto out;
        }
    }
    snprintf(path, plen, "%s/sae_weights.safetensors", dir);
    if ((rc = sae_st_writer_save(w, path, err)))
        goto out;

    cfg = json_object();
    json_object_set_new(cfg, "architecture", json_string(sae_arch_name(s->arch)));
    json_object_set_new(cfg, "d_in", json_integer((json_int_t)s->d_in));
    json_object_set_new(cfg, "d_sae", json_integer((json_int_t)s->d_sae));
    if (s->arch == SAE_ARCH_TOPK)
        json_object_set_new(cfg, "k", json_integer((json_int_t)s->k));
    if (ae) {
        json_t *layers = json_array();
        for (size_t i = 0; i < s->n_layers; i++)
            json_array_append_new(layers, json_integer((json_int_t)s->layers[i]));
        json_object_set_new(cfg, "layers", layers);
        json_object_set_new(cfg, "apply_b_dec_to_input", json_false());
        json_object_set_new(cfg, "normalize_activations", json_string("none"));
    } else {
        json_object_set_new(cfg, "apply_b_dec_to_input", json_true());
        json_object_set_new(cfg, "normalize_activations",
                            json_string("expected_average_only_in"));
        json_object_set_new(cfg, "norm_scaling_factor", json_real(t->scale));
    }
    json_object_set_new(cfg, "rescale_acts_by_decoder_norm", json_false());
    json_object_set_new(cfg, "dtype", json_string("float32"));
    json_object_set_new(cfg, "device", json_string("cpu"));
    json_object_set_new(cfg, "model_name", json_string(o->model_name));
    json_object_set_new(cfg, "hook_name", json_string(o->hook_name));
    json_object_set_new(cfg, "training", training_json(t, sources, n_sources));
    text = json_dumps(cfg, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (!text) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory writing cfg.json");
        goto out;
    }
    snprintf(path, plen, "%s/cfg.json", dir);
    rc = write_text_atomic(path, text, err);
out:
    free(text);
    json_decref(cfg);
    sae_st_writer_free(w);
    free(path);
    return rc;
}
