/* features_get.c: GET /v1/features?q=&limit=&offset=&sort=&order= (CONTRACT
 * 5): the feature list, or a full-text search over explanations.
 *
 * Defaults: limit 50 (at most 500), offset 0, order asc; sort index, or with
 * a non-empty q, relevance (the bm25 rank of a feature's best-matching
 * explanation, best first; ties by index). sort=relevance without q is a 400.
 * Items are feature objects without top_examples. Unknown or repeated
 * parameters and bad values are 400 invalid_query naming the parameter.
 *
 * The search runs on the threads that serve every request, and its cost
 * grows with the number of words (each an FTS5 phrase, all required): a
 * repeated word is dropped (ASCII case-insensitively, as FTS5 matches) and
 * more than Q_MAX_WORDS distinct words are a 400. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "feature_routes.h"

/* Most distinct words in q. */
#define Q_MAX_WORDS 32

enum { P_Q, P_LIMIT, P_OFFSET, P_SORT, P_ORDER, P_COUNT };
static const char *const params[P_COUNT] = {"q", "limit", "offset", "sort", "order"};

/* Largest offset accepted: SQLite's 64-bit signed integers. */
#define OFFSET_MAX ((uint64_t)INT64_MAX)

/* Whether c separates words (the store's definition). */
static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* q's distinct words, one space apart, in a new string (NULL: out of
 * memory); *n counts them, stopping at Q_MAX_WORDS + 1. */
static char *q_words(const char *q, size_t *n)
{
    size_t len = strlen(q);
    char *out = malloc(len + 1);
    const char *word[Q_MAX_WORDS];
    size_t wlen[Q_MAX_WORDS];
    *n = 0;
    if (!out)
        return NULL;
    char *o = out;
    for (const char *p = q; *p && *n <= Q_MAX_WORDS;) {
        while (is_space(*p))
            p++;
        const char *w = p;
        while (*p && !is_space(*p))
            p++;
        size_t l = (size_t)(p - w);
        bool seen = l == 0;
        for (size_t i = 0; i < *n && i < Q_MAX_WORDS && !seen; i++)
            seen = wlen[i] == l && !strncasecmp(word[i], w, l);
        if (seen)
            continue;
        if (*n < Q_MAX_WORDS) {
            word[*n] = w;
            wlen[*n] = l;
            if (o != out)
                *o++ = ' ';
            memcpy(o, w, l);
            o += l;
        }
        (*n)++;
    }
    *o = '\0';
    return out;
}

/* GET /v1/features. */
enum MHD_Result features_get(struct saed_req *rq)
{
    enum MHD_Result r;
    sae_store_conn *c = index_conn(rq, &r);
    if (!c)
        return r;
    struct query_spec qs = {.names = params, .n = P_COUNT};
    sae_store_query q = {.sort = SAE_SORT_INDEX};
    if (query_collect(rq, &qs) ||
        query_uint(&qs, P_LIMIT, FEATURES_DEFAULT_LIMIT, FEATURES_MAX_LIMIT, &q.limit) ||
        query_uint(&qs, P_OFFSET, 0, OFFSET_MAX, &q.offset))
        return reply_error(rq, 400, "invalid_query", "%s", qs.bad);
    size_t n_words = 0;
    char *words = q_words(qs.values[P_Q] ? qs.values[P_Q] : "", &n_words);
    if (!words)
        return reply_error(rq, 503, "out_of_memory", "cannot hold the query");
    if (n_words > Q_MAX_WORDS) {
        free(words);
        return reply_error(rq, 400, "invalid_query", "q: more than %d distinct words", Q_MAX_WORDS);
    }
    bool searching = n_words > 0;
    q.q = searching ? words : NULL;
    if (searching)
        q.sort = SAE_SORT_RELEVANCE;
    sae_error err;
    int rc = 0;
    if (qs.values[P_SORT] && (rc = sae_store_parse_sort(qs.values[P_SORT], &q.sort, &err)))
        goto bad;
    if (q.sort == SAE_SORT_RELEVANCE && !searching) {
        rc = sae_error_set(&err, SAE_EINVAL, "sort: relevance needs a search query (q)");
        goto bad;
    }
    if (qs.values[P_ORDER] && (rc = sae_store_parse_order(qs.values[P_ORDER], &q.desc, &err)))
        goto bad;

    sae_store_feature_list l = {0};
    rc = sae_store_list_features(c, &q, &l, &err);
    free(words);
    if (rc)
        return reply_store_error(rq, rc, &err);
    struct saed_buf b;
    buf_init(&b, FEATURES_REPLY_LIMIT, 1024 + l.n * 1024);
    buf_puts(&b, "{\"features\":[");
    for (size_t i = 0; i < l.n && !rc; i++) {
        if (i)
            buf_putc(&b, ',');
        rc = index_json_feature(&b, c, &l.items[i], 0, NULL, &err);
    }
    char tail[48];
    snprintf(tail, sizeof tail, "],\"total\":%llu}\n", (unsigned long long)l.total);
    buf_puts(&b, tail);
    sae_store_feature_list_free(&l);
    if (rc) {
        buf_free(&b);
        return reply_store_error(rq, rc, &err);
    }
    return reply_buf(rq, &b);
bad:
    free(words);
    return reply_error(rq, 400, "invalid_query", "%s", err.msg);
}
