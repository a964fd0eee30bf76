/* lm_ckpt.h: a Hugging Face checkpoint folder's tensors, whatever the family.
 *
 * The folder holds model.safetensors, or the shards that
 * model.safetensors.index.json's weight_map names. Every file is opened with
 * core/io/safetensors (validated, memory-mapped). Across shards a tensor name
 * may appear once; each weight_map entry must be a plain file name in the
 * folder and that file must hold the tensor. A family asks for tensors by
 * the name the checkpoint uses after the prefix it chose (sae_lm_ckpt_prefix:
 * GPT-2 checkpoints are saved with "transformer." or without), with the shape
 * it expects, and gets F32: in place when the file holds aligned F32, else a
 * converted buffer the checkpoint owns. Every value handed out is finite. */
#ifndef SAE_LM_CKPT_H
#define SAE_LM_CKPT_H

#include <stddef.h>

#include "io/error.h"
#include "io/safetensors.h"

/* Owns the open files and every converted buffer. */
typedef struct sae_lm_ckpt {
    char *dir;                  /* owned: the folder, for messages */
    sae_st_file **files;        /* owned: (n_files) */
    size_t n_files;
    const char *prefix;         /* static: what every name is looked up under ("" at first) */
    float **owned;              /* owned: converted tensors */
    size_t n_owned;
    char dtype[8];              /* dtype of the first tensor handed out ("F32", ...) */
} sae_lm_ckpt;

/* Opens dir's safetensors (single file or sharded) into ck. */
int sae_lm_ckpt_open(const char *dir, sae_lm_ckpt *ck, sae_error *err);

/* Frees everything ck owns and zeroes it. */
void sae_lm_ckpt_free(sae_lm_ckpt *ck);

/* Chooses, of the n prefixes (static strings), the first under which the
 * checkpoint holds `probe`, and looks every later name up under it. Fails
 * naming the probe when none does. */
int sae_lm_ckpt_prefix(sae_lm_ckpt *ck, const char *probe, const char *const *prefixes, size_t n,
                       sae_error *err);

/* The tensor prefix + name, which must have ndim dims equal to shape, as
 * finite F32 (borrowed from ck). Messages name the file and the tensor. */
int sae_lm_ckpt_f32(sae_lm_ckpt *ck, const char *name, int ndim, const size_t *shape,
                    const float **out, sae_error *err);

#endif
