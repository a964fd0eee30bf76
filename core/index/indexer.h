/* indexer.h: the one-pass feature statistics behind `sae index` and `sae merge`
 * (CONTRACT section 4; docs/INDEX.md explains every choice).
 *
 * The caller encodes the corpus block by block (sae_encode) and feeds the
 * sparse rows here in row order. Per feature the indexer keeps state whose
 * size does not depend on the corpus: the count, exact sum and max of the
 * active values, a histogram over fixed bins, the top-N documents by their max
 * activation (each with its context window), and, per fixed histogram bin, the
 * M tokens with the smallest seeded hash of (document, position) (a bottom-M
 * sketch, also with windows). Windows are captured while the rows are at hand,
 * so the corpus is read once. Everything merges exactly: shards of a corpus
 * give, merged, the same numbers as one build over all of it.
 *
 * Rows must be encoded in the same blocks whatever the shard (BLAS results
 * depend on the block shape): blocks are [k*block_rows, (k+1)*block_rows) in
 * global row numbers, and a shard encodes the whole blocks its rows touch.
 *
 * This is the public face of the index_*.c files, one object each (the list
 * is in index_internal.h); the histogram and exact sums are index_hist.h. */
#ifndef SAE_INDEXER_H
#define SAE_INDEXER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sae/encode.h"
#include "io/error.h"
#include "index/explanations.h"
#include "index/index_hist.h"
#include "index/tokens.h"

/* ---- settings ---- */
typedef struct sae_index_settings {
    uint32_t top;           /* N: top examples per feature (default 20) */
    uint32_t quantiles;     /* Q: quantile groups over (0, max] (default 10) */
    uint32_t per_quantile;  /* M: samples per group (default 5) */
    uint32_t context;       /* C: tokens either side of the focus token (default 8) */
    uint32_t neighbours;    /* K: decoder-cosine neighbours (default 10) */
    int neighbours_method;  /* SAE_NB_AUTO (default), SAE_NB_EXACT or SAE_NB_APPROX */
    uint64_t seed;          /* sampling seed (default 0) */
    bool is_shard;          /* built with --shard or --features: keeps sampling candidates */
    uint32_t shard, n_shards; /* this is slice `shard` of `n_shards` */
    uint32_t feat_lo, feat_hi; /* --features A:B: only features [A, B); 0, 0: all */
    uint32_t block_rows;    /* rows per encode block (default 256) */
} sae_index_settings;

/* Bounds on the settings: they size the per-feature state. */
#define SAE_INDEX_MAX_TOP 1000
#define SAE_INDEX_MAX_QUANTILES 100
#define SAE_INDEX_MAX_PER_QUANTILE 100
#define SAE_INDEX_MAX_CONTEXT 512
#define SAE_INDEX_MAX_NEIGHBOURS 1000

void sae_index_settings_default(sae_index_settings *s);
/* Checks the bounds above (and shard < n_shards, feat_lo < feat_hi unless
 * both are 0, block_rows >= 2*context+1); the message names the flag. */
int sae_index_settings_check(const sae_index_settings *s, sae_error *err);

/* The documents [*doc_lo, *doc_hi) of slice `shard` of `n_shards` over
 * n_docs documents: floor(i*n_docs/n_shards) boundaries. */
void sae_shard_docs(size_t n_docs, uint32_t shard, uint32_t n_shards, size_t *doc_lo,
                    size_t *doc_hi);

/* ---- the streaming indexer ---- */
typedef struct sae_indexer sae_indexer;

/* Bytes of per-feature state for d_sae features under s (for messages and
 * docs); 0 if it overflows size_t. */
size_t sae_indexer_state_bytes(size_t d_sae, const sae_index_settings *s);

/* Makes an indexer of d_sae features (B - A of a --features range, whose rows
 * are fed renumbered from 0) over the documents [doc_lo, doc_hi) of tok
 * (borrowed; must outlive the indexer). Fails with SAE_ENOMEM naming the state size. */
int sae_indexer_new(size_t d_sae, const sae_index_settings *s, const sae_tokens *tok,
                    size_t doc_lo, size_t doc_hi, sae_indexer **out, sae_error *err);
void sae_indexer_free(sae_indexer *ix);

/* The rows the caller must encode and feed, [*row0, *row1): the indexed rows
 * widened to whole blocks. */
void sae_indexer_rows(const sae_indexer *ix, uint64_t *row0, uint64_t *row1);

/* Feeds the encoded rows [row0, row0 + rows->n_rows): one whole block (the
 * last may be short), in order, starting at the first row sae_indexer_rows
 * gives. Only active values (> 0) count. rows is copied. */
int sae_indexer_feed(sae_indexer *ix, uint64_t row0, const sae_sparse *rows, sae_error *err);

/* Processes what is left once every block was fed. */
int sae_indexer_finish(sae_indexer *ix, sae_error *err);

/* Number of rows and documents indexed (after finish). */
uint64_t sae_indexer_tokens(const sae_indexer *ix);
size_t sae_indexer_documents(const sae_indexer *ix);

struct sae_store_writer;

/* Writes every feature (statistics, histogram, examples with their tokens
 * read again from the tokens file), the vocabulary and the documents to w.
 * dec_norm (the model's d_sae) gives each feature's decoder norm. An indexer
 * of a --features range [A, B) holds B - A features, written as A.. */
int sae_indexer_write(sae_indexer *ix, const float *dec_norm, struct sae_store_writer *w,
                      sae_error *err);

/* ---- neighbours ----
 * For every feature, the k features with the largest decoder cosine (self
 * excluded; cosine descending, ties by index ascending), from W_dec (d_sae,
 * d_in) and its row norms (rows of norm 0 have cosine 0 with everything).
 * Blockwise cblas_sgemm over pairs of row blocks, each pair once; never a
 * d_sae x d_sae matrix. idx and cos are (d_sae, k); k <= d_sae - 1. */
int sae_neighbours(const float *w_dec, const float *dec_norm, size_t d_sae, size_t d_in,
                   size_t k, uint32_t *idx, float *cos, sae_error *err);

/* How the neighbours are found: exact (blockwise GEMM, d_sae^2 d_in), approx
 * (FAISS k-means lists scanned by BLAS, index_ann.h; refused without FAISS) or
 * auto: exact up to SAE_NB_EXACT_MAX features, approx above when FAISS is
 * linked, exact otherwise. */
enum { SAE_NB_AUTO = 0, SAE_NB_EXACT, SAE_NB_APPROX };
#define SAE_NB_EXACT_MAX 65536
/* Features whose exact neighbours measure an approximate build's recall@k. */
#define SAE_NB_RECALL_SAMPLE 1000

/* What a neighbours build did: the method used and, for approx, recall@k
 * against exact over `sampled` seeded random features (recall < 0 for exact). */
typedef struct sae_nb_report {
    int method;             /* SAE_NB_EXACT or SAE_NB_APPROX */
    double recall;
    size_t sampled;
    double approx_s, recall_s; /* graph build + search; the exact sample */
} sae_nb_report;

/* The neighbours by `method` (above) into idx and cos as sae_neighbours
 * does; seed picks the recall sample. */
int sae_neighbours_by(const float *w_dec, const float *dec_norm, size_t d_sae, size_t d_in,
                      size_t k, int method, uint64_t seed, uint32_t *idx, float *cos,
                      sae_nb_report *rep, sae_error *err);

/* ---- the whole build ---- */
struct sae_model;
struct sae_acts;

/* Where a build's time went (seconds, wall clock). */
typedef struct sae_index_timing {
    double neighbours_s;    /* decoder cosines */
    sae_nb_report nb;       /* how the neighbours were found */
    double stream_s;        /* reading, encoding and indexing the rows */
    double write_s;         /* examples' tokens, SQLite rows, quick_check, fsync, rename */
} sae_index_timing;

/* Everything `sae index` gives a build; all borrowed. */
typedef struct sae_index_job {
    const struct sae_model *model;
    const struct sae_acts *acts;        /* rows = the documents' tokens in order */
    /* Instead of acts (NULL): rows read by read_rows into dst (n x d_in
     * floats), asked for in row order, one block after another, from one
     * encoder thread (`sae index --lm` runs the language model there). */
    int (*read_rows)(void *ctx, uint64_t row0, size_t n, float *dst, sae_error *err);
    void *rows_ctx;
    size_t rows_d_in;
    const sae_tokens *tok;
    const sae_explanations *expl;       /* NULL: none */
    /* Dashboards (dashboards.h): logit tables, neuron alignment, correlated
     * neurons; NULL: none, and the file is what it was before them. */
    const struct sae_dash_job *dash;
    sae_index_settings set;
    /* Called after each block with rows done and rows to do (may be NULL). */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    /* Called as pass `pass` (0-based) of n_passes over the corpus starts,
     * for features [lo, hi) (may be NULL). */
    void (*on_pass)(void *ctx, uint32_t pass, uint32_t n_passes, uint64_t lo, uint64_t hi);
    void *progress_ctx;
    /* --max-state-bytes: the per-feature state of one pass stays within
     * this; more features take more passes over the corpus, each a feature
     * range (as --features) into a file beside out_path, merged at the end
     * (sae_merge_shards). 0: one pass. */
    uint64_t max_state_bytes;
    sae_index_timing *timing;           /* filled on success when not NULL */
} sae_index_job;

/* Builds the index of job into out_path atomically (store.h): checks that
 * the activations' d_in is the model's and that the token counts add up to
 * the rows, computes the neighbours, streams the slice's rows through
 * sae_encode and the indexer, writes everything, commits. On failure the
 * previous out_path is untouched. The streaming pass runs its own encoder
 * threads (as many as OpenBLAS's thread count, at most 8) and changes
 * OpenBLAS's process-wide thread count while it runs; the calling thread
 * indexes meanwhile, so the CPU used is the BLAS budget plus one thread. */
int sae_index_build(const sae_index_job *job, const char *out_path, sae_error *err);

/* The number of passes a build of d_sae features under s needs to keep its
 * per-feature state within max_state_bytes (0: no bound, 1 pass); pass p
 * holds the features [floor(p*d/P), floor((p+1)*d/P)). */
uint32_t sae_index_passes(size_t d_sae, const sae_index_settings *s, uint64_t max_state_bytes);

/* ---- merge ---- */
/* Merges the shard files paths[0..n) into w: document shards (--shard I/N)
 * and feature-range shards (--features A:B) in any grid, every range with
 * every document slice once, all built with the same weights and settings.
 * The ranges must cover [0, d_sae) without overlap (refused otherwise,
 * naming the files). The content equals that of one build over the whole
 * corpus. */
int sae_merge_shards(const char *const *paths, size_t n, struct sae_store_writer *w,
                     sae_error *err);

#endif
