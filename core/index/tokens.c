/* tokens.c: the tokens JSON Lines reader (tokens.h). */
#include "index/tokens.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "index/jsonl.h"

/* Parses one tokens line into a JSON object and validates it: returns the
 * number of tokens in *n_tok and the document's "tokens" array (borrowed
 * from *root, which the caller frees). */
static int parse_tokens_line(const char *path, uint64_t line_no, const char *line, size_t len,
                             json_t **root, json_t **tokens, sae_error *err)
{
    json_t *j;
    int rc = sae_jsonl_object(path, line_no, line, len, JSON_ALLOW_NUL, &j, err);
    if (rc)
        return rc;
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
    sae_jsonl lr = {0};
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
    if ((rc = sae_jsonl_open(&lr, t->fd, t->path, err)) || (rc = tokens_grow(t, &cap, 1, err)))
        goto out;
    t->row_start[0] = 0;
    for (;;) {
        bool eof;
        if ((rc = sae_jsonl_next(&lr, &eof, err)))
            goto out;
        if (eof)
            break;
        json_t *root, *toks;
        if ((rc = parse_tokens_line(t->path, lr.line_no, lr.line, lr.line_len, &root, &toks,
                                    err)))
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
        t->line_off[t->n_docs] = lr.off;
        t->line_len[t->n_docs] = lr.line_len;
        t->line_no[t->n_docs] = lr.line_no;
        t->n_tokens += n;
        t->row_start[++t->n_docs] = t->n_tokens;
    }
    sae_jsonl_digest(&lr, t->digest);
    rc = 0;
out:
    sae_jsonl_close(&lr);
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
