/* synth_match.c: scoring a trained SAE against `sae synth`'s truth: loading
 * the truth files and matching decoder rows to planted directions by cosine. */
#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/safetensors.h"
#include "train/synth_int.h"

int sae_synth_load_truth(const char *path, float **dirs, size_t *n, size_t *d, char ***labels,
                         sae_error *err)
{
    struct stat st;
    char *file = NULL, *jsonl = NULL, *line = NULL;
    sae_st_file *f = NULL;
    float *out = NULL, *owned = NULL;
    char **labs = NULL;
    size_t rows = 0;
    FILE *jf = NULL;
    int rc = 0;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        file = synth_join(path, "truth.safetensors");
    else
        file = strdup(path);
    if (!file) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = sae_st_open(file, &f, err)))
        goto out;
    const sae_st_tensor *t = sae_st_find(f, "directions");
    if (!t || t->ndim != 2 || !t->shape[0] || !t->shape[1]) {
        rc = sae_error_set(err, SAE_EFORMAT,
                           "%s: needs a 2-D tensor \"directions\" [n_features, d_in]", file);
        goto out;
    }
    rows = (size_t)t->shape[0];
    size_t cols = (size_t)t->shape[1];
    const float *data;
    if ((rc = sae_st_tensor_f32(f, t, &data, &owned, err)))
        goto out;
    if (!(out = malloc(rows * cols * sizeof *out))) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    memcpy(out, data, rows * cols * sizeof *out);
    if (labels) {
        /* truth.jsonl beside the tensors */
        const char *slash = strrchr(file, '/');
        size_t dl = slash ? (size_t)(slash - file) : 1;
        if (!(jsonl = malloc(dl + 16)) || !(labs = calloc(rows, sizeof *labs))) {
            rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
            goto out;
        }
        snprintf(jsonl, dl + 16, "%.*s/truth.jsonl", (int)dl, slash ? file : ".");
        if (!(jf = fopen(jsonl, "r"))) {
            rc = sae_error_set(err, SAE_EIO, "%s: %s", jsonl, strerror(errno));
            goto out;
        }
        size_t cap = 0, lineno = 0;
        ssize_t got;
        while ((got = getline(&line, &cap, jf)) > 0) {
            lineno++;
            json_error_t je;
            json_t *o = json_loads(line, JSON_REJECT_DUPLICATES, &je);
            json_t *idx = json_object_get(o, "index"), *lab = json_object_get(o, "label");
            if (!json_is_integer(idx) || !json_is_string(lab) || json_integer_value(idx) < 0 ||
                (size_t)json_integer_value(idx) >= rows) {
                json_decref(o);
                rc = sae_error_set(err, SAE_EFORMAT,
                                   "%s: line %zu: needs \"index\" < %zu and \"label\"", jsonl,
                                   lineno, rows);
                goto out;
            }
            size_t i = (size_t)json_integer_value(idx);
            free(labs[i]);
            labs[i] = strdup(json_string_value(lab));
            json_decref(o);
            if (!labs[i]) {
                rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
                goto out;
            }
        }
        for (size_t i = 0; i < rows; i++)
            if (!labs[i]) {
                rc = sae_error_set(err, SAE_EFORMAT, "%s: no label for feature %zu", jsonl, i);
                goto out;
            }
    }
    *dirs = out;
    out = NULL;
    *n = rows;
    *d = cols;
    if (labels) {
        *labels = labs;
        labs = NULL;
    }
out:
    if (jf)
        fclose(jf);
    if (labs)
        for (size_t i = 0; i < rows; i++)
            free(labs[i]);
    free(labs);
    free(line);
    free(jsonl);
    free(out);
    free(owned);
    sae_st_free(f);
    free(file);
    return rc;
}

/* Copies rows (n, d) into a new array with every row scaled to unit norm
 * (zero rows stay zero), or NULL. */
static float *unit_rows(const float *rows, size_t n, size_t d)
{
    float *u = malloc(n * d * sizeof *u);
    if (!u)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        double s = 0;
        for (size_t j = 0; j < d; j++)
            s += (double)rows[i * d + j] * rows[i * d + j];
        float inv = s > 0 ? (float)(1.0 / sqrt(s)) : 0;
        for (size_t j = 0; j < d; j++)
            u[i * d + j] = rows[i * d + j] * inv;
    }
    return u;
}

int sae_synth_match(const float *w_dec, size_t d_sae, const float *truth, size_t n_truth,
                    size_t d_in, uint32_t *best, float *best_cos, float *truth_cos,
                    double *mmcs, sae_error *err)
{
    if (!d_sae || !n_truth || !d_in)
        return sae_error_set(err, SAE_EINVAL, "match: empty decoder or truth");
    if (d_sae > INT32_MAX || n_truth > INT32_MAX || d_in > INT32_MAX)
        return sae_error_set(err, SAE_EINVAL, "match: sizes must be below 2^31");
    float *a = unit_rows(w_dec, d_sae, d_in), *b = unit_rows(truth, n_truth, d_in);
    float *cos = NULL, *tbest = NULL;
    int rc = 0;
    size_t cells;
    if (sae_mul_size(d_sae, n_truth, &cells) || !a || !b ||
        !(cos = malloc(cells * sizeof *cos)) || !(tbest = malloc(n_truth * sizeof *tbest))) {
        rc = sae_error_set(err, SAE_ENOMEM, "match: out of memory");
        goto out;
    }
    /* cos (d_sae, n_truth) = a · bᵀ */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)d_sae, (int)n_truth, (int)d_in, 1,
                a, (int)d_in, b, (int)d_in, 0, cos, (int)n_truth);
    for (size_t t = 0; t < n_truth; t++)
        tbest[t] = -2;
    for (size_t i = 0; i < d_sae; i++) {
        const float *row = cos + i * n_truth;
        size_t arg = 0;
        for (size_t t = 0; t < n_truth; t++) {
            if (row[t] > row[arg])
                arg = t;
            if (row[t] > tbest[t])
                tbest[t] = row[t];
        }
        if (best)
            best[i] = (uint32_t)arg;
        if (best_cos)
            best_cos[i] = row[arg];
    }
    double total = 0;
    for (size_t t = 0; t < n_truth; t++) {
        total += tbest[t];
        if (truth_cos)
            truth_cos[t] = tbest[t];
    }
    if (mmcs)
        *mmcs = total / (double)n_truth;
out:
    free(a);
    free(b);
    free(cos);
    free(tbest);
    return rc;
}
