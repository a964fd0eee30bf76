/* batcher.c: the bounded queue and the encode/decode workers (batcher.h). */
#include "batcher.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "io/clock.h"
#include "metrics.h"
#include "saed.h"

/* Largest block one workspace holds: its dense buffer is block x d_sae
 * floats (50 MB at d_sae 24576), so a larger batch runs as several GEMMs. */
#define WS_MAX_BLOCK 512

/* One worker thread and the scratch it keeps between batches: one
 * workspace sized for the widest SAE it has served, used for every SAE
 * (CONTRACT 7: no per-SAE buffers), so it holds no snapshot. */
struct worker {
    struct saed_batcher *b;         /* borrowed */
    pthread_t thread;
    sae_workspace *ws;              /* owned; NULL when idle-dropped */
    size_t d_in, d_sae;             /* what ws, x and recon are sized for */
    uint64_t kick_seen;
    float *x;                       /* (max_batch_rows, d_in) gathered rows */
    float *recon;                   /* (max_batch_rows, d_in) */
    sae_row_metrics *metrics;       /* (max_batch_rows) */
    sae_sparse sp;                  /* the unfiltered batch output */
};

/* The queue (FIFO of jobs' nodes) and its workers. `lock` guards the
 * queue's head and tail, `rows`, `gathering`, `stop`, `incoming`, `returning`,
 * `returning_until_us`, `gemm_us` and `kick_gen`. */
struct saed_batcher {
    struct saed_batcher_opts o;
    struct saed_metrics *metrics;   /* borrowed */
    pthread_mutex_t lock;
    pthread_cond_t cv;              /* queue changed / gatherer done / stop */
    struct jobq q;
    size_t rows;                    /* queued + running */
    bool gathering;
    bool stop;
    long incoming;                  /* see batcher_incoming */
    long returning;                 /* encode clients answered lately, not back yet */
    int64_t returning_until_us;     /* after this, `returning` no longer holds a gatherer */
    int64_t gemm_us;                /* how long the last encode batch ran (0: none yet) */
    uint64_t kick_gen;
    size_t n_workers;
    struct worker *workers;         /* (n_workers) */
};

/* The job whose node n is (NULL for NULL). */
static struct saed_job *job_of(struct jobq_node *n)
{
    return n ? (struct saed_job *)((char *)n - offsetof(struct saed_job, node)) : NULL;
}

/* The job after j in its queue or batch, or NULL. */
static struct saed_job *job_next(const struct saed_job *j)
{
    return job_of(j->node.next);
}

/* A zeroed job of the given kind. */
struct saed_job *job_new(enum saed_job_kind kind)
{
    struct saed_job *job = calloc(1, sizeof *job);
    if (!job)
        return NULL;
    job->kind = kind;
    sae_sparse_init(&job->out);
    sae_sparse_init(&job->codes);
    atomic_init(&job->node.done, false);
    return job;
}

/* Sizes the outputs for job->n_rows rows: l0 (and metrics) for encode, the
 * dense rows for decode or an encode with reconstruction. */
int job_alloc_outputs(struct saed_job *job, size_t d_in, sae_error *err)
{
    size_t n = job->n_rows ? job->n_rows : 1, nd;
    if (sae_mul_size(n, d_in, &nd) || nd > SIZE_MAX / sizeof(float))
        return sae_error_set(err, SAE_ENOMEM, "%zu rows of %zu floats is too large", n, d_in);
    if (job->kind == JOB_ENCODE) {
        job->l0 = malloc(n * sizeof *job->l0);
        if (!job->l0)
            goto oom;
        if (job->want_metrics && !(job->metrics = malloc(n * sizeof *job->metrics)))
            goto oom;
    }
    if ((job->kind == JOB_DECODE || job->want_recon) &&
        !(job->dense = malloc(nd * sizeof *job->dense)))
        goto oom;
    return 0;
oom:
    return sae_error_set(err, SAE_ENOMEM, "out of memory for %zu rows", n);
}

/* Frees the job with its inputs and outputs. */
void job_free(struct saed_job *job)
{
    if (!job)
        return;
    sae_sparse_free(&job->out);
    sae_sparse_free(&job->codes);
    free(job->x_own);
    free(job->l0);
    free(job->metrics);
    free(job->dense);
    free(job);
}

/* Drops the worker's workspace. */
static void worker_drop(struct worker *w)
{
    sae_workspace_free(w->ws);
    w->ws = NULL;
    free(w->x);
    free(w->recon);
    free(w->metrics);
    w->x = w->recon = NULL;
    w->metrics = NULL;
    w->d_in = w->d_sae = 0;
}

/* Makes the worker's scratch fit snap's model: kept when it is wide
 * enough, else made again as wide as both. */
static int worker_prepare(struct worker *w, struct saed_snap *snap, sae_error *err)
{
    const sae_model *m = snap->model;
    if (sae_workspace_fits(w->ws, m) && w->d_in >= m->d_in)
        return 0;
    size_t d_in = m->d_in > w->d_in ? m->d_in : w->d_in;
    size_t d_sae = m->d_sae > w->d_sae ? m->d_sae : w->d_sae;
    worker_drop(w);
    size_t rows = w->b->o.max_batch_rows, block = rows < WS_MAX_BLOCK ? rows : WS_MAX_BLOCK;
    size_t nd;
    if (sae_mul_size(rows, d_in, &nd) || nd > SIZE_MAX / sizeof(float))
        return sae_error_set(err, SAE_ENOMEM, "max_batch_rows x d_in too large");
    w->ws = sae_workspace_new_dims(d_in, d_sae, block);
    w->x = malloc(nd * sizeof *w->x);
    w->recon = malloc(nd * sizeof *w->recon);
    w->metrics = malloc(rows * sizeof *w->metrics);
    if (!w->ws || !w->x || !w->recon || !w->metrics) {
        worker_drop(w);
        return sae_error_set(err, SAE_ENOMEM, "out of memory for a worker workspace");
    }
    w->d_in = d_in;
    w->d_sae = d_sae;
    return 0;
}

/* Whether all n values are finite (v * 0 is NaN exactly for inf and NaN),
 * written so the compiler vectorises it. */
static bool all_finite(const float *v, size_t n)
{
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++)
        acc += v[i] * 0.0f;
    return acc == 0.0f;
}

/* Gives each job of the batch its rows of w->sp, filtered by its options. */
static void distribute(struct worker *w, struct saed_job *batch, bool single, size_t d_in)
{
    size_t r0 = 0;
    for (struct saed_job *j = batch; j; j = job_next(j)) {
        for (size_t i = 0; i < j->n_rows && !j->rc; i++) {
            size_t r = r0 + i;
            size_t a = w->sp.row_ptr[r], n = w->sp.row_ptr[r + 1] - a;
            const float *val = w->sp.val + a;
            j->l0[i] = (uint32_t)n;
            size_t keep = n;
            if (j->has_threshold) {
                keep = 0;
                while (keep < n && val[keep] > j->threshold)
                    keep++;
            }
            if (j->top_k && j->top_k < keep)
                keep = j->top_k;
            if (!all_finite(val, n)) {
                j->rc = sae_error_set(&j->err, SAE_ERANGE, "row %zu: the SAE output is not finite",
                                      i);
                j->bad_row = i;
                break;
            }
            j->rc = sae_sparse_push_row(&j->out, w->sp.idx + a, val, keep, &j->err);
        }
        if (!single && !j->rc) {
            if (j->want_metrics)
                memcpy(j->metrics, w->metrics + r0, j->n_rows * sizeof *j->metrics);
            if (j->want_recon)
                memcpy(j->dense, w->recon + r0 * d_in, j->n_rows * d_in * sizeof *j->dense);
        }
        if (j->want_recon && !j->rc) {
            for (size_t i = 0; i < j->n_rows; i++)
                if (!all_finite(j->dense + i * d_in, d_in)) {
                    j->rc = sae_error_set(&j->err, SAE_ERANGE,
                                          "row %zu: the reconstruction is not finite", i);
                    j->bad_row = i;
                    break;
                }
        }
        r0 += j->n_rows;
    }
}

/* Runs one batch (a list of jobs on the same snapshot) to completion. */
static void run_batch(struct worker *w, struct saed_job *batch, size_t rows)
{
    struct saed_batcher *b = w->b;
    const sae_model *m = batch->snap->model;
    sae_error err;
    if (batch->kind == JOB_DECODE) {
        batch->rc = sae_decode(m, &batch->codes, batch->dense, &batch->err);
        if (!batch->rc)
            for (size_t i = 0; i < batch->n_rows; i++)
                if (!all_finite(batch->dense + i * m->d_out, m->d_out)) {
                    batch->rc = sae_error_set(&batch->err, SAE_ERANGE, "row %zu", i);
                    batch->bad_row = i;
                    break;
                }
        atomic_fetch_add_explicit(&b->metrics->rows_decoded, rows, memory_order_relaxed);
        return;
    }
    int rc = worker_prepare(w, batch->snap, &err);
    bool single = batch->node.next == NULL;
    const float *x = batch->x;
    sae_row_metrics *met = NULL;
    float *recon = NULL;
    if (!rc && single) {
        met = batch->metrics;
        recon = batch->want_recon ? batch->dense : NULL;
    } else if (!rc) {
        size_t off = 0;
        bool any_met = false, any_recon = false;
        for (struct saed_job *j = batch; j; j = job_next(j)) {
            memcpy(w->x + off * m->d_in, j->x, j->n_rows * m->d_in * sizeof *w->x);
            off += j->n_rows;
            any_met |= j->want_metrics;
            any_recon |= j->want_recon;
        }
        x = w->x;
        met = any_met ? w->metrics : NULL;
        recon = any_recon ? w->recon : NULL;
    }
    if (!rc) {
        int64_t now = sae_clock_us();
        for (struct saed_job *j = batch; j; j = job_next(j))
            metrics_batch_wait(b->metrics, j->n_rows, now - j->t_arrived_us);
        sae_sparse_reset(&w->sp);
        rc = sae_encode(m, w->ws, x, rows, NULL, &w->sp, met, recon, &err);
    }
    if (rc == SAE_ERANGE && !single) {
        /* One request's row overflowed inside the SAE: run each request
         * alone, so only that one gets its 422 (rare: hostile input). */
        for (struct saed_job *j = batch; j; j = job_next(j)) {
            struct jobq_node *link = j->node.next;
            j->node.next = NULL;
            run_batch(w, j, j->n_rows);
            j->node.next = link;
        }
        return;
    }
    if (rc) {
        /* An SAE_ERANGE message names the row (core/sae/encode.h), which a
         * batch of one numbers as its request does. */
        for (struct saed_job *j = batch; j; j = job_next(j)) {
            j->rc = rc;
            j->err = err;
        }
        return;
    }
    metrics_batch(b->metrics, rows);
    atomic_fetch_add_explicit(&b->metrics->rows_encoded, rows, memory_order_relaxed);
    atomic_fetch_add_explicit(&batch->snap->sae->rows_encoded, rows, memory_order_relaxed);
    distribute(w, batch, single, m->d_in);
}

/* Runs one batch (a list of jobs on the same snapshot) to completion, then
 * fails every job of it if the weights file changed meanwhile (a rewrite in
 * place, or a truncation whose SIGBUS was absorbed into zero pages): the
 * numbers may come from another file or from zeros (io/mapped.h). */
static void run_batch_checked(struct worker *w, struct saed_job *batch, size_t rows)
{
    run_batch(w, batch, rows);
    if (!sae_model_changed(batch->snap->model))
        return;
    for (struct saed_job *j = batch; j; j = job_next(j)) {
        j->weights_changed = true;
        j->rc = sae_error_set(&j->err, SAE_EIO, "the weights file changed on disk");
    }
}

/* A CLOCK_MONOTONIC timespec for us microseconds. */
static void deadline_ts(int64_t us, struct timespec *ts)
{
    ts->tv_sec = (time_t)(us / 1000000);
    ts->tv_nsec = (long)(us % 1000000) * 1000;
}

/* Moves every queued encode job of snap that still fits under max rows
 * from the queue to the batch ending at *tail, wherever it stands: with
 * many SAEs the queue interleaves their jobs, and taking only a run at the
 * head would make batches of one row. The jobs left keep their order, and
 * the batch's first job was the head, so the oldest job is still served
 * first. Lock held. */
static void take_same(struct saed_batcher *b, const struct saed_snap *snap, size_t max,
                      struct saed_job **tail, size_t *rows)
{
    struct jobq_node **pp = &b->q.head, *prev = NULL;
    while (*pp && *rows < max) {
        struct saed_job *j = job_of(*pp);
        if (j->kind != JOB_ENCODE || j->snap != snap || *rows + j->n_rows > max) {
            prev = *pp;
            pp = &prev->next;
            continue;
        }
        (*tail)->node.next = jobq_unlink(&b->q, pp, prev);
        *tail = j;
        *rows += j->n_rows;
    }
}

/* How long a gatherer may wait for clients expected back (lock held):
 * max_batch_wait_us, and at most half as long as the last encode batch ran.
 * Rows that miss a batch wait for it to end, so waiting longer than about
 * half a GEMM would cost the rows gathered more than it spares the late
 * ones; it also keeps cheap GEMMs (a few rows) from waiting long for a
 * guess. (Requests whose headers are in are no guess: for them the gatherer
 * waits up to max_batch_wait_us.) */
static int64_t return_wait_us(const struct saed_batcher *b)
{
    int64_t w = b->o.max_batch_wait_us;
    return b->gemm_us > 0 && b->gemm_us / 2 < w ? b->gemm_us / 2 : w;
}

/* Whether more encode rows are on their way (lock held): requests being
 * received, or clients answered within the last return_wait_us that have
 * not posted again. The latter is what keeps a closed loop of
 * one-row clients in one batch: the moment a GEMM's clients are answered
 * none of them is "incoming" yet, and a gatherer that saw only `incoming`
 * took the first one or two back and ran (issue 17: 23 rows per GEMM from
 * 64 clients). They post again within a round trip, so waiting for them,
 * bounded by return_wait_us, costs a fraction of the GEMM it fills. */
static bool rows_coming(const struct saed_batcher *b, int64_t now)
{
    return b->incoming > 0 || (b->returning > 0 && now < b->returning_until_us);
}

/* One client came back (its next request is in): it is no longer expected
 * (lock held). */
static void client_back(struct saed_batcher *b)
{
    if (b->returning > 0)
        b->returning--;
}

/* Takes the next batch off the queue (lock held). */
static struct saed_job *gather(struct saed_batcher *b, size_t *rows_out)
{
    struct saed_job *first = job_of(jobq_unlink(&b->q, &b->q.head, NULL)), *tail = first;
    size_t rows = first->n_rows, max = b->o.max_batch_rows;
    if (b->o.batching && first->kind == JOB_ENCODE && rows < max) {
        b->gathering = true;
        int64_t deadline = first->t_queued_us + b->o.max_batch_wait_us;
        for (;;) {
            take_same(b, first->snap, max, &tail, &rows);
            int64_t now = sae_clock_us();
            if (rows >= max || b->q.head || b->stop || now >= deadline || !rows_coming(b, now))
                break;
            /* Waiting only for clients expected back: no longer than that. */
            int64_t until = b->incoming <= 0 && b->returning_until_us < deadline
                                ? b->returning_until_us
                                : deadline;
            struct timespec ts;
            deadline_ts(until, &ts);
            pthread_cond_timedwait(&b->cv, &b->lock, &ts);
        }
        b->gathering = false;
        pthread_cond_broadcast(&b->cv);
    }
    *rows_out = rows;
    return first;
}

/* A worker: takes a batch, runs it, hands each job back and resumes its
 * connection; drops its workspace when idle after a reload. */
static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct saed_batcher *b = w->b;
    for (;;) {
        pthread_mutex_lock(&b->lock);
        for (;;) {
            if (b->q.head && !b->gathering)
                break;
            if (!b->q.head && b->stop) {
                pthread_mutex_unlock(&b->lock);
                goto out;
            }
            if (!b->q.head && w->ws && w->kick_seen != b->kick_gen) {
                /* A reload happened (the widest SAE may be gone): let go of
                 * the workspace now; the next batch makes one as wide as it
                 * needs. */
                w->kick_seen = b->kick_gen;
                pthread_mutex_unlock(&b->lock);
                worker_drop(w);
                pthread_mutex_lock(&b->lock);
                continue;
            }
            pthread_cond_wait(&b->cv, &b->lock);
        }
        size_t rows;
        struct saed_job *batch = gather(b, &rows);
        pthread_mutex_unlock(&b->lock);

        int64_t t0 = sae_clock_us();
        run_batch_checked(w, batch, rows);

        pthread_mutex_lock(&b->lock);
        b->rows -= rows;
        if (b->o.batching && batch->kind == JOB_ENCODE) {
            b->gemm_us = sae_clock_us() - t0;
            /* These clients are about to be answered; expect them back
             * (those expected earlier and not back in time are not). */
            int64_t now = sae_clock_us();
            if (now >= b->returning_until_us)
                b->returning = 0;
            for (struct saed_job *j = batch; j; j = job_next(j))
                b->returning++;
            b->returning_until_us = now + return_wait_us(b);
        }
        pthread_mutex_unlock(&b->lock);
        jobq_hand_back(&b->q, &batch->node);
    }
out:
    worker_drop(w);
    sae_sparse_free(&w->sp);
    return NULL;
}

int batcher_new(const struct saed_batcher_opts *o, struct saed_metrics *metrics,
                struct saed_batcher **out, sae_error *err)
{
    struct saed_batcher *b = calloc(1, sizeof *b);
    if (!b)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    b->o = *o;
    b->metrics = metrics;
    jobq_init(&b->q);
    pthread_mutex_init(&b->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&b->cv, &ca);
    pthread_condattr_destroy(&ca);
    b->workers = calloc(o->workers, sizeof *b->workers);
    if (!b->workers) {
        batcher_free(b);
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < o->workers; i++) {
        struct worker *w = &b->workers[i];
        w->b = b;
        sae_sparse_init(&w->sp);
        int e = pthread_create(&w->thread, NULL, worker_main, w);
        if (e) {
            batcher_free(b);
            return sae_error_set(err, SAE_EIO, "cannot start worker thread: %s", strerror(e));
        }
        b->n_workers++;
        /* Every worker has the one name, for top -H, gdb and
         * /proc/PID/task/TID/comm (test_daemon.c finds them all by it to hold
         * them still); a failure only loses the name. */
        pthread_setname_np(w->thread, "saed-encode");
    }
    *out = b;
    return 0;
}

/* Takes room for rows in the bounded queue, or refuses at once. */
int batcher_reserve(struct saed_batcher *b, size_t rows)
{
    pthread_mutex_lock(&b->lock);
    bool ok = b->rows + rows <= b->o.max_queue_rows && !b->stop;
    if (ok)
        b->rows += rows;
    pthread_mutex_unlock(&b->lock);
    if (!ok)
        atomic_fetch_add_explicit(&b->metrics->queue_full, 1, memory_order_relaxed);
    return ok ? 0 : -1;
}

/* Appends a job to the queue and wakes the workers. */
void batcher_push(struct saed_batcher *b, struct saed_job *job, bool was_incoming)
{
    pthread_mutex_lock(&b->lock);
    if (was_incoming)
        b->incoming--;
    else if (job->kind == JOB_ENCODE)
        client_back(b);
    job->t_queued_us = sae_clock_us();
    if (!job->t_arrived_us)
        job->t_arrived_us = job->t_queued_us;
    jobq_push(&b->q, &job->node);
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->lock);
}

/* Adjusts the count of encode requests still arriving; wakes a waiting
 * gatherer when none is left. */
void batcher_incoming(struct saed_batcher *b, int delta)
{
    pthread_mutex_lock(&b->lock);
    b->incoming += delta;
    if (delta > 0)
        client_back(b);
    if (b->incoming <= 0)
        pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->lock);
}

/* Rows queued or running, for /metrics. */
size_t batcher_rows(struct saed_batcher *b)
{
    pthread_mutex_lock(&b->lock);
    size_t r = b->rows;
    pthread_mutex_unlock(&b->lock);
    return r;
}

/* Jobs not yet handed back, for the drain. */
size_t batcher_pending(struct saed_batcher *b)
{
    return jobq_pending(&b->q);
}

/* Tells idle workers a reload happened. */
void batcher_kick(struct saed_batcher *b)
{
    pthread_mutex_lock(&b->lock);
    b->kick_gen++;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->lock);
}

/* Finishes the queue, joins the workers and frees the batcher. */
void batcher_free(struct saed_batcher *b)
{
    if (!b)
        return;
    pthread_mutex_lock(&b->lock);
    b->stop = true;
    pthread_cond_broadcast(&b->cv);
    pthread_mutex_unlock(&b->lock);
    for (size_t i = 0; i < b->n_workers; i++)
        pthread_join(b->workers[i].thread, NULL);
    free(b->workers);
    pthread_cond_destroy(&b->cv);
    pthread_mutex_destroy(&b->lock);
    free(b);
}
