/* tokens.h: the tokens file of `sae index` (CONTRACT section 3), read with
 * the JSON Lines reader of jsonl.h (lines are capped at SAE_JSONL_MAX_LINE).
 *
 * One document a line, {"id": "...", "tokens": ["The", " cat", ...]}.
 * `id` is optional (a string, or an integer written in decimal); without it
 * the document's id is its 1-based line number. Blank lines are skipped, so a
 * document's index (0-based, used everywhere inside the index) counts only
 * non-blank lines. Other keys are ignored. Rows of the activations are the
 * documents' tokens in order.
 *
 * The reader never holds the corpus: opening validates every line and keeps
 * per document only where its line is and where its rows start (32 bytes per
 * document); a document's tokens are parsed again on demand. */
#ifndef SAE_TOKENS_H
#define SAE_TOKENS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/error.h"

/* An opened, validated tokens file. Owns everything it points to. */
typedef struct sae_tokens {
    char *path;             /* owned copy, used in messages */
    int fd;                 /* kept open to re-read documents */
    size_t n_docs;
    uint64_t n_tokens;      /* sum of the documents' token counts */
    uint64_t *line_off;     /* (n_docs) byte offset of each document's line */
    uint64_t *line_len;     /* (n_docs) its length without the newline */
    uint64_t *line_no;      /* (n_docs) its 1-based line number */
    uint64_t *row_start;    /* (n_docs + 1) first activation row of each document */
    char digest[33];        /* XXH3-128 of the whole file, lowercase hex */
} sae_tokens;

/* Reads and validates every line of path. Errors name the file and line:
 * not JSON, duplicate keys, no "tokens" array, a token that is not a string,
 * an id that is neither a string nor an integer, a document or corpus over
 * 2^32 - 1 tokens or documents. */
int sae_tokens_open(const char *path, sae_tokens **out, sae_error *err);
void sae_tokens_free(sae_tokens *t);

/* The document owning activation row `row` (row < n_tokens): binary search. */
size_t sae_tokens_doc_of_row(const sae_tokens *t, uint64_t row);

/* One document parsed again from the file. Token i is tok[i] (tok_len[i]
 * bytes, may contain NUL bytes); all strings are owned by the sae_doc. */
typedef struct sae_doc {
    char *id;               /* owned, NUL-terminated */
    size_t n;
    char **tok;             /* (n) owned */
    size_t *tok_len;        /* (n) */
} sae_doc;

/* Parses document `doc` into *out. Fails if the line no longer matches what
 * sae_tokens_open saw (the file changed under us). */
int sae_tokens_read_doc(const sae_tokens *t, size_t doc, sae_doc *out, sae_error *err);
void sae_doc_free(sae_doc *d);

#endif
