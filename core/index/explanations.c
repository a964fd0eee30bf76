/* explanations.c: the explanations JSON Lines reader (explanations.h). */
#include "index/explanations.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "index/jsonl.h"

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

/* Reads the explanation on r's current line into x. */
static int read_explanation(const sae_jsonl *r, json_t *root, size_t d_sae, sae_explanation *x,
                            sae_error *err)
{
    const char *path = r->path;
    uint64_t line_no = r->line_no;
    int rc;
    if ((rc = parse_index(json_object_get(root, "index"), d_sae, &x->feature, path, line_no, err)))
        return rc;
    json_t *desc = json_object_get(root, "description");
    if (!json_is_string(desc))
        return sae_error_set(err, SAE_EFORMAT, "%s: line %llu: no \"description\" string", path,
                             (unsigned long long)line_no);
    if (!(x->description = strdup(json_string_value(desc))))
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
    if ((rc = opt_number(root, "score", &x->has_score, &x->score, path, line_no, err)) ||
        (!x->has_score &&
         (rc = opt_number(root, "scoreV1", &x->has_score, &x->score, path, line_no, err))) ||
        (rc = opt_string(root, "source", &x->source, path, line_no, err)) ||
        (!x->source &&
         (rc = opt_string(root, "explanationModelName", &x->source, path, line_no, err))))
        return rc;
    return opt_string(root, "typeName", &x->type_name, path, line_no, err);
}

int sae_explanations_read(const char *path, size_t d_sae, sae_explanations *out,
                          sae_error *err)
{
    int rc;
    size_t cap = 0;
    sae_explanations e = {0};
    sae_jsonl lr = {0};
    json_t *root = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sae_error_set(err, SAE_EIO, "%s: cannot open: %s", path, strerror(errno));
    if ((rc = sae_jsonl_open(&lr, fd, path, err)))
        goto out;
    for (;;) {
        bool eof;
        if ((rc = sae_jsonl_next(&lr, &eof, err)))
            goto out;
        if (eof)
            break;
        if ((rc = sae_jsonl_object(path, lr.line_no, lr.line, lr.line_len, 0, &root, err)))
            goto out;
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
        x->id = ++e.n;
        if ((rc = read_explanation(&lr, root, d_sae, x, err)))
            goto out;
        json_decref(root);
        root = NULL;
    }
    sae_jsonl_digest(&lr, e.digest);
    *out = e;
    rc = 0;
out:
    json_decref(root);
    sae_jsonl_close(&lr);
    close(fd);
    if (rc)
        sae_explanations_free(&e);
    return rc;
}
