/* feature_get.c: GET /v1/features/{i} (CONTRACT 5): one feature object with
 * its statistics, histogram, explanations, neighbours, its first
 * FEATURE_TOP_EXAMPLES top examples (the rest from .../examples) and the
 * index's token count n_tokens (so a page can say "n_active of n_tokens"). {i} not a
 * decimal number in [0, d_sae): 404 feature_not_found. No query parameters.
 *
 * An index never changes while a snapshot holds it, so a feature's reply is
 * rendered once per snapshot and kept (feature_cache below), up to
 * FEATURE_CACHE_BYTES; the browser's feature pages and scripts ask for the
 * same features again and again. Later replies copy the text: no SQL, no
 * number formatting. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "feature_routes.h"

/* Most bytes of rendered replies kept per snapshot. */
#define FEATURE_CACHE_BYTES ((size_t)64 << 20)

/* One rendered reply: len bytes and a NUL. */
struct cached {
    size_t len;
    char text[];
};

/* The rendered replies of one snapshot: a slot per feature, filled once
 * (compare-and-swap; the loser of a race frees its copy) and freed with the
 * snapshot. */
struct feature_cache {
    size_t n;
    _Atomic(struct cached *) *slot; /* (n) */
    atomic_size_t bytes;
};

struct feature_cache *feature_cache_new(size_t n)
{
    struct feature_cache *fc = calloc(1, sizeof *fc);
    if (!fc)
        return NULL;
    fc->n = n;
    fc->slot = calloc(n ? n : 1, sizeof *fc->slot);
    if (!fc->slot) {
        free(fc);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        atomic_init(&fc->slot[i], NULL);
    atomic_init(&fc->bytes, 0);
    return fc;
}

void feature_cache_free(struct feature_cache *fc)
{
    if (!fc)
        return;
    for (size_t i = 0; i < fc->n; i++)
        free(atomic_load(&fc->slot[i]));
    free(fc->slot);
    free(fc);
}

/* Keeps a copy of a rendered reply unless the budget is spent. */
static void cache_put(struct feature_cache *fc, uint64_t i, const char *text, size_t len)
{
    if (atomic_fetch_add(&fc->bytes, len) + len > FEATURE_CACHE_BYTES) {
        atomic_fetch_sub(&fc->bytes, len);
        return;
    }
    struct cached *c = malloc(sizeof *c + len + 1);
    if (!c) {
        atomic_fetch_sub(&fc->bytes, len);
        return;
    }
    c->len = len;
    memcpy(c->text, text, len);
    c->text[len] = '\0';
    struct cached *none = NULL;
    if (!atomic_compare_exchange_strong(&fc->slot[i], &none, c)) {
        atomic_fetch_sub(&fc->bytes, len);
        free(c);
    }
}

/* GET /v1/features/{i}. */
enum MHD_Result feature_get(struct saed_req *rq)
{
    enum MHD_Result r;
    uint64_t i;
    if (!rq->snap->index)
        return reply_no_index(rq);
    if (feature_arg(rq, rq->args[0], &i, &r) || query_none(rq, &r))
        return r;
    struct feature_cache *fc = rq->snap->feature_cache;
    struct cached *hit = fc && i < fc->n ? atomic_load(&fc->slot[i]) : NULL;
    if (hit) {
        char *copy = malloc(hit->len + 1);
        if (!copy)
            return reply_error(rq, 503, "out_of_memory", "cannot copy a reply");
        memcpy(copy, hit->text, hit->len + 1);
        return reply_json_buf(rq, 200, copy, hit->len);
    }
    sae_store_conn *c = index_conn(rq, &r);
    if (!c)
        return r;
    sae_store_feature f;
    sae_error err;
    int rc = sae_store_get_feature(c, i, &f, &err);
    if (rc)
        return reply_store_error(rq, rc, &err);
    struct saed_buf b;
    buf_init(&b, FEATURES_REPLY_LIMIT, 8192);
    uint64_t n_tokens = sae_store_get_info(rq->snap->index)->n_tokens;
    if ((rc = index_json_feature(&b, c, &f, FEATURE_TOP_EXAMPLES, n_tokens, rq->snap->labels,
                                 &err))) {
        buf_free(&b);
        return reply_store_error(rq, rc, &err);
    }
    buf_putc(&b, '\n');
    if (fc && i < fc->n && !b.failed)
        cache_put(fc, i, b.data, b.len);
    return reply_buf(rq, &b);
}
