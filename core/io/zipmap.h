/* zipmap.h: a zip archive in memory (a mapped file), read with libzip.
 *
 * The npz and torch checkpoint readers (core/io/npz.h, core/io/torchpt.h) sit
 * on this. libzip reads the archive through a source callback over the
 * mapping, so nothing is copied to open it. libzip has no public call for
 * where a member's bytes start; this module finds out by watching which
 * mapping offset libzip reads when the member's raw bytes are asked for,
 * then checks it. A stored member that passes is used in place; any other is
 * read (and inflated) into a new buffer.
 *
 * Every archive is treated as hostile. libzip checks each local header
 * against the central directory (ZIP_CHECKCONS); a member's size is never
 * trusted beyond what the file can hold (stored) or a ratio of it
 * (deflated: zip bombs); every byte handed out has had its CRC-32 checked;
 * duplicate member names are refused. Zip64 archives read as any other. */
#ifndef SAE_ZIPMAP_H
#define SAE_ZIPMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/error.h"

/* A deflated member may inflate to at most this many times the archive's
 * size (deflate itself cannot exceed about 1032) and never past the cap. */
#define SAE_ZIP_MAX_RATIO 1024u
#define SAE_ZIP_MAX_INFLATED ((uint64_t)64 << 30) /* 64 GiB */
#define SAE_ZIP_MAX_MEMBERS (1u << 20)

/* One member as the central directory describes it. */
typedef struct sae_zip_member {
    char *name;          /* owned by the sae_zip */
    uint64_t size;       /* uncompressed size, as claimed */
    int method;          /* 0 stored, 8 deflated (others are refused when read) */
    int64_t data_offset; /* >= 0 when stored and verified in the mapping, else -1 */
    uint64_t comp_size;  /* bytes in the archive, as claimed */
    uint32_t crc;        /* CRC-32 of the uncompressed bytes, as claimed */
    bool encrypted;      /* refused when read */
} sae_zip_member;

typedef struct sae_zip sae_zip;

/* Opens the archive buf[0..len) (borrowed: it must outlive *out). `name`
 * (the file's path) prefixes every message. Fails with SAE_EFORMAT when the
 * bytes are not a consistent zip archive, saying what libzip found. */
int sae_zip_open_mem(const char *name, const uint8_t *buf, size_t len, sae_zip **out,
                     sae_error *err);

/* The number of members, and member i (0 <= i < count) in central-directory
 * order. */
size_t sae_zip_count(const sae_zip *z);
const sae_zip_member *sae_zip_member_at(const sae_zip *z, size_t i);

/* The member with this exact name, or NULL. */
const sae_zip_member *sae_zip_find(const sae_zip *z, const char *name);

/* The member's bytes, m->size of them: in place (*owned = NULL) when stored
 * with a verified offset, else inflated into a new buffer (*owned, caller
 * frees; *data == *owned). The CRC-32 is checked either way. Refused: an
 * encrypted member, a method other than stored/deflated, a stored member
 * whose sizes disagree or that overruns the file, a deflated member claiming
 * more than SAE_ZIP_MAX_RATIO x the archive or SAE_ZIP_MAX_INFLATED, and a
 * member whose bytes are not what its header claims (size, CRC). */
int sae_zip_read(sae_zip *z, const sae_zip_member *m, const uint8_t **data, void **owned,
                 sae_error *err);

/* Closes the archive (the buffer is the caller's). NULL is a no-op. */
void sae_zip_free(sae_zip *z);

#endif
