/* router.c: the routing table and the request lifetime.
 *
 * libmicrohttpd calls router_access several times per request: once when the
 * headers are in (upload_data_size 0), once per body chunk, once more when the
 * body is complete, and again after a suspended connection is resumed.
 * Everything that can be decided from the headers is decided on the first
 * call, before any body byte is read: route (404), method (405), API key
 * (401), Content-Type (415), Content-Length against max_body_bytes (413) and
 * the route's own precheck. The per-request context is freed in exactly one
 * place, router_completed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "io/clock.h"
#include "batcher.h"
#include "reaper.h"
#include "saed.h"
#include "saes.h"

/* The routes. The feature routes answer 404 no_index without an index
 * (feature_routes.h); the web browser's rows (static_get.c) need no API key. */
const struct saed_route saed_routes[] = {
    {.method = "GET", .path = "/v1/health", .handler = health_get},
    {.method = "GET", .path = "/v1/model", .handler = model_get, .needs_auth = true,
     .per_sae = true},
    {.method = "POST", .path = "/v1/encode", .handler = encode_post, .needs_auth = true,
     .digest = true, .per_sae = true,
     .body_types = SAED_BODY_JSON | SAED_BODY_OCTET | SAED_BODY_NPY,
     .precheck = encode_precheck},
    {.method = "POST", .path = "/v1/encode/stream", .handler = encode_stream_post,
     .needs_auth = true, .digest = true, .per_sae = true, .body_types = SAED_BODY_OCTET,
     .precheck = encode_stream_precheck, .upload = encode_stream_upload},
    {.method = "POST", .path = "/v1/encode_text", .handler = encode_text_post,
     .needs_auth = true, .per_sae = true, .body_types = SAED_BODY_JSON},
    {.method = "POST", .path = "/v1/decode", .handler = decode_post, .needs_auth = true,
     .digest = true, .per_sae = true, .body_types = SAED_BODY_JSON | SAED_BODY_OCTET,
     .precheck = decode_precheck},
    {.method = "GET", .path = "/v1/features", .handler = features_get, .needs_auth = true,
     .per_sae = true},
    {.method = "GET", .path = "/v1/features/{i}", .handler = feature_get, .needs_auth = true,
     .per_sae = true},
    {.method = "GET", .path = "/v1/features/{i}/examples", .handler = examples_get,
     .needs_auth = true, .per_sae = true},
    {.method = "GET", .path = "/v1/features/{i}/examples/{kind}/{rank}", .handler = example_get,
     .needs_auth = true, .per_sae = true},
    {.method = "GET", .path = "/v1/features/{i}/vector", .handler = vector_get,
     .needs_auth = true, .per_sae = true},
    {.method = "GET", .path = "/v1/saes", .handler = saes_get, .needs_auth = true},
    {.method = "GET", .path = "/v1/saes/{id}", .handler = sae_get, .needs_auth = true},
    {.method = "GET", .path = "/v1/search", .handler = search_get, .needs_auth = true},
    {.method = "GET", .path = "/api/feature/{model}/{layer}/{i}", .handler = neuronpedia_get,
     .needs_auth = true, .match = HTTP_MATCH_FIRST_ARG_SLASHES},
    {.method = "GET", .path = "/metrics", .handler = metrics_get, .needs_auth = true},
    {.method = "GET", .path = "/openapi.json", .handler = openapi_get},
    {.method = "GET", .path = "/", .handler = static_page_get,
     .match = HTTP_MATCH_TRAILING_SLASH},
    {.method = "GET", .path = "/features/{i}", .handler = static_page_get,
     .match = HTTP_MATCH_TRAILING_SLASH},
    {.method = "GET", .path = "/features/{i}/examples/{kind}/{rank}", .handler = static_page_get,
     .match = HTTP_MATCH_TRAILING_SLASH},
    {.method = "GET", .path = "/encode", .handler = static_page_get,
     .match = HTTP_MATCH_TRAILING_SLASH},
    {.method = "GET", .path = "/model", .handler = static_page_get,
     .match = HTTP_MATCH_TRAILING_SLASH},
    {.method = "GET", .path = "/text", .handler = static_page_get,
     .match = HTTP_MATCH_TRAILING_SLASH},
    {.method = "GET", .path = "/search", .handler = static_page_get,
     .match = HTTP_MATCH_TRAILING_SLASH},
    {.method = "GET", .path = "/saes/{id}", .handler = static_page_get,
     .match = HTTP_MATCH_TRAILING_SLASH},
    {.method = "GET", .path = "/saes/{id}/features/{i}", .handler = static_page_get,
     .match = HTTP_MATCH_TRAILING_SLASH},
    {.method = "GET", .path = "/saes/{id}/features/{i}/examples/{kind}/{rank}",
     .handler = static_page_get, .match = HTTP_MATCH_TRAILING_SLASH},
    {.method = "GET", .path = "/saes/{id}/encode", .handler = static_page_get,
     .match = HTTP_MATCH_TRAILING_SLASH},
    {.method = "GET", .path = "/saes/{id}/model", .handler = static_page_get,
     .match = HTTP_MATCH_TRAILING_SLASH},
    {.method = "GET", .path = "/saes/{id}/text", .handler = static_page_get,
     .match = HTTP_MATCH_TRAILING_SLASH},
    {.method = "GET", .path = "/assets/{name}", .handler = static_asset_get},
    {.method = "GET", .path = "/assets/{version}/{name}", .handler = static_asset_get},
};
const size_t saed_n_routes = sizeof saed_routes / sizeof saed_routes[0];

_Static_assert(sizeof saed_routes / sizeof saed_routes[0] < SAED_METRICS_MAX_ROUTES,
               "metrics needs a slot per route plus one for unmatched requests");

/* Bodies sent to routes that take none are read and dropped up to this size
 * (some clients send an empty JSON object with a GET); more closes the
 * connection. */
#define IGNORED_BODY_MAX 65536

/* Compares the presented token with the key in time that depends only on the
 * key's length, so response timing does not reveal how much of a guess was
 * right. */
static bool key_equal(const char *given, const char *key)
{
    size_t n = strlen(key), m = strlen(given);
    volatile unsigned char d = (unsigned char)(n != m);
    for (size_t i = 0; i < n; i++) {
        unsigned char g = i < m ? (unsigned char)given[i] : 0;
        d |= (unsigned char)key[i] ^ g;
    }
    return d == 0;
}

/* Whether the request may use its route: no key configured, an open route,
 * or `Authorization: Bearer KEY` with the right key. */
static bool authorized(struct saed_req *rq)
{
    const char *key = rq->srv->cfg->api_key;
    if (!*key || !rq->route->needs_auth)
        return true;
    const char *h = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                                MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7))
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    return key_equal(h, key);
}

/* The Origin header, when CORS allows it. */
static const char *cors_origin(struct saed_req *rq)
{
    struct saed_server *srv = rq->srv;
    if (!srv->n_cors)
        return NULL;
    const char *o = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND, "Origin");
    if (!o)
        return NULL;
    for (size_t i = 0; i < srv->n_cors; i++)
        if (!strcmp(srv->cors[i], "*") || !strcmp(srv->cors[i], o))
            return o;
    return NULL;
}

/* The methods allowed on url, as an Allow header value; the first matching
 * route's id goes to *route_id. Returns false if no route has this path.
 * per_sae: only the routes also served under /v1/saes/{id}/. */
static bool allowed_methods(const char *url, bool per_sae, char *allow, size_t cap,
                            int *route_id)
{
    bool any = false;
    allow[0] = '\0';
    for (size_t i = 0; i < saed_n_routes; i++) {
        const struct saed_route *rt = &saed_routes[i];
        if ((per_sae && !rt->per_sae) || !http_path_match(rt->path, rt->match, url, NULL, NULL))
            continue;
        if (!any)
            *route_id = (int)i;
        any = true;
        if (!strstr(allow, saed_routes[i].method)) {
            strncat(allow, saed_routes[i].method, cap - strlen(allow) - 1);
            strncat(allow, ", ", cap - strlen(allow) - 1);
        }
        if (!strcmp(saed_routes[i].method, "GET") && !strstr(allow, "HEAD"))
            strncat(allow, "HEAD, ", cap - strlen(allow) - 1);
    }
    if (any)
        strncat(allow, "OPTIONS", cap - strlen(allow) - 1);
    return any;
}

/* Answers OPTIONS: 204 with Allow, and the CORS preflight headers when the
 * origin is allowed. */
static enum MHD_Result reply_options(struct saed_req *rq, const char *allow)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
    if (rq->srv->n_cors)
        MHD_add_response_header(resp, "Vary", "Origin");
    if (rq->origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", rq->origin);
        MHD_add_response_header(resp, "Access-Control-Allow-Methods", allow);
        MHD_add_response_header(resp, "Access-Control-Allow-Headers",
                                "Authorization, Content-Type, Accept, Accept-Encoding");
        MHD_add_response_header(resp, "Access-Control-Max-Age", "600");
    }
    rq->status = 204;
    rq->state = RQ_REPLIED;
    enum MHD_Result r = MHD_queue_response(rq->conn, 204, resp);
    MHD_destroy_response(resp);
    return r;
}

/* Reserves room for a body buffer of cap bytes in max_body_total_bytes
 * (replacing what rq held); false, holding what it held, when there is none. */
static bool body_reserve(struct saed_req *rq, size_t cap)
{
    _Atomic uint64_t *held = &rq->srv->body_bytes;
    uint64_t delta = cap > rq->body_reserved ? cap - rq->body_reserved : 0;
    if (atomic_fetch_add(held, delta) + delta > rq->srv->cfg->max_body_total_bytes) {
        atomic_fetch_sub(held, delta);
        return false;
    }
    rq->body_reserved += (size_t)delta;
    return true;
}

void req_body_free(struct saed_req *rq)
{
    free(rq->body);
    rq->body = NULL;
    rq->body_cap = 0;
    atomic_fetch_sub(&rq->srv->body_bytes, rq->body_reserved);
    rq->body_reserved = 0;
}

/* 503: no room left in max_body_total_bytes for rq's body. */
static enum MHD_Result reply_body_budget(struct saed_req *rq)
{
    return reply_error(rq, 503, "overloaded",
                       "the request bodies being received fill max_body_total_bytes (%llu); "
                       "retry shortly",
                       (unsigned long long)rq->srv->cfg->max_body_total_bytes);
}

/* From now on rq's body is read and dropped, and answered with status when
 * it ends (a reply cannot be queued mid-body). */
static void body_drop(struct saed_req *rq, unsigned status)
{
    if (status == 413)
        atomic_fetch_add_explicit(&rq->srv->metrics.body_cut, 1, memory_order_relaxed);
    req_body_free(rq);
    rq->dropping = status;
    rq->status = status;
}

/* MHD iterator: feeds each request header to the framing check. */
static enum MHD_Result framing_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      const char *value)
{
    (void)kind;
    http_framing_add(cls, key, value);
    return MHD_YES;
}

/* saed's own pass over the framing headers, before anything else is decided
 * (libmicrohttpd 0.9.75 frames the body by the first Content-Length alone and
 * waits forever on a coding it does not know; docs/SECURITY.md). Returns 0
 * with rq->framing and rq->length set, or -1 after queueing 400 or 501 with
 * Connection: close, so nothing after these headers is read as a request. */
static int framing_check(struct saed_req *rq)
{
    struct http_framing f = {0};
    MHD_get_connection_values(rq->conn, MHD_HEADER_KIND, framing_header, &f);
    const char *why;
    rq->framing = http_framing_verdict(&f, &why);
    rq->length = f.length;
    if (rq->framing != HTTP_FRAMING_BAD && rq->framing != HTTP_FRAMING_UNSUPPORTED)
        return 0;
    rq->route_id = (int)saed_n_routes;
    rq->close = true;
    atomic_fetch_add_explicit(&rq->srv->metrics.framing_refused, 1, memory_order_relaxed);
    if (rq->framing == HTTP_FRAMING_UNSUPPORTED)
        reply_error(rq, 501, "unsupported_transfer_coding",
                    "%s: saed takes Content-Length or Transfer-Encoding: chunked", why);
    else
        reply_error(rq, 400, "bad_framing", "the request's body framing is ambiguous: %s", why);
    return -1;
}

/* The path to route and the SAE it names: /v1/saes/{id}/REST is routed as
 * /v1/REST on SAE id (CONTRACT 7), anything else as it is. Sets rq->path,
 * rq->sae_prefixed and the id (*id, *id_len; NULL when not prefixed). */
static void sae_prefix(struct saed_req *rq, const char **id, size_t *id_len)
{
    static const char prefix[] = "/v1/saes/";
    const char *u = rq->url;
    *id = NULL;
    *id_len = 0;
    snprintf(rq->path, sizeof rq->path, "%s", u);
    if (strncmp(u, prefix, sizeof prefix - 1))
        return;
    const char *start = u + sizeof prefix - 1, *slash = strchr(start, '/');
    if (!slash || slash == start || !slash[1])
        return;
    *id = start;
    *id_len = (size_t)(slash - start);
    rq->sae_prefixed = true;
    snprintf(rq->path, sizeof rq->path, "/v1/%s", slash + 1);
}

/* First call of a request: everything decided from the headers. */
static enum MHD_Result request_start(struct saed_req *rq)
{
    struct saed_server *srv = rq->srv;
    const struct saed_config *cfg = srv->cfg;
    bool is_head = !strcmp(rq->method, "HEAD");
    const char *method = is_head ? "GET" : rq->method;
    const char *sae_id;
    size_t sae_id_len;

    rq->origin = cors_origin(rq);
    rq->route_id = (int)saed_n_routes;
    sae_prefix(rq, &sae_id, &sae_id_len);
    for (size_t i = 0; i < saed_n_routes; i++) {
        if ((!rq->sae_prefixed || saed_routes[i].per_sae) &&
            !strcmp(saed_routes[i].method, method) &&
            http_path_match(saed_routes[i].path, saed_routes[i].match, rq->path, rq->args,
                            &rq->n_args)) {
            rq->route = &saed_routes[i];
            rq->route_id = (int)i;
            break;
        }
    }
    if (atomic_load(&srv->draining))
        return reply_error(rq, 503, "shutting_down", "saed is shutting down");
    if (!rq->route) {
        char allow[128];
        int id;
        if (!allowed_methods(rq->path, rq->sae_prefixed, allow, sizeof allow, &id))
            return static_wants_html_404(rq) ? static_html_404(rq)
                                             : reply_error(rq, 404, "not_found", "no route %s", rq->url);
        rq->route_id = id;
        if (!strcmp(rq->method, "OPTIONS"))
            return reply_options(rq, allow);
        return reply_method_not_allowed(rq, allow);
    }
    if (!authorized(rq))
        return reply_error(rq, 401, "unauthorized",
                           "this route needs the API key: Authorization: Bearer KEY");

    rq->sae = sae_id ? saes_find(srv, sae_id, sae_id_len) : saes_default(srv);
    if (!rq->sae)
        return reply_error(rq, 404, "sae_not_found",
                           "no SAE has the id \"%.*s\" (GET /v1/saes lists them)",
                           (int)(sae_id_len > 200 ? 200 : sae_id_len), sae_id);
    sae_error err;
    rq->snap = snap_acquire(srv, rq->sae, &err);
    if (!rq->snap && err.code == SAE_EIO)
        return reply_error(rq, 503, "weights_changed", "%s", err.msg);
    if (!rq->snap)
        return reply_error(rq, 503, "not_ready", "%s", err.msg);
    atomic_fetch_add_explicit(&rq->sae->requests, 1, memory_order_relaxed);
    rq->digest_header = rq->route->digest;

    const char *acc = MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                                  MHD_HTTP_HEADER_ACCEPT);
    rq->accept_binary = http_prefers_binary(acc);
    rq->accept_gzip = http_header_lists(MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                                               MHD_HTTP_HEADER_ACCEPT_ENCODING),
                                   "gzip");

    /* Framing was checked on the first call (framing_check). */
    rq->chunked = rq->framing == HTTP_FRAMING_CHUNKED;
    bool has_length = rq->framing == HTTP_FRAMING_LENGTH;
    uint64_t length = has_length ? rq->length : 0;

    if (!rq->route->body_types) {
        if (has_length && length > IGNORED_BODY_MAX)
            return reply_error(rq, 413, "body_too_large",
                               "%s takes no body, and this one is %llu bytes", rq->route->path,
                               (unsigned long long)length);
        rq->body_limit = IGNORED_BODY_MAX;
        rq->state = RQ_BODY;
        return MHD_YES;
    }
    bool known;
    rq->body_type = http_body_kind(MHD_lookup_connection_value(rq->conn, MHD_HEADER_KIND,
                                                          MHD_HTTP_HEADER_CONTENT_TYPE),
                              &known);
    if (!known || !(rq->body_type & rq->route->body_types))
        return reply_error(rq, 415, "unsupported_media_type",
                           "%s takes Content-Type %s (curl -d sends "
                           "application/x-www-form-urlencoded: add -H 'Content-Type: "
                           "application/json')",
                           rq->route->path,
                           rq->route->body_types & SAED_BODY_NPY
                               ? "application/json, application/octet-stream or "
                                 "application/x-npy"
                               : "application/json or application/octet-stream");
    rq->body_limit = cfg->max_body_bytes;
    if (has_length && length > cfg->max_body_bytes && !rq->route->upload)
        return reply_error(rq, 413, "body_too_large",
                           "the body is %llu bytes; the limit (max_body_bytes) is %llu",
                           (unsigned long long)length, (unsigned long long)cfg->max_body_bytes);
    if (rq->route->precheck) {
        rq->route->precheck(rq, length, has_length);
        if (rq->state == RQ_REPLIED)
            return MHD_YES;
    }
    if (rq->route->upload) {
        /* The route reads its body as it comes (router_access). */
        rq->state = RQ_BODY;
        return MHD_YES;
    }
    /* One allocation of the announced size (plus a NUL for the JSON reader);
     * chunked bodies grow geometrically up to the cap. */
    size_t want = has_length ? (size_t)length + 1
                             : (rq->body_limit < 65536 ? rq->body_limit + 1 : 65536);
    if (!body_reserve(rq, want))
        return reply_body_budget(rq);
    rq->body = malloc(want);
    if (!rq->body)
        return reply_error(rq, 503, "out_of_memory", "cannot buffer a %zu-byte body", want);
    rq->body_cap = want;
    rq->state = RQ_BODY;
    return MHD_YES;
}

/* Appends one body chunk, enforcing the caps as bytes arrive. Only a chunked
 * body can pass max_body_bytes or need more room than was reserved (a
 * Content-Length was checked and reserved whole). */
static enum MHD_Result body_append(struct saed_req *rq, const char *data, size_t *size)
{
    size_t n = *size;
    *size = 0;
    if (!rq->dropping && (rq->body_len + n > rq->body_limit || rq->body_len + n < n)) {
        n -= rq->body_limit - rq->body_len; /* what this chunk brings past the cap */
        body_drop(rq, 413);
    }
    if (rq->dropping) {
        /* A body that runs on for another body_limit is not worth reading. */
        rq->dropped += n;
        return rq->dropped > rq->body_limit ? MHD_NO : MHD_YES;
    }
    if (!rq->route->body_types) {
        rq->body_len += n;
        return MHD_YES;
    }
    if (rq->body_len + n + 1 > rq->body_cap) {
        size_t cap = rq->body_cap;
        while (cap < rq->body_len + n + 1)
            cap = cap > rq->body_limit / 2 ? rq->body_limit + 1 : cap * 2;
        uint8_t *b = body_reserve(rq, cap) ? realloc(rq->body, cap) : NULL;
        if (!b) {
            body_drop(rq, 503);
            rq->dropped += n;
            return MHD_YES;
        }
        rq->body = b;
        rq->body_cap = cap;
    }
    memcpy(rq->body + rq->body_len, data, n);
    rq->body_len += n;
    return MHD_YES;
}

enum MHD_Result router_access(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version,
                              const char *upload_data, size_t *upload_data_size,
                              void **con_cls)
{
    (void)version;
    struct saed_server *srv = cls;
    struct saed_req *rq = *con_cls;
    if (!rq) {
        rq = calloc(1, sizeof *rq);
        if (!rq)
            return MHD_NO;
        rq->srv = srv;
        rq->conn = conn;
        rq->url = url;
        rq->method = method;
        rq->t_start_us = sae_clock_us();
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(conn, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
        /* The deadline clock is not restarted here: it has run since the
         * connection became ready for this request (reaper.h), so a client
         * that drips its headers cannot earn a second full deadline for the
         * body. */
        rq->sconn = ci ? ci->socket_context : NULL;
        reaper_phase(rq->sconn, SAED_CONN_RECEIVING);
        atomic_fetch_add(&srv->inflight, 1);
        *con_cls = rq;
        if (framing_check(rq))
            return MHD_YES;
        /* With a body coming, decide now so a refused body is never read.
         * Without one, wait for the final call: a reply queued on this first
         * call makes libmicrohttpd close the connection, and a 404 should not
         * cost a keep-alive connection. */
        if ((rq->framing == HTTP_FRAMING_LENGTH && rq->length > 0) ||
            rq->framing == HTTP_FRAMING_CHUNKED)
            return request_start(rq);
        rq->state = RQ_START;
        return MHD_YES;
    }
    if (rq->state == RQ_REPLIED) {
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (rq->route && rq->route->upload && rq->state != RQ_START)
        return rq->route->upload(rq, upload_data, upload_data_size);
    if (*upload_data_size)
        return body_append(rq, upload_data, upload_data_size);
    if (rq->dropping == 413)
        return reply_error(rq, 413, "body_too_large",
                           "the body passed the limit of %zu bytes by %zu", rq->body_limit,
                           rq->dropped);
    if (rq->dropping)
        return reply_body_budget(rq);
    if (rq->state == RQ_START) {
        enum MHD_Result r = request_start(rq);
        if (rq->state == RQ_REPLIED || r != MHD_YES)
            return r;
    }
    if (rq->state == RQ_WAITING &&
        !(rq->text_job ? text_job_done(rq->text_job)
                       : atomic_load_explicit(&rq->job->node.done, memory_order_acquire)))
        return MHD_YES;
    if (rq->state == RQ_BODY) {
        rq->state = RQ_READY;
        if (rq->body)
            rq->body[rq->body_len] = '\0';
    }
    reaper_phase(rq->sconn, SAED_CONN_ANSWERING);
    return rq->route->handler(rq);
}

/* Reserves queue room for rq->job, suspends the connection and queues the
 * job; -1 (nothing suspended) when the queue is full. */
int req_submit_job(struct saed_req *rq)
{
    struct saed_batcher *b = rq->srv->batcher;
    if (batcher_reserve(b, rq->job->n_rows))
        return -1;
    rq->job->node.conn = rq->conn;
    rq->job->snap = rq->snap;
    rq->state = RQ_WAITING;
    /* Suspend before the job is visible to a worker, so its resume can never
     * come first. */
    MHD_suspend_connection(rq->conn);
    batcher_push(b, rq->job, rq->incoming);
    rq->incoming = false;
    return 0;
}

/* Writes s to out (cap bytes) with anything unprintable as \xHH, so a
 * decoded URL cannot forge log lines. */
static void log_clean(char *out, size_t cap, const char *s)
{
    size_t n = 0;
    for (; *s && n + 5 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x21 && c < 0x7F && c != '\\')
            out[n++] = (char)c;
        else
            n += (size_t)snprintf(out + n, cap - n, "\\x%02x", c);
    }
    out[n] = '\0';
}

void router_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    struct saed_server *srv = cls;
    struct saed_req *rq = *con_cls;
    if (!rq)
        return;
    *con_cls = NULL;
    /* Closed before a reply was queued (client went away, body cut, error):
     * logged as nginx does, 499. */
    unsigned status = rq->status && (toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ||
                                     rq->state == RQ_REPLIED || rq->status == 413)
                          ? rq->status
                          : 499;
    int64_t us = sae_clock_us() - rq->t_start_us;
    metrics_request(&srv->metrics, rq->route_id, status, us);
    if (!srv->cfg->quiet) {
        char method[32], path[256];
        log_clean(method, sizeof method, rq->method ? rq->method : "-");
        log_clean(path, sizeof path, rq->url ? rq->url : "");
        fprintf(stderr, "saed: %s %s %u %zuB %lldus\n", method, path, status, rq->bytes_out,
                (long long)us);
    }
    reaper_mark(rq->sconn);
    reaper_phase(rq->sconn, SAED_CONN_IDLE);
    if (rq->incoming)
        batcher_incoming(srv->batcher, -1);
    if (rq->stream)
        encode_stream_end(rq);
    job_free(rq->job);
    text_job_free(rq->text_job);
    snap_release(rq->snap);
    free(rq->fan_ids);
    free(rq->fan_digests);
    enc_fan_free(rq->fan);
    req_body_free(rq);
    reply_release(srv, reply_hand_over(rq));
    free(rq);
    atomic_fetch_sub(&srv->inflight, 1);
}
