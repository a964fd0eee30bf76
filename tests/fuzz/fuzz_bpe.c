/* fuzz_bpe.c: GPT-2's byte-level BPE tokenizer (core/lm/bpe.c) on any bytes.
 *
 * The first byte of the input picks what runs on the rest:
 *  - 0xC0 and up: the rest is a tokenizer.json for sae_bpe_load_json (hostile
 *    files: refused with a message, or loaded and able to round-trip a text);
 *  - otherwise its low two bits are the encode flags (SAE_BPE_SPECIAL,
 *    SAE_BPE_BOS) and the rest is a text, encoded with a small committed
 *    vocabulary (tests/fuzz/bpe/tokenizer.json: GPT-2's bytes, its first 1000
 *    merges and <|endoftext|>; $SAE_FUZZ_BPE names another).
 * Invariants: at most len + 1 ids, every id a token, BOS first when asked,
 * <|endoftext|> only when special tokens are asked for, and
 * decode(encode(x)) == x byte for byte. */
#include <string.h>

#include "fuzz_common.h"
#include "lm/bpe.h"

/* The committed vocabulary, loaded once (kept for the process's life). */
static const sae_bpe *vocab(void)
{
    static sae_bpe *t;
    if (!t) {
        const char *path = getenv("SAE_FUZZ_BPE");
        sae_error err;
        if (sae_bpe_load(&t, path ? path : "tests/fuzz/bpe/tokenizer.json", &err) != 0) {
            fprintf(stderr, "fuzz_bpe: %s (run from the repository's root)\n", err.msg);
            abort();
        }
    }
    return t;
}

/* Encodes text with flags and checks every invariant above. */
static void round_trip(const sae_bpe *t, const uint8_t *text, size_t n, unsigned flags)
{
    int32_t *ids;
    size_t n_ids;
    sae_error err = {0};
    int rc = sae_bpe_encode(t, (const char *)text, n, flags, &ids, &n_ids, &err);
    if ((flags & SAE_BPE_BOS) && sae_bpe_bos(t) < 0) {
        FUZZ_ASSERT(rc == SAE_EINVAL && err.msg[0], "BOS asked of a tokenizer without one: %d", rc);
        return;
    }
    FUZZ_ASSERT(rc == 0, "encode failed: %s", err.msg);
    FUZZ_ASSERT(n_ids <= n + 1, "%zu ids for %zu bytes", n_ids, n);
    size_t skip = (flags & SAE_BPE_BOS) ? 1 : 0;
    FUZZ_ASSERT(!skip || (n_ids >= 1 && ids[0] == sae_bpe_bos(t)), "BOS is not first");
    int32_t eot = sae_bpe_find(t, "<|endoftext|>", 13);
    for (size_t i = 0; i < n_ids; i++) {
        size_t len;
        FUZZ_ASSERT(sae_bpe_token(t, ids[i], &len) != NULL, "id %d at %zu is no token", ids[i], i);
        FUZZ_ASSERT(i < skip || (flags & SAE_BPE_SPECIAL) || eot < 0 || ids[i] != eot,
                    "<|endoftext|> matched without SAE_BPE_SPECIAL at %zu", i);
    }
    char *back;
    size_t blen;
    rc = sae_bpe_decode(t, ids + skip, n_ids - skip, &back, &blen, &err);
    FUZZ_ASSERT(rc == 0, "decode failed: %s", err.msg);
    FUZZ_ASSERT(blen == n && memcmp(back, text, n) == 0, "decode(encode(x)) != x (%zu vs %zu bytes)",
                blen, n);
    free(back);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    const uint8_t *rest = data + 1;
    size_t n = size - 1;
    if (data[0] >= 0xC0) {
        sae_bpe *t = NULL;
        sae_error err = {0};
        int rc = sae_bpe_load_json(&t, (const char *)rest, n, "fuzz.json", &err);
        FUZZ_CHECK_ERR(rc, err);
        if (rc == 0) {
            static const char text[] = "Hello  world, don't\n\n<|endoftext|> \xff\xc3\xa9 42";
            for (unsigned f = 0; f < 4; f++)
                round_trip(t, (const uint8_t *)text, sizeof text - 1, f);
            sae_bpe_free(t);
        }
        return 0;
    }
    round_trip(vocab(), rest, n, data[0] & 3u);
    return 0;
}
