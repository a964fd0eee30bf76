/* fuzz_index.c: opening a feature index file (sae_store_open: the checks
 * saed runs on --index) and then every read the feature routes make on it.
 *
 * The input is written to a scratch file, opened read-only and validated;
 * when that succeeds, a connection reads features 0, 1 and d_sae - 1: stats,
 * histogram, neighbours, explanations, top and quantile examples (each
 * example's tokens looked up in the vocabulary), and a listing per sort
 * order with and without a full-text query. A hostile file may make these
 * fail with an error, never read out of bounds or return what it did not
 * check. (Relevance without a query is refused with SAE_EINVAL.) */
#include <string.h>

#include "fuzz_common.h"
#include "index/store.h"

static void read_feature(sae_store_conn *c, const sae_store *s, uint64_t i)
{
    sae_error err = {0};
    sae_store_feature f;
    int rc = sae_store_get_feature(c, i, &f, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (!rc)
        FUZZ_ASSERT(f.index == i, "asked %llu, got %u", (unsigned long long)i, f.index);

    sae_store_histogram h = {0};
    rc = sae_store_get_histogram(c, i, &h, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (!rc) {
        volatile double sink = 0;
        for (size_t k = 0; k < h.n; k++)
            sink += h.edges[k] + (double)h.counts[k];
        if (h.n)
            sink += h.edges[h.n];
        (void)sink;
        sae_store_histogram_free(&h);
    }

    sae_store_neighbours nb = {0};
    rc = sae_store_get_neighbours(c, i, &nb, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (!rc)
        sae_store_neighbours_free(&nb);

    sae_explanations ex = {0};
    rc = sae_store_get_explanations(c, i, &ex, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (!rc) {
        for (size_t k = 0; k < ex.n; k++)
            FUZZ_ASSERT(ex.items[k].description, "explanation without a description");
        sae_explanations_free(&ex);
    }

    for (int kind = SAE_EX_TOP; kind <= SAE_EX_QUANTILE; kind++) {
        sae_store_examples es = {0};
        rc = sae_store_get_examples(c, i, (sae_example_kind)kind, 5, 0, &es, &err);
        FUZZ_CHECK_ERR(rc, err);
        if (rc)
            continue;
        for (size_t k = 0; k < es.n; k++) {
            const sae_store_example *e = &es.items[k];
            FUZZ_ASSERT(e->n == 0 || e->max_token_index < e->n, "max token %u of %zu",
                        e->max_token_index, e->n);
            FUZZ_ASSERT(e->n == 0 || e->focus_index < e->n, "focus %u of %zu", e->focus_index,
                        e->n);
            /* Touch every byte the example points to (ASan checks the
             * bounds); values from a hostile file may be any float, so they
             * are summed as doubles, never converted to an integer. */
            volatile size_t sink = e->document ? strlen(e->document) : 0;
            volatile double vsum = 0;
            for (size_t t = 0; t < e->n; t++) {
                size_t len;
                const char *tok = sae_store_token(s, e->token_ids[t], &len);
                FUZZ_ASSERT(tok == e->tokens[t], "token %zu is not the vocabulary's", t);
                sink += e->token_len[t];
                vsum += e->values[t];
                if (e->token_len[t])
                    sink += (unsigned char)e->tokens[t][e->token_len[t] - 1];
            }
            (void)sink;
            (void)vsum;
        }
        sae_store_examples_free(&es);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write("index.db", data, size);
    sae_store *s = NULL;
    sae_error err = {0};
    int rc = sae_store_open(path, &s, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (rc)
        return 0;
    const sae_store_info *info = sae_store_get_info(s);
    FUZZ_ASSERT(info, "no info");
    rc = sae_store_check_model(s, "00000000000000000000000000000000", FUZZ_D_IN, FUZZ_D_SAE, &err);
    FUZZ_CHECK_ERR(rc, err);
    size_t nv = sae_store_vocab_size(s);
    for (size_t v = 0; v < nv && v < 64; v++) {
        size_t len;
        const char *tok = sae_store_token(s, (uint32_t)v, &len);
        FUZZ_ASSERT(tok, "vocab %zu missing", v);
        volatile char sink = len ? tok[len - 1] : 0;
        (void)sink;
    }
    sae_store_conn *c = NULL;
    rc = sae_store_connect(s, &c, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (!rc) {
        read_feature(c, s, 0);
        read_feature(c, s, 1);
        if (info->d_sae > 2)
            read_feature(c, s, info->d_sae - 1);
        read_feature(c, s, info->d_sae); /* out of range: SAE_ERANGE, nothing read */
        static const char *const qs[] = {NULL, "a", "\"(* NEAR"};
        for (int sort = SAE_SORT_INDEX; sort <= SAE_SORT_RELEVANCE; sort++)
            for (size_t k = 0; k < sizeof qs / sizeof *qs; k++) {
                sae_store_query q = {.q = qs[k],
                                     .sort = (sae_store_sort)sort,
                                     .desc = k & 1,
                                     .limit = 10,
                                     .offset = 0};
                sae_store_feature_list l = {0};
                rc = sae_store_list_features(c, &q, &l, &err);
                FUZZ_CHECK_ERR(rc, err);
                if (!rc) {
                    FUZZ_ASSERT(l.n <= 10, "limit 10, got %zu", l.n);
                    sae_store_feature_list_free(&l);
                }
            }
        sae_store_disconnect(c);
    }
    sae_store_close(s);
    return 0;
}
