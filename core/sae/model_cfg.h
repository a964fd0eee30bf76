/* model_cfg.h: what an SAE folder's cfg.json says, read before any tensor is
 * looked at.
 *
 * The vocabulary of a model (architectures, normalisation modes) lives here
 * because cfg.json is where it is spelled; model.h binds the tensors that cfg
 * asks for. Loading warnings are collected here too, since cfg is where they
 * arise. Used by model.c; everyone else includes model.h, which includes
 * this. */
#ifndef SAE_MODEL_CFG_H
#define SAE_MODEL_CFG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "io/error.h"

typedef enum sae_arch {
    SAE_ARCH_STANDARD,
    SAE_ARCH_JUMPRELU,
    SAE_ARCH_TOPK,
    SAE_ARCH_GATED,
    SAE_ARCH_AUTOENCODER, /* the plain stacked autoencoder of `sae train` */
} sae_arch;

typedef enum sae_norm {
    SAE_NORM_NONE,
    SAE_NORM_CONSTANT_NORM_RESCALE,
    SAE_NORM_LAYER_NORM,
    SAE_NORM_EXPECTED_AVERAGE_ONLY_IN,
} sae_norm;

/* The cfg.json spellings ("standard", "layer_norm", ...). */
const char *sae_arch_name(sae_arch a);
const char *sae_norm_name(sae_norm n);

#define SAE_MODEL_WARN_MAX 4     /* lines kept; later ones are dropped */
#define SAE_MODEL_WARN_LEN 1024  /* bytes per line with its NUL; longer lines are cut */

/* The warnings of one load, one line each (no newline in a line), in the
 * order they arose. Caller-owned, usually on the stack; nothing to free.
 *
 *     for (size_t i = 0; i < w.n; i++) print(w.line[i]);  */
typedef struct sae_model_warnings {
    size_t n;
    char line[SAE_MODEL_WARN_MAX][SAE_MODEL_WARN_LEN];
} sae_model_warnings;

/* Appends one warning line to warn (NULL: dropped); past
 * SAE_MODEL_WARN_MAX lines the rest are dropped. */
void sae_model_warn(sae_model_warnings *warn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* What cfg.json says, before any tensor is looked at. Strings are borrowed
 * from the parsed JSON. */
typedef struct sae_model_cfg {
    sae_arch arch;                  /* standard or jumprelu for a transcoder */
    size_t d_in, d_sae;             /* 0 when not given (sparsify reads them from tensors) */
    size_t d_out;                   /* transcoders: the output width; 0 otherwise */
    size_t k;                       /* topk; 0 when not given */
    size_t sparsify_latents;        /* sparsify: num_latents, or 0 */
    size_t sparsify_expansion;      /* sparsify: expansion_factor, or 0 */
    bool rescale, apply_b_dec;
    bool apply_b_dec_given;         /* apply_b_dec_to_input was in cfg (not defaulted) */
    bool pre6;                      /* SAELens < 6.0: handle_pre_6_0_config's reading */
    bool transcoder;                /* SAELens *transcoder architectures, sparsify transcode */
    bool transcode_given;           /* sparsify: cfg.json had a transcode key */
    bool skip;                      /* skip_transcoder, sparsify skip_connection: W_skip */
    bool signed_topk;               /* 2024 sparsify `signed`: top-k by |pre|, no ReLU */
    bool finetuning_scaling;        /* SAELens <= 5 finetuning_scaling_factor */
    sae_norm norm;
    bool has_scale;
    double scale;                   /* norm_scaling_factor when has_scale */
    const char *model_name, *hook_name, *hook_name_out, *neuronpedia_id;
} sae_model_cfg;

/* Parses path (a cfg.json) into a JSON object (new reference, caller frees),
 * after capping its size, with duplicate keys rejected. */
int sae_model_cfg_read(const char *path, json_t **out, sae_error *err);

/* Interprets cfg (borrowed; read from path, which errors name) as a sparsify
 * config when `sparsify`, else as a SAELens one, filling *c (zeroed by the
 * caller). Appends any warnings to warn (may be NULL). */
int sae_model_cfg_parse(const json_t *cfg, const char *path, bool sparsify, sae_model_cfg *c,
                        sae_model_warnings *warn, sae_error *err);

/* What a sparsify folder's surroundings say (SAELens's
 * get_sparsify_config_from_disk): the hook from the folder's name (hook, of
 * hook_cap bytes, holds it) unless cfg gave one, and from the hub root's
 * config.json (dir/../config.json, if any; *root keeps it alive for the
 * borrowed strings, caller frees) the model name (key "model") and, when
 * cfg.json has no transcode key, a pre-2025-02 transcoder. */
int sae_model_cfg_sparsify_root(const char *dir, sae_model_cfg *c, json_t **root, char *hook,
                                size_t hook_cap, sae_model_warnings *warn, sae_error *err);

/* For a folder without cfg.json: if subfolders of dir hold a cfg.json (a
 * sparsify hub root with layers.N/ ...), sets err to a line naming them and
 * returns SAE_EIO; otherwise returns 0 and leaves err alone. */
int sae_model_cfg_hub_hint(const char *dir, sae_error *err);

#endif
