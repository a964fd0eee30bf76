/* autoencoder.h: the plain stacked autoencoder of `sae train --arch autoencoder`:
 * Linear+ReLU layers down to a bottleneck and back up (`--layers 4,3,2` gives
 * 4->3->2->3->4). Saved in the SAELens folder layout with architecture
 * "autoencoder"; `sae encode` gives its bottleneck codes. */
#ifndef SAE_AUTOENCODER_H
#define SAE_AUTOENCODER_H

#include <jansson.h>

#include "error.h"
#include "model.h"
#include "safetensors.h"

/* Loads the layer tensors named by cfg (borrowed) from st (borrowed; must
 * outlive *out) and fills m->d_in / m->d_sae (the bottleneck width). */
int sae_ae_load(const sae_st_file *st, const json_t *cfg, sae_model *m, struct sae_ae **out,
                sae_error *err);
void sae_ae_free(struct sae_ae *ae);

/* Bottleneck codes of n rows x (n, d_in) into codes (n, d_sae). */
int sae_ae_encode(const struct sae_ae *ae, const float *x, size_t n, float *codes,
                  sae_error *err);

#endif
