/* features_get.c: GET /v1/features?q=&limit=&offset=&sort=&order=&alive=
 * (CONTRACT 5): the feature list, or a full-text search over explanations.
 *
 * Defaults: limit 50 (at most 500), offset 0, order asc; sort index, or with
 * a non-empty q, relevance (the bm25 rank of a feature's best-matching
 * explanation, best first; ties by index). sort=relevance without q is a 400.
 * sort=score orders by the score of a feature's best-scored explanation (its
 * label; none scored sorts lowest). alive=1 lists only features active at
 * least once (n_active > 0), and total counts only those, so a filtered list
 * pages as one.
 * Items are feature objects without top_examples. Unknown or repeated
 * parameters and bad values are 400 invalid_query naming the parameter.
 *
 * The search runs on the threads that serve every request, and its cost
 * grows with the number of words (each an FTS5 phrase, all required): a
 * repeated word is dropped (ASCII case-insensitively, as FTS5 matches) and
 * more than QUERY_MAX_WORDS distinct words are a 400 (query_words). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feature_routes.h"

enum { P_Q, P_LIMIT, P_OFFSET, P_SORT, P_ORDER, P_ALIVE, P_COUNT };
static const char *const params[P_COUNT] = {"q", "limit", "offset", "sort", "order", "alive"};

/* Largest offset accepted: SQLite's 64-bit signed integers. */
#define OFFSET_MAX ((uint64_t)INT64_MAX)

/* GET /v1/features. */
enum MHD_Result features_get(struct saed_req *rq)
{
    enum MHD_Result r;
    sae_store_conn *c = index_conn(rq, &r);
    if (!c)
        return r;
    struct query_spec qs = {.names = params, .n = P_COUNT};
    sae_store_query q = {.sort = SAE_SORT_INDEX};
    uint64_t alive = 0;
    if (query_collect(rq, &qs) ||
        query_uint(&qs, P_LIMIT, FEATURES_DEFAULT_LIMIT, FEATURES_MAX_LIMIT, &q.limit) ||
        query_uint(&qs, P_OFFSET, 0, OFFSET_MAX, &q.offset) ||
        query_uint(&qs, P_ALIVE, 0, 1, &alive))
        return reply_error(rq, 400, "invalid_query", "%s", qs.bad);
    q.alive = alive == 1;
    size_t n_words = 0;
    char *words;
    int w = query_words(&qs, P_Q, &words, &n_words);
    if (w)
        return w < -1 ? reply_error(rq, 503, "out_of_memory", "cannot hold the query")
                      : reply_error(rq, 400, "invalid_query", "%s", qs.bad);
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
        rc = index_json_feature(&b, c, &l.items[i], 0, 0, NULL, &err);
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
