/* format_gemmascope.c: Gemma Scope folders (params.npz), as SAELens 6.18
 * composes them (loading/pretrained_sae_loaders.py,
 * get_gemma_2_config_from_hf and gemma_2_sae_huggingface_loader).
 *
 * params.npz holds W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc, b_dec
 * and threshold [d_sae], stored (np.savez) or deflated (np.savez_compressed);
 * keys spelled w_... are read as W_... . The SAE is a jumprelu with
 * apply_b_dec_to_input false and no normalisation. d_in and d_sae come from
 * the shapes (SAELens takes them from tables by name and then requires the
 * shapes to agree, so the two agree whenever SAELens loads at all). An
 * optional scaling_factor is dropped when all ones and refused otherwise, as
 * SAELens does (its cfg has finetuning_scaling_factor false). Embedding SAEs
 * (folder embedding/...) get W_enc / sqrt(d_in) and W_dec * sqrt(d_in).
 *
 * Names come from the folder path as SAELens derives them from the repo id
 * and the folder name: .../gemma-scope-2b-pt-res/layer_12/width_16k/
 * average_l0_82 (also inside a Hugging Face cache,
 * models--google--gemma-scope-2b-pt-res/snapshots/<hash>/layer_12/...) is
 * model gemma-2-2b, hook blocks.12.hook_resid_post, and Neuronpedia source
 * gemma-2-2b/12-gemmascope-res-16k__l0-82. A folder whose path does not say
 * loads all the same, with a warning and no names (they can be set per SAE).
 * Stored F32 arrays are used in place when their address is 4-byte aligned
 * (np.savez's usually are not, and are then copied once). */
#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/npz.h"
#include "sae/format_internal.h"

/* What the path says about an SAE; NULL / -1 where it says nothing. */
typedef struct gemma_path {
    char *repo;               /* owned: the repository's folder name */
    char *folder;             /* owned: the last three components */
    const char *model;        /* static: gemma-2-2b, ... */
    const char *kind;         /* static: res, mlp, att, transcoder */
    bool transcoder;          /* gemma-scope-*-transcoders: ln2's input to the MLP's output */
    char hook_out[64];        /* a transcoder's output hook; "" otherwise */
    char hook[64];            /* "" when unknown */
    long layer;               /* -1 when unknown */
    char width[8];            /* "16k", ...; "" when unknown */
    long l0;                  /* average_l0_N, or -1 */
    bool embedding;
} gemma_path;

/* The first "<prefix><digits>" in s, as SAELens' re.search(prefix + r"(\d+)"):
 * the number, or -1. */
static long search_number(const char *s, const char *prefix)
{
    for (const char *at = strstr(s, prefix); at; at = strstr(at + 1, prefix)) {
        const char *d = at + strlen(prefix);
        if (isdigit((unsigned char)*d))
            return strtol(d, NULL, 10);
    }
    return -1;
}

/* Splits dir's absolute path: the last three components are the folder
 * name; the one above is the repository, unless that is a Hugging Face
 * cache's snapshots/<hash>, in which case it is the models--<org>--<name>
 * above those. */
static int split_path(const char *dir, gemma_path *g, sae_error *err)
{
    char *tail = NULL;
    int rc;
    if ((rc = sae_format_tail(dir, 6, &tail, err)))
        return rc;
    const char *comp[6] = {0};
    int n = 0;
    for (char *save = NULL, *t = strtok_r(tail, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        if (n == 6)
            memmove(comp, comp + 1, 5 * sizeof *comp), n = 5;
        comp[n++] = t;
    }
    const char *repo = n >= 4 ? comp[n - 4] : "";
    if (n >= 6 && strcmp(comp[n - 5], "snapshots") == 0 && strlen(repo) == 40 &&
        strspn(repo, "0123456789abcdef") == 40)
        repo = comp[n - 6];
    g->repo = strdup(repo);
    g->folder = NULL;
    if (g->repo && n >= 3 &&
        asprintf(&g->folder, "%s/%s/%s", comp[n - 3], comp[n - 2], comp[n - 1]) < 0)
        g->folder = NULL;
    if (g->repo && n < 3)
        g->folder = strdup(n ? comp[n - 1] : "");
    free(tail);
    return g->repo && g->folder ? 0 : sae_error_set(err, SAE_ENOMEM, "out of memory");
}

/* get_gemma_2_config_from_hf's inference, from the repo and folder names:
 * width (the first width_ key that is a substring of the folder), layer
 * (layer_N, or 0 for embedding), model (the first of 2b-it, 9b-it, 27b-it,
 * 2b, 9b, 27b in the repo) and hook (res / embedding / mlp / att, in
 * SAELens' order). Only a repo named gemma-scope-... is read, so that an
 * unrelated folder name ("resources") says nothing. */
static void infer(gemma_path *g)
{
    static const char *const widths[] = {"4k", "16k", "32k", "65k", "131k", "262k", "524k", "1m"};
    static const struct {
        const char *key, *name;
    } models[] = {{"2b-it", "gemma-2-2b-it"}, {"9b-it", "gemma-2-9b-it"},
                  {"27b-it", "gemma-2-27b-it"}, {"2b", "gemma-2-2b"},
                  {"9b", "gemma-2-9b"},       {"27b", "gemma-2-27b"}};
    g->transcoder = strstr(g->repo, "transcoder") != NULL;
    g->layer = search_number(g->folder, "layer_");
    if (g->layer < 0 && g->transcoder) /* the transcoder loader retries on the repo id */
        g->layer = search_number(g->repo, "layer_");
    g->l0 = search_number(g->folder, "average_l0_");
    g->embedding = strstr(g->folder, "embedding") != NULL;
    if (g->layer < 0 && g->embedding)
        g->layer = 0;
    for (size_t i = 0; i < sizeof widths / sizeof *widths && !g->width[0]; i++) {
        char key[16];
        snprintf(key, sizeof key, "width_%s", widths[i]);
        if (strstr(g->folder, key))
            snprintf(g->width, sizeof g->width, "%s", widths[i]);
    }
    if (!strstr(g->repo, "gemma-scope"))
        return;
    for (size_t i = 0; i < sizeof models / sizeof *models && !g->model; i++)
        if (strstr(g->repo, models[i].key))
            g->model = models[i].name;
    if (g->layer < 0)
        return;
    /* SL6 get_gemma_2_transcoder_config_from_hf: from the normalised input of
     * the MLP (ln2.hook_normalized) to its output (hook_mlp_out). */
    if (g->transcoder)
        g->kind = "transcoder",
        snprintf(g->hook, sizeof g->hook, "blocks.%ld.ln2.hook_normalized", g->layer),
        snprintf(g->hook_out, sizeof g->hook_out, "blocks.%ld.hook_mlp_out", g->layer);
    else if (strstr(g->repo, "res") && !g->embedding)
        g->kind = "res", snprintf(g->hook, sizeof g->hook, "blocks.%ld.hook_resid_post", g->layer);
    else if (strstr(g->repo, "res"))
        g->kind = "res", snprintf(g->hook, sizeof g->hook, "hook_embed");
    else if (strstr(g->repo, "mlp"))
        g->kind = "mlp", snprintf(g->hook, sizeof g->hook, "blocks.%ld.hook_mlp_out", g->layer);
    else if (strstr(g->repo, "att"))
        g->kind = "att", snprintf(g->hook, sizeof g->hook, "blocks.%ld.attn.hook_z", g->layer);
}

/* The names from the path: model, hook and, for a layer SAE whose width and
 * average L0 the path gives, the Neuronpedia source id of the catalogue's
 * non-canonical entries (<model>/<L>-gemmascope-<kind>-<width>__l0-<N>; the
 * canonical entries drop "__l0-<N>", which a folder cannot tell). */
static int names(sae_parts *p, const gemma_path *g, sae_model_warnings *warn, sae_error *err)
{
    char *np_id = NULL;
    if (g->model && g->kind && !g->embedding && g->width[0] && g->l0 >= 0 &&
        asprintf(&np_id, "%s/%ld-gemmascope-%s-%s__l0-%ld", g->model, g->layer, g->kind,
                 g->width, g->l0) < 0)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    if (!g->model || !g->hook[0])
        sae_model_warn(warn,
                        "%s: the path does not say which model and hook (SAELens reads them "
                        "from .../gemma-scope-<2b|9b|27b>-pt-<res|mlp|att>/layer_N/...); "
                        "set them per SAE",
                        p->weights_path);
    int rc = sae_parts_names(p, g->model, g->hook[0] ? g->hook : NULL, np_id, err);
    free(np_id);
    if (!rc && g->hook_out[0] && !(p->hook_name_out = strdup(g->hook_out)))
        rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
    return rc;
}

/* The tensor `name`, or the w_... spelling SAELens renames to it. */
static const sae_st_tensor *find(const sae_parts *p, const char *name)
{
    const sae_st_tensor *t = sae_st_find(p->st, name);
    if (!t && name[0] == 'W' && name[1] == '_') {
        char low[16];
        snprintf(low, sizeof low, "w_%s", name + 2);
        t = sae_st_find(p->st, low);
    }
    return t;
}

/* d_in and d_sae from W_enc's shape. */
static int sizes(sae_parts *p, sae_error *err)
{
    const sae_st_tensor *w = find(p, "W_enc");
    if (!w)
        return sae_error_set(err, SAE_EFORMAT, "%s: no W_enc array", p->weights_path);
    if (w->ndim != 2 || w->shape[0] == 0 || w->shape[1] == 0)
        return sae_error_set(err, SAE_EDIM, "%s: W_enc must be 2-D [d_in, d_sae], non-empty",
                             p->weights_path);
    p->d_in = (size_t)w->shape[0];
    p->d_sae = (size_t)w->shape[1];
    snprintf(p->dtype, sizeof p->dtype, "%s", sae_dtype_name(w->dtype));
    return 0;
}

/* SAELens drops a scaling_factor that torch.allclose calls all ones
 * (|s - 1| <= 1e-8 + 1e-5) and raises on any other, since the Gemma Scope
 * cfg sets finetuning_scaling_factor false. */
static int scaling_factor(sae_parts *p, sae_error *err)
{
    const sae_st_tensor *t = sae_st_find(p->st, "scaling_factor");
    const float *s;
    int rc;
    if (!t)
        return 0;
    if ((rc = sae_parts_f32(p, t, &s, err)))
        return rc;
    for (size_t i = 0; i < t->n_elems; i++)
        if (!(fabs((double)s[i] - 1.0) <= 1e-8 + 1e-5))
            return sae_error_set(err, SAE_EINVAL,
                                 "%s: scaling_factor[%zu] is %g, not 1: SAELens refuses it "
                                 "(\"Scaling factor is present but finetuning_scaling_factor "
                                 "is False\"), and so does saed",
                                 p->weights_path, i, (double)s[i]);
    return 0;
}

/* Looks up, shape-checks and binds the five arrays; embedding SAEs get
 * their encoder and decoder rescaled by sqrt(d_in). */
static int bind(sae_parts *p, bool embedding, sae_error *err)
{
    const char *names[] = {"W_enc", "W_dec", "b_enc", "b_dec", "threshold"};
    const float **dst[] = {&p->w_enc, &p->w_dec, &p->b_enc, &p->b_dec, &p->threshold};
    size_t di = p->d_in, ds = p->d_sae;
    const size_t d0[] = {di, ds, ds, di, ds}, d1[] = {ds, di, 0, 0, 0};
    const sae_st_tensor *t[5];
    int rc;
    for (int i = 0; i < 5; i++) {
        const sae_st_tensor *f = find(p, names[i]);
        if ((rc = sae_parts_tensor(p, f ? f->name : names[i], i < 2 ? 2 : 1, d0[i], d1[i],
                                   i == 1 || i == 2 || i == 4 ? "d_sae" : "d_in",
                                   i == 0 ? "d_sae" : "d_in", &t[i], err)))
            return rc;
    }
    for (int i = 0; i < 5; i++) {
        float *w;
        if (!embedding || i > 1) {
            if ((rc = sae_parts_f32(p, t[i], dst[i], err)))
                return rc;
            continue;
        }
        if ((rc = sae_parts_f32_copy(p, t[i], &w, err)))
            return rc;
        double r = sqrt((double)di);
        for (size_t j = 0; j < di * ds; j++)
            w[j] = (float)(i == 0 ? w[j] / r : w[j] * r);
        *dst[i] = w;
    }
    return 0;
}

int sae_format_gemmascope(const char *dir, sae_parts *p, sae_model_warnings *warn, sae_error *err)
{
    gemma_path g = {.layer = -1, .l0 = -1};
    int rc;
    if ((rc = split_path(dir, &g, err)))
        goto out;
    infer(&g);
    /* Transcoders (gemma-scope-2b-pt-transcoders) are read the same way, as
     * SL6 gemma_2_transcoder_huggingface_loader does: jumprelu_transcoder, no
     * b_dec on the input, d_out = d_in; decode gives the MLP's output. */
    p->transcoder = g.transcoder;
    p->arch = SAE_ARCH_JUMPRELU;
    p->apply_b_dec_to_input = false;
    p->norm = SAE_NORM_NONE;
    if ((rc = sae_format_open(p, dir, "params.npz", sae_npz_open, err)) ||
        (rc = sizes(p, err)) || (rc = scaling_factor(p, err)) ||
        (rc = bind(p, g.embedding, err)))
        goto out;
    rc = names(p, &g, warn, err);
out:
    free(g.repo);
    free(g.folder);
    return rc;
}
