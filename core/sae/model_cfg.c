/* model_cfg.c: reading an SAE folder's cfg.json (model_cfg.h): the SAELens
 * keys (6.x and the pre-6.0 spellings) and sparsify's, validated field by
 * field into an sae_model_cfg. Nothing here looks at a tensor. */
#include "sae/model_cfg.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
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

/* The names an SAE carries (model_name, hook_name, hook_name_out,
 * neuronpedia_id): SAELens 6 keeps them under "metadata", before 6.0 they
 * were top-level keys (handle_pre_6_0_config rebuilds metadata from the top
 * level only). The place the cfg's version says is read first, the other
 * one after; hook_name also under its pre-6.0 name hook_point. */
static int cfg_names(const json_t *cfg, const char *path, sae_model_cfg *c, sae_error *err)
{
    const json_t *meta = json_object_get(cfg, "metadata");
    int rc;
    if (meta && !json_is_null(meta) && !json_is_object(meta))
        return sae_error_set(err, SAE_EINVAL, "%s: metadata must be an object", path);
    if (!json_is_object(meta))
        meta = NULL;
    const json_t *where[2] = {c->pre6 ? cfg : meta, c->pre6 ? meta : cfg};
    struct {
        const char *key, *old_key;
        const char **dst;
    } names[] = {
        {"model_name", NULL, &c->model_name},
        {"hook_name", "hook_point", &c->hook_name},
        {"hook_name_out", NULL, &c->hook_name_out},
        {"neuronpedia_id", NULL, &c->neuronpedia_id},
    };
    for (size_t n = 0; n < sizeof names / sizeof *names; n++)
        for (int w = 0; w < 2 && !*names[n].dst; w++) {
            if (!where[w])
                continue;
            if ((rc = cfg_str(where[w], names[n].key, path, names[n].dst, err)))
                return rc;
            if (!*names[n].dst && names[n].old_key &&
                (rc = cfg_str(where[w], names[n].old_key, path, names[n].dst, err)))
                return rc;
        }
    return 0;
}

/* Whether cfg is read as SAELens < 6.0 does (handle_config_defaulting): no
 * sae_lens_version at the top level or under metadata, or one below
 * 6.0.0-rc.0, that is a major version below 6. */
static int cfg_is_pre6(const json_t *cfg, const char *path, bool *pre6, sae_error *err)
{
    const char *v = NULL;
    const json_t *meta = json_object_get(cfg, "metadata");
    int rc;
    if ((rc = cfg_str(cfg, "sae_lens_version", path, &v, err)))
        return rc;
    if ((!v || !*v) && json_is_object(meta) &&
        (rc = cfg_str(meta, "sae_lens_version", path, &v, err)))
        return rc;
    if (!v || !*v) {
        *pre6 = true;
        return 0;
    }
    char *end;
    errno = 0;
    unsigned long major = strtoul(v, &end, 10);
    if (end == v || errno || (*end && *end != '.' && *end != '-' && *end != 'r'))
        return sae_error_set(err, SAE_EINVAL, "%s: sae_lens_version \"%.64s\" is not a version",
                             path, v);
    *pre6 = major < 6;
    return 0;
}

/* Appends one warning line to warn (NULL: dropped); past
 * SAE_MODEL_WARN_MAX lines the rest are dropped. */
void sae_model_warn(sae_model_warnings *warn, const char *fmt, ...)
{
    if (!warn || warn->n >= SAE_MODEL_WARN_MAX)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(warn->line[warn->n++], SAE_MODEL_WARN_LEN, fmt, ap);
    va_end(ap);
}

/* SAELens's transcoder architectures (SL6 sae_lens/__init__.py): what they
 * are made of here. */
static const struct {
    const char *name;
    sae_arch arch;
    bool skip;
} transcoder_archs[] = {
    {"transcoder", SAE_ARCH_STANDARD, false},
    {"skip_transcoder", SAE_ARCH_STANDARD, true},
    {"jumprelu_transcoder", SAE_ARCH_JUMPRELU, false},
};

/* SAELens's architecture: the "architecture" key (an SAE's, or a
 * transcoder's), then the pre-6.0 activation_fn (or activation_fn_str),
 * which said what "standard" was. As handle_pre_6_0_config migrates it, a
 * pre-6.0 activation_fn "topk" with activation_fn_kwargs.k makes the
 * architecture topk whatever the architecture key said. What SAELens would
 * silently drop (tanh-relu, a signed top-k) is refused instead. */
static int saelens_arch(const json_t *cfg, const char *path, sae_model_cfg *c, sae_error *err)
{
    const char *arch = NULL, *act = NULL;
    int rc;
    if ((rc = cfg_str(cfg, "architecture", path, &arch, err)))
        return rc;
    c->arch = SAE_ARCH_STANDARD;
    for (size_t i = 0; arch && i < sizeof transcoder_archs / sizeof *transcoder_archs; i++)
        if (strcmp(arch, transcoder_archs[i].name) == 0) {
            c->arch = transcoder_archs[i].arch;
            c->skip = transcoder_archs[i].skip;
            c->transcoder = true;
        }
    if (arch && !c->transcoder && !arch_of(arch, &c->arch))
        return sae_error_set(err, SAE_EINVAL,
                             "%s: architecture \"%.64s\" is not one of standard, jumprelu, "
                             "topk, gated, transcoder, skip_transcoder, jumprelu_transcoder, "
                             "autoencoder",
                             path, arch);

    const char *act_key = json_object_get(cfg, "activation_fn") ? "activation_fn"
                                                                : "activation_fn_str";
    if ((rc = cfg_str(cfg, act_key, path, &act, err)))
        return rc;
    const json_t *kw = json_object_get(cfg, "activation_fn_kwargs");
    if (kw && !json_is_null(kw) && !json_is_object(kw))
        return sae_error_set(err, SAE_EINVAL, "%s: activation_fn_kwargs must be an object", path);
    const json_t *kw_k = json_is_object(kw) ? json_object_get(kw, "k") : NULL;
    if (json_is_true(json_is_object(kw) ? json_object_get(kw, "signed") : NULL))
        return sae_error_set(err, SAE_EINVAL,
                             "%s: activation_fn_kwargs.signed is true: a signed top-k (the 2024 "
                             "EleutherAI sae), which SAELens runs unsigned; load the sparsify "
                             "folder (cfg.json + sae.safetensors) instead",
                             path);
    if (act && strcmp(act, "tanh-relu") == 0)
        return sae_error_set(err, SAE_EINVAL,
                             "%s: %s \"tanh-relu\" (f = tanh(relu(pre)), SAELens <= 5) is not "
                             "supported: SAELens 6 runs it as relu, and saed will not guess",
                             path, act_key);
    if (act && strcmp(act, "topk") == 0) {
        if (c->pre6 && kw_k && !json_is_null(kw_k))
            c->arch = SAE_ARCH_TOPK; /* handle_pre_6_0_config: overrides the architecture */
        else if (c->arch != SAE_ARCH_STANDARD && c->arch != SAE_ARCH_TOPK)
            return sae_error_set(err, SAE_EINVAL,
                                 "%s: %s \"topk\" does not go with architecture \"%s\"", path,
                                 act_key, arch);
        if (c->transcoder)
            return sae_error_set(err, SAE_EINVAL,
                                 "%s: %s \"topk\" does not go with architecture \"%s\"", path,
                                 act_key, arch);
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
    if (c->transcoder) {
        if ((rc = cfg_uint(cfg, "d_out", path, &c->d_out, &present, err)))
            return rc;
        if (!present || c->d_out == 0)
            return sae_error_set(err, SAE_EINVAL, "%s: d_out %s (a transcoder's output width)",
                                 path, present ? "must be positive" : "is missing");
    }
    if (c->arch == SAE_ARCH_TOPK) {
        /* Before 6.0, activation_fn_kwargs.k wins over a top-level k
         * (handle_pre_6_0_config sets k from it last). */
        const json_t *kw = json_object_get(cfg, "activation_fn_kwargs");
        present = false;
        if (c->pre6 && json_is_object(kw) && (rc = cfg_uint(kw, "k", path, &c->k, &present, err)))
            return rc;
        if (!present && (rc = cfg_uint(cfg, "k", path, &c->k, &present, err)))
            return rc;
        if (!present && json_is_object(kw) && (rc = cfg_uint(kw, "k", path, &c->k, &present, err)))
            return rc;
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

/* SAELens's normalisation: normalize_activations (a name, or the pre-6.0
 * boolean that handle_pre_6_0_config maps: false -> none, true ->
 * expected_average_only_in; null -> none) and norm_scaling_factor (positive
 * and finite as an F32 when given).
 *
 * norm_scaling_factor is a key SAELens never reads: folders of earlier
 * `sae train` versions carry it, trained on x·s. They still load with the
 * factor applied (x·s in, ÷s out) and a warning that SAELens encodes them
 * differently. expected_average_only_in without a factor is a no-op, as in
 * SAELens loading from disk, with a warning. */
static int saelens_norm(const json_t *cfg, const char *path, sae_model_cfg *c,
                        sae_model_warnings *warn, sae_error *err)
{
    const char *norm = NULL;
    int rc;
    c->norm = SAE_NORM_NONE;
    const json_t *nv = json_object_get(cfg, "normalize_activations");
    if (json_is_boolean(nv))
        c->norm = json_is_true(nv) ? SAE_NORM_EXPECTED_AVERAGE_ONLY_IN : SAE_NORM_NONE;
    else if ((rc = cfg_str(cfg, "normalize_activations", path, &norm, err)))
        return rc;
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
    if (c->transcoder && c->norm == SAE_NORM_EXPECTED_AVERAGE_ONLY_IN)
        return sae_error_set(err, SAE_EINVAL,
                             "%s: normalize_activations expected_average_only_in is not "
                             "supported for a transcoder (fold the factor into the weights)",
                             path);
    if (c->norm == SAE_NORM_EXPECTED_AVERAGE_ONLY_IN && !c->has_scale)
        sae_model_warn(warn,
                 "%s: normalize_activations is expected_average_only_in but "
                 "norm_scaling_factor is absent; using 1",
                 path);
    else if (c->norm == SAE_NORM_EXPECTED_AVERAGE_ONLY_IN)
        sae_model_warn(warn,
                 "%s: norm_scaling_factor %g (an older `sae train` folder) is applied here "
                 "but SAELens never reads it, so SAELens encodes this folder differently; "
                 "retrain, or fold it into the weights (W_enc*s, W_dec/s, b_dec/s) and set "
                 "normalize_activations to none",
                 path, c->scale);
    return 0;
}

/* A transcoder's b_dec is in the output space, so SAELens refuses
 * apply_b_dec_to_input for it (TranscoderConfig.__post_init__); absent, it
 * is false here (SAELens would default it to true and refuse). */
static int saelens_transcoder(const sae_model_cfg *c, const char *path, sae_error *err)
{
    if (c->transcoder && c->apply_b_dec)
        return sae_error_set(err, SAE_EINVAL,
                             "%s: apply_b_dec_to_input is true, which a transcoder cannot do "
                             "(its b_dec is in the output space; SAELens refuses it too)",
                             path);
    return 0;
}

/* SAELens <= 5's finetuning_scaling_factor flag (a boolean; the tensor
 * `scaling_factor` is looked at by model.c). */
static int saelens_finetuning(const json_t *cfg, const char *path, sae_model_cfg *c,
                              sae_error *err)
{
    return cfg_bool(cfg, "finetuning_scaling_factor", path, false, &c->finetuning_scaling, err);
}

/* Reads a SAELens cfg.json: 6.x, and before 6.0 as handle_pre_6_0_config
 * migrates it (activation_fn(_str), activation_fn_kwargs.k, hook_point,
 * boolean normalize_activations, names at the top level). Unknown keys are
 * ignored: SAELens configs carry many training settings that do not matter
 * for inference. */
static int cfg_saelens(const json_t *cfg, const char *path, sae_model_cfg *c,
                       sae_model_warnings *warn, sae_error *err)
{
    const char *dtype = NULL;
    int rc;
    if ((rc = cfg_is_pre6(cfg, path, &c->pre6, err)) || (rc = saelens_arch(cfg, path, c, err)) ||
        (rc = saelens_dims(cfg, path, c, err)) ||
        (rc = cfg_bool(cfg, "rescale_acts_by_decoder_norm", path, false, &c->rescale, err)) ||
        (rc = cfg_bool(cfg, "apply_b_dec_to_input", path, !c->transcoder, &c->apply_b_dec, err)) ||
        (rc = saelens_transcoder(c, path, err)) || (rc = saelens_norm(cfg, path, c, warn, err)) ||
        (rc = saelens_finetuning(cfg, path, c, err)))
        return rc;
    const json_t *ab = json_object_get(cfg, "apply_b_dec_to_input");
    c->apply_b_dec_given = ab && !json_is_null(ab);
    /* The cfg dtype is what SAELens would cast to; the file's dtype is what
     * we use, so it is only checked to be a string. */
    if ((rc = cfg_str(cfg, "dtype", path, &dtype, err)))
        return rc;
    return cfg_names(cfg, path, c, err);
}

/* Reads a sparsify cfg.json (SparseCoderConfig + d_in): activation topk, k,
 * num_latents or expansion_factor, optional d_in, and:
 *  - transcode: a transcoder (encode without subtracting b_dec; decode to the
 *    output). Without the key (sparsify before 2025-02) model.c looks at the
 *    hub root's config.json;
 *  - skip_connection: a W_skip that sparsify adds in forward only, not in
 *    decode, so encode and decode are served as they are;
 *  - signed (the 2024 EleutherAI sae): no ReLU, top-k by |pre|, signs kept.
 * groupmax (k groups, max of each) is refused with what it is. */
static int cfg_sparsify(const json_t *cfg, const char *path, sae_model_cfg *c, sae_error *err)
{
    const char *act = NULL;
    bool present;
    int rc;
    if ((rc = cfg_str(cfg, "activation", path, &act, err)))
        return rc;
    if (act && strcmp(act, "groupmax") == 0)
        return sae_error_set(err, SAE_EINVAL,
                             "%s: activation \"groupmax\" (sparsify: the max of each of k "
                             "groups of latents) is not supported; only topk folders load "
                             "(SAELens would silently run it as top-k)",
                             path);
    if (act && strcmp(act, "topk") != 0)
        return sae_error_set(err, SAE_EINVAL,
                             "%s: activation \"%.64s\" is not supported (only topk)", path, act);
    const json_t *tc = json_object_get(cfg, "transcode");
    c->transcode_given = tc && !json_is_null(tc);
    if ((rc = cfg_bool(cfg, "skip_connection", path, false, &c->skip, err)) ||
        (rc = cfg_bool(cfg, "transcode", path, false, &c->transcoder, err)) ||
        (rc = cfg_bool(cfg, "signed", path, false, &c->signed_topk, err)))
        return rc;
    c->arch = SAE_ARCH_TOPK;
    c->apply_b_dec = !c->transcoder; /* sparse_coder.py: x - b_dec unless cfg.transcode */
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

/* ------------------------------------------------------------ sparsify context */

/* SAELens's hook for a sparsify folder name (get_sparsify_config_from_disk):
 * embed_tokens -> hook_embed, layers.N (or layers_N) -> blocks.N.hook_resid_post.
 * Any other hookpoint (layers.N.mlp, ...) is kept as sparsify names it,
 * since SAELens's resid_post guess would be wrong for it. */
static void sparsify_hook(const char *name, char *buf, size_t cap)
{
    unsigned long layer;
    int used = -1;
    if (strcmp(name, "embed_tokens") == 0) {
        snprintf(buf, cap, "hook_embed");
        return;
    }
    if ((strncmp(name, "layers.", 7) == 0 || strncmp(name, "layers_", 7) == 0) &&
        sscanf(name + 7, "%lu%n", &layer, &used) == 1 && name[7 + used] == '\0' &&
        name[7] >= '0' && name[7] <= '9') {
        snprintf(buf, cap, "blocks.%lu.hook_resid_post", layer);
        return;
    }
    snprintf(buf, cap, "%s", name);
}

int sae_model_cfg_sparsify_root(const char *dir, sae_model_cfg *c, json_t **root, char *hook,
                                size_t hook_cap, sae_model_warnings *warn, sae_error *err)
{
    *root = NULL;
    char *path = NULL, *copy = strdup(dir);
    if (!copy)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    size_t n = strlen(copy);
    while (n > 1 && copy[n - 1] == '/')
        copy[--n] = '\0';
    const char *base = strrchr(copy, '/') ? strrchr(copy, '/') + 1 : copy;
    if (!c->hook_name) {
        sparsify_hook(base, hook, hook_cap);
        c->hook_name = hook;
    }
    int rc = 0;
    if (asprintf(&path, "%s/../config.json", copy) < 0) {
        path = NULL;
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    struct stat st;
    if (stat(path, &st) || !S_ISREG(st.st_mode))
        goto out; /* a lone SAE folder: nothing more to learn */
    if ((rc = sae_model_cfg_read(path, root, err)))
        goto out;
    if (!c->model_name && (rc = cfg_str(*root, "model", path, &c->model_name, err)))
        goto out;
    bool tc = false;
    if (!c->transcode_given && (rc = cfg_bool(*root, "transcode", path, false, &tc, err)))
        goto out;
    if (tc) {
        /* Before sparsify f02711e (2025-02-12) transcode lived in the run's
         * config.json and pre_acts subtracted b_dec for transcoders too. */
        c->transcoder = true;
        c->apply_b_dec = true;
        sae_model_warn(warn,
                       "%s: transcode is set in the run's config.json only: a sparsify "
                       "transcoder from before 2025-02, encoded (as it was trained) with b_dec "
                       "subtracted from the input",
                       path);
    }
out:
    free(path);
    free(copy);
    return rc;
}

/* Compares two folder names as natsort does for sparsify's hookpoints:
 * digit runs by value (layers.2 before layers.10). */
static int natural_cmp(const void *a, const void *b)
{
    return strverscmp(*(char *const *)a, *(char *const *)b);
}

int sae_model_cfg_hub_hint(const char *dir, sae_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return 0;
    char **names = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char *p = NULL;
        struct stat st;
        if (asprintf(&p, "%s/%s/cfg.json", dir, e->d_name) < 0)
            continue;
        bool sae = stat(p, &st) == 0 && S_ISREG(st.st_mode);
        free(p);
        if (!sae)
            continue;
        if (n == cap) {
            size_t nc = cap ? 2 * cap : 16;
            char **g = realloc(names, nc * sizeof *g);
            if (!g)
                break;
            names = g;
            cap = nc;
        }
        if (!(names[n] = strdup(e->d_name)))
            break;
        n++;
    }
    closedir(d);
    if (n) {
        qsort(names, n, sizeof *names, natural_cmp);
        char list[600] = "";
        size_t at = 0, shown = 0;
        for (; shown < n; shown++) {
            int w = snprintf(list + at, sizeof list - at, "%s%s", shown ? ", " : "", names[shown]);
            if (w < 0 || (size_t)w >= sizeof list - at - 1 || at + (size_t)w > 400)
                break;
            at += (size_t)w;
        }
        list[at] = '\0';
        rc = sae_error_set(err, SAE_EIO,
                           "%s: no cfg.json here, but %zu subfolder%s hold%s one SAE each (a "
                           "sparsify hub root): give one of them as the model folder: %s%s",
                           dir, n, n == 1 ? "" : "s", n == 1 ? "s" : "", list,
                           shown < n ? ", ..." : "");
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return rc;
}
