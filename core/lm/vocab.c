/* vocab.c: token strings from vocab.json or tokenizer.json, shown as
 * SAEDashboard shows them to Neuronpedia (vocab.h). */
#include "lm/vocab.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* SAEDashboard's HTML_ANOMALIES (neuronpedia_runner.py), applied in this
 * order to every vocabulary string: GPT-2's byte-level marks and the UTF-8
 * punctuation its byte mapping garbles. */
static const char *const anomalies[][2] = {
    {"\xc3\xa2\xc4\xa2\xc4\xb6", "\xe2\x80\x94"}, /* âĢĶ -> — */
    {"\xc3\xa2\xc4\xa2\xc4\xb5", "\xe2\x80\x93"}, /* âĢĵ -> – */
    {"\xc3\xa2\xc4\xa2\xc4\xbe", "\xe2\x80\x9c"}, /* âĢľ -> “ */
    {"\xc3\xa2\xc4\xa2\xc4\xbf", "\xe2\x80\x9d"}, /* âĢĿ -> ” */
    {"\xc3\xa2\xc4\xa2\xc4\xba", "\xe2\x80\x98"}, /* âĢĺ -> ‘ */
    {"\xc3\xa2\xc4\xa2\xc4\xbb", "\xe2\x80\x99"}, /* âĢĻ -> ’ */
    {"\xc3\xa2\xc4\xa2\xc4\xad", " "},            /* âĢĭ -> space (SAEDashboard's choice) */
    {"\xc4\xa0", " "},                            /* Ġ -> space */
    {"\xc4\x8a", "\n"},                           /* Ċ -> newline */
    {"\xc4\x89", "\t"},                           /* ĉ -> tab */
};

char *sae_lm_vocab_display(const char *raw, size_t len, size_t *out_len)
{
    /* Every replacement is no longer than what it replaces. */
    char *a = malloc(len + 1), *b = malloc(len + 1);
    if (!a || !b) {
        free(a);
        free(b);
        return NULL;
    }
    memcpy(a, raw, len);
    size_t n = len;
    for (size_t k = 0; k < sizeof anomalies / sizeof anomalies[0]; k++) {
        const char *from = anomalies[k][0], *to = anomalies[k][1];
        size_t fl = strlen(from), tl = strlen(to), m = 0;
        for (size_t i = 0; i < n;) {
            if (i + fl <= n && !memcmp(a + i, from, fl)) {
                memcpy(b + m, to, tl);
                m += tl;
                i += fl;
            } else {
                b[m++] = a[i++];
            }
        }
        char *t = a;
        a = b;
        b = t;
        n = m;
    }
    free(b);
    a[n] = '\0';
    *out_len = n;
    return a;
}

/* Sets entry id of v to the display form of raw (growing v to id + 1). */
static int vocab_set(sae_lm_vocab *v, size_t id, const char *raw, size_t len, const char *path,
                     sae_error *err)
{
    if (id >= (1u << 24))
        return sae_error_set(err, SAE_EFORMAT, "%s: token id %zu is too large", path, id);
    if (id >= v->n) {
        char **s = realloc(v->str, (id + 1) * sizeof *s);
        if (s)
            v->str = s;
        size_t *l = s ? realloc(v->len, (id + 1) * sizeof *l) : NULL;
        if (!l)
            return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
        v->len = l;
        for (size_t i = v->n; i <= id; i++) {
            v->str[i] = NULL;
            v->len[i] = 0;
        }
        v->n = id + 1;
    }
    size_t dl;
    char *d = sae_lm_vocab_display(raw, len, &dl);
    if (!d)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
    free(v->str[id]);
    v->str[id] = d;
    v->len[id] = dl;
    return 0;
}

/* {"token": id, ...} into v. */
static int read_map(const json_t *o, sae_lm_vocab *v, const char *path, sae_error *err)
{
    const char *k;
    json_t *val;
    json_object_foreach((json_t *)o, k, val)
    {
        if (!json_is_integer(val) || json_integer_value(val) < 0)
            return sae_error_set(err, SAE_EFORMAT, "%s: token \"%s\" has no valid id", path, k);
        int rc = vocab_set(v, (size_t)json_integer_value(val), k, strlen(k), path, err);
        if (rc)
            return rc;
    }
    return 0;
}

int sae_lm_vocab_read(const char *path, sae_lm_vocab *out, sae_error *err)
{
    sae_lm_vocab v = {0};
    json_error_t je;
    int rc = 0;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root || !json_is_object(root)) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: %s", path,
                           root ? "not a JSON object" : je.text);
        goto out;
    }
    json_t *model = json_object_get(root, "model");
    if (!model) { /* vocab.json */
        rc = read_map(root, &v, path, err);
        goto out;
    }
    json_t *vocab = json_object_get(model, "vocab");
    if (json_is_object(vocab)) {
        rc = read_map(vocab, &v, path, err);
    } else if (json_is_array(vocab)) { /* Unigram: [[token, score], ...], id = position */
        size_t i;
        json_t *e;
        json_array_foreach(vocab, i, e)
        {
            const char *t = json_string_value(json_array_get(e, 0));
            if (!t) {
                rc = sae_error_set(err, SAE_EFORMAT, "%s: model.vocab[%zu] is not [token, score]",
                                   path, i);
                goto out;
            }
            if ((rc = vocab_set(&v, i, t, json_string_length(json_array_get(e, 0)), path, err)))
                goto out;
        }
    } else {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: tokenizer.json without model.vocab", path);
        goto out;
    }
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(root, "added_tokens"), i, a)
    {
        json_t *id = json_object_get(a, "id");
        const char *t = json_string_value(json_object_get(a, "content"));
        if (rc || !t || !json_is_integer(id) || json_integer_value(id) < 0)
            continue;
        rc = vocab_set(&v, (size_t)json_integer_value(id), t, strlen(t), path, err);
    }
out:
    json_decref(root);
    if (!rc && !v.n)
        rc = sae_error_set(err, SAE_EFORMAT, "%s: the vocabulary is empty", path);
    if (rc) {
        sae_lm_vocab_free(&v);
        return rc;
    }
    *out = v;
    return 0;
}

void sae_lm_vocab_free(sae_lm_vocab *v)
{
    if (!v)
        return;
    for (size_t i = 0; i < v->n; i++)
        free(v->str[i]);
    free(v->str);
    free(v->len);
    memset(v, 0, sizeof *v);
}

const char *sae_lm_vocab_token(const sae_lm_vocab *v, uint32_t id, size_t *len)
{
    if (id >= v->n) {
        *len = strlen(SAE_LM_OUT_OF_RANGE);
        return SAE_LM_OUT_OF_RANGE;
    }
    *len = v->len[id];
    return v->str[id] ? v->str[id] : "";
}
