/* lm_family.h: what a model family supplies, and the objects lm.c shares
 * with it.
 *
 * lm.c does everything that is the same for every family: the checkpoint
 * folder (lm_ckpt), config.json, hook names and checks, the workspace, the
 * batch's validation and the hooks' delivery (lm_pass). A family file
 * (lm_gpt2.c; Llama and Gemma-2 next, docs/LM.md) reads its config keys,
 * binds its tensors and runs its blocks with the kernels of lm_ops. It is
 * listed in lm.c's family table under config.json's model_type. */
#ifndef SAE_LM_FAMILY_H
#define SAE_LM_FAMILY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "io/error.h"
#include "lm/lm_types.h"
#include "lm/lm_ckpt.h"
#include "lm/lm_ops.h"
#include "lm/lm_pass.h"

typedef struct sae_lm_family sae_lm_family;

/* A loaded model. Owns ck (the mapped files and converted tensors) and
 * weights (the family's struct of pointers into ck). */
struct sae_lm {
    sae_lm_config cfg;
    const sae_lm_family *fam;
    sae_lm_ckpt ck;
    void *weights;
};

/* Scratch for one caller's passes: one allocation the family carves into
 * its buffers on each call, and the team its kernels split their non-BLAS
 * work across (sized to OpenBLAS's thread count at each call). */
struct sae_lm_ws {
    size_t max_tokens;      /* tokens per call */
    size_t max_seq;         /* longest sequence: min(max_tokens, n_ctx) */
    float *buf;             /* owned: (n_floats) */
    size_t n_floats;
    sae_lm_team *team;      /* owned */
};

struct sae_lm_family {
    const char *model_type;         /* config.json's model_type */
    bool centers;                   /* LayerNorm model: TransformerLens centres its writers */
    bool has_site[SAE_LM_SITE_COUNT];
    /* Reads config (path for messages) into lm->cfg and binds lm->weights
     * from lm->ck, checking every shape against the config. */
    int (*load)(sae_lm *lm, const json_t *config, const char *path, sae_error *err);
    void (*free_weights)(void *weights);
    /* Floats of scratch a call of up to max_tokens tokens (no sequence
     * longer than max_seq) needs, or 0 when the count overflows. */
    size_t (*ws_floats)(const sae_lm_config *cfg, size_t max_tokens, size_t max_seq);
    /* Runs the validated batch b (n_tokens tokens) until p has served every
     * hook. */
    void (*forward)(const sae_lm *lm, sae_lm_ws *ws, const sae_lm_batch *b, size_t n_tokens,
                    sae_lm_pass *p);
    /* Appends the matrix products of b's full pass (see sae_lm_gemm_shapes). */
    void (*gemm_shapes)(const sae_lm *lm, const sae_lm_batch *b, size_t n_tokens,
                        void (*add)(void *ctx, const sae_lm_gemm *g), void *ctx);
};

/* The families (one file each). */
extern const sae_lm_family sae_lm_gpt2;

/* Length of sequence i of b. */
static inline size_t sae_lm_batch_len(const sae_lm_batch *b, size_t i)
{
    return b->lens ? b->lens[i] : b->seq_len;
}

/* config.json's key as a whole number in [lo, hi] into *out; when the key
 * is absent (or null), dflt unless dflt is SIZE_MAX (then it is required). */
int sae_lm_cfg_size(const json_t *config, const char *path, const char *key, size_t lo,
                    size_t hi, size_t dflt, size_t *out, sae_error *err);

/* config.json's key as a positive finite number; dflt when absent. */
int sae_lm_cfg_double(const json_t *config, const char *path, const char *key, double dflt,
                      double *out, sae_error *err);

/* config.json's key as a boolean; dflt when absent. */
int sae_lm_cfg_bool(const json_t *config, const char *path, const char *key, bool dflt,
                    bool *out, sae_error *err);

#endif
