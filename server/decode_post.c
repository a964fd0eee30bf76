/* decode_post.c: POST /v1/decode (CONTRACT 5).
 *
 * Bodies: JSON {"inputs": [{"indices": [...], "values": [...]}, ...]} or an
 * application/octet-stream body in the binary encode reply format (per row
 * u32 count, u32 indices[count], f32 values[count]). Every index must be
 * below d_sae and appear once per row, every value finite. The rows are
 * decoded by a worker; the reply is {"results": [[d_out floats], ...],
 * "space": "input"|"normalised"} or, with Accept: application/octet-stream,
 * n x d_out float32 (d_out = d_in but for a transcoder, whose reply has
 * "space": "output" and "hook": its output hook). X-SAE-Space says the
 * space in both cases. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batcher.h"
#include "buf.h"
#include "jsonin.h"
#include "saed.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "binary bodies are read as little-endian"
#endif

/* Scratch for one row: the pairs as read (a row can hold at most d_sae
 * distinct features, so d_sae slots suffice) and a stamp per feature to find
 * duplicates without clearing between rows. */
struct row_check {
    size_t d_sae;
    uint64_t *idx;      /* (d_sae) indices as written, before the range check */
    uint32_t *idx32;    /* (d_sae) the same, once checked */
    float *val;         /* (d_sae) */
    uint32_t *stamp;    /* (d_sae) row number + 1 that last used the feature */
};

/* Allocates the scratch for rows of a d_sae-feature model; 0 or -1. */
static int row_check_init(struct row_check *c, size_t d_sae)
{
    c->d_sae = d_sae;
    c->idx = malloc(d_sae * sizeof *c->idx);
    c->idx32 = malloc(d_sae * sizeof *c->idx32);
    c->val = malloc(d_sae * sizeof *c->val);
    c->stamp = calloc(d_sae, sizeof *c->stamp);
    return c->idx && c->idx32 && c->val && c->stamp ? 0 : -1;
}

/* Frees what row_check_init allocated. */
static void row_check_free(struct row_check *c)
{
    free(c->idx);
    free(c->idx32);
    free(c->val);
    free(c->stamp);
}

/* Validates row r (n pairs in c) and appends it to out. A 422 is noted and
 * the row skipped, so the caller can go on looking for a 400; -1 only for
 * what must stop parsing. */
static int row_push(struct row_check *c, size_t r, size_t n, sae_sparse *out,
                    struct saed_perr *e)
{
    for (size_t t = 0; t < n; t++) {
        if (c->idx[t] >= c->d_sae) {
            if (c->idx[t] == UINT64_MAX)
                perr_set(e, 422, "index_out_of_range",
                         "inputs[%zu].indices[%zu] is negative or huge (d_sae %zu)", r, t,
                         c->d_sae);
            else
                perr_set(e, 422, "index_out_of_range",
                         "inputs[%zu].indices[%zu] = %llu is out of range (d_sae %zu)", r, t,
                         (unsigned long long)c->idx[t], c->d_sae);
            return 0;
        }
        if (c->stamp[c->idx[t]] == (uint32_t)(r + 1)) {
            perr_set(e, 422, "duplicate_index",
                     "inputs[%zu].indices[%zu] = %llu appears twice in the row", r, t,
                     (unsigned long long)c->idx[t]);
            return 0;
        }
        c->stamp[c->idx[t]] = (uint32_t)(r + 1);
        if (!isfinite(c->val[t])) {
            perr_set(e, 422, "non_finite", "inputs[%zu].values[%zu] is not finite", r, t);
            return 0;
        }
        c->idx32[t] = (uint32_t)c->idx[t];
    }
    if (e->status)
        return 0;
    sae_error err;
    if (sae_sparse_push_row(out, c->idx32, c->val, n, &err))
        return perr_set(e, 503, "out_of_memory", "%s", err.msg);
    return 0;
}

/* "indices": an array of non-negative integers, at most d_sae of them. */
static int parse_indices(struct jp *j, struct row_check *c, size_t r, size_t *n,
                         struct saed_perr *e)
{
    if (jp_peek(j) != '[')
        return jp_wrong_type(j, "inputs[%zu].indices: expected an array, got %s",
                        r, jp_kind(j));
    j->p++;
    bool first = true;
    size_t k = 0;
    int more;
    while ((more = jp_arr_next(j, &first)) == 1) {
        int ch = jp_peek(j);
        struct jnum num;
        if (ch != '-' && (ch < '0' || ch > '9'))
            return jp_wrong_type(j, "inputs[%zu].indices[%zu]: expected an integer, got %s", r,
                                 k, jp_kind(j));
        if (jp_number(j, &num))
            return -1;
        if (!num.integer)
            return perr_set(e, 400, "wrong_type", "inputs[%zu].indices[%zu]: expected an integer",
                            r, k);
        if (k == c->d_sae)
            return perr_set(e, 422, "too_many_features",
                            "inputs[%zu].indices has more than d_sae (%zu) entries", r,
                            c->d_sae);
        /* Negative or huge: out of range, reported with the row checks. */
        c->idx[k++] = num.neg || !num.fits_u64 ? UINT64_MAX : num.u;
    }
    if (more < 0)
        return -1;
    *n = k;
    return 0;
}

static int parse_values(struct jp *j, struct row_check *c, size_t r, size_t *n,
                        struct saed_perr *e)
{
    if (jp_peek(j) != '[')
        return jp_wrong_type(j, "inputs[%zu].values: expected an array, got %s", r,
                        jp_kind(j));
    j->p++;
    bool first = true;
    size_t k = 0;
    int more;
    while ((more = jp_arr_next(j, &first)) == 1) {
        int ch = jp_peek(j);
        struct jnum num;
        if (ch != '-' && (ch < '0' || ch > '9'))
            return jp_wrong_type(j, "inputs[%zu].values[%zu]: expected a number, "
                            "got %s", r, k, jp_kind(j));
        if (jp_number(j, &num))
            return -1;
        if (k == c->d_sae)
            return perr_set(e, 422, "too_many_features",
                            "inputs[%zu].values has more than d_sae (%zu) entries", r, c->d_sae);
        c->val[k++] = (float)num.v;
    }
    if (more < 0)
        return -1;
    *n = k;
    return 0;
}

/* One {"indices": [...], "values": [...]} object. */
static int parse_row(struct jp *j, struct row_check *c, size_t r, sae_sparse *out,
                     struct saed_perr *e)
{
    if (jp_peek(j) != '{')
        return perr_set(e, 400, "wrong_type",
                        "inputs[%zu]: expected an object {\"indices\", \"values\"}, got %s", r,
                        jp_kind(j));
    j->p++;
    bool first = true, trunc, has_idx = false, has_val = false;
    char key[32];
    size_t ni = 0, nv = 0;
    int k;
    while ((k = jp_obj_key(j, &first, key, sizeof key, &trunc)) == 1) {
        bool is_idx = !trunc && !strcmp(key, "indices"), is_val = !trunc && !strcmp(key, "values");
        if (!is_idx && !is_val)
            return perr_set(e, 400, "unknown_field",
                            "inputs[%zu]: unknown field \"%s%s\" (allowed: indices, values)", r,
                            key, trunc ? "..." : "");
        if ((is_idx && has_idx) || (is_val && has_val))
            return perr_set(e, 400, "duplicate_key", "inputs[%zu]: \"%s\" appears twice", r, key);
        if (is_idx ? parse_indices(j, c, r, &ni, e) : parse_values(j, c, r, &nv, e))
            return -1;
        has_idx |= is_idx;
        has_val |= is_val;
    }
    if (k < 0)
        return -1;
    if (!has_idx || !has_val)
        return perr_set(e, 400, "missing_field", "inputs[%zu]: needs both \"indices\" and "
                        "\"values\"", r);
    if (ni != nv) {
        perr_set(e, 422, "length_mismatch", "inputs[%zu]: %zu indices but %zu values", r, ni, nv);
        return 0;
    }
    return row_push(c, r, ni, out, e);
}

static int parse_json(const struct saed_req *rq, struct row_check *c, sae_sparse *out,
                      struct saed_perr *e)
{
    size_t max = rq->srv->cfg->max_request_rows;
    struct jp j;
    jp_init(&j, (const char *)rq->body, rq->body_len, e);
    if (jp_peek(&j) == -1)
        return perr_set(e, 400, "invalid_json", "the body is empty; expected a JSON object");
    if (jp_peek(&j) != '{')
        return jp_wrong_type(&j, "the body must be a JSON object, not %s",
                        jp_kind(&j));
    j.p++;
    bool first = true, trunc, seen = false;
    char key[32];
    size_t rows = 0;
    int k;
    while ((k = jp_obj_key(&j, &first, key, sizeof key, &trunc)) == 1) {
        if (trunc || strcmp(key, "inputs"))
            return perr_set(e, 400, "unknown_field", "unknown field \"%s%s\" (allowed: inputs)",
                            key, trunc ? "..." : "");
        if (seen)
            return perr_set(e, 400, "duplicate_key", "\"inputs\" appears twice");
        seen = true;
        if (jp_peek(&j) != '[')
            return jp_wrong_type(&j, "inputs: expected an array of rows, got %s",
                            jp_kind(&j));
        j.p++;
        bool f2 = true;
        int more;
        while ((more = jp_arr_next(&j, &f2)) == 1) {
            if (rows == max)
                return perr_set(e, 413, "too_many_rows",
                                "more than %zu rows (max_request_rows)", max);
            if (parse_row(&j, c, rows++, out, e))
                return -1;
        }
        if (more < 0)
            return -1;
    }
    if (k < 0 || jp_finish(&j))
        return -1;
    if (!seen)
        return perr_set(e, 400, "missing_field", "the body needs \"inputs\"");
    if (!e->status && rows == 0)
        return perr_set(e, 422, "empty_batch", "inputs is empty");
    return e->status ? -1 : 0;
}

/* The binary body: rows of u32 count, u32 indices[count], f32 values[count]
 * until the body ends exactly. */
static int parse_binary(const struct saed_req *rq, struct row_check *c, sae_sparse *out,
                        struct saed_perr *e)
{
    size_t max = rq->srv->cfg->max_request_rows;
    const uint8_t *p = rq->body, *end = rq->body + rq->body_len;
    size_t r = 0;
    if (p == end)
        return perr_set(e, 422, "empty_batch", "the body has no rows");
    while (p < end) {
        if (r == max)
            return perr_set(e, 413, "too_many_rows", "more than %zu rows (max_request_rows)",
                            max);
        uint32_t n;
        if (end - p < 4)
            return perr_set(e, 422, "bad_binary_length",
                            "row %zu: the body ends inside its count", r);
        memcpy(&n, p, 4);
        p += 4;
        if (n > c->d_sae)
            return perr_set(e, 422, "too_many_features", "row %zu: count %u exceeds d_sae %zu",
                            r, n, c->d_sae);
        if ((size_t)(end - p) < 8 * (size_t)n)
            return perr_set(e, 422, "bad_binary_length",
                            "row %zu: count %u needs %zu more bytes, the body has %zu", r, n,
                            8 * (size_t)n, (size_t)(end - p));
        for (uint32_t t = 0; t < n; t++) {
            uint32_t i;
            memcpy(&i, p + 4 * (size_t)t, 4);
            c->idx[t] = i;
        }
        memcpy(c->val, p + 4 * (size_t)n, 4 * (size_t)n);
        p += 8 * (size_t)n;
        if (row_push(c, r, n, out, e))
            return -1;
        if (e->status)
            return -1;
        r++;
    }
    return 0;
}

/* Any query parameter is an error: decode has no options. */
static enum MHD_Result no_query(void *cls, enum MHD_ValueKind kind, const char *key,
                                const char *value)
{
    (void)kind;
    (void)value;
    perr_set(cls, 400, "invalid_query", "unknown query parameter \"%s\" (decode has no options)",
             key);
    return MHD_NO;
}

/* Refuses a query (decode has no options) and an empty octet-stream body
 * before the body is read. */
void decode_precheck(struct saed_req *rq, uint64_t length, bool has_length)
{
    struct saed_perr e = {0};
    MHD_get_connection_values(rq->conn, MHD_GET_ARGUMENT_KIND, no_query, &e);
    if (e.status)
        reply_error(rq, e.status, e.code, "%s", e.msg);
    else if (rq->body_type == SAED_BODY_OCTET && has_length && length == 0)
        reply_error(rq, 422, "empty_batch", "the body has no rows");
}

/* A decode reply produced while it is sent (libmicrohttpd's content reader):
 * the rows are held once, as the worker wrote them (n x d floats), and the
 * JSON text is written a block at a time, so a 16,384-row reply at d_in 4096
 * costs its 256 MiB of floats (counted in max_reply_bytes_total), not a
 * gigabyte of text, and no polling thread formats more than a block at once.
 * Owns the floats and the reply room; freed by libmicrohttpd. */
struct dense_stream {
    struct saed_server *srv;    /* borrowed: outlives every response */
    float *dense;               /* (n, d) owned */
    size_t n, d;
    size_t reserved;            /* of srv->reply_bytes, given back when freed */
    bool binary;
    char *tail;                 /* owned: the JSON after the rows, from "]," on */
    size_t tail_len, tail_off;  /* the tail is sent in pieces of at most 40 bytes */
    size_t row, col;            /* the next value; row == n: the tail */
    size_t off;                 /* binary: bytes sent */
    bool done;
};

/* The next piece of JSON text (at most 40 bytes) into out; its length, or 0
 * at the end. Does not advance: dense_advance does once it was copied. */
static size_t dense_piece(const struct dense_stream *s, char *out)
{
    if (s->done)
        return 0;
    if (s->row == s->n) {
        size_t k = s->tail_len - s->tail_off < 40 ? s->tail_len - s->tail_off : 40;
        memcpy(out, s->tail + s->tail_off, k);
        return k;
    }
    size_t k = 0;
    if (s->row == 0 && s->col == 0) {
        memcpy(out, "{\"results\":[", 12);
        k = 12;
    }
    if (s->col == s->d) {
        out[k++] = ']';
        return k;
    }
    if (s->col == 0) {
        if (s->row)
            out[k++] = ',';
        out[k++] = '[';
    } else {
        out[k++] = ',';
    }
    return k + fmt_f32(out + k, s->dense[s->row * s->d + s->col]);
}

/* Moves past the piece dense_piece wrote. */
static void dense_advance(struct dense_stream *s)
{
    if (s->row == s->n) {
        s->tail_off += s->tail_len - s->tail_off < 40 ? s->tail_len - s->tail_off : 40;
        s->done = s->tail_off == s->tail_len;
    } else if (s->col == s->d) {
        s->row++;
        s->col = 0;
    } else {
        s->col++;
    }
}

/* libmicrohttpd's content reader: up to max bytes of the reply. */
static ssize_t dense_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct dense_stream *s = cls;
    if (s->binary) {
        size_t total = s->n * s->d * sizeof *s->dense;
        if (s->off == total)
            return MHD_CONTENT_READER_END_OF_STREAM;
        size_t k = total - s->off < max ? total - s->off : max;
        memcpy(buf, (const char *)s->dense + s->off, k);
        s->off += k;
        return (ssize_t)k;
    }
    size_t w = 0;
    char piece[64];
    size_t k;
    while ((k = dense_piece(s, piece)) && w + k <= max) {
        memcpy(buf + w, piece, k);
        w += k;
        dense_advance(s);
    }
    if (!w && s->done)
        return MHD_CONTENT_READER_END_OF_STREAM;
    return (ssize_t)w;
}

/* libmicrohttpd's free callback: the floats and the reply room go. */
static void dense_free(void *cls)
{
    struct dense_stream *s = cls;
    reply_release(s->srv, s->reserved);
    free(s->dense);
    free(s->tail);
    free(s);
}

/* Second call, after the worker resumed the connection: the rows as JSON or
 * float32, with X-SAE-Space, streamed from the worker's floats. */
static enum MHD_Result decode_reply(struct saed_req *rq)
{
    struct saed_job *job = rq->job;
    const sae_model *m = rq->snap->model;
    bool normalised = sae_decode_is_normalised(m);
    if (job->weights_changed)
        return reply_weights_changed(rq);
    if (job->rc == SAE_ERANGE)
        return reply_error(rq, 422, "non_finite",
                           "row %zu: the reconstruction is not finite (values too large for "
                           "float32 arithmetic)",
                           job->bad_row);
    if (job->rc)
        return reply_error(rq, 500, "internal", "decode failed: %s", job->err.msg);
    /* A transcoder's decoder gives its output hook's activation. */
    rq->space = m->transcoder ? "output" : normalised ? "normalised" : "input";
    struct saed_buf tb;
    buf_init(&tb, 65536, 64);
    buf_puts(&tb, "],\"space\":\"");
    buf_puts(&tb, rq->space);
    buf_putc(&tb, '"');
    if (m->transcoder) {
        buf_puts(&tb, ",\"hook\":");
        buf_json_str(&tb, m->hook_name_out);
    }
    buf_puts(&tb, "}\n");
    size_t tail_len;
    char *tail = buf_steal(&tb, &tail_len);
    struct dense_stream *s = tail ? calloc(1, sizeof *s) : NULL;
    if (!s) {
        free(tail);
        return reply_error(rq, 503, "out_of_memory", "cannot start the reply");
    }
    *s = (struct dense_stream){.srv = rq->srv, .dense = job->dense, .n = job->n_rows,
                               .d = m->d_out, .binary = rq->accept_binary, .tail = tail,
                               .tail_len = tail_len};
    size_t total = s->n * s->d * sizeof *s->dense;
    struct MHD_Response *resp =
        reply_stream_new(rq, s->binary, total, dense_read, s, dense_free, &s->reserved);
    if (!resp) {
        free(s->tail);
        free(s);
        return reply_error(rq, 503, "out_of_memory", "cannot start the reply");
    }
    job->dense = NULL;
    return reply_response(rq, 200, resp, total);
}

/* POST /v1/decode: parses and validates the body, hands the rows to a
 * worker and suspends; replies when resumed. */
enum MHD_Result decode_post(struct saed_req *rq)
{
    if (rq->job)
        return decode_reply(rq);
    const sae_model *m = rq->snap->model;
    if (sae_model_changed(m))
        return reply_weights_changed(rq);
    struct saed_perr e = {0};
    struct saed_job *job = job_new(JOB_DECODE);
    if (!job)
        return reply_error(rq, 503, "out_of_memory", "cannot start the job");
    rq->job = job;
    struct row_check c;
    int rc;
    if (row_check_init(&c, m->d_sae))
        rc = perr_set(&e, 503, "out_of_memory", "cannot check %zu features", m->d_sae);
    else if (rq->body_type == SAED_BODY_JSON)
        rc = parse_json(rq, &c, &job->codes, &e);
    else
        rc = parse_binary(rq, &c, &job->codes, &e);
    row_check_free(&c);
    if (rc || e.status)
        return reply_error(rq, e.status, e.code, "%s", e.msg);
    req_body_free(rq);
    job->n_rows = job->codes.n_rows;
    /* The reply's floats are sized from the parsed rows before anything
     * runs or is allocated for them. */
    enum MHD_Result r;
    if (reply_reserve(rq, (uint64_t)job->n_rows * m->d_out * sizeof(float), &r))
        return r;
    sae_error err;
    if (job_alloc_outputs(job, m->d_out, &err))
        return reply_error(rq, 503, "out_of_memory", "%s", err.msg);
    if (req_submit_job(rq))
        return reply_error(rq, 503, "overloaded",
                           "the work queue is full (max_queue_rows %llu); retry shortly",
                           (unsigned long long)rq->srv->cfg->max_queue_rows);
    return MHD_YES;
}
