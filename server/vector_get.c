/* vector_get.c: GET /v1/features/{i}/vector (CONTRACT 5): the decoder
 * direction W_dec[i] of the served model, {"index": i, "vector": [d_in
 * floats]}, plus its norm. The numbers come from the model, not the index,
 * but this is a feature route: without an index it answers 404 no_index as
 * the contract says for every feature route. */
#include "feature_routes.h"

/* GET /v1/features/{i}/vector. */
enum MHD_Result vector_get(struct saed_req *rq)
{
    enum MHD_Result r;
    uint64_t i;
    if (!rq->snap->index)
        return reply_no_index(rq);
    if (feature_arg(rq, rq->args[0], &i, &r) || query_none(rq, &r))
        return r;
    const sae_model *m = rq->snap->model;
    float *row = malloc(m->d_out * sizeof *row); /* W_dec may be 16-bit */
    if (!row)
        return reply_error(rq, 500, "internal", "out of memory");
    sae_model_dec_row(m, (size_t)i, row);
    struct saed_buf b;
    buf_init(&b, FEATURES_REPLY_LIMIT, 64 + m->d_out * 16);
    buf_puts(&b, "{\"index\":");
    buf_u32(&b, (uint32_t)i);
    buf_puts(&b, ",\"vector\":[");
    for (size_t j = 0; j < m->d_out; j++) {
        if (j)
            buf_putc(&b, ',');
        buf_f32(&b, row[j]);
    }
    free(row);
    buf_puts(&b, "],\"norm\":");
    buf_f32(&b, m->dec_norm[i]);
    buf_puts(&b, "}\n");
    if (sae_model_changed(m)) { /* read before or while it changed */
        buf_free(&b);
        return reply_weights_changed(rq);
    }
    return reply_buf(rq, &b);
}
