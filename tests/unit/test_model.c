/* test_model.c: the folder loader (core/sae/model.c) on folders written by the
 * fixture writer: every architecture x dtype x normalisation, pre-6.0 and
 * sparsify configs, each missing or mis-shaped tensor and each bad cfg value
 * (with the field named in the message), non-finite weights, and the weights
 * digest against an independent XXH3-128 of the file read with stdio.
 *
 * Independence: weights loaded from an F16/BF16/F64 folder are compared with
 * the F32 folder of the same seed rounded through the dtype (the conversions
 * are tested exhaustively in test_safetensors); sparsify weights with the
 * transpose of the SAELens folder of the same seed; decoder norms with a
 * double-precision sum here. The fixture's promise about target_l0 is checked
 * by counting active features on random rows in double precision. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "io/dtype.h"
#include "fixture.h"
#include "sae/model.h"
#include "io/rng.h"
#include "io/safetensors.h"
#include "unit.h"

/* Writes a fixture folder unit_dir/name for o and returns its path. */
/* The model's W_enc (enc) or W_dec as F32, whatever it keeps: a copy the
 * caller frees. */
static float *widened(const sae_model *m, bool enc)
{
    size_t n = m->d_in * m->d_sae;
    float *w = malloc(n * sizeof *w);
    ck_assert_ptr_nonnull(w);
    const uint16_t *h = enc ? m->w_enc_h : m->w_dec_h;
    if (h)
        sae_half_widen(m->w_dtype, h, w, n);
    else
        memcpy(w, enc ? m->w_enc : m->w_dec, n * sizeof *w);
    return w;
}

static char *make(const char *name, const sae_fixture_opts *o)
{
    char *dir = unit_path(name);
    sae_error err;
    ck_assert_msg(sae_fixture_write_model(dir, o, &err) == 0, "%s", err.msg);
    return dir;
}

/* Loads dir, which must succeed. */
static sae_model *load_ok(const char *dir, sae_model_warnings *warn)
{
    sae_model *m = NULL;
    sae_error err;
    ck_assert_msg(sae_model_load(dir, &m, warn, &err) == 0, "%s: %s", dir, err.msg);
    return m;
}

/* Loads dir, which must fail with code and a message containing each of the
 * NULL-terminated words. */
static void load_fails(const char *dir, int code, ...)
{
    sae_model *m = NULL;
    sae_error err = {0};
    int rc = sae_model_load(dir, &m, NULL, &err);
    ck_assert_msg(rc == code, "%s: got %d (%s), expected %d", dir, rc, err.msg, code);
    ck_assert_ptr_null(m);
    va_list ap;
    va_start(ap, code);
    for (const char *w; (w = va_arg(ap, const char *));)
        ck_assert_msg(strstr(err.msg, w), "message lacks \"%s\": %s", w, err.msg);
    va_end(ap);
}

/* Sets cfg.json's key to the JSON text `value` (NULL: removes the key). */
static void set_cfg(const char *dir, const char *key, const char *value)
{
    char *path;
    ck_assert_int_ge(asprintf(&path, "%s/cfg.json", dir), 0);
    json_error_t je;
    json_t *cfg = json_load_file(path, 0, &je);
    ck_assert_ptr_nonnull(cfg);
    if (value) {
        json_t *v = json_loads(value, JSON_DECODE_ANY, &je);
        ck_assert_msg(v != NULL, "bad test JSON %s", value);
        json_object_set_new(cfg, key, v);
    } else {
        json_object_del(cfg, key);
    }
    ck_assert_int_eq(json_dump_file(cfg, path, JSON_INDENT(2)), 0);
    json_decref(cfg);
    free(path);
}

/* Writes text as dir/cfg.json. */
static void write_cfg_text(const char *dir, const char *text)
{
    char *path;
    ck_assert_int_ge(asprintf(&path, "%s/cfg.json", dir), 0);
    FILE *fp = fopen(path, "w");
    ck_assert_ptr_nonnull(fp);
    fputs(text, fp);
    fclose(fp);
    free(path);
}

/* The weights file of a fixture folder (caller frees). */
static char *weights_of(const char *dir, bool sparsify)
{
    char *p;
    ck_assert_int_ge(
        asprintf(&p, "%s/%s", dir, sparsify ? "sae.safetensors" : "sae_weights.safetensors"), 0);
    return p;
}

/* Reads tensor `name` of a weights file as floats (caller frees), or NULL. */
static float *read_tensor(const char *path, const char *name, size_t *n)
{
    sae_st_file *f;
    sae_error err;
    ck_assert_msg(sae_st_open(path, &f, &err) == 0, "%s", err.msg);
    const sae_st_tensor *t = sae_st_find(f, name);
    float *out = NULL;
    if (t) {
        const float *p;
        float *owned;
        ck_assert_int_eq(sae_st_tensor_f32(f, t, &p, &owned, &err), 0);
        out = malloc((t->n_elems ? t->n_elems : 1) * sizeof *out);
        memcpy(out, p, t->n_elems * sizeof *out);
        free(owned);
        *n = t->n_elems;
    }
    sae_st_free(f);
    return out;
}

/* Rewrites a weights file without tensor `drop` (if not NULL) and with tensor
 * `add` (if not NULL) of dtype/shape holding vals (floats, converted). */
static void rewrite(const char *path, const char *drop, const char *add, sae_dtype dt, int ndim,
                    const uint64_t *shape, const float *vals)
{
    sae_st_file *f;
    sae_error err;
    ck_assert_msg(sae_st_open(path, &f, &err) == 0, "%s", err.msg);
    sae_st_writer *w = sae_st_writer_new();
    for (size_t i = 0; i < f->n_tensors; i++) {
        const sae_st_tensor *t = &f->tensors[i];
        if (drop && strcmp(t->name, drop) == 0)
            continue;
        ck_assert_int_eq(sae_st_writer_add(w, t->name, t->dtype, t->ndim, t->shape, t->data), 0);
    }
    sae_st_free(f);
    if (add) {
        if (sae_dtype_is_float(dt)) {
            ck_assert_int_eq(sae_st_writer_add_f32(w, add, dt, ndim, shape, vals), 0);
        } else {
            size_t n = 1;
            for (int i = 0; i < ndim; i++)
                n *= shape[i];
            int32_t *iv = calloc(n, sizeof *iv);
            ck_assert_int_eq(sae_st_writer_add(w, add, dt, ndim, shape, iv), 0);
            free(iv);
        }
    }
    ck_assert_msg(sae_st_writer_save(w, path, &err) == 0, "%s", err.msg);
    sae_st_writer_free(w);
}

/* x rounded through dtype t. */
static float round_as(sae_dtype t, float x)
{
    if (t == SAE_DT_F16)
        return sae_f16_to_f32(sae_f32_to_f16(x));
    if (t == SAE_DT_BF16)
        return sae_bf16_to_f32(sae_f32_to_bf16(x));
    return x;
}

/* Asserts got[i] == round_as(t, ref[i]) for n elements (either may be NULL together). */
static void same_rounded(const char *what, sae_dtype t, const float *got, const float *ref,
                         size_t n)
{
    ck_assert_msg((got == NULL) == (ref == NULL), "%s: presence differs", what);
    for (size_t i = 0; got && i < n; i++)
        ck_assert_msg(got[i] == round_as(t, ref[i]), "%s[%zu]: %g vs %g", what, i, (double)got[i],
                      (double)round_as(t, ref[i]));
}

/* True if p lies inside the model's mapped weights file. */
static bool in_mapping(const sae_model *m, const void *p)
{
    const uint8_t *b = m->st->base;
    return (const uint8_t *)p >= b && (const uint8_t *)p < b + m->st->size;
}

/* ------------------------------------------------------------ loading */

START_TEST(test_every_arch_dtype_norm)
{
    const sae_arch archs[] = {SAE_ARCH_STANDARD, SAE_ARCH_JUMPRELU, SAE_ARCH_TOPK,
                              SAE_ARCH_GATED};
    const sae_dtype dts[] = {SAE_DT_F32, SAE_DT_F16, SAE_DT_BF16, SAE_DT_F64};
    int loaded = 0;
    for (int a = 0; a < 4; a++) {
        for (int nm = 0; nm <= SAE_NORM_EXPECTED_AVERAGE_ONLY_IN; nm++) {
            sae_model *ref = NULL;
            for (int d = 0; d < 4; d++) {
                sae_fixture_opts o;
                sae_fixture_defaults(&o);
                o.arch = archs[a];
                o.norm = (sae_norm)nm;
                o.dtype = dts[d];
                o.k = 5;
                o.rescale_acts_by_decoder_norm = a == 2 && nm % 2;
                o.apply_b_dec_to_input = nm != 1;
                o.norm_scaling_factor = nm == 3 ? 2.5f : 0;
                o.seed = 40 + (uint64_t)a;
                o.model_name = "gpt2";
                o.hook_name = "blocks.3.hook_resid_post";
                char name[64];
                snprintf(name, sizeof name, "m_%d_%d_%d", a, nm, d);
                char *dir = make(name, &o);
                sae_model_warnings warn;
                sae_model *m = load_ok(dir, &warn);
                loaded++;
                /* an old `sae train` factor: applied, with SAELens's reading named */
                ck_assert_uint_eq(warn.n, nm == 3);
                if (nm == 3)
                    ck_assert_ptr_nonnull(strstr(warn.line[0], "SAELens never reads it"));
                ck_assert_int_eq(m->arch, archs[a]);
                ck_assert_int_eq(m->norm, nm);
                ck_assert_str_eq(m->dtype, sae_dtype_name(dts[d]));
                ck_assert_uint_eq(m->d_in, 16);
                ck_assert_uint_eq(m->d_sae, 64);
                ck_assert_uint_eq(m->k, a == 2 ? 5 : 0);
                ck_assert_int_eq(m->rescale_acts_by_decoder_norm, o.rescale_acts_by_decoder_norm);
                ck_assert_int_eq(m->apply_b_dec_to_input, o.apply_b_dec_to_input);
                ck_assert(m->norm_scaling_factor == (nm == 3 ? 2.5f : 1.0f));
                ck_assert_str_eq(m->model_name, "gpt2");
                ck_assert_str_eq(m->hook_name, "blocks.3.hook_resid_post");
                ck_assert(!m->sparsify && !m->w_enc_t);
                ck_assert_uint_eq(strlen(m->weights_digest), 32);
                ck_assert_ptr_nonnull(strstr(m->dir, name));
                ck_assert((m->b_enc == NULL) == (archs[a] == SAE_ARCH_GATED));
                ck_assert((m->threshold != NULL) == (archs[a] == SAE_ARCH_JUMPRELU));
                ck_assert((m->exp_r_mag != NULL) == (archs[a] == SAE_ARCH_GATED));
                ck_assert((m->b_gate != NULL) == (archs[a] == SAE_ARCH_GATED));
                /* Decoder norms in double. */
                float *wd = widened(m, false), *we = widened(m, true);
                for (size_t i = 0; i < m->d_sae; i++) {
                    double s = 0;
                    for (size_t j = 0; j < m->d_in; j++)
                        s += (double)wd[i * 16 + j] * wd[i * 16 + j];
                    ck_assert(fabs(m->dec_norm[i] - sqrt(s)) <= 1e-6 * sqrt(s));
                }
                if (dts[d] == SAE_DT_F32) {
                    /* Aligned F32 is used in place: no copies but exp(r_mag). */
                    ck_assert(in_mapping(m, m->w_enc) && in_mapping(m, m->w_dec) &&
                              in_mapping(m, m->b_dec));
                    ck_assert_uint_eq(m->n_owned, archs[a] == SAE_ARCH_GATED ? 1 : 0);
                    ref = m;
                } else {
                    /* F16/BF16 W_enc and W_dec are used in place, F64 converted. */
                    bool half = dts[d] == SAE_DT_F16 || dts[d] == SAE_DT_BF16;
                    ck_assert(half ? in_mapping(m, m->w_enc_h) && in_mapping(m, m->w_dec_h) &&
                                         !m->w_enc && !m->w_dec
                                   : !in_mapping(m, m->w_enc) && !m->w_enc_h);
                    size_t n = 16 * 64;
                    same_rounded("W_enc", dts[d], we, ref->w_enc, n);
                    same_rounded("W_dec", dts[d], wd, ref->w_dec, n);
                    same_rounded("b_dec", dts[d], m->b_dec, ref->b_dec, 16);
                    same_rounded("b_enc", dts[d], m->b_enc, ref->b_enc, 64);
                    same_rounded("threshold", dts[d], m->threshold, ref->threshold, 64);
                    same_rounded("b_gate", dts[d], m->b_gate, ref->b_gate, 64);
                    same_rounded("b_mag", dts[d], m->b_mag, ref->b_mag, 64);
                    sae_model_free(m);
                }
                free(wd);
                free(we);
                free(dir);
            }
            sae_model_free(ref);
        }
    }
    ck_assert_int_eq(loaded, 64);
}
END_TEST

START_TEST(test_gated_exp_r_mag)
{
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    o.arch = SAE_ARCH_GATED;
    o.dtype = SAE_DT_BF16;
    char *dir = make("gated", &o), *wp = weights_of(dir, false);
    sae_model *m = load_ok(dir, NULL);
    size_t n;
    float *r = read_tensor(wp, "r_mag", &n);
    ck_assert_uint_eq(n, 64);
    for (size_t i = 0; i < n; i++)
        ck_assert(m->exp_r_mag[i] == expf(r[i]));
    free(r);
    sae_model_free(m);
    free(wp);
    free(dir);
}
END_TEST

/* Mean number of features active on `rows` standard-normal rows, in double. */
static double mean_active(const sae_model *m, size_t rows, uint64_t seed)
{
    size_t di = m->d_in, ds = m->d_sae;
    float *x = malloc(rows * di * sizeof *x);
    sae_fixture_random_rows(x, rows, di, 1.0, seed);
    size_t active = 0;
    for (size_t r = 0; r < rows; r++) {
        for (size_t i = 0; i < ds; i++) {
            double pre = 0;
            for (size_t j = 0; j < di; j++)
                pre += ((double)x[r * di + j] - m->b_dec[j]) * m->w_enc[j * ds + i];
            bool on;
            if (m->arch == SAE_ARCH_GATED) {
                double mag = (double)m->exp_r_mag[i] * pre + m->b_mag[i];
                on = pre + m->b_gate[i] > 0 && mag > 0;
            } else if (m->arch == SAE_ARCH_JUMPRELU) {
                on = pre + m->b_enc[i] > m->threshold[i] && pre + m->b_enc[i] > 0;
            } else {
                on = pre + m->b_enc[i] > 0;
            }
            active += on;
        }
    }
    free(x);
    return (double)active / (double)rows;
}

START_TEST(test_fixture_target_l0)
{
    const sae_arch archs[] = {SAE_ARCH_STANDARD, SAE_ARCH_JUMPRELU, SAE_ARCH_GATED};
    for (int a = 0; a < 3; a++) {
        sae_fixture_opts o;
        sae_fixture_defaults(&o);
        o.arch = archs[a];
        o.d_in = 48;
        o.d_sae = 256;
        o.target_l0 = 12;
        o.seed = 9;
        char name[32];
        snprintf(name, sizeof name, "l0_%d", a);
        char *dir = make(name, &o);
        sae_model *m = load_ok(dir, NULL);
        double l0 = mean_active(m, 400, 77);
        /* 400 rows x 256 features: sampling error is well under 1. */
        ck_assert_msg(l0 > 10.5 && l0 < 13.5, "%s: mean l0 %.2f, target 12",
                      sae_arch_name(archs[a]), l0);
        sae_model_free(m);
        free(dir);
    }
}
END_TEST

START_TEST(test_legacy_cfg)
{
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    o.arch = SAE_ARCH_TOPK;
    o.k = 7;
    o.hook_name = "blocks.5.hook_resid_pre";
    char *cur = make("cur", &o);
    o.legacy_cfg = true;
    char *leg = make("leg", &o);
    sae_model *a = load_ok(cur, NULL), *b = load_ok(leg, NULL);
    ck_assert_int_eq(b->arch, SAE_ARCH_TOPK); /* architecture "standard" + activation_fn topk */
    ck_assert_uint_eq(b->k, 7);               /* from activation_fn_kwargs */
    ck_assert_str_eq(b->hook_name, "blocks.5.hook_resid_pre"); /* from hook_point */
    ck_assert_str_eq(b->model_name, "fixture-model");
    ck_assert_int_eq(memcmp(a->w_enc, b->w_enc, 16 * 64 * sizeof(float)), 0);
    ck_assert_str_eq(a->weights_digest, b->weights_digest);
    sae_model_free(a);
    sae_model_free(b);

    /* Legacy relu + architecture jumprelu stays jumprelu; activation_fn_str is read too. */
    o.arch = SAE_ARCH_JUMPRELU;
    char *jr = make("leg_jr", &o);
    a = load_ok(jr, NULL);
    ck_assert_int_eq(a->arch, SAE_ARCH_JUMPRELU);
    sae_model_free(a);
    set_cfg(jr, "activation_fn", NULL);
    set_cfg(jr, "activation_fn_str", "\"topk\"");
    load_fails(jr, SAE_EINVAL, "activation_fn_str", "jumprelu", NULL);
    set_cfg(jr, "architecture", NULL);
    set_cfg(jr, "activation_fn_str", "\"relu\"");
    a = load_ok(jr, NULL); /* no architecture at all: standard */
    ck_assert_int_eq(a->arch, SAE_ARCH_STANDARD);
    sae_model_free(a);
    free(cur);
    free(leg);
    free(jr);
}
END_TEST

START_TEST(test_sparsify)
{
    for (int variant = 0; variant < 2; variant++) {
        sae_fixture_opts o;
        sae_fixture_defaults(&o);
        o.arch = SAE_ARCH_TOPK;
        o.k = 6;
        o.d_sae = variant ? 40 : 64; /* 64 = 4 x d_in: expansion_factor; 40: num_latents */
        o.seed = 5;
        char *sl = make(variant ? "sl1" : "sl0", &o);
        o.sparsify = true;
        char *sp = make(variant ? "sp1" : "sp0", &o);
        sae_model *a = load_ok(sl, NULL), *b = load_ok(sp, NULL);
        ck_assert(b->sparsify && b->w_enc_t);
        ck_assert_int_eq(b->arch, SAE_ARCH_TOPK);
        ck_assert_uint_eq(b->k, 6);
        ck_assert_uint_eq(b->d_in, 16);
        ck_assert_uint_eq(b->d_sae, o.d_sae);
        ck_assert(b->apply_b_dec_to_input);
        ck_assert_int_eq(b->norm, SAE_NORM_NONE);
        ck_assert_str_eq(b->model_name, "");
        ck_assert(in_mapping(b, b->w_enc)); /* no transpose copy */
        for (size_t i = 0; i < o.d_sae; i++)
            for (size_t j = 0; j < 16; j++)
                ck_assert(b->w_enc[i * 16 + j] == a->w_enc[j * o.d_sae + i]);
        ck_assert_int_eq(memcmp(a->b_enc, b->b_enc, o.d_sae * sizeof(float)), 0);
        ck_assert_int_eq(memcmp(a->w_dec, b->w_dec, o.d_sae * 16 * sizeof(float)), 0);
        sae_model_free(a);
        sae_model_free(b);
        free(sl);
        free(sp);
    }
}
END_TEST

START_TEST(test_sparsify_errors)
{
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    o.arch = SAE_ARCH_TOPK;
    o.sparsify = true;
    char *sp = make("sp", &o);
    set_cfg(sp, "num_latents", "32");
    load_fails(sp, SAE_EDIM, "d_sae = 32", "encoder.weight", NULL);
    set_cfg(sp, "num_latents", "0");
    set_cfg(sp, "expansion_factor", "0");
    load_fails(sp, SAE_EINVAL, "num_latents", NULL);
    set_cfg(sp, "expansion_factor", "4");
    set_cfg(sp, "d_in", "17");
    load_fails(sp, SAE_EDIM, "d_in = 17", NULL);
    set_cfg(sp, "d_in", NULL);
    set_cfg(sp, "activation", "\"groupmax\"");
    load_fails(sp, SAE_EINVAL, "activation", "groupmax", "k groups", NULL);
    set_cfg(sp, "activation", "\"topk\"");
    set_cfg(sp, "skip_connection", "true"); /* served, but W_skip must be there */
    load_fails(sp, SAE_EFORMAT, "W_skip", NULL);
    set_cfg(sp, "skip_connection", "false");
    set_cfg(sp, "signed", "\"yes\"");
    load_fails(sp, SAE_EINVAL, "signed", NULL);
    set_cfg(sp, "signed", NULL);
    set_cfg(sp, "k", "65");
    load_fails(sp, SAE_EINVAL, "k = 65", NULL);
    set_cfg(sp, "k", NULL);
    load_fails(sp, SAE_EINVAL, "k is missing", NULL);
    set_cfg(sp, "k", "8");
    sae_model_free(load_ok(sp, NULL));
    char *wp = weights_of(sp, true);
    rewrite(wp, "encoder.bias", NULL, SAE_DT_F32, 0, NULL, NULL);
    load_fails(sp, SAE_EFORMAT, "encoder.bias", "sae.safetensors", NULL);
    rewrite(wp, "encoder.weight", NULL, SAE_DT_F32, 0, NULL, NULL);
    load_fails(sp, SAE_EFORMAT, "encoder.weight", NULL);
    free(wp);
    free(sp);
}
END_TEST

/* ------------------------------------------------------------ issue 13 shapes */

/* Pre-6.0 cfgs as SAELens's handle_pre_6_0_config migrates them: boolean
 * normalize_activations, activation_fn_kwargs.k over the architecture and
 * over a top-level k, names at the top level; with a sae_lens_version >= 6
 * the same keys are read as 6.x reads them. */
START_TEST(test_pre6_migration)
{
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    o.arch = SAE_ARCH_TOPK;
    o.k = 7;
    o.legacy_cfg = true;
    char *dir = make("pre6", &o);
    set_cfg(dir, "normalize_activations", "false");
    sae_model *m = load_ok(dir, NULL);
    ck_assert_int_eq(m->norm, SAE_NORM_NONE);
    sae_model_free(m);
    set_cfg(dir, "normalize_activations", "true");
    set_cfg(dir, "norm_scaling_factor", "2.0");
    m = load_ok(dir, NULL);
    ck_assert_int_eq(m->norm, SAE_NORM_EXPECTED_AVERAGE_ONLY_IN);
    sae_model_free(m);
    set_cfg(dir, "normalize_activations", "null");
    set_cfg(dir, "norm_scaling_factor", NULL);
    m = load_ok(dir, NULL);
    ck_assert_int_eq(m->norm, SAE_NORM_NONE);
    sae_model_free(m);
    /* kwargs.k makes it topk whatever the architecture, and wins over k */
    set_cfg(dir, "architecture", "\"jumprelu\"");
    set_cfg(dir, "k", "3");
    m = load_ok(dir, NULL);
    ck_assert_int_eq(m->arch, SAE_ARCH_TOPK);
    ck_assert_uint_eq(m->k, 7);
    sae_model_free(m);
    /* pre-6 names are the top-level ones, even with a nested metadata */
    set_cfg(dir, "metadata", "{\"model_name\": \"nested\", \"neuronpedia_id\": \"x/y\"}");
    set_cfg(dir, "neuronpedia_id", "\"gpt2-small/0-res-jb\"");
    m = load_ok(dir, NULL);
    ck_assert_str_eq(m->model_name, "fixture-model");
    ck_assert_str_eq(m->neuronpedia_id, "gpt2-small/0-res-jb");
    sae_model_free(m);
    /* from 6.0 on, metadata is read first and activation_fn_kwargs does not
     * override the architecture */
    set_cfg(dir, "sae_lens_version", "\"6.2.0\"");
    set_cfg(dir, "architecture", "\"topk\"");
    m = load_ok(dir, NULL);
    ck_assert_uint_eq(m->k, 3);
    ck_assert_str_eq(m->model_name, "nested");
    ck_assert_str_eq(m->neuronpedia_id, "x/y");
    sae_model_free(m);
    set_cfg(dir, "architecture", "\"jumprelu\"");
    load_fails(dir, SAE_EINVAL, "does not go with architecture \"jumprelu\"", NULL);
    free(dir);
}
END_TEST

/* SAELens <= 5's scaling_factor tensor: all ones is dropped; otherwise
 * finetuning_scaling_factor must be true and it is bound for decode. */
START_TEST(test_scaling_factor_folder)
{
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    o.legacy_cfg = true;
    char *dir = make("sf", &o), *wp = weights_of(dir, false);
    float v[64];
    const uint64_t sh[1] = {64};
    for (int i = 0; i < 64; i++)
        v[i] = 1.0f;
    rewrite(wp, NULL, "scaling_factor", SAE_DT_F32, 1, sh, v);
    sae_model *m = load_ok(dir, NULL);
    ck_assert_ptr_null(m->dec_scale);
    sae_model_free(m);
    v[3] = 0.5f;
    rewrite(wp, "scaling_factor", "scaling_factor", SAE_DT_F32, 1, sh, v);
    load_fails(dir, SAE_EINVAL, "scaling_factor", "finetuning_scaling_factor is not true", NULL);
    set_cfg(dir, "finetuning_scaling_factor", "true");
    m = load_ok(dir, NULL);
    ck_assert_ptr_nonnull(m->dec_scale);
    ck_assert(m->dec_scale[3] == 0.5f && m->dec_scale[4] == 1.0f);
    sae_model_free(m);
    const uint64_t bad[1] = {63};
    rewrite(wp, "scaling_factor", "scaling_factor", SAE_DT_F32, 1, bad, v);
    load_fails(dir, SAE_EDIM, "scaling_factor", NULL);
    free(wp);
    free(dir);
}
END_TEST

/* Rewrites dir's SAELens weights as a transcoder's: W_dec [64, 12], b_dec
 * [12] and, when skip, W_skip [12, 16]. */
static void make_transcoder_weights(const char *dir, bool skip)
{
    char *wp = weights_of(dir, false);
    static float z[64 * 16];
    for (size_t i = 0; i < 64 * 16; i++)
        z[i] = (float)((i * 37) % 11) / 11.0f - 0.5f;
    const uint64_t wd[2] = {64, 12}, bd[1] = {12}, ws[2] = {12, 16};
    rewrite(wp, "W_dec", "W_dec", SAE_DT_F32, 2, wd, z);
    rewrite(wp, "b_dec", "b_dec", SAE_DT_F32, 1, bd, z);
    if (skip)
        rewrite(wp, NULL, "W_skip", SAE_DT_F32, 2, ws, z);
    free(wp);
}

/* SAELens transcoder, skip_transcoder and jumprelu_transcoder folders. */
START_TEST(test_transcoder_folders)
{
    static const struct {
        const char *arch;
        sae_arch base;
        bool skip;
    } kinds[] = {{"transcoder", SAE_ARCH_STANDARD, false},
                 {"skip_transcoder", SAE_ARCH_STANDARD, true},
                 {"jumprelu_transcoder", SAE_ARCH_JUMPRELU, false}};
    for (size_t i = 0; i < 3; i++) {
        sae_fixture_opts o;
        sae_fixture_defaults(&o);
        o.arch = kinds[i].base;
        o.apply_b_dec_to_input = false;
        char name[16];
        snprintf(name, sizeof name, "tc%zu", i);
        char *dir = make(name, &o);
        make_transcoder_weights(dir, kinds[i].skip);
        char arch[48];
        snprintf(arch, sizeof arch, "\"%s\"", kinds[i].arch);
        set_cfg(dir, "architecture", arch);
        load_fails(dir, SAE_EINVAL, "d_out is missing", NULL);
        set_cfg(dir, "d_out", "12");
        set_cfg(dir, "metadata",
                "{\"sae_lens_version\": \"6.18.0\", \"model_name\": \"gpt2\", \"hook_name\": "
                "\"blocks.3.ln2.hook_normalized\", \"hook_name_out\": \"blocks.3.hook_mlp_out\"}");
        sae_model *m = load_ok(dir, NULL);
        ck_assert(m->transcoder);
        ck_assert_int_eq(m->arch, kinds[i].base);
        ck_assert_int_eq(m->skip_connection, kinds[i].skip);
        ck_assert_uint_eq(m->d_in, 16);
        ck_assert_uint_eq(m->d_out, 12);
        ck_assert(!m->apply_b_dec_to_input);
        ck_assert_str_eq(m->hook_name_out, "blocks.3.hook_mlp_out");
        double s = 0;
        for (size_t j = 0; j < 12; j++)
            s += (double)m->w_dec[12 + j] * m->w_dec[12 + j];
        ck_assert_float_eq_tol(m->dec_norm[1], sqrt(s), 1e-6);
        sae_model_free(m);
        set_cfg(dir, "apply_b_dec_to_input", "true");
        load_fails(dir, SAE_EINVAL, "apply_b_dec_to_input", "transcoder", NULL);
        set_cfg(dir, "apply_b_dec_to_input", NULL); /* absent: false for a transcoder */
        sae_model_free(load_ok(dir, NULL));
        set_cfg(dir, "normalize_activations", "\"expected_average_only_in\"");
        load_fails(dir, SAE_EINVAL, "transcoder", NULL);
        set_cfg(dir, "normalize_activations", "\"none\"");
        set_cfg(dir, "d_out", "16");
        load_fails(dir, SAE_EDIM, "W_dec", "d_out", NULL);
        free(dir);
    }
}
END_TEST

/* sparsify's signed, skip_connection and transcode (cfg.json, and the run's
 * config.json before 2025-02), the names from the folder and the hub root,
 * and the hub root's own error. */
START_TEST(test_sparsify_kinds)
{
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    o.arch = SAE_ARCH_TOPK;
    o.sparsify = true;
    char *root = unit_path("hub"), *dir = unit_path("hub/layers.3"), *wp;
    free(make("hub/layers.10", &o));
    free(make("hub/layers.2", &o));
    sae_model *m;
    sae_error err = {0};
    ck_assert_int_eq(sae_fixture_write_model(dir, &o, &err), 0);
    load_fails(root, SAE_EIO, "3 subfolders", "layers.2, layers.3, layers.10", NULL);

    m = load_ok(dir, NULL);
    ck_assert_str_eq(m->hook_name, "blocks.3.hook_resid_post"); /* as SAELens names it */
    ck_assert_str_eq(m->model_name, "");
    ck_assert(!m->signed_topk && !m->transcoder && !m->skip_connection);
    sae_model_free(m);

    char *cfg;
    ck_assert_int_ge(asprintf(&cfg, "%s/config.json", root), 0);
    FILE *fp = fopen(cfg, "w");
    fputs("{\"model\": \"EleutherAI/pythia-70m\", \"transcode\": true}", fp);
    fclose(fp);
    set_cfg(dir, "transcode", NULL); /* a 2024 folder: transcode only in the run's config */
    sae_model_warnings warn;
    m = load_ok(dir, &warn);
    ck_assert_str_eq(m->model_name, "EleutherAI/pythia-70m");
    ck_assert(m->transcoder && m->apply_b_dec_to_input && m->d_out == m->d_in);
    ck_assert_uint_eq(warn.n, 1);
    ck_assert_ptr_nonnull(strstr(warn.line[0], "before 2025-02"));
    sae_model_free(m);
    set_cfg(dir, "transcode", "true"); /* sparsify since f02711e: no b_dec on the input */
    m = load_ok(dir, NULL);
    ck_assert(m->transcoder && !m->apply_b_dec_to_input);
    sae_model_free(m);
    set_cfg(dir, "transcode", "false");
    set_cfg(dir, "signed", "true");
    m = load_ok(dir, NULL);
    ck_assert(m->signed_topk && !m->transcoder);
    sae_model_free(m);
    set_cfg(dir, "signed", "false");
    set_cfg(dir, "skip_connection", "true");
    wp = weights_of(dir, true);
    float z[256] = {0};
    const uint64_t sk[2] = {16, 16};
    rewrite(wp, NULL, "W_skip", SAE_DT_F32, 2, sk, z);
    m = load_ok(dir, NULL);
    ck_assert(m->skip_connection);
    sae_model_free(m);
    set_cfg(dir, "hook_name", "\"layers.3.mlp\"");
    m = load_ok(dir, NULL);
    ck_assert_str_eq(m->hook_name, "layers.3.mlp");
    sae_model_free(m);
    free(wp);
    free(cfg);
    free(root);
    free(dir);
}
END_TEST

/* Names: overrides and the Neuronpedia ids. */
START_TEST(test_names)
{
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    char *dir = make("names", &o);
    sae_model *m = load_ok(dir, NULL);
    const char *mid, *sid;
    size_t ml;
    sae_model_neuronpedia(m, &mid, &ml, &sid);
    ck_assert_uint_eq(ml, strlen("fixture-model"));
    ck_assert_int_eq(strncmp(mid, "fixture-model", ml), 0);
    ck_assert_str_eq(sid, "blocks.0.hook_resid_pre");
    sae_model_names over = {.model_name = "gemma-2-2b", .hook_name = "",
                            .neuronpedia_id = "gemma-2-2b/12-gemmascope-res-16k"};
    sae_error err;
    ck_assert_int_eq(sae_model_set_names(m, &over, &err), 0);
    ck_assert_str_eq(m->model_name, "gemma-2-2b");
    ck_assert_str_eq(m->hook_name, "blocks.0.hook_resid_pre"); /* "" keeps it */
    sae_model_neuronpedia(m, &mid, &ml, &sid);
    ck_assert_uint_eq(ml, 10);
    ck_assert_int_eq(strncmp(mid, "gemma-2-2b", ml), 0);
    ck_assert_str_eq(sid, "12-gemmascope-res-16k");
    sae_model_free(m);
    free(dir);
}
END_TEST

/* A 3-D encoder is a crosscoder: refused saying so. */
START_TEST(test_crosscoder)
{
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    char *dir = make("cc", &o), *wp = weights_of(dir, false);
    float *z = calloc(2 * 16 * 64, sizeof *z);
    const uint64_t sh[3] = {2, 16, 64};
    rewrite(wp, "W_enc", "W_enc", SAE_DT_F32, 3, sh, z);
    load_fails(dir, SAE_EDIM, "W_enc", "3-D", "crosscoder", NULL);
    free(z);
    free(wp);
    free(dir);
}
END_TEST

/* ------------------------------------------------------------ bad cfg */

/* A cfg change and the error it must give. */
typedef struct cfg_case {
    sae_arch arch;
    const char *key, *value; /* value NULL: remove the key */
    int code;
    const char *word;        /* must appear in the message */
} cfg_case;

static const cfg_case cfg_cases[] = {
    {SAE_ARCH_STANDARD, "d_in", NULL, SAE_EINVAL, "d_in is missing"},
    {SAE_ARCH_STANDARD, "d_in", "0", SAE_EINVAL, "d_in must be positive"},
    {SAE_ARCH_STANDARD, "d_in", "\"16\"", SAE_EINVAL, "d_in"},
    {SAE_ARCH_STANDARD, "d_in", "16.0", SAE_EINVAL, "d_in"},
    {SAE_ARCH_STANDARD, "d_sae", "-64", SAE_EINVAL, "d_sae"},
    {SAE_ARCH_STANDARD, "d_sae", NULL, SAE_EINVAL, "d_sae is missing"},
    {SAE_ARCH_STANDARD, "d_in", "17", SAE_EDIM, "\"W_enc\" has shape [16, 64], expected [17, 64]"},
    {SAE_ARCH_STANDARD, "d_sae", "63", SAE_EDIM, "expected [16, 63]"},
    {SAE_ARCH_STANDARD, "architecture", "\"crosscoder\"", SAE_EINVAL, "architecture"},
    {SAE_ARCH_STANDARD, "architecture", "\"transcoder\"", SAE_EINVAL, "d_out is missing"},
    {SAE_ARCH_STANDARD, "activation_fn", "\"tanh-relu\"", SAE_EINVAL, "tanh(relu(pre))"},
    {SAE_ARCH_STANDARD, "activation_fn_kwargs", "{\"k\": 3, \"signed\": true}", SAE_EINVAL,
     "signed"},
    {SAE_ARCH_STANDARD, "activation_fn_kwargs", "[]", SAE_EINVAL, "activation_fn_kwargs"},
    {SAE_ARCH_STANDARD, "sae_lens_version", "\"six\"", SAE_EINVAL, "sae_lens_version"},
    {SAE_ARCH_STANDARD, "finetuning_scaling_factor", "1", SAE_EINVAL,
     "finetuning_scaling_factor"},
    {SAE_ARCH_STANDARD, "architecture", "3", SAE_EINVAL, "architecture must be a string"},
    {SAE_ARCH_TOPK, "k", "0", SAE_EINVAL, "k = 0"},
    {SAE_ARCH_TOPK, "k", "65", SAE_EINVAL, "k = 65"},
    {SAE_ARCH_TOPK, "k", NULL, SAE_EINVAL, "k is missing"},
    {SAE_ARCH_TOPK, "k", "true", SAE_EINVAL, "k must be"},
    {SAE_ARCH_TOPK, "rescale_acts_by_decoder_norm", "1", SAE_EINVAL,
     "rescale_acts_by_decoder_norm"},
    {SAE_ARCH_STANDARD, "apply_b_dec_to_input", "\"yes\"", SAE_EINVAL, "apply_b_dec_to_input"},
    {SAE_ARCH_STANDARD, "normalize_activations", "\"rms\"", SAE_EINVAL, "normalize_activations"},
    {SAE_ARCH_STANDARD, "normalize_activations", "[]", SAE_EINVAL, "normalize_activations"},
    {SAE_ARCH_STANDARD, "norm_scaling_factor", "-1", SAE_EINVAL, "norm_scaling_factor"},
    {SAE_ARCH_STANDARD, "norm_scaling_factor", "0", SAE_EINVAL, "norm_scaling_factor"},
    {SAE_ARCH_STANDARD, "norm_scaling_factor", "1e300", SAE_EINVAL, "norm_scaling_factor"},
    {SAE_ARCH_STANDARD, "norm_scaling_factor", "\"2\"", SAE_EINVAL, "norm_scaling_factor"},
    {SAE_ARCH_STANDARD, "activation_fn", "\"gelu\"", SAE_EINVAL, "activation_fn"},
    {SAE_ARCH_GATED, "activation_fn", "\"topk\"", SAE_EINVAL, "gated"},
    {SAE_ARCH_STANDARD, "metadata", "5", SAE_EINVAL, "metadata"},
    {SAE_ARCH_STANDARD, "metadata", "{\"sae_lens_version\": \"6.1\", \"model_name\": [1]}",
     SAE_EINVAL, "model_name"},
    {SAE_ARCH_STANDARD, "metadata", "{\"hook_name\": {}}", SAE_EINVAL, "hook_name"},
    {SAE_ARCH_STANDARD, "metadata", "{\"neuronpedia_id\": 7}", SAE_EINVAL, "neuronpedia_id"},
    {SAE_ARCH_STANDARD, "dtype", "32", SAE_EINVAL, "dtype"},
};

START_TEST(test_cfg_errors)
{
    for (size_t i = 0; i < sizeof cfg_cases / sizeof *cfg_cases; i++) {
        const cfg_case *c = &cfg_cases[i];
        sae_fixture_opts o;
        sae_fixture_defaults(&o);
        o.arch = c->arch;
        char name[32];
        snprintf(name, sizeof name, "cfg_%zu", i);
        char *dir = make(name, &o);
        set_cfg(dir, c->key, c->value);
        load_fails(dir, c->code, c->word, c->code == SAE_EDIM ? "sae_weights" : "cfg.json", NULL);
        free(dir);
    }
}
END_TEST

START_TEST(test_cfg_not_json)
{
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    char *dir = make("nj", &o);
    write_cfg_text(dir, "{\"d_in\": 16,");
    load_fails(dir, SAE_EFORMAT, "cfg.json", "line", NULL);
    write_cfg_text(dir, "{\"d_in\": 16, \"d_in\": 16}");
    load_fails(dir, SAE_EFORMAT, "cfg.json", "duplicate", NULL);
    write_cfg_text(dir, "[16, 64]");
    load_fails(dir, SAE_EFORMAT, "cfg.json", "not a JSON object", NULL);
    /* Unknown keys, null optional values and names under "metadata" are fine. */
    write_cfg_text(dir, "{\"d_in\": 16, \"d_sae\": 64, \"architecture\": \"standard\", "
                        "\"normalize_activations\": null, \"norm_scaling_factor\": null, "
                        "\"lp_norm\": 1.0, \"context_size\": 128, \"metadata\": {\"model_name\": "
                        "\"m\", \"hook_point\": \"h\"}}");
    sae_model *m = load_ok(dir, NULL);
    ck_assert_int_eq(m->norm, SAE_NORM_NONE);
    ck_assert(m->apply_b_dec_to_input);
    ck_assert_str_eq(m->model_name, "m");
    ck_assert_str_eq(m->hook_name, "h");
    sae_model_free(m);
    free(dir);
}
END_TEST

/* ------------------------------------------------------------ bad tensors */

START_TEST(test_missing_tensors)
{
    const struct {
        sae_arch arch;
        const char *tensor;
    } cases[] = {
        {SAE_ARCH_STANDARD, "W_enc"},  {SAE_ARCH_STANDARD, "b_enc"},
        {SAE_ARCH_STANDARD, "W_dec"},  {SAE_ARCH_STANDARD, "b_dec"},
        {SAE_ARCH_JUMPRELU, "threshold"}, {SAE_ARCH_GATED, "b_gate"},
        {SAE_ARCH_GATED, "b_mag"},     {SAE_ARCH_GATED, "r_mag"},
        {SAE_ARCH_TOPK, "b_enc"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sae_fixture_opts o;
        sae_fixture_defaults(&o);
        o.arch = cases[i].arch;
        char name[32];
        snprintf(name, sizeof name, "miss_%zu", i);
        char *dir = make(name, &o), *wp = weights_of(dir, false);
        rewrite(wp, cases[i].tensor, NULL, SAE_DT_F32, 0, NULL, NULL);
        char quoted[40];
        snprintf(quoted, sizeof quoted, "\"%s\"", cases[i].tensor);
        load_fails(dir, SAE_EFORMAT, "missing tensor", quoted, "sae_weights.safetensors", NULL);
        free(wp);
        free(dir);
    }
}
END_TEST

START_TEST(test_misshaped_tensors)
{
    const struct {
        sae_arch arch;
        const char *tensor;
        int ndim;
        uint64_t shape[2];
        const char *want; /* the message's shape report */
    } cases[] = {
        {SAE_ARCH_STANDARD, "W_enc", 2, {64, 16}, "has shape [64, 16], expected [16, 64] (d_in, d_sae)"},
        {SAE_ARCH_STANDARD, "W_dec", 2, {16, 64}, "has shape [16, 64], expected [64, 16] (d_sae, d_in)"},
        {SAE_ARCH_STANDARD, "W_dec", 1, {1024, 0}, "has shape [1024], expected [64, 16]"},
        {SAE_ARCH_STANDARD, "b_enc", 1, {63, 0}, "has shape [63], expected [64] (d_sae)"},
        {SAE_ARCH_STANDARD, "b_dec", 2, {1, 16}, "has shape [1, 16], expected [16] (d_in)"},
        {SAE_ARCH_JUMPRELU, "threshold", 1, {16, 0}, "expected [64]"},
        {SAE_ARCH_GATED, "r_mag", 1, {65, 0}, "has shape [65]"},
    };
    float *zeros = calloc(2048, sizeof *zeros);
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sae_fixture_opts o;
        sae_fixture_defaults(&o);
        o.arch = cases[i].arch;
        char name[32];
        snprintf(name, sizeof name, "shape_%zu", i);
        char *dir = make(name, &o), *wp = weights_of(dir, false);
        rewrite(wp, cases[i].tensor, cases[i].tensor, SAE_DT_F32, cases[i].ndim, cases[i].shape,
                zeros);
        load_fails(dir, SAE_EDIM, cases[i].tensor, cases[i].want, NULL);
        free(wp);
        free(dir);
    }
    free(zeros);
}
END_TEST

START_TEST(test_dtype_errors)
{
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    char *dir = make("dt", &o), *wp = weights_of(dir, false);
    float v[64] = {0};
    const uint64_t s[1] = {64};
    rewrite(wp, "b_enc", "b_enc", SAE_DT_F16, 1, s, v);
    load_fails(dir, SAE_EFORMAT, "\"b_enc\" is F16", "share one dtype", NULL);
    rewrite(wp, "b_enc", "b_enc", SAE_DT_I32, 1, s, NULL);
    load_fails(dir, SAE_EFORMAT, "\"b_enc\" has dtype I32", NULL);
    free(wp);
    free(dir);
}
END_TEST

START_TEST(test_nonfinite_weights)
{
    /* With d_in 13, b_dec is 52 bytes (F32) or 26 (F16): the bad element sits
     * in the scan's per-element tail rather than its 32-byte blocks. */
    const struct {
        sae_dtype dtype;
        size_t d_in;
        const char *tensor;
        size_t index;
        float value;
    } cases[] = {
        {SAE_DT_F32, 16, "W_enc", 37, NAN},
        {SAE_DT_F32, 16, "b_dec", 2, INFINITY},
        {SAE_DT_F16, 16, "W_dec", 1023, -INFINITY},
        {SAE_DT_BF16, 16, "b_enc", 0, NAN},
        {SAE_DT_F64, 16, "W_enc", 500, NAN},
        {SAE_DT_F32, 13, "b_dec", 12, -NAN},
        {SAE_DT_F16, 13, "b_dec", 12, INFINITY},
        {SAE_DT_BF16, 13, "b_dec", 11, -INFINITY},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        sae_fixture_opts o;
        sae_fixture_defaults(&o);
        o.dtype = cases[i].dtype;
        o.d_in = cases[i].d_in;
        char name[32];
        snprintf(name, sizeof name, "nf_%zu", i);
        char *dir = make(name, &o), *wp = weights_of(dir, false);
        size_t n;
        float *v = read_tensor(wp, cases[i].tensor, &n);
        v[cases[i].index] = cases[i].value;
        sae_st_file *f;
        sae_error err;
        ck_assert_int_eq(sae_st_open(wp, &f, &err), 0);
        const sae_st_tensor *t = sae_st_find(f, cases[i].tensor);
        int ndim = t->ndim;
        uint64_t shape[2] = {t->shape[0], t->shape[1]};
        sae_st_free(f);
        rewrite(wp, cases[i].tensor, cases[i].tensor, cases[i].dtype, ndim, shape, v);
        char elem[64];
        snprintf(elem, sizeof elem, "\"%s\" element %zu is not finite", cases[i].tensor,
                 cases[i].index);
        load_fails(dir, SAE_ERANGE, elem, NULL);
        free(v);
        free(wp);
        free(dir);
    }
}
END_TEST

START_TEST(test_log_threshold)
{
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    o.arch = SAE_ARCH_JUMPRELU;
    char *dir = make("logthr", &o), *wp = weights_of(dir, false);
    size_t n;
    float *thr = read_tensor(wp, "threshold", &n);
    float logs[64];
    for (size_t i = 0; i < n; i++)
        logs[i] = logf(thr[i]);
    const uint64_t s[1] = {64};
    rewrite(wp, "threshold", "log_threshold", SAE_DT_F32, 1, s, logs);
    sae_model *m = load_ok(dir, NULL);
    for (size_t i = 0; i < n; i++)
        ck_assert(m->threshold[i] == expf(logs[i]) &&
                  fabsf(m->threshold[i] - thr[i]) <= 1e-6f * thr[i]);
    sae_model_free(m);
    free(thr);
    free(wp);
    free(dir);
}
END_TEST

START_TEST(test_folder_errors)
{
    char *missing = unit_path("nope");
    load_fails(missing, SAE_EIO, missing, NULL);
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    char *dir = make("f", &o), *wp = weights_of(dir, false), *cfg;
    load_fails(wp, SAE_EIO, "not a folder", NULL);
    /* Truncated weights: the reader's own code, naming the weights file. */
    FILE *fp = fopen(wp, "r+b");
    ck_assert_ptr_nonnull(fp);
    ck_assert_int_eq(ftruncate(fileno(fp), 200), 0);
    fclose(fp);
    load_fails(dir, SAE_EST_TRUNCATED, wp, NULL);
    ck_assert_int_eq(remove(wp), 0);
    load_fails(dir, SAE_EIO, "sae_weights.safetensors", "sae.safetensors", NULL);
    ck_assert_int_ge(asprintf(&cfg, "%s/cfg.json", dir), 0);
    ck_assert_int_eq(remove(cfg), 0);
    /* No file of any layout left: one line saying so (core/sae/format.c). */
    load_fails(dir, SAE_EFORMAT, dir, "empty", "saed reads SAELens", NULL);
    free(cfg);
    free(wp);
    free(dir);
    free(missing);
}
END_TEST

/* ------------------------------------------------------------ digest, warnings */

/* XXH3-128 of a file read with stdio, formatted from the hash's two halves. */
static void independent_digest(const char *path, char out[33])
{
    FILE *fp = fopen(path, "rb");
    ck_assert_ptr_nonnull(fp);
    XXH3_state_t *s = XXH3_createState();
    XXH3_128bits_reset(s);
    char buf[1000]; /* an odd size, so updates do not line up with anything */
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, fp)) > 0)
        XXH3_128bits_update(s, buf, n);
    fclose(fp);
    XXH128_hash_t h = XXH3_128bits_digest(s);
    XXH3_freeState(s);
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)h.high64,
             (unsigned long long)h.low64);
}

START_TEST(test_digest)
{
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    o.d_in = 64;
    o.d_sae = 1100; /* about 560 KB */
    char *dir = make("dg", &o), *wp = weights_of(dir, false);
    char want[33], got[33];
    independent_digest(wp, want);
    sae_model *m = load_ok(dir, NULL);
    ck_assert_str_eq(m->weights_digest, want);
    sae_error err;
    ck_assert_int_eq(sae_digest_file(wp, got, &err), 0);
    ck_assert_str_eq(got, want);
    sae_model *m2 = load_ok(dir, NULL);
    ck_assert_str_eq(m2->weights_digest, want); /* stable */
    sae_model_free(m2);
    sae_model_free(m);
    o.seed = 2;
    char *other = make("dg2", &o);
    m = load_ok(other, NULL);
    ck_assert_str_ne(m->weights_digest, want);
    sae_model_free(m);
    /* Buffer digests, including the empty one. */
    char e[33], x[33];
    sae_digest_buffer("", 0, got);
    XXH128_hash_t h = XXH3_128bits("", 0);
    snprintf(e, 33, "%016llx%016llx", (unsigned long long)h.high64, (unsigned long long)h.low64);
    ck_assert_str_eq(got, e);
    sae_digest_buffer("abc", 3, got);
    h = XXH3_128bits("abc", 3);
    snprintf(x, 33, "%016llx%016llx", (unsigned long long)h.high64, (unsigned long long)h.low64);
    ck_assert_str_eq(got, x);
    char *missing = unit_path("missing");
    ck_assert_int_eq(sae_digest_file(missing, got, &err), SAE_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, missing));
    free(missing);
    free(other);
    free(wp);
    free(dir);
}
END_TEST

START_TEST(test_digest_large_file)
{
    /* Bigger than one 4 MB chunk of the fused digest + scan pass, in F16 so
     * pages are also handed back; digest and weights must still be right. */
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    o.d_in = 256;
    o.d_sae = 6000;
    o.dtype = SAE_DT_F16;
    char *dir = make("big", &o), *wp = weights_of(dir, false);
    char want[33];
    independent_digest(wp, want);
    sae_model *m = load_ok(dir, NULL);
    ck_assert_str_eq(m->weights_digest, want);
    size_t n;
    float *w = read_tensor(wp, "W_dec", &n);
    ck_assert_uint_eq(n, 256 * 6000);
    float *wd = widened(m, false);
    ck_assert_int_eq(memcmp(w, wd, n * sizeof *w), 0);
    free(wd);
    free(w);
    sae_model_free(m);
    free(wp);
    free(dir);
}
END_TEST

START_TEST(test_warning_without_scaling_factor)
{
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    o.norm = SAE_NORM_EXPECTED_AVERAGE_ONLY_IN;
    char *dir = make("warn", &o);
    sae_model_warnings warn = {.n = 5}; /* emptied by the load */
    sae_model *m = load_ok(dir, &warn);
    ck_assert_uint_eq(warn.n, 1);
    ck_assert_ptr_nonnull(strstr(warn.line[0], "norm_scaling_factor"));
    ck_assert_ptr_nonnull(strstr(warn.line[0], "cfg.json"));
    ck_assert_ptr_null(strchr(warn.line[0], '\n')); /* one line */
    ck_assert(m->norm_scaling_factor == 1.0f);
    sae_model_free(m);
    m = load_ok(dir, NULL); /* no list: still loads */
    sae_model_free(m);
    /* A load that fails after cfg was read still hands back its warnings
     * (sae info prints them before the error). */
    set_cfg(dir, "d_in", "17");
    sae_model *none = NULL;
    sae_error err;
    ck_assert_int_eq(sae_model_load(dir, &none, &warn, &err), SAE_EDIM);
    ck_assert_ptr_null(none);
    ck_assert_uint_eq(warn.n, 1);
    ck_assert_ptr_nonnull(strstr(warn.line[0], "norm_scaling_factor"));
    set_cfg(dir, "d_in", "16");
    set_cfg(dir, "norm_scaling_factor", "0.125");
    m = load_ok(dir, &warn); /* point 7: the old folders still load, with a warning */
    ck_assert_uint_eq(warn.n, 1);
    ck_assert_ptr_nonnull(strstr(warn.line[0], "norm_scaling_factor 0.125"));
    ck_assert_ptr_nonnull(strstr(warn.line[0], "SAELens"));
    ck_assert(m->norm_scaling_factor == 0.125f);
    sae_model_free(m);
    free(dir);
}
END_TEST

/* Loads the folder several times; used from two threads at once. */
static void *load_loop(void *arg)
{
    const char *dir = arg;
    for (int i = 0; i < 5; i++) {
        sae_model *m = NULL;
        sae_error err;
        if (sae_model_load(dir, &m, NULL, &err))
            return (void *)1;
        sae_model_free(m);
    }
    return NULL;
}

START_TEST(test_concurrent_loads)
{
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    o.dtype = SAE_DT_BF16;
    o.arch = SAE_ARCH_GATED;
    char *dir = make("conc", &o);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, load_loop, dir), 0);
    for (int i = 0; i < 2; i++) {
        void *rv;
        pthread_join(t[i], &rv);
        ck_assert_ptr_null(rv);
    }
    free(dir);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("model");
    TCase *tc = tcase_create("load");
    tcase_add_checked_fixture(tc, unit_setup, unit_teardown);
    tcase_add_test(tc, test_every_arch_dtype_norm);
    tcase_add_test(tc, test_gated_exp_r_mag);
    tcase_add_test(tc, test_fixture_target_l0);
    tcase_add_test(tc, test_legacy_cfg);
    tcase_add_test(tc, test_sparsify);
    tcase_add_test(tc, test_pre6_migration);
    tcase_add_test(tc, test_scaling_factor_folder);
    tcase_add_test(tc, test_transcoder_folders);
    tcase_add_test(tc, test_sparsify_kinds);
    tcase_add_test(tc, test_names);
    tcase_add_test(tc, test_crosscoder);
    tcase_add_test(tc, test_log_threshold);
    tcase_add_test(tc, test_concurrent_loads);
    suite_add_tcase(s, tc);
    tc = tcase_create("errors");
    tcase_add_checked_fixture(tc, unit_setup, unit_teardown);
    tcase_add_test(tc, test_cfg_errors);
    tcase_add_test(tc, test_cfg_not_json);
    tcase_add_test(tc, test_sparsify_errors);
    tcase_add_test(tc, test_missing_tensors);
    tcase_add_test(tc, test_misshaped_tensors);
    tcase_add_test(tc, test_dtype_errors);
    tcase_add_test(tc, test_nonfinite_weights);
    tcase_add_test(tc, test_folder_errors);
    suite_add_tcase(s, tc);
    tc = tcase_create("digest");
    tcase_add_checked_fixture(tc, unit_setup, unit_teardown);
    tcase_add_test(tc, test_digest);
    tcase_add_test(tc, test_digest_large_file);
    tcase_add_test(tc, test_warning_without_scaling_factor);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return unit_run(suite());
}
