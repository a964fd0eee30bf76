/* lm_batcher.h: the language model's queue and its one worker thread, so
 * that texts of concurrent POST /v1/encode_text requests share forward
 * passes and the threads polling connections never run one.
 *
 * A request's texts go in as one job (its token ids, ragged, and the hooks
 * its SAEs read); its connection is suspended meanwhile, as for the encode
 * batcher (batcher.h). The worker takes the oldest job and every later one
 * that still fits under max_batch_tokens (and under LM_BATCH_HOOKS distinct
 * hooks between them), in queue order, and runs them as ONE ragged forward
 * pass as deep as the deepest hook any of them asked for. Sequences do not
 * see each other (attention is within a sequence), so each job's rows are
 * what a pass of that job alone gives. A job of more tokens than
 * max_batch_tokens runs alone, as several passes of whole sequences (so
 * max_batch_tokens must be at least the model's n_ctx). The worker never
 * waits for more jobs: a lone request runs at once, and requests arriving
 * while a pass runs queue up and go together in the next one. Each job's
 * `finish` then runs on the worker (the SAE encodes), and its connection is
 * resumed.
 *
 * The queue is bounded in tokens (queued + running): a submit that would
 * pass max_queue_tokens is refused at once and the request answers 503. */
#ifndef SAED_LM_BATCHER_H
#define SAED_LM_BATCHER_H

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/error.h"
#include "jobq.h"
#include "lm/lm.h"

/* Most distinct hooks one batch reads (jobs beyond wait for the next one). */
#define LM_BATCH_HOOKS 64

/* One request's forward pass. The request owns the job and everything it
 * points to; the worker reads the inputs, writes the outputs, calls finish,
 * sets node.done, resumes the connection and never touches the job again. */
struct lm_job {
    /* input */
    const uint32_t *ids;            /* (n_tokens) every sequence's ids in turn */
    const size_t *lens;             /* (n_seq) */
    size_t n_seq, n_tokens;
    const sae_lm_hook *hooks;       /* (n_hooks) distinct */
    size_t n_hooks;
    /* output: hook i's activations, (n_tokens, width) each, buffers the
     * request allocated */
    float *const *out;
    int rc;                         /* 0, or a sae_status with err filled */
    sae_error err;
    /* Runs on the worker after a successful forward pass (NULL: nothing). */
    void (*finish)(struct lm_job *job, void *ctx);
    void *ctx;                      /* borrowed: finish's argument */

    /* plumbing: node.conn (borrowed) is suspended by submit and resumed when
     * done; node.done says the worker is done with the job */
    struct jobq_node node;
};

struct lm_batcher;

/* Starts the worker (a thread named "saed-lm") over lm (borrowed for the
 * batcher's life), with scratch for max_batch_tokens tokens a pass (at least
 * lm's n_ctx). */
int lm_batcher_new(const sae_lm *lm, size_t max_batch_tokens, size_t max_queue_tokens,
                   struct lm_batcher **out, sae_error *err);
/* Suspends job->conn and queues the job: 0, or -1 when its tokens do not
 * fit in the queue (nothing suspended; the caller replies). */
int lm_batcher_submit(struct lm_batcher *b, struct lm_job *job);
/* Jobs submitted and not yet resumed (the drain waits for 0). */
size_t lm_batcher_pending(const struct lm_batcher *b);
/* Tokens queued or in a forward pass now (what max_queue_tokens bounds);
 * 0 for NULL. */
size_t lm_batcher_tokens(struct lm_batcher *b);
/* Forward passes run and jobs served so far (jobs / passes is the mean batch). */
void lm_batcher_counts(struct lm_batcher *b, uint64_t *passes, uint64_t *jobs);
/* Lets the worker finish every queued job, then joins it and frees b. NULL
 * is a no-op. */
void lm_batcher_free(struct lm_batcher *b);

#endif
