/* neuronpedia_get.c: GET /api/feature/{modelId}/{layer}/{index} (CONTRACT 6):
 * one feature as Neuronpedia's GET /api/feature answers it (its Neuron row
 * with the activations and explanations getNeuronOptimized adds), so scripts
 * written against neuronpedia.org read a local index unchanged.
 *
 * modelId must be the part of the model's neuronpedia_id before '/' (else
 * its model_name) and layer the configured source_id (default: the part of
 * neuronpedia_id after '/', else the hook_name); anything else is 404
 * not_found. Names come from the folder or saed's model_name/hook_name/
 * neuronpedia_id settings, so folders that carry no model name (sparsify,
 * Gemma Scope) are served once one is set. As on
 * Neuronpedia, "index" is a string. Mapping from the index:
 *   maxActApprox = max_activation, frac_nonzero = density,
 *   freq_hist_data_bar_heights / _values = SAE_NP_HIST_BARS linear bars over
 *     the non-zero activations, as SAEDashboard computes them: exact when the
 *     index has them (sae index --neuronpedia-hist), else rebinned from the
 *     index's fixed histogram (sae_store_get_np_hist; index_hist.h says how
 *     exact that is),
 *   topkCosSimIndices / topkCosSimValues = the decoder-cosine neighbours,
 *   activations = the top examples (binMin -1, binMax = maxActApprox,
 *     binContains -1, as SAEDashboard writes its top group) and the quantile
 *     examples, at most FEATURES_MAX_LIMIT of each kind, ordered by maxValue
 *     descending as Neuronpedia orders them (ties: top before quantile, then
 *     rank); qualifyingTokenIndex is the token the example was picked for,
 *   explanations: best first (sae_explanations_sort_best: scoreV2, then
 *     scoreV1, unscored last), each with id (the index's explanation id as a
 *     string), description, typeName, explanationModelName (source),
 *     triggeredByUser (null: saed has no users), scores[] (Neuronpedia's
 *     ExplanationScore: id "<explanation>-<seq>", value, explanationId,
 *     explanationScoreTypeName, explanationScoreModelName, jsonDetails ""),
 *     and saed's scoreV1 / scoreV2 (Neuronpedia sorts by them but does not
 *     return them).
 * When the index holds them (sae index --unembed / --correlations): pos_str /
 * pos_values / neg_str / neg_values, logits_hist_data_bar_*, neuron_alignment_*
 * and correlated_neurons_* (np_dashboards); left out otherwise. Never in it,
 * so left out rather than invented: Neuronpedia's bookkeeping (creatorId, createdAt, lists,
 * comments, umap_*, vector fields). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feature_routes.h"
#include "saes.h"

/* `,"name":[v0,v1,...]` of n floats. */
static void np_floats(struct saed_buf *b, const char *name, const float *v, size_t n)
{
    buf_puts(b, name);
    buf_putc(b, '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_putc(b, ',');
        buf_f32(b, v[i]);
    }
    buf_putc(b, ']');
}

/* `,"name":[i0,i1,...]` of n indices. */
static void np_indices(struct saed_buf *b, const char *name, const uint32_t *v, size_t n)
{
    buf_puts(b, name);
    buf_putc(b, '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_putc(b, ',');
        buf_u32(b, v[i]);
    }
    buf_putc(b, ']');
}

/* `,"name":["s0",...]` of n token strings. */
static void np_strings(struct saed_buf *b, const char *name, const char *const *s,
                       const size_t *len, size_t n)
{
    buf_puts(b, name);
    buf_putc(b, '[');
    for (size_t i = 0; i < n; i++) {
        if (i)
            buf_putc(b, ',');
        buf_json_strn(b, s[i], len[i]);
    }
    buf_putc(b, ']');
}

/* The dashboard fields SAEDashboard's NeuronpediaDashboardFeature carries,
 * when the index holds them (`sae index --unembed`, `--correlations`): the
 * logit tables pos_str/pos_values/neg_str/neg_values and their histogram
 * logits_hist_data_bar_heights/_values, neuron_alignment_indices/_values/_l1
 * and correlated_neurons_indices/_pearson. Left out, not invented, when the
 * index was built without them. */
static void np_dashboards(struct saed_buf *b, const sae_store_logits *l,
                          const sae_store_neuron_table *al, const sae_store_neuron_table *co)
{
    if (l->computed) {
        np_strings(b, ",\"pos_str\":", l->pos_str, l->pos_len, l->n_pos);
        np_floats(b, ",\"pos_values\":", l->pos_values, l->n_pos);
        np_strings(b, ",\"neg_str\":", l->neg_str, l->neg_len, l->n_neg);
        np_floats(b, ",\"neg_values\":", l->neg_values, l->n_neg);
        buf_puts(b, ",\"logits_hist_data_bar_heights\":[");
        for (size_t i = 0; i < l->n_bins; i++) {
            if (i)
                buf_putc(b, ',');
            buf_u32(b, l->hist[i]);
        }
        buf_puts(b, "],\"logits_hist_data_bar_values\":[");
        for (size_t i = 0; i < l->n_bins; i++) {
            if (i)
                buf_putc(b, ',');
            buf_f64(b, sae_store_logits_bar_value(l, i));
        }
        buf_putc(b, ']');
    }
    if (al->computed) {
        np_indices(b, ",\"neuron_alignment_indices\":", al->indices, al->n);
        np_floats(b, ",\"neuron_alignment_values\":", al->values, al->n);
        np_floats(b, ",\"neuron_alignment_l1\":", al->extra, al->n);
    }
    if (co->computed) {
        np_indices(b, ",\"correlated_neurons_indices\":", co->indices, co->n);
        np_floats(b, ",\"correlated_neurons_pearson\":", co->values, co->n);
    }
}

/* One example as a Neuronpedia activation; top examples get SAEDashboard's
 * top-group bins (-1, the feature's max, -1). */
static void np_activation(struct saed_buf *b, const sae_store_example *ex, double max)
{
    bool top = ex->kind == SAE_EX_TOP;
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
    buf_f64(b, top ? -1 : ex->bin_min);
    buf_puts(b, ",\"binMax\":");
    buf_f64(b, top ? max : ex->bin_max);
    buf_puts(b, ",\"binContains\":");
    buf_f64(b, top ? -1 : ex->bin_contains);
    buf_putc(b, '}');
}

/* qsort order of the activations: maxValue descending, then top before
 * quantile, then rank. */
static int by_max_value(const void *pa, const void *pb)
{
    const sae_store_example *a = *(const sae_store_example *const *)pa,
                            *b = *(const sae_store_example *const *)pb;
    if (a->max_value != b->max_value)
        return a->max_value > b->max_value ? -1 : 1;
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    return (a->rank > b->rank) - (a->rank < b->rank);
}

/* One explanation as Neuronpedia returns it, with its scores. */
static void np_explanation(struct saed_buf *b, const sae_explanation *x)
{
    char id[24];
    snprintf(id, sizeof id, "%llu", (unsigned long long)x->id);
    buf_puts(b, "{\"id\":");
    buf_json_str(b, id);
    buf_puts(b, ",\"description\":");
    buf_json_str(b, x->description);
    buf_puts(b, ",\"explanationModelName\":");
    x->source ? buf_json_str(b, x->source) : buf_puts(b, "null");
    buf_puts(b, ",\"typeName\":");
    x->type_name ? buf_json_str(b, x->type_name) : buf_puts(b, "null");
    buf_puts(b, ",\"scores\":[");
    for (size_t k = 0; k < x->n_scores; k++) {
        const sae_explanation_score *sc = &x->scores[k];
        char sid[48];
        snprintf(sid, sizeof sid, "%llu-%zu", (unsigned long long)x->id, k);
        buf_puts(b, k ? ",{\"id\":" : "{\"id\":");
        buf_json_str(b, sid);
        buf_puts(b, ",\"value\":");
        buf_f64(b, sc->value);
        buf_puts(b, ",\"explanationId\":");
        buf_json_str(b, id);
        buf_puts(b, ",\"explanationScoreTypeName\":");
        sc->type ? buf_json_str(b, sc->type) : buf_puts(b, "null");
        buf_puts(b, ",\"explanationScoreModelName\":");
        sc->model ? buf_json_str(b, sc->model) : buf_puts(b, "null");
        buf_puts(b, ",\"jsonDetails\":\"\"}");
    }
    buf_puts(b, "],\"triggeredByUser\":null,\"scoreV1\":");
    x->has_score ? buf_f64(b, x->score) : buf_puts(b, "null");
    buf_puts(b, ",\"scoreV2\":");
    x->has_score_v2 ? buf_f64(b, x->score_v2) : buf_puts(b, "null");
    buf_putc(b, '}');
}

/* The body after the identification fields; 0 or a store status. */
static int np_body(struct saed_buf *b, sae_store_conn *c, uint64_t i, sae_error *err)
{
    sae_store_feature f;
    sae_store_np_hist h;
    sae_store_neighbours nb = {0};
    sae_explanations e = {0};
    sae_store_examples top = {0}, qua = {0};
    sae_store_logits lg = {0};
    sae_store_neuron_table al = {0}, co = {0};
    int rc;
    if ((rc = sae_store_get_feature(c, i, &f, err)) ||
        (rc = sae_store_get_logits(c, i, &lg, err)) ||
        (rc = sae_store_get_neuron_table(c, i, SAE_NEURON_ALIGNMENT, &al, err)) ||
        (rc = sae_store_get_neuron_table(c, i, SAE_NEURON_CORRELATED, &co, err)) ||
        (rc = sae_store_get_np_hist(c, i, &h, err)) ||
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
        snprintf(num, sizeof num, k ? ",%llu" : "%llu", (unsigned long long)h.heights[k]);
        buf_puts(b, num);
    }
    buf_puts(b, "],\"freq_hist_data_bar_values\":[");
    for (size_t k = 0; k < h.n; k++) {
        if (k)
            buf_putc(b, ',');
        buf_f64(b, h.values[k]);
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
    buf_putc(b, ']');
    np_dashboards(b, &lg, &al, &co);
    buf_puts(b, ",\"activations\":[");
    size_t n_act = top.n + qua.n;
    const sae_store_example **order = n_act ? malloc(n_act * sizeof *order) : NULL;
    if (n_act && !order) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    for (size_t k = 0; k < n_act; k++)
        order[k] = k < top.n ? &top.items[k] : &qua.items[k - top.n];
    qsort(order, n_act, sizeof *order, by_max_value);
    for (size_t k = 0; k < n_act; k++) {
        if (k)
            buf_putc(b, ',');
        np_activation(b, order[k], f.max_activation);
    }
    free(order);
    buf_puts(b, "],\"explanations\":[");
    sae_explanations_sort_best(&e);
    for (size_t k = 0; k < e.n; k++) {
        if (k)
            buf_putc(b, ',');
        np_explanation(b, &e.items[k]);
    }
    buf_puts(b, "]}\n");
out:
    sae_store_logits_free(&lg);
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
