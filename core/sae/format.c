/* format.c: recognising an SAE folder's layout (format.h), dispatching to
 * the release loaders, and the helpers they share (format_internal.h). */
#include "sae/format.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "sae/format_internal.h"

/* What docs/FORMATS.md calls each layout. */
const char *sae_format_name(sae_format f)
{
    switch (f) {
    case SAE_FORMAT_SAELENS: return "SAELens";
    case SAE_FORMAT_GEMMASCOPE: return "Gemma Scope";
    case SAE_FORMAT_LLAMASCOPE: return "Llama Scope";
    case SAE_FORMAT_DICTLEARN: return "dictionary_learning";
    case SAE_FORMAT_LLAMASCOPE_R1: return "Llama Scope R1-distill";
    }
    return "?";
}

/* ------------------------------------------------------------ helpers */

char *sae_format_path(const char *dir, const char *name)
{
    char *s = NULL;
    return asprintf(&s, "%s/%s", dir, name) < 0 ? NULL : s;
}

bool sae_format_exists(const char *dir, const char *name)
{
    char *p = sae_format_path(dir, name);
    struct stat st;
    bool yes = p && stat(p, &st) == 0;
    free(p);
    return yes;
}

/* realpath, then keep the part after the n-th '/' from the end. */
int sae_format_tail(const char *dir, int n, char **out, sae_error *err)
{
    char *abs = realpath(dir, NULL);
    if (!abs)
        return sae_error_set(err, SAE_EIO, "%s: cannot resolve the folder's path: %s", dir,
                             strerror(errno));
    char *at = abs + strlen(abs);
    for (int i = 0; i < n && at > abs; i++)
        for (at--; at > abs && *at != '/'; at--)
            ;
    if (*at == '/')
        at++;
    *out = strdup(at);
    free(abs);
    return *out ? 0 : sae_error_set(err, SAE_ENOMEM, "out of memory");
}

int sae_format_json(const char *dir, const char *name, json_t **out, char **path, sae_error *err)
{
    *path = sae_format_path(dir, name);
    if (!*path)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    return sae_model_cfg_read(*path, out, err);
}

int sae_format_uint(const json_t *obj, const char *key, const char *path, size_t *out,
                    sae_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_integer(v) || json_integer_value(v) <= 0)
        return sae_error_set(err, SAE_EINVAL, "%s: %s %s", path, key,
                             v ? "must be a positive integer" : "is missing");
    *out = (size_t)json_integer_value(v);
    return 0;
}

int sae_format_num(const json_t *obj, const char *key, const char *path, double *out,
                   sae_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return sae_error_set(err, SAE_EINVAL, "%s: %s %s", path, key,
                             v ? "must be a finite number" : "is missing");
    *out = json_number_value(v);
    return 0;
}

int sae_format_str(const json_t *obj, const char *key, const char *path, const char **out,
                   sae_error *err)
{
    json_t *v = json_object_get(obj, key);
    if (!json_is_string(v))
        return sae_error_set(err, SAE_EINVAL, "%s: %s %s", path, key,
                             v ? "must be a string" : "is missing");
    *out = json_string_value(v);
    return 0;
}

int sae_format_open(sae_parts *p, const char *dir, const char *name,
                    int (*open)(const char *, sae_st_file **, sae_error *), sae_error *err)
{
    free(p->weights_path);
    p->weights_path = sae_format_path(dir, name);
    if (!p->weights_path)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    return open(p->weights_path, &p->st, err);
}

/* ------------------------------------------------------------ detection */

/* What a folder holds, for the message when it is no layout saed reads:
 * up to a few entry names (folders with a trailing '/'), how many there
 * are, and whether every entry is a folder. */
typedef struct folder_view {
    char names[256];
    size_t n, n_dirs, n_pt;
} folder_view;

/* Lists dir into *v (sorted order is not needed: the message only shows
 * what kind of thing is there). */
static int folder_look(const char *dir, folder_view *v, sae_error *err)
{
    DIR *d = opendir(dir);
    if (!d)
        return sae_error_set(err, SAE_EIO, "%s: cannot list the folder: %s", dir, strerror(errno));
    memset(v, 0, sizeof *v);
    size_t at = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        char *p = sae_format_path(dir, e->d_name);
        struct stat st;
        bool is_dir = p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
        free(p);
        size_t len = strlen(e->d_name);
        v->n++;
        v->n_dirs += is_dir;
        v->n_pt += len > 3 && strcmp(e->d_name + len - 3, ".pt") == 0;
        if (v->n <= 6 && at < sizeof v->names - 1)
            at += (size_t)snprintf(v->names + at, sizeof v->names - at, "%s%.60s%s",
                                   at ? ", " : "", e->d_name, is_dir ? "/" : "");
        else if (v->n == 7 && at < sizeof v->names - 1)
            at += (size_t)snprintf(v->names + at, sizeof v->names - at, ", ...");
    }
    closedir(d);
    return 0;
}

/* The one line for a folder of no known layout. */
static int unknown_folder(const char *dir, sae_error *err)
{
    folder_view v;
    int rc;
    /* Subfolders that are SAE folders (a sparsify hub root): named by
     * model_cfg.c's hint. */
    if ((rc = sae_model_cfg_hub_hint(dir, err)) || (rc = folder_look(dir, &v, err)))
        return rc;
    const char *reads = "saed reads SAELens (cfg.json + sae_weights.safetensors), sparsify "
                        "(cfg.json + sae.safetensors), Gemma Scope (params.npz), Llama Scope "
                        "(hyperparams.json + checkpoints/final.safetensors) and "
                        "dictionary_learning (config.json + ae.pt) folders";
    if (v.n == 0)
        return sae_error_set(err, SAE_EFORMAT, "%s: the folder is empty; %s", dir, reads);
    if (v.n_dirs == v.n)
        return sae_error_set(err, SAE_EFORMAT,
                             "%s: a folder of %zu folders (%s), not one SAE: pass the folder of "
                             "one SAE (a sparsify hub root holds one per layer, layers.N/)",
                             dir, v.n, v.names);
    if (v.n_pt)
        return sae_error_set(err, SAE_EFORMAT,
                             "%s: holds a PyTorch checkpoint (%s) but no config.json beside an "
                             "ae.pt, so it is no dictionary_learning folder (OpenAI "
                             "sparse_autoencoder checkpoints are not read); %s",
                             dir, v.names, reads);
    return sae_error_set(err, SAE_EFORMAT, "%s: no SAE layout saed knows (it holds %s); %s", dir,
                         v.names, reads);
}

/* The files each layout is recognised by, in the order they are tried. */
static const struct {
    sae_format f;
    const char *a, *b; /* both must exist; b may be NULL */
} layouts[] = {
    {SAE_FORMAT_SAELENS, "cfg.json", NULL},
    {SAE_FORMAT_GEMMASCOPE, "params.npz", NULL},
    {SAE_FORMAT_LLAMASCOPE, "hyperparams.json", "checkpoints/final.safetensors"},
    {SAE_FORMAT_DICTLEARN, "config.json", "ae.pt"},
    {SAE_FORMAT_LLAMASCOPE_R1, "config.json", "sae_weights.safetensors"},
};

int sae_format_detect(const char *dir, sae_format *out, sae_error *err)
{
    for (size_t i = 0; i < sizeof layouts / sizeof *layouts; i++)
        if (sae_format_exists(dir, layouts[i].a) &&
            (!layouts[i].b || sae_format_exists(dir, layouts[i].b))) {
            *out = layouts[i].f;
            return 0;
        }
    return unknown_folder(dir, err);
}

int sae_format_compose(const char *dir, sae_format f, sae_parts *p, sae_model_warnings *warn,
                       sae_error *err)
{
    switch (f) {
    case SAE_FORMAT_GEMMASCOPE: return sae_format_gemmascope(dir, p, warn, err);
    case SAE_FORMAT_LLAMASCOPE: return sae_format_llamascope(dir, p, warn, err);
    case SAE_FORMAT_DICTLEARN: return sae_format_dictlearn(dir, p, warn, err);
    case SAE_FORMAT_LLAMASCOPE_R1: return sae_format_llamascope_r1(dir, p, warn, err);
    case SAE_FORMAT_SAELENS: break;
    }
    return sae_error_set(err, SAE_EINVAL, "%s: %s folders are read by the SAELens loader", dir,
                         sae_format_name(f));
}
