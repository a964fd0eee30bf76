/* index_conn.c: the plumbing every feature route shares (feature_routes.h): the
 * per-thread index connection, path and query parsing, replies for store
 * errors, the index summary of /v1/model and its log line. */
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "feature_routes.h"
#include "saes.h"

/* Connections one thread keeps, one per index it served lately: with many
 * SAEs, feature requests alternate between indexes, and opening a
 * connection prepares a dozen statements. */
#define TL_SLOTS 16

/* One thread's connections, each tagged with the index (saed_ix tag) it was
 * opened for, and when it was last used (a counter). */
struct tl_conn {
    sae_store_conn *c[TL_SLOTS]; /* owned */
    uint64_t tag[TL_SLOTS];
    uint64_t used[TL_SLOTS];
    const struct saed_sae *owner[TL_SLOTS]; /* borrowed: whose index each is */
    uint64_t clock;
};

static pthread_key_t tl_key;
static pthread_once_t tl_once = PTHREAD_ONCE_INIT;
static int tl_key_rc;

/* Thread exit: closes the thread's connections. Their indexes may be closed
 * already; closing a SQLite connection does not touch the index. */
static void tl_free(void *p)
{
    struct tl_conn *t = p;
    for (size_t i = 0; i < TL_SLOTS; i++)
        sae_store_disconnect(t->c[i]);
    free(t);
}

/* Creates the key once per process. */
static void tl_init(void)
{
    tl_key_rc = pthread_key_create(&tl_key, tl_free);
}

enum MHD_Result reply_no_index(struct saed_req *rq)
{
    return reply_error(rq, 404, "no_index",
                       "no feature index is loaded for the SAE '%s' (start saed with --index "
                       "FILE.db, or --index ID=FILE.db)",
                       rq->sae ? rq->sae->id : "default");
}

sae_store_conn *index_conn_ix(struct saed_req *rq, struct saed_ix *ix, enum MHD_Result *r)
{
    pthread_once(&tl_once, tl_init);
    if (tl_key_rc) {
        *r = reply_error(rq, 500, "internal", "cannot create thread-local storage");
        return NULL;
    }
    struct tl_conn *t = pthread_getspecific(tl_key);
    if (!t) {
        t = calloc(1, sizeof *t);
        if (!t || pthread_setspecific(tl_key, t)) {
            free(t);
            *r = reply_error(rq, 503, "out_of_memory", "cannot hold an index connection");
            return NULL;
        }
    }
    /* A hit; else the slot of an older index of the same SAE (a reload
     * made it stale: its connection would only hold memory), else an empty
     * slot, else the one used least recently. */
    size_t lru = 0;
    bool stale = false;
    for (size_t i = 0; i < TL_SLOTS; i++) {
        if (t->c[i] && t->tag[i] == ix->tag) {
            t->used[i] = ++t->clock;
            return t->c[i];
        }
        if (stale)
            continue;
        if (t->c[i] && t->owner[i] == ix->owner) {
            lru = i;
            stale = true;
        } else if (!t->c[i] || (t->c[lru] && t->used[i] < t->used[lru])) {
            lru = i;
        }
    }
    sae_store_disconnect(t->c[lru]);
    t->c[lru] = NULL;
    sae_error err;
    if (sae_store_connect(ix->index, &t->c[lru], &err)) {
        *r = reply_error(rq, 500, "index_error", "%s", err.msg);
        return NULL;
    }
    t->tag[lru] = ix->tag;
    t->owner[lru] = ix->owner;
    t->used[lru] = ++t->clock;
    return t->c[lru];
}

sae_store_conn *index_conn(struct saed_req *rq, enum MHD_Result *r)
{
    if (!rq->snap->ix) {
        *r = reply_no_index(rq);
        return NULL;
    }
    return index_conn_ix(rq, rq->snap->ix, r);
}

int feature_arg(struct saed_req *rq, const char *s, uint64_t *out, enum MHD_Result *r)
{
    uint64_t d_sae = rq->snap->model->d_sae, v = 0;
    const char *p = s;
    bool ok = *p != '\0';
    for (; ok && *p; p++) {
        if (*p < '0' || *p > '9' || v > (UINT64_MAX - 9) / 10) {
            ok = false;
            break;
        }
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (ok && v < d_sae) {
        *out = v;
        return 0;
    }
    *r = reply_error(rq, 404, "feature_not_found",
                     "'%.40s' is not a feature of this SAE (0 to %" PRIu64 ")", s, d_sae - 1);
    return -1;
}

/* MHD iterator state for query_collect. */
struct collect_ctx {
    struct query_spec *q;
};

/* One query parameter: known, not repeated. */
static enum MHD_Result collect_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                   const char *value)
{
    (void)kind;
    struct query_spec *q = ((struct collect_ctx *)cls)->q;
    for (size_t i = 0; i < q->n; i++) {
        if (strcmp(key, q->names[i]))
            continue;
        if (q->values[i]) {
            snprintf(q->bad, sizeof q->bad, "query parameter \"%.40s\" appears twice", key);
            return MHD_NO;
        }
        q->values[i] = value ? value : "";
        return MHD_YES;
    }
    char allowed[160] = "";
    for (size_t i = 0; i < q->n; i++) {
        strncat(allowed, q->names[i], sizeof allowed - strlen(allowed) - 1);
        if (i + 1 < q->n)
            strncat(allowed, ", ", sizeof allowed - strlen(allowed) - 1);
    }
    if (q->n)
        snprintf(q->bad, sizeof q->bad, "unknown query parameter \"%.40s\" (allowed: %s)", key,
                 allowed);
    else
        snprintf(q->bad, sizeof q->bad,
                 "unknown query parameter \"%.40s\" (this route takes no parameters)", key);
    return MHD_NO;
}

int query_collect(struct saed_req *rq, struct query_spec *q)
{
    struct collect_ctx ctx = {.q = q};
    q->bad[0] = '\0';
    for (size_t i = 0; i < q->n; i++)
        q->values[i] = NULL;
    MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, collect_one, &ctx);
    return q->bad[0] ? -1 : 0;
}

int query_none(struct saed_req *rq, enum MHD_Result *r)
{
    static const char *const none[1] = {""};
    struct query_spec qs = {.names = none, .n = 0};
    if (!query_collect(rq, &qs))
        return 0;
    *r = reply_error(rq, 400, "invalid_query", "%s", qs.bad);
    return -1;
}

int query_uint(struct query_spec *q, size_t which, uint64_t def, uint64_t max, uint64_t *out)
{
    const char *v = q->values[which];
    if (!v) {
        *out = def;
        return 0;
    }
    uint64_t x = 0;
    bool ok = *v != '\0';
    for (const char *p = v; ok && *p; p++) {
        if (*p < '0' || *p > '9' || (uint64_t)(*p - '0') > max ||
            x > (max - (uint64_t)(*p - '0')) / 10)
            ok = false;
        else
            x = x * 10 + (uint64_t)(*p - '0');
    }
    if (!ok) {
        snprintf(q->bad, sizeof q->bad, "%s: \"%.40s\" is not an integer from 0 to %" PRIu64,
                 q->names[which], v, max);
        return -1;
    }
    *out = x;
    return 0;
}

/* Whether c separates words (the store's definition). */
static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

int query_words(struct query_spec *q, size_t which, char **out, size_t *n)
{
    const char *v = q->values[which] ? q->values[which] : "";
    const char *word[QUERY_MAX_WORDS];
    size_t wlen[QUERY_MAX_WORDS];
    char *o = *out = malloc(strlen(v) + 1);
    *n = 0;
    if (!o)
        return -2;
    for (const char *p = v; *p;) {
        while (is_space(*p))
            p++;
        const char *w = p;
        while (*p && !is_space(*p))
            p++;
        size_t l = (size_t)(p - w);
        bool seen = l == 0;
        for (size_t i = 0; i < *n && !seen; i++)
            seen = wlen[i] == l && !strncasecmp(word[i], w, l);
        if (seen)
            continue;
        if (*n == QUERY_MAX_WORDS) {
            free(*out);
            *out = NULL;
            snprintf(q->bad, sizeof q->bad, "%s: more than %d distinct words", q->names[which],
                     QUERY_MAX_WORDS);
            return -1;
        }
        word[*n] = w;
        wlen[(*n)++] = l;
        if (o != *out)
            *o++ = ' ';
        memcpy(o, w, l);
        o += l;
    }
    *o = '\0';
    return 0;
}

enum MHD_Result reply_buf(struct saed_req *rq, struct saed_buf *b)
{
    size_t len;
    char *body = buf_steal(b, &len);
    if (!body)
        return reply_error(rq, 500, "reply_too_large", "the reply exceeds %zu bytes",
                           FEATURES_REPLY_LIMIT);
    return reply_json_buf(rq, 200, body, len);
}

enum MHD_Result reply_store_error(struct saed_req *rq, int rc, const sae_error *err)
{
    if (rc == SAE_ERANGE)
        return reply_error(rq, 404, "feature_not_found", "%s", err->msg);
    if (rc == SAE_ENOMEM)
        return reply_error(rq, 503, "out_of_memory", "%s", err->msg);
    return reply_error(rq, 500, "index_error", "%s", err->msg);
}

const char *features_source_id(const struct saed_req *rq)
{
    return saes_source_id(rq->srv, rq->snap);
}

json_t *index_summary(const struct saed_snap *snap)
{
    if (!snap->index)
        return json_null();
    const sae_store_info *i = sae_store_get_info(snap->index);
    json_t *o = json_object(), *b = json_object();
    if (!o || !b) {
        json_decref(o);
        json_decref(b);
        return json_null();
    }
    json_object_set_new(o, "path", json_string(sae_store_path(snap->index)));
    json_object_set_new(o, "file_digest", json_string(snap->index_digest));
    json_object_set_new(o, "schema_version", json_integer(i->schema_version));
    json_object_set_new(o, "weights_digest", json_string(i->weights_digest));
    json_object_set_new(o, "d_in", json_integer((json_int_t)i->d_in));
    json_object_set_new(o, "d_sae", json_integer((json_int_t)i->d_sae));
    json_object_set_new(o, "n_features", json_integer((json_int_t)i->d_sae));
    json_object_set_new(o, "n_tokens", json_integer((json_int_t)i->n_tokens));
    json_object_set_new(o, "n_documents", json_integer((json_int_t)i->n_documents));
    json_object_set_new(o, "corpus_tokens", json_integer((json_int_t)i->corpus_tokens));
    json_object_set_new(o, "corpus_documents", json_integer((json_int_t)i->corpus_documents));
    json_object_set_new(o, "tokens_digest", json_string(i->tokens_digest));
    json_object_set_new(o, "n_explanations", json_integer((json_int_t)i->n_explanations));
    json_object_set_new(o, "explanations_digest", json_string(i->explanations_digest));
    json_object_set_new(o, "shard", *i->shard ? json_string(i->shard) : json_null());
    json_object_set_new(b, "top", json_integer(i->top));
    json_object_set_new(b, "quantiles", json_integer(i->quantiles));
    json_object_set_new(b, "per_quantile", json_integer(i->per_quantile));
    json_object_set_new(b, "context", json_integer(i->context));
    json_object_set_new(b, "neighbours", json_integer(i->neighbours));
    /* A u64 seed can exceed JSON's safe integers: a string keeps it exact. */
    char seed[24];
    snprintf(seed, sizeof seed, "%" PRIu64, i->seed);
    json_object_set_new(b, "seed", json_string(seed));
    json_object_set_new(b, "block_rows", json_integer(i->block_rows));
    json_object_set_new(b, "histogram", json_string(i->histogram));
    json_object_set_new(o, "build", b);
    return o;
}

void features_log_index(const struct saed_snap *snap)
{
    if (!snap || !snap->index)
        return;
    const sae_store_info *i = sae_store_get_info(snap->index);
    fprintf(stderr,
            "saed: index %s: %" PRIu64 " features, %" PRIu64 " tokens in %" PRIu64
            " documents, %" PRIu64 " explanations, file %s\n",
            sae_store_path(snap->index), i->d_sae, i->n_tokens, i->n_documents, i->n_explanations,
            snap->index_digest);
}
