/* model_cfg.c: reading an SAE folder's cfg.json (model_cfg.h): the SAELens
 * keys (6.x and the pre-6.0 spellings) and sparsify's, validated field by
 * field into an sae_model_cfg. Nothing here looks at a tensor. */
#include "sae/model_cfg.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define CFG_MAX_BYTES (16u << 20) /* SAELens configs are a few KB; this caps a hostile one */

/* The cfg.json spelling of an architecture. */
const char *sae_arch_name(sae_arch a)
{
    switch (a) {
    case SAE_ARCH_STANDARD: return "standard";
    case SAE_ARCH_JUMPRELU: return "jumprelu";
    case SAE_ARCH_TOPK: return "topk";
    case SAE_ARCH_GATED: return "gated";
    case SAE_ARCH_AUTOENCODER: return "autoencoder";
    }
    return "?";
}

/* The cfg.json spelling of a normalisation mode. */
const char *sae_norm_name(sae_norm n)
{
    switch (n) {
    case SAE_NORM_NONE: return "none";
    case SAE_NORM_CONSTANT_NORM_RESCALE: return "constant_norm_rescale";
    case SAE_NORM_LAYER_NORM: return "layer_norm";
    case SAE_NORM_EXPECTED_AVERAGE_ONLY_IN: return "expected_average_only_in";
    }
    return "?";
}

/* The architecture spelled s (as sae_arch_name spells it) into *out; false
 * when s is none of them. */
static bool arch_of(const char *s, sae_arch *out)
{
    for (sae_arch a = SAE_ARCH_STANDARD; a <= SAE_ARCH_AUTOENCODER; a++)
        if (strcmp(s, sae_arch_name(a)) == 0) {
            *out = a;
            return true;
        }
    return false;
}

/* The normalisation mode spelled s (as sae_norm_name spells it) into *out;
 * false when s is none of them. */
static bool norm_of(const char *s, sae_norm *out)
{
    for (sae_norm n = SAE_NORM_NONE; n <= SAE_NORM_EXPECTED_AVERAGE_ONLY_IN; n++)
        if (strcmp(s, sae_norm_name(n)) == 0) {
            *out = n;
            return true;
        }
    return false;
}

/* Reads obj[key] as an optional non-negative integer. Sets *present and *out;
 * null counts as absent. Anything else is an error naming the field. */
static int cfg_uint(const json_t *obj, const char *key, const char *path, size_t *out,
                    bool *present, sae_error *err)
{
    json_t *v = json_object_get(obj, key);
    *present = false;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) < 0)
        return sae_error_set(err, SAE_EINVAL, "%s: %s must be a non-negative integer", path,
                             key);
    *out = (size_t)json_integer_value(v);
    *present = true;
    return 0;
}

/* Reads obj[key] as an optional boolean (absent or null: dflt). */
static int cfg_bool(const json_t *obj, const char *key, const char *path, bool dflt, bool *out,
                    sae_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v))
        return sae_error_set(err, SAE_EINVAL, "%s: %s must be true or false", path, key);
    *out = json_is_true(v);
    return 0;
}

/* Reads obj[key] as an optional string (absent or null: NULL). */
static int cfg_str(const json_t *obj, const char *key, const char *path, const char **out,
                   sae_error *err)
{
    json_t *v = json_object_get(obj, key);
    *out = NULL;
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return sae_error_set(err, SAE_EINVAL, "%s: %s must be a string", path, key);
    *out = json_string_value(v);
    return 0;
}

/* model_name / hook_name: top level first, then under "metadata" (SAELens 6),
 * and the pre-6.0 name `hook_point` for hook_name. */
static int cfg_names(const json_t *cfg, const char *path, sae_model_cfg *c, sae_error *err)
{
    const json_t *meta = json_object_get(cfg, "metadata");
    int rc;
    if (meta && !json_is_null(meta) && !json_is_object(meta))
        return sae_error_set(err, SAE_EINVAL, "%s: metadata must be an object", path);
    if (!json_is_object(meta))
        meta = NULL;
    if ((rc = cfg_str(cfg, "model_name", path, &c->model_name, err)))
        return rc;
    if (!c->model_name && meta && (rc = cfg_str(meta, "model_name", path, &c->model_name, err)))
        return rc;
    const char *const hook_keys[] = {"hook_name", "hook_point"};
    for (int i = 0; i < 2 && !c->hook_name; i++) {
        if ((rc = cfg_str(cfg, hook_keys[i], path, &c->hook_name, err)))
            return rc;
        if (!c->hook_name && meta && (rc = cfg_str(meta, hook_keys[i], path, &c->hook_name, err)))
            return rc;
    }
    return 0;
}

/* Appends one warning line to warn (NULL: dropped); past
 * SAE_MODEL_WARN_MAX lines the rest are dropped. */
static void warn_add(sae_model_warnings *warn, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void warn_add(sae_model_warnings *warn, const char *fmt, ...)
{
    if (!warn || warn->n >= SAE_MODEL_WARN_MAX)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(warn->line[warn->n++], SAE_MODEL_WARN_LEN, fmt, ap);
    va_end(ap);
}

/* SAELens's architecture: the "architecture" key, then the pre-6.0
 * activation_fn (or activation_fn_str), which said what "standard" was. */
static int saelens_arch(const json_t *cfg, const char *path, sae_model_cfg *c, sae_error *err)
{
    const char *arch = NULL, *act = NULL;
    int rc;
    if ((rc = cfg_str(cfg, "architecture", path, &arch, err)))
        return rc;
    c->arch = SAE_ARCH_STANDARD;
    if (arch && !arch_of(arch, &c->arch))
        return sae_error_set(err, SAE_EINVAL,
                             "%s: architecture \"%.64s\" is not one of standard, jumprelu, "
                             "topk, gated, autoencoder",
                             path, arch);

    const char *act_key = json_object_get(cfg, "activation_fn") ? "activation_fn"
                                                                : "activation_fn_str";
    if ((rc = cfg_str(cfg, act_key, path, &act, err)))
        return rc;
    if (act && strcmp(act, "topk") == 0) {
        if (c->arch != SAE_ARCH_STANDARD && c->arch != SAE_ARCH_TOPK)
            return sae_error_set(err, SAE_EINVAL,
                                 "%s: %s \"topk\" does not go with architecture \"%s\"", path,
                                 act_key, sae_arch_name(c->arch));
        c->arch = SAE_ARCH_TOPK;
    } else if (act && strcmp(act, "relu") != 0) {
        return sae_error_set(err, SAE_EINVAL,
                             "%s: %s \"%.64s\" is not supported (relu or topk)", path, act_key,
                             act);
    }
    return 0;
}

/* SAELens's sizes: d_in and d_sae (required and positive, except for the
 * autoencoder, whose layers give them), and k for topk (top level, or the
 * pre-6.0 activation_fn_kwargs.k), in [1, d_sae]. */
static int saelens_dims(const json_t *cfg, const char *path, sae_model_cfg *c, sae_error *err)
{
    bool present;
    int rc;
    if (c->arch != SAE_ARCH_AUTOENCODER) {
        if ((rc = cfg_uint(cfg, "d_in", path, &c->d_in, &present, err)))
            return rc;
        if (!present || c->d_in == 0)
            return sae_error_set(err, SAE_EINVAL, "%s: d_in %s", path,
                                 present ? "must be positive" : "is missing");
        if ((rc = cfg_uint(cfg, "d_sae", path, &c->d_sae, &present, err)))
            return rc;
        if (!present || c->d_sae == 0)
            return sae_error_set(err, SAE_EINVAL, "%s: d_sae %s", path,
                                 present ? "must be positive" : "is missing");
    }
    if (c->arch == SAE_ARCH_TOPK) {
        if ((rc = cfg_uint(cfg, "k", path, &c->k, &present, err)))
            return rc;
        const json_t *kw = json_object_get(cfg, "activation_fn_kwargs");
        if (!present && json_is_object(kw)) {
            if ((rc = cfg_uint(kw, "k", path, &c->k, &present, err)))
                return rc;
        }
        if (!present)
            return sae_error_set(err, SAE_EINVAL,
                                 "%s: k is missing (topk needs k, or activation_fn_kwargs.k)",
                                 path);
        if (c->k < 1 || c->k > c->d_sae)
            return sae_error_set(err, SAE_EINVAL, "%s: k = %zu is not in [1, d_sae = %zu]", path,
                                 c->k, c->d_sae);
    }
    return 0;
}

/* SAELens's normalisation: normalize_activations and norm_scaling_factor
 * (positive and finite as an F32 when given). expected_average_only_in
 * without a factor loads with 1 and a warning, as SAELens would run it. */
static int saelens_norm(const json_t *cfg, const char *path, sae_model_cfg *c,
                        sae_model_warnings *warn, sae_error *err)
{
    const char *norm = NULL;
    int rc;
    if ((rc = cfg_str(cfg, "normalize_activations", path, &norm, err)))
        return rc;
    c->norm = SAE_NORM_NONE;
    if (norm && !norm_of(norm, &c->norm))
        return sae_error_set(err, SAE_EINVAL,
                             "%s: normalize_activations \"%.64s\" is not one of none, "
                             "constant_norm_rescale, layer_norm, expected_average_only_in",
                             path, norm);
    json_t *s = json_object_get(cfg, "norm_scaling_factor");
    if (s && !json_is_null(s)) {
        c->scale = json_number_value(s);
        float sf = (float)c->scale;
        if (!json_is_number(s) || !(sf > 0) || !isfinite(sf))
            return sae_error_set(err, SAE_EINVAL,
                                 "%s: norm_scaling_factor must be a positive finite number",
                                 path);
        c->has_scale = true;
    }
    if (c->norm == SAE_NORM_EXPECTED_AVERAGE_ONLY_IN && !c->has_scale)
        warn_add(warn,
                 "%s: normalize_activations is expected_average_only_in but "
                 "norm_scaling_factor is absent; using 1",
                 path);
    return 0;
}

/* Reads a SAELens cfg.json (6.x, and the pre-6.0 keys activation_fn(_str),
 * activation_fn_kwargs.k, hook_point). Unknown keys are ignored: SAELens
 * configs carry many training settings that do not matter for inference. */
static int cfg_saelens(const json_t *cfg, const char *path, sae_model_cfg *c,
                       sae_model_warnings *warn, sae_error *err)
{
    const char *dtype = NULL;
    int rc;
    if ((rc = saelens_arch(cfg, path, c, err)) || (rc = saelens_dims(cfg, path, c, err)) ||
        (rc = cfg_bool(cfg, "rescale_acts_by_decoder_norm", path, false, &c->rescale, err)) ||
        (rc = cfg_bool(cfg, "apply_b_dec_to_input", path, true, &c->apply_b_dec, err)) ||
        (rc = saelens_norm(cfg, path, c, warn, err)))
        return rc;
    /* The cfg dtype is what SAELens would cast to; the file's dtype is what
     * we use, so it is only checked to be a string. */
    if ((rc = cfg_str(cfg, "dtype", path, &dtype, err)))
        return rc;
    return cfg_names(cfg, path, c, err);
}

/* Reads a sparsify cfg.json: activation topk, k, num_latents or
 * expansion_factor, optional d_in. Features sparsify has and the encoder here
 * does not implement (skip connection, transcoding, other activations) are
 * refused rather than silently giving different results. */
static int cfg_sparsify(const json_t *cfg, const char *path, sae_model_cfg *c, sae_error *err)
{
    const char *act = NULL;
    bool present, flag = false;
    int rc;
    if ((rc = cfg_str(cfg, "activation", path, &act, err)))
        return rc;
    if (act && strcmp(act, "topk") != 0)
        return sae_error_set(err, SAE_EINVAL,
                             "%s: activation \"%.64s\" is not supported (only topk)", path, act);
    if ((rc = cfg_bool(cfg, "skip_connection", path, false, &flag, err)))
        return rc;
    if (flag)
        return sae_error_set(err, SAE_EINVAL, "%s: skip_connection is not supported", path);
    if ((rc = cfg_bool(cfg, "transcode", path, false, &flag, err)))
        return rc;
    if (flag)
        return sae_error_set(err, SAE_EINVAL, "%s: transcode (a transcoder) is not supported",
                             path);
    c->arch = SAE_ARCH_TOPK;
    c->apply_b_dec = true;
    c->norm = SAE_NORM_NONE;
    if ((rc = cfg_uint(cfg, "k", path, &c->k, &present, err)))
        return rc;
    if (!present || c->k == 0)
        return sae_error_set(err, SAE_EINVAL, "%s: k %s", path,
                             present ? "must be positive" : "is missing");
    if ((rc = cfg_uint(cfg, "num_latents", path, &c->sparsify_latents, &present, err)) ||
        (rc = cfg_uint(cfg, "expansion_factor", path, &c->sparsify_expansion, &present, err)) ||
        (rc = cfg_uint(cfg, "d_in", path, &c->d_in, &present, err)))
        return rc;
    return cfg_names(cfg, path, c, err);
}

/* Reads cfg.json as JSON, capped at CFG_MAX_BYTES so a hostile file cannot
 * make the loader allocate without bound. */
int sae_model_cfg_read(const char *path, json_t **out, sae_error *err)
{
    struct stat st;
    if (stat(path, &st))
        return sae_error_set(err, SAE_EIO, "%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return sae_error_set(err, SAE_EIO, "%s: not a regular file", path);
    if ((uint64_t)st.st_size > CFG_MAX_BYTES)
        return sae_error_set(err, SAE_EFORMAT, "%s: %lld bytes is too large for a config", path,
                             (long long)st.st_size);
    json_error_t jerr;
    json_t *cfg = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!cfg)
        return sae_error_set(err, SAE_EFORMAT, "%s: line %d column %d: %s", path, jerr.line,
                             jerr.column, jerr.text);
    if (!json_is_object(cfg)) {
        json_decref(cfg);
        return sae_error_set(err, SAE_EFORMAT, "%s: not a JSON object", path);
    }
    *out = cfg;
    return 0;
}

/* One layout or the other, by which weights file the folder holds. */
int sae_model_cfg_parse(const json_t *cfg, const char *path, bool sparsify, sae_model_cfg *c,
                        sae_model_warnings *warn, sae_error *err)
{
    return sparsify ? cfg_sparsify(cfg, path, c, err) : cfg_saelens(cfg, path, c, warn, err);
}
