/* test_text.c: POST /v1/encode_text against a real saed --lm (loopback).
 *
 * The reference is the library itself, step by step: the tokenizer
 * (sae_bpe_encode, BOS as the SAE's cfg says), the forward pass alone
 * (sae_lm_forward, one text at a time) and sae_encode; the route must give
 * the same tokens and, within float tolerance, the same features, whatever
 * the nesting (one text, several, a fan-out over SAEs of different hooks,
 * an SAE-prefixed path), and whether the requests come one by one or many at
 * once (their texts then share forward passes, lm_batcher.h). Every error
 * path of the route is then hit once, the full queue's 503 with the
 * language model's worker held still. */
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fixture.h"
#include "harness.h"
#include "lm/bpe.h"
#include "lm/lm.h"
#include "sae/encode.h"

#ifndef LM_DIR
#error "LM_DIR names the checkpoint fixture"
#endif

/* The served SAEs: id, hook, d_in, d_sae, prepend_bos. */
static const struct {
    const char *id, *hook;
    size_t d_in, d_sae;
    bool bos;
} saes[] = {
    {"a", "blocks.1.hook_resid_pre", 32, 64, true},
    {"b", "blocks.0.hook_resid_post", 32, 48, true},
    {"mlp", "blocks.0.mlp.hook_post", 128, 40, true},
    {"nobos", "blocks.1.hook_resid_pre", 32, 64, false},
    {"deep", "blocks.7.hook_resid_pre", 32, 64, true},
    {"wide", "blocks.0.hook_resid_pre", 16, 64, true},
};
#define N_SAES (sizeof saes / sizeof saes[0])

static char *tmp;
static char dirs[N_SAES][400];
static sae_model *models[N_SAES];
static sae_lm *lm;
static sae_bpe *bpe;
static sae_lm_ws *ws;

/* Writes the SAE folders and loads the reference's model, tokenizer and SAEs. */
static int setup(void)
{
    tmp = h_tmpdir("text");
    sae_error err;
    sae_fixture_opts o;
    sae_fixture_defaults(&o);
    o.target_l0 = 6;
    for (size_t i = 0; i < N_SAES; i++) {
        snprintf(dirs[i], sizeof dirs[i], "%.300s/%s", tmp, saes[i].id);
        o.d_in = saes[i].d_in;
        o.d_sae = saes[i].d_sae;
        o.seed = 30 + i;
        o.hook_name = saes[i].hook;
        if (sae_fixture_write_model(dirs[i], &o, &err))
            return fprintf(stderr, "%s\n", err.msg), -1;
        if (!saes[i].bos) {
            char cfg[700];
            snprintf(cfg, sizeof cfg, "%.400s/cfg.json", dirs[i]);
            json_t *c = json_load_file(cfg, 0, NULL);
            if (!c || json_object_set_new(c, "prepend_bos", json_false()) ||
                json_dump_file(c, cfg, 0))
                return fprintf(stderr, "cannot rewrite %s\n", cfg), -1;
            json_decref(c);
        }
        if (sae_model_load(dirs[i], &models[i], NULL, &err))
            return fprintf(stderr, "%s\n", err.msg), -1;
    }
    if (sae_lm_load(LM_DIR, &lm, &err) || sae_bpe_load(&bpe, LM_DIR, &err))
        return fprintf(stderr, "%s\n", err.msg), -1;
    ws = sae_lm_ws_new(lm, sae_lm_config_of(lm)->n_ctx);
    return ws ? 0 : -1;
}

/* The reference for one text and SAE i: tokens, then each token's features. */
static void reference(const char *text, size_t i, size_t top_k, int32_t **ids, size_t *n,
                      sae_sparse *out)
{
    sae_error err;
    *ids = NULL;
    *n = 0;
    sae_sparse_init(out);
    CHECK(!sae_bpe_encode(bpe, text, strlen(text), saes[i].bos ? SAE_BPE_BOS : 0, ids, n, &err),
          "tokenize: %s", err.msg);
    sae_lm_hook h;
    CHECK(!sae_lm_hook_parse(saes[i].hook, &h, &err), "%s", err.msg);
    uint32_t *u = malloc(*n * sizeof *u);
    float *x = malloc(*n * saes[i].d_in * sizeof *x);
    for (size_t k = 0; k < *n; k++)
        u[k] = (uint32_t)(*ids)[k];
    sae_lm_batch b = {.ids = u, .n_seq = 1, .seq_len = *n};
    CHECK(!sae_lm_forward(lm, ws, &b, &h, 1, &x, NULL, &err), "forward: %s", err.msg);
    sae_workspace *w = sae_workspace_new(models[i], 0);
    sae_encode_opts o = {.top_k = top_k};
    CHECK(!sae_encode(models[i], w, x, *n, &o, out, NULL, NULL, &err), "encode: %s", err.msg);
    sae_workspace_free(w);
    free(u);
    free(x);
}

/* Checks one text's "tokens" and "results" (a JSON array) against the reference. */
static void check_text(json_t *tokens, json_t *results, const char *text, size_t i, size_t top_k)
{
    int32_t *ids;
    size_t n;
    sae_sparse ref;
    reference(text, i, top_k, &ids, &n, &ref);
    CHECK(json_array_size(tokens) == n && json_array_size(results) == n,
          "%s on \"%s\": %zu tokens, %zu results; the reference has %zu", saes[i].id, text,
          json_array_size(tokens), json_array_size(results), n);
    for (size_t k = 0; k < n && k < json_array_size(tokens) && k < json_array_size(results);
         k++) {
        json_t *t = json_array_get(tokens, k);
        size_t len;
        const char *s = sae_bpe_token(bpe, ids[k], &len);
        CHECK(json_integer_value(json_object_get(t, "id")) == ids[k], "token %zu id", k);
        /* A token that is part of a UTF-8 character reads as U+FFFD. */
        json_t *whole = s ? json_stringn(s, len) : NULL;
        const char *got = json_string_value(json_object_get(t, "text"));
        CHECK(s && got && (whole ? !strcmp(got, json_string_value(whole))
                                 : !strcmp(got, "\xEF\xBF\xBD")),
              "token %zu text \"%s\"", k, got ? got : "(none)");
        json_decref(whole);
        json_t *r = json_array_get(results, k), *ix = json_object_get(r, "indices"),
               *vx = json_object_get(r, "values");
        size_t a = ref.row_ptr[k], e = ref.row_ptr[k + 1];
        CHECK(json_array_size(ix) == e - a && json_array_size(vx) == e - a,
              "%s token %zu: %zu features, reference %zu", saes[i].id, k, json_array_size(ix),
              e - a);
        for (size_t f = 0; f < e - a && f < json_array_size(ix); f++) {
            double v = json_number_value(json_array_get(vx, f)), rv = ref.val[a + f];
            CHECK(json_integer_value(json_array_get(ix, f)) == ref.idx[a + f] &&
                      fabs(v - rv) <= 1e-4 * fabs(rv) + 1e-5,
                  "%s token %zu feature %zu: %lld=%g, reference %u=%g", saes[i].id, k, f,
                  (long long)json_integer_value(json_array_get(ix, f)), v, ref.idx[a + f], rv);
        }
    }
    free(ids);
    sae_sparse_free(&ref);
}

/* POSTs body as JSON to path; returns the parsed reply (NULL if not JSON). */
static json_t *post(const struct daemon *d, const char *path, const char *body, long *status)
{
    const char *hdr[] = {"Content-Type: application/json", NULL};
    struct http_resp r;
    *status = http(d, "POST", path, body, strlen(body), hdr, false, &r);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    http_free(&r);
    return j;
}

/* The three nestings, each against the reference. */
static void test_answers(const struct daemon *d)
{
    long st;
    json_t *j = post(d, "/v1/encode_text", "{\"text\": \"Hello there, the cat\", \"top_k\": 4}",
                     &st);
    CHECK(st == 200 && j, "one text: %ld", st);
    check_text(json_object_get(j, "tokens"), json_object_get(j, "results"),
               "Hello there, the cat", 0, 4);
    json_decref(j);

    j = post(d, "/v1/saes/b/encode_text", "{\"text\": \"in the end\"}", &st);
    CHECK(st == 200 && j, "prefixed: %ld", st);
    check_text(json_object_get(j, "tokens"), json_object_get(j, "results"), "in the end", 1, 0);
    json_decref(j);

    static const char *const texts[] = {"a", "on the mat, re", "\xc3\xa9t\xc3\xa9 \xf0\x9f\x90\x88"};
    j = post(d, "/v1/encode_text",
             "{\"texts\": [\"a\", \"on the mat, re\", \"\\u00e9t\\u00e9 \\ud83d\\udc08\"], "
             "\"saes\": [\"a\", \"b\", \"mlp\"], \"top_k\": 5}",
             &st);
    CHECK(st == 200 && j, "texts x saes: %ld", st);
    json_t *arr = json_object_get(j, "texts");
    CHECK(json_array_size(arr) == 3, "three texts");
    for (size_t t = 0; t < 3 && t < json_array_size(arr); t++)
        for (size_t i = 0; i < 3; i++) {
            json_t *s = json_object_get(json_object_get(json_array_get(arr, t), "saes"),
                                        saes[i].id);
            CHECK(json_is_string(json_object_get(s, "weights_digest")) &&
                      !strcmp(json_string_value(json_object_get(s, "weights_digest")),
                              models[i]->weights_digest),
                  "texts[%zu] %s weights_digest", t, saes[i].id);
            check_text(json_object_get(json_array_get(arr, t), "tokens"),
                       json_object_get(s, "results"), texts[t], i, 5);
        }
    json_decref(j);
}

/* The concurrent clients: each sends its text to its SAE's route ROUNDS
 * times, all at once, so that their texts share forward passes; two of them
 * send two texts a request. */
#define CLIENTS 8
#define ROUNDS 4
static const struct {
    size_t sae;                       /* index in saes[] */
    const char *texts[2];             /* the second NULL: a "text" request */
} clients[CLIENTS] = {
    {0, {"Hello there, the cat", NULL}},
    {1, {"in the end", NULL}},
    {2, {"on the mat, re", NULL}},
    {0, {"a", "the cat is on"}},
    {1, {"Hello", NULL}},
    {2, {"there, the end", "re"}},
    {0, {"on the mat", NULL}},
    {1, {"\xc3\xa9t\xc3\xa9 \xf0\x9f\x90\x88", "the"}},
};

/* One client's path, body and replies (parsed on the main thread, as the
 * reference is not thread-safe). */
struct client {
    const struct daemon *d;
    size_t k;
    char path[64];
    char body[256];
    long status[ROUNDS];
    json_t *reply[ROUNDS];
};

/* Writes client k's path and body. */
static void client_request(struct client *c, size_t k)
{
    c->k = k;
    snprintf(c->path, sizeof c->path, "/v1/saes/%s/encode_text", saes[clients[k].sae].id);
    json_t *b = clients[k].texts[1]
                    ? json_pack("{s:[s,s], s:i}", "texts", clients[k].texts[0],
                                clients[k].texts[1], "top_k", 6)
                    : json_pack("{s:s, s:i}", "text", clients[k].texts[0], "top_k", 6);
    char *j = json_dumps(b, JSON_COMPACT);
    snprintf(c->body, sizeof c->body, "%s", j);
    free(j);
    json_decref(b);
}

/* A client thread: its ROUNDS requests, back to back. */
static void *client_main(void *arg)
{
    struct client *c = arg;
    for (size_t r = 0; r < ROUNDS; r++)
        c->reply[r] = post(c->d, c->path, c->body, &c->status[r]);
    http_thread_done();
    return NULL;
}

/* Checks one reply of client k against the reference. */
static void check_client(const struct client *c, long status, json_t *j, const char *when)
{
    size_t k = c->k, i = clients[k].sae;
    CHECK(status == 200 && j, "%s client %zu: %ld", when, k, status);
    if (!clients[k].texts[1]) {
        check_text(json_object_get(j, "tokens"), json_object_get(j, "results"),
                   clients[k].texts[0], i, 6);
        return;
    }
    json_t *arr = json_object_get(j, "texts");
    CHECK(json_array_size(arr) == 2, "%s client %zu: two texts", when, k);
    for (size_t t = 0; t < 2 && t < json_array_size(arr); t++)
        check_text(json_object_get(json_array_get(arr, t), "tokens"),
                   json_object_get(json_array_get(arr, t), "results"), clients[k].texts[t], i,
                   6);
}

/* The clients one by one, then all at once: every reply is the reference's
 * (what the forward pass of that text alone gives), and the concurrent ones
 * equal the one-by-one ones token for token. */
static void test_concurrent(const struct daemon *d)
{
    static struct client c[CLIENTS];
    json_t *alone[CLIENTS];
    for (size_t k = 0; k < CLIENTS; k++) {
        client_request(&c[k], k);
        c[k].d = d;
        long st;
        alone[k] = post(d, c[k].path, c[k].body, &st);
        check_client(&c[k], st, alone[k], "alone");
    }
    pthread_t th[CLIENTS];
    for (size_t k = 0; k < CLIENTS; k++)
        CHECK(!pthread_create(&th[k], NULL, client_main, &c[k]), "thread %zu", k);
    for (size_t k = 0; k < CLIENTS; k++)
        pthread_join(th[k], NULL);
    for (size_t k = 0; k < CLIENTS; k++) {
        for (size_t r = 0; r < ROUNDS; r++) {
            check_client(&c[k], c[k].status[r], c[k].reply[r], "concurrent");
            /* The tokens are exact; the values were checked within float
             * tolerance above (BLAS may sum a larger product in another order). */
            json_t *ta = json_object_get(alone[k], clients[k].texts[1] ? "texts" : "tokens"),
                   *tc = json_object_get(c[k].reply[r], clients[k].texts[1] ? "texts" : "tokens");
            if (clients[k].texts[1]) {
                for (size_t t = 0; t < 2; t++)
                    CHECK(json_equal(json_object_get(json_array_get(ta, t), "tokens"),
                                     json_object_get(json_array_get(tc, t), "tokens")),
                          "client %zu round %zu text %zu: other tokens", k, r, t);
            } else {
                CHECK(json_equal(ta, tc), "client %zu round %zu: other tokens", k, r);
            }
            json_decref(c[k].reply[r]);
        }
        json_decref(alone[k]);
    }
}

/* GET path's "lm" object (NULL when it is null); the reply is kept in *keep. */
static json_t *model_lm(const struct daemon *d, const char *path, json_t **keep)
{
    struct http_resp r;
    long st = http(d, "GET", path, NULL, 0, NULL, false, &r);
    *keep = json_loadb(r.body, r.len, 0, NULL);
    http_free(&r);
    CHECK(st == 200 && *keep, "GET %s: %ld", path, st);
    json_t *lm = json_object_get(*keep, "lm");
    CHECK(lm != NULL, "GET %s has no \"lm\"", path);
    return json_is_object(lm) ? lm : NULL;
}

/* /v1/model's "lm": the model's shape, and whether each SAE's hook is read. */
static void test_model_lm(const struct daemon *d)
{
    json_t *keep;
    json_t *lm = model_lm(d, "/v1/model", &keep);
    CHECK(lm && json_integer_value(json_object_get(lm, "n_ctx")) == 16 &&
              json_integer_value(json_object_get(lm, "n_layer")) == 2 &&
              json_integer_value(json_object_get(lm, "max_request_texts")) == 4 &&
              json_is_true(json_object_get(lm, "reads_hook")) &&
              json_is_true(json_object_get(lm, "prepend_bos")),
          "/v1/model lm of SAE a");
    json_decref(keep);
    static const struct {
        const char *id;
        bool reads, bos;
    } want[] = {{"mlp", true, true}, {"nobos", true, false}, {"deep", false, true},
                {"wide", false, true}};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/saes/%s/model", want[k].id);
        lm = model_lm(d, path, &keep);
        CHECK(lm && json_is_true(json_object_get(lm, "reads_hook")) == want[k].reads &&
                  json_is_true(json_object_get(lm, "prepend_bos")) == want[k].bos,
              "%s: lm reads_hook / prepend_bos", path);
        json_decref(keep);
    }
}

/* One refused request: status and error code. */
static void refuse(const struct daemon *d, const char *path, const char *body, long want,
                   const char *code)
{
    long st;
    json_t *j = post(d, path, body, &st);
    const char *got = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    CHECK(st == want && got && !strcmp(got, code), "%s: %ld %s, want %ld %s", body, st,
          got ? got : "(no code)", want, code);
    json_decref(j);
}

/* Every error path of the route. */
static void test_refusals(const struct daemon *d)
{
    const char *p = "/v1/encode_text";
    refuse(d, p, "{\"text\": ", 400, "invalid_json");
    refuse(d, p, "[\"text\"]", 400, "wrong_type");
    refuse(d, p, "{\"text\": \"a\", \"x\": 1}", 400, "unknown_field");
    refuse(d, p, "{\"text\": \"a\", \"texts\": [\"b\"]}", 400, "conflicting_fields");
    refuse(d, p, "{\"top_k\": 3}", 400, "missing_field");
    refuse(d, p, "{\"text\": 3}", 400, "wrong_type");
    refuse(d, p, "{\"texts\": \"a\"}", 400, "wrong_type");
    refuse(d, p, "{\"texts\": [\"a\", 2]}", 400, "wrong_type");
    refuse(d, p, "{\"texts\": []}", 422, "empty_batch");
    refuse(d, p, "{\"texts\": [\"a\", \"b\", \"c\", \"d\", \"e\"]}", 413, "too_many_texts");
    refuse(d, p, "{\"text\": \"a\", \"top_k\": 0}", 400, "invalid_field");
    refuse(d, p, "{\"text\": \"a\", \"top_k\": \"3\"}", 400, "invalid_field");
    refuse(d, p, "{\"text\": \"a\", \"saes\": \"a\"}", 400, "wrong_type");
    refuse(d, p, "{\"text\": \"a\", \"saes\": []}", 400, "invalid_field");
    refuse(d, p, "{\"text\": \"a\", \"saes\": [3]}", 400, "wrong_type");
    refuse(d, p, "{\"text\": \"a\", \"saes\": [\"a/b\"]}", 400, "invalid_field");
    refuse(d, p, "{\"text\": \"a\", \"saes\": [\"a\", \"a\"]}", 400, "invalid_field");
    refuse(d, p, "{\"text\": \"a\", \"saes\": [\"zz\"]}", 404, "sae_not_found");
    refuse(d, "/v1/saes/a/encode_text", "{\"text\": \"a\", \"saes\": [\"a\"]}", 400,
           "invalid_field");
    refuse(d, p, "{\"text\": \"a\", \"saes\": [\"a\", \"deep\"]}", 422, "unsupported_hook");
    refuse(d, p, "{\"text\": \"a\", \"saes\": [\"wide\"]}", 422, "hook_width_mismatch");
    refuse(d, p, "{\"text\": \"a\", \"saes\": [\"a\", \"nobos\"]}", 422, "sae_mismatch");
    refuse(d, "/v1/saes/nobos/encode_text", "{\"text\": \"\"}", 422, "empty_text");
    refuse(d, p, "{\"text\": \"the cat is on the mat with a hat and more\"}", 422,
           "text_too_long");
    char big[2100];
    memset(big, 'a', sizeof big);
    memcpy(big, "{\"text\": \"", 10);
    memcpy(big + sizeof big - 3, "\"}", 3);
    refuse(d, p, big, 413, "body_too_large");
}

/* A text of as many short words as fit in the model's n_ctx tokens with the
 * BOS (the SAE a's tokenization); *n: its tokens. */
static void full_text(char *buf, size_t cap, size_t *n)
{
    static const char *const words[] = {"the", "cat", "on", "a", "mat", "re"};
    size_t n_ctx = sae_lm_config_of(lm)->n_ctx, len = 0;
    *n = 0;
    buf[0] = '\0';
    for (size_t w = 0;; w++) {
        char next[256];
        int l = snprintf(next, sizeof next, "%s%s%s", buf, len ? " " : "", words[w % 6]);
        int32_t *ids;
        size_t m;
        sae_error err;
        if (l < 0 || (size_t)l >= cap || (size_t)l >= sizeof next ||
            sae_bpe_encode(bpe, next, (size_t)l, SAE_BPE_BOS, &ids, &m, &err))
            return;
        free(ids);
        if (m > n_ctx)
            return;
        memcpy(buf, next, (size_t)l + 1);
        len = (size_t)l;
        *n = m;
    }
}

/* A request sent from its own thread, answered whenever the daemon can. */
struct holder {
    const struct daemon *d;
    const char *body;
    long status;
    json_t *reply;
    atomic_bool done;
};

/* The holder's thread: one POST /v1/encode_text. */
static void *holder_main(void *arg)
{
    struct holder *h = arg;
    h->reply = post(h->d, "/v1/encode_text", h->body, &h->status);
    atomic_store(&h->done, true);
    http_thread_done();
    return NULL;
}

/* The language model's queue full, with no clock: d's queue holds 64 tokens
 * (max_queue_rows 64, and max_request_texts 4 x n_ctx 16 is no more). Its
 * worker is held still while idle (ptrace, harness.h), so a request of four
 * n-token texts stays on the queue (saed_lm_queue_tokens reads 4n, polled)
 * until the test lets the worker go; a request of n more tokens (4n + n >
 * 64) is refused meanwhile, at once: 503 overloaded with Retry-After, counted
 * in saed_queue_full_total. Then the held request is answered 200, its
 * tokens leave the gauge, and the refused request is taken. */
static void test_lm_queue_full(const struct daemon *d)
{
    char text[200], many[1000], one[300];
    size_t n;
    full_text(text, sizeof text, &n);
    CHECK(4 * n <= 64 && 5 * n > 64, "\"%s\" is %zu tokens: four fill 64 but five do not",
          text, n);
    snprintf(many, sizeof many, "{\"texts\": [\"%s\", \"%s\", \"%s\", \"%s\"]}", text, text,
             text, text);
    snprintf(one, sizeof one, "{\"text\": \"%s\"}", text);
    CHECK(daemon_metric_wait(d, "saed_lm_queue_tokens", 0) == 0, "the queue is empty at first");
    double full0 = daemon_metric(d, "saed_queue_full_total");
    pid_t tid = daemon_thread_hold(d, "saed-lm");
    CHECK(tid > 0, "the language model's worker (thread saed-lm) held still");
    if (tid <= 0)
        return;
    struct holder h = {.d = d, .body = many};
    atomic_init(&h.done, false);
    pthread_t th;
    CHECK(!pthread_create(&th, NULL, holder_main, &h), "holder thread");
    double queued = daemon_metric_wait(d, "saed_lm_queue_tokens", 4.0 * n);
    CHECK(queued == 4.0 * n, "saed_lm_queue_tokens %g with the held request queued, want %zu",
          queued, 4 * n);
    if (queued != 4.0 * n) {
        daemon_thread_release(tid);
        pthread_join(th, NULL);
        json_decref(h.reply);
        return;
    }

    const char *hdr[] = {"Content-Type: application/json", NULL};
    struct http_resp r;
    long st = http(d, "POST", "/v1/encode_text", one, strlen(one), hdr, false, &r);
    json_t *j = json_loadb(r.body, r.len, 0, NULL);
    const char *code = json_string_value(json_object_get(json_object_get(j, "error"), "code"));
    CHECK(st == 503 && code && !strcmp(code, "overloaded") && *r.retry_after,
          "a text past the full queue: %ld %s, Retry-After \"%s\"", st, code ? code : "(none)",
          r.retry_after);
    json_decref(j);
    http_free(&r);
    CHECK(!atomic_load(&h.done), "the held request was answered while its worker was held");
    CHECK(daemon_metric(d, "saed_queue_full_total") == full0 + 1,
          "the refusal counted in saed_queue_full_total");

    daemon_thread_release(tid);
    pthread_join(th, NULL);
    json_t *texts = json_object_get(h.reply, "texts");
    CHECK(h.status == 200 && json_array_size(texts) == 4, "the request holding the queue: %ld",
          h.status);
    for (size_t t = 0; t < json_array_size(texts); t++)
        check_text(json_object_get(json_array_get(texts, t), "tokens"),
                   json_object_get(json_array_get(texts, t), "results"), text, 0, 0);
    json_decref(h.reply);
    /* Its tokens leave the queue before its connection is resumed. */
    CHECK(daemon_metric(d, "saed_lm_queue_tokens") == 0, "the queue's room came back");
    j = post(d, "/v1/encode_text", one, &st);
    CHECK(st == 200 && j, "the refused request, sent again: %ld", st);
    if (j)
        check_text(json_object_get(j, "tokens"), json_object_get(j, "results"), text, 0, 0);
    json_decref(j);
}

/* Stops d and prints how many forward passes its requests took
 * (informative: how many shared a pass depends on timing). */
static void stop(struct daemon *d)
{
    daemon_signal(d, SIGTERM);
    CHECK(daemon_wait(d, 20000) == 0, "exit after SIGTERM");
    FILE *log = fopen(d->log, "r");
    char line[512];
    while (log && fgets(line, sizeof line, log))
        if (strstr(line, "forward passes"))
            printf("%s", line);
    if (log)
        fclose(log);
}

int main(void)
{
    if (setup()) {
        fprintf(stderr, "setup failed\n");
        return 1;
    }
    char sa[N_SAES][512];
    const char *args[4 + 2 * N_SAES + 12];
    size_t n = 0;
    args[n++] = "--quiet";
    for (size_t i = 0; i < N_SAES; i++) {
        snprintf(sa[i], sizeof sa[i], "%.20s=%.400s", saes[i].id, dirs[i]);
        args[n++] = "--sae";
        args[n++] = sa[i];
    }
    args[n++] = "--max-request-texts";
    args[n++] = "4";
    args[n++] = "--max-body-bytes";
    args[n++] = "2048";
    args[n] = NULL;
    struct daemon plain, d;
    if (daemon_start(&plain, NULL, args)) /* no --lm */
        return fprintf(stderr, "saed did not start\n"), 1;
    refuse(&plain, "/v1/encode_text", "{\"text\": \"a\"}", 404, "no_lm");
    json_t *keep;
    CHECK(!model_lm(&plain, "/v1/model", &keep), "without --lm, /v1/model's lm is null");
    json_decref(keep);
    stop(&plain);
    args[n++] = "--lm";
    args[n++] = LM_DIR;
    args[n] = NULL;
    if (daemon_start(&d, NULL, args))
        return fprintf(stderr, "saed --lm did not start\n"), 1;
    test_answers(&d);
    test_model_lm(&d);
    test_concurrent(&d);
    test_refusals(&d);
    stop(&d);
    /* Forward passes of at most 16 tokens (the model's n_ctx): a request of
     * several texts runs as several passes, and concurrent ones rarely share. */
    args[n++] = "--max-batch-rows";
    args[n++] = "16";
    args[n] = NULL;
    struct daemon small;
    if (daemon_start(&small, NULL, args))
        return fprintf(stderr, "saed --lm --max-batch-rows 16 did not start\n"), 1;
    test_answers(&small);
    test_concurrent(&small);
    stop(&small);
    /* A queue of 64 tokens (four whole texts), for the 503. */
    args[n++] = "--max-queue-rows";
    args[n++] = "64";
    args[n++] = "--max-request-rows";
    args[n++] = "64";
    args[n] = NULL;
    struct daemon queue;
    if (daemon_start(&queue, NULL, args))
        return fprintf(stderr, "saed --lm --max-queue-rows 64 did not start\n"), 1;
    test_lm_queue_full(&queue);
    stop(&queue);
    http_thread_done();
    for (size_t i = 0; i < N_SAES; i++)
        sae_model_free(models[i]);
    sae_lm_ws_free(ws);
    sae_lm_free(lm);
    sae_bpe_free(bpe);
    if (!h_failures())
        sae_fixture_rmtree(tmp);
    free(tmp);
    printf("text: %d failed checks\n", h_failures());
    return h_failures() ? 1 : 0;
}
