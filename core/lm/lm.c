/* lm.c: what every family shares (lm.h): hook names, loading a checkpoint
 * folder, the workspace, checking a batch and serving its hooks. The
 * families' own code is in lm_<family>.c (lm_family.h). */
#include "lm/lm.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lm/lm_family.h"
#include "sae/encode.h" /* sae_get_blas_threads */
#include "sae/model_cfg.h" /* sae_model_cfg_read: the capped, duplicate-rejecting JSON reader */

/* Every family, by config.json's model_type. */
static const sae_lm_family *const families[] = {&sae_lm_gpt2};

/* ---------------------------------------------------------------- hooks */

/* Each site's TransformerLens name; per_block ones follow "blocks.N.". */
static const struct {
    const char *name;
    bool per_block;
} sites[SAE_LM_SITE_COUNT] = {
    [SAE_LM_EMBED] = {"hook_embed", false},
    [SAE_LM_POS_EMBED] = {"hook_pos_embed", false},
    [SAE_LM_RESID_PRE] = {"hook_resid_pre", true},
    [SAE_LM_LN1] = {"ln1.hook_normalized", true},
    [SAE_LM_ATTN_Z] = {"attn.hook_z", true},
    [SAE_LM_ATTN_OUT] = {"hook_attn_out", true},
    [SAE_LM_RESID_MID] = {"hook_resid_mid", true},
    [SAE_LM_LN2] = {"ln2.hook_normalized", true},
    [SAE_LM_MLP_PRE] = {"mlp.hook_pre", true},
    [SAE_LM_MLP_POST] = {"mlp.hook_post", true},
    [SAE_LM_MLP_OUT] = {"hook_mlp_out", true},
    [SAE_LM_RESID_POST] = {"hook_resid_post", true},
    [SAE_LM_LN_FINAL] = {"ln_final.hook_normalized", false},
};

/* Blocks a hook name may number: more than any model has, few enough that
 * arithmetic on it cannot overflow. */
#define LM_MAX_LAYER 100000

int sae_lm_hook_parse(const char *name, sae_lm_hook *out, sae_error *err)
{
    size_t layer = 0;
    const char *rest = name;
    bool block = strncmp(name, "blocks.", 7) == 0;
    if (block) {
        const char *p = name + 7;
        if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] >= '0' && p[1] <= '9'))
            goto bad;
        while (*p >= '0' && *p <= '9' && layer <= LM_MAX_LAYER)
            layer = layer * 10 + (size_t)(*p++ - '0');
        if (layer > LM_MAX_LAYER || *p != '.')
            goto bad;
        rest = p + 1;
    }
    for (int s = 0; s < SAE_LM_SITE_COUNT; s++)
        if (sites[s].per_block == block && strcmp(rest, sites[s].name) == 0) {
            out->site = (sae_lm_site)s;
            out->layer = layer;
            return 0;
        }
bad:
    return sae_error_set(err, SAE_EINVAL,
                         "hook \"%.100s\" is not a TransformerLens hook saed knows (hook_embed, "
                         "hook_pos_embed, blocks.N.{hook_resid_pre, ln1.hook_normalized, "
                         "attn.hook_z, hook_attn_out, hook_resid_mid, ln2.hook_normalized, "
                         "mlp.hook_pre, mlp.hook_post, hook_mlp_out, hook_resid_post}, "
                         "ln_final.hook_normalized)",
                         name);
}

int sae_lm_hook_name(const sae_lm_hook *h, char *buf, size_t cap)
{
    if ((unsigned)h->site >= SAE_LM_SITE_COUNT)
        return snprintf(buf, cap, "?");
    if (sites[h->site].per_block)
        return snprintf(buf, cap, "blocks.%zu.%s", h->layer, sites[h->site].name);
    return snprintf(buf, cap, "%s", sites[h->site].name);
}

int sae_lm_hook_check(const sae_lm *lm, const sae_lm_hook *h, sae_error *err)
{
    char name[128];
    sae_lm_hook_name(h, name, sizeof name);
    if ((unsigned)h->site >= SAE_LM_SITE_COUNT || !lm->fam->has_site[h->site])
        return sae_error_set(err, SAE_EINVAL, "hook %s: a %s model has no such hook", name,
                             lm->cfg.family);
    if (sites[h->site].per_block ? h->layer >= lm->cfg.n_layer : h->layer != 0)
        return sae_error_set(err, SAE_EINVAL, "hook %s: the model has blocks 0 to %zu", name,
                             lm->cfg.n_layer - 1);
    return 0;
}

size_t sae_lm_hook_width(const sae_lm *lm, const sae_lm_hook *h)
{
    if (h->site == SAE_LM_ATTN_Z)
        return lm->cfg.n_head * lm->cfg.d_head;
    if (h->site == SAE_LM_MLP_PRE || h->site == SAE_LM_MLP_POST)
        return lm->cfg.d_mlp;
    return lm->cfg.d_model;
}

sae_lm_processing sae_lm_processing_default(void)
{
    return (sae_lm_processing){
        .fold_ln = true, .center_writing_weights = true, .fold_value_biases = true};
}

/* --------------------------------------------------------------- config */

int sae_lm_cfg_size(const json_t *config, const char *path, const char *key, size_t lo,
                    size_t hi, size_t dflt, size_t *out, sae_error *err)
{
    const json_t *v = json_object_get(config, key);
    if (!v || json_is_null(v)) {
        if (dflt == SIZE_MAX)
            return sae_error_set(err, SAE_EFORMAT, "%s: \"%s\" is missing", path, key);
        *out = dflt;
        return 0;
    }
    json_int_t i = json_integer_value(v);
    if (!json_is_integer(v) || i < 0 || (uint64_t)i < lo || (uint64_t)i > hi)
        return sae_error_set(err, SAE_EFORMAT, "%s: \"%s\" is not a whole number in [%zu, %zu]",
                             path, key, lo, hi);
    *out = (size_t)i;
    return 0;
}

int sae_lm_cfg_double(const json_t *config, const char *path, const char *key, double dflt,
                      double *out, sae_error *err)
{
    const json_t *v = json_object_get(config, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    double d = json_number_value(v);
    if (!json_is_number(v) || !isfinite(d) || d <= 0)
        return sae_error_set(err, SAE_EFORMAT, "%s: \"%s\" is not a positive number", path, key);
    *out = d;
    return 0;
}

int sae_lm_cfg_bool(const json_t *config, const char *path, const char *key, bool dflt,
                    bool *out, sae_error *err)
{
    const json_t *v = json_object_get(config, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v))
        return sae_error_set(err, SAE_EFORMAT, "%s: \"%s\" is not true or false", path, key);
    *out = json_is_true(v);
    return 0;
}

/* ----------------------------------------------------------------- load */

int sae_lm_load(const char *dir, sae_lm **out, sae_error *err)
{
    json_t *config = NULL;
    char *path = NULL;
    sae_lm *lm = calloc(1, sizeof *lm);
    int rc;
    if (!lm || asprintf(&path, "%s/config.json", dir) < 0) {
        path = NULL;
        rc = sae_error_set(err, SAE_ENOMEM, "%s: out of memory", dir);
        goto out;
    }
    if ((rc = sae_model_cfg_read(path, &config, err)))
        goto out;
    const char *type = json_string_value(json_object_get(config, "model_type"));
    if (!type) {
        rc = sae_error_set(err, SAE_EFORMAT, "%s: \"model_type\" is missing", path);
        goto out;
    }
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (strcmp(type, families[i]->model_type) == 0)
            lm->fam = families[i];
    if (!lm->fam) {
        rc = sae_error_set(err, SAE_EFORMAT,
                           "%s: model_type \"%.64s\" is not a family saed runs (gpt2)", path,
                           type);
        goto out;
    }
    snprintf(lm->cfg.family, sizeof lm->cfg.family, "%s", type);
    if ((rc = sae_lm_ckpt_open(dir, &lm->ck, err)) ||
        (rc = lm->fam->load(lm, config, path, err)))
        goto out;
    snprintf(lm->cfg.dtype, sizeof lm->cfg.dtype, "%s", lm->ck.dtype);
    *out = lm;
    lm = NULL;
out:
    sae_lm_free(lm);
    json_decref(config);
    free(path);
    return rc;
}

void sae_lm_free(sae_lm *lm)
{
    if (!lm)
        return;
    if (lm->fam)
        lm->fam->free_weights(lm->weights);
    sae_lm_ckpt_free(&lm->ck);
    free(lm);
}

const sae_lm_config *sae_lm_config_of(const sae_lm *lm)
{
    return &lm->cfg;
}

/* ------------------------------------------------------------ workspace */

sae_lm_ws *sae_lm_ws_new(const sae_lm *lm, size_t max_tokens)
{
    if (max_tokens == 0 || max_tokens > ((size_t)1 << 32))
        return NULL;
    size_t max_seq = max_tokens < lm->cfg.n_ctx ? max_tokens : lm->cfg.n_ctx;
    size_t n = lm->fam->ws_floats(&lm->cfg, max_tokens, max_seq), bytes;
    sae_lm_ws *ws = calloc(1, sizeof *ws);
    if (!ws || n == 0 || sae_mul_size(n, sizeof(float), &bytes) || !(ws->buf = malloc(bytes)) ||
        !(ws->team = sae_lm_team_new())) {
        if (ws)
            free(ws->buf);
        free(ws);
        return NULL;
    }
    ws->max_tokens = max_tokens;
    ws->max_seq = max_seq;
    ws->n_floats = n;
    return ws;
}

void sae_lm_ws_free(sae_lm_ws *ws)
{
    if (!ws)
        return;
    sae_lm_team_free(ws->team);
    free(ws->buf);
    free(ws);
}

/* -------------------------------------------------------------- forward */

/* Checks b's shape against lm and ws; *n_tokens is the total. */
static int check_batch(const sae_lm *lm, const sae_lm_ws *ws, const sae_lm_batch *b,
                       size_t *n_tokens, sae_error *err)
{
    if (b->n_seq == 0 || !b->ids)
        return sae_error_set(err, SAE_EINVAL, "the batch has no sequences");
    size_t n = 0;
    for (size_t i = 0; i < b->n_seq; i++) {
        size_t len = sae_lm_batch_len(b, i);
        if (len == 0)
            return sae_error_set(err, SAE_EINVAL, "sequence %zu is empty", i);
        if (len > lm->cfg.n_ctx)
            return sae_error_set(err, SAE_EINVAL,
                                 "sequence %zu has %zu tokens; the model has %zu positions", i,
                                 len, lm->cfg.n_ctx);
        if (len > ws->max_tokens || n > ws->max_tokens - len)
            return sae_error_set(err, SAE_EINVAL,
                                 "the batch has more tokens than the workspace's %zu",
                                 ws->max_tokens);
        n += len;
    }
    for (size_t t = 0; t < n; t++)
        if (b->ids[t] >= lm->cfg.vocab)
            return sae_error_set(err, SAE_EINVAL,
                                 "token %zu: id %" PRIu32 " is not below the vocabulary's %zu", t,
                                 b->ids[t], lm->cfg.vocab);
    *n_tokens = n;
    return 0;
}

int sae_lm_forward(const sae_lm *lm, sae_lm_ws *ws, const sae_lm_batch *b,
                   const sae_lm_hook *hooks, size_t n_hooks, float *const *out,
                   const sae_lm_processing *proc, sae_error *err)
{
    size_t n_tokens = 0;
    int rc;
    for (size_t i = 0; i < n_hooks; i++)
        if ((rc = sae_lm_hook_check(lm, &hooks[i], err)))
            return rc;
    if ((rc = check_batch(lm, ws, b, &n_tokens, err)))
        return rc;
    if (n_hooks == 0)
        return 0;
    sae_lm_pass p = {.hooks = hooks,
                     .out = out,
                     .n_hooks = n_hooks,
                     .n_tokens = n_tokens,
                     .remaining = n_hooks,
                     .proc = proc ? *proc : sae_lm_processing_default(),
                     .centers = lm->fam->centers};
    /* the non-BLAS kernels use as many threads as the products */
    sae_lm_team_resize(ws->team, (size_t)sae_get_blas_threads());
    lm->fam->forward(lm, ws, b, n_tokens, &p);
    return 0;
}

/* Where sae_lm_gemm_shapes collects: a list grown as needed (a ragged
 * batch has two attention shapes per distinct length). */
typedef struct gemm_list {
    sae_lm_gemm *shapes;    /* owned: (cap) */
    size_t cap, n;
    bool oom;
} gemm_list;

/* Adds g to the list, merged into an entry of the same shape. */
static void gemm_add(void *ctx, const sae_lm_gemm *g)
{
    gemm_list *l = ctx;
    for (size_t i = 0; i < l->n; i++) {
        sae_lm_gemm *e = &l->shapes[i];
        if (e->m == g->m && e->n == g->n && e->k == g->k && e->b_trans == g->b_trans) {
            e->count += g->count;
            return;
        }
    }
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        sae_lm_gemm *grown = realloc(l->shapes, cap * sizeof *grown);
        if (!grown) {
            l->oom = true;
            return;
        }
        l->shapes = grown;
        l->cap = cap;
    }
    l->shapes[l->n++] = *g;
}

size_t sae_lm_gemm_shapes(const sae_lm *lm, const sae_lm_batch *b, sae_lm_gemm *shapes,
                          size_t cap)
{
    size_t n_tokens = 0;
    for (size_t i = 0; i < b->n_seq; i++)
        n_tokens += sae_lm_batch_len(b, i);
    gemm_list l = {0};
    lm->fam->gemm_shapes(lm, b, n_tokens, gemm_add, &l);
    size_t n = l.oom ? 0 : l.n;
    if (n)
        memcpy(shapes, l.shapes, (n < cap ? n : cap) * sizeof *shapes);
    free(l.shapes);
    return n;
}
