/* dashboards.h: the parts of a feature's dashboard that SAEDashboard computes
 * beyond the statistics (docs/INDEX.md, "Dashboards"; schema/002):
 *   - logit tables: the 10 largest and 10 smallest entries of W_dec[i] . W_U
 *     and a 50-bin histogram of all V of them, from one (d_sae x d_in) x
 *     (d_in x V) product computed in blocks of rows, so the product's memory
 *     stays bounded whatever V;
 *   - neuron alignment: the 3 largest entries of W_dec[i] and their share of
 *     its L1 norm;
 *   - correlated neurons (--correlations): the 3 input dimensions of largest
 *     Pearson correlation with the feature over the corpus, accumulated in
 *     the statistics' streaming pass;
 *   - SAEDashboard's activation histogram, exact (--neuronpedia-hist): 50
 *     linear bars over each feature's non-zero activations (index_hist.h,
 *     sae_np_bar). Bars need the range before the first count, so they take
 *     a pass over the corpus of their own: the range comes from the
 *     statistics' pass in a build, from a pass of its own in an upgrade.
 * W_U and the token strings come from the caller (core/lm in `sae`). */
#ifndef SAE_INDEX_DASHBOARDS_H
#define SAE_INDEX_DASHBOARDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "index/store.h"
#include "io/error.h"
#include "sae/encode.h"

/* Bytes of the product's output block: rows per block = this / (4 V). */
#define SAE_LOGIT_BLOCK_BYTES (64u << 20)

/* One feature's logit tables. */
typedef struct sae_logit_table {
    size_t n_pos, n_neg;                        /* min(10, V) */
    uint32_t pos_ids[SAE_LOGIT_ROWS], neg_ids[SAE_LOGIT_ROWS];
    float pos_values[SAE_LOGIT_ROWS];           /* descending */
    float neg_values[SAE_LOGIT_ROWS];           /* ascending */
    double hist_min, hist_max;                  /* the histogram's range */
    uint32_t hist[SAE_LOGIT_BINS];
} sae_logit_table;

/* The tables of one row of logits (V values): top and bottom 10 (ties by
 * the lower token id), and torch.histc's 50 equal bins over [min, max] (a
 * value equal to max counts in the last bin; min == max widens the range by
 * 1 either side, as histc does). */
void sae_logit_table_row(const float *logits, size_t n_vocab, sae_logit_table *t);

/* Rows per block of the product for V tokens. */
size_t sae_logit_block_rows(size_t n_vocab);

/* The tables of every feature: out (d_sae) from W_dec (d_sae, d_in) and W_U
 * (d_in, V), block_rows features at a time through sae_gemm_rows (0: the
 * default, sae_logit_block_rows). */
int sae_logit_tables(const float *w_dec, size_t d_sae, size_t d_in, const float *w_u,
                     size_t n_vocab, size_t block_rows, sae_logit_table *out, sae_error *err);

/* Neuron alignment of one decoder row (d_in): the n = min(3, d_in) largest
 * entries (ties by lower index), their values and |value| / sum_j |w[j]|. */
void sae_neuron_alignment(const float *w_dec_row, size_t d_in, uint32_t *idx, float *val,
                          float *l1, size_t *n);

/* ---- correlated neurons ---- */
typedef struct sae_corr sae_corr;

/* Sums for Pearson's r between every feature and every input dimension:
 * d_sae x d_in doubles (the message names the size if it does not fit). */
int sae_corr_new(size_t d_sae, size_t d_in, sae_corr **out, sae_error *err);
void sae_corr_free(sae_corr *c);
/* Adds rows->n_rows rows: x (n_rows, d_in) and their encoded features. */
void sae_corr_feed(sae_corr *c, const float *x, const sae_sparse *rows);
/* Feature f's n = min(3, d_in) dimensions of largest Pearson r, with r and
 * the cosine similarity, computed as SAEDashboard's RollingCorrCoef does
 * (1e-6 added to both denominators). */
void sae_corr_top(const sae_corr *c, size_t f, uint32_t *idx, float *pearson, float *cossim,
                  size_t *n);

/* ---- SAEDashboard's activation histogram ---- */
typedef struct sae_act_bars sae_act_bars;

/* Per feature: the min and max of its active values, then its 50 bar
 * counts; d_sae x 50 uint64 (the message names the size if it does not
 * fit). */
int sae_act_bars_new(size_t d_sae, sae_act_bars **out, sae_error *err);
void sae_act_bars_free(sae_act_bars *b);
/* Feeds encoded rows: before sae_act_bars_start_bins their active values
 * (> 0) widen each feature's range, after it they are counted into its bars.
 * Every row of the corpus must be fed once in each phase. */
void sae_act_bars_feed(sae_act_bars *b, const sae_sparse *rows);
/* Ends the range phase: the bars' edges are fixed from here on. */
void sae_act_bars_start_bins(sae_act_bars *b);
/* Writes every feature's bars (sae_store_put_act_bars) once both phases
 * are done. */
int sae_act_bars_write(const sae_act_bars *b, sae_store_writer *w, sae_error *err);

/* ---- writing ---- */
struct sae_model;
struct sae_acts;
struct sae_tokens;

/* What a build or an upgrade adds to the index. */
typedef struct sae_dash_job {
    const float *w_u;           /* (d_model, n_vocab), NULL: no logit tables */
    size_t d_model, n_vocab;    /* d_model must be the SAE's output width */
    /* The display string of a token id (borrowed until the next call). */
    const char *(*token)(void *ctx, uint32_t id, size_t *len);
    void *token_ctx;
    bool correlations;          /* correlated neurons (a build only) */
    /* SAEDashboard's exact activation histogram (act_bars); an upgrade then
     * reads the index's corpus again: acts and tok (borrowed) must be the
     * ones it was built from (all its rows, the same tokens file). */
    bool act_bars;
    const struct sae_acts *acts;
    const struct sae_tokens *tok;
    /* Called after each block of an upgrade's passes (may be NULL). */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
} sae_dash_job;

/* Writes the dashboards of m to w: logit tables (if dj->w_u), neuron
 * alignment, the correlated neurons from corr and the activation bars from
 * bars (each if not NULL). Creates the tables first. */
int sae_dash_write(const struct sae_model *m, const sae_dash_job *dj, const sae_corr *corr,
                   const sae_act_bars *bars, sae_store_writer *w, sae_error *err);

/* `sae index --upgrade`: adds dj's logit tables and the neuron alignment to
 * the index at path, built from m's weights, without the corpus, and with
 * dj->act_bars the activation bars from two passes over dj->acts (encoded
 * in the index's blocks, so the values are the build's bit for bit): a copy
 * is written and renamed over path (store.h), so path is untouched on
 * failure. Refuses a shard, and a corpus that is not the index's. */
int sae_index_upgrade(const struct sae_model *m, const char *path, const sae_dash_job *dj,
                      sae_error *err);

#endif
