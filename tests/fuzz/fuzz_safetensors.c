/* fuzz_safetensors.c: the safetensors header and layout validator
 * (sae_st_parse, the function sae_st_open runs on the mapped file).
 *
 * On success every tensor must lie inside the buffer with nbytes =
 * n_elems x dtype size, every name must be found again by sae_st_find, and
 * float tensors are converted as the loader converts them, so a reader that
 * accepted a lie would read out of bounds here under AddressSanitizer
 * (fuzz_st_reader, shared with the npz and torch checkpoint targets). */
#include "fuzz_common.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_st_reader(sae_st_parse, "fuzz.safetensors", data, size);
    return 0;
}
