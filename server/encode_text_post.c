/* encode_text_post.c: POST /v1/encode_text (CONTRACT 5b): text in, each
 * token's SAE features out.
 *
 * Body: {"text": "..."} or {"texts": ["...", ...]}, optional "saes" (SAE ids,
 * as /v1/encode's fan-out) and "top_k". Each text is tokenized by the
 * language model's tokenizer (saed --lm DIR), with the BOS first when the
 * SAEs' cfg.json says prepend_bos (SAELens' default, true, when it says
 * nothing), on the polling thread. The request's texts then go to the
 * language model's worker as one job (lm_batcher.h) with the connection
 * suspended: the worker runs them, with the texts of every other request
 * queued meanwhile, as one ragged forward pass only as deep as the deepest
 * hook any of them reads, then encodes each request's tokens with its SAEs,
 * and resumes the connection; the reply is written on the polling thread.
 *
 * Replies: one text ("text") without "saes":
 *   {"tokens": [{"id", "text"}, ...], "results": [{"indices", "values"}, ...]}
 * "texts" wraps one such object per text: {"texts": [{...}, ...]}; with
 * "saes" each text's "results" becomes "saes": {id: {"weights_digest",
 * "results"}}. A token's "text" is its bytes as UTF-8, a byte sequence that
 * is not whole UTF-8 (part of a character) shown as U+FFFD; "id" is exact. */
#include <jansson.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "jsonin.h"
#include "lm_batcher.h"
#include "lm/bpe.h"
#include "lm/lm.h"
#include "saed.h"
#include "saes.h"

/* Most SAEs one request names (as /v1/encode's fan-out). */
#define TEXT_FAN_MAX 64
/* Replies are bounded by max_reply_bytes; this cap only stops a runaway. */
#define TEXT_REPLY_LIMIT ((size_t)1 << 31)

/* The language model saed serves text with: the model, its tokenizer and
 * the queue whose worker runs its forward passes. Owned by the server. */
struct saed_lm {
    sae_lm *lm;
    sae_bpe *bpe;
    struct lm_batcher *batcher;
    size_t max_queue;               /* the queue's bound in tokens */
};

int text_lm_open(struct saed_server *srv, sae_error *err)
{
    const char *dir = srv->cfg->lm;
    struct saed_lm *t = calloc(1, sizeof *t);
    if (!t)
        return sae_error_set(err, SAE_ENOMEM, "--lm: out of memory");
    srv->lm = t;
    if (sae_lm_load(dir, &t->lm, err))
        return -1;
    if (sae_bpe_load(&t->bpe, dir, err))
        return -1;
    const sae_lm_config *c = sae_lm_config_of(t->lm);
    if (sae_bpe_vocab_size(t->bpe) > c->vocab)
        return sae_error_set(err, SAE_EINVAL,
                             "--lm %s: the tokenizer has ids up to %zu but the model's vocabulary "
                             "is %zu",
                             dir, sae_bpe_vocab_size(t->bpe) - 1, c->vocab);
    /* A token is a row for the SAEs: a forward pass takes max_batch_rows of
     * them (at least one whole text of n_ctx), and the queue holds
     * max_queue_rows (or one largest request, when that is more). */
    size_t batch =
        srv->cfg->max_batch_rows > c->n_ctx ? (size_t)srv->cfg->max_batch_rows : c->n_ctx;
    size_t largest = (size_t)srv->cfg->max_request_texts * c->n_ctx;
    size_t queue = srv->cfg->max_queue_rows > largest ? (size_t)srv->cfg->max_queue_rows : largest;
    t->max_queue = queue;
    sae_error e;
    if (lm_batcher_new(t->lm, batch, queue, &t->batcher, &e))
        return sae_error_set(err, e.code, "--lm %s: %s", dir, e.msg);
    return 0;
}

/* Frees the language model (the queue first: it finishes what it holds),
 * saying how many requests its forward passes served. */
void text_lm_free(struct saed_lm *t)
{
    if (!t)
        return;
    if (t->batcher) {
        uint64_t passes, jobs;
        lm_batcher_counts(t->batcher, &passes, &jobs);
        if (jobs)
            fprintf(stderr, "saed: language model: %llu encode_text requests in %llu forward "
                    "passes\n", (unsigned long long)jobs, (unsigned long long)passes);
    }
    lm_batcher_free(t->batcher);
    sae_bpe_free(t->bpe);
    sae_lm_free(t->lm);
    free(t);
}

size_t text_lm_pending(const struct saed_lm *t)
{
    return t ? lm_batcher_pending(t->batcher) : 0;
}

size_t text_lm_tokens(const struct saed_lm *t)
{
    return t ? lm_batcher_tokens(t->batcher) : 0;
}

/* One request's state: what it parsed, the snapshots it holds, the tokens,
 * the activations, its job on the language model's queue and what the
 * worker's encode answered. Owned by the request (rq->text_job) from its
 * first call to its completion; freed by text_job_free. */
struct text_job {
    json_t *body;                       /* owned */
    bool many_texts, fan;               /* "texts" given; "saes" given */
    size_t n_texts;
    const char **text;                  /* (n_texts) borrowed from body */
    size_t *text_len;                   /* (n_texts) */
    size_t top_k;
    size_t n_saes;
    struct saed_snap *snaps[TEXT_FAN_MAX]; /* owned references */
    sae_lm_hook hooks[TEXT_FAN_MAX];    /* each SAE's */
    size_t hook_of[TEXT_FAN_MAX];       /* each SAE's index in the distinct hooks */
    sae_lm_hook uniq[TEXT_FAN_MAX];     /* the distinct hooks */
    size_t n_uniq;
    float *acts[TEXT_FAN_MAX];          /* owned: (n_tokens, width) per distinct hook */
    uint32_t *ids;                      /* owned: (n_tokens) every text's tokens in turn */
    size_t *lens;                       /* owned: (n_texts) */
    size_t n_tokens;
    sae_sparse out[TEXT_FAN_MAX];       /* each SAE's features per token */
    struct lm_job job;                  /* the forward pass, on the queue while suspended */
    struct saed_perr e;                 /* the worker's encode failure, status 0 if none */
};

bool text_job_done(const struct text_job *q)
{
    return atomic_load_explicit(&q->job.node.done, memory_order_acquire);
}

/* Frees what q owns, and q. */
void text_job_free(struct text_job *q)
{
    if (!q)
        return;
    json_decref(q->body);
    free(q->text);
    free(q->text_len);
    for (size_t i = 0; i < q->n_saes; i++) {
        snap_release(q->snaps[i]);
        sae_sparse_free(&q->out[i]);
    }
    for (size_t i = 0; i < q->n_uniq; i++)
        free(q->acts[i]);
    free(q->ids);
    free(q->lens);
    free(q);
}

/* The texts: a string under "text", or an array of them under "texts". */
static int parse_texts(struct text_job *q, json_t *one, json_t *many, size_t max,
                       struct saed_perr *e)
{
    if (one && many)
        return perr_set(e, 400, "conflicting_fields",
                        "give either \"text\" (one text) or \"texts\" (an array), not both");
    if (!one && !many)
        return perr_set(e, 400, "missing_field",
                        "the body needs \"text\" (a string) or \"texts\" (an array of strings)");
    if (one && !json_is_string(one))
        return perr_set(e, 400, "wrong_type", "text: expected a string");
    if (many && !json_is_array(many))
        return perr_set(e, 400, "wrong_type", "texts: expected an array of strings");
    q->many_texts = many != NULL;
    q->n_texts = many ? json_array_size(many) : 1;
    if (q->n_texts > max)
        return perr_set(e, 413, "too_many_texts",
                        "%zu texts; the limit (max_request_texts) is %zu", q->n_texts, max);
    if (!q->n_texts)
        return perr_set(e, 422, "empty_batch", "texts is empty");
    q->text = calloc(q->n_texts, sizeof *q->text);
    q->text_len = calloc(q->n_texts, sizeof *q->text_len);
    if (!q->text || !q->text_len)
        return perr_set(e, 503, "out_of_memory", "cannot hold %zu texts", q->n_texts);
    for (size_t i = 0; i < q->n_texts; i++) {
        json_t *s = many ? json_array_get(many, i) : one;
        if (!json_is_string(s))
            return perr_set(e, 400, "wrong_type", "texts[%zu]: expected a string", i);
        q->text[i] = json_string_value(s);
        q->text_len[i] = json_string_length(s);
    }
    return 0;
}

/* "saes": SAE ids, each served, named once, at most TEXT_FAN_MAX; their
 * snapshots are taken. */
static int parse_saes(struct saed_req *rq, struct text_job *q, json_t *a, struct saed_perr *e)
{
    if (!json_is_array(a))
        return perr_set(e, 400, "wrong_type", "saes: expected an array of SAE ids");
    if (rq->sae_prefixed)
        return perr_set(e, 400, "invalid_field",
                        "saes: a fan-out is POST /v1/encode_text; /v1/saes/%s/encode_text "
                        "encodes with that SAE only",
                        rq->sae->id);
    size_t n = json_array_size(a);
    if (!n)
        return perr_set(e, 400, "invalid_field", "saes: name at least one SAE");
    if (n > TEXT_FAN_MAX)
        return perr_set(e, 400, "invalid_field", "saes: more than %d SAEs", TEXT_FAN_MAX);
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(a, i);
        if (!json_is_string(v))
            return perr_set(e, 400, "wrong_type", "saes: expected strings (SAE ids)");
        const char *id = json_string_value(v);
        size_t len = json_string_length(v);
        if (!config_id_ok(id, len) || strlen(id) != len)
            return perr_set(e, 400, "invalid_field", "saes: \"%.64s\" is not an SAE id", id);
        for (size_t k = 0; k < i; k++)
            if (!strcmp(json_string_value(json_array_get(a, k)), id))
                return perr_set(e, 400, "invalid_field", "saes: \"%s\" is named twice", id);
        struct saed_sae *sae = saes_find(rq->srv, id, len);
        if (!sae)
            return perr_set(e, 404, "sae_not_found",
                            "saes: no SAE has the id \"%s\" (GET /v1/saes lists them)", id);
        sae_error err;
        if (!(q->snaps[i] = snap_acquire(rq->srv, sae, &err)))
            return perr_set(e, 503, err.code == SAE_EIO ? "weights_changed" : "not_ready", "%s",
                            err.msg);
        q->n_saes = i + 1;
    }
    q->fan = true;
    return 0;
}

/* The body: texts, saes and top_k, each checked. */
static int parse_body(struct saed_req *rq, struct text_job *q, struct saed_perr *e)
{
    json_error_t je;
    q->body = json_loadb((const char *)rq->body, rq->body_len,
                         JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!q->body)
        return perr_set(e, 400, "invalid_json", "the body is not JSON: %s (byte %d)", je.text,
                        je.position);
    if (!json_is_object(q->body))
        return perr_set(e, 400, "wrong_type", "the body must be a JSON object");
    const char *key;
    json_t *v, *one = NULL, *many = NULL, *saes = NULL;
    json_object_foreach(q->body, key, v) {
        if (!strcmp(key, "text"))
            one = v;
        else if (!strcmp(key, "texts"))
            many = v;
        else if (!strcmp(key, "saes"))
            saes = v;
        else if (!strcmp(key, "top_k")) {
            json_int_t k = json_is_integer(v) ? json_integer_value(v) : 0;
            if (k <= 0)
                return perr_set(e, 400, "invalid_field", "top_k: expected a positive integer");
            q->top_k = (size_t)k;
        } else
            return perr_set(e, 400, "unknown_field",
                            "unknown field \"%.64s\" (allowed: text, texts, saes, top_k)", key);
    }
    if (parse_texts(q, one, many, (size_t)rq->srv->cfg->max_request_texts, e))
        return -1;
    if (saes)
        return parse_saes(rq, q, saes, e);
    q->snaps[0] = snap_hold(rq->snap);
    q->n_saes = 1;
    return 0;
}

/* Whether the SAE folder's cfg.json asks for a BOS first (SAELens'
 * prepend_bos; true when the file or the key is absent, SAELens' default). */
static bool sae_prepend_bos(const sae_model *m)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/cfg.json", m->dir);
    json_t *cfg = json_load_file(path, 0, NULL);
    json_t *v = cfg ? json_object_get(cfg, "prepend_bos") : NULL;
    bool bos = !json_is_false(v);
    json_decref(cfg);
    return bos;
}

/* Each SAE's hook, checked against the model; the distinct ones in uniq.
 * *bos: whether the SAEs want the BOS (they must agree). */
static int check_hooks(const struct saed_lm *t, struct text_job *q, bool *bos,
                       struct saed_perr *e)
{
    for (size_t i = 0; i < q->n_saes; i++) {
        const sae_model *m = q->snaps[i]->model;
        const char *id = q->snaps[i]->sae->id;
        if (sae_model_changed(m))
            return perr_set(e, 503, "weights_changed",
                            "the SAE \"%s\"'s weights file changed on disk; SIGHUP reloads it", id);
        sae_error err;
        sae_lm_hook *h = &q->hooks[i];
        if (!*m->hook_name || sae_lm_hook_parse(m->hook_name, h, &err) ||
            sae_lm_hook_check(t->lm, h, &err))
            return perr_set(e, 422, "unsupported_hook",
                            "the SAE \"%s\" reads the hook \"%.200s\", which is not a "
                            "TransformerLens hook the language model (--lm) exposes",
                            id, *m->hook_name ? m->hook_name : "(none: cfg.json has no hook_name)");
        size_t w = sae_lm_hook_width(t->lm, h);
        if (w != m->d_in)
            return perr_set(e, 422, "hook_width_mismatch",
                            "the SAE \"%s\" has d_in %zu but the model's %s is %zu wide", id,
                            m->d_in, m->hook_name, w);
        bool b = sae_prepend_bos(m);
        if (i && b != *bos)
            return perr_set(e, 422, "sae_mismatch",
                            "saes: \"%s\" and \"%s\" disagree on prepend_bos, so no one "
                            "tokenization serves both",
                            q->snaps[0]->sae->id, id);
        *bos = b;
        size_t u = 0;
        while (u < q->n_uniq && (q->uniq[u].site != h->site || q->uniq[u].layer != h->layer))
            u++;
        if (u == q->n_uniq)
            q->uniq[q->n_uniq++] = *h;
        q->hook_of[i] = u;
    }
    return 0;
}

json_t *text_lm_json(const struct saed_server *srv, const sae_model *m)
{
    const struct saed_lm *t = srv->lm;
    if (!t)
        return json_null();
    const sae_lm_config *c = sae_lm_config_of(t->lm);
    sae_lm_hook h;
    sae_error err;
    bool reads = *m->hook_name && !sae_lm_hook_parse(m->hook_name, &h, &err) &&
                 !sae_lm_hook_check(t->lm, &h, &err) && sae_lm_hook_width(t->lm, &h) == m->d_in;
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:b, s:b, s:I}", "model_type", c->family,
                     "n_layer", (json_int_t)c->n_layer, "d_model", (json_int_t)c->d_model,
                     "n_ctx", (json_int_t)c->n_ctx, "vocab_size", (json_int_t)c->vocab,
                     "reads_hook", reads, "prepend_bos", sae_prepend_bos(m),
                     "max_request_texts", (json_int_t)srv->cfg->max_request_texts);
}

/* Tokenizes every text into q->ids / q->lens, each at most n_ctx tokens. */
static int tokenize(const struct saed_lm *t, struct text_job *q, bool bos, struct saed_perr *e)
{
    size_t n_ctx = sae_lm_config_of(t->lm)->n_ctx;
    if (!(q->lens = calloc(q->n_texts, sizeof *q->lens)) ||
        !(q->ids = malloc(q->n_texts * n_ctx * sizeof *q->ids)))
        return perr_set(e, 503, "out_of_memory", "cannot hold the tokens");
    for (size_t i = 0; i < q->n_texts; i++) {
        int32_t *ids;
        size_t n;
        sae_error err;
        if (sae_bpe_encode(t->bpe, q->text[i], q->text_len[i], bos ? SAE_BPE_BOS : 0, &ids, &n,
                           &err))
            return perr_set(e, 422, "no_bos", "the SAEs ask for prepend_bos: %s", err.msg);
        if (n > n_ctx || !n) {
            free(ids);
            if (!n)
                return perr_set(e, 422, "empty_text",
                                "texts[%zu] has no tokens (the SAEs' cfg has prepend_bos false)",
                                i);
            return perr_set(e, 422, "text_too_long",
                            "texts[%zu] is %zu tokens; the model's n_positions is %zu", i, n,
                            n_ctx);
        }
        for (size_t k = 0; k < n; k++)
            q->ids[q->n_tokens + k] = (uint32_t)ids[k];
        free(ids);
        q->lens[i] = n;
        q->n_tokens += n;
    }
    return 0;
}

/* The worker's step after the forward pass (lm_job.finish): each SAE
 * encodes its hook's activations of every token. A failure goes in q->e. */
static void encode_saes(struct lm_job *job, void *ctx)
{
    (void)job;
    struct text_job *q = ctx;
    sae_encode_opts o = {.top_k = q->top_k};
    for (size_t i = 0; i < q->n_saes; i++) {
        const sae_model *m = q->snaps[i]->model;
        sae_workspace *ws = sae_workspace_new(m, 0);
        if (!ws) {
            perr_set(&q->e, 503, "out_of_memory", "no memory for the SAE's workspace");
            return;
        }
        sae_error err;
        int rc = sae_encode(m, ws, q->acts[q->hook_of[i]], q->n_tokens, &o, &q->out[i], NULL,
                            NULL, &err);
        sae_workspace_free(ws);
        if (rc == SAE_ERANGE) {
            perr_set(&q->e, 422, "non_finite", "%s: %s", q->snaps[i]->sae->id, err.msg);
            return;
        }
        if (rc) {
            perr_set(&q->e, 500, "internal", "encode failed: %s", err.msg);
            return;
        }
    }
}

/* Makes the activation buffers and the job, and queues it with the
 * connection suspended. */
static int submit(struct saed_req *rq, struct saed_lm *t, struct text_job *q,
                  struct saed_perr *e)
{
    for (size_t u = 0; u < q->n_uniq; u++) {
        size_t w = sae_lm_hook_width(t->lm, &q->uniq[u]);
        if (!(q->acts[u] = malloc(q->n_tokens * w * sizeof(float))))
            return perr_set(e, 503, "out_of_memory", "cannot hold the activations");
    }
    q->job = (struct lm_job){.ids = q->ids, .lens = q->lens, .n_seq = q->n_texts,
                             .n_tokens = q->n_tokens, .hooks = q->uniq, .n_hooks = q->n_uniq,
                             .out = q->acts, .finish = encode_saes, .ctx = q,
                             .node.conn = rq->conn};
    rq->state = RQ_WAITING;
    if (lm_batcher_submit(t->batcher, &q->job)) {
        rq->state = RQ_READY;
        atomic_fetch_add_explicit(&rq->srv->metrics.queue_full, 1, memory_order_relaxed);
        return perr_set(e, 503, "overloaded",
                        "the language model's queue is full (%zu tokens: max_queue_rows, or "
                        "max_request_texts texts of n_positions when that is more); retry "
                        "shortly",
                        t->max_queue);
    }
    return 0;
}

/* Appends SAE i's results for the tokens [a, a + n). */
static void put_results(struct saed_buf *b, const sae_sparse *s, size_t a, size_t n)
{
    buf_puts(b, "\"results\":[");
    for (size_t r = a; r < a + n; r++) {
        uint32_t lo = s->row_ptr[r], hi = s->row_ptr[r + 1];
        buf_puts(b, r > a ? ",{\"indices\":[" : "{\"indices\":[");
        for (uint32_t k = lo; k < hi; k++) {
            if (k > lo)
                buf_putc(b, ',');
            buf_u32(b, s->idx[k]);
        }
        buf_puts(b, "],\"values\":[");
        for (uint32_t k = lo; k < hi; k++) {
            if (k > lo)
                buf_putc(b, ',');
            buf_f32(b, s->val[k]);
        }
        buf_puts(b, "]}");
    }
    buf_putc(b, ']');
}

/* Appends one text's object: its tokens and every SAE's results. */
static void put_text(struct saed_buf *b, const struct saed_lm *t, const struct text_job *q,
                     size_t a, size_t n)
{
    buf_puts(b, "{\"tokens\":[");
    for (size_t k = a; k < a + n; k++) {
        size_t len;
        const char *s = sae_bpe_token(t->bpe, (int32_t)q->ids[k], &len);
        buf_puts(b, k > a ? ",{\"id\":" : "{\"id\":");
        buf_u32(b, q->ids[k]);
        buf_puts(b, ",\"text\":");
        buf_json_strn(b, s ? s : "", s ? len : 0);
        buf_putc(b, '}');
    }
    buf_puts(b, "],");
    if (!q->fan) {
        put_results(b, &q->out[0], a, n);
    } else {
        buf_puts(b, "\"saes\":{");
        for (size_t i = 0; i < q->n_saes; i++) {
            if (i)
                buf_putc(b, ',');
            buf_json_str(b, q->snaps[i]->sae->id);
            buf_puts(b, ":{\"weights_digest\":\"");
            buf_puts(b, q->snaps[i]->model->weights_digest);
            buf_puts(b, "\",");
            put_results(b, &q->out[i], a, n);
            buf_putc(b, '}');
        }
        buf_putc(b, '}');
    }
    buf_putc(b, '}');
}

/* The reply's size, within a few bytes per value: reserved before it is
 * built (max_reply_bytes). */
static uint64_t reply_size(const struct text_job *q)
{
    uint64_t est = 64 + (uint64_t)q->n_tokens * 48;
    for (size_t i = 0; i < q->n_saes; i++)
        est += 160 + (uint64_t)q->out[i].nnz * 28 + (uint64_t)q->n_tokens * 32;
    return est;
}

/* Builds and queues the reply. */
static enum MHD_Result reply_text(struct saed_req *rq, const struct saed_lm *t,
                                  const struct text_job *q)
{
    uint64_t est = reply_size(q);
    enum MHD_Result r;
    if (reply_reserve(rq, est, &r))
        return r;
    struct saed_buf b;
    buf_init(&b, TEXT_REPLY_LIMIT, (size_t)est);
    if (q->many_texts)
        buf_puts(&b, "{\"texts\":[");
    for (size_t i = 0, a = 0; i < q->n_texts; a += q->lens[i++]) {
        if (i)
            buf_putc(&b, ',');
        put_text(&b, t, q, a, q->lens[i]);
    }
    buf_puts(&b, q->many_texts ? "]}\n" : "\n");
    size_t len;
    char *body = buf_steal(&b, &len);
    if (!body)
        return reply_error(rq, 500, "reply_too_large", "the reply exceeds %zu bytes",
                           TEXT_REPLY_LIMIT);
    return reply_json_buf(rq, 200, body, len);
}

/* Second call, after the worker resumed the connection: the reply, or the
 * error the forward pass or an encode met. */
static enum MHD_Result text_reply(struct saed_req *rq)
{
    const struct text_job *q = rq->text_job;
    if (q->job.rc)
        return reply_error(rq, 500, "internal", "the forward pass failed: %s", q->job.err.msg);
    if (q->e.status)
        return reply_error(rq, q->e.status, q->e.code, "%s", q->e.msg);
    for (size_t i = 0; i < q->n_saes; i++)
        if (sae_model_changed(q->snaps[i]->model))
            return reply_error(rq, 503, "weights_changed",
                               "the SAE \"%s\"'s weights file changed on disk; SIGHUP reloads "
                               "it",
                               q->snaps[i]->sae->id);
    return reply_text(rq, rq->srv->lm, q);
}

enum MHD_Result encode_text_post(struct saed_req *rq)
{
    struct saed_lm *t = rq->srv->lm;
    if (rq->text_job && rq->state == RQ_WAITING)
        return text_reply(rq);
    if (!t)
        return reply_error(rq, 404, "no_lm",
                           "saed runs without a language model: start it with --lm DIR (a GPT-2 "
                           "checkpoint folder with its tokenizer)");
    struct text_job *q = calloc(1, sizeof *q);
    if (!q)
        return reply_error(rq, 503, "out_of_memory", "cannot start the request");
    rq->text_job = q;
    for (size_t i = 0; i < TEXT_FAN_MAX; i++)
        sae_sparse_init(&q->out[i]);
    struct saed_perr e = {0};
    bool bos = true;
    int rc = parse_body(rq, q, &e);
    if (!rc)
        req_body_free(rq);
    if (!rc)
        rc = check_hooks(t, q, &bos, &e);
    if (!rc)
        rc = tokenize(t, q, bos, &e);
    if (!rc)
        rc = submit(rq, t, q, &e);
    return rc ? reply_error(rq, e.status, e.code, "%s", e.msg) : MHD_YES;
}
