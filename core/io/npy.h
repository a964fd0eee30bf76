/* npy.h: NumPy .npy files (format 1.0/2.0/3.0) of little-endian f4/f2/f8,
 * C order, 1-D or 2-D. Used for activation files and application/x-npy
 * request bodies. */
#ifndef SAE_NPY_H
#define SAE_NPY_H

#include <stddef.h>
#include <stdint.h>

#include "io/dtype.h"
#include "io/error.h"

#define SAE_NPY_MAX_DIMS 8

/* What a .npy header says: the dtype, the shape and where the data lies. */
typedef struct sae_npy_info {
    sae_dtype dtype;        /* SAE_DT_F32, SAE_DT_F16 or SAE_DT_F64 */
    int ndim;               /* 1 or 2 (sae_npy_parse); 0..SAE_NPY_MAX_DIMS (sae_npy_parse_nd) */
    uint64_t shape[SAE_NPY_MAX_DIMS]; /* entries past ndim are 0 */
    size_t data_offset;     /* bytes from the start of the buffer */
    size_t data_bytes;      /* = prod(shape) * dtype size, overflow-checked */
} sae_npy_info;

/* Parses the header of buf[0..len) and checks that len == data_offset +
 * data_bytes. Rejects big-endian, Fortran order, other dtypes, ndim > 2 with
 * SAE_EFORMAT (malformed) or SAE_EINVAL (well-formed but unsupported). `name`
 * is used in messages. */
int sae_npy_parse(const char *name, const uint8_t *buf, size_t len, sae_npy_info *out,
                  sae_error *err);

/* As sae_npy_parse, with the same rules, but any number of dimensions from 0
 * (a scalar) to max_ndim (at most SAE_NPY_MAX_DIMS) is accepted: the parser
 * of .npz members (core/io/npz.c). */
int sae_npy_parse_nd(const char *name, const uint8_t *buf, size_t len, int max_ndim,
                     sae_npy_info *out, sae_error *err);

/* Writes a 2-D float32 array (rows x cols) as .npy (format 1.0). */
int sae_npy_write_f32(const char *path, const float *data, size_t rows, size_t cols,
                      sae_error *err);

/* Writes floats as a 2-D .npy (format 1.0) of dtype F32, F16 or F64 (rounded
 * to nearest even), atomically: a temporary file renamed into place. */
int sae_npy_write(const char *path, sae_dtype dtype, const float *data, size_t rows,
                  size_t cols, sae_error *err);

#endif
