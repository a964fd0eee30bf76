/* test_store.c: the index file (core/index/store_*.c). A small index is written row by
 * row through the writer, then every read the daemon makes is checked against
 * the rows written: feature statistics, histogram edges (computed here by
 * hand), neighbours, explanations, listing with every sort and order, paging,
 * full-text search (including queries full of FTS5 syntax), examples by kind
 * with tokens and per-token values. Then what must be refused: files that are
 * not SQLite, truncated, of another application or schema version, with an
 * incomplete meta table, from other weights; and what must not happen to the
 * target: an aborted or disk-full write leaves it byte-identical and no
 * temporary file behind, stale temporary files of dead processes are removed. */
#include <check.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fixture.h"
#include "index/indexer.h"
#include "index/store.h"
#include "index/store_internal.h"
#include "unit.h"

#define D_SAE 5
#define DIGEST "0123456789abcdef0123456789abcdef"

/* The statistics written for each feature. Features 1 and 3 share a density
 * (ties in sorting); feature 4 never fired. */
static const struct {
    uint64_t n_active;
    double density, max, mean, norm;
} feat[D_SAE] = {
    {7, 0.07, 3.5, 1.25, 0.9},
    {2, 0.02, 9.0, 4.0, 1.1},
    {30, 0.30, 0.5, 0.2, 1.0},
    {2, 0.02, 1.0, 0.75, 0.7},
    {0, 0.0, 0.0, 0.0, 1.3},
};

static const char *const vocab[] = {"", " cat", "dog", "x\0y"};
static const size_t vocab_len[] = {0, 4, 3, 3};

/* Writes meta with every key, optionally leaving one out and/or lying about
 * d_sae. */
static void put_info(sae_store_writer *w, const char *skip_key, uint64_t d_sae)
{
    sae_store_info in;
    memset(&in, 0, sizeof in);
    strcpy(in.weights_digest, DIGEST);
    in.d_in = 16;
    in.d_sae = d_sae;
    in.n_tokens = 100;
    in.n_documents = 9;
    in.corpus_tokens = 100;
    in.corpus_documents = 9;
    in.top = 3;
    in.quantiles = 2;
    in.per_quantile = 1;
    in.context = 1;
    in.neighbours = 2;
    in.seed = 77;
    in.block_rows = 256;
    strcpy(in.histogram, SAE_HIST_DEFINITION);
    strcpy(in.tokens_digest, "fedcba9876543210fedcba9876543210");
    in.n_explanations = 4;
    sae_error err;
    if (!skip_key) {
        ck_assert_int_eq(sae_store_put_info(w, &in, &err), 0);
        return;
    }
    /* Every key but one, as strings. */
    const char *keys[] = {"weights_digest", "d_in", "d_sae", "n_tokens", "n_documents",
                          "corpus_tokens", "corpus_documents", "top", "quantiles", "per_quantile",
                          "context", "neighbours", "seed", "block_rows", "shard", "histogram",
                          "tokens_digest", "explanations_digest", "n_explanations"};
    const char *vals[] = {DIGEST, "16", "5", "100", "9", "100", "9", "3", "2", "1", "1", "2",
                          "77", "256", "", SAE_HIST_DEFINITION,
                          "fedcba9876543210fedcba9876543210", "", "4"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        if (strcmp(keys[i], skip_key))
            ck_assert_int_eq(sae_store_put_meta(w, keys[i], vals[i], &err), 0);
}

/* Writes the test index to path: see the tables above; returns 0 or the
 * commit's status. */
static int write_index(const char *path, const char *skip_key, uint64_t meta_d_sae)
{
    sae_store_writer *w;
    sae_error err;
    ck_assert_int_eq(sae_store_writer_open(path, &w, &err), 0);
    put_info(w, skip_key, meta_d_sae);
    uint8_t sum[48] = {0};
    for (uint32_t f = 0; f < D_SAE; f++) {
        uint64_t hist[3] = {1, 0, 5};
        sae_store_feature_row r = {
            .index = f, .n_active = feat[f].n_active, .density = feat[f].density,
            .max_activation = feat[f].max, .mean_activation = feat[f].mean,
            .decoder_norm = feat[f].norm, .sum_exact = sum, .hist_first = f == 0 ? 120 : 0,
            .hist_n = f == 0 ? 3 : 0, .hist = hist, .n_top = f == 0 ? 3 : f == 1 ? 1 : 0,
            .n_quantile = f == 0 ? 2 : 0,
        };
        ck_assert_int_eq(sae_store_put_feature(w, &r, &err), 0);
        uint32_t nb[2] = {(f + 1) % D_SAE, (f + 2) % D_SAE};
        float cs[2] = {0.5f, -0.25f};
        ck_assert_int_eq(sae_store_put_neighbours(w, f, nb, cs, 2, &err), 0);
    }
    for (uint32_t v = 0; v < 4; v++)
        ck_assert_int_eq(sae_store_put_vocab(w, v, vocab[v], vocab_len[v], &err), 0);
    ck_assert_int_eq(sae_store_put_document(w, 0, "doc-a", &err), 0);
    ck_assert_int_eq(sae_store_put_document(w, 7, "doc-b", &err), 0);
    /* Feature 0: three top examples and two quantile samples; feature 1 one top. */
    uint32_t t3[3] = {1, 3, 2}, t1[1] = {0};
    float a0[3] = {0.0f, 3.5f, 1.0f}, a1[3] = {2.0f, 0.0f, 2.0f}, a2[3] = {0.25f, 0.5f, 0.0f};
    float a3[1] = {9.0f};
    sae_store_example_row top0[] = {
        {.doc = 7, .first = 4, .focus = 5, .len = 3, .value = 3.5f, .tokens = t3, .acts = a0},
        {.doc = 0, .first = 0, .focus = 2, .len = 3, .value = 2.0f, .tokens = t3, .acts = a1},
        {.doc = 7, .first = 1, .focus = 2, .len = 3, .value = 0.5f, .tokens = t3, .acts = a2},
    };
    sae_store_example_row quant0[] = {
        {.doc = 0, .first = 0, .focus = 0, .len = 3, .value = 2.0f, .hash = 0xfedcba9876543210ull,
         .grp = 1, .has_bin = true, .bin_min = 1.75, .bin_max = 3.5, .bin_contains = 6.0 / 7,
         .tokens = t3, .acts = a1},
        {.doc = 7, .first = 1, .focus = 1, .len = 3, .value = 0.25f, .hash = 12345, .grp = 0,
         .has_bin = true, .bin_min = 0, .bin_max = 1.75, .bin_contains = 1.0 / 7, .tokens = t3,
         .acts = a2},
    };
    sae_store_example_row top1[] = {
        {.doc = 0, .first = 3, .focus = 3, .len = 1, .value = 9.0f, .tokens = t1, .acts = a3},
    };
    ck_assert_int_eq(sae_store_put_examples(w, 0, SAE_EX_TOP, top0, 3, &err), 0);
    ck_assert_int_eq(sae_store_put_examples(w, 0, SAE_EX_QUANTILE, quant0, 2, &err), 0);
    ck_assert_int_eq(sae_store_put_examples(w, 1, SAE_EX_TOP, top1, 1, &err), 0);
    /* Rows a reader must refuse: focus outside the window, a token id beyond
     * the vocabulary, an unknown document (candidates of features 2..4). */
    uint32_t bad_tok[1] = {99};
    sae_store_example_row bad[3] = {
        {.doc = 0, .first = 5, .focus = 2, .len = 1, .tokens = t1, .acts = a3},
        {.doc = 0, .first = 0, .focus = 0, .len = 1, .tokens = bad_tok, .acts = a3},
        {.doc = 3, .first = 0, .focus = 0, .len = 1, .tokens = t1, .acts = a3},
    };
    for (uint32_t k = 0; k < 3; k++)
        ck_assert_int_eq(sae_store_put_examples(w, 2 + k, SAE_EX_CANDIDATE, &bad[k], 1, &err), 0);
    sae_explanation_score cat_scores[2] = {{.value = 0.9, .type = "recall_alt",
                                            .model = "gpt-4o-mini"},
                                           {.value = -0.25, .type = NULL, .model = NULL}};
    const sae_explanation ex[4] = {
        {.id = 1, .feature = 0, .description = "cats and kittens", .has_score = true,
         .score = 0.8, .source = "human", .has_score_v2 = true, .score_v2 = 0.7, .n_scores = 2,
         .scores = cat_scores},
        {.id = 2, .feature = 2, .description = "dog barking", .type_name = "oai_token-act-pair"},
        {.id = 3, .feature = 2, .description = "\"quoted\" OR NEAR( words*", .has_score = true,
         .score = -1.5},
        {.id = 4, .feature = 3, .description = "Cats again"},
    };
    for (int k = 0; k < 4; k++)
        ck_assert_int_eq(sae_store_put_explanation(w, &ex[k], &err), 0);
    return sae_store_writer_commit(w, &err);
}

/* Reads a whole file (caller frees); *len gets its size. */
static char *slurp(const char *path, size_t *len)
{
    char *b = sae_fixture_read_file(path, len);
    ck_assert_msg(b, "cannot read %s", path);
    return b;
}

static void spit(const char *path, const void *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
}

/* Entries of unit_dir whose name starts with prefix. */
static int count_prefixed(const char *prefix)
{
    char *cmd;
    ck_assert_int_ge(asprintf(&cmd, "ls -A '%s' | grep -c '^%s' || true", unit_dir, prefix), 0);
    FILE *p = popen(cmd, "r");
    int n = 0;
    ck_assert_int_eq(fscanf(p, "%d", &n), 1);
    pclose(p);
    free(cmd);
    return n;
}

/* The ranks of a listing, for compact comparisons. */
/* Lists qry and checks the total and the indices listed. */
static void expect_query(sae_store_conn *c, const sae_store_query *qry, uint64_t total,
                         const uint32_t *want, size_t n_want)
{
    const char *q = qry->q;
    sae_store_feature_list l;
    sae_error err;
    ck_assert_msg(sae_store_list_features(c, qry, &l, &err) == 0, "q=%s: %s", q ? q : "",
                  err.msg);
    ck_assert_msg(l.total == total, "q=%s sort=%d alive=%d: total %llu, want %llu", q ? q : "",
                  (int)qry->sort, qry->alive, (unsigned long long)l.total,
                  (unsigned long long)total);
    ck_assert_uint_eq(l.n, n_want);
    for (size_t i = 0; i < n_want; i++)
        ck_assert_msg(l.items[i].index == want[i],
                      "q=%s sort=%d desc=%d alive=%d: item %zu is %u, want %u", q ? q : "",
                      (int)qry->sort, qry->desc, qry->alive, i, l.items[i].index, want[i]);
    sae_store_feature_list_free(&l);
}

static void expect_list(sae_store_conn *c, const char *q, sae_store_sort sort, bool desc,
                        uint64_t limit, uint64_t offset, uint64_t total, const uint32_t *want,
                        size_t n_want)
{
    sae_store_query qry = {.q = q, .sort = sort, .desc = desc, .limit = limit, .offset = offset};
    expect_query(c, &qry, total, want, n_want);
}

START_TEST(test_read_api)
{
    char *p = unit_path("index.db");
    ck_assert_int_eq(write_index(p, NULL, D_SAE), 0);
    sae_store *s;
    sae_error err;
    ck_assert_msg(sae_store_open(p, &s, &err) == 0, "%s", err.msg);
    const sae_store_info *in = sae_store_get_info(s);
    ck_assert_str_eq(in->weights_digest, DIGEST);
    ck_assert_uint_eq(in->d_sae, D_SAE);
    ck_assert_uint_eq(in->d_in, 16);
    ck_assert_uint_eq(in->n_tokens, 100);
    ck_assert_uint_eq(in->top, 3);
    ck_assert_uint_eq(in->seed, 77);
    ck_assert_str_eq(in->shard, "");
    ck_assert_str_eq(in->histogram, SAE_HIST_DEFINITION);
    /* The last schema file applied to every index (005); the on-demand
     * ones (002, 004) only come with the dashboards. */
    ck_assert_int_eq(in->schema_version, 6);
    ck_assert(in->has_scores && !in->has_dashboards && !in->has_act_bars);
    ck_assert_uint_eq(sae_store_vocab_size(s), 4);

    ck_assert_int_eq(sae_store_check_model(s, DIGEST, 16, D_SAE, &err), 0);
    ck_assert_int_eq(sae_store_check_model(s, "00000000000000000000000000000000", 16, D_SAE, &err),
                     SAE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "other weights"));
    ck_assert_ptr_nonnull(strstr(err.msg, p));
    ck_assert_int_eq(sae_store_check_model(s, DIGEST, 16, 6, &err), SAE_EDIM);

    sae_store_conn *c;
    ck_assert_int_eq(sae_store_connect(s, &c, &err), 0);
    for (uint32_t f = 0; f < D_SAE; f++) {
        sae_store_feature x;
        ck_assert_int_eq(sae_store_get_feature(c, f, &x, &err), 0);
        ck_assert_uint_eq(x.index, f);
        ck_assert_uint_eq(x.n_active, feat[f].n_active);
        ck_assert(x.density == feat[f].density && x.max_activation == feat[f].max &&
                  x.mean_activation == feat[f].mean && x.decoder_norm == feat[f].norm);
    }
    sae_store_feature x;
    ck_assert_int_eq(sae_store_get_feature(c, D_SAE, &x, &err), SAE_ERANGE);
    ck_assert_int_eq(sae_store_get_feature(c, UINT64_MAX, &x, &err), SAE_ERANGE);

    /* Histogram: bins 120..122 are [2^-2 * 1.875, 2^-1), [2^-1, 2^-1*1.125), ... */
    sae_store_histogram h;
    ck_assert_int_eq(sae_store_get_histogram(c, 0, &h, &err), 0);
    ck_assert_uint_eq(h.n, 3);
    ck_assert_uint_eq(h.first_bin, 120);
    double edges[4] = {0.46875, 0.5, 0.5625, 0.625};
    uint64_t counts[3] = {1, 0, 5};
    for (int i = 0; i < 4; i++)
        ck_assert(h.edges[i] == edges[i]);
    for (int i = 0; i < 3; i++)
        ck_assert_uint_eq(h.counts[i], counts[i]);
    sae_store_histogram_free(&h);
    ck_assert_int_eq(sae_store_get_histogram(c, 4, &h, &err), 0);
    ck_assert_uint_eq(h.n, 0);
    sae_store_histogram_free(&h);

    sae_store_neighbours nb;
    ck_assert_int_eq(sae_store_get_neighbours(c, 4, &nb, &err), 0);
    ck_assert_uint_eq(nb.n, 2);
    ck_assert_uint_eq(nb.items[0].index, 0);
    ck_assert_uint_eq(nb.items[1].index, 1);
    ck_assert(nb.items[0].cosine == 0.5f && nb.items[1].cosine == -0.25f);
    sae_store_neighbours_free(&nb);

    sae_explanations e;
    ck_assert_int_eq(sae_store_get_explanations(c, 2, &e, &err), 0);
    ck_assert_uint_eq(e.n, 2);
    ck_assert_str_eq(e.items[0].description, "dog barking");
    ck_assert(!e.items[0].has_score);
    ck_assert_ptr_null(e.items[0].source);
    ck_assert_str_eq(e.items[0].type_name, "oai_token-act-pair");
    ck_assert(e.items[1].has_score && e.items[1].score == -1.5);
    sae_explanations_free(&e);
    ck_assert_int_eq(sae_store_get_explanations(c, 1, &e, &err), 0);
    ck_assert_uint_eq(e.n, 0);
    sae_explanations_free(&e);
    ck_assert_int_eq(sae_store_get_all_explanations(c, &e, &err), 0);
    ck_assert_uint_eq(e.n, 4);
    ck_assert_uint_eq(e.items[3].id, 4);
    ck_assert_uint_eq(e.items[3].feature, 3);
    ck_assert_str_eq(e.items[0].source, "human");
    /* Scores and scoreV2 come back as written, in order; unscored stay so. */
    ck_assert(e.items[0].has_score_v2 && e.items[0].score_v2 == 0.7);
    ck_assert_uint_eq(e.items[0].n_scores, 2);
    ck_assert(e.items[0].scores[0].value == 0.9 && e.items[0].scores[1].value == -0.25);
    ck_assert_str_eq(e.items[0].scores[0].type, "recall_alt");
    ck_assert_str_eq(e.items[0].scores[0].model, "gpt-4o-mini");
    ck_assert_ptr_null(e.items[0].scores[1].type);
    ck_assert_ptr_null(e.items[0].scores[1].model);
    ck_assert(!e.items[1].has_score_v2 && e.items[1].n_scores == 0);
    sae_explanations_free(&e);
    ck_assert_int_eq(sae_store_get_explanations(c, 0, &e, &err), 0);
    ck_assert_uint_eq(e.n, 1);
    ck_assert_uint_eq(e.items[0].n_scores, 2);
    sae_explanations_free(&e);

    /* Listing: every sort and order, ties by index ascending, paging. */
    uint32_t by_index[] = {0, 1, 2, 3, 4}, by_index_desc[] = {4, 3, 2, 1, 0};
    uint32_t dens_asc[] = {4, 1, 3, 0, 2}, dens_desc[] = {2, 0, 1, 3, 4};
    uint32_t max_asc[] = {4, 2, 3, 0, 1}, max_desc[] = {1, 0, 3, 2, 4};
    expect_list(c, NULL, SAE_SORT_INDEX, false, 100, 0, 5, by_index, 5);
    expect_list(c, "", SAE_SORT_INDEX, true, 100, 0, 5, by_index_desc, 5);
    expect_list(c, NULL, SAE_SORT_DENSITY, false, 100, 0, 5, dens_asc, 5);
    expect_list(c, NULL, SAE_SORT_DENSITY, true, 100, 0, 5, dens_desc, 5);
    expect_list(c, NULL, SAE_SORT_MAX_ACTIVATION, false, 100, 0, 5, max_asc, 5);
    expect_list(c, NULL, SAE_SORT_MAX_ACTIVATION, true, 100, 0, 5, max_desc, 5);
    expect_list(c, NULL, SAE_SORT_DENSITY, true, 2, 1, 5, dens_desc + 1, 2);
    expect_list(c, NULL, SAE_SORT_DENSITY, true, 10, 4, 5, dens_desc + 4, 1);
    expect_list(c, NULL, SAE_SORT_INDEX, false, 10, 5, 5, NULL, 0);
    expect_list(c, NULL, SAE_SORT_INDEX, false, 0, 0, 5, NULL, 0);
    expect_list(c, NULL, SAE_SORT_INDEX, false, UINT64_MAX, UINT64_MAX, 5, NULL, 0);
    /* By the best explanation's score (0: 0.8, 2: -1.5; 1, 3 and 4 have
     * none and sort lowest, by index). */
    uint32_t score_desc[] = {0, 2, 1, 3, 4}, score_asc[] = {1, 3, 4, 2, 0};
    expect_list(c, NULL, SAE_SORT_SCORE, true, 100, 0, 5, score_desc, 5);
    expect_list(c, NULL, SAE_SORT_SCORE, false, 100, 0, 5, score_asc, 5);
    expect_list(c, NULL, SAE_SORT_SCORE, true, 2, 1, 5, score_desc + 1, 2);
    /* Live only: feature 4 never fired, so it is neither listed nor counted,
     * in any order, with or without a search, and paging counts past it. */
    uint32_t alive_idx[] = {0, 1, 2, 3}, alive_dens[] = {1, 3, 0, 2}, alive_score[] = {0, 2, 1, 3};
    uint32_t alive_cats[] = {0, 3}, alive_rel[] = {3, 0};
    sae_store_query aq = {.sort = SAE_SORT_INDEX, .alive = true, .limit = 100};
    expect_query(c, &aq, 4, alive_idx, 4);
    aq.sort = SAE_SORT_DENSITY;
    expect_query(c, &aq, 4, alive_dens, 4);
    aq.limit = 2;
    aq.offset = 2;
    expect_query(c, &aq, 4, alive_dens + 2, 2);
    aq = (sae_store_query){.sort = SAE_SORT_SCORE, .desc = true, .alive = true, .limit = 100};
    expect_query(c, &aq, 4, alive_score, 4);
    aq = (sae_store_query){.q = "cats", .sort = SAE_SORT_INDEX, .alive = true, .limit = 100};
    expect_query(c, &aq, 2, alive_cats, 2);
    aq.sort = SAE_SORT_RELEVANCE;
    expect_query(c, &aq, 2, alive_rel, 2);
    aq = (sae_store_query){.q = "barking", .sort = SAE_SORT_SCORE, .alive = true, .limit = 100};
    uint32_t dog2[] = {2};
    expect_query(c, &aq, 1, dog2, 1);

    /* Search: words are ANDed phrases, case-insensitive, no stemming, and
     * FTS5 syntax in the query is just text. */
    uint32_t cats[] = {0, 3}, dog[] = {2}, cats_by_max[] = {3, 0};
    expect_list(c, "cats", SAE_SORT_INDEX, false, 10, 0, 2, cats, 2);
    expect_list(c, "CATS", SAE_SORT_MAX_ACTIVATION, false, 10, 0, 2, cats_by_max, 2);
    expect_list(c, "cats", SAE_SORT_INDEX, false, 1, 1, 2, cats + 1, 1);
    expect_list(c, "barking   dog", SAE_SORT_INDEX, false, 10, 0, 1, dog, 1);
    expect_list(c, "cat", SAE_SORT_INDEX, false, 10, 0, 0, NULL, 0);
    /* One letter: fts_query's buffer was once a byte short for it (fuzz). */
    expect_list(c, "a", SAE_SORT_INDEX, false, 10, 0, 0, NULL, 0);
    expect_list(c, "cats dog", SAE_SORT_INDEX, false, 10, 0, 0, NULL, 0);
    expect_list(c, "\"quoted\" OR NEAR(", SAE_SORT_INDEX, false, 10, 0, 1, dog, 1);
    expect_list(c, "words*", SAE_SORT_INDEX, false, 10, 0, 1, dog, 1);
    /* A trailing star makes a word a prefix (search as you type); a star
     * elsewhere, or alone, is just text. */
    expect_list(c, "cat*", SAE_SORT_INDEX, false, 10, 0, 2, cats, 2);
    expect_list(c, "CA**", SAE_SORT_INDEX, false, 10, 0, 2, cats, 2);
    expect_list(c, "bark* do*", SAE_SORT_INDEX, false, 10, 0, 1, dog, 1);
    expect_list(c, "c*ts", SAE_SORT_INDEX, false, 10, 0, 0, NULL, 0);
    expect_list(c, "*", SAE_SORT_INDEX, false, 10, 0, 0, NULL, 0);
    expect_list(c, "\"", SAE_SORT_INDEX, false, 10, 0, 0, NULL, 0);
    expect_list(c, " - ) ", SAE_SORT_INDEX, false, 10, 0, 0, NULL, 0);
    expect_list(c, "AND", SAE_SORT_INDEX, false, 10, 0, 1, cats, 1); /* the word "and" */
    /* Relevance (bm25 of a feature's best explanation): "Cats again" is the
     * shorter match, so it ranks first; desc reverses; no query is an error. */
    uint32_t cats_by_rel[] = {3, 0}, cats_by_rel_desc[] = {0, 3};
    expect_list(c, "cats", SAE_SORT_RELEVANCE, false, 10, 0, 2, cats_by_rel, 2);
    expect_list(c, "cats", SAE_SORT_RELEVANCE, true, 10, 0, 2, cats_by_rel_desc, 2);
    expect_list(c, "cats", SAE_SORT_RELEVANCE, false, 1, 1, 2, cats_by_rel + 1, 1);
    {
        sae_store_query rq = {.sort = SAE_SORT_RELEVANCE, .limit = 10};
        sae_store_feature_list rl;
        ck_assert_int_eq(sae_store_list_features(c, &rq, &rl, &err), SAE_EINVAL);
    }

    sae_store_sort so;
    bool desc;
    ck_assert_int_eq(sae_store_parse_sort("max_activation", &so, &err), 0);
    ck_assert_int_eq(so, SAE_SORT_MAX_ACTIVATION);
    ck_assert_int_eq(sae_store_parse_sort("relevance", &so, &err), 0);
    ck_assert_int_eq(so, SAE_SORT_RELEVANCE);
    ck_assert_int_eq(sae_store_parse_sort("rank", &so, &err), SAE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "sort"));
    ck_assert_int_eq(sae_store_parse_order("desc", &desc, &err), 0);
    ck_assert(desc);
    ck_assert_int_eq(sae_store_parse_order("down", &desc, &err), SAE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "order"));

    /* Examples: top, paged; window max/min; tokens with a NUL inside. */
    sae_store_examples ex;
    ck_assert_int_eq(sae_store_get_examples(c, 0, SAE_EX_TOP, 2, 1, &ex, &err), 0);
    ck_assert_uint_eq(ex.total, 3);
    ck_assert_uint_eq(ex.n, 2);
    ck_assert_uint_eq(ex.items[0].rank, 1);
    ck_assert_str_eq(ex.items[0].document, "doc-a");
    ck_assert_uint_eq(ex.items[0].doc_index, 0);
    ck_assert_uint_eq(ex.items[0].n, 3);
    ck_assert_uint_eq(ex.items[0].focus_index, 2);
    ck_assert(ex.items[0].focus_value == 2.0f);
    ck_assert(ex.items[0].max_value == 2.0f && ex.items[0].min_value == 0.0f);
    ck_assert_uint_eq(ex.items[0].max_token_index, 0); /* first of the tied maxima */
    ck_assert_uint_eq(ex.items[0].token_len[0], 4);
    ck_assert_str_eq(ex.items[0].tokens[0], " cat");
    ck_assert_uint_eq(ex.items[0].token_len[1], 3);
    ck_assert_int_eq(memcmp(ex.items[0].tokens[1], "x\0y", 3), 0);
    ck_assert_str_eq(ex.items[0].tokens[2], "dog");
    ck_assert(!ex.items[0].has_bin);
    ck_assert_uint_eq(ex.items[1].rank, 2);
    ck_assert_str_eq(ex.items[1].document, "doc-b");
    ck_assert_uint_eq(ex.items[1].first, 1);
    ck_assert_uint_eq(ex.items[1].max_token_index, 1);
    sae_store_examples_free(&ex);
    ck_assert_int_eq(sae_store_get_examples(c, 0, SAE_EX_QUANTILE, 10, 0, &ex, &err), 0);
    ck_assert_uint_eq(ex.total, 2);
    ck_assert_uint_eq(ex.n, 2);
    ck_assert(ex.items[0].has_bin && ex.items[0].bin_min == 1.75 && ex.items[0].bin_max == 3.5 &&
              ex.items[0].bin_contains == 6.0 / 7);
    ck_assert_uint_eq(ex.items[0].hash, 0xfedcba9876543210ull);
    ck_assert_int_eq(ex.items[0].grp, 1);
    ck_assert_uint_eq(ex.items[1].focus_index, 0);
    ck_assert(ex.items[1].focus_value == 0.25f);
    sae_store_examples_free(&ex);
    /* A page at or past the end is empty, not an error. */
    const uint64_t past[] = {2, 3, 1000, (uint64_t)INT64_MAX};
    for (size_t k = 0; k < sizeof past / sizeof past[0]; k++) {
        ck_assert_int_eq(sae_store_get_examples(c, 0, SAE_EX_QUANTILE, 10, past[k], &ex, &err), 0);
        ck_assert_uint_eq(ex.total, 2);
        ck_assert_uint_eq(ex.n, 0);
        sae_store_examples_free(&ex);
    }
    ck_assert_int_eq(sae_store_get_examples(c, 0, SAE_EX_CANDIDATE, 10, 0, &ex, &err), 0);
    ck_assert_uint_eq(ex.total, 0);
    sae_store_examples_free(&ex);
    const char *why[3] = {"malformed example 0", "unknown token id", "unknown document 3"};
    for (int k = 0; k < 3; k++) {
        ck_assert_int_eq(sae_store_get_examples(c, 2 + (uint64_t)k, SAE_EX_CANDIDATE, 10, 0, &ex,
                                                &err), SAE_EFORMAT);
        ck_assert_msg(strstr(err.msg, why[k]) && strstr(err.msg, p), "%s", err.msg);
        /* Not decoded when not asked for: the count alone is fine. */
        ck_assert_int_eq(sae_store_get_examples(c, 2 + (uint64_t)k, SAE_EX_CANDIDATE, 0, 0, &ex,
                                                &err), 0);
        ck_assert_uint_eq(ex.total, 1);
        sae_store_examples_free(&ex);
    }
    ck_assert_int_eq(sae_store_get_examples(c, 4, SAE_EX_TOP, 10, 0, &ex, &err), 0);
    ck_assert_uint_eq(ex.total, 0);
    sae_store_examples_free(&ex);
    ck_assert_int_eq(sae_store_get_examples(c, 5, SAE_EX_TOP, 10, 0, &ex, &err), SAE_ERANGE);

    /* A second connection reads the same (each thread has its own). */
    sae_store_conn *c2;
    ck_assert_int_eq(sae_store_connect(s, &c2, &err), 0);
    ck_assert_int_eq(sae_store_get_feature(c2, 2, &x, &err), 0);
    ck_assert_uint_eq(x.n_active, 30);
    sae_store_disconnect(c2);
    sae_store_disconnect(c);
    sae_store_close(s);
    ck_assert_int_eq(count_prefixed(".index.db.tmp-"), 0);
    free(p);
}
END_TEST

/* Expects sae_store_open(path) to fail with a message holding want. */
static void expect_refused(const char *path, const char *want)
{
    sae_store *s = NULL;
    sae_error err;
    ck_assert_msg(sae_store_open(path, &s, &err) != 0, "%s: opened, expected '%s'", path, want);
    ck_assert_msg(strstr(err.msg, want) && strstr(err.msg, path), "%s: message '%s', want '%s'",
                  path, err.msg, want);
}

/* The EXPLAIN QUERY PLAN of sql on db: its steps' details, "; "-separated,
 * into plan (cap bytes, truncated). */
static void query_plan(sqlite3 *db, const char *sql, char *plan, size_t cap)
{
    char eqp[2100];
    sqlite3_stmt *q;
    snprintf(eqp, sizeof eqp, "EXPLAIN QUERY PLAN %s", sql);
    ck_assert_int_eq(sqlite3_prepare_v2(db, eqp, -1, &q, NULL), SQLITE_OK);
    size_t len = 0;
    plan[0] = '\0';
    while (sqlite3_step(q) == SQLITE_ROW && len < cap)
        len += (size_t)snprintf(plan + len, cap - len, "%s; ",
                                (const char *)sqlite3_column_text(q, 3));
    sqlite3_finalize(q);
}

/* Every listing of GET /v1/features without a text query (each sort key,
 * both orders, live only or not) pages through an index: the query plan
 * (EXPLAIN QUERY PLAN, read on a table of 20,000 rows so the planner's
 * choices are the ones it makes at scale) never sorts the features in a temp
 * B-tree and never scans the features table for the live-only count;
 * sort=score reads schema/006's features_score_*, and a live-only list in
 * ascending order one of 006's partial features_live_* (not every dead
 * feature first). A file from before 006
 * aggregates the score per query (store_query.c): that plan is checked to
 * read the explanations through schema/005's explanations_best. */
START_TEST(test_list_plans)
{
    char *p = unit_path("plans.db");
    ck_assert_int_eq(write_index(p, NULL, D_SAE), 0);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(p, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "WITH RECURSIVE n(i) AS (SELECT 1000 UNION ALL SELECT i + 1 "
                                  "FROM n WHERE i < 21000) INSERT INTO features SELECT i, i % 3, "
                                  "(i % 97) / 97.0, (i % 89) * 1.5, 0, 1, x'', 0, x'', 0, 0, "
                                  "CASE WHEN i % 5 = 0 THEN (i % 11) / 11.0 END FROM n; "
                                  "ANALYZE;", NULL, NULL, NULL), SQLITE_OK);
    static const sae_store_sort sorts[] = {SAE_SORT_INDEX, SAE_SORT_DENSITY,
                                           SAE_SORT_MAX_ACTIVATION, SAE_SORT_SCORE};
    char sql[2048], plan[4096];
    for (size_t si = 0; si < sizeof sorts / sizeof *sorts; si++)
        for (int desc = 0; desc < 2; desc++)
            for (int alive = 0; alive < 2; alive++) {
                store_list_sql(sql, sizeof sql, sorts[si], desc, false, alive, true);
                query_plan(db, sql, plan, sizeof plan);
                ck_assert_msg(!strstr(plan, "TEMP B-TREE"), "%s: %s", sql, plan);
                ck_assert_msg(sorts[si] == SAE_SORT_INDEX || strstr(plan, "USING INDEX features_"),
                              "%s: %s", sql, plan);
                ck_assert_msg(sorts[si] != SAE_SORT_SCORE || alive ||
                                  strstr(plan, desc ? "features_score_desc" : "features_score_asc"),
                              "%s: %s", sql, plan);
                /* live only, ascending: from the first live row, not through the dead */
                ck_assert_msg(!alive || desc || sorts[si] == SAE_SORT_INDEX ||
                                  strstr(plan, "USING INDEX features_live_"),
                              "%s: %s", sql, plan);
                /* the control: the aggregate a file from before 006 sorts by */
                store_list_sql(sql, sizeof sql, sorts[si], desc, false, alive, false);
                query_plan(db, sql, plan, sizeof plan);
                if (sorts[si] == SAE_SORT_SCORE)
                    ck_assert_msg(strstr(plan, "explanations_best") && strstr(plan, "TEMP B-TREE"),
                                  "%s: %s", sql, plan);
            }
    const char *count = store_count_sql(false, true);
    query_plan(db, count, plan, sizeof plan);
    ck_assert_msg(strstr(plan, "features_alive"), "%s: %s", count, plan);
    sqlite3_close(db);
    free(p);
}
END_TEST

/* A writer's index of SCORE_N features with explanations drawn from a fixed
 * generator: ties in density, max_activation and score, dead features, some
 * features without explanations, unscored ones and blank descriptions (which
 * never give a feature its score). */
#define SCORE_N 3000
static void write_score_index(const char *path)
{
    sae_store_writer *w;
    sae_error err;
    ck_assert_int_eq(sae_store_writer_open(path, &w, &err), 0);
    put_info(w, NULL, SCORE_N);
    uint8_t sum[48] = {0};
    uint64_t hist[1] = {1};
    uint32_t r = 12345;
    static const char *const words[] = {"cats and kittens", "dog barking", "   ", "Cats again",
                                        "dogma", "", "kittens"};
    uint64_t id = 1;
    for (uint32_t f = 0; f < SCORE_N; f++) {
        r = r * 1103515245u + 12345u;
        sae_store_feature_row row = {
            .index = f, .n_active = (r >> 8) % 4, .density = ((r >> 12) % 50) / 50.0,
            .max_activation = ((r >> 18) % 30) * 0.5, .decoder_norm = 1, .sum_exact = sum,
            .hist = hist, .hist_n = 1,
        };
        ck_assert_int_eq(sae_store_put_feature(w, &row, &err), 0);
    }
    for (uint32_t f = 0; f < SCORE_N; f++) {
        r = r * 1103515245u + 12345u;
        for (uint32_t k = 0; k < (r >> 10) % 4; k++) {
            r = r * 1103515245u + 12345u;
            sae_explanation x = {.id = id++, .feature = f,
                                 .description = (char *)words[(r >> 8) % 7],
                                 .has_score = (r >> 16) % 4 != 0,
                                 .score = ((r >> 20) % 20) / 10.0 - 1};
            ck_assert_int_eq(sae_store_put_explanation(w, &x, &err), 0);
        }
    }
    ck_assert_int_eq(sae_store_writer_commit(w, &err), 0);
}

/* Every listing of a (the feature indices, at most 4,000) into out; *n. */
static void list_all(sae_store_conn *c, const sae_store_query *q, uint32_t *out, size_t *n,
                     uint64_t *total)
{
    sae_store_feature_list l;
    sae_error err;
    ck_assert_msg(sae_store_list_features(c, q, &l, &err) == 0, "%s", err.msg);
    ck_assert_uint_le(l.n, 4000);
    for (size_t i = 0; i < l.n; i++)
        out[i] = l.items[i].index;
    *n = l.n;
    *total = l.total;
    sae_store_feature_list_free(&l);
}

/* sort=score from the stored best_score (schema/006) answers exactly as the
 * aggregate per query did: an index written now and the same index taken
 * back to before 006 (its column and indexes dropped, user_version 5) list the
 * same features in the same order for every sort, order, live-only and
 * text query, whole and a page (and the page of every feature in index
 * order, which starts at a key, is the one OFFSET gives). `sae index
 * --upgrade`'s copy of the old file (sae_store_writer_open_copy) gains the
 * column with the same values. */
START_TEST(test_stored_score)
{
    char *p = unit_path("scores.db"), *old = unit_path("scores-old.db");
    write_score_index(p);
    write_score_index(old);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(old, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "DROP INDEX features_score_asc; DROP INDEX "
                                  "features_score_desc; DROP INDEX features_live_density_asc; "
                                  "DROP INDEX features_live_max_asc; DROP INDEX "
                                  "features_live_score_asc; ALTER TABLE features DROP COLUMN "
                                  "best_score; PRAGMA user_version = 5; VACUUM;",
                                  NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    sae_store *s[2];
    sae_store_conn *c[2];
    sae_error err;
    const char *paths[2] = {p, old};
    for (int k = 0; k < 2; k++) {
        ck_assert_msg(sae_store_open(paths[k], &s[k], &err) == 0, "%s", err.msg);
        ck_assert_msg(sae_store_connect(s[k], &c[k], &err) == 0, "%s", err.msg);
    }
    ck_assert(sae_store_get_info(s[0])->has_best_score);
    ck_assert(!sae_store_get_info(s[1])->has_best_score);
    static const sae_store_sort sorts[] = {SAE_SORT_INDEX, SAE_SORT_DENSITY,
                                           SAE_SORT_MAX_ACTIVATION, SAE_SORT_SCORE,
                                           SAE_SORT_RELEVANCE};
    static const char *const qs[] = {NULL, "cats", "dog*", "kittens cats"};
    static uint32_t a[4000], b[4000];
    for (size_t si = 0; si < 5; si++)
        for (int desc = 0; desc < 2; desc++)
            for (int alive = 0; alive < 2; alive++)
                for (size_t qi = 0; qi < 4; qi++)
                    for (int page = 0; page < 2; page++) {
                        if (sorts[si] == SAE_SORT_RELEVANCE && !qs[qi])
                            continue;
                        sae_store_query q = {.q = qs[qi], .sort = sorts[si], .desc = desc,
                                             .alive = alive, .limit = page ? 37 : 4000,
                                             .offset = page ? 101 : 0};
                        size_t na, nb;
                        uint64_t ta, tb;
                        list_all(c[0], &q, a, &na, &ta);
                        list_all(c[1], &q, b, &nb, &tb);
                        ck_assert_msg(na == nb && ta == tb && !memcmp(a, b, na * sizeof *a),
                                      "sort %d desc %d alive %d q %s page %d: %zu/%zu items "
                                      "differ",
                                      (int)sorts[si], desc, alive, qs[qi] ? qs[qi] : "", page,
                                      na, nb);
                        ck_assert_uint_gt(na, 0);
                        /* index order pages by key: the page that OFFSET gives */
                        for (size_t i = 0; sorts[si] == SAE_SORT_INDEX && !qs[qi] && !alive &&
                                           i < na; i++)
                            ck_assert_uint_eq(a[i], desc ? SCORE_N - 1 - q.offset - i
                                                         : q.offset + i);
                    }
    for (int k = 0; k < 2; k++) {
        sae_store_disconnect(c[k]);
        sae_store_close(s[k]);
    }
    /* The upgrade: the old file copied through the writer gains best_score. */
    sae_store_writer *w;
    ck_assert_int_eq(sae_store_writer_open_copy(old, old, &w, &err), 0);
    ck_assert_msg(sae_store_writer_commit(w, &err) == 0, "%s", err.msg);
    char *dump[2];
    for (int k = 0; k < 2; k++) {
        ck_assert_int_eq(sqlite3_open(paths[k], &db), SQLITE_OK);
        sqlite3_stmt *q;
        ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT count(best_score), group_concat(idx || "
                                            "':' || quote(best_score), ',') FROM features",
                                            -1, &q, NULL), SQLITE_OK);
        ck_assert_int_eq(sqlite3_step(q), SQLITE_ROW);
        ck_assert_int_gt(sqlite3_column_int(q, 0), 100);
        dump[k] = sqlite3_mprintf("%s", (const char *)sqlite3_column_text(q, 1));
        sqlite3_finalize(q);
        sqlite3_close(db);
    }
    ck_assert_str_eq(dump[0], dump[1]);
    sqlite3_free(dump[0]);
    sqlite3_free(dump[1]);
    free(p);
    free(old);
}
END_TEST

/* An index written before schema/003_scores.sql (user_version 1, no
 * explanation_scores, no score_v2) still opens; its explanations read
 * unscored ("not computed"), the rest as before. */
START_TEST(test_old_index)
{
    char *p = unit_path("old.db");
    ck_assert_int_eq(write_index(p, NULL, D_SAE), 0);
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(p, &db), SQLITE_OK);
    ck_assert_int_eq(sqlite3_exec(db, "DROP TABLE explanation_scores; ALTER TABLE explanations "
                                  "DROP COLUMN score_v2; PRAGMA user_version = 1; VACUUM;",
                                  NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    sae_store *s;
    sae_store_conn *c;
    sae_error err;
    ck_assert_msg(sae_store_open(p, &s, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(sae_store_get_info(s)->schema_version, 1);
    ck_assert(!sae_store_get_info(s)->has_scores);
    ck_assert_msg(sae_store_connect(s, &c, &err) == 0, "%s", err.msg);
    sae_explanations e;
    ck_assert_int_eq(sae_store_get_explanations(c, 0, &e, &err), 0);
    ck_assert_uint_eq(e.n, 1);
    ck_assert_str_eq(e.items[0].description, "cats and kittens");
    ck_assert(e.items[0].has_score && e.items[0].score == 0.8);
    ck_assert(!e.items[0].has_score_v2 && e.items[0].n_scores == 0);
    sae_explanations_free(&e);
    ck_assert_int_eq(sae_store_get_all_explanations(c, &e, &err), 0);
    ck_assert_uint_eq(e.n, 4);
    sae_explanations_free(&e);
    sae_store_disconnect(c);
    sae_store_close(s);
    free(p);
}
END_TEST

/* Exact activation bars (schema/004): written into a copy with the
 * dashboards tables, read back; the Neuronpedia bars are them when present,
 * "no bars" for a feature that never fired, and the fixed histogram rebinned
 * for a feature without a row and for dashboards from before schema/004. */
START_TEST(test_act_bars)
{
    char *p = unit_path("bars.db");
    ck_assert_int_eq(write_index(p, NULL, D_SAE), 0);
    sae_store_writer *w;
    sae_error err;
    ck_assert_msg(sae_store_writer_open_copy(p, p, &w, &err) == 0, "%s", err.msg);
    ck_assert_msg(sae_store_writer_dashboards(w, &err) == 0, "%s", err.msg);
    uint64_t h[SAE_ACT_BARS] = {0};
    h[0] = 1, h[49] = 5, h[7] = (uint64_t)1 << 40;
    ck_assert_int_eq(sae_store_put_act_bars(w, 0, 0.25f, 3.5f, h, SAE_ACT_BARS, &err), 0);
    ck_assert_int_eq(sae_store_put_act_bars(w, 4, 0, 0, h, 0, &err), 0);
    ck_assert_msg(sae_store_writer_commit(w, &err) == 0, "%s", err.msg);
    for (int old = 0; old < 2; old++) {
        sae_store *s;
        sae_store_conn *c;
        ck_assert_msg(sae_store_open(p, &s, &err) == 0, "%s", err.msg);
        ck_assert_int_eq(sae_store_get_info(s)->schema_version, old ? 3 : 6);
        ck_assert(sae_store_get_info(s)->has_dashboards);
        ck_assert(sae_store_get_info(s)->has_act_bars == !old);
        ck_assert_msg(sae_store_connect(s, &c, &err) == 0, "%s", err.msg);
        sae_store_act_bars a;
        sae_store_np_hist n;
        ck_assert_int_eq(sae_store_get_act_bars(c, 0, &a, &err), 0);
        ck_assert(a.computed == !old);
        ck_assert_int_eq(sae_store_get_np_hist(c, 0, &n, &err), 0);
        ck_assert(n.exact == !old && n.n == SAE_ACT_BARS);
        if (!old) {
            ck_assert(a.act_min == 0.25f && a.act_max == 3.5f && a.n == SAE_ACT_BARS);
            ck_assert(!memcmp(a.heights, h, sizeof h) && !memcmp(n.heights, h, sizeof h));
            ck_assert(n.values[0] == 0.2825 && n.values[49] == 3.4675);
        } else {
            uint64_t total = 0; /* rebinned: the fixed histogram's 6 values */
            for (int k = 0; k < SAE_ACT_BARS; k++)
                total += n.heights[k];
            ck_assert_uint_eq(total, 6);
        }
        ck_assert_int_eq(sae_store_get_np_hist(c, 4, &n, &err), 0);
        ck_assert(n.exact == !old && n.n == 0);
        ck_assert_int_eq(sae_store_get_np_hist(c, 1, &n, &err), 0); /* no row: rebinned */
        ck_assert(!n.exact);
        ck_assert_int_eq(sae_store_get_act_bars(c, D_SAE, &a, &err), SAE_ERANGE);
        sae_store_disconnect(c);
        sae_store_close(s);
        if (!old) { /* as written before schema/004 */
            sqlite3 *db;
            ck_assert_int_eq(sqlite3_open(p, &db), SQLITE_OK);
            ck_assert_int_eq(sqlite3_exec(db, "DROP TABLE act_bars; PRAGMA user_version = 3; "
                                          "VACUUM;", NULL, NULL, NULL), SQLITE_OK);
            sqlite3_close(db);
        }
    }
    free(p);
}
END_TEST

START_TEST(test_refusals)
{
    char *good = unit_path("good.db");
    ck_assert_int_eq(write_index(good, NULL, D_SAE), 0);
    size_t len;
    char *bytes = slurp(good, &len);
    ck_assert_uint_gt(len, 8192);

    char *p = unit_path("text.db");
    spit(p, "hello, this is not a database at all, not even close to one. "
            "It has to be at least a hundred bytes long to get past the first check. ......",
         130);
    expect_refused(p, "not a SQLite database");
    spit(p, "", 0);
    expect_refused(p, "not a SQLite database");
    free(p);

    p = unit_path("truncated.db");
    spit(p, bytes, len / 2);
    expect_refused(p, "truncated");
    spit(p, bytes, len - 1);
    expect_refused(p, "truncated");
    free(p);

    p = unit_path("foreign.db");
    char *b = malloc(len);
    memcpy(b, bytes, len);
    b[68] = 0x12; /* application_id */
    spit(p, b, len);
    expect_refused(p, "not a saed feature index");
    memcpy(b, bytes, len);
    b[63] = 9; /* user_version */
    spit(p, b, len);
    expect_refused(p, "schema version 9");
    free(b);
    free(p);

    p = unit_path("nometa.db");
    ck_assert_int_eq(write_index(p, "tokens_digest", D_SAE), 0);
    expect_refused(p, "meta table lacks \"tokens_digest\"");
    free(p);
    p = unit_path("short.db");
    ck_assert_int_eq(write_index(p, NULL, D_SAE + 1), 0);
    expect_refused(p, "features table does not hold features 0..5");
    free(p);

    p = unit_path("missing.db");
    sae_store *s;
    sae_error err;
    ck_assert_int_eq(sae_store_open(p, &s, &err), SAE_EIO);
    free(p);
    ck_assert_int_eq(sae_store_open(unit_dir, &s, &err), SAE_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, "not a regular file"));
    free(bytes);
    free(good);
}
END_TEST

START_TEST(test_abort_and_stale_temps)
{
    char *p = unit_path("t.db");
    spit(p, "old content", 11);
    sae_store_writer *w;
    sae_error err;
    ck_assert_int_eq(sae_store_writer_open(p, &w, &err), 0);
    ck_assert_int_eq(count_prefixed(".t.db.tmp-"), 1);
    put_info(w, NULL, D_SAE);
    sae_store_writer_abort(w);
    size_t len;
    char *b = slurp(p, &len);
    ck_assert_uint_eq(len, 11);
    ck_assert_int_eq(memcmp(b, "old content", 11), 0);
    free(b);
    ck_assert_int_eq(count_prefixed(".t.db.tmp-"), 0);

    /* A dead process's temp file goes, a live one's stays, others are not ours. */
    pid_t child = fork();
    if (child == 0)
        _exit(0);
    waitpid(child, NULL, 0);
    char *dead, *live, *mine, *other, *other2;
    ck_assert_int_ge(asprintf(&dead, "%s/.t.db.tmp-%d", unit_dir, (int)child), 0);
    ck_assert_int_ge(asprintf(&live, "%s/.t.db.tmp-%d", unit_dir, (int)getppid()), 0);
    ck_assert_int_ge(asprintf(&mine, "%s/.t.db.tmp-%d-journal", unit_dir, (int)child), 0);
    ck_assert_int_ge(asprintf(&other, "%s/.u.db.tmp-%d", unit_dir, (int)child), 0);
    ck_assert_int_ge(asprintf(&other2, "%s/.t.db.tmp-%dx", unit_dir, (int)child), 0);
    spit(dead, "x", 1);
    spit(live, "x", 1);
    spit(mine, "x", 1);
    spit(other, "x", 1);
    spit(other2, "x", 1);
    ck_assert_int_eq(sae_store_writer_open(p, &w, &err), 0);
    struct stat st;
    ck_assert_int_ne(stat(dead, &st), 0);
    ck_assert_int_ne(stat(mine, &st), 0);
    ck_assert_int_eq(stat(live, &st), 0);
    ck_assert_int_eq(stat(other, &st), 0);
    ck_assert_int_eq(stat(other2, &st), 0);
    sae_store_writer_abort(w);
    free(dead);
    free(live);
    free(mine);
    free(other);
    free(other2);

    /* A target in a folder that does not exist is refused up front. */
    char *nodir = unit_path("no/such/folder/x.db");
    ck_assert_int_eq(sae_store_writer_open(nodir, &w, &err), SAE_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, "does not exist"));
    free(nodir);
    free(p);
}
END_TEST

/* In a child limited to a small file size (as a full disk), writes a large
 * index; exits 0 when the write failed cleanly with an I/O or disk-full error. */
static int write_too_big(const char *path)
{
    struct rlimit rl = {64 * 1024, 64 * 1024};
    signal(SIGXFSZ, SIG_IGN);
    setrlimit(RLIMIT_FSIZE, &rl);
    sae_store_writer *w;
    sae_error err;
    if (sae_store_writer_open(path, &w, &err))
        return 2;
    put_info(w, NULL, D_SAE);
    static float acts[2048];
    static uint32_t toks[2048];
    int rc = 0;
    for (uint32_t i = 0; i < 400 && !rc; i++) {
        sae_store_example_row r = {.len = 2048, .tokens = toks, .acts = acts};
        rc = sae_store_put_examples(w, i, SAE_EX_TOP, &r, 1, &err);
    }
    if (rc) {
        sae_store_writer_abort(w);
    } else {
        rc = sae_store_writer_commit(w, &err);
        if (!rc)
            return 3;
    }
    fprintf(stderr, "write_too_big: %s\n", err.msg);
    return strstr(err.msg, "disk full") || strstr(err.msg, "I/O error") ? 0 : 4;
}

START_TEST(test_disk_full)
{
    char *p = unit_path("full.db");
    ck_assert_int_eq(write_index(p, NULL, D_SAE), 0);
    size_t len;
    char *before = slurp(p, &len);
    pid_t child = fork();
    if (child == 0)
        _exit(write_too_big(p));
    int status;
    waitpid(child, &status, 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    size_t len2;
    char *after = slurp(p, &len2);
    ck_assert_uint_eq(len, len2);
    ck_assert_int_eq(memcmp(before, after, len), 0);
    ck_assert_int_eq(count_prefixed(".full.db.tmp-"), 0);
    sae_store *s;
    sae_error err;
    ck_assert_int_eq(sae_store_open(p, &s, &err), 0);
    sae_store_close(s);
    free(before);
    free(after);
    free(p);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("store");
    TCase *tc = tcase_create("store");
    tcase_add_checked_fixture(tc, unit_setup, unit_teardown);
    tcase_add_test(tc, test_read_api);
    tcase_add_test(tc, test_old_index);
    tcase_add_test(tc, test_list_plans);
    tcase_add_test(tc, test_stored_score);
    tcase_add_test(tc, test_act_bars);
    tcase_add_test(tc, test_refusals);
    tcase_add_test(tc, test_abort_and_stale_temps);
    tcase_add_test(tc, test_disk_full);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
