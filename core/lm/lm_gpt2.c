/* lm_gpt2.c: the GPT-2 family (Hugging Face's GPT2Model; TransformerLens'
 * "gpt2" architecture).
 *
 * A block is pre-LayerNorm causal attention then a pre-LayerNorm GELU MLP,
 * each added to the residual stream, as in llm.c's train_gpt2.c and
 * modeling_gpt2.py. Weights are Conv1D: stored (in, out), so x · W needs no
 * transpose; c_attn's output columns are q, k, v, each n_head heads of
 * d_head. Position embeddings are learned; the LM head (tied to wte) is not
 * needed for any hook and is never read. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lm/lm_family.h"
#include "lm/lm_ops.h"

/* One block's weights, borrowed from the checkpoint. C = d_model, M = d_mlp. */
typedef struct gpt2_block {
    const float *ln1_w, *ln1_b;     /* (C) */
    const float *attn_w, *attn_b;   /* (C, 3C), (3C): q, k, v */
    const float *proj_w, *proj_b;   /* (C, C), (C) */
    const float *ln2_w, *ln2_b;     /* (C) */
    const float *fc_w, *fc_b;       /* (C, M), (M) */
    const float *out_w, *out_b;     /* (M, C), (C) */
    const float *v_bias;            /* (C) the value bias once fold_ln has folded ln_1's
                                     * bias in: attn_b[2C:] + ln1_b · W_V */
} gpt2_block;

/* The model's weights and the config switches its forward pass reads. */
typedef struct gpt2_weights {
    const float *wte;               /* (vocab, C) */
    const float *wpe;               /* (n_ctx, C) */
    gpt2_block *blocks;             /* owned: (n_layer) */
    float *v_bias;                  /* owned: (n_layer, C), the blocks' v_bias */
    const float *lnf_w, *lnf_b;     /* (C) */
    bool gelu_erf;                  /* activation_function "gelu" rather than the tanh form */
    bool scale_attn;                /* scale_attn_weights: scores / sqrt(d_head) */
    bool scale_by_layer;            /* scale_attn_by_inverse_layer_idx: scores / (layer + 1) */
} gpt2_weights;

static void gpt2_free(void *weights)
{
    gpt2_weights *w = weights;
    if (w) {
        free(w->blocks);
        free(w->v_bias);
    }
    free(w);
}

/* Reads the config's shape and switches into lm->cfg and w. */
static int gpt2_config(sae_lm *lm, const json_t *config, const char *path, gpt2_weights *w,
                       sae_error *err)
{
    sae_lm_config *c = &lm->cfg;
    size_t n_pos;
    int rc;
    if ((rc = sae_lm_cfg_size(config, path, "n_embd", 1, 1u << 16, SIZE_MAX, &c->d_model, err)) ||
        (rc = sae_lm_cfg_size(config, path, "n_head", 1, 1u << 12, SIZE_MAX, &c->n_head, err)) ||
        (rc = sae_lm_cfg_size(config, path, "n_layer", 1, 1024, SIZE_MAX, &c->n_layer, err)) ||
        (rc = sae_lm_cfg_size(config, path, "vocab_size", 1, 1u << 24, SIZE_MAX, &c->vocab,
                              err)) ||
        (rc = sae_lm_cfg_size(config, path, "n_ctx", 1, 1u << 20, 0, &n_pos, err)) ||
        (rc = sae_lm_cfg_size(config, path, "n_positions", 1, 1u << 20, n_pos ? n_pos : SIZE_MAX,
                              &c->n_ctx, err)) ||
        (rc = sae_lm_cfg_size(config, path, "n_inner", 1, 1u << 20, 4 * c->d_model, &c->d_mlp,
                              err)) ||
        (rc = sae_lm_cfg_double(config, path, "layer_norm_epsilon", 1e-5, &c->eps, err)) ||
        (rc = sae_lm_cfg_bool(config, path, "scale_attn_weights", true, &w->scale_attn, err)) ||
        (rc = sae_lm_cfg_bool(config, path, "scale_attn_by_inverse_layer_idx", false,
                              &w->scale_by_layer, err)))
        return rc;
    if (c->d_model % c->n_head)
        return sae_error_set(err, SAE_EFORMAT, "%s: n_head %zu does not divide n_embd %zu", path,
                             c->n_head, c->d_model);
    c->d_head = c->d_model / c->n_head;
    const json_t *act = json_object_get(config, "activation_function");
    const char *a = act ? json_string_value(act) : "gelu_new";
    if (a && (strcmp(a, "gelu_new") == 0 || strcmp(a, "gelu_pytorch_tanh") == 0))
        w->gelu_erf = false;
    else if (a && strcmp(a, "gelu") == 0)
        w->gelu_erf = true;
    else
        return sae_error_set(err, SAE_EFORMAT,
                             "%s: \"activation_function\" is not gelu_new, gelu_pytorch_tanh "
                             "or gelu",
                             path);
    return 0;
}

/* Binds block l's tensors, each checked against the config's shape. */
static int gpt2_bind_block(sae_lm_ckpt *ck, const sae_lm_config *c, size_t l, gpt2_block *b,
                           sae_error *err)
{
    const size_t C = c->d_model, M = c->d_mlp;
    const struct {
        const char *name;
        const float **dst;
        int ndim;
        size_t d0, d1;
    } t[] = {
        {"ln_1.weight", &b->ln1_w, 1, C, 0},
        {"ln_1.bias", &b->ln1_b, 1, C, 0},
        {"attn.c_attn.weight", &b->attn_w, 2, C, 3 * C},
        {"attn.c_attn.bias", &b->attn_b, 1, 3 * C, 0},
        {"attn.c_proj.weight", &b->proj_w, 2, C, C},
        {"attn.c_proj.bias", &b->proj_b, 1, C, 0},
        {"ln_2.weight", &b->ln2_w, 1, C, 0},
        {"ln_2.bias", &b->ln2_b, 1, C, 0},
        {"mlp.c_fc.weight", &b->fc_w, 2, C, M},
        {"mlp.c_fc.bias", &b->fc_b, 1, M, 0},
        {"mlp.c_proj.weight", &b->out_w, 2, M, C},
        {"mlp.c_proj.bias", &b->out_b, 1, C, 0},
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "h.%zu.%s", l, t[i].name);
        size_t shape[2] = {t[i].d0, t[i].d1};
        int rc = sae_lm_ckpt_f32(ck, name, t[i].ndim, shape, t[i].dst, err);
        if (rc)
            return rc;
    }
    return 0;
}

static int gpt2_load(sae_lm *lm, const json_t *config, const char *path, sae_error *err)
{
    static const char *const prefixes[] = {"", "transformer."};
    gpt2_weights *w = calloc(1, sizeof *w);
    if (!w)
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
    lm->weights = w;
    sae_lm_config *c = &lm->cfg;
    int rc;
    if ((rc = gpt2_config(lm, config, path, w, err)) ||
        (rc = sae_lm_ckpt_prefix(&lm->ck, "wte.weight", prefixes, 2, err)))
        return rc;
    if (!(w->blocks = calloc(c->n_layer, sizeof *w->blocks)))
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
    size_t wte[2] = {c->vocab, c->d_model}, wpe[2] = {c->n_ctx, c->d_model}, ln[1] = {c->d_model};
    if ((rc = sae_lm_ckpt_f32(&lm->ck, "wte.weight", 2, wte, &w->wte, err)) ||
        (rc = sae_lm_ckpt_f32(&lm->ck, "wpe.weight", 2, wpe, &w->wpe, err)))
        return rc;
    if (!(w->v_bias = malloc(c->n_layer * c->d_model * sizeof *w->v_bias)))
        return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", path);
    for (size_t l = 0; l < c->n_layer; l++) {
        if ((rc = gpt2_bind_block(&lm->ck, c, l, &w->blocks[l], err)))
            return rc;
        gpt2_block *b = &w->blocks[l];
        const size_t C = c->d_model;
        float *vb = w->v_bias + l * C;
        for (size_t j = 0; j < C; j++) {
            double s = b->attn_b[2 * C + j];
            for (size_t i = 0; i < C; i++)
                s += (double)b->ln1_b[i] * b->attn_w[i * 3 * C + 2 * C + j];
            vb[j] = (float)s;
        }
        b->v_bias = vb;
    }
    if ((rc = sae_lm_ckpt_f32(&lm->ck, "ln_f.weight", 1, ln, &w->lnf_w, err)))
        return rc;
    return sae_lm_ckpt_f32(&lm->ck, "ln_f.bias", 1, ln, &w->lnf_b, err);
}

/* The scratch: x, ln, z, a (N, C); qkv (N, 3C); h (N, M); att for
 * sae_lm_op_attend over sequences of up to S tokens. */
static size_t gpt2_ws_floats(const sae_lm_config *c, size_t n, size_t s)
{
    size_t row = 7 * c->d_model + c->d_mlp, a, b = sae_lm_op_attend_floats(c->n_head, s), total;
    if (b == 0 || sae_mul_size(n, row, &a) || sae_add_size(a, b, &total))
        return 0;
    return total;
}

/* Scratch carved out of the workspace for one call. */
typedef struct gpt2_bufs {
    float *x;       /* (N, C) the residual stream */
    float *ln;      /* (N, C) a LayerNorm's output */
    float *qkv;     /* (N, 3C) */
    float *z;       /* (N, C) attention's weighted values, head-major */
    float *a;       /* (N, C) an attention or MLP output */
    float *h;       /* (N, M) the MLP's hidden layer */
    float *att;     /* sae_lm_op_attend's scratch */
    sae_lm_team *team; /* borrowed from the workspace */
} gpt2_bufs;

/* Causal self-attention of block l: qkv -> z, sequence by sequence. */
static void gpt2_attention(const sae_lm *lm, const gpt2_weights *w, const sae_lm_batch *b,
                           size_t l, gpt2_bufs *k)
{
    const size_t C = lm->cfg.d_model, H = lm->cfg.n_head, D = lm->cfg.d_head;
    float scale = w->scale_attn ? 1.0f / sqrtf((float)D) : 1.0f;
    if (w->scale_by_layer)
        scale /= (float)(l + 1);
    size_t start = 0;
    for (size_t s = 0; s < b->n_seq; s++) {
        size_t len = sae_lm_batch_len(b, s);
        const float *base = k->qkv + start * 3 * C;
        sae_lm_op_attend(k->team, k->z + start * C, C, base, base + C, base + 2 * C, 3 * C, len,
                         H, D, scale, SAE_LM_ATT_PANEL, k->att);
        start += len;
    }
}

static void gpt2_forward(const sae_lm *lm, sae_lm_ws *ws, const sae_lm_batch *b, size_t n,
                         sae_lm_pass *p)
{
    const gpt2_weights *w = lm->weights;
    const size_t C = lm->cfg.d_model, M = lm->cfg.d_mlp;
    gpt2_bufs k;
    k.x = ws->buf;
    k.ln = k.x + n * C;
    k.qkv = k.ln + n * C;
    k.z = k.qkv + n * 3 * C;
    k.a = k.z + n * C;
    k.h = k.a + n * C;
    k.att = k.h + n * M;
    k.team = ws->team;
    sae_lm_team *tm = ws->team;

    /* embeddings: x = W_E[id] + W_pos[position] */
    for (int pass = 0; pass < 2; pass++) {
        sae_lm_site site = pass ? SAE_LM_POS_EMBED : SAE_LM_EMBED;
        if (!sae_lm_pass_wants(p, site, 0))
            continue;
        for (size_t s = 0, t = 0; s < b->n_seq; s++)
            for (size_t pos = 0; pos < sae_lm_batch_len(b, s); pos++, t++)
                memcpy(k.a + t * C, pass ? w->wpe + pos * C : w->wte + (size_t)b->ids[t] * C,
                       C * sizeof(float));
        if (sae_lm_pass_emit(p, site, 0, k.a, C))
            return;
    }
    for (size_t s = 0, t = 0; s < b->n_seq; s++)
        for (size_t pos = 0; pos < sae_lm_batch_len(b, s); pos++, t++)
            for (size_t j = 0; j < C; j++)
                k.x[t * C + j] = w->wte[(size_t)b->ids[t] * C + j] + w->wpe[pos * C + j];

    for (size_t l = 0; l < lm->cfg.n_layer; l++) {
        const gpt2_block *bl = &w->blocks[l];
        if (sae_lm_pass_emit(p, SAE_LM_RESID_PRE, l, k.x, C))
            return;
        sae_lm_op_layernorm(tm, k.ln, k.x, n, C, lm->cfg.eps);
        if (sae_lm_pass_emit_norm(p, SAE_LM_LN1, l, k.ln, bl->ln1_w, bl->ln1_b, C))
            return;
        sae_lm_op_affine(tm, k.ln, bl->ln1_w, bl->ln1_b, n, C);
        sae_lm_op_linear(tm, k.qkv, k.ln, bl->attn_w, bl->attn_b, n, C, 3 * C);
        gpt2_attention(lm, w, b, l, &k);
        if (sae_lm_pass_emit_z(p, l, k.z, bl->attn_b + 2 * C, bl->v_bias, C))
            return;
        sae_lm_op_linear(tm, k.a, k.z, bl->proj_w, bl->proj_b, n, C, C);
        if (sae_lm_pass_emit(p, SAE_LM_ATTN_OUT, l, k.a, C))
            return;
        sae_lm_op_add(tm, k.x, k.a, n * C);
        if (sae_lm_pass_emit(p, SAE_LM_RESID_MID, l, k.x, C))
            return;
        sae_lm_op_layernorm(tm, k.ln, k.x, n, C, lm->cfg.eps);
        if (sae_lm_pass_emit_norm(p, SAE_LM_LN2, l, k.ln, bl->ln2_w, bl->ln2_b, C))
            return;
        sae_lm_op_affine(tm, k.ln, bl->ln2_w, bl->ln2_b, n, C);
        sae_lm_op_linear(tm, k.h, k.ln, bl->fc_w, bl->fc_b, n, C, M);
        if (sae_lm_pass_emit(p, SAE_LM_MLP_PRE, l, k.h, M))
            return;
        (w->gelu_erf ? sae_lm_op_gelu_erf : sae_lm_op_gelu_tanh)(tm, k.h, n * M);
        if (sae_lm_pass_emit(p, SAE_LM_MLP_POST, l, k.h, M))
            return;
        sae_lm_op_linear(tm, k.a, k.h, bl->out_w, bl->out_b, n, M, C);
        if (sae_lm_pass_emit(p, SAE_LM_MLP_OUT, l, k.a, C))
            return;
        sae_lm_op_add(tm, k.x, k.a, n * C);
        if (sae_lm_pass_emit(p, SAE_LM_RESID_POST, l, k.x, C))
            return;
    }
    sae_lm_op_layernorm(tm, k.ln, k.x, n, C, lm->cfg.eps);
    sae_lm_pass_emit_norm(p, SAE_LM_LN_FINAL, 0, k.ln, w->lnf_w, w->lnf_b, C);
}

static void gpt2_gemm_shapes(const sae_lm *lm, const sae_lm_batch *b, size_t n,
                             void (*add)(void *ctx, const sae_lm_gemm *g), void *ctx)
{
    const sae_lm_config *c = &lm->cfg;
    const size_t C = c->d_model, M = c->d_mlp, L = c->n_layer;
    add(ctx, &(sae_lm_gemm){.m = n, .n = 3 * C, .k = C, .count = L});
    add(ctx, &(sae_lm_gemm){.m = n, .n = C, .k = C, .count = L});
    add(ctx, &(sae_lm_gemm){.m = n, .n = M, .k = C, .count = L});
    add(ctx, &(sae_lm_gemm){.m = n, .n = C, .k = M, .count = L});
    for (size_t s = 0; s < b->n_seq; s++)
        sae_lm_op_attend_shapes(sae_lm_batch_len(b, s), c->d_head, L * c->n_head, add, ctx);
}

const sae_lm_family sae_lm_gpt2 = {
    .model_type = "gpt2",
    .centers = true,
    .has_site = {[SAE_LM_EMBED] = true, [SAE_LM_POS_EMBED] = true, [SAE_LM_RESID_PRE] = true,
                 [SAE_LM_LN1] = true, [SAE_LM_ATTN_Z] = true, [SAE_LM_ATTN_OUT] = true,
                 [SAE_LM_RESID_MID] = true, [SAE_LM_LN2] = true, [SAE_LM_MLP_PRE] = true,
                 [SAE_LM_MLP_POST] = true, [SAE_LM_MLP_OUT] = true, [SAE_LM_RESID_POST] = true,
                 [SAE_LM_LN_FINAL] = true},
    .load = gpt2_load,
    .free_weights = gpt2_free,
    .ws_floats = gpt2_ws_floats,
    .forward = gpt2_forward,
    .gemm_shapes = gpt2_gemm_shapes,
};
