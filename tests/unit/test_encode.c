/* test_encode.c: the encode/decode kernels (core/sae/encode.c) against the naive
 * double-precision oracle (tests/oracle/reference.c), for every architecture,
 * normalisation mode, apply_b_dec_to_input, weight layout and dtype.
 *
 * Tolerances. For a row, let M = 1 + max_j |margin_j| (margin from
 * sae_ref_encode_row: the signed distance of feature j to its activity
 * decision), and τ = 1e-5·M.
 *  - A feature is "fragile" when |margin_j| < τ: float rounding may flip it.
 *    Every other feature must be active in the kernel exactly when the oracle
 *    has f_j > 0.
 *  - A returned value v_j with oracle value r_j must satisfy
 *    |v_j − r_j| ≤ 1e-4·|r_j| + τ.
 *  - Rows with a fragile feature skip the l0/reconstruction/metrics
 *    comparison (a flipped feature legitimately changes them) and are counted;
 *    every test asserts they are rare, so the comparison is never vacuous.
 *  - l0 equals the oracle's count of f_j > 0, exactly, on the other rows, and
 *    always equals the length of the kernel's own unfiltered list.
 *  - Reconstruction: |x̂_j − x̂ref_j| ≤ 1e-4·(1 + max_j |x̂ref_j|).
 *  - Metrics: |got − ref| ≤ 1e-4·|ref| + 1e-6·(1 + ref scale), where the
 *    scale is mean(x²) for mse and 1 for fvu and cosine.
 *  - Ordering (values descending, ties by index ascending) is checked exactly.
 * The options top_k/threshold must return exactly the prefix rule applied to
 * the unfiltered list, with l0 and metrics bit-identical to the unfiltered
 * call. */
#include <check.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sae/encode.h"
#include "fixture.h"
#include "reference.h"
#include "io/rng.h"
#include "unit.h"

/* What the current check is about, for failure messages. */
static char ctx[256];

/* An assertion for hot loops: Check's own ck_assert records every passing
 * assertion with a write to its log pipe, which for millions of per-feature
 * checks costs more than the test itself. This one only reports failures. */
#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)

/* A model built in memory, with the arrays it borrows. */
typedef struct tmodel {
    sae_model *m;
    float *w_enc;   /* (d_in, d_sae) */
    float *w_enc_t; /* (d_sae, d_in): the same weights in sparsify's layout */
    float *b_enc, *threshold, *b_gate, *b_mag, *r_mag; /* (d_sae) */
    float *w_dec;                                      /* (d_sae, d_in) */
    float *b_dec;                                      /* (d_in) */
} tmodel;

/* n normal draws times scale plus shift. */
static float *randn(sae_rng *r, size_t n, double scale, double shift)
{
    float *a = malloc(n * sizeof *a);
    ck_assert_ptr_nonnull(a);
    for (size_t i = 0; i < n; i++)
        a[i] = (float)(sae_rng_normal(r) * scale + shift);
    return a;
}

/* Builds a random model of the given shape. Biases are chosen so that roughly
 * a sixth of features fire on standard-normal inputs; decoder rows have norms
 * spread over [0.5, 2] so rescaling matters. */
static void tmodel_make(tmodel *t, sae_arch arch, sae_norm norm, bool apply_b_dec, bool rescale,
                        size_t d_in, size_t d_sae, size_t k, uint64_t seed)
{
    sae_rng r;
    sae_rng_seed(&r, seed);
    memset(t, 0, sizeof *t);
    t->w_enc = randn(&r, d_in * d_sae, 1.0 / sqrt((double)d_in), 0);
    t->w_enc_t = malloc(d_in * d_sae * sizeof *t->w_enc_t);
    ck_assert_ptr_nonnull(t->w_enc_t);
    for (size_t i = 0; i < d_in; i++)
        for (size_t j = 0; j < d_sae; j++)
            t->w_enc_t[j * d_in + i] = t->w_enc[i * d_sae + j];
    t->w_dec = randn(&r, d_sae * d_in, 1.0 / sqrt((double)d_in), 0);
    for (size_t j = 0; j < d_sae; j++) {
        double s = 0.5 + 1.5 * sae_rng_uniform(&r);
        for (size_t i = 0; i < d_in; i++)
            t->w_dec[j * d_in + i] *= (float)s;
    }
    t->b_dec = randn(&r, d_in, 0.2, 0);
    /* topk: about 8 of 72 features positive, so k = 9 often keeps negatives
     * that the ReLU must then drop */
    t->b_enc = randn(&r, d_sae, 0.3, arch == SAE_ARCH_TOPK ? -1.2 : -1.0);
    t->threshold = randn(&r, d_sae, 0.5, 0.1);
    t->b_gate = randn(&r, d_sae, 0.3, -0.8);
    t->b_mag = randn(&r, d_sae, 0.3, 0.0);
    t->r_mag = randn(&r, d_sae, 0.2, 0.0);
    sae_model_spec s = {
        .d_in = d_in,
        .d_sae = d_sae,
        .arch = arch,
        .k = k,
        .rescale_acts_by_decoder_norm = rescale,
        .apply_b_dec_to_input = apply_b_dec,
        .norm = norm,
        .norm_scaling_factor = 0.7f,
        .w_enc = t->w_enc,
        .b_enc = t->b_enc,
        .w_dec = t->w_dec,
        .b_dec = t->b_dec,
        .threshold = t->threshold,
        .b_gate = t->b_gate,
        .b_mag = t->b_mag,
        .r_mag = t->r_mag,
    };
    sae_error err;
    ck_assert_msg(sae_model_from_spec(&s, &t->m, &err) == 0, "%s", err.msg);
}

static void tmodel_free(tmodel *t)
{
    sae_model_free(t->m);
    free(t->w_enc);
    free(t->w_enc_t);
    free(t->b_enc);
    free(t->threshold);
    free(t->b_gate);
    free(t->b_mag);
    free(t->r_mag);
    free(t->w_dec);
    free(t->b_dec);
}

/* n rows of inputs: row 0 all zeros, row 1 constant (edge cases of the
 * normalisations and of fvu), the rest normal with a per-row scale and
 * offset so layer_norm and constant_norm_rescale have work to do. */
static float *make_inputs(size_t n, size_t d_in, uint64_t seed)
{
    sae_rng r;
    sae_rng_seed(&r, seed);
    float *x = calloc(n * d_in, sizeof *x);
    ck_assert_ptr_nonnull(x);
    for (size_t i = 0; i < n; i++) {
        double scale = 0.5 + 2.0 * sae_rng_uniform(&r), off = sae_rng_normal(&r) * 0.3;
        for (size_t j = 0; j < d_in; j++) {
            if (i == 0 && n > 2)
                x[j] = 0.0f;
            else if (i == 1 && n > 2)
                x[d_in + j] = 0.5f;
            else
                x[i * d_in + j] = (float)(sae_rng_normal(&r) * scale + off);
        }
    }
    return x;
}

/* What the kernel/oracle comparison saw, so tests can insist it was not vacuous. */
typedef struct check_stats {
    size_t rows, fragile_rows, active;
    size_t features, fragile_features; /* every feature judged, and those within the bound */
} check_stats;

/* Compares one row's kernel output (its unfiltered list idx/val[0..n),
 * metrics and reconstruction) with the oracle. Returns true when the row
 * had a fragile feature. */
static bool check_row(const sae_model *m, const float *x, const uint32_t *idx, const float *val,
                      size_t n, const sae_row_metrics *met, const float *recon, check_stats *st)
{
    size_t d_sae = m->d_sae, d_in = m->d_in;
    double *f = malloc(d_sae * sizeof *f), *margin = malloc(d_sae * sizeof *margin);
    double *xh = malloc(d_in * sizeof *xh);
    char *got = calloc(d_sae, 1);
    ck_assert(f && margin && xh && got);
    sae_ref_encode_row(m, x, f, margin);
    double M = 1.0;
    for (size_t j = 0; j < d_sae; j++)
        M = fmax(M, 1.0 + fabs(margin[j]));
    double tau = 1e-5 * M;
    /* 16-bit weights: each feature's own bound B_j (kernel.h) in the units
     * of its margin, plus for top-k the largest B (the cut moves by that). */
    double *bnd = calloc(d_sae, sizeof *bnd), bmax = 0;
    ck_assert_ptr_nonnull(bnd);
    if (m->w_enc_h) {
        sae_ref_abs_dot(m, x, bnd);
        double e = sae_kernel_input_eps(m->kernel), n = (double)d_in;
        double g = n * 0x1p-24 / (1 - n * 0x1p-24);
        for (size_t j = 0; j < d_sae; j++) {
            bnd[j] = (e + g * (1 + e)) * bnd[j] + n * 0x1p-126;
            if (m->arch == SAE_ARCH_GATED)
                bnd[j] *= fmax(1.0, m->exp_r_mag[j]);
            if (m->arch == SAE_ARCH_TOPK && m->rescale_acts_by_decoder_norm)
                bnd[j] *= m->dec_norm[j];
            bmax = fmax(bmax, bnd[j]);
        }
        if (m->arch == SAE_ARCH_TOPK)
            for (size_t j = 0; j < d_sae; j++)
                bnd[j] += bmax;
    }

    /* ordering, range, uniqueness */
    for (size_t t = 0; t < n; t++) {
        CHECK(idx[t] < d_sae, "%s: index %u out of range", ctx, idx[t]);
        CHECK(!got[idx[t]], "%s: index %u twice", ctx, idx[t]);
        got[idx[t]] = 1;
        CHECK(m->signed_topk ? val[t] != 0.0f : val[t] > 0.0f,
              "%s: returned value %g not positive", ctx, val[t]);
        if (t > 0)
            CHECK(val[t - 1] > val[t] || (val[t - 1] == val[t] && idx[t - 1] < idx[t]),
                  "%s: order broken at position %zu", ctx, t);
    }
    /* active set and values */
    bool fragile = false;
    size_t ref_l0 = 0;
    for (size_t j = 0; j < d_sae; j++) {
        ref_l0 += f[j] != 0.0; /* > 0 but for a signed top-k */
        st->features++;
        if (fabs(margin[j]) < tau + bnd[j]) {
            fragile = true;
            st->fragile_features++;
            continue;
        }
        CHECK((f[j] != 0.0) == (got[j] != 0),
              "%s: feature %zu active %d in kernel, oracle f=%.9g margin=%.3g", ctx, j, got[j],
              f[j], margin[j]);
    }
    for (size_t t = 0; t < n; t++) {
        if (fabs(margin[idx[t]]) < tau + bnd[idx[t]])
            continue;
        double r = f[idx[t]];
        CHECK(fabs(val[t] - r) <= 1e-4 * fabs(r) + tau + bnd[idx[t]],
              "%s: feature %u value %.9g, oracle %.9g, bound %.3g", ctx, idx[t], val[t], r,
              bnd[idx[t]]);
    }
    st->rows++;
    st->active += n;
    if (met)
        CHECK(met->l0 == n, "%s: l0 %u but %zu returned unfiltered", ctx, met->l0, n);
    if (fragile)
        st->fragile_rows++;
    /* A fragile feature may flip, which changes l0 and (but for 16-bit
     * weights, whose reconstruction is checked on the kernel's own values)
     * the reconstruction and metrics. */
    if (fragile && !m->w_enc_h)
        goto out;
    if (!fragile)
        CHECK(n == ref_l0, "%s: l0 %zu, oracle %zu", ctx, n, ref_l0);
    if (m->transcoder) /* no reconstruction of x: decode is checked by check_decode */
        goto out;
    if (m->w_enc_h) {
        /* The values themselves were held to the bound above; what follows
         * from them (reconstruction, metrics) is checked exactly on them. */
        for (size_t j = 0; j < d_sae; j++)
            f[j] = 0.0;
        for (size_t t = 0; t < n; t++)
            f[idx[t]] = val[t];
    }
    sae_ref_reconstruct_row(m, x, f, xh);
    double xmax = 0, x2 = 0;
    for (size_t j = 0; j < d_in; j++) {
        xmax = fmax(xmax, fabs(xh[j]));
        x2 += (double)x[j] * x[j] / (double)d_in;
    }
    if (recon)
        for (size_t j = 0; j < d_in; j++)
            CHECK(fabs(recon[j] - xh[j]) <= 1e-4 * (1.0 + xmax),
                  "%s: reconstruction[%zu] %.9g, oracle %.9g", ctx, j, recon[j], xh[j]);
    if (met) {
        double mse, fvu, cosine;
        sae_ref_metrics(x, xh, d_in, &mse, &fvu, &cosine);
        CHECK(fabs(met->mse - mse) <= 1e-4 * mse + 1e-6 * (1 + x2), "%s: mse %.9g, oracle %.9g",
              ctx, met->mse, mse);
        CHECK(fabs(met->fvu - fvu) <= 1e-4 * fvu + 1e-6, "%s: fvu %.9g, oracle %.9g", ctx, met->fvu,
              fvu);
        CHECK(fabs(met->cosine - cosine) <= 1e-4 * fabs(cosine) + 1e-6,
              "%s: cosine %.9g, oracle %.9g", ctx, met->cosine, cosine);
    }
out:
    free(bnd);
    free(f);
    free(margin);
    free(xh);
    free(got);
    return fragile;
}

/* Decodes the kernel's own output with sae_decode and compares every row with
 * sae_ref_decode_sparse: |got − ref| ≤ 1e-4·(1 + max |ref|). */
static void check_decode(const sae_model *m, const sae_sparse *sp)
{
    size_t d_in = m->d_out; /* the decoder's width: d_in but for a transcoder */
    float *out = malloc(sp->n_rows * d_in * sizeof *out + 1);
    double *ref = malloc(d_in * sizeof *ref);
    ck_assert(out && ref);
    sae_error err;
    CHECK(sae_decode(m, sp, out, &err) == 0, "%s: %s", ctx, err.msg);
    for (size_t r = 0; r < sp->n_rows; r++) {
        size_t a = sp->row_ptr[r];
        sae_ref_decode_sparse(m, sp->idx + a, sp->val + a, sp->row_ptr[r + 1] - a, ref);
        double mx = 0;
        for (size_t j = 0; j < d_in; j++)
            mx = fmax(mx, fabs(ref[j]));
        for (size_t j = 0; j < d_in; j++)
            CHECK(fabs(out[r * d_in + j] - ref[j]) <= 1e-4 * (1 + mx),
                  "%s: decode row %zu [%zu] %.9g, oracle %.9g", ctx, r, j, out[r * d_in + j],
                  ref[j]);
    }
    free(out);
    free(ref);
}

/* Encodes x (n rows) with a workspace of block_rows, checks every row against
 * the oracle, the options filter against the unfiltered list, and decode. */
static void check_batch(const sae_model *m, size_t block_rows, const float *x, size_t n,
                        check_stats *st)
{
    sae_workspace *ws = sae_workspace_new(m, block_rows);
    ck_assert_ptr_nonnull(ws);
    sae_sparse sp, fl;
    sae_sparse_init(&sp);
    sae_sparse_init(&fl);
    sae_row_metrics *met = malloc(n * sizeof *met), *met2 = malloc(n * sizeof *met2);
    float *recon = malloc(n * m->d_in * sizeof *recon);
    ck_assert(met && met2 && recon);
    sae_error err;
    if (m->transcoder) {
        /* reconstruction and metrics against the input are refused */
        CHECK(sae_encode(m, ws, x, n, NULL, &sp, met, NULL, &err) == SAE_EINVAL &&
                  strstr(err.msg, "transcoder"),
              "%s: a transcoder gave metrics", ctx);
        CHECK(sae_encode(m, ws, x, n, NULL, &sp, NULL, recon, &err) == SAE_EINVAL,
              "%s: a transcoder gave a reconstruction", ctx);
        CHECK(sp.n_rows == 0, "%s: a refused encode appended rows", ctx);
        free(met);
        free(met2);
        free(recon);
        met = met2 = NULL;
        recon = NULL;
    }
    CHECK(sae_encode(m, ws, x, n, NULL, &sp, met, recon, &err) == 0, "%s: %s", ctx, err.msg);
    ck_assert_uint_eq(sp.n_rows, n);
    for (size_t r = 0; r < n; r++) {
        size_t a = sp.row_ptr[r];
        check_row(m, x + r * m->d_in, sp.idx + a, sp.val + a, sp.row_ptr[r + 1] - a,
                  met ? &met[r] : NULL, recon ? recon + r * m->d_in : NULL, st);
    }

    /* options filter only the returned list */
    sae_encode_opts o = {.top_k = 3, .has_threshold = true, .threshold = 0.4f};
    CHECK(sae_encode(m, ws, x, n, &o, &fl, met2, NULL, &err) == 0, "%s: %s", ctx, err.msg);
    ck_assert_uint_eq(fl.n_rows, n);
    for (size_t r = 0; r < n; r++) {
        size_t a = sp.row_ptr[r], na = sp.row_ptr[r + 1] - a;
        size_t want = 0;
        while (want < na && want < o.top_k && sp.val[a + want] > o.threshold)
            want++;
        size_t b = fl.row_ptr[r], nb = fl.row_ptr[r + 1] - b;
        CHECK(nb == want, "%s: row %zu filtered to %zu, want %zu", ctx, r, nb, want);
        for (size_t t = 0; t < nb; t++) {
            CHECK(fl.idx[b + t] == sp.idx[a + t], "%s: row %zu filtered index differs", ctx, r);
            CHECK(fl.val[b + t] == sp.val[a + t], "%s: row %zu filtered value differs", ctx, r);
        }
        if (!met)
            continue;
        CHECK(met2[r].l0 == met[r].l0, "%s: row %zu l0 changed by options", ctx, r);
        CHECK(met2[r].mse == met[r].mse && met2[r].fvu == met[r].fvu &&
                  met2[r].cosine == met[r].cosine,
              "%s: row %zu metrics changed by options", ctx, r);
    }
    check_decode(m, &sp);

    free(met);
    free(met2);
    free(recon);
    sae_sparse_free(&sp);
    sae_sparse_free(&fl);
    sae_workspace_free(ws);
}

static const char *const arch_label[] = {"standard", "jumprelu", "topk", "gated"};
static const sae_norm norms[] = {SAE_NORM_NONE, SAE_NORM_CONSTANT_NORM_RESCALE, SAE_NORM_LAYER_NORM,
                                 SAE_NORM_EXPECTED_AVERAGE_ONLY_IN};

/* One architecture variant across the 4 normalisations x apply_b_dec_to_input,
 * batch sizes 1, 7 and 33 rows with 16-row blocks (three blocks, the last a
 * single row so the sgemv path runs inside a multi-block call), and both
 * W_enc layouts (the sparsify layout is held to the same oracle, so the two
 * layouts agree within the tolerances above). */
static void run_arch(sae_arch arch, bool rescale)
{
    check_stats st = {0};
    const size_t d_in = 24, d_sae = 72;
    for (size_t ni = 0; ni < 4; ni++) {
        for (int bd = 0; bd < 2; bd++) {
            tmodel t;
            uint64_t seed = 1000 + 10 * ni + (uint64_t)bd + 100 * (uint64_t)arch;
            /* topk: k 3 is below the 5 chunks of 16 (the chunk-skipping
             * path), k 9 above (every element goes to the heap) */
            size_t k = bd ? 9 : 3;
            tmodel_make(&t, arch, norms[ni], bd, rescale, d_in, d_sae, k, seed);
            float *x = make_inputs(33, d_in, seed + 7);
            for (int layout = 0; layout < 2; layout++) {
                t.m->w_enc_t = layout == 1;
                t.m->w_enc = layout == 1 ? t.w_enc_t : t.w_enc;
                static const size_t batches[] = {1, 7, 33};
                for (size_t b = 0; b < 3; b++) {
                    snprintf(ctx, sizeof ctx, "%s%s norm=%s b_dec=%d layout=%s batch=%zu",
                             arch_label[arch], rescale ? "+rescale" : "", sae_norm_name(norms[ni]),
                             bd, layout ? "sparsify" : "saelens", batches[b]);
                    /* batch 1 uses row 2 (a random row), others start at 0 */
                    const float *xs = batches[b] == 1 ? x + 2 * d_in : x;
                    check_batch(t.m, 16, xs, batches[b], &st);
                }
            }
            free(x);
            tmodel_free(&t);
        }
    }
    /* 8 configs x 2 layouts x (1 + 7 + 33) rows */
    ck_assert_uint_eq(st.rows, 8 * 2 * 41);
    ck_assert_msg(st.fragile_rows * 20 < st.rows, "too many fragile rows: %zu of %zu",
                  st.fragile_rows, st.rows);
    ck_assert_msg(st.active > st.rows, "almost nothing fired: %zu actives in %zu rows", st.active,
                  st.rows);
}

START_TEST(test_standard)
{
    run_arch(SAE_ARCH_STANDARD, false);
}
END_TEST

START_TEST(test_jumprelu)
{
    run_arch(SAE_ARCH_JUMPRELU, false);
}
END_TEST

START_TEST(test_topk)
{
    run_arch(SAE_ARCH_TOPK, false);
}
END_TEST

START_TEST(test_topk_rescale)
{
    run_arch(SAE_ARCH_TOPK, true);
}
END_TEST

START_TEST(test_gated)
{
    run_arch(SAE_ARCH_GATED, false);
}
END_TEST

/* A variant of a tmodel's model (its arrays borrowed): the SAELens <= 5
 * finetuning scaling factor, the signed top-k of the 2024 EleutherAI sae, or
 * a transcoder of d_out outputs (W_dec read as (d_sae, d_out), b_dec as its
 * first d_out entries). */
typedef struct variant {
    const float *dec_scale;
    bool signed_topk, transcoder;
    size_t d_out;
    bool apply_b_dec;
} variant;

/* Rebuilds t->m as variant v of itself. */
static void tmodel_variant(tmodel *t, const variant *v)
{
    sae_model *old = t->m;
    sae_model_spec s = {
        .d_in = old->d_in, .d_sae = old->d_sae, .d_out = v->d_out, .arch = old->arch,
        .transcoder = v->transcoder, .signed_topk = v->signed_topk, .k = old->k,
        .rescale_acts_by_decoder_norm = old->rescale_acts_by_decoder_norm,
        .apply_b_dec_to_input = v->apply_b_dec, .norm = old->norm,
        .norm_scaling_factor = old->norm_scaling_factor, .w_enc = t->w_enc, .b_enc = t->b_enc,
        .w_dec = t->w_dec, .b_dec = t->b_dec, .threshold = t->threshold, .b_gate = t->b_gate,
        .b_mag = t->b_mag, .r_mag = t->r_mag, .dec_scale = v->dec_scale,
    };
    sae_error err;
    ck_assert_msg(sae_model_from_spec(&s, &t->m, &err) == 0, "%s", err.msg);
    sae_model_free(old);
}

/* Runs check_batch over batches 1, 7 and 33 of variant v for arch, norms
 * none and layer_norm, k 3 and 9, and insists the comparison was not
 * vacuous. */
static void run_variant(sae_arch arch, const variant *v, const char *label)
{
    check_stats st = {0};
    const size_t d_in = 24, d_sae = 72;
    const sae_norm vn[] = {SAE_NORM_NONE, SAE_NORM_LAYER_NORM};
    for (size_t ni = 0; ni < 2; ni++)
        for (int kk = 0; kk < 2; kk++) {
            tmodel t;
            uint64_t seed = 5000 + 10 * ni + (uint64_t)kk + 100 * (uint64_t)arch;
            tmodel_make(&t, arch, vn[ni], v->apply_b_dec, false, d_in, d_sae, kk ? 9 : 3, seed);
            tmodel_variant(&t, v);
            float *x = make_inputs(33, d_in, seed + 7);
            static const size_t batches[] = {1, 7, 33};
            for (size_t b = 0; b < 3; b++) {
                snprintf(ctx, sizeof ctx, "%s %s norm=%s k=%d batch=%zu", label,
                         arch_label[arch], sae_norm_name(vn[ni]), kk ? 9 : 3, batches[b]);
                check_batch(t.m, 16, batches[b] == 1 ? x + 2 * d_in : x, batches[b], &st);
            }
            free(x);
            tmodel_free(&t);
        }
    ck_assert_uint_eq(st.rows, 4 * 41);
    ck_assert_msg(st.fragile_rows * 20 < st.rows, "too many fragile rows: %zu of %zu",
                  st.fragile_rows, st.rows);
    ck_assert_msg(st.active > st.rows, "almost nothing fired: %zu actives in %zu rows", st.active,
                  st.rows);
}

/* SAELens <= 5's finetuning scaling factor: decode is (f ⊙ s)·W_dec + b_dec,
 * and reconstruction and metrics go through it (forward = decode(encode));
 * encode is untouched. s spans negative, small and large values. */
START_TEST(test_finetuning_scaling_factor)
{
    float s[72];
    sae_rng r;
    sae_rng_seed(&r, 91);
    for (size_t i = 0; i < 72; i++)
        s[i] = (float)(sae_rng_normal(&r) * 1.5 + 0.5);
    const sae_arch archs[] = {SAE_ARCH_STANDARD, SAE_ARCH_JUMPRELU, SAE_ARCH_TOPK, SAE_ARCH_GATED};
    for (size_t a = 0; a < 4; a++) {
        variant v = {.dec_scale = s, .apply_b_dec = true};
        run_variant(archs[a], &v, "scaling_factor");
    }
    /* the factor is really used: one feature's decode moves by (s − 1)·W_dec,i */
    tmodel t;
    tmodel_make(&t, SAE_ARCH_STANDARD, SAE_NORM_NONE, true, false, 24, 72, 0, 92);
    float plain[24], scaled[24];
    uint32_t idx = 5;
    float val = 2.0f;
    sae_decode_row(t.m, &idx, &val, 1, plain);
    variant v = {.dec_scale = s, .apply_b_dec = true};
    tmodel_variant(&t, &v);
    sae_decode_row(t.m, &idx, &val, 1, scaled);
    for (size_t j = 0; j < 24; j++)
        ck_assert_float_eq_tol(scaled[j] - plain[j], (s[5] - 1) * 2.0f * t.w_dec[5 * 24 + j], 1e-5);
    tmodel_free(&t);
}
END_TEST

/* The signed top-k: k features by |pre|, signs kept, no ReLU. Negative
 * values must come out (else the test would not tell signed from ReLU). */
START_TEST(test_signed_topk)
{
    variant v = {.signed_topk = true, .apply_b_dec = true};
    run_variant(SAE_ARCH_TOPK, &v, "signed");
    tmodel t;
    tmodel_make(&t, SAE_ARCH_TOPK, SAE_NORM_NONE, true, false, 24, 72, 9, 93);
    tmodel_variant(&t, &v);
    float *x = make_inputs(33, 24, 94);
    sae_workspace *ws = sae_workspace_new(t.m, 0);
    sae_sparse sp;
    sae_sparse_init(&sp);
    sae_error err;
    ck_assert_int_eq(sae_encode(t.m, ws, x, 33, NULL, &sp, NULL, NULL, &err), 0);
    size_t neg = 0;
    for (size_t i = 0; i < sp.nnz; i++)
        neg += sp.val[i] < 0;
    ck_assert_msg(neg > 33, "only %zu negative values in %zu", neg, sp.nnz);
    ck_assert_uint_eq(sp.nnz, 9 * 33); /* k per row, even the zero row: no ReLU drops any */
    sae_sparse_free(&sp);
    sae_workspace_free(ws);
    free(x);
    tmodel_free(&t);
}
END_TEST

/* Transcoders: W_dec (d_sae, d_out), decode to d_out with no inverse
 * normalisation, no b_dec on the input (SAELens) or with it when d_out =
 * d_in (sparsify before 2025-02); reconstruction metrics refused. */
START_TEST(test_transcoder)
{
    const sae_arch archs[] = {SAE_ARCH_STANDARD, SAE_ARCH_JUMPRELU, SAE_ARCH_TOPK};
    for (size_t a = 0; a < 3; a++) {
        variant v = {.transcoder = true, .d_out = 20, .apply_b_dec = false};
        run_variant(archs[a], &v, "transcoder");
    }
    variant v = {.transcoder = true, .d_out = 24, .apply_b_dec = true};
    run_variant(SAE_ARCH_TOPK, &v, "sparsify transcoder");
    /* b_dec cannot be subtracted from an input of another width */
    tmodel t;
    tmodel_make(&t, SAE_ARCH_STANDARD, SAE_NORM_NONE, true, false, 24, 72, 0, 95);
    sae_model_spec s = {.d_in = 24, .d_sae = 72, .d_out = 20, .transcoder = true,
                        .apply_b_dec_to_input = true, .w_enc = t.w_enc, .b_enc = t.b_enc,
                        .w_dec = t.w_dec, .b_dec = t.b_dec};
    sae_model *m = NULL;
    sae_error err;
    ck_assert_int_eq(sae_model_from_spec(&s, &m, &err), SAE_EINVAL);
    tmodel_free(&t);
}
END_TEST

/* A bigger model with the default block size (256) and 300 rows, so the
 * default path crosses a block boundary, and d_sae not a multiple of the
 * 16-wide chunks of the fused pass. */
START_TEST(test_default_blocks)
{
    static const sae_arch archs[] = {SAE_ARCH_STANDARD, SAE_ARCH_TOPK};
    for (size_t a = 0; a < 2; a++) {
        check_stats st = {0};
        tmodel t;
        tmodel_make(&t, archs[a], SAE_NORM_LAYER_NORM, true, true, 48, 1000, 40, 77 + a);
        float *x = make_inputs(300, 48, 78);
        snprintf(ctx, sizeof ctx, "%s d_sae=1000 batch=300 default blocks", arch_label[archs[a]]);
        check_batch(t.m, 0, x, 300, &st);
        ck_assert_uint_eq(st.rows, 300);
        ck_assert(st.fragile_rows * 20 < st.rows);
        ck_assert(st.active > 10 * st.rows);
        free(x);
        tmodel_free(&t);
    }
}
END_TEST

/* True when /proc/cpuinfo's flags list `flag` (false where it is absent). */
static bool cpuinfo_has(const char *flag)
{
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[4096];
    bool has = false;
    size_t n = strlen(flag);
    while (f && !has && fgets(line, sizeof line, f)) {
        if (strncmp(line, "flags", 5))
            continue;
        for (char *p = strstr(line, flag); p && !has; p = strstr(p + 1, flag))
            has = p[-1] == ' ' && (p[n] == ' ' || p[n] == '\n');
    }
    if (f)
        fclose(f);
    return has;
}

/* Every kernel this machine can run for dt into out (3), the best first:
 * BF16 on avx512-bf16 (where the CPU has it), avx2-bf16 and plain C; F16 on
 * avx2-f16c and plain C; F32 on OpenBLAS. Returns how many. */
static size_t kernels_of(sae_dtype dt, sae_kernel *out)
{
    size_t n = 0;
    bool caps[3][2] = {{true, true}, {false, true}, {false, false}};
    for (int c = 0; c < 3; c++) {
        sae_kernel k = sae_kernel_pick_capped(dt, caps[c][0], caps[c][1]);
        if (!n || out[n - 1] != k)
            out[n++] = k;
    }
    return n;
}

/* Models written by the fixture writer in one dtype and loaded with
 * sae_model_load exactly as saed loads them (F16/BF16 kept in 16 bits and
 * run on every kernel this CPU has, F32 mapped in place; F32 compute checked
 * to convert), for every architecture and the sparsify layout.
 * One folder per architecture: the normalisation and apply_b_dec_to_input
 * are then switched on the loaded model (their cfg parsing is the loader's
 * own test), so each dtype meets all 4 x 2 settings without writing (and
 * fsyncing) a folder for each. Batches 1, 7 and 33 over 16-row blocks. */
static void run_dtype(sae_dtype dt)
{
    static const struct {
        sae_arch arch;
        bool rescale, sparsify;
    } kinds[] = {
        {SAE_ARCH_STANDARD, false, false}, {SAE_ARCH_JUMPRELU, false, false},
        {SAE_ARCH_TOPK, false, false},     {SAE_ARCH_TOPK, true, false},
        {SAE_ARCH_GATED, false, false},    {SAE_ARCH_TOPK, false, true},
    };
    sae_kernel kernels[3];
    size_t n_kernels = kernels_of(dt, kernels);
#if defined(__x86_64__)
    /* This test runs where the build runs; on a CPU with AVX512-BF16 the
     * pick must be that kernel (/proc/cpuinfo's flag, read apart from the
     * library's CPUID test). */
    if (dt == SAE_DT_BF16 && cpuinfo_has("avx512_bf16"))
        ck_assert_int_eq(kernels[0], SAE_KERNEL_AVX512_BF16);
    if (dt == SAE_DT_BF16 && __builtin_cpu_supports("avx2"))
        ck_assert(n_kernels >= 2);
#endif
    check_stats st = {0};
    size_t configs = 0;
    char *root = sae_fixture_tmpdir("encode-dtype");
    ck_assert_ptr_nonnull(root);
    for (size_t kd = 0; kd < sizeof kinds / sizeof kinds[0]; kd++) {
        sae_fixture_opts fo;
        sae_fixture_defaults(&fo);
        fo.d_in = 24;
        fo.d_sae = 72;
        fo.k = 9;
        fo.arch = kinds[kd].arch;
        fo.rescale_acts_by_decoder_norm = kinds[kd].rescale;
        fo.sparsify = kinds[kd].sparsify;
        fo.dtype = dt;
        fo.seed = 300 + 10 * kd;
        fo.target_l0 = kinds[kd].arch == SAE_ARCH_TOPK ? 0 : 12;
        char dir[512];
        snprintf(dir, sizeof dir, "%s/m%zu", root, kd);
        sae_error err;
        ck_assert_msg(sae_fixture_write_model(dir, &fo, &err) == 0, "%s", err.msg);
        sae_model *m;
        ck_assert_msg(sae_model_load(dir, &m, NULL, &err) == 0, "%s", err.msg);
        ck_assert_str_eq(m->dtype, sae_dtype_name(dt));
        ck_assert(m->w_enc_t == kinds[kd].sparsify);
        ck_assert(m->arch == fo.arch &&
                  m->rescale_acts_by_decoder_norm == fo.rescale_acts_by_decoder_norm);
        /* F32 compute converts at load, as before 16-bit kernels. */
        sae_model *m32;
        ck_assert_msg(sae_model_load_with(dir, SAE_COMPUTE_F32, &m32, NULL, &err) == 0, "%s",
                      err.msg);
        ck_assert(m32->w_enc && m32->w_dec && !m32->w_enc_h && !m32->w_dec_h &&
                  m32->kernel == SAE_KERNEL_BLAS_F32);
        sae_model_free(m32);
        ck_assert((m->w_enc_h != NULL) == (dt != SAE_DT_F32));
        float *x = make_inputs(33, fo.d_in, fo.seed + 1);
        for (size_t kn = 0; kn < n_kernels; kn++)
        for (size_t ni = 0; ni < 4; ni++) {
            for (int bd = 0; bd < 2; bd++) {
                m->kernel = kernels[kn];
                m->norm = norms[ni];
                m->norm_scaling_factor = 0.7f;
                m->apply_b_dec_to_input = bd;
                static const size_t batches[] = {1, 7, 33};
                for (size_t b = 0; b < 3; b++) {
                    snprintf(
                        ctx, sizeof ctx, "%s %s %s%s%s norm=%s b_dec=%d batch=%zu",
                        sae_kernel_name(m->kernel), sae_dtype_name(dt),
                        arch_label[fo.arch], fo.rescale_acts_by_decoder_norm ? "+rescale" : "",
                        fo.sparsify ? " (sparsify)" : "", sae_norm_name(m->norm), bd, batches[b]);
                    check_batch(m, 16, batches[b] == 1 ? x + 2 * fo.d_in : x, batches[b], &st);
                }
                configs++;
            }
        }
        free(x);
        sae_model_free(m);
    }
    sae_fixture_rmtree(root);
    free(root);
    ck_assert_uint_eq(configs, 6 * 8 * n_kernels);
    ck_assert_uint_eq(st.rows, configs * 41);
    /* Within the 16-bit bound many rows have some feature near its decision;
     * few features are. */
    if (dt == SAE_DT_F32)
        ck_assert_msg(st.fragile_rows * 20 < st.rows, "too many fragile rows: %zu of %zu",
                      st.fragile_rows, st.rows);
    else
        ck_assert_msg(st.fragile_features * 20 < st.features,
                      "too many features within the bound: %zu of %zu", st.fragile_features,
                      st.features);
    ck_assert_msg(st.active > 2 * st.rows, "almost nothing fired: %zu actives in %zu rows",
                  st.active, st.rows);
}

START_TEST(test_loaded_f32)
{
    run_dtype(SAE_DT_F32);
}
END_TEST

START_TEST(test_loaded_f16)
{
    run_dtype(SAE_DT_F16);
}
END_TEST

START_TEST(test_loaded_bf16)
{
    run_dtype(SAE_DT_BF16);
}
END_TEST

/* One thread of test_concurrent: encodes the rows `reps` times with its own
 * workspace into its own output (checked by the main thread, since Check's
 * assertions belong to the test's thread). */
typedef struct conc_job {
    const sae_model *m;
    const float *x;
    size_t n, reps;
    sae_sparse out;
    sae_row_metrics *met; /* (n) */
    int rc;
} conc_job;

static void *conc_run(void *arg)
{
    conc_job *j = arg;
    sae_workspace *ws = sae_workspace_new(j->m, 32);
    sae_error err;
    j->rc = ws ? 0 : SAE_ENOMEM;
    for (size_t r = 0; r < j->reps && !j->rc; r++) {
        sae_sparse_reset(&j->out);
        j->rc = sae_encode(j->m, ws, j->x, j->n, NULL, &j->out, j->met, NULL, &err);
    }
    sae_workspace_free(ws);
    return NULL;
}

/* sae_encode from four threads at once (as the daemon's workers call it),
 * each with its own workspace, sharing one model: every thread's result must
 * match a single-threaded run (indices exactly, values and metrics to
 * 1e-6 relative; BLAS may split work differently when called concurrently). */
START_TEST(test_concurrent)
{
    tmodel t;
    tmodel_make(&t, SAE_ARCH_TOPK, SAE_NORM_LAYER_NORM, true, true, 48, 1000, 24, 4242);
    const size_t n = 100;
    float *x = make_inputs(n, 48, 4243);
    conc_job base = {.m = t.m, .x = x, .n = n, .reps = 1};
    sae_sparse_init(&base.out);
    base.met = malloc(n * sizeof *base.met);
    ck_assert_ptr_nonnull(base.met);
    conc_run(&base);
    ck_assert_int_eq(base.rc, 0);
    enum { THREADS = 4 };
    conc_job jobs[THREADS];
    pthread_t tid[THREADS];
    for (int i = 0; i < THREADS; i++) {
        jobs[i] = (conc_job){.m = t.m, .x = x, .n = n, .reps = 5};
        sae_sparse_init(&jobs[i].out);
        jobs[i].met = malloc(n * sizeof *jobs[i].met);
        ck_assert_ptr_nonnull(jobs[i].met);
        ck_assert_int_eq(pthread_create(&tid[i], NULL, conc_run, &jobs[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        pthread_join(tid[i], NULL);
    for (int i = 0; i < THREADS; i++) {
        ck_assert_int_eq(jobs[i].rc, 0);
        ck_assert_uint_eq(jobs[i].out.n_rows, n);
        ck_assert_uint_eq(jobs[i].out.nnz, base.out.nnz);
        for (size_t r = 0; r <= n; r++)
            CHECK(jobs[i].out.row_ptr[r] == base.out.row_ptr[r], "thread %d row %zu length", i, r);
        for (size_t e = 0; e < base.out.nnz; e++) {
            CHECK(jobs[i].out.idx[e] == base.out.idx[e], "thread %d entry %zu index", i, e);
            CHECK(fabsf(jobs[i].out.val[e] - base.out.val[e]) <= 1e-6f * fabsf(base.out.val[e]),
                  "thread %d entry %zu value %.9g vs %.9g", i, e, jobs[i].out.val[e],
                  base.out.val[e]);
        }
        for (size_t r = 0; r < n; r++)
            CHECK(jobs[i].met[r].l0 == base.met[r].l0 &&
                      fabs(jobs[i].met[r].mse - base.met[r].mse) <= 1e-6 * base.met[r].mse,
                  "thread %d row %zu metrics", i, r);
        sae_sparse_free(&jobs[i].out);
        free(jobs[i].met);
    }
    ck_assert_uint_gt(base.out.nnz, 10 * n);
    sae_sparse_free(&base.out);
    free(base.met);
    free(x);
    tmodel_free(&t);
}
END_TEST

/* Exact ties: every feature identical, so every value is equal. topk must keep
 * the k lowest indices, and every list must be in index order (100 active
 * features: longer than the insertion sort takes, so the heap sort too). */
START_TEST(test_ties)
{
    enum { D_SAE = 100 };
    const size_t d_in = 8, d_sae = D_SAE, k = 5;
    float w_enc[8 * D_SAE], w_dec[D_SAE * 8], b_enc[D_SAE], b_dec[8] = {0};
    for (size_t i = 0; i < d_in; i++)
        for (size_t j = 0; j < d_sae; j++)
            w_enc[i * d_sae + j] = (float)(i + 1) * 0.125f;
    for (size_t j = 0; j < d_sae; j++) {
        b_enc[j] = 0.5f;
        for (size_t i = 0; i < d_in; i++)
            w_dec[j * d_in + i] = 0.25f;
    }
    float x[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    for (int topk = 0; topk < 2; topk++) {
        sae_model_spec s = {.d_in = d_in,
                            .d_sae = d_sae,
                            .arch = topk ? SAE_ARCH_TOPK : SAE_ARCH_STANDARD,
                            .k = k,
                            .rescale_acts_by_decoder_norm = true,
                            .w_enc = w_enc,
                            .b_enc = b_enc,
                            .w_dec = w_dec,
                            .b_dec = b_dec};
        sae_model *m;
        sae_error err;
        ck_assert_msg(sae_model_from_spec(&s, &m, &err) == 0, "%s", err.msg);
        sae_workspace *ws = sae_workspace_new(m, 0);
        ck_assert_ptr_nonnull(ws);
        sae_sparse sp;
        sae_sparse_init(&sp);
        sae_encode_opts o = {.top_k = 3};
        ck_assert_int_eq(sae_encode(m, ws, x, 1, NULL, &sp, NULL, NULL, &err), 0);
        ck_assert_int_eq(sae_encode(m, ws, x, 1, &o, &sp, NULL, NULL, &err), 0);
        size_t want = topk ? k : d_sae;
        ck_assert_uint_eq(sp.row_ptr[1], want);
        for (size_t t = 0; t < want; t++) {
            ck_assert_uint_eq(sp.idx[t], t);
            ck_assert(sp.val[t] == sp.val[0]);
        }
        ck_assert_uint_eq(sp.row_ptr[2] - sp.row_ptr[1], 3);
        for (size_t t = 0; t < 3; t++)
            ck_assert_uint_eq(sp.idx[sp.row_ptr[1] + t], t);
        /* 0.5 + 0.125·(1+...+8) = 5; rescaled by ||W_dec,i|| = 0.25·√8 */
        double v = topk ? 5.0 * 0.25 * sqrt(8.0) : 5.0;
        ck_assert_msg(fabs(sp.val[0] - v) < 1e-5, "value %.9g, want %.9g", sp.val[0], v);
        sae_sparse_free(&sp);
        sae_workspace_free(ws);
        sae_model_free(m);
    }
}
END_TEST

/* topk with exact ties everywhere: integer weights and inputs make every
 * pre-activation an exact small integer, so kernel and oracle must agree
 * exactly, ties at the k-th place included (lower index wins), on both
 * selection paths (k below and above the number of 16-feature chunks). Also
 * a hand case where equal maxima sit in chunks 0, 1 and 3. */
START_TEST(test_topk_exact_ties)
{
    const size_t d_in = 8, d_sae = 200;
    float *w_enc = malloc(d_in * d_sae * sizeof *w_enc), *w_dec = malloc(d_sae * d_in * 4);
    float b_enc[200] = {0}, b_dec[8] = {0}, x[8];
    ck_assert(w_enc && w_dec);
    sae_rng r;
    sae_rng_seed(&r, 99);
    for (size_t i = 0; i < d_in * d_sae; i++) {
        w_enc[i] = (float)sae_rng_below(&r, 3) - 1.0f;
        w_dec[i] = 0.5f;
    }
    static const size_t ks[] = {4, 13, 20}; /* 13 chunks: 4 below, 20 above */
    for (size_t ki = 0; ki < 3; ki++) {
        sae_model_spec s = {.d_in = d_in,
                            .d_sae = d_sae,
                            .arch = SAE_ARCH_TOPK,
                            .k = ks[ki],
                            .apply_b_dec_to_input = true,
                            .w_enc = w_enc,
                            .b_enc = b_enc,
                            .w_dec = w_dec,
                            .b_dec = b_dec};
        sae_model *m;
        sae_error err;
        ck_assert_msg(sae_model_from_spec(&s, &m, &err) == 0, "%s", err.msg);
        sae_workspace *ws = sae_workspace_new(m, 0);
        ck_assert_ptr_nonnull(ws);
        for (int row = 0; row < 50; row++) {
            for (size_t i = 0; i < d_in; i++)
                x[i] = (float)sae_rng_below(&r, 5) - 2.0f;
            double f[200], rv[200];
            uint32_t ri[200];
            sae_ref_encode_row(m, x, f, NULL);
            size_t rn = sae_ref_sparse(f, d_sae, ri, rv);
            sae_sparse sp;
            sae_sparse_init(&sp);
            ck_assert_int_eq(sae_encode(m, ws, x, 1, NULL, &sp, NULL, NULL, &err), 0);
            CHECK(sp.nnz == rn, "k=%zu row %d: %zu features, oracle %zu", ks[ki], row, sp.nnz, rn);
            for (size_t t = 0; t < rn; t++)
                CHECK(sp.idx[t] == ri[t] && sp.val[t] == (float)rv[t],
                      "k=%zu row %d [%zu]: (%u, %g), oracle (%u, %g)", ks[ki], row, t, sp.idx[t],
                      sp.val[t], ri[t], rv[t]);
            sae_sparse_free(&sp);
        }
        sae_workspace_free(ws);
        sae_model_free(m);
    }

    /* d_in 1, x = 1: pre = W_enc row. Value 5 at features 5, 20 and 50
     * (chunks 0, 1, 3), 1 elsewhere; k = 2 keeps 5 and 20. */
    float w1[64], b1[64] = {0}, wd1[64], bd1[1] = {0}, one[1] = {1};
    for (size_t j = 0; j < 64; j++) {
        w1[j] = (j == 5 || j == 20 || j == 50) ? 5.0f : 1.0f;
        wd1[j] = 1.0f;
    }
    sae_model_spec s1 = {.d_in = 1,
                         .d_sae = 64,
                         .arch = SAE_ARCH_TOPK,
                         .k = 2,
                         .apply_b_dec_to_input = true,
                         .w_enc = w1,
                         .b_enc = b1,
                         .w_dec = wd1,
                         .b_dec = bd1};
    sae_model *m1;
    sae_error err;
    ck_assert_msg(sae_model_from_spec(&s1, &m1, &err) == 0, "%s", err.msg);
    sae_workspace *ws1 = sae_workspace_new(m1, 0);
    sae_sparse sp1;
    sae_sparse_init(&sp1);
    ck_assert_int_eq(sae_encode(m1, ws1, one, 1, NULL, &sp1, NULL, NULL, &err), 0);
    ck_assert_uint_eq(sp1.nnz, 2);
    ck_assert_uint_eq(sp1.idx[0], 5);
    ck_assert_uint_eq(sp1.idx[1], 20);
    sae_sparse_free(&sp1);
    sae_workspace_free(ws1);
    sae_model_free(m1);
    free(w_enc);
    free(w_dec);
}
END_TEST

/* Hand-computed values for tiny models of each kind, independent of both the
 * kernel and the oracle. d_in 2, three distinct features, W_enc columns
 * (1,0), (0,1), (1,−1), b_dec = 0, x = (2, 1): x'·W_enc = (2, 1, 1). Each
 * case runs with the three features once (d_sae 3: the fused pass's scalar
 * tail) and tiled six times (d_sae 18: its 16-wide chunks too), where every
 * expected feature appears at j, j+3, ..., ties in index order. */
START_TEST(test_hand_values)
{
    const float w_enc3[6] = {1, 0, 1, 0, 1, -1};
    const float w_dec3[6] = {3, 4, 0, 2, 1, 0}; /* norms 5, 2, 1 */
    const float b_enc3[3] = {-0.5f, -1.5f, 0.25f};
    const float thr_a[3] = {1.0f, -1.0f, 1.3f};
    const float thr_b[3] = {1.5f, -1.0f, 1.2499999f}; /* 1.5 is not > 1.5 (strict) */
    const float b_gate3[3] = {-1.5f, 0.0f, -1.0f};    /* gate of feature 2 is exactly 0 */
    const float b_mag3[3] = {0.5f, -2.5f, 1.0f};
    const float r_mag3[3] = {0.0f, 0.0f, 0.69314718f}; /* exp = 1, 1, 2 */
    float x[2] = {2, 1}, b_dec[2] = {0, 0};
    struct {
        sae_arch arch;
        bool rescale;
        const float *thr;
        size_t k, n;
        uint32_t idx[3];
        float val[3];
        float recon[2];
    } cases[] = {
        /* pre = (1.5, -0.5, 1.25); recon 1.5·(3,4) + 1.25·(1,0) */
        {SAE_ARCH_STANDARD, false, NULL, 0, 2, {0, 2}, {1.5f, 1.25f}, {5.75f, 6.0f}},
        /* 1.5 > 1 yes; -0.5 > -1 but ReLU gives 0; 1.25 > 1.3 no */
        {SAE_ARCH_JUMPRELU, false, thr_a, 0, 1, {0}, {1.5f}, {4.5f, 6.0f}},
        /* 1.5 > 1.5 no (strict); 1.25 > 1.2499999 yes */
        {SAE_ARCH_JUMPRELU, false, thr_b, 0, 1, {2}, {1.25f}, {1.25f, 0.0f}},
        /* k=2 of (1.5, -0.5, 1.25) */
        {SAE_ARCH_TOPK, false, NULL, 2, 2, {0, 2}, {1.5f, 1.25f}, {5.75f, 6.0f}},
        /* k=3 keeps -0.5 among the k largest, then ReLU drops it */
        {SAE_ARCH_TOPK, false, NULL, 3, 2, {0, 2}, {1.5f, 1.25f}, {5.75f, 6.0f}},
        /* rescaled: (7.5, -1, 1.25); decoded with f/||W_dec,i||: 7.5/5·(3,4) + 1.25·(1,0) */
        {SAE_ARCH_TOPK, true, NULL, 2, 2, {0, 2}, {7.5f, 1.25f}, {5.75f, 6.0f}},
        /* gate (0.5, 1, 0) -> (1,1,0); mag (2.5, -1.5, 3) -> (2.5, 0, 3): f = (2.5, 0, 0) */
        {SAE_ARCH_GATED, false, NULL, 0, 1, {0}, {2.5f}, {7.5f, 10.0f}},
    };
    for (size_t reps = 1; reps <= 6; reps += 5) {
        size_t d_sae = 3 * reps;
        float w_enc[2 * 18], w_dec[18 * 2], b_enc[18], thr[18], b_gate[18], b_mag[18], r_mag[18];
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            for (size_t j = 0; j < d_sae; j++) {
                size_t o = j % 3;
                w_enc[j] = w_enc3[o];
                w_enc[d_sae + j] = w_enc3[3 + o];
                w_dec[2 * j] = w_dec3[2 * o];
                w_dec[2 * j + 1] = w_dec3[2 * o + 1];
                b_enc[j] = b_enc3[o];
                thr[j] = cases[c].thr ? cases[c].thr[o] : 0.0f;
                b_gate[j] = b_gate3[o];
                b_mag[j] = b_mag3[o];
                r_mag[j] = r_mag3[o];
            }
            sae_model_spec s = {.d_in = 2,
                                .d_sae = d_sae,
                                .arch = cases[c].arch,
                                .k = cases[c].k * reps,
                                .rescale_acts_by_decoder_norm = cases[c].rescale,
                                .apply_b_dec_to_input = true,
                                .w_enc = w_enc,
                                .b_enc = b_enc,
                                .w_dec = w_dec,
                                .b_dec = b_dec,
                                .threshold = thr,
                                .b_gate = b_gate,
                                .b_mag = b_mag,
                                .r_mag = r_mag};
            sae_model *m;
            sae_error err;
            ck_assert_msg(sae_model_from_spec(&s, &m, &err) == 0, "%s", err.msg);
            sae_workspace *ws = sae_workspace_new(m, 0);
            ck_assert_ptr_nonnull(ws);
            sae_sparse sp;
            sae_sparse_init(&sp);
            float recon[2];
            ck_assert_int_eq(sae_encode(m, ws, x, 1, NULL, &sp, NULL, recon, &err), 0);
            ck_assert_msg(sp.nnz == cases[c].n * reps, "case %zu x%zu: %zu features", c, reps,
                          sp.nnz);
            for (size_t t = 0; t < sp.nnz; t++) {
                size_t e = t / reps, r = t % reps;
                ck_assert_msg(sp.idx[t] == cases[c].idx[e] + 3 * r, "case %zu x%zu: [%zu] = %u", c,
                              reps, t, sp.idx[t]);
                ck_assert_msg(fabsf(sp.val[t] - cases[c].val[e]) < 1e-6f,
                              "case %zu x%zu: %.9g vs %.9g", c, reps, sp.val[t], cases[c].val[e]);
            }
            for (size_t j = 0; j < 2; j++)
                ck_assert_msg(fabsf(recon[j] - reps * cases[c].recon[j]) < 1e-5f * reps,
                              "case %zu x%zu: recon[%zu] %.9g", c, reps, j, recon[j]);
            sae_sparse_free(&sp);
            sae_workspace_free(ws);
            sae_model_free(m);
        }
    }
}
END_TEST

/* Normalisation formulas on a hand-checked row. */
START_TEST(test_row_norm)
{
    tmodel t;
    tmodel_make(&t, SAE_ARCH_STANDARD, SAE_NORM_NONE, true, false, 4, 16, 0, 5);
    float x[4] = {1, 2, 3, 6};
    sae_row_norm n;
    t.m->norm = SAE_NORM_CONSTANT_NORM_RESCALE; /* ||x|| = √50, c = 2/√50 */
    sae_row_norm_compute(t.m, x, &n);
    ck_assert(fabs(n.in_scale - 2 / sqrt(50.0)) < 1e-12 && n.shift == 0);
    ck_assert(fabs(n.out_scale - sqrt(50.0) / 2) < 1e-12);
    float zero[4] = {0};
    sae_row_norm_compute(t.m, zero, &n);
    ck_assert(n.in_scale == 1.0 && n.out_scale == 1.0);
    t.m->norm = SAE_NORM_LAYER_NORM; /* mean 3, unbiased var (4+1+0+9)/3 */
    sae_row_norm_compute(t.m, x, &n);
    double sigma = sqrt(14.0 / 3.0);
    ck_assert(fabs(n.shift - 3.0) < 1e-12 && fabs(n.out_scale - sigma) < 1e-12);
    ck_assert(fabs(n.in_scale - 1.0 / (sigma + 1e-5)) < 1e-12);
    t.m->norm = SAE_NORM_EXPECTED_AVERAGE_ONLY_IN; /* s = 0.7 */
    sae_row_norm_compute(t.m, x, &n);
    ck_assert(fabs(n.in_scale - 0.7) < 1e-7 && fabs(n.out_scale * 0.7 - 1) < 1e-7);
    tmodel_free(&t);
}
END_TEST

/* Metrics on hand-computed rows, including the fvu and cosine conventions. */
START_TEST(test_metrics)
{
    float x[4] = {1, 2, 3, 6}, xh[4] = {1, 2, 4, 4};
    sae_row_metrics r;
    sae_metrics_row(x, xh, 4, &r);
    ck_assert(fabs(r.mse - 5.0 / 4.0) < 1e-12);
    ck_assert(fabs(r.fvu - 5.0 / 14.0) < 1e-12);
    ck_assert(fabs(r.cosine - 41.0 / sqrt(50.0 * 37.0)) < 1e-12);
    float c[4] = {2, 2, 2, 2}, z[4] = {0};
    sae_metrics_row(c, c, 4, &r);
    ck_assert(r.fvu == 0.0 && fabs(r.cosine - 1.0) < 1e-12 && r.mse == 0.0);
    sae_metrics_row(c, z, 4, &r);
    ck_assert(r.fvu == 1.0 && r.cosine == 0.0 && r.mse == 4.0);
}
END_TEST

/* Finite inputs that overflow inside the SAE (1e38 times a scaling factor,
 * or a pre-activation past FLT_MAX) are refused naming the row, and nothing
 * is appended: a NaN pre-activation would otherwise fall out of the ReLU as
 * "no feature" (issue 21, finding 4). */
START_TEST(test_encode_overflow_inside)
{
    tmodel t;
    tmodel_make(&t, SAE_ARCH_STANDARD, SAE_NORM_EXPECTED_AVERAGE_ONLY_IN, true, false, 8, 16, 0,
                31);
    t.m->norm_scaling_factor = 10.0f;
    float *x = make_inputs(3, 8, 32);
    sae_workspace *ws = sae_workspace_new(t.m, 0);
    sae_sparse sp;
    sae_sparse_init(&sp);
    sae_error err;
    ck_assert_int_eq(sae_encode(t.m, ws, x, 3, NULL, &sp, NULL, NULL, &err), 0);
    size_t nnz = sp.nnz, rows = sp.n_rows;
    x[2 * 8 + 5] = 1e38f; /* finite, but 1e39 once scaled */
    ck_assert_int_eq(sae_encode(t.m, ws, x, 3, NULL, &sp, NULL, NULL, &err), SAE_ERANGE);
    ck_assert_msg(strstr(err.msg, "row 2") && strstr(err.msg, "not finite after normalisation"),
                  "%s", err.msg);
    ck_assert_uint_eq(sp.nnz, nnz);
    ck_assert_uint_eq(sp.n_rows, rows);
    t.m->norm_scaling_factor = 1.0f;
    x[2 * 8 + 5] = 0.0f;
    for (size_t j = 0; j < 8; j++)
        x[1 * 8 + j] = 3e38f; /* finite and unscaled, but the dot products overflow */
    ck_assert_int_eq(sae_encode(t.m, ws, x, 3, NULL, &sp, NULL, NULL, &err), SAE_ERANGE);
    ck_assert_msg(strstr(err.msg, "row 1") && strstr(err.msg, "pre-activations not finite"),
                  "%s", err.msg);
    sae_sparse_free(&sp);
    sae_workspace_free(ws);
    free(x);
    tmodel_free(&t);
}
END_TEST

/* sae_decode validates before it writes; errors name row and position. */
START_TEST(test_decode_errors)
{
    tmodel t;
    tmodel_make(&t, SAE_ARCH_STANDARD, SAE_NORM_NONE, true, false, 8, 16, 0, 9);
    sae_sparse sp;
    sae_sparse_init(&sp);
    sae_error err;
    uint32_t i1[2] = {3, 15};
    float v1[2] = {1.0f, 0.5f};
    ck_assert_int_eq(sae_sparse_push_row(&sp, i1, v1, 2, &err), 0);
    uint32_t i2[2] = {1, 16};
    ck_assert_int_eq(sae_sparse_push_row(&sp, i2, v1, 2, &err), 0);
    float out[16];
    for (size_t j = 0; j < 16; j++)
        out[j] = -7.0f;
    ck_assert_int_eq(sae_decode(t.m, &sp, out, &err), SAE_ERANGE);
    ck_assert_msg(strstr(err.msg, "row 1") && strstr(err.msg, "position 1") &&
                      strstr(err.msg, "16"),
                  "message: %s", err.msg);
    ck_assert(out[0] == -7.0f); /* nothing written */
    sae_sparse_reset(&sp);
    float nanv[1] = {NAN};
    ck_assert_int_eq(sae_sparse_push_row(&sp, i1, nanv, 1, &err), 0);
    ck_assert_int_eq(sae_decode(t.m, &sp, out, &err), SAE_ERANGE);
    ck_assert_msg(strstr(err.msg, "row 0") && strstr(err.msg, "not finite"), "%s", err.msg);
    float infv[1] = {INFINITY};
    sae_sparse_reset(&sp);
    ck_assert_int_eq(sae_sparse_push_row(&sp, i1, infv, 1, &err), 0);
    ck_assert_int_eq(sae_decode(t.m, &sp, out, &err), SAE_ERANGE);
    /* an empty row decodes to b_dec */
    sae_sparse_reset(&sp);
    ck_assert_int_eq(sae_sparse_push_row(&sp, NULL, NULL, 0, &err), 0);
    ck_assert_int_eq(sae_decode(t.m, &sp, out, &err), 0);
    for (size_t j = 0; j < 8; j++)
        ck_assert(out[j] == t.b_dec[j]);
    ck_assert(!sae_decode_is_normalised(t.m));
    t.m->norm = SAE_NORM_LAYER_NORM;
    ck_assert(sae_decode_is_normalised(t.m));
    sae_sparse_free(&sp);
    tmodel_free(&t);
}
END_TEST

/* A workspace made for one model is refused for another; a failed encode
 * appends nothing. */
START_TEST(test_workspace_mismatch)
{
    tmodel a, b;
    tmodel_make(&a, SAE_ARCH_STANDARD, SAE_NORM_NONE, true, false, 8, 16, 0, 1);
    tmodel_make(&b, SAE_ARCH_STANDARD, SAE_NORM_NONE, true, false, 8, 32, 0, 2);
    sae_workspace *ws = sae_workspace_new(a.m, 4);
    sae_sparse sp;
    sae_sparse_init(&sp);
    float x[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    sae_error err;
    ck_assert_int_eq(sae_encode(b.m, ws, x, 1, NULL, &sp, NULL, NULL, &err), SAE_EDIM);
    ck_assert_uint_eq(sp.n_rows, 0);
    ck_assert_int_eq(sae_encode(a.m, ws, x, 1, NULL, &sp, NULL, NULL, &err), 0);
    ck_assert_uint_eq(sp.n_rows, 1);
    sae_sparse_free(&sp);
    sae_workspace_free(ws);
    tmodel_free(&a);
    tmodel_free(&b);
}
END_TEST

/* sae_gemm_rows, the product sae bench times raw, against a double-precision
 * loop: both weight layouts ((d_in, d_sae), and (d_sae, d_in) used
 * transposed), one row (the sgemv path) and several (sgemm), with y's old
 * contents overwritten (beta 0). */
START_TEST(test_gemm_rows)
{
    enum { D_IN = 7, D_SAE = 5, ROWS = 3 };
    float w[D_IN * D_SAE], wt[D_SAE * D_IN], x[ROWS * D_IN], y[ROWS * D_SAE];
    sae_rng r;
    sae_rng_seed(&r, 11);
    for (size_t i = 0; i < D_IN; i++)
        for (size_t j = 0; j < D_SAE; j++)
            wt[j * D_IN + i] = w[i * D_SAE + j] = (float)sae_rng_normal(&r);
    for (size_t i = 0; i < ROWS * D_IN; i++)
        x[i] = (float)sae_rng_normal(&r);
    for (int t = 0; t < 2; t++)
        for (size_t rows = 1; rows <= ROWS; rows += ROWS - 1) {
            for (size_t i = 0; i < ROWS * D_SAE; i++)
                y[i] = NAN;
            sae_gemm_rows(t ? wt : w, t, D_IN, D_SAE, x, rows, y);
            for (size_t q = 0; q < rows; q++)
                for (size_t j = 0; j < D_SAE; j++) {
                    double want = 0;
                    for (size_t i = 0; i < D_IN; i++)
                        want += (double)x[q * D_IN + i] * w[i * D_SAE + j];
                    ck_assert_msg(fabs(y[q * D_SAE + j] - want) <= 1e-5 * (1 + fabs(want)),
                                  "w_t %d rows %zu: y[%zu][%zu] = %g, want %g", t, rows, q, j,
                                  (double)y[q * D_SAE + j], want);
                }
        }
}
END_TEST

/* n values of a rounded to dtype dt (F16 or BF16). */
static uint16_t *to_half(sae_dtype dt, const float *a, size_t n)
{
    uint16_t *h = malloc(n * sizeof *h);
    ck_assert_ptr_nonnull(h);
    for (size_t i = 0; i < n; i++)
        h[i] = dt == SAE_DT_BF16 ? sae_f32_to_bf16(a[i]) : sae_f32_to_f16(a[i]);
    return h;
}

/* Encodes x (n rows) whole with sae_encode and over each range of lo/hi
 * (n_ranges) with sae_encode_cols, both with a workspace of block_rows, and
 * holds every range's rows to the whole rows' features [lo, hi), renumbered
 * from 0: the same indices in the same order and the same values bit for
 * bit. Returns the entries compared, so callers can insist it was not
 * vacuous. */
static size_t check_cols(const sae_model *m, size_t block_rows, const float *x, size_t n,
                         const uint32_t (*ranges)[2], size_t n_ranges)
{
    sae_workspace *ws = sae_workspace_new(m, block_rows);
    ck_assert_ptr_nonnull(ws);
    sae_sparse full, part;
    sae_sparse_init(&full);
    sae_sparse_init(&part);
    sae_error err;
    sae_encode_opts opts = {0};
    CHECK(sae_encode(m, ws, x, n, &opts, &full, NULL, NULL, &err) == 0, "%s: %s", ctx, err.msg);
    size_t compared = 0;
    for (size_t q = 0; q < n_ranges; q++) {
        uint32_t lo = ranges[q][0], hi = ranges[q][1];
        sae_sparse_reset(&part);
        CHECK(sae_encode_cols(m, ws, x, n, lo, hi, &part, &err) == 0, "%s %u:%u: %s", ctx, lo,
              hi, err.msg);
        CHECK(part.n_rows == n, "%s %u:%u: %zu rows", ctx, lo, hi, part.n_rows);
        for (size_t r = 0; r < n; r++) {
            size_t t = part.row_ptr[r];
            for (size_t e = full.row_ptr[r]; e < full.row_ptr[r + 1]; e++) {
                if (full.idx[e] < lo || full.idx[e] >= hi)
                    continue;
                CHECK(t < part.row_ptr[r + 1], "%s %u:%u: row %zu lacks feature %u", ctx, lo, hi,
                      r, full.idx[e]);
                CHECK(part.idx[t] + lo == full.idx[e] &&
                          memcmp(&part.val[t], &full.val[e], sizeof(float)) == 0,
                      "%s %u:%u: row %zu has feature %u = %.9g where the whole has %u = %.9g",
                      ctx, lo, hi, r, part.idx[t] + lo, part.val[t], full.idx[e], full.val[e]);
                t++;
                compared++;
            }
            CHECK(t == part.row_ptr[r + 1], "%s %u:%u: row %zu has features the whole lacks", ctx,
                  lo, hi, r);
        }
    }
    sae_sparse_free(&full);
    sae_sparse_free(&part);
    sae_workspace_free(ws);
    return compared;
}

/* sae_encode_cols equals sae_encode on the range bit for bit, for F32, F16
 * and BF16 weights on every kernel this CPU has, both layouts, every
 * architecture (TopK encodes whole rows and keeps the range), batch 1 (the
 * one-row kernels) and 40 (a threaded 32-row block and an 8-row one); the
 * 16-bit kernels on one thread and two (F32 on one: OpenBLAS's threaded
 * sgemv splits the columns by the width it is given, and a range then gets
 * other last bits, which the indexer never meets: its GEMMs are
 * single-threaded up to 8 threads, docs/INDEX.md). d_sae 1100 is no multiple of any kernel's column tile
 * (16, 64, 96), so the ranges meet unaligned starts and ends, a last block
 * cut short, the avx2 kernel's plain-C tail, and a 64-column start whose
 * split over threads differs from the whole product's. d_in 129 is odd (the
 * avx512-bf16 kernel's pair tail). */
START_TEST(test_encode_cols)
{
    enum { D_IN = 129, D_SAE = 1100 };
    static const uint32_t ranges[][2] = {
        {0, D_SAE}, {0, 1},    {5, 77},       {64, 128},      {63, 65},  {17, 33},
        {100, 1037}, {64, D_SAE}, {1024, D_SAE}, {1090, D_SAE}, {1099, D_SAE},
    };
    static const sae_arch archs[] = {SAE_ARCH_STANDARD, SAE_ARCH_JUMPRELU, SAE_ARCH_GATED,
                                     SAE_ARCH_TOPK};
    static const sae_dtype dts[] = {SAE_DT_F32, SAE_DT_F16, SAE_DT_BF16};
    float *x = make_inputs(40, D_IN, 91);
    size_t compared = 0, configs = 0;
    for (size_t a = 0; a < 4; a++) {
        tmodel t;
        tmodel_make(&t, archs[a], SAE_NORM_LAYER_NORM, true, false, D_IN, D_SAE, 40, 90 + a);
        for (size_t d = 0; d < 3; d++) {
            sae_dtype dt = dts[d];
            uint16_t *enc = NULL, *enc_t = NULL, *dec = NULL;
            sae_model *m = t.m;
            if (dt != SAE_DT_F32) {
                enc = to_half(dt, t.w_enc, (size_t)D_IN * D_SAE);
                enc_t = to_half(dt, t.w_enc_t, (size_t)D_IN * D_SAE);
                dec = to_half(dt, t.w_dec, (size_t)D_IN * D_SAE);
                sae_model_spec s = {
                    .d_in = D_IN, .d_sae = D_SAE, .arch = archs[a], .k = 40,
                    .apply_b_dec_to_input = true, .norm = SAE_NORM_LAYER_NORM,
                    .b_enc = t.b_enc, .b_dec = t.b_dec, .threshold = t.threshold,
                    .b_gate = t.b_gate, .b_mag = t.b_mag, .r_mag = t.r_mag,
                    .w_enc_h = enc, .w_dec_h = dec, .w_dtype = dt,
                };
                sae_error err;
                ck_assert_msg(sae_model_from_spec(&s, &m, &err) == 0, "%s", err.msg);
            }
            sae_kernel kernels[3];
            size_t n_kernels = kernels_of(dt, kernels);
            for (size_t kn = 0; kn < n_kernels; kn++)
                for (int tr = 0; tr < 2; tr++)
                    for (int th = 1; th <= (dt == SAE_DT_F32 ? 1 : 2); th++) {
                        m->kernel = kernels[kn];
                        m->w_enc_t = tr;
                        if (dt == SAE_DT_F32)
                            m->w_enc = tr ? t.w_enc_t : t.w_enc;
                        else
                            m->w_enc_h = tr ? enc_t : enc;
                        sae_set_blas_threads(th);
                        snprintf(ctx, sizeof ctx, "%s %s %s%s threads %d", sae_kernel_name(m->kernel),
                                 sae_dtype_name(dt), arch_label[archs[a]],
                                 tr ? " transposed" : "", th);
                        compared += check_cols(m, 32, x + 2 * D_IN, 1, ranges, 11);
                        compared += check_cols(m, 32, x, 40, ranges, 11);
                        configs++;
                    }
            if (dt != SAE_DT_F32) {
                sae_model_free(m);
                free(enc);
                free(enc_t);
                free(dec);
            }
        }
        tmodel_free(&t);
    }
    sae_set_blas_threads(1);
    free(x);
    ck_assert_uint_ge(configs, 4 * 2 * (1 + 2 * 2));
    /* about a sixth of 1100 features fire in 41 rows, every range twice over */
    ck_assert_msg(compared > configs * 41 * 100, "only %zu entries compared in %zu configs",
                  compared, configs);
}
END_TEST

/* A 16-bit model whose W_enc column 1050 holds inf: the whole encode fails on
 * it (every row's pre-activations are not finite), a range that leaves the
 * column out succeeds, so it never computed that column, and a range that
 * holds it fails naming row 0. BF16 and F16, the layout (d_in, d_sae). */
START_TEST(test_encode_cols_skips_columns)
{
    enum { D_IN = 40, D_SAE = 1100 };
    tmodel t;
    tmodel_make(&t, SAE_ARCH_JUMPRELU, SAE_NORM_NONE, false, false, D_IN, D_SAE, 0, 95);
    float *x = make_inputs(5, D_IN, 96);
    static const sae_dtype dts[] = {SAE_DT_F16, SAE_DT_BF16};
    for (size_t d = 0; d < 2; d++) {
        uint16_t *enc = to_half(dts[d], t.w_enc, (size_t)D_IN * D_SAE);
        uint16_t *dec = to_half(dts[d], t.w_dec, (size_t)D_IN * D_SAE);
        enc[7 * D_SAE + 1050] = dts[d] == SAE_DT_BF16 ? 0x7f80 : 0x7c00; /* +inf */
        sae_model_spec s = {.d_in = D_IN, .d_sae = D_SAE, .arch = SAE_ARCH_JUMPRELU,
                            .b_enc = t.b_enc, .b_dec = t.b_dec, .threshold = t.threshold,
                            .w_enc_h = enc, .w_dec_h = dec, .w_dtype = dts[d]};
        sae_model *m;
        sae_error err;
        ck_assert_msg(sae_model_from_spec(&s, &m, &err) == 0, "%s", err.msg);
        sae_workspace *ws = sae_workspace_new(m, 0);
        ck_assert_ptr_nonnull(ws);
        sae_sparse sp;
        sae_sparse_init(&sp);
        sae_encode_opts opts = {0};
        ck_assert_int_eq(sae_encode(m, ws, x, 5, &opts, &sp, NULL, NULL, &err), SAE_ERANGE);
        ck_assert_msg(sae_encode_cols(m, ws, x, 5, 0, 1000, &sp, &err) == 0, "%s", err.msg);
        ck_assert_uint_eq(sp.n_rows, 5);
        ck_assert_uint_gt(sp.nnz, 0);
        ck_assert_int_eq(sae_encode_cols(m, ws, x, 5, 1040, 1060, &sp, &err), SAE_ERANGE);
        ck_assert_msg(strstr(err.msg, "row 0:"), "%s", err.msg);
        ck_assert_uint_eq(sp.n_rows, 5);
        sae_sparse_free(&sp);
        sae_workspace_free(ws);
        sae_model_free(m);
        free(enc);
        free(dec);
    }
    free(x);
    tmodel_free(&t);
}
END_TEST

static Suite *encode_suite(void)
{
    Suite *s = suite_create("encode");
    TCase *tc = tcase_create("kernels");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_gemm_rows);
    tcase_add_test(tc, test_hand_values);
    tcase_add_test(tc, test_row_norm);
    tcase_add_test(tc, test_metrics);
    tcase_add_test(tc, test_ties);
    tcase_add_test(tc, test_topk_exact_ties);
    tcase_add_test(tc, test_decode_errors);
    tcase_add_test(tc, test_workspace_mismatch);
    tcase_add_test(tc, test_standard);
    tcase_add_test(tc, test_jumprelu);
    tcase_add_test(tc, test_topk);
    tcase_add_test(tc, test_topk_rescale);
    tcase_add_test(tc, test_gated);
    tcase_add_test(tc, test_default_blocks);
    tcase_add_test(tc, test_finetuning_scaling_factor);
    tcase_add_test(tc, test_signed_topk);
    tcase_add_test(tc, test_transcoder);
    tcase_add_test(tc, test_encode_overflow_inside);
    tcase_add_test(tc, test_concurrent);
    tcase_add_test(tc, test_loaded_f32);
    tcase_add_test(tc, test_loaded_f16);
    tcase_add_test(tc, test_loaded_bf16);
    tcase_add_test(tc, test_encode_cols);
    tcase_add_test(tc, test_encode_cols_skips_columns);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(encode_suite());
}
