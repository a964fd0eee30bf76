/* bpe.h: GPT-2's byte-level BPE tokenizer: text to token ids and back.
 *
 * Loads an HF fast tokenizer (`tokenizer.json`: model.vocab, model.merges as
 * "a b" strings or [a, b] pairs, added_tokens) or GPT-2's original pair
 * (`vocab.json` + `merges.txt`). Encoding follows openai/gpt-2's encoder.py:
 *  1. the text is cut into pre-tokens by GPT-2's rule, exactly the regex
 *       's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *     with Unicode letter and number classes and \s the White_Space property
 *     (unicode_classes.c names the Unicode version);
 *  2. each pre-token's bytes become one symbol each (the byte-to-unicode map
 *     names them in the vocabulary), then the adjacent pair of lowest merge
 *     rank is merged, every occurrence left to right, until no pair has a rank.
 * Bytes that are not valid UTF-8 are read as Python's surrogateescape reads
 * them: each one a code point of its own that is no letter, number or space,
 * standing for that byte. So every byte string encodes, and decoding gives the
 * same bytes back.
 *
 * Special tokens (added_tokens, e.g. <|endoftext|>) are matched in the text
 * only with SAE_BPE_SPECIAL (leftmost, longest first; their lstrip/rstrip
 * options are not applied); without it "<|endoftext|>" in a text is ordinary
 * text, as tiktoken's encode_ordinary treats it. SAE_BPE_BOS prepends the BOS
 * id, as an SAE's cfg asks with prepend_bos.
 *
 * A loaded tokenizer is read-only: any number of threads may encode and decode
 * with it at once. */
#ifndef SAE_BPE_H
#define SAE_BPE_H

#include <stddef.h>
#include <stdint.h>

#include "io/error.h"

typedef struct sae_bpe sae_bpe;

/* Flags of sae_bpe_encode. */
enum {
    SAE_BPE_SPECIAL = 1u, /* match added tokens in the text */
    SAE_BPE_BOS = 2u,     /* prepend the BOS id (sae_bpe_bos) */
};

/* Caps on what a tokenizer file may claim; past them it is refused. */
#define SAE_BPE_MAX_FILE ((size_t)64 << 20)  /* bytes of one file */
#define SAE_BPE_MAX_IDS (1 << 22)           /* ids are 0 .. SAE_BPE_MAX_IDS - 1 */
#define SAE_BPE_MAX_TOKEN 4096              /* bytes of one token */

/* Loads the tokenizer at path: a tokenizer.json file, or a folder holding
 * tokenizer.json or else vocab.json and merges.txt. In a folder, the BOS is
 * tokenizer_config.json's bos_token when that file names one; otherwise (and
 * for a file) it is <|endoftext|> when the vocabulary has it. On success *out
 * owns a new tokenizer (sae_bpe_free); on failure err names the file at fault
 * and what is wrong with it. */
int sae_bpe_load(sae_bpe **out, const char *path, sae_error *err);

/* Loads the tokenizer.json held in text[0 .. len); name stands for it in
 * messages. As sae_bpe_load otherwise. */
int sae_bpe_load_json(sae_bpe **out, const char *text, size_t len, const char *name,
                      sae_error *err);

/* Loads GPT-2's original pair of files. As sae_bpe_load otherwise. */
int sae_bpe_load_files(sae_bpe **out, const char *vocab_json, const char *merges_txt,
                       sae_error *err);

/* Frees t and everything it owns; NULL is fine. */
void sae_bpe_free(sae_bpe *t);

/* Encodes text[0 .. len) (any bytes) with flags SAE_BPE_*. On success *ids is
 * a new malloc'd array of *n ids (never more than len + 1) that the caller
 * frees. Fails only for SAE_BPE_BOS without a BOS, or out of memory. */
int sae_bpe_encode(const sae_bpe *t, const char *text, size_t len, unsigned flags,
                   int32_t **ids, size_t *n, sae_error *err);

/* Decodes ids[0 .. n) into a new malloc'd byte string (*text, *len bytes,
 * plus a NUL that *len does not count); fails on an id of no token. */
int sae_bpe_decode(const sae_bpe *t, const int32_t *ids, size_t n, char **text, size_t *len,
                   sae_error *err);

/* The bytes id stands for (*len of them, not NUL-terminated), borrowed from
 * t; NULL for an id of no token. */
const char *sae_bpe_token(const sae_bpe *t, int32_t id, size_t *len);

/* The id of the token whose bytes are bytes[0 .. len) (an added token's
 * content, or a vocabulary entry), or -1. */
int32_t sae_bpe_find(const sae_bpe *t, const char *bytes, size_t len);

/* The BOS id, or -1 when the tokenizer has none. */
int32_t sae_bpe_bos(const sae_bpe *t);

/* Sets the BOS id (a token of t, or -1 for none); SAE_EINVAL otherwise. */
int sae_bpe_set_bos(sae_bpe *t, int32_t id, sae_error *err);

/* One more than the largest id. */
size_t sae_bpe_vocab_size(const sae_bpe *t);

#endif
