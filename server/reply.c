/* reply.c: every response leaves through here (saed.h). One function adds the
 * headers all replies share (CORS, the weights digest, Connection: close while
 * draining) and records status and size for the log line and /metrics; one
 * builds every JSON error. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "buf.h"
#include "jsonin.h"
#include "saed.h"

/* Replies this small (errors, health, metrics, most feature pages) are not
 * counted against max_reply_bytes_total, so a 503 saying it is full, and
 * /metrics showing why, can always be sent; together they hold at most
 * max_connections x 64 KiB. */
#define REPLY_FREE_BYTES 65536

/* Adds the shared headers, queues resp with status, and drops our reference. */
static enum MHD_Result reply_queue(struct saed_req *rq, unsigned status,
                                   struct MHD_Response *resp, size_t bytes)
{
    if (!resp)
        return MHD_NO;
    struct saed_server *srv = rq->srv;
    if (rq->origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", rq->origin);
        MHD_add_response_header(resp, "Access-Control-Expose-Headers",
                                "X-SAE-Weights-Digest, X-SAE-Id, X-SAE-Space, Retry-After");
    }
    /* With CORS on, every reply depends on Origin (allowed ones get the
     * header, others not), so a shared cache must key on it. */
    if (srv->n_cors)
        MHD_add_response_header(resp, "Vary", "Origin");
    if (rq->digest_header && rq->fan_ids) {
        MHD_add_response_header(resp, "X-SAE-Weights-Digest", rq->fan_digests);
        MHD_add_response_header(resp, "X-SAE-Id", rq->fan_ids);
    } else if (rq->digest_header && rq->snap) {
        MHD_add_response_header(resp, "X-SAE-Weights-Digest", rq->snap->model->weights_digest);
        MHD_add_response_header(resp, "X-SAE-Id", rq->snap->sae->id);
    }
    if (rq->space)
        MHD_add_response_header(resp, "X-SAE-Space", rq->space);
    if (atomic_load(&srv->draining) || rq->close)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    rq->status = status;
    rq->bytes_out = bytes;
    rq->state = RQ_REPLIED;
    enum MHD_Result r = MHD_queue_response(rq->conn, status, resp);
    MHD_destroy_response(resp);
    return r;
}

int reply_reserve(struct saed_req *rq, uint64_t bytes, enum MHD_Result *r)
{
    const struct saed_config *cfg = rq->srv->cfg;
    if (bytes > cfg->max_reply_bytes || rq->reply_reserved + bytes > cfg->max_reply_bytes) {
        *r = reply_error(rq, 413, "reply_too_large",
                         "the reply would hold %llu bytes; the limit (max_reply_bytes) is %llu: "
                         "send fewer rows per request",
                         (unsigned long long)(rq->reply_reserved + bytes),
                         (unsigned long long)cfg->max_reply_bytes);
        return -1;
    }
    _Atomic uint64_t *held = &rq->srv->reply_bytes;
    if (atomic_fetch_add(held, bytes) + bytes > cfg->max_reply_bytes_total) {
        atomic_fetch_sub(held, bytes);
        atomic_fetch_add_explicit(&rq->srv->metrics.reply_full, 1, memory_order_relaxed);
        *r = reply_error(rq, 503, "overloaded",
                         "the replies being sent fill max_reply_bytes_total (%llu); retry shortly",
                         (unsigned long long)cfg->max_reply_bytes_total);
        return -1;
    }
    rq->reply_reserved += (size_t)bytes;
    return 0;
}

void reply_release(struct saed_server *srv, uint64_t bytes)
{
    atomic_fetch_sub(&srv->reply_bytes, bytes);
}

struct MHD_Response *reply_stream_new(struct saed_req *rq, bool binary, size_t total,
                                      MHD_ContentReaderCallback reader, void *cls,
                                      MHD_ContentReaderFreeCallback free_cb, size_t *reserved)
{
    struct MHD_Response *resp = MHD_create_response_from_callback(
        binary ? total : MHD_SIZE_UNKNOWN, 64 * 1024, reader, cls, free_cb);
    if (!resp)
        return NULL;
    *reserved = reply_hand_over(rq);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            binary ? "application/octet-stream" : "application/json");
    return resp;
}

size_t reply_hand_over(struct saed_req *rq)
{
    size_t n = rq->reply_reserved;
    rq->reply_reserved = 0;
    return n;
}

/* Copies s into dst (cap bytes) replacing invalid UTF-8 with '?', so a message
 * quoting client bytes is always valid JSON text. */
static void utf8_clean(char *dst, size_t cap, const char *s)
{
    size_t n = 0;
    const unsigned char *p = (const unsigned char *)s, *end = p + strlen(s);
    while (p < end && n + 4 < cap) {
        size_t k = *p < 0x80 ? 1 : utf8_seq(p, end);
        if (!k) {
            dst[n++] = '?';
            p++;
            continue;
        }
        memcpy(dst + n, p, k);
        n += k;
        p += k;
    }
    dst[n] = '\0';
}

/* Queues {"error":{"code":code,"message":raw}} with status; raw is cleaned to
 * valid UTF-8 first. The headers every error of that status carries are
 * added here: Retry-After on 503, WWW-Authenticate on 401, and on 405 the
 * Allow list given (NULL otherwise). */
static enum MHD_Result error_reply(struct saed_req *rq, unsigned status, const char *code,
                                   const char *raw, const char *allow)
{
    char msg[512];
    utf8_clean(msg, sizeof msg, raw);
    struct saed_buf b;
    buf_init(&b, 4096, 128 + strlen(msg) * 2);
    buf_puts(&b, "{\"error\":{\"code\":");
    buf_json_str(&b, code);
    buf_puts(&b, ",\"message\":");
    buf_json_str(&b, msg);
    buf_puts(&b, "}}\n");
    size_t len;
    char *body = buf_steal(&b, &len);
    if (!body)
        return MHD_NO;
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    if (status == 503)
        MHD_add_response_header(resp, "Retry-After", "1");
    if (status == 401)
        MHD_add_response_header(resp, "WWW-Authenticate", "Bearer realm=\"saed\"");
    if (allow)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    return reply_queue(rq, status, resp, len);
}

enum MHD_Result reply_error(struct saed_req *rq, unsigned status, const char *code,
                            const char *fmt, ...)
{
    char raw[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(raw, sizeof raw, fmt, ap);
    va_end(ap);
    return error_reply(rq, status, code, raw, NULL);
}

enum MHD_Result reply_weights_changed(struct saed_req *rq)
{
    return reply_error(rq, 503, "weights_changed",
                       "%s was truncated or written in place after saed loaded it; nothing is "
                       "computed from it until a SIGHUP loads a checked file (replace a served "
                       "file by renaming a new one over it)",
                       rq->snap->model->weights_path);
}

/* 405 with an Allow header listing what the path takes. */
enum MHD_Result reply_method_not_allowed(struct saed_req *rq, const char *allow)
{
    char raw[512];
    snprintf(raw, sizeof raw, "%s is not allowed on %s; allowed: %s", rq->method, rq->url,
             allow);
    return error_reply(rq, 405, "method_not_allowed", raw, allow);
}

int reply_gzip(const void *in, size_t n, int level, char **out, size_t *out_len)
{
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return -1;
    int rc = -1;
    uLong bound = deflateBound(&z, (uLong)n);
    char *dst = malloc(bound ? bound : 1);
    if (!dst)
        goto out;
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    z.next_out = (Bytef *)dst;
    z.avail_out = (uInt)bound;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) {
        free(dst);
        goto out;
    }
    *out = dst;
    *out_len = z.total_out;
    rc = 0;
out:
    deflateEnd(&z);
    return rc;
}

/* A JSON or text body from memory; compresses it when the client accepts gzip
 * and it is large enough. Takes buf when must_free. */
static enum MHD_Result reply_body(struct saed_req *rq, unsigned status, const char *ctype,
                                  void *buf, size_t len, bool must_free, bool may_gzip)
{
    const struct saed_config *cfg = rq->srv->cfg;
    /* A built reply holds its bytes until sent: they count against
     * max_reply_bytes_total beyond what was reserved for it up front. */
    if (must_free && len > REPLY_FREE_BYTES && len > rq->reply_reserved) {
        enum MHD_Result r;
        if (reply_reserve(rq, len - rq->reply_reserved, &r)) {
            free(buf);
            return r;
        }
    }
    bool gz = false;
    if (may_gzip && cfg->gzip && rq->accept_gzip && len >= cfg->gzip_min_bytes &&
        len < (size_t)UINT32_MAX) {
        char *z;
        size_t zl;
        /* Level 1: on float-heavy JSON it already saves about half and costs
         * a few ms per MB. */
        if (!reply_gzip(buf, len, 1, &z, &zl)) {
            if (must_free)
                free(buf);
            buf = z;
            len = zl;
            must_free = true;
            gz = true;
        }
    }
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        len, buf, must_free ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    if (!resp) {
        if (must_free)
            free(buf);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (may_gzip && cfg->gzip)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_VARY, "Accept-Encoding");
    if (gz)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_ENCODING, "gzip");
    return reply_queue(rq, status, resp, len);
}

/* A built JSON body (taken), gzip-compressed when accepted. */
enum MHD_Result reply_json_buf(struct saed_req *rq, unsigned status, char *buf, size_t len)
{
    return reply_body(rq, status, "application/json", buf, len, true, true);
}

/* A jansson value (taken), serialised compactly. */
enum MHD_Result reply_json(struct saed_req *rq, unsigned status, json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    if (!s)
        return reply_error(rq, 500, "internal", "cannot serialise the reply");
    size_t n = strlen(s);
    /* jansson allocates with malloc, so MHD may free it. */
    char *body = realloc(s, n + 2);
    if (!body) {
        free(s);
        return reply_error(rq, 500, "internal", "out of memory");
    }
    body[n] = '\n';
    body[n + 1] = '\0';
    return reply_json_buf(rq, status, body, n + 1);
}

enum MHD_Result reply_bytes(struct saed_req *rq, unsigned status, const char *content_type,
                            void *buf, size_t len)
{
    return reply_body(rq, status, content_type, buf, len, true, false);
}

enum MHD_Result reply_response(struct saed_req *rq, unsigned status, struct MHD_Response *resp,
                               size_t bytes)
{
    return reply_queue(rq, status, resp, bytes);
}

enum MHD_Result reply_static(struct saed_req *rq, unsigned status, const char *content_type,
                             const void *buf, size_t len, bool may_gzip)
{
    return reply_body(rq, status, content_type, (void *)buf, len, false, may_gzip);
}
