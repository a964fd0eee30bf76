/* bpe_internal.h: the tokenizer's tables, shared by the loader (bpe_load.c)
 * and the encoder (bpe.c). Not for use outside core/lm/bpe*. */
#ifndef SAE_BPE_INTERNAL_H
#define SAE_BPE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#define BPE_NO_TOKEN UINT32_MAX

/* One merge: the pair of ids (left << 32 | right) -> its rank and the id of
 * the token the two make. An id of -1 marks an empty slot. */
struct bpe_merge {
    uint64_t pair;
    uint32_t rank;
    int32_t id;
};

/* The whole tokenizer (bpe.h's sae_bpe). Owns every array. */
struct sae_bpe {
    size_t n_ids;               /* one more than the largest id */
    size_t ids_cap;             /* room in tok_off and tok_len, >= n_ids */
    uint32_t *tok_off;          /* (ids_cap) where each token's bytes start in bytes */
    uint32_t *tok_len;          /* (ids_cap) their length; BPE_NO_TOKEN: no token has this id */
    char *bytes;                /* every token's bytes, back to back */
    size_t bytes_len, bytes_cap;
    int32_t *by_bytes;          /* (by_bytes_cap, a power of 2) open-addressed: bytes -> id, -1 empty */
    size_t by_bytes_cap;
    struct bpe_merge *merges;   /* (merges_cap, a power of 2) open-addressed pair -> merge */
    size_t merges_cap;
    int32_t byte_id[256];       /* the id of each single byte's token */
    int32_t *added;             /* (n_added) added token ids, longest content first */
    size_t n_added;
    uint8_t added_first[256];   /* 1 for a byte some added token starts with */
    int32_t bos;                /* -1: none */
};

/* The merge of the pair (left, right), or NULL when the pair has no rank. */
const struct bpe_merge *sae_bpe_merge_find(const struct sae_bpe *t, int32_t left, int32_t right);

/* Fills b2u with GPT-2's byte-to-unicode map (bytes_to_unicode() in
 * openai/gpt-2's encoder.py): each byte's code point in vocabulary strings. */
void sae_bpe_byte_map(uint16_t b2u[256]);

#endif
