/* encode_stream.c: POST /v1/encode/stream (CONTRACT 5, docs/API.md
 * "Streaming bulk encode").
 *
 * The body is an unbounded application/octet-stream of d_in-wide float32
 * rows, usually chunked. It is read as it arrives (saed_route.upload), not
 * buffered: rows are gathered into chunks of max_batch_rows and each chunk
 * goes to the workers as one ordinary encode job (batcher.h), so it shares
 * GEMMs with other traffic. At most STREAM_WINDOW chunks are in flight; with
 * the window full the HTTP thread waits for the oldest chunk (stream_block,
 * at most one GEMM) and the upload waits in the kernel's socket buffers (TCP
 * backpressure). Once the body has ended the connection is suspended, as for
 * /v1/encode, until the last chunks are done.
 *
 * libmicrohttpd is half-duplex: a reply can only be sent once the body is
 * read. So finished chunks are written, in order, as frames to an unlinked
 * spool file (O_TMPFILE in $TMPDIR), and the reply is that file, sent with
 * sendfile once the body has ended: saed's memory stays constant (the file
 * lives in the page cache and on disk, not in saed's RSS).
 *
 * Reply frames: u32 kind, u32 rows, u64 bytes, then `bytes` of payload.
 * Kind 1 (rows): `rows` rows in /v1/encode's binary format (u32 count,
 * u32 indices[count], f32 values[count]). Kind 2 (status, always last):
 * JSON {"rows", "stopped", "message", "weights_digest"[, "new_weights_digest"]}
 * saying how many rows were answered and why the stream ended. With
 * max_stream_spool_bytes set, a chunk whose frame would pass it is not
 * written and the stream stops there (spool_full), so the disk a stream
 * takes is bounded (the status frame aside).
 *
 * Lifetime: the request and each job in flight hold a reference to the
 * stream; a job's worker drops its reference through job->node.notify (which
 * also resumes the connection if it waits). So a client that goes away
 * mid-stream frees the request at once, and the stream (its jobs, spool
 * file and snapshot) when its last chunk is done. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batcher.h"
#include "buf.h"
#include "io/clock.h"
#include "reaper.h"
#include "saed.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "stream bodies are read in place as little-endian float32"
#endif

/* Chunks in flight per stream: enough to keep a worker busy while the next
 * chunk is read, few enough that a stream holds a few MB. */
#define STREAM_WINDOW 4

enum { FRAME_ROWS = 1, FRAME_STATUS = 2 };

/* Why a stream ended (the status frame's "stopped", /metrics' label). */
enum stream_stop {
    STOP_NONE,          /* still running */
    STOP_END,           /* the body ended; every row answered */
    STOP_CLIENT_ABORT,  /* the client went away (nobody reads this one) */
    STOP_DEADLINE,      /* stream_timeout_s passed */
    STOP_RELOAD,        /* a reload served other weights */
    STOP_WEIGHTS,       /* the weights file changed on disk (weights_changed) */
    STOP_BAD_LENGTH,    /* the body ended inside a row */
    STOP_NON_FINITE,    /* a value not finite, in the input or inside the SAE */
    STOP_SPOOL_FULL,    /* the reply spool reached max_stream_spool_bytes */
    STOP_ERROR,         /* out of memory, spool write failed, queue full, ... */
};

static const char *const stop_names[SAED_N_STREAM_STOP] = {
    "running",   "end",         "client_abort", "deadline", "reload",
    "weights_changed", "bad_length", "non_finite", "spool_full", "error"};

const char *encode_stream_stop_name(size_t k)
{
    return k < SAED_N_STREAM_STOP ? stop_names[k] : "error";
}

/* One stream. `lock` guards refs, conn and suspended (the parts a worker's
 * notify touches); the rest belongs to the HTTP thread serving the request. */
struct enc_stream {
    pthread_mutex_t lock;
    pthread_cond_t cv;              /* a chunk finished (stream_block waits on it) */
    int refs;                       /* the request's + one per job in flight */
    struct MHD_Connection *conn;    /* borrowed; NULL once the request ended */
    bool suspended;                 /* conn is suspended waiting for a job */
    struct saed_server *srv;        /* borrowed */
    struct saed_snap *snap;         /* owned reference: every chunk runs on it */
    size_t d_in, row_bytes, chunk_rows;
    size_t top_k;
    bool has_threshold;
    float threshold;
    int64_t deadline_us;
    float *fill;                    /* (chunk_rows, d_in) owned: the chunk being read */
    size_t fill_bytes;              /* bytes of it filled */
    struct saed_job *jobs[STREAM_WINDOW]; /* owned ring: chunks in order */
    size_t head, count;
    uint64_t rows_in, rows_out;     /* rows queued, rows written to the spool */
    int fd;                         /* the spool file, or -1 */
    uint64_t spool_bytes;
    enum stream_stop stop;
    char message[256];
    char new_digest[33];            /* STOP_RELOAD: the weights now served */
    bool ended;                     /* the status frame is written */
    bool broken;                    /* a chunk failed: later ones are not written */
};

/* Drops one reference; the last frees the stream and all it owns. */
static void stream_unref(struct enc_stream *s)
{
    pthread_mutex_lock(&s->lock);
    int left = --s->refs;
    pthread_mutex_unlock(&s->lock);
    if (left)
        return;
    for (size_t i = 0; i < s->count; i++)
        job_free(s->jobs[(s->head + i) % STREAM_WINDOW]);
    free(s->fill);
    if (s->fd >= 0)
        close(s->fd);
    atomic_fetch_add_explicit(&s->srv->metrics.stream_stops[s->stop], 1, memory_order_relaxed);
    atomic_fetch_sub(&s->srv->streams, 1);
    snap_release(s->snap);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* job->node.notify: a chunk is done. Resumes the connection if it waits, and
 * drops the job's reference (called on a worker thread). */
static void stream_notify(void *cls)
{
    struct enc_stream *s = cls;
    pthread_mutex_lock(&s->lock);
    if (s->conn && s->suspended) {
        s->suspended = false;
        MHD_resume_connection(s->conn);
    }
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->lock);
    stream_unref(s);
}

/* Records why the stream stops (the first reason wins). */
static void stream_stop(struct enc_stream *s, enum stream_stop why, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void stream_stop(struct enc_stream *s, enum stream_stop why, const char *fmt, ...)
{
    if (s->stop != STOP_NONE)
        return;
    s->stop = why;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->message, sizeof s->message, fmt, ap);
    va_end(ap);
}

/* Suspends the connection until a worker finishes a chunk, unless the
 * oldest is done already; true when it suspended. */
static bool stream_wait(struct enc_stream *s, struct saed_req *rq)
{
    struct saed_job *j = s->jobs[s->head];
    pthread_mutex_lock(&s->lock);
    bool wait = !atomic_load_explicit(&j->node.done, memory_order_acquire);
    if (wait) {
        s->suspended = true;
        MHD_suspend_connection(rq->conn);
    }
    pthread_mutex_unlock(&s->lock);
    return wait;
}

/* Blocks the HTTP thread until the oldest chunk is done. Used while the
 * body is still arriving: libmicrohttpd 0.9.75 can lose a connection
 * suspended mid-upload whose client then closes (it stays on the
 * suspended list and MHD_stop_daemon aborts), so the upload waits here
 * instead, for at most one chunk's GEMM. */
static void stream_block(struct enc_stream *s)
{
    struct saed_job *j = s->jobs[s->head];
    pthread_mutex_lock(&s->lock);
    while (!atomic_load_explicit(&j->node.done, memory_order_acquire))
        pthread_cond_wait(&s->cv, &s->lock);
    pthread_mutex_unlock(&s->lock);
}

/* Writes len bytes at p to the spool; false (stream stopped) on failure. */
static bool spool_write(struct enc_stream *s, const void *p, size_t len)
{
    const char *c = p;
    while (len) {
        ssize_t w = write(s->fd, c, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            s->broken = true;
            s->stop = STOP_NONE;
            stream_stop(s, STOP_ERROR, "cannot write the reply spool: %s", strerror(errno));
            return false;
        }
        c += w;
        len -= (size_t)w;
        s->spool_bytes += (uint64_t)w;
    }
    return true;
}

/* Writes one frame header. */
static bool frame_head(struct enc_stream *s, uint32_t kind, uint32_t rows, uint64_t bytes)
{
    unsigned char h[16];
    memcpy(h, &kind, 4);
    memcpy(h + 4, &rows, 4);
    memcpy(h + 8, &bytes, 8);
    return spool_write(s, h, sizeof h);
}

/* Writes a finished chunk's rows as one frame, or stops the stream on the
 * job's failure. */
static void write_chunk(struct enc_stream *s, struct saed_job *j)
{
    if (s->broken)
        return;
    if (j->rc) {
        /* This chunk's rows come before any later reason to stop: it wins. */
        s->broken = true;
        s->stop = STOP_NONE;
        if (j->weights_changed)
            stream_stop(s, STOP_WEIGHTS, "the weights file changed on disk after row %llu",
                        (unsigned long long)s->rows_out);
        else
            stream_stop(s, j->rc == SAE_ERANGE ? STOP_NON_FINITE : STOP_ERROR, "row %llu: %s",
                        (unsigned long long)(s->rows_out + j->bad_row), j->err.msg);
        return;
    }
    const sae_sparse *sp = &j->out;
    uint64_t nnz = sp->row_ptr[j->n_rows] - sp->row_ptr[0];
    uint64_t bytes = 4 * (uint64_t)j->n_rows + 8 * nnz;
    uint64_t cap = s->srv->cfg->max_stream_spool_bytes;
    if (cap && s->spool_bytes + 16 + bytes > cap) {
        /* Not written: the stream ends after the rows before this chunk. */
        s->broken = true;
        s->stop = STOP_NONE;
        stream_stop(s, STOP_SPOOL_FULL,
                    "the reply spool would pass max_stream_spool_bytes (%llu) after row %llu; "
                    "send the rows from there as a new stream",
                    (unsigned long long)cap, (unsigned long long)s->rows_out);
        return;
    }
    if (!frame_head(s, FRAME_ROWS, (uint32_t)j->n_rows, bytes))
        return;
    /* Rows are written as the binary encode format, a row at a time
     * through a small buffer. */
    char buf[1 << 16];
    size_t used = 0;
    for (size_t r = 0; r < j->n_rows; r++) {
        uint32_t a = sp->row_ptr[r], n = sp->row_ptr[r + 1] - a;
        size_t need = 4 + 8 * (size_t)n;
        if (used + need > sizeof buf) {
            if (!spool_write(s, buf, used))
                return;
            used = 0;
        }
        if (need > sizeof buf) {
            if (!spool_write(s, &n, 4) || !spool_write(s, sp->idx + a, 4 * (size_t)n) ||
                !spool_write(s, sp->val + a, 4 * (size_t)n))
                return;
            continue;
        }
        memcpy(buf + used, &n, 4);
        memcpy(buf + used + 4, sp->idx + a, 4 * (size_t)n);
        memcpy(buf + used + 4 + 4 * (size_t)n, sp->val + a, 4 * (size_t)n);
        used += need;
    }
    if (used && !spool_write(s, buf, used))
        return;
    s->rows_out += j->n_rows;
    atomic_fetch_add_explicit(&s->srv->metrics.stream_rows, j->n_rows, memory_order_relaxed);
}

/* Writes the finished chunks at the head of the window, in order. */
static void stream_drain(struct enc_stream *s)
{
    while (s->count) {
        struct saed_job *j = s->jobs[s->head];
        if (!atomic_load_explicit(&j->node.done, memory_order_acquire))
            return;
        write_chunk(s, j);
        job_free(j);
        s->jobs[s->head] = NULL;
        s->head = (s->head + 1) % STREAM_WINDOW;
        s->count--;
    }
}

/* Whether the SAE now serves other weights than the stream's snapshot
 * (a SIGHUP reload); copies their digest. Same weights reloaded count as
 * no change. */
static bool stream_reloaded(struct enc_stream *s)
{
    struct saed_sae *sae = s->snap->sae;
    bool changed = false;
    pthread_mutex_lock(&sae->lock);
    struct saed_snap *cur = sae->current;
    if (cur && cur != s->snap &&
        strcmp(cur->model->weights_digest, s->snap->model->weights_digest)) {
        changed = true;
        snprintf(s->new_digest, sizeof s->new_digest, "%s", cur->model->weights_digest);
    }
    pthread_mutex_unlock(&sae->lock);
    return changed || !atomic_load(&sae->served);
}

/* The stop conditions checked at each chunk boundary. */
static void stream_check(struct enc_stream *s)
{
    if (s->stop != STOP_NONE)
        return;
    if (sae_clock_us() > s->deadline_us)
        stream_stop(s, STOP_DEADLINE, "stream_timeout_s (%llu s) passed after row %llu",
                    (unsigned long long)s->srv->cfg->stream_timeout_s,
                    (unsigned long long)s->rows_in);
    else if (sae_model_changed(s->snap->model))
        stream_stop(s, STOP_WEIGHTS, "the weights file changed on disk after row %llu",
                    (unsigned long long)s->rows_in);
    else if (stream_reloaded(s))
        stream_stop(s, STOP_RELOAD, "saed reloaded other weights after row %llu; resume from "
                    "there with the new weights", (unsigned long long)s->rows_in);
}

/* Queues the chunk being filled (its whole rows) as one job; a slot in the
 * window must be free. Checks the rows are finite first, queueing only the
 * rows before a bad one. */
static void stream_push(struct enc_stream *s)
{
    size_t rows = s->fill_bytes / s->row_bytes;
    for (size_t i = 0; i < rows * s->d_in; i++)
        if (!isfinite(s->fill[i])) {
            stream_stop(s, STOP_NON_FINITE, "row %llu, column %zu is not finite",
                        (unsigned long long)(s->rows_in + i / s->d_in), i % s->d_in);
            rows = i / s->d_in;
            break;
        }
    s->fill_bytes -= rows * s->row_bytes; /* what is left is part of a row */
    if (!rows)
        return;
    struct saed_job *j = job_new(JOB_ENCODE);
    sae_error err;
    if (j) {
        j->x_own = s->fill;
        j->x = s->fill;
        j->n_rows = rows;
        j->top_k = s->top_k;
        j->has_threshold = s->has_threshold;
        j->threshold = s->threshold;
        s->fill = NULL;
    }
    if (!j || job_alloc_outputs(j, s->d_in, &err)) {
        job_free(j);
        stream_stop(s, STOP_ERROR, "out of memory for a chunk at row %llu",
                    (unsigned long long)s->rows_in);
        return;
    }
    if (batcher_reserve(s->srv->batcher, rows)) {
        job_free(j);
        stream_stop(s, STOP_ERROR, "the encode queue is full (max_queue_rows) at row %llu; "
                    "resume from there", (unsigned long long)s->rows_in);
        return;
    }
    j->snap = s->snap;
    j->node.notify = stream_notify;
    j->node.notify_cls = s;
    pthread_mutex_lock(&s->lock);
    s->refs++;
    pthread_mutex_unlock(&s->lock);
    s->jobs[(s->head + s->count) % STREAM_WINDOW] = j;
    s->count++;
    s->rows_in += rows;
    batcher_push(s->srv->batcher, j, false);
}

/* A chunk buffer to fill, keeping the partial row already read. */
static bool stream_fill_buffer(struct enc_stream *s)
{
    if (s->fill)
        return true;
    s->fill = malloc(s->chunk_rows * s->row_bytes);
    if (!s->fill)
        stream_stop(s, STOP_ERROR, "out of memory for a chunk");
    return s->fill != NULL;
}

/* Reads a query value (top_k, threshold); false with the request answered
 * 400 on anything else. */
static enum MHD_Result query_one(void *cls, enum MHD_ValueKind kind, const char *key,
                                 const char *value)
{
    (void)kind;
    struct enc_stream *s = ((void **)cls)[0];
    char *bad = ((char **)cls)[1];
    char *end;
    if (!value)
        value = "";
    if (!strcmp(key, "top_k")) {
        errno = 0;
        unsigned long long v = value[0] >= '1' && value[0] <= '9' ? strtoull(value, &end, 10) : 0;
        if (!v || *end || errno || v > SIZE_MAX)
            goto fail;
        s->top_k = (size_t)v;
        return MHD_YES;
    }
    if (!strcmp(key, "threshold")) {
        double v = *value ? strtod(value, &end) : NAN;
        if (!*value || *end || !isfinite((float)v))
            goto fail;
        s->has_threshold = true;
        s->threshold = (float)v;
        return MHD_YES;
    }
fail:
    snprintf(bad, 256, "query parameter \"%.64s\"=\"%.64s\" (a stream takes top_k, a positive "
             "integer, and threshold, a finite number)", key, value);
    return MHD_NO;
}

/* Opens the unlinked spool file in $TMPDIR (or /tmp). */
static int spool_open(void)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    char path[4096];
    snprintf(path, sizeof path, "%s/saed-stream.XXXXXX", dir);
    fd = mkstemp(path);
    if (fd >= 0)
        unlink(path);
    return fd;
}

void encode_stream_precheck(struct saed_req *rq, uint64_t length, bool has_length)
{
    struct saed_server *srv = rq->srv;
    const sae_model *m = rq->snap->model;
    (void)length;
    (void)has_length;
    if (sae_model_changed(m)) {
        reply_weights_changed(rq);
        return;
    }
    long live = atomic_fetch_add(&srv->streams, 1);
    if ((uint64_t)live >= srv->cfg->max_streams) {
        atomic_fetch_sub(&srv->streams, 1);
        reply_error(rq, 503, "overloaded",
                    "%s (max_streams %llu); retry shortly",
                    srv->cfg->max_streams ? "too many streams at once" : "streams are off",
                    (unsigned long long)srv->cfg->max_streams);
        return;
    }
    struct enc_stream *s = calloc(1, sizeof *s);
    if (!s) {
        atomic_fetch_sub(&srv->streams, 1);
        reply_error(rq, 503, "out_of_memory", "cannot start the stream");
        return;
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->refs = 1;
    s->conn = rq->conn;
    s->srv = srv;
    s->snap = snap_hold(rq->snap);
    s->d_in = m->d_in;
    s->row_bytes = 4 * m->d_in;
    s->chunk_rows = srv->cfg->max_batch_rows;
    s->deadline_us = rq->t_start_us + (int64_t)srv->cfg->stream_timeout_s * 1000000;
    s->fd = -1;
    rq->stream = s;
    char bad[256] = ""; /* two 64-byte quotes and the sentence */
    void *q[2] = {s, bad};
    MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, query_one, q);
    if (*bad) {
        s->stop = STOP_ERROR;
        reply_error(rq, 400, "invalid_query", "%s", bad);
        return;
    }
    if ((s->fd = spool_open()) < 0 && (s->stop = STOP_ERROR))
        reply_error(rq, 503, "out_of_memory", "cannot open a reply spool file in $TMPDIR: %s",
                    strerror(errno));
}

/* Ends the stream's reply: the status frame, then the spool as the reply. */
static enum MHD_Result stream_reply(struct saed_req *rq)
{
    struct enc_stream *s = rq->stream;
    if (s->stop == STOP_NONE)
        stream_stop(s, STOP_END, "the body ended");
    struct saed_buf b;
    buf_init(&b, 4096, 512);
    char line[64];
    snprintf(line, sizeof line, "{\"rows\":%llu,\"stopped\":", (unsigned long long)s->rows_out);
    buf_puts(&b, line);
    buf_json_str(&b, stop_names[s->stop]);
    buf_puts(&b, ",\"message\":");
    buf_json_str(&b, s->message);
    buf_puts(&b, ",\"weights_digest\":");
    buf_json_str(&b, s->snap->model->weights_digest);
    if (*s->new_digest) {
        buf_puts(&b, ",\"new_weights_digest\":");
        buf_json_str(&b, s->new_digest);
    }
    buf_puts(&b, "}");
    size_t len;
    char *st = buf_steal(&b, &len);
    if (!st)
        return reply_error(rq, 500, "internal", "out of memory");
    bool ok = frame_head(s, FRAME_STATUS, 0, len) && spool_write(s, st, len);
    free(st);
    if (!ok)
        return reply_error(rq, 500, "internal", "%s", s->message);
    struct MHD_Response *resp =
        MHD_create_response_from_fd_at_offset64(s->spool_bytes, s->fd, 0);
    if (!resp)
        return reply_error(rq, 500, "internal", "cannot make the reply");
    s->fd = -1; /* the response closes it */
    s->ended = true;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/x-saed-stream");
    return reply_response(rq, 200, resp, (size_t)s->spool_bytes);
}

enum MHD_Result encode_stream_upload(struct saed_req *rq, const char *data, size_t *size)
{
    struct enc_stream *s = rq->stream;
    if (!s)
        return MHD_NO;
    reaper_mark(rq->sconn); /* request_timeout_s bounds a stall; stream_timeout_s the whole */
    stream_drain(s);
    stream_check(s);
    if (*size) {
        if (s->stop != STOP_NONE) {
            *size = 0; /* stopped: the rest of the body is read and dropped */
            return MHD_YES;
        }
        while (*size) {
            if (!stream_fill_buffer(s)) {
                *size = 0;
                return MHD_YES;
            }
            size_t cap = s->chunk_rows * s->row_bytes - s->fill_bytes;
            size_t n = *size < cap ? *size : cap;
            memcpy((char *)s->fill + s->fill_bytes, data, n);
            s->fill_bytes += n;
            data += n;
            *size -= n;
            if (s->fill_bytes < s->chunk_rows * s->row_bytes)
                break;
            if (s->count == STREAM_WINDOW) {
                stream_drain(s);
                if (s->count == STREAM_WINDOW)
                    stream_block(s);
                stream_drain(s);
            }
            stream_check(s);
            if (s->stop != STOP_NONE) {
                *size = 0;
                return MHD_YES;
            }
            stream_push(s);
        }
        return MHD_YES;
    }
    /* The body is complete: queue its last rows, wait for every chunk. */
    rq->state = RQ_READY;
    reaper_phase(rq->sconn, SAED_CONN_ANSWERING);
    if (s->stop == STOP_NONE && s->fill_bytes >= s->row_bytes && s->count < STREAM_WINDOW)
        stream_push(s);
    if (s->stop == STOP_NONE && s->fill_bytes >= s->row_bytes) {
        if (stream_wait(s, rq))
            return MHD_YES; /* a slot for the last chunk */
        return encode_stream_upload(rq, data, size);
    }
    if (s->stop == STOP_NONE && s->fill_bytes)
        stream_stop(s, STOP_BAD_LENGTH,
                    "the body ended %zu bytes into a row of %zu bytes (4 x d_in %zu); the rows "
                    "before it were answered", s->fill_bytes, s->row_bytes, s->d_in);
    stream_drain(s);
    if (s->count && stream_wait(s, rq))
        return MHD_YES;
    stream_drain(s);
    if (s->count)
        return encode_stream_upload(rq, data, size);
    return stream_reply(rq);
}

enum MHD_Result encode_stream_post(struct saed_req *rq)
{
    size_t zero = 0;
    return encode_stream_upload(rq, NULL, &zero);
}

void encode_stream_end(struct saed_req *rq)
{
    struct enc_stream *s = rq->stream;
    rq->stream = NULL;
    if (!s->ended && s->stop == STOP_NONE)
        s->stop = STOP_CLIENT_ABORT; /* the client went before its reply */
    pthread_mutex_lock(&s->lock);
    /* libmicrohttpd may end a request whose connection this very call
     * suspended (the client's close read in the same pass): resume it, or
     * nothing would, and MHD_stop_daemon refuses suspended connections. */
    if (s->suspended)
        MHD_resume_connection(s->conn);
    s->conn = NULL;
    s->suspended = false;
    pthread_mutex_unlock(&s->lock);
    stream_unref(s);
}
