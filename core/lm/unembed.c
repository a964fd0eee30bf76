/* unembed.c: W_U loaded from a safetensors file or composed from a Hugging
 * Face checkpoint folder as TransformerLens' defaults do (unembed.h). */
#include "lm/unembed.h"

#include <dirent.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/safetensors.h"

/* The tensor files of a checkpoint folder (every *.safetensors in it), each
 * opened and validated. Owns them. */
typedef struct shards {
    size_t n;
    sae_st_file **f;        /* (n) owned */
} shards;

static void shards_free(shards *s)
{
    for (size_t i = 0; i < s->n; i++)
        sae_st_free(s->f[i]);
    free(s->f);
    memset(s, 0, sizeof *s);
}

/* Opens every *.safetensors file of dir into s. */
static int shards_open(const char *dir, shards *s, sae_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return sae_error_set(err, SAE_EIO, "%s: cannot open the folder", dir);
    struct dirent *e;
    int rc = 0;
    while (!rc && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 12 || strcmp(e->d_name + n - 12, ".safetensors") || e->d_name[0] == '.')
            continue;
        char *path = malloc(strlen(dir) + n + 2);
        sae_st_file **grown = realloc(s->f, (s->n + 1) * sizeof *grown);
        if (!path || !grown) {
            free(path);
            if (grown)
                s->f = grown;
            rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", dir);
            break;
        }
        s->f = grown;
        sprintf(path, "%s/%s", dir, e->d_name);
        rc = sae_st_open(path, &s->f[s->n], err);
        if (!rc)
            s->n++;
        free(path);
    }
    closedir(d);
    if (!rc && !s->n)
        rc = sae_error_set(err, SAE_EFORMAT, "%s: no .safetensors file in the checkpoint folder",
                           dir);
    return rc;
}

/* The first of the names (NULL-terminated) found in any shard, or NULL. */
static const sae_st_tensor *shards_find(const shards *s, const char *const *names,
                                        const sae_st_file **file)
{
    for (const char *const *n = names; *n; n++)
        for (size_t i = 0; i < s->n; i++) {
            const sae_st_tensor *t = sae_st_find(s->f[i], *n);
            if (t) {
                *file = s->f[i];
                return t;
            }
        }
    return NULL;
}

/* A float tensor of the given rank, refused otherwise (naming file and key). */
static int check_tensor(const sae_st_file *f, const sae_st_tensor *t, int ndim, sae_error *err)
{
    if (!sae_dtype_is_float(t->dtype) || t->ndim != ndim)
        return sae_error_set(err, SAE_EFORMAT, "%s: %s: expected a %d-D float tensor", f->path,
                             t->name, ndim);
    return 0;
}

/* W_U as given by a safetensors file's "W_U" (d_model, V). */
static int load_file(const char *path, sae_unembed *u, sae_error *err)
{
    sae_st_file *f = NULL;
    const float *w;
    float *owned = NULL;
    int rc = sae_st_open(path, &f, err);
    if (rc)
        return rc;
    const sae_st_tensor *t = sae_st_find(f, "W_U");
    if (!t) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: no tensor \"W_U\" (d_model, V)", path);
        goto out;
    }
    if ((rc = check_tensor(f, t, 2, err)) || (rc = sae_st_tensor_f32(f, t, &w, &owned, err)))
        goto out;
    u->d_model = (size_t)t->shape[0];
    u->n_vocab = (size_t)t->shape[1];
    if (!u->d_model || !u->n_vocab) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: W_U is empty", path);
        goto out;
    }
    if (owned) {
        u->w = owned;
        owned = NULL;
    } else if (!(u->w = malloc(t->n_elems * sizeof(float)))) {
        rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory for W_U", path);
        goto out;
    } else {
        memcpy(u->w, w, t->n_elems * sizeof(float));
    }
    snprintf(u->kind, sizeof u->kind, "W_U");
out:
    free(owned);
    sae_st_free(f);
    return rc;
}

/* The architecture family config.json names: "gpt2", "llama" (Llama,
 * Mistral, Qwen2: lm_head + RMSNorm) or "gemma" (RMSNorm with 1 + w); and
 * whether the embeddings are tied. */
static int read_config(const char *dir, char *kind, size_t kind_len, bool *tied, sae_error *err)
{
    char *path = malloc(strlen(dir) + 16);
    if (!path)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    sprintf(path, "%s/config.json", dir);
    json_error_t je;
    json_t *cfg = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    int rc = 0;
    if (!cfg || !json_is_object(cfg)) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: %s", path, cfg ? "not a JSON object" : je.text);
        goto out;
    }
    const char *mt = json_string_value(json_object_get(cfg, "model_type"));
    json_t *tie = json_object_get(cfg, "tie_word_embeddings");
    if (!mt) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: no \"model_type\"", path);
        goto out;
    }
    if (!strcmp(mt, "gpt2")) {
        snprintf(kind, kind_len, "gpt2");
        *tied = true;
    } else if (!strncmp(mt, "gemma", 5)) {
        snprintf(kind, kind_len, "gemma");
        *tied = tie ? json_is_true(tie) : true;
    } else if (!strcmp(mt, "llama") || !strcmp(mt, "mistral") || !strcmp(mt, "qwen2")) {
        snprintf(kind, kind_len, "llama");
        *tied = tie ? json_is_true(tie) : false;
    } else {
        rc = sae_error_set(err, SAE_EFORMAT,
                           "%s: model_type \"%s\" is not one saed composes W_U for (gpt2, llama, "
                           "mistral, qwen2, gemma*); give a safetensors file with W_U instead",
                           path, mt);
    }
out:
    json_decref(cfg);
    free(path);
    return rc;
}

/* Reads row v of a (V, d) tensor as floats into dst. */
static void tensor_row(const sae_st_tensor *t, size_t v, size_t d, float *dst)
{
    size_t es = sae_dtype_size(t->dtype);
    sae_convert_to_f32(t->dtype, (const unsigned char *)t->data + v * d * es, d, dst);
}

/* W_U composed from a checkpoint folder (unembed.h). */
static int load_folder(const char *dir, sae_unembed *u, sae_error *err)
{
    shards s = {0};
    bool tied = false;
    float *row = NULL, *scale = NULL;
    int rc = read_config(dir, u->kind, sizeof u->kind, &tied, err);
    if (rc || (rc = shards_open(dir, &s, err)))
        goto out;
    bool gpt2 = !strcmp(u->kind, "gpt2"), gemma = !strcmp(u->kind, "gemma");
    static const char *const gpt2_e[] = {"lm_head.weight", "wte.weight", "transformer.wte.weight",
                                         NULL};
    static const char *const gpt2_n[] = {"ln_f.weight", "transformer.ln_f.weight", NULL};
    static const char *const tied_e[] = {"model.embed_tokens.weight", NULL};
    static const char *const head_e[] = {"lm_head.weight", "model.embed_tokens.weight", NULL};
    static const char *const rms_n[] = {"model.norm.weight", NULL};
    const sae_st_file *ef = NULL, *nf = NULL;
    const sae_st_tensor *e = shards_find(&s, gpt2 ? gpt2_e : tied ? tied_e : head_e, &ef);
    const sae_st_tensor *n = shards_find(&s, gpt2 ? gpt2_n : rms_n, &nf);
    if (!e || !n) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: checkpoint lacks the %s (%s)", dir,
                           !e ? "unembedding" : "final norm's weight",
                           !e ? (gpt2 ? "wte.weight" : "lm_head.weight or model.embed_tokens.weight")
                              : (gpt2 ? "ln_f.weight" : "model.norm.weight"));
        goto out;
    }
    if ((rc = check_tensor(ef, e, 2, err)) || (rc = check_tensor(nf, n, 1, err)))
        goto out;
    size_t V = (size_t)e->shape[0], d = (size_t)e->shape[1];
    if (n->shape[0] != d || !V || !d) {
        rc = sae_error_set(err, SAE_EDIM, "%s: %s has %llu entries, %s has width %zu", dir,
                           n->name, (unsigned long long)n->shape[0], e->name, d);
        goto out;
    }
    size_t total;
    if (sae_mul_size(V, d, &total) || !(u->w = malloc(total * sizeof(float))) ||
        !(row = malloc(d * sizeof *row)) || !(scale = malloc(d * sizeof *scale))) {
        rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory for W_U (%zu x %zu)", dir, d, V);
        goto out;
    }
    tensor_row(n, 0, d, scale);
    for (size_t j = 0; j < d; j++)
        scale[j] = gemma ? 1.0f + scale[j] : scale[j];
    /* Fold the scale; for LayerNorm also centre each token's column over d. */
    for (size_t v = 0; v < V; v++) {
        tensor_row(e, v, d, row);
        double m = 0;
        for (size_t j = 0; j < d; j++) {
            row[j] *= scale[j];
            m += row[j];
        }
        m /= (double)d;
        for (size_t j = 0; j < d; j++)
            u->w[j * V + v] = gpt2 ? (float)(row[j] - m) : row[j];
    }
    /* center_unembed: each row's mean over the vocabulary. */
    for (size_t j = 0; j < d; j++) {
        float *wr = u->w + j * V;
        double m = 0;
        for (size_t v = 0; v < V; v++)
            m += wr[v];
        m /= (double)V;
        for (size_t v = 0; v < V; v++)
            wr[v] = (float)(wr[v] - m);
    }
    u->d_model = d;
    u->n_vocab = V;
out:
    free(row);
    free(scale);
    shards_free(&s);
    return rc;
}

int sae_unembed_load(const char *source, sae_unembed *out, sae_error *err)
{
    sae_unembed u;
    memset(&u, 0, sizeof u);
    struct stat st;
    if (stat(source, &st))
        return sae_error_set(err, SAE_EIO, "%s: no such file or folder", source);
    int rc = S_ISDIR(st.st_mode) ? load_folder(source, &u, err) : load_file(source, &u, err);
    if (rc) {
        sae_unembed_free(&u);
        return rc;
    }
    *out = u;
    return 0;
}

void sae_unembed_free(sae_unembed *u)
{
    if (!u)
        return;
    free(u->w);
    memset(u, 0, sizeof *u);
}
