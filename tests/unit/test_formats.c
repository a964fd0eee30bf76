/* test_formats.c: release layouts (core/sae/format*.c) load and compute what
 * their loader's source computes.
 *
 * tests/fixture/formats/gen.py (run by hand) wrote, for each case in
 * expect/cases.txt, a folder shaped as the release ships it and
 * expect/<case>.safetensors: input rows x, and from a float64 transcription
 * of that release's loader (SAELens, or dictionary_learning where SAELens
 * cannot load the class) the features f with each feature's margin to its
 * activity decision, the reconstruction xhat and the decode of float32(f),
 * plus metadata (folder, sizes, architecture, names). Each case's folder is
 * loaded with sae_model_load and compared with the bounds of test_encode.c:
 * τ = 1e-5·(1 + max |margin|); features with |margin| < τ are fragile and a
 * row holding one skips its active-set and reconstruction checks (such rows
 * are counted and must be rare); values within 1e-4·|ref| + τ;
 * reconstruction and decode within 1e-4·(1 + max |ref|). */
#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"
#include "sae/encode.h"
#include "sae/model.h"
#include "unit.h"

/* The fixture folder (tests/fixture/formats in the source tree). */
static const char *formats_dir(void)
{
    const char *d = getenv("SAE_FORMATS");
    ck_assert_msg(d != NULL, "SAE_FORMATS is not set (meson sets it)");
    return d;
}

/* dir/rel (caller frees). */
static char *join(const char *dir, const char *rel)
{
    char *p;
    ck_assert_int_ge(asprintf(&p, "%s/%s", dir, rel), 0);
    return p;
}

/* A metadata value of the expectation file, which must be there. */
static const char *meta(const sae_st_file *e, const char *key)
{
    const char *v = sae_st_meta_get(e, key);
    ck_assert_msg(v != NULL, "%s: no metadata %s", e->path, key);
    return v;
}

/* An F64 tensor of the expectation file with n elements (data may be
 * unaligned in the file, so it is copied). Caller frees. */
static double *f64(const sae_st_file *e, const char *name, size_t n)
{
    const sae_st_tensor *t = sae_st_find(e, name);
    ck_assert_msg(t && t->dtype == SAE_DT_F64 && t->n_elems == n, "%s: tensor %s", e->path, name);
    double *a = malloc(n * sizeof *a);
    ck_assert_ptr_nonnull(a);
    memcpy(a, t->data, n * sizeof *a);
    return a;
}

/* Loads the case's folder and checks what it says about itself. */
static sae_model *load_case(const sae_st_file *e, size_t *d_in, size_t *d_sae)
{
    char *dir = join(formats_dir(), meta(e, "folder"));
    sae_model *m = NULL;
    sae_error err;
    sae_model_warnings warn;
    ck_assert_msg(sae_model_load(dir, &m, &warn, &err) == 0, "%s: %s", dir, err.msg);
    *d_in = strtoul(meta(e, "d_in"), NULL, 10);
    *d_sae = strtoul(meta(e, "d_sae"), NULL, 10);
    ck_assert_uint_eq(m->d_in, *d_in);
    ck_assert_uint_eq(m->d_sae, *d_sae);
    ck_assert_str_eq(sae_arch_name(m->arch), meta(e, "arch"));
    ck_assert_uint_eq(m->k, strtoul(meta(e, "k"), NULL, 10));
    ck_assert_str_eq(m->model_name, meta(e, "model_name"));
    ck_assert_str_eq(m->hook_name, meta(e, "hook_name"));
    ck_assert_str_eq(m->neuronpedia_id, meta(e, "neuronpedia_id"));
    ck_assert_uint_eq(warn.n, 0);
    free(dir);
    return m;
}

/* Encodes x and compares features and reconstruction with the expectation;
 * returns how many rows had a fragile feature. */
static size_t check_encode(const sae_st_file *e, const sae_model *m, size_t n, size_t d_in,
                           size_t d_sae)
{
    const sae_st_tensor *xt = sae_st_find(e, "x");
    ck_assert(xt && xt->dtype == SAE_DT_F32 && xt->n_elems == n * d_in);
    float *x = malloc(n * d_in * sizeof *x), *recon = malloc(n * d_in * sizeof *recon);
    ck_assert(x && recon);
    memcpy(x, xt->data, n * d_in * sizeof *x);
    double *f = f64(e, "f", n * d_sae), *margin = f64(e, "margin", n * d_sae);
    double *xhat = f64(e, "xhat", n * d_in);
    sae_workspace *ws = sae_workspace_new(m, 0);
    sae_sparse sp;
    sae_sparse_init(&sp);
    sae_encode_opts opt = {0};
    sae_error err;
    ck_assert_ptr_nonnull(ws);
    ck_assert_msg(sae_encode(m, ws, x, n, &opt, &sp, NULL, recon, &err) == 0, "%s", err.msg);
    size_t fragile_rows = 0;
    for (size_t r = 0; r < n; r++) {
        const double *fr = f + r * d_sae, *mr = margin + r * d_sae;
        double M = 1.0;
        for (size_t j = 0; j < d_sae; j++)
            M = fmax(M, 1.0 + fabs(mr[j]));
        double tau = 1e-5 * M;
        double *got = calloc(d_sae, sizeof *got);
        ck_assert_ptr_nonnull(got);
        for (uint32_t t = sp.row_ptr[r]; t < sp.row_ptr[r + 1]; t++)
            got[sp.idx[t]] = sp.val[t];
        bool fragile = false;
        for (size_t j = 0; j < d_sae; j++) {
            if (fabs(mr[j]) < tau) {
                fragile = true;
                continue;
            }
            ck_assert_msg((fr[j] > 0) == (got[j] > 0), "%s row %zu feature %zu: got %.9g, want %.9g",
                          e->path, r, j, got[j], fr[j]);
            ck_assert_msg(fabs(got[j] - fr[j]) <= 1e-4 * fabs(fr[j]) + tau,
                          "%s row %zu feature %zu: got %.9g, want %.9g", e->path, r, j, got[j],
                          fr[j]);
        }
        free(got);
        if (fragile) {
            fragile_rows++;
            continue;
        }
        double mx = 0;
        for (size_t j = 0; j < d_in; j++)
            mx = fmax(mx, fabs(xhat[r * d_in + j]));
        for (size_t j = 0; j < d_in; j++)
            ck_assert_msg(fabs(recon[r * d_in + j] - xhat[r * d_in + j]) <= 1e-4 * (1 + mx),
                          "%s row %zu: reconstruction [%zu] %.9g, want %.9g", e->path, r, j,
                          recon[r * d_in + j], xhat[r * d_in + j]);
    }
    sae_sparse_free(&sp);
    sae_workspace_free(ws);
    free(x);
    free(recon);
    free(f);
    free(margin);
    free(xhat);
    return fragile_rows;
}

/* Decodes float32(f) row by row and compares with the expected decode. */
static void check_decode(const sae_st_file *e, const sae_model *m, size_t n, size_t d_in,
                         size_t d_sae)
{
    double *f = f64(e, "f", n * d_sae), *dec = f64(e, "dec", n * d_in);
    uint32_t *idx = malloc(d_sae * sizeof *idx);
    float *val = malloc(d_sae * sizeof *val), *out = malloc(n * d_in * sizeof *out);
    ck_assert(idx && val && out);
    sae_sparse sp;
    sae_sparse_init(&sp);
    sae_error err;
    for (size_t r = 0; r < n; r++) {
        size_t nnz = 0;
        for (size_t j = 0; j < d_sae; j++)
            if (f[r * d_sae + j] != 0)
                idx[nnz] = (uint32_t)j, val[nnz++] = (float)f[r * d_sae + j];
        ck_assert_int_eq(sae_sparse_push_row(&sp, idx, val, nnz, &err), 0);
    }
    ck_assert_msg(sae_decode(m, &sp, out, &err) == 0, "%s", err.msg);
    for (size_t r = 0; r < n; r++) {
        double mx = 0;
        for (size_t j = 0; j < d_in; j++)
            mx = fmax(mx, fabs(dec[r * d_in + j]));
        for (size_t j = 0; j < d_in; j++)
            ck_assert_msg(fabs(out[r * d_in + j] - dec[r * d_in + j]) <= 1e-4 * (1 + mx),
                          "%s row %zu: decode [%zu] %.9g, want %.9g", e->path, r, j,
                          out[r * d_in + j], dec[r * d_in + j]);
    }
    sae_sparse_free(&sp);
    free(f);
    free(dec);
    free(idx);
    free(val);
    free(out);
}

/* One case of expect/cases.txt, by name. */
static void run_case(const char *name)
{
    char *rel, *path;
    ck_assert_int_ge(asprintf(&rel, "expect/%s.safetensors", name), 0);
    path = join(formats_dir(), rel);
    sae_st_file *e = NULL;
    sae_error err;
    ck_assert_msg(sae_st_open(path, &e, &err) == 0, "%s", err.msg);
    size_t d_in, d_sae;
    sae_model *m = load_case(e, &d_in, &d_sae);
    const sae_st_tensor *xt = sae_st_find(e, "x");
    ck_assert_ptr_nonnull(xt);
    size_t n = (size_t)xt->shape[0];
    size_t fragile = check_encode(e, m, n, d_in, d_sae);
    ck_assert_msg(fragile * 2 < n, "%s: %zu of %zu rows fragile", name, fragile, n);
    check_decode(e, m, n, d_in, d_sae);
    sae_model_free(m);
    sae_st_free(e);
    free(path);
    free(rel);
}

/* The case names of expect/cases.txt, read once. */
static char cases[64][64];
static int n_cases;

/* Runs before Check does, so it reports on stderr; 0 on success. */
static int read_cases(void)
{
    const char *d = getenv("SAE_FORMATS");
    char *path = NULL;
    FILE *fp = d && asprintf(&path, "%s/expect/cases.txt", d) >= 0 ? fopen(path, "r") : NULL;
    if (!fp) {
        fprintf(stderr, "test_formats: cannot open %s (SAE_FORMATS)\n", path ? path : "?");
        free(path);
        return -1;
    }
    while (n_cases < 64 && fscanf(fp, "%63s", cases[n_cases]) == 1)
        n_cases++;
    fclose(fp);
    free(path);
    return n_cases > 0 ? 0 : -1;
}

START_TEST(test_case)
{
    ck_assert_int_lt(_i, n_cases);
    run_case(cases[_i]);
}
END_TEST

/* Expects loading rel (under the fixture folder) to fail with code and a
 * message holding `want`. */
static void refuses(const char *rel, int code, const char *want)
{
    char *dir = join(formats_dir(), rel);
    sae_model *m = NULL;
    sae_error err;
    int rc = sae_model_load(dir, &m, NULL, &err);
    ck_assert_msg(rc != 0, "%s loaded", dir);
    ck_assert_msg(rc == code, "%s: code %d (%s), want %d", dir, rc, err.msg, code);
    ck_assert_msg(strstr(err.msg, want), "%s: \"%s\" lacks \"%s\"", dir, err.msg, want);
    free(dir);
}

/* SAELens refuses a Gemma Scope scaling_factor that is not all ones (its
 * cfg says finetuning_scaling_factor false); so does saed. */
START_TEST(test_gemmascope_scaling_factor)
{
    refuses("edge/gemma-scope-2b-pt-res/layer_0/width_16k/average_l0_7", SAE_EINVAL,
            "scaling_factor");
}
END_TEST

/* A Gemma Scope transcoder (gemma-scope-2b-pt-transcoders) is read as SL6's
 * gemma_2_transcoder_huggingface_loader does: the same params.npz and
 * jumprelu, from ln2.hook_normalized to hook_mlp_out. So the res fixture's
 * file, put under a transcoder path, encodes bit for bit as it does under
 * the res path; reconstruction against the input is refused. */
START_TEST(test_gemmascope_transcoder)
{
    const char *res_rel = "gemmascope_res/gemma-scope-2b-pt-res/layer_3/width_16k/average_l0_12";
    char *res = join(formats_dir(), res_rel), *src = join(res, "params.npz");
    char *dir = unit_path("gemma-scope-2b-pt-transcoders/layer_3/width_16k/average_l0_12");
    char *cmd;
    ck_assert_int_ge(asprintf(&cmd, "mkdir -p '%s' && cp '%s' '%s/'", dir, src, dir), 0);
    ck_assert_int_eq(system(cmd), 0);
    sae_model *a = NULL, *t = NULL;
    sae_error err;
    ck_assert_msg(sae_model_load(res, &a, NULL, &err) == 0, "%s", err.msg);
    ck_assert_msg(sae_model_load(dir, &t, NULL, &err) == 0, "%s", err.msg);
    ck_assert(t->transcoder && !a->transcoder);
    ck_assert_str_eq(sae_arch_name(t->arch), "jumprelu");
    ck_assert_str_eq(t->hook_name, "blocks.3.ln2.hook_normalized");
    ck_assert_str_eq(t->hook_name_out, "blocks.3.hook_mlp_out");
    ck_assert_str_eq(t->model_name, "gemma-2-2b");
    ck_assert_str_eq(t->neuronpedia_id, "gemma-2-2b/3-gemmascope-transcoder-16k__l0-12");
    ck_assert_uint_eq(t->d_out, t->d_in);
    size_t n = 5, d = t->d_in;
    float *x = malloc(n * d * sizeof *x), *rec = malloc(n * d * sizeof *rec);
    ck_assert(x && rec);
    for (size_t i = 0; i < n * d; i++)
        x[i] = (float)sin(0.37 * (double)i) * 3.0f;
    sae_workspace *ws = sae_workspace_new(t, 0);
    sae_sparse sa, st;
    sae_sparse_init(&sa);
    sae_sparse_init(&st);
    ck_assert_msg(sae_encode(a, ws, x, n, NULL, &sa, NULL, NULL, &err) == 0, "%s", err.msg);
    ck_assert_msg(sae_encode(t, ws, x, n, NULL, &st, NULL, NULL, &err) == 0, "%s", err.msg);
    ck_assert_uint_eq(sa.nnz, st.nnz);
    ck_assert_uint_gt(st.nnz, 0);
    ck_assert(!memcmp(sa.idx, st.idx, st.nnz * sizeof *st.idx));
    ck_assert(!memcmp(sa.val, st.val, st.nnz * sizeof *st.val));
    ck_assert_int_ne(sae_encode(t, ws, x, n, NULL, &st, NULL, rec, &err), 0);
    sae_sparse_free(&sa);
    sae_sparse_free(&st);
    sae_workspace_free(ws);
    sae_model_free(a);
    sae_model_free(t);
    free(x);
    free(rec);
    free(cmd);
    free(dir);
    free(src);
    free(res);
}
END_TEST

/* dictionary_learning's mid-training backup ae.pt is not a state_dict. */
START_TEST(test_dictlearn_backup)
{
    refuses("edge/dl_backup/trainer_0", SAE_EINVAL, "a trainer backup");
}
END_TEST

/* Folders of no known layout get one line naming what they hold. */
START_TEST(test_unknown_folders)
{
    refuses("edge", SAE_EFORMAT, "a folder of 2 folders");
    refuses("expect", SAE_EFORMAT, "saed reads SAELens");
    refuses("gemmascope_res/gemma-scope-2b-pt-res/layer_3", SAE_EFORMAT, "width_16k/");
    refuses("../readers", SAE_EFORMAT, "OpenAI sparse_autoencoder checkpoints are not read");
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("formats");
    TCase *tc = tcase_create("releases");
    tcase_add_loop_test(tc, test_case, 0, n_cases);
    suite_add_tcase(s, tc);
    tc = tcase_create("refusals");
    tcase_add_checked_fixture(tc, unit_setup, unit_teardown);
    tcase_add_test(tc, test_gemmascope_scaling_factor);
    tcase_add_test(tc, test_gemmascope_transcoder);
    tcase_add_test(tc, test_dictlearn_backup);
    tcase_add_test(tc, test_unknown_folders);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (read_cases())
        return EXIT_FAILURE;
    return unit_run(suite());
}
