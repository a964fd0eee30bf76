/* lm.h: a language model's forward pass, read out at TransformerLens hooks.
 *
 *     sae_lm *lm;  sae_lm_load("gpt2/", &lm, &err);
 *     sae_lm_hook h;  sae_lm_hook_parse("blocks.8.hook_resid_pre", &h, &err);
 *     sae_lm_ws *ws = sae_lm_ws_new(lm, 1024);
 *     sae_lm_batch b = {.ids = ids, .n_seq = 4, .seq_len = 128};
 *     float *out = malloc(512 * sae_lm_hook_width(lm, &h) * sizeof *out);
 *     sae_lm_forward(lm, ws, &b, &h, 1, &out, NULL, &err);
 *
 * A model is loaded from a Hugging Face checkpoint folder (config.json and
 * model.safetensors, or shards listed in model.safetensors.index.json) and
 * held as F32: aligned F32 tensors are used in place in the mapping, F16 and
 * BF16 ones converted once at load. The family (config.json's model_type)
 * picks the code that reads the config and runs the blocks; GPT-2 is the one
 * family today (docs/LM.md says how Llama and Gemma-2 slot in).
 *
 * The forward pass runs only as deep as the deepest hook asked for and
 * returns each hook's activations as (n_tokens, width) floats in the
 * batch's token order. Values follow TransformerLens' HookedTransformer as
 * from_pretrained builds it (fold_ln, center_writing_weights and
 * fold_value_biases on), since SAEs are trained on that; sae_lm_processing
 * turns each off (docs/LM.md lists which hooks each one changes). */
#ifndef SAE_LM_H
#define SAE_LM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/error.h"
#include "lm/lm_types.h"

/* Parses a TransformerLens hook name ("blocks.3.attn.hook_z", "hook_embed").
 * Whether the layer exists is the model's question (sae_lm_hook_check). */
int sae_lm_hook_parse(const char *name, sae_lm_hook *out, sae_error *err);

/* Writes h's TransformerLens name into buf (cap bytes, NUL-terminated).
 * Returns the length it needed, as snprintf does. */
int sae_lm_hook_name(const sae_lm_hook *h, char *buf, size_t cap);

/* Loads the checkpoint folder dir, validating config.json against every
 * tensor (names, shapes, dtypes, the shard index) with the hostile-file rules
 * of core/io/safetensors. Messages name the file and the tensor or key. */
int sae_lm_load(const char *dir, sae_lm **out, sae_error *err);

/* Frees lm and its mappings. NULL is a no-op. */
void sae_lm_free(sae_lm *lm);

/* lm's shape (borrowed; lives as long as lm). */
const sae_lm_config *sae_lm_config_of(const sae_lm *lm);

/* Fails with SAE_EINVAL, naming the hook, when lm has no such hook (a block
 * beyond n_layer, a site the family does not have). */
int sae_lm_hook_check(const sae_lm *lm, const sae_lm_hook *h, sae_error *err);

/* Floats per token at h: d_model, d_mlp, or n_head * d_head for attn.hook_z. */
size_t sae_lm_hook_width(const sae_lm *lm, const sae_lm_hook *h);

/* TransformerLens' from_pretrained defaults: all three on. */
sae_lm_processing sae_lm_processing_default(void);

/* Scratch buffers for one thread's forward passes, sized for up to
 * max_tokens tokens a call. NULL when out of memory or max_tokens is 0. */
sae_lm_ws *sae_lm_ws_new(const sae_lm *lm, size_t max_tokens);
void sae_lm_ws_free(sae_lm_ws *ws);

/* Runs batch b through lm as deep as the deepest of the n_hooks hooks and
 * writes hook i's activations into out[i] (n_tokens, width), a buffer the
 * caller owns. proc NULL means sae_lm_processing_default(). Fails, writing
 * nothing it promised, when a hook is not lm's, an id is not below vocab, a
 * sequence is empty or longer than n_ctx, or the batch has more tokens than
 * ws was made for. */
int sae_lm_forward(const sae_lm *lm, sae_lm_ws *ws, const sae_lm_batch *b,
                   const sae_lm_hook *hooks, size_t n_hooks, float *const *out,
                   const sae_lm_processing *proc, sae_error *err);

/* The matrix products a forward pass of b through every block makes, merged
 * by shape, into shapes (cap entries); returns how many there are (which may
 * exceed cap; 0 when out of memory). For benchmarks: timing these alone
 * gives the pass's BLAS bound. */
size_t sae_lm_gemm_shapes(const sae_lm *lm, const sae_lm_batch *b, sae_lm_gemm *shapes,
                          size_t cap);

#endif
