/* example_get.c: GET /v1/features/{i}/examples/{kind}/{rank} (CONTRACT 5):
 * one example of feature i (kind top or quantile, rank 0-based as in
 * .../examples) in its document. The server has no corpus: what it knows of
 * the document is its index and name, and the windows of this feature the
 * index stored from it, top and quantile alike. The reply gives the example
 * object, the document, the build's context C, and those windows merged by
 * document position (overlapping or touching windows become one span), each
 * span naming the examples whose focus lies in it. {i} out of range: 404
 * feature_not_found; a kind other than top or quantile, or a rank not below
 * that kind's total: 404 example_not_found. No query parameters. */
#include <stdlib.h>
#include <string.h>

#include "feature_routes.h"

/* One stored window of the document, pointing into an examples list. */
struct window {
    const sae_store_example *ex;
};

/* Orders windows by their first document position, then kind and rank. */
static int window_cmp(const void *pa, const void *pb)
{
    const sae_store_example *a = ((const struct window *)pa)->ex;
    const sae_store_example *b = ((const struct window *)pb)->ex;
    if (a->first != b->first)
        return a->first < b->first ? -1 : 1;
    if (a->kind != b->kind)
        return a->kind < b->kind ? -1 : 1;
    return a->rank < b->rank ? -1 : a->rank > b->rank;
}

/* Parses a rank: a decimal number of at most 10 digits; 0 or -1. */
static int rank_arg(const char *s, uint64_t *out)
{
    size_t n = strlen(s);
    if (!n || n > 10 || strspn(s, "0123456789") != n)
        return -1;
    *out = strtoull(s, NULL, 10);
    return 0;
}

/* Writes the span of merged windows w[0..n) (sorted, overlapping or touching)
 * as {"token_offset", "tokens", "values", "examples": [{"kind", "rank",
 * "position", "value"}]}: each document position once, from the first window
 * that covers it (every window of one feature agrees on a position). */
static void write_span(struct saed_buf *b, const struct window *w, size_t n, uint32_t end)
{
    uint32_t start = w[0].ex->first;
    buf_puts(b, "{\"token_offset\":");
    buf_u32(b, start);
    for (int pass = 0; pass < 2; pass++) {
        buf_puts(b, pass ? ",\"values\":[" : ",\"tokens\":[");
        uint32_t at = start; /* next position to write */
        for (size_t k = 0; k < n && at < end; k++) {
            const sae_store_example *x = w[k].ex;
            for (uint32_t p = at > x->first ? at - x->first : 0; p < x->n; p++, at++) {
                if (at != start)
                    buf_putc(b, ',');
                if (pass)
                    buf_f32(b, x->values[p]);
                else
                    buf_json_strn(b, x->tokens[p], x->token_len[p]);
            }
        }
        buf_putc(b, ']');
    }
    buf_puts(b, ",\"examples\":[");
    for (size_t k = 0; k < n; k++) {
        const sae_store_example *x = w[k].ex;
        buf_puts(b, k ? ",{\"kind\":" : "{\"kind\":");
        buf_puts(b, x->kind == SAE_EX_TOP ? "\"top\"" : "\"quantile\"");
        buf_puts(b, ",\"rank\":");
        buf_u32(b, x->rank);
        buf_puts(b, ",\"position\":");
        buf_u32(b, x->first + x->focus_index);
        buf_puts(b, ",\"value\":");
        buf_f32(b, x->values[x->focus_index]);
        buf_putc(b, '}');
    }
    buf_puts(b, "]}");
}

/* Writes "spans": this feature's windows in document doc, from both lists,
 * merged by position. 0, or SAE_ENOMEM. */
static int write_spans(struct saed_buf *b, const sae_store_examples *lists, size_t n_lists,
                       uint32_t doc)
{
    size_t n = 0;
    for (size_t l = 0; l < n_lists; l++)
        for (size_t k = 0; k < lists[l].n; k++)
            n += lists[l].items[k].doc_index == doc;
    struct window *w = malloc((n ? n : 1) * sizeof *w);
    if (!w)
        return SAE_ENOMEM;
    n = 0;
    for (size_t l = 0; l < n_lists; l++)
        for (size_t k = 0; k < lists[l].n; k++)
            if (lists[l].items[k].doc_index == doc)
                w[n++].ex = &lists[l].items[k];
    qsort(w, n, sizeof *w, window_cmp);
    buf_puts(b, ",\"spans\":[");
    for (size_t k = 0, spans = 0; k < n;) {
        uint32_t end = w[k].ex->first + (uint32_t)w[k].ex->n;
        size_t j = k + 1;
        for (; j < n && w[j].ex->first <= end; j++) {
            uint32_t e = w[j].ex->first + (uint32_t)w[j].ex->n;
            if (e > end)
                end = e;
        }
        if (spans++)
            buf_putc(b, ',');
        write_span(b, w + k, j - k, end);
        k = j;
    }
    buf_putc(b, ']');
    free(w);
    return 0;
}

/* GET /v1/features/{i}/examples/{kind}/{rank}. */
enum MHD_Result example_get(struct saed_req *rq)
{
    enum MHD_Result r;
    uint64_t i, rank;
    sae_store_conn *c = index_conn(rq, &r);
    if (!c || feature_arg(rq, rq->args[0], &i, &r) || query_none(rq, &r))
        return r;
    const char *kind_s = rq->args[1];
    sae_example_kind kind;
    if (!strcmp(kind_s, "top"))
        kind = SAE_EX_TOP;
    else if (!strcmp(kind_s, "quantile"))
        kind = SAE_EX_QUANTILE;
    else
        return reply_error(rq, 404, "example_not_found",
                           "example kind: expected top or quantile, got '%.40s'", kind_s);
    if (rank_arg(rq->args[2], &rank))
        return reply_error(rq, 404, "example_not_found", "rank: expected a number, got '%.40s'",
                           rq->args[2]);
    /* Both kinds whole: the windows of the example's document may be in either. */
    sae_store_examples lists[2] = {{0}};
    sae_error err;
    int rc = sae_store_get_examples(c, i, SAE_EX_TOP, UINT64_MAX, 0, &lists[0], &err);
    if (!rc)
        rc = sae_store_get_examples(c, i, SAE_EX_QUANTILE, UINT64_MAX, 0, &lists[1], &err);
    if (rc) {
        sae_store_examples_free(&lists[0]);
        return reply_store_error(rq, rc, &err);
    }
    const sae_store_examples *mine = &lists[kind == SAE_EX_QUANTILE];
    if (rank >= mine->n) {
        size_t have = mine->n;
        sae_store_examples_free(&lists[0]);
        sae_store_examples_free(&lists[1]);
        return reply_error(rq, 404, "example_not_found",
                           "feature %llu has %zu %s examples, numbered from 0",
                           (unsigned long long)i, have, kind_s);
    }
    const sae_store_example *x = &mine->items[rank];
    const sae_store_info *info = sae_store_get_info(rq->snap->index);
    struct saed_buf b;
    buf_init(&b, FEATURES_REPLY_LIMIT, 4096 + x->n * 64);
    buf_puts(&b, "{\"feature\":");
    buf_u64(&b, i);
    buf_puts(&b, ",\"kind\":");
    buf_json_str(&b, kind_s);
    buf_puts(&b, ",\"rank\":");
    buf_u64(&b, rank);
    buf_puts(&b, ",\"context\":");
    buf_u32(&b, info->context);
    buf_puts(&b, ",\"example\":");
    index_json_example(&b, x);
    buf_puts(&b, ",\"document\":{\"index\":");
    buf_u32(&b, x->doc_index);
    buf_puts(&b, ",\"name\":");
    buf_json_str(&b, x->document);
    buf_putc(&b, '}');
    rc = write_spans(&b, lists, 2, x->doc_index);
    buf_puts(&b, "}\n");
    sae_store_examples_free(&lists[0]);
    sae_store_examples_free(&lists[1]);
    if (rc) {
        buf_free(&b);
        return reply_error(rq, 503, "out_of_memory", "cannot merge the document's windows");
    }
    return reply_buf(rq, &b);
}
