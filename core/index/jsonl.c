/* jsonl.c: the JSON Lines reader of the index's inputs (jsonl.h). */
#include "index/jsonl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#define CHUNK ((size_t)1 << 20)

int sae_jsonl_open(sae_jsonl *r, int fd, const char *path, sae_error *err)
{
    memset(r, 0, sizeof *r);
    r->fd = fd;
    r->path = path;
    r->chunk = malloc(CHUNK);
    r->xxh = XXH3_createState();
    if (!r->chunk || !r->xxh)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
    XXH3_128bits_reset(r->xxh);
    return 0;
}

int sae_jsonl_open_auto(sae_jsonl *r, int fd, const char *path, bool *is_gz, sae_error *err)
{
    int rc = sae_jsonl_open(r, fd, path, err);
    if (rc)
        return rc;
    unsigned char magic[2];
    ssize_t got;
    do
        got = pread(fd, magic, sizeof magic, 0);
    while (got < 0 && errno == EINTR);
    if (got < 0)
        return sae_error_set(err, SAE_EIO, "%s: read failed: %s", path, strerror(errno));
    *is_gz = got == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
    if (!*is_gz)
        return 0;
    /* gzclose closes the descriptor it was given: give it its own. */
    int own = dup(fd);
    gzFile gz = own < 0 ? NULL : gzdopen(own, "rb");
    if (!gz) {
        if (own >= 0)
            close(own);
        return sae_error_set(err, SAE_ENOMEM, "%s: cannot start gzip decompression", path);
    }
    gzbuffer(gz, 1u << 17);
    r->gz = gz;
    r->gz_limit = SAE_JSONL_MAX_GZ;
    return 0;
}

void sae_jsonl_close(sae_jsonl *r)
{
    if (r->gz)
        gzclose_r((gzFile)r->gz);
    free(r->chunk);
    free(r->line);
    if (r->xxh)
        XXH3_freeState(r->xxh);
    memset(r, 0, sizeof *r);
}

/* Appends n bytes to the line being assembled at *used, growing it within
 * the cap. */
static int append(sae_jsonl *r, size_t *used, const char *src, size_t n, sae_error *err)
{
    size_t need;
    if (sae_add_size(*used, n, &need) || sae_add_size(need, 1, &need) ||
        need > SAE_JSONL_MAX_LINE + 1)
        return sae_error_set(err, SAE_ENOMEM, "%s: line %llu: longer than %zu bytes", r->path,
                             (unsigned long long)r->line_no + 1, SAE_JSONL_MAX_LINE);
    if (need > r->line_cap) {
        size_t cap = r->line_cap ? r->line_cap : 4096;
        while (cap < need)
            cap = cap > SAE_JSONL_MAX_LINE / 2 ? SAE_JSONL_MAX_LINE + 1 : cap * 2;
        char *p = realloc(r->line, cap);
        if (!p)
            return sae_error_set(err, SAE_ENOMEM, "%s: out of memory for line %llu", r->path,
                                 (unsigned long long)r->line_no + 1);
        r->line = p;
        r->line_cap = cap;
    }
    memcpy(r->line + *used, src, n);
    *used += n;
    return 0;
}

/* Refills the empty chunk from the file (decompressed when gzip) and hashes
 * what was read; at the end of the file the chunk stays empty and eof is set. */
static int fill(sae_jsonl *r, sae_error *err)
{
    if (r->eof)
        return 0;
    ssize_t got;
    if (r->gz) {
        gzFile gz = r->gz;
        int n = gzread(gz, r->chunk, (unsigned)CHUNK), zerr = Z_OK;
        const char *msg = n <= 0 ? gzerror(gz, &zerr) : NULL;
        /* A stream cut short reads as a clean end with Z_BUF_ERROR set. */
        if (n < 0 || zerr != Z_OK)
            return sae_error_set(err, SAE_EFORMAT, "%s: not a valid gzip file: %s", r->path,
                                 zerr == Z_ERRNO ? strerror(errno) : msg);
        got = n;
        if ((uint64_t)got > r->gz_limit)
            return sae_error_set(err, SAE_EFORMAT, "%s: inflates to more than %llu bytes",
                                 r->path, (unsigned long long)SAE_JSONL_MAX_GZ);
        r->gz_limit -= (uint64_t)got;
    } else {
        do
            got = read(r->fd, r->chunk, CHUNK);
        while (got < 0 && errno == EINTR);
        if (got < 0)
            return sae_error_set(err, SAE_EIO, "%s: read failed: %s", r->path, strerror(errno));
    }
    if (got == 0) {
        r->eof = true;
        return 0;
    }
    XXH3_128bits_update(r->xxh, r->chunk, (size_t)got);
    r->pos = 0;
    r->len = (size_t)got;
    return 0;
}

/* Reads the next line, blank or not, into r; *eof when there is none. */
static int next_line(sae_jsonl *r, bool *eof, sae_error *err)
{
    size_t used = 0;
    bool any = false;
    int rc;
    r->off = r->consumed;
    for (;;) {
        if (r->pos == r->len) {
            if ((rc = fill(r, err)))
                return rc;
            if (r->pos == r->len)
                break;
        }
        any = true;
        const char *start = r->chunk + r->pos;
        const char *nl = memchr(start, '\n', r->len - r->pos);
        size_t n = nl ? (size_t)(nl - start) : r->len - r->pos;
        if ((rc = append(r, &used, start, n, err)))
            return rc;
        r->pos += n + (nl ? 1 : 0);
        r->consumed += n + (nl ? 1 : 0);
        if (nl)
            break;
    }
    *eof = !any;
    if (!any)
        return 0;
    if (!r->line && (rc = append(r, &used, "", 0, err)))
        return rc;
    r->line[used] = '\0';
    r->line_no++;
    r->line_len = used;
    return 0;
}

/* True when the line holds only JSON whitespace (such lines are skipped). */
static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

int sae_jsonl_next(sae_jsonl *r, bool *eof, sae_error *err)
{
    int rc;
    do
        rc = next_line(r, eof, err);
    while (!rc && !*eof && blank(r->line, r->line_len));
    return rc;
}

int sae_jsonl_peek(sae_jsonl *r, int *c, sae_error *err)
{
    for (;;) {
        if (r->pos == r->len) {
            int rc = fill(r, err);
            if (rc)
                return rc;
            if (r->pos == r->len) {
                *c = -1;
                return 0;
            }
        }
        unsigned char b = (unsigned char)r->chunk[r->pos];
        if (b != ' ' && b != '\t' && b != '\r' && b != '\n') {
            *c = b;
            return 0;
        }
        /* Skipped white space still counts toward line numbers. */
        if (b == '\n')
            r->line_no++;
        r->pos++;
        r->consumed++;
    }
}

int sae_jsonl_rest(sae_jsonl *r, size_t max, char **buf, size_t *len, sae_error *err)
{
    size_t used = 0, cap = 0;
    char *out = NULL;
    int rc;
    for (;;) {
        if (r->pos == r->len) {
            if ((rc = fill(r, err)))
                goto fail;
            if (r->pos == r->len)
                break;
        }
        size_t n = r->len - r->pos;
        if (n > max - used) {
            rc = sae_error_set(err, SAE_ENOMEM, "%s: longer than %zu bytes", r->path, max);
            goto fail;
        }
        if (used + n + 1 > cap) {
            size_t c = cap ? cap : CHUNK;
            while (c < used + n + 1)
                c = c > SIZE_MAX / 2 ? used + n + 1 : c * 2;
            char *p = realloc(out, c);
            if (!p) {
                rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", r->path);
                goto fail;
            }
            out = p;
            cap = c;
        }
        memcpy(out + used, r->chunk + r->pos, n);
        used += n;
        r->pos += n;
        r->consumed += n;
    }
    if (!out && !(out = malloc(1))) {
        rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", r->path);
        goto fail;
    }
    out[used] = '\0';
    *buf = out;
    *len = used;
    return 0;
fail:
    free(out);
    return rc;
}

void sae_jsonl_digest(sae_jsonl *r, char out[33])
{
    sae_digest_hex(XXH3_128bits_digest(r->xxh), out);
}

void sae_digest_hex(XXH128_hash_t h, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[c.digest[i] >> 4];
        out[2 * i + 1] = hex[c.digest[i] & 15];
    }
    out[32] = '\0';
}

int sae_jsonl_object(const char *path, uint64_t line_no, const char *line, size_t len,
                     size_t flags, json_t **root, sae_error *err)
{
    json_error_t jerr;
    json_t *j = json_loadb(line, len, flags | JSON_REJECT_DUPLICATES, &jerr);
    if (!j)
        return sae_error_set(err, SAE_EFORMAT, "%s: line %llu: not valid JSON: %s", path,
                             (unsigned long long)line_no, jerr.text);
    if (!json_is_object(j)) {
        json_decref(j);
        return sae_error_set(err, SAE_EFORMAT, "%s: line %llu: not a JSON object", path,
                             (unsigned long long)line_no);
    }
    *root = j;
    return 0;
}
