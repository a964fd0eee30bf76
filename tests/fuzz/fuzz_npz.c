/* fuzz_npz.c: the npz reader (sae_npz_parse, what sae_npz_open runs on the
 * mapped file): libzip through the mapping source, the in-place offset
 * check, inflation with its size and CRC checks, the .npy header parser.
 *
 * On success every tensor must describe bytes it really has (in the buffer
 * or owned), all of them read and converted as the loader converts them. */
#include "fuzz_common.h"
#include "io/npz.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sae_st_file *f = NULL;
    sae_error err = {0};
    int rc = sae_npz_parse("fuzz.npz", data, size, &f, &err);
    FUZZ_CHECK_ERR(rc, err);
    if (rc)
        return 0;
    FUZZ_ASSERT(f->size == size && f->base == data, "the file does not describe the buffer");
    fuzz_check_st_file(f, data, size);
    sae_st_free(f);
    return 0;
}
