/* train_data.c: the rows `sae train` learns from: activation files read
 * through sae_acts as one corpus (each file's rows remembered, for messages)
 * or a borrowed array, and the shuffler that serves them, scaled, in a seeded
 * random order. */
#include <stdlib.h>
#include <string.h>

#include "train/train_int.h"

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
int train_data_read(const sae_train_data *d, size_t row0, size_t n, float *dst, sae_error *err)
{
    if (d->mem) {
        memcpy(dst, d->mem + row0 * d->d_in, n * d->d_in * sizeof *dst);
        return 0;
    }
    return sae_acts_read(d->acts, row0, n, dst, err);
}

/* The file holding corpus row `row`, and the row's index within it. */
const char *train_data_locate(const sae_train_data *d, size_t row, size_t *local)
{
    size_t f = 0;
    while (f + 1 < d->n_files && row >= d->row0[f + 1])
        f++;
    *local = row - d->row0[f];
    return d->names[f];
}

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
 * failure (train_shuffler_free releases them). */
int train_shuffler_init(shuffler *sh, const sae_train_data *data, float scale,
                        size_t budget_mib, size_t min_rows, uint64_t seed, sae_error *err)
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
void train_shuffler_free(shuffler *sh)
{
    free(sh->buf);
    free(sh->perm);
    free(sh->blocks);
}

/* Reads rows [row0, row0+n) into the buffer at position at, scaled. */
static int shuffler_load(shuffler *sh, size_t row0, size_t n, size_t at, sae_error *err)
{
    float *dst = sh->buf + at * sh->d_in;
    int rc = train_data_read(sh->data, row0, n, dst, err);
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
int train_shuffler_next(shuffler *sh, float *x, size_t n, sae_error *err)
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
