/* encode_post.c: POST /v1/encode (CONTRACT 5).
 *
 * Bodies: JSON {"inputs": [[d_in numbers], ...]} or {"input": [...]} with
 * options top_k, threshold, include; application/octet-stream (n x d_in
 * little-endian float32) or application/x-npy, options then in the query.
 * The rows go to the workers as one job (batcher.h); the connection is
 * suspended meanwhile and the reply is written when it is resumed. Replies:
 * JSON, or with Accept: application/octet-stream per row u32 count,
 * u32 indices[count], f32 values[count]. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batcher.h"
#include "buf.h"
#include "feature_routes.h"
#include "jsonin.h"
#include "io/npy.h"
#include "io/list.h"
#include "saed.h"
#include "saes.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "binary bodies are read in place as little-endian float32"
#endif

/* Replies are bounded by the row limits; this cap only stops a runaway. */
#define REPLY_LIMIT ((size_t)1 << 31)

/* What the client asked for besides the rows. */
struct enc_opts {
    size_t top_k;
    bool has_threshold;
    float threshold;
    bool metrics, recon, features;
};

/* Rows being collected from a JSON body, row-major (n, d). */
struct rows {
    float *x;       /* (cap, d) owned */
    size_t n, cap, d, max;
};

/* A slot for one more row, or NULL with e set (413 past max rows). */
static float *rows_add(struct rows *r, struct saed_perr *e)
{
    if (r->n == r->max) {
        perr_set(e, 413, "too_many_rows", "more than %zu rows (max_request_rows)", r->max);
        return NULL;
    }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        if (cap > r->max)
            cap = r->max;
        float *x = realloc(r->x, cap * r->d * sizeof *x);
        if (!x) {
            perr_set(e, 503, "out_of_memory", "cannot hold %zu rows", cap);
            return NULL;
        }
        r->x = x;
        r->cap = cap;
    }
    return r->x + r->n++ * r->d;
}

/* One row: a JSON array of exactly d numbers, each finite as float32. */
static int parse_row(struct jp *j, struct rows *r, const char *name, struct saed_perr *e)
{
    if (jp_peek(j) != '[')
        return jp_wrong_type(j, "%s: expected an array of %zu numbers, got %s",
                        name, r->d, jp_kind(j));
    j->p++;
    float *row = rows_add(r, e);
    if (!row)
        return -1;
    bool first = true;
    size_t c = 0;
    int k;
    while ((k = jp_arr_next(j, &first)) == 1) {
        int ch = jp_peek(j);
        if (ch != '-' && (ch < '0' || ch > '9'))
            return jp_wrong_type(j, "%s[%zu]: expected a number, got %s", name, c,
                            jp_kind(j));
        struct jnum num;
        if (jp_number(j, &num))
            return -1;
        float f = (float)num.v;
        if (c < r->d) {
            row[c] = f;
            if (!isfinite(f))
                perr_set(e, 422, "non_finite", "%s[%zu]: %g is not finite as float32", name, c,
                         num.v);
        }
        c++;
    }
    if (k < 0)
        return -1;
    if (c != r->d)
        perr_set(e, 422, "wrong_dimension", "%s has %zu values; the model's d_in is %zu", name,
                 c, r->d);
    return 0;
}

/* "inputs": an array of rows. */
static int parse_inputs(struct jp *j, struct rows *r, struct saed_perr *e)
{
    if (jp_peek(j) != '[')
        return jp_wrong_type(j, "inputs: expected an array of rows, got %s",
                        jp_kind(j));
    j->p++;
    bool first = true;
    int k;
    while ((k = jp_arr_next(j, &first)) == 1) {
        char name[40];
        snprintf(name, sizeof name, "inputs[%zu]", r->n);
        if (parse_row(j, r, name, e))
            return -1;
    }
    return k < 0 ? -1 : 0;
}

/* Sets the option named by one include value (n bytes at v). */
static int set_include(struct enc_opts *o, const char *v, size_t n, struct saed_perr *e)
{
    if (n == 14 && !memcmp(v, "reconstruction", 14))
        o->recon = true;
    else if (n == 7 && !memcmp(v, "metrics", 7))
        o->metrics = true;
    else if (n == 8 && !memcmp(v, "features", 8))
        o->features = true;
    else
        return perr_set(e, 400, "invalid_field",
                        "include: unknown value \"%.*s\" (allowed: reconstruction, metrics, "
                        "features)",
                        (int)(n > 64 ? 64 : n), v);
    return 0;
}

/* "include": an array of option names. */
static int parse_include(struct jp *j, struct enc_opts *o, struct saed_perr *e)
{
    if (jp_peek(j) != '[')
        return jp_wrong_type(j, "include: expected an array of strings, got %s",
                        jp_kind(j));
    j->p++;
    bool first = true;
    int k;
    while ((k = jp_arr_next(j, &first)) == 1) {
        if (jp_peek(j) != '"')
            return jp_wrong_type(j, "include: expected strings, got %s",
                            jp_kind(j));
        char v[32];
        bool trunc;
        if (jp_string(j, v, sizeof v, &trunc))
            return -1;
        if (set_include(o, v, trunc ? sizeof v : strlen(v), e))
            return -1;
    }
    return k < 0 ? -1 : 0;
}

/* "top_k": a positive integer. */
static int parse_top_k(struct jp *j, struct enc_opts *o, struct saed_perr *e)
{
    int ch = jp_peek(j);
    struct jnum num;
    if ((ch != '-' && (ch < '0' || ch > '9')))
        return jp_wrong_type(j, "top_k: expected a positive integer, got %s",
                        jp_kind(j));
    if (jp_number(j, &num))
        return -1;
    if (!num.fits_u64 || num.neg || num.u == 0 || num.u > SIZE_MAX)
        return perr_set(e, 400, "invalid_field", "top_k: expected a positive integer");
    o->top_k = (size_t)num.u;
    return 0;
}

/* "threshold": a number, used as float32. */
static int parse_threshold(struct jp *j, struct enc_opts *o, struct saed_perr *e)
{
    int ch = jp_peek(j);
    struct jnum num;
    if ((ch != '-' && (ch < '0' || ch > '9')))
        return jp_wrong_type(j, "threshold: expected a number, got %s",
                        jp_kind(j));
    if (jp_number(j, &num))
        return -1;
    float t = (float)num.v;
    if (!isfinite(t))
        return perr_set(e, 400, "invalid_field", "threshold: %g is out of float32 range", num.v);
    o->has_threshold = true;
    o->threshold = t;
    return 0;
}

enum { F_INPUTS, F_INPUT, F_TOP_K, F_THRESHOLD, F_INCLUDE, F_SAES, F_COUNT };
static const char *const fields[F_COUNT] = {"inputs", "input", "top_k", "threshold", "include",
                                            "saes"};

/* The JSON body, into rows r and options o. */
static int parse_json(const struct saed_req *rq, struct rows *r, struct enc_opts *o,
                      struct saed_perr *e)
{
    struct jp j;
    jp_init(&j, (const char *)rq->body, rq->body_len, e);
    if (jp_peek(&j) == -1)
        return perr_set(e, 400, "invalid_json", "the body is empty; expected a JSON object");
    if (jp_peek(&j) != '{')
        return jp_wrong_type(&j, "the body must be a JSON object, not %s",
                        jp_kind(&j));
    j.p++;
    bool first = true, trunc;
    char key[48];
    unsigned seen = 0;
    int k;
    while ((k = jp_obj_key(&j, &first, key, sizeof key, &trunc)) == 1) {
        int f = 0;
        while (f < F_COUNT && (trunc || strcmp(key, fields[f])))
            f++;
        if (f == F_COUNT)
            return perr_set(e, 400, "unknown_field",
                            "unknown field \"%s%s\" (allowed: inputs, input, top_k, threshold, "
                            "include, saes)",
                            key, trunc ? "..." : "");
        if (seen & (1u << f))
            return perr_set(e, 400, "duplicate_key", "\"%s\" appears twice", key);
        seen |= 1u << f;
        if ((seen & (1u << F_INPUTS)) && (seen & (1u << F_INPUT)))
            return perr_set(e, 400, "conflicting_fields",
                            "give either \"inputs\" (rows) or \"input\" (one row), not both");
        int rc = 0;
        switch (f) {
        case F_INPUTS:
            rc = parse_inputs(&j, r, e);
            break;
        case F_INPUT:
            rc = parse_row(&j, r, "input", e);
            break;
        case F_TOP_K:
            rc = parse_top_k(&j, o, e);
            break;
        case F_THRESHOLD:
            rc = parse_threshold(&j, o, e);
            break;
        case F_INCLUDE:
            rc = parse_include(&j, o, e);
            break;
        case F_SAES:
            /* Read before the rows (fan_ids): their width depends on it. */
            rc = jp_skip(&j);
            break;
        }
        if (rc)
            return -1;
    }
    if (k < 0 || jp_finish(&j))
        return -1;
    if (!(seen & ((1u << F_INPUTS) | (1u << F_INPUT))))
        return perr_set(e, 400, "missing_field",
                        "the body needs \"inputs\" (an array of rows) or \"input\" (one row)");
    if (!e->status && r->n == 0)
        return perr_set(e, 422, "empty_batch", "inputs is empty");
    return e->status ? -1 : 0;
}

/* State for query_option. */
struct query_ctx {
    struct enc_opts *o;
    struct saed_perr *e;
    unsigned seen;
    bool body_is_json;
};

/* Records a query error and stops the iteration. */
static enum MHD_Result query_fail(struct query_ctx *q, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Records a query error and stops the iteration. */
static enum MHD_Result query_fail(struct query_ctx *q, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    perr_set(q->e, 400, "invalid_query", "%s", msg);
    return MHD_NO;
}

/* One query parameter of a binary request. */
static enum MHD_Result query_option(void *cls, enum MHD_ValueKind kind, const char *key,
                                    const char *value)
{
    (void)kind;
    struct query_ctx *q = cls;
    if (q->body_is_json)
        return query_fail(q, "query parameter \"%s\": with a JSON body, options go in the body",
                          key);
    int f = F_TOP_K;
    while (f < F_COUNT && strcmp(key, fields[f]))
        f++;
    if (f == F_COUNT)
        return query_fail(q, "unknown query parameter \"%s\" (allowed: top_k, threshold, include)",
                          key);
    if (f == F_SAES)
        return query_fail(q, "saes: a fan-out to several SAEs takes a JSON body");
    if (q->seen & (1u << f))
        return query_fail(q, "query parameter \"%s\" appears twice", key);
    q->seen |= 1u << f;
    if (!value)
        value = "";
    char *end;
    switch (f) {
    case F_TOP_K: {
        errno = 0;
        unsigned long long v = value[0] >= '1' && value[0] <= '9' ? strtoull(value, &end, 10) : 0;
        if (!v || *end || errno || v > SIZE_MAX)
            return query_fail(q, "top_k: \"%s\" is not a positive integer",
                            value);
        q->o->top_k = (size_t)v;
        break;
    }
    case F_THRESHOLD: {
        double v = *value ? strtod(value, &end) : NAN;
        if (!*value || *end || !isfinite((float)v))
            return query_fail(q, "threshold: \"%s\" is not a finite number",
                            value);
        q->o->has_threshold = true;
        q->o->threshold = (float)v;
        break;
    }
    case F_INCLUDE: {
        sae_list it = sae_list_of(value);
        const char *p;
        size_t n;
        while (sae_list_next(&it, &p, &n))
            if (set_include(q->o, p, n, q->e)) {
                q->e->code = "invalid_query"; /* the same mistake as in a body, made in the query */
                return MHD_NO;
            }
        break;
    }
    }
    return MHD_YES;
}

/* Checks every value of x (n, d) is finite; names the first that is not. */
static int check_finite(const float *x, size_t n, size_t d, struct saed_perr *e)
{
    for (size_t r = 0; r < n; r++)
        for (size_t c = 0; c < d; c++)
            if (!isfinite(x[r * d + c]))
                return perr_set(e, 422, "non_finite", "row %zu, column %zu is not finite", r, c);
    return 0;
}

static void octet_precheck(struct saed_req *rq, uint64_t length);

/* Before the body is read: what Content-Length can already refuse, and the
 * count of encode rows on their way. */
void encode_precheck(struct saed_req *rq, uint64_t length, bool has_length)
{
    /* The query is all there before the body: its mistakes need not wait.
     * encode_start reads it again into the options it uses. */
    struct enc_opts o = {0};
    struct saed_perr e = {0};
    struct query_ctx q = {.o = &o, .e = &e, .body_is_json = rq->body_type == SAED_BODY_JSON};
    MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, query_option, &q);
    if (e.status) {
        reply_error(rq, e.status, e.code, "%s", e.msg);
        return;
    }
    if (rq->body_type == SAED_BODY_OCTET && has_length)
        octet_precheck(rq, length);
    if (rq->state != RQ_REPLIED) {
        /* Rows are on their way: a gathering worker may wait for them. */
        batcher_incoming(rq->srv->batcher, +1);
        rq->incoming = true;
    }
}

/* What Content-Length tells about an octet-stream body. */
static void octet_precheck(struct saed_req *rq, uint64_t length)
{
    const sae_model *m = rq->snap->model;
    uint64_t row = 4 * (uint64_t)m->d_in;
    if (length == 0)
        reply_error(rq, 422, "empty_batch", "the body has no rows");
    else if (length % row)
        reply_error(rq, 422, "bad_binary_length",
                    "a %llu-byte body is not a whole number of rows of %llu bytes (4 x d_in %zu)",
                    (unsigned long long)length, (unsigned long long)row, m->d_in);
    else if (length / row > rq->srv->cfg->max_request_rows)
        reply_error(rq, 413, "too_many_rows", "%llu rows; the limit (max_request_rows) is %llu",
                    (unsigned long long)(length / row),
                    (unsigned long long)rq->srv->cfg->max_request_rows);
}

/* The rows of a binary or npy body into the job (in place when the body is
 * float32 already). */
static int take_binary(struct saed_req *rq, struct saed_job *job, struct saed_perr *e)
{
    const sae_model *m = rq->snap->model;
    size_t d = m->d_in, max = rq->srv->cfg->max_request_rows;
    if (rq->body_type == SAED_BODY_OCTET) {
        size_t row = 4 * d;
        if (rq->body_len == 0)
            return perr_set(e, 422, "empty_batch", "the body has no rows");
        if (rq->body_len % row)
            return perr_set(e, 422, "bad_binary_length",
                            "a %zu-byte body is not a whole number of rows of %zu bytes "
                            "(4 x d_in %zu)",
                            rq->body_len, row, d);
        job->n_rows = rq->body_len / row;
        if (job->n_rows > max)
            return perr_set(e, 413, "too_many_rows",
                            "%zu rows; the limit (max_request_rows) is %zu", job->n_rows, max);
        /* malloc'd, so aligned for float. */
        job->x = (const float *)rq->body;
        return check_finite(job->x, job->n_rows, d, e);
    }
    sae_npy_info info;
    sae_error err;
    int rc = sae_npy_parse("request body", rq->body, rq->body_len, &info, &err);
    if (rc)
        return perr_set(e, 422, rc == SAE_EINVAL ? "unsupported_npy" : "invalid_npy", "%s",
                        err.msg);
    uint64_t n = info.ndim == 1 ? 1 : info.shape[0];
    uint64_t cols = info.ndim == 1 ? info.shape[0] : info.shape[1];
    if (cols != d)
        return perr_set(e, 422, "wrong_dimension",
                        "the array has %llu columns; the model's d_in is %zu",
                        (unsigned long long)cols, d);
    if (n == 0)
        return perr_set(e, 422, "empty_batch", "the array has no rows");
    if (n > max)
        return perr_set(e, 413, "too_many_rows", "%llu rows; the limit (max_request_rows) is %zu",
                        (unsigned long long)n, max);
    job->n_rows = (size_t)n;
    job->x_own = malloc(job->n_rows * d * sizeof *job->x_own);
    if (!job->x_own)
        return perr_set(e, 503, "out_of_memory", "cannot hold %zu rows", job->n_rows);
    if (sae_convert_to_f32(info.dtype, rq->body + info.data_offset, job->n_rows * d,
                           job->x_own))
        return perr_set(e, 422, "unsupported_npy", "dtype not supported");
    job->x = job->x_own;
    return check_finite(job->x, job->n_rows, d, e);
}

/* Replies whose estimated size passes this are written while they are sent
 * (a content reader, one row at a time); smaller ones are built whole and
 * may be gzip-compressed. */
#define STREAM_BYTES ((size_t)64 * 1024)

/* Appends row r of job's reply to b: binary (u32 count, u32 indices[count],
 * f32 values[count]) or one JSON object, after a comma unless it is the
 * first. labels: the snapshot's, when include "features" asked for them. */
static void put_row(struct saed_buf *b, const struct saed_job *job,
                    const struct index_labels *labels, size_t d, bool binary, size_t r)
{
    const sae_sparse *s = &job->out;
    uint32_t a = s->row_ptr[r], e = s->row_ptr[r + 1], n = e - a;
    if (binary) {
        buf_put(b, &n, 4);
        buf_put(b, s->idx + a, 4 * (size_t)n);
        buf_put(b, s->val + a, 4 * (size_t)n);
        return;
    }
    buf_puts(b, r ? ",{\"indices\":[" : "{\"indices\":[");
    for (uint32_t t = a; t < e; t++) {
        if (t > a)
            buf_putc(b, ',');
        buf_u32(b, s->idx[t]);
    }
    buf_puts(b, "],\"values\":[");
    for (uint32_t t = a; t < e; t++) {
        if (t > a)
            buf_putc(b, ',');
        buf_f32(b, s->val[t]);
    }
    buf_puts(b, "],\"l0\":");
    buf_u32(b, job->l0[r]);
    if (job->want_metrics) {
        buf_puts(b, ",\"mse\":");
        buf_f64(b, job->metrics[r].mse);
        buf_puts(b, ",\"fvu\":");
        buf_f64(b, job->metrics[r].fvu);
        buf_puts(b, ",\"cosine\":");
        buf_f64(b, job->metrics[r].cosine);
    }
    if (labels)
        encode_features_json(b, labels, s->idx + a, e - a);
    if (job->want_recon) {
        buf_puts(b, ",\"reconstruction\":[");
        const float *x = job->dense + r * d;
        for (size_t c = 0; c < d; c++) {
            if (c)
                buf_putc(b, ',');
            buf_f32(b, x[c]);
        }
        buf_putc(b, ']');
    }
    buf_putc(b, '}');
}

/* The reply's size: exact for binary, an estimate (most numbers shorter than
 * their bound) for JSON. */
static size_t reply_estimate(const struct saed_job *job, bool labels, size_t d, bool binary)
{
    const sae_sparse *s = &job->out;
    if (binary)
        return 4 * s->n_rows + 8 * s->nnz;
    return 32 + s->n_rows * 48 + s->nnz * 22 + (job->want_recon ? s->n_rows * d * 16 : 0) +
           (labels ? s->nnz * 64 : 0);
}

/* A streamed encode reply: the job (taken from the request) and a reference
 * to its snapshot (labels, d_in) live until libmicrohttpd frees the reply,
 * with the reply room they were counted in. piece holds the bytes of the
 * current row not yet handed out, from off. */
struct enc_stream {
    struct saed_server *srv;
    struct saed_snap *snap;         /* a reference of its own */
    struct saed_job *job;           /* owned */
    const struct index_labels *labels; /* borrowed from snap, or NULL */
    size_t reserved;                /* of max_reply_bytes_total, released at the end */
    bool binary;
    size_t row;                     /* the next row to write */
    bool ended;                     /* the tail is written */
    struct saed_buf piece;
    size_t off;
};

/* Writes the next piece (the head with row 0, a row, or the tail) into
 * s->piece; false when there is none left. */
static bool enc_next(struct enc_stream *s)
{
    size_t n = s->job->out.n_rows;
    s->piece.len = 0;
    s->off = 0;
    if (s->ended)
        return false;
    if (!s->binary && s->row == 0)
        buf_puts(&s->piece, "{\"results\":[");
    if (s->row < n) {
        put_row(&s->piece, s->job, s->labels, s->snap->model->d_in, s->binary, s->row++);
        return true;
    }
    if (!s->binary)
        buf_puts(&s->piece, "]}\n");
    s->ended = true;
    return true;
}

/* libmicrohttpd's content reader: up to max bytes of the reply. */
static ssize_t enc_read(void *cls, uint64_t pos, char *out, size_t max)
{
    (void)pos;
    struct enc_stream *s = cls;
    size_t w = 0;
    while (w < max) {
        if (s->off == s->piece.len && !enc_next(s))
            break;
        if (s->piece.failed)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        size_t k = s->piece.len - s->off < max - w ? s->piece.len - s->off : max - w;
        memcpy(out + w, s->piece.data + s->off, k);
        s->off += k;
        w += k;
    }
    return w ? (ssize_t)w : MHD_CONTENT_READER_END_OF_STREAM;
}

/* libmicrohttpd's free callback: the job, the snapshot and the room go. */
static void enc_free(void *cls)
{
    struct enc_stream *s = cls;
    reply_release(s->srv, s->reserved);
    buf_free(&s->piece);
    job_free(s->job);
    snap_release(s->snap);
    free(s);
}

/* Streams the reply from the job's outputs. What the job holds until it is
 * sent (the sparse rows, l0 and metrics; the reconstruction was counted
 * before it ran) is counted against the reply budget first. */
static enum MHD_Result reply_stream(struct saed_req *rq, const struct index_labels *labels)
{
    struct saed_job *job = rq->job;
    const sae_sparse *sp = &job->out;
    size_t held = 8 * sp->nnz + 8 * (sp->n_rows + 1) +
                  (job->want_metrics ? sp->n_rows * sizeof *job->metrics : 0);
    enum MHD_Result r;
    if (reply_reserve(rq, held, &r))
        return r;
    struct enc_stream *s = calloc(1, sizeof *s);
    if (!s)
        return reply_error(rq, 503, "out_of_memory", "cannot start the reply");
    *s = (struct enc_stream){.srv = rq->srv, .snap = snap_hold(rq->snap), .job = job,
                             .labels = labels, .binary = rq->accept_binary};
    buf_init(&s->piece, REPLY_LIMIT, 4096);
    size_t total = reply_estimate(job, false, 0, true);
    struct MHD_Response *resp =
        reply_stream_new(rq, s->binary, total, enc_read, s, enc_free, &s->reserved);
    if (!resp) {
        snap_release(s->snap);
        buf_free(&s->piece);
        free(s);
        return reply_error(rq, 503, "out_of_memory", "cannot start the reply");
    }
    rq->job = NULL;
    return reply_response(rq, 200, resp, s->binary ? total : 0);
}

/* The reply, JSON or binary: built whole when small, else streamed. */
static enum MHD_Result reply_rows(struct saed_req *rq)
{
    const struct saed_job *job = rq->job;
    size_t d = rq->snap->model->d_in;
    bool binary = rq->accept_binary;
    const struct index_labels *labels = job->want_features ? rq->snap->labels : NULL;
    size_t est = reply_estimate(job, labels != NULL, d, binary);
    if (est > STREAM_BYTES)
        return reply_stream(rq, labels);
    struct saed_buf b;
    buf_init(&b, REPLY_LIMIT, est);
    if (!binary)
        buf_puts(&b, "{\"results\":[");
    for (size_t r = 0; r < job->out.n_rows; r++)
        put_row(&b, job, labels, d, binary, r);
    if (!binary)
        buf_puts(&b, "]}\n");
    size_t len;
    char *body = buf_steal(&b, &len);
    if (!body)
        return reply_error(rq, 500, "reply_too_large", "the reply exceeds %zu bytes",
                           REPLY_LIMIT);
    return binary ? reply_bytes(rq, 200, "application/octet-stream", body, len)
                  : reply_json_buf(rq, 200, body, len);
}

/* Whether an encode job failed; if so, its error reply is queued and *r
 * set: the weights changed under it (503), a value not finite inside the
 * SAE (422, naming sae when it is not NULL: a fan-out), anything else 500. */
static bool job_failed(struct saed_req *rq, const struct saed_job *job, const char *sae,
                       enum MHD_Result *r)
{
    if (job->weights_changed)
        *r = reply_weights_changed(rq);
    else if (job->rc == SAE_ERANGE)
        *r = reply_error(rq, 422, "non_finite",
                         "%s%s%s (the input is too large for float32 arithmetic inside the SAE)",
                         sae ? sae : "", sae ? ": " : "", job->err.msg);
    else if (job->rc)
        *r = reply_error(rq, 500, "internal", "encode failed: %s", job->err.msg);
    return job->weights_changed || job->rc;
}

/* Second call, after the worker resumed the connection. */
static enum MHD_Result encode_reply(struct saed_req *rq)
{
    enum MHD_Result r;
    if (job_failed(rq, rq->job, NULL, &r))
        return r;
    return reply_rows(rq);
}

/* ---- fan-out: one request, several SAEs (CONTRACT 7) ---- */

/* Most SAEs one request fans out to. */
#define FAN_MAX 64

/* An encode fanned out to several SAEs: their snapshots, the rows they all
 * encode, and each one's finished job. The SAEs run one after another, each
 * job queued like any encode of that SAE (so it batches with them). */
struct enc_fan {
    size_t n, next;                 /* SAEs, and the one whose job runs now */
    struct saed_snap *snaps[FAN_MAX]; /* owned references */
    struct saed_job *jobs[FAN_MAX]; /* owned: the finished ones */
    float *x;                       /* (n_rows, d_in) owned */
    size_t n_rows;
    struct enc_opts o;
};

void enc_fan_free(struct enc_fan *f)
{
    if (!f)
        return;
    for (size_t i = 0; i < f->n; i++) {
        job_free(f->jobs[i]);
        snap_release(f->snaps[i]);
    }
    free(f->x);
    free(f);
}

/* The ids of a JSON body's "saes" (read ahead of the rows); 0 with *n 0
 * when there is none or the body is malformed (the full parse then says
 * what is wrong), -1 with e set for a bad list. ids: (FAN_MAX) slots of
 * SAED_ID_MAX + 1 bytes. */
static int fan_ids(const struct saed_req *rq, char (*ids)[SAED_ID_MAX + 1], size_t *n,
                   struct saed_perr *e)
{
    struct saed_perr ignored = {0};
    struct jp j;
    *n = 0;
    jp_init(&j, (const char *)rq->body, rq->body_len, &ignored);
    if (jp_peek(&j) != '{')
        return 0;
    j.p++;
    bool first = true, trunc;
    char key[48];
    int k;
    while ((k = jp_obj_key(&j, &first, key, sizeof key, &trunc)) == 1) {
        if (trunc || strcmp(key, "saes")) {
            if (jp_skip(&j))
                return 0;
            continue;
        }
        if (jp_peek(&j) != '[')
            return perr_set(e, 400, "wrong_type", "saes: expected an array of SAE ids");
        j.p++;
        bool f1 = true;
        int a;
        while ((a = jp_arr_next(&j, &f1)) == 1) {
            char id[SAED_ID_MAX + 2];
            bool tr;
            if (jp_peek(&j) != '"')
                return perr_set(e, 400, "wrong_type", "saes: expected strings (SAE ids)");
            if (jp_string(&j, id, sizeof id, &tr))
                return 0;
            if (tr || !config_id_ok(id, strlen(id)))
                return perr_set(e, 400, "invalid_field", "saes: \"%.64s\" is not an SAE id", id);
            if (*n == FAN_MAX)
                return perr_set(e, 400, "invalid_field", "saes: more than %d SAEs", FAN_MAX);
            for (size_t i = 0; i < *n; i++)
                if (!strcmp(ids[i], id))
                    return perr_set(e, 400, "invalid_field", "saes: \"%s\" is named twice", id);
            /* config_id_ok held it to SAED_ID_MAX bytes. */
            memcpy(ids[(*n)++], id, strlen(id) + 1);
        }
        if (a < 0)
            return 0;
        if (!*n)
            return perr_set(e, 400, "invalid_field", "saes: name at least one SAE");
        return 0;
    }
    return 0;
}

/* Queues the job of the fan's next SAE. */
static enum MHD_Result fan_submit(struct saed_req *rq)
{
    struct enc_fan *f = rq->fan;
    struct saed_snap *snap = f->snaps[f->next];
    const sae_model *m = snap->model;
    struct saed_job *job = job_new(JOB_ENCODE);
    if (!job)
        return reply_error(rq, 503, "out_of_memory", "cannot start the job");
    rq->job = job;
    job->x = f->x;
    job->n_rows = f->n_rows;
    job->top_k = f->o.top_k;
    job->has_threshold = f->o.has_threshold;
    job->threshold = f->o.threshold;
    job->want_metrics = f->o.metrics;
    job->want_recon = f->o.recon;
    job->want_features = f->o.features;
    enum MHD_Result r;
    if (f->o.recon && reply_reserve(rq, (uint64_t)job->n_rows * m->d_in * sizeof(float), &r))
        return r;
    sae_error err;
    if (job_alloc_outputs(job, m->d_in, &err))
        return reply_error(rq, 503, "out_of_memory", "%s", err.msg);
    /* req_submit_job hands the request's snapshot to the job. */
    snap_release(rq->snap);
    rq->snap = snap_hold(snap);
    if (sae_model_changed(m))
        return reply_weights_changed(rq);
    if (req_submit_job(rq))
        return reply_error(rq, 503, "overloaded",
                           "the encode queue is full (max_queue_rows %llu); retry shortly",
                           (unsigned long long)rq->srv->cfg->max_queue_rows);
    return MHD_YES;
}

/* Starts a fan-out over the n SAEs named in ids: checks them, parses the
 * rows at their common width and queues the first SAE's job. */
static enum MHD_Result fan_start(struct saed_req *rq, char (*ids)[SAED_ID_MAX + 1], size_t n)
{
    if (rq->sae_prefixed)
        return reply_error(rq, 400, "invalid_field",
                           "saes: a fan-out is POST /v1/encode; /v1/saes/%s/encode encodes with "
                           "that SAE only",
                           rq->sae->id);
    if (rq->accept_binary)
        return reply_error(rq, 400, "invalid_field",
                           "saes: a fan-out reply is JSON; drop Accept: application/octet-stream");
    struct enc_fan *f = calloc(1, sizeof *f);
    if (!f)
        return reply_error(rq, 503, "out_of_memory", "cannot start the fan-out");
    rq->fan = f;
    for (size_t i = 0; i < n; i++) {
        struct saed_sae *sae = saes_find(rq->srv, ids[i], strlen(ids[i]));
        if (!sae)
            return reply_error(rq, 404, "sae_not_found",
                               "saes: no SAE has the id \"%s\" (GET /v1/saes lists them)", ids[i]);
        sae_error err;
        if (!(f->snaps[i] = snap_acquire(rq->srv, sae, &err)))
            return reply_error(rq, 503, err.code == SAE_EIO ? "weights_changed" : "not_ready",
                               "%s", err.msg);
        f->n = i + 1;
        const sae_model *a = f->snaps[0]->model, *b = f->snaps[i]->model;
        if (a->d_in != b->d_in || strcmp(a->hook_name, b->hook_name))
            return reply_error(rq, 422, "sae_mismatch",
                               "saes: \"%s\" reads %s (d_in %zu) but \"%s\" reads %s (d_in %zu); "
                               "a fan-out needs SAEs of one hook",
                               ids[0], *a->hook_name ? a->hook_name : "an unnamed hook", a->d_in,
                               ids[i], *b->hook_name ? b->hook_name : "an unnamed hook", b->d_in);
    }
    struct saed_perr e = {0};
    struct rows r = {.d = f->snaps[0]->model->d_in, .max = rq->srv->cfg->max_request_rows};
    int rc = parse_json(rq, &r, &f->o, &e);
    f->x = r.x;
    f->n_rows = r.n;
    if (rc)
        return reply_error(rq, e.status, e.code, "%s", e.msg);
    req_body_free(rq);
    for (size_t i = 0; i < n; i++) {
        const struct saed_snap *s = f->snaps[i];
        if (f->o.features && !s->index)
            return reply_error(rq, 404, "no_index",
                               "include \"features\" needs a feature index, and the SAE \"%s\" "
                               "has none",
                               ids[i]);
        if (s->model->transcoder && (f->o.metrics || f->o.recon))
            return reply_error(rq, 400, "invalid_field",
                               "the SAE \"%s\" is a transcoder: include reconstruction/metrics "
                               "is refused",
                               ids[i]);
    }
    return fan_submit(rq);
}

/* After each SAE's job: keeps it and queues the next, or replies with
 * every SAE's results once the last is done. */
static enum MHD_Result fan_step(struct saed_req *rq)
{
    struct enc_fan *f = rq->fan;
    struct saed_job *job = rq->job;
    enum MHD_Result r;
    if (job_failed(rq, job, f->snaps[f->next]->sae->id, &r))
        return r;
    f->jobs[f->next++] = job;
    rq->job = NULL;
    if (f->next < f->n)
        return fan_submit(rq);
    size_t est = 64;
    for (size_t i = 0; i < f->n; i++)
        est += 128 + reply_estimate(f->jobs[i], f->o.features, f->snaps[i]->model->d_in, false);
    if (reply_reserve(rq, est, &r))
        return r;
    struct saed_buf b, ids, digests;
    buf_init(&b, REPLY_LIMIT, est);
    buf_init(&ids, 1 << 16, 1024);
    buf_init(&digests, 1 << 16, 1024);
    buf_puts(&b, "{\"saes\":{");
    for (size_t i = 0; i < f->n; i++) {
        const struct saed_snap *s = f->snaps[i];
        if (i) {
            buf_putc(&b, ',');
            buf_putc(&ids, ',');
            buf_putc(&digests, ',');
        }
        buf_puts(&ids, s->sae->id);
        buf_puts(&digests, s->model->weights_digest);
        buf_json_str(&b, s->sae->id);
        buf_puts(&b, ":{\"weights_digest\":\"");
        buf_puts(&b, s->model->weights_digest);
        buf_puts(&b, "\",\"results\":[");
        for (size_t row = 0; row < f->jobs[i]->out.n_rows; row++)
            put_row(&b, f->jobs[i], f->o.features ? s->labels : NULL, s->model->d_in, false, row);
        buf_puts(&b, "]}");
    }
    buf_puts(&b, "}}\n");
    buf_putc(&ids, '\0');
    buf_putc(&digests, '\0');
    size_t len, l1, l2;
    char *body = buf_steal(&b, &len);
    rq->fan_ids = buf_steal(&ids, &l1);
    rq->fan_digests = buf_steal(&digests, &l2);
    if (!body || !rq->fan_ids || !rq->fan_digests) {
        free(body);
        return reply_error(rq, 500, "reply_too_large", "the reply exceeds %zu bytes",
                           REPLY_LIMIT);
    }
    return reply_json_buf(rq, 200, body, len);
}

/* First call: parse, validate, queue. */
static enum MHD_Result encode_start(struct saed_req *rq)
{
    const sae_model *m = rq->snap->model;
    struct enc_opts o = {0};
    struct saed_perr e = {0};
    struct query_ctx q = {.o = &o, .e = &e, .body_is_json = rq->body_type == SAED_BODY_JSON};
    MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, query_option, &q);
    if (e.status)
        return reply_error(rq, e.status, e.code, "%s", e.msg);

    if (rq->body_type == SAED_BODY_JSON) {
        char ids[FAN_MAX][SAED_ID_MAX + 1];
        size_t n_ids;
        if (fan_ids(rq, ids, &n_ids, &e))
            return reply_error(rq, e.status, e.code, "%s", e.msg);
        if (n_ids)
            return fan_start(rq, ids, n_ids);
    }
    struct saed_job *job = job_new(JOB_ENCODE);
    if (!job)
        return reply_error(rq, 503, "out_of_memory", "cannot start the job");
    rq->job = job;
    if (rq->body_type == SAED_BODY_JSON) {
        struct rows r = {.d = m->d_in, .max = rq->srv->cfg->max_request_rows};
        int rc = parse_json(rq, &r, &o, &e);
        job->x_own = r.x;
        job->x = r.x;
        job->n_rows = r.n;
        if (rc)
            return reply_error(rq, e.status, e.code, "%s", e.msg);
        /* The JSON text is no longer needed while the job waits. */
        req_body_free(rq);
    } else if (take_binary(rq, job, &e)) {
        return reply_error(rq, e.status, e.code, "%s", e.msg);
    }
    if (o.features && !rq->snap->index)
        return reply_error(rq, 404, "no_index",
                           "include \"features\" needs a feature index (saed --index)");
    if (m->transcoder && (o.metrics || o.recon))
        return reply_error(rq, 400, "invalid_field",
                           "the model is a transcoder: its decoder gives the output hook "
                           "\"%.200s\", not the input, so include reconstruction/metrics "
                           "(against the input) is refused; POST /v1/decode gives the output",
                           m->hook_name_out);
    if (rq->accept_binary && (o.metrics || o.recon || o.features))
        return reply_error(rq, 400, "invalid_field",
                           "include reconstruction/metrics/features needs a JSON reply; the "
                           "binary format has only indices and values");
    job->top_k = o.top_k;
    job->has_threshold = o.has_threshold;
    job->threshold = o.threshold;
    job->want_metrics = o.metrics;
    job->want_recon = o.recon;
    job->want_features = o.features;
    /* A reconstruction is sized before it runs: its floats, held until the
     * reply is sent (a large reply is written from them while it is sent,
     * reply_rows; a small one is counted again when built, reply_body). */
    enum MHD_Result r;
    if (o.recon && reply_reserve(rq, (uint64_t)job->n_rows * m->d_in * sizeof(float), &r))
        return r;
    sae_error err;
    if (job_alloc_outputs(job, m->d_in, &err))
        return reply_error(rq, 503, "out_of_memory", "%s", err.msg);
    job->t_arrived_us = rq->t_start_us; /* for saed_batch_wait_seconds */
    if (req_submit_job(rq))
        return reply_error(rq, 503, "overloaded",
                           "the encode queue is full (max_queue_rows %llu); retry shortly",
                           (unsigned long long)rq->srv->cfg->max_queue_rows);
    return MHD_YES;
}

/* POST /v1/encode: the first call parses and queues; the call after the
 * worker resumed the connection replies. */
enum MHD_Result encode_post(struct saed_req *rq)
{
    if (rq->job && rq->state == RQ_WAITING && rq->fan)
        return fan_step(rq);
    if (rq->job && rq->state == RQ_WAITING)
        return encode_reply(rq);
    enum MHD_Result r = sae_model_changed(rq->snap->model) ? reply_weights_changed(rq)
                                                            : encode_start(rq);
    if (rq->incoming && rq->state == RQ_REPLIED) {
        /* Refused: no rows will come from this request after all. */
        batcher_incoming(rq->srv->batcher, -1);
        rq->incoming = false;
    }
    return r;
}
