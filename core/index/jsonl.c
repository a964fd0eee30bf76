/* jsonl.c: the JSON Lines reader of the index's inputs (jsonl.h). */
#include "index/jsonl.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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

void sae_jsonl_close(sae_jsonl *r)
{
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

/* Reads the next line, blank or not, into r; *eof when there is none. */
static int next_line(sae_jsonl *r, bool *eof, sae_error *err)
{
    size_t used = 0;
    bool any = false;
    int rc;
    r->off = r->consumed;
    for (;;) {
        if (r->pos == r->len) {
            if (r->eof)
                break;
            ssize_t got;
            do
                got = read(r->fd, r->chunk, CHUNK);
            while (got < 0 && errno == EINTR);
            if (got < 0)
                return sae_error_set(err, SAE_EIO, "%s: read failed: %s", r->path,
                                     strerror(errno));
            if (got == 0) {
                r->eof = true;
                break;
            }
            XXH3_128bits_update(r->xxh, r->chunk, (size_t)got);
            r->pos = 0;
            r->len = (size_t)got;
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

void sae_jsonl_digest(sae_jsonl *r, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(r->xxh));
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
