/* train.h: training SAEs (standard, topk) and the plain stacked autoencoder
 * by hand-derived gradients, with BLAS for the matrix products.
 *
 * The numeric code lives in layers.h (each layer's forward beside its
 * backward), written once over a real type and instantiated for float (what
 * training runs) and double (what the gradient checks run); the *_f64 entry
 * points below expose the double instance so tests can compare every gradient
 * with finite differences of the same code's loss.
 *
 * Training (sae_trainer_*):
 *   - inputs are scaled by one factor s so that E‖s·x‖ = √d_in over the corpus;
 *     s is saved in cfg.json as norm_scaling_factor with normalize_activations
 *     "expected_average_only_in" (SAEs), or folded into the first and last layer
 *     (autoencoder, which is then saved with normalize_activations "none");
 *   - standard: loss ‖x − x̂‖² + λ Σᵢ fᵢ‖W_dec,i‖₂ (batch mean), decoder rows
 *     free in norm; topk: loss ‖x − x̂‖²; autoencoder: ‖x − x̂‖²;
 *   - W_dec initialised as W_encᵀ with rows of norm opts.init_norm in random
 *     directions, b_enc 0, b_dec the data's mean (SAEs);
 *   - Adam (β1 0.9, β2 0.999, ε 1e-8), learning rate warmed up linearly over the
 *     first lr_warmup steps and decayed linearly to 0 over the last
 *     decay_frac of the steps; λ warmed up linearly over the first
 *     l1_warmup_frac of the steps;
 *   - a latent is dead when it has not fired on any of the last dead_window
 *     training rows; dead latents are counted. Every dead_window rows during
 *     the first 60% of the steps, dead latents and duplicates (a decoder row
 *     with cosine >= dup_cos, default 0.8, to the row of a more used latent)
 *     are resampled
 *     towards the residuals of high-error rows (opts.resample);
 *   - rows are read through sae_acts in blocks and served shuffled: the corpus
 *     is held in memory when it fits opts.shuffle_mib, otherwise blocks are
 *     drawn in a seeded random order into a buffer of that size and shuffled
 *     there;
 *   - seeded: with one BLAS thread, the same options and data give
 *     byte-identical weights. */
#ifndef SAE_TRAIN_H
#define SAE_TRAIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/error.h"
#include "sae/autoencoder.h" /* SAE_AE_MAX_LAYERS */
#include "sae/model.h"


/* What is trained: enough to size and lay out the parameters. */
typedef struct sae_train_shape {
    sae_arch arch;       /* SAE_ARCH_STANDARD, SAE_ARCH_TOPK or SAE_ARCH_AUTOENCODER */
    size_t d_in;
    size_t d_sae;        /* SAE latents; autoencoder: the bottleneck width */
    size_t k;            /* topk: latents kept per row */
    size_t n_layers;     /* autoencoder: layers[0] = d_in, ..., layers[n_layers-1] =
                            the bottleneck; the net is layers down and back up */
    size_t layers[SAE_AE_MAX_LAYERS];
} sae_train_shape;

/* Checks a shape: arch trainable, sizes nonzero, 1 <= k <= d_sae, autoencoder
 * layers consistent with d_in and d_sae, parameter count without overflow. */
int sae_train_shape_check(const sae_train_shape *s, sae_error *err);

/* Number of parameters; the flat order is W_enc (d_in, d_sae), b_enc (d_sae),
 * W_dec (d_sae, d_in), b_dec (d_in) for an SAE, and W_0, b_0, W_1, b_1, ... for
 * the autoencoder, W_l (dims[l], dims[l+1]) with dims = layers down then up. */
size_t sae_train_n_params(const sae_train_shape *s);

/* The batch-mean loss of params (flat, as above) on x (n, d_in) and its
 * gradient (grad, n_params), computed by the training code instantiated in
 * double (f64) or float (f32). l1_coeff is λ for the standard SAE. */
int sae_train_loss_grad_f64(const sae_train_shape *s, const double *params, const double *x,
                            size_t n, double l1_coeff, double *loss, double *grad,
                            sae_error *err);
int sae_train_loss_grad_f32(const sae_train_shape *s, const float *params, const float *x,
                            size_t n, double l1_coeff, double *loss, float *grad,
                            sae_error *err);

/* Training rows: activation files (read through sae_acts) or an array. */
typedef struct sae_train_data sae_train_data;

/* Opens the activation files as one corpus, in order. Messages about a row
 * name the file and the row within it. */
int sae_train_data_open(const char *const *paths, size_t n_paths, sae_train_data **out,
                        sae_error *err);
/* Wraps rows (n, d_in), borrowed; name is used in messages. */
int sae_train_data_memory(const float *rows, size_t n, size_t d_in, const char *name,
                          sae_train_data **out, sae_error *err);
size_t sae_train_data_rows(const sae_train_data *d);
size_t sae_train_data_dim(const sae_train_data *d);
void sae_train_data_free(sae_train_data *d);

/* Training settings. 0 (or a negative λ) means "the default", resolved by
 * sae_trainer_new from the data; sae_trainer_opts gives the resolved values. */
typedef struct sae_train_opts {
    sae_arch arch;          /* default SAE_ARCH_STANDARD */
    size_t d_sae;           /* default 4·d_in (autoencoder: the last of layers) */
    size_t k;               /* topk: default min(32, d_sae/2) */
    size_t n_layers;        /* autoencoder: default d_in, d_in/2, d_in/4 */
    size_t layers[SAE_AE_MAX_LAYERS];
    double l1;              /* λ of the standard SAE */
    double lr;              /* peak Adam learning rate */
    size_t batch;           /* rows per step */
    size_t steps;           /* default from the corpus size (train_loop.c: default_steps) */
    size_t lr_warmup;       /* steps of linear learning-rate warm-up */
    double decay_frac;      /* fraction of the steps at the end with linear decay to 0 */
    double l1_warmup_frac;  /* fraction of the steps over which λ ramps up from 0 */
    double init_norm;       /* norm of the initial decoder rows */
    size_t dead_window;     /* rows without firing after which a latent is dead */
    int resample;           /* 1: re-initialise dead and duplicate latents (SAEs),
                               0: only count dead ones; default 1 */
    double dup_cos;         /* a latent whose decoder row has at least this cosine
                               with the row of a more used latent is a duplicate;
                               default 0.8, 1 disables */
    uint64_t seed;          /* default 0 is a seed like any other */
    size_t log_every;       /* steps between logged records */
    size_t shuffle_mib;     /* shuffle buffer budget in MiB; default 1024 */
    char model_name[128];   /* cfg.json model_name; default "synthetic" */
    char hook_name[128];    /* cfg.json hook_name; default "hook_synth" */
} sae_train_opts;

/* Sets every field to its "default" value (zeros, λ −1, empty names). */
void sae_train_opts_init(sae_train_opts *o);

/* What sae_trainer_run reports after each step. Averages are over the steps
 * since the last logged record; mse is per element, Σ(x − x̂)²/(B·d_in), and fvu
 * is Σ‖x − x̂‖² / Σ‖x − x̄‖² with x̄ the batch mean, both in the scaled space. */
typedef struct sae_train_stats {
    size_t step;            /* steps done, 1-based */
    size_t steps;           /* total */
    size_t rows;            /* training rows consumed so far */
    bool logged;            /* this step closes a log window (and the last does) */
    double loss, mse, l1, l0, fvu; /* window averages; l1 = Σᵢ fᵢ‖W_dec,i‖ per row */
    size_t dead;            /* latents dead now (SAEs; 0 for the autoencoder) */
    size_t resampled;       /* latents resampled so far */
    double lr, l1_coeff;    /* this step's learning rate and λ */
    double seconds;         /* since sae_trainer_run began */
} sae_train_stats;

typedef void (*sae_train_cb)(void *ctx, const sae_train_stats *st);

typedef struct sae_trainer sae_trainer;

/* Fills every default of o from the data's width and size, as sae_trainer_new
 * does. Fails with SAE_EINVAL when options contradict each other or the data
 * (k without topk, k > d_sae, layers not starting at d_in, ...): a caller with
 * flags reports that as a usage error before any work starts. */
int sae_train_opts_resolve(sae_train_opts *o, const sae_train_data *data, sae_error *err);

/* Resolves defaults, checks the data (every row finite, at least one row, a
 * nonzero mean norm), computes the scaling factor and the data mean and
 * initialises the parameters. data is borrowed and must outlive the trainer. */
int sae_trainer_new(const sae_train_opts *opts, sae_train_data *data, sae_trainer **out,
                    sae_error *err);

/* The options with every default resolved. */
const sae_train_opts *sae_trainer_opts(const sae_trainer *t);

/* Runs all the steps, calling cb (may be NULL) after each. */
int sae_trainer_run(sae_trainer *t, sae_train_cb cb, void *ctx, sae_error *err);

/* The input scaling factor s (x is trained on as s·x). */
double sae_trainer_scale(const sae_trainer *t);

/* The stats of the last step (window averages as in sae_train_stats). */
const sae_train_stats *sae_trainer_last(const sae_trainer *t);

/* The decoder (d_sae, d_in) of a trained SAE, in the scaled space, borrowed;
 * NULL for the autoencoder. */
const float *sae_trainer_w_dec(const sae_trainer *t);

/* The flat parameters (sae_train_n_params of the resolved shape), borrowed. */
const float *sae_trainer_params(const sae_trainer *t, sae_train_shape *shape);

/* Writes the model folder dir (created if missing): cfg.json and
 * sae_weights.safetensors, loadable by sae_model_load. `sources` (may be NULL)
 * names the activation files for cfg.json's training section. */
int sae_trainer_save(const sae_trainer *t, const char *dir, const char *const *sources,
                     size_t n_sources, sae_error *err);

void sae_trainer_free(sae_trainer *t);

#endif
