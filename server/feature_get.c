/* feature_get.c: GET /v1/features/{i} (CONTRACT 5): one feature object with
 * its statistics, histogram, explanations, neighbours, its first
 * FEATURE_TOP_EXAMPLES top examples (the rest from .../examples) and the
 * index's token count n_tokens (so a page can say "n_active of n_tokens"). {i} not a
 * decimal number in [0, d_sae): 404 feature_not_found. No query parameters.
 *
 * An index never changes while a snapshot holds it, so a feature's reply is
 * rendered once per snapshot and kept (feature_cache below), up to
 * feature_cache_mib; the browser's feature pages and scripts ask for the
 * same features again and again. Later replies copy the text: no SQL, no
 * number formatting. With prerender_features on, the cache is filled when
 * the index loads (feature_cache_prerender), so a fresh daemon does not
 * render on its first requests (issue 17: rendering, not reading the index,
 * is what a cold request pays; the index is already held in memory then). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feature_routes.h"
#include "io/clock.h"

/* Most bytes of rendered replies kept per index, and whether they are
 * rendered at load: set once by feature_cache_configure before any index
 * loads, read-only afterwards. */
static size_t cache_budget = (size_t)64 << 20;
static bool cache_prerender = true;
static size_t cache_threads = 1;

/* Most threads rendering at load. */
#define PRERENDER_MAX_THREADS 64

void feature_cache_configure(uint64_t mib, bool prerender, int threads)
{
    cache_budget = mib > SIZE_MAX >> 20 ? SIZE_MAX : (size_t)mib << 20;
    cache_prerender = prerender;
    cache_threads = threads < 1 ? 1 : threads > PRERENDER_MAX_THREADS ? PRERENDER_MAX_THREADS
                                                                      : (size_t)threads;
}

/* One rendered reply: len bytes and a NUL. */
struct cached {
    size_t len;
    char text[];
};

/* The rendered replies of one snapshot: a slot per feature, filled once
 * (compare-and-swap; the loser of a race frees its copy) and freed with the
 * snapshot. */
struct feature_cache {
    size_t n;
    _Atomic(struct cached *) *slot; /* (n) */
    atomic_size_t bytes;
};

struct feature_cache *feature_cache_new(size_t n)
{
    struct feature_cache *fc = calloc(1, sizeof *fc);
    if (!fc)
        return NULL;
    fc->n = n;
    fc->slot = calloc(n ? n : 1, sizeof *fc->slot);
    if (!fc->slot) {
        free(fc);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        atomic_init(&fc->slot[i], NULL);
    atomic_init(&fc->bytes, 0);
    return fc;
}

void feature_cache_free(struct feature_cache *fc)
{
    if (!fc)
        return;
    for (size_t i = 0; i < fc->n; i++)
        free(atomic_load(&fc->slot[i]));
    free(fc->slot);
    free(fc);
}

/* Keeps a copy of a rendered reply unless the budget is spent; false when
 * it was not kept for lack of room. */
static bool cache_put(struct feature_cache *fc, uint64_t i, const char *text, size_t len)
{
    if (atomic_fetch_add(&fc->bytes, len) + len > cache_budget) {
        atomic_fetch_sub(&fc->bytes, len);
        return false;
    }
    struct cached *c = malloc(sizeof *c + len + 1);
    if (!c) {
        atomic_fetch_sub(&fc->bytes, len);
        return false;
    }
    c->len = len;
    memcpy(c->text, text, len);
    c->text[len] = '\0';
    struct cached *none = NULL;
    if (!atomic_compare_exchange_strong(&fc->slot[i], &none, c)) {
        atomic_fetch_sub(&fc->bytes, len);
        free(c);
    }
    return true;
}

/* Renders feature i's reply (the feature object and a newline, "n of
 * n_tokens" its denominator) into b,
 * which it initialises; 0, or a sae_status with err set and b freed. */
static int render_feature(sae_store_conn *c, uint64_t i, uint64_t n_tokens,
                          const struct index_labels *labels, struct saed_buf *b, sae_error *err)
{
    sae_store_feature f;
    int rc = sae_store_get_feature(c, i, &f, err);
    buf_init(b, FEATURES_REPLY_LIMIT, 8192);
    if (!rc)
        rc = index_json_feature(b, c, &f, FEATURE_TOP_EXAMPLES, n_tokens, labels, err);
    if (rc) {
        buf_free(b);
        return rc;
    }
    buf_putc(b, '\n');
    return 0;
}

/* The state the prerendering threads share: the next feature to render, and
 * whether to stop (the budget is spent, or one failed: its message in err). */
struct prerender {
    struct feature_cache *fc;           /* borrowed */
    sae_store *index;                   /* borrowed */
    const struct index_labels *labels;  /* borrowed */
    atomic_size_t next, rendered;
    atomic_bool stop;
    pthread_mutex_t lock;               /* guards err */
    sae_error err;
    bool failed;
};

/* One prerendering thread: its own index connection, features taken one at
 * a time from the shared counter until the cache is full or all are in. */
static void *prerender_main(void *arg)
{
    struct prerender *p = arg;
    sae_store_conn *c = NULL;
    sae_error err;
    int rc = sae_store_connect(p->index, &c, &err);
    if (rc)
        c = NULL;
    while (!rc && !atomic_load(&p->stop)) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->fc->n)
            break;
        struct saed_buf b;
        if ((rc = render_feature(c, i, sae_store_get_info(p->index)->n_tokens, p->labels, &b, &err)))
            break;
        /* A reply past FEATURES_REPLY_LIMIT is answered with its error
         * on request, never cached; a full cache ends the prerendering. */
        bool kept = b.failed || cache_put(p->fc, i, b.data, b.len);
        if (!kept)
            atomic_store(&p->stop, true);
        else if (!b.failed)
            atomic_fetch_add(&p->rendered, 1);
        buf_free(&b);
    }
    sae_store_disconnect(c);
    if (rc) {
        atomic_store(&p->stop, true);
        pthread_mutex_lock(&p->lock);
        if (!p->failed)
            p->err = err;
        p->failed = true;
        pthread_mutex_unlock(&p->lock);
    }
    return NULL;
}

void feature_cache_prerender(struct feature_cache *fc, sae_store *index,
                             const struct index_labels *labels, const char *path)
{
    if (!fc || !cache_prerender || !cache_budget)
        return;
    int64_t t0 = sae_clock_us();
    struct prerender p = {.fc = fc, .index = index, .labels = labels};
    atomic_init(&p.next, 0);
    atomic_init(&p.rendered, 0);
    atomic_init(&p.stop, false);
    pthread_mutex_init(&p.lock, NULL);
    pthread_t tid[PRERENDER_MAX_THREADS];
    size_t started = 0;
    while (started + 1 < cache_threads &&
           pthread_create(&tid[started], NULL, prerender_main, &p) == 0)
        started++;
    prerender_main(&p); /* this thread is one of them */
    for (size_t t = 0; t < started; t++)
        pthread_join(tid[t], NULL);
    pthread_mutex_destroy(&p.lock);
    if (p.failed)
        fprintf(stderr, "saed: %s: rendering feature replies at load stopped: %s\n", path,
                p.err.msg);
    fprintf(stderr,
            "saed: %s: %zu of %zu feature replies rendered at load (%.1f MiB) in %.0f ms, "
            "%zu threads\n",
            path, atomic_load(&p.rendered), fc->n, (double)atomic_load(&fc->bytes) / (1 << 20),
            (double)(sae_clock_us() - t0) / 1e3, started + 1);
}

/* GET /v1/features/{i}. */
enum MHD_Result feature_get(struct saed_req *rq)
{
    enum MHD_Result r;
    uint64_t i;
    if (!rq->snap->index)
        return reply_no_index(rq);
    if (feature_arg(rq, rq->args[0], &i, &r) || query_none(rq, &r))
        return r;
    struct feature_cache *fc = rq->snap->feature_cache;
    struct cached *hit = fc && i < fc->n ? atomic_load(&fc->slot[i]) : NULL;
    if (hit) {
        char *copy = malloc(hit->len + 1);
        if (!copy)
            return reply_error(rq, 503, "out_of_memory", "cannot copy a reply");
        memcpy(copy, hit->text, hit->len + 1);
        return reply_json_buf(rq, 200, copy, hit->len);
    }
    sae_store_conn *c = index_conn(rq, &r);
    if (!c)
        return r;
    sae_error err;
    struct saed_buf b;
    int rc = render_feature(c, i, sae_store_get_info(rq->snap->index)->n_tokens, rq->snap->labels, &b, &err);
    if (rc)
        return reply_store_error(rq, rc, &err);
    if (fc && i < fc->n && !b.failed)
        cache_put(fc, i, b.data, b.len);
    return reply_buf(rq, &b);
}
