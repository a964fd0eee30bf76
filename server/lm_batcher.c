/* lm_batcher.c: the language model's queue and worker (lm_batcher.h). */
#include "lm_batcher.h"

#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* The worker's buffers for a batch of several jobs: the gathered ids and
 * lengths, and one activation buffer per distinct hook, grown as needed and
 * kept between batches. Owned by the batcher. */
struct lm_scratch {
    uint32_t *ids;
    size_t ids_cap;
    size_t *lens;
    size_t lens_cap;
    float *acts[LM_BATCH_HOOKS];
    size_t acts_cap[LM_BATCH_HOOKS];
};

/* The queue (FIFO of jobs' nodes) and its worker. `lock` guards the queue,
 * `tokens` and `stop`. */
struct lm_batcher {
    const sae_lm *lm;               /* borrowed */
    sae_lm_ws *ws;                  /* owned: max_batch tokens */
    size_t max_batch, max_queue;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    struct jobq q;
    size_t tokens;                  /* queued + running */
    bool stop;
    bool started;
    pthread_t thread;
    _Atomic uint64_t passes, jobs;
    struct lm_scratch s;
};

/* The job whose node n is (NULL for NULL). */
static struct lm_job *job_of(struct jobq_node *n)
{
    return n ? (struct lm_job *)((char *)n - offsetof(struct lm_job, node)) : NULL;
}

/* The job after j in its queue or batch, or NULL. */
static struct lm_job *job_next(const struct lm_job *j)
{
    return job_of(j->node.next);
}

/* Whether hooks a and b are the same site and block. */
static bool same_hook(const sae_lm_hook *a, const sae_lm_hook *b)
{
    return a->site == b->site && a->layer == b->layer;
}

/* h's index in the n hooks u, or n. */
static size_t hook_at(const sae_lm_hook *u, size_t n, const sae_lm_hook *h)
{
    size_t i = 0;
    while (i < n && !same_hook(&u[i], h))
        i++;
    return i;
}

/* Adds job's hooks that u (n of them) lacks; false, changing nothing, when
 * that would make more than LM_BATCH_HOOKS. */
static bool union_hooks(sae_lm_hook *u, size_t *n, const struct lm_job *job)
{
    size_t m = *n;
    for (size_t i = 0; i < job->n_hooks; i++) {
        if (hook_at(u, m, &job->hooks[i]) < m)
            continue;
        if (m == LM_BATCH_HOOKS)
            return false;
        u[m++] = job->hooks[i];
    }
    *n = m;
    return true;
}

/* Takes the next batch off the queue (lock held): the head, then every job
 * that still fits, in queue order; the others keep theirs. */
static struct lm_job *gather(struct lm_batcher *b, sae_lm_hook *u, size_t *n_u,
                             size_t *tokens)
{
    struct lm_job *first = job_of(jobq_unlink(&b->q, &b->q.head, NULL));
    struct jobq_node *tail = &first->node;
    *n_u = 0;
    union_hooks(u, n_u, first);
    *tokens = first->n_tokens;
    struct jobq_node **pp = &b->q.head, *prev = NULL;
    while (*pp && *tokens < b->max_batch) {
        struct lm_job *j = job_of(*pp);
        if (*tokens + j->n_tokens > b->max_batch || !union_hooks(u, n_u, j)) {
            prev = *pp;
            pp = &prev->next;
            continue;
        }
        tail->next = jobq_unlink(&b->q, pp, prev);
        tail = tail->next;
        *tokens += j->n_tokens;
    }
    return first;
}

/* Makes *p hold at least n elements of size sz (kept when it does). */
static int grow(void **p, size_t *cap, size_t n, size_t sz)
{
    if (*cap >= n)
        return 0;
    void *q = realloc(*p, n * sz);
    if (!q)
        return -1;
    *p = q;
    *cap = n;
    return 0;
}

/* Runs several jobs as one ragged forward pass over the distinct hooks u,
 * then gives each job its rows of each hook it asked for. */
static int run_many(struct lm_batcher *b, struct lm_job *batch, const sae_lm_hook *u,
                    size_t n_u, size_t tokens, sae_error *err)
{
    struct lm_scratch *s = &b->s;
    size_t n_seq = 0;
    for (struct lm_job *j = batch; j; j = job_next(j))
        n_seq += j->n_seq;
    if (grow((void **)&s->ids, &s->ids_cap, tokens, sizeof *s->ids) ||
        grow((void **)&s->lens, &s->lens_cap, n_seq, sizeof *s->lens))
        return sae_error_set(err, SAE_ENOMEM, "no memory to gather %zu tokens", tokens);
    for (size_t i = 0; i < n_u; i++)
        if (grow((void **)&s->acts[i], &s->acts_cap[i], tokens * sae_lm_hook_width(b->lm, &u[i]),
                 sizeof(float)))
            return sae_error_set(err, SAE_ENOMEM, "no memory for %zu tokens of activations",
                                 tokens);
    size_t t = 0, q = 0;
    for (struct lm_job *j = batch; j; j = job_next(j)) {
        memcpy(s->ids + t, j->ids, j->n_tokens * sizeof *s->ids);
        memcpy(s->lens + q, j->lens, j->n_seq * sizeof *s->lens);
        t += j->n_tokens;
        q += j->n_seq;
    }
    sae_lm_batch lb = {.ids = s->ids, .n_seq = n_seq, .lens = s->lens};
    if (sae_lm_forward(b->lm, b->ws, &lb, u, n_u, s->acts, NULL, err))
        return -1;
    t = 0;
    for (struct lm_job *j = batch; j; j = job_next(j)) {
        for (size_t k = 0; k < j->n_hooks; k++) {
            size_t i = hook_at(u, n_u, &j->hooks[k]), w = sae_lm_hook_width(b->lm, &u[i]);
            memcpy(j->out[k], s->acts[i] + t * w, j->n_tokens * w * sizeof(float));
        }
        t += j->n_tokens;
    }
    return 0;
}

/* Runs one job alone, straight into its buffers: as one forward pass when
 * it fits under max_batch tokens, else as several, each of whole sequences
 * (every sequence fits: it is at most n_ctx, which max_batch is not under). */
static int run_one(struct lm_batcher *b, struct lm_job *job, sae_error *err)
{
    size_t t = 0, q = 0;
    while (q < job->n_seq) {
        size_t q1 = q, t1 = t;
        while (q1 < job->n_seq && (q1 == q || t1 + job->lens[q1] - t <= b->max_batch))
            t1 += job->lens[q1++];
        float *out[LM_BATCH_HOOKS];
        for (size_t k = 0; k < job->n_hooks; k++)
            out[k] = job->out[k] + t * sae_lm_hook_width(b->lm, &job->hooks[k]);
        sae_lm_batch lb = {.ids = job->ids + t, .n_seq = q1 - q, .lens = job->lens + q};
        if (sae_lm_forward(b->lm, b->ws, &lb, job->hooks, job->n_hooks, out, NULL, err))
            return -1;
        atomic_fetch_add_explicit(&b->passes, 1, memory_order_relaxed);
        t = t1;
        q = q1;
    }
    return 0;
}

/* Runs one batch to completion: the forward pass (a lone job straight into
 * its buffers), then each job's finish. */
static void run_batch(struct lm_batcher *b, struct lm_job *batch, const sae_lm_hook *u,
                      size_t n_u, size_t tokens)
{
    sae_error err;
    int rc;
    if (!batch->node.next) {
        rc = run_one(b, batch, &err);
    } else {
        rc = run_many(b, batch, u, n_u, tokens, &err);
        atomic_fetch_add_explicit(&b->passes, 1, memory_order_relaxed);
    }
    for (struct lm_job *j = batch; j; j = job_next(j)) {
        atomic_fetch_add_explicit(&b->jobs, 1, memory_order_relaxed);
        j->rc = rc;
        if (rc)
            j->err = err;
        else if (j->finish)
            j->finish(j, j->ctx);
    }
}

/* The worker: takes a batch, runs it, hands each job back and resumes its
 * connection. */
static void *worker_main(void *arg)
{
    struct lm_batcher *b = arg;
    sae_lm_hook u[LM_BATCH_HOOKS];
    for (;;) {
        pthread_mutex_lock(&b->lock);
        while (!b->q.head && !b->stop)
            pthread_cond_wait(&b->cv, &b->lock);
        if (!b->q.head) {
            pthread_mutex_unlock(&b->lock);
            return NULL;
        }
        size_t n_u, tokens;
        struct lm_job *batch = gather(b, u, &n_u, &tokens);
        pthread_mutex_unlock(&b->lock);

        run_batch(b, batch, u, n_u, tokens);

        pthread_mutex_lock(&b->lock);
        b->tokens -= tokens;
        pthread_mutex_unlock(&b->lock);
        jobq_hand_back(&b->q, &batch->node);
    }
}

int lm_batcher_new(const sae_lm *lm, size_t max_batch_tokens, size_t max_queue_tokens,
                   struct lm_batcher **out, sae_error *err)
{
    struct lm_batcher *b = calloc(1, sizeof *b);
    if (!b)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    b->lm = lm;
    b->max_batch = max_batch_tokens;
    b->max_queue = max_queue_tokens;
    jobq_init(&b->q);
    atomic_init(&b->passes, 0);
    atomic_init(&b->jobs, 0);
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cv, NULL);
    *out = b;
    if (!(b->ws = sae_lm_ws_new(lm, max_batch_tokens)))
        return sae_error_set(err, SAE_ENOMEM, "no memory for %zu tokens of scratch",
                             max_batch_tokens);
    int e = pthread_create(&b->thread, NULL, worker_main, b);
    if (e)
        return sae_error_set(err, SAE_EIO, "cannot start the language model's thread: %s",
                             strerror(e));
    b->started = true;
    /* Named for top -H, gdb and /proc/PID/task/TID/comm (test_text.c finds
     * the worker by this name to hold it still); a failure only loses it. */
    pthread_setname_np(b->thread, "saed-lm");
    return 0;
}

/* Reserves the job's tokens, suspends its connection, then queues it (in
 * that order, so the worker's resume can never come before the suspend). */
int lm_batcher_submit(struct lm_batcher *b, struct lm_job *job)
{
    pthread_mutex_lock(&b->lock);
    bool ok = !b->stop && b->tokens + job->n_tokens <= b->max_queue;
    if (ok)
        b->tokens += job->n_tokens;
    pthread_mutex_unlock(&b->lock);
    if (!ok)
        return -1;
    job->node.notify = NULL;
    MHD_suspend_connection(job->node.conn);
    pthread_mutex_lock(&b->lock);
    jobq_push(&b->q, &job->node);
    pthread_cond_signal(&b->cv);
    pthread_mutex_unlock(&b->lock);
    return 0;
}

size_t lm_batcher_pending(const struct lm_batcher *b)
{
    return b ? jobq_pending(&b->q) : 0;
}

size_t lm_batcher_tokens(struct lm_batcher *b)
{
    if (!b)
        return 0;
    pthread_mutex_lock(&b->lock);
    size_t n = b->tokens;
    pthread_mutex_unlock(&b->lock);
    return n;
}

void lm_batcher_counts(struct lm_batcher *b, uint64_t *passes, uint64_t *jobs)
{
    *passes = atomic_load_explicit(&b->passes, memory_order_relaxed);
    *jobs = atomic_load_explicit(&b->jobs, memory_order_relaxed);
}

void lm_batcher_free(struct lm_batcher *b)
{
    if (!b)
        return;
    if (b->started) {
        pthread_mutex_lock(&b->lock);
        b->stop = true;
        pthread_cond_broadcast(&b->cv);
        pthread_mutex_unlock(&b->lock);
        pthread_join(b->thread, NULL);
    }
    sae_lm_ws_free(b->ws);
    free(b->s.ids);
    free(b->s.lens);
    for (size_t i = 0; i < LM_BATCH_HOOKS; i++)
        free(b->s.acts[i]);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->lock);
    free(b);
}
