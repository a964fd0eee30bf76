/* feature_get.c: GET /v1/features/{i} (CONTRACT 5): one feature object with
 * its statistics, histogram, explanations, neighbours and its first
 * FEATURE_TOP_EXAMPLES top examples (the rest from .../examples). {i} not a
 * decimal number in [0, d_sae): 404 feature_not_found. No query parameters. */
#include "feature_routes.h"

static const char *const params[1] = {""};

/* GET /v1/features/{i}. */
enum MHD_Result feature_get(struct saed_req *rq)
{
    enum MHD_Result r;
    uint64_t i;
    sae_store_conn *c = index_conn(rq, &r);
    if (!c || feature_arg(rq, rq->args[0], &i, &r))
        return r;
    struct query_spec qs = {.names = params, .n = 0};
    if (query_collect(rq, &qs))
        return reply_error(rq, 400, "invalid_query", "%s", qs.bad);
    sae_store_feature f;
    sae_error err;
    int rc = sae_store_get_feature(c, i, &f, &err);
    if (rc)
        return reply_store_error(rq, rc, &err);
    struct saed_buf b;
    buf_init(&b, FEATURES_REPLY_LIMIT, 8192);
    if ((rc = json_feature(&b, c, &f, FEATURE_TOP_EXAMPLES, &err))) {
        buf_free(&b);
        return reply_store_error(rq, rc, &err);
    }
    buf_putc(&b, '\n');
    return reply_buf(rq, &b);
}
