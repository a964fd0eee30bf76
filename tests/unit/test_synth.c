/* test_synth.c: `sae synth` and the decoder-vs-truth matching.
 *
 * Fast suite ("synth", run under ASan too):
 *   - the tokenizer on hand-written text: exact tokens, documents, line marks,
 *     invalid UTF-8 as U+FFFD;
 *   - the feature rules on a hand-annotated sentence: the exact set of active
 *     features of every token;
 *   - the written files: shapes, 64+ labelled features, counts equal to the
 *     rules' counts, tokens.jsonl adding up to the rows, and every row (with
 *     noise 0) exactly a non-negative combination of its active features'
 *     directions with coefficients in [0.5, 1.5]·magnitude (least squares
 *     here, in double);
 *   - same seed, same bytes; another seed, other activations;
 *   - bad input refused with the file named;
 *   - sae_synth_match against a brute-force cosine table;
 *   - the labels of `sae train --truth`: a latent that never fires on the
 *     activations is "dead" (even at cosine 1), one firing but far from every
 *     planted direction "unmatched (cos 0.xx)", firing counts exact.
 * Slow suite ("synth_slow", `test_synth slow`): the default corpus, a
 * default-settings SAE at d_sae = g and 2g (g planted features): MMCS >= 0.98. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "fixture.h"
#include "io/rng.h"
#include "io/safetensors.h"
#include "train/synth.h"
#include "train/train.h"
#include "unit.h"

/* The index of the feature whose label starts with prefix (exactly one). */
static size_t feat(const char *prefix)
{
    size_t found = SIZE_MAX, n = sae_synth_n_features();
    for (size_t i = 0; i < n; i++)
        if (!strncmp(sae_synth_label(i), prefix, strlen(prefix))) {
            ck_assert_msg(found == SIZE_MAX, "label prefix '%s' is ambiguous", prefix);
            found = i;
        }
    ck_assert_msg(found != SIZE_MAX, "no feature labelled '%s...'", prefix);
    return found;
}

static void tokenize(const char *text, sae_synth_corpus *c)
{
    sae_error err;
    memset(c, 0, sizeof *c);
    ck_assert_msg(sae_synth_tokenize("t.txt", text, strlen(text), 0, c, &err) == 0, "%s",
                  err.msg);
}

START_TEST(test_tokenizer)
{
    sae_synth_corpus c;
    tokenize("  The Program (a copy).\n  Licensee's rights:\n\t42 items/x\n"
             "   \n\nSecond\xff para\xe2\x80\x94ok caf\xc3\xa9\n",
             &c);
    ck_assert_uint_eq(c.n_docs, 2);
    const char *want0[] = {"The", " Program", " (", "a", " copy", ")", ".", " Licensee", "'s",
                           " rights", ":", " 42", " items", "/", "x"};
    const uint8_t start0[] = {1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0};
    const uint8_t end0[] = {0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1};
    size_t n0 = sizeof want0 / sizeof *want0;
    ck_assert_uint_eq(c.docs[0].n_tokens, n0);
    for (size_t i = 0; i < n0; i++) {
        ck_assert_str_eq(c.docs[0].tokens[i], want0[i]);
        ck_assert_msg(c.docs[0].line_start[i] == start0[i], "line start of token %zu", i);
        ck_assert_msg(c.docs[0].line_end[i] == end0[i], "line end of token %zu", i);
    }
    ck_assert_str_eq(c.docs[0].id, "t.txt/0");
    /* U+FFFD for the bad byte; the em dash is punctuation; é is a letter */
    const char *want1[] = {"Second", "\xef\xbf\xbd", " para", "\xe2\x80\x94", "ok",
                           " caf\xc3\xa9"};
    ck_assert_uint_eq(c.docs[1].n_tokens, 6);
    for (size_t i = 0; i < 6; i++)
        ck_assert_str_eq(c.docs[1].tokens[i], want1[i]);
    ck_assert_str_eq(c.docs[1].id, "t.txt/1");
    ck_assert_uint_eq(c.n_tokens, n0 + 6);
    sae_synth_corpus_free(&c);

    /* max_tokens cuts the corpus exactly */
    sae_error err;
    memset(&c, 0, sizeof c);
    const char *t = "a b c\n\nd e f g\n";
    ck_assert_int_eq(sae_synth_tokenize("m", t, strlen(t), 5, &c, &err), 0);
    ck_assert_uint_eq(c.n_tokens, 5);
    ck_assert_uint_eq(c.n_docs, 2);
    ck_assert_uint_eq(c.docs[1].n_tokens, 2);
    sae_synth_corpus_free(&c);
}
END_TEST

/* Asserts that token t of active (n_features per token) has exactly the
 * features listed (by label prefix, NULL-terminated). */
static void expect(const uint8_t *active, size_t t, const char *tok, const char *const *labels)
{
    size_t nf = sae_synth_n_features();
    uint8_t want[256] = {0};
    for (const char *const *l = labels; *l; l++)
        want[feat(*l)] = 1;
    for (size_t f = 0; f < nf; f++)
        ck_assert_msg(active[t * nf + f] == want[f], "token %zu '%s': feature '%s' is %d, want %d",
                      t, tok, sae_synth_label(f), active[t * nf + f], want[f]);
}

START_TEST(test_rules)
{
    ck_assert_uint_ge(sae_synth_n_features(), 64);
    sae_synth_corpus c;
    tokenize("The Program (a copy) may not be sold.\nIt is free, GNU software.", &c);
    ck_assert_uint_eq(c.n_docs, 1);
    const sae_synth_doc *d = &c.docs[0];
    uint8_t *a = malloc(d->n_tokens * sae_synth_n_features());
    sae_synth_active(d, a);
#define L(...) ((const char *const[]){__VA_ARGS__, NULL})
    const char *const *want[] = {
        /* The */ L("article", "first token of a paragraph"),
        /* Program */
        L("capitalised word", "software term", "second token", "token right after an article",
          "token right before an opening"),
        /* ( */ L("opening parenthesis"),
        /* a */ L("article", "token inside parentheses"),
        /* copy */
        L("copying", "token inside parentheses", "token right after an article"),
        /* ) */ L("closing parenthesis"),
        /* may */ L("modal verb", "token right after a closing"),
        /* not */ L("negation", "token right after a modal"),
        /* be */ L("form of 'to be'", "token right after a negation"),
        /* sold */ L("token right before a full stop"),
        /* . */ L("full stop", "last token on a line"),
        /* It */ L("personal or possessive", "first token of a sentence", "first token on a line"),
        /* is */ L("form of 'to be'", "second token", "token right after a personal"),
        /* free */ L("freedom", "token right before a comma"),
        /* , */ L("comma"),
        /* GNU */ L("all-capitals", "token right after a comma"),
        /* software */ L("software term", "token right before a full stop"),
        /* . */ L("full stop", "last token of a paragraph"),
    };
#undef L
    size_t n = sizeof want / sizeof *want;
    ck_assert_uint_eq(d->n_tokens, n);
    for (size_t t = 0; t < n; t++)
        expect(a, t, d->tokens[t], want[t]);
    free(a);
    sae_synth_corpus_free(&c);

    /* context that needs a longer document: repeats, depth, quotes, numbering */
    tokenize("1. the \"work\" of the work <http://x.org> and these -able "
             "w w w w w w w w w w w w w w w w w w w w w w w w w w w w",
             &c);
    d = &c.docs[0];
    a = malloc(d->n_tokens * sae_synth_n_features());
    sae_synth_active(d, a);
    size_t nf = sae_synth_n_features();
    size_t numbered = feat("token in a paragraph that starts"), rep = feat("word repeated");
    size_t quotes = feat("token inside quotation"), angle = feat("token inside angle");
    size_t deep = feat("token at position 30"), of = feat("token right after 'of'");
    for (size_t t = 0; t < d->n_tokens; t++)
        ck_assert_msg(a[t * nf + numbered], "token %zu not in a numbered paragraph", t);
    /* tokens: 1 . the " work " of the work < http : / / x . org > and ... */
    ck_assert_str_eq(d->tokens[4], "work");
    ck_assert(a[4 * nf + quotes] && !a[4 * nf + rep]);
    ck_assert(!a[3 * nf + quotes] && !a[5 * nf + quotes]);
    ck_assert(a[7 * nf + of] && a[7 * nf + rep]); /* the second "the" */
    ck_assert(a[8 * nf + rep]);                   /* the second "work" */
    ck_assert_str_eq(d->tokens[10], "http");
    ck_assert(a[10 * nf + angle] && !a[9 * nf + angle]);
    /* the "." of x.org ends a sentence: "org" (16) starts one, so position 30 is token 46 */
    ck_assert_str_eq(d->tokens[16], "org");
    ck_assert(!a[45 * nf + deep] && a[46 * nf + deep]);
    free(a);
    sae_synth_corpus_free(&c);
}
END_TEST

/* Writes text to dir/name and returns the path (caller frees). */
static char *write_text(const char *dir, const char *name, const char *text)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return p;
}

/* Reads a whole file (caller frees); *len gets its size. */
static char *slurp(const char *path, size_t *len)
{
    char *b = sae_fixture_read_file(path, len);
    ck_assert_msg(b, "cannot read %s", path);
    return b;
}

static const char *sample_text =
    "GNU GENERAL PUBLIC LICENSE\n"
    "Version 3, 29 June 2007\n\n"
    "Everyone is permitted to copy and distribute verbatim copies of this\n"
    "license document, but changing it is not allowed.\n\n"
    "0. Definitions. \"This License\" refers to version 3 of the GNU General\n"
    "Public License (the \"Program\"). Each licensee is addressed as \"you\".\n"
    "To \"modify\" a work means to copy from or adapt all or part of the work.\n";

/* Least squares: the coefficients c (k) minimising ‖x − Σ c_i v_i‖ for k
 * vectors v (k, d), by the normal equations in double; returns the residual
 * norm. */
static double lsq(const float *x, const float *const *v, size_t k, size_t d, double *c)
{
    double g[16][17];
    for (size_t i = 0; i < k; i++) {
        for (size_t j = 0; j < k; j++) {
            double s = 0;
            for (size_t q = 0; q < d; q++)
                s += (double)v[i][q] * v[j][q];
            g[i][j] = s;
        }
        double s = 0;
        for (size_t q = 0; q < d; q++)
            s += (double)v[i][q] * x[q];
        g[i][k] = s;
    }
    for (size_t i = 0; i < k; i++) { /* Gauss-Jordan, the Gram matrix is well conditioned */
        for (size_t j = 0; j < k; j++) {
            if (j == i)
                continue;
            double f = g[j][i] / g[i][i];
            for (size_t q = i; q <= k; q++)
                g[j][q] -= f * g[i][q];
        }
    }
    for (size_t i = 0; i < k; i++)
        c[i] = g[i][k] / g[i][i];
    double r = 0;
    for (size_t q = 0; q < d; q++) {
        double y = x[q];
        for (size_t i = 0; i < k; i++)
            y -= c[i] * v[i][q];
        r += y * y;
    }
    return sqrt(r);
}

START_TEST(test_write_files)
{
    char *dir = sae_fixture_tmpdir("synth-files");
    char *text = write_text(dir, "sample.txt", sample_text);
    char out[600];
    snprintf(out, sizeof out, "%s/out", dir);
    sae_synth_opts o;
    sae_synth_opts_init(&o);
    const char *texts[1] = {text};
    o.texts = texts;
    o.n_texts = 1;
    o.d_in = 48;
    o.seed = 5;
    o.noise = 0;
    sae_synth_summary sum;
    sae_error err;
    ck_assert_msg(sae_synth_write(&o, out, &sum, &err) == 0, "%s", err.msg);

    /* the same text, tokenized and annotated here */
    sae_synth_corpus c = {0};
    ck_assert_int_eq(sae_synth_tokenize("sample.txt", sample_text, strlen(sample_text), 0, &c,
                                        &err),
                     0);
    ck_assert_uint_eq(sum.n_tokens, c.n_tokens);
    ck_assert_uint_eq(sum.n_docs, 3);
    size_t nf = sae_synth_n_features();
    ck_assert_uint_eq(sum.n_features, nf);

    char path[700];
    snprintf(path, sizeof path, "%s/activations.safetensors", out);
    sae_st_file *acts;
    ck_assert_msg(sae_st_open(path, &acts, &err) == 0, "%s", err.msg);
    const sae_st_tensor *at = sae_st_find(acts, "activations");
    ck_assert_ptr_nonnull(at);
    ck_assert_int_eq(at->dtype, SAE_DT_F32);
    ck_assert_int_eq(at->ndim, 2);
    ck_assert_uint_eq(at->shape[0], c.n_tokens);
    ck_assert_uint_eq(at->shape[1], 48);
    snprintf(path, sizeof path, "%s/truth.safetensors", out);
    sae_st_file *truth;
    ck_assert_msg(sae_st_open(path, &truth, &err) == 0, "%s", err.msg);
    const sae_st_tensor *dt = sae_st_find(truth, "directions");
    const sae_st_tensor *mt = sae_st_find(truth, "magnitudes");
    ck_assert(dt && mt && dt->ndim == 2 && dt->shape[0] == nf && dt->shape[1] == 48);
    const float *x = at->data, *dirs = dt->data, *mags = mt->data;
    for (size_t f = 0; f < nf; f++) {
        double s = 0;
        for (size_t j = 0; j < 48; j++)
            s += (double)dirs[f * 48 + j] * dirs[f * 48 + j];
        ck_assert_msg(fabs(s - 1) < 1e-5, "direction %zu not unit", f);
        ck_assert(mags[f] >= 1.5f && mags[f] <= 3.0f);
    }

    /* every row: a combination of exactly its active features */
    size_t *counts = calloc(nf, sizeof *counts), row = 0;
    for (size_t di = 0; di < c.n_docs; di++) {
        const sae_synth_doc *d = &c.docs[di];
        uint8_t *a = malloc(d->n_tokens * nf);
        sae_synth_active(d, a);
        for (size_t t = 0; t < d->n_tokens; t++, row++) {
            const float *v[16];
            size_t k = 0, ids[16];
            for (size_t f = 0; f < nf; f++)
                if (a[t * nf + f]) {
                    ck_assert_uint_lt(k, 16);
                    ids[k] = f;
                    v[k++] = dirs + f * 48;
                    counts[f]++;
                }
            double coef[16];
            double r = k ? lsq(x + row * 48, v, k, 48, coef) : 0;
            if (!k)
                for (size_t j = 0; j < 48; j++)
                    r += fabs(x[row * 48 + j]);
            ck_assert_msg(r < 1e-4, "row %zu ('%s') is not a combination of its %zu features "
                          "(residual %g)", row, d->tokens[t], k, r);
            for (size_t i = 0; i < k; i++) {
                double m = mags[ids[i]];
                ck_assert_msg(coef[i] >= 0.5 * m - 1e-4 && coef[i] <= 1.5 * m + 1e-4,
                              "row %zu feature %zu: coefficient %g for magnitude %g", row,
                              ids[i], coef[i], m);
            }
        }
        free(a);
    }

    /* truth.jsonl: index, label, count, magnitude for every feature */
    size_t len;
    snprintf(path, sizeof path, "%s/truth.jsonl", out);
    char *tj = slurp(path, &len), *line = tj;
    for (size_t f = 0; f < nf; f++) {
        char *nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(nl);
        *nl = 0;
        json_error_t je;
        json_t *obj = json_loads(line, 0, &je);
        ck_assert_ptr_nonnull(obj);
        ck_assert_int_eq(json_integer_value(json_object_get(obj, "index")), (json_int_t)f);
        ck_assert_str_eq(json_string_value(json_object_get(obj, "label")), sae_synth_label(f));
        ck_assert_int_eq(json_integer_value(json_object_get(obj, "count")), (json_int_t)counts[f]);
        ck_assert(fabs(json_number_value(json_object_get(obj, "magnitude")) - mags[f]) < 1e-6);
        json_decref(obj);
        line = nl + 1;
    }
    ck_assert_str_eq(line, "");
    free(tj);

    /* tokens.jsonl: the documents, their tokens adding up to the rows */
    snprintf(path, sizeof path, "%s/tokens.jsonl", out);
    char *tk = slurp(path, &len);
    line = tk;
    size_t total = 0;
    for (size_t di = 0; di < c.n_docs; di++) {
        char *nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(nl);
        *nl = 0;
        json_error_t je;
        json_t *obj = json_loads(line, JSON_REJECT_DUPLICATES, &je);
        ck_assert_ptr_nonnull(obj);
        ck_assert_str_eq(json_string_value(json_object_get(obj, "id")), c.docs[di].id);
        json_t *toks = json_object_get(obj, "tokens");
        ck_assert_uint_eq(json_array_size(toks), c.docs[di].n_tokens);
        for (size_t t = 0; t < c.docs[di].n_tokens; t++)
            ck_assert_str_eq(json_string_value(json_array_get(toks, t)), c.docs[di].tokens[t]);
        total += json_array_size(toks);
        json_decref(obj);
        line = nl + 1;
    }
    ck_assert_str_eq(line, "");
    ck_assert_uint_eq(total, at->shape[0]);
    free(tk);

    /* the loader used by `sae train --truth` reads both files */
    float *ld;
    size_t ln, ldim;
    char **labels;
    ck_assert_msg(sae_synth_load_truth(out, &ld, &ln, &ldim, &labels, &err) == 0, "%s",
                  err.msg);
    ck_assert_uint_eq(ln, nf);
    ck_assert_uint_eq(ldim, 48);
    ck_assert(memcmp(ld, dirs, nf * 48 * sizeof *ld) == 0);
    for (size_t f = 0; f < nf; f++) {
        ck_assert_str_eq(labels[f], sae_synth_label(f));
        free(labels[f]);
    }
    free(labels);
    free(ld);

    free(counts);
    sae_st_free(acts);
    sae_st_free(truth);
    sae_synth_corpus_free(&c);
    free(text);
    sae_fixture_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(test_deterministic)
{
    char *dir = sae_fixture_tmpdir("synth-det");
    char *text = write_text(dir, "sample.txt", sample_text);
    const char *texts[1] = {text};
    char out[3][600];
    uint64_t seeds[3] = {9, 9, 10};
    for (int i = 0; i < 3; i++) {
        snprintf(out[i], sizeof out[i], "%s/o%d", dir, i);
        sae_synth_opts o;
        sae_synth_opts_init(&o);
        o.texts = texts;
        o.n_texts = 1;
        o.d_in = 32;
        o.seed = seeds[i];
        sae_error err;
        ck_assert_msg(sae_synth_write(&o, out[i], NULL, &err) == 0, "%s", err.msg);
    }
    const char *files[] = {"activations.safetensors", "truth.safetensors", "truth.jsonl",
                           "tokens.jsonl"};
    for (int f = 0; f < 4; f++) {
        char p[3][2048];
        size_t len[3];
        char *b[3];
        for (int i = 0; i < 3; i++) {
            snprintf(p[i], sizeof p[i], "%s/%s", out[i], files[f]);
            b[i] = slurp(p[i], &len[i]);
        }
        ck_assert_msg(len[0] == len[1] && !memcmp(b[0], b[1], len[0]), "%s differs for one seed",
                      files[f]);
        if (f == 0 || f == 1)
            ck_assert_msg(memcmp(b[0], b[2], len[0]) != 0, "%s ignores the seed", files[f]);
        for (int i = 0; i < 3; i++)
            free(b[i]);
    }
    free(text);
    sae_fixture_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(test_bad_input)
{
    char *dir = sae_fixture_tmpdir("synth-bad");
    char missing[600], out[600];
    snprintf(missing, sizeof missing, "%s/nope.txt", dir);
    snprintf(out, sizeof out, "%s/out", dir);
    sae_synth_opts o;
    sae_synth_opts_init(&o);
    const char *t1[1] = {missing};
    o.texts = t1;
    o.n_texts = 1;
    sae_error err;
    ck_assert_int_ne(sae_synth_write(&o, out, NULL, &err), 0);
    ck_assert_msg(strstr(err.msg, "nope.txt"), "%s", err.msg);
    char *blank = write_text(dir, "blank.txt", " \n\n\t\n");
    const char *t2[1] = {blank};
    o.texts = t2;
    ck_assert_int_ne(sae_synth_write(&o, out, NULL, &err), 0);
    ck_assert_msg(strstr(err.msg, "blank.txt") && strstr(err.msg, "no tokens"), "%s", err.msg);
    /* a truth folder without truth files */
    float *d;
    size_t n, dim;
    ck_assert_int_ne(sae_synth_load_truth(dir, &d, &n, &dim, NULL, &err), 0);
    ck_assert_msg(strstr(err.msg, "truth.safetensors"), "%s", err.msg);
    free(blank);
    sae_fixture_rmtree(dir);
    free(dir);
}
END_TEST

START_TEST(test_match)
{
    size_t d = 20, g = 7, m = 9;
    sae_rng r;
    sae_rng_seed(&r, 4);
    float truth[7 * 20], w[9 * 20];
    for (size_t i = 0; i < g * d; i++)
        truth[i] = (float)sae_rng_normal(&r);
    for (size_t i = 0; i < m * d; i++)
        w[i] = (float)sae_rng_normal(&r);
    /* latent 3 = 2.5 x truth 5 plus a little, latent 8 = 0 */
    for (size_t j = 0; j < d; j++) {
        w[3 * d + j] = 2.5f * truth[5 * d + j] + 0.001f * (float)j;
        w[8 * d + j] = 0;
    }
    uint32_t best[9];
    float best_cos[9], truth_cos[7];
    double mmcs;
    sae_error err;
    ck_assert_int_eq(sae_synth_match(w, m, truth, g, d, best, best_cos, truth_cos, &mmcs, &err),
                     0);
    double total = 0;
    for (size_t t = 0; t < g; t++) {
        double top = -2;
        for (size_t i = 0; i < m; i++) {
            double dot = 0, nw = 0, nt = 0;
            for (size_t j = 0; j < d; j++) {
                dot += (double)w[i * d + j] * truth[t * d + j];
                nw += (double)w[i * d + j] * w[i * d + j];
                nt += (double)truth[t * d + j] * truth[t * d + j];
            }
            double c = nw > 0 ? dot / sqrt(nw * nt) : 0;
            top = c > top ? c : top;
        }
        ck_assert_msg(fabs(truth_cos[t] - top) < 1e-5, "truth %zu: %g vs %g", t, truth_cos[t],
                      top);
        total += top;
    }
    ck_assert(fabs(mmcs - total / g) < 1e-6);
    ck_assert_uint_eq(best[3], 5);
    ck_assert(best_cos[3] > 0.999f);
    ck_assert(best_cos[8] == 0.0f);
}
END_TEST

/* Brute-force cosine of rows a and b (d values); 0 when either is zero. */
static double cosine(const float *a, const float *b, size_t d)
{
    double dot = 0, na = 0, nb = 0;
    for (size_t j = 0; j < d; j++) {
        dot += (double)a[j] * b[j];
        na += (double)a[j] * a[j];
        nb += (double)b[j] * b[j];
    }
    return na > 0 && nb > 0 ? dot / sqrt(na * nb) : 0;
}

/* The labels of `sae train --truth`: a model of four latents against four
 * planted directions, on rows written to a file as training would read them.
 * Latent 0 is planted direction 0 (labelled), latent 1 is planted direction 1
 * but with a bias that keeps it off (dead, though its cosine is 1), latent 2
 * a random direction (unmatched, firing on about half the rows), latent 3 all
 * zero (dead, cosine 0). The firing counts are checked against a count made
 * here from the encoder's definition. */
START_TEST(test_explain)
{
    enum { D = 32, G = 4, M = 4, N = 500 };
    const char *labels[G] = {"alpha", "beta", "gamma", "delta"};
    float truth[G * D], w_enc[D * M] = {0}, b_enc[M] = {0}, w_dec[M * D] = {0}, b_dec[D] = {0};
    static float x[N * D];
    sae_rng r;
    sae_rng_seed(&r, 11);
    for (size_t i = 0; i < G * D; i++)
        truth[i] = (float)sae_rng_normal(&r);
    for (size_t i = 0; i < N * D; i++)
        x[i] = (float)sae_rng_normal(&r);
    for (size_t j = 0; j < D; j++) {
        w_dec[0 * D + j] = 3 * truth[0 * D + j];
        w_dec[1 * D + j] = truth[1 * D + j];
        w_dec[2 * D + j] = (float)sae_rng_normal(&r);
        for (size_t i = 0; i < 3; i++)
            w_enc[j * M + i] = w_dec[i * D + j];
    }
    b_enc[1] = -1e6f;
    double cos2 = -2;
    for (size_t t = 0; t < G; t++)
        cos2 = fmax(cos2, cosine(w_dec + 2 * D, truth + t * D, D));
    ck_assert_msg(cos2 < SAE_SYNTH_MATCH_COS - 0.05, "the random latent's cosine %g", cos2);
    uint64_t want[M] = {0};
    for (size_t n = 0; n < N; n++)
        for (size_t i = 0; i < M; i++) {
            double pre = b_enc[i];
            for (size_t j = 0; j < D; j++)
                pre += (double)x[n * D + j] * w_enc[j * M + i];
            want[i] += pre > 0;
        }
    ck_assert(want[0] > N / 4 && want[2] > N / 4 && !want[1] && !want[3]);

    char *dir = sae_fixture_tmpdir("synth-explain");
    char acts[600], path[600];
    snprintf(acts, sizeof acts, "%s/acts.safetensors", dir);
    snprintf(path, sizeof path, "%s/explanations.jsonl", dir);
    sae_error err;
    sae_st_writer *w = sae_st_writer_new();
    uint64_t shape[2] = {N, D};
    ck_assert_int_eq(sae_st_writer_add(w, "activations", SAE_DT_F32, 2, shape, x), 0);
    ck_assert_msg(sae_st_writer_save(w, acts, &err) == 0, "%s", err.msg);
    sae_st_writer_free(w);
    sae_model_spec spec = {.d_in = D, .d_sae = M, .arch = SAE_ARCH_STANDARD,
                           .norm = SAE_NORM_NONE, .norm_scaling_factor = 1,
                           .w_enc = w_enc, .b_enc = b_enc, .w_dec = w_dec, .b_dec = b_dec};
    sae_model *m;
    ck_assert_msg(sae_model_from_spec(&spec, &m, &err) == 0, "%s", err.msg);
    const char *paths[1] = {acts};

    uint64_t fires[M];
    ck_assert_msg(sae_synth_fire_counts(m, paths, 1, fires, &err) == 0, "%s", err.msg);
    for (size_t i = 0; i < M; i++)
        ck_assert_uint_eq(fires[i], want[i]);

    sae_synth_score sc;
    ck_assert_msg(sae_synth_explain(m, paths, 1, truth, labels, G, path, &sc, &err) == 0, "%s",
                  err.msg);
    ck_assert_uint_eq(sc.d_sae, M);
    ck_assert_uint_eq(sc.n_planted, G);
    ck_assert_uint_eq(sc.n_labelled, 1);
    ck_assert_uint_eq(sc.n_unmatched, 1);
    ck_assert_uint_eq(sc.n_dead, 2);
    ck_assert_uint_eq(sc.recovered, 2); /* latents 0 and 1 at cosine 1 */
    char unmatched[64];
    snprintf(unmatched, sizeof unmatched, "unmatched (cos %.2f)", cos2);
    const char *desc[M] = {"alpha", "dead", unmatched, "dead"};
    const double score[M] = {1, 1, cos2, 0};
    char *text = sae_fixture_read_file(path, NULL);
    ck_assert_ptr_nonnull(text);
    char *line = text;
    for (size_t i = 0; i < M; i++) {
        char *nl = strchr(line, '\n');
        ck_assert_ptr_nonnull(nl);
        *nl = '\0';
        json_error_t je;
        json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &je);
        ck_assert_msg(o && json_object_size(o) == 4, "line %zu: %s", i, line);
        ck_assert_int_eq(json_integer_value(json_object_get(o, "index")), (json_int_t)i);
        ck_assert_str_eq(json_string_value(json_object_get(o, "description")), desc[i]);
        ck_assert_msg(fabs(json_real_value(json_object_get(o, "score")) - score[i]) < 1e-4,
                      "line %zu: %s", i, line);
        ck_assert(json_is_string(json_object_get(o, "source")));
        json_decref(o);
        line = nl + 1;
    }
    ck_assert_str_eq(line, "");
    free(text);
    sae_model_free(m);
    sae_fixture_rmtree(dir);
    free(dir);
}
END_TEST

/* ---- ground truth on the default corpus (slow suite) ---- */

/* Synth output of the default corpus with seed, then a default-settings
 * standard SAE at d_sae = mult x the planted features: MMCS >= 0.98. */
static void recovery(size_t mult, uint64_t seed)
{
    struct stat st;
    if (stat(SAE_SYNTH_DEFAULT_DIR, &st) != 0) {
        fprintf(stderr, "synth recovery: %s missing, skipped\n", SAE_SYNTH_DEFAULT_DIR);
        return;
    }
    char *dir = sae_fixture_tmpdir("synth-recovery");
    sae_synth_opts so;
    sae_synth_opts_init(&so);
    so.seed = seed;
    sae_synth_summary sum;
    sae_error err;
    ck_assert_msg(sae_synth_write(&so, dir, &sum, &err) == 0, "%s", err.msg);
    char path[600];
    snprintf(path, sizeof path, "%s/activations.safetensors", dir);
    const char *paths[1] = {path};
    sae_train_data *data;
    ck_assert_msg(sae_train_data_open(paths, 1, &data, &err) == 0, "%s", err.msg);
    sae_train_opts o;
    sae_train_opts_init(&o);
    o.d_sae = mult * sum.n_features;
    o.seed = seed;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_t c0 = clock();
    sae_trainer *t;
    ck_assert_msg(sae_trainer_new(&o, data, &t, &err) == 0, "%s", err.msg);
    ck_assert_msg(sae_trainer_run(t, NULL, NULL, &err) == 0, "%s", err.msg);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    double cpu = (double)(clock() - c0) / CLOCKS_PER_SEC;
    float *dirs;
    size_t n, d;
    ck_assert_int_eq(sae_synth_load_truth(dir, &dirs, &n, &d, NULL, &err), 0);
    double mmcs;
    float *tc = malloc(n * sizeof *tc);
    ck_assert_int_eq(
        sae_synth_match(sae_trainer_w_dec(t), o.d_sae, dirs, n, d, NULL, NULL, tc, &mmcs, &err),
        0);
    size_t worst = 0;
    for (size_t i = 1; i < n; i++)
        worst = tc[i] < tc[worst] ? i : worst;
    const sae_train_opts *ro = sae_trainer_opts(t);
    const sae_train_stats *ls = sae_trainer_last(t);
    fprintf(stderr,
            "synth recovery seed=%llu: %zu tokens x %zu dims, %zu planted, d_sae=%zu: MMCS "
            "%.4f (worst: '%s' %.3f), %zu steps x %zu rows, %.1f s wall (%.1f s cpu), l0 %.2f "
            "(planted %.2f), fvu %.4f, resampled %zu\n",
            (unsigned long long)seed, sum.n_tokens, sum.d_in, n, o.d_sae, mmcs,
            sae_synth_label(worst), tc[worst], ro->steps, ro->batch, secs, cpu, ls->l0,
            sum.mean_l0, ls->fvu, ls->resampled);
    ck_assert_msg(mmcs >= 0.98, "MMCS %.4f < 0.98 at d_sae %zu", mmcs, o.d_sae);
    free(tc);
    free(dirs);
    sae_trainer_free(t);
    sae_train_data_free(data);
    sae_fixture_rmtree(dir);
    free(dir);
}

START_TEST(test_recovery_g)
{
    recovery(1, 0);
}
END_TEST

START_TEST(test_recovery_2g)
{
    recovery(2, 1);
}
END_TEST

static Suite *fast_suite(void)
{
    Suite *s = suite_create("synth");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_tokenizer);
    tcase_add_test(tc, test_rules);
    tcase_add_test(tc, test_write_files);
    tcase_add_test(tc, test_deterministic);
    tcase_add_test(tc, test_bad_input);
    tcase_add_test(tc, test_match);
    tcase_add_test(tc, test_explain);
    suite_add_tcase(s, tc);
    return s;
}

static Suite *slow_suite(void)
{
    Suite *s = suite_create("synth_slow");
    TCase *tc = tcase_create("recovery");
    tcase_set_timeout(tc, 600);
    tcase_add_test(tc, test_recovery_g);
    tcase_add_test(tc, test_recovery_2g);
    suite_add_tcase(s, tc);
    return s;
}

int main(int argc, char **argv)
{
    bool slow = argc > 1 && !strcmp(argv[1], "slow");
    return unit_run(slow ? slow_suite() : fast_suite());
}
