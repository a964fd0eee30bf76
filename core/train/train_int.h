/* train_int.h: what the train_*.c files share and nothing outside them uses.
 *
 *   train_loop.c      the trainer: options, initialisation, Adam, the steps; it
 *                     includes layers.h (the forward and backward passes)
 *   train_data.c      the rows: activation files or an array, and the shuffler
 *   train_resample.c  dead and duplicate latents: tracking and resampling
 *   train_save.c      the model folder: cfg.json and sae_weights.safetensors */
#ifndef SAE_TRAIN_INT_H
#define SAE_TRAIN_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/activations.h"
#include "io/rng.h"
#include "train/train.h"

/* Widths of the autoencoder's layers, down then up: dims[0..n_lin]; returns
 * n_lin, the number of linear layers (2·(n_layers − 1)). */
size_t train_ae_dims(const sae_train_shape *s, size_t *dims);

/* The float instance's types of layers.h: tensors_f32 (named views into the
 * flat parameters) and acts_f32 (a batch's activation buffers). */
#define TL_TYPES_ONLY
#define TL_REAL float
#define TL_SFX f32
#include "train/layers.h"
#undef TL_REAL
#undef TL_SFX
#undef TL_TYPES_ONLY

/* ---- data (train_data.c) ---- */

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

/* Copies rows [row0, row0 + n) of d into dst (n, d_in), unscaled. */
int train_data_read(const sae_train_data *d, size_t row0, size_t n, float *dst, sae_error *err);

/* The file holding corpus row `row`, and the row's index within it. */
const char *train_data_locate(const sae_train_data *d, size_t row, size_t *local);

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

/* Sizes the buffer for budget_mib (at least min_rows rows, the whole corpus
 * when it fits) and allocates it; sh owns its buffers afterwards, even on
 * failure (train_shuffler_free releases them). Rows are served as scale·x. */
int train_shuffler_init(shuffler *sh, const sae_train_data *data, float scale,
                        size_t budget_mib, size_t min_rows, uint64_t seed, sae_error *err);

/* Releases sh's buffers (not the data it borrows). */
void train_shuffler_free(shuffler *sh);

/* Copies the next n rows into x (n, d_in). */
int train_shuffler_next(shuffler *sh, float *x, size_t n, sae_error *err);

/* ---- the trainer (train_loop.c) ---- */

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
    size_t last_resample;    /* rows seen at the last resampling check */
    shuffler sh;
    sae_rng rng;
    bool ran;
    double seconds;
    sae_train_stats last;
};

/* ---- dead and duplicate latents (train_resample.c) ---- */

/* After step `step` (0-based) of an SAE, with `rows` rows seen and the
 * step's activations still in t->a: records which latents fired and how much,
 * and at each check (every dead_window rows during the first 60% of the
 * steps, when resampling is on) resamples the dead and duplicate latents.
 * Adds the number resampled to *resampled; returns the number dead now. */
size_t train_latents_update(sae_trainer *t, size_t step, size_t rows, size_t *resampled);

#endif
