/* parts.c: the buffers, lookups and checks every format loader shares
 * (parts.h). */
#include "sae/parts.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Frees the owned buffers, the names, the file and the path. */
void sae_parts_free(sae_parts *p)
{
    for (size_t i = 0; i < p->n_owned; i++)
        free(p->owned[i]);
    free(p->owned);
    free(p->model_name);
    free(p->hook_name);
    free(p->neuronpedia_id);
    free(p->hook_name_out);
    free(p->weights_path);
    sae_st_free(p->st);
    memset(p, 0, sizeof *p);
}

/* Allocates n floats and records them in p->owned. */
int sae_parts_alloc(sae_parts *p, size_t n, const char *what, float **out, sae_error *err)
{
    size_t bytes;
    if (sae_mul_size(n ? n : 1, sizeof(float), &bytes))
        return sae_error_set(err, SAE_ENOMEM, "%s: %s too large", p->weights_path, what);
    float *buf = malloc(bytes);
    float **grown = buf ? realloc(p->owned, (p->n_owned + 1) * sizeof *grown) : NULL;
    if (!grown) {
        free(buf);
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory for %s", p->weights_path, what);
    }
    p->owned = grown;
    p->owned[p->n_owned++] = buf;
    *out = buf;
    return 0;
}

/* Finds the tensor and compares its shape with [d0] or [d0, d1]. */
int sae_parts_tensor(const sae_parts *p, const char *name, int ndim, size_t d0, size_t d1,
                     const char *n0, const char *n1, const sae_st_tensor **out, sae_error *err)
{
    const sae_st_tensor *t = sae_st_find(p->st, name);
    if (!t)
        return sae_error_set(err, SAE_EFORMAT, "%s: missing tensor \"%s\"", p->weights_path, name);
    if (t->ndim == ndim && t->shape[0] == d0 && (ndim == 1 || t->shape[1] == d1)) {
        *out = t;
        return 0;
    }
    char got[160] = "[";
    size_t at = 1;
    for (int i = 0; i < t->ndim && at < sizeof got; i++)
        at += (size_t)snprintf(got + at, sizeof got - at, "%s%llu", i ? ", " : "",
                               (unsigned long long)t->shape[i]);
    if (at < sizeof got - 1)
        got[at++] = ']', got[at] = '\0';
    if (ndim == 1)
        return sae_error_set(err, SAE_EDIM, "%s: tensor \"%s\" has shape %s, expected [%zu] (%s)",
                             p->weights_path, name, got, d0, n0);
    return sae_error_set(err, SAE_EDIM, "%s: tensor \"%s\" has shape %s, expected [%zu, %zu] (%s, %s)",
                         p->weights_path, name, got, d0, d1, n0, n1);
}

/* Refuses a tensor whose dtype is not a float type. */
static int need_float(const sae_parts *p, const sae_st_tensor *t, sae_error *err)
{
    if (sae_dtype_is_float(t->dtype))
        return 0;
    return sae_error_set(err, SAE_EFORMAT,
                         "%s: tensor \"%s\" has dtype %s; weights must be F32, F16, BF16 or F64",
                         p->weights_path, t->name, sae_dtype_name(t->dtype));
}

/* In place for aligned F32, else a converted copy. */
int sae_parts_f32(sae_parts *p, const sae_st_tensor *t, const float **out, sae_error *err)
{
    int rc;
    if ((rc = need_float(p, t, err)))
        return rc;
    if (t->dtype == SAE_DT_F32 && (uintptr_t)t->data % _Alignof(float) == 0) {
        *out = t->data;
        return 0;
    }
    float *buf;
    if ((rc = sae_parts_f32_copy(p, t, &buf, err)))
        return rc;
    *out = buf;
    return 0;
}

/* Always a converted copy (memcpy-safe for any alignment). */
int sae_parts_f32_copy(sae_parts *p, const sae_st_tensor *t, float **out, sae_error *err)
{
    float *buf;
    int rc;
    if ((rc = need_float(p, t, err)) || (rc = sae_parts_alloc(p, t->n_elems, t->name, &buf, err)))
        return rc;
    sae_convert_to_f32(t->dtype, t->data, t->n_elems, buf);
    *out = buf;
    return 0;
}

/* Converts row by row into the transposed position. */
int sae_parts_transpose(sae_parts *p, const sae_st_tensor *t, float **out, sae_error *err)
{
    float *buf, *row;
    int rc;
    if (t->ndim != 2)
        return sae_error_set(err, SAE_EDIM, "%s: tensor \"%s\" is not 2-D", p->weights_path,
                             t->name);
    size_t r = (size_t)t->shape[0], c = (size_t)t->shape[1], es = sae_dtype_size(t->dtype);
    if ((rc = need_float(p, t, err)) || (rc = sae_parts_alloc(p, t->n_elems, t->name, &buf, err)))
        return rc;
    row = malloc((c ? c : 1) * sizeof *row);
    if (!row)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory transposing \"%s\"",
                             p->weights_path, t->name);
    for (size_t i = 0; i < r; i++) {
        sae_convert_to_f32(t->dtype, (const uint8_t *)t->data + i * c * es, c, row);
        for (size_t j = 0; j < c; j++)
            buf[j * r + i] = row[j];
    }
    free(row);
    *out = buf;
    return 0;
}

/* strdup that keeps NULL. */
static int dup_opt(char **dst, const char *s)
{
    free(*dst);
    *dst = s ? strdup(s) : NULL;
    return s && !*dst ? -1 : 0;
}

/* Copies the three names. */
int sae_parts_names(sae_parts *p, const char *model_name, const char *hook_name,
                    const char *neuronpedia_id, sae_error *err)
{
    if (dup_opt(&p->model_name, model_name) || dup_opt(&p->hook_name, hook_name) ||
        dup_opt(&p->neuronpedia_id, neuronpedia_id))
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    return 0;
}

/* Scans each composed array once. */
int sae_parts_check_finite(const sae_parts *p, sae_error *err)
{
    const struct {
        const char *name;
        const float *a;
        size_t n;
    } arrays[] = {
        {"W_enc", p->w_enc, p->d_in * p->d_sae}, {"b_enc", p->b_enc, p->d_sae},
        {"W_dec", p->w_dec, p->d_sae * p->d_in}, {"b_dec", p->b_dec, p->d_in},
        {"threshold", p->threshold, p->d_sae},   {"b_gate", p->b_gate, p->d_sae},
        {"b_mag", p->b_mag, p->d_sae},           {"r_mag", p->r_mag, p->d_sae},
    };
    for (size_t a = 0; a < sizeof arrays / sizeof *arrays; a++) {
        if (!arrays[a].a)
            continue;
        for (size_t i = 0; i < arrays[a].n; i++)
            if (!isfinite(arrays[a].a[i]))
                return sae_error_set(err, SAE_ERANGE,
                                     "%s: %s element %zu is not finite (NaN or inf)",
                                     p->weights_path, arrays[a].name, i);
    }
    return 0;
}
