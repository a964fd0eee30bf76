/* neuronpedia_get.c: GET /api/feature/{modelId}/{layer}/{index} (CONTRACT 6):
 * one feature with Neuronpedia's field names, so scripts written against
 * neuronpedia.org read a local index unchanged.
 *
 * modelId must be the part of the model's neuronpedia_id before '/' (else
 * its model_name) and layer the configured source_id (default: the part of
 * neuronpedia_id after '/', else the hook_name); anything else is 404
 * not_found. Names come from the folder or saed's model_name/hook_name/
 * neuronpedia_id settings, so folders that carry no model name (sparsify,
 * Gemma Scope) are served once one is set. As on
 * Neuronpedia, "index" is a string. Mapping from the index:
 *   maxActApprox = max_activation, frac_nonzero = density,
 *   freq_hist_data_bar_heights = histogram counts, freq_hist_data_bar_values =
 *     the bins' midpoints (the open top bin [65536, inf): its lower edge),
 *   topkCosSimIndices / topkCosSimValues = the decoder-cosine neighbours,
 *   activations = the top examples (binMin, binMax, binContains null) then
 *     the quantile examples, at most FEATURES_MAX_LIMIT of each kind;
 *     qualifyingTokenIndex is the token the example was picked for,
 *   explanations: description, typeName, scoreV1 (score), explanationModelName
 *     (source). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "feature_routes.h"
#include "saes.h"

/* One example as a Neuronpedia activation. */
static void np_activation(struct saed_buf *b, const sae_store_example *ex)
{
    buf_putc(b, '{');
    index_json_window(b, ex);
    buf_puts(b, ",\"maxValue\":");
    buf_f32(b, ex->max_value);
    buf_puts(b, ",\"maxValueTokenIndex\":");
    buf_u32(b, ex->max_token_index);
    buf_puts(b, ",\"minValue\":");
    buf_f32(b, ex->min_value);
    buf_puts(b, ",\"qualifyingTokenIndex\":");
    buf_u32(b, ex->focus_index);
    buf_puts(b, ",\"binMin\":");
    if (ex->has_bin)
        buf_f64(b, ex->bin_min);
    else
        buf_puts(b, "null");
    buf_puts(b, ",\"binMax\":");
    if (ex->has_bin)
        buf_f64(b, ex->bin_max);
    else
        buf_puts(b, "null");
    buf_puts(b, ",\"binContains\":");
    if (ex->has_bin)
        buf_f64(b, ex->bin_contains);
    else
        buf_puts(b, "null");
    buf_putc(b, '}');
}

/* The body after the identification fields; 0 or a store status. */
static int np_body(struct saed_buf *b, sae_store_conn *c, uint64_t i, sae_error *err)
{
    sae_store_feature f;
    sae_store_histogram h = {0};
    sae_store_neighbours nb = {0};
    sae_explanations e = {0};
    sae_store_examples top = {0}, qua = {0};
    int rc;
    if ((rc = sae_store_get_feature(c, i, &f, err)) ||
        (rc = sae_store_get_histogram(c, i, &h, err)) ||
        (rc = sae_store_get_neighbours(c, i, &nb, err)) ||
        (rc = sae_store_get_explanations(c, i, &e, err)) ||
        (rc = sae_store_get_examples(c, i, SAE_EX_TOP, FEATURES_MAX_LIMIT, 0, &top, err)) ||
        (rc = sae_store_get_examples(c, i, SAE_EX_QUANTILE, FEATURES_MAX_LIMIT, 0, &qua, err)))
        goto out;
    buf_puts(b, ",\"maxActApprox\":");
    buf_f64(b, f.max_activation);
    buf_puts(b, ",\"frac_nonzero\":");
    buf_f64(b, f.density);
    buf_puts(b, ",\"freq_hist_data_bar_heights\":[");
    for (size_t k = 0; k < h.n; k++) {
        char num[24];
        snprintf(num, sizeof num, k ? ",%llu" : "%llu", (unsigned long long)h.counts[k]);
        buf_puts(b, num);
    }
    buf_puts(b, "],\"freq_hist_data_bar_values\":[");
    for (size_t k = 0; k < h.n; k++) {
        if (k)
            buf_putc(b, ',');
        double lo = h.edges[k], hi = h.edges[k + 1];
        buf_f64(b, isfinite(hi) ? (lo + hi) / 2 : lo);
    }
    buf_puts(b, "],\"topkCosSimIndices\":[");
    for (size_t k = 0; k < nb.n; k++) {
        if (k)
            buf_putc(b, ',');
        buf_u32(b, nb.items[k].index);
    }
    buf_puts(b, "],\"topkCosSimValues\":[");
    for (size_t k = 0; k < nb.n; k++) {
        if (k)
            buf_putc(b, ',');
        buf_f32(b, nb.items[k].cosine);
    }
    buf_puts(b, "],\"activations\":[");
    for (size_t k = 0; k < top.n + qua.n; k++) {
        if (k)
            buf_putc(b, ',');
        np_activation(b, k < top.n ? &top.items[k] : &qua.items[k - top.n]);
    }
    buf_puts(b, "],\"explanations\":[");
    for (size_t k = 0; k < e.n; k++) {
        const sae_explanation *x = &e.items[k];
        buf_puts(b, k ? ",{\"description\":" : "{\"description\":");
        buf_json_str(b, x->description);
        buf_puts(b, ",\"typeName\":");
        if (x->type_name)
            buf_json_str(b, x->type_name);
        else
            buf_puts(b, "null");
        buf_puts(b, ",\"scoreV1\":");
        if (x->has_score)
            buf_f64(b, x->score);
        else
            buf_puts(b, "null");
        buf_puts(b, ",\"explanationModelName\":");
        if (x->source)
            buf_json_str(b, x->source);
        else
            buf_puts(b, "null");
        buf_putc(b, '}');
    }
    buf_puts(b, "]}\n");
out:
    sae_store_histogram_free(&h);
    sae_store_neighbours_free(&nb);
    sae_explanations_free(&e);
    sae_store_examples_free(&top);
    sae_store_examples_free(&qua);
    return rc;
}

/* Which SAE answers (CONTRACT 7): the one whose source id is the layer;
 * with one SAE, that one. Swaps rq's snapshot for that SAE's; 0, or -1 with
 * the 404 (or 503) queued and *r set. */
static int np_resolve(struct saed_req *rq, enum MHD_Result *r)
{
    struct saed_sae *sae = saes_by_source(rq->srv, rq->args[1]);
    if (!sae) {
        *r = reply_error(rq, 404, "not_found",
                         "no SAE has the source id (layer) \"%.100s\" (GET /v1/saes lists "
                         "each SAE's source_id)",
                         rq->args[1]);
        return -1;
    }
    if (sae == rq->sae)
        return 0;
    sae_error err;
    struct saed_snap *s = snap_acquire(rq->srv, sae, &err);
    if (!s) {
        *r = reply_error(rq, 503, err.code == SAE_EIO ? "weights_changed" : "not_ready", "%s",
                         err.msg);
        return -1;
    }
    snap_release(rq->snap);
    rq->snap = s;
    rq->sae = sae;
    return 0;
}

/* GET /api/feature/{modelId}/{layer}/{index}. */
enum MHD_Result neuronpedia_get(struct saed_req *rq)
{
    enum MHD_Result r;
    if (np_resolve(rq, &r))
        return r;
    const char *model_id, *ignored;
    size_t model_len;
    sae_model_neuronpedia(rq->snap->model, &model_id, &model_len, &ignored);
    const char *layer = features_source_id(rq);
    if (strlen(rq->args[0]) != model_len || strncmp(rq->args[0], model_id, model_len) ||
        strcmp(rq->args[1], layer))
        return reply_error(rq, 404, "not_found",
                           "this saed serves modelId \"%.*s\" and layer \"%.100s\" only%s",
                           (int)(model_len < 100 ? model_len : 100), model_id, layer,
                           model_len ? ""
                                     : " (the folder names no model: set model_name or "
                                       "neuronpedia_id in saed's config)");
    uint64_t i;
    sae_store_conn *c = index_conn(rq, &r);
    if (!c || feature_arg(rq, rq->args[2], &i, &r) || query_none(rq, &r))
        return r;
    struct saed_buf b;
    buf_init(&b, FEATURES_REPLY_LIMIT, 65536);
    buf_puts(&b, "{\"modelId\":");
    buf_json_strn(&b, model_id, model_len);
    buf_puts(&b, ",\"layer\":");
    buf_json_str(&b, layer);
    char idx[24];
    snprintf(idx, sizeof idx, ",\"index\":\"%llu\"", (unsigned long long)i);
    buf_puts(&b, idx);
    sae_error err;
    int rc = np_body(&b, c, i, &err);
    if (rc) {
        buf_free(&b);
        return reply_store_error(rq, rc, &err);
    }
    return reply_buf(rq, &b);
}
