/* tokens.c: the tokens and explanations JSON Lines readers (tokens.h). */
#include "index/tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

/* Reads a file line by line through a fixed chunk buffer, assembling each line
 * in a growable buffer capped at SAE_JSONL_MAX_LINE, and hashes every byte
 * read. Owns its buffers; borrows fd and path. */
typedef struct line_reader {
    int fd;
    const char *path;
    char *chunk;            /* (CHUNK) bytes read but not yet consumed: [pos, len) */
    size_t pos, len;
    bool eof;
    uint64_t consumed;      /* file offset of chunk[pos] */
    uint64_t line_no;       /* of the line last returned, 1-based */
    char *line;             /* the current line, NUL-terminated */
    size_t line_cap;
    XXH3_state_t *xxh;
} line_reader;

#define CHUNK ((size_t)1 << 20)

/* Sets up lr over fd; returns 0 or SAE_ENOMEM. */
static int lr_init(line_reader *lr, int fd, const char *path, sae_error *err)
{
    memset(lr, 0, sizeof *lr);
    lr->fd = fd;
    lr->path = path;
    lr->chunk = malloc(CHUNK);
    lr->xxh = XXH3_createState();
    if (!lr->chunk || !lr->xxh)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
    XXH3_128bits_reset(lr->xxh);
    return 0;
}

/* Frees the reader's buffers (not the file descriptor). */
static void lr_free(line_reader *lr)
{
    free(lr->chunk);
    free(lr->line);
    if (lr->xxh)
        XXH3_freeState(lr->xxh);
}

/* Appends n bytes to the current line at *used, growing it within the cap. */
static int lr_append(line_reader *lr, size_t *used, const char *src, size_t n, sae_error *err)
{
    size_t need;
    if (sae_add_size(*used, n, &need) || sae_add_size(need, 1, &need) ||
        need > SAE_JSONL_MAX_LINE + 1)
        return sae_error_set(err, SAE_ENOMEM, "%s: line %llu: longer than %zu bytes", lr->path,
                             (unsigned long long)lr->line_no + 1, SAE_JSONL_MAX_LINE);
    if (need > lr->line_cap) {
        size_t cap = lr->line_cap ? lr->line_cap : 4096;
        while (cap < need)
            cap = cap > SAE_JSONL_MAX_LINE / 2 ? SAE_JSONL_MAX_LINE + 1 : cap * 2;
        char *p = realloc(lr->line, cap);
        if (!p)
            return sae_error_set(err, SAE_ENOMEM, "%s: out of memory for line %llu", lr->path,
                                 (unsigned long long)lr->line_no + 1);
        lr->line = p;
        lr->line_cap = cap;
    }
    memcpy(lr->line + *used, src, n);
    *used += n;
    return 0;
}

/* Returns the next line (without its newline) in lr->line / *len, its file
 * offset in *off: 1 when a line was read, 0 at end of file, or an error code
 * (negated so callers can tell it from 1). */
static int lr_next(line_reader *lr, size_t *len, uint64_t *off, sae_error *err)
{
    size_t used = 0;
    bool any = false;
    *off = lr->consumed;
    for (;;) {
        if (lr->pos == lr->len) {
            if (lr->eof)
                break;
            ssize_t r;
            do
                r = read(lr->fd, lr->chunk, CHUNK);
            while (r < 0 && errno == EINTR);
            if (r < 0)
                return -sae_error_set(err, SAE_EIO, "%s: read failed: %s", lr->path,
                                      strerror(errno));
            if (r == 0) {
                lr->eof = true;
                break;
            }
            XXH3_128bits_update(lr->xxh, lr->chunk, (size_t)r);
            lr->pos = 0;
            lr->len = (size_t)r;
        }
        any = true;
        const char *start = lr->chunk + lr->pos;
        const char *nl = memchr(start, '\n', lr->len - lr->pos);
        size_t n = nl ? (size_t)(nl - start) : lr->len - lr->pos;
        int rc = lr_append(lr, &used, start, n, err);
        if (rc)
            return -rc;
        lr->pos += n + (nl ? 1 : 0);
        lr->consumed += n + (nl ? 1 : 0);
        if (nl)
            break;
    }
    if (!any)
        return 0;
    if (!lr->line) {
        int rc = lr_append(lr, &used, "", 0, err);
        if (rc)
            return -rc;
    }
    lr->line[used] = '\0';
    lr->line_no++;
    *len = used;
    return 1;
}

/* The file's digest after every byte was read. */
static void lr_digest(line_reader *lr, char out[33])
{
    static const char hex[] = "0123456789abcdef";
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, XXH3_128bits_digest(lr->xxh));
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[c.digest[i] >> 4];
        out[2 * i + 1] = hex[c.digest[i] & 15];
    }
    out[32] = '\0';
}

/* True when the line holds only JSON whitespace (such lines are skipped). */
static bool blank(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
            return false;
    return true;
}

/* Parses one tokens line into a JSON object and validates it: returns the
 * number of tokens in *n_tok and the document's "tokens" array (borrowed
 * from *root, which the caller frees). */
static int parse_tokens_line(const char *path, uint64_t line_no, const char *line, size_t len,
                             json_t **root, json_t **tokens, sae_error *err)
{
    json_error_t jerr;
    json_t *j = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &jerr);
    if (!j)
        return sae_error_set(err, SAE_EFORMAT, "%s: line %llu: not valid JSON: %s", path,
                             (unsigned long long)line_no, jerr.text);
    int rc;
    if (!json_is_object(j)) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: line %llu: not a JSON object", path,
                           (unsigned long long)line_no);
        goto fail;
    }
    json_t *id = json_object_get(j, "id");
    if (id && !json_is_string(id) && !json_is_integer(id) && !json_is_null(id)) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: line %llu: \"id\" must be a string or an integer",
                           path, (unsigned long long)line_no);
        goto fail;
    }
    json_t *toks = json_object_get(j, "tokens");
    if (!json_is_array(toks)) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: line %llu: no \"tokens\" array", path,
                           (unsigned long long)line_no);
        goto fail;
    }
    size_t n = json_array_size(toks);
    if (n > UINT32_MAX) {
        rc = sae_error_set(err, SAE_ERANGE, "%s: line %llu: more than 2^32-1 tokens", path,
                           (unsigned long long)line_no);
        goto fail;
    }
    for (size_t i = 0; i < n; i++)
        if (!json_is_string(json_array_get(toks, i))) {
            rc = sae_error_set(err, SAE_EFORMAT, "%s: line %llu: tokens[%zu] is not a string",
                               path, (unsigned long long)line_no, i);
            goto fail;
        }
    *root = j;
    *tokens = toks;
    return 0;
fail:
    json_decref(j);
    return rc;
}

/* Grows the per-document arrays of t to hold at least need documents. */
static int tokens_grow(sae_tokens *t, size_t *cap, size_t need, sae_error *err)
{
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 1024;
    if (c < need)
        c = need;
    if (c > SIZE_MAX / sizeof(uint64_t) - 1)
        return sae_error_set(err, SAE_ENOMEM, "%s: too many documents", t->path);
    uint64_t *a = realloc(t->line_off, c * sizeof *a);
    if (a)
        t->line_off = a;
    uint64_t *b = a ? realloc(t->line_len, c * sizeof *b) : NULL;
    if (b)
        t->line_len = b;
    uint64_t *d = b ? realloc(t->line_no, c * sizeof *d) : NULL;
    if (d)
        t->line_no = d;
    uint64_t *e = d ? realloc(t->row_start, (c + 1) * sizeof *e) : NULL;
    if (e)
        t->row_start = e;
    if (!e)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory for %zu documents", t->path,
                             need);
    *cap = c;
    return 0;
}

int sae_tokens_open(const char *path, sae_tokens **out, sae_error *err)
{
    int rc;
    size_t cap = 0;
    line_reader lr;
    bool lr_ok = false;
    sae_tokens *t = calloc(1, sizeof *t);
    if (!t)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
    t->fd = -1;
    t->path = strdup(path);
    if (!t->path) {
        rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
        goto out;
    }
    t->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (t->fd < 0) {
        rc = sae_error_set(err, SAE_EIO, "%s: cannot open: %s", path, strerror(errno));
        goto out;
    }
    if ((rc = lr_init(&lr, t->fd, t->path, err)))
        goto out;
    lr_ok = true;
    if ((rc = tokens_grow(t, &cap, 1, err)))
        goto out;
    t->row_start[0] = 0;
    for (;;) {
        size_t len;
        uint64_t off;
        int r = lr_next(&lr, &len, &off, err);
        if (r < 0) {
            rc = -r;
            goto out;
        }
        if (r == 0)
            break;
        if (blank(lr.line, len))
            continue;
        json_t *root, *toks;
        if ((rc = parse_tokens_line(t->path, lr.line_no, lr.line, len, &root, &toks, err)))
            goto out;
        uint64_t n = json_array_size(toks);
        json_decref(root);
        if (t->n_docs >= UINT32_MAX || t->n_tokens + n > UINT32_MAX) {
            rc = sae_error_set(err, SAE_ERANGE,
                               "%s: line %llu: more than 2^32-1 documents or tokens in one corpus",
                               t->path, (unsigned long long)lr.line_no);
            goto out;
        }
        if ((rc = tokens_grow(t, &cap, t->n_docs + 1, err)))
            goto out;
        t->line_off[t->n_docs] = off;
        t->line_len[t->n_docs] = len;
        t->line_no[t->n_docs] = lr.line_no;
        t->n_tokens += n;
        t->row_start[++t->n_docs] = t->n_tokens;
    }
    lr_digest(&lr, t->digest);
    rc = 0;
out:
    if (lr_ok)
        lr_free(&lr);
    if (rc) {
        sae_tokens_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

void sae_tokens_free(sae_tokens *t)
{
    if (!t)
        return;
    if (t->fd >= 0)
        close(t->fd);
    free(t->path);
    free(t->line_off);
    free(t->line_len);
    free(t->line_no);
    free(t->row_start);
    free(t);
}

size_t sae_tokens_doc_of_row(const sae_tokens *t, uint64_t row)
{
    /* The last document whose first row is <= row; empty documents before a
     * non-empty one share its row_start and are skipped by taking the last. */
    size_t lo = 0, hi = t->n_docs;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->row_start[mid] <= row)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

void sae_doc_free(sae_doc *d)
{
    if (!d)
        return;
    if (d->tok)
        for (size_t i = 0; i < d->n; i++)
            free(d->tok[i]);
    free(d->tok);
    free(d->tok_len);
    free(d->id);
    memset(d, 0, sizeof *d);
}

int sae_tokens_read_doc(const sae_tokens *t, size_t doc, sae_doc *out, sae_error *err)
{
    int rc;
    json_t *root = NULL, *toks;
    sae_doc d = {0};
    char *line = NULL;
    if (doc >= t->n_docs)
        return sae_error_set(err, SAE_EINVAL, "%s: no document %zu", t->path, doc);
    uint64_t len = t->line_len[doc], line_no = t->line_no[doc];
    line = malloc(len + 1);
    if (!line) {
        rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", t->path);
        goto out;
    }
    size_t got = 0;
    while (got < len) {
        ssize_t r = pread(t->fd, line + got, len - got, (off_t)(t->line_off[doc] + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            rc = sae_error_set(err, SAE_EIO, "%s: line %llu: cannot read again: %s", t->path,
                               (unsigned long long)line_no, r < 0 ? strerror(errno) : "file shrank");
            goto out;
        }
        got += (size_t)r;
    }
    if ((rc = parse_tokens_line(t->path, line_no, line, len, &root, &toks, err)))
        goto out;
    uint64_t n = json_array_size(toks);
    if (n != t->row_start[doc + 1] - t->row_start[doc]) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: line %llu: changed while the index was built",
                           t->path, (unsigned long long)line_no);
        goto out;
    }
    json_t *id = json_object_get(root, "id");
    char num[32];
    const char *id_s = num;
    if (json_is_string(id))
        id_s = json_string_value(id);
    else if (json_is_integer(id))
        snprintf(num, sizeof num, "%lld", (long long)json_integer_value(id));
    else
        snprintf(num, sizeof num, "%llu", (unsigned long long)line_no);
    d.id = strdup(id_s);
    d.n = n;
    d.tok = calloc(n ? n : 1, sizeof *d.tok);
    d.tok_len = calloc(n ? n : 1, sizeof *d.tok_len);
    if (!d.id || !d.tok || !d.tok_len) {
        rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", t->path);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(toks, i);
        size_t sl = json_string_length(s);
        d.tok[i] = malloc(sl + 1);
        if (!d.tok[i]) {
            rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", t->path);
            goto out;
        }
        memcpy(d.tok[i], json_string_value(s), sl);
        d.tok[i][sl] = '\0';
        d.tok_len[i] = sl;
    }
    *out = d;
    rc = 0;
out:
    if (rc)
        sae_doc_free(&d);
    json_decref(root);
    free(line);
    return rc;
}

/* Copies an optional string member: NULL when absent or null, an error when
 * present with another type. */
static int opt_string(json_t *obj, const char *key, char **out, const char *path,
                      uint64_t line_no, sae_error *err)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return sae_error_set(err, SAE_EFORMAT, "%s: line %llu: \"%s\" must be a string", path,
                             (unsigned long long)line_no, key);
    *out = strdup(json_string_value(v));
    if (!*out)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
    return 0;
}

/* An optional number member into *has / *out; an error for another type. */
static int opt_number(json_t *obj, const char *key, bool *has, double *out, const char *path,
                      uint64_t line_no, sae_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return sae_error_set(err, SAE_EFORMAT, "%s: line %llu: \"%s\" must be a number", path,
                             (unsigned long long)line_no, key);
    *has = true;
    *out = json_number_value(v);
    return 0;
}

/* Parses the feature index of an explanation: a non-negative integer or a
 * string of decimal digits (as Neuronpedia exports write it), < d_sae. */
static int parse_index(json_t *v, size_t d_sae, uint32_t *out, const char *path,
                       uint64_t line_no, sae_error *err)
{
    unsigned long long x = 0;
    bool ok = false;
    if (json_is_integer(v) && json_integer_value(v) >= 0) {
        x = (unsigned long long)json_integer_value(v);
        ok = true;
    } else if (json_is_string(v)) {
        const char *s = json_string_value(v);
        ok = *s != '\0' && strlen(s) <= 19;
        for (const char *p = s; ok && *p; p++) {
            if (*p < '0' || *p > '9')
                ok = false;
            else
                x = x * 10 + (unsigned)(*p - '0');
        }
    }
    if (!ok)
        return sae_error_set(err, SAE_EFORMAT,
                             "%s: line %llu: \"index\" must be a non-negative integer", path,
                             (unsigned long long)line_no);
    if (x >= d_sae)
        return sae_error_set(err, SAE_ERANGE, "%s: line %llu: index %llu out of range (d_sae %zu)",
                             path, (unsigned long long)line_no, x, d_sae);
    *out = (uint32_t)x;
    return 0;
}

void sae_explanations_free(sae_explanations *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++) {
        free(e->items[i].description);
        free(e->items[i].source);
        free(e->items[i].type_name);
    }
    free(e->items);
    memset(e, 0, sizeof *e);
}

int sae_explanations_read(const char *path, size_t d_sae, sae_explanations *out,
                          sae_error *err)
{
    int rc;
    size_t cap = 0;
    sae_explanations e = {0};
    line_reader lr;
    bool lr_ok = false;
    json_t *root = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sae_error_set(err, SAE_EIO, "%s: cannot open: %s", path, strerror(errno));
    if ((rc = lr_init(&lr, fd, path, err)))
        goto out;
    lr_ok = true;
    for (;;) {
        size_t len;
        uint64_t off;
        int r = lr_next(&lr, &len, &off, err);
        if (r < 0) {
            rc = -r;
            goto out;
        }
        if (r == 0)
            break;
        if (blank(lr.line, len))
            continue;
        json_error_t jerr;
        root = json_loadb(lr.line, len, JSON_REJECT_DUPLICATES, &jerr);
        if (!root) {
            rc = sae_error_set(err, SAE_EFORMAT, "%s: line %llu: not valid JSON: %s", path,
                               (unsigned long long)lr.line_no, jerr.text);
            goto out;
        }
        if (!json_is_object(root)) {
            rc = sae_error_set(err, SAE_EFORMAT, "%s: line %llu: not a JSON object", path,
                               (unsigned long long)lr.line_no);
            goto out;
        }
        if (e.n == cap) {
            size_t c = cap ? cap * 2 : 64;
            sae_explanation *p = c > SIZE_MAX / sizeof *p ? NULL : realloc(e.items, c * sizeof *p);
            if (!p) {
                rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
                goto out;
            }
            e.items = p;
            cap = c;
        }
        sae_explanation *x = &e.items[e.n];
        memset(x, 0, sizeof *x);
        e.n++;
        if ((rc = parse_index(json_object_get(root, "index"), d_sae, &x->feature, path,
                              lr.line_no, err)))
            goto out;
        json_t *desc = json_object_get(root, "description");
        if (!json_is_string(desc)) {
            rc = sae_error_set(err, SAE_EFORMAT, "%s: line %llu: no \"description\" string", path,
                               (unsigned long long)lr.line_no);
            goto out;
        }
        x->description = strdup(json_string_value(desc));
        if (!x->description) {
            rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
            goto out;
        }
        if ((rc = opt_number(root, "score", &x->has_score, &x->score, path, lr.line_no, err)))
            goto out;
        if (!x->has_score &&
            (rc = opt_number(root, "scoreV1", &x->has_score, &x->score, path, lr.line_no, err)))
            goto out;
        if ((rc = opt_string(root, "source", &x->source, path, lr.line_no, err)))
            goto out;
        if (!x->source &&
            (rc = opt_string(root, "explanationModelName", &x->source, path, lr.line_no, err)))
            goto out;
        if ((rc = opt_string(root, "typeName", &x->type_name, path, lr.line_no, err)))
            goto out;
        json_decref(root);
        root = NULL;
    }
    lr_digest(&lr, e.digest);
    *out = e;
    rc = 0;
out:
    json_decref(root);
    if (lr_ok)
        lr_free(&lr);
    close(fd);
    if (rc)
        sae_explanations_free(&e);
    return rc;
}
