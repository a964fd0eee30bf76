/* textin.h: the text files `sae harvest` and `sae index --lm` read, one
 * document at a time (memory is one document, whatever the file's length).
 *
 * By the file's name:
 *   - `*.jsonl`, `*.ndjson`, `*.json` (what Hugging Face datasets' to_json
 *     writes): JSON Lines, one object a line whose "text" string is the
 *     document (other keys ignored; duplicate keys, a line that is not an
 *     object, or no "text" string are errors naming the line; blank lines
 *     are skipped);
 *   - anything else: plain text, one document a line, as the Hugging Face
 *     "text" loader reads it: the line without its "\n" (and a "\r" before
 *     it); empty lines are documents of no tokens.
 * A document (a line) longer than SAE_TEXT_MAX_LINE bytes is an error. The
 * bytes are the document's as they are (any bytes: the tokenizer takes them). */
#ifndef SAE_LM_TEXTIN_H
#define SAE_LM_TEXTIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "io/error.h"

#define SAE_TEXT_MAX_LINE ((size_t)64 << 20)

/* An open text file. Owns the stream, the path and the line buffer. */
typedef struct sae_text_reader {
    FILE *f;
    char *path;             /* owned copy, for messages */
    bool jsonl;
    char *line;             /* owned, the current line */
    size_t cap;
    char *doc;              /* owned: the current JSON line's "text" */
    uint64_t line_no;       /* 1-based number of the current line */
} sae_text_reader;

/* Whether path names a JSON Lines file (by its extension). */
bool sae_text_is_jsonl(const char *path);

/* Opens path for reading. */
int sae_text_open(const char *path, sae_text_reader **out, sae_error *err);
void sae_text_close(sae_text_reader *r);

/* The next document: *text (borrowed until the next call) and *len. Returns
 * 1 with a document, 0 at the end of the file, -1 on an error naming the
 * file and line. */
int sae_text_next(sae_text_reader *r, const char **text, size_t *len, sae_error *err);

/* One JSON line's document: the "text" string of line[0 .. n), copied into
 * *doc (malloc'd, NUL-terminated, *len bytes; the caller frees). Returns 1
 * with a document, 0 for a blank line, -1 on an error (name and line_no in
 * the message). */
int sae_text_parse_json_line(const char *line, size_t n, const char *name, uint64_t line_no,
                             char **doc, size_t *len, sae_error *err);

#endif
