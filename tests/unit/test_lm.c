/* test_lm.c: core/lm's forward pass against a double-precision reference,
 * and its refusals of hostile checkpoints and batches.
 *
 * tests/fixture/lm/gen.py (run by hand) wrote random GPT-2 checkpoints of
 * several shapes (F32, F16, BF16, sharded with the "transformer." prefix)
 * and, in each, reference.safetensors: the token ids of a few sequences and
 * every hook's value from two float64 forward passes, TransformerLens' with
 * from_pretrained's weight processing (tl.*) and the checkpoint's own (hf.*,
 * in some folders). Every hook must match to 1e-4 relative, the error of a
 * hook being max |a - b| / max |b| over all its values, whether the hooks
 * are asked for together (one pass), one at a time (the pass stops early),
 * in a ragged batch or as a batch of equal-length sequences. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/rng.h"
#include "io/safetensors.h"
#include "lm/lm.h"
#include "lm/lm_ops.h"
#include "sae/encode.h"
#include "unit.h"

#define TOL 1e-4

static const char *const fixtures[] = {"gpt2_l2_d64", "gpt2_l3_d48_f16", "gpt2_l2_d32_bf16_gelu",
                                       "gpt2_l2_d24_sharded"};
#define N_FIXTURES (sizeof fixtures / sizeof fixtures[0])

/* The fixture folder called name (caller frees). */
static char *fixture(const char *name)
{
    const char *d = getenv("SAE_LM_FIXTURES");
    ck_assert_msg(d != NULL, "SAE_LM_FIXTURES is not set (meson sets it)");
    char *p;
    ck_assert_int_ge(asprintf(&p, "%s/%s", d, name), 0);
    return p;
}

/* A model that must load. */
static sae_lm *load_ok(const char *dir)
{
    sae_lm *lm = NULL;
    sae_error err;
    int rc = sae_lm_load(dir, &lm, &err);
    ck_assert_msg(rc == 0, "%s: %s", dir, err.msg);
    return lm;
}

/* An I32 tensor of the reference as size_t (copied: it may be unaligned). */
static size_t *ints(const sae_st_file *ref, const char *name, size_t *n)
{
    const sae_st_tensor *t = sae_st_find(ref, name);
    ck_assert_msg(t && t->dtype == SAE_DT_I32, "%s: tensor %s", ref->path, name);
    size_t *a = malloc((t->n_elems + 1) * sizeof *a);
    ck_assert_ptr_nonnull(a);
    for (size_t i = 0; i < t->n_elems; i++) {
        int32_t v;
        memcpy(&v, (const char *)t->data + 4 * i, 4);
        ck_assert_int_ge(v, 0);
        a[i] = (size_t)v;
    }
    *n = t->n_elems;
    return a;
}

/* max |a - b| / max |b| over the first n values; b is the reference. */
static double rel_err(const float *a, const float *b, size_t n)
{
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num = fmax(num, fabs((double)a[i] - b[i]));
        den = fmax(den, fabs((double)b[i]));
    }
    return den > 0 ? num / den : num;
}

/* A fixture with its reference: the batch and every reference hook. */
typedef struct parity {
    sae_lm *lm;
    sae_st_file *ref;
    uint32_t *ids;
    size_t *lens, n_seq, n_tokens;
} parity;

static void parity_open(parity *p, const char *name)
{
    char *dir = fixture(name), *path;
    ck_assert_int_ge(asprintf(&path, "%s/reference.safetensors", dir), 0);
    sae_error err;
    p->lm = load_ok(dir);
    ck_assert_msg(sae_st_open(path, &p->ref, &err) == 0, "%s", err.msg);
    size_t n;
    size_t *ids = ints(p->ref, "ids", &p->n_tokens);
    p->lens = ints(p->ref, "lens", &p->n_seq);
    p->ids = malloc(p->n_tokens * sizeof *p->ids);
    for (size_t i = 0; i < p->n_tokens; i++)
        p->ids[i] = (uint32_t)ids[i];
    n = 0;
    for (size_t i = 0; i < p->n_seq; i++)
        n += p->lens[i];
    ck_assert_uint_eq(n, p->n_tokens);
    free(ids);
    free(dir);
    free(path);
}

static void parity_close(parity *p)
{
    sae_lm_free(p->lm);
    sae_st_free(p->ref);
    free(p->ids);
    free(p->lens);
}

/* Compares every hook of the reference whose name starts with kind ("tl."
 * or "hf.") under proc: all hooks in one ragged pass, then each alone, then
 * all over the first two sequences (of equal length) as a uniform batch.
 * Returns how many hooks were compared. */
static size_t check_kind(parity *p, const char *kind, const sae_lm_processing *proc)
{
    size_t klen = strlen(kind), n = 0, max_bytes = 0;
    sae_lm_hook *hooks = calloc(p->ref->n_tensors, sizeof *hooks);
    const sae_st_tensor **refs = calloc(p->ref->n_tensors, sizeof *refs);
    float **out = calloc(p->ref->n_tensors, sizeof *out);
    sae_error err;
    for (size_t i = 0; i < p->ref->n_tensors; i++) {
        const sae_st_tensor *t = &p->ref->tensors[i];
        if (strncmp(t->name, kind, klen) != 0)
            continue;
        ck_assert_msg(sae_lm_hook_parse(t->name + klen, &hooks[n], &err) == 0, "%s", err.msg);
        size_t width = sae_lm_hook_width(p->lm, &hooks[n]);
        ck_assert_msg(t->dtype == SAE_DT_F32 && t->ndim == 2 && t->shape[0] == p->n_tokens &&
                          t->shape[1] == width,
                      "%s: %s has the wrong shape", p->ref->path, t->name);
        refs[n] = t;
        out[n] = malloc(t->nbytes);
        max_bytes = t->nbytes > max_bytes ? t->nbytes : max_bytes;
        n++;
    }
    ck_assert_uint_gt(n, 0);
    sae_lm_ws *ws = sae_lm_ws_new(p->lm, p->n_tokens);
    ck_assert_ptr_nonnull(ws);
    sae_lm_batch ragged = {.ids = p->ids, .n_seq = p->n_seq, .lens = p->lens};
    float *ref = malloc(max_bytes); /* one hook's reference, copied: it may be unaligned */

    /* all together, then one at a time (each pass stops at its hook) */
    for (size_t round = 0; round <= n; round++) {
        size_t first = round ? round - 1 : 0, count = round ? 1 : n;
        for (size_t i = first; i < first + count; i++)
            memset(out[i], 0xff, refs[i]->nbytes); /* NaN: an unwritten value fails */
        int rc = sae_lm_forward(p->lm, ws, &ragged, hooks + first, count, out + first, proc, &err);
        ck_assert_msg(rc == 0, "%s", err.msg);
        for (size_t i = first; i < first + count; i++) {
            memcpy(ref, refs[i]->data, refs[i]->nbytes);
            double e = rel_err(out[i], ref, refs[i]->n_elems);
            ck_assert_msg(e <= TOL, "%s: %s: relative error %.3g (%s)", p->ref->path,
                          refs[i]->name, e, round ? "alone" : "all hooks");
        }
    }
    /* the first two sequences as a batch of equal lengths */
    ck_assert_uint_eq(p->lens[0], p->lens[1]);
    sae_lm_batch uniform = {.ids = p->ids, .n_seq = 2, .seq_len = p->lens[0]};
    ck_assert_int_eq(sae_lm_forward(p->lm, ws, &uniform, hooks, n, out, proc, &err), 0);
    for (size_t i = 0; i < n; i++) {
        size_t width = refs[i]->shape[1], m = 2 * p->lens[0] * width;
        memcpy(ref, refs[i]->data, m * sizeof *ref);
        ck_assert_msg(rel_err(out[i], ref, m) <= TOL, "%s: uniform batch", refs[i]->name);
    }
    sae_lm_ws_free(ws);
    for (size_t i = 0; i < n; i++)
        free(out[i]);
    free(out);
    free(refs);
    free(hooks);
    free(ref);
    return n;
}

START_TEST(test_parity)
{
    parity p;
    parity_open(&p, fixtures[_i]);
    const sae_lm_config *c = sae_lm_config_of(p.lm);
    size_t n = check_kind(&p, "tl.", NULL);
    /* every hook there is: 3 outside the blocks, 10 in each */
    ck_assert_uint_eq(n, 3 + 10 * c->n_layer);
    sae_lm_processing none = {0};
    if (sae_st_find(p.ref, "hf.hook_embed"))
        ck_assert_uint_eq(check_kind(&p, "hf.", &none), n);
    parity_close(&p);
}
END_TEST

/* What each fixture's config.json and files say it is. */
START_TEST(test_config)
{
    char *dir = fixture("gpt2_l3_d48_f16");
    sae_lm *lm = load_ok(dir);
    const sae_lm_config *c = sae_lm_config_of(lm);
    ck_assert_str_eq(c->family, "gpt2");
    ck_assert_str_eq(c->dtype, "F16");
    ck_assert_uint_eq(c->n_layer, 3);
    ck_assert_uint_eq(c->d_model, 48);
    ck_assert_uint_eq(c->n_head, 3);
    ck_assert_uint_eq(c->d_head, 16);
    ck_assert_uint_eq(c->d_mlp, 192);
    ck_assert_uint_eq(c->n_ctx, 12);
    ck_assert_uint_eq(c->vocab, 61);
    sae_lm_free(lm);
    free(dir);
    dir = fixture("gpt2_l2_d24_sharded");
    lm = load_ok(dir);
    ck_assert_uint_eq(sae_lm_config_of(lm)->d_mlp, 40);
    ck_assert(fabs(sae_lm_config_of(lm)->eps - 1e-3) < 1e-12);
    sae_lm_free(lm);
    free(dir);
}
END_TEST

START_TEST(test_hook_names)
{
    static const char *const good[] = {
        "hook_embed", "hook_pos_embed", "blocks.0.hook_resid_pre", "blocks.11.ln1.hook_normalized",
        "blocks.3.attn.hook_z", "blocks.3.hook_attn_out", "blocks.7.hook_resid_mid",
        "blocks.2.ln2.hook_normalized", "blocks.2.mlp.hook_pre", "blocks.2.mlp.hook_post",
        "blocks.10.hook_mlp_out", "blocks.100.hook_resid_post", "ln_final.hook_normalized"};
    static const char *const bad[] = {
        "", "hook_resid_pre", "blocks.hook_resid_pre", "blocks.01.hook_resid_pre",
        "blocks.-1.hook_resid_pre", "blocks.1", "blocks.1.", "blocks.1.hook_embed",
        "blocks.99999999999999999999999.hook_resid_pre", "blocks.1.hook_resid_pre ",
        "blocks.1.attn.hook_q", "ln_final.hook_scale", "blocks.0.ln_final.hook_normalized",
        "transformer.h.0"};
    sae_error err;
    sae_lm_hook h;
    char buf[128];
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        ck_assert_msg(sae_lm_hook_parse(good[i], &h, &err) == 0, "%s: %s", good[i], err.msg);
        sae_lm_hook_name(&h, buf, sizeof buf);
        ck_assert_str_eq(buf, good[i]);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(sae_lm_hook_parse(bad[i], &h, &err) == SAE_EINVAL, "%s parsed", bad[i]);
        ck_assert_ptr_nonnull(strstr(err.msg, "is not a TransformerLens hook"));
    }
    char *dir = fixture("gpt2_l2_d64");
    sae_lm *lm = load_ok(dir);
    ck_assert_int_eq(sae_lm_hook_parse("blocks.2.hook_resid_pre", &h, &err), 0);
    ck_assert_int_eq(sae_lm_hook_check(lm, &h, &err), SAE_EINVAL);
    ck_assert_ptr_nonnull(strstr(err.msg, "blocks 0 to 1"));
    ck_assert_int_eq(sae_lm_hook_parse("blocks.1.attn.hook_z", &h, &err), 0);
    ck_assert_int_eq(sae_lm_hook_check(lm, &h, &err), 0);
    ck_assert_uint_eq(sae_lm_hook_width(lm, &h), 64);
    ck_assert_int_eq(sae_lm_hook_parse("blocks.1.mlp.hook_post", &h, &err), 0);
    ck_assert_uint_eq(sae_lm_hook_width(lm, &h), 256);
    sae_lm_free(lm);
    free(dir);
}
END_TEST

/* Batches the forward pass must refuse, each with its message, writing
 * nothing. */
START_TEST(test_bad_batches)
{
    char *dir = fixture("gpt2_l2_d64"); /* vocab 97, 16 positions */
    sae_lm *lm = load_ok(dir);
    sae_lm_ws *ws = sae_lm_ws_new(lm, 20);
    ck_assert_ptr_nonnull(ws);
    ck_assert_ptr_null(sae_lm_ws_new(lm, 0));
    uint32_t ids[40] = {0};
    float *out = malloc(40 * 256 * sizeof *out);
    sae_lm_hook h;
    sae_error err;
    ck_assert_int_eq(sae_lm_hook_parse("blocks.1.hook_resid_post", &h, &err), 0);
    const struct {
        sae_lm_batch b;
        uint32_t bad_id;
        const char *msg;
    } cases[] = {
        {{.ids = ids, .n_seq = 1, .seq_len = 17}, 0, "has 17 tokens; the model has 16 positions"},
        {{.ids = ids, .n_seq = 2, .seq_len = 11}, 0, "more tokens than the workspace's 20"},
        {{.ids = ids, .n_seq = 2, .lens = (size_t[]){3, 0}}, 0, "sequence 1 is empty"},
        {{.ids = ids, .n_seq = 0, .seq_len = 3}, 0, "no sequences"},
        {{.ids = ids, .n_seq = 1, .seq_len = 5}, 97, "id 97 is not below the vocabulary's 97"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ids[4] = cases[i].bad_id;
        memset(out, 0, 40 * 256 * sizeof *out);
        ck_assert_int_eq(sae_lm_forward(lm, ws, &cases[i].b, &h, 1, &out, NULL, &err), SAE_EINVAL);
        ck_assert_msg(strstr(err.msg, cases[i].msg), "case %zu: %s", i, err.msg);
        for (size_t j = 0; j < 40 * 256; j++)
            ck_assert(out[j] == 0.0f);
    }
    ids[4] = 0;
    /* a hook beyond the model */
    ck_assert_int_eq(sae_lm_hook_parse("blocks.5.hook_resid_post", &h, &err), 0);
    sae_lm_batch ok = {.ids = ids, .n_seq = 1, .seq_len = 4};
    ck_assert_int_eq(sae_lm_forward(lm, ws, &ok, &h, 1, &out, NULL, &err), SAE_EINVAL);
    /* sixteen positions are fine */
    ck_assert_int_eq(sae_lm_hook_parse("ln_final.hook_normalized", &h, &err), 0);
    ok.seq_len = 16;
    ck_assert_int_eq(sae_lm_forward(lm, ws, &ok, &h, 1, &out, NULL, &err), 0);
    free(out);
    sae_lm_ws_free(ws);
    sae_lm_free(lm);
    free(dir);
}
END_TEST

/* ---- hostile checkpoints, written from gpt2_l2_d64 with one thing changed ---- */

/* How to spoil a copy of the checkpoint. */
typedef struct spoil {
    const char *cfg_key;        /* set this config.json key ... */
    json_t *cfg_value;          /* ... to this (stolen), or remove it when NULL */
    const char *drop;           /* leave this tensor out */
    const char *reshape;        /* write this 2-D tensor transposed in shape */
    const char *nan;            /* make element 3 of this tensor NaN */
    int shards;                 /* 0: model.safetensors; 2: two shards + index */
    const char *dup;            /* sharded: also put this tensor in the second shard */
    const char *index_file;     /* sharded: the index names this file for wte.weight */
} spoil;

/* Writes the spoiled copy into unit_dir/name; returns its path (caller frees). */
static char *write_spoiled(const char *name, const spoil *s)
{
    char *src = fixture("gpt2_l2_d64"), *dir = unit_path(name), *path;
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    json_error_t jerr;
    ck_assert_int_ge(asprintf(&path, "%s/config.json", src), 0);
    json_t *cfg = json_load_file(path, 0, &jerr);
    ck_assert_ptr_nonnull(cfg);
    free(path);
    if (s->cfg_key) {
        if (s->cfg_value)
            json_object_set_new(cfg, s->cfg_key, s->cfg_value);
        else
            json_object_del(cfg, s->cfg_key);
    }
    ck_assert_int_ge(asprintf(&path, "%s/config.json", dir), 0);
    ck_assert_int_eq(json_dump_file(cfg, path, 0), 0);
    json_decref(cfg);
    free(path);

    sae_st_file *f;
    sae_error err;
    ck_assert_int_ge(asprintf(&path, "%s/model.safetensors", src), 0);
    ck_assert_int_eq(sae_st_open(path, &f, &err), 0);
    free(path);
    sae_st_writer *w[2] = {sae_st_writer_new(), sae_st_writer_new()};
    json_t *map = json_object();
    for (size_t i = 0; i < f->n_tensors; i++) {
        const sae_st_tensor *t = &f->tensors[i];
        if (s->drop && strcmp(t->name, s->drop) == 0)
            continue;
        uint64_t shape[SAE_ST_MAX_DIMS];
        memcpy(shape, t->shape, sizeof shape);
        if (s->reshape && strcmp(t->name, s->reshape) == 0) {
            shape[0] = t->shape[1];
            shape[1] = t->shape[0];
        }
        float *data = malloc(t->nbytes);
        memcpy(data, t->data, t->nbytes);
        if (s->nan && strcmp(t->name, s->nan) == 0)
            data[3] = NAN;
        int k = s->shards && i >= f->n_tensors / 2;
        ck_assert_int_eq(sae_st_writer_add(w[k], t->name, t->dtype, t->ndim, shape, data), 0);
        const char *file = k ? "model-2.safetensors" : "model-1.safetensors";
        if (s->index_file && strcmp(t->name, "wte.weight") == 0)
            file = s->index_file;
        json_object_set_new(map, t->name, json_string(file));
        if (s->dup && strcmp(t->name, s->dup) == 0)
            ck_assert_int_eq(sae_st_writer_add(w[1], t->name, t->dtype, t->ndim, shape, data), 0);
        free(data);
    }
    for (int k = 0; k < (s->shards ? 2 : 1); k++) {
        ck_assert_int_ge(asprintf(&path, "%s/%s", dir,
                                  s->shards ? (k ? "model-2.safetensors" : "model-1.safetensors")
                                            : "model.safetensors"),
                         0);
        ck_assert_msg(sae_st_writer_save(w[k], path, &err) == 0, "%s", err.msg);
        free(path);
    }
    if (s->shards) {
        json_t *index = json_pack("{s:{s:i}, s:o}", "metadata", "total_size", 0, "weight_map", map);
        ck_assert_int_ge(asprintf(&path, "%s/model.safetensors.index.json", dir), 0);
        ck_assert_int_eq(json_dump_file(index, path, 0), 0);
        json_decref(index);
        free(path);
    } else {
        json_decref(map);
    }
    sae_st_writer_free(w[0]);
    sae_st_writer_free(w[1]);
    sae_st_free(f);
    free(src);
    return dir;
}

START_TEST(test_hostile)
{
    const struct {
        spoil s;
        int code;
        const char *msg;
    } cases[] = {
        {{.drop = "h.1.mlp.c_fc.bias"}, SAE_EFORMAT, "no tensor \"h.1.mlp.c_fc.bias\""},
        {{.reshape = "h.0.attn.c_attn.weight"}, SAE_EDIM,
         "\"h.0.attn.c_attn.weight\" has shape [192, 64], config.json says [64, 192]"},
        {{.cfg_key = "n_layer", .cfg_value = json_integer(3)}, SAE_EFORMAT,
         "no tensor \"h.2.ln_1.weight\""},
        {{.cfg_key = "n_embd", .cfg_value = json_integer(62)}, SAE_EFORMAT,
         "n_head 4 does not divide n_embd 62"},
        {{.cfg_key = "n_head", .cfg_value = json_integer(5)}, SAE_EFORMAT,
         "n_head 5 does not divide n_embd 64"},
        {{.cfg_key = "n_head", .cfg_value = json_integer(8)}, 0, NULL}, /* 8 divides 64 */
        {{.cfg_key = "vocab_size", .cfg_value = json_integer(98)}, SAE_EDIM,
         "\"wte.weight\" has shape [97, 64], config.json says [98, 64]"},
        {{.cfg_key = "n_positions", .cfg_value = json_integer(1024)}, SAE_EDIM,
         "\"wpe.weight\" has shape [16, 64], config.json says [1024, 64]"},
        {{.cfg_key = "n_inner", .cfg_value = json_integer(128)}, SAE_EDIM, "mlp.c_fc.weight"},
        {{.cfg_key = "n_embd", .cfg_value = NULL}, SAE_EFORMAT, "\"n_embd\" is missing"},
        {{.cfg_key = "n_layer", .cfg_value = json_integer(-1)}, SAE_EFORMAT,
         "\"n_layer\" is not a whole number"},
        {{.cfg_key = "n_layer", .cfg_value = json_string("2")}, SAE_EFORMAT,
         "\"n_layer\" is not a whole number"},
        {{.cfg_key = "n_embd", .cfg_value = json_integer((json_int_t)1 << 40)}, SAE_EFORMAT,
         "\"n_embd\" is not a whole number"},
        {{.cfg_key = "layer_norm_epsilon", .cfg_value = json_real(-1)}, SAE_EFORMAT,
         "\"layer_norm_epsilon\" is not a positive number"},
        {{.cfg_key = "activation_function", .cfg_value = json_string("relu")}, SAE_EFORMAT,
         "\"activation_function\" is not gelu_new"},
        {{.cfg_key = "model_type", .cfg_value = json_string("llama")}, SAE_EFORMAT,
         "model_type \"llama\" is not a family"},
        {{.cfg_key = "model_type", .cfg_value = NULL}, SAE_EFORMAT, "\"model_type\" is missing"},
        {{.nan = "h.1.attn.c_proj.weight"}, SAE_ERANGE,
         "\"h.1.attn.c_proj.weight\": element 3 is not finite"},
        {{.drop = "wte.weight"}, SAE_EFORMAT, "no tensor \"wte.weight\" (with or without"},
        {{.shards = 2}, 0, NULL},
        {{.shards = 2, .dup = "h.0.ln_1.bias"}, SAE_EST_DUPLICATE_NAME,
         "tensor \"h.0.ln_1.bias\" is in two shards"},
        {{.shards = 2, .index_file = "model-2.safetensors"}, SAE_EFORMAT,
         "weight_map puts tensor \"wte.weight\" in model-2.safetensors, which does not hold it"},
        {{.shards = 2, .index_file = "../model-1.safetensors"}, SAE_EFORMAT,
         "weight_map[\"wte.weight\"] is not a .safetensors file name in the folder"},
        {{.shards = 2, .index_file = "model-3.safetensors"}, SAE_EIO, "model-3.safetensors"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "case%zu", i);
        char *dir = write_spoiled(name, &cases[i].s);
        sae_lm *lm = NULL;
        sae_error err;
        sae_error_clear(&err);
        int rc = sae_lm_load(dir, &lm, &err);
        ck_assert_msg(rc == cases[i].code, "case %zu: status %d, want %d (%s)", i, rc,
                      cases[i].code, err.msg);
        if (cases[i].msg)
            ck_assert_msg(strstr(err.msg, cases[i].msg), "case %zu: %s", i, err.msg);
        ck_assert(rc ? lm == NULL : lm != NULL);
        sae_lm_free(lm);
        free(dir);
    }
}
END_TEST

/* A folder with neither model.safetensors nor an index, and one with no config. */
START_TEST(test_missing_files)
{
    sae_lm *lm = NULL;
    sae_error err;
    char *dir = unit_path("empty"), *path;
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    ck_assert_int_eq(sae_lm_load(dir, &lm, &err), SAE_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, "config.json"));
    ck_assert_int_ge(asprintf(&path, "%s/config.json", dir), 0);
    FILE *f = fopen(path, "w");
    fputs("{\"model_type\": \"gpt2\", \"n_embd\": 8, \"n_head\": 2, \"n_layer\": 1, "
          "\"vocab_size\": 5, \"n_positions\": 4}",
          f);
    fclose(f);
    ck_assert_int_eq(sae_lm_load(dir, &lm, &err), SAE_EIO);
    ck_assert_ptr_nonnull(strstr(err.msg, "neither model.safetensors nor"));
    f = fopen(path, "w");
    fputs("{\"model_type\": \"gpt2\", \"model_type\": \"gpt2\"}", f);
    fclose(f);
    ck_assert_int_eq(sae_lm_load(dir, &lm, &err), SAE_EFORMAT);
    ck_assert_ptr_null(lm);
    free(path);
    free(dir);
}
END_TEST

/* The matrix products a pass makes, for the benchmark's bound. */
START_TEST(test_gemm_shapes)
{
    char *dir = fixture("gpt2_l2_d64");
    sae_lm *lm = load_ok(dir);
    sae_lm_gemm g[16];
    sae_lm_batch b = {.n_seq = 3, .lens = (size_t[]){5, 5, 3}};
    size_t n = sae_lm_gemm_shapes(lm, &b, g, 16);
    /* 4 weight shapes (13 x 192 x 64, 13 x 64 x 64, 13 x 256 x 64, 13 x 64 x 256), and
     * q kᵀ and att · v for lengths 5 and 3 */
    ck_assert_uint_eq(n, 8);
    ck_assert_uint_eq(g[0].m, 13);
    ck_assert_uint_eq(g[0].n, 192);
    ck_assert_uint_eq(g[0].count, 2);
    ck_assert(g[4].b_trans && g[4].m == 5 && g[4].count == 2 * 2 * 4);
    ck_assert_uint_eq(sae_lm_gemm_shapes(lm, &b, g, 2), 8);
    sae_lm_free(lm);
    free(dir);
}
END_TEST

/* n values uniform in [-amp, amp] from r. */
static void fill_uniform(sae_rng *r, float *a, size_t n, double amp)
{
    for (size_t i = 0; i < n; i++)
        a[i] = (float)(((double)(sae_rng_next(r) >> 11) * 0x1.0p-53 * 2.0 - 1.0) * amp);
}

/* Attention of n_head heads over t tokens of qkv (t, 3 · n_head · d_head:
 * q, k, v) in double, as sae_lm_op_attend defines it, into z (t, n_head · d_head). */
static void attend_ref(double *z, const float *qkv, size_t t, size_t n_head, size_t d_head,
                       double scale)
{
    const size_t C = n_head * d_head, ld = 3 * C;
    double *p = malloc(t * sizeof *p);
    for (size_t h = 0; h < n_head; h++)
        for (size_t i = 0; i < t; i++) {
            double mx = -INFINITY, s = 0;
            for (size_t j = 0; j <= i; j++) {
                double d = 0;
                for (size_t c = 0; c < d_head; c++)
                    d += (double)qkv[i * ld + h * d_head + c] * qkv[j * ld + C + h * d_head + c];
                p[j] = d * scale;
                mx = fmax(mx, p[j]);
            }
            for (size_t j = 0; j <= i; j++)
                s += (p[j] = exp(p[j] - mx));
            for (size_t c = 0; c < d_head; c++) {
                double a = 0;
                for (size_t j = 0; j <= i; j++)
                    a += p[j] / s * qkv[j * ld + 2 * C + h * d_head + c];
                z[i * C + h * d_head + c] = a;
            }
        }
    free(p);
}

/* Runs sae_lm_op_attend over qkv (t tokens) into z in panels of panel rows. */
static void attend_op(sae_lm_team *tm, float *z, const float *qkv, size_t t, size_t n_head,
                      size_t d_head, float scale, size_t panel)
{
    const size_t C = n_head * d_head;
    float *att = malloc(n_head * panel * t * sizeof *att);
    ck_assert_ptr_nonnull(att);
    sae_lm_op_attend(tm, z, C, qkv, qkv + C, qkv + 2 * C, 3 * C, t, n_head, d_head, scale, panel,
                     att);
    free(att);
}

/* Causal attention in row panels (each scoring only the keys up to its
 * last row) against the whole-triangle definition in double, for panels
 * that divide the sequence, do not, and hold all of it. */
START_TEST(test_attend_panels)
{
    const size_t t = 37, H = 3, D = 8, C = H * D;
    sae_rng r;
    sae_rng_seed(&r, 11);
    float *qkv = malloc(t * 3 * C * sizeof *qkv), *z = malloc(t * C * sizeof *z);
    double *ref = malloc(t * C * sizeof *ref);
    fill_uniform(&r, qkv, t * 3 * C, 2.0);
    attend_ref(ref, qkv, t, H, D, 0.35);
    const size_t panels[] = {1, 5, 16, 37, 64};
    for (size_t p = 0; p < sizeof panels / sizeof panels[0]; p++) {
        memset(z, 0xff, t * C * sizeof *z);
        attend_op(NULL, z, qkv, t, H, D, 0.35f, panels[p]);
        double num = 0, den = 0;
        for (size_t i = 0; i < t * C; i++) {
            num = fmax(num, fabs(z[i] - ref[i]));
            den = fmax(den, fabs(ref[i]));
        }
        ck_assert_msg(num <= 1e-5 * den, "panel %zu: relative error %.3g", panels[p],
                      num / den);
    }
    free(qkv);
    free(z);
    free(ref);
}
END_TEST

/* Every kernel gives the same bits on a team of one, two and three
 * threads: each row is computed whole by one thread. Sizes are above the
 * team's threshold, and uneven so the ranges are too. */
START_TEST(test_team_bits)
{
    const size_t n = 301, d = 263, t = 300, H = 4, D = 16, C = H * D;
    sae_rng r;
    sae_rng_seed(&r, 5);
    float *x = malloc(n * d * sizeof *x), *w = malloc(d * sizeof *w), *b = malloc(d * sizeof *b);
    float *qkv = malloc(t * 3 * C * sizeof *qkv);
    fill_uniform(&r, x, n * d, 3.0);
    fill_uniform(&r, w, d, 1.0);
    fill_uniform(&r, b, d, 1.0);
    fill_uniform(&r, qkv, t * 3 * C, 2.0);
    /* per team size: layernorm, affine, add, gelu tanh, gelu erf, attention */
    float *out[3][6];
    for (size_t s = 0; s < 3; s++) {
        sae_lm_team *tm = sae_lm_team_new();
        ck_assert_ptr_nonnull(tm);
        ck_assert_uint_eq(sae_lm_team_resize(tm, s + 1), s + 1);
        for (size_t k = 0; k < 5; k++) {
            out[s][k] = malloc(n * d * sizeof(float));
            memcpy(out[s][k], x, n * d * sizeof(float));
        }
        sae_lm_op_layernorm(tm, out[s][0], x, n, d, 1e-5);
        sae_lm_op_affine(tm, out[s][1], w, b, n, d);
        sae_lm_op_add(tm, out[s][2], x + 7, n * d - 7);
        sae_lm_op_gelu_tanh(tm, out[s][3], n * d);
        sae_lm_op_gelu_erf(tm, out[s][4], n * d);
        out[s][5] = malloc(t * C * sizeof(float));
        attend_op(tm, out[s][5], qkv, t, H, D, 0.25f, SAE_LM_ATT_PANEL);
        sae_lm_team_free(tm);
    }
    for (size_t s = 1; s < 3; s++)
        for (size_t k = 0; k < 6; k++)
            ck_assert_msg(memcmp(out[0][k], out[s][k], (k == 5 ? t * C : n * d) * sizeof(float)) ==
                              0,
                          "kernel %zu differs on a team of %zu", k, s + 1);
    /* and the kernels did something */
    ck_assert(out[0][0][0] != x[0] && out[0][3][1] != x[1]);
    for (size_t s = 0; s < 3; s++)
        for (size_t k = 0; k < 6; k++)
            free(out[s][k]);
    free(x);
    free(w);
    free(b);
    free(qkv);
}
END_TEST

/* A whole pass gives the same bits with one BLAS thread (a team of one) and
 * with two, over a batch big enough for the team to split its kernels. */
START_TEST(test_forward_threads)
{
    char *dir = fixture("gpt2_l2_d64"); /* vocab 97, 16 positions, d_model 64, d_mlp 256 */
    sae_lm *lm = load_ok(dir);
    const size_t n_seq = 64, len = 16, n = n_seq * len;
    sae_lm_ws *ws = sae_lm_ws_new(lm, n);
    ck_assert_ptr_nonnull(ws);
    uint32_t *ids = malloc(n * sizeof *ids);
    sae_rng r;
    sae_rng_seed(&r, 9);
    for (size_t i = 0; i < n; i++)
        ids[i] = (uint32_t)(sae_rng_next(&r) % 97);
    sae_lm_batch b = {.ids = ids, .n_seq = n_seq, .seq_len = len};
    const char *names[] = {"blocks.1.mlp.hook_post", "blocks.1.attn.hook_z",
                           "ln_final.hook_normalized"};
    sae_lm_hook h[3];
    sae_error err;
    float *out[2][3];
    size_t width[3];
    int saved = sae_get_blas_threads();
    for (size_t k = 0; k < 3; k++) {
        ck_assert_int_eq(sae_lm_hook_parse(names[k], &h[k], &err), 0);
        width[k] = sae_lm_hook_width(lm, &h[k]);
    }
    for (int th = 1; th <= 2; th++) {
        sae_set_blas_threads(th);
        for (size_t k = 0; k < 3; k++)
            out[th - 1][k] = malloc(n * width[k] * sizeof(float));
        ck_assert_int_eq(sae_lm_forward(lm, ws, &b, h, 3, out[th - 1], NULL, &err), 0);
    }
    sae_set_blas_threads(saved);
    for (size_t k = 0; k < 3; k++) {
        ck_assert_msg(memcmp(out[0][k], out[1][k], n * width[k] * sizeof(float)) == 0,
                      "%s differs between 1 and 2 threads", names[k]);
        free(out[0][k]);
        free(out[1][k]);
    }
    free(ids);
    sae_lm_ws_free(ws);
    sae_lm_free(lm);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("lm");
    TCase *tc = tcase_create("parity");
    tcase_add_loop_test(tc, test_parity, 0, N_FIXTURES);
    tcase_add_test(tc, test_config);
    suite_add_tcase(s, tc);
    tc = tcase_create("refusals");
    tcase_add_checked_fixture(tc, unit_setup, unit_teardown);
    tcase_add_test(tc, test_hook_names);
    tcase_add_test(tc, test_bad_batches);
    tcase_add_test(tc, test_hostile);
    tcase_add_test(tc, test_missing_files);
    tcase_add_test(tc, test_gemm_shapes);
    suite_add_tcase(s, tc);
    tc = tcase_create("threads");
    tcase_add_test(tc, test_attend_panels);
    tcase_add_test(tc, test_team_bits);
    tcase_add_test(tc, test_forward_threads);
    suite_add_tcase(s, tc);
    return unit_run(s);
}
