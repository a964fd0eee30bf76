/* safetensors.h: a hostile-file-safe reader and a small writer.
 *
 * The reader validates every rule of the reference implementation (CONTRACT
 * section 2) and memory-maps the file. Tensor data pointers point into the
 * mapping and live as long as the sae_st_file. The other readers of named
 * tensors (npz, torch checkpoints) fill the same sae_st_file; their tensors
 * may own their bytes (sae_st_tensor.owned). Each rule has its own
 * SAE_EST_* code (error.h); messages name the file and the rule. */
#ifndef SAE_SAFETENSORS_H
#define SAE_SAFETENSORS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/dtype.h"
#include "io/error.h"

#define SAE_ST_MAX_HEADER (100u * 1000u * 1000u) /* 100 MB, as the reference */
#define SAE_ST_MAX_DIMS 8

typedef struct sae_st_tensor {
    char *name;                         /* owned */
    sae_dtype dtype;
    int ndim;
    uint64_t shape[SAE_ST_MAX_DIMS];
    size_t nbytes;
    size_t n_elems;
    const void *data;                   /* into the mapping, or == owned */
    void *owned;                        /* NULL, or malloc'd bytes (a deflated archive
                                         * member, say) freed by sae_st_free */
} sae_st_tensor;

typedef struct sae_st_meta {
    char *key, *value;                  /* owned */
} sae_st_meta;

/* A file of named tensors: a safetensors file, or an npz archive or a torch
 * checkpoint read into the same shape (core/io/npz.h, core/io/torchpt.h). */
typedef struct sae_st_file {
    char *path;                         /* owned copy, used in messages */
    const char *format;                 /* static: "safetensors", "npz" or "torch" */
    const uint8_t *base;                /* whole file (mapped or borrowed) */
    size_t size;
    bool mapped;                        /* base is ours to munmap */
    size_t n_tensors;
    sae_st_tensor *tensors;             /* owned, in header order */
    size_t n_meta;
    sae_st_meta *meta;                  /* owned */
} sae_st_file;

/* Opens and memory-maps path, validating it completely. On success *out owns
 * the mapping; free with sae_st_free. */
int sae_st_open(const char *path, sae_st_file **out, sae_error *err);

/* Validates an in-memory file (buf borrowed, must outlive *out). `name` is used
 * in messages. Used by sae_st_open and by the fuzz target. */
int sae_st_parse(const char *name, const uint8_t *buf, size_t len, sae_st_file **out,
                 sae_error *err);

/* Frees f: names, metadata, tensors' owned bytes and, when it is f's, the
 * mapping. NULL is a no-op. */
void sae_st_free(sae_st_file *f);

/* Maps path read-only (a regular, non-empty file) and registers the mapping
 * for SIGBUS messages (io/mapped.h); `what` names the expected kind in the
 * "is a directory" message. On success *base and *len describe the mapping;
 * release it with sae_st_unmap. The opening step of every reader here. */
int sae_st_map(const char *path, const char *what, const uint8_t **base, size_t *len,
               sae_error *err);
void sae_st_unmap(const uint8_t *base, size_t len);

/* A reader of a whole in-memory file into a sae_st_file (sae_st_parse,
 * sae_npz_parse, sae_pt_parse). */
typedef int (*sae_st_parse_fn)(const char *name, const uint8_t *buf, size_t len,
                               sae_st_file **out, sae_error *err);

/* Maps path (sae_st_map) and reads it with parse; on success *out owns the
 * mapping, on failure it is unmapped. The open of every such reader. */
int sae_st_open_with(const char *path, const char *what, sae_st_parse_fn parse,
                     sae_st_file **out, sae_error *err);

/* The tensor with this name, or NULL. */
const sae_st_tensor *sae_st_find(const sae_st_file *f, const char *name);

/* The metadata value for key, or NULL. */
const char *sae_st_meta_get(const sae_st_file *f, const char *key);

/* Gives t's contents as floats. An F32 tensor whose data is 4-byte aligned is
 * returned in place (*owned = NULL); other float dtypes are converted into a
 * new buffer returned in both *out and *owned (caller frees *owned). */
int sae_st_tensor_f32(const sae_st_file *f, const sae_st_tensor *t, const float **out,
                      float **owned, sae_error *err);

/* Writer: tensors are added in order and written with a header padded to 8
 * bytes (as the Python writer does), so F32 data is aligned when mapped. */
typedef struct sae_st_writer sae_st_writer;
sae_st_writer *sae_st_writer_new(void);
/* data is copied; shape has ndim entries. Returns 0 or SAE_EINVAL (duplicate). */
int sae_st_writer_add(sae_st_writer *w, const char *name, sae_dtype dtype, int ndim,
                      const uint64_t *shape, const void *data);
/* Adds an F32 tensor converting from float to dtype (F32, F16, BF16, F64). */
int sae_st_writer_add_f32(sae_st_writer *w, const char *name, sae_dtype dtype, int ndim,
                          const uint64_t *shape, const float *data);
/* As the two above, but data is borrowed, not copied: it must stay valid and
 * unchanged until sae_st_writer_save returns. For large tensors (a model's
 * weights), so that saving never holds a second full copy in memory. */
int sae_st_writer_add_ref(sae_st_writer *w, const char *name, sae_dtype dtype, int ndim,
                          const uint64_t *shape, const void *data);
int sae_st_writer_add_f32_ref(sae_st_writer *w, const char *name, sae_dtype dtype, int ndim,
                              const uint64_t *shape, const float *data);
/* Adds a "__metadata__" entry (key and value copied; a repeated key replaces). */
int sae_st_writer_meta(sae_st_writer *w, const char *key, const char *value);
/* Writes atomically (temp file + rename). */
int sae_st_writer_save(sae_st_writer *w, const char *path, sae_error *err);
void sae_st_writer_free(sae_st_writer *w);

#endif
