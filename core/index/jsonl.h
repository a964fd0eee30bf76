/* jsonl.h: the one JSON Lines reader of the index's inputs (the tokens file,
 * the explanations files; CONTRACT section 3).
 *
 * Reads a file line by line through a fixed chunk buffer, assembling each
 * line in a growable buffer capped at SAE_JSONL_MAX_LINE, and hashes every
 * byte read (the file's digest). Lines holding only JSON white space are
 * skipped but counted, so errors name the file and the line as an editor
 * numbers it. A reader opened with sae_jsonl_open_auto reads a gzip file
 * (recognised by its magic bytes, not its name) decompressed, and hashes the
 * decompressed bytes; sae_jsonl_rest hands a whole-file document (a JSON
 * array) to the same byte source. */
#ifndef SAE_JSONL_H
#define SAE_JSONL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <xxhash.h>

#include "io/error.h"

/* Lines longer than this are refused (a cap on what one line may allocate). */
#define SAE_JSONL_MAX_LINE ((size_t)256 << 20)

/* A file being read. Owns its buffers; borrows the file descriptor and the
 * path. After sae_jsonl_next, line (len bytes, NUL-terminated), off and
 * line_no describe the line returned. */
typedef struct sae_jsonl {
    int fd;
    const char *path;
    char *chunk;            /* (1 MB) bytes read but not yet consumed: [pos, len) */
    size_t pos, len;
    bool eof;
    uint64_t consumed;      /* file offset of chunk[pos] */
    char *line;             /* the current line, NUL-terminated */
    size_t line_len;        /* its length without the newline */
    size_t line_cap;
    uint64_t off;           /* its file offset */
    uint64_t line_no;       /* its 1-based line number */
    XXH3_state_t *xxh;
    void *gz;               /* a zlib gzFile when the file is gzip, else NULL (owned) */
    uint64_t gz_limit;      /* decompressed bytes allowed (SAE_JSONL_MAX_GZ) */
} sae_jsonl;

/* A gzip file may inflate to at most this many bytes (a cap on what a small
 * hostile file can make the reader chew through). */
#define SAE_JSONL_MAX_GZ ((uint64_t)64 << 30)

/* Sets r up to read fd (named path in errors) from its current offset. */
int sae_jsonl_open(sae_jsonl *r, int fd, const char *path, sae_error *err);
/* As sae_jsonl_open, but a file starting with the gzip magic (1f 8b) is read
 * decompressed; *is_gz says which. fd must be at offset 0 and seekable. */
int sae_jsonl_open_auto(sae_jsonl *r, int fd, const char *path, bool *is_gz, sae_error *err);
/* Frees r's buffers (not the file descriptor). */
void sae_jsonl_close(sae_jsonl *r);

/* Reads the next line that is not blank into r: 0 with *eof false when one
 * was read, 0 with *eof true at the end of the file, or an error code (a
 * failed read, a line over SAE_JSONL_MAX_LINE). */
int sae_jsonl_next(sae_jsonl *r, bool *eof, sae_error *err);

/* Peeks at the first byte that is not JSON white space without consuming
 * it: *c is that byte, or -1 at the end of the file. */
int sae_jsonl_peek(sae_jsonl *r, int *c, sae_error *err);

/* Reads everything not yet consumed into *buf (len bytes, NUL-terminated,
 * owned by the caller), at most max bytes: a longer file is refused. */
int sae_jsonl_rest(sae_jsonl *r, size_t max, char **buf, size_t *len, sae_error *err);

/* The file's XXH3-128 digest, lowercase hex, once every line was read. */
void sae_jsonl_digest(sae_jsonl *r, char out[33]);
/* An XXH3-128 hash as 32 lowercase hex digits (the one spelling of digests). */
void sae_digest_hex(XXH128_hash_t h, char out[33]);

/* Parses line line_no of path (len bytes) as a JSON object with jansson's
 * flags (duplicate keys are always refused) into *root (a new reference).
 * Errors name the file and the line. */
int sae_jsonl_object(const char *path, uint64_t line_no, const char *line, size_t len,
                     size_t flags, json_t **root, sae_error *err);

#endif
