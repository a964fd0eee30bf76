/* config.c: the settings table and the three things built from it: the
 * config-file parser, the flag parser and the usage text (config.h). */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "io/list.h"
#include "sae/model.h" /* sae_compute_parse */

enum key_type { K_STR, K_UINT, K_BOOL };

/* One setting. `offset` locates its field in struct saed_config; lo/hi bound
 * K_UINT values; `check` validates a K_STR value (returns 0 or fills err). */
struct key {
    const char *name;
    enum key_type type;
    const char *def;
    size_t offset;
    uint64_t lo, hi;
    int (*check)(const char *value, sae_error *err);
    const char *arg;            /* metavariable in --help */
    const char *help;
};

static int check_listen(const char *v, sae_error *err);
static int check_cors(const char *v, sae_error *err);
static int check_compute(const char *v, sae_error *err);

#define OFF(f) offsetof(struct saed_config, f)

static const struct key keys[] = {
    {.name = "model", .type = K_STR, .def = "", .offset = OFF(model), .arg = "DIR",
     .help = "SAE folder to serve as the SAE \"default\" (any layout `sae info` reads); one of "
             "model, sae, release or an [sae ID] section is required"},
    {.name = "index", .type = K_STR, .def = "", .offset = OFF(index), .arg = "FILE.db",
     .help = "feature index built by `sae index` (held in memory as read; refused unless built "
             "from the served weights; reloaded with the model on SIGHUP); without one the "
             "feature routes answer 404 no_index. With --model, that SAE's index; without, "
             "ID=FILE.db for the SAE ID (repeatable)"},
    {.name = "feature_cache_mib", .type = K_UINT, .def = "64", .offset = OFF(feature_cache_mib),
     .lo = 0, .hi = 1u << 20, .arg = "MIB",
     .help = "rendered GET /v1/features/{i} replies kept per index, in MiB (a hit copies the "
             "text: no SQL, no formatting); 0: every reply is rendered"},
    {.name = "prerender_features", .type = K_BOOL, .def = "on",
     .offset = OFF(prerender_features), .arg = "on|off",
     .help = "render feature replies when an index loads, features 0, 1, ... until "
             "feature_cache_mib is full, so a fresh daemon serves them at its warm rate; costs "
             "start-up (and reload) time, logged"},
    {.name = "lm", .type = K_STR, .def = "", .offset = OFF(lm), .arg = "DIR",
     .help = "language model of POST /v1/encode_text: a Hugging Face GPT-2 checkpoint folder "
             "(config.json, model.safetensors or shards) with its tokenizer (tokenizer.json, or "
             "vocab.json + merges.txt); empty: /v1/encode_text answers 404 no_lm"},
    {.name = "sae", .type = K_STR, .def = "", .offset = OFF(sae_flag), .arg = "ID=DIR",
     .help = "serve the SAE folder DIR under the id ID ([A-Za-z0-9._-]+), as "
             "/v1/saes/ID/...; repeatable (CONTRACT 7)"},
    {.name = "release", .type = K_STR, .def = "", .offset = OFF(release), .arg = "DIR",
     .help = "serve every SAE folder found under DIR (a Gemma Scope tree, a sparsify hub root, "
             "a folder of SAELens folders); each SAE's id is its path under DIR with '/' "
             "turned into '.' (layer_12.width_16k.average_l0_82, layers.6)"},
    {.name = "default_sae", .type = K_STR, .def = "", .offset = OFF(default_sae), .arg = "ID",
     .help = "the SAE the unprefixed routes (/v1/encode, /v1/features, ...) use; empty: the "
             "first (--model, then --sae, then [sae ID] sections, then --release)"},
    {.name = "max_mapped_bytes", .type = K_UINT, .def = "0", .offset = OFF(max_mapped_bytes),
     .lo = 0, .hi = (uint64_t)1 << 50, .arg = "BYTES",
     .help = "weights kept memory-mapped, all SAEs together; past it the SAEs used least "
             "recently are unmapped and mapped again (digest checked) on their next request "
             "(saed_sae_remaps_total); 0: no budget"},
    {.name = "source_id", .type = K_STR, .def = "", .offset = OFF(source_id), .arg = "ID",
     .help = "the `layer` of GET /api/feature/{modelId}/{layer}/{index} (Neuronpedia's source "
             "id, e.g. 6-res-jb); empty: the part of neuronpedia_id after '/', else the model's "
             "hook_name"},
    {.name = "model_name", .type = K_STR, .def = "", .offset = OFF(model_name), .arg = "NAME",
     .help = "the served SAE's language model (e.g. gemma-2-2b), in place of what its folder "
             "says (cfg.json model_name, metadata.model_name, sparsify's run config); empty: "
             "the folder's"},
    {.name = "hook_name", .type = K_STR, .def = "", .offset = OFF(hook_name), .arg = "HOOK",
     .help = "the hook the SAE reads (e.g. blocks.12.hook_resid_post), in place of the "
             "folder's; empty: the folder's"},
    {.name = "hook_name_out", .type = K_STR, .def = "", .offset = OFF(hook_name_out),
     .arg = "HOOK",
     .help = "a transcoder's output hook, which /v1/decode reconstructs; empty: the folder's "
             "(metadata.hook_name_out)"},
    {.name = "neuronpedia_id", .type = K_STR, .def = "", .offset = OFF(neuronpedia_id),
     .arg = "MODEL/SOURCE",
     .help = "Neuronpedia's id of the SAE (e.g. gemma-2-2b/12-gemmascope-res-16k): the modelId "
             "and layer of GET /api/feature/...; empty: the folder's "
             "(metadata.neuronpedia_id), else model_name and hook_name"},
    {.name = "web_root", .type = K_STR, .def = "", .offset = OFF(web_root), .arg = "DIR",
     .help = "folder of the web feature browser (index.html, assets/); empty: the source "
             "tree's web/ for a binary run from its build folder, else "
             "PREFIX/share/saed/web (where `meson install` puts it)"},
    {.name = "compute", .type = K_STR, .def = "native", .offset = OFF(compute),
     .check = check_compute, .arg = "native|f32",
     .help = "how F16/BF16 weights are encoded: native keeps W_enc and W_dec in 16 bits "
             "(memory about the file's size) on the CPU's half-precision kernel (avx512-bf16 "
             "rounds the input to bf16; /v1/model names the kernel); f32 converts them at "
             "load (twice the memory) and uses OpenBLAS as for F32 weights"},
    {.name = "listen", .type = K_STR, .def = "127.0.0.1:8080", .offset = OFF(listen),
     .check = check_listen, .arg = "HOST:PORT",
     .help = "address to listen on; loopback by default so nothing is exposed by accident; "
             "port 0 picks a free port (printed on stderr)"},
    {.name = "threads", .type = K_UINT, .def = "0", .offset = OFF(threads), .lo = 0, .hi = 1024,
     .arg = "N",
     .help = "CPU budget: bounds HTTP, worker and BLAS threads; 0 detects it from the CPU "
             "affinity and the cgroup quota, which OpenBLAS alone does not see"},
    {.name = "http_threads", .type = K_UINT, .def = "0", .offset = OFF(http_threads), .lo = 0,
     .hi = 1024, .arg = "N",
     .help = "libmicrohttpd polling threads (epoll, thread pool); they parse bodies and "
             "format replies, never run GEMMs; 0: = threads"},
    {.name = "workers", .type = K_UINT, .def = "0", .offset = OFF(workers), .lo = 0,
     .hi = 1024, .arg = "N",
     .help = "encode/decode worker threads; each runs BLAS with threads/workers threads; "
             "0: one worker with BLAS on all threads, so concurrent one-row requests fill "
             "one GEMM"},
    {.name = "batching", .type = K_BOOL, .def = "on", .offset = OFF(batching), .arg = "on|off",
     .help = "gather rows of concurrent encode requests into one GEMM; off encodes each "
             "request alone"},
    {.name = "max_batch_rows", .type = K_UINT, .def = "256", .offset = OFF(max_batch_rows),
     .lo = 1, .hi = 65536, .arg = "N",
     .help = "most rows gathered into one GEMM (a larger request runs alone); 256 is where "
             "sgemm reaches its full speed on d_in 768"},
    {.name = "max_batch_wait_us", .type = K_UINT, .def = "10000",
     .offset = OFF(max_batch_wait_us), .lo = 0, .hi = 1000000, .arg = "US",
     .help = "longest a row waits for others to join its batch, counted from when it was "
             "queued, and only while more rows are on their way (requests arriving, or "
             "clients just answered that have not posted again, for at most half the last "
             "GEMM's time); bounds the latency batching adds"},
    {.name = "max_queue_rows", .type = K_UINT, .def = "16384", .offset = OFF(max_queue_rows),
     .lo = 1, .hi = 1u << 26, .arg = "N",
     .help = "rows queued or being encoded at once; past it requests get 503 with Retry-After "
             "at once, which bounds memory and latency under overload"},
    {.name = "max_request_rows", .type = K_UINT, .def = "16384",
     .offset = OFF(max_request_rows), .lo = 1, .hi = 1u << 26, .arg = "N",
     .help = "rows in one request; more gets 413; must not exceed max_queue_rows"},
    {.name = "max_request_texts", .type = K_UINT, .def = "64",
     .offset = OFF(max_request_texts), .lo = 1, .hi = 4096, .arg = "N",
     .help = "texts in one /v1/encode_text request (more gets 413); with --lm, scratch for this "
             "many texts of n_positions tokens is held"},
    {.name = "max_body_bytes", .type = K_UINT, .def = "67108864", .offset = OFF(max_body_bytes),
     .lo = 1024, .hi = (uint64_t)1 << 34, .arg = "BYTES",
     .help = "request body cap (64 MiB); larger Content-Length gets 413 before any byte is "
             "read; a chunked body past it gets 413, or is cut off at twice the cap"},
    {.name = "max_body_total_bytes", .type = K_UINT, .def = "1073741824",
     .offset = OFF(max_body_total_bytes), .lo = 1024, .hi = (uint64_t)1 << 40, .arg = "BYTES",
     .help = "request bodies held at once, all connections together (1 GiB); a request "
             "whose body would pass it gets 503 with Retry-After from its headers"},
    {.name = "max_reply_bytes", .type = K_UINT, .def = "134217728",
     .offset = OFF(max_reply_bytes), .lo = 4096, .hi = (uint64_t)1 << 40, .arg = "BYTES",
     .help = "most one reply may hold (128 MiB): a decode or include=reconstruction reply is "
             "sized from the request before it runs (rows x d_in x 4 bytes) and refused with "
             "413 beyond it; other replies are cut with 500 reply_too_large"},
    {.name = "max_reply_bytes_total", .type = K_UINT, .def = "268435456",
     .offset = OFF(max_reply_bytes_total), .lo = 4096, .hi = (uint64_t)1 << 42, .arg = "BYTES",
     .help = "reply memory held at once, all connections together (256 MiB), from when a "
             "reply is sized until its last byte is sent; a request whose reply would pass it "
             "gets 503 with Retry-After before any work is done"},
    {.name = "max_connections", .type = K_UINT, .def = "1024", .offset = OFF(max_connections),
     .lo = 1, .hi = 1000000, .arg = "N",
     .help = "concurrent connections (RLIMIT_NOFILE is raised to fit)"},
    {.name = "max_connections_per_ip", .type = K_UINT, .def = "512",
     .offset = OFF(max_connections_per_ip), .lo = 0, .hi = 1000000, .arg = "N",
     .help = "concurrent connections from one client address (libmicrohttpd's per-IP limit); "
             "more are refused at accept, so one client cannot take every connection; "
             "0: no per-address limit"},
    {.name = "header_timeout_s", .type = K_UINT, .def = "10", .offset = OFF(header_timeout_s),
     .lo = 1, .hi = 86400, .arg = "S",
     .help = "a request's headers must be complete this long after the connection became "
             "ready for it (accepted, or its previous reply sent), however they trickle; "
             "an idle keep-alive connection is closed then too; at most connection_timeout_s"},
    {.name = "connection_timeout_s", .type = K_UINT, .def = "30",
     .offset = OFF(connection_timeout_s), .lo = 1, .hi = 86400, .arg = "S",
     .help = "a connection idle (no bytes either way) this long is closed"},
    {.name = "request_timeout_s", .type = K_UINT, .def = "120",
     .offset = OFF(request_timeout_s), .lo = 1, .hi = 86400, .arg = "S",
     .help = "total deadline of a request, however slowly its bytes trickle in; counted from "
             "the connection becoming ready for it; past it the connection is closed"},
    {.name = "max_streams", .type = K_UINT, .def = "4", .offset = OFF(max_streams), .lo = 0,
     .hi = 1024, .arg = "N",
     .help = "concurrent POST /v1/encode/stream requests (more get 503 with Retry-After); "
             "each holds a few chunks of max_batch_rows rows; 0 turns the route off"},
    {.name = "stream_timeout_s", .type = K_UINT, .def = "3600", .offset = OFF(stream_timeout_s),
     .lo = 1, .hi = 604800, .arg = "S",
     .help = "total deadline of one POST /v1/encode/stream, counted from its headers; past it "
             "the stream stops at a chunk boundary and its reply says so (request_timeout_s "
             "then bounds only a stall between chunks)"},
    {.name = "max_stream_spool_bytes", .type = K_UINT, .def = "0",
     .offset = OFF(max_stream_spool_bytes), .lo = 0, .hi = (uint64_t)1 << 50, .arg = "BYTES",
     .help = "disk one POST /v1/encode/stream's reply may take in its spool file (the reply "
             "is sent once the body ends); a chunk that would pass it stops the stream "
             "there (\"spool_full\": the client resumes in a new stream); 0: no cap"},
    {.name = "drain_timeout_s", .type = K_UINT, .def = "10", .offset = OFF(drain_timeout_s),
     .lo = 0, .hi = 3600, .arg = "S",
     .help = "on SIGTERM/SIGINT, how long in-flight requests get to finish before exit"},
    {.name = "connection_memory_limit", .type = K_UINT, .def = "65536",
     .offset = OFF(connection_memory_limit), .lo = 8192, .hi = 16u << 20, .arg = "BYTES",
     .help = "libmicrohttpd's per-connection buffer (headers and read buffer); larger "
             "headers get 431"},
    {.name = "gzip", .type = K_BOOL, .def = "on", .offset = OFF(gzip), .arg = "on|off",
     .help = "gzip JSON replies when the client sends Accept-Encoding: gzip"},
    {.name = "gzip_min_bytes", .type = K_UINT, .def = "1024", .offset = OFF(gzip_min_bytes),
     .lo = 0, .hi = (uint64_t)1 << 34, .arg = "BYTES",
     .help = "smaller JSON replies are sent as they are (gzip would not pay)"},
    {.name = "cors_origins", .type = K_STR, .def = "", .offset = OFF(cors_origins),
     .check = check_cors, .arg = "LIST",
     .help = "comma-separated origins allowed by CORS (or *); none by default"},
    {.name = "api_key", .type = K_STR, .def = "", .offset = OFF(api_key), .arg = "KEY",
     .help = "when set, /v1/* (but /v1/health), /api/* and /metrics need "
             "`Authorization: Bearer KEY`; also from $SAED_API_KEY, which keeps it off the "
             "command line"},
    {.name = "quiet", .type = K_BOOL, .def = "off", .offset = OFF(quiet), .arg = "on|off",
     .help = "no per-request log lines on stderr"},
};

#define N_KEYS (sizeof keys / sizeof keys[0])

/* Validator of `listen`. */
static int check_listen(const char *v, sae_error *err)
{
    char host[256];
    unsigned port;
    if (config_split_listen(v, host, sizeof host, &port))
        return sae_error_set(err, SAE_EINVAL,
                             "listen: '%s' is not HOST:PORT (for example 127.0.0.1:8080)", v);
    return 0;
}

/* Validator of `cors_origins`: each entry * or an http(s):// origin. */
static int check_compute(const char *v, sae_error *err)
{
    sae_compute c;
    if (sae_compute_parse(v, &c))
        return sae_error_set(err, SAE_EINVAL, "compute: '%s' is neither native nor f32", v);
    return 0;
}

static int check_cors(const char *v, sae_error *err)
{
    sae_list it = sae_list_of(v);
    const char *p;
    size_t n;
    while (sae_list_next(&it, &p, &n))
        if (n && !(n == 1 && *p == '*') && !(n > 7 && !strncmp(p, "http://", 7)) &&
            !(n > 8 && !strncmp(p, "https://", 8)))
            return sae_error_set(err, SAE_EINVAL,
                                 "cors_origins: '%.*s' is not * or an http(s):// origin",
                                 (int)n, p);
    return 0;
}

/* Splits HOST:PORT or [V6]:PORT (config.h). */
int config_split_listen(const char *listen, char *host, size_t hostcap, unsigned *port)
{
    const char *colon;
    const char *h = listen;
    size_t hl;
    if (*listen == '[') {
        const char *rb = strchr(listen, ']');
        if (!rb || rb[1] != ':')
            return -1;
        h = listen + 1;
        hl = (size_t)(rb - h);
        colon = rb + 1;
    } else {
        colon = strrchr(listen, ':');
        if (!colon)
            return -1;
        hl = (size_t)(colon - listen);
    }
    if (hl == 0 || hl >= hostcap)
        return -1;
    const char *ps = colon + 1;
    if (!*ps || strlen(ps) > 5)
        return -1;
    unsigned long p = 0;
    for (const char *c = ps; *c; c++) {
        if (!isdigit((unsigned char)*c))
            return -1;
        p = p * 10 + (unsigned long)(*c - '0');
    }
    if (p > 65535)
        return -1;
    memcpy(host, h, hl);
    host[hl] = '\0';
    *port = (unsigned)p;
    return 0;
}

/* Finds a key by name; '-' in the name matches '_' (flags are spelled with
 * dashes, the file with underscores; both are accepted everywhere). */
static const struct key *key_find(const char *name, size_t len)
{
    for (size_t i = 0; i < N_KEYS; i++) {
        const char *k = keys[i].name;
        if (strlen(k) != len)
            continue;
        size_t j = 0;
        for (; j < len; j++) {
            char c = name[j] == '-' ? '_' : name[j];
            if (c != k[j])
                break;
        }
        if (j == len)
            return &keys[i];
    }
    return NULL;
}

/* on/off, true/false, yes/no, 1/0; 0 or -1. */
static int parse_bool(const char *v, bool *out)
{
    static const char *yes[] = {"on", "true", "yes", "1"};
    static const char *no[] = {"off", "false", "no", "0"};
    for (size_t i = 0; i < 4; i++) {
        if (!strcmp(v, yes[i])) {
            *out = true;
            return 0;
        }
        if (!strcmp(v, no[i])) {
            *out = false;
            return 0;
        }
    }
    return -1;
}

/* Sets one key from its textual value; `where` names the source for messages
 * ("--threads", "saed.conf:12"). */
static int key_set(struct saed_config *cfg, const struct key *k, const char *value,
                   const char *where, sae_error *err)
{
    char *base = (char *)cfg;
    switch (k->type) {
    case K_STR: {
        if (k->check) {
            sae_error e;
            if (k->check(value, &e))
                return sae_error_set(err, SAE_EINVAL, "%s: %s", where, e.msg);
        }
        char *copy = strdup(value);
        if (!copy)
            return sae_error_set(err, SAE_ENOMEM, "%s: out of memory", where);
        char **slot = (char **)(base + k->offset);
        free(*slot);
        *slot = copy;
        return 0;
    }
    case K_UINT: {
        const char *p = value;
        if (!*p || !isdigit((unsigned char)*p))
            goto bad_uint;
        errno = 0;
        char *end;
        unsigned long long v = strtoull(p, &end, 10);
        if (errno || *end || v < k->lo || v > k->hi)
            goto bad_uint;
        *(uint64_t *)(base + k->offset) = v;
        return 0;
    bad_uint:
        return sae_error_set(err, SAE_EINVAL, "%s: '%s' is not an integer in [%llu, %llu]",
                             where, value, (unsigned long long)k->lo,
                             (unsigned long long)k->hi);
    }
    case K_BOOL:
        if (parse_bool(value, (bool *)(base + k->offset)))
            return sae_error_set(err, SAE_EINVAL, "%s: '%s' is not on or off", where, value);
        return 0;
    }
    return sae_error_set(err, SAE_EINVAL, "%s: unknown key type", where);
}

/* Whether id is a valid SAE id (config.h). */
bool config_id_ok(const char *id, size_t len)
{
    if (!len || len > SAED_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

void config_spec_free(struct saed_sae_spec *s)
{
    char **f[] = {&s->id, &s->model_dir, &s->index_path, &s->source_id,
                  &s->model_name, &s->hook_name, &s->hook_name_out, &s->neuronpedia_id};
    for (size_t i = 0; i < sizeof f / sizeof *f; i++) {
        free(*f[i]);
        *f[i] = NULL;
    }
}

int config_spec_copy(struct saed_sae_spec *dst, const struct saed_sae_spec *src)
{
    const char *in[] = {src->id, src->model_dir, src->index_path, src->source_id,
                        src->model_name, src->hook_name, src->hook_name_out, src->neuronpedia_id};
    char **out[] = {&dst->id, &dst->model_dir, &dst->index_path, &dst->source_id,
                    &dst->model_name, &dst->hook_name, &dst->hook_name_out, &dst->neuronpedia_id};
    memset(dst, 0, sizeof *dst);
    dst->from = src->from;
    for (size_t i = 0; i < sizeof in / sizeof *in; i++)
        if (!(*out[i] = strdup(in[i] ? in[i] : ""))) {
            config_spec_free(dst);
            return -1;
        }
    return 0;
}

/* The keys of an [sae ID] section and where each goes in the spec. */
static const struct {
    const char *name;
    size_t offset;
} section_keys[] = {
    {"model", offsetof(struct saed_sae_spec, model_dir)},
    {"index", offsetof(struct saed_sae_spec, index_path)},
    {"source_id", offsetof(struct saed_sae_spec, source_id)},
    {"model_name", offsetof(struct saed_sae_spec, model_name)},
    {"hook_name", offsetof(struct saed_sae_spec, hook_name)},
    {"hook_name_out", offsetof(struct saed_sae_spec, hook_name_out)},
    {"neuronpedia_id", offsetof(struct saed_sae_spec, neuronpedia_id)},
};
#define N_SECTION_KEYS (sizeof section_keys / sizeof section_keys[0])

/* The spec of id (len bytes) in cfg, created empty (from `from`) when there
 * is none; NULL out of memory. *created says which. */
static struct saed_sae_spec *spec_get(struct saed_config *cfg, const char *id, size_t len,
                                      int from, bool *created)
{
    *created = false;
    for (size_t i = 0; i < cfg->n_specs; i++)
        if (strlen(cfg->specs[i].id) == len && !memcmp(cfg->specs[i].id, id, len))
            return &cfg->specs[i];
    struct saed_sae_spec *a = realloc(cfg->specs, (cfg->n_specs + 1) * sizeof *a);
    if (!a)
        return NULL;
    cfg->specs = a;
    struct saed_sae_spec *sp = &a[cfg->n_specs];
    struct saed_sae_spec empty = {.from = from};
    char *idc = strndup(id, len);
    if (!idc || config_spec_copy(sp, &empty)) {
        free(idc);
        return NULL;
    }
    free(sp->id);
    sp->id = idc;
    cfg->n_specs++;
    *created = true;
    return sp;
}

/* One --sae ID=DIR (or `sae = ID=DIR`): a new SAE; an id given twice is
 * refused, but an [sae ID] section may give the same id its names. */
static int sae_flag_add(struct saed_config *cfg, const char *v, const char *where, sae_error *err)
{
    const char *eq = strchr(v, '=');
    if (!eq || !eq[1])
        return sae_error_set(err, SAE_EINVAL, "%s: '%s' is not ID=DIR", where, v);
    size_t len = (size_t)(eq - v);
    if (!config_id_ok(v, len))
        return sae_error_set(err, SAE_EINVAL,
                             "%s: '%.*s' is not an SAE id ([A-Za-z0-9._-]+, at most %d bytes)",
                             where, (int)(len > 200 ? 200 : len), v, SAED_ID_MAX);
    bool created;
    struct saed_sae_spec *sp = spec_get(cfg, v, len, 1, &created);
    if (!sp)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    if (*sp->model_dir && sp->from != 2)
        return sae_error_set(err, SAE_EINVAL, "%s: the SAE id '%s' is given twice", where,
                             sp->id);
    char *dir = strdup(eq + 1);
    if (!dir)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    free(sp->model_dir);
    sp->model_dir = dir;
    sp->from = 1;
    return 0;
}

/* Records one --index value; config_resolve decides what it means. */
static int index_add(struct saed_config *cfg, const char *v, sae_error *err)
{
    struct saed_sae_spec *a = realloc(cfg->index_for, (cfg->n_index_for + 1) * sizeof *a);
    if (!a)
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    cfg->index_for = a;
    struct saed_sae_spec raw = {.index_path = (char *)v};
    if (config_spec_copy(&a[cfg->n_index_for], &raw))
        return sae_error_set(err, SAE_ENOMEM, "out of memory");
    cfg->n_index_for++;
    return 0;
}

/* key_set, plus what the repeatable keys (sae, index) record. */
static int key_set_all(struct saed_config *cfg, const struct key *k, const char *value,
                       const char *where, sae_error *err)
{
    /* An empty value names nothing (the example config lists every key). */
    if (!strcmp(k->name, "sae"))
        return *value ? sae_flag_add(cfg, value, where, err) : 0;
    if (!strcmp(k->name, "index") && *value && index_add(cfg, value, err))
        return 1;
    return key_set(cfg, k, value, where, err);
}

/* Strips leading and trailing space in place. */
static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* Reads `key = value` lines; '#' starts a comment line; a value may be wrapped
 * in double quotes. A key given twice is an error: which one wins would be a
 * guess. */
static int config_file(struct saed_config *cfg, const char *path, sae_error *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return sae_error_set(err, SAE_EIO, "%s: %s", path, strerror(errno));
    int rc = 0;
    bool seen[N_KEYS] = {false};
    bool seen_sec[N_SECTION_KEYS] = {false};
    struct saed_sae_spec *sec = NULL; /* the [sae ID] section being read */
    size_t sec_i = 0;
    char line[8192];
    unsigned lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char where[512];
        snprintf(where, sizeof where, "%s:%u", path, lineno);
        if (!strchr(line, '\n') && !feof(f)) {
            rc = sae_error_set(err, SAE_EINVAL, "%s: line longer than %zu bytes", where,
                               sizeof line - 1);
            goto out;
        }
        char *s = trim(line);
        if (!*s || *s == '#')
            continue;
        if (*s == '[') {
            size_t sl = strlen(s);
            char *id = s + 1;
            if (s[sl - 1] != ']' || strncmp(id, "sae", 3) || (id[3] != ' ' && id[3] != '\t')) {
                rc = sae_error_set(err, SAE_EINVAL, "%s: expected a section [sae ID]", where);
                goto out;
            }
            s[sl - 1] = '\0';
            id = trim(id + 3);
            if (!config_id_ok(id, strlen(id))) {
                rc = sae_error_set(err, SAE_EINVAL,
                                   "%s: '%.200s' is not an SAE id ([A-Za-z0-9._-]+, at most %d "
                                   "bytes)",
                                   where, id, SAED_ID_MAX);
                goto out;
            }
            bool created;
            sec = spec_get(cfg, id, strlen(id), 2, &created);
            if (!sec) {
                rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
                goto out;
            }
            if (!created) {
                rc = sae_error_set(err, SAE_EINVAL, "%s: the SAE id '%s' is given twice", where,
                                   id);
                goto out;
            }
            sec_i = (size_t)(sec - cfg->specs);
            memset(seen_sec, 0, sizeof seen_sec);
            continue;
        }
        char *eq = strchr(s, '=');
        if (!eq) {
            rc = sae_error_set(err, SAE_EINVAL, "%s: expected key = value", where);
            goto out;
        }
        *eq = '\0';
        char *name = trim(s), *value = trim(eq + 1);
        size_t vl = strlen(value);
        if (vl >= 2 && value[0] == '"' && value[vl - 1] == '"') {
            value[vl - 1] = '\0';
            value++;
        } else if (vl && (value[0] == '"' || value[vl - 1] == '"')) {
            rc = sae_error_set(err, SAE_EINVAL, "%s: unbalanced double quote in the value of %s",
                               where, name);
            goto out;
        }
        if (sec) {
            /* specs may have moved (realloc) since the section began. */
            sec = &cfg->specs[sec_i];
            size_t f = 0;
            while (f < N_SECTION_KEYS && strcmp(name, section_keys[f].name))
                f++;
            if (f == N_SECTION_KEYS) {
                rc = sae_error_set(err, SAE_EINVAL,
                                   "%s: '%s' is not a key of an [sae ID] section (model, index, "
                                   "source_id, model_name, hook_name, hook_name_out, "
                                   "neuronpedia_id)",
                                   where, name);
                goto out;
            }
            if (seen_sec[f]) {
                rc = sae_error_set(err, SAE_EINVAL, "%s: '%s' is set twice", where, name);
                goto out;
            }
            seen_sec[f] = true;
            char *copy = strdup(value), **slot = (char **)((char *)sec + section_keys[f].offset);
            if (!copy) {
                rc = sae_error_set(err, SAE_ENOMEM, "out of memory");
                goto out;
            }
            free(*slot);
            *slot = copy;
            continue;
        }
        const struct key *k = key_find(name, strlen(name));
        if (!k) {
            rc = sae_error_set(err, SAE_EINVAL, "%s: unknown key '%s' (saed --help lists them)",
                               where, name);
            goto out;
        }
        if (seen[k - keys] && strcmp(k->name, "sae") && strcmp(k->name, "index")) {
            rc = sae_error_set(err, SAE_EINVAL, "%s: '%s' is set twice", where, k->name);
            goto out;
        }
        seen[k - keys] = true;
        rc = key_set_all(cfg, k, value, where, err);
        if (rc)
            goto out;
    }
    if (ferror(f))
        rc = sae_error_set(err, SAE_EIO, "%s: read error", path);
out:
    fclose(f);
    return rc;
}

/* Writes text word-wrapped to `width` columns, each line indented. */
static void wrap(FILE *out, const char *text, int indent, int width)
{
    const char *p = text;
    while (*p) {
        int room = width - indent, n = (int)strlen(p);
        if (n > room) {
            n = room;
            while (n > 0 && p[n] != ' ')
                n--;
            if (n == 0)
                n = room;
        }
        fprintf(out, "%*s%.*s\n", indent, "", n, p);
        p += n;
        while (*p == ' ')
            p++;
    }
}

/* saed --help, generated from the table. */
void config_usage(FILE *out)
{
    fprintf(out,
            "usage: saed --model DIR [--index FILE.db] [--listen 127.0.0.1:8080] "
            "[--config FILE] [--threads N] ...\n"
            "       saed --sae ID=DIR ... [--index ID=FILE.db ...] | --release DIR ...\n\n"
            "The sparse-autoencoder daemon: serves /v1/encode, /v1/decode, /v1/model,\n"
            "/v1/health, /metrics, /openapi.json, the feature routes /v1/features... and\n"
            "/api/feature/... (with --index) and the web feature browser at / (see\n"
            "docs/API.md).\n\n"
            "Every setting below can be given as a flag (--max-batch-rows 128 or\n"
            "--max-batch-rows=128) or as `max_batch_rows = 128` in the --config file;\n"
            "flags win over the file. Booleans take on/off (a bare --quiet means on).\n"
            "In the file, a section [sae ID] sets one SAE's model, index, source_id,\n"
            "model_name, hook_name, hook_name_out and neuronpedia_id (CONTRACT 7).\n\n"
            "  --config FILE\n"
            "        read settings from FILE (key = value lines) before the flags\n"
            "  --help, --version\n\n");
    for (size_t i = 0; i < N_KEYS; i++) {
        char flag[64], text[768];
        snprintf(flag, sizeof flag, "--%s %s", keys[i].name, keys[i].arg);
        for (char *c = flag + 2; *c && *c != ' '; c++)
            if (*c == '_')
                *c = '-';
        snprintf(text, sizeof text, "%s (default: %s)", keys[i].help,
                 *keys[i].def ? keys[i].def : "none");
        fprintf(out, "  %s\n", flag);
        wrap(out, text, 8, 92);
    }
    fprintf(out, "\nSignals: SIGHUP reads the config again and reloads the SAEs whose files\n"
                 "changed (one that fails to load keeps serving as it was); SIGTERM/SIGINT stop "
                 "accepting, drain and exit 0.\n");
}

/* Frees every string setting and the SAE specs. */
void config_free(struct saed_config *cfg)
{
    for (size_t i = 0; i < cfg->n_specs; i++)
        config_spec_free(&cfg->specs[i]);
    free(cfg->specs);
    cfg->specs = NULL;
    cfg->n_specs = 0;
    for (size_t i = 0; i < cfg->n_index_for; i++)
        config_spec_free(&cfg->index_for[i]);
    free(cfg->index_for);
    cfg->index_for = NULL;
    cfg->n_index_for = 0;
    for (size_t i = 0; i < N_KEYS; i++)
        if (keys[i].type == K_STR) {
            char **slot = (char **)((char *)cfg + keys[i].offset);
            free(*slot);
            *slot = NULL;
        }
}

/* What the SAE settings add up to: the --model SAE first, --sae flags
 * before sections (CONTRACT 7's order), and each --index given its SAE. */
static int config_resolve(struct saed_config *cfg, sae_error *err)
{
    if (*cfg->model) {
        bool created;
        struct saed_sae_spec *sp = spec_get(cfg, "default", 7, 0, &created);
        if (!sp)
            return sae_error_set(err, SAE_ENOMEM, "out of memory"), 1;
        if (!created)
            return sae_error_set(err, SAE_EINVAL,
                                 "the SAE id 'default' is given twice (--model takes it)"), 1;
        struct saed_sae_spec d = {.id = "default", .model_dir = cfg->model,
                                  .index_path = cfg->index, .source_id = cfg->source_id,
                                  .model_name = cfg->model_name, .hook_name = cfg->hook_name,
                                  .hook_name_out = cfg->hook_name_out,
                                  .neuronpedia_id = cfg->neuronpedia_id, .from = 0};
        config_spec_free(sp);
        if (config_spec_copy(sp, &d))
            return sae_error_set(err, SAE_ENOMEM, "out of memory"), 1;
        /* With --model every --index is its file, the last one winning. */
        for (size_t i = 0; i < cfg->n_index_for; i++)
            config_spec_free(&cfg->index_for[i]);
        cfg->n_index_for = 0;
    }
    for (size_t i = 0; i < cfg->n_index_for; i++) {
        struct saed_sae_spec *x = &cfg->index_for[i];
        char *eq = strchr(x->index_path, '=');
        if (!eq || !eq[1] || !config_id_ok(x->index_path, (size_t)(eq - x->index_path)))
            return sae_error_set(err, SAE_EINVAL,
                                 "--index '%.200s': without --model, an index is given as "
                                 "ID=FILE.db for the SAE ID",
                                 x->index_path), 1;
        char *id = strndup(x->index_path, (size_t)(eq - x->index_path)), *path = strdup(eq + 1);
        if (!id || !path) {
            free(id);
            free(path);
            return sae_error_set(err, SAE_ENOMEM, "out of memory"), 1;
        }
        free(x->id);
        free(x->index_path);
        x->id = id;
        x->index_path = path;
        for (size_t j = 0; j < i; j++)
            if (!strcmp(cfg->index_for[j].id, id))
                return sae_error_set(err, SAE_EINVAL, "--index: the SAE '%s' is given two indexes",
                                     id), 1;
    }
    /* Stable order by where each SAE was named (0 --model, 1 --sae, 2 sections). */
    for (size_t i = 1; i < cfg->n_specs; i++)
        for (size_t j = i; j > 0 && cfg->specs[j - 1].from > cfg->specs[j].from; j--) {
            struct saed_sae_spec t = cfg->specs[j];
            cfg->specs[j] = cfg->specs[j - 1];
            cfg->specs[j - 1] = t;
        }
    bool any = *cfg->release != '\0';
    for (size_t i = 0; i < cfg->n_specs; i++)
        any |= *cfg->specs[i].model_dir != '\0';
    if (!any)
        return sae_error_set(err, SAE_EINVAL,
                             "--model DIR, --sae ID=DIR or --release DIR is required (saed "
                             "--help)"), 2;
    if (*cfg->default_sae && !config_id_ok(cfg->default_sae, strlen(cfg->default_sae)))
        return sae_error_set(err, SAE_EINVAL, "default_sae: '%.200s' is not an SAE id",
                             cfg->default_sae), 1;
    return 0;
}

/* Defaults, then the --config file, then SAED_API_KEY, then the flags;
 * cross-checks at the end (config.h). */
int config_load(struct saed_config *cfg, int argc, char **argv, bool *exit_now, sae_error *err)
{
    int rc = 0;
    memset(cfg, 0, sizeof *cfg);
    *exit_now = false;
    for (size_t i = 0; i < N_KEYS; i++) {
        rc = key_set(cfg, &keys[i], keys[i].def, "default", err);
        if (rc)
            return 1;
    }

    /* --help, --version and --config come first: the file is read before any
     * flag so that flags override it wherever they appear. */
    const char *config_path = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            config_usage(stdout);
            *exit_now = true;
            return 0;
        }
        if (!strcmp(argv[i], "--version")) {
            printf("saed %s\n", SAED_VERSION);
            *exit_now = true;
            return 0;
        }
        if (!strcmp(argv[i], "--config")) {
            if (i + 1 >= argc) {
                sae_error_set(err, SAE_EINVAL, "--config needs a file");
                return 2;
            }
            config_path = argv[++i];
        } else if (!strncmp(argv[i], "--config=", 9)) {
            config_path = argv[i] + 9;
        }
    }
    if (config_path && config_file(cfg, config_path, err))
        return 1;

    const char *env_key = getenv("SAED_API_KEY");
    if (env_key && *env_key && key_set(cfg, key_find("api_key", 7), env_key, "SAED_API_KEY", err))
        return 1;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--config")) {
            i++;
            continue;
        }
        if (!strncmp(a, "--config=", 9))
            continue;
        if (strncmp(a, "--", 2)) {
            sae_error_set(err, SAE_EINVAL, "unexpected argument '%s'", a);
            return 2;
        }
        const char *name = a + 2, *eq = strchr(name, '=');
        size_t nl = eq ? (size_t)(eq - name) : strlen(name);
        const struct key *k = key_find(name, nl);
        if (!k) {
            sae_error_set(err, SAE_EINVAL, "unknown flag '--%.*s' (saed --help lists them)",
                          (int)nl, name);
            return 2;
        }
        const char *value;
        bool ignored;
        if (eq)
            value = eq + 1;
        else if (k->type == K_BOOL && i + 1 < argc && !parse_bool(argv[i + 1], &ignored))
            value = argv[++i];
        else if (k->type == K_BOOL)
            value = "on";
        else if (i + 1 < argc)
            value = argv[++i];
        else {
            sae_error_set(err, SAE_EINVAL, "--%s needs a value", k->name);
            return 2;
        }
        char where[80];
        snprintf(where, sizeof where, "--%.*s", (int)nl, name);
        if (key_set_all(cfg, k, value, where, err))
            return 1;
    }

    if ((rc = config_resolve(cfg, err)))
        return rc;
    if (cfg->max_body_bytes >= cfg->max_body_total_bytes) {
        sae_error_set(err, SAE_EINVAL,
                      "max_body_bytes (%llu) is not below max_body_total_bytes (%llu): a body "
                      "of the largest size could never be held",
                      (unsigned long long)cfg->max_body_bytes,
                      (unsigned long long)cfg->max_body_total_bytes);
        return 1;
    }
    if (cfg->max_request_rows > cfg->max_queue_rows) {
        sae_error_set(err, SAE_EINVAL,
                      "max_request_rows (%llu) exceeds max_queue_rows (%llu): such a request "
                      "could never be queued",
                      (unsigned long long)cfg->max_request_rows,
                      (unsigned long long)cfg->max_queue_rows);
        return 1;
    }
    if (cfg->max_reply_bytes > cfg->max_reply_bytes_total) {
        sae_error_set(err, SAE_EINVAL,
                      "max_reply_bytes (%llu) exceeds max_reply_bytes_total (%llu): a reply of "
                      "the largest size could never be held",
                      (unsigned long long)cfg->max_reply_bytes,
                      (unsigned long long)cfg->max_reply_bytes_total);
        return 1;
    }
    /* The header deadline is the shorter one (config.c's help says so). */
    if (cfg->header_timeout_s > cfg->connection_timeout_s)
        cfg->header_timeout_s = cfg->connection_timeout_s;
    return 0;
}
