/* model.h: one SAE loaded from a SAELens or sparsify folder.
 *
 * The weights file is memory-mapped; aligned F32 tensors are used in place.
 * F16 and BF16 W_enc and W_dec are used in place too (w_enc_h, w_dec_h) and
 * encoded by the kernel kernel.h picks for the CPU, unless the loader is
 * asked to compute in F32; every other tensor (biases, thresholds, F64
 * weights) is converted to F32 once here. Everything the encode kernels
 * need that can be precomputed (decoder row norms, exp(r_mag)) is computed at
 * load. A loaded model is immutable and may be shared by any number of threads. */
#ifndef SAE_MODEL_H
#define SAE_MODEL_H

#include <stdbool.h>
#include <stddef.h>

#include "io/error.h"
#include "io/safetensors.h"
#include "sae/kernel.h"
#include "sae/model_cfg.h" /* sae_arch, sae_norm, sae_model_warnings */

struct sae_ae; /* autoencoder layers, core/sae/autoencoder.h */

typedef struct sae_model {
    char *dir;                      /* owned: the folder it came from */
    char *weights_path;             /* owned */
    char weights_digest[33];        /* XXH3-128 of the weights file, lowercase hex */
    char dtype[8];                  /* dtype of the weights file: "F32", "F16", "BF16", "F64" */
    char *model_name, *hook_name;   /* owned, "" when absent */
    char *hook_name_out;            /* owned: a transcoder's output hook, "" when absent */
    char *neuronpedia_id;           /* owned: "model/source" on Neuronpedia, "" when absent */
    bool sparsify;                  /* loaded from a sparsify folder */

    size_t d_in, d_sae;
    size_t d_out;                   /* width of decode's output: d_in, or a transcoder's d_out */
    sae_arch arch;
    bool transcoder;                /* decode gives the output hook's activation, not x̂ */
    bool skip_connection;           /* the folder has a W_skip, which decode leaves out */
    bool signed_topk;               /* topk by |pre|, no ReLU, signs kept (2024 sparsify) */
    size_t k;                       /* topk only */
    bool rescale_acts_by_decoder_norm;
    bool apply_b_dec_to_input;
    sae_norm norm;
    float norm_scaling_factor;      /* expected_average_only_in; 1 when absent */

    /* Weights as F32. Borrowed from the mapping or from `owned`. W_enc and
     * W_dec are NULL when kept in 16 bits (w_enc_h, w_dec_h below). */
    const float *w_enc;             /* (d_in, d_sae), or (d_sae, d_in) if w_enc_t */
    bool w_enc_t;                   /* sparsify's encoder.weight layout */
    const float *b_enc;             /* (d_sae); NULL for gated */
    const float *w_dec;             /* (d_sae, d_out) */
    const float *b_dec;             /* (d_out) */
    const float *dec_scale;         /* (d_sae) SAELens <= 5 finetuning scaling_factor: decode
                                       uses (f ⊙ s)·W_dec; NULL when absent or all ones */
    const float *threshold;         /* (d_sae) jumprelu */
    const float *b_gate, *b_mag;    /* (d_sae) gated */
    const float *exp_r_mag;         /* (d_sae) gated: exp(r_mag), precomputed */
    float *dec_norm;                /* (d_sae) owned: ||W_dec,i||_2 (over d_out) */

    /* W_enc and W_dec kept as the file holds them, F16 or BF16 (w_dtype),
     * shaped as w_enc and w_dec; NULL for an F32 model. Borrowed from the
     * mapping, or from `owned` when the file's tensor is misaligned. */
    const uint16_t *w_enc_h, *w_dec_h;
    sae_dtype w_dtype;              /* what W_enc and W_dec hold: F32, F16 or BF16 */
    sae_kernel kernel;              /* the encoder product's kernel (kernel.h) */

    struct sae_ae *ae;              /* arch == SAE_ARCH_AUTOENCODER only */

    sae_st_file *st;                /* owned: the mapped weights file */
    float **owned;                  /* owned conversion buffers (16-bit copies too) */
    size_t n_owned;
} sae_model;

/* Loads the folder `dir` (cfg.json + sae_weights.safetensors, or cfg.json +
 * sae.safetensors for sparsify, or any release layout format.h detects),
 * validating cfg, shapes and the file.
 * Warnings (for example expected_average_only_in without
 * norm_scaling_factor) go to `warn` (may be NULL), one line each: it is
 * emptied first and holds what arose on failure too. Weights containing NaN
 * or inf are refused (SAE_ERANGE). Re-entrant: no globals, so a daemon may
 * load a new model while serving. */
int sae_model_load(const char *dir, sae_model **out, sae_model_warnings *warn, sae_error *err);

/* How a model is loaded. */
typedef enum sae_compute {
    SAE_COMPUTE_NATIVE, /* F16/BF16 weights kept in 16 bits, half-precision kernels */
    SAE_COMPUTE_F32,    /* every tensor converted to F32 at load, OpenBLAS (saed's compute f32) */
} sae_compute;

/* sae_model_load with the compute mode given (sae_model_load is NATIVE). */
int sae_model_load_with(const char *dir, sae_compute compute, sae_model **out,
                        sae_model_warnings *warn, sae_error *err);

/* Parses "native" or "f32"; returns 0 or -1. */
int sae_compute_parse(const char *s, sae_compute *out);

/* Builds a model from in-memory F32 arrays (borrowed, must outlive the model);
 * used by tests and benchmarks. Arrays not used by arch may be NULL. Computes
 * dec_norm and exp_r_mag. r_mag is raw (not exponentiated). */
typedef struct sae_model_spec {
    size_t d_in, d_sae;
    size_t d_out;                   /* 0: d_in; a transcoder's output width otherwise */
    sae_arch arch;
    bool transcoder, signed_topk;
    size_t k;
    bool rescale_acts_by_decoder_norm;
    bool apply_b_dec_to_input;
    sae_norm norm;
    float norm_scaling_factor;
    const float *w_enc, *b_enc, *w_dec, *b_dec, *threshold, *b_gate, *b_mag, *r_mag;
    const float *dec_scale;         /* may be NULL */
    /* Instead of w_enc and w_dec (then NULL): 16-bit weights of w_dtype,
     * F16 or BF16, run on sae_kernel_pick(w_dtype). */
    const uint16_t *w_enc_h, *w_dec_h;
    sae_dtype w_dtype;
} sae_model_spec;
int sae_model_from_spec(const sae_model_spec *spec, sae_model **out, sae_error *err);

void sae_model_free(sae_model *m);

/* Row i of W_dec (d_out) as F32 into out, whatever the model keeps. */
void sae_model_dec_row(const sae_model *m, size_t i, float *out);

/* W_dec (d_sae, d_out) as F32: the model's own array (*owned NULL) or,
 * for 16-bit weights, a widened copy the caller frees (*owned). */
int sae_model_w_dec_f32(const sae_model *m, const float **out, float **owned, sae_error *err);

/* Names given by the operator (saed's config, `sae` flags) in place of what
 * the folder says; NULL or "" keeps the folder's. */
typedef struct sae_model_names {
    const char *model_name, *hook_name, *hook_name_out, *neuronpedia_id;
} sae_model_names;

/* Replaces m's names by the non-empty ones of over. Only before m is shared:
 * a loaded model is otherwise immutable. */
int sae_model_set_names(sae_model *m, const sae_model_names *over, sae_error *err);

/* Sets on o (a JSON object) what `sae info` and GET /v1/model both report
 * beyond the contract's fields: neuronpedia_id, d_out, transcoder,
 * hook_name_out (null but for a transcoder), skip_connection (W_skip, which
 * decode leaves out as SAELens and sparsify do), signed and
 * finetuning_scaling_factor. */
void sae_model_json_kind(const sae_model *m, json_t *o);

/* The Neuronpedia route's two ids: the model id (neuronpedia_id's part before
 * its first '/', else model_name) and the source id (the part after it, else
 * hook_name). Both point into m's strings; *model_len is the model id's
 * length (it is not NUL-terminated when cut from neuronpedia_id). */
void sae_model_neuronpedia(const sae_model *m, const char **model_id, size_t *model_len,
                           const char **source_id);

/* True when the model's weights file was truncated or written since it was
 * mapped, or a page of it was lost (io/mapped.h): its numbers can no longer
 * be trusted and nothing computed from them should be answered. A rename
 * over the file or its deletion leaves the mapping, and the model, as
 * loaded. One fstat; false for a model built from arrays. */
bool sae_model_changed(const sae_model *m);

/* XXH3-128 of a whole file as 32 lowercase hex digits (+ NUL). */
int sae_digest_file(const char *path, char out[33], sae_error *err);
void sae_digest_buffer(const void *buf, size_t len, char out[33]);

#endif
