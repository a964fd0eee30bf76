/* synth_match.c: scoring a trained SAE against `sae synth`'s truth: loading
 * the truth files, matching decoder rows to planted directions by cosine,
 * counting how often each latent fires, and the labels `sae train --truth`
 * writes to explanations.jsonl. */
#include <cblas.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/activations.h"
#include "io/outfile.h"
#include "io/safetensors.h"
#include "sae/encode.h"
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

/* ---- firing counts and labels ---- */

/* Adds to fires (d_sae) one for every entry of the encoded rows f. */
static void count_entries(const sae_sparse *f, uint64_t *fires)
{
    for (size_t e = 0; e < f->nnz; e++)
        fires[f->idx[e]]++;
}

int sae_synth_fire_counts(const sae_model *m, const char *const *paths, size_t n_paths,
                          uint64_t *fires, sae_error *err)
{
    const size_t block = 4096;
    sae_acts *acts = NULL;
    sae_workspace *ws = NULL;
    sae_sparse f;
    sae_sparse_init(&f);
    float *x = NULL;
    int rc = sae_acts_open(paths, n_paths, &acts, err);
    if (rc)
        return rc;
    size_t n_rows = sae_acts_rows(acts), d_in = m->d_in;
    if (sae_acts_dim(acts) != d_in) {
        rc = sae_error_set(err, SAE_EDIM, "%s: rows of %zu values, the model takes %zu",
                           paths[0], sae_acts_dim(acts), d_in);
        goto out;
    }
    if (!(ws = sae_workspace_new(m, 0)) || !(x = malloc(block * d_in * sizeof *x))) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory encoding the activations");
        goto out;
    }
    memset(fires, 0, m->d_sae * sizeof *fires);
    sae_encode_opts all = {0};
    for (size_t r0 = 0; r0 < n_rows; r0 += block) {
        size_t n = n_rows - r0 < block ? n_rows - r0 : block;
        if ((rc = sae_acts_read(acts, r0, n, x, err)))
            goto out;
        for (size_t i = 0; i < n * d_in; i++)
            if (!isfinite(x[i])) {
                rc = sae_error_set(err, SAE_ERANGE, "row %zu of the activations is not finite",
                                   r0 + i / d_in);
                goto out;
            }
        sae_sparse_reset(&f);
        if ((rc = sae_encode(m, ws, x, n, &all, &f, NULL, NULL, err)))
            goto out;
        count_entries(&f, fires);
    }
out:
    free(x);
    sae_sparse_free(&f);
    sae_workspace_free(ws);
    sae_acts_free(acts);
    return rc;
}

/* What a latent is, against the truth. */
typedef enum latent_kind { LATENT_PLANTED, LATENT_UNMATCHED, LATENT_DEAD } latent_kind;

/* The kind of a latent that fired `fires` times and whose decoder row has
 * cosine best_cos with its closest planted direction: dead before unmatched,
 * since a latent that never fires shows nothing whatever its direction. */
static latent_kind latent_kind_of(uint64_t fires, float best_cos)
{
    if (!fires)
        return LATENT_DEAD;
    return best_cos < SAE_SYNTH_MATCH_COS ? LATENT_UNMATCHED : LATENT_PLANTED;
}

/* One line of explanations.jsonl: latent i of kind k, closest to the planted
 * feature labelled `planted` at cosine best_cos. A new reference. */
static json_t *explanation(size_t i, latent_kind k, float best_cos, const char *planted)
{
    char desc[64], why[96];
    const char *text = planted, *source = "synth truth: closest planted direction";
    if (k == LATENT_DEAD) {
        text = "dead";
        source = "synth truth: never fires on the training activations";
    } else if (k == LATENT_UNMATCHED) {
        snprintf(desc, sizeof desc, "unmatched (cos %.2f)", (double)best_cos);
        snprintf(why, sizeof why, "synth truth: no planted direction at cosine %g or more",
                 SAE_SYNTH_MATCH_COS);
        text = desc;
        source = why;
    }
    json_t *o = json_object();
    json_object_set_new(o, "index", json_integer((json_int_t)i));
    json_object_set_new(o, "description", json_string(text));
    json_object_set_new(o, "score", json_real(round(best_cos * 1e4) / 1e4));
    json_object_set_new(o, "source", json_string(source));
    return o;
}

int sae_synth_explain(const sae_model *m, const char *const *paths, size_t n_paths,
                      const float *truth, const char *const *labels, size_t n_truth,
                      const char *path, sae_synth_score *score, sae_error *err)
{
    size_t d_sae = m->d_sae;
    uint32_t *best = malloc(d_sae * sizeof *best);
    float *best_cos = malloc(d_sae * sizeof *best_cos);
    float *truth_cos = malloc(n_truth * sizeof *truth_cos);
    uint64_t *fires = malloc(d_sae * sizeof *fires);
    sae_synth_score sc = {.n_planted = n_truth, .d_sae = d_sae};
    int rc = 0;
    float *wide = NULL;
    const float *w_dec = NULL;
    if (m->arch == SAE_ARCH_AUTOENCODER) {
        rc = sae_error_set(err, SAE_EINVAL, "the truth scores SAEs, not the autoencoder");
        goto out;
    }
    if (!best || !best_cos || !truth_cos || !fires) {
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
        goto out;
    }
    if ((rc = sae_model_w_dec_f32(m, &w_dec, &wide, err)) ||
        (rc = sae_synth_match(w_dec, d_sae, truth, n_truth, m->d_in, best, best_cos,
                              truth_cos, &sc.mmcs, err)) ||
        (rc = sae_synth_fire_counts(m, paths, n_paths, fires, err)))
        goto out;
    for (size_t t = 0; t < n_truth; t++)
        sc.recovered += truth_cos[t] >= 0.9f;
    sae_outfile file;
    if ((rc = sae_outfile_open(&file, path, err)))
        goto out;
    for (size_t i = 0; i < d_sae && !rc; i++) {
        latent_kind k = latent_kind_of(fires[i], best_cos[i]);
        sc.n_labelled += k == LATENT_PLANTED;
        sc.n_unmatched += k == LATENT_UNMATCHED;
        sc.n_dead += k == LATENT_DEAD;
        json_t *o = explanation(i, k, best_cos[i], labels[best[i]]);
        if (json_dumpf(o, file.fp, JSON_COMPACT | JSON_PRESERVE_ORDER) ||
            fputc('\n', file.fp) == EOF)
            rc = sae_error_set(err, SAE_EIO, "%s: write failed: %s", path, strerror(errno));
        json_decref(o);
    }
    if (rc)
        sae_outfile_abort(&file);
    else if (!(rc = sae_outfile_commit(&file, err)) && score)
        *score = sc;
out:
    free(wide);
    free(best);
    free(best_cos);
    free(truth_cos);
    free(fires);
    return rc;
}
