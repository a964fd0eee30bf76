/* error.h: how core reports failure.
 *
 * Every fallible core function returns 0 on success or a nonzero sae_status,
 * and fills the caller's sae_error with the same code and a one-line message
 * naming the file, tensor, field or line at fault. Core never prints and never
 * exits; the caller decides what to do with the message. */
#ifndef SAE_ERROR_H
#define SAE_ERROR_H

#include <stddef.h>

enum sae_status {
    SAE_OK = 0,
    SAE_EIO,      /* open/read/mmap/write failed (errno text in the message) */
    SAE_ENOMEM,   /* allocation failed or a size cap was hit */
    SAE_EINVAL,   /* bad argument or bad user input (cfg, flags, request) */
    SAE_EFORMAT,  /* a file is not what it claims (generic) */
    SAE_EDIM,     /* dimension mismatch */
    SAE_ERANGE,   /* value out of range / not finite */

    /* safetensors rules (CONTRACT section 2), one code per rule */
    SAE_EST_TRUNCATED = 100,     /* shorter than 8 bytes or than header/data claim */
    SAE_EST_HEADER_TOO_LARGE,    /* header length > 100 MB */
    SAE_EST_HEADER_UTF8,         /* header is not valid UTF-8 */
    SAE_EST_HEADER_JSON,         /* header is not parseable JSON */
    SAE_EST_HEADER_NOT_OBJECT,   /* header JSON is not an object / entry not an object */
    SAE_EST_DUPLICATE_NAME,      /* a tensor name appears twice */
    SAE_EST_UNKNOWN_DTYPE,       /* dtype string not known */
    SAE_EST_BAD_SHAPE,           /* shape not a list of non-negative integers */
    SAE_EST_BAD_OFFSETS,         /* data_offsets not [begin,end] with begin <= end */
    SAE_EST_OFFSETS_NOT_CONTIGUOUS, /* hole or overlap between tensors / not from 0 */
    SAE_EST_SIZE_MISMATCH,       /* end-begin != prod(shape) * dtype size */
    SAE_EST_SIZE_OVERFLOW,       /* prod(shape) * dtype size overflows */
    SAE_EST_TRAILING_BYTES,      /* file longer than header + data */
    SAE_EST_METADATA,            /* __metadata__ not a string->string object */
    SAE_EST_MISALIGNED,          /* internal: tensor not aligned for in-place use */
};

typedef struct sae_error {
    int code;
    char msg[512];
} sae_error;

/* Sets err (if not NULL) to code and the printf-formatted message; returns code
 * so callers can write `return sae_error_set(err, SAE_EIO, "%s: ...", path);`. */
int sae_error_set(sae_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Clears err to SAE_OK with an empty message. */
void sae_error_clear(sae_error *err);

/* Checked size arithmetic: store a*b (a+b) in *out and return 0, or return 1 on
 * overflow leaving *out untouched. Every size computed from file contents goes
 * through these. */
int sae_mul_size(size_t a, size_t b, size_t *out);
int sae_add_size(size_t a, size_t b, size_t *out);

#endif
