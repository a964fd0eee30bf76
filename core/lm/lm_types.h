/* lm_types.h: the plain types of the language-model API (lm.h), apart so
 * that a family's code (lm_family.h) can name them without lm.h. */
#ifndef SAE_LM_TYPES_H
#define SAE_LM_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Where in the model a hook reads. The per-block sites need a layer. */
typedef enum sae_lm_site {
    SAE_LM_EMBED,       /* hook_embed: W_E[id] */
    SAE_LM_POS_EMBED,   /* hook_pos_embed: W_pos[position] */
    SAE_LM_RESID_PRE,   /* blocks.N.hook_resid_pre */
    SAE_LM_LN1,         /* blocks.N.ln1.hook_normalized */
    SAE_LM_ATTN_Z,      /* blocks.N.attn.hook_z, (n_head * d_head) per token, head-major */
    SAE_LM_ATTN_OUT,    /* blocks.N.hook_attn_out */
    SAE_LM_RESID_MID,   /* blocks.N.hook_resid_mid */
    SAE_LM_LN2,         /* blocks.N.ln2.hook_normalized */
    SAE_LM_MLP_PRE,     /* blocks.N.mlp.hook_pre, (d_mlp) */
    SAE_LM_MLP_POST,    /* blocks.N.mlp.hook_post, (d_mlp) */
    SAE_LM_MLP_OUT,     /* blocks.N.hook_mlp_out */
    SAE_LM_RESID_POST,  /* blocks.N.hook_resid_post */
    SAE_LM_LN_FINAL,    /* ln_final.hook_normalized */
    SAE_LM_SITE_COUNT
} sae_lm_site;

/* One hook: a site and, for the per-block sites, its block (else 0). */
typedef struct sae_lm_hook {
    sae_lm_site site;
    size_t layer;
} sae_lm_hook;

/* What a loaded model is. */
typedef struct sae_lm_config {
    char family[16];        /* config.json's model_type: "gpt2" */
    size_t n_layer, d_model, n_head, d_head, d_mlp;
    size_t n_ctx;           /* positions the model knows (n_positions) */
    size_t vocab;
    double eps;             /* the LayerNorm epsilon */
    char dtype[8];          /* the checkpoint's weight dtype: "F32", "F16" or "BF16" */
} sae_lm_config;

/* TransformerLens' weight processing, whose effect on the hooks is applied
 * to the outputs (the forward pass itself is the checkpoint's). */
typedef struct sae_lm_processing {
    bool fold_ln;                /* ln*.hook_normalized without LN's weight and bias */
    bool center_writing_weights; /* the residual writers' outputs have zero mean per token */
    bool fold_value_biases;      /* attn.hook_z without the value bias */
} sae_lm_processing;

/* Token ids to run: n_seq sequences one after another in ids. With lens NULL
 * every sequence has seq_len tokens; otherwise sequence i has lens[i] (a
 * ragged batch). Each sequence starts at position 0 and attends only to
 * itself, so a batch gives the same values as its sequences one by one. */
typedef struct sae_lm_batch {
    const uint32_t *ids;    /* (n_tokens) */
    size_t n_seq;
    size_t seq_len;         /* when lens is NULL */
    const size_t *lens;     /* (n_seq), or NULL */
} sae_lm_batch;

/* One shape of the forward pass's matrix products: count calls of
 * cblas_sgemm with C (m, n) = A (m, k) · B (k, n), or · Bᵀ when b_trans. */
typedef struct sae_lm_gemm {
    size_t m, n, k, count;
    bool b_trans;
} sae_lm_gemm;

/* A loaded model (lm.h) and one thread's scratch for its forward passes. */
typedef struct sae_lm sae_lm;
typedef struct sae_lm_ws sae_lm_ws;

#endif
