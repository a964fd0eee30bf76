/* explanations.c: the explanation type and the JSON readers (explanations.h):
 * JSON Lines and JSON arrays, gzip-compressed or not, through jsonl.h's one
 * byte source; a folder goes to explanations_delphi.c. */
#include "index/explanations.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "index/jsonl.h"

/* Where an object sits, for messages: the file and "line 3" or "entry 2". */
typedef struct where {
    const char *path;
    char at[80];
} where;

/* Copies an optional string member: NULL when absent or null, an error when
 * present with another type. */
static int opt_string(json_t *obj, const char *key, char **out, const where *w, sae_error *err)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return sae_error_set(err, SAE_EFORMAT, "%s: %s: \"%s\" must be a string", w->path, w->at,
                             key);
    *out = strdup(json_string_value(v));
    if (!*out)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", w->path);
    return 0;
}

/* An optional number member into *has / *out; an error for another type. */
static int opt_number(json_t *obj, const char *key, bool *has, double *out, const where *w,
                      sae_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_number(v))
        return sae_error_set(err, SAE_EFORMAT, "%s: %s: \"%s\" must be a number", w->path, w->at,
                             key);
    *has = true;
    *out = json_number_value(v);
    return 0;
}

/* Parses the feature index of an explanation: a non-negative integer or a
 * string of decimal digits (as Neuronpedia writes it), < d_sae. */
static int parse_index(json_t *v, size_t d_sae, uint32_t *out, const where *w, sae_error *err)
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
        return sae_error_set(err, SAE_EFORMAT, "%s: %s: \"index\" must be a non-negative integer",
                             w->path, w->at);
    if (x >= d_sae)
        return sae_error_set(err, SAE_ERANGE, "%s: %s: index %llu out of range (d_sae %zu)",
                             w->path, w->at, x, d_sae);
    *out = (uint32_t)x;
    return 0;
}

/* Frees what x owns (not x). */
static void explanation_clear(sae_explanation *x)
{
    free(x->description);
    free(x->source);
    free(x->type_name);
    for (size_t k = 0; k < x->n_scores; k++) {
        free(x->scores[k].type);
        free(x->scores[k].model);
    }
    free(x->scores);
}

void sae_explanations_free(sae_explanations *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->n; i++)
        explanation_clear(&e->items[i]);
    free(e->items);
    memset(e, 0, sizeof *e);
}

/* Compares two optional scores, the present and larger first. */
static int by_score(bool ha, double a, bool hb, double b)
{
    if (ha != hb)
        return ha ? -1 : 1;
    return ha ? (a > b ? -1 : a < b) : 0;
}

/* qsort order of sae_explanations_sort_best. */
static int by_best(const void *pa, const void *pb)
{
    const sae_explanation *a = pa, *b = pb;
    int c = by_score(a->has_score_v2, a->score_v2, b->has_score_v2, b->score_v2);
    if (!c)
        c = by_score(a->has_score, a->score, b->has_score, b->score);
    return c ? c : (a->id > b->id) - (a->id < b->id);
}

void sae_explanations_sort_best(sae_explanations *e)
{
    if (e->n > 1)
        qsort(e->items, e->n, sizeof *e->items, by_best);
}

int sae_explanations_push(sae_explanations *e, const char *path, sae_explanation **x,
                          sae_error *err)
{
    if (e->n == e->cap) {
        size_t c = e->cap ? e->cap * 2 : 64;
        sae_explanation *p =
            c > SIZE_MAX / sizeof *p ? NULL : realloc(e->items, c * sizeof *p);
        if (!p)
            return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
        e->items = p;
        e->cap = c;
    }
    *x = &e->items[e->n];
    memset(*x, 0, sizeof **x);
    (*x)->id = ++e->n;
    return 0;
}

int sae_explanation_add_score(sae_explanation *x, double value, const char *type,
                              const char *model, const char *path, sae_error *err)
{
    sae_explanation_score *p = realloc(x->scores, (x->n_scores + 1) * sizeof *p);
    if (!p)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
    x->scores = p;
    sae_explanation_score *s = &p[x->n_scores];
    s->value = value;
    s->type = type ? strdup(type) : NULL;
    s->model = model ? strdup(model) : NULL;
    x->n_scores++;
    if ((type && !s->type) || (model && !s->model))
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
    return 0;
}

/* A string member under either of two names (the first wins); NULL when
 * neither is there. Borrowed from obj. */
static int either_string(json_t *obj, const char *a, const char *b, const char **out,
                         const where *w, sae_error *err)
{
    json_t *v = json_object_get(obj, a);
    const char *key = a;
    if (!v || json_is_null(v)) {
        v = json_object_get(obj, b);
        key = b;
    }
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return sae_error_set(err, SAE_EFORMAT, "%s: %s: score \"%s\" must be a string", w->path,
                             w->at, key);
    *out = json_string_value(v);
    return 0;
}

/* Reads the optional "scores" array of explanation object o into x. */
static int read_scores(json_t *o, sae_explanation *x, const where *w, sae_error *err)
{
    json_t *arr = json_object_get(o, "scores");
    if (!arr || json_is_null(arr))
        return 0;
    if (!json_is_array(arr))
        return sae_error_set(err, SAE_EFORMAT, "%s: %s: \"scores\" must be an array", w->path,
                             w->at);
    size_t k;
    json_t *s;
    json_array_foreach(arr, k, s) {
        json_t *v = json_is_object(s) ? json_object_get(s, "value") : NULL;
        if (!json_is_number(v))
            return sae_error_set(err, SAE_EFORMAT,
                                 "%s: %s: scores[%zu] must be an object with a number \"value\"",
                                 w->path, w->at, k);
        const char *type, *model;
        int rc;
        if ((rc = either_string(s, "type", "explanationScoreTypeName", &type, w, err)) ||
            (rc = either_string(s, "model", "explanationScoreModelName", &model, w, err)) ||
            (rc = sae_explanation_add_score(x, json_number_value(v), type, model, w->path, err)))
            return rc;
    }
    return 0;
}

/* Reads explanation object o (for feature `feature` when >= 0, else its own
 * "index") into a new explanation of e. */
static int read_one(json_t *o, long long feature, size_t d_sae, sae_explanations *e,
                    const where *w, sae_error *err)
{
    sae_explanation *x;
    int rc;
    if (!json_is_object(o))
        return sae_error_set(err, SAE_EFORMAT, "%s: %s: not a JSON object", w->path, w->at);
    if ((rc = sae_explanations_push(e, w->path, &x, err)))
        return rc;
    if (feature >= 0)
        x->feature = (uint32_t)feature;
    else if ((rc = parse_index(json_object_get(o, "index"), d_sae, &x->feature, w, err)))
        return rc;
    json_t *desc = json_object_get(o, "description");
    if (!json_is_string(desc))
        return sae_error_set(err, SAE_EFORMAT, "%s: %s: no \"description\" string", w->path,
                             w->at);
    if (!(x->description = strdup(json_string_value(desc))))
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", w->path);
    if ((rc = opt_number(o, "score", &x->has_score, &x->score, w, err)) ||
        (!x->has_score && (rc = opt_number(o, "scoreV1", &x->has_score, &x->score, w, err))) ||
        (rc = opt_number(o, "scoreV2", &x->has_score_v2, &x->score_v2, w, err)) ||
        (rc = opt_string(o, "source", &x->source, w, err)) ||
        (!x->source && (rc = opt_string(o, "explanationModelName", &x->source, w, err))) ||
        (rc = opt_string(o, "typeName", &x->type_name, w, err)))
        return rc;
    return read_scores(o, x, w, err);
}

/* Reads one top-level object: an explanation, or a Neuronpedia feature
 * object ({"index", "explanations": [...]}, no "description"). */
static int read_entry(json_t *o, size_t d_sae, sae_explanations *e, const where *w,
                      sae_error *err)
{
    json_t *nested = json_is_object(o) ? json_object_get(o, "explanations") : NULL;
    if (!nested || json_object_get(o, "description"))
        return read_one(o, -1, d_sae, e, w, err);
    if (!json_is_array(nested))
        return sae_error_set(err, SAE_EFORMAT, "%s: %s: \"explanations\" must be an array",
                             w->path, w->at);
    uint32_t feature;
    int rc = parse_index(json_object_get(o, "index"), d_sae, &feature, w, err);
    size_t k;
    json_t *x;
    json_array_foreach(nested, k, x) {
        where wk = {.path = w->path};
        snprintf(wk.at, sizeof wk.at, "%.40s explanations[%zu]", w->at, k);
        if (rc || (rc = read_one(x, feature, d_sae, e, &wk, err)))
            return rc;
    }
    return rc;
}

/* Reads the JSON Lines in r (positioned at the first line). */
static int read_lines(sae_jsonl *r, size_t d_sae, sae_explanations *e, sae_error *err)
{
    for (;;) {
        bool eof;
        json_t *root;
        int rc = sae_jsonl_next(r, &eof, err);
        if (rc || eof)
            return rc;
        if ((rc = sae_jsonl_object(r->path, r->line_no, r->line, r->line_len, 0, &root, err)))
            return rc;
        where w = {.path = r->path};
        snprintf(w.at, sizeof w.at, "line %llu", (unsigned long long)r->line_no);
        rc = read_entry(root, d_sae, e, &w, err);
        json_decref(root);
        if (rc)
            return rc;
    }
}

/* Reads the JSON array that is the rest of r; entries are numbered from 0. */
static int read_array(sae_jsonl *r, size_t d_sae, sae_explanations *e, sae_error *err)
{
    char *buf;
    size_t len;
    json_error_t jerr;
    int rc = sae_jsonl_rest(r, SAE_EXPLANATIONS_MAX_ARRAY, &buf, &len, err);
    if (rc)
        return rc;
    json_t *root = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
    free(buf);
    if (!root)
        /* jansson counts lines from where the array starts. */
        return sae_error_set(err, SAE_EFORMAT, "%s: line %llu: not valid JSON: %s", r->path,
                             (unsigned long long)(r->line_no + (uint64_t)jerr.line), jerr.text);
    if (!json_is_array(root)) {
        json_decref(root);
        return sae_error_set(err, SAE_EFORMAT, "%s: not a JSON array", r->path);
    }
    size_t k;
    json_t *o;
    json_array_foreach(root, k, o) {
        where w = {.path = r->path};
        snprintf(w.at, sizeof w.at, "entry %zu", k);
        if ((rc = read_entry(o, d_sae, e, &w, err)))
            break;
    }
    json_decref(root);
    return rc;
}

/* Reads one file (JSON Lines or a JSON array, gzip or not) into e. */
static int read_file(const char *path, size_t d_sae, sae_explanations *e, char digest[33],
                     sae_error *err)
{
    sae_jsonl r = {0};
    bool gz;
    int c, rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return sae_error_set(err, SAE_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (!(rc = sae_jsonl_open_auto(&r, fd, path, &gz, err)) && !(rc = sae_jsonl_peek(&r, &c, err)))
        rc = c == '[' ? read_array(&r, d_sae, e, err) : read_lines(&r, d_sae, e, err);
    if (!rc)
        sae_jsonl_digest(&r, digest);
    sae_jsonl_close(&r);
    close(fd);
    return rc;
}

int sae_explanations_read(const char *const *paths, size_t n, size_t d_sae,
                          sae_explanations *out, sae_error *err)
{
    sae_explanations e = {0};
    int rc = 0;
    XXH3_state_t *all = XXH3_createState();
    if (!all)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    XXH3_128bits_reset(all);
    for (size_t i = 0; i < n && !rc; i++) {
        struct stat st;
        char digest[33];
        if (stat(paths[i], &st) == 0 && S_ISDIR(st.st_mode))
            rc = sae_explanations_read_delphi(paths[i], d_sae, &e, digest, err);
        else
            rc = read_file(paths[i], d_sae, &e, digest, err);
        if (!rc && n == 1)
            memcpy(e.digest, digest, sizeof digest);
        if (!rc)
            XXH3_128bits_update(all, digest, 32);
    }
    if (!rc && n != 1)
        sae_digest_hex(XXH3_128bits_digest(all), e.digest);
    XXH3_freeState(all);
    if (rc) {
        sae_explanations_free(&e);
        return rc;
    }
    *out = e;
    return 0;
}
