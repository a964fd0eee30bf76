/* fuzz_explanations.c: the explanations JSON Lines reader of `sae index`
 * (sae_explanations_read), on SAELens-style and Neuronpedia export lines.
 *
 * The input is written to a scratch file. Every explanation read must name a
 * feature below d_sae and carry a description. */
#include "fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sae_explanations e;
    if (fuzz_explanations_read(fuzz_write("explanations.jsonl", data, size), &e) == 0)
        sae_explanations_free(&e);
    return 0;
}
