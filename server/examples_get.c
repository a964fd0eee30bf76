/* examples_get.c: GET /v1/features/{i}/examples?kind=top|quantile&limit=&offset=
 * (CONTRACT 5): one page of a feature's examples, in rank order (top:
 * documents by their max activation; quantile: groups from the highest
 * activations down). Defaults kind top, limit 20 (at most 500), offset 0. */
#include <stdio.h>
#include <string.h>

#include "feature_routes.h"

enum { P_KIND, P_LIMIT, P_OFFSET, P_COUNT };
static const char *const params[P_COUNT] = {"kind", "limit", "offset"};

/* GET /v1/features/{i}/examples. */
enum MHD_Result examples_get(struct saed_req *rq)
{
    enum MHD_Result r;
    uint64_t i, limit, offset;
    sae_store_conn *c = index_conn(rq, &r);
    if (!c || feature_arg(rq, rq->args[0], &i, &r))
        return r;
    struct query_spec qs = {.names = params, .n = P_COUNT};
    if (query_collect(rq, &qs) ||
        query_uint(&qs, P_LIMIT, EXAMPLES_DEFAULT_LIMIT, FEATURES_MAX_LIMIT, &limit) ||
        query_uint(&qs, P_OFFSET, 0, (uint64_t)INT64_MAX, &offset))
        return reply_error(rq, 400, "invalid_query", "%s", qs.bad);
    sae_example_kind kind = SAE_EX_TOP;
    const char *k = qs.values[P_KIND];
    if (k && !strcmp(k, "quantile"))
        kind = SAE_EX_QUANTILE;
    else if (k && strcmp(k, "top"))
        return reply_error(rq, 400, "invalid_query", "kind: expected top or quantile, got '%.40s'",
                           k);
    sae_store_examples ex = {0};
    sae_error err;
    int rc = sae_store_get_examples(c, i, kind, limit, offset, &ex, &err);
    if (rc)
        return reply_store_error(rq, rc, &err);
    struct saed_buf b;
    buf_init(&b, FEATURES_REPLY_LIMIT, 256 + ex.n * 1024);
    buf_puts(&b, "{\"examples\":[");
    for (size_t j = 0; j < ex.n; j++) {
        if (j)
            buf_putc(&b, ',');
        index_json_example(&b, &ex.items[j]);
    }
    char tail[48];
    snprintf(tail, sizeof tail, "],\"total\":%llu}\n", (unsigned long long)ex.total);
    buf_puts(&b, tail);
    sae_store_examples_free(&ex);
    return reply_buf(rq, &b);
}
