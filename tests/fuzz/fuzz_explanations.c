/* fuzz_explanations.c: the explanations JSON Lines reader of `sae index`
 * (sae_explanations_read), on SAELens-style and Neuronpedia export lines.
 *
 * The input is written to a scratch file. Every explanation read must name a
 * feature below d_sae and carry a description. */
#include "fuzz_common.h"
#include "index/explanations.h"

#define D_SAE 1024

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *path = fuzz_write("explanations.jsonl", data, size);
    sae_explanations e = {0};
    sae_error err = {0};
    int rc = sae_explanations_read((const char *const[]){path}, 1, D_SAE, &e, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (rc)
        return 0;
    for (size_t i = 0; i < e.n; i++) {
        FUZZ_ASSERT(e.items[i].feature < D_SAE, "feature %u", e.items[i].feature);
        FUZZ_ASSERT(e.items[i].description != NULL, "line %zu: no description", i);
    }
    sae_explanations_free(&e);
    return 0;
}
