/* feature_routes.h: what the feature routes (features_get.c, feature_get.c,
 * examples_get.c, vector_get.c, neuronpedia_get.c) share with each other and
 * with the rest of saed: the per-thread index connection, the argument and
 * query-parameter parsers, the JSON writers for features and examples, the
 * index summary of /v1/model and the labels of encode's include "features".
 *
 * Connections. Each libmicrohttpd polling thread keeps up to 16
 * sae_store_conns (a SQLite connection and its prepared statements) in
 * thread-local storage, each tagged with the index (saed_ix tag, unique in
 * the process) it was opened for. A request whose index has no connection
 * on the thread opens one in place of the one used least recently. The
 * request holds its snapshot, so the index outlives every use of the
 * connection; a connection left on an idle thread holds no file, and is
 * closed when it is replaced or at the thread's exit (a pthread key
 * destructor). */
#ifndef SAED_FEATURE_ROUTES_H
#define SAED_FEATURE_ROUTES_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "buf.h"
#include "saed.h"
#include "index/store.h"

/* Most features (GET /v1/features) or examples (.../examples) in one reply. */
#define FEATURES_MAX_LIMIT 500
/* Defaults of limit on the list and examples routes. */
#define FEATURES_DEFAULT_LIMIT 50
#define EXAMPLES_DEFAULT_LIMIT 20
/* Top examples embedded in GET /v1/features/{i}. */
#define FEATURE_TOP_EXAMPLES 5
/* Cap of one feature-route reply (a runaway guard: replies are bounded by the
 * limits above and the index's window sizes). */
#define FEATURES_REPLY_LIMIT ((size_t)1 << 28)

/* The calling thread's connection to rq's index. NULL when no index is
 * loaded (404 no_index queued) or the connection failed (500 queued); *r
 * then holds what the handler returns. */
sae_store_conn *index_conn(struct saed_req *rq, enum MHD_Result *r);

/* The calling thread's connection to the index ix (GET /v1/search reads
 * every SAE's); NULL with a reply queued and *r set when it failed. */
sae_store_conn *index_conn_ix(struct saed_req *rq, struct saed_ix *ix, enum MHD_Result *r);

/* 404 no_index: the reply of every feature route without an index. */
enum MHD_Result reply_no_index(struct saed_req *rq);

/* Parses a path segment as a feature index in [0, d_sae). On failure queues
 * 404 feature_not_found and returns -1 with *r set. */
int feature_arg(struct saed_req *rq, const char *s, uint64_t *out, enum MHD_Result *r);

/* A query parameter parser: the names a route takes; a value of each is
 * handed out once (a name given twice, an unknown name, a bad value: 400
 * naming the parameter). */
struct query_spec {
    const char *const *names; /* allowed names */
    size_t n;
    const char *values[8]; /* (n) borrowed from MHD; NULL when absent */
    char bad[256];         /* the 400 message, "" while all is well */
};
/* Collects rq's query parameters into q. Returns 0, or -1 with q->bad set. */
int query_collect(struct saed_req *rq, struct query_spec *q);
/* For routes that take no query parameters: 0, or -1 with 400 invalid_query
 * (naming the parameter) queued and *r set. */
int query_none(struct saed_req *rq, enum MHD_Result *r);
/* A decimal integer parameter in [0, max]: 0 (absent: *out = def), or -1
 * with q->bad naming it. */
int query_uint(struct query_spec *q, size_t which, uint64_t def, uint64_t max, uint64_t *out);

/* Most distinct words in a search query (q of /v1/features and /v1/search):
 * each is an FTS5 phrase, all required, run on the threads that serve every
 * request. */
#define QUERY_MAX_WORDS 32
/* A search parameter's distinct words (a repeat dropped, ASCII
 * case-insensitively as FTS5 matches), one space apart: 0 with *out a new
 * string ("" without words; free it) and *n their count; -1 past
 * QUERY_MAX_WORDS with q->bad naming the limit; -2 out of memory. */
int query_words(struct query_spec *q, size_t which, char **out, size_t *n);

/* JSON writers into b (sticky errors, checked by the caller with buf_steal);
 * strings go through buf_json_strn (buf.h). */
/* A feature object (CONTRACT 5): statistics, histogram, explanations,
 * neighbours, and with n_top > 0 the first n_top top examples, the example
 * counts and n_tokens (the tokens the index covers: density's N). With labels
 * (the index's label table, or NULL) each neighbour also carries its label
 * and density, so a page needs no call per neighbour. Returns 0 or a
 * sae_status with err set (nothing useful in b then). */
struct index_labels;
int index_json_feature(struct saed_buf *b, sae_store_conn *c, const sae_store_feature *f,
                       size_t n_top, uint64_t n_tokens, const struct index_labels *labels,
                       sae_error *err);
/* labels' `,"label":...,"density":...}` fragment of feature i, or NULL. */
const char *index_labels_fragment(const struct index_labels *l, uint32_t i, size_t *len);
/* One example object (quantile fields when ex->has_bin). */
void index_json_example(struct saed_buf *b, const sae_store_example *ex);
/* An example's window as the members "tokens":[...],"values":[...] (no
 * braces), shared by saed's and Neuronpedia's example objects. */
void index_json_window(struct saed_buf *b, const sae_store_example *ex);
/* A histogram as {"edges": [...], "counts": [...]}: edges has one entry more
 * than counts, except that a last edge of +infinity (the open top bin) is
 * left out, since JSON has no infinity. */
void index_json_histogram(struct saed_buf *b, const sae_store_histogram *h);

/* The label of a feature: its best-scored explanation (the first of equal
 * scores; no score counts lowest), or NULL. Borrowed from e. */
const sae_explanation *best_explanation(const sae_explanations *e);

/* Sends b as a 200 JSON reply (or 500 when b failed). */
enum MHD_Result reply_buf(struct saed_req *rq, struct saed_buf *b);
/* A store error as a reply: SAE_ERANGE 404 feature_not_found, ENOMEM 503,
 * anything else 500 index_error. */
enum MHD_Result reply_store_error(struct saed_req *rq, int rc, const sae_error *err);

/* The `layer` of the Neuronpedia route: source_id, or the model's hook_name. */
const char *features_source_id(const struct saed_req *rq);

/* /v1/model's "index": a summary of snap's index, or JSON null. New reference. */
json_t *index_summary(const struct saed_snap *snap);
/* Writes the "saed: index ..." start-up / reload line (nothing without one). */
void features_log_index(const struct saed_snap *snap);

/* Every feature's label and density, read when the index is loaded (so
 * encode's include "features" costs no SQL per value). */
struct index_labels;
int index_labels_load(sae_store *s, struct index_labels **out, sae_error *err);
void index_labels_free(struct index_labels *l);
/* For encode's include "features": appends ,"features":[{"index","label",
 * "density"}, ...] for the n indices of one row. */
void encode_features_json(struct saed_buf *b, const struct index_labels *l, const uint32_t *idx,
                          size_t n);

/* Rendered GET /v1/features/{i} replies of one snapshot (feature_get.c). */
struct feature_cache;
struct feature_cache *feature_cache_new(size_t n);
void feature_cache_free(struct feature_cache *fc);
/* Sets, before any index loads, the bytes of rendered replies kept per
 * index (mib MiB; 0: none kept), whether they are rendered at load, and on
 * how many threads. */
void feature_cache_configure(uint64_t mib, bool prerender, int threads);
/* With prerendering on: renders features 0, 1, ... of index into fc on the
 * configured threads until its budget is spent or every feature is in, and
 * logs how many and how long it took (path names the index). A feature that
 * fails to render stops it; its request will report the error. */
void feature_cache_prerender(struct feature_cache *fc, sae_store *index,
                             const struct index_labels *labels, const char *path);

/* The web browser's folder (static_get.c): resolved and opened at start-up
 * (web_root, or the default); 0, or 1 with err set when a configured
 * web_root cannot be used. Without a configured one and none found, saed
 * serves no browser and says so once. */
int static_init(struct saed_server *srv, sae_error *err);
void static_free(struct saed_server *srv);

#endif
