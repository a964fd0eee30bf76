/* harvest.h: text through a language model into activation rows, cut into
 * windows as SAELens' ActivationsStore cuts them (core/lm/window.h): what
 * `sae harvest` writes and `sae index --lm` indexes without writing it.
 *
 * A feed reads the text files in order, one document at a time, tokenizes
 * each (no BOS: the windows add it), packs the ids into windows and, a batch
 * of windows at a time, runs the forward pass as deep as the deepest hook.
 * Memory is one batch and one document, whatever the corpus' length. A row is
 * one kept position (seqpos_slice) of one window, windows in order. */
#ifndef SAE_CLI_HARVEST_H
#define SAE_CLI_HARVEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "io/error.h"
#include "lm/lm.h"
#include "lm/window.h"

/* What a feed reads and how; strings and arrays borrowed. */
typedef struct lm_feed_opts {
    const char *lm_dir;             /* checkpoint folder, with its tokenizer */
    const char *const *texts;       /* (n_texts) text files (core/lm/textin.h) */
    size_t n_texts;
    const sae_lm_hook *hooks;       /* (n_hooks) */
    size_t n_hooks;
    sae_window_opts win;            /* bos -1: the tokenizer's; see sep_is_bos */
    bool sep_is_bos;                /* the separator is the tokenizer's BOS */
    size_t batch;                   /* windows per forward pass; 0: 2048 tokens' worth */
} lm_feed_opts;

typedef struct lm_feed lm_feed;

/* Loads the model and its tokenizer, checks the hooks and the windows. */
int lm_feed_open(const lm_feed_opts *o, lm_feed **out, sae_error *err);
void lm_feed_free(lm_feed *f);

/* Starts again at the first document of the first file. */
int lm_feed_rewind(lm_feed *f, sae_error *err);

/* The next batch of windows, run through the model when forward: returns its
 * number of windows (0 at the end of the text) or -1. */
long lm_feed_next(lm_feed *f, bool forward, sae_error *err);

/* The settings the feed runs with (bos and sep resolved). */
const sae_window_opts *lm_feed_window(const lm_feed *f);
/* Rows a window gives (positions kept by seqpos_slice). */
size_t lm_feed_rows_per_window(const lm_feed *f);
/* Floats per row of hook h (an index into the hooks). */
size_t lm_feed_width(const lm_feed *f, size_t h);
/* The current batch's rows of hook h, (windows x rows per window, width). */
const float *lm_feed_rows(const lm_feed *f, size_t h);
/* Documents read, windows and tokens given so far. */
void lm_feed_counts(const lm_feed *f, uint64_t *docs, uint64_t *windows, uint64_t *tokens);

/* Appends the current batch's windows to fp as `sae index` tokens lines:
 * {"id": "<window number>", "doc": <its first document>, "ids": [...],
 *  "tokens": [...]} with the kept positions' ids and token strings (the
 * token's bytes as UTF-8, a byte that is not part of whole UTF-8 as U+FFFD). */
void lm_feed_put_tokens(const lm_feed *f, FILE *fp);

/* Writes the whole text's tokens file to path (atomically) without running
 * the model; fails when the text gives no whole window. */
int lm_feed_write_tokens(lm_feed *f, const char *path, bool quiet, sae_error *err);

/* sae_index_job.read_rows over a feed of one hook: rows in order from 0. */
int lm_feed_read_rows(void *ctx, uint64_t row0, size_t n, float *dst, sae_error *err);

/* Sets o->win and o->sep_is_bos to SAELens' defaults, then to what the SAE
 * folder sae_dir's cfg.json says (NULL: defaults only). */
int lm_window_opts_of_sae(const char *sae_dir, lm_feed_opts *o, sae_error *err);

/* Parses "NAME[,NAME...]" into hooks (cap entries); returns how many, or -1
 * with err naming the hook. */
long lm_parse_hooks(const char *list, sae_lm_hook *hooks, size_t cap, sae_error *err);

#endif
