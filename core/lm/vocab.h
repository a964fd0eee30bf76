/* vocab.h: a language model's token strings by id, from a Hugging Face
 * vocab.json ({"token": id, ...}) or tokenizer.json (model.vocab as such an
 * object, or as Unigram's [[token, score], ...] list, plus added_tokens),
 * shown as SAEDashboard writes them for Neuronpedia: the vocabulary's own
 * strings with GPT-2's byte-level marks replaced ("Ġ" -> " ", "Ċ" -> "\n",
 * "ĉ" -> "\t", and the mis-decoded dashes and quotes "âĢĶ" -> "—", ...); ids
 * past the vocabulary read as "<|outofrange|>". */
#ifndef SAE_LM_VOCAB_H
#define SAE_LM_VOCAB_H

#include <stddef.h>
#include <stdint.h>

#include "io/error.h"

#define SAE_LM_OUT_OF_RANGE "<|outofrange|>"

typedef struct sae_lm_vocab {
    size_t n;               /* ids 0 .. n-1 (missing ids read as "") */
    char **str;             /* (n) owned, display strings, NUL-terminated */
    size_t *len;            /* (n) */
} sae_lm_vocab;

int sae_lm_vocab_read(const char *path, sae_lm_vocab *out, sae_error *err);
void sae_lm_vocab_free(sae_lm_vocab *v);
/* The display string of id (SAE_LM_OUT_OF_RANGE past the end). */
const char *sae_lm_vocab_token(const sae_lm_vocab *v, uint32_t id, size_t *len);
/* The display form of one raw vocabulary string (malloc'd; NULL: no memory). */
char *sae_lm_vocab_display(const char *raw, size_t len, size_t *out_len);

#endif
