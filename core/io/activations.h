/* activations.h: a corpus of activation rows read from one or more files
 * (.safetensors with a 2-D tensor "activations", or .npy), in the order given.
 * Files are memory-mapped; rows are converted to float on read, block by block,
 * so memory does not grow with the corpus. */
#ifndef SAE_ACTIVATIONS_H
#define SAE_ACTIVATIONS_H

#include <stddef.h>

#include "io/error.h"

typedef struct sae_acts sae_acts;

/* Opens every file; all must have the same d_in. */
int sae_acts_open(const char *const *paths, size_t n_paths, sae_acts **out, sae_error *err);
size_t sae_acts_rows(const sae_acts *a);
size_t sae_acts_dim(const sae_acts *a);
/* The path of the first file, for messages about the corpus as a whole (its
 * d_in, which every file shares). Borrowed. */
const char *sae_acts_first_path(const sae_acts *a);
/* Copies rows [row0, row0+n) as float into dst (n x d_in). */
int sae_acts_read(const sae_acts *a, size_t row0, size_t n, float *dst, sae_error *err);
/* Tells the kernel rows [row0, row0+n) will not be read again soon: the whole
 * pages they span leave the process's resident set (read from the file again
 * if ever needed). Lets a streaming pass keep its RSS flat whatever the corpus
 * size. Out-of-range rows are ignored. */
void sae_acts_release(const sae_acts *a, size_t row0, size_t n);
void sae_acts_free(sae_acts *a);

#endif
