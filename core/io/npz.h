/* npz.h: NumPy .npz archives (np.savez, np.savez_compressed) as named tensors.
 *
 * Every member must be "X.npy"; it becomes the tensor "X", in archive order,
 * read with core/io/npy's header parser: little-endian <f4, <f2 or <f8, C
 * order, 0 to SAE_ST_MAX_DIMS dimensions, npy format 1.0, 2.0 or 3.0. The
 * archive is read through core/io/zipmap: a stored member's array is used in
 * place in the mapping (np.savez's arrays usually start at an address that
 * is not 4-byte aligned; sae_st_tensor_f32 copies those), a deflated one is
 * inflated into a buffer the tensor owns. F64 tensors stay F64 in the file;
 * sae_st_tensor_f32 converts. The file's format name is "npz". */
#ifndef SAE_NPZ_H
#define SAE_NPZ_H

#include <stddef.h>
#include <stdint.h>

#include "io/error.h"
#include "io/safetensors.h"

/* Maps path and reads it with sae_npz_parse; *out owns the mapping. */
int sae_npz_open(const char *path, sae_st_file **out, sae_error *err);

/* Reads the archive buf[0..len) (borrowed, must outlive *out); `name`
 * prefixes every message. */
int sae_npz_parse(const char *name, const uint8_t *buf, size_t len, sae_st_file **out,
                  sae_error *err);

#endif
