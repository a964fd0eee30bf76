/* format_llamascope.c: Llama Scope folders, as SAELens 6.18 composes them.
 *
 * Llama Scope (fnlp/Llama3_1-8B-Base-LX{R,A,M}-{8,32}x, folder
 * Llama3_1-8B-Base-L{N}{R,A,M}-{8,32}x): hyperparams.json (lm-saes'
 * SAEConfig) + checkpoints/final.safetensors (nn.Linear state: encoder.weight
 * [d_sae, d_model], encoder.bias, decoder.weight [d_model, d_sae],
 * decoder.bias). SAELens (loading/pretrained_sae_loaders.py,
 * get_llama_scope_config_from_hf and llama_scope_sae_huggingface_loader, then
 * SAE.fold_activation_norm_scaling_factor) builds, with
 * s = sqrt(d_model) / dataset_average_activation_norm.in:
 *     jumprelu, apply_b_dec_to_input false,
 *     W_enc = s·encoder.weightᵀ, b_enc = encoder.bias,
 *     W_dec = decoder.weightᵀ / s, b_dec = decoder.bias / s,
 *     threshold = s·jump_relu_threshold for every feature,
 * and normalize_activations "none" once folded. SAELens folds the yaml's
 * norm_scaling_factor; the catalogue's values equal sqrt(d_model)/norm.in
 * for every Llama Scope id, and a folder carries only the latter, so it is
 * used for both. lm-saes itself computes something else (docs/FORMATS.md).
 *
 * Llama Scope R1-distill (fnlp/Llama-Scope-R1-Distill, folder
 * <data>/L{N}R): config.json + sae_weights.safetensors with the same four
 * tensors plus log_jumprelu_threshold. SAELens
 * (get_llama_scope_r1_distill_config_from_hf and its loader) takes
 * d_sae = d_model·expansion_factor, threshold = exp(log_jumprelu_threshold)
 * (not scaled by s), and folds s into W_enc, W_dec and b_dec as above. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sae/format_internal.h"

/* The canonical tensors from the nn.Linear state both layouts share:
 * W_enc = s·encoder.weightᵀ (kept in encoder.weight's [d_sae, d_in] layout,
 * which the kernels use transposed in place, so only scaled), W_dec =
 * decoder.weightᵀ/s, b_dec = decoder.bias/s, b_enc = encoder.bias as it is. */
static int linear_folded(sae_parts *p, double s, sae_error *err)
{
    const sae_st_tensor *we, *be, *wd, *bd;
    float *w_enc, *w_dec, *b_dec;
    size_t di = p->d_in, ds = p->d_sae;
    int rc;
    if ((rc = sae_parts_tensor(p, "encoder.weight", 2, ds, di, "d_sae", "d_model", &we, err)) ||
        (rc = sae_parts_tensor(p, "encoder.bias", 1, ds, 0, "d_sae", NULL, &be, err)) ||
        (rc = sae_parts_tensor(p, "decoder.weight", 2, di, ds, "d_model", "d_sae", &wd, err)) ||
        (rc = sae_parts_tensor(p, "decoder.bias", 1, di, 0, "d_model", NULL, &bd, err)) ||
        (rc = sae_parts_f32_copy(p, we, &w_enc, err)) ||
        (rc = sae_parts_f32(p, be, &p->b_enc, err)) ||
        (rc = sae_parts_transpose(p, wd, &w_dec, err)) ||
        (rc = sae_parts_f32_copy(p, bd, &b_dec, err)))
        return rc;
    for (size_t i = 0; i < di * ds; i++) {
        w_enc[i] = (float)(w_enc[i] * s);
        w_dec[i] = (float)(w_dec[i] / s);
    }
    for (size_t j = 0; j < di; j++)
        b_dec[j] = (float)(b_dec[j] / s);
    p->w_enc = w_enc, p->w_enc_t = true, p->w_dec = w_dec, p->b_dec = b_dec;
    snprintf(p->dtype, sizeof p->dtype, "%s", sae_dtype_name(we->dtype));
    p->arch = SAE_ARCH_JUMPRELU;
    p->apply_b_dec_to_input = false;
    p->norm = SAE_NORM_NONE;
    return 0;
}

/* s = sqrt(d_model) / cfg.dataset_average_activation_norm.in; 0 when the
 * key is absent (the caller decides whether that is an error). */
static int norm_factor(const json_t *cfg, const char *path, size_t d_model, double *s,
                       sae_error *err)
{
    const json_t *avg = json_object_get(cfg, "dataset_average_activation_norm");
    double in;
    int rc;
    *s = 0;
    if (!avg)
        return 0;
    if (!json_is_object(avg))
        return sae_error_set(err, SAE_EINVAL,
                             "%s: dataset_average_activation_norm must be an object "
                             "{\"in\": ..., \"out\": ...}",
                             path);
    if ((rc = sae_format_num(avg, "in", path, &in, err)))
        return rc;
    if (!(in > 0))
        return sae_error_set(err, SAE_EINVAL,
                             "%s: dataset_average_activation_norm.in must be positive", path);
    *s = sqrt((double)d_model) / in;
    return 0;
}

/* Neuronpedia's id for a Llama Scope folder name
 * (Llama3_1-8B-Base-L12R-8x -> llama3.1-8b/12-llamascope-res-32k), as the
 * catalogue spells it; NULL for any other name. */
static char *llamascope_np_id(const char *name)
{
    unsigned layer, exp;
    char kind;
    int end = 0;
    if (sscanf(name, "Llama3_1-8B-Base-L%u%c-%ux%n", &layer, &kind, &exp, &end) != 3 ||
        name[end] != '\0' || !strchr("RAM", kind) || (exp != 8 && exp != 32))
        return NULL;
    const char *what = kind == 'R' ? "res" : kind == 'A' ? "att" : "mlp";
    char *id = NULL;
    if (asprintf(&id, "llama3.1-8b/%u-llamascope-%s-%s", layer, what, exp == 8 ? "32k" : "131k") <
        0)
        return NULL;
    return id;
}

int sae_format_llamascope(const char *dir, sae_parts *p, sae_model_warnings *warn, sae_error *err)
{
    json_t *hp = NULL;
    char *path = NULL, *name = NULL, *np_id = NULL;
    const char *hook;
    double thr, s;
    int rc;
    if ((rc = sae_format_json(dir, "hyperparams.json", &hp, &path, err)) ||
        (rc = sae_format_uint(hp, "d_model", path, &p->d_in, err)) ||
        (rc = sae_format_uint(hp, "d_sae", path, &p->d_sae, err)) ||
        (rc = sae_format_str(hp, "hook_point_in", path, &hook, err)) ||
        (rc = sae_format_num(hp, "jump_relu_threshold", path, &thr, err)) ||
        (rc = norm_factor(hp, path, p->d_in, &s, err)))
        goto out;
    /* SAELens indexes the key unconditionally, so a folder without it does
     * not load there either. */
    if (s == 0) {
        rc = sae_error_set(err, SAE_EINVAL,
                           "%s: dataset_average_activation_norm is missing (Llama Scope's "
                           "activation norm, which SAELens folds into the weights)",
                           path);
        goto out;
    }
    const char *act = NULL;
    if (!sae_format_str(hp, "act_fn", path, &act, NULL) && strcmp(act, "jumprelu") != 0)
        sae_model_warn(warn,
                        "%s: act_fn is \"%.32s\"; loaded as SAELens does, as jumprelu with "
                        "jump_relu_threshold",
                        path, act);
    if ((rc = sae_format_open(p, dir, "checkpoints/final.safetensors", sae_st_open, err)) ||
        (rc = linear_folded(p, s, err)))
        goto out;
    float *th;
    if ((rc = sae_parts_alloc(p, p->d_sae, "the threshold", &th, err)))
        goto out;
    for (size_t i = 0; i < p->d_sae; i++)
        th[i] = (float)(thr * s);
    p->threshold = th;
    if ((rc = sae_format_tail(dir, 1, &name, err)))
        goto out;
    np_id = llamascope_np_id(name);
    rc = sae_parts_names(p, "meta-llama/Llama-3.1-8B", hook, np_id, err);
out:
    free(np_id);
    free(name);
    free(path);
    json_decref(hp);
    return rc;
}

/* Neuronpedia's id for an R1-distill folder <data>/L{N}R, where <data> says
 * how many tokens of SlimPajama and of OpenR1-Math it was trained on
 * (800M-Slimpajama-0-OpenR1-Math-220k -> slimpj, 0-Slimpajama-800M-... ->
 * openr1, 400M-Slimpajama-400M-... -> slimpj-openr1), as the catalogue
 * spells them; NULL for any other path. */
static char *r1_np_id(const char *tail)
{
    char slim[16], r1[16];
    unsigned layer;
    int end = 0;
    if (sscanf(tail, "%15[0-9MB]-Slimpajama-%15[0-9MB]-OpenR1-Math-220k/L%uR%n", slim, r1, &layer,
               &end) != 3 ||
        tail[end] != '\0')
        return NULL;
    bool has_slim = strcmp(slim, "0") != 0, has_r1 = strcmp(r1, "0") != 0;
    const char *data = has_slim && has_r1 ? "slimpj-openr1" : has_slim ? "slimpj" : "openr1";
    char *id = NULL;
    if (asprintf(&id, "deepseek-r1-distill-llama-8b/%u-llamascope-%s-res-32k", layer, data) < 0)
        return NULL;
    return id;
}

int sae_format_llamascope_r1(const char *dir, sae_parts *p, sae_model_warnings *warn,
                             sae_error *err)
{
    json_t *cfg = NULL;
    char *path = NULL, *tail = NULL, *np_id = NULL;
    const char *hook;
    const sae_st_tensor *lt;
    size_t exp;
    double s;
    int rc;
    if ((rc = sae_format_json(dir, "config.json", &cfg, &path, err)) ||
        (rc = sae_format_uint(cfg, "d_model", path, &p->d_in, err)) ||
        (rc = sae_format_uint(cfg, "expansion_factor", path, &exp, err)) ||
        (rc = sae_format_str(cfg, "hook_point_in", path, &hook, err)) ||
        (rc = norm_factor(cfg, path, p->d_in, &s, err)))
        goto out;
    if (sae_mul_size(p->d_in, exp, &p->d_sae)) {
        rc = sae_error_set(err, SAE_EINVAL, "%s: d_model x expansion_factor is too large", path);
        goto out;
    }
    /* SAELens folds the catalogue's norm_scaling_factor; a folder may carry
     * the norm it came from. Without it nothing is folded, as SAELens does
     * (with a warning) when the catalogue has no factor. */
    if (s == 0) {
        sae_model_warn(warn,
                        "%s: no dataset_average_activation_norm, so no activation-norm factor "
                        "is folded in (SAELens folds its catalogue's norm_scaling_factor)",
                        path);
        s = 1;
    }
    const float *log_thr;
    float *th;
    if ((rc = sae_format_open(p, dir, "sae_weights.safetensors", sae_st_open, err)) ||
        (rc = linear_folded(p, s, err)) ||
        (rc = sae_parts_tensor(p, "log_jumprelu_threshold", 1, p->d_sae, 0, "d_sae", NULL, &lt,
                               err)) ||
        (rc = sae_parts_f32(p, lt, &log_thr, err)) ||
        (rc = sae_parts_alloc(p, p->d_sae, "the threshold", &th, err)))
        goto out;
    for (size_t i = 0; i < p->d_sae; i++)
        th[i] = expf(log_thr[i]);
    p->threshold = th;
    if ((rc = sae_format_tail(dir, 2, &tail, err)))
        goto out;
    np_id = r1_np_id(tail);
    rc = sae_parts_names(p, "meta-llama/Llama-3.1-8B", hook, np_id, err);
out:
    free(np_id);
    free(tail);
    free(path);
    json_decref(cfg);
    return rc;
}
