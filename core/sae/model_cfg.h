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

/* What cfg.json says, before any tensor is looked at. Strings are borrowed
 * from the parsed JSON. */
typedef struct sae_model_cfg {
    sae_arch arch;
    size_t d_in, d_sae;             /* 0 when not given (sparsify reads them from tensors) */
    size_t k;                       /* topk; 0 when not given */
    size_t sparsify_latents;        /* sparsify: num_latents, or 0 */
    size_t sparsify_expansion;      /* sparsify: expansion_factor, or 0 */
    bool rescale, apply_b_dec;
    sae_norm norm;
    bool has_scale;
    double scale;                   /* norm_scaling_factor when has_scale */
    const char *model_name, *hook_name;
} sae_model_cfg;

/* Parses path (a cfg.json) into a JSON object (new reference, caller frees),
 * after capping its size, with duplicate keys rejected. */
int sae_model_cfg_read(const char *path, json_t **out, sae_error *err);

/* Interprets cfg (borrowed; read from path, which errors name) as a sparsify
 * config when `sparsify`, else as a SAELens one, filling *c (zeroed by the
 * caller). Appends any warnings to warn (may be NULL). */
int sae_model_cfg_parse(const json_t *cfg, const char *path, bool sparsify, sae_model_cfg *c,
                        sae_model_warnings *warn, sae_error *err);

#endif
