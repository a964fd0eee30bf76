/* unembed.h: a language model's unembedding W_U (d_model, V) for the logit
 * tables of `sae index --unembed` (docs/INDEX.md, "Logit tables").
 *
 * SOURCE is either
 *   - a safetensors file holding a tensor "W_U" of shape (d_model, V), used as
 *     given (any float dtype); or
 *   - a Hugging Face checkpoint folder (config.json and one or more
 *     *.safetensors), composed as TransformerLens' from_pretrained defaults
 *     (fold_ln, center_writing_weights, center_unembed) leave it:
 *       E (V, d) = lm_head.weight, or the tied input embedding
 *                  (wte.weight for GPT-2, model.embed_tokens.weight otherwise);
 *       s (d)    = the final norm's scale: ln_f.weight (GPT-2 LayerNorm),
 *                  model.norm.weight (Llama RMSNorm), 1 + model.norm.weight
 *                  (Gemma RMSNorm);
 *       W[j, v]  = s[j] E[v, j]                      (fold the scale)
 *       W[j, v] -= mean_j W[j, v]     GPT-2 only     (LayerNorm centres its output)
 *       W[j, v] -= mean_v W[j, v]                    (center_unembed)
 *     The final norm's bias (GPT-2) only moves b_U, which no logit table uses. */
#ifndef SAE_LM_UNEMBED_H
#define SAE_LM_UNEMBED_H

#include <stddef.h>

#include "io/error.h"

/* The composed unembedding. */
typedef struct sae_unembed {
    size_t d_model, n_vocab;
    float *w;               /* (d_model, n_vocab) owned, row-major */
    char kind[16];          /* "W_U", "gpt2", "llama" or "gemma" */
} sae_unembed;

/* Loads and composes W_U from source (a file or a folder, above). */
int sae_unembed_load(const char *source, sae_unembed *out, sae_error *err);
void sae_unembed_free(sae_unembed *u);

#endif
