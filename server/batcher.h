/* batcher.h: the bounded work queue and the worker threads that run every
 * GEMM, so the threads polling connections never do.
 *
 * A request's rows go in as one job. A worker takes the oldest job and, when
 * batching is on, gathers later encode jobs on the same snapshot into the same
 * batch (from anywhere in the queue: with many SAEs their jobs interleave)
 * until max_batch_rows, waiting at most max_batch_wait_us counted from
 * when the first job was queued, and only while more encode requests are on
 * their way: being received or parsed, or expected back (clients answered
 * lately that have not posted again, for at most half the last GEMM's time:
 * a closed loop of clients returns within a round trip, and counting them
 * is what fills one GEMM from many one-row clients, issue 17). Each row's
 * time from arrival to its GEMM goes to /metrics (saed_batch_wait_seconds).
 * Only one worker gathers at a time, so
 * concurrent requests fill one batch instead of several half-empty ones. The
 * batch runs as ONE sae_encode over the gathered rows with no filter; each job
 * then gets its own rows back, filtered by its own top_k/threshold, which is
 * what encoding it alone would give (see docs/API.md for the BLAS caveat).
 *
 * The queue is bounded in rows (queued + running): a submit that would exceed
 * max_queue_rows is refused at once and the request answers 503. */
#ifndef SAED_BATCHER_H
#define SAED_BATCHER_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sae/encode.h"
#include "io/error.h"
#include "jobq.h"

struct saed_snap;
struct saed_metrics;

enum saed_job_kind { JOB_ENCODE, JOB_DECODE };

/* One request's work. The request owns the job and everything in it (inputs
 * and outputs, freed by job_clear); the worker writes the outputs, sets
 * node.done, then resumes the connection and never touches the job again. */
struct saed_job {
    enum saed_job_kind kind;
    struct saed_snap *snap;         /* borrowed: the request holds the reference */
    size_t n_rows;

    /* encode input and options */
    const float *x;                 /* (n_rows, d_in): x_own, or the request body */
    float *x_own;                   /* owned when the rows had to be converted */
    size_t top_k;                   /* 0: all */
    bool has_threshold;
    float threshold;                /* keep values > threshold */
    bool want_metrics, want_recon;
    bool want_features;             /* labelled from the index when replying (not by workers) */

    /* decode input */
    sae_sparse codes;               /* (n_rows rows) owned */

    /* outputs */
    sae_sparse out;                 /* encode: each row filtered, contract order */
    uint32_t *l0;                   /* (n_rows) active features before filtering */
    sae_row_metrics *metrics;       /* (n_rows) when want_metrics */
    float *dense;                   /* (n_rows, d_in): recon (encode) or decode output */
    int rc;                         /* 0, or a sae_status with err filled */
    sae_error err;
    size_t bad_row;                 /* rc == SAE_ERANGE: first row with a non-finite output */
    bool weights_changed;           /* the weights file changed under the run: rc is set
                                       and the outputs are not to be answered */

    /* plumbing: node.conn (borrowed) is resumed when done, unless
     * node.notify (a stream's job, encode_stream.c) is set */
    struct jobq_node node;
    int64_t t_arrived_us;           /* the request's headers in (0: when queued) */
    int64_t t_queued_us;
};

/* A new job of `kind` with empty inputs and outputs, or NULL. */
struct saed_job *job_new(enum saed_job_kind kind);
/* Allocates the output buffers for job->n_rows rows of width d_in, as the
 * job's kind and options need. */
int job_alloc_outputs(struct saed_job *job, size_t d_in, sae_error *err);
/* Frees the job and everything it owns. */
void job_free(struct saed_job *job);

/* How the batcher runs (from the config). */
struct saed_batcher_opts {
    size_t workers;
    bool batching;
    size_t max_batch_rows;
    int64_t max_batch_wait_us;
    size_t max_queue_rows;
};

struct saed_batcher;

/* Starts the workers. metrics is borrowed for the batcher's life. */
int batcher_new(const struct saed_batcher_opts *o, struct saed_metrics *metrics,
                struct saed_batcher **out, sae_error *err);
/* Reserves room for `rows` rows in the queue: 0, or -1 when they do not fit
 * (counted in metrics as queue_full). Reserving first lets the caller decide
 * on 503 before it suspends its connection. */
int batcher_reserve(struct saed_batcher *b, size_t rows);
/* Queues a job whose rows were reserved; the caller has suspended job->conn.
 * The reservation is released when the job is done. was_incoming: the
 * request had been counted by batcher_incoming (+1), which this undoes in
 * the same step. */
void batcher_push(struct saed_batcher *b, struct saed_job *job, bool was_incoming);
/* Counts encode requests whose headers are in but whose rows are not queued
 * yet (delta +1 or -1); +1 also counts one client expected back as come. A
 * gathering worker waits for more rows only while this is above zero or
 * clients are expected back: with nothing on its way, waiting would only
 * add latency, so a lone request is encoded at once. */
void batcher_incoming(struct saed_batcher *b, int delta);
/* Rows queued or running now. */
size_t batcher_rows(struct saed_batcher *b);
/* Jobs submitted and not yet resumed. */
size_t batcher_pending(struct saed_batcher *b);
/* Wakes idle workers so they drop workspaces of a replaced snapshot. */
void batcher_kick(struct saed_batcher *b);
/* Lets the workers finish every queued job, then joins them and frees b. */
void batcher_free(struct saed_batcher *b);

#endif
