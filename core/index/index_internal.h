/* index_internal.h: what the index_*.c files share and nobody else sees:
 * the indexer's per-feature state, the examples it picks, the vocabulary
 * interner, and the functions one piece offers another. The public API is
 * indexer.h; docs/INDEX.md explains the choices.
 *
 *   index_hist.c        the fixed histogram, quantile groups, exact sums
 *   index_stats.c       settings, the per-feature state and what one value does to it
 *   index_feed.c        blocks fed in row order, their column view, finish
 *   index_picks.c       choosing a feature's top and quantile examples
 *   index_vocab.c       the vocabulary interner
 *   index_write.c       writing a finished indexer to the store
 *   index_neighbours.c  decoder-cosine neighbours, exact or approximate
 *   index_ann.cc        FAISS k-means for the approximate ones (index_ann.h)
 *   index_build.c       the whole build: neighbours, the streaming pass, write
 *   index_merge.c       the merge of shard files
 *   index_bars.c        SAEDashboard's activation bars, exact (dashboards.h) */
#ifndef SAE_INDEX_INTERNAL_H
#define SAE_INDEX_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "index/indexer.h"
#include "index/store.h"

/* ---- the indexer's state (index_stats.c, index_feed.c) ---- */

#define NO_DOC UINT32_MAX

/* The hot per-feature fields, touched for every active value: one cache line. */
typedef struct fstate {
    uint32_t n_active;
    float max;              /* 0 until the first activation */
    uint32_t cur_doc;       /* the document being read for this feature, or NO_DOC */
    uint32_t cur_pos;       /* position of its max so far */
    float cur_max;
    uint16_t n_top;         /* top entries held (<= N) */
    uint16_t top_worst;     /* index of the weakest entry once n_top == N */
    uint16_t b_lo;          /* lowest live bin: lower bins are in the prefix sketch */
    uint8_t cur_captured;   /* the scratch window holds cur's window */
} fstate;

/* A top entry: the document and position of its max. Its window is in slot
 * (entry index) of the feature's window pool. */
typedef struct tentry {
    float value;
    uint32_t doc, pos;
} tentry;

/* A bottom-M sketch: n entries (unordered), worst = index of the largest
 * hash once full; bin = the histogram bin it holds (ring slots only). */
typedef struct skhdr {
    int16_t bin;
    uint8_t n, worst;
} skhdr;

/* A sampled token; its window is in the slot of its sketch position. */
typedef struct skentry {
    uint64_t hash;
    uint32_t doc, pos;
} skentry;

/* One encoded block kept for window lookups: CSR rows copied from the feed,
 * and each row's document and position (NO_DOC outside the indexed slice). */
typedef struct block {
    uint64_t row0;
    size_t n_rows, nnz;
    size_t rows_cap, nnz_cap;
    uint32_t *row_ptr;      /* (n_rows + 1) */
    uint32_t *idx;          /* (nnz) */
    float *val;             /* (nnz) */
    uint32_t *doc, *pos;    /* (n_rows) */
} block;

/* The indexer: settings, borrowed corpus layout, per-feature state carved
 * from a few large allocations, and the two most recent blocks with a
 * column (feature-major) view of them for window capture. */
struct sae_indexer {
    size_t d_sae;
    sae_index_settings set;
    const sae_tokens *tok;  /* borrowed */
    size_t doc_lo, doc_hi;
    uint64_t row_lo, row_hi;    /* rows indexed */
    uint64_t feed_lo, feed_hi;  /* rows fed: whole blocks */
    uint64_t next_feed;         /* row0 the next feed must have */
    uint64_t ready;             /* rows below this are processed */
    size_t doc_cursor;          /* document of the last row fed */
    uint64_t seed_mix;
    bool finished;

    uint32_t n, q, m, c, win;   /* N, Q, M, C, 2C+1 */
    uint32_t w;                 /* live ring bins per feature (0: no sampling) */
    uint32_t n_sk;              /* sketches per feature: prefix + ring (0: none) */
    uint32_t slots;             /* window slots per feature: N + 1 + n_sk*M */

    void *state;                /* one anonymous mapping carved into the arrays below */
    size_t state_len;
    fstate *st;                 /* (d_sae) */
    sae_exact_sum *sum;         /* (d_sae) */
    uint32_t *hist;             /* (d_sae, SAE_HIST_BINS) */
    tentry *top;                /* (d_sae, N) */
    skhdr *sk;                  /* (d_sae, n_sk): [0] prefix, [1 + b % w] bin b */
    skentry *ske;               /* (d_sae, n_sk, M) */
    float *acts;                /* (d_sae, slots, win): slot i value j is position pos-C+j */

    block blk[2];               /* blk[cur_blk] is the newest */
    int cur_blk;
    bool have_prev;
    uint32_t *col_start;        /* (d_sae + 1) CSC over prev+cur */
    uint32_t *col_row;          /* (nnz) rows relative to csc_base */
    float *col_val;             /* (nnz) */
    size_t col_cap;
    uint64_t csc_base;
};

/* Window slot `slot` of feature f: win floats, value j at position pos-C+j. */
static inline float *slot_acts(const sae_indexer *ix, size_t f, size_t slot)
{
    return ix->acts + (f * ix->slots + slot) * ix->win;
}

/* The slot holding the window of the document being read. */
static inline size_t scratch_slot(const sae_indexer *ix)
{
    return ix->n;
}

/* The slot of entry i of sketch k (0 the prefix, 1.. the ring). */
static inline size_t sketch_slot(const sae_indexer *ix, size_t k, size_t i)
{
    return ix->n + 1 + k * ix->m + i;
}

/* Updates every statistic of f for value v at row r (document doc, position
 * pos; column entry e of the column view). */
void sae_ix_observe(sae_indexer *ix, size_t f, float v, uint64_t r, uint32_t doc, uint32_t pos,
                    uint32_t e);
/* The document being read for f is over: enters it in the top list if it
 * qualified. */
void sae_ix_top_flush(sae_indexer *ix, size_t f);

/* ---- examples picked (index_picks.c) ---- */

/* A sampling candidate of one feature, wherever it comes from. */
typedef struct cand {
    uint64_t hash;
    uint32_t doc, pos;
    float value;
    int32_t bin;            /* histogram bin, -1 for the prefix */
    uint32_t src;           /* the caller's reference (slot, or shard/rank) */
} cand;

/* A chosen example: which candidate or top entry, its kind, rank and bins. */
typedef struct pick {
    sae_example_kind kind;
    uint32_t rank;
    uint32_t src;
    uint32_t doc, pos;
    float value;
    uint64_t hash;
    int32_t grp;
    bool has_bin;
    double bin_min, bin_max, bin_contains;
} pick;

/* Top picks order: value descending, then document (qsort). */
int sae_ix_cmp_pick_top(const void *a, const void *b);

/* Chooses the quantile samples of one feature: group g of Q over (0, max]
 * holds the bins sae_quantile_group maps to g (the prefix is group 0) and
 * gets the M candidates of smallest hash among those bins. Writes at most
 * Q*M picks into out (ranked) and returns how many. c is reordered. */
size_t sae_ix_quantile_picks(uint32_t q, uint32_t m, float max, const uint64_t *hist,
                             uint64_t n_active, cand *c, size_t nc, pick *out);

/* The examples one feature of a finished indexer stores: top (best first),
 * quantile picks and, in a shard, every sampling candidate. src is the window
 * slot. cbuf must hold n_sk*M, out N + n_sk*M + Q*M entries. Returns the
 * count; *n_top / *n_quant say how many of each. */
size_t sae_ix_build_picks(const sae_indexer *ix, size_t f, cand *cbuf, pick *out,
                          uint32_t *n_top, uint32_t *n_quant);

/* ---- the vocabulary (index_vocab.c) ---- */

/* Distinct token strings, each with a dense id in order of first sight;
 * open addressing over ids. Owns its buffers. */
typedef struct interner {
    char *bytes;
    size_t n_bytes, cap_bytes;
    uint64_t *off;          /* (n) */
    uint32_t *len;          /* (n) */
    size_t n, cap;
    uint32_t *table;        /* (table_cap) id + 1, 0 = empty */
    size_t table_cap;
} interner;

/* Frees every buffer of it and empties it. */
void sae_ix_interner_free(interner *it);
/* The id of s (len bytes), adding it if new; -1 when out of memory. */
int sae_ix_intern(interner *it, const char *s, size_t len, uint32_t *id);
/* Writes the interned strings as the vocab table, ids in bytewise order of
 * the strings, and returns in *remap (owned by the caller) each interned
 * id's vocab id. */
int sae_ix_write_vocab(interner *it, sae_store_writer *w, uint32_t **remap, sae_error *err);

/* ---- writing features (index_write.c) ---- */

/* Fills a features-table row from the per-feature numbers. hist is the full
 * SAE_HIST_BINS array; the row borrows it (trimmed) and sum. */
void sae_ix_feature_row(uint32_t f, uint64_t n_active, float max, const sae_exact_sum *sum,
                        double decoder_norm, uint64_t n_tokens, const uint64_t *hist,
                        uint32_t n_top, uint32_t n_quant, sae_store_feature_row *row);
/* Stores one feature's examples: rows[i] is picks[i]'s row, and the picks
 * come kind by kind (top, quantile, candidates), each run one table row. */
int sae_ix_put_examples(sae_store_writer *w, uint32_t f, const pick *picks,
                        const sae_store_example_row *rows, size_t n, sae_error *err);

/* ---- the corpus passes of the activation bars (index_build.c) ---- */
struct sae_act_bars;

/* Streams rows [row0, row1) of job->acts through job->model's encoder in
 * blocks of job->set.block_rows (the build's blocks and threads, so the
 * values are the statistics' bit for bit) into bars: a range pass first
 * unless `ranged` (a build's statistics pass fed it already), then the bin
 * pass. Reports progress through job->progress. */
int sae_ix_act_bars_passes(const sae_index_job *job, struct sae_act_bars *bars, bool ranged,
                           uint64_t row0, uint64_t row1, sae_error *err);

#endif
