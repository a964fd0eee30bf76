/* saed.h: what the daemon's files share: the server context, the per-request
 * context, the route table entry and the reply helpers.
 *
 * Lifetimes, in one place:
 *   - struct saed_server lives for the whole process (main.c owns it).
 *   - struct saed_snap (a loaded model, later model + index) is reference
 *     counted; a request takes a reference when it starts and drops it when it
 *     ends, so a reload (SIGHUP) swaps the current snapshot while in-flight
 *     requests finish on the one they started with.
 *   - struct saed_req is created on the first access-handler call of a request
 *     and freed in exactly one place, the MHD completion callback
 *     (router.c: request_completed).
 * The server knows HTTP; core/ does not (docs/STYLE.md). */
#ifndef SAED_H
#define SAED_H

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "sae/encode.h"
#include "http_parse.h"
#include "metrics.h"
#include "sae/model.h"

struct saed_batcher;
struct saed_reaper;
struct saed_job;
struct enc_fan;
struct enc_stream;
struct sae_store;
struct index_labels;
struct feature_cache;
struct web_cache;

/* The index half of a snapshot: the held index, its digest, labels and
 * rendered-feature cache, loaded and checked together. Reference counted on
 * its own so that an SAE whose weights were unmapped (max_mapped_bytes)
 * keeps its index for /v1/search and gets it back unchanged when mapped
 * again. `tag` is unique in the process (per-thread connections key on it). */
struct saed_ix {
    atomic_uint refs;
    struct sae_store *index;    /* owned */
    char digest[33];            /* XXH3-128 of the index as read */
    struct index_labels *labels; /* owned: every feature's label and density, or NULL */
    struct feature_cache *feature_cache; /* owned: rendered feature replies, or NULL */
    uint64_t tag;
    const struct saed_sae *owner; /* borrowed: the SAE it was loaded for */
};
struct saed_ix *ix_hold(struct saed_ix *ix);
void ix_release(struct saed_ix *ix);

struct saed_sae;
struct saed_server;

/* What a request sees from its start to its end: the model and the feature
 * index opened from the same load, swapped in as one. Immutable once
 * published; freed when the last reference goes.
 *
 * How the index plugs in: snap_reload reads the index whole into the store it
 * keeps (sae_store_open_held, in ix), checks it against the model (refusing
 * one built from other weights) and takes its digest from the same bytes, so
 * a reload swaps both at once and nothing done to the file on disk reaches a
 * snapshot. The feature routes (features_get.c, ...) run on the
 * libmicrohttpd polling threads; each thread keeps store connections tagged
 * with the index they were opened for (feature_routes.h). encode with
 * include "features" labels its returned indices in encode_reply, on the
 * polling thread, not in the workers. index, index_digest, labels and
 * feature_cache are borrowed from ix (NULL / "" without an index). */
struct saed_snap {
    atomic_uint refs;
    sae_model *model;           /* owned */
    struct saed_ix *ix;         /* owned reference; NULL when saed runs without an index */
    struct sae_store *index;    /* ix->index, or NULL */
    const char *index_digest;   /* ix->digest, or "" */
    struct index_labels *labels; /* ix->labels, or NULL */
    struct feature_cache *feature_cache; /* ix->feature_cache, or NULL */
    char *source_id;            /* owned: the layer of the Neuronpedia route for this SAE */
    struct saed_sae *sae;       /* borrowed: SAEs live as long as the process */
    uint64_t generation;        /* 1 for the SAE's first load, +1 per successful reload */
};

/* Drops one reference; the last one frees the snapshot and its model. */
void snap_release(struct saed_snap *s);
/* One more reference to s, which the caller already holds one of (a reply
 * that outlives its request keeps what it reads); returns s. */
struct saed_snap *snap_hold(struct saed_snap *s);

/* One served SAE (CONTRACT 7). The struct lives until the process exits,
 * even when a reload stops serving it (`served` false), so requests and
 * snapshots may borrow it without a reference; a later reload naming the
 * same id serves it again. `current` is guarded by `lock`, held only long
 * enough to copy the pointer and take a reference, so a reload never waits
 * for requests. `load_lock` orders loads (reload, and the remap of an SAE
 * whose weights max_mapped_bytes unmapped) and guards `spec` and `stamp`. */
struct saed_sae {
    char id[129];
    struct saed_sae_spec spec;  /* owned: what the config says now */
    pthread_mutex_t load_lock;
    char stamp[33];             /* digest of the folder's and index's file stamps at load */
    sae_compute compute;        /* the config's compute: how 16-bit weights are loaded */
    pthread_mutex_t lock;
    struct saed_snap *current;  /* owned reference; NULL before the first load or while unmapped */
    struct saed_ix *ix;         /* owned reference: the index kept while unmapped */
    uint64_t generation;
    atomic_bool served;         /* in the current configuration */
    atomic_bool changed;        /* a remap found other weights: 503 until a reload */
    char weights_digest[33];    /* of the last load, checked by a remap */
    json_t *entry;              /* owned: its GET /v1/saes entry as last loaded (guarded by lock) */
    /* /metrics (relaxed atomics) */
    _Atomic int64_t last_used_us;
    _Atomic uint64_t mapped_bytes; /* weights file bytes while mapped, else 0 */
    _Atomic uint64_t requests, rows_encoded, reload_ok, reload_failed, reload_unchanged,
        remaps;
};

/* A new reference to the SAE's current snapshot, mapping its weights again
 * first if max_mapped_bytes had them unmapped. NULL with err set when that
 * fails (err->code SAE_EIO: the weights changed on disk). */
struct saed_snap *snap_acquire(struct saed_server *srv, struct saed_sae *sae, sae_error *err);
/* Loads the SAE's folder (and the index, checked against that model) again;
 * on success the new snapshot replaces the old one (which lives on until its
 * last request ends); on failure nothing changes and err says why. Called
 * with sae->load_lock held. reuse_ix: keep the SAE's index as it is (a
 * remap) instead of reading it again. */
int snap_reload(struct saed_sae *sae, bool reuse_ix, sae_error *err);
/* Stops serving sae's current snapshot (removed, or unmapped); its requests
 * finish on it. */
void snap_retire(struct saed_sae *sae);

struct saed_saes;

/* The process-wide server state. */
struct saed_server {
    struct saed_config *cfg;        /* owned */
    struct saed_lm *lm;             /* owned: the language model of --lm, or NULL */
    struct saed_saes *saes;         /* owned: every SAE (saes.h) */
    struct saed_metrics metrics;
    struct saed_batcher *batcher;   /* owned */
    struct saed_reaper *reaper;     /* owned */
    struct MHD_Daemon *daemon;
    atomic_bool draining;           /* SIGTERM seen: new requests get 503 */
    atomic_long inflight;           /* live struct saed_req */
    atomic_long streams;            /* live POST /v1/encode/stream (max_streams) */
    _Atomic uint64_t body_bytes;    /* request body buffers reserved (max_body_total_bytes) */
    _Atomic uint64_t reply_bytes;   /* reply memory reserved (max_reply_bytes_total) */
    char **cors;                    /* (n_cors) allowed origins, owned */
    size_t n_cors;
    int blas_threads, workers, http_threads; /* as resolved from `threads` */
    int web_fd;                     /* the web/ folder (O_PATH), or -1: not served */
    char *web_root;                 /* owned: its path as resolved at start-up, or NULL */
    struct web_cache *web_cache;    /* owned: its files in memory (web_cache.h), or NULL */
};

struct saed_req;

/* A route handler. Called once the whole body is in rq->body, and again after
 * the request was suspended and resumed (rq->job done). It must queue a reply
 * (reply_* below) or suspend the connection. */
typedef enum MHD_Result (*saed_handler)(struct saed_req *rq);

/* One row of the routing table (router.c). `path` is a pattern of literal
 * segments and `{name}` captures, matched segment by segment. */
struct saed_route {
    const char *method;         /* "GET", "POST" */
    const char *path;           /* "/v1/features/{i}" */
    saed_handler handler;
    bool needs_auth;            /* guarded by api_key when one is set */
    bool digest;                /* replies carry X-SAE-Weights-Digest (encode, decode) */
    bool per_sae;               /* also served as /v1/saes/{id}/... (CONTRACT 7) */
    unsigned body_types;        /* enum saed_body bits accepted; 0: no body */
    unsigned match;             /* enum http_match bits: how path matches (0: exactly) */
    /* Optional: called before any body byte is read, with the Content-Length
     * (has_length false for a chunked body), to refuse what can be refused
     * early (413 too many rows, 422 wrong length). It either queues a reply or
     * leaves rq->state as it is. */
    void (*precheck)(struct saed_req *rq, uint64_t content_length, bool has_length);
    /* Optional: the route reads its body itself, chunk by chunk, instead of
     * having it buffered (POST /v1/encode/stream). Called for every access
     * call after the headers: with the bytes as they arrive (it sets *size to
     * what it consumed; less suspends or re-offers the rest), and with *size
     * 0 once the body is complete or the connection was resumed. max_body_bytes
     * does not apply. */
    enum MHD_Result (*upload)(struct saed_req *rq, const char *data, size_t *size);
};

#define SAED_MAX_ARGS HTTP_MAX_ARGS
#define SAED_MAX_ARG_LEN HTTP_MAX_ARG_LEN

/* Where a request is in its life. */
enum saed_req_state {
    RQ_START,       /* headers in, no body: routing waits for the final call */
    RQ_BODY,        /* reading the body */
    RQ_READY,       /* body complete, handler may run */
    RQ_WAITING,     /* suspended while a worker runs its job */
    RQ_REPLIED,     /* a reply was queued */
};

/* One HTTP request. Owns its body, its job and its snapshot reference; borrows
 * the server, the connection and the route. Freed only by request_completed. */
struct saed_req {
    struct saed_server *srv;            /* borrowed */
    struct MHD_Connection *conn;        /* borrowed */
    struct saed_conn *sconn;            /* borrowed: the connection's reaper entry */
    const struct saed_route *route;     /* borrowed; NULL when nothing matched */
    int route_id;                       /* index in the table, or metrics "unmatched" */
    const char *method, *url;           /* borrowed from MHD for the request's life */
    char args[SAED_MAX_ARGS][SAED_MAX_ARG_LEN]; /* path captures, in pattern order */
    size_t n_args;

    enum saed_req_state state;
    enum saed_body body_type;
    uint8_t *body;                      /* (body_len) owned; NUL-terminated for JSON */
    size_t body_len, body_cap, body_limit;
    size_t body_reserved;               /* of srv->body_bytes, for this body */
    size_t reply_reserved;              /* of srv->reply_bytes, for this reply */
    unsigned dropping;                  /* 413 or 503: the body is read and dropped */
    size_t dropped;                     /* bytes dropped so far */
    bool chunked;
    enum http_framing_verdict framing;  /* from saed's own header pass */
    uint64_t length;                    /* Content-Length, when framing says LENGTH */
    bool close;                         /* the reply carries Connection: close */

    bool accept_binary;                 /* Accept: application/octet-stream */
    bool accept_gzip;                   /* Accept-Encoding names gzip */
    const char *origin;                 /* borrowed: Origin when CORS allows it */

    struct saed_sae *sae;               /* borrowed: the SAE the request is for */
    bool sae_prefixed;                  /* the path was /v1/saes/{id}/... */
    char path[512];                     /* the path routed (the prefix taken off) */
    struct saed_snap *snap;             /* owned reference, taken at request start */
    char *fan_ids, *fan_digests;        /* owned: X-SAE-Id / X-SAE-Weights-Digest of a fan-out */
    struct enc_fan *fan;                /* owned: an encode fanned out to several SAEs */
    bool digest_header;                 /* reply carries X-SAE-Weights-Digest */
    const char *space;                  /* X-SAE-Space of a decode reply, or NULL */
    struct saed_job *job;               /* owned: the worker job, when one was made */
    struct text_job *text_job;          /* owned: an encode_text's state (encode_text_post.c) */
    bool incoming;                      /* counted in batcher_incoming, not yet queued */
    struct enc_stream *stream;          /* owned reference: a POST /v1/encode/stream */

    unsigned status;                    /* the status queued, for logs and metrics */
    size_t bytes_out;
    int64_t t_start_us;
};

/* Reply helpers (reply.c). Each queues exactly one response and records its
 * status; they return what the access handler should return. */

/* {"error":{"code","message"}} with status; adds Retry-After to 503,
 * WWW-Authenticate to 401, Allow to 405 (allow may be NULL). */
enum MHD_Result reply_error(struct saed_req *rq, unsigned status, const char *code,
                            const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* 503 weights_changed: the snapshot's weights file was truncated or written
 * in place after it was loaded (sae_model_changed), so nothing computed from
 * it is answered until a SIGHUP loads a checked file (docs/SECURITY.md). */
enum MHD_Result reply_weights_changed(struct saed_req *rq);
/* 405 naming the allowed methods. */
enum MHD_Result reply_method_not_allowed(struct saed_req *rq, const char *allow);
/* A JSON body already built; steals buf (malloc'd, len bytes). Compressed
 * with gzip when the client accepts it and it is large enough. */
enum MHD_Result reply_json_buf(struct saed_req *rq, unsigned status, char *buf, size_t len);
/* Serialises obj compactly and steals it. */
enum MHD_Result reply_json(struct saed_req *rq, unsigned status, json_t *obj);
/* Raw bytes of content_type; steals buf (malloc'd). */
enum MHD_Result reply_bytes(struct saed_req *rq, unsigned status, const char *content_type,
                            void *buf, size_t len);
/* gzip of in[0..n) at zlib level 1..9 into a new buffer (*out, *out_len); 0 or -1. */
int reply_gzip(const void *in, size_t n, int level, char **out, size_t *out_len);
/* Static bytes (not freed), e.g. the embedded OpenAPI document. */
enum MHD_Result reply_static(struct saed_req *rq, unsigned status, const char *content_type,
                             const void *buf, size_t len, bool may_gzip);
/* A response built by the caller (extra headers already added): the shared
 * headers are added and it is queued; takes resp (NULL: returns MHD_NO). */
enum MHD_Result reply_response(struct saed_req *rq, unsigned status, struct MHD_Response *resp,
                               size_t bytes);

/* Route handlers, one file each. */
enum MHD_Result health_get(struct saed_req *rq);
enum MHD_Result model_get(struct saed_req *rq);
enum MHD_Result encode_post(struct saed_req *rq);
enum MHD_Result decode_post(struct saed_req *rq);
enum MHD_Result encode_text_post(struct saed_req *rq); /* POST /v1/encode_text */
enum MHD_Result metrics_get(struct saed_req *rq);
enum MHD_Result openapi_get(struct saed_req *rq);
enum MHD_Result features_get(struct saed_req *rq);      /* GET /v1/features */
enum MHD_Result feature_get(struct saed_req *rq);       /* GET /v1/features/{i} */
enum MHD_Result examples_get(struct saed_req *rq);      /* .../{i}/examples */
enum MHD_Result example_get(struct saed_req *rq);       /* .../examples/{kind}/{rank} */
enum MHD_Result vector_get(struct saed_req *rq);        /* .../{i}/vector */
enum MHD_Result neuronpedia_get(struct saed_req *rq);   /* GET /api/feature/... */
enum MHD_Result saes_get(struct saed_req *rq);          /* GET /v1/saes */
enum MHD_Result sae_get(struct saed_req *rq);           /* GET /v1/saes/{id} */
enum MHD_Result search_get(struct saed_req *rq);        /* GET /v1/search */
enum MHD_Result static_page_get(struct saed_req *rq);   /* web/index.html */
enum MHD_Result static_asset_get(struct saed_req *rq);  /* web/assets/{name} */
bool static_wants_html_404(struct saed_req *rq);       /* a browser asking for no route */
enum MHD_Result static_html_404(struct saed_req *rq);  /* its HTML page not found */
void encode_precheck(struct saed_req *rq, uint64_t content_length, bool has_length);
/* Frees an encode fan-out's state (encode_post.c); NULL is fine. */
void enc_fan_free(struct enc_fan *f);
void decode_precheck(struct saed_req *rq, uint64_t content_length, bool has_length);
/* POST /v1/encode/stream (encode_stream.c): the headers' check, which takes
 * a stream slot (max_streams) and makes rq->stream; the body reader; and the
 * request's end, which drops the request's reference (jobs still running
 * keep the stream until they finish). */
void encode_stream_precheck(struct saed_req *rq, uint64_t content_length, bool has_length);
enum MHD_Result encode_stream_upload(struct saed_req *rq, const char *data, size_t *size);
enum MHD_Result encode_stream_post(struct saed_req *rq);
void encode_stream_end(struct saed_req *rq);
/* The name of stop reason k (< SAED_N_STREAM_STOP), as the reply and
 * /metrics give it. */
const char *encode_stream_stop_name(size_t k);

struct saed_lm;
/* Loads srv->cfg->lm (checkpoint and tokenizer) into srv->lm
 * (encode_text_post.c); on failure err says why and srv->lm may hold a
 * part, which text_lm_free frees. */
int text_lm_open(struct saed_server *srv, sae_error *err);
/* Frees the language model; NULL is fine. */
void text_lm_free(struct saed_lm *t);
/* /v1/model's "lm" for the SAE model m: null without --lm, else the
 * language model's shape, whether m's hook is one it exposes at m's width
 * (reads_hook: /v1/encode_text serves this SAE), m's prepend_bos and the
 * texts a request may hold. */
json_t *text_lm_json(const struct saed_server *srv, const sae_model *m);
/* encode_text requests on the language model's queue, not yet resumed
 * (the drain waits for 0); 0 for NULL. */
size_t text_lm_pending(const struct saed_lm *t);
/* Tokens on the language model's queue or in its forward pass now (the
 * saed_lm_queue_tokens gauge); 0 for NULL. */
size_t text_lm_tokens(const struct saed_lm *t);
struct text_job;
/* Whether the language model's worker is done with q (the request may go on). */
bool text_job_done(const struct text_job *q);
/* Frees an encode_text's state; NULL is fine. */
void text_job_free(struct text_job *q);

/* The routing table (router.c) and its length; metrics label by pattern. */
extern const struct saed_route saed_routes[];
extern const size_t saed_n_routes;

/* MHD callbacks (router.c). */
enum MHD_Result router_access(void *cls, struct MHD_Connection *conn, const char *url,
                              const char *method, const char *version,
                              const char *upload_data, size_t *upload_data_size,
                              void **con_cls);
void router_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                      enum MHD_RequestTerminationCode toe);

/* Frees rq's body once parsed and gives its room back to
 * max_body_total_bytes, so a request waiting for a worker holds neither. */
void req_body_free(struct saed_req *rq);

/* Reserves bytes more of max_reply_bytes_total for rq's reply (held until
 * the request completes, or handed to a streamed reply with
 * reply_hand_over). 0, or -1 with the reply queued: 413 reply_too_large when
 * the reply would pass max_reply_bytes, 503 overloaded with Retry-After when
 * the total has no room. */
int reply_reserve(struct saed_req *rq, uint64_t bytes, enum MHD_Result *r);
/* A reply written by reader(cls) while it is sent, of content type binary
 * (octet-stream, Content-Length total) or JSON (chunked); NULL when it cannot
 * be made (the caller still owns cls). On success rq's reply room moves to
 * *reserved (for the free callback to release). */
struct MHD_Response *reply_stream_new(struct saed_req *rq, bool binary, size_t total,
                                      MHD_ContentReaderCallback reader, void *cls,
                                      MHD_ContentReaderFreeCallback free_cb, size_t *reserved);
/* Gives bytes of reply room back (a streamed reply's free callback). */
void reply_release(struct saed_server *srv, uint64_t bytes);
/* Moves rq's reply room to the caller (a streamed reply that outlives the
 * request frees it); returns the bytes. */
size_t reply_hand_over(struct saed_req *rq);

/* Suspends rq's connection and hands its job to the workers. Returns 0, or -1
 * when the queue is full (nothing suspended; the caller replies 503). */
int req_submit_job(struct saed_req *rq);

#endif
