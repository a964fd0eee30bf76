/* lm_ckpt.c: a checkpoint folder's safetensors, single or sharded (lm_ckpt.h). */
#include "lm/lm_ckpt.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/dtype.h"
#include "sae/model_cfg.h" /* sae_model_cfg_read: the capped, duplicate-rejecting JSON reader */

#define CKPT_SINGLE "model.safetensors"
#define CKPT_INDEX "model.safetensors.index.json"
#define CKPT_MAX_SHARDS 4096

/* dir/name in a new string, or NULL when out of memory. */
static char *join(const char *dir, const char *name)
{
    char *p;
    return asprintf(&p, "%s/%s", dir, name) < 0 ? NULL : p;
}

/* Opens dir/name and appends it to ck->files. */
static int open_file(sae_lm_ckpt *ck, const char *name, sae_error *err)
{
    char *path = join(ck->dir, name);
    if (!path)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", ck->dir);
    sae_st_file **grown = realloc(ck->files, (ck->n_files + 1) * sizeof *grown);
    if (!grown) {
        free(path);
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", ck->dir);
    }
    ck->files = grown;
    int rc = sae_st_open(path, &ck->files[ck->n_files], err);
    free(path);
    if (rc)
        return rc;
    ck->n_files++;
    return 0;
}

/* The already-open shard called name, or NULL. */
static sae_st_file *shard_named(const sae_lm_ckpt *ck, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < ck->n_files; i++) {
        const char *p = ck->files[i]->path;
        size_t len = strlen(p);
        if (len > n && p[len - n - 1] == '/' && strcmp(p + len - n, name) == 0)
            return ck->files[i];
    }
    return NULL;
}

/* A weight_map value must name a file in the folder itself: no path
 * separator, no "." or "..", no hidden file, a .safetensors name. */
static bool plain_shard_name(const char *s)
{
    size_t n = strlen(s);
    return n > 12 && n < 256 && s[0] != '.' && !strchr(s, '/') && !strchr(s, '\\') &&
           strcmp(s + n - 12, ".safetensors") == 0;
}

/* Opens every shard the index names and checks each entry against its shard. */
static int open_sharded(sae_lm_ckpt *ck, const char *index_path, sae_error *err)
{
    json_t *root = NULL;
    int rc = sae_model_cfg_read(index_path, &root, err);
    if (rc)
        return rc;
    json_t *map = json_object_get(root, "weight_map");
    if (!json_is_object(map) || json_object_size(map) == 0) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: \"weight_map\" is not a non-empty object",
                           index_path);
        goto out;
    }
    const char *name;
    json_t *v;
    json_object_foreach(map, name, v) {
        const char *shard = json_string_value(v);
        if (!shard || !plain_shard_name(shard)) {
            rc = sae_error_set(err, SAE_EFORMAT,
                               "%s: weight_map[\"%.100s\"] is not a .safetensors file name in "
                               "the folder",
                               index_path, name);
            goto out;
        }
        if (!shard_named(ck, shard)) {
            if (ck->n_files == CKPT_MAX_SHARDS) {
                rc = sae_error_set(err, SAE_EFORMAT, "%s: more than %d shards", index_path,
                                   CKPT_MAX_SHARDS);
                goto out;
            }
            if ((rc = open_file(ck, shard, err)))
                goto out;
        }
        if (!sae_st_find(shard_named(ck, shard), name)) {
            rc = sae_error_set(err, SAE_EFORMAT,
                               "%s: weight_map puts tensor \"%.100s\" in %s, which does not "
                               "hold it",
                               index_path, name, shard);
            goto out;
        }
    }
out:
    json_decref(root);
    return rc;
}

/* A tensor name may appear in one file of the folder only. */
static int check_unique(const sae_lm_ckpt *ck, sae_error *err)
{
    for (size_t i = 0; i < ck->n_files; i++)
        for (size_t t = 0; t < ck->files[i]->n_tensors; t++)
            for (size_t j = i + 1; j < ck->n_files; j++) {
                const char *name = ck->files[i]->tensors[t].name;
                if (sae_st_find(ck->files[j], name))
                    return sae_error_set(err, SAE_EST_DUPLICATE_NAME,
                                         "%s: tensor \"%.100s\" is in two shards: %s and %s",
                                         ck->dir, name, ck->files[i]->path, ck->files[j]->path);
            }
    return 0;
}

int sae_lm_ckpt_open(const char *dir, sae_lm_ckpt *ck, sae_error *err)
{
    memset(ck, 0, sizeof *ck);
    ck->prefix = "";
    char *index = NULL, *single = NULL;
    int rc;
    if (!(ck->dir = strdup(dir)) || !(index = join(dir, CKPT_INDEX)) ||
        !(single = join(dir, CKPT_SINGLE))) {
        rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", dir);
        goto out;
    }
    struct stat st;
    if (stat(index, &st) == 0)
        rc = open_sharded(ck, index, err);
    else if (stat(single, &st) == 0)
        rc = open_file(ck, CKPT_SINGLE, err);
    else
        rc = sae_error_set(err, SAE_EIO, "%s: neither %s nor %s is there", dir, CKPT_SINGLE,
                           CKPT_INDEX);
    if (!rc)
        rc = check_unique(ck, err);
out:
    free(index);
    free(single);
    if (rc)
        sae_lm_ckpt_free(ck);
    return rc;
}

void sae_lm_ckpt_free(sae_lm_ckpt *ck)
{
    for (size_t i = 0; i < ck->n_files; i++)
        sae_st_free(ck->files[i]);
    for (size_t i = 0; i < ck->n_owned; i++)
        free(ck->owned[i]);
    free(ck->files);
    free(ck->owned);
    free(ck->dir);
    memset(ck, 0, sizeof *ck);
}

/* The file holding the tensor called full, and the tensor, or NULL. */
static const sae_st_tensor *find(const sae_lm_ckpt *ck, const char *full, const sae_st_file **in)
{
    for (size_t i = 0; i < ck->n_files; i++) {
        const sae_st_tensor *t = sae_st_find(ck->files[i], full);
        if (t) {
            *in = ck->files[i];
            return t;
        }
    }
    return NULL;
}

int sae_lm_ckpt_prefix(sae_lm_ckpt *ck, const char *probe, const char *const *prefixes, size_t n,
                       sae_error *err)
{
    char full[256];
    const sae_st_file *f;
    for (size_t i = 0; i < n; i++) {
        snprintf(full, sizeof full, "%s%s", prefixes[i], probe);
        if (find(ck, full, &f)) {
            ck->prefix = prefixes[i];
            return 0;
        }
    }
    return sae_error_set(err, SAE_EFORMAT, "%s: no tensor \"%s\" (with%s prefix \"%s\")",
                         ck->dir, probe, n > 1 ? " or without" : "", n ? prefixes[0] : "");
}

/* Writes "[a, b, c]" into buf. */
static void shape_text(char *buf, size_t cap, int ndim, const uint64_t *shape)
{
    size_t used = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && used < cap; i++)
        used += (size_t)snprintf(buf + used, cap - used, "%s%llu", i ? ", " : "",
                                 (unsigned long long)shape[i]);
    if (used < cap)
        snprintf(buf + used, cap - used, "]");
}

int sae_lm_ckpt_f32(sae_lm_ckpt *ck, const char *name, int ndim, const size_t *shape,
                    const float **out, sae_error *err)
{
    char full[256];
    snprintf(full, sizeof full, "%s%s", ck->prefix, name);
    const sae_st_file *f = NULL;
    const sae_st_tensor *t = find(ck, full, &f);
    if (!t)
        return sae_error_set(err, SAE_EFORMAT, "%s: no tensor \"%s\"", ck->dir, full);
    bool same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char have[128], want[128];
        uint64_t w[SAE_ST_MAX_DIMS];
        for (int i = 0; i < ndim; i++)
            w[i] = shape[i];
        shape_text(have, sizeof have, t->ndim, t->shape);
        shape_text(want, sizeof want, ndim, w);
        return sae_error_set(err, SAE_EDIM, "%s: tensor \"%s\" has shape %s, config.json says %s",
                             f->path, full, have, want);
    }
    const float *v;
    float *owned;
    int rc = sae_st_tensor_f32(f, t, &v, &owned, err);
    if (rc)
        return rc;
    if (owned) {
        float **grown = realloc(ck->owned, (ck->n_owned + 1) * sizeof *grown);
        if (!grown) {
            free(owned);
            return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", f->path);
        }
        ck->owned = grown;
        ck->owned[ck->n_owned++] = owned;
    }
    for (size_t i = 0; i < t->n_elems; i++)
        if (!isfinite(v[i]))
            return sae_error_set(err, SAE_ERANGE, "%s: tensor \"%s\": element %zu is not finite",
                                 f->path, full, i);
    if (!ck->dtype[0])
        snprintf(ck->dtype, sizeof ck->dtype, "%s", sae_dtype_name(t->dtype));
    *out = v;
    return 0;
}
