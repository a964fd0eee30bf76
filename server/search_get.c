/* search_get.c: GET /v1/search?q=&limit=&offset= (CONTRACT 7): the
 * explanations of every indexed SAE searched at once, "which features
 * anywhere in this release are about X?".
 *
 * Each SAE's index answers its best offset + limit features by relevance
 * (as GET /v1/features?q= ranks them); the lists are merged by score (FTS5
 * bm25 of the feature's best-matching explanation, negated, so higher is
 * better), ties by SAE order then feature index, and the page is cut from
 * the merge. bm25 weighs words by how rare they are in each index, so scores
 * compare across SAEs as far as their explanation sets are alike. An SAE
 * whose weights max_mapped_bytes unmapped is searched without mapping them:
 * the search reads only the index. q reads as on /v1/features (query_words):
 * a repeated word counts once, more than QUERY_MAX_WORDS distinct are a 400. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feature_routes.h"
#include "saes.h"

/* Deepest page: offset + limit. */
#define SEARCH_MAX_DEPTH 10000

enum { S_Q, S_LIMIT, S_OFFSET, S_COUNT };
static const char *const params[S_COUNT] = {"q", "limit", "offset"};

/* One hit: which SAE (its place in the list), which feature, how good. */
struct hit {
    size_t sae;
    uint32_t feature;
    double score;
};

/* Best first; ties by SAE order, then feature. */
static int hit_cmp(const void *pa, const void *pb)
{
    const struct hit *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    if (a->sae != b->sae)
        return a->sae < b->sae ? -1 : 1;
    return a->feature < b->feature ? -1 : a->feature > b->feature;
}

/* Appends one hit as {"sae","feature","description","score"}; 0 or a store
 * status. */
static int put_hit(struct saed_buf *b, sae_store_conn *c, const char *id, const struct hit *h,
                   sae_error *err)
{
    sae_explanations e = {0};
    int rc = sae_store_get_explanations(c, h->feature, &e, err);
    if (rc)
        return rc;
    const sae_explanation *best = best_explanation(&e);
    buf_puts(b, "{\"sae\":");
    buf_json_str(b, id);
    buf_puts(b, ",\"feature\":");
    buf_u32(b, h->feature);
    buf_puts(b, ",\"description\":");
    buf_json_str(b, best ? best->description : NULL);
    buf_puts(b, ",\"score\":");
    buf_f64(b, h->score);
    buf_putc(b, '}');
    sae_explanations_free(&e);
    return 0;
}

/* GET /v1/search. */
enum MHD_Result search_get(struct saed_req *rq)
{
    struct query_spec qs = {.names = params, .n = S_COUNT};
    uint64_t limit, offset;
    if (query_collect(rq, &qs) ||
        query_uint(&qs, S_LIMIT, FEATURES_DEFAULT_LIMIT, FEATURES_MAX_LIMIT, &limit) ||
        query_uint(&qs, S_OFFSET, 0, SEARCH_MAX_DEPTH, &offset))
        return reply_error(rq, 400, "invalid_query", "%s", qs.bad);
    if (!limit || offset + limit > SEARCH_MAX_DEPTH)
        return reply_error(rq, 400, "invalid_query",
                           "limit: from 1, and offset + limit at most %d", SEARCH_MAX_DEPTH);
    size_t n_words;
    char *q;
    int w = query_words(&qs, S_Q, &q, &n_words);
    if (w)
        return w < -1 ? reply_error(rq, 503, "out_of_memory", "cannot hold the query")
                      : reply_error(rq, 400, "invalid_query", "%s", qs.bad);
    if (!n_words) {
        free(q);
        return reply_error(rq, 400, "invalid_query", "q: a search query is required");
    }

    size_t n;
    struct saed_sae **saes = saes_list(rq->srv, &n);
    struct saed_ix **ixs = calloc(n ? n : 1, sizeof *ixs);
    struct hit *hits = NULL;
    size_t n_hits = 0;
    uint64_t total = 0;
    enum MHD_Result r = MHD_NO;
    bool replied = false;
    sae_error err;
    int rc = 0;
    if (!saes || !ixs) {
        r = reply_error(rq, 503, "out_of_memory", "cannot search");
        replied = true;
        goto out;
    }
    sae_store_query sq = {.q = q, .sort = SAE_SORT_RELEVANCE, .limit = offset + limit};
    for (size_t i = 0; i < n && !rc; i++) {
        if (!(ixs[i] = saes_ix(saes[i])))
            continue;
        sae_store_conn *c = index_conn_ix(rq, ixs[i], &r);
        if (!c) {
            replied = true;
            goto out;
        }
        sae_store_feature_list l = {0};
        if ((rc = sae_store_list_features(c, &sq, &l, &err)))
            break;
        total += l.total;
        struct hit *h = realloc(hits, (n_hits + l.n + 1) * sizeof *h);
        if (!h) {
            sae_store_feature_list_free(&l);
            rc = sae_error_set(&err, SAE_ENOMEM, "out of memory");
            break;
        }
        hits = h;
        for (size_t k = 0; k < l.n; k++)
            hits[n_hits++] = (struct hit){i, l.items[k].index, l.relevance ? l.relevance[k] : 0};
        sae_store_feature_list_free(&l);
    }
    if (rc) {
        r = reply_store_error(rq, rc, &err);
        replied = true;
        goto out;
    }
    if (n_hits)
        qsort(hits, n_hits, sizeof *hits, hit_cmp);
    struct saed_buf b;
    buf_init(&b, FEATURES_REPLY_LIMIT, 1024 + limit * 256);
    buf_puts(&b, "{\"results\":[");
    for (size_t k = offset; k < n_hits && k < offset + limit && !rc; k++) {
        sae_store_conn *c = index_conn_ix(rq, ixs[hits[k].sae], &r);
        if (!c) {
            buf_free(&b);
            replied = true;
            goto out;
        }
        if (k > offset)
            buf_putc(&b, ',');
        rc = put_hit(&b, c, saes[hits[k].sae]->id, &hits[k], &err);
    }
    char tail[48];
    snprintf(tail, sizeof tail, "],\"total\":%" PRIu64 "}\n", total);
    buf_puts(&b, tail);
    if (rc) {
        buf_free(&b);
        r = reply_store_error(rq, rc, &err);
    } else {
        r = reply_buf(rq, &b);
    }
    replied = true;
out:
    (void)replied;
    for (size_t i = 0; ixs && i < n; i++)
        ix_release(ixs[i]);
    free(ixs);
    free(saes);
    free(hits);
    free(q);
    return r;
}
