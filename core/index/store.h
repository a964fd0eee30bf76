/* store.h: the feature index file (CONTRACT section 4), the only code that
 * speaks SQL. Schema in schema/NNN_*.sql, embedded at build time.
 *
 * Writing: a sae_store_writer builds the index in a temporary file next to the
 * target (`.<target name>.tmp-<pid>`), in one transaction; commit runs
 * `PRAGMA quick_check`, fsyncs the file, renames it over the target and
 * fsyncs the folder. Until then the target is untouched; abort (or a crash)
 * leaves only the temporary file, and the next writer for the same target
 * removes temporary files whose process is gone.
 *
 * Reading: sae_store_open opens the file read-only and immutable, checks that
 * it is a complete saed index (application_id, user_version, size, meta) and
 * loads what every request needs (meta, the vocabulary) once; it is then
 * shared, read-only, by all threads. Each thread makes its own
 * sae_store_conn (a SQLite connection with its prepared statements).
 *
 * The code is the store_*.c files, one job each (the list is in
 * store_internal.h). */
#ifndef SAE_STORE_H
#define SAE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "index/explanations.h"
#include "io/error.h"

#define SAE_STORE_APPLICATION_ID 0x53414549u /* "SAEI" */

/* The schema files, in order (generated from schema/ by schema/embed.py). */
typedef struct sae_schema_file {
    int number;
    const char *name;
    bool on_demand;     /* applied only by sae_store_writer_dashboards */
    const char *sql;
} sae_schema_file;
extern const sae_schema_file sae_schema_files[];
extern const size_t sae_schema_count;
/* The newest schema version this build reads and writes: the last file's
 * number. A file's user_version is the number of the last file applied to
 * it, so an index without the on-demand tables keeps the older number; the
 * reader opens every version from 1 to this one. */
int sae_store_schema_version(void);

/* ---- writing ---- */
typedef struct sae_store_writer sae_store_writer;

/* Creates the temporary file for target (removing stale ones of dead
 * processes first), applies the schema and opens the transaction. */
int sae_store_writer_open(const char *target, sae_store_writer **out, sae_error *err);
/* The temporary file's path (for messages and tests). */
const char *sae_store_writer_temp_path(const sae_store_writer *w);
/* As sae_store_writer_open, but the temporary file starts as a byte copy of
 * the index src (validated by the caller) and no schema is applied: for
 * `sae index --upgrade`, which adds tables and renames the copy over target. */
int sae_store_writer_open_copy(const char *target, const char *src, sae_store_writer **out,
                               sae_error *err);

/* ---- dashboards (schema/002_dashboards.sql) ---- */
#define SAE_LOGIT_ROWS 10   /* tokens per logits table (SAEDashboard's n_rows) */
#define SAE_LOGIT_BINS 50   /* bars of the logits histogram (SAEDashboard's n_bins) */
#define SAE_NEURON_ROWS 3   /* rows of a neuron table (Neuronpedia's runner: n_rows 3) */
#define SAE_ACT_BARS 50     /* bars of the activation histogram (schema/004; n_bins) */

/* Creates the dashboards tables (the on-demand schema files) unless the file
 * has them already. Called before any put_logits / put_neuron_table. */
int sae_store_writer_dashboards(sae_store_writer *w, sae_error *err);

/* One feature's logit tables: pos value descending, neg value ascending;
 * hist[SAE_LOGIT_BINS] counts over SAE_LOGIT_BINS equal bins of
 * [hist_min, hist_max]. All borrowed. */
typedef struct sae_store_logits_row {
    size_t n_pos, n_neg;
    const uint32_t *pos_ids, *neg_ids;
    const float *pos_values, *neg_values;
    double hist_min, hist_max;
    const uint32_t *hist;
} sae_store_logits_row;
/* Replaces feature's logits row. */
int sae_store_put_logits(sae_store_writer *w, uint32_t feature, const sae_store_logits_row *row,
                         sae_error *err);
/* Sets the display string of language-model token id (len bytes). */
int sae_store_put_logit_token(sae_store_writer *w, uint32_t id, const char *token, size_t len,
                              sae_error *err);

/* The neuron tables of a feature (SAEDashboard's feature tables). */
typedef enum sae_neuron_kind {
    SAE_NEURON_ALIGNMENT = 0,   /* W_dec[i]'s largest entries; extra = share of its L1 norm */
    SAE_NEURON_CORRELATED = 1,  /* Pearson over the corpus; extra = cosine similarity */
} sae_neuron_kind;
/* Replaces feature's table of that kind: n rows (<= SAE_NEURON_ROWS). */
int sae_store_put_neuron_table(sae_store_writer *w, uint32_t feature, sae_neuron_kind kind,
                               const uint32_t *indices, const float *values, const float *extra,
                               size_t n, sae_error *err);

/* Replaces feature's exact activation bars (schema/004_act_bars.sql): the
 * float32 min and max of its non-zero activations and n (0 or SAE_ACT_BARS)
 * bar counts; n = 0 for a feature that never fired. */
int sae_store_put_act_bars(sae_store_writer *w, uint32_t feature, float act_min, float act_max,
                           const uint64_t *heights, size_t n, sae_error *err);

/* One row of the features table. sum_exact: 48 bytes (indexer.h's
 * sae_exact_sum, little-endian); hist: hist_n counts of bins hist_first... */
typedef struct sae_store_feature_row {
    uint32_t index;
    uint64_t n_active;
    double density, max_activation, mean_activation, decoder_norm;
    const uint8_t *sum_exact;
    uint32_t hist_first, hist_n;
    const uint64_t *hist;
    uint32_t n_top, n_quantile;
} sae_store_feature_row;

/* Example kinds as stored. */
typedef enum sae_example_kind {
    SAE_EX_TOP = 0,         /* top documents by their max activation */
    SAE_EX_QUANTILE = 1,    /* quantile-group samples */
    SAE_EX_CANDIDATE = 2,   /* sampling candidates, shard files only */
} sae_example_kind;

/* One example to store; tokens and acts are len long (borrowed). */
typedef struct sae_store_example_row {
    uint32_t doc, first, focus, len;
    float value;
    uint64_t hash;
    int32_t grp;
    bool has_bin;
    double bin_min, bin_max, bin_contains;
    const uint32_t *tokens;
    const float *acts;
} sae_store_example_row;

int sae_store_put_meta(sae_store_writer *w, const char *key, const char *value, sae_error *err);
struct sae_store_conn;
/* Copies the meta rows of the index from reads whose key starts with
 * "neighbours_" (an approximate build's method and recall) into w: what
 * `sae merge` keeps of the file whose neighbours it copies. */
int sae_store_copy_neighbours_meta(struct sae_store_conn *from, sae_store_writer *w,
                                   sae_error *err);
int sae_store_put_feature(sae_store_writer *w, const sae_store_feature_row *row, sae_error *err);
/* The examples of one feature and kind, in rank order (one row of the
 * examples table; at most one call per feature and kind). */
int sae_store_put_examples(sae_store_writer *w, uint32_t feature, sae_example_kind kind,
                           const sae_store_example_row *rows, size_t n, sae_error *err);
int sae_store_put_neighbours(sae_store_writer *w, uint32_t feature, const uint32_t *idx,
                             const float *cos, size_t k, sae_error *err);
int sae_store_put_vocab(sae_store_writer *w, uint32_t id, const char *token, size_t len,
                        sae_error *err);
int sae_store_put_document(sae_store_writer *w, uint32_t idx, const char *name,
                           sae_error *err);
/* One explanation with its scores (x is borrowed). */
int sae_store_put_explanation(sae_store_writer *w, const sae_explanation *x, sae_error *err);

struct sae_store_info;
/* Writes the meta table from info (every key sae_store_open requires;
 * schema_version is not a meta key: it is the file's user_version). */
int sae_store_put_info(sae_store_writer *w, const struct sae_store_info *info, sae_error *err);

/* Finishes the file (full-text index, user_version, quick_check), makes it
 * durable and renames it over the target. Frees w whatever the outcome; on
 * failure the temporary file is removed and the target is untouched. */
int sae_store_writer_commit(sae_store_writer *w, sae_error *err);
/* Drops everything written and removes the temporary file; frees w. */
void sae_store_writer_abort(sae_store_writer *w);

/* ---- reading ---- */
typedef struct sae_store sae_store;
typedef struct sae_store_conn sae_store_conn;

/* The meta table, parsed. */
typedef struct sae_store_info {
    int schema_version;                     /* the file's user_version */
    bool has_dashboards;                    /* holds the schema/002 tables (logits, neurons) */
    bool has_scores;                        /* explanation_scores and score_v2 (schema/003) */
    bool has_act_bars;                      /* the act_bars table (schema/004) */
    bool has_best_score;                    /* features.best_score (schema/006) */
    char weights_digest[33];
    uint64_t d_in, d_sae;
    uint64_t n_tokens, n_documents;         /* indexed by this file */
    uint64_t corpus_tokens, corpus_documents; /* the whole tokens file */
    uint32_t top, quantiles, per_quantile, context, neighbours;
    uint64_t seed;
    uint32_t block_rows;
    char shard[64];                         /* "I/N", "" for a whole corpus; a feature-range
                                             * shard adds " features A:B" (--features) */
    uint64_t feat_lo, feat_hi;              /* the features [feat_lo, feat_hi) this file
                                             * holds: [0, d_sae) but in a range shard */
    char histogram[32];                     /* the histogram's definition */
    char tokens_digest[33];
    char explanations_digest[33];           /* "" when built without */
    uint64_t n_explanations;
} sae_store_info;

/* Opens path read-only (immutable) and validates it: a SQLite file, not
 * truncated, application_id 0x53414549, a user_version from 1 to this
 * build's (older files lack later tables: they read as "not computed"), a
 * complete meta table. One clear line in err otherwise. */
int sae_store_open(const char *path, sae_store **out, sae_error *err);
/* The same checks on a file read once, whole, into private memory through one
 * descriptor: every connection reads that copy, so renaming, copying over,
 * deleting or truncating the file afterwards changes nothing the store
 * serves (saed's rule, docs/SECURITY.md). Costs the file's size in memory.
 * The file's XXH3-128 is taken from the same bytes (sae_store_file_digest). */
int sae_store_open_held(const char *path, sae_store **out, sae_error *err);
/* XXH3-128 of a held index's bytes as lowercase hex; "" for one opened by path. */
const char *sae_store_file_digest(const sae_store *s);
void sae_store_close(sae_store *s);
const sae_store_info *sae_store_get_info(const sae_store *s);
const char *sae_store_path(const sae_store *s);
/* Refuses (SAE_EINVAL) an index built from other weights or shapes, and a
 * feature-range shard (it holds only some features: merge it first). */
int sae_store_check_model(const sae_store *s, const char *weights_digest, size_t d_in,
                          size_t d_sae, sae_error *err);
/* Token id -> string (len bytes, may hold NUL); NULL if out of range. */
const char *sae_store_token(const sae_store *s, uint32_t id, size_t *len);
size_t sae_store_vocab_size(const sae_store *s);

/* A connection for one thread; s must outlive it. */
int sae_store_connect(sae_store *s, sae_store_conn **out, sae_error *err);
/* Connections made after this (to a store opened by path) read through
 * SQLite's small page cache instead of mapping the file: for a reader that
 * reads each page about once (sae merge), whose resident set then does not
 * grow with the files' size. */
void sae_store_read_once(sae_store *s);
void sae_store_disconnect(sae_store_conn *c);

/* A feature's statistics. */
typedef struct sae_store_feature {
    uint32_t index;
    uint64_t n_active;
    double density, max_activation, mean_activation, decoder_norm;
    uint32_t n_top, n_quantile;
} sae_store_feature;

/* Feature `index`; SAE_ERANGE when index >= d_sae. */
int sae_store_get_feature(sae_store_conn *c, uint64_t index, sae_store_feature *out,
                          sae_error *err);

/* Histogram over the non-empty range of bins: n bins, edges[n+1] (the last
 * may be +inf), counts[n]; n = 0 for a feature that never fired. */
typedef struct sae_store_histogram {
    size_t n;
    uint32_t first_bin;
    double *edges;          /* (n + 1) owned */
    uint64_t *counts;       /* (n) owned */
} sae_store_histogram;
int sae_store_get_histogram(sae_store_conn *c, uint64_t index, sae_store_histogram *out,
                            sae_error *err);
void sae_store_histogram_free(sae_store_histogram *h);

/* Everything the features table holds for one feature, for `sae merge`. */
typedef struct sae_store_feature_raw {
    sae_store_feature f;
    uint8_t sum_exact[48];
    sae_store_histogram hist;
} sae_store_feature_raw;
int sae_store_get_feature_raw(sae_store_conn *c, uint64_t index, sae_store_feature_raw *out,
                              sae_error *err);
void sae_store_feature_raw_free(sae_store_feature_raw *r);

/* Neighbours: n pairs, cosine descending. */
typedef struct sae_store_neighbour {
    uint32_t index;
    float cosine;
} sae_store_neighbour;
typedef struct sae_store_neighbours {
    size_t n;
    sae_store_neighbour *items; /* (n) owned */
} sae_store_neighbours;
int sae_store_get_neighbours(sae_store_conn *c, uint64_t index, sae_store_neighbours *out,
                             sae_error *err);
void sae_store_neighbours_free(sae_store_neighbours *n);

/* One feature's explanations, in id order, each with its scores (free with
 * sae_explanations_free; digest is ""). An index written before scores were
 * stored reads as explanations without score_v2 or scores. */
int sae_store_get_explanations(sae_store_conn *c, uint64_t index, sae_explanations *out,
                               sae_error *err);
/* Every explanation of the index (for `sae merge`). */
int sae_store_get_all_explanations(sae_store_conn *c, sae_explanations *out, sae_error *err);

/* A feature's logit tables as stored; computed is false for an index built
 * without --unembed (then nothing else is set). Token strings point into
 * `strings` (owned; free with sae_store_logits_free). */
typedef struct sae_store_logits {
    bool computed;
    size_t n_pos, n_neg;
    uint32_t pos_ids[SAE_LOGIT_ROWS], neg_ids[SAE_LOGIT_ROWS];
    float pos_values[SAE_LOGIT_ROWS], neg_values[SAE_LOGIT_ROWS];
    const char *pos_str[SAE_LOGIT_ROWS], *neg_str[SAE_LOGIT_ROWS];
    size_t pos_len[SAE_LOGIT_ROWS], neg_len[SAE_LOGIT_ROWS];
    double hist_min, hist_max;
    size_t n_bins;
    uint32_t hist[SAE_LOGIT_BINS];  /* bar heights */
    char *strings;                  /* owned */
} sae_store_logits;
int sae_store_get_logits(sae_store_conn *c, uint64_t index, sae_store_logits *out,
                         sae_error *err);
void sae_store_logits_free(sae_store_logits *l);
/* Bar i's value as SAEDashboard writes it (logits_hist_data_bar_values): the
 * bin's centre, rounded to 5 decimals. */
double sae_store_logits_bar_value(const sae_store_logits *l, size_t i);

/* One neuron table as stored; computed is false when the index lacks it. */
typedef struct sae_store_neuron_table {
    bool computed;
    size_t n;
    uint32_t indices[SAE_NEURON_ROWS];
    float values[SAE_NEURON_ROWS];
    float extra[SAE_NEURON_ROWS];
} sae_store_neuron_table;
/* neuron_alignment_* (kind SAE_NEURON_ALIGNMENT) or correlated_neurons_*. */
int sae_store_get_neuron_table(sae_store_conn *c, uint64_t index, sae_neuron_kind kind,
                               sae_store_neuron_table *out, sae_error *err);

/* A feature's exact activation bars (schema/004); computed is false when
 * the index lacks them (then nothing else is set), n is 0 when it never
 * fired. Bar values: index_hist.h's sae_np_bar_values(act_min, act_max). */
typedef struct sae_store_act_bars {
    bool computed;
    float act_min, act_max;
    size_t n;
    uint64_t heights[SAE_ACT_BARS];
} sae_store_act_bars;
int sae_store_get_act_bars(sae_store_conn *c, uint64_t index, sae_store_act_bars *out,
                           sae_error *err);

/* A feature's freq_hist_data_bar_* as Neuronpedia stores them (saed's
 * Neuronpedia route, `sae export --neuronpedia`): the exact bars when the
 * index has them (exact = true), else the fixed histogram rebinned
 * (index_hist.h, sae_hist_linear). n is SAE_ACT_BARS, or 0 for a feature
 * that never fired. */
typedef struct sae_store_np_hist {
    bool exact;
    size_t n;
    uint64_t heights[SAE_ACT_BARS];
    double values[SAE_ACT_BARS];
} sae_store_np_hist;
int sae_store_get_np_hist(sae_store_conn *c, uint64_t index, sae_store_np_hist *out,
                          sae_error *err);

/* Listing and search (GET /v1/features). */
typedef enum sae_store_sort {
    SAE_SORT_INDEX,
    SAE_SORT_DENSITY,
    SAE_SORT_MAX_ACTIVATION,
    SAE_SORT_RELEVANCE,     /* with a query only: a feature's best explanation by
                               FTS5 bm25, best first in ascending order */
    SAE_SORT_SCORE,         /* the score of the feature's best-scored explanation
                               (its label); none scored sorts lowest */
} sae_store_sort;
typedef struct sae_store_query {
    const char *q;          /* full-text query over explanations; NULL/"" = all */
    sae_store_sort sort;
    bool desc;              /* order=desc; ties always by index ascending */
    bool alive;             /* only features active at least once (n_active > 0) */
    uint64_t limit, offset;
} sae_store_query;
/* Parses the query parameters' words ("index", "density", "max_activation",
 * "score", "relevance"; "asc", "desc"): 0 or SAE_EINVAL naming the parameter. */
int sae_store_parse_sort(const char *s, sae_store_sort *out, sae_error *err);
int sae_store_parse_order(const char *s, bool *desc, sae_error *err);

typedef struct sae_store_feature_list {
    size_t n;
    sae_store_feature *items; /* (n) owned */
    uint64_t total;           /* matching features before limit/offset */
    double *relevance;        /* (n) owned, SAE_SORT_RELEVANCE only (else NULL): FTS5 bm25 of
                                 the feature's best-matching explanation, negated (higher is
                                 better) */
} sae_store_feature_list;
/* Words of q are matched as FTS5 phrases, all required (a word is a run of
 * characters other than white space); FTS5 syntax in q is never interpreted,
 * so no q is a syntax error. SAE_SORT_RELEVANCE without q: SAE_EINVAL. */
int sae_store_list_features(sae_store_conn *c, const sae_store_query *q,
                            sae_store_feature_list *out, sae_error *err);
void sae_store_feature_list_free(sae_store_feature_list *l);

/* One example with its tokens and per-token values. */
typedef struct sae_store_example {
    sae_example_kind kind;
    uint32_t rank;
    uint32_t doc_index;     /* global 0-based document index */
    const char *document;   /* its id (owned by the list) */
    uint32_t first;         /* position in the document of tokens[0] */
    size_t n;               /* window length */
    const char **tokens;    /* (n) borrowed from the sae_store */
    const size_t *token_len;/* (n) */
    const uint32_t *token_ids; /* (n) vocab ids */
    const float *values;    /* (n) this feature's activation on each token */
    uint32_t focus_index;   /* index in the window of the token the example is
                               about: the max token (top), the sampled token
                               (quantile) */
    float focus_value;
    float max_value, min_value; /* over the window */
    uint32_t max_token_index;   /* first index of max_value in the window */
    uint64_t hash;
    int32_t grp;
    bool has_bin;           /* quantile examples */
    double bin_min, bin_max, bin_contains;
} sae_store_example;
typedef struct sae_store_examples {
    size_t n;
    sae_store_example *items; /* (n) */
    uint64_t total;           /* examples of that kind before limit/offset */
    void *arena;              /* owned: every array the items point to */
} sae_store_examples;
/* Examples of a kind, by rank, with paging; SAE_ERANGE when index >= d_sae. */
int sae_store_get_examples(sae_store_conn *c, uint64_t index, sae_example_kind kind,
                           uint64_t limit, uint64_t offset, sae_store_examples *out,
                           sae_error *err);
void sae_store_examples_free(sae_store_examples *e);

#endif
