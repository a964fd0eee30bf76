/* synth_int.h: what the synth_*.c files share and nothing outside them uses.
 *
 *   synth_text.c    reading the text and the tokenizer (character classes here)
 *   synth_rules.c   the planted features: word lists, labels, rules
 *   synth_write.c   `sae synth`: directions, activations and the four files
 *   synth_match.c   truth files, decoder-vs-truth matching, latent labels */
#ifndef SAE_SYNTH_INT_H
#define SAE_SYNTH_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "io/error.h"
#include "train/synth.h"

/* Decodes one UTF-8 character at s[0..n) (n >= 1) into *cp; returns its
 * length (1 and U+FFFD for an invalid or truncated sequence, an overlong form
 * or a surrogate). */
size_t synth_utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);

/* Letters: ASCII letters and every non-ASCII character but U+FFFD and the
 * punctuation and symbol blocks U+2000..U+2BFF (dashes, curly quotes...). */
bool synth_is_letter(uint32_t c);

/* ASCII digits: what numbers are made of. */
bool synth_is_digit(uint32_t c);

/* Reads and tokenizes the text into c (empty on entry) until it holds
 * max_tokens tokens: the files texts[0..n_texts), or with n_texts 0 the
 * default corpus (SAE_SYNTH_DEFAULT_DIR). *n_files gets the number of files
 * the text is drawn from. Fails when there is no token at all. */
int synth_read_corpus(const char *const *texts, size_t n_texts, size_t max_tokens,
                      sae_synth_corpus *c, size_t *n_files, sae_error *err);

/* Joins dir and name into a new string "dir/name" (caller frees), or NULL. */
char *synth_join(const char *dir, const char *name);

#endif
