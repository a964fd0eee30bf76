/* test_dashboards.c: core/index/index_dash.c and core/lm against brute force
 * in double precision: logit tables over several product blocks (top and
 * bottom 10, ties, the histogram), neuron alignment, correlated neurons from
 * streamed blocks, W_U composed from a GPT-2-layout checkpoint, and
 * SAEDashboard's activation bars (index_hist.h). */
#include <math.h>
#include <string.h>
#include <sys/stat.h>

#include "index/dashboards.h"
#include "index/index_hist.h"
#include "io/safetensors.h"
#include "lm/unembed.h"
#include "lm/vocab.h"
#include "unit.h"

/* Uniform in [-1, 1) from a simple LCG (tests need no quality). */
static float uni(uint64_t *s)
{
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*s >> 11) / 9007199254740992.0 * 2 - 1);
}

START_TEST(test_logit_tables_match_brute_force_over_blocks)
{
    enum { D_SAE = 37, D_IN = 12, V = 523 };
    static float wd[D_SAE * D_IN], wu[D_IN * V];
    uint64_t s = 1;
    for (size_t i = 0; i < D_SAE * D_IN; i++)
        wd[i] = uni(&s);
    for (size_t i = 0; i < D_IN * V; i++)
        wu[i] = uni(&s);
    wd[5 * D_IN + 0] = 0; /* feature 5: a zero row, every logit ties at 0 */
    for (size_t j = 0; j < D_IN; j++)
        wd[5 * D_IN + j] = 0;
    static sae_logit_table t[D_SAE];
    ck_assert_int_eq(sae_logit_tables(wd, D_SAE, D_IN, wu, V, 8, t, NULL), 0); /* 5 blocks */
    for (size_t f = 0; f < D_SAE; f++) {
        double y[V];
        size_t order[V];
        for (size_t v = 0; v < V; v++) {
            y[v] = 0;
            for (size_t j = 0; j < D_IN; j++)
                y[v] += (double)wd[f * D_IN + j] * wu[j * V + v];
            order[v] = v;
        }
        /* selection by value descending, ties by id */
        for (size_t a = 0; a < SAE_LOGIT_ROWS; a++)
            for (size_t b = a + 1; b < V; b++)
                if (y[order[b]] > y[order[a]] + 1e-5 ||
                    (fabs(y[order[b]] - y[order[a]]) <= 1e-5 && order[b] < order[a])) {
                    size_t x = order[a];
                    order[a] = order[b];
                    order[b] = x;
                }
        ck_assert_uint_eq(t[f].n_pos, SAE_LOGIT_ROWS);
        for (size_t i = 0; i < SAE_LOGIT_ROWS; i++) {
            ck_assert_uint_eq(t[f].pos_ids[i], order[i]);
            ck_assert_double_eq_tol(t[f].pos_values[i], y[order[i]], 1e-5);
        }
        double lo = y[0], hi = y[0];
        for (size_t v = 0; v < V; v++) {
            lo = fmin(lo, y[v]);
            hi = fmax(hi, y[v]);
        }
        ck_assert_double_le(t[f].neg_values[0], t[f].neg_values[9]);
        ck_assert_double_eq_tol(t[f].neg_values[0], lo, 1e-5);
        uint64_t total = 0;
        for (size_t b = 0; b < SAE_LOGIT_BINS; b++)
            total += t[f].hist[b];
        ck_assert_uint_eq(total, V);
        if (f == 5) { /* min == max widens to [-1, 1]: everything in the middle bin */
            ck_assert_double_eq(t[f].hist_min, -1);
            ck_assert_uint_eq(t[f].hist[25], V);
            ck_assert_uint_eq(t[f].pos_ids[0], 0);
            ck_assert_uint_eq(t[f].neg_ids[9], 9);
            continue;
        }
        ck_assert_double_eq_tol(t[f].hist_min, lo, 1e-5);
        ck_assert_double_eq_tol(t[f].hist_max, hi, 1e-5);
        /* the extreme values land in the first and last bins */
        ck_assert_uint_ge(t[f].hist[0], 1);
        ck_assert_uint_ge(t[f].hist[SAE_LOGIT_BINS - 1], 1);
    }
}
END_TEST

START_TEST(test_alignment_and_correlations_match_brute_force)
{
    enum { D_SAE = 6, D_IN = 5, N = 40 };
    float w[D_IN] = {0.5f, -2.0f, 0.5f, 1.5f, 0.25f};
    uint32_t idx[3];
    float val[3], l1[3];
    size_t n;
    sae_neuron_alignment(w, D_IN, idx, val, l1, &n);
    ck_assert_uint_eq(n, 3);
    ck_assert_uint_eq(idx[0], 3); /* largest, not largest in magnitude */
    ck_assert_uint_eq(idx[1], 0); /* tie 0.5 / 0.5: the lower index */
    ck_assert_uint_eq(idx[2], 2);
    ck_assert_float_eq_tol(l1[0], 1.5f / 4.75f, 1e-7);

    static float x[N * D_IN], f[N][D_SAE];
    uint64_t s = 9;
    sae_corr *c;
    ck_assert_int_eq(sae_corr_new(D_SAE, D_IN, &c, NULL), 0);
    for (size_t r = 0; r < N; r++)
        for (size_t j = 0; j < D_IN; j++)
            x[r * D_IN + j] = uni(&s);
    for (size_t blk = 0; blk < N; blk += 16) { /* three blocks, the last short */
        sae_sparse sp;
        sae_sparse_init(&sp);
        for (size_t r = blk; r < N && r < blk + 16; r++) {
            uint32_t ii[D_SAE];
            float vv[D_SAE];
            size_t k = 0;
            for (uint32_t g = 0; g < D_SAE; g++) {
                float a = x[r * D_IN + g % D_IN] * (g + 1) + uni(&s) * 0.3f;
                f[r][g] = a > 0 ? a : 0;
                if (a > 0) {
                    ii[k] = g;
                    vv[k++] = a;
                }
            }
            ck_assert_int_eq(sae_sparse_push_row(&sp, ii, vv, k, NULL), 0);
        }
        sae_corr_feed(c, x + blk * D_IN, &sp);
        sae_sparse_free(&sp);
    }
    for (size_t g = 0; g < D_SAE; g++) {
        double p[D_IN];
        for (size_t j = 0; j < D_IN; j++) {
            double mf = 0, mx = 0, sff = 0, sxx = 0, sfx = 0;
            for (size_t r = 0; r < N; r++) {
                mf += f[r][g] / N;
                mx += x[r * D_IN + j] / N;
            }
            for (size_t r = 0; r < N; r++) {
                double a = f[r][g] - mf, b = x[r * D_IN + j] - mx;
                sff += a * a;
                sxx += b * b;
                sfx += a * b;
            }
            p[j] = sfx / sqrt(sff * sxx);
        }
        uint32_t ci[3];
        float cp[3], cc[3];
        sae_corr_top(c, g, ci, cp, cc, &n);
        ck_assert_uint_eq(n, 3);
        ck_assert_uint_eq(ci[0], g % D_IN); /* the dimension the feature is built from */
        for (size_t i = 0; i < 3; i++) {
            ck_assert_double_eq_tol(cp[i], p[ci[i]], 1e-4);
            for (size_t j = 0; j < D_IN; j++) /* nothing left out beats the third */
                if (j != ci[0] && j != ci[1] && j != ci[2])
                    ck_assert_double_le(p[j], cp[2] + 1e-6);
        }
    }
    sae_corr_free(c);
}
END_TEST

START_TEST(test_gpt2_checkpoint_composes_as_transformer_lens)
{
    enum { D = 4, V = 6 };
    float e[V * D], g[D] = {0.5f, 1, 2, 1.5f}, b[D] = {0.1f, 0.2f, 0.3f, 0.4f};
    uint64_t s = 3;
    for (size_t i = 0; i < V * D; i++)
        e[i] = uni(&s);
    char *dir = unit_path("gpt2"), *cfg = unit_path("gpt2/config.json"),
         *st = unit_path("gpt2/model.safetensors"), *voc = unit_path("vocab.json");
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    FILE *fp = fopen(cfg, "w");
    fputs("{\"model_type\": \"gpt2\"}", fp);
    fclose(fp);
    sae_st_writer *w = sae_st_writer_new();
    uint64_t se[2] = {V, D}, sg[1] = {D};
    ck_assert_int_eq(sae_st_writer_add_f32(w, "wte.weight", SAE_DT_F32, 2, se, e), 0);
    ck_assert_int_eq(sae_st_writer_add_f32(w, "ln_f.weight", SAE_DT_F32, 1, sg, g), 0);
    ck_assert_int_eq(sae_st_writer_add_f32(w, "ln_f.bias", SAE_DT_F32, 1, sg, b), 0);
    ck_assert_int_eq(sae_st_writer_save(w, st, NULL), 0);
    sae_st_writer_free(w);
    sae_unembed u;
    ck_assert_int_eq(sae_unembed_load(dir, &u, NULL), 0);
    ck_assert_str_eq(u.kind, "gpt2");
    ck_assert_uint_eq(u.d_model, D);
    ck_assert_uint_eq(u.n_vocab, V);
    /* W = diag(g) E^T, centred over d_model per token, then over the vocabulary per row */
    double wt[D][V];
    for (size_t v = 0; v < V; v++) {
        double m = 0;
        for (size_t j = 0; j < D; j++)
            m += (wt[j][v] = (double)g[j] * e[v * D + j]) / D;
        for (size_t j = 0; j < D; j++)
            wt[j][v] -= m;
    }
    for (size_t j = 0; j < D; j++) {
        double m = 0;
        for (size_t v = 0; v < V; v++)
            m += wt[j][v] / V;
        for (size_t v = 0; v < V; v++)
            ck_assert_double_eq_tol(u.w[j * V + v], wt[j][v] - m, 1e-6);
    }
    sae_unembed_free(&u);

    fp = fopen(voc, "w");
    fputs("{\"\\u0120the\": 0, \"a\\u010ab\": 2, \"\\u00e2\\u0122\\u0136\": 1}", fp);
    fclose(fp);
    sae_lm_vocab vb;
    size_t len;
    ck_assert_int_eq(sae_lm_vocab_read(voc, &vb, NULL), 0);
    ck_assert_str_eq(sae_lm_vocab_token(&vb, 0, &len), " the");
    ck_assert_str_eq(sae_lm_vocab_token(&vb, 1, &len), "\xe2\x80\x94");
    ck_assert_str_eq(sae_lm_vocab_token(&vb, 2, &len), "a\nb");
    ck_assert_str_eq(sae_lm_vocab_token(&vb, 3, &len), SAE_LM_OUT_OF_RANGE);
    sae_lm_vocab_free(&vb);
    free(dir);
    free(cfg);
    free(st);
    free(voc);
}
END_TEST

/* SAEDashboard's activation bars (index_hist.h): torch.histc's bar of a value
 * against exact arithmetic (they may differ only within float rounding of an
 * edge), its top edge, a single-valued feature, edges that are whole numbers,
 * and the bar values against the bins' centres. */
START_TEST(test_np_bars_match_brute_force)
{
    uint64_t s = 7;
    size_t near = 0;
    for (int trial = 0; trial < 200; trial++) {
        float lo = (uni(&s) + 1.0f) * 0.5f + 1e-3f, hi = lo + (uni(&s) + 1.0f) * 4.0f + 1e-3f;
        for (int i = 0; i < 100; i++) {
            float v = lo + (uni(&s) + 1.0f) * 0.5f * (hi - lo);
            if (v > hi)
                v = hi;
            long double q = ((long double)v - lo) * 50 / ((long double)hi - lo);
            size_t want = q >= 50 ? 49 : (size_t)q, got = sae_np_bar(v, lo, hi);
            if (fabsl(q - roundl(q)) < 1e-4L)
                near += got != want;
            else
                ck_assert_msg(got == want, "v %.9g in [%.9g, %.9g]: bar %zu, exact %zu", v, lo,
                              hi, got, want);
        }
        ck_assert_uint_eq(sae_np_bar(lo, lo, hi), 0);
        ck_assert_uint_eq(sae_np_bar(hi, lo, hi), SAE_NP_HIST_BARS - 1);
        double val[SAE_NP_HIST_BARS];
        sae_np_bar_values(lo, hi, val);
        for (int j = 0; j < SAE_NP_HIST_BARS; j++) {
            double c = lo + (j + 0.5) * ((double)hi - lo) / SAE_NP_HIST_BARS;
            ck_assert_msg(fabs(val[j] - c) <= 1.01e-5, "bar %d value %.9g, centre %.9g", j,
                          val[j], c);
            ck_assert_msg(fabs(val[j] * 1e5 - round(val[j] * 1e5)) < 1e-6, "%.17g", val[j]);
        }
    }
    ck_assert_uint_le(near, 5);
    /* Whole-number edges [1, 51]: v in bar v - 1, the top edge in the last. */
    for (int v = 1; v <= 51; v++)
        ck_assert_uint_eq(sae_np_bar((float)v, 1.0f, 51.0f), v == 51 ? 49 : (size_t)(v - 1));
    /* One value: histc widens the range by 1 either side, all in bar 25;
     * every bar's value is the value. */
    ck_assert_uint_eq(sae_np_bar(0.75f, 0.75f, 0.75f), 25);
    double val[SAE_NP_HIST_BARS];
    sae_np_bar_values(0.75f, 0.75f, val);
    for (int j = 0; j < SAE_NP_HIST_BARS; j++)
        ck_assert(val[j] == 0.75);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("dashboards");
    TCase *tc = tcase_create("dashboards");
    tcase_add_checked_fixture(tc, unit_setup, unit_teardown);
    tcase_add_test(tc, test_logit_tables_match_brute_force_over_blocks);
    tcase_add_test(tc, test_alignment_and_correlations_match_brute_force);
    tcase_add_test(tc, test_gpt2_checkpoint_composes_as_transformer_lens);
    tcase_add_test(tc, test_np_bars_match_brute_force);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
