/* model.c: loading an SAE folder, and building one from arrays.
 * The folder loader (cfg.json parsing, SAELens/sparsify layouts) is below the
 * shared helpers. */
#include "model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "autoencoder.h"

const char *sae_arch_name(sae_arch a)
{
    switch (a) {
    case SAE_ARCH_STANDARD: return "standard";
    case SAE_ARCH_JUMPRELU: return "jumprelu";
    case SAE_ARCH_TOPK: return "topk";
    case SAE_ARCH_GATED: return "gated";
    case SAE_ARCH_AUTOENCODER: return "autoencoder";
    }
    return "?";
}

const char *sae_norm_name(sae_norm n)
{
    switch (n) {
    case SAE_NORM_NONE: return "none";
    case SAE_NORM_CONSTANT_NORM_RESCALE: return "constant_norm_rescale";
    case SAE_NORM_LAYER_NORM: return "layer_norm";
    case SAE_NORM_EXPECTED_AVERAGE_ONLY_IN: return "expected_average_only_in";
    }
    return "?";
}

/* Keeps buf for freeing with the model. */
static int model_own(sae_model *m, float *buf, sae_error *err)
{
    float **grown = realloc(m->owned, (m->n_owned + 1) * sizeof *grown);
    if (!grown) {
        free(buf);
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    }
    m->owned = grown;
    m->owned[m->n_owned++] = buf;
    return 0;
}

/* Computes dec_norm (always) and exp_r_mag (gated) from the weights in place. */
static int model_derive(sae_model *m, const float *r_mag, sae_error *err)
{
    m->dec_norm = malloc(m->d_sae * sizeof *m->dec_norm);
    if (!m->dec_norm)
        return sae_error_set(err, SAE_ENOMEM, "out of memory for decoder norms");
    for (size_t i = 0; i < m->d_sae; i++) {
        const float *row = m->w_dec + i * m->d_in;
        double s = 0;
        for (size_t j = 0; j < m->d_in; j++)
            s += (double)row[j] * row[j];
        m->dec_norm[i] = (float)sqrt(s);
    }
    if (m->arch == SAE_ARCH_GATED) {
        float *e = malloc(m->d_sae * sizeof *e);
        if (!e)
            return sae_error_set(err, SAE_ENOMEM, "out of memory for exp(r_mag)");
        for (size_t i = 0; i < m->d_sae; i++)
            e[i] = expf(r_mag[i]);
        m->exp_r_mag = e;
        return model_own(m, e, err);
    }
    return 0;
}

int sae_model_from_spec(const sae_model_spec *s, sae_model **out, sae_error *err)
{
    if (!s->d_in || !s->d_sae || !s->w_enc || !s->w_dec || !s->b_dec)
        return sae_error_set(err, SAE_EINVAL, "model spec: d_in, d_sae, W_enc, W_dec, b_dec required");
    if (s->arch == SAE_ARCH_GATED ? !(s->b_gate && s->b_mag && s->r_mag) : !s->b_enc)
        return sae_error_set(err, SAE_EINVAL, "model spec: biases missing for %s",
                             sae_arch_name(s->arch));
    if (s->arch == SAE_ARCH_JUMPRELU && !s->threshold)
        return sae_error_set(err, SAE_EINVAL, "model spec: jumprelu needs threshold");
    if (s->arch == SAE_ARCH_TOPK && (s->k == 0 || s->k > s->d_sae))
        return sae_error_set(err, SAE_EINVAL, "model spec: topk needs 1 <= k <= d_sae");
    if (s->arch == SAE_ARCH_AUTOENCODER)
        return sae_error_set(err, SAE_EINVAL, "model spec: autoencoder is loaded from a folder");
    sae_model *m = calloc(1, sizeof *m);
    if (!m)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    m->dir = strdup("(in memory)");
    m->weights_path = strdup("(in memory)");
    m->model_name = strdup("");
    m->hook_name = strdup("");
    strcpy(m->dtype, "F32");
    m->d_in = s->d_in;
    m->d_sae = s->d_sae;
    m->arch = s->arch;
    m->k = s->k;
    m->rescale_acts_by_decoder_norm = s->rescale_acts_by_decoder_norm;
    m->apply_b_dec_to_input = s->apply_b_dec_to_input;
    m->norm = s->norm;
    m->norm_scaling_factor = s->norm_scaling_factor > 0 ? s->norm_scaling_factor : 1.0f;
    m->w_enc = s->w_enc;
    m->b_enc = s->b_enc;
    m->w_dec = s->w_dec;
    m->b_dec = s->b_dec;
    m->threshold = s->threshold;
    m->b_gate = s->b_gate;
    m->b_mag = s->b_mag;
    int rc = SAE_ENOMEM;
    if (!m->dir || !m->weights_path || !m->model_name || !m->hook_name) {
        sae_error_set(err, rc, "out of memory");
        goto fail;
    }
    if ((rc = model_derive(m, s->r_mag, err)))
        goto fail;
    sae_digest_buffer(s->w_enc, s->d_in * s->d_sae * sizeof(float), m->weights_digest);
    *out = m;
    return 0;
fail:
    sae_model_free(m);
    return rc;
}

void sae_model_free(sae_model *m)
{
    if (!m)
        return;
    if (m->ae)
        sae_ae_free(m->ae);
    for (size_t i = 0; i < m->n_owned; i++)
        free(m->owned[i]);
    free(m->owned);
    free(m->dec_norm);
    free(m->dir);
    free(m->weights_path);
    free(m->model_name);
    free(m->hook_name);
    sae_st_free(m->st);
    free(m);
}

/* ---- the folder loader (SAELens / sparsify) and the digest: to be written ---- */
