/* autoencoder.h: the plain stacked autoencoder of `sae train --arch autoencoder`:
 * Linear+ReLU layers down to a bottleneck and back up (`--layers 4,3,2` gives
 * 4->3->2->3->4). Saved in the SAELens folder layout with architecture
 * "autoencoder"; `sae encode` gives its bottleneck codes. */
#ifndef SAE_AUTOENCODER_H
#define SAE_AUTOENCODER_H

#include <jansson.h>

#include "io/error.h"
#include "io/safetensors.h"

#define SAE_AE_MAX_LAYERS 8 /* widths in cfg "layers", bottleneck included */
#define SAE_AE_MAX_LINEAR (2 * (SAE_AE_MAX_LAYERS - 1))

struct sae_ae;

/* Loads the layer tensors named by cfg (borrowed) from st (borrowed; must
 * outlive *out). */
int sae_ae_load(const sae_st_file *st, const json_t *cfg, struct sae_ae **out, sae_error *err);
void sae_ae_free(struct sae_ae *ae);

/* The input width and the bottleneck (code) width of a loaded net. */
size_t sae_ae_d_in(const struct sae_ae *ae);
size_t sae_ae_d_code(const struct sae_ae *ae);
/* Bottleneck codes of n rows x (n, d_in) into codes (n, d_sae). */
int sae_ae_encode(const struct sae_ae *ae, const float *x, size_t n, float *codes,
                  sae_error *err);

#endif
