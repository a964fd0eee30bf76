/* window.h: documents' token ids cut into fixed-length windows, as SAELens'
 * ActivationsStore cuts text it tokenizes itself
 * (sae_lens/tokenization_and_batching.py, concat_and_batch_sequences, with
 * begin_batch_token_id = BOS when prepend_bos, no begin_sequence token, and
 * sequence_separator_token_id from sequence_separator_token, "bos" by
 * default):
 *
 *   - each document is tokenized alone, without a BOS;
 *   - documents are packed one after another into windows of exactly
 *     `context` tokens; a document that does not fit goes on in the next
 *     window (packing across windows);
 *   - every window starts with the BOS (when prepend_bos), unless the token
 *     that starts it already is the BOS;
 *   - within a window, a document that follows another is preceded by the
 *     separator (unless it starts with it); a separator that lands on a
 *     window's last position ends that window, and the document then starts
 *     the next one after its BOS;
 *   - empty documents add nothing; the last, partial window is dropped.
 *
 * With no_concat (SAELens' disable_concat_sequences) each document is one
 * window of its own: the BOS first (when the document has at least
 * context - 1 tokens and does not start with it), cut to `context`, and
 * documents shorter than a window are dropped.
 *
 * seqpos_slice (SAELens' cfg key, Python's slice(start, stop, step) over the
 * positions 0 .. context-1) picks the positions whose activations are kept:
 * the rows of a window. */
#ifndef SAE_LM_WINDOW_H
#define SAE_LM_WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/error.h"

/* Most tokens in one window (GPT-2's n_positions is 1024; long-context models more). */
#define SAE_WINDOW_MAX_CONTEXT ((size_t)1 << 20)

/* How documents become windows. The BOS and separator are token ids, or -1. */
typedef struct sae_window_opts {
    size_t context;         /* tokens per window: SAELens' context_size */
    bool prepend_bos;       /* every window starts with bos */
    int32_t bos;            /* the BOS id (needed when prepend_bos) */
    int32_t sep;            /* between two documents in one window; -1: none */
    bool no_concat;         /* disable_concat_sequences */
    /* seqpos_slice: a Python slice; an absent bound is has_* false. */
    bool has_start, has_stop;
    int64_t start, stop, step; /* step >= 1 */
} sae_window_opts;

/* SAELens' defaults: context 128, prepend_bos, the BOS as separator (bos and
 * sep are left -1: the caller sets them from the tokenizer), packing on, every
 * position kept. */
void sae_window_opts_default(sae_window_opts *o);

/* Reads what a SAELens cfg.json at path says about windows into o (keys at
 * the top or under "metadata", as SAELens 6 writes them): context_size,
 * prepend_bos, seqpos_slice, disable_concat_sequences and
 * sequence_separator_token ("bos", "eos", null or an id; "eos" and "bos" are
 * one token for GPT-2, "sep" is refused). Keys absent leave o as it was;
 * *sep_is_bos tells whether the separator is the BOS (the caller maps it to
 * the tokenizer's id). A missing file is not an error: o is unchanged. */
int sae_window_opts_read_cfg(const char *path, sae_window_opts *o, bool *sep_is_bos,
                             sae_error *err);

/* Checks o (context in 2 .. SAE_WINDOW_MAX_CONTEXT, a BOS when prepend_bos,
 * a slice that keeps at least one position); messages name the setting. */
int sae_window_opts_check(const sae_window_opts *o, sae_error *err);

/* The positions seqpos_slice keeps, ascending, into pos (o->context entries
 * of room; may be NULL); returns how many. */
size_t sae_window_positions(const sae_window_opts *o, size_t *pos);

/* The packing state between documents: the window being filled and the
 * document being cut. Owns buf; borrows the document's ids. */
typedef struct sae_windower {
    sae_window_opts o;
    uint32_t *buf;          /* (o.context) the window being filled */
    size_t len;             /* tokens in buf so far */
    const int32_t *t;       /* the current document's ids (borrowed) */
    bool open;              /* a document is being cut */
    size_t n, off;          /* its length and the ids used so far */
    uint64_t doc;           /* documents finished so far */
    uint64_t win_doc;       /* the document buf's first document token is from */
    uint64_t windows;       /* windows given out so far */
} sae_windower;

/* Starts an empty windower over o (checked). */
int sae_windower_init(sae_windower *w, const sae_window_opts *o, sae_error *err);
void sae_windower_free(sae_windower *w);

/* Starts the next document: its ids (without a BOS; n may be 0), borrowed
 * until sae_windower_next returns 0. */
void sae_windower_doc(sae_windower *w, const int32_t *ids, size_t n);

/* The next window the document completes: 1 with *win (o.context ids,
 * borrowed until the next call) and *doc (the 0-based number of the document
 * its first document token comes from); 0 when the document is used up (what
 * is left of it waits in the window being filled for the next document). */
int sae_windower_next(sae_windower *w, const uint32_t **win, uint64_t *doc);

#endif
