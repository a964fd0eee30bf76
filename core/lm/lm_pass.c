/* lm_pass.c: serving a forward pass's hooks (lm_pass.h). */
#include "lm/lm_pass.h"

#include <string.h>

/* True for the sites whose activations are sums of residual-stream writes. */
static bool residual_site(sae_lm_site s)
{
    return s == SAE_LM_EMBED || s == SAE_LM_POS_EMBED || s == SAE_LM_RESID_PRE ||
           s == SAE_LM_ATTN_OUT || s == SAE_LM_RESID_MID || s == SAE_LM_MLP_OUT ||
           s == SAE_LM_RESID_POST;
}

bool sae_lm_pass_wants(const sae_lm_pass *p, sae_lm_site site, size_t layer)
{
    for (size_t i = 0; i < p->n_hooks; i++)
        if (p->hooks[i].site == site && p->hooks[i].layer == layer)
            return true;
    return false;
}

/* dst = x - mean(x), row by row (TransformerLens' centred writers). */
static void center_rows(float *dst, const float *x, size_t n, size_t width)
{
    for (size_t t = 0; t < n; t++) {
        const float *r = x + t * width;
        double s = 0;
        for (size_t j = 0; j < width; j++)
            s += r[j];
        float mean = (float)(s / (double)width);
        for (size_t j = 0; j < width; j++)
            dst[t * width + j] = r[j] - mean;
    }
}

/* The kinds of processing an emit applies. */
typedef enum emit_kind { EMIT_PLAIN, EMIT_NORM, EMIT_Z } emit_kind;

/* Serves every hook on (site, layer): x transformed by kind with the vectors
 * a (weight or value bias) and b (bias). */
static bool emit(sae_lm_pass *p, sae_lm_site site, size_t layer, const float *x, size_t width,
                 emit_kind kind, const float *a, const float *b)
{
    size_t n = p->n_tokens;
    for (size_t i = 0; i < p->n_hooks; i++) {
        if (p->hooks[i].site != site || p->hooks[i].layer != layer)
            continue;
        float *dst = p->out[i];
        if (kind == EMIT_PLAIN && p->proc.center_writing_weights && p->centers &&
            residual_site(site)) {
            center_rows(dst, x, n, width);
        } else if (kind == EMIT_NORM && !p->proc.fold_ln) {
            for (size_t t = 0; t < n; t++)
                for (size_t j = 0; j < width; j++)
                    dst[t * width + j] = x[t * width + j] * a[j] + (b ? b[j] : 0.0f);
        } else if (kind == EMIT_Z && p->proc.fold_value_biases && a) {
            for (size_t t = 0; t < n; t++)
                for (size_t j = 0; j < width; j++)
                    dst[t * width + j] = x[t * width + j] - a[j];
        } else {
            memcpy(dst, x, n * width * sizeof *dst);
        }
        p->remaining--;
    }
    return p->remaining == 0;
}

bool sae_lm_pass_emit(sae_lm_pass *p, sae_lm_site site, size_t layer, const float *x,
                      size_t width)
{
    return emit(p, site, layer, x, width, EMIT_PLAIN, NULL, NULL);
}

bool sae_lm_pass_emit_norm(sae_lm_pass *p, sae_lm_site site, size_t layer, const float *x_hat,
                           const float *w, const float *b, size_t width)
{
    return emit(p, site, layer, x_hat, width, EMIT_NORM, w, b);
}

bool sae_lm_pass_emit_z(sae_lm_pass *p, size_t layer, const float *z, const float *b_v,
                        const float *b_v_ln, size_t width)
{
    return emit(p, SAE_LM_ATTN_Z, layer, z, width, EMIT_Z, p->proc.fold_ln ? b_v_ln : b_v, NULL);
}
