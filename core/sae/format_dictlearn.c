/* format_dictlearn.c: dictionary_learning trainer folders (config.json +
 * ae.pt).
 *
 * config.json is DL's training.py {"trainer": trainer.config, "buffer": ...};
 * ae.pt a torch.save of the dictionary's state_dict (an OrderedDict until
 * 2025-01, a plain dict since), read by core/io/torchpt, which runs no code.
 *
 * The classes SAELens 6.18 loads (loading/pretrained_sae_loaders.py,
 * get_dictionary_learning_config_1_from_hf and
 * dictionary_learning_sae_huggingface_loader_1, then handle_pre_6_0_config)
 * are composed as it does: W_enc = encoder.weightᵀ (used in place in
 * encoder.weight's layout), W_dec = decoder.weightᵀ, b_dec = b_dec | bias |
 * decoder_bias, apply_b_dec_to_input true, no normalisation;
 *   AutoEncoder        standard, b_enc = encoder.bias
 *   AutoEncoderTopK    topk with config's k (the k buffer of newer files is
 *                      ignored, as SAELens ignores it)
 *   GatedAutoEncoder   gated, b_gate = gate_bias, b_mag = mag_bias, r_mag
 * The classes SAELens cannot load right are computed as DL's own encode does
 * (docs/FORMATS.md):
 *   BatchTopKSAE            relu(encoder(x - b_dec)) * (> threshold), the
 *                           scalar threshold buffer: a jumprelu with that
 *                           threshold for every feature (SAELens would load
 *                           it as a plain ReLU)
 *   MatryoshkaBatchTopKSAE  the same over W_enc [d, F] / W_dec [F, d]
 *   JumpReluAutoEncoder     jumprelu over W_enc, b_enc, W_dec, b_dec,
 *                           threshold [F], apply_b_dec_to_input false
 * Names as SAELens derives them: model = lm_name after its last '/', hook =
 * blocks.<layer>.hook_resid_post. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/torchpt.h"
#include "sae/format_internal.h"

/* What config.json's trainer says. */
typedef struct dl_config {
    const char *dict_class, *lm_name;
    size_t layer, k;
} dl_config;

/* Reads trainer.{dict_class, activation_dim, dict_size, lm_name, layer, k}. */
static int read_config(const json_t *cfg, const char *path, sae_parts *p, dl_config *c,
                       sae_error *err)
{
    const json_t *tr = json_object_get(cfg, "trainer");
    int rc;
    if (!json_is_object(tr))
        return sae_error_set(err, SAE_EINVAL, "%s: trainer %s", path,
                             tr ? "must be an object" : "is missing (not a dictionary_learning "
                                                        "config.json)");
    if ((rc = sae_format_str(tr, "dict_class", path, &c->dict_class, err)) ||
        (rc = sae_format_uint(tr, "activation_dim", path, &p->d_in, err)) ||
        (rc = sae_format_uint(tr, "dict_size", path, &p->d_sae, err)) ||
        (rc = sae_format_str(tr, "lm_name", path, &c->lm_name, err)))
        return rc;
    json_t *layer = json_object_get(tr, "layer");
    if (!json_is_integer(layer) || json_integer_value(layer) < 0)
        return sae_error_set(err, SAE_EINVAL, "%s: trainer.layer %s", path,
                             layer ? "must be a non-negative integer" : "is missing");
    c->layer = (size_t)json_integer_value(layer);
    if (json_object_get(tr, "k") && (rc = sae_format_uint(tr, "k", path, &c->k, err)))
        return rc;
    return 0;
}

/* A 1-D tensor of n elements as F32. */
static int vec(sae_parts *p, const char *name, size_t n, const char *what, const float **out,
               sae_error *err)
{
    const sae_st_tensor *t;
    int rc = sae_parts_tensor(p, name, 1, n, 0, what, NULL, &t, err);
    return rc ? rc : sae_parts_f32(p, t, out, err);
}

/* nn.Linear weights: encoder.weight [F, d] in place (the kernels' transposed
 * layout), decoder.weight [d, F] transposed into W_dec, and b_dec from the
 * first of b_dec, bias, decoder_bias present, as SAELens' get chain. */
static int linear(sae_parts *p, sae_error *err)
{
    const sae_st_tensor *we, *wd;
    float *w_dec;
    size_t d = p->d_in, f = p->d_sae;
    int rc;
    const char *bias = sae_st_find(p->st, "b_dec")    ? "b_dec"
                       : sae_st_find(p->st, "bias")   ? "bias"
                                                      : "decoder_bias";
    if ((rc = sae_parts_tensor(p, "encoder.weight", 2, f, d, "dict_size", "activation_dim", &we,
                               err)) ||
        (rc = sae_parts_tensor(p, "decoder.weight", 2, d, f, "activation_dim", "dict_size", &wd,
                               err)) ||
        (rc = sae_parts_f32(p, we, &p->w_enc, err)) ||
        (rc = sae_parts_transpose(p, wd, &w_dec, err)) ||
        (rc = vec(p, bias, d, "activation_dim", &p->b_dec, err)))
        return rc;
    p->w_enc_t = true;
    p->w_dec = w_dec;
    snprintf(p->dtype, sizeof p->dtype, "%s", sae_dtype_name(we->dtype));
    return 0;
}

/* Parameters named as SAELens names them: W_enc [d, F], W_dec [F, d], b_enc,
 * b_dec (JumpReluAutoEncoder, MatryoshkaBatchTopKSAE), all used in place. */
static int direct(sae_parts *p, sae_error *err)
{
    const sae_st_tensor *we, *wd;
    size_t d = p->d_in, f = p->d_sae;
    int rc;
    if ((rc = sae_parts_tensor(p, "W_enc", 2, d, f, "activation_dim", "dict_size", &we, err)) ||
        (rc = sae_parts_tensor(p, "W_dec", 2, f, d, "dict_size", "activation_dim", &wd, err)) ||
        (rc = sae_parts_f32(p, we, &p->w_enc, err)) || (rc = sae_parts_f32(p, wd, &p->w_dec, err)) ||
        (rc = vec(p, "b_enc", f, "dict_size", &p->b_enc, err)) ||
        (rc = vec(p, "b_dec", d, "activation_dim", &p->b_dec, err)))
        return rc;
    snprintf(p->dtype, sizeof p->dtype, "%s", sae_dtype_name(we->dtype));
    return 0;
}

/* The 0-dim threshold buffer of the BatchTopK family, the same for every
 * feature. */
static int scalar_threshold(sae_parts *p, sae_error *err)
{
    const sae_st_tensor *t = sae_st_find(p->st, "threshold");
    const float *v;
    float *th;
    int rc;
    if (!t || t->n_elems != 1)
        return sae_error_set(err, SAE_EFORMAT, "%s: %s", p->weights_path,
                             t ? "threshold must hold one value" : "missing tensor \"threshold\"");
    if ((rc = sae_parts_f32(p, t, &v, err)) ||
        (rc = sae_parts_alloc(p, p->d_sae, "the threshold", &th, err)))
        return rc;
    for (size_t i = 0; i < p->d_sae; i++)
        th[i] = v[0];
    p->threshold = th;
    return 0;
}

/* Composes the class's tensors. */
static int compose(sae_parts *p, const dl_config *c, const char *cfg_path, sae_error *err)
{
    const char *dc = c->dict_class;
    size_t f = p->d_sae;
    int rc;
    p->apply_b_dec_to_input = true;
    p->norm = SAE_NORM_NONE;
    if (strcmp(dc, "AutoEncoder") == 0 || strcmp(dc, "AutoEncoderTopK") == 0) {
        p->arch = strcmp(dc, "AutoEncoderTopK") == 0 ? SAE_ARCH_TOPK : SAE_ARCH_STANDARD;
        if (p->arch == SAE_ARCH_TOPK && (c->k == 0 || c->k > f))
            return sae_error_set(err, SAE_EINVAL, "%s: trainer.k = %zu is not in [1, dict_size]",
                                 cfg_path, c->k);
        p->k = p->arch == SAE_ARCH_TOPK ? c->k : 0;
        return (rc = linear(p, err)) ? rc : vec(p, "encoder.bias", f, "dict_size", &p->b_enc, err);
    }
    if (strcmp(dc, "GatedAutoEncoder") == 0) {
        p->arch = SAE_ARCH_GATED;
        if ((rc = linear(p, err)) || (rc = vec(p, "gate_bias", f, "dict_size", &p->b_gate, err)) ||
            (rc = vec(p, "mag_bias", f, "dict_size", &p->b_mag, err)))
            return rc;
        return vec(p, "r_mag", f, "dict_size", &p->r_mag, err);
    }
    p->arch = SAE_ARCH_JUMPRELU;
    if (strcmp(dc, "BatchTopKSAE") == 0) {
        if ((rc = linear(p, err)) ||
            (rc = vec(p, "encoder.bias", f, "dict_size", &p->b_enc, err)))
            return rc;
        return scalar_threshold(p, err);
    }
    if (strcmp(dc, "MatryoshkaBatchTopKSAE") == 0)
        return (rc = direct(p, err)) ? rc : scalar_threshold(p, err);
    if (strcmp(dc, "JumpReluAutoEncoder") == 0) {
        p->apply_b_dec_to_input = false;
        return (rc = direct(p, err)) ? rc : vec(p, "threshold", f, "dict_size", &p->threshold, err);
    }
    return sae_error_set(err, SAE_EINVAL,
                         "%s: trainer.dict_class \"%.64s\" is not one saed reads (AutoEncoder, "
                         "AutoEncoderTopK, GatedAutoEncoder, BatchTopKSAE, "
                         "MatryoshkaBatchTopKSAE, JumpReluAutoEncoder)%s",
                         cfg_path, dc,
                         strstr(dc, "CrossCoder") ? ": a crosscoder reads several layers at once"
                                                  : "");
}

int sae_format_dictlearn(const char *dir, sae_parts *p, sae_model_warnings *warn, sae_error *err)
{
    json_t *cfg = NULL;
    char *path = NULL, *hook = NULL;
    dl_config c = {0};
    int rc;
    (void)warn;
    if ((rc = sae_format_json(dir, "config.json", &cfg, &path, err)) ||
        (rc = read_config(cfg, path, p, &c, err)) ||
        (rc = sae_format_open(p, dir, "ae.pt", sae_pt_open, err)) ||
        (rc = compose(p, &c, path, err)))
        goto out;
    const char *slash = strrchr(c.lm_name, '/');
    if (asprintf(&hook, "blocks.%zu.hook_resid_post", c.layer) < 0) {
        hook = NULL;
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    rc = sae_parts_names(p, slash ? slash + 1 : c.lm_name, hook, NULL, err);
out:
    free(hook);
    free(path);
    json_decref(cfg);
    return rc;
}
