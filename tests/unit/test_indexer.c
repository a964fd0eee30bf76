/* test_indexer.c: the feature index build (core/index/index_*.c) against a brute-force
 * recomputation written here from the definitions in docs/INDEX.md.
 *
 * - The fixed histogram bins, the exact sum and the quantile groups, checked
 *   against independent formulas (frexp, hand-computed limbs).
 * - Streaming: a synthetic corpus (documents of 0..25 tokens; features that
 *   never fire, fire densely over many octaves, fire with tied values, fire
 *   below 2^-16 and above 2^16, grow within documents) is fed to the indexer in
 *   small blocks; every stored number is compared with a dense recomputation:
 *   counts, density, max, mean, histogram counts, the top-N documents (order,
 *   max token, every window value and token), and the quantile samples (the M
 *   smallest seeded hashes per group of bins over (0, max], with bin_min,
 *   bin_max, bin_contains).
 * - Neighbours against double-precision cosines over more than one block.
 * - A real build (fixture model, activations, tokens) through
 *   sae_index_build: the same brute force on sae_encode's output, max values
 *   against the double oracle, shards merged equal to the unsharded build,
 *   a second build byte-identical, bad inputs refused, merge refusals.
 * - SIGKILL at several points of a build leaves the old target byte-identical
 *   and the next build removes the stale temporary file. */
#include <check.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/activations.h"
#include "sae/encode.h"
#include "fixture.h"
#include "index/indexer.h"
#include "sae/model.h"
#include "reference.h"
#include "io/rng.h"
#include "index/store.h"
#include "index/tokens.h"
#include "unit.h"

/* ------------------------------------------------ independent definitions */

/* The histogram bin of v > 0, from frexp: v = m * 2^e with m in [0.5, 1). */
static int ref_bin(double v)
{
    if (v < ldexp(1, -16))
        return 0;
    if (v >= ldexp(1, 16))
        return 257;
    int e;
    double m = frexp(v, &e) * 2; /* [1, 2), v = m * 2^(e-1) */
    int k = (int)floor((m - 1) * 8);
    return 1 + (e - 1 + 16) * 8 + k;
}

static double ref_lo(int b)
{
    if (b == 0)
        return 0;
    if (b == 257)
        return 65536.0;
    return ldexp(1 + ((b - 1) % 8) / 8.0, (b - 1) / 8 - 16);
}

static double ref_hi(int b)
{
    return b == 257 ? INFINITY : ref_lo(b + 1);
}

/* The group of bin b for max over q groups: floor(q*lo/max) capped at q-1. */
static int ref_group(int b, double max, int q)
{
    if (b == 0)
        return 0;
    long double g = floorl((long double)q * ref_lo(b) / max);
    return g >= q ? q - 1 : (int)g;
}

/* The sampling hash of docs/INDEX.md. */
static uint64_t ref_hash(uint64_t seed, uint32_t doc, uint32_t pos)
{
    return sae_hash64(((uint64_t)doc << 32 | pos) ^ sae_hash64(seed ^ 0x5341454953414d50ull));
}

START_TEST(test_hist_bins)
{
    ck_assert_int_eq(SAE_HIST_BINS, 258);
    for (int b = 0; b < SAE_HIST_BINS; b++) {
        ck_assert(sae_hist_lo(b) == ref_lo(b));
        ck_assert(sae_hist_hi(b) == ref_hi(b));
        if (b > 0) {
            ck_assert_int_eq(sae_hist_bin((float)ref_lo(b)), b);
            ck_assert_int_eq(sae_hist_bin(nextafterf((float)ref_lo(b), 0)), b - 1);
        }
    }
    ck_assert(sae_hist_lo(1) == 1.0 / 65536 && sae_hist_lo(9) == 1.0 / 32768);
    ck_assert(sae_hist_lo(129) == 1.0 && sae_hist_lo(130) == 1.125);
    ck_assert_int_eq(sae_hist_bin(1e-45f), 0);
    ck_assert_int_eq(sae_hist_bin(FLT_MIN), 0);
    ck_assert_int_eq(sae_hist_bin(FLT_MAX), 257);
    ck_assert_int_eq(sae_hist_bin(65536.0f), 257);
    ck_assert_int_eq(sae_hist_bin(65535.99f), 256);
    sae_rng r;
    sae_rng_seed(&r, 5);
    /* Assertions outside the loop: each one costs a message to Check's parent. */
    float bad = 0;
    for (int i = 0; i < 100000; i++) {
        float v = (float)exp(sae_rng_normal(&r) * 15);
        if (sae_hist_bin(v) != ref_bin(v))
            bad = v;
    }
    ck_assert_msg(bad == 0, "v=%a: %d vs %d", (double)bad, sae_hist_bin(bad), ref_bin(bad));
}
END_TEST

START_TEST(test_exact_sum)
{
    /* 2^127 + 2^127 + 2^-149: bits 277 and 277 make bit 278, plus bit 1, in
     * units of 2^-150. */
    sae_exact_sum s;
    memset(&s, 0, sizeof s);
    sae_exact_sum_add(&s, 0x1p127f);
    sae_exact_sum_add(&s, 0x1p127f);
    sae_exact_sum_add(&s, 0x1p-149f);
    sae_exact_sum_add(&s, 0.0f);
    sae_exact_sum_add(&s, -1.0f); /* never active: ignored */
    sae_exact_sum_add(&s, INFINITY);
    uint64_t want[SAE_EXACT_LIMBS] = {2, 0, 0, 0, (uint64_t)1 << (278 - 256), 0};
    for (int i = 0; i < SAE_EXACT_LIMBS; i++)
        ck_assert_uint_eq(s.limb[i], want[i]);
    ck_assert(sae_exact_sum_value(&s) == 0x1p128);
    /* 1.5 + 0.25 = 1.75 exactly; carries across a limb. */
    memset(&s, 0, sizeof s);
    for (int i = 0; i < 4096; i++)
        sae_exact_sum_add(&s, 0x1.fffffep-1f);
    ck_assert(sae_exact_sum_value(&s) == 4096.0 * (double)0x1.fffffep-1f);

    /* Order-independent and mergeable: the same limbs however it is split. */
    enum { N = 20000 };
    float *v = malloc(N * sizeof *v);
    sae_rng r;
    sae_rng_seed(&r, 9);
    long double ref = 0;
    for (int i = 0; i < N; i++) {
        v[i] = (float)exp(sae_rng_normal(&r) * 20);
        if (i % 97 == 0)
            v[i] = 0x1p-140f * (float)(i % 5 + 1);
        ref += v[i];
    }
    sae_exact_sum fwd, bwd, a, b;
    memset(&fwd, 0, sizeof fwd);
    memset(&bwd, 0, sizeof bwd);
    memset(&a, 0, sizeof a);
    memset(&b, 0, sizeof b);
    for (int i = 0; i < N; i++) {
        sae_exact_sum_add(&fwd, v[i]);
        sae_exact_sum_add(&bwd, v[N - 1 - i]);
        sae_exact_sum_add(i % 3 ? &a : &b, v[i]);
    }
    sae_exact_sum_merge(&a, &b);
    ck_assert_int_eq(memcmp(&fwd, &bwd, sizeof fwd), 0);
    ck_assert_int_eq(memcmp(&fwd, &a, sizeof fwd), 0);
    double got = sae_exact_sum_value(&fwd);
    ck_assert_msg(fabsl(got - ref) <= 1e-15L * ref, "%.17g vs %.17Lg", got, ref);
    free(v);
}
END_TEST

START_TEST(test_quantile_groups)
{
    /* max 1.0, 10 groups: bin lower edges 0.9375 -> 9, 0.875 -> 8, 0.5 -> 5,
     * 1.0 -> 9 (capped), 0.0625 -> 0, bin 0 -> 0. */
    ck_assert_uint_eq(sae_quantile_group(ref_bin(0.9375), 1.0f, 10), 9);
    ck_assert_uint_eq(sae_quantile_group(ref_bin(0.875), 1.0f, 10), 8);
    ck_assert_uint_eq(sae_quantile_group(ref_bin(0.5), 1.0f, 10), 5);
    ck_assert_uint_eq(sae_quantile_group(ref_bin(1.0), 1.0f, 10), 9);
    ck_assert_uint_eq(sae_quantile_group(ref_bin(0.0625), 1.0f, 10), 0);
    ck_assert_uint_eq(sae_quantile_group(0, 1.0f, 10), 0);
    /* Exactly on a boundary: q*lo/max = 1 and 2. */
    ck_assert_uint_eq(sae_quantile_group(ref_bin(0.5), 2.0f, 4), 1);
    ck_assert_uint_eq(sae_quantile_group(ref_bin(1.0), 2.0f, 4), 2);
    ck_assert_uint_eq(sae_quantile_group(ref_bin(0.4375), 2.0f, 4), 0);
    ck_assert_uint_eq(sae_quantile_group(200, 1e-3f, 7), 6);
    sae_rng r;
    sae_rng_seed(&r, 3);
    int wrong = 0;
    for (int i = 0; i < 20000; i++) {
        float max = (float)exp(sae_rng_normal(&r) * 6);
        int q = 1 + (int)sae_rng_below(&r, 100);
        int b = (int)sae_rng_below(&r, 258);
        wrong += sae_quantile_group(b, max, (uint32_t)q) != (uint32_t)ref_group(b, max, q);
    }
    ck_assert_int_eq(wrong, 0);
}
END_TEST

/* ------------------------------------------------ corpus and brute force */

/* A corpus: documents over T rows, each row's token string, the tokens file,
 * and (once encoded) each row's dense activations. */
typedef struct corpus {
    size_t n_docs, T, F;
    uint64_t *row_start;    /* (n_docs + 1) */
    char **tok;             /* (T) from the word list or own[t] */
    char **own;             /* (T) owned strings, or NULL */
    char *tokens_path;
    float *dense;           /* (T, F) */
    const float *norms;     /* (F) decoder norms the index must hold, or NULL */
} corpus;

static const char *const words[] = {"The", " cat", " sat", "\xc3\xa7", " \"q\"", "\\", " on",
                                    "\xe2\x80\x94", " mat", ".", "\n", " x y"};

static void corpus_free(corpus *c)
{
    for (size_t t = 0; c->own && t < c->T; t++)
        free(c->own[t]);
    free(c->own);
    free(c->row_start);
    free(c->tok);
    free(c->tokens_path);
    free(c->dense);
}

/* JSON string literal of s into f. */
static void put_json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if (*s == '\n')
            fputs("\\n", f);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

/* Documents of 0..max_len tokens adding up to T rows (T chosen by the
 * documents); writes the tokens file "name". */
static void make_docs(corpus *c, uint64_t seed, size_t n_docs, size_t max_len, const char *name)
{
    memset(c, 0, sizeof *c);
    sae_rng r;
    sae_rng_seed(&r, seed);
    c->n_docs = n_docs;
    c->row_start = calloc(n_docs + 1, sizeof *c->row_start);
    for (size_t d = 0; d < n_docs; d++)
        c->row_start[d + 1] = c->row_start[d] + sae_rng_below(&r, max_len + 1);
    c->T = c->row_start[n_docs];
    c->tok = calloc(c->T ? c->T : 1, sizeof *c->tok);
    c->own = calloc(c->T ? c->T : 1, sizeof *c->own);
    for (size_t t = 0; t < c->T; t++) {
        c->tok[t] = (char *)words[sae_rng_below(&r, sizeof words / sizeof words[0])];
        /* Many distinct tokens too, so a vocabulary holding tokens no stored
         * window uses would show. */
        if (sae_rng_uniform(&r) < 0.3) {
            ck_assert_int_ge(asprintf(&c->own[t], " n%llu",
                                      (unsigned long long)sae_rng_below(&r, 100000)), 0);
            c->tok[t] = c->own[t];
        }
    }
    c->tokens_path = unit_path(name);
    FILE *f = fopen(c->tokens_path, "w");
    ck_assert_ptr_nonnull(f);
    for (size_t d = 0; d < n_docs; d++) {
        if (d % 7 == 3)
            fprintf(f, "{\"tokens\": [");
        else
            fprintf(f, "{\"id\": \"doc-%zu\", \"tokens\": [", d);
        for (uint64_t t = c->row_start[d]; t < c->row_start[d + 1]; t++) {
            if (t > c->row_start[d])
                fputs(", ", f);
            put_json_string(f, c->tok[t]);
        }
        fputs("]}\n", f);
        if (d % 11 == 5)
            fputs("\n", f); /* blank lines are skipped */
    }
    fclose(f);
}

/* Synthetic activations for the streaming test, one regime per feature. */
static void make_synthetic_acts(corpus *c, uint64_t seed)
{
    static const float norms[10] = {0.5f, 1.5f, 2.5f, 3.5f, 4.5f, 5.5f, 6.5f, 7.5f, 8.5f, 9.5f};
    c->norms = norms;
    sae_rng r;
    sae_rng_seed(&r, seed);
    c->F = 10;
    c->dense = calloc(c->T * c->F + 1, sizeof *c->dense);
    for (size_t d = 0; d < c->n_docs; d++)
        for (uint64_t t = c->row_start[d]; t < c->row_start[d + 1]; t++) {
            float *row = c->dense + t * c->F;
            double u = sae_rng_uniform(&r);
            /* 0: never. 1: dense, log-normal over ~20 octaves. */
            if (u < 0.6)
                row[1] = (float)exp(sae_rng_normal(&r) * 2.5);
            /* 2: rare. */
            if (sae_rng_uniform(&r) < 0.02)
                row[2] = (float)sae_rng_uniform(&r) + 0.1f;
            /* 3: tied values. */
            if (sae_rng_uniform(&r) < 0.3)
                row[3] = (float[]){0.5f, 1.0f, 2.0f}[sae_rng_below(&r, 3)];
            /* 4: extremes: underflow and overflow bins, subnormals, normal. */
            if (sae_rng_uniform(&r) < 0.25)
                row[4] = (float[]){1e-30f, 1e-42f, 7e4f, 1e6f, 0.3f, 3e-5f}[sae_rng_below(&r, 6)];
            /* 5: grows along the document (the max moves often). */
            row[5] = (float)(t - c->row_start[d] + 1) * 0.25f;
            /* 6, 7, 8: uniform at various rates; 7 also has negative and zero
             * entries in the sparse rows, which never count. */
            if (sae_rng_uniform(&r) < 0.1)
                row[6] = (float)sae_rng_uniform(&r);
            row[7] = sae_rng_uniform(&r) < 0.4 ? (float)sae_rng_uniform(&r) * 3 : -1.0f;
            if (sae_rng_uniform(&r) < 0.9)
                row[8] = (float)(sae_rng_uniform(&r) * 100);
            /* 9: exactly one token fires, twice the same value in one doc. */
            if (t == c->T / 2 || t == c->T / 2 + 1)
                row[9] = 4.0f;
        }
}

/* The sparse rows [r0, r1) of c's dense activations (nonzero entries,
 * negatives included). */
static void sparse_of(const corpus *c, uint64_t r0, uint64_t r1, sae_sparse *s)
{
    size_t n = (size_t)(r1 - r0), nnz = 0;
    free(s->row_ptr);
    free(s->idx);
    free(s->val);
    s->row_ptr = calloc(n + 1, sizeof *s->row_ptr);
    s->idx = calloc(n * c->F + 1, sizeof *s->idx);
    s->val = calloc(n * c->F + 1, sizeof *s->val);
    for (size_t i = 0; i < n; i++) {
        for (size_t f = c->F; f-- > 0;) { /* any order is allowed */
            float v = c->dense[(r0 + i) * c->F + f];
            if (v != 0 || (f == 7 && i % 5 == 0)) {
                s->idx[nnz] = (uint32_t)f;
                s->val[nnz++] = v;
            }
        }
        s->row_ptr[i + 1] = (uint32_t)nnz;
    }
    s->n_rows = n;
    s->nnz = nnz;
}

/* Writes an index of c (documents of shard set->shard of set->n_shards)
 * through the streaming API. */
static void build_synthetic(const corpus *c, const sae_index_settings *set, const char *path)
{
    sae_tokens *tok;
    sae_indexer *ix;
    sae_store_writer *w;
    sae_error err;
    ck_assert_msg(sae_tokens_open(c->tokens_path, &tok, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(tok->n_docs, c->n_docs);
    size_t lo, hi;
    sae_shard_docs(tok->n_docs, set->shard, set->n_shards, &lo, &hi);
    ck_assert_msg(sae_indexer_new(c->F, set, tok, lo, hi, &ix, &err) == 0, "%s", err.msg);
    uint64_t r0, r1;
    sae_indexer_rows(ix, &r0, &r1);
    ck_assert_uint_eq(r0 % set->block_rows, 0);
    sae_sparse s = {0};
    for (uint64_t r = r0; r < r1; r += set->block_rows) {
        uint64_t e = r + set->block_rows < r1 ? r + set->block_rows : r1;
        sparse_of(c, r, e, &s);
        ck_assert_msg(sae_indexer_feed(ix, r, &s, &err) == 0, "%s", err.msg);
    }
    /* A block out of order is refused. */
    if (r1 > r0)
        ck_assert_int_eq(sae_indexer_feed(ix, r0, &s, &err), SAE_EINVAL);
    ck_assert_msg(sae_indexer_finish(ix, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(sae_store_writer_open(path, &w, &err), 0);
    ck_assert_msg(sae_indexer_write(ix, c->norms, w, &err) == 0, "%s", err.msg);
    for (uint32_t f = 0; f < c->F; f++) {
        uint32_t nb = (f + 1) % (uint32_t)c->F;
        float cs = 0.5f;
        ck_assert_int_eq(sae_store_put_neighbours(w, f, &nb, &cs, 1, &err), 0);
    }
    sae_explanation ties = {.id = 1, .feature = 3, .description = "ties", .has_score = true,
                            .score = 0.5, .source = "test"};
    ck_assert_int_eq(sae_store_put_explanation(w, &ties, &err), 0);
    sae_store_info in;
    memset(&in, 0, sizeof in);
    strcpy(in.weights_digest, "5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e");
    in.d_in = 1;
    in.d_sae = c->F;
    in.n_tokens = sae_indexer_tokens(ix);
    in.n_documents = sae_indexer_documents(ix);
    in.corpus_tokens = tok->n_tokens;
    in.corpus_documents = tok->n_docs;
    in.top = set->top;
    in.quantiles = set->quantiles;
    in.per_quantile = set->per_quantile;
    in.context = set->context;
    in.neighbours = 1;
    in.seed = set->seed;
    in.block_rows = set->block_rows;
    if (set->is_shard)
        snprintf(in.shard, sizeof in.shard, "%u/%u", set->shard, set->n_shards);
    strcpy(in.histogram, SAE_HIST_DEFINITION);
    strcpy(in.tokens_digest, tok->digest);
    in.n_explanations = 1;
    ck_assert_int_eq(sae_store_put_info(w, &in, &err), 0);
    ck_assert_msg(sae_store_writer_commit(w, &err) == 0, "%s", err.msg);
    sae_indexer_free(ix);
    sae_tokens_free(tok);
    sae_sparse_free(&s);
}

/* The document name the tokens file gives document d. */
static void doc_name(size_t d, size_t line_shift, char *out, size_t n)
{
    if (d % 7 == 3)
        snprintf(out, n, "%zu", d + 1 + line_shift);
    else
        snprintf(out, n, "doc-%zu", d);
}

/* Blank lines before document d in the tokens file (one after each d % 11 == 5). */
static size_t blanks_before(size_t d)
{
    size_t n = 0;
    for (size_t e = 0; e < d; e++)
        n += e % 11 == 5;
    return n;
}

/* Checks one stored example against the window of feature f at position pos
 * of document d (values from dense, tokens from the corpus). */
static void check_window(const corpus *c, size_t f, const sae_store_example *e, size_t d,
                         uint32_t pos, uint32_t ctx, const char *what)
{
    uint64_t len = c->row_start[d + 1] - c->row_start[d];
    uint64_t first = pos >= ctx ? pos - ctx : 0, end = pos + ctx + 1 < len ? pos + ctx + 1 : len;
    char name[64];
    doc_name(d, blanks_before(d), name, sizeof name);
    ck_assert_msg(e->doc_index == d && !strcmp(e->document, name), "%s: doc %u '%s', want %zu '%s'",
                  what, e->doc_index, e->document, d, name);
    ck_assert_msg(e->first == first && e->n == end - first && e->focus_index == pos - first,
                  "%s: window %u+%zu focus %u, want %" PRIu64 "+%" PRIu64 " focus %u", what,
                  e->first, e->n, e->focus_index, first, end - first, pos);
    for (size_t i = 0; i < e->n; i++) {
        uint64_t row = c->row_start[d] + first + i;
        float v = c->dense[row * c->F + f];
        if (!(v > 0))
            v = 0;
        ck_assert_msg(e->values[i] == v, "%s: value %zu is %g, want %g", what, i,
                      (double)e->values[i], (double)v);
        ck_assert_msg(strlen(c->tok[row]) == e->token_len[i] &&
                          !memcmp(e->tokens[i], c->tok[row], e->token_len[i]),
                      "%s: token %zu", what, i);
    }
    ck_assert(e->focus_value == c->dense[(c->row_start[d] + pos) * c->F + f]);
}

/* One active value, for the brute force. */
typedef struct hit {
    uint64_t hash;
    uint32_t doc, pos;
    float v;
    int grp;
} hit;

static int cmp_hit_hash(const void *a, const void *b)
{
    const hit *x = a, *y = b;
    return x->hash < y->hash ? -1 : x->hash > y->hash;
}

static int cmp_hit_quantile(const void *a, const void *b)
{
    const hit *x = a, *y = b;
    if (x->grp != y->grp)
        return x->grp > y->grp ? -1 : 1;
    if (x->v != y->v)
        return x->v > y->v ? -1 : 1;
    if (x->doc != y->doc)
        return x->doc < y->doc ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

static int cmp_hit_top(const void *a, const void *b)
{
    const hit *x = a, *y = b;
    if (x->v != y->v)
        return x->v > y->v ? -1 : 1;
    return x->doc < y->doc ? -1 : x->doc > y->doc;
}

/* Recomputes every statistic of documents [doc_lo, doc_hi) of c and compares
 * with the index at path, built with set. Returns how many quantile samples
 * were checked (so callers can assert the check was not vacuous). */
static size_t check_against_brute_force(const corpus *c, const sae_index_settings *set,
                                        size_t doc_lo, size_t doc_hi, const char *path)
{
    sae_store *s;
    sae_store_conn *cn;
    sae_error err;
    ck_assert_msg(sae_store_open(path, &s, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(sae_store_connect(s, &cn, &err), 0);
    uint64_t n_tokens = c->row_start[doc_hi] - c->row_start[doc_lo];
    ck_assert_uint_eq(sae_store_get_info(s)->n_tokens, n_tokens);
    size_t checked = 0;
    hit *hits = malloc((c->T + 1) * sizeof *hits), *tops = malloc((c->n_docs + 1) * sizeof *tops);
    for (size_t f = 0; f < c->F; f++) {
        uint64_t n = 0, hist[258] = {0};
        float max = 0;
        long double sum = 0;
        size_t nh = 0, nt = 0;
        for (size_t d = doc_lo; d < doc_hi; d++) {
            hit best = {.v = 0};
            for (uint64_t t = c->row_start[d]; t < c->row_start[d + 1]; t++) {
                float v = c->dense[t * c->F + f];
                if (!(v > 0))
                    continue;
                uint32_t pos = (uint32_t)(t - c->row_start[d]);
                n++;
                sum += v;
                max = v > max ? v : max;
                hist[ref_bin(v)]++;
                hits[nh++] = (hit){ref_hash(set->seed, (uint32_t)d, pos), (uint32_t)d, pos, v, 0};
                if (v > best.v)
                    best = (hit){0, (uint32_t)d, pos, v, 0};
            }
            if (best.v > 0)
                tops[nt++] = best;
        }
        sae_store_feature_raw raw;
        ck_assert_int_eq(sae_store_get_feature_raw(cn, f, &raw, &err), 0);
        ck_assert_uint_eq(raw.f.n_active, n);
        ck_assert(raw.f.density == (n_tokens ? (double)n / (double)n_tokens : 0));
        ck_assert(raw.f.max_activation == max);
        ck_assert_msg(fabsl(raw.f.mean_activation - (n ? sum / n : 0)) <= 1e-15L * (n ? sum / n : 0),
                      "feature %zu: mean %.17g vs %.17Lg", f, raw.f.mean_activation,
                      n ? sum / n : 0);
        if (c->norms)
            ck_assert(raw.f.decoder_norm == c->norms[f]);
        int bad_bin = -1;
        for (int b = 0; b < 258; b++) {
            uint64_t got = b >= (int)raw.hist.first_bin && b < (int)(raw.hist.first_bin + raw.hist.n)
                               ? raw.hist.counts[b - (int)raw.hist.first_bin] : 0;
            if (got != hist[b])
                bad_bin = b;
        }
        ck_assert_msg(bad_bin < 0, "feature %zu: histogram bin %d differs", f, bad_bin);
        if (raw.hist.n)
            ck_assert(hist[raw.hist.first_bin] && hist[raw.hist.first_bin + raw.hist.n - 1]);
        sae_store_feature_raw_free(&raw);

        /* Top: documents by their max, ties by document, N of them. */
        qsort(tops, nt, sizeof *tops, cmp_hit_top);
        size_t want_top = nt < set->top ? nt : set->top;
        sae_store_examples ex;
        ck_assert_int_eq(sae_store_get_examples(cn, f, SAE_EX_TOP, 1000, 0, &ex, &err), 0);
        ck_assert_msg(ex.n == want_top && ex.total == want_top, "feature %zu: %zu top, want %zu", f,
                      ex.n, want_top);
        for (size_t i = 0; i < want_top; i++) {
            char what[64];
            snprintf(what, sizeof what, "feature %zu top %zu", f, i);
            check_window(c, f, &ex.items[i], tops[i].doc, tops[i].pos, set->context, what);
            ck_assert(ex.items[i].max_value == tops[i].v);
            ck_assert_uint_eq(ex.items[i].max_token_index, ex.items[i].focus_index);
        }
        sae_store_examples_free(&ex);

        /* Quantile samples: per group of bins over (0, max], the M smallest
         * hashes; the group's bin range and share. */
        size_t want_q = 0;
        hit *pick = malloc((nh + 1) * sizeof *pick);
        if (n && set->quantiles && set->per_quantile) {
            int q = (int)set->quantiles;
            for (size_t i = 0; i < nh; i++)
                hits[i].grp = ref_group(ref_bin(hits[i].v), max, q);
            qsort(hits, nh, sizeof *hits, cmp_hit_hash);
            uint32_t taken[128] = {0};
            for (size_t i = 0; i < nh; i++)
                if (taken[hits[i].grp] < set->per_quantile) {
                    taken[hits[i].grp]++;
                    pick[want_q++] = hits[i];
                }
            qsort(pick, want_q, sizeof *pick, cmp_hit_quantile);
        }
        ck_assert_int_eq(sae_store_get_examples(cn, f, SAE_EX_QUANTILE, 1000, 0, &ex, &err), 0);
        ck_assert_msg(ex.n == want_q && ex.total == want_q, "feature %zu: %zu quantile, want %zu",
                      f, ex.n, want_q);
        for (size_t i = 0; i < want_q; i++) {
            char what[64];
            snprintf(what, sizeof what, "feature %zu quantile %zu", f, i);
            const sae_store_example *e = &ex.items[i];
            check_window(c, f, e, pick[i].doc, pick[i].pos, set->context, what);
            ck_assert_uint_eq(e->hash, pick[i].hash);
            ck_assert_int_eq(e->grp, pick[i].grp);
            int g = pick[i].grp, lo_b = -1, hi_b = -1;
            uint64_t in_g = 0;
            for (int b = 0; b < 258; b++)
                if (ref_group(b, max, (int)set->quantiles) == g) {
                    if (lo_b < 0)
                        lo_b = b;
                    hi_b = b;
                    in_g += hist[b];
                }
            double bmax = ref_hi(hi_b) < max ? ref_hi(hi_b) : max;
            ck_assert_msg(e->has_bin && e->bin_min == ref_lo(lo_b) && e->bin_max == bmax &&
                              e->bin_contains == (double)in_g / (double)n,
                          "%s: bins [%g, %g] %g, want [%g, %g] %g", what, e->bin_min, e->bin_max,
                          e->bin_contains, ref_lo(lo_b), bmax, (double)in_g / (double)n);
            ck_assert(e->bin_min <= e->focus_value && e->focus_value <= e->bin_max);
        }
        checked += want_q;
        free(pick);
        sae_store_examples_free(&ex);
    }
    free(hits);
    free(tops);
    sae_store_disconnect(cn);
    sae_store_close(s);
    return checked;
}

/* ------------------------------------------------ a canonical dump */

/* A growable string. */
typedef struct sbuf {
    char *p;
    size_t n, cap;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->n + (size_t)k + 1 > b->cap) {
        b->cap = (b->n + (size_t)k + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

/* Everything the index at path holds, through the read API, as text (floats
 * in hex, so equal text means equal bits). Candidates (shard-only) are left
 * out when with_candidates is false. */
static char *dump(const char *path, bool with_candidates)
{
    sae_store *s;
    sae_store_conn *c;
    sae_error err;
    ck_assert_msg(sae_store_open(path, &s, &err) == 0, "%s", err.msg);
    ck_assert_int_eq(sae_store_connect(s, &c, &err), 0);
    sbuf b = {0};
    const sae_store_info *i = sae_store_get_info(s);
    sb_printf(&b, "meta %s %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64 " %" PRIu64
                  " %u %u %u %u %u %" PRIu64 " %u '%s' %s %s '%s' %" PRIu64 "\n",
              i->weights_digest, i->d_in, i->d_sae, i->n_tokens, i->n_documents, i->corpus_tokens,
              i->corpus_documents, i->top, i->quantiles, i->per_quantile, i->context,
              i->neighbours, i->seed, i->block_rows, i->shard, i->histogram, i->tokens_digest,
              i->explanations_digest, i->n_explanations);
    for (size_t v = 0; v < sae_store_vocab_size(s); v++) {
        size_t len;
        const char *t = sae_store_token(s, (uint32_t)v, &len);
        sb_printf(&b, "vocab %zu %.*s\n", v, (int)len, t);
    }
    for (uint64_t f = 0; f < i->d_sae; f++) {
        sae_store_feature_raw r;
        ck_assert_int_eq(sae_store_get_feature_raw(c, f, &r, &err), 0);
        sb_printf(&b, "feature %u %" PRIu64 " %a %a %a %a %u %u sum", r.f.index, r.f.n_active,
                  r.f.density, r.f.max_activation, r.f.mean_activation, r.f.decoder_norm,
                  r.f.n_top, r.f.n_quantile);
        for (int k = 0; k < 48; k++)
            sb_printf(&b, "%02x", r.sum_exact[k]);
        sb_printf(&b, " hist %u:", r.hist.first_bin);
        for (size_t k = 0; k < r.hist.n; k++)
            sb_printf(&b, " %" PRIu64, r.hist.counts[k]);
        sb_printf(&b, "\n");
        sae_store_feature_raw_free(&r);
        sae_store_neighbours nb;
        ck_assert_int_eq(sae_store_get_neighbours(c, f, &nb, &err), 0);
        for (size_t k = 0; k < nb.n; k++)
            sb_printf(&b, " nb %u %a", nb.items[k].index, (double)nb.items[k].cosine);
        sb_printf(&b, "\n");
        sae_store_neighbours_free(&nb);
        sae_explanations e;
        ck_assert_int_eq(sae_store_get_explanations(c, f, &e, &err), 0);
        for (size_t k = 0; k < e.n; k++)
            sb_printf(&b, " expl %" PRIu64 " %s %d %a %s %s\n", e.items[k].id,
                      e.items[k].description, e.items[k].has_score, e.items[k].score,
                      e.items[k].source ? e.items[k].source : "-",
                      e.items[k].type_name ? e.items[k].type_name : "-");
        sae_explanations_free(&e);
        for (int kind = 0; kind < (with_candidates ? 3 : 2); kind++) {
            sae_store_examples ex;
            ck_assert_int_eq(sae_store_get_examples(c, f, (sae_example_kind)kind, UINT64_MAX, 0,
                                                    &ex, &err), 0);
            for (size_t k = 0; k < ex.n; k++) {
                const sae_store_example *x = &ex.items[k];
                sb_printf(&b, " ex %d %u doc %u %s first %u focus %u %a hash %" PRIx64
                              " grp %d bin %d %a %a %a:",
                          kind, x->rank, x->doc_index, x->document, x->first, x->focus_index,
                          (double)x->focus_value, x->hash, x->grp, x->has_bin, x->bin_min,
                          x->bin_max, x->bin_contains);
                for (size_t t = 0; t < x->n; t++)
                    sb_printf(&b, " %u=%a", x->token_ids[t], (double)x->values[t]);
                sb_printf(&b, "\n");
            }
            sae_store_examples_free(&ex);
        }
    }
    sae_store_disconnect(c);
    sae_store_close(s);
    return b.p;
}

/* Asserts two dumps are equal, showing the first differing line. */
static void same_dump(const char *a, const char *b, const char *what)
{
    if (!strcmp(a, b))
        return;
    size_t i = 0, line = 1, ls = 0;
    while (a[i] && a[i] == b[i]) {
        if (a[i] == '\n') {
            line++;
            ls = i + 1;
        }
        i++;
    }
    ck_abort_msg("%s: differ at line %zu:\n  %.200s\n  %.200s", what, line, a + ls, b + ls);
}

/* The vocabulary holds exactly the tokens of stored examples, in strictly
 * increasing bytewise order. */
static void check_vocab(const char *path)
{
    sae_store *s;
    sae_store_conn *c;
    sae_error err;
    ck_assert_int_eq(sae_store_open(path, &s, &err), 0);
    ck_assert_int_eq(sae_store_connect(s, &c, &err), 0);
    size_t nv = sae_store_vocab_size(s);
    ck_assert_uint_gt(nv, 0);
    char *used = calloc(nv, 1);
    for (uint64_t f = 0; f < sae_store_get_info(s)->d_sae; f++)
        for (int kind = 0; kind < 3; kind++) {
            sae_store_examples ex;
            ck_assert_int_eq(sae_store_get_examples(c, f, (sae_example_kind)kind, UINT64_MAX, 0,
                                                    &ex, &err), 0);
            for (size_t k = 0; k < ex.n; k++)
                for (size_t t = 0; t < ex.items[k].n; t++)
                    used[ex.items[k].token_ids[t]] = 1;
            sae_store_examples_free(&ex);
        }
    size_t unused = 0, unsorted = 0;
    for (size_t v = 0; v < nv; v++) {
        unused += !used[v];
        if (v) {
            size_t la, lb;
            const char *a = sae_store_token(s, (uint32_t)v - 1, &la);
            const char *b = sae_store_token(s, (uint32_t)v, &lb);
            int cm = memcmp(a, b, la < lb ? la : lb);
            unsorted += !(cm < 0 || (cm == 0 && la < lb));
        }
    }
    ck_assert_msg(unused == 0, "%s: %zu of %zu vocab entries used by no example", path, unused, nv);
    ck_assert_uint_eq(unsorted, 0);
    free(used);
    sae_store_disconnect(c);
    sae_store_close(s);
}

/* Merges the shard files into out; returns the status and err. */
static int merge(const char *const *shards, size_t n, const char *out, sae_error *err)
{
    sae_store_writer *w;
    int rc = sae_store_writer_open(out, &w, err);
    if (rc)
        return rc;
    if ((rc = sae_merge_shards(shards, n, w, err))) {
        sae_store_writer_abort(w);
        return rc;
    }
    return sae_store_writer_commit(w, err);
}

START_TEST(test_stream_vs_brute_force)
{
    corpus c;
    make_docs(&c, 11, 70, 25, "tokens.jsonl");
    make_synthetic_acts(&c, 12);
    sae_index_settings set;
    sae_index_settings_default(&set);
    set.top = 4;
    set.quantiles = 5;
    set.per_quantile = 3;
    set.context = 2;
    set.block_rows = 8;
    set.seed = 99;
    char *p = unit_path("whole.db");
    build_synthetic(&c, &set, p);
    size_t nq = check_against_brute_force(&c, &set, 0, c.n_docs, p);
    ck_assert_uint_gt(nq, 60);
    check_vocab(p);

    /* Other settings: one group, no context, one per group, more top. */
    set.quantiles = 1;
    set.per_quantile = 1;
    set.context = 0;
    set.top = 50;
    set.block_rows = 3;
    char *p2 = unit_path("other.db");
    build_synthetic(&c, &set, p2);
    check_against_brute_force(&c, &set, 0, c.n_docs, p2);
    set.quantiles = 100;
    set.per_quantile = 2;
    set.context = 5;
    set.top = 1;
    set.block_rows = 11;
    build_synthetic(&c, &set, p2);
    check_against_brute_force(&c, &set, 0, c.n_docs, p2);
    free(p2);

    /* Shards: each a complete index of its slice; merged equal to the whole. */
    set.top = 4;
    set.quantiles = 5;
    set.per_quantile = 3;
    set.context = 2;
    set.block_rows = 8;
    set.is_shard = true;
    set.n_shards = 3;
    char *sp[3];
    for (uint32_t i = 0; i < 3; i++) {
        char name[32];
        snprintf(name, sizeof name, "shard-%u.db", i);
        sp[i] = unit_path(name);
        set.shard = i;
        build_synthetic(&c, &set, sp[i]);
        size_t lo, hi;
        sae_shard_docs(c.n_docs, i, 3, &lo, &hi);
        check_against_brute_force(&c, &set, lo, hi, sp[i]);
    }
    char *m = unit_path("merged.db");
    sae_error err;
    const char *order[3] = {sp[2], sp[0], sp[1]};
    ck_assert_msg(merge(order, 3, m, &err) == 0, "%s", err.msg);
    check_vocab(sp[1]);
    check_vocab(m);
    char *d1 = dump(p, false), *d2 = dump(m, false);
    same_dump(d1, d2, "merged vs whole");
    /* The comparison sees a difference when there is one. */
    char *d3 = dump(sp[0], false);
    ck_assert_str_ne(d1, d3);
    free(d1);
    free(d2);
    free(d3);
    for (int i = 0; i < 3; i++)
        free(sp[i]);
    free(m);
    free(p);
    corpus_free(&c);
}
END_TEST

START_TEST(test_neighbours)
{
    enum { D = 1100, DIN = 6, K = 7 };
    float *w = malloc(sizeof(float) * D * DIN), *norm = malloc(sizeof(float) * D);
    sae_rng r;
    sae_rng_seed(&r, 4);
    for (size_t i = 0; i < D * DIN; i++)
        w[i] = (float)sae_rng_normal(&r);
    /* Exact duplicates (cosine 1, ties by index), a scaled copy, a zero row. */
    memcpy(w + 5 * DIN, w + 1050 * DIN, DIN * sizeof *w);
    memcpy(w + 700 * DIN, w + 1050 * DIN, DIN * sizeof *w);
    for (int j = 0; j < DIN; j++)
        w[9 * DIN + j] = 2 * w[1050 * DIN + j];
    memset(w + 42 * DIN, 0, DIN * sizeof *w);
    for (size_t i = 0; i < D; i++) {
        double s = 0;
        for (int j = 0; j < DIN; j++)
            s += (double)w[i * DIN + j] * w[i * DIN + j];
        norm[i] = (float)sqrt(s);
    }
    uint32_t *idx = malloc(sizeof(uint32_t) * D * K);
    float *cs = malloc(sizeof(float) * D * K);
    sae_error err;
    ck_assert_int_eq(sae_neighbours(w, norm, D, DIN, K, idx, cs, &err), 0);
    double *ref = malloc(sizeof(double) * D);
    int bad_self = 0, bad_cos = 0, bad_order = 0, bad_missed = 0;
    for (size_t i = 0; i < D; i++) {
        for (size_t j = 0; j < D; j++) {
            double dot = 0;
            for (int t = 0; t < DIN; t++)
                dot += (double)w[i * DIN + t] * w[j * DIN + t];
            ref[j] = norm[i] > 0 && norm[j] > 0 ? dot / ((double)norm[i] * norm[j]) : 0;
        }
        ref[i] = -2; /* never itself */
        /* Stored: sorted, close to the true cosine, and no other feature is
         * clearly better than the weakest kept. (Counted, then asserted once:
         * each assertion costs a message to Check's parent.) */
        bool kept[D] = {false};
        for (int k = 0; k < K; k++) {
            uint32_t j = idx[i * K + k];
            bad_self += j == i || kept[j];
            kept[j] = true;
            bad_cos += !(fabs(cs[i * K + k] - ref[j]) < 1e-5);
            if (k)
                bad_order += !(cs[i * K + k] < cs[i * K + k - 1] ||
                               (cs[i * K + k] == cs[i * K + k - 1] && j > idx[i * K + k - 1]));
        }
        for (size_t j = 0; j < D; j++)
            bad_missed += !kept[j] && j != i && ref[j] > cs[i * K + K - 1] + 1e-5;
    }
    ck_assert_int_eq(bad_self, 0);
    ck_assert_int_eq(bad_cos, 0);
    ck_assert_int_eq(bad_order, 0);
    ck_assert_int_eq(bad_missed, 0);
    /* 1050's copies (5, 700, and 9 scaled) come first, at cosine 1 (their
     * order is by index wherever the cosines are bit-equal, checked above). */
    uint32_t first3 = 0;
    for (int k = 0; k < 3; k++) {
        uint32_t j = idx[1050 * K + k];
        first3 |= j == 5 ? 1 : j == 9 ? 2 : j == 700 ? 4 : 8;
        ck_assert(fabsf(cs[1050 * K + k] - 1.0f) < 1e-6f);
    }
    ck_assert_uint_eq(first3, 7);
    /* The zero row: cosine 0 with everyone, so the lowest indices. */
    for (int k = 0; k < K; k++)
        ck_assert(cs[42 * K + k] == 0.0f);
    ck_assert_uint_eq(idx[42 * K], 0);
    ck_assert_int_eq(sae_neighbours(w, norm, 5, DIN, 5, idx, cs, &err), SAE_EINVAL);
    free(w);
    free(norm);
    free(idx);
    free(cs);
    free(ref);
}
END_TEST

/* The methods: exact and auto (below SAE_NB_EXACT_MAX) are the exact path bit
 * for bit; approx (when the build has FAISS) finds, on clustered rows like a
 * decoder's, nearly every exact neighbour at its true cosine and reports the
 * recall of its sample; without FAISS approx is refused by name. */
START_TEST(test_neighbours_methods)
{
    enum { D = 3000, DIN = 32, K = 10, CENTRES = 150 };
    float *w = malloc(sizeof(float) * D * DIN), *norm = malloc(sizeof(float) * D);
    float *centre = malloc(sizeof(float) * CENTRES * DIN);
    sae_rng r;
    sae_rng_seed(&r, 19);
    for (size_t i = 0; i < CENTRES * DIN; i++)
        centre[i] = (float)sae_rng_normal(&r);
    for (size_t i = 0; i < D; i++) {
        size_t c = sae_rng_below(&r, CENTRES);
        double s = 0;
        for (int j = 0; j < DIN; j++) {
            w[i * DIN + j] = centre[c * DIN + j] + 0.4f * (float)sae_rng_normal(&r);
            s += (double)w[i * DIN + j] * w[i * DIN + j];
        }
        norm[i] = (float)sqrt(s);
    }
    uint32_t *ei = malloc(sizeof(uint32_t) * D * K), *ai = malloc(sizeof(uint32_t) * D * K);
    float *ec = malloc(sizeof(float) * D * K), *ac = malloc(sizeof(float) * D * K);
    sae_nb_report rep;
    sae_error err;
    ck_assert_int_eq(sae_neighbours(w, norm, D, DIN, K, ei, ec, &err), 0);
    for (int method = SAE_NB_AUTO; method <= SAE_NB_EXACT; method++) {
        ck_assert_int_eq(sae_neighbours_by(w, norm, D, DIN, K, method, 0, ai, ac, &rep, &err), 0);
        ck_assert_int_eq(rep.method, SAE_NB_EXACT);
        ck_assert(rep.recall < 0);
        ck_assert_mem_eq(ai, ei, sizeof(uint32_t) * D * K);
        ck_assert_mem_eq(ac, ec, sizeof(float) * D * K);
    }
    int rc = sae_neighbours_by(w, norm, D, DIN, K, SAE_NB_APPROX, 7, ai, ac, &rep, &err);
#ifdef SAE_HAVE_FAISS
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(rep.method, SAE_NB_APPROX);
    ck_assert_uint_eq(rep.sampled, SAE_NB_RECALL_SAMPLE);
    size_t hit = 0;
    int bad = 0;
    for (size_t i = 0; i < D; i++)
        for (int k = 0; k < K; k++) {
            uint32_t j = ai[i * K + k];
            double dot = 0;
            for (int t = 0; t < DIN; t++)
                dot += (double)w[i * DIN + t] * w[j * DIN + t];
            bad += j == i || !(fabs(ac[i * K + k] - dot / ((double)norm[i] * norm[j])) < 1e-4);
            if (k)
                bad += !(ac[i * K + k] <= ac[i * K + k - 1]);
            for (int e = 0; e < K; e++)
                hit += ei[i * K + e] == j;
        }
    ck_assert_int_eq(bad, 0);
    double recall = (double)hit / (D * K);
    ck_assert_msg(recall >= 0.95, "recall@10 %.4f over every feature", recall);
    ck_assert_msg(rep.recall >= 0.9 && rep.recall <= 1.0, "sampled recall %.4f", rep.recall);
#else
    ck_assert_int_eq(rc, SAE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "FAISS"));
#endif
    free(w);
    free(norm);
    free(centre);
    free(ei);
    free(ai);
    free(ec);
    free(ac);
}
END_TEST

/* ------------------------------------------------ real builds */

/* A fixture model, an activations file and a tokens file of ~n_rows rows. */
typedef struct real {
    char *model, *acts, *acts_other_d;
    corpus c;
} real;

static void make_real(real *r, size_t d_in, size_t d_sae, uint64_t seed, size_t n_docs,
                      sae_arch arch)
{
    r->model = unit_path("model");
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    o.d_in = d_in;
    o.d_sae = d_sae;
    o.arch = arch;
    o.k = 6;
    o.seed = seed;
    o.target_l0 = 8;
    sae_error err;
    ck_assert_msg(sae_fixture_write_model(r->model, &o, &err) == 0, "%s", err.msg);
    make_docs(&r->c, seed + 1, n_docs, 30, "tokens.jsonl");
    r->acts = unit_path("acts.safetensors");
    ck_assert_int_eq(sae_fixture_write_activations(r->acts, r->c.T, d_in, SAE_DT_F32, seed + 2,
                                                   &err), 0);
    r->acts_other_d = unit_path("acts-other.npy");
    ck_assert_int_eq(sae_fixture_write_activations(r->acts_other_d, r->c.T, d_in + 1, SAE_DT_F32,
                                                   seed + 3, &err), 0);
}

static void real_free(real *r)
{
    free(r->model);
    free(r->acts);
    free(r->acts_other_d);
    corpus_free(&r->c);
}

/* Runs sae_index_build; returns its status (err filled). */
static int build_real(const real *r, const char *acts_path, const char *tokens_path,
                      const sae_index_settings *set, const char *expl, const char *out,
                      sae_error *err)
{
    sae_model *m = NULL;
    sae_acts *a = NULL;
    sae_tokens *t = NULL;
    sae_explanations e = {0};
    sae_model_warnings warn;
    int rc = sae_model_load(r->model, &m, &warn, err);
    if (!rc)
        rc = sae_acts_open(&acts_path, 1, &a, err);
    if (!rc)
        rc = sae_tokens_open(tokens_path, &t, err);
    if (!rc && expl)
        rc = sae_explanations_read((const char *const[]){expl}, 1, m->d_sae, &e, err);
    if (!rc) {
        sae_index_job job = {.model = m, .acts = a, .tok = t, .expl = expl ? &e : NULL,
                             .set = *set};
        rc = sae_index_build(&job, out, err);
    }
    sae_explanations_free(&e);
    sae_tokens_free(t);
    sae_acts_free(a);
    sae_model_free(m);
    return rc;
}

/* Encodes r's corpus as the build does (blocks of block_rows from row 0) into
 * r->c.dense, and checks each feature's max against the double oracle. */
static void encode_like_the_build(real *r, size_t block_rows)
{
    sae_model *m;
    sae_acts *a;
    sae_error err;
    sae_model_warnings warn;
    ck_assert_int_eq(sae_model_load(r->model, &m, &warn, &err), 0);
    const char *ap = r->acts;
    ck_assert_int_eq(sae_acts_open(&ap, 1, &a, &err), 0);
    size_t T = r->c.T, F = m->d_sae;
    r->c.F = F;
    r->c.dense = calloc(T * F + 1, sizeof *r->c.dense);
    float *x = malloc(sizeof(float) * block_rows * m->d_in);
    sae_workspace *ws = sae_workspace_new(m, block_rows);
    sae_sparse sp;
    sae_sparse_init(&sp);
    sae_encode_opts opt = {0};
    double *ref = malloc(sizeof(double) * F), *refmax = calloc(F, sizeof(double));
    for (size_t r0 = 0; r0 < T; r0 += block_rows) {
        size_t n = T - r0 < block_rows ? T - r0 : block_rows;
        ck_assert_int_eq(sae_acts_read(a, r0, n, x, &err), 0);
        sae_sparse_reset(&sp);
        ck_assert_int_eq(sae_encode(m, ws, x, n, &opt, &sp, NULL, NULL, &err), 0);
        for (size_t i = 0; i < n; i++) {
            for (uint32_t e = sp.row_ptr[i]; e < sp.row_ptr[i + 1]; e++)
                r->c.dense[(r0 + i) * F + sp.idx[e]] = sp.val[e];
            sae_ref_encode_row(m, x + i * m->d_in, ref, NULL);
            for (size_t f = 0; f < F; f++)
                refmax[f] = ref[f] > refmax[f] ? ref[f] : refmax[f];
        }
    }
    for (size_t f = 0; f < F; f++) {
        float mx = 0;
        for (size_t t = 0; t < T; t++)
            mx = r->c.dense[t * F + f] > mx ? r->c.dense[t * F + f] : mx;
        ck_assert_msg(fabs(mx - refmax[f]) <= 1e-4 * (1 + refmax[f]), "feature %zu: max %g vs %g",
                      f, (double)mx, refmax[f]);
    }
    free(ref);
    free(refmax);
    free(x);
    sae_sparse_free(&sp);
    sae_workspace_free(ws);
    sae_acts_free(a);
    sae_model_free(m);
}

/* Reads a whole file (caller frees); *len gets its size. */
static char *slurp(const char *path, size_t *len)
{
    char *b = sae_fixture_read_file(path, len);
    ck_assert_msg(b, "cannot read %s", path);
    return b;
}

static void spit(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

START_TEST(test_real_build)
{
    real r;
    make_real(&r, 12, 40, 21, 45, SAE_ARCH_STANDARD);
    sae_index_settings set;
    sae_index_settings_default(&set);
    set.top = 5;
    set.quantiles = 4;
    set.per_quantile = 2;
    set.context = 3;
    set.neighbours = 6;
    set.block_rows = 64;
    char *expl = unit_path("expl.jsonl");
    spit(expl, "{\"index\": 3, \"description\": \"three\", \"score\": 0.5}\n"
               "{\"index\": \"39\", \"description\": \"last one\", \"typeName\": \"np\", "
               "\"scoreV1\": 0.1, \"explanationModelName\": \"m\"}\n");
    char *p = unit_path("index.db");
    sae_error err;
    ck_assert_msg(build_real(&r, r.acts, r.c.tokens_path, &set, expl, p, &err) == 0, "%s", err.msg);
    encode_like_the_build(&r, set.block_rows);
    size_t nq = check_against_brute_force(&r.c, &set, 0, r.c.n_docs, p);
    ck_assert_uint_gt(nq, 100);
    check_vocab(p);

    sae_store *s;
    ck_assert_int_eq(sae_store_open(p, &s, &err), 0);
    sae_model *m;
    sae_model_warnings warn;
    ck_assert_int_eq(sae_model_load(r.model, &m, &warn, &err), 0);
    ck_assert_int_eq(sae_store_check_model(s, m->weights_digest, m->d_in, m->d_sae, &err), 0);
    const sae_store_info *in = sae_store_get_info(s);
    ck_assert_uint_eq(in->corpus_tokens, r.c.T);
    ck_assert_uint_eq(in->n_documents, r.c.n_docs);
    ck_assert_uint_eq(in->n_explanations, 2);
    ck_assert_str_eq(in->shard, "");
    sae_store_conn *cn;
    ck_assert_int_eq(sae_store_connect(s, &cn, &err), 0);
    /* Decoder norms and neighbours from the model's own weights. */
    uint32_t *ni = malloc(sizeof(uint32_t) * m->d_sae * 6);
    float *nc = malloc(sizeof(float) * m->d_sae * 6);
    ck_assert_int_eq(sae_neighbours(m->w_dec, m->dec_norm, m->d_sae, m->d_in, 6, ni, nc, &err), 0);
    for (uint32_t f = 0; f < m->d_sae; f++) {
        sae_store_feature x;
        ck_assert_int_eq(sae_store_get_feature(cn, f, &x, &err), 0);
        ck_assert(x.decoder_norm == m->dec_norm[f]);
        sae_store_neighbours nb;
        ck_assert_int_eq(sae_store_get_neighbours(cn, f, &nb, &err), 0);
        ck_assert_uint_eq(nb.n, 6);
        for (int k = 0; k < 6; k++)
            ck_assert(nb.items[k].index == ni[f * 6 + k] && nb.items[k].cosine == nc[f * 6 + k]);
        sae_store_neighbours_free(&nb);
    }
    free(ni);
    free(nc);
    sae_store_feature_list l;
    sae_store_query q = {.q = "last", .limit = 10};
    ck_assert_int_eq(sae_store_list_features(cn, &q, &l, &err), 0);
    ck_assert_uint_eq(l.total, 1);
    ck_assert_uint_eq(l.items[0].index, 39);
    sae_store_feature_list_free(&l);
    sae_store_disconnect(cn);
    sae_store_close(s);

    /* Deterministic: a second build is byte-identical. */
    char *p2 = unit_path("again.db");
    ck_assert_int_eq(build_real(&r, r.acts, r.c.tokens_path, &set, expl, p2, &err), 0);
    size_t l1, l2;
    char *b1 = slurp(p, &l1), *b2 = slurp(p2, &l2);
    ck_assert_uint_eq(l1, l2);
    ck_assert_int_eq(memcmp(b1, b2, l1), 0);
    free(b1);
    free(b2);

    /* Shards (4 slices) merged equal the unsharded build. */
    set.is_shard = true;
    set.n_shards = 4;
    char *sp[4];
    for (uint32_t i = 0; i < 4; i++) {
        char name[32];
        snprintf(name, sizeof name, "s%u.db", i);
        sp[i] = unit_path(name);
        set.shard = i;
        ck_assert_msg(build_real(&r, r.acts, r.c.tokens_path, &set, expl, sp[i], &err) == 0, "%s",
                      err.msg);
    }
    char *mp = unit_path("merged.db");
    ck_assert_msg(merge((const char *const *)sp, 4, mp, &err) == 0, "%s", err.msg);
    char *d1 = dump(p, false), *d2 = dump(mp, false);
    same_dump(d1, d2, "merged vs unsharded");
    free(d1);
    free(d2);

    /* Merge refusals, each naming the file at fault. */
    const char *missing[3] = {sp[0], sp[1], sp[3]};
    ck_assert_int_ne(merge(missing, 3, mp, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "shard 2/4 is missing"));
    const char *twice[4] = {sp[0], sp[1], sp[1], sp[3]};
    ck_assert_int_ne(merge(twice, 4, mp, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "given twice"));
    const char *whole[2] = {sp[0], p};
    ck_assert_int_ne(merge(whole, 2, mp, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "not a shard"));
    ck_assert_ptr_nonnull(strstr(err.msg, p));
    char *other = unit_path("other-settings.db");
    set.top = 6;
    set.shard = 3;
    ck_assert_int_eq(build_real(&r, r.acts, r.c.tokens_path, &set, expl, other, &err), 0);
    const char *mixed[4] = {sp[0], sp[1], sp[2], other};
    ck_assert_int_ne(merge(mixed, 4, mp, &err), 0);
    ck_assert_msg(strstr(err.msg, "other top") && strstr(err.msg, other), "%s", err.msg);
    set.top = 5;
    ck_assert_int_eq(build_real(&r, r.acts, r.c.tokens_path, &set, NULL, other, &err), 0);
    ck_assert_int_ne(merge(mixed, 4, mp, &err), 0);
    ck_assert_msg(strstr(err.msg, "other explanations"), "%s", err.msg);
    /* Other weights: the same shard from a different model. */
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    o.d_in = 12;
    o.d_sae = 40;
    o.seed = 999;
    o.target_l0 = 8;
    ck_assert_int_eq(sae_fixture_write_model(r.model, &o, &err), 0);
    ck_assert_int_eq(build_real(&r, r.acts, r.c.tokens_path, &set, expl, other, &err), 0);
    ck_assert_int_ne(merge(mixed, 4, mp, &err), 0);
    ck_assert_msg(strstr(err.msg, "other weights_digest"), "%s", err.msg);
    char *text = unit_path("notdb.db");
    spit(text, "no");
    const char *bad[2] = {sp[0], text};
    ck_assert_int_ne(merge(bad, 2, mp, &err), 0);
    ck_assert_ptr_nonnull(strstr(err.msg, "not a SQLite database"));
    /* The merged target survived every refusal unchanged. */
    d1 = dump(p, false);
    d2 = dump(mp, false);
    same_dump(d1, d2, "merged target after refusals");
    free(d1);
    free(d2);
    free(text);
    free(other);
    for (int i = 0; i < 4; i++)
        free(sp[i]);
    free(mp);
    free(p2);
    free(p);
    free(expl);
    sae_model_free(m);
    real_free(&r);
}
END_TEST

START_TEST(test_topk_build)
{
    /* topk: the kept set depends on the whole row, so this checks the
     * windows come from the same encode. */
    real r;
    make_real(&r, 10, 32, 31, 30, SAE_ARCH_TOPK);
    sae_index_settings set;
    sae_index_settings_default(&set);
    set.top = 3;
    set.quantiles = 3;
    set.per_quantile = 2;
    set.context = 4;
    set.block_rows = 16;
    set.seed = 5;
    char *p = unit_path("topk.db");
    sae_error err;
    ck_assert_msg(build_real(&r, r.acts, r.c.tokens_path, &set, NULL, p, &err) == 0, "%s", err.msg);
    encode_like_the_build(&r, set.block_rows);
    ck_assert_uint_gt(check_against_brute_force(&r.c, &set, 0, r.c.n_docs, p), 50);
    free(p);
    real_free(&r);
}
END_TEST

START_TEST(test_bad_inputs)
{
    real r;
    make_real(&r, 8, 16, 41, 12, SAE_ARCH_STANDARD);
    sae_index_settings set;
    sae_index_settings_default(&set);
    char *p = unit_path("x.db");
    sae_error err;
    ck_assert_int_eq(build_real(&r, r.acts_other_d, r.c.tokens_path, &set, NULL, p, &err),
                     SAE_EDIM);
    ck_assert_msg(strstr(err.msg, "d_in 9") && strstr(err.msg, "d_in is 8"), "%s", err.msg);
    char *tk = unit_path("short.jsonl");
    spit(tk, "{\"tokens\": [\"a\", \"b\"]}\n");
    ck_assert_int_eq(build_real(&r, r.acts, tk, &set, NULL, p, &err), SAE_EDIM);
    ck_assert_msg(strstr(err.msg, tk) && strstr(err.msg, "2 tokens"), "%s", err.msg);
    spit(tk, "{\"tokens\": [\"a\", \"b\"]}\n{\"tokens\": [\"a\" \"b\"]}\n");
    ck_assert_int_eq(build_real(&r, r.acts, tk, &set, NULL, p, &err), SAE_EFORMAT);
    ck_assert_msg(strstr(err.msg, "line 2"), "%s", err.msg);
    char *ex = unit_path("bad-expl.jsonl");
    spit(ex, "{\"index\": 16, \"description\": \"x\"}\n");
    ck_assert_int_ne(build_real(&r, r.acts, r.c.tokens_path, &set, ex, p, &err), 0);
    ck_assert_msg(strstr(err.msg, "index 16 out of range"), "%s", err.msg);
    set.block_rows = 2 * set.context;
    ck_assert_int_eq(build_real(&r, r.acts, r.c.tokens_path, &set, NULL, p, &err), SAE_EINVAL);
    struct stat st;
    ck_assert_int_ne(stat(p, &st), 0);
    free(ex);
    free(tk);
    free(p);
    real_free(&r);
}
END_TEST

/* Child side of the kill test: builds into out, writing a byte to fd after
 * every block. */
static void progress_byte(void *ctx, uint64_t done, uint64_t total)
{
    (void)done;
    (void)total;
    int fd = *(int *)ctx;
    ssize_t w = write(fd, "b", 1);
    (void)w;
}

START_TEST(test_killed_build)
{
    real r;
    make_real(&r, 24, 256, 51, 200, SAE_ARCH_STANDARD);
    sae_index_settings set;
    sae_index_settings_default(&set);
    set.block_rows = 128;
    char *p = unit_path("target.db");
    sae_error err;
    ck_assert_int_eq(build_real(&r, r.acts, r.c.tokens_path, &set, NULL, p, &err), 0);
    size_t old_len;
    char *old = slurp(p, &old_len);
    size_t blocks = (r.c.T + set.block_rows - 1) / set.block_rows;
    ck_assert_uint_ge(blocks, 8);
    /* Kill after 0, 1, half and all blocks (then 0, 20 and 60 ms into the
     * writing); a new seed, so a completed build would change the file. */
    struct {
        size_t after_blocks;
        int then_ms;
    } points[] = {{0, 0}, {1, 0}, {blocks / 2, 0}, {blocks, 0}, {blocks, 20}, {blocks, 60}};
    int killed_mid = 0;
    for (size_t k = 0; k < sizeof points / sizeof points[0]; k++) {
        int fds[2];
        ck_assert_int_eq(pipe(fds), 0);
        pid_t child = fork();
        if (child == 0) {
            close(fds[0]);
            sae_model *m;
            sae_acts *a;
            sae_tokens *t;
            sae_model_warnings warn;
            const char *ap = r.acts;
            if (sae_model_load(r.model, &m, &warn, &err) ||
                sae_acts_open(&ap, 1, &a, &err) || sae_tokens_open(r.c.tokens_path, &t, &err))
                _exit(3);
            sae_index_job job = {.model = m, .acts = a, .tok = t, .set = set,
                                 .progress = progress_byte, .progress_ctx = &fds[1]};
            job.set.seed = 1000 + k;
            _exit(sae_index_build(&job, p, &err) ? 2 : 0);
        }
        close(fds[1]);
        char b;
        for (size_t i = 0; i < points[k].after_blocks; i++)
            if (read(fds[0], &b, 1) != 1)
                break;
        if (points[k].then_ms)
            usleep((useconds_t)points[k].then_ms * 1000);
        kill(child, SIGKILL);
        int status;
        waitpid(child, &status, 0);
        close(fds[0]);
        size_t len;
        char *now = slurp(p, &len);
        bool same = len == old_len && !memcmp(now, old, len);
        if (WIFSIGNALED(status) && !same) {
            /* Killed after the rename (while freeing, before _exit): the
             * target must then be the complete new index, this seed's. */
            sae_store *s;
            ck_assert_msg(sae_store_open(p, &s, &err) == 0,
                          "kill point %zu: the target changed and is not an index: %s", k,
                          err.msg);
            ck_assert_msg(sae_store_get_info(s)->seed == 1000 + k,
                          "kill point %zu: the target changed but is not the new build", k);
            sae_store_close(s);
            FILE *f = fopen(p, "wb");
            fwrite(old, 1, old_len, f);
            fclose(f);
        } else if (WIFSIGNALED(status)) {
            char *tmp;
            ck_assert_int_ge(asprintf(&tmp, "%s/.target.db.tmp-%d", unit_dir, (int)child), 0);
            struct stat st;
            killed_mid += stat(tmp, &st) == 0;
            free(tmp);
        } else {
            /* Finished before the kill: a new complete index; put the old back. */
            ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "status %d", status);
            ck_assert(len != old_len || memcmp(now, old, len));
            FILE *f = fopen(p, "wb");
            fwrite(old, 1, old_len, f);
            fclose(f);
        }
        free(now);
    }
    ck_assert_msg(killed_mid >= 3, "only %d kills landed mid-build", killed_mid);
    /* The next build removes the dead builds' temporary files. */
    set.seed = 7;
    ck_assert_int_eq(build_real(&r, r.acts, r.c.tokens_path, &set, NULL, p, &err), 0);
    char *cmd;
    ck_assert_int_ge(
        asprintf(&cmd, "ls -A '%s' | grep -c '^.target.db.tmp-' || true", unit_dir), 0);
    FILE *ls = popen(cmd, "r");
    int n = -1;
    ck_assert_int_eq(fscanf(ls, "%d", &n), 1);
    pclose(ls);
    ck_assert_int_eq(n, 0);
    free(cmd);
    free(old);
    free(p);
    real_free(&r);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("indexer");
    TCase *tc = tcase_create("definitions");
    tcase_add_test(tc, test_hist_bins);
    tcase_add_test(tc, test_exact_sum);
    tcase_add_test(tc, test_quantile_groups);
    suite_add_tcase(s, tc);
    tc = tcase_create("build");
    tcase_add_checked_fixture(tc, unit_setup, unit_teardown);
    tcase_add_test(tc, test_stream_vs_brute_force);
    tcase_add_test(tc, test_neighbours);
    tcase_add_test(tc, test_neighbours_methods);
    tcase_add_test(tc, test_real_build);
    tcase_add_test(tc, test_topk_build);
    tcase_add_test(tc, test_bad_inputs);
    tcase_add_test(tc, test_killed_build);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
