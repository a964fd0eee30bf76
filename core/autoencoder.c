/* autoencoder.c: placeholder until `sae train --arch autoencoder` lands. */
#include "autoencoder.h"

int sae_ae_load(const sae_st_file *st, const json_t *cfg, sae_model *m, struct sae_ae **out,
                sae_error *err)
{
    (void)st;
    (void)cfg;
    (void)m;
    (void)out;
    return sae_error_set(err, SAE_EINVAL, "architecture \"autoencoder\" is not supported yet");
}

void sae_ae_free(struct sae_ae *ae)
{
    (void)ae;
}

int sae_ae_encode(const struct sae_ae *ae, const float *x, size_t n, float *codes,
                  sae_error *err)
{
    (void)ae;
    (void)x;
    (void)n;
    (void)codes;
    return sae_error_set(err, SAE_EINVAL, "architecture \"autoencoder\" is not supported yet");
}
