/* autoencoder.c: loading the plain stacked autoencoder that `sae train --arch
 * autoencoder` writes, and computing its bottleneck codes.
 *
 * Folder layout: cfg.json with architecture "autoencoder", "layers" [d_in,
 * ..., bottleneck], d_in and d_sae (= the bottleneck width); the weights file
 * holds W_l [dims[l], dims[l+1]] and b_l [dims[l+1]] for each linear layer l,
 * dims being the widths down to the bottleneck and back up (layers 4,3,2 give
 * dims 4,3,2,3,4 and layers W_0..W_3). Every layer but the last is followed by
 * a ReLU; the code of a row is the output of the ReLU after layer
 * n_layers − 2, the last one going down. */
#include "sae/autoencoder.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>


/* The loaded net: tensors borrowed from the mapped file or owned conversions. */
struct sae_ae {
    size_t n_layers;                     /* widths in cfg "layers" */
    size_t n_lin;                        /* linear layers: 2·(n_layers − 1) */
    size_t dims[SAE_AE_MAX_LINEAR + 1];  /* widths down then up */
    float in_scale;                      /* expected_average_only_in factor, or 1 */
    const float *w[SAE_AE_MAX_LINEAR];   /* layer l: (dims[l], dims[l+1]) */
    const float *b[SAE_AE_MAX_LINEAR];   /* layer l: (dims[l+1]) */
    float *owned[2 * SAE_AE_MAX_LINEAR]; /* conversion buffers, freed with the net */
    size_t n_owned;
};

void sae_ae_free(struct sae_ae *ae)
{
    if (!ae)
        return;
    for (size_t i = 0; i < ae->n_owned; i++)
        free(ae->owned[i]);
    free(ae);
}

/* Finds tensor `name` with the given shape (ndim 1 or 2) and a float dtype,
 * and gives its contents as F32 (converted copies are kept in ae->owned). */
static int load_tensor(const sae_st_file *st, struct sae_ae *ae, const char *name, int ndim,
                       size_t d0, size_t d1, const float **out, sae_error *err)
{
    const sae_st_tensor *t = sae_st_find(st, name);
    if (!t)
        return sae_error_set(err, SAE_EFORMAT, "%s: autoencoder tensor \"%s\" is missing",
                             st->path, name);
    bool ok = t->ndim == ndim && t->shape[0] == d0 && (ndim == 1 || t->shape[1] == d1);
    if (!ok) {
        if (ndim == 1)
            return sae_error_set(err, SAE_EDIM, "%s: tensor \"%s\" must have shape [%zu]",
                                 st->path, name, d0);
        return sae_error_set(err, SAE_EDIM, "%s: tensor \"%s\" must have shape [%zu, %zu]",
                             st->path, name, d0, d1);
    }
    float *owned = NULL;
    int rc = sae_st_tensor_f32(st, t, out, &owned, err);
    if (rc)
        return rc;
    if (owned)
        ae->owned[ae->n_owned++] = owned;
    return 0;
}

/* Reads a positive integer cfg key into *out; absent leaves *out at 0. */
static int cfg_size(const json_t *cfg, const char *path, const char *key, size_t *out,
                    sae_error *err)
{
    const json_t *v = json_object_get(cfg, key);
    if (!v)
        return 0;
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        return sae_error_set(err, SAE_EINVAL, "%s: cfg \"%s\" must be a positive integer", path,
                             key);
    *out = (size_t)json_integer_value(v);
    return 0;
}

int sae_ae_load(const sae_st_file *st, const json_t *cfg, struct sae_ae **out,
                sae_error *err)
{
    const char *path = st->path;
    const json_t *layers = json_object_get(cfg, "layers");
    if (!json_is_array(layers))
        return sae_error_set(err, SAE_EINVAL,
                             "%s: cfg \"layers\" (the autoencoder's widths) must be a list",
                             path);
    size_t n = json_array_size(layers);
    if (n < 2 || n > SAE_AE_MAX_LAYERS)
        return sae_error_set(err, SAE_EINVAL, "%s: cfg \"layers\" needs 2 to %d widths", path,
                             SAE_AE_MAX_LAYERS);
    struct sae_ae *ae = calloc(1, sizeof *ae);
    int rc = 0;
    if (!ae)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    ae->n_layers = n;
    for (size_t i = 0; i < n; i++) {
        const json_t *v = json_array_get(layers, i);
        if (!json_is_integer(v) || json_integer_value(v) <= 0 ||
            json_integer_value(v) > INT32_MAX) {
            rc = sae_error_set(err, SAE_EINVAL,
                               "%s: cfg \"layers\"[%zu] must be a positive integer below 2^31",
                               path, i);
            goto out;
        }
        ae->dims[i] = (size_t)json_integer_value(v);
    }
    for (size_t i = n - 1; i-- > 0;)
        ae->dims[2 * (n - 1) - i] = ae->dims[i];
    ae->n_lin = 2 * (n - 1);

    size_t d_in = 0, d_sae = 0;
    if ((rc = cfg_size(cfg, path, "d_in", &d_in, err)) ||
        (rc = cfg_size(cfg, path, "d_sae", &d_sae, err)))
        goto out;
    if ((d_in && d_in != ae->dims[0]) || (d_sae && d_sae != ae->dims[n - 1])) {
        rc = sae_error_set(err, SAE_EINVAL,
                           "%s: cfg d_in/d_sae (%zu/%zu) disagree with layers (%zu ... %zu)",
                           path, d_in, d_sae, ae->dims[0], ae->dims[n - 1]);
        goto out;
    }
    /* the trainer folds its input scale into the weights; a hand-made cfg
     * may still ask for it */
    ae->in_scale = 1;
    const json_t *norm = json_object_get(cfg, "normalize_activations");
    if (norm && !json_is_null(norm)) {
        const char *nv = json_string_value(norm);
        if (!nv) {
            rc = sae_error_set(err, SAE_EINVAL, "%s: normalize_activations must be a string",
                               path);
            goto out;
        }
        if (!strcmp(nv, "expected_average_only_in")) {
            const json_t *s = json_object_get(cfg, "norm_scaling_factor");
            if (json_is_number(s) && json_number_value(s) > 0)
                ae->in_scale = (float)json_number_value(s);
        } else if (strcmp(nv, "none") != 0) {
            rc = sae_error_set(err, SAE_EINVAL,
                               "%s: an autoencoder supports normalize_activations \"none\" or "
                               "\"expected_average_only_in\", not \"%.64s\"",
                               path, nv);
            goto out;
        }
    }
    for (size_t l = 0; l < ae->n_lin; l++) {
        char wn[32], bn[32];
        snprintf(wn, sizeof wn, "W_%zu", l);
        snprintf(bn, sizeof bn, "b_%zu", l);
        if ((rc = load_tensor(st, ae, wn, 2, ae->dims[l], ae->dims[l + 1], &ae->w[l], err)) ||
            (rc = load_tensor(st, ae, bn, 1, ae->dims[l + 1], 0, &ae->b[l], err)))
            goto out;
    }
    if (st->n_tensors != 2 * ae->n_lin) {
        rc = sae_error_set(err, SAE_EFORMAT,
                           "%s: %zu tensors, but layers need exactly %zu (W_0, b_0, ...)", path,
                           st->n_tensors, 2 * ae->n_lin);
        goto out;
    }
out:
    if (rc) {
        sae_ae_free(ae);
        return rc;
    }
    *out = ae;
    return 0;
}

size_t sae_ae_d_in(const struct sae_ae *ae) { return ae->dims[0]; }
size_t sae_ae_d_code(const struct sae_ae *ae) { return ae->dims[ae->n_layers - 1]; }

int sae_ae_encode(const struct sae_ae *ae, const float *x, size_t n, float *codes,
                  sae_error *err)
{
    size_t widest = 0, n_down = ae->n_layers - 1;
    for (size_t l = 1; l < n_down; l++)
        widest = ae->dims[l] > widest ? ae->dims[l] : widest;
    const size_t block = 256;
    float *buf = NULL;
    if (widest) {
        buf = malloc(2 * block * widest * sizeof *buf);
        if (!buf)
            return sae_error_set(err, SAE_ENOMEM, "out of memory encoding");
    }
    for (size_t r0 = 0; r0 < n; r0 += block) {
        size_t nb = n - r0 < block ? n - r0 : block;
        const float *in = x + r0 * ae->dims[0];
        float alpha = ae->in_scale;
        for (size_t l = 0; l < n_down; l++) {
            size_t ni = ae->dims[l], no = ae->dims[l + 1];
            float *o = l + 1 == n_down ? codes + r0 * no : buf + (l % 2) * block * widest;
            for (size_t r = 0; r < nb; r++)
                memcpy(o + r * no, ae->b[l], no * sizeof *o);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)nb, (int)no, (int)ni,
                        alpha, in, (int)ni, ae->w[l], (int)no, 1, o, (int)no);
            for (size_t i = 0; i < nb * no; i++)
                o[i] = o[i] > 0 ? o[i] : 0;
            in = o;
            alpha = 1;
        }
    }
    free(buf);
    return 0;
}
