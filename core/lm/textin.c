/* textin.c: reading text documents from plain or JSON Lines files (textin.h). */
#include "lm/textin.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

/* Whether s ends with suffix. */
static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcmp(s + n - k, suffix);
}

bool sae_text_is_jsonl(const char *path)
{
    return ends_with(path, ".jsonl") || ends_with(path, ".ndjson") || ends_with(path, ".json");
}

int sae_text_open(const char *path, sae_text_reader **out, sae_error *err)
{
    *out = NULL;
    sae_text_reader *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path))) {
        free(r);
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
    }
    if (!(r->f = fopen(path, "rb"))) {
        int e = errno;
        sae_text_close(r);
        return sae_error_set(err, SAE_EIO, "%s: %s", path, strerror(e));
    }
    r->jsonl = sae_text_is_jsonl(path);
    *out = r;
    return 0;
}

void sae_text_close(sae_text_reader *r)
{
    if (!r)
        return;
    if (r->f)
        fclose(r->f);
    free(r->path);
    free(r->line);
    free(r->doc);
    free(r);
}

/* Whether line[0 .. n) is blank (spaces, tabs, CR only). */
static bool is_blank(const char *line, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (line[i] != ' ' && line[i] != '\t' && line[i] != '\r')
            return false;
    return true;
}

int sae_text_parse_json_line(const char *line, size_t n, const char *name, uint64_t line_no,
                             char **doc, size_t *len, sae_error *err)
{
    *doc = NULL;
    *len = 0;
    if (is_blank(line, n))
        return 0;
    json_error_t je;
    json_t *o = json_loadb(line, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!o) {
        sae_error_set(err, SAE_EFORMAT, "%s: line %llu: not JSON: %s", name,
                      (unsigned long long)line_no, je.text);
        return -1;
    }
    json_t *t = json_object_get(o, "text");
    int rc = 1;
    if (!json_is_object(o) || !json_is_string(t)) {
        sae_error_set(err, SAE_EFORMAT, "%s: line %llu: expected an object with a \"text\" string",
                      name, (unsigned long long)line_no);
        rc = -1;
    } else {
        *len = json_string_length(t);
        if (!(*doc = malloc(*len + 1))) {
            sae_error_set(err, SAE_ENOMEM, "%s: line %llu: out of memory", name,
                          (unsigned long long)line_no);
            rc = -1;
        } else {
            memcpy(*doc, json_string_value(t), *len);
            (*doc)[*len] = '\0';
        }
    }
    json_decref(o);
    return rc;
}

/* Reads the next line into r->line (without "\n"); 1, 0 at the end, -1. */
static int read_line(sae_text_reader *r, size_t *n, sae_error *err)
{
    size_t k = 0;
    int c = 0;
    while ((c = getc(r->f)) != EOF && c != '\n') {
        if (k + 1 >= r->cap) {
            if (r->cap >= SAE_TEXT_MAX_LINE) {
                sae_error_set(err, SAE_EINVAL, "%s: line %llu: longer than %zu bytes", r->path,
                              (unsigned long long)r->line_no + 1, SAE_TEXT_MAX_LINE);
                return -1;
            }
            size_t cap = r->cap ? 2 * r->cap : 4096;
            char *p = realloc(r->line, cap);
            if (!p) {
                sae_error_set(err, SAE_ENOMEM, "%s: out of memory", r->path);
                return -1;
            }
            r->line = p;
            r->cap = cap;
        }
        r->line[k++] = (char)c;
    }
    if (ferror(r->f)) {
        sae_error_set(err, SAE_EIO, "%s: read error", r->path);
        return -1;
    }
    if (c == EOF && !k)
        return 0;
    r->line_no++;
    if (k && r->line[k - 1] == '\r')
        k--;
    *n = k;
    return 1;
}

int sae_text_next(sae_text_reader *r, const char **text, size_t *len, sae_error *err)
{
    for (;;) {
        size_t n = 0;
        int rc = read_line(r, &n, err);
        if (rc <= 0)
            return rc;
        if (!r->jsonl) {
            *text = n ? r->line : "";
            *len = n;
            return 1;
        }
        free(r->doc);
        r->doc = NULL;
        rc = sae_text_parse_json_line(r->line, n, r->path, r->line_no, &r->doc, len, err);
        if (rc < 0)
            return rc;
        if (rc) {
            *text = r->doc;
            return 1;
        }
    }
}
