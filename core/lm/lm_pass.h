/* lm_pass.h: one forward pass's requested hooks, and handing activations out.
 *
 * A family's forward code calls sae_lm_pass_emit* at every site in order;
 * each call copies the activations into every output that asked for that
 * (site, layer), applying TransformerLens' weight processing as the pass's
 * sae_lm_processing says, and returns true once every hook has been served,
 * so the family stops there: the pass runs no deeper than its deepest hook.
 * A call for a site nobody asked for costs a comparison per hook. */
#ifndef SAE_LM_PASS_H
#define SAE_LM_PASS_H

#include <stdbool.h>
#include <stddef.h>

#include "lm/lm_types.h"

/* Borrows the hooks and outputs of one sae_lm_forward call. */
typedef struct sae_lm_pass {
    const sae_lm_hook *hooks;   /* (n_hooks) */
    float *const *out;          /* (n_hooks) of (n_tokens, width) */
    size_t n_hooks;
    size_t n_tokens;
    size_t remaining;           /* hooks not served yet */
    sae_lm_processing proc;
    bool centers;               /* the family's residual writers are centred by
                                 * center_writing_weights (LayerNorm models only) */
} sae_lm_pass;

/* True when some hook asks for (site, layer): the family may skip work a
 * hook alone needs (gathering W_E rows, say) when nobody does. */
bool sae_lm_pass_wants(const sae_lm_pass *p, sae_lm_site site, size_t layer);

/* x (n_tokens, width) at a site. A residual-stream site (embeddings,
 * resid_*, attn_out, mlp_out) is centred per token when the processing
 * centres writing weights and the family's do; other sites are copied. */
bool sae_lm_pass_emit(sae_lm_pass *p, sae_lm_site site, size_t layer, const float *x,
                      size_t width);

/* A normalisation's output: x_hat (n_tokens, width) before its affine
 * weight w and bias b (b may be NULL). With fold_ln the hook is x_hat (as
 * TransformerLens' LayerNormPre gives it); without, x_hat * w + b. */
bool sae_lm_pass_emit_norm(sae_lm_pass *p, sae_lm_site site, size_t layer, const float *x_hat,
                           const float *w, const float *b, size_t width);

/* attn.hook_z: z (n_tokens, width) and the value bias (width, head-major
 * as z) as the checkpoint has it (b_v) and as fold_ln leaves it (b_v_ln:
 * plus ln1's bias times W_V). fold_value_biases moves the bias into b_O, so
 * the hook then reads z minus it (softmax rows sum to 1). NULL: no bias. */
bool sae_lm_pass_emit_z(sae_lm_pass *p, size_t layer, const float *z, const float *b_v,
                        const float *b_v_ln, size_t width);

#endif
